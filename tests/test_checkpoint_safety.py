"""Checkpoints load with `weights_only=True`: a crafted pickle payload is refused and never runs, while
everything `save_checkpoint` writes (model, optimiser, schedule, step, JSON extras) still loads exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from schemas.errors import ExitCode, Refused, describe
from train.state import CHECKPOINT, Run, TrainOptions, load_checkpoint, save_checkpoint


class _Payload:
    """Unpickling this writes a file: the proof that a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _opts(tmp_path: Path) -> TrainOptions:
    return TrainOptions(mixture=tmp_path / "m.yaml", root=tmp_path, out=tmp_path / "run", steps=10)


def test_a_pickle_payload_in_a_checkpoint_is_refused_and_does_not_run(tmp_path: Path) -> None:
    out, marker = tmp_path / "run", tmp_path / "marker.txt"
    out.mkdir()
    torch.save({"model": {}, "step": 3, "evil": _Payload(marker)}, out / CHECKPOINT)
    with pytest.raises(Refused) as e:
        load_checkpoint(out)
    assert not marker.exists(), "the payload ran"
    code, line = describe(e.value)
    assert code == ExitCode.REFUSED and "\n" not in line and str(out / CHECKPOINT) in line


def test_a_truncated_checkpoint_is_one_refusal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"step": torch.arange(1000)}, out / CHECKPOINT)
    data = (out / CHECKPOINT).read_bytes()
    (out / CHECKPOINT).write_bytes(data[: len(data) // 2])
    with pytest.raises(Refused, match="truncated"):
        load_checkpoint(out)


def test_what_save_checkpoint_writes_loads_back_exactly(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    run = Run(opts, model, condition=None, device=torch.device("cpu"))
    for _ in range(3):  # populate AdamW's moments and the schedule
        model(torch.randn(5, 4)).square().mean().backward()
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad()
    run.step = 3
    extra = {"normalizer": {"mean": [0.5, -1.0], "std": [2.0, 1e-3]}, "options": opts.model_dump(mode="json")}
    opts.out.mkdir()
    save_checkpoint(opts.out, run, extra)
    state = load_checkpoint(opts.out)
    assert state is not None and state["step"] == 3
    assert state["normalizer"] == extra["normalizer"] and state["options"] == extra["options"]
    for k, v in model.state_dict().items():
        assert torch.equal(state["model"][k], v)
    moments = state["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(moments, run.optimizer.state_dict()["state"][0]["exp_avg"])
    assert state["scheduler"]["last_epoch"] == 3
    fresh = Run(opts, torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)),
                condition=None, device=torch.device("cpu"))  # fmt: skip
    fresh.load_state_dict(state)
    assert fresh.step == 3 and fresh.scheduler.get_last_lr() == run.scheduler.get_last_lr()
