"""Qwen3-VL conditioning on frame t and the instruction (issue 13 item 1).

The VLM is the tiny random Qwen3-VL of `tests/fixtures/qwen3vl.py` (config, weights, a `tokenizers`
tokenizer and the image processor, written with `save_pretrained` and loaded back from the folder, the
code path a real Qwen3-VL-4B folder takes). The frames come from the latents cache that `ingest latents`
writes (`tests/fixtures/training.py`); they are checked against the published video decoded with PyAV.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from catalog.mixture import write_mixture
from catalog.mixture_file import Mixture, MixtureEntry
from schemas.latents import IMAGE_SIZE, LatentsMeta, latents_path
from schemas.latents_reader import read_images
from schemas.lerobot import video_path
from tests.fixtures.egodex import decode_frame_index
from tests.fixtures.qwen3vl import save_tiny_qwen3vl
from tests.fixtures.training import training_root
from train.conditioning import Qwen3VLConditionEncoder
from train.data import TrainingData
from train.flow import training_losses
from train.loop import fit
from train.plan import DataConfig, DataError
from train.state import RANDOM_TEXT, TrainOptions

CAPTIONS = ["pick up the red cup", "open the drawer"]


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_qwen3vl(tmp_path_factory.mktemp("models") / "qwen3vl-tiny")


@pytest.fixture(scope="module")
def encoder(qwen_dir: Path) -> Qwen3VLConditionEncoder:
    return Qwen3VLConditionEncoder(qwen_dir)


def _frames(seed: int, n: int = 2) -> torch.Tensor:
    """uint8 [n, 1, 224, 224, 3] random frames (one camera)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, IMAGE_SIZE, IMAGE_SIZE, 3), generator=g, dtype=torch.uint8)


# ----------------------------------------------------------------------------- the encoder


def test_tokens_follow_the_image_and_the_text(encoder: Qwen3VLConditionEncoder) -> None:
    images = _frames(0)
    tokens, mask = encoder(CAPTIONS, images)
    assert encoder.dim == 64 and tokens.shape[2] == 64 and not encoder.training
    # 224 px -> the processor's 64 x 64 -> 4 x 4 patches merged 2 x 2: 4 image tokens per frame
    ids = encoder.inputs(CAPTIONS, images)["input_ids"]
    assert [(row == encoder.image_token_id).sum().item() for row in ids] == [4, 4]
    assert mask.sum(1).tolist() == encoder.inputs(CAPTIONS, images)["attention_mask"].sum(1).tolist()
    assert (tokens[~mask] == 0).all() and torch.isfinite(tokens).all()
    again = encoder(CAPTIONS, images).tokens
    assert torch.equal(again, tokens)  # frozen, eval: deterministic
    other_image = encoder(CAPTIONS, _frames(1)).tokens
    image_pos = ids[0] == encoder.image_token_id
    first_image = int(image_pos.nonzero()[0])
    assert torch.equal(other_image[0, :first_image], tokens[0, :first_image])  # causal: before the image
    assert (other_image[0, image_pos] - tokens[0, image_pos]).abs().mean() > 1e-3
    assert (other_image[0, mask[0]][-1] - tokens[0, mask[0]][-1]).abs().mean() > 1e-3  # reaches the end
    swapped = encoder(CAPTIONS[::-1], images)
    n = int(swapped.mask[0].sum())
    assert n != int(mask[0].sum()) or not torch.equal(swapped.tokens[0, :n], tokens[0, :n])
    # the same image with another instruction: the image tokens agree, the text tokens do not
    torch.testing.assert_close(swapped.tokens[0, image_pos], tokens[0, image_pos])
    assert (swapped.tokens[0, n - 1] - tokens[0, int(mask[0].sum()) - 1]).abs().mean() > 1e-3


def test_a_sample_alone_gets_the_tokens_it_gets_in_a_padded_batch(encoder: Qwen3VLConditionEncoder) -> None:
    images = _frames(2)
    batch = encoder(CAPTIONS, images)
    alone = encoder(CAPTIONS[1:], images[1:])
    n = int(alone.mask[0].sum())
    assert int(batch.mask[1].sum()) == n
    torch.testing.assert_close(alone.tokens[0, :n], batch.tokens[1, :n], atol=1e-5, rtol=1e-4)


def test_frozen_gets_no_gradient_and_unfrozen_does(qwen_dir: Path) -> None:
    from train.configs import get_config
    from train.flow import random_batch
    from train.model import LDAModel

    config = get_config("tiny", latent_dim=8, n_latent_tokens=4, cond_dim=64)

    def grads(frozen: bool) -> dict[str, torch.Tensor | None]:
        enc = Qwen3VLConditionEncoder(qwen_dir, frozen=frozen)
        torch.manual_seed(0)
        model, batch = LDAModel(config), random_batch(config, 2)
        with torch.no_grad():  # open the zero-initialised gates so that the condition gets gradient
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        with torch.set_grad_enabled(not enc.frozen):  # what train_step does
            cond, mask = enc(batch.captions, _frames(3))
        training_losses(model, batch, cond, mask, torch.Generator().manual_seed(0)).total.backward()
        return {n: p.grad for n, p in enc.named_parameters()}

    frozen = grads(True)
    assert all(g is None for g in frozen.values())
    unfrozen = grads(False)
    vision = [g for n, g in unfrozen.items() if ".visual." in f".{n}" and g is not None]
    text = [g for n, g in unfrozen.items() if "language_model" in n and g is not None]
    assert vision and text  # both the image path and the text path are trained
    assert max(float(g.abs().max()) for g in vision) > 0 and max(float(g.abs().max()) for g in text) > 0


def test_options_name_the_encoder_and_refuse_a_big_config_without_a_vlm(
    tmp_path: Path, qwen_dir: Path
) -> None:
    base = {"mixture": tmp_path / "m.yaml", "root": tmp_path, "out": tmp_path / "run"}
    assert TrainOptions(**base).condition == RANDOM_TEXT  # tiny: the CPU demo default
    assert TrainOptions(**base, condition="small").condition == RANDOM_TEXT  # the old name
    vlm = TrainOptions(**base, config="1b", condition=str(qwen_dir))
    assert vlm.vlm and vlm.condition == str(qwen_dir.resolve())
    for bad in ({"config": "0.5b"}, {"config": "1b", "condition": str(tmp_path)}):
        with pytest.raises(ValueError, match="Qwen3-VL"):
            TrainOptions(**base, **bad)
    with pytest.raises(ValueError, match="unfreeze-vlm"):
        TrainOptions(**base, unfreeze_vlm=True)


def test_cli_says_in_one_line_that_1b_needs_a_vlm(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from train.cli import app

    args = ["launch", "--mixture", str(tmp_path / "m.yaml"), "--root", str(tmp_path), "--config", "1b"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "train launch: --config 1b conditions on Qwen3-VL (image + instruction): pass --condition with a "
        "local Qwen3-VL folder (or --condition random-text for a demo without meaning)"
    ]


# ----------------------------------------------------------------------------- frames and training


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Path:
    return training_root(tmp_path_factory.mktemp("vlm-train"), episodes=4, frames=60)


@pytest.fixture(scope="module")
def hands(root: Path) -> Path:
    entry = MixtureEntry(name="hands", where='category == "human_action"', weight=1.0)
    mixture = Mixture(name="hands", weighting="explicit", entries=[entry])
    return write_mixture(mixture, root.parent / "hands.yaml")


def _decode(video: Path, index: int) -> np.ndarray:
    """Frame `index` of a video by PyAV at full size, scaled (torch, short side 224) and centre-cropped."""
    with av.open(str(video)) as c:
        frame = next(f for i, f in enumerate(c.decode(video=0)) if i == index).to_ndarray(format="rgb24")
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    h, w = x.shape[-2:]
    s = IMAGE_SIZE / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - IMAGE_SIZE) // 2, (x.shape[-1] - IMAGE_SIZE) // 2
    return x[0, :, top : top + IMAGE_SIZE, left : left + IMAGE_SIZE].permute(1, 2, 0).numpy()


def test_batch_images_are_frame_t_of_the_video(root: Path, hands: Path) -> None:
    ds = root / "hands"
    assert LatentsMeta.load(ds).images
    data = TrainingData.open(DataConfig(root=root, mixture=hands, batch_size=4, images=True, holdout=0))
    batch = data.batch(0)
    assert batch.images.dtype == torch.uint8 and batch.images.shape[1:] == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    camera = data.datasets[0].camera
    for i in range(len(batch)):
        ep, t = int(batch.episode_index[i]), int(batch.frame_index[i])
        got = batch.images[i, 0].numpy().astype(np.float64)
        video = ds / video_path(ep, camera)
        want = _decode(video, t)
        assert np.abs(got - want).mean() < 4.0, (ep, t)  # codec + scaler tolerance
        assert decode_frame_index(got) == decode_frame_index(want)
        later = _decode(video, t + 3) if t + 3 < data.table.length[0] else _decode(video, t - 3)
        assert np.abs(got - later).mean() > 10.0  # frame t, not its neighbour (the future is another image)
    # the same pixels through the reader directly
    path = ds / latents_path(int(batch.episode_index[0]), camera)
    assert np.array_equal(read_images(path, [int(batch.frame_index[0])])[0], batch.images[0, 0].numpy())
    assert TrainingData.open(DataConfig(root=root, mixture=hands, batch_size=4)).batch(0).images is None


def test_no_frames_in_the_cache_is_a_one_line_error(root: Path, hands: Path) -> None:
    meta_path = root / "hands" / "meta" / "latents.json"
    saved = meta_path.read_text()
    try:
        meta_path.write_text(json.dumps({**json.loads(saved), "images": False}))
        with pytest.raises(DataError, match="holds no frames"):
            TrainingData.open(DataConfig(root=root, mixture=hands, batch_size=4, images=True))
    finally:
        meta_path.write_text(saved)


def test_tiny_run_with_the_tiny_vlm_names_it(root: Path, hands: Path, qwen_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    opts = TrainOptions(mixture=hands, root=root, out=out, config="tiny", steps=3, batch_size=4,
                        loader_workers=0, progress=False, condition=str(qwen_dir),
                        unfreeze_vlm=True)  # fmt: skip
    fit(opts)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["condition"] for x in lines] == ["qwen3vl:qwen3vl-tiny"] * 3
    assert all(np.isfinite(x["loss"]) for x in lines)
    run = json.loads((out / "run.json").read_text())
    assert run["condition"] == {"name": "qwen3vl:qwen3vl-tiny", "dim": 64, "frozen": False, "images": True,
                                "note": None}  # fmt: skip
    assert run["model"]["cond_dim"] == 64
    # --unfreeze-vlm: the fine-tuned encoder is saved and differs from the folder's weights
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    start = Qwen3VLConditionEncoder(qwen_dir).state_dict()
    # more than weight decay alone would move them (lr 1e-5 x decay 1e-5): Adam steps of ~lr
    moved = [k for k, v in state["condition"].items() if (v - start[k]).abs().max() > 1e-6]
    assert any("visual" in k for k in moved) and any("language_model" in k for k in moved)
    random_run = TrainOptions(**{**opts.model_dump(), "out": tmp_path / "rt", "condition": None,
                                 "unfreeze_vlm": False, "steps": 1})  # fmt: skip
    fit(random_run)
    assert json.loads((tmp_path / "rt" / "metrics.jsonl").read_text())["condition"] == RANDOM_TEXT
    note = json.loads((tmp_path / "rt" / "run.json").read_text())["condition"]["note"]
    assert "tests and demos only" in note


# ----------------------------------------------------------------------------- the condition-token cache


def test_cached_tokens_are_the_encoders_and_train_the_same(
    root: Path, hands: Path, qwen_dir: Path, encoder: Qwen3VLConditionEncoder, tmp_path: Path
) -> None:
    from train.cache_job import CacheOptions, build_condition_cache

    cache = tmp_path / "cond"
    opts = CacheOptions(mixture=hands, root=root, condition=qwen_dir, out=cache, batch_size=8)
    first = build_condition_cache(opts)
    assert (first.episodes, first.encoded) == (4, 4) and first.frames == 4 * 7  # 20 frames at 10 Hz, stride 3
    assert build_condition_cache(opts).encoded == 0  # a re-run encodes nothing new
    # a batch's cached tokens are the encoder's tokens of the same samples (frame t + caption), in fp16
    cfg = {"root": root, "mixture": hands, "batch_size": 4, "holdout": 0}
    cached = TrainingData.open(DataConfig(**cfg, condition_cache=cache)).batch(5)
    live = TrainingData.open(DataConfig(**cfg, images=True)).batch(5)
    assert cached.images is None and torch.equal(cached.frame_index, live.frame_index)
    want = encoder(live.captions, live.images)
    assert torch.equal(cached.cond_mask, want.mask)
    torch.testing.assert_close(cached.cond_tokens, want.tokens, atol=2e-3, rtol=2e-3)
    # training from the cache: the same losses as running the VLM in the step (fp16 tokens aside)
    base = {"mixture": hands, "root": root, "config": "tiny", "steps": 3, "batch_size": 4,
            "loader_workers": 0, "progress": False}  # fmt: skip
    fit(TrainOptions(**base, out=tmp_path / "live", condition=str(qwen_dir)))
    fit(TrainOptions(**base, out=tmp_path / "cached", condition_cache=cache))
    live_m, cached_m = (
        [json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
        for r in ("live", "cached")
    )
    assert [m["condition"] for m in cached_m] == ["cache:qwen3vl:qwen3vl-tiny"] * 3
    np.testing.assert_allclose([m["loss"] for m in cached_m], [m["loss"] for m in live_m], rtol=1e-3)
    with pytest.raises(ValueError, match="condition-cache"):
        TrainOptions(**base, out=tmp_path / "x", condition_cache=cache, unfreeze_vlm=True)
