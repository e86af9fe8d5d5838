"""Flow matching (`train.flow`): convention, per-task masked losses, gradients, samplers, overfitting."""

from __future__ import annotations

import torch
from torch import nn

from train.batch import TASK_IDS
from train.configs import CONFIGS
from train.flow import (
    interpolate,
    predict_future,
    random_batch,
    random_cond,
    sample_actions,
    sample_time,
    training_losses,
)
from train.model import LDAModel

TINY = CONFIGS["tiny"]
POLICY, FD, INV, VF = (
    TASK_IDS[n] for n in ("policy", "forward_dynamics", "inverse_dynamics", "visual_forecasting")
)


def perturbed_tiny(seed: int = 0) -> LDAModel:
    """A tiny model with its zero-initialised gates and heads perturbed, so every path carries gradient."""
    torch.manual_seed(seed)
    model = LDAModel(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def losses_with_output_grads(model, batch, cond, seed=0):
    """training_losses + backward, returning the losses and d total / d (v_action, v_obs)."""
    captured = {}

    def hook(_module, _inputs, outputs):
        for o in outputs:
            o.retain_grad()
        captured["out"] = outputs

    handle = model.register_forward_hook(hook)
    losses = training_losses(model, batch, *cond, torch.Generator().manual_seed(seed))
    handle.remove()
    losses.total.backward()
    return losses, captured["out"][0].grad, captured["out"][1].grad


def test_time_sampling_law_and_reproducibility():
    t = sample_time(200_000, "beta", torch.Generator().manual_seed(0))
    assert t.min() >= 0.001 and t.max() <= 1.0
    assert abs(t.mean().item() - (0.001 + 0.999 * 0.6)) < 0.005  # Beta(1.5, 1) has mean 0.6
    assert abs((t < 0.5).float().mean().item() - 0.5**1.5) < 0.005  # CDF u^1.5
    again = sample_time(200_000, "beta", torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    ln = sample_time(1000, "logit_normal", torch.Generator().manual_seed(0))
    assert ((ln > 0) & (ln < 1)).all()


def test_interpolation_convention():
    x, eps = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.equal(interpolate(x, eps, torch.zeros(3)), x)  # t = 0 is data
    assert torch.equal(interpolate(x, eps, torch.ones(3)), eps)  # t = 1 is noise


def test_losses_are_reproducible_and_counted():
    model, batch, cond = perturbed_tiny(), random_batch(TINY, 8), random_cond(TINY, 8)
    a = training_losses(model, batch, *cond, torch.Generator().manual_seed(5))
    b = training_losses(model, batch, *cond, torch.Generator().manual_seed(5))
    c = training_losses(model, batch, *cond, torch.Generator().manual_seed(6))
    assert torch.equal(a.total, b.total) and not torch.equal(a.total, c.total)
    assert a.counts == {"policy": 2, "forward_dynamics": 2, "inverse_dynamics": 2, "visual_forecasting": 2}
    assert set(a.per_task) == set(a.counts) and all(v > 0 for v in a.per_task.values())
    torch.testing.assert_close(a.total, a.task_losses.sum())


class InputRecorder(nn.Module):
    """Wraps a model and keeps the keyword inputs of its last call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.config, self.inputs = model, model.config, {}

    def forward(self, **inputs):
        self.inputs = inputs
        return self.model(**inputs)


def test_slots_follow_each_sample_task_in_batch_order():
    batch, cond = random_batch(TINY, 8, tasks=[3, 1, 0, 2, 2, 0, 1, 3]), random_cond(TINY, 8)
    recorder = InputRecorder(perturbed_tiny())
    training_losses(recorder, batch, *cond, torch.Generator().manual_seed(0))
    x = recorder.inputs
    assert torch.equal(x["task"], batch.task)
    for i, task in enumerate(batch.task.tolist()):
        if task == FD:  # clean actions, noisy future
            assert x["t_action"][i] == 0 and torch.equal(x["actions_in"][i], batch.actions[i])
            assert 0.001 <= x["t_obs"][i] <= 1
        if task == INV:  # noisy actions, clean future
            assert x["t_obs"][i] == 0 and torch.equal(x["future_slot"][i], batch.future_latents[i])
            assert 0.001 <= x["t_action"][i] <= 1
        if task == POLICY:
            assert x["t_obs"][i] == 0 and 0.001 <= x["t_action"][i] <= 1
        if task == VF:
            assert x["t_action"][i] == 0 and 0.001 <= x["t_obs"][i] <= 1
    assert torch.equal(x["obs_latents"], batch.obs_latents) and torch.equal(x["state"], batch.state)


def test_masked_action_sample_contributes_zero_gradient():
    model = perturbed_tiny()
    batch, cond = random_batch(TINY, 4, tasks=[POLICY, POLICY, INV, POLICY]), random_cond(TINY, 4)
    batch.action_mask[1] = False
    batch.obs_latents.requires_grad_(True)
    losses, g_action, g_obs = losses_with_output_grads(model, batch, cond)
    assert (g_action[1] == 0).all() and (batch.obs_latents.grad[1] == 0).all()
    assert (g_action[0] != 0).any() and (batch.obs_latents.grad[0] != 0).any()
    assert (g_action[~batch.action_mask] == 0).all()  # masked dimensions and padded steps
    assert (g_obs == 0).all()  # no obs loss in a policy / inverse batch
    # inverse dynamics: action loss only on the first K steps
    k = TINY.future_obs_index
    assert (g_action[2, k:] == 0).all() and (g_action[2, :k] != 0).any()
    assert losses.counts["policy"] == 3


def test_action_free_batch_has_no_action_loss_nor_action_head_gradient():
    model = perturbed_tiny()
    batch, cond = random_batch(TINY, 4, tasks=[VF] * 4), random_cond(TINY, 4)
    losses, g_action, _ = losses_with_output_grads(model, batch, cond)
    assert losses.per_task["policy"] == 0.0 and losses.per_task["inverse_dynamics"] == 0.0
    assert losses.per_task["visual_forecasting"] > 0
    assert (g_action == 0).all()
    for p in [*model.action_out.parameters(), *model.chunk_in.parameters()]:
        assert p.grad is None or (p.grad == 0).all()
    assert (model.action_register.grad != 0).any()


def test_empty_task_groups_give_zero_not_nan():
    model = perturbed_tiny()
    batch, cond = random_batch(TINY, 3, tasks=[POLICY] * 3), random_cond(TINY, 3)
    losses = training_losses(model, batch, *cond, torch.Generator().manual_seed(0))
    assert losses.per_task["forward_dynamics"] == 0.0 and losses.per_task["visual_forecasting"] == 0.0
    assert losses.per_task["inverse_dynamics"] == 0.0 and torch.isfinite(losses.total)
    losses.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_samples_without_future_never_get_an_obs_loss():
    model = perturbed_tiny()
    batch, cond = random_batch(TINY, 4, tasks=[FD, INV, VF, POLICY]), random_cond(TINY, 4)
    batch.future_valid[:] = False
    losses, g_action, g_obs = losses_with_output_grads(model, batch, cond)
    assert (g_obs == 0).all() and (g_action[:3] == 0).all()
    assert losses.per_task["forward_dynamics"] == 0.0 and losses.per_task["visual_forecasting"] == 0.0
    assert int(losses.dropped) == 3
    assert losses.counts == {
        "policy": 1,
        "forward_dynamics": 0,
        "inverse_dynamics": 0,
        "visual_forecasting": 0,
    }


class ExactVelocity(nn.Module):
    """Knows the data: returns v = (x_t - x) / t = eps - x, the exact velocity of the convention."""

    def __init__(self, actions: torch.Tensor, future: torch.Tensor) -> None:
        super().__init__()
        self.actions, self.future, self.config = actions, future, TINY

    def forward(self, *, actions_in, future_slot, t_action, t_obs, **_):
        v_action = (actions_in - self.actions) / t_action.clamp_min(1e-12)[:, None, None]
        v_obs = (future_slot - self.future) / t_obs.clamp_min(1e-12)[:, None, None]
        return v_action, v_obs


def test_euler_with_exact_velocity_recovers_the_data():
    batch, cond = random_batch(TINY, 4), random_cond(TINY, 4)
    oracle = ExactVelocity(batch.actions, batch.future_latents)
    for steps in (1, 4, 7):
        actions = sample_actions(
            oracle, batch, *cond, steps=steps, generator=torch.Generator().manual_seed(1)
        )
        dims = batch.action_dims[:, None, :].expand_as(actions)
        torch.testing.assert_close(actions[dims], batch.actions[dims], atol=1e-5, rtol=1e-5)
        future = predict_future(oracle, batch, *cond, steps=steps, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(future, batch.future_latents, atol=1e-5, rtol=1e-5)


def test_samplers_run_the_model_and_restore_its_mode():
    model = perturbed_tiny().train()
    batch, cond = random_batch(TINY, 2), random_cond(TINY, 2)
    actions = sample_actions(model, batch, *cond, generator=torch.Generator().manual_seed(0))
    again = sample_actions(model, batch, *cond, generator=torch.Generator().manual_seed(0))
    assert actions.shape == batch.actions.shape and torch.equal(actions, again)
    assert (actions[~batch.action_dims[:, None, :].expand_as(actions)] == 0).all()
    assert predict_future(model, batch, *cond).shape == batch.future_latents.shape
    assert model.training


def test_tiny_model_overfits_one_fixed_batch():
    """Same batch, same noise and times every step: the loss falls by 10x within a few hundred steps."""
    torch.manual_seed(0)
    model = LDAModel(TINY).train()
    batch, cond = random_batch(TINY, 8), random_cond(TINY, 8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = training_losses(model, batch, *cond, torch.Generator().manual_seed(0))
    for _ in range(300):
        losses = training_losses(model, batch, *cond, torch.Generator().manual_seed(0))
        if losses.total.item() < first.total.item() / 10:
            break
        opt.zero_grad(set_to_none=True)
        losses.total.backward()
        opt.step()
    assert losses.total.item() < first.total.item() / 10, (first.per_task, losses.per_task)
    assert all(losses.per_task[k] < first.per_task[k] / 2 for k in first.per_task)


class ModuleWrapper(nn.Module):
    """Stands in for DDP: the model under `.module`, no `.config` of its own."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.module = model

    def forward(self, **inputs):
        return self.module(**inputs)


def test_losses_and_samplers_accept_a_wrapped_model():
    model, batch, cond = perturbed_tiny(), random_batch(TINY, 4), random_cond(TINY, 4)
    wrapped = ModuleWrapper(model)
    a = training_losses(wrapped, batch, *cond, torch.Generator().manual_seed(0))
    b = training_losses(model, batch, *cond, torch.Generator().manual_seed(0))
    assert torch.equal(a.total, b.total)
    assert sample_actions(wrapped, batch, *cond).shape == batch.actions.shape
