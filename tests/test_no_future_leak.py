"""No future information in the policy's inputs (issue 13 item 2).

The policy at frame t may see o_{t-3}, o_t, the state at t, the actions t-5 .. t-1 and the embodiment's action
dimensions; what happens at t+1 .. (the chunk's values and validity, the future latent and whether it
exists) may only be a target or mask a loss. Each test changes the future of a batch and checks the policy's
output is bit-identical, and changes the present to check the same output can move.
"""

from __future__ import annotations

from dataclasses import fields

import torch

from tests.test_model import trained_tiny
from train.batch import TASK_IDS, Batch
from train.configs import CONFIGS
from train.flow import context_inputs, random_batch, random_cond, sample_actions, training_losses
from train.model import LDAModel

TINY = CONFIGS["tiny"]
POLICY = TASK_IDS["policy"]


def clone(batch: Batch) -> Batch:
    values = {f.name: getattr(batch, f.name) for f in fields(Batch)}
    copy = {k: v.clone() if torch.is_tensor(v) else v if v is None else list(v) for k, v in values.items()}
    return Batch(**copy)


def other_future(batch: Batch, seed: int = 1) -> Batch:
    """The same present, another future: chunk values and validity, future latent and its existence."""
    g = torch.Generator().manual_seed(seed)
    out = clone(batch)
    out.actions = torch.randn(out.actions.shape, generator=g)
    out.action_mask = torch.rand(out.action_mask.shape, generator=g) < 0.5
    out.action_mask[0] = False  # nothing tracked over the whole chunk
    out.action_mask[1] = True  # everything tracked
    out.future_latents = torch.randn(out.future_latents.shape, generator=g)
    out.future_valid = ~out.future_valid
    return out


def policy_velocity(model: LDAModel, batch: Batch, x: torch.Tensor, t: float) -> torch.Tensor:
    """The action-slot velocity of the policy at noisy chunk x and time t (the samplers' call)."""
    b = len(batch)
    cond = random_cond(TINY, b)
    v, _ = model(
        **context_inputs(batch),
        future_slot=torch.zeros_like(batch.future_latents),
        actions_in=x,
        t_action=torch.full((b,), t),
        t_obs=torch.zeros(b),
        task=torch.full((b,), POLICY),
        cond_tokens=cond[0],
        cond_mask=cond[1],
    )
    return v


def test_context_inputs_are_the_present_only():
    batch = random_batch(TINY, 8)
    ctx = context_inputs(batch)
    assert set(ctx) == {
        "obs_latents", "state", "state_mask", "history_actions", "history_mask", "action_dim_mask",
        "embodiment",
    }  # fmt: skip
    future = context_inputs(other_future(batch))
    assert all(torch.equal(ctx[k], future[k]) for k in ctx)
    assert torch.equal(ctx["action_dim_mask"], batch.action_dims)


def test_policy_velocity_ignores_the_future_and_follows_the_present():
    model, batch = trained_tiny(), random_batch(TINY, 8, tasks=[POLICY] * 8)
    x = torch.randn(batch.actions.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        v = policy_velocity(model, batch, x, 0.7)
        assert v.abs().max() > 1e-3
        assert torch.equal(v, policy_velocity(model, other_future(batch), x, 0.7))
        state = clone(batch)
        state.state[2, state.state_mask[2]] += 1.0
        v_state = policy_velocity(model, state, x, 0.7)
        assert not torch.equal(v_state[2], v[2]) and torch.equal(v_state[3], v[3])
        obs = clone(batch)
        obs.obs_latents[4, -1] += 1.0  # o_t
        assert not torch.equal(policy_velocity(model, obs, x, 0.7)[4], v[4])


def test_sampled_policy_chunk_ignores_the_future_and_follows_the_present():
    model, batch = trained_tiny(), random_batch(TINY, 8, tasks=[POLICY] * 8)
    cond = random_cond(TINY, 8)

    def sample(b: Batch) -> torch.Tensor:
        return sample_actions(model, b, *cond, generator=torch.Generator().manual_seed(7))

    actions = sample(batch)
    assert torch.equal(actions, sample(other_future(batch)))
    assert torch.equal(actions, sample(other_future(batch, seed=2)))
    state = clone(batch)
    state.state[5, state.state_mask[5]] -= 0.5
    assert not torch.equal(sample(state)[5], actions[5])
    obs = clone(batch)
    obs.obs_latents[6, -1] = torch.randn(obs.obs_latents[6, -1].shape)
    assert not torch.equal(sample(obs)[6], actions[6])
    history = clone(batch)
    history.history_actions[1, -1] += history.history_mask[1, -1].float()  # a_{t-1}
    assert not torch.equal(sample(history)[1], actions[1])


def test_training_policy_output_ignores_future_masks_which_only_mask_the_loss():
    """In training the policy sees its noisy target chunk (flow matching), but neither which of its values
    exist nor the future latent: its output is the same when they change, its loss is not."""
    model, batch = trained_tiny().train(), random_batch(TINY, 8, tasks=[POLICY] * 8)
    cond = random_cond(TINY, 8)
    outputs = []
    handle = model.register_forward_hook(lambda _m, _i, out: outputs.append(out[0].detach()))
    future = clone(batch)
    future.action_mask = (
        torch.rand(future.action_mask.shape, generator=torch.Generator().manual_seed(4)) < 0.5
    )
    future.future_latents.normal_()
    future.future_valid = ~future.future_valid
    losses = [training_losses(model, b, *cond, torch.Generator().manual_seed(0)) for b in (batch, future)]
    handle.remove()
    assert torch.equal(outputs[0], outputs[1]) and outputs[0].abs().max() > 1e-3
    assert losses[0].per_task["policy"] != losses[1].per_task["policy"]
