"""ingest/validate.py: a dataset written by the writer validates; each injected corruption is named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.convert.camera import pose_rows
from ingest.validate import Problem, max_episode_length, sample_positions, validate_dataset
from ingest.video import transcode
from ingest.writer import finalize_meta, publish_episode, stage_episode
from schemas.camera import POSE_NAMES, CameraModel, pose_column
from schemas.canonical import VECTOR_DIM
from schemas.episode import CanonicalEpisode, EpisodeMeta, ExtraColumn, VideoSource
from schemas.errors import Refused
from schemas.lerobot import data_path, video_path
from schemas.pipelines import VideoConfig
from tests.fixtures.configs import CAM, SRC_CFG, VCFG, make_source

LENGTHS = (6, 5, 4)
EP1 = data_path(1)
VID1 = video_path(1, CAM)


def make_episode(length: int, caption: str, src: Path, seed: int) -> CanonicalEpisode:
    rng = np.random.default_rng(seed)
    mask = np.zeros((length, VECTOR_DIM), dtype=bool)
    mask[:, 73:83] = True
    meta = EpisodeMeta(
        source_episode_id=f"ep_{seed}",
        embodiment="human_ego",
        has_action=True,
        quality_tier="high",
        caption=caption,
        caption_source="template",
        task_original=caption,
    )
    state = np.where(mask, rng.normal(size=mask.shape), np.nan).astype(np.float32)
    return CanonicalEpisode(
        meta=meta,
        state=state,
        action=rng.normal(size=mask.shape).astype(np.float32),
        state_mask=mask,
        action_mask=mask.copy(),
        videos={CAM: VideoSource(path=src, frame_indices=np.arange(length) * 2)},
    )


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("good")
    src = make_source(base / "src.mp4", 20)
    root, start, captions, tasks = base / "ds", 0, ["pick", "place", "pick"], {}
    for i, (length, caption) in enumerate(zip(LENGTHS, captions, strict=True)):
        stage_episode(make_episode(length, caption, src, i), base / f"s{i}", VCFG)
        publish_episode(base / f"s{i}", root, i, start, tasks)
        start += length
    finalize_meta(root, "egodex", SRC_CFG, [])
    return root


@pytest.fixture
def ds(good: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(good, tmp_path / "ds"))


def where(problems: list[Problem]) -> set[tuple[str, str]]:
    return {(p.file, p.field) for p in problems}


def edit_jsonl(path: Path, line: int, change: Callable[[dict], None]) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    change(rows[line])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def edit_column(path: Path, name: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    table = pq.read_table(path)
    i = table.schema.get_field_index(name)
    values = change(table[name].to_numpy().copy())
    table = table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))
    pq.write_table(table, path)


def test_good_dataset_is_valid(good: Path) -> None:
    assert validate_dataset(good) == []


def test_empty_dataset_is_refused(tmp_path: Path) -> None:
    finalize_meta(tmp_path / "empty", "egodex", SRC_CFG, [])
    problems = validate_dataset(tmp_path / "empty")
    assert ("meta/episodes.jsonl", "(file)") in where(problems)
    assert any("no episodes" in p.message for p in problems)


def test_wrong_length(ds: Path) -> None:
    edit_jsonl(ds / "meta/episodes.jsonl", 1, lambda r: r.update(length=6))
    problems = validate_dataset(ds)
    assert ("meta/episodes.jsonl", "length") in where(problems)
    assert ("meta/info.json", "total_frames") in where(problems)
    length = next(p for p in problems if p.field == "length")
    assert length.episode_index == 1 and "5 rows" in length.message


def test_non_contiguous_index(ds: Path) -> None:
    edit_column(ds / data_path(2), "index", lambda v: v + 3)
    problems = validate_dataset(ds)
    assert where(problems) == {(data_path(2), "index")}
    assert "starts at 14, expected 11" in problems[0].message


def test_missing_mp4(ds: Path) -> None:
    (ds / VID1).unlink()
    assert where(validate_dataset(ds)) == {(VID1, "(file)")}


def test_missing_parquet(ds: Path) -> None:
    (ds / EP1).unlink()
    assert (EP1, "(file)") in where(validate_dataset(ds))


def test_video_with_too_few_frames(ds: Path, good: Path) -> None:
    transcode(good.parent / "src.mp4", np.arange(3), ds / VID1, VCFG)
    problems = validate_dataset(ds)
    assert where(problems) == {(VID1, "frames")}
    assert "3 frames, episode length 5" in problems[0].message


def test_sample_draws_a_seeded_subset() -> None:
    picked = sample_positions(1000, 50, seed=3)
    assert len(picked) == 50 and picked == sample_positions(1000, 50, seed=3) and max(picked) < 1000
    assert picked != sample_positions(1000, 50, seed=4)
    assert len(sample_positions(1000, 0.05)) == 50 and len(sample_positions(10, 0.01)) == 1
    assert sample_positions(3, 7) == {0, 1, 2} and sample_positions(3, None) is None
    for bad in (0, -1, 2.5):
        with pytest.raises(Refused, match="--sample"):
            sample_positions(10, bad)


def _seed_leaving_out(position: int) -> int:
    return next(s for s in range(100) if position not in sample_positions(len(LENGTHS), 1, s))


def test_sample_decodes_only_the_drawn_videos_and_checks_the_rest_in_full(ds: Path, good: Path) -> None:
    transcode(good.parent / "src.mp4", np.arange(3), ds / VID1, VCFG)  # found only by decoding
    edit_column(ds / data_path(2), "index", lambda v: v + 3)  # found by reading the Parquet files
    (ds / video_path(0, CAM)).unlink()  # found by listing the files
    full = {(VID1, "frames"), (data_path(2), "index"), (video_path(0, CAM), "(file)")}
    assert where(validate_dataset(ds)) == full
    assert where(validate_dataset(ds, sample=1, seed=_seed_leaving_out(1))) == full - {(VID1, "frames")}
    picked = next(s for s in range(100) if sample_positions(len(LENGTHS), 1, s) == {1})
    assert where(validate_dataset(ds, sample=1, seed=picked)) == full
    assert where(validate_dataset(ds, sample=0.99)) == full


def test_video_of_other_size(ds: Path, good: Path) -> None:
    cfg = VideoConfig(width=32, height=24)
    transcode(good.parent / "src.mp4", np.arange(5), ds / VID1, cfg)
    assert where(validate_dataset(ds)) == {(VID1, "width"), (VID1, "height")}


def test_camera_names_rgb(ds: Path) -> None:
    info = json.loads((ds / "meta/info.json").read_text())
    info["features"][CAM]["names"] = ["height", "width", "rgb"]
    (ds / "meta/info.json").write_text(json.dumps(info))
    assert where(validate_dataset(ds)) == {("meta/info.json", f"features.{CAM}.names")}


def test_bad_timestamp(ds: Path) -> None:
    def shift(ts: np.ndarray) -> np.ndarray:
        ts[3] += 0.013
        return ts

    edit_column(ds / data_path(0), "timestamp", shift)
    assert where(validate_dataset(ds)) == {(data_path(0), "timestamp")}


def test_wrong_index_dtype(ds: Path) -> None:
    table = pq.read_table(ds / EP1)
    i = table.schema.get_field_index("index")
    table = table.set_column(i, "index", table["index"].cast(pa.int32()))
    pq.write_table(table, ds / EP1)
    assert where(validate_dataset(ds)) == {(EP1, "index")}


def test_nan_where_mask_true(ds: Path) -> None:
    table = pq.read_table(ds / EP1)
    state = np.stack(table["observation.state"].to_numpy(zero_copy_only=False))
    state[2, 75] = np.nan
    column = pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), VECTOR_DIM)
    table = table.set_column(table.schema.get_field_index("observation.state"), "observation.state", column)
    pq.write_table(table, ds / EP1)
    assert where(validate_dataset(ds)) == {(EP1, "observation.state")}


def test_task_index_disagrees_with_episode_tasks(ds: Path) -> None:
    edit_column(ds / EP1, "task_index", lambda v: v * 0)
    problems = validate_dataset(ds)
    assert where(problems) == {(EP1, "task_index")}
    assert "['pick'" in problems[0].message and "['place']" in problems[0].message


def test_quality_tier_inconsistent_with_has_action(ds: Path) -> None:
    edit_jsonl(ds / "meta/episodes.jsonl", 0, lambda r: r.update(quality_tier="actionless"))
    assert where(validate_dataset(ds)) == {("meta/episodes.jsonl", "quality_tier")}


def test_missing_contract_key(ds: Path) -> None:
    edit_jsonl(ds / "meta/episodes.jsonl", 2, lambda r: r.pop("caption_source"))
    assert ("meta/episodes.jsonl", "caption_source") in where(validate_dataset(ds))


def test_stats_missing_index_column_and_bad_count(ds: Path) -> None:
    def change(r: dict) -> None:
        del r["stats"]["index"]
        r["stats"]["action"]["count"] = [99]

    edit_jsonl(ds / "meta/episodes_stats.jsonl", 1, change)
    assert where(validate_dataset(ds)) == {
        ("meta/episodes_stats.jsonl", "stats.index"),
        ("meta/episodes_stats.jsonl", "stats.action.count"),
    }


def test_camera_stats_out_of_range(ds: Path) -> None:
    edit_jsonl(ds / "meta/episodes_stats.jsonl", 0, lambda r: r["stats"][CAM].update(max=[[[255.0]]] * 3))
    assert where(validate_dataset(ds)) == {("meta/episodes_stats.jsonl", f"stats.{CAM}.max")}


def test_card_counts_disagree(ds: Path) -> None:
    card = json.loads((ds / "meta/dataset_card.json").read_text())
    card["frames"] += 1
    (ds / "meta/dataset_card.json").write_text(json.dumps(card))
    assert where(validate_dataset(ds)) == {("meta/dataset_card.json", "frames")}


def test_episode_too_long(ds: Path) -> None:
    assert max_episode_length(10) == 9000
    edit_jsonl(ds / "meta/episodes.jsonl", 0, lambda r: r.update(length=9001))
    assert ("meta/episodes.jsonl", "length") in where(validate_dataset(ds, check_videos=False))


def test_stray_parquet_in_data(ds: Path) -> None:
    shutil.copy(ds / EP1, ds / data_path(7))
    assert where(validate_dataset(ds)) == {(data_path(7), "(file)")}


def test_episode_index_out_of_order(ds: Path) -> None:
    edit_jsonl(ds / "meta/episodes.jsonl", 2, lambda r: r.update(episode_index=5))
    assert ("meta/episodes.jsonl", "episode_index") in where(validate_dataset(ds, check_videos=False))


def test_modality_slice_outside_the_vector(ds: Path) -> None:
    path = ds / "meta/modality.json"
    data = json.loads(path.read_text())
    data["action"]["right_keypoints"]["end"] = 150
    path.write_text(json.dumps(data))
    assert ("meta/modality.json", "action.right_keypoints") in where(validate_dataset(ds))


def test_stats_json_quantiles_missing_or_outside_min_max(ds: Path) -> None:
    stats = json.loads((ds / "meta/stats.json").read_text())
    del stats["action"]["q99"]
    stats["observation.state"]["q01"] = [v - 1.0 for v in stats["observation.state"]["min"]]
    (ds / "meta/stats.json").write_text(json.dumps(stats))
    assert where(validate_dataset(ds)) == {
        ("meta/stats.json", "action.q99"),
        ("meta/stats.json", "observation.state.q01"),
    }


# ---------------------------------------------------------------------------------------------------------
# meta/cameras.jsonl


POSE_COL = pose_column(CAM)
CAMERAS = "meta/cameras.jsonl"


def camera_episode(length: int, src: Path, seed: int) -> CanonicalEpisode:
    """An episode whose camera has intrinsics at 128x96 (the source is 64x48) and a per-frame pose."""
    ep = make_episode(length, "pick", src, seed)
    a = np.linspace(0, 1, length)
    T = np.tile(np.eye(4), (length, 1, 1))
    T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    T[:, :3, 3] = a[:, None]
    ep.extra[POSE_COL] = ExtraColumn(pose_rows(T), list(POSE_NAMES))
    ep.cameras.append(CameraModel(camera=CAM, width=128, height=96, fx=100.0, fy=101.0, cx=63.5, cy=47.5,
                                  pose_frame="world", pose_column=POSE_COL, provenance="test"))  # fmt: skip
    return ep


@pytest.fixture(scope="module")
def with_cameras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cams")
    src = make_source(base / "src.mp4", 20)
    root, start, tasks = base / "ds", 0, {}
    for i, length in enumerate((6, 5)):
        stage_episode(camera_episode(length, src, i), base / f"s{i}", VCFG)
        publish_episode(base / f"s{i}", root, i, start, tasks)
        start += length
    finalize_meta(root, "egodex", SRC_CFG, [])
    return root


@pytest.fixture
def cams(with_cameras: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(with_cameras, tmp_path / "ds"))


def test_camera_models_are_written_at_the_published_size(with_cameras: Path) -> None:
    rows = [json.loads(x) for x in (with_cameras / CAMERAS).read_text().splitlines()]
    assert [(r["episode_index"], r["camera"]) for r in rows] == [(0, CAM), (1, CAM)]
    # 128x96 intrinsics for a 64x48 source published at 64x48 (VCFG): halved, pixel centres kept
    assert (rows[0]["width"], rows[0]["height"], rows[0]["fx"], rows[0]["fy"]) == (64, 48, 50.0, 50.5)
    assert (rows[0]["cx"], rows[0]["cy"]) == (31.5, 23.5)
    assert rows[0]["pose_column"] == POSE_COL and rows[0]["pose_frame"] == "world"
    info = json.loads((with_cameras / "meta/info.json").read_text())
    assert info["features"][POSE_COL] == {"dtype": "float32", "shape": [7], "names": POSE_NAMES}
    assert validate_dataset(with_cameras) == []


def test_camera_of_wrong_width(cams: Path) -> None:
    edit_jsonl(cams / CAMERAS, 0, lambda r: r.update(width=640))
    problems = validate_dataset(cams)
    assert where(problems) == {(CAMERAS, f"{CAM}.width")}
    assert "640x48 but the video is 64x48" in problems[0].message


def test_camera_principal_point_outside(cams: Path) -> None:
    edit_jsonl(cams / CAMERAS, 1, lambda r: r.update(cx=-3.0))
    assert where(validate_dataset(cams)) == {(CAMERAS, f"{CAM}.cx")}


def test_camera_of_unknown_episode(cams: Path) -> None:
    edit_jsonl(cams / CAMERAS, 1, lambda r: r.update(episode_index=7))
    assert where(validate_dataset(cams)) == {(CAMERAS, "camera")}


def test_camera_pose_column_missing(cams: Path) -> None:
    edit_jsonl(cams / CAMERAS, 0, lambda r: r.update(pose_column="observation.camera_pose.head"))
    problems = validate_dataset(cams)
    assert where(problems) == {(CAMERAS, f"{CAM}.pose_column")}
    assert "observation.camera_pose.head is not a float32[7]" in problems[0].message


def test_camera_pose_not_unit_quaternion(cams: Path) -> None:
    table = pq.read_table(cams / data_path(0))
    rows = np.stack(table[POSE_COL].to_numpy(zero_copy_only=False)).astype(np.float32)
    rows[3, 3:7] *= 1.5
    column = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 7)
    table = table.set_column(table.schema.get_field_index(POSE_COL), POSE_COL, column)
    pq.write_table(table, cams / data_path(0))
    problems = validate_dataset(cams)
    assert where(problems) == {(data_path(0), POSE_COL)}
    assert "row 3" in problems[0].message


def test_camera_static_pose(cams: Path) -> None:
    turn = [[0.0, -1.0, 0.0, 0.1], [1.0, 0.0, 0.0, 0.2], [0.0, 0.0, 1.0, 0.3], [0.0, 0.0, 0.0, 1.0]]
    edit_jsonl(cams / CAMERAS, 1, lambda r: r.update(pose=turn, pose_column=None))
    assert validate_dataset(cams) == []
    edit_jsonl(cams / CAMERAS, 1, lambda r: r["pose"][0].__setitem__(0, 0.5))  # a shear, not a rotation
    assert where(validate_dataset(cams)) == {(CAMERAS, f"{CAM}.pose")}


def test_stats_json_is_exactly_gr00t_shaped(ds: Path) -> None:
    """A `count` key (GR00T slices every key), a camera entry and an entry of the wrong width are named."""
    stats = json.loads((ds / "meta/stats.json").read_text())
    stats["action"]["count"] = [12]
    stats[CAM] = {k: [0.5] * 3 for k in ("mean", "std", "min", "max", "q01", "q99")}
    stats["index"] = {k: v * 2 for k, v in stats["index"].items()}
    (ds / "meta/stats.json").write_text(json.dumps(stats))
    assert where(validate_dataset(ds)) == {
        ("meta/stats.json", "action.count"),
        ("meta/stats.json", CAM),
        ("meta/stats.json", "index.q01"),
    }


def test_camera_folder_without_feature(ds: Path) -> None:
    """info.json and videos/ agree: a camera folder that is not a feature is named."""
    stray = ds / "videos/chunk-000/observation.images.image_3"
    stray.mkdir(parents=True)
    shutil.copy(ds / video_path(0, CAM), stray / "episode_000000.mp4")
    assert where(validate_dataset(ds)) == {("videos/chunk-000/observation.images.image_3", "(folder)")}
