"""ingest/writer.py: stage -> publish -> finalize_meta on synthetic episodes (no Ray)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.errors import EpisodeError
from ingest.validate import validate_dataset
from ingest.video import probe
from ingest.writer import (
    StagedEpisode,
    finalize_meta,
    is_staged,
    publish_episode,
    read_published,
    read_staged,
    rewrite_episode_meta,
    stage_episode,
    task_table,
)
from schemas.canonical import VECTOR_DIM, dimension_names
from schemas.card import DatasetCard
from schemas.episode import CanonicalEpisode, EpisodeMeta, VideoSource
from schemas.lerobot import InfoJson, data_path, video_path
from schemas.reject import RejectRecord
from tests.fixtures.configs import CAM, SRC_CFG, VCFG, make_source
from tests.fixtures.gr00t import gr00t_load_stats

REJECTS = [RejectRecord(source_path="bad.hdf5", stage="read", error="boom")]
VEC = pa.list_(pa.float32(), VECTOR_DIM)
MASK = pa.list_(pa.bool_(), VECTOR_DIM)


def make_episode(length: int, caption: str, src: Path | None, seed: int = 0) -> CanonicalEpisode:
    rng = np.random.default_rng(seed)
    state_mask = np.zeros((length, VECTOR_DIM), dtype=bool)
    state_mask[:, 73:83] = True  # right wrist + gripper
    action_mask = state_mask.copy()
    action_mask[-1, 80] = False
    meta = EpisodeMeta(
        source_episode_id=f"ep_{seed}",
        embodiment="human_ego",
        has_action=True,
        quality_tier="high",
        quality_metrics={"valid_fraction": 0.9},
        caption=caption,
        caption_source="source",
        task_original=caption.upper(),
    )
    videos = {CAM: VideoSource(path=src, frame_indices=np.arange(length) * 3)} if src else {}
    return CanonicalEpisode(
        meta=meta,
        state=rng.normal(size=(length, VECTOR_DIM)).astype(np.float32),
        action=rng.normal(size=(length, VECTOR_DIM)).astype(np.float32),
        state_mask=state_mask,
        action_mask=action_mask,
        videos=videos,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("src") / "src.mp4", 30)


@pytest.fixture
def episodes(source: Path) -> list[CanonicalEpisode]:
    return [make_episode(7, "pick the cup", source, 0), make_episode(5, "open the door", source, 1)]


@pytest.fixture
def dataset(tmp_path: Path, episodes: list[CanonicalEpisode]) -> Path:
    root, start, tasks = tmp_path / "ds", 0, {}
    for i, ep in enumerate(episodes):
        stage_episode(ep, tmp_path / "staging" / f"s{i}", VCFG)
        publish_episode(tmp_path / "staging" / f"s{i}", root, i, start, tasks)
        start += ep.length
    finalize_meta(root, "egodex", SRC_CFG, REJECTS)
    return root


def expected_stats(x: np.ndarray, mask: np.ndarray | None = None) -> dict[str, list]:
    """numpy's statistics of the valid values (`mask` True) of each dimension; 0 where none is valid."""
    x = x.astype(np.float64)
    if mask is None:
        return {
            "min": x.min(0).tolist(),
            "max": x.max(0).tolist(),
            "mean": x.mean(0).tolist(),
            "std": x.std(0).tolist(),
        }
    out: dict[str, list] = {"min": [], "max": [], "mean": [], "std": []}
    for d in range(x.shape[1]):
        v = x[mask[:, d], d]
        for name, f in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)):
            out[name].append(float(f(v)) if len(v) else 0.0)
    return out


def assert_stats(stats, x: np.ndarray, mask: np.ndarray | None = None) -> None:
    for name, want in expected_stats(x, mask).items():
        np.testing.assert_allclose(getattr(stats, name), want, rtol=1e-6, atol=1e-9, err_msg=name)
    assert stats.count == [len(x)]
    assert stats.valid_count == (None if mask is None else mask.sum(0).tolist())


def test_stage_writes_frames_videos_and_stats(tmp_path: Path, episodes: list[CanonicalEpisode]) -> None:
    ep = episodes[0]
    staged = stage_episode(ep, tmp_path / "s0", VCFG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0"]  # the .tmp folder was renamed
    table = pq.read_table(tmp_path / "s0" / "frames.parquet")
    assert table.schema.field("observation.state").type == VEC
    assert table.schema.field("action_mask").type == MASK
    assert table["timestamp"].type == pa.float32() and table["frame_index"].type == pa.int64()
    np.testing.assert_array_equal(np.stack(table["action"].to_numpy(zero_copy_only=False)), ep.action)
    np.testing.assert_array_equal(table["timestamp"].to_numpy(), (np.arange(7) / 10).astype(np.float32))
    assert probe(tmp_path / "s0" / "videos" / f"{CAM}.mp4").n_frames == 7
    assert StagedEpisode.model_validate_json((tmp_path / "s0" / "staged.json").read_text()) == staged
    assert is_staged(tmp_path / "s0") and not is_staged(tmp_path / "s1")
    assert read_staged(tmp_path / "s0").meta.caption == "pick the cup"
    assert_stats(staged.stats["observation.state"], ep.state, ep.state_mask)  # masked values left out
    assert_stats(staged.stats["action_mask"], ep.action_mask)
    assert_stats(staged.stats["timestamp"], np.arange(7, dtype=np.float32) / 10)
    assert staged.stats["frame_index"].mean == [3.0]
    assert np.asarray(staged.stats[CAM].mean).shape == (3, 1, 1)
    assert staged.valid_state_dims == ep.state_mask.any(0).tolist() and sum(staged.valid_state_dims) == 10


def test_stats_leave_out_masked_values_nan_or_not(tmp_path: Path) -> None:
    ep = make_episode(6, "x", None)
    ep.state[:, 0] = np.nan  # dim 0 is masked everywhere
    ep.state[2, 74], ep.state_mask[2, 74] = np.inf, False
    ep.state[3, 75], ep.state_mask[3, 75] = 1e6, False  # a finite masked value counts no more than a NaN
    stats = stage_episode(ep, tmp_path / "s", VCFG).stats["observation.state"]
    assert stats.mean[0] == 0.0 and stats.std[0] == 0.0 and stats.valid_count[0] == 0
    for d, row in ((74, 2), (75, 3)):
        kept = np.delete(ep.state[:, d], row).astype(np.float64)
        np.testing.assert_allclose([stats.mean[d], stats.std[d]], [kept.mean(), kept.std()], rtol=1e-6)
        assert stats.valid_count[d] == 5 and stats.max[d] == pytest.approx(kept.max())


def test_stage_failures_become_episode_errors(tmp_path: Path, source: Path) -> None:
    bad = make_episode(20, "x", source)  # needs source frame 57 of 30
    with pytest.raises(EpisodeError) as err:
        stage_episode(bad, tmp_path / "s", VCFG)
    assert err.value.stage == "video" and err.value.path == str(source)
    assert list(tmp_path.iterdir()) == []
    wrong = make_episode(4, "x", None)
    wrong.action = wrong.action[:, :10]
    with pytest.raises(EpisodeError, match="action") as err:
        stage_episode(wrong, tmp_path / "s", VCFG)
    assert err.value.stage == "write" and err.value.path == "ep_0"


def test_publish_exact_dtypes_values_and_contiguous_index(
    dataset: Path, episodes: list[CanonicalEpisode]
) -> None:
    tables = [pq.read_table(dataset / data_path(i)) for i in range(2)]
    for i, (table, ep) in enumerate(zip(tables, episodes, strict=True)):
        types = {f.name: f.type for f in table.schema}
        assert types == {
            "observation.state": VEC,
            "action": VEC,
            "observation.state_mask": MASK,
            "action_mask": MASK,
            "timestamp": pa.float32(),
            "frame_index": pa.int64(),
            "episode_index": pa.int64(),
            "index": pa.int64(),
            "task_index": pa.int64(),
        }
        np.testing.assert_array_equal(
            np.stack(table["observation.state"].to_numpy(zero_copy_only=False)), ep.state
        )
        np.testing.assert_array_equal(
            np.stack(table["observation.state_mask"].to_numpy(zero_copy_only=False)), ep.state_mask
        )
        assert table["episode_index"].to_pylist() == [i] * ep.length
        assert table["task_index"].to_pylist() == [i] * ep.length
        assert table["frame_index"].to_pylist() == list(range(ep.length))
        assert probe(dataset / video_path(i, CAM)).n_frames == ep.length
    index = np.concatenate([t["index"].to_numpy() for t in tables])
    np.testing.assert_array_equal(index, np.arange(12))
    assert not (dataset.parent / "staging" / "s0").exists()


def test_read_published_from_footers(dataset: Path, episodes: list[CanonicalEpisode]) -> None:
    published = read_published(dataset)
    assert [p.record.episode_index for p in published] == [0, 1]
    assert [p.record.tasks for p in published] == [["pick the cup"], ["open the door"]]
    assert published[1].record.length == 5 and published[1].record.task_original == "OPEN THE DOOR"
    idx = published[1].stats["index"]
    assert (idx.min, idx.max, idx.count) == ([7.0], [11.0], [5])
    np.testing.assert_allclose(idx.std, [np.arange(7, 12).std()])
    assert published[1].stats["episode_index"].mean == [1.0]
    assert published[0].videos[CAM].width == 64
    assert_stats(published[1].stats["action"], episodes[1].action, episodes[1].action_mask)


def test_republish_same_index_overwrites(dataset: Path, source: Path, tmp_path: Path) -> None:
    replacement = make_episode(4, "pick the cup", source, seed=9)
    stage_episode(replacement, tmp_path / "again", VCFG)
    publish_episode(tmp_path / "again", dataset, 1, 7, {"pick the cup": 0})
    table = pq.read_table(dataset / data_path(1))
    assert table.num_rows == 4 and table["index"].to_pylist() == [7, 8, 9, 10]
    assert probe(dataset / video_path(1, CAM)).n_frames == 4
    assert read_published(dataset)[1].record.source_episode_id == "ep_9"
    assert not list(dataset.rglob("*.tmp"))


def test_finalize_meta_contents(dataset: Path, episodes: list[CanonicalEpisode]) -> None:
    info = InfoJson.model_validate_json((dataset / "meta/info.json").read_text())
    assert (info.total_episodes, info.total_frames, info.total_tasks, info.total_videos) == (2, 12, 2, 2)
    assert (info.total_chunks, info.fps, info.robot_type) == (1, 10, "human_ego")
    assert info.splits == {"train": "0:2"}
    assert info.features["observation.state"].names == dimension_names()
    assert info.features["action_mask"].dtype == "bool" and info.features["action_mask"].shape == [146]
    cam = info.features[CAM]
    assert (cam.dtype, cam.shape, cam.names) == ("video", [48, 64, 3], ["height", "width", "channels"])
    assert cam.info.codec == "h264" and cam.info.fps == 10
    raw = json.loads((dataset / "meta/info.json").read_text())
    assert raw["features"][CAM]["info"]["video.pix_fmt"] == "yuv420p"
    assert raw["features"]["index"] == {"dtype": "int64", "shape": [1], "names": None}
    tasks = [json.loads(line) for line in (dataset / "meta/tasks.jsonl").read_text().splitlines()]
    assert tasks == [{"task_index": 0, "task": "pick the cup"}, {"task_index": 1, "task": "open the door"}]
    eps = [json.loads(line) for line in (dataset / "meta/episodes.jsonl").read_text().splitlines()]
    got = [(e["episode_index"], e["length"], e["tasks"]) for e in eps]
    assert got == [(0, 7, ["pick the cup"]), (1, 5, ["open the door"])]
    stats_lines = (dataset / "meta/episodes_stats.jsonl").read_text().splitlines()
    assert json.loads(stats_lines[1])["stats"]["index"]["count"] == [5]
    card = DatasetCard.model_validate_json((dataset / "meta/dataset_card.json").read_text())
    assert (card.episodes, card.frames, card.rejects) == (2, 12, 1)
    assert card.hours == pytest.approx(12 / 10 / 3600)
    assert card.valid_state_dims == dimension_names()[73:83]
    rejects = (dataset / "meta/rejects.jsonl").read_text().splitlines()
    assert [json.loads(r)["source_path"] for r in rejects] == ["bad.hdf5"]


def test_global_stats_equal_numpy_over_valid_values(dataset: Path, episodes: list[CanonicalEpisode]) -> None:
    """Masked values (random numbers in the fixture) are left out of stats.json and episodes_stats.jsonl:
    every statistic equals numpy's over the valid values only, `valid_count` counts them per dimension."""
    stats = json.loads((dataset / "meta/stats.json").read_text())
    for key, attr in (("observation.state", "state"), ("action", "action")):
        values = np.concatenate([getattr(ep, attr) for ep in episodes])
        mask = np.concatenate([getattr(ep, f"{attr}_mask") for ep in episodes])
        for name, want in expected_stats(values, mask).items():
            np.testing.assert_allclose(stats[key][name], want, rtol=1e-5, atol=1e-6, err_msg=f"{key} {name}")
        assert stats[key]["valid_count"] == mask.sum(0).tolist()
        valid = np.where(mask, values.astype(np.float64), np.nan)
        with warnings.catch_warnings():  # all-NaN dimensions
            warnings.simplefilter("ignore", RuntimeWarning)
            q = np.nan_to_num(np.nanquantile(valid, [0.01, 0.99], axis=0))
        np.testing.assert_allclose([stats[key]["q01"], stats[key]["q99"]], q, rtol=1e-5, atol=1e-7)
    assert stats["action"]["valid_count"][80] == 12 - 2  # masked on the last frame of both episodes
    state = np.concatenate([ep.state for ep in episodes])
    assert stats["observation.state"]["mean"][0] == 0.0 and state[:, 0].mean() != 0.0  # never valid
    np.testing.assert_allclose(stats["index"]["std"], [np.arange(12).std()])
    assert stats["index"]["q99"] == [pytest.approx(np.quantile(np.arange(12), 0.99))]
    # GR00T's keys (+ valid_count, as wide as the feature, on state and action); no `count`, no cameras
    six = ("mean", "std", "min", "max", "q01", "q99")
    assert {k: tuple(v) for k, v in stats.items() if k in ("observation.state", "action")} == {
        "observation.state": (*six, "valid_count"),
        "action": (*six, "valid_count"),
    }
    assert {tuple(v) for k, v in stats.items() if k not in ("observation.state", "action")} == {six}
    assert CAM not in stats
    line = json.loads((dataset / "meta/episodes_stats.jsonl").read_text().splitlines()[1])["stats"]
    assert line["action"]["valid_count"] == episodes[1].action_mask.sum(0).tolist()
    assert "valid_count" not in line["index"] and line["action"]["count"] == [5]


def test_stats_json_loads_as_gr00t_does(dataset: Path) -> None:
    """Every group of modality.json gets GR00T's six statistics of its own width, equal to the slice of
    the merged feature stats (a `count` key would fail: [12][idx] is out of range)."""
    loaded = gr00t_load_stats(dataset)
    stats = json.loads((dataset / "meta/stats.json").read_text())
    grip = loaded["state"]["right_gripper"]
    assert grip.q99.shape == (1,) and grip.mean[0] == pytest.approx(stats["observation.state"]["mean"][82])
    assert loaded["action"]["left_keypoints"].std.shape == (63,)


def test_quantiles_of_a_large_dataset_come_from_every_kth_episode(
    dataset: Path, episodes: list[CanonicalEpisode], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.writer.QUANTILE_SAMPLE_ROWS", 6)  # 12 frames: every 2nd episode (of 2)
    finalize_meta(dataset, "egodex", SRC_CFG, [])
    stats = json.loads((dataset / "meta/stats.json").read_text())
    first = episodes[0]
    want = np.quantile(first.action[:, 73:83], [0.01, 0.99], axis=0)  # the valid dimensions, valid rows
    want[:, 7] = np.quantile(first.action[:-1, 80], [0.01, 0.99])  # dim 80 is masked on the last frame
    got = np.array([stats["action"]["q01"], stats["action"]["q99"]])
    np.testing.assert_allclose(got[:, 73:83], want, rtol=1e-5)
    assert not got[:, :73].any() and not got[:, 83:].any()  # never valid: 0
    every = expected_stats(
        np.concatenate([ep.action for ep in episodes]), np.concatenate([ep.action_mask for ep in episodes])
    )
    np.testing.assert_allclose(stats["action"]["mean"], every["mean"], rtol=1e-5, atol=1e-6)  # every frame


def test_meta_rebuilt_after_deletion_is_identical(dataset: Path) -> None:
    before = {p.name: p.read_bytes() for p in (dataset / "meta").iterdir()}
    shutil.rmtree(dataset / "meta")
    finalize_meta(dataset, "egodex", SRC_CFG, REJECTS)
    after = {p.name: p.read_bytes() for p in (dataset / "meta").iterdir()}
    assert after == before
    assert len(before) == 9  # the seven meta files of the contract + GR00T modality.json + cameras.jsonl


def test_empty_dataset_meta(tmp_path: Path) -> None:
    info = finalize_meta(tmp_path / "empty", "egodex", SRC_CFG, [])
    assert (info.total_episodes, info.total_frames, info.total_chunks, info.video_path) == (0, 0, 0, None)
    assert info.splits == {"train": "0:0"} and not info.video_keys()
    assert (tmp_path / "empty/meta/rejects.jsonl").read_text() == ""
    assert (tmp_path / "empty/meta/episodes.jsonl").read_text() == ""
    assert DatasetCard.model_validate_json((tmp_path / "empty/meta/dataset_card.json").read_text()).hours == 0


def test_task_table_first_appearance(dataset: Path, source: Path, tmp_path: Path) -> None:
    stage_episode(make_episode(3, "pick the cup", source, 5), tmp_path / "s2", VCFG)
    publish_episode(tmp_path / "s2", dataset, 2, 12, task_table(read_published(dataset)))
    assert task_table(read_published(dataset)) == {"pick the cup": 0, "open the door": 1}


def test_republish_without_camera_removes_old_video(dataset: Path, tmp_path: Path) -> None:
    stage_episode(make_episode(5, "open the door", None, 3), tmp_path / "nocam", VCFG)
    publish_episode(tmp_path / "nocam", dataset, 1, 7, {"pick the cup": 0, "open the door": 1})
    assert not (dataset / video_path(1, CAM)).exists()
    assert (dataset / video_path(0, CAM)).exists()


def test_publish_resumes_after_interruption(tmp_path: Path, source: Path) -> None:
    staging, root = tmp_path / "s", tmp_path / "ds"
    stage_episode(make_episode(6, "pick", source), staging, VCFG)
    moved = root / video_path(0, CAM)  # an interrupted publish had moved the video, not written the Parquet
    moved.parent.mkdir(parents=True)
    (staging / "videos" / f"{CAM}.mp4").rename(moved)
    assert read_published(root) == []
    publish_episode(staging, root, 0, 0, {})
    assert probe(moved).n_frames == 6 and pq.read_table(root / data_path(0)).num_rows == 6


def test_finalize_refuses_inconsistent_numbering(dataset: Path, source: Path, tmp_path: Path) -> None:
    stage_episode(make_episode(3, "open the door", source, 4), tmp_path / "s2", VCFG)
    publish_episode(tmp_path / "s2", dataset, 2, 12, {"open the door": 0})  # it is task 1
    with pytest.raises(ValueError, match="episode 2: task_index"):
        finalize_meta(dataset, "egodex", SRC_CFG, [])
    stage_episode(make_episode(3, "open the door", source, 4), tmp_path / "s2", VCFG)
    publish_episode(tmp_path / "s2", dataset, 2, 13, task_table(read_published(dataset)))
    with pytest.raises(ValueError, match="episode 2: index starts at 13, expected 12"):
        finalize_meta(dataset, "egodex", SRC_CFG, [])


def test_modality_json_slices_tile_the_vector_and_match_the_names() -> None:
    from schemas.lerobot import modality_json

    m = modality_json([CAM])
    names = dimension_names()
    for group in (m.state, m.action):
        spans = sorted((s.start, s.end) for s in group.values())
        assert spans[0][0] == 0 and spans[-1][1] == VECTOR_DIM
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        for key, s in group.items():
            side, part = key.split("_", 1)
            prefix = {"rotation": "rot6d", "keypoints": "keypoint"}.get(part, part)
            assert all(n.startswith(f"{side}.{prefix}") for n in names[s.start : s.end]), key
    assert [k for k, s in m.action.items() if not s.absolute] == [
        "left_position", "left_rotation", "right_position", "right_rotation",
    ]  # fmt: skip
    assert m.video == {"ego": {"original_key": CAM}}


def test_extra_columns_and_image_sequence_video(tmp_path: Path) -> None:
    """A robot-style episode: the source's own action as `action.native`, frames from encoded images."""
    import io

    from PIL import Image

    from ingest.validate import validate_dataset
    from schemas.episode import ExtraColumn

    def png(level: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.full((48, 64, 3), level, np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    images = [png(20 * k) for k in range(6)]  # source steps 0..5, grey level 20k
    ep = make_episode(6, "stack the cups", None, 3)
    native = np.arange(6 * 7, dtype=np.float32).reshape(6, 7)
    ep.extra = {"action.native": ExtraColumn(values=native, names=[f"a{i}" for i in range(7)])}
    picks = np.array([0, 0, 1, 2, 4, 5])
    ep.videos = {CAM: VideoSource(path=tmp_path / "shard-0", frame_indices=picks, images=images)}
    stage_episode(ep, tmp_path / "s", VCFG)
    publish_episode(tmp_path / "s", tmp_path / "ds", 0, 0, {})
    info = finalize_meta(tmp_path / "ds", "egodex", SRC_CFG, [])
    assert info.features["action.native"].shape == [7] and info.features["action.native"].names[6] == "a6"
    table = pq.read_table(tmp_path / "ds" / data_path(0))
    np.testing.assert_array_equal(np.asarray(table.column("action.native").to_pylist()), native)
    stats = read_published(tmp_path / "ds")[0].stats["action.native"]
    assert stats.max == native.max(0).tolist() and stats.count == [6]
    with av.open(str(tmp_path / "ds" / video_path(0, CAM))) as c:
        levels = [float(f.to_ndarray(format="rgb24").mean()) for f in c.decode(video=0)]
    np.testing.assert_allclose(levels, 20 * picks, atol=3)
    assert validate_dataset(tmp_path / "ds") == []


def test_an_image_that_does_not_decode_is_a_named_video_error(tmp_path: Path) -> None:
    from ingest.video import transcode

    images = [b"\x89PNG not really"] * 3
    with pytest.raises(EpisodeError, match=r"shard-7: video: .*image 0 does not decode"):
        transcode(tmp_path / "shard-7", np.array([0, 1, 2]), tmp_path / "out.mp4", VCFG, images=images)
    assert not (tmp_path / "out.mp4").exists()


def test_annotation_text_becomes_task_rows(tmp_path: Path, source: Path) -> None:
    """Per-frame sub-skill text is written as int64 rows of tasks.jsonl (GR00T's annotation.* style)."""
    first = make_episode(5, "make tea", source, 0)
    first.annotations = {"annotation.subtask": ["grasp kettle"] * 2 + ["pour water"] * 3}
    second = make_episode(4, "pour water", source, 1)  # its caption is the first one's subtask
    second.annotations = {"annotation.subtask": ["pour water", "pour water", "", ""]}
    root, tasks, start = tmp_path / "ds", {}, 0
    for i, ep in enumerate((first, second)):
        stage_episode(ep, tmp_path / f"s{i}", VCFG)
        start += publish_episode(tmp_path / f"s{i}", root, i, start, tasks).record.length
    info = finalize_meta(root, "egodex", SRC_CFG, [])
    rows = [json.loads(x) for x in (root / "meta/tasks.jsonl").read_text().splitlines()]
    table = [r["task"] for r in rows]
    assert table == ["make tea", "grasp kettle", "pour water", ""]
    sub0 = pq.read_table(root / data_path(0))["annotation.subtask"].to_pylist()
    sub1 = pq.read_table(root / data_path(1))["annotation.subtask"].to_pylist()
    assert [table[k] for k in sub0] == first.annotations["annotation.subtask"]
    assert [table[k] for k in sub1] == second.annotations["annotation.subtask"]
    assert pq.read_table(root / data_path(1))["task_index"].to_pylist() == [2] * 4
    episodes = [json.loads(x) for x in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert [e["tasks"] for e in episodes] == [["make tea", "grasp kettle", "pour water"], ["pour water", ""]]
    assert info.features["annotation.subtask"].dtype == "int64" and info.total_tasks == 4
    modality = json.loads((root / "meta/modality.json").read_text())
    assert modality["annotation"]["subtask"] == {"original_key": "annotation.subtask"}
    assert validate_dataset(root) == []


def test_annotation_length_must_match(source: Path, tmp_path: Path) -> None:
    ep = make_episode(5, "make tea", source, 0)
    ep.annotations = {"annotation.subtask": ["grasp"] * 4}
    with pytest.raises(EpisodeError, match="annotation.subtask: expected 5 strings"):
        stage_episode(ep, tmp_path / "s", VCFG)


def test_rewrite_episode_meta_renumbers_tasks(tmp_path: Path, source: Path) -> None:
    """New captions give a new task table; annotation columns keep their texts, meta is rebuilt."""
    first = make_episode(4, "make tea", source, 0)
    first.annotations = {"annotation.subtask": ["grasp", "grasp", "pour", "pour"]}
    second = make_episode(3, "open the door", source, 1)
    second.annotations = {"annotation.subtask": ["", "", ""]}  # every episode has the same columns
    root, tasks, start = tmp_path / "ds", {}, 0
    for i, ep in enumerate((first, second)):
        stage_episode(ep, tmp_path / f"s{i}", VCFG)
        start += publish_episode(tmp_path / f"s{i}", root, i, start, tasks).record.length
    finalize_meta(root, "egodex", SRC_CFG, [])
    new_caption = {"ep_0": "pour", "ep_1": "open the door"}  # episode 0's caption is now a subtask

    def update(ep):
        return ep.record.model_copy(update={"caption": new_caption[ep.record.source_episode_id]})

    assert rewrite_episode_meta(root, update) == 2  # episode 1's task_index moves from 3 to 2 too
    finalize_meta(root, "egodex", SRC_CFG, [])
    table = [json.loads(x)["task"] for x in (root / "meta/tasks.jsonl").read_text().splitlines()]
    assert table == ["pour", "grasp", "open the door", ""]
    sub = pq.read_table(root / data_path(0))["annotation.subtask"].to_pylist()
    assert [table[k] for k in sub] == ["grasp", "grasp", "pour", "pour"]
    assert pq.read_table(root / data_path(1))["task_index"].to_pylist() == [2] * 3
    assert validate_dataset(root) == []
    assert rewrite_episode_meta(root, update) == 0  # a second run changes nothing


def test_a_camera_some_episodes_lack_is_not_published(tmp_path: Path, source: Path) -> None:
    """Episode 1 has no camera (a record whose camera the source flags absent): the dataset's features
    are the same for every episode, so the camera is not a feature, episode 0's video is removed, the
    camera has no stats, and the dataset validates."""
    root, start, tasks = tmp_path / "ds", 0, {}
    eps = [make_episode(7, "pick the cup", source, 0), make_episode(5, "open the door", None, 1)]
    for i, ep in enumerate(eps):
        stage_episode(ep, tmp_path / "staging" / f"s{i}", VCFG)
        publish_episode(tmp_path / "staging" / f"s{i}", root, i, start, tasks)
        start += ep.length
    assert (root / video_path(0, CAM)).is_file()  # published with its episode
    info = finalize_meta(root, "egodex", SRC_CFG, [])
    assert info.video_keys() == [] and info.total_videos == 0 and info.video_path is None
    assert not (root / video_path(0, CAM)).exists() and not (root / "videos/chunk-000").exists()
    lines = (root / "meta/episodes_stats.jsonl").read_text().splitlines()
    assert all(CAM not in json.loads(x)["stats"] for x in lines)
    assert validate_dataset(root) == []
