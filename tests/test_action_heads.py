"""Per-embodiment action encoders / head (`ModelConfig.action_heads`, `train.model.EmbodimentLinear`)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from train.configs import CONFIGS, get_config
from train.flow import random_batch, random_cond, training_losses
from train.model import EmbodimentLinear, LDAModel

TINY = CONFIGS["tiny"]
TWO = get_config("tiny", action_heads="per_embodiment", embodiments=("human", "widowx"))
# The tiny model of commit 6a7f28b (before action heads were configurable), seeded and perturbed as
# `perturbed` does, on `random_batch(TINY, 8)` at t = 0.5: its state-dict names and shapes, and sums of its
# outputs. The default config must still be that model (old checkpoints load, outputs unchanged).
OLD_STATE_DICT_SHA256 = "5c0d7be13dcabdca992856d1b7ad68d43ed6e489bdf5bdd10ff8e011d567c411"
OLD_SUMS = (423.6581707865116, 6034.622583526128, 120.61766190064372, 16456.290845917945)


def perturbed(config, seed: int = 0) -> LDAModel:
    """A model whose zero-initialised gates / heads were perturbed, so every path carries signal."""
    torch.manual_seed(seed)
    model = LDAModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@torch.no_grad()
def run(model: LDAModel, batch, cond, embodiment: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    n = len(batch)
    return model(obs_latents=batch.obs_latents, future_slot=batch.future_latents, state=batch.state,
                 state_mask=batch.state_mask, history_actions=batch.history_actions,
                 history_mask=batch.history_mask, actions_in=batch.actions, action_dim_mask=batch.action_dims,
                 t_action=torch.full((n,), 0.5), t_obs=torch.full((n,), 0.5), task=batch.task,
                 cond_tokens=cond[0], cond_mask=cond[1], embodiment=embodiment)  # fmt: skip


def test_shared_heads_are_the_old_model() -> None:
    model = perturbed(TINY)
    names = "\n".join(f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items())
    assert hashlib.sha256(names.encode()).hexdigest() == OLD_STATE_DICT_SHA256
    v_action, v_obs = run(model, random_batch(TINY, 8), random_cond(TINY, 8))
    sums = (
        v_action.double().sum(),
        v_action.double().abs().sum(),
        v_obs.double().sum(),
        v_obs.double().abs().sum(),
    )
    assert [float(s) for s in sums] == pytest.approx(OLD_SUMS, rel=1e-5)


def _embodiment_layers(model: LDAModel) -> dict[str, EmbodimentLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, EmbodimentLinear)}


def test_each_sample_uses_its_embodiments_weights() -> None:
    """Copy e of every per-embodiment layer holds the action layers of shared model e (same backbone): each
    sample's output is that shared model's output for it, whatever the other samples' embodiments."""
    shared = [perturbed(TINY, seed) for seed in (0, 1)]
    backbone = shared[0].state_dict()
    for m in shared[1:]:  # one backbone, different action layers
        own = m.state_dict()
        m.load_state_dict({k: own[k] if k.rsplit(".", 1)[0] in _shared_action_layers() else v
                           for k, v in backbone.items()})  # fmt: skip
    model = LDAModel(TWO).eval()
    layers = _embodiment_layers(model)
    assert sorted(layers) == sorted(_shared_action_layers())
    state = {k: v for k, v in backbone.items() if k.rsplit(".", 1)[0] not in layers}
    for name in layers:
        for p in ("weight", "bias"):
            state[f"{name}.{p}"] = torch.stack([m.state_dict()[f"{name}.{p}"] for m in shared])
    model.load_state_dict(state)
    batch, cond = random_batch(TINY, 8), random_cond(TINY, 8)
    ids = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    v_action, v_obs = run(model, batch, cond, ids)
    for e, m in enumerate(shared):
        want_action, want_obs = run(m, batch, cond)
        torch.testing.assert_close(v_action[ids == e], want_action[ids == e], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v_obs[ids == e], want_obs[ids == e], rtol=1e-5, atol=1e-5)
    apart = (run(shared[0], batch, cond)[0] - run(shared[1], batch, cond)[0]).abs().flatten(1).amax(1)
    assert (apart > 1e-3).all()  # the two embodiments' layers really give different outputs


def _shared_action_layers() -> list[str]:
    return ["history_in", "state_in", "chunk_in.w1", "chunk_in.w2", "chunk_in.w3", "action_out.ada",
            "action_out.linear"]  # fmt: skip


def test_perturbing_one_embodiment_changes_only_its_samples() -> None:
    model = perturbed(TWO)
    batch, cond = random_batch(TWO, 8), random_cond(TWO, 8)
    assert batch.embodiment.tolist() == [0, 1] * 4
    before = run(model, batch, cond, batch.embodiment)
    with torch.no_grad():
        for layer in _embodiment_layers(model).values():
            layer.weight[1].add_(0.1 * torch.randn_like(layer.weight[1]))
            layer.bias[1].add_(0.1)
    after = run(model, batch, cond, batch.embodiment)
    one = batch.embodiment == 1
    for b, a in zip(before, after, strict=True):
        assert torch.equal(b[~one], a[~one])  # embodiment 0's samples: bit-identical
        assert ((b[one] - a[one]).abs().flatten(1).amax(1) > 0).all()  # every embodiment-1 sample moves
    assert ((before[0][one] - after[0][one]).abs().flatten(1).amax(1) > 1e-2).all()  # its actions, visibly


def test_absent_embodiment_gets_zero_gradient_and_ids_are_required() -> None:
    model = perturbed(TWO).train()
    batch, cond = random_batch(TWO, 8), random_cond(TWO, 8)
    batch.embodiment = torch.zeros(8, dtype=torch.long)
    training_losses(model, batch, *cond, torch.Generator().manual_seed(0)).total.backward()
    for layer in _embodiment_layers(model).values():
        assert layer.weight.grad[1].abs().max() == 0 and layer.weight.grad[0].abs().max() > 0
    with pytest.raises(ValueError, match="embodiment"):
        run(model, batch, cond, None)
    with pytest.raises(ValueError, match="embodiments"):
        get_config("tiny", action_heads="per_embodiment")
