"""A real two-node Ray cluster on this machine (`tests/fixtures/ray_cluster.py`): `ingest run`, `ingest
latents` and `train launch --num-workers 2` join it with `--address` and give what a local run gives,
also when the second node's raylet is killed (SIGKILL, by PID) in the middle of the job.

Each node has two CPUs (a CPU-only latents job needs one for its encoder actor and one for a decoding task
on the node that survives); the ingest and latents tests check the second node's worker logs to be sure
it did run some of the job; the training test leaves one free CPU per node, so each node takes a worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from catalog.index import build
from catalog.mixture import write_mixture
from catalog.mixture_file import Mixture, MixtureEntry
from ingest.job import RunOptions, run
from ingest.latents_job import LatentsOptions, run_latents
from ingest.validate import validate_dataset
from schemas.latents import LatentsConfig
from tests.fixtures.dino import save_tiny_dino
from tests.fixtures.egodex import write_dataset
from tests.fixtures.ray_cluster import RayCluster, namespaces_available
from train.loop import fit
from train.state import TrainOptions

pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_local"),
    pytest.mark.skipif(not namespaces_available(), reason="needs unshare -fp (root or user namespaces)"),
]
BIN = Path(sys.executable).parent
EPISODES = 8
JOB_TIMEOUT = 300


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster(cpus_per_node=2)
    try:
        c.start_head()
        c.add_worker()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The EgoDex input, its dataset from a local run, and that dataset's latents from a local run."""
    tmp = tmp_path_factory.mktemp("cluster")
    write_dataset(tmp / "in", EPISODES, 40, width=160, height=90)
    run(RunOptions(source="egodex", input=tmp / "in", output=tmp / "local", workers=2, progress=False))
    save_tiny_dino(tmp / "dino")
    shutil.copytree(tmp / "local/egodex", tmp / "local-latents/egodex")
    cfg = LatentsConfig(model_dir=tmp / "dino")
    run_latents(LatentsOptions(dataset=tmp / "local-latents/egodex", latents=cfg, workers=2, progress=False))
    return tmp


def _snapshot(root: Path, under: str = "") -> dict[str, bytes]:
    """Every published file's bytes, keyed by path relative to the dataset (`.work/` left out)."""
    files = [p for p in (root / under).rglob("*") if p.is_file() and ".work" not in p.relative_to(root).parts]
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(files)}


def _start(cmd: list[str], cluster: RayCluster) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when_started(proc: subprocess.Popen, cluster: RayCluster, node: Path, name: str) -> None:
    """SIGKILL `node`'s raylet as soon as it starts a task (or actor) `name` for the job `proc` runs."""
    before, deadline = cluster.ran_on(node, name), time.time() + JOB_TIMEOUT
    while cluster.ran_on(node, name) == before and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before the second node ran any of it"
    cluster.kill_raylet(node)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=JOB_TIMEOUT)
    assert proc.returncode == 0, err[-3000:]
    return out


def _ingest(data: Path, out: Path, cluster: RayCluster) -> list[str]:
    return [str(BIN / "ingest"), "run", "egodex", "--input", str(data / "in"), "--output", str(out),
            "--address", cluster.address, "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("kill", [False, True], ids=["both-nodes", "second-node-killed"])
def test_ingest_on_two_nodes(cluster: RayCluster, data: Path, tmp_path: Path, kill: bool) -> None:
    node = cluster.live_worker()
    proc = _start(_ingest(data, tmp_path, cluster), cluster)
    if kill:
        _kill_when_started(proc, cluster, node, "_convert_row")
    out = _finish(proc)
    assert f"{EPISODES} episodes" in out and f"{EPISODES} published" in out
    assert cluster.ran_on(node, "_convert_row") >= 1, "the second node converted nothing"
    ids = [json.loads(x)["source_episode_id"] for x in (tmp_path / "egodex/meta/episodes.jsonl").open()]
    assert len(ids) == len(set(ids)) == EPISODES  # none lost, none twice
    assert _snapshot(tmp_path / "egodex") == _snapshot(data / "local/egodex")
    assert validate_dataset(tmp_path / "egodex") == []


@pytest.mark.parametrize("kill", [False, True], ids=["both-nodes", "second-node-killed"])
def test_latents_on_two_nodes(cluster: RayCluster, data: Path, tmp_path: Path, kill: bool) -> None:
    node = cluster.live_worker()
    shutil.copytree(data / "local/egodex", tmp_path / "egodex")
    cmd = [str(BIN / "ingest"), "latents", str(tmp_path / "egodex"), "--model-dir", str(data / "dino"),
           "--address", cluster.address, "--no-progress"]  # fmt: skip
    proc = _start(cmd, cluster)
    if kill:
        _kill_when_started(proc, cluster, node, "_decode_rows")
    _finish(proc)
    assert cluster.ran_on(node, "_decode_rows") >= 1, "the second node decoded nothing"
    expected = _snapshot(data / "local-latents/egodex", "latents")
    assert len(expected) == EPISODES
    assert _snapshot(tmp_path / "egodex", "latents") == expected
    got, want = (
        json.loads((r / "meta/latents.json").read_text())
        for r in (tmp_path / "egodex", data / "local-latents/egodex")
    )
    assert got == want


@pytest.fixture(scope="module")
def train_root(data: Path) -> tuple[Path, Path]:
    root = data / "train-root"
    shutil.copytree(data / "local-latents/egodex", root / "hands", ignore=shutil.ignore_patterns(".work"))
    build(root)
    entry = MixtureEntry(name="hands", where='category == "human_action"', weight=1.0)
    return root, write_mixture(
        Mixture(name="hands", weighting="explicit", entries=[entry]), data / "mix.yaml"
    )


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_on_two_nodes(cluster: RayCluster, train_root: tuple[Path, Path], tmp_path: Path) -> None:
    root, mixture = train_root
    cluster.live_worker()
    fit(TrainOptions(mixture=mixture, root=root, out=tmp_path / "one", config="tiny", batch_size=8, steps=3,
                     grad_accum=2, loader_workers=0, progress=False))  # fmt: skip
    cmd = [str(BIN / "train"), "launch", "--mixture", str(mixture), "--root", str(root), "--config", "tiny",
           "--steps", "3", "--batch-size", "8", "--loader-workers", "0", "--num-workers", "2", "--address",
           cluster.address, "--out", str(tmp_path / "two"), "--no-progress"]  # fmt: skip
    # One CPU left free on each node, so that the two workers (a CPU each) must take one node each: Ray
    # Train packs them onto one node otherwise. (Their log markers proved unreliable: seen on one node in
    # one run, on none of a node in the next; a training worker's buffered stdout may be lost at its end.)
    holder = cluster.hold_cpus(per_node=1)
    try:
        _finish(_start(cmd, cluster))
    finally:
        holder.kill()
        holder.wait()
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [r["step"] for r in two] == [0, 1, 2]
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)
    assert np.isfinite([r["loss"] for r in two]).all()
