"""A full disk while publishing leaves the published set valid and the staging complete, the re-run gives
the same bytes; `ingest validate` names a half-published episode; clear video rejects (issue 15 item 7)."""

from __future__ import annotations

import errno
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from ingest import writer
from ingest.errors import EpisodeError
from ingest.sources.clips import read_timeline
from ingest.validate import validate_dataset
from schemas.lerobot import data_path, video_path
from tests.fixtures.configs import CAM, SRC_CFG, VCFG, make_source
from tests.test_writer import REJECTS, make_episode


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("src") / "src.mp4", 30)


def _stage(tmp_path: Path, source: Path) -> list[Path]:
    eps = [make_episode(7, "pick the cup", source, 0), make_episode(5, "open the door", source, 1)]
    dirs = [tmp_path / "staging" / f"s{i}" for i in range(len(eps))]
    for ep, d in zip(eps, dirs, strict=True):
        writer.stage_episode(ep, d, VCFG)
    return dirs


def _publish(dirs: list[Path], root: Path) -> None:
    tasks, start = writer.task_table(writer.read_published(root)), 0
    for i, d in enumerate(dirs):
        if writer.is_staged(d):
            start = sum(p.record.length for p in writer.read_published(root))
            writer.publish_episode(d, root, i, start, tasks)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_full_disk_while_publishing_leaves_a_valid_set_and_the_rerun_same_bytes(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = tmp_path / "clean"
    _publish(_stage(tmp_path / "a", source), clean)
    writer.finalize_meta(clean, "egodex", SRC_CFG, REJECTS)

    root, dirs = tmp_path / "ds", _stage(tmp_path / "b", source)
    real_write = writer.pq.write_table

    def full_disk(table, where, *a, **kw):  # the first publish succeeds, the second's Parquet hits ENOSPC
        if "000001" in str(where):
            Path(where).write_bytes(b"PAR1 half")
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real_write(table, where, *a, **kw)

    monkeypatch.setattr(writer.pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _publish(dirs, root)
    assert not (root / video_path(1, CAM)).exists(), "a video without its Parquet was left in the dataset"
    assert not list(root.rglob("*.tmp")) and not (root / data_path(1)).exists()
    assert writer.is_staged(dirs[1]) and (dirs[1] / "videos" / f"{CAM}.mp4").is_file()
    writer.finalize_meta(root, "egodex", SRC_CFG, REJECTS)
    assert validate_dataset(root) == []  # the published set (episode 0) is a valid dataset

    monkeypatch.setattr(writer.pq, "write_table", real_write)
    _publish(dirs, root)  # the re-run: what is staged is published
    writer.finalize_meta(root, "egodex", SRC_CFG, REJECTS)
    assert _files(root) == _files(clean)


def test_validate_names_a_half_published_episode(tmp_path: Path, source: Path) -> None:
    root, dirs = tmp_path / "ds", _stage(tmp_path, source)
    _publish(dirs[:1], root)
    writer.finalize_meta(root, "egodex", SRC_CFG, REJECTS)
    assert validate_dataset(root) == []
    (root / video_path(1, CAM)).write_bytes((root / video_path(0, CAM)).read_bytes())  # killed after the move
    problems = validate_dataset(root)
    assert [p.file for p in problems] == [video_path(1, CAM)]
    assert "half-published episode 1" in problems[0].message and "ingest run" in problems[0].message


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 16000, 0, Fraction(1, 16000)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def _no_frames(path: Path) -> Path:
    """A video stream with no frame (an MP4 without samples loses the stream: AVI keeps it)."""
    path = path.with_suffix(".avi")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        out.start_encoding()
    return path


@pytest.mark.parametrize(("make", "message"), [(_audio_only, "no video stream"), (_no_frames, "0 frames")])
def test_video_rejects_say_what_is_wrong(make, message: str, tmp_path: Path) -> None:
    path = make(tmp_path / "clip.mp4")
    with pytest.raises(EpisodeError, match=message) as e:
        read_timeline(path)
    assert e.value.path == str(path) and e.value.field == "video"
    assert "IndexError" not in str(e.value) and "StopIteration" not in str(e.value)


def test_a_missing_video_file_is_named(tmp_path: Path) -> None:
    shutil.rmtree(tmp_path, ignore_errors=True)
    with pytest.raises(EpisodeError, match="video file missing"):
        read_timeline(tmp_path / "gone.mp4")
