"""The MM-DiT (`train.model`), configs (`train.configs`) and condition encoders (`train.conditioning`)."""

from __future__ import annotations

import math
import time

import pytest
import torch

from train.batch import CHUNK, TASK_IDS
from train.conditioning import CachedConditionEncoder, Qwen3VLConditionEncoder, SmallTextEncoder
from train.configs import CONFIGS, get_config
from train.flow import random_batch, random_cond, training_losses
from train.model import LDAModel, param_count

TINY = CONFIGS["tiny"]


def model_inputs(batch, cond: tuple[torch.Tensor, torch.Tensor], t: float = 0.5) -> dict[str, torch.Tensor]:
    b = len(batch)
    return dict(
        obs_latents=batch.obs_latents,
        future_slot=batch.future_latents,
        state=batch.state,
        state_mask=batch.state_mask,
        history_actions=batch.history_actions,
        history_mask=batch.history_mask,
        actions_in=batch.actions,
        action_dim_mask=batch.action_dims,
        t_action=torch.full((b,), t),
        t_obs=torch.full((b,), t),
        task=batch.task,
        cond_tokens=cond[0],
        cond_mask=cond[1],
    )


def trained_tiny(seed: int = 0) -> LDAModel:
    """A tiny model whose zero-initialised gates / heads were perturbed, so every path carries signal."""
    torch.manual_seed(seed)
    model = LDAModel(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_param_count_matches_config():
    assert sum(p.numel() for p in LDAModel(TINY).parameters()) == param_count(TINY)
    custom = get_config("tiny", n_sink_tokens=0, layers=3, latent_dim=16, n_latent_tokens=20)
    assert sum(p.numel() for p in LDAModel(custom).parameters()) == param_count(custom)
    assert 0.45e9 < param_count(CONFIGS["0.5b"]) < 0.55e9
    assert 1.7e9 < param_count(CONFIGS["1b"]) < 1.85e9
    one_b = CONFIGS["1b"]
    assert (one_b.hidden, one_b.layers, one_b.heads, one_b.chunk) == (1536, 16, 32, 16)


def test_config_overrides_are_validated():
    config = get_config("1b", latent_dim=32, n_latent_tokens=201)
    assert (config.latent_dim, config.n_latent_tokens, config.hidden) == (32, 201, 1536)
    with pytest.raises(ValueError):
        get_config("tiny", heads=5)
    with pytest.raises(KeyError):
        get_config("2b")


def test_shapes_per_task():
    model = trained_tiny()
    cond = random_cond(TINY, 8)
    for task in range(4):
        batch = random_batch(TINY, 8, tasks=[task] * 8)
        v_action, v_obs = model(**model_inputs(batch, cond))
        assert v_action.shape == (8, CHUNK, TINY.action_dim)
        assert v_obs.shape == (8, TINY.n_latent_tokens, TINY.latent_dim)
        assert torch.isfinite(v_action).all() and torch.isfinite(v_obs).all()


def test_zero_init_outputs_are_zero():
    batch = random_batch(TINY, 4)
    v_action, v_obs = LDAModel(TINY)(**model_inputs(batch, random_cond(TINY, 4)))
    assert not v_action.any() and not v_obs.any()


def test_registers_replace_the_missing_modality():
    model = trained_tiny()
    cond = random_cond(TINY, 4)
    policy = random_batch(TINY, 4, tasks=[TASK_IDS["policy"]] * 4)
    a = model(**model_inputs(policy, cond))
    policy.future_latents.normal_()  # policy never sees the future slot
    b = model(**model_inputs(policy, cond))
    assert torch.equal(a[0], b[0])
    forecast = random_batch(TINY, 4, tasks=[TASK_IDS["visual_forecasting"]] * 4)
    a = model(**model_inputs(forecast, cond))
    forecast.actions.normal_()  # visual forecasting never sees the chunk
    b = model(**model_inputs(forecast, cond))
    assert torch.equal(a[1], b[1])


def test_masked_inputs_are_ignored():
    model = trained_tiny()
    cond = random_cond(TINY, 8)
    batch = random_batch(TINY, 8)
    a = model(**model_inputs(batch, cond))
    batch.state[~batch.state_mask] = 5.0
    batch.history_actions[~batch.history_mask] = 5.0
    b = model(**model_inputs(batch, cond))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_batch_permutation_permutes_outputs():
    model = trained_tiny()
    batch, cond = random_batch(TINY, 8), random_cond(TINY, 8)
    v_action, v_obs = model(**model_inputs(batch, cond))
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    inputs = {k: v[perm] for k, v in model_inputs(batch, cond).items()}
    p_action, p_obs = model(**inputs)
    torch.testing.assert_close(p_action, v_action[perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p_obs, v_obs[perm], atol=1e-5, rtol=1e-5)


def test_condition_padding_and_empty_condition():
    model = trained_tiny()
    batch = random_batch(TINY, 2)
    tokens, mask = random_cond(TINY, 2, length=6)
    mask[:] = False
    mask[0, :3] = True  # sample 0: three real tokens; sample 1: none at all
    a = model(**model_inputs(batch, (tokens, mask)))
    assert all(torch.isfinite(x).all() for x in a)
    tokens[0, 3:] = 100.0  # padding values never matter
    b = model(**model_inputs(batch, (tokens, mask)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bf16_autocast_forward():
    model = trained_tiny()
    batch, cond = random_batch(TINY, 4), random_cond(TINY, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v_action, v_obs = model(**model_inputs(batch, cond))
    assert torch.isfinite(v_action.float()).all() and torch.isfinite(v_obs.float()).all()


def test_tiny_training_step_is_fast():
    """B = 8, 196 latent tokens of dim 32: forward + backward + AdamW well under a second on CPU.

    Timed on one thread: two OpenMP threads on a 2-core machine shared with other processes spin against
    them (35 ms alone, ~600 ms contended); one thread takes ~50 ms either way.
    """
    torch.manual_seed(0)
    config = get_config("tiny", n_latent_tokens=196, latent_dim=32)
    model = LDAModel(config).train()
    batch, cond = random_batch(config, 8), random_cond(config, 8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    threads, times = torch.get_num_threads(), []
    torch.set_num_threads(1)
    try:
        for _ in range(6):
            start = time.perf_counter()
            loss = training_losses(model, batch, *cond, g).total
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    # median of the steps after the first (the first pays one-off allocations)
    assert sorted(times[1:])[len(times[1:]) // 2] < 1.0, times


def test_small_config_is_latent_wide_and_learns_a_batch():
    """`small` (bench/learning.py): hidden >= the ViT-S/16 latent width, and AdamW steps on one batch with
    the same noise lower its flow-matching loss (each step ~0.3 s at B = 4 on CPU)."""
    config = CONFIGS["small"]
    assert config.latent_dim == 384 and config.hidden >= config.latent_dim
    torch.manual_seed(0)
    model = LDAModel(config).train()
    batch, cond = random_batch(config, 4), random_cond(config, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = training_losses(model, batch, *cond, torch.Generator().manual_seed(0)).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0], losses


# --------------------------------------------------------------------------------------------------
# Condition encoders
# --------------------------------------------------------------------------------------------------


def test_small_text_encoder_is_deterministic_and_frozen():
    captions = ["pick up the red cup", "", "ouvrir le tiroir é"]
    a = SmallTextEncoder(dim=32, seed=3)
    tokens, mask = a(captions)
    assert tokens.shape[0] == 3 and tokens.shape[2] == 32 and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [1 + len(c.encode()) for c in captions]
    assert torch.equal(SmallTextEncoder(dim=32, seed=3)(captions).tokens, tokens)
    assert not torch.equal(SmallTextEncoder(dim=32, seed=4)(captions).tokens, tokens)
    assert not any(p.requires_grad for p in a.parameters())
    parent = torch.nn.ModuleDict({"enc": a})
    parent.train()
    assert not a.training  # a frozen encoder stays in eval under a parent's .train()
    assert (tokens[~mask] == 0).all() and torch.isfinite(tokens).all()


def test_cached_condition_encoder(tmp_path):
    base = SmallTextEncoder(dim=32)
    cached = CachedConditionEncoder(base)
    captions = ["open the drawer", "pick the cup", "open the drawer"]
    direct, got = base(captions), cached(captions)
    torch.testing.assert_close(got.tokens, direct.tokens)
    assert torch.equal(got.mask, direct.mask)
    assert len(cached.cache) == 2
    cached.save(tmp_path / "cond.pt")
    lookup = CachedConditionEncoder.load(tmp_path / "cond.pt")
    torch.testing.assert_close(lookup(captions).tokens, direct.tokens)
    with pytest.raises(KeyError):
        lookup(["never seen"])


def test_qwen3vl_text_only_condition_encoder_from_local_folder(tmp_path):
    """The text-only prompt (images=False); image + text is tests/test_condition_vlm.py."""
    from tests.fixtures.qwen3vl import save_tiny_qwen3vl

    save_tiny_qwen3vl(tmp_path / "qwen")
    encoder = Qwen3VLConditionEncoder(tmp_path / "qwen", images=False)
    assert encoder.dim == 64 and not encoder.training and encoder.name == "qwen3vl:qwen:text-only"
    assert not any(p.requires_grad for p in encoder.parameters())
    tokens, mask = encoder(["pick up the cup", "open"])
    # <|im_start|> user \n words <|im_end|> \n: the chat template around 4 and 1 words
    assert (mask.sum(1) - mask.sum(1)[1]).tolist() == [3, 0]
    assert torch.isfinite(tokens).all() and (tokens[~mask] == 0).all()
    # one caption alone gives the same tokens as inside a padded batch (right padding, causal model)
    n = int(mask[1].sum())
    alone = encoder(["open"]).tokens[0, :n]
    torch.testing.assert_close(alone, tokens[1, :n], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="local Qwen3-VL folder"):
        Qwen3VLConditionEncoder(tmp_path / "missing")
