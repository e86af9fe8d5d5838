"""The flow's parameterisation and loss weights (`train.flow`, ModelConfig `action_residual`,
`latent_residual`, their scales, `action_loss_weight`, `latent_loss_weight`): a zero predicted change gives
the repeat-last and copy-current baselines of `train.baselines`; the training target and the samplers agree;
the weights scale the loss by exactly their factor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from schemas.canonical import VECTOR_DIM
from train.baselines import action_baselines, latent_baselines
from train.batch import last_action
from train.configs import CONFIGS, ModelConfig
from train.flow import (
    actions_to_flow,
    latents_to_flow,
    predict_future,
    random_batch,
    random_cond,
    sample_actions,
    training_losses,
)
from train.model import LDAModel
from train.normalize import Normalizer

RESIDUAL = CONFIGS["tiny"].model_copy(
    update=dict(
        action_residual=True, latent_residual=True, action_residual_scale=3.0, latent_residual_scale=5.0
    )  # fmt: skip
)


class NoChange(nn.Module):
    """Velocity x_t / t: the exact velocity towards flow data 0, i.e. towards 'no change from the present'
    under the residual parameterisation."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, *, actions_in, future_slot, t_action, t_obs, **_):
        return actions_in / t_action[:, None, None], future_slot / t_obs[:, None, None]


def _norm(batch) -> Normalizer:
    rng = np.random.default_rng(0)
    vec = lambda lo, hi, n=VECTOR_DIM: rng.uniform(lo, hi, n).tolist()  # noqa: E731
    lat = batch.future_latents.shape[-1]
    return Normalizer(state_mean=vec(-0.2, 0.2), state_std=vec(0.05, 0.3), action_mean=vec(-0.02, 0.02),
                      action_std=vec(0.005, 0.05), latent_mean=[0.0] * lat,
                      latent_std=[1.0] * lat)  # fmt: skip


def test_zero_change_reproduces_copy_current_and_repeat_last():
    batch, cond = random_batch(RESIDUAL, 6, seed=3), random_cond(RESIDUAL, 6)
    model, norm = NoChange(RESIDUAL), _norm(batch)
    batch.history_mask[0, -1, :] = False  # one sample without a last action: it holds its state instead
    batch.history_actions[0, -1, :] = 0.0
    batch.last_action = last_action(batch.history_actions[:, -1], batch.history_mask[:, -1], batch.state,
                                    batch.state_mask, batch.action_dims, norm)  # fmt: skip
    for steps in (1, 4):
        future = predict_future(model, batch, *cond, steps=steps, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(future, latent_baselines(batch)["copy_current"], atol=1e-6, rtol=0)
        for inverse in (False, True):
            actions = sample_actions(model, batch, *cond, steps, torch.Generator().manual_seed(2), inverse)
            # repeat_last of train.baselines, in data units, on every sample (sample 0: the held state)
            expected = action_baselines(batch, norm)["repeat_last"]
            dims = batch.action_dims[:, None, :].expand_as(actions)
            torch.testing.assert_close(
                norm.unnormalize_actions(actions)[dims], expected[dims], atol=1e-6, rtol=1e-5
            )
            assert (actions[~dims] == 0).all()


class ExactResidualVelocity(nn.Module):
    """Knows the data in the flow's own variables (the scaled change), returns (x_t - y) / t = eps - y."""

    def __init__(self, config: ModelConfig, batch) -> None:
        super().__init__()
        self.config = config
        self.y_a = actions_to_flow(batch.actions, batch, config)
        self.y_o = latents_to_flow(batch.future_latents, batch, config)

    def forward(self, *, actions_in, future_slot, t_action, t_obs, **_):
        v_action = (actions_in - self.y_a) / t_action.clamp_min(1e-12)[:, None, None]
        v_obs = (future_slot - self.y_o) / t_obs.clamp_min(1e-12)[:, None, None]
        return v_action, v_obs


def test_training_target_and_samplers_agree_on_the_change():
    """The velocity that is exact for the residual training target has zero loss, and the samplers
    integrate it back to the absolute (normalised) data."""
    batch, cond = random_batch(RESIDUAL, 8, seed=5), random_cond(RESIDUAL, 8)
    oracle = ExactResidualVelocity(RESIDUAL, batch)
    losses = training_losses(oracle, batch, *cond, torch.Generator().manual_seed(0))
    assert float(losses.total) < 1e-9
    # Not a trivial zero: the same oracle scored as an absolute model is far off.
    absolute = ExactResidualVelocity(RESIDUAL, batch)
    absolute.config = CONFIGS["tiny"]
    assert float(training_losses(absolute, batch, *cond, torch.Generator().manual_seed(0)).total) > 0.1
    actions = sample_actions(oracle, batch, *cond, steps=3, generator=torch.Generator().manual_seed(1))
    real = batch.action_mask & batch.action_dims[:, None, :]
    torch.testing.assert_close(actions[real], batch.actions[real], atol=1e-5, rtol=1e-5)
    future = predict_future(oracle, batch, *cond, steps=3, generator=torch.Generator().manual_seed(1))
    fv = batch.future_valid
    torch.testing.assert_close(future[fv], batch.future_latents[fv], atol=1e-5, rtol=1e-5)


def test_loss_weights_scale_the_loss_by_their_factor():
    torch.manual_seed(0)
    base = CONFIGS["tiny"]
    model = LDAModel(base)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch, cond = random_batch(base, 8), random_cond(base, 8)
    plain = training_losses(model, batch, *cond, torch.Generator().manual_seed(0))
    per = plain.per_task
    for wa, wl in ((0.25, 1.0), (1.0, 3.0), (2.0, 0.0)):
        model.config = base.model_copy(update=dict(action_loss_weight=wa, latent_loss_weight=wl))
        weighted = training_losses(model, batch, *cond, torch.Generator().manual_seed(0))
        assert weighted.per_task == per  # logged per-task losses stay unweighted
        expected = wa * (per["policy"] + per["inverse_dynamics"]) + wl * (
            per["forward_dynamics"] + per["visual_forecasting"]
        )
        assert abs(float(weighted.total.detach()) - expected) < 1e-5 * expected
    model.config = base.model_copy(update=dict(action_loss_weight=2.0, latent_loss_weight=2.0))
    doubled = training_losses(model, batch, *cond, torch.Generator().manual_seed(0))
    torch.testing.assert_close(doubled.total, 2 * plain.total)


def test_residual_policy_input_ignores_future_masks():
    """The residual chunk is built from the values and a_{t-1} only: changing which future values exist
    (and the future latent) leaves the policy's output unchanged, as in tests/test_no_future_leak.py."""
    torch.manual_seed(0)
    model = LDAModel(RESIDUAL)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch, cond = random_batch(RESIDUAL, 8, tasks=[0] * 8), random_cond(RESIDUAL, 8)
    future = random_batch(RESIDUAL, 8, tasks=[0] * 8)
    g = torch.Generator().manual_seed(4)
    future.action_mask = torch.rand(future.action_mask.shape, generator=g) < 0.5
    future.future_latents.normal_()
    outputs = []
    handle = model.register_forward_hook(lambda _m, _i, out: outputs.append(out[0].detach()))
    losses = [training_losses(model, b, *cond, torch.Generator().manual_seed(0)) for b in (batch, future)]
    handle.remove()
    assert torch.equal(outputs[0], outputs[1]) and outputs[0].abs().max() > 1e-3
    assert losses[0].per_task["policy"] != losses[1].per_task["policy"]


def test_untrained_data_prediction_model_is_exactly_the_baselines():
    """prediction="data" with residuals: the zero-initialised heads predict no change, so the untrained
    model's forecast is o_t bit for bit and its chunk is a_{t-1} wherever that exists."""
    config = RESIDUAL.model_copy(update=dict(prediction="data"))
    torch.manual_seed(0)
    model = LDAModel(config)
    batch, cond = random_batch(config, 6, seed=2), random_cond(config, 6)
    future = predict_future(model, batch, *cond, generator=torch.Generator().manual_seed(1))
    assert torch.equal(future, latent_baselines(batch)["copy_current"])
    actions = sample_actions(model, batch, *cond, generator=torch.Generator().manual_seed(1))
    has_last = (batch.history_mask[:, -1] & batch.action_dims)[:, None, :].expand_as(actions)
    last = batch.history_actions[:, -1][:, None, :].expand_as(actions)
    assert has_last.any() and torch.equal(actions[has_last], last[has_last])


def test_data_prediction_loss_and_samplers():
    """The oracle that outputs the clean flow data has zero loss under prediction="data", and the samplers
    integrate it back to the absolute data; its loss is the data MSE (a zero output costs mean(y^2))."""
    config = RESIDUAL.model_copy(update=dict(prediction="data"))
    batch, cond = random_batch(config, 8, seed=5), random_cond(config, 8)

    class Oracle(ExactResidualVelocity):
        def forward(self, **_):
            return self.y_a, self.y_o

    oracle = Oracle(config, batch)
    assert float(training_losses(oracle, batch, *cond, torch.Generator().manual_seed(0)).total) == 0.0
    actions = sample_actions(oracle, batch, *cond, steps=3, generator=torch.Generator().manual_seed(1))
    real = batch.action_mask & batch.action_dims[:, None, :]
    torch.testing.assert_close(actions[real], batch.actions[real], atol=1e-5, rtol=1e-5)
    future = predict_future(oracle, batch, *cond, steps=3, generator=torch.Generator().manual_seed(1))
    fv = batch.future_valid
    torch.testing.assert_close(future[fv], batch.future_latents[fv], atol=1e-5, rtol=1e-5)
    zero = Oracle(config, batch)
    zero.y_a, zero.y_o = torch.zeros_like(oracle.y_a), torch.zeros_like(oracle.y_o)
    losses = training_losses(zero, batch, *cond, torch.Generator().manual_seed(0))
    fd = (batch.task == 1) & fv
    expected = float(oracle.y_o[fd].square().mean())
    assert abs(losses.per_task["forward_dynamics"] - expected) < 1e-5 * expected


def test_l1_action_loss_is_the_mean_absolute_error_of_the_data():
    """action_loss="l1": a zero output's policy loss is mean |y| over the real policy targets (the squared
    mean under "mse"), and the latent terms stay squared; l1 with a velocity head is refused."""
    config = RESIDUAL.model_copy(update=dict(prediction="data"))
    batch, cond = random_batch(config, 8, seed=5), random_cond(config, 8)
    zero = ExactResidualVelocity(config, batch)
    y_a, y_o = zero.y_a, zero.y_o

    class Zero(nn.Module):
        def __init__(self, cfg: ModelConfig) -> None:
            super().__init__()
            self.config = cfg

        def forward(self, **_):
            return torch.zeros_like(y_a), torch.zeros_like(y_o)

    policy = (batch.task == 0)[:, None, None] & batch.action_mask & batch.action_dims[:, None, :]
    fd = (batch.task == 1) & batch.future_valid
    assert policy.any() and fd.any()
    for loss, expected in (("mse", y_a[policy].square().mean()), ("l1", y_a[policy].abs().mean())):
        model = Zero(config.model_copy(update=dict(action_loss=loss)))
        per = training_losses(model, batch, *cond, torch.Generator().manual_seed(0)).per_task
        assert abs(per["policy"] - float(expected)) < 1e-5 * float(expected)
        assert abs(per["forward_dynamics"] - float(y_o[fd].square().mean())) < 1e-4
    with pytest.raises(ValueError, match="needs prediction"):
        ModelConfig(**{**RESIDUAL.model_dump(), "action_loss": "l1"})
