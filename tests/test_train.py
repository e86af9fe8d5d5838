"""`train launch` / `train eval` end to end on datasets the tests ingest: losses fall, task counts follow
the mixture's tiers, `--resume` after a real kill continues exactly, two Ray Train workers compute the
same steps as one process with gradient accumulation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from catalog.index import build
from catalog.mixture import write_mixture
from catalog.mixture_file import Mixture, MixtureEntry
from tests.fixtures.training import training_root
from train.cli import app
from train.loop import fit
from train.state import TrainOptions

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]
BIN = Path(sys.executable).parent
ALL = ["policy", "forward_dynamics", "inverse_dynamics", "visual_forecasting"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    return training_root(tmp_path_factory.mktemp("train"))


def _mixture(root: Path, name: str, entries: list[MixtureEntry]) -> Path:
    return write_mixture(
        Mixture(name=name, weighting="explicit", entries=entries), root.parent / f"{name}.yaml"
    )


@pytest.fixture(scope="module")
def both(root: Path) -> Path:
    return _mixture(root, "both", [
        MixtureEntry(name="hands", where='category == "human_action"', weight=1.0),
        MixtureEntry(name="video", where='category == "human_actionless"', weight=1.0),
    ])  # fmt: skip


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _opts(root: Path, mixture: Path, out: Path, **kw) -> TrainOptions:
    base = {"mixture": mixture, "root": root, "out": out, "config": "tiny", "batch_size": 8,
            "loader_workers": 0, "progress": False}  # fmt: skip
    return TrainOptions(**{**base, **kw})


def test_losses_fall_and_eval_reports_l1(root: Path, both: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["launch", "--mixture", str(both), "--root", str(root), "--out", str(out), "--steps", "200",
            "--batch-size", "8", "--lr", "1e-3", "--loader-workers", "0", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    m = _metrics(out)
    assert [r["step"] for r in m] == list(range(200))
    first = sum(r["loss"] for r in m[:20]) / 20
    last = sum(r["loss"] for r in m[-20:]) / 20
    assert last < 0.7 * first, (first, last)
    assert all(set(r["counts"]) == set(ALL) and sum(r["counts"].values()) == 8 for r in m)
    assert sum(r["counts"]["policy"] for r in m) > 100  # the high-tier hands train the policy too
    ev = CliRunner().invoke(app, ["eval", "--run", str(out), "--samples", "16", "--draws", "2"])
    assert ev.exit_code == 0, ev.output
    l1 = float(next(x for x in ev.output.splitlines() if x.startswith("policy action L1")).split(":")[1])
    assert 0 < l1 < 1.0  # metres / rotation / gripper units: a trained tiny model is not wild
    _check_eval_report(ev.output, out, root, both, l1)


def _check_eval_report(output: str, out: Path, root: Path, mixture: Path, l1: float) -> None:
    """The table is printed and eval.json holds the numbers; the action baselines and the latent ones,
    recomputed here from the same held-out samples with numpy, agree with the report."""
    from train.data import build_eval_samples
    from train.normalize import Normalizer
    from train.setup import data_config

    for text in ("held-out action L1", "repeat_last", "copy_current", "model beats"):
        assert text in output
    report = json.loads((out / "eval.json").read_text())
    assert report["draws"] == 2
    scores = {(s["task"], s["dataset"]): s for s in report["scores"]}
    policy = scores["policy", "all"]
    assert policy["model"] == pytest.approx(l1, abs=1e-5)
    assert policy["model"] == pytest.approx(sum(policy["model_draws"]) / 2)
    # The mean of the draws' predictions: its L1 / MSE is at most the draws' mean error (convexity), and
    # below it whenever the two draws differ (they do: an untrained model samples noise).
    for s in report["scores"]:
        if s["model"] is not None:
            assert s["model_mean"] < s["model"]
    norm = Normalizer.load(out / "normalizer.json")
    tasks = ("policy", "inverse_dynamics", "forward_dynamics")
    cfg = data_config(_opts(root, mixture, out), 1)
    samples = build_eval_samples(cfg, 16, normalizer=norm, tasks=tasks)
    act = lambda x: x.numpy() * np.asarray(norm.action_std) + np.asarray(norm.action_mean)  # noqa: E731
    truth = np.concatenate([act(b.actions)[b.task.numpy() == 0] for b in samples])
    mask = np.concatenate([b.action_mask.numpy()[b.task.numpy() == 0] for b in samples])
    assert mask.any()
    assert policy["baselines"]["zero"] == pytest.approx(np.abs(truth[mask]).mean(), rel=1e-4)
    mean = np.asarray(norm.action_mean)
    assert policy["baselines"]["mean"] == pytest.approx(np.abs(truth - mean)[mask].mean(), rel=1e-4)
    fd = [(b.future_latents.numpy(), b.obs_latents[:, -1].numpy()) for b in samples]
    fd = [(f[b.task.numpy() == 1], c[b.task.numpy() == 1]) for b, (f, c) in zip(samples, fd, strict=True)]
    future, now = (np.concatenate(x) for x in zip(*fd, strict=True))
    forward = scores["forward_dynamics", "all"]
    assert forward["samples"] == len(future) > 0
    assert forward["baselines"]["copy_current"] == pytest.approx(((future - now) ** 2).mean(), rel=1e-4)
    assert forward["baselines"]["mean_latent"] == pytest.approx((future**2).mean(), rel=1e-4)


def test_task_counts_follow_the_tiers(root: Path, tmp_path: Path) -> None:
    video = MixtureEntry(name="v", where='category == "human_actionless"', weight=1.0)
    only_video = _mixture(root, "video", [video])
    fit(_opts(root, only_video, tmp_path / "v", steps=10))
    counts = [r["counts"] for r in _metrics(tmp_path / "v")]
    assert all(c["visual_forecasting"] == 8 and c["policy"] == 0 for c in counts)  # action-free: forecasting
    narrowed = _mixture(root, "policy_only", [
        MixtureEntry(name="h", where='category == "human_action"', weight=1.0, tasks={"high": ["policy"]}),
    ])  # fmt: skip
    fit(_opts(root, narrowed, tmp_path / "p", steps=10))
    assert all(r["counts"]["policy"] == 8 for r in _metrics(tmp_path / "p"))


def test_resume_after_a_real_kill_gives_the_same_losses(root: Path, both: Path, tmp_path: Path) -> None:
    def launch(out: Path, *extra: str) -> subprocess.Popen:
        args = [str(BIN / "train"), "launch", "--mixture", str(both), "--root", str(root), "--out", str(out),
                "--steps", "120", "--batch-size", "8", "--checkpoint-every", "25", "--loader-workers", "0",
                "--no-progress", *extra]  # fmt: skip
        return subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )

    assert launch(tmp_path / "whole").wait() == 0
    killed = launch(tmp_path / "killed")
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while killed.poll() is None and time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 60:
            break
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    done = len(metrics.read_text().splitlines())
    assert 25 <= done < 120, "the kill must land between two checkpoints of the run"
    assert launch(tmp_path / "killed", "--resume").wait() == 0
    keys = ("step", "loss", "tasks", "counts", "lr", "grad_norm")
    whole = [{k: r[k] for k in keys} for r in _metrics(tmp_path / "whole")]
    resumed = [{k: r[k] for k in keys} for r in _metrics(tmp_path / "killed")]
    assert resumed == whole


def test_two_ray_train_workers_match_one_process(root: Path, both: Path, tmp_path: Path) -> None:
    fit(_opts(root, both, tmp_path / "one", steps=4, grad_accum=2))
    from train.distributed import launch

    launch(_opts(root, both, tmp_path / "two", steps=4, num_workers=2))
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [r["step"] for r in two] == [0, 1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)


def _torchrun_rank(rank: int, port: int, opts: TrainOptions) -> None:
    """What torchrun gives each rank: its variables in the environment, then `train launch`."""
    from train.distributed import launch

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    launch(opts)


def test_fsdp_under_torchrun_matches_one_process_and_eval_reads_it(
    root: Path, both: Path, tmp_path: Path
) -> None:
    import torch

    from tests.test_parallel import _free_port
    from train.evaluate import evaluate

    fit(_opts(root, both, tmp_path / "one", steps=3, grad_accum=2, checkpoint_every=2))
    fsdp = _opts(root, both, tmp_path / "fsdp", steps=3, parallel="fsdp", activation_checkpointing=True,
                 checkpoint_every=2)  # fmt: skip
    torch.multiprocessing.spawn(_torchrun_rank, args=(_free_port(), fsdp), nprocs=2)
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "fsdp")
    assert [r["step"] for r in two] == [0, 1, 2]
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    # The checkpoint is the full state dict (gathered from both shards): `train eval` scores it like the
    # one-process run's, on the same held-out samples.
    a = evaluate(tmp_path / "one", n=8, draws=1)
    b = evaluate(tmp_path / "fsdp", n=8, draws=1)
    assert b.step == a.step == 3
    assert b.policy_action_l1 == pytest.approx(a.policy_action_l1, rel=1e-4)
    assert b.forward_latent_mse == pytest.approx(a.forward_latent_mse, rel=1e-4)


def test_per_embodiment_heads_and_quantile_normaliser_reach_the_run(root: Path, both: Path, tmp_path: Path):
    """`--action-heads per_embodiment --normalizer quantile`: the checkpoint, run.json and normalizer.json
    record both, so `train eval` and `--resume` rebuild the same model and normaliser."""
    import torch

    out = tmp_path / "run"
    args = ["launch", "--mixture", str(both), "--root", str(root), "--out", str(out), "--steps", "3",
            "--batch-size", "8", "--loader-workers", "0", "--no-progress", "--action-heads", "per_embodiment",
            "--normalizer", "quantile"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    robot = json.loads((root / "hands/meta/info.json").read_text())["robot_type"]
    assert state["model_config"]["action_heads"] == "per_embodiment"
    assert state["model_config"]["embodiments"] == [robot]
    assert state["model"]["history_in.weight"].shape == (1, 64, 2 * 146)  # one copy per embodiment
    assert (
        state["normalizer"]["mode"] == "quantile" == json.loads((out / "normalizer.json").read_text())["mode"]
    )
    assert json.loads((out / "run.json").read_text())["options"]["action_heads"] == "per_embodiment"
    ev = CliRunner().invoke(app, ["eval", "--run", str(out), "--samples", "8", "--draws", "1"])
    assert ev.exit_code == 0, ev.output
    assert json.loads((out / "eval.json").read_text())["policy_action_l1"] > 0
    other = tmp_path / "root"  # the same data, but the video copy is another embodiment
    shutil.copytree(root, other)
    info = json.loads((other / "video/meta/info.json").read_text())
    (other / "video/meta/info.json").write_text(json.dumps({**info, "robot_type": "other_robot"}))
    build(other)
    ev = CliRunner().invoke(app, ["eval", "--run", str(out), "--root", str(other), "--samples", "8"])
    assert ev.exit_code == 2
    assert "video: embodiment 'other_robot' was not seen when the model was built" in ev.output
    with pytest.raises(ValueError, match="--normalizer quantile"):
        fit(_opts(root, both, out, steps=5, resume=True, action_heads="per_embodiment"))
    fit(_opts(root, both, out, steps=5, resume=True, action_heads="per_embodiment", normalizer="quantile"))
    assert [r["step"] for r in _metrics(out)] == list(range(5))
