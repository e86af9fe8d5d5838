"""ingest/latents.py, schemas/latents.py and schemas/latents_reader.py with a tiny random DINOv3 saved to and
loaded from a local folder, on small synthetic videos."""

from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pydantic
import pytest
import torch
from torch import nn
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from ingest.errors import EpisodeError
from ingest.latents import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ChannelStats,
    Encoder,
    encode_video,
    latent_frames,
    load_encoder,
    preprocess,
    resized_size,
    square_frames,
    write_episode_latents,
)
from schemas.latents import LatentsConfig, LatentsMeta, latents_path
from schemas.latents_reader import has_images, latent_frame_indices, read_images, read_latents

os.environ["HF_HUB_OFFLINE"] = "1"

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
W, H, STEP = 64, 48, 20  # source frame k is uniformly grey at 10 + STEP * k
MEAN = np.array(IMAGENET_MEAN)[:, None, None]
STD = np.array(IMAGENET_STD)[:, None, None]


def make_video(path: Path, n: int, fmt: str | None = None) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for k in range(n):
            img = np.full((H, W, 3), 10 + STEP * k, dtype=np.uint8)
            img[: H // 2, : W // 3] = 255 - STEP * k  # some structure, different per frame
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 30)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DINOv3 (hidden 32, 2 layers, 2 heads, 4 registers, patch 16), save_pretrained."""
    folder = tmp_path_factory.mktemp("dinov3-tiny")
    torch.manual_seed(0)
    DINOv3ViTModel(DINOv3ViTConfig(num_register_tokens=4, **TINY)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder(model_dir: Path) -> Encoder:
    return load_encoder(LatentsConfig(model_dir=model_dir, device="cpu"))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "episode.mp4", 10)


class SpyEncoder:
    """Records what encode_video hands to the encoder."""

    def __init__(self, resize: str) -> None:
        self.resize, self.n_tokens, self.dim, self.batches = resize, 1, 1, []

    def encode(self, frames: np.ndarray) -> np.ndarray:
        self.batches.append(frames.copy())
        return np.zeros((len(frames), 1, 1), dtype=np.float16)


# ---------------------------------------------------------------------------------------------------------
# Encoder and video


def test_latent_frames() -> None:
    assert latent_frames(10, 3).tolist() == [0, 3, 6, 9]
    assert latent_frames(9, 3).tolist() == [0, 3, 6]
    assert latent_frames(1, 3).tolist() == [0]
    assert latent_frames(0, 3).tolist() == []
    assert latent_frames(10, 3).dtype == np.int64


def test_shapes_stride_and_cls_registers_option(model_dir: Path, encoder: Encoder, video: Path) -> None:
    frames = latent_frames(10, 3)
    lat = encode_video(video, frames, encoder, batch_size=3)
    assert lat.dtype == np.float16 and lat.shape == (4, 196, 32)
    assert np.isfinite(lat).all()
    full = load_encoder(LatentsConfig(model_dir=model_dir, device="cpu", tokens="cls_registers_patch"))
    lat201 = encode_video(video, frames, full, batch_size=3)
    assert lat201.shape == (4, 201, 32)
    np.testing.assert_array_equal(lat201[:, 5:], lat)


@pytest.mark.parametrize(("resize", "size"), [("center_crop", (224, 299)), ("letterbox", (168, 224))])
def test_decodes_only_needed_frames_at_policy_size(video: Path, resize: str, size: tuple[int, int]) -> None:
    spy = SpyEncoder(resize)
    encode_video(video, np.array([0, 3, 6, 9]), spy, batch_size=3)  # type: ignore[arg-type]
    assert [len(b) for b in spy.batches] == [3, 1]
    frames = np.concatenate(spy.batches)
    assert frames.shape == (4, *size, 3) and frames.dtype == np.uint8  # scaled in the codec scaler
    assert resized_size(H, W, resize) == size  # type: ignore[arg-type]
    bottom_right = frames[:, -size[0] // 4 :, -size[1] // 4 :].reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(bottom_right, [10 + STEP * k for k in (0, 3, 6, 9)], atol=3)


def test_deterministic_bytes_also_after_parent_train(encoder: Encoder, video: Path, tmp_path: Path) -> None:
    frames = latent_frames(10, 3)
    write_episode_latents(tmp_path / "a.safetensors", encode_video(video, frames, encoder, 4), frames)

    class Parent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.head = encoder, nn.Linear(4, 4)

    parent = Parent().train()
    assert parent.training and parent.head.training
    assert not any(m.training for m in encoder.modules())
    write_episode_latents(tmp_path / "b.safetensors", encode_video(video, frames, encoder, 4), frames)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_train_mode_is_the_real_trap_and_forward_undoes_it(encoder: Encoder) -> None:
    img = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    reference = encoder.encode(img)
    pixels = preprocess(img, "center_crop")
    encoder.backbone.rope_embeddings.train()  # bypasses Encoder.train: only the RoPE module in train mode
    with torch.no_grad():
        a, b = (encoder.backbone(pixel_values=pixels).last_hidden_state for _ in range(2))
    assert not torch.equal(a, b)  # RoPE coordinate rescaling in train mode
    np.testing.assert_array_equal(encoder.encode(img), reference)
    assert not any(m.training for m in encoder.backbone.modules())


def test_token_layout_is_cls_registers_then_row_major_patches(model_dir: Path, encoder: Encoder) -> None:
    rng = np.random.default_rng(1)
    base = np.full((224, 224, 3), 128, dtype=np.uint8)
    left, top = base.copy(), base.copy()
    left[:, :112] = rng.integers(0, 256, (224, 112, 3))
    top[:112, :] = rng.integers(0, 256, (112, 224, 3))
    lat = encoder.encode(np.stack([base, left, top])).astype(np.float32)
    change = np.linalg.norm(lat[1:] - lat[:1], axis=-1).reshape(2, 14, 14)  # [image, row, col]
    assert change[0][:, :7].mean() > 3 * change[0][:, 7:].mean()  # left half changed: left columns move
    assert change[1][:7].mean() > 3 * change[1][7:].mean()  # top half changed: top rows move
    full = load_encoder(LatentsConfig(model_dir=model_dir, device="cpu", tokens="cls_registers_patch"))
    out = full.backbone(pixel_values=preprocess(base[None], "center_crop"))
    cls = out.pooler_output.detach().half().numpy()
    np.testing.assert_array_equal(full.encode(base[None])[:, 0], cls)


def test_refuses_without_weights(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--model-dir.*--random-weights"):
        load_encoder(LatentsConfig())
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_encoder(LatentsConfig(model_dir=tmp_path / "missing"))
    with pytest.raises(pydantic.ValidationError, match="not both"):
        LatentsConfig(model_dir=tmp_path, random_weights=True)


def test_random_weights_build_the_vits16_shape() -> None:
    rng_state = torch.get_rng_state()
    enc = load_encoder(LatentsConfig(random_weights=True, device="cpu"))
    assert torch.equal(torch.get_rng_state(), rng_state)  # fixed seed, global RNG untouched
    assert (enc.dim, enc.n_registers, enc.patch_size, enc.n_tokens) == (384, 4, 16, 196)
    assert sum(p.numel() for p in enc.backbone.parameters()) == pytest.approx(21.6e6, rel=0.01)
    lat = enc.encode(np.zeros((2, H, W, 3), dtype=np.uint8))
    assert lat.shape == (2, 196, 384) and lat.dtype == np.float16
    meta = enc.latents_meta(3, {"observation.images.ego": ChannelStats(384).add(lat)})
    assert meta.random_weights and meta.model_id is None and "RANDOM WEIGHTS" in (meta.warning or "")
    assert meta.config_sha256 == enc.config_sha256 and meta.init_seed == 0
    tiny = load_encoder(LatentsConfig(random_weights=True, device="cpu"), config_override=TINY)
    assert tiny.dim == 32 and tiny.config_sha256 != enc.config_sha256


def test_pretrained_identity(encoder: Encoder, model_dir: Path) -> None:
    assert not encoder.random_weights and encoder.model_id == model_dir.name
    assert encoder.revision is not None and encoder.revision.startswith("sha256:")


def test_truncated_or_short_video_is_a_named_reject(encoder: Encoder, video: Path, tmp_path: Path) -> None:
    frames = latent_frames(10, 3)
    cut = tmp_path / "cut.mp4"  # moov atom lost: the container does not open
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    mkv = make_video(tmp_path / "full.mkv", 10, fmt="matroska")
    cut_mkv = tmp_path / "cut.mkv"  # opens, then the stream ends early
    cut_mkv.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    for path, frames_asked in [
        (cut, frames),
        (cut_mkv, frames),
        (video, np.array([0, 12])),
        (tmp_path, frames),
    ]:
        with pytest.raises(EpisodeError) as err:
            encode_video(path, frames_asked, encoder, 4)
        assert err.value.stage == "video" and err.value.path == str(path) and str(path) in str(err.value)
    with pytest.raises(EpisodeError, match="video has 10 frames, needed frame 12"):
        encode_video(video, np.array([0, 12]), encoder, 4)


# ---------------------------------------------------------------------------------------------------------
# Preprocessing geometry and normalisation, against numbers computed with numpy


def _unnormalise(x: torch.Tensor) -> np.ndarray:
    return x[0].double().numpy() * STD + MEAN


def test_normalisation_and_letterbox_padding() -> None:
    rgb = np.array([10, 128, 250])
    frame = np.broadcast_to(rgb.astype(np.uint8), (1, H, W, 3))
    expected = (rgb / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    crop = preprocess(frame, "center_crop")[0].double().numpy()
    assert crop.shape == (3, 224, 224)
    np.testing.assert_allclose(crop, np.broadcast_to(expected[:, None, None], crop.shape), atol=1e-5)
    box = preprocess(frame, "letterbox")[0].double().numpy()  # 64x48 -> 224x168, 28 rows above and below
    np.testing.assert_allclose(
        box[:, 28:196], np.broadcast_to(expected[:, None, None], (3, 168, 224)), atol=1e-5
    )
    assert np.all(box[:, :28] == 0) and np.all(box[:, 196:] == 0)  # = the ImageNet mean before normalising


def test_center_crop_geometry_matches_bilinear_sampling() -> None:
    ramp_x = np.broadcast_to((3 * np.arange(W)).astype(np.uint8)[None, None, :, None], (1, H, W, 3))
    y = _unnormalise(preprocess(ramp_x, "center_crop"))  # 64x48 -> 299x224, crop 37 columns each side
    src = (np.arange(224) + 37 + 0.5) * W / 299 - 0.5
    np.testing.assert_allclose(y, np.broadcast_to(3 * src / 255, y.shape), atol=1e-6)
    ramp_y = np.broadcast_to((2 * np.arange(96)).astype(np.uint8)[None, :, None, None], (1, 96, 64, 3))
    y = _unnormalise(preprocess(ramp_y, "center_crop"))  # 64x96 -> 224x336, crop 56 rows each side
    src = (np.arange(224) + 56 + 0.5) * 96 / 336 - 0.5
    np.testing.assert_allclose(y, np.broadcast_to((2 * src / 255)[:, None], y.shape), atol=1e-6)


def test_letterbox_geometry_downscale() -> None:
    ramp = np.broadcast_to(np.arange(250).astype(np.uint8)[None, None, :, None], (1, 200, 250, 3))
    x = preprocess(ramp, "letterbox")[0].double().numpy()  # 250x200 -> 224x179, pad 22 above, 23 below
    assert np.all(x[:, :22] == 0) and np.all(x[:, 201:] == 0) and np.all(x[:, 22] != 0)
    y = x[:, 22:201] * STD + MEAN
    src = (np.arange(224) + 0.5) * 250 / 224 - 0.5
    np.testing.assert_allclose(y[..., 2:-2], np.broadcast_to(src[2:-2] / 255, y[..., 2:-2].shape), atol=1e-3)


# ---------------------------------------------------------------------------------------------------------
# Store and reader


def test_write_then_read_exact_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frames = latent_frames(20, 3)  # 0, 3, ..., 18
    lat = rng.standard_normal((len(frames), 196, 8)).astype(np.float16)
    path = tmp_path / latents_path(1234, "observation.images.ego")
    assert path.as_posix().endswith("latents/chunk-001/observation.images.ego/episode_001234.safetensors")
    write_episode_latents(path, lat, frames)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left
    np.testing.assert_array_equal(latent_frame_indices(path), frames)
    out = read_latents(path, [9, 0, 18, 9, 12, 15])
    np.testing.assert_array_equal(out, lat[[3, 0, 6, 3, 4, 5]])
    assert out.dtype == np.float16 and read_latents(path, []).shape == (0, 196, 8)
    with pytest.raises(KeyError, match=r"\[4, 21\]"):
        read_latents(path, [3, 4, 21])
    with pytest.raises(ValueError, match="float16"):
        write_episode_latents(path, lat.astype(np.float32), frames)
    with pytest.raises(ValueError, match="increasing"):
        write_episode_latents(path, lat, frames[::-1])


def test_stored_frames_are_what_the_encoder_sees(tmp_path: Path) -> None:
    """`square_frames` (the frames kept beside the latents) = `preprocess` before normalisation, for both
    policies; they round-trip through the file, and a file without them is not cached for a run that
    wants them."""
    from ingest.latents_job import _is_cached

    rng = np.random.default_rng(3)
    for resize, (h, w) in (("center_crop", (224, 299)), ("letterbox", (168, 224))):
        frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        seen = np.round(np.stack([_unnormalise(preprocess(f[None], resize)) for f in frames]) * 255)
        kept = square_frames(frames, resize)
        assert kept.shape == (2, 224, 224, 3) and kept.dtype == np.uint8
        np.testing.assert_allclose(kept.transpose(0, 3, 1, 2), seen, atol=1)
    index = latent_frames(9, 3)
    lat = rng.standard_normal((3, 196, 8)).astype(np.float16)
    path = tmp_path / "ep.safetensors"
    write_episode_latents(path, lat, index)
    assert (
        not has_images(path) and _is_cached(path, index, images=False) and not _is_cached(path, index, True)
    )
    write_episode_latents(path, lat, index, images=kept[[0, 1, 0]])
    assert has_images(path) and _is_cached(path, index, images=True)
    np.testing.assert_array_equal(read_images(path, [6, 3]), kept[[0, 1]])


def _sparse_safetensors(path: Path, n: int, rows: dict[int, np.ndarray]) -> None:
    """A valid safetensors file of n frames whose latents are a hole except `rows` (sparse on disk)."""
    row_bytes = 196 * 384 * 2
    header = {
        "frame_index": {"dtype": "I64", "shape": [n], "data_offsets": [0, 8 * n]},
        "latents": {"dtype": "F16", "shape": [n, 196, 384], "data_offsets": [8 * n, 8 * n + n * row_bytes]},
    }
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    start = 8 + len(blob)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + (3 * np.arange(n, dtype="<i8")).tobytes())
        for r, value in rows.items():
            f.seek(start + 8 * n + r * row_bytes)
            f.write(value.astype("<f2").tobytes())
        f.truncate(start + 8 * n + n * row_bytes)


def test_reader_maps_the_file_and_copies_only_the_rows_asked(tmp_path: Path) -> None:
    n = 20_000  # 3.0 GB of latents: reading the file would take seconds and gigabytes
    rng = np.random.default_rng(3)
    rows = {r: rng.standard_normal((196, 384)).astype(np.float16) for r in (5, 6, 12_345)}
    path = tmp_path / "big.safetensors"
    _sparse_safetensors(path, n, rows)
    if path.stat().st_blocks * 512 > 64 << 20:
        pytest.skip("filesystem does not keep sparse files")
    tracemalloc.start()
    t0 = time.perf_counter()
    out = read_latents(path, [3 * 12_345, 15, 18])
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(out, np.stack([rows[12_345], rows[5], rows[6]]))
    assert peak < 8 << 20, f"reader allocated {peak / 1e6:.0f} MB for 3 rows of a 3 GB file"
    assert elapsed < 1.0


# ---------------------------------------------------------------------------------------------------------
# Statistics and meta


def test_channel_stats_merge_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    chunks = [(rng.standard_normal((k, 196, 8)) * 3 + 5).astype(np.float16) for k in (1, 4, 7)]
    a = ChannelStats(8).add(chunks[0]).add(chunks[1])
    merged = ChannelStats(8).merge(a).merge(ChannelStats(8).add(chunks[2])).merge(ChannelStats(8))
    flat = np.concatenate(chunks).reshape(-1, 8).astype(np.float64)
    assert merged.count == len(flat)
    np.testing.assert_allclose(merged.mean, flat.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(merged.std, flat.std(axis=0), rtol=1e-10)


def test_latents_meta_round_trip_and_checks(encoder: Encoder, tmp_path: Path) -> None:
    stats = {"observation.images.ego": ChannelStats(32).add(np.ones((2, 196, 32), dtype=np.float16))}
    meta = encoder.latents_meta(3, stats)
    assert (meta.n_tokens, meta.dim, meta.stride, meta.dtype, meta.image_size) == (196, 32, 3, "float16", 224)
    assert not meta.random_weights and meta.warning is None and meta.model_id
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "latents.json").write_text(meta.model_dump_json(indent=2))
    assert LatentsMeta.load(tmp_path) == meta
    bad = meta.model_dump()
    with pytest.raises(pydantic.ValidationError, match="n_tokens"):
        LatentsMeta.model_validate({**bad, "tokens": "cls_registers_patch"})
    with pytest.raises(pydantic.ValidationError, match="model_id"):
        LatentsMeta.model_validate({**bad, "model_id": None})
    with pytest.raises(pydantic.ValidationError, match="values"):
        LatentsMeta.model_validate({**bad, "dim": 384})
    with pytest.raises(pydantic.ValidationError, match="cameras"):
        LatentsMeta.model_validate({**bad, "cameras": ["observation.images.other"]})
