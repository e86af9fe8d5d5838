"""`train viz`: attention capture (`train.model.capture_attention`), the no-op chunk, PCA colours and the
pictures of a trained run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from schemas.canonical import IDENTITY_ROT6D, SIDES, part_slice
from tests.test_model import TINY, model_inputs, trained_tiny
from train.flow import random_batch, random_cond
from train.model import capture_attention
from train.normalize import Normalizer
from train.viz import attention_difference, noop_actions, pca_colours


def _norm(seed: int = 0) -> Normalizer:
    g = np.random.default_rng(seed)
    vec = lambda n, lo: (g.normal(size=n) if lo is None else g.uniform(lo, 1.0, n)).tolist()  # noqa: E731
    return Normalizer(state_mean=vec(146, None), state_std=vec(146, 0.1), action_mean=vec(146, None),
                      action_std=vec(146, 0.1), latent_mean=vec(TINY.latent_dim, None),
                      latent_std=vec(TINY.latent_dim, 0.1))  # fmt: skip


def test_capture_leaves_the_output_and_keeps_a_softmax_over_keys() -> None:
    model = trained_tiny()
    batch, cond = random_batch(TINY, 6), random_cond(TINY, 6)
    inputs = model_inputs(batch, cond)
    block_inputs = []
    hook = model.blocks[0].register_forward_pre_hook(lambda _m, args: block_inputs.append(args))
    with torch.no_grad():
        plain = model(**inputs)
        with capture_attention(model) as stores:
            captured = model(**inputs)
    hook.remove()
    for a, b in zip(plain, captured, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert all(block.captured is None for block in model.blocks)  # off again: the SDPA path
    n = TINY.n_sink_tokens + TINY.n_latent_tokens + TINY.history_actions + 1 + TINY.chunk
    assert len(stores) == TINY.layers and all(len(s) == 1 for s in stores)
    probs = stores[0][0]
    assert probs.shape == (6, TINY.heads, n, n)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6, TINY.heads, n), atol=1e-5, rtol=0)
    # Block 0 recomputed from its own inputs (the second call: the captured one), in float64 with exp / sum.
    x_obs, x_act, c = block_inputs[1][:3]
    block = model.blocks[0]
    qs, ks = [], []
    for e, x in zip(block.experts, (x_obs, x_act), strict=True):
        shift, scale = e.ada(c)[:, None, :].chunk(6, dim=-1)[:2]
        q, k, _ = e.qkv_heads(x, shift, scale, TINY.heads)
        qs.append(q.double())
        ks.append(k.double())
    q, k = torch.cat(qs, 2), torch.cat(ks, 2)
    logits = torch.einsum("bhqd,bhkd->bhqk", q, k) / TINY.head_dim**0.5
    weights = (logits - logits.amax(-1, keepdim=True)).exp()
    torch.testing.assert_close(probs.double(), weights / weights.sum(-1, keepdim=True), atol=1e-6, rtol=0)


def test_noop_chunk_holds_the_state() -> None:
    batch, norm = random_batch(TINY, 4, tasks=[1, 1, 1, 1], seed=3), _norm()
    still = norm.unnormalize_actions(noop_actions(batch, norm), batch.action_dims[:, None, :])
    state = norm.unnormalize_state(batch.state, batch.state_mask)
    dims = batch.action_dims
    for side in SIDES:
        pos, rot, grip = (part_slice(side, p) for p in ("position", "rotation", "gripper"))
        for c in (0, TINY.chunk - 1):
            assert still[:, c, pos][dims[:, pos]].abs().max() < 1e-5
            want = torch.as_tensor(IDENTITY_ROT6D).expand(4, 6)[dims[:, rot]]
            torch.testing.assert_close(still[:, c, rot][dims[:, rot]], want, atol=1e-5, rtol=0)
            held = dims[:, grip] & batch.state_mask[:, grip]
            assert held.any()
            torch.testing.assert_close(still[:, c, grip][held], state[:, grip][held], atol=1e-5, rtol=0)
    assert torch.all(still[~dims[:, None, :].expand_as(still)] == 0.0)


def test_attention_difference_is_zero_exactly_when_the_action_is_the_noop() -> None:
    model, norm = trained_tiny(), _norm()
    batch = random_batch(TINY, 4, tasks=[1, 1, 1, 1], seed=1)
    batch = replace(batch, action_dims=torch.ones_like(batch.action_dims))  # every dimension moves
    cond = random_cond(TINY, 4)
    _, a_act, a_noop = attention_difference(model, batch, cond, norm, steps=2, seed=0)
    assert a_act.shape == (4, TINY.n_latent_tokens)
    assert (a_act - a_noop).abs().amin(dim=1).gt(0).any()  # a real action changes the attention
    assert torch.all((a_act > 0) & (a_act < 1))  # a share of each visual query's attention
    still = replace(batch, actions=noop_actions(batch, norm))
    _, s_act, s_noop = attention_difference(model, still, cond, norm, steps=2, seed=0)
    assert torch.equal(s_act, s_noop)


def _pca_by_eigh(features: np.ndarray, grids: list[np.ndarray]) -> list[np.ndarray]:
    """The same colours another way: eigenvectors of the covariance (not an SVD), same sign rule."""
    x = features.astype(np.float64)
    mean = x.mean(0)
    vals, vecs = np.linalg.eigh(np.cov((x - mean).T))
    comps = vecs[:, np.argsort(vals)[::-1][:3]].T
    comps *= np.sign(comps[np.arange(3), np.abs(comps).argmax(1)])[:, None]
    ref = (x - mean) @ comps.T
    lo, hi = ref.min(0), ref.max(0)
    return [np.clip(((g.astype(np.float64) - mean) @ comps.T - lo) / (hi - lo), 0, 1) for g in grids]


def test_pca_colours_match_an_eigendecomposition() -> None:
    g = np.random.default_rng(0)
    # Anisotropic features: three clear directions, so the components are well separated.
    true = g.normal(size=(196, 3)) * [5.0, 3.0, 2.0] @ g.normal(size=(3, 24)) + 0.1 * g.normal(size=(196, 24))
    pred = true + 0.5 * g.normal(size=true.shape)
    got = pca_colours([true, pred], fit_on=true)
    want = _pca_by_eigh(true, [true, pred])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8)
    assert got[0].min(0).tolist() == [0, 0, 0] and got[0].max(0).tolist() == [1, 1, 1]


# --------------------------------------------------------------------------------------------------
# A trained tiny run on the ingested fixture (EgoDex -> ingest -> latents -> catalog), with video
# --------------------------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_train_viz_writes_the_pictures_of_a_trained_run(tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from catalog.mixture import write_mixture
    from catalog.mixture_file import Mixture, MixtureEntry
    from ingest.latents import _rgb_frames
    from schemas.latents import latents_path
    from schemas.latents_reader import read_latents
    from schemas.lerobot import video_path
    from tests.fixtures.training import training_root
    from train.cli import app
    from train.loop import fit
    from train.state import TrainOptions
    from train.viz import encoder_view

    root = training_root(tmp_path / "data")
    mixture = write_mixture(Mixture(name="hands", weighting="explicit", entries=[
        MixtureEntry(name="hands", where='category == "human_action"', weight=1.0)]),
        tmp_path / "hands.yaml")  # fmt: skip
    run = tmp_path / "run"
    fit(TrainOptions(mixture=mixture, root=root, out=run, config="tiny", batch_size=8, steps=20, lr=1e-3,
                     loader_workers=0, progress=False))  # fmt: skip
    result = CliRunner().invoke(app, ["viz", str(run), "--samples", "3", "--steps", "2"])
    assert result.exit_code == 0, result.output
    out = run / "viz"
    for name in ("sample_00.png", "sample_02.png", "pca.png", "attention.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 500 and im.height > 200
    meta = json.loads((out / "viz.json").read_text())
    arrays = np.load(out / "viz.npz")
    assert len(meta) == 3 and all(m["video"] for m in meta)
    ds = root / "hands"
    for i, m in enumerate(meta):
        ep, t, future = m["episode_index"], m["frame_index"], m["future_frame"]
        # The true future grid is the cached latent of frame t+K, read back here with the catalog's reader.
        cached = read_latents(ds / latents_path(ep, "observation.images.ego"), [t, future]).astype(np.float32)
        np.testing.assert_allclose(arrays[f"{i}/future"], cached[1], atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(arrays[f"{i}/current"], cached[0], atol=1e-3, rtol=1e-3)
        rgb = _pca_by_eigh(arrays[f"{i}/future"], [arrays[f"{i}/future"], arrays[f"{i}/predicted"]])
        np.testing.assert_allclose(arrays[f"{i}/rgb_future"], rgb[0], atol=1e-6)
        np.testing.assert_allclose(arrays[f"{i}/rgb_predicted"], rgb[1], atol=1e-6)
        assert np.abs(arrays[f"{i}/attention_action"] - arrays[f"{i}/attention_noop"]).max() > 0
    # The frames drawn are the frames the encoder saw: decoded by ingest's own reader, cropped the same way.
    from train.viz import read_frames

    m = meta[0]
    video = ds / video_path(m["episode_index"], "observation.images.ego")
    ours = read_frames(video, [m["frame_index"]], "center_crop")[m["frame_index"]]
    theirs = next(_rgb_frames(video, np.array([m["frame_index"]]), "center_crop"))
    np.testing.assert_array_equal(ours, encoder_view(theirs, "center_crop"))
