"""`--ema`: the averaged weights follow ema <- d * ema + (1 - d) * w after every optimiser step (recomputed
here from the weights recorded after each step), travel in the checkpoint, come back on resume, and are
what `train eval` loads; FSDP is refused with one clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from train.conditioning import SmallTextEncoder
from train.configs import get_config
from train.flow import random_batch, training_losses
from train.loop import train_step
from train.model import LDAModel
from train.state import Run, TrainOptions, load_checkpoint, save_checkpoint

DECAY = 0.8


def _opts(tmp: Path, **kw) -> TrainOptions:
    return TrainOptions(mixture=tmp / "m.yaml", root=tmp, out=tmp / "run", batch_size=4, lr=1e-2, warmup=1,
                        steps=10, progress=False, ema=DECAY, **kw)  # fmt: skip


def _run(opts: TrainOptions) -> Run:
    torch.manual_seed(0)
    return Run(opts, LDAModel(get_config("tiny")), SmallTextEncoder(), torch.device("cpu"))


def test_ema_follows_the_weights_and_is_what_eval_loads(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run = _run(opts)
    weights = lambda: {n: p.detach().clone() for n, p in run.model.named_parameters()}  # noqa: E731
    expected = weights()
    for step in range(3):
        train_step(run, random_batch(run.model.config, 4, seed=step), step, 0, training_losses)
        now = weights()
        expected = {n: DECAY * expected[n] + (1 - DECAY) * now[n] for n in now}
    moved = [n for n in now if not torch.allclose(expected[n], now[n])]
    assert moved, "the weights moved away from their average"
    for n, t in run.ema.items():
        torch.testing.assert_close(t, expected[n], rtol=1e-5, atol=1e-7)
    opts.out.mkdir()
    save_checkpoint(opts.out, run, {})
    state = load_checkpoint(opts.out)
    resumed = _run(opts)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.ema[n], run.ema[n]) for n in run.ema)
    without = {k: v for k, v in state.items() if k != "ema"}  # a run trained without --ema, resumed with it
    late = _run(opts)
    late.load_state_dict(without)
    assert all(torch.equal(late.ema[n], now[n]) for n in run.ema)
    evaluated = LDAModel(get_config("tiny"))
    evaluated.load_state_dict({**state["model"], **state["ema"]})  # as train.evaluate.open_run does
    got = dict(evaluated.named_parameters())
    assert all(torch.equal(got[n], run.ema[n]) for n in moved)
    assert not any(torch.equal(got[n], now[n]) for n in moved)


def test_ema_without_whole_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="--ema keeps whole weights"):
        _opts(tmp_path, parallel="fsdp")
