"""The Ray Data job end to end: local Ray, rejects, resume after a real kill, and a real Ray cluster."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ingest.cli import app
from ingest.job import RunOptions, run
from ingest.validate import validate_dataset
from schemas.errors import Refused
from tests.fixtures.egodex import BAD_FIELD, decode_frame_index, write_dataset, write_episode

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]
BIN = Path(sys.executable).parent
BAD_KINDS = ["truncated_mp4", "no_mp4", "missing_joint", "nan_pose", "zero_length", "non_orthonormal"]


def _opts(inp: Path, out: Path, **kw) -> RunOptions:
    base = {"source": "egodex", "input": inp, "output": out, "workers": 2, "progress": False}
    return RunOptions(**{**base, **kw})


def _episodes(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]


def _vectors(root: Path, episode_index: int) -> dict[str, np.ndarray]:
    table = pq.read_table(root / f"data/chunk-000/episode_{episode_index:06d}.parquet")
    keys = ("observation.state", "action", "observation.state_mask", "action_mask", "index")
    return {k: np.asarray(table.column(k).to_pylist()) for k in keys}


def _video_source_frames(root: Path, episode_index: int) -> list[int]:
    """Which source frame each output frame shows (the fixture paints its index into every frame)."""
    path = root / f"videos/chunk-000/observation.images.ego/episode_{episode_index:06d}.mp4"
    with av.open(str(path)) as container:
        return [decode_frame_index(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def mixed_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Four good episodes and one of each bad kind, in the same input folder."""
    root = tmp_path_factory.mktemp("egodex-mixed")
    good = write_dataset(root, 4, 40)
    expected = {f"test/{e.task}/{e.hdf5.stem}": e for e in good}
    for k, bad in enumerate(BAD_KINDS):
        e = write_episode(root / "test" / "zz_bad", k, 40, bad=bad)
        expected[f"test/zz_bad/{k}"] = e
    return root, expected


def test_local_run_publishes_good_and_rejects_bad(mixed_input, tmp_path: Path) -> None:
    inp, expected = mixed_input
    summary = run(_opts(inp, tmp_path, max_reject_ratio=1.0))
    root = tmp_path / "egodex"
    assert (summary.published, summary.rejected, summary.total_episodes) == (4, 6, 4)
    assert summary.reject_ratio == pytest.approx(6 / 10)
    assert validate_dataset(root) == []
    start = 0
    for ep in _episodes(root):
        want = expected[ep["source_episode_id"]]
        got = _vectors(root, ep["episode_index"])
        np.testing.assert_allclose(got["observation.state"], want.state, atol=1e-5)
        np.testing.assert_allclose(got["action"], want.action, atol=1e-5)
        np.testing.assert_array_equal(got["observation.state_mask"], want.state_mask)
        np.testing.assert_array_equal(got["index"], np.arange(start, start + ep["length"]))
        # the template captioner: "Do the X task forwards." -> "do the X task forwards"; source text kept
        template = want.caption[0].lower() + want.caption[1:].removesuffix(".")
        assert (ep["caption"], ep["caption_source"]) == (template, "template")
        assert ep["task_original"] == want.caption
        assert _video_source_frames(root, ep["episode_index"]) == want.frame_indices.tolist()
        start += ep["length"]
    rejects = [json.loads(line) for line in (root / "meta/rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == len(BAD_KINDS)
    for k, bad in enumerate(BAD_KINDS):
        (rej,) = [r for r in rejects if f"zz_bad/{k}." in r["error"]]
        field = BAD_FIELD[bad] or "video"
        assert field in rej["error"], (bad, rej)
        assert rej["source_path"].endswith((f"{k}.hdf5", f"{k}.mp4"))


def test_rerun_skips_published_and_cli_exit_status(mixed_input, tmp_path: Path) -> None:
    inp, _ = mixed_input
    run(_opts(inp, tmp_path, max_reject_ratio=1.0))
    root = tmp_path / "egodex"
    first = {p.name: p.stat().st_mtime_ns for p in root.glob("data/chunk-000/*.parquet")}
    args = ["run", "egodex", "--input", str(inp), "--output", str(tmp_path), "--workers", "2"]
    args.append("--no-progress")
    result = CliRunner().invoke(app, args)
    # Only the six bad episodes were attempted again: ratio 1.0 > 0.05, so the exit status is 1.
    assert result.exit_code == 1, result.output
    assert "4 episodes" in result.output and "4 source items already published" in result.output
    again = {p.name: p.stat().st_mtime_ns for p in root.glob("data/chunk-000/*.parquet")}
    assert again == first
    assert len((root / "meta/rejects.jsonl").read_text().splitlines()) == len(BAD_KINDS)


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every published file's bytes (meta, Parquet, MP4), keyed by path relative to the dataset."""
    files = [p for p in root.rglob("*") if p.is_file() and ".work" not in p.parts]
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(files)}


def test_killed_run_resumes_to_the_same_dataset(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    write_dataset(inp, 12, 150, width=320, height=180)
    whole = tmp_path / "whole"
    run(_opts(inp, whole, workers=1))
    cmd = [str(BIN / "ingest"), "run", "egodex", "--input", str(inp), "--output", str(tmp_path / "killed")]
    proc = subprocess.Popen([*cmd, "--workers", "1", "--no-progress"], start_new_session=True)
    target = tmp_path / "killed/egodex/data/chunk-000/episode_000001.parquet"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    published = sorted((tmp_path / "killed/egodex/data").rglob("*.parquet"))
    assert 2 <= len(published) < 12, "the kill must land halfway"
    result = subprocess.run([*cmd, "--workers", "1", "--no-progress"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{12 - len(published)} published" in result.stdout
    assert _snapshot(tmp_path / "killed/egodex") == _snapshot(whole / "egodex")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path: Path):
    """A real Ray head on loopback, started the way a user starts a cluster, in its own temp dir so that
    stopping it leaves every other Ray on the machine (the session's own) alone."""
    port, temp = _free_port(), Path(tempfile.mkdtemp(prefix="rayhead-", dir="/tmp"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [str(BIN / "ray"), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1"]
    start += ["--num-cpus=2", "--num-gpus=0", "--object-store-memory=268435456", "--include-dashboard=false"]
    subprocess.run([*start, f"--temp-dir={temp}"], check=True, env=env, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _kill_processes_mentioning(str(temp))
        shutil.rmtree(temp, ignore_errors=True)


def _kill_processes_mentioning(text: str) -> None:
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        if any(text in arg for arg in proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def test_cluster_path_with_address(ray_head: str, tmp_path: Path) -> None:
    inp = tmp_path / "in"
    expected = write_dataset(inp, 3, 40)
    cmd = [str(BIN / "ingest"), "run", "egodex", "--input", str(inp), "--output", str(tmp_path / "out")]
    result = subprocess.run([*cmd, "--address", ray_head, "--no-progress"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "out/egodex"
    assert validate_dataset(root) == []
    by_id = {f"test/{e.task}/{e.hdf5.stem}": e for e in expected}
    for ep in _episodes(root):
        got = _vectors(root, ep["episode_index"])
        np.testing.assert_allclose(got["action"], by_id[ep["source_episode_id"]].action, atol=1e-5)
    # The driver really joined that cluster: the head's job table lists it as finished.
    probe = "import ray, sys; ray.init(address=sys.argv[1]); print(len(ray._private.state.jobs()))"
    out = subprocess.run([sys.executable, "-c", probe, ray_head], capture_output=True, text=True)
    assert int(out.stdout.strip().splitlines()[-1]) >= 2, out.stderr  # the ingest driver + this probe
    shutil.rmtree(root)


def test_cut_recording_resumes_between_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording cut into parts, with the run dying after two of four parts were published."""
    from ingest.job import Publisher, convert_one
    from ingest.sources import egodex
    from ingest.writer import finalize_meta
    from schemas.pipelines import PipelinesFile

    monkeypatch.setattr(egodex, "MAX_FRAMES", 10)  # 94 source frames -> 32 at 10 Hz -> 10+10+10+2
    write_episode(tmp_path / "in" / "test" / "long_task", 0, 94)
    cfg = PipelinesFile.load(RunOptions.model_fields["pipelines"].default).source("egodex")
    (ref,) = egodex.SOURCE.discover(tmp_path / "in", cfg)

    def ingest(root: Path, die_after: int | None) -> None:
        pub = Publisher(root)
        if pub.is_done(ref, root / ".work"):
            return
        staged = convert_one(ref, cfg, root / ".work").staged
        if die_after is not None:
            for part in staged[:die_after]:
                pub.publish(Path(part))
            return
        pub.publish_all(staged)
        finalize_meta(root, "egodex", cfg, [])

    ingest(tmp_path / "whole", None)
    ingest(tmp_path / "killed", 2)
    assert Publisher(tmp_path / "killed").next_episode == 2
    ingest(tmp_path / "killed", None)
    ids = [e["source_episode_id"] for e in _episodes(tmp_path / "killed")]
    assert ids == [f"test/long_task/0#{i}" for i in range(4)]
    assert [e["length"] for e in _episodes(tmp_path / "killed")] == [10, 10, 10, 2]
    assert validate_dataset(tmp_path / "killed") == []
    assert _snapshot(tmp_path / "killed") == _snapshot(tmp_path / "whole")
    assert Publisher(tmp_path / "killed").is_done(ref, tmp_path / "killed/.work")


def test_second_run_on_the_same_dataset_fails_at_once(tmp_path: Path) -> None:
    from ingest.workdir import dataset_lock

    write_dataset(tmp_path / "in", 1, 10)
    with dataset_lock(tmp_path / "out" / "egodex"), pytest.raises(Refused, match="another `ingest run`"):
        run(_opts(tmp_path / "in", tmp_path / "out"))
    assert not (tmp_path / "out/egodex/meta").exists()
