"""LeRobot v3.0 input: episodes packed into shared Parquet files and concatenated MP4s (generated with known
values: each episode's state is shifted by 0.01 e, each video frame shows `256 e + row`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest import video
from ingest.errors import EpisodeError
from ingest.sources.lerobot import SOURCE
from ingest.sources.lerobot_meta import load_meta
from schemas.source_config import VideoConfig
from schemas.sources_lerobot import LeRobotInputConfig
from tests.fixtures import lerobot as fx

CAM = "observation.images.front"
LENGTHS = [61, 45, 50, 31, 40]  # data files hold episodes {0, 1}, {2, 3}, {4}; videos {0, 1, 2}, {3, 4}
R_OFF = 73


def config(**kw: Any) -> LeRobotInputConfig:
    base: dict[str, Any] = {
        "format": "lerobot", "source_version": "test", "license": "test", "embodiment": "test_arm",
        "embodiment_kind": "sim_robot", "reference_frame": "base", "native_fps": 30,
        "right": {"position": "observation.state[0:3]", "rotation": "observation.state[3:7]",
                  "gripper": "observation.state[7:8]", "gripper_open": 0.08},
    }  # fmt: skip
    return LeRobotInputConfig.model_validate(base | kw)


@pytest.fixture
def v3(tmp_path: Path) -> Path:
    root = tmp_path / "v3set"
    fx.write_v3(root, fx.Spec(lengths=LENGTHS, annotations=True))
    return root


def test_v3_discover_locates_each_episode(v3: Path) -> None:
    refs = SOURCE.discover(v3, config())
    assert [r.source_episode_id for r in refs] == [f"v3set/episode_{e:06d}" for e in range(5)]
    assert [Path(r.files["parquet"]).name for r in refs] == ["file-000.parquet"] * 2 + [
        "file-001.parquet"
    ] * 2 + ["file-002.parquet"]
    assert [Path(r.files[f"video:{CAM}"]).name for r in refs] == ["file-000.mp4"] * 3 + ["file-001.mp4"] * 2
    meta = load_meta(v3.resolve())
    assert meta.tasks == dict(enumerate(fx.TASKS))  # pandas wrote the text as the index
    assert [meta.episodes[e].rows for e in range(5)] == [
        (0, 61),
        (61, 106),
        (106, 156),
        (156, 187),
        (187, 227),
    ]


def test_v3_episode_rows_are_its_own(v3: Path) -> None:
    """Each episode converts from its own rows of the shared file: state = motion + 0.01 e, 10 Hz."""
    episodes = [SOURCE.convert(r, config())[0] for r in SOURCE.discover(v3, config())]
    assert [ep.length for ep in episodes] == [21, 15, 17, 11, 14]
    for e, ep in enumerate(episodes):
        k = np.arange(ep.length) / 10
        np.testing.assert_allclose(ep.state[:, R_OFF : R_OFF + 3], fx.position(k, e), atol=2e-6)
        np.testing.assert_allclose(ep.state[:, R_OFF + 9], fx.gripper_m(k) / 0.08, atol=2e-6)
        assert ep.meta.caption == fx.TASKS[e % 2 * 2]
        half = [fx.TASKS[0] if 3 * i < LENGTHS[e] // 2 else fx.TASKS[2] for i in range(ep.length)]
        assert ep.annotations["annotation.human.action.task_description"] == half


def test_v3_video_window_frames(v3: Path) -> None:
    """The planned frames of episode e are its own rows 3k inside the concatenated MP4."""
    files = {f: fx.decode_codes(v3 / f"videos/{CAM}/chunk-000/file-{f:03d}.mp4") for f in (0, 1)}
    assert len(files[0]) == 61 + 45 + 50 and len(files[1]) == 31 + 40
    for e, ref in enumerate(SOURCE.discover(v3, config())):
        (ep,) = SOURCE.convert(ref, config())
        plan = ep.videos["observation.images.front"]
        codes = [files[int(e >= 3)][i] for i in plan.frame_indices]
        assert codes == [fx.frame_code(e, 3 * k) for k in range(ep.length)]


def test_v3_transcoded_episode_shows_its_frames(v3: Path, tmp_path: Path) -> None:
    """Through the writer's transcoder: the 10 Hz output of episode 4 (second MP4, from 31 frames in)."""
    ref = SOURCE.discover(v3, config())[4]
    (ep,) = SOURCE.convert(ref, config())
    plan, out = ep.videos["observation.images.front"], tmp_path / "out.mp4"
    assert plan.frame_indices[0] == 31
    video.transcode(plan.path, plan.frame_indices, out, VideoConfig(width=64, height=64, crf=10))
    assert fx.decode_codes(out) == [fx.frame_code(4, 3 * k) for k in range(ep.length)]


def test_v3_short_video_window_rejected_others_convert(tmp_path: Path) -> None:
    """Episode 1's video has 40 frames for 45 rows: a named reject; episode 2 (same MP4, after it) and
    episode 0 still convert, each from its own window."""
    root = tmp_path / "ds"
    fx.write_v3(root, fx.Spec(lengths=LENGTHS, video_frames={(1, CAM): 40}))
    refs = SOURCE.discover(root, config())
    with pytest.raises(
        EpisodeError, match="video shorter than the episode: window 2.033-3.367 s for 45 rows"
    ) as err:
        SOURCE.convert(refs[1], config())
    assert (err.value.field, err.value.stage) == (CAM, "read")
    codes = fx.decode_codes(root / f"videos/{CAM}/chunk-000/file-000.mp4")
    (ep2,) = SOURCE.convert(refs[2], config())
    assert [codes[i] for i in ep2.videos[CAM].frame_indices] == [fx.frame_code(2, 3 * k) for k in range(17)]


def _rewrite_episode_meta(root: Path, column: str, episode: int, value: Any) -> None:
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[episode][column] = value
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_v3_rows_disagreeing_with_meta_rejected(v3: Path) -> None:
    _rewrite_episode_meta(v3, "dataset_to_index", 1, 100)
    load_meta.cache_clear()
    ref = SOURCE.discover(v3, config())[1]
    with pytest.raises(EpisodeError, match="episode 1: 45 rows, meta/episodes says 39") as err:
        SOURCE.convert(ref, config())
    assert (err.value.field, err.value.stage) == ("episode_index", "read")


def test_v3_missing_meta_column_refused(v3: Path) -> None:
    path = v3 / "meta/episodes/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["data/file_index"]), path)
    load_meta.cache_clear()
    with pytest.raises(EpisodeError, match="column missing in the episodes Parquet") as err:
        SOURCE.discover(v3, config())
    assert (err.value.field, err.value.stage) == ("data/file_index", "discover")


def test_v3_tasks_with_a_task_column(v3: Path) -> None:
    pq.write_table(pa.table({"task_index": [0, 1, 2], "task": ["a", "b", "c"]}), v3 / "meta/tasks.parquet")
    load_meta.cache_clear()
    assert load_meta(v3.resolve()).tasks == {0: "a", 1: "b", 2: "c"}
    (ep,) = SOURCE.convert(SOURCE.discover(v3, config())[1], config())
    assert ep.meta.caption == "c"
