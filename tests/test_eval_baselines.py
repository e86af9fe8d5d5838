"""The yardsticks of `train eval` (train/baselines.py) on small batches whose answers are known: a hand
moving at constant velocity (repeat-last is exact, zero costs the mean |action|), a hand at rest at an
episode start (the hold-the-state action is exact), a future latent equal to the current one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from schemas.canonical import VECTOR_DIM, part_slice
from train.baselines import action_baselines, latent_baselines
from train.batch import Batch, hold_action, last_action
from train.evaluate import EvalReport, Score, _Sums, report_tables
from train.normalize import Normalizer

B, C, H, N, L = 3, 16, 5, 4, 8


def _norm(seed: int = 0) -> Normalizer:
    rng = np.random.default_rng(seed)
    vec = lambda lo, hi: rng.uniform(lo, hi, VECTOR_DIM).tolist()  # noqa: E731
    return Normalizer(state_mean=vec(-0.2, 0.2), state_std=vec(0.05, 0.3), action_mean=vec(-0.02, 0.02),
                      action_std=vec(0.005, 0.05), latent_mean=[0.0] * L, latent_std=[1.0] * L)  # fmt: skip


Tensor = torch.Tensor


def _batch(norm: Normalizer, actions: Tensor, history: Tensor, state: Tensor, action_mask: Tensor,
           history_mask: Tensor, state_mask: Tensor) -> Batch:  # fmt: skip
    """A batch from data-unit values, normalised the way `train/data.py` does it."""
    g = torch.Generator().manual_seed(1)
    now = torch.randn(B, N, L, generator=g)
    state_n = norm.normalize_state(state, state_mask)
    history_n = norm.normalize_actions(history, history_mask)
    dims = action_mask.any(dim=1)  # the embodiment's dims: those the chunks use
    return Batch(
        task=torch.zeros(B, dtype=torch.long),
        obs_latents=torch.stack([torch.randn(B, N, L, generator=g), now], dim=1),
        future_latents=now + 0.1 * torch.randn(B, N, L, generator=g),
        future_valid=torch.ones(B, dtype=torch.bool),
        state=state_n,
        state_mask=state_mask,
        history_actions=history_n,
        history_mask=history_mask,
        actions=norm.normalize_actions(actions, action_mask),
        action_mask=action_mask,
        action_dims=dims,
        last_action=last_action(history_n[:, -1], history_mask[:, -1], state_n, state_mask, dims, norm),
        captions=["x"] * B,
        dataset=["a", "b", "a"],
        episode_index=torch.arange(B),
        frame_index=torch.zeros(B, dtype=torch.long),
    )


def _l1(pred: torch.Tensor, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(pred.numpy() - truth)[mask].mean())


def test_constant_velocity_repeat_last_is_exact_and_zero_costs_mean_abs_action() -> None:
    norm = _norm()
    rng = np.random.default_rng(2)
    velocity = rng.normal(0.0, 0.01, (B, VECTOR_DIM)).astype(np.float32)  # one action per sample, all steps
    dims = rng.random((B, VECTOR_DIM)) < 0.6  # each sample's real dimensions
    steps = np.arange(C)[None, :] < np.array([C, 10, 12])[:, None]  # two chunks run past the episode end
    mask = dims[:, None, :] & steps[:, :, None]
    actions = torch.from_numpy(np.repeat(velocity[:, None], C, 1))
    history = torch.from_numpy(np.repeat(velocity[:, None], H, 1))
    hmask = torch.from_numpy(np.repeat(dims[:, None], H, 1))
    batch = _batch(norm, actions, history, torch.zeros(B, VECTOR_DIM), torch.from_numpy(mask), hmask,
                   torch.zeros(B, VECTOR_DIM, dtype=torch.bool))  # fmt: skip
    truth = np.repeat(velocity[:, None], C, 1)
    got = action_baselines(batch, norm)
    assert _l1(got["repeat_last"], truth, mask) < 1e-6
    assert _l1(got["zero"], truth, mask) == pytest.approx(np.abs(truth[mask]).mean(), rel=1e-5)
    mean = np.asarray(norm.action_mean, dtype=np.float32)
    assert _l1(got["mean"], truth, mask) == pytest.approx(np.abs(truth - mean)[mask].mean(), rel=1e-5)


def test_episode_start_repeats_the_action_that_holds_the_state() -> None:
    """No history (frame 0): a hand at rest is predicted exactly by zero motion, identity rotation and the
    state's gripper and keypoints; a dimension valid nowhere falls back to the training mean."""
    norm = _norm(3)
    rng = np.random.default_rng(4)
    state = torch.from_numpy(rng.uniform(-0.1, 0.1, (B, VECTOR_DIM)).astype(np.float32))
    smask = torch.ones(B, VECTOR_DIM, dtype=torch.bool)
    grip = part_slice("right", "gripper")
    smask[:, grip] = False  # the right gripper is not seen at t
    rest, rest_valid = hold_action(state, smask)
    rot = part_slice("left", "rotation")
    assert rest[0, rot].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0] and rest_valid[0, rot].all()
    assert not rest_valid[:, grip].any()
    actions = rest[:, None].expand(B, C, VECTOR_DIM).clone()
    amask = smask[:, None].expand(B, C, VECTOR_DIM).clone()
    batch = _batch(norm, actions, torch.zeros(B, H, VECTOR_DIM), state, amask,
                   torch.zeros(B, H, VECTOR_DIM, dtype=torch.bool), smask)  # fmt: skip
    got = action_baselines(batch, norm)["repeat_last"]
    assert _l1(got, actions.numpy(), amask.numpy()) < 1e-6
    assert got[:, :, grip].flatten().tolist() == pytest.approx([norm.action_mean[grip.start]] * B * C)
    left_kp = part_slice("left", "keypoints")
    assert torch.allclose(got[:, 0, left_kp], state[:, left_kp], atol=1e-6)


def test_latent_baselines_and_per_dataset_pooling() -> None:
    norm = _norm()
    batch = _batch(norm, torch.zeros(B, C, VECTOR_DIM), torch.zeros(B, H, VECTOR_DIM),
                   torch.zeros(B, VECTOR_DIM), *(torch.zeros(s, dtype=torch.bool) for s in
                   ((B, C, VECTOR_DIM), (B, H, VECTOR_DIM), (B, VECTOR_DIM))))  # fmt: skip
    got = latent_baselines(batch)
    future, now = batch.future_latents.numpy(), batch.obs_latents[:, 1].numpy()
    per_sample = {
        "mean_latent": (future**2).mean(axis=(1, 2)),
        "copy_current": ((future - now) ** 2).mean(axis=(1, 2)),
    }
    sums = _Sums()
    sums.count("forward_dynamics", batch.dataset)
    every = torch.ones(B, 1, dtype=torch.bool)
    for name, pred in got.items():
        sums.add(
            "forward_dynamics",
            name,
            batch.dataset,
            ((pred - batch.future_latents) ** 2).mean((1, 2))[:, None],
            every,
        )
    sums.add("forward_dynamics", "model:0", batch.dataset, torch.full((B, 1), 0.5), every)
    scores = {s.dataset: s for s in sums.scores(draws=1) if s.task == "forward_dynamics"}
    assert set(scores) == {"a", "b", "all"} and scores["a"].samples == 2 and scores["all"].samples == 3
    for name, values in per_sample.items():
        assert scores["all"].baselines[name] == pytest.approx(values.mean(), rel=1e-5)
        assert scores["a"].baselines[name] == pytest.approx(values[[0, 2]].mean(), rel=1e-5)
        assert scores["b"].baselines[name] == pytest.approx(values[1], rel=1e-5)
    assert per_sample["copy_current"].max() < 0.02  # the fixture's future is the present plus small noise
    assert scores["all"].beats == {"mean_latent": True, "copy_current": False}
    report = EvalReport(run=Path("r"), step=1, samples=B, draws=1, policy_action_l1=None,
                        inverse_action_l1=None, forward_latent_mse=0.5, counts={},
                        scores=list(scores.values()))  # fmt: skip
    (table,) = report_tables(report)
    console = Console(record=True, width=200)
    console.print(table)
    rows = [line for line in console.export_text().splitlines() if "forward_dynamics" in line]
    assert [r.split("│")[2].strip() for r in rows] == ["a", "b", "all"]
    assert "mean_latent yes  copy_current no" in rows[2]


def test_score_beats_is_none_without_a_value() -> None:
    s = Score(task="policy", dataset="all", metric="action_l1", samples=0, model=None, model_draws=[None],
              baselines={"zero": 0.1})  # fmt: skip
    assert s.beats == {"zero": None}
