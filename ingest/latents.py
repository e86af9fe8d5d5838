"""Frozen DINOv3 ViT-S/16 encoder and the per-episode latents cache (contract, section 7).

- `load_encoder`: weights from a local folder only; without one, refuse unless `random_weights`.
- `Encoder`: uint8 frames [B, H, W, 3] -> 224x224 (centre crop or letterbox) -> ImageNet normalisation
  -> DINOv3 -> float16 [B, tokens, dim]. Always in eval mode, under `torch.inference_mode()`.
- `encode_video`: decode only the needed frames, RGB at the policy's size straight from the codec scaler.
- `write_episode_latents`: one safetensors file per episode and camera, written atomically.
- `ChannelStats`: running per-channel mean/std for `meta/latents.json`.
The trainer reads the files with `schemas.latents_reader.read_latents`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import save_file
from torch import nn
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from ingest.errors import EpisodeError
from ingest.video import Decoder
from schemas.atomic import atomic_path
from schemas.latents import (
    FRAME_INDEX_KEY,
    IMAGE_SIZE,
    IMAGES_KEY,
    LATENTS_KEY,
    ChannelMoments,
    LatentsConfig,
    LatentsMeta,
    ResizePolicy,
    TokenLayout,
    n_tokens,
)
from schemas.stats import merge_moments

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0
# facebook/dinov3-vits16-pretrain-lvd1689m: DINOv3ViTConfig defaults except the 4 register tokens.
VITS16_CONFIG: dict[str, Any] = {
    "patch_size": 16,
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "num_register_tokens": 4,
    "image_size": IMAGE_SIZE,
    "layer_norm_eps": 1e-5,
    "rope_theta": 100.0,
    "use_gated_mlp": False,
}
_VOLATILE_CONFIG_KEYS = {
    "transformers_version",
    "_name_or_path",
    "architectures",
    "dtype",
    "torch_dtype",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
}
_HF_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<rev>[0-9a-f]{7,64})/?$")
NO_WEIGHTS_MESSAGE = (
    "no DINOv3 weights: pass --model-dir (or set latents.model_dir in pipelines.yaml) to a local folder "
    "holding a DINOv3ViTModel (config.json + model.safetensors), or --random-weights for a demo cache "
    "with random weights (marked as such in meta/latents.json)"
)


# ---------------------------------------------------------------------------------------------------------
# Preprocessing (pure torch: no torchvision, no PIL)


def resized_size(height: int, width: int, resize: ResizePolicy, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """(h, w) before cropping/padding: short side -> size (`center_crop`) or long side -> size."""
    side = min(height, width) if resize == "center_crop" else max(height, width)
    scale = size / side
    return max(1, round(height * scale)), max(1, round(width * scale))


def _to_float(frames: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # torch warns on read-only arrays (broadcast views, memmaps)
    x = torch.as_tensor(frames, device=device)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [B, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


def _letterbox_pad(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad with 0, i.e. the ImageNet mean once normalised."""
    dh, dw = size - x.shape[-2], size - x.shape[-1]
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=0.0)


def preprocess(
    frames: np.ndarray | torch.Tensor, resize: ResizePolicy, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 [B, 3, 224, 224], resized by the policy and ImageNet-normalised."""
    device = torch.device(device)
    x = _to_float(frames, device)
    target = resized_size(x.shape[-2], x.shape[-1], resize)
    if tuple(x.shape[-2:]) != target:
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return _center_crop(x, IMAGE_SIZE) if resize == "center_crop" else _letterbox_pad(x, IMAGE_SIZE)


def square_frames(frames: np.ndarray, resize: ResizePolicy, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 [B, h, w, 3] at the policy's resized size (`resized_size`) -> uint8 [B, size, size, 3]: the
    centre crop, or the letterbox padded with the ImageNet mean (what `preprocess` gives, before
    normalisation). `ingest latents` stores these beside the latents (`LatentsConfig.images`)."""
    h, w = frames.shape[1:3]
    if resize == "center_crop":
        top, left = (h - size) // 2, (w - size) // 2
        return np.ascontiguousarray(frames[:, top : top + size, left : left + size])
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    out[:] = np.round(np.array(IMAGENET_MEAN) * 255).astype(np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, top : top + h, left : left + w] = frames
    return out


# ---------------------------------------------------------------------------------------------------------
# Encoder


class Encoder(nn.Module):
    """A frozen DINOv3 ViT that stays in eval mode whatever its parent does."""

    def __init__(
        self,
        backbone: DINOv3ViTModel,
        *,
        resize: ResizePolicy = "center_crop",
        tokens: TokenLayout = "patch",
        compute_dtype: torch.dtype = torch.float32,
        model_id: str | None = None,
        revision: str | None = None,
        init_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.resize, self.tokens, self.compute_dtype = resize, tokens, compute_dtype
        self.model_id, self.revision, self.init_seed = model_id, revision, init_seed
        self.config_sha256 = config_sha256(backbone.config)
        cfg = backbone.config
        self.dim, self.n_registers, self.patch_size = cfg.hidden_size, cfg.num_register_tokens, cfg.patch_size
        self.n_tokens = n_tokens(tokens, self.n_registers, (IMAGE_SIZE // self.patch_size) ** 2)
        super().train(False)

    @property
    def random_weights(self) -> bool:
        return self.init_seed is not None

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def train(self, mode: bool = True) -> Encoder:
        """Ignore `mode`: a frozen DINOv3 is stochastic in train mode (RoPE rescaling)."""
        return super().train(False)

    def forward(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> float16 [B, n_tokens, dim] on the encoder's device."""
        if any(m.training for m in self.backbone.modules()):  # set on the backbone or a submodule
            self.backbone.eval()
        device = self.device
        with torch.inference_mode():
            pixels = preprocess(frames, self.resize, device)
            use_amp = self.compute_dtype != torch.float32
            with torch.autocast(device.type, dtype=self.compute_dtype, enabled=use_amp):
                hidden = self.backbone(pixel_values=pixels).last_hidden_state
            if self.tokens == "patch":
                hidden = hidden[:, 1 + self.n_registers :]
            return hidden.to(torch.float16)

    def encode(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """Like calling the encoder, as a float16 numpy array on the CPU."""
        return self(frames).cpu().numpy()

    def latents_meta(self, stride: int, stats: dict[str, ChannelStats]) -> LatentsMeta:
        """`meta/latents.json` for a cache this encoder wrote (stats per camera over the dataset)."""
        return LatentsMeta(
            model_id=self.model_id,
            revision=self.revision,
            random_weights=self.random_weights,
            config_sha256=self.config_sha256,
            init_seed=self.init_seed,
            patch_size=self.patch_size,
            resize=self.resize,
            tokens=self.tokens,
            n_registers=self.n_registers,
            n_tokens=self.n_tokens,
            dim=self.dim,
            stride=stride,
            cameras=sorted(stats),
            stats={cam: s.moments() for cam, s in stats.items()},
        )


def config_sha256(config: DINOv3ViTConfig) -> str:
    """Hash of the architecture fields of a config (not the transformers version, name or dtype)."""
    fields = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _resolve_device(cfg: LatentsConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("latents.device is 'cuda' but torch sees no CUDA device")
    return torch.device(cfg.device)


def _compute_dtype(cfg: LatentsConfig, device: torch.device) -> torch.dtype:
    if cfg.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32


def _weights_identity(model_dir: Path) -> tuple[str, str]:
    """(model id, revision): from a Hugging Face cache snapshot path, else the folder name and the
    sha256 of its weight files."""
    m = _HF_SNAPSHOT.search(model_dir.resolve().as_posix())
    if m:
        return f"{m['org']}/{m['name']}", m["rev"]
    digest = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin")):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return model_dir.resolve().name, f"sha256:{digest.hexdigest()}"


def _pretrained(model_dir: Path) -> DINOv3ViTModel:
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: not a model folder (no config.json); {NO_WEIGHTS_MESSAGE}")
    return DINOv3ViTModel.from_pretrained(str(model_dir), local_files_only=True)


def _random(config_override: dict[str, Any] | None) -> DINOv3ViTModel:
    config = DINOv3ViTConfig(**{**VITS16_CONFIG, **(config_override or {})})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return DINOv3ViTModel(config)


def load_encoder(cfg: LatentsConfig, config_override: dict[str, Any] | None = None) -> Encoder:
    """The frozen encoder the config asks for, on its device. `config_override` changes the random
    ViT-S/16 config (tests: a tiny model); it does not apply to pretrained weights."""
    device = _resolve_device(cfg)
    kwargs: dict[str, Any] = {"resize": cfg.resize, "tokens": cfg.tokens}
    kwargs["compute_dtype"] = _compute_dtype(cfg, device)
    if cfg.model_dir is not None:
        if config_override:
            raise ValueError("config_override applies to random weights only")
        model_id, revision = _weights_identity(cfg.model_dir)
        backbone = _pretrained(cfg.model_dir)
        kwargs |= {"model_id": model_id, "revision": revision}
    elif cfg.random_weights:
        backbone = _random(config_override)
        kwargs["init_seed"] = RANDOM_SEED
    else:
        raise ValueError(NO_WEIGHTS_MESSAGE)
    return Encoder(backbone.to(device=device, dtype=torch.float32), **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Video -> latents


def latent_frames(length: int, stride: int) -> np.ndarray:
    """The frame indices cached for an episode of `length` frames: those with frame_index % stride == 0."""
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    return np.arange(0, max(length, 0), stride, dtype=np.int64)


def _rgb_frames(path: Path, frame_indices: np.ndarray, resize: ResizePolicy) -> Iterator[np.ndarray]:
    """RGB uint8 frames at the policy's resized size, converted and scaled once in the codec scaler."""
    decoder, count, size = Decoder(path), 0, None
    for _, frame in decoder.needed(frame_indices):
        if size is None:
            size = resized_size(frame.height, frame.width, resize)
        yield frame.reformat(size[1], size[0], format="rgb24", interpolation="AREA").to_ndarray()
        count += 1
    if count != len(frame_indices):
        what = f"video has {decoder.n_decoded} frames{decoder.error}, needed frame {int(frame_indices[-1])}"
        raise EpisodeError(path, "video", what, stage="video")


def _check_frame_indices(path: Path, frame_indices: np.ndarray) -> None:
    if len(frame_indices) and (frame_indices[0] < 0 or np.any(np.diff(frame_indices) <= 0)):
        raise EpisodeError(path, "video", "frame_indices must be non-negative and increasing", stage="video")


def encode_video(path: Path, frame_indices: np.ndarray, encoder: Encoder, batch_size: int) -> np.ndarray:
    """Latents float16[len(frame_indices), tokens, dim] of the given (increasing) frames of a video.

    Decodes sequentially and stops after the last needed frame. A missing, truncated or corrupt video
    raises EpisodeError(stage="video") naming the file."""
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    _check_frame_indices(path, frame_indices)
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    try:
        for rgb in _rgb_frames(path, frame_indices, encoder.resize):
            batch.append(rgb)
            if len(batch) == batch_size:
                out.append(encoder.encode(np.stack(batch)))
                batch.clear()
    except (av.FFmpegError, OSError) as e:
        raise EpisodeError(path, "video", f"cannot decode: {e}", stage="video") from e
    if batch:
        out.append(encoder.encode(np.stack(batch)))
    if not out:
        return np.empty((0, encoder.n_tokens, encoder.dim), dtype=np.float16)
    return np.concatenate(out)


def decode_chunks(
    path: Path, frame_indices: np.ndarray, resize: ResizePolicy, chunk: int
) -> Iterator[np.ndarray]:
    """The needed frames as uint8 RGB batches `[<=chunk, h, w, 3]` at the policy's size (CPU side of the
    latents job). A missing, truncated or corrupt video raises EpisodeError(stage="video")."""
    frame_indices = np.asarray(frame_indices, dtype=np.int64)
    _check_frame_indices(path, frame_indices)
    batch: list[np.ndarray] = []
    try:
        for rgb in _rgb_frames(path, frame_indices, resize):
            batch.append(rgb)
            if len(batch) == chunk:
                yield np.stack(batch)
                batch.clear()
    except (av.FFmpegError, OSError) as e:
        raise EpisodeError(path, "video", f"cannot decode: {e}", stage="video") from e
    if batch:
        yield np.stack(batch)


def write_episode_latents(
    path: Path,
    latents: np.ndarray,
    frame_index: np.ndarray,
    stats: ChannelStats | None = None,
    images: np.ndarray | None = None,
) -> None:
    """One episode and camera: `latents` float16[T_s, tokens, dim] and `frame_index` int64[T_s], written to
    a temp file in the same folder then renamed into place. `stats` (this file's channel moments) go to the
    safetensors header, so dataset-wide stats never re-read the latents (`read_file_stats`). `images`
    (uint8[T_s, 224, 224, 3], `square_frames`) are the encoded frames, stored when given."""
    latents = np.ascontiguousarray(latents)
    frame_index = np.ascontiguousarray(frame_index, dtype=np.int64)
    if latents.dtype != np.float16 or latents.ndim != 3:
        raise ValueError(f"latents must be float16[T, tokens, dim], got {latents.dtype}{list(latents.shape)}")
    if frame_index.shape != (latents.shape[0],) or np.any(np.diff(frame_index) <= 0):
        raise ValueError("frame_index must be increasing, one per latents row")
    tensors = {LATENTS_KEY: latents, FRAME_INDEX_KEY: frame_index}
    if images is not None:
        if images.dtype != np.uint8 or images.shape != (len(latents), IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"images must be uint8[T, {IMAGE_SIZE}, {IMAGE_SIZE}, 3], got {images.shape}")
        tensors[IMAGES_KEY] = np.ascontiguousarray(images)
    metadata = None if stats is None else stats.to_metadata()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


# ---------------------------------------------------------------------------------------------------------
# Dataset statistics


class ChannelStats:
    """Running per-channel mean/variance over every token vector (float64; parts merged by
    `schemas.stats.merge_moments`). The state is (count, mean, M2 = variance * count)."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)

    def add(self, latents: np.ndarray) -> ChannelStats:
        x = np.asarray(latents, dtype=np.float64).reshape(-1, self.mean.shape[0])
        if len(x):
            mean = x.mean(axis=0)
            self._combine(len(x), mean, ((x - mean) ** 2).sum(axis=0))
        return self

    def merge(self, other: ChannelStats) -> ChannelStats:
        if other.count:
            self._combine(other.count, other.mean, other.m2)
        return self

    def _combine(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if not self.count:  # merged into nothing: the part itself, exactly
            self.count, self.mean, self.m2 = n, np.asarray(mean, np.float64), np.asarray(m2, np.float64)
            return
        counts = np.array([self.count, n], dtype=np.float64)
        variances = np.stack([self.m2, m2]) / np.maximum(counts, 1)[:, None]
        total, self.mean, variance = merge_moments(counts, np.stack([self.mean, mean]), variances)
        self.m2, self.count = variance * total, int(total[0])

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel."""
        return np.sqrt(self.m2 / max(self.count, 1))

    def moments(self) -> ChannelMoments:
        return ChannelMoments(count=self.count, mean=self.mean.tolist(), std=self.std.tolist())

    def to_metadata(self) -> dict[str, str]:
        """Exact state (count, mean, M2) as safetensors header strings."""
        state = {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}
        return {"stats": json.dumps(state)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None, dim: int) -> ChannelStats:
        state = json.loads((metadata or {}).get("stats", "null"))
        out = cls(dim)
        if state is not None:
            out.count, out.mean, out.m2 = int(state["count"]), np.array(state["mean"]), np.array(state["m2"])
        return out


def read_file_stats(path: Path, dim: int) -> ChannelStats:
    """The channel moments stored in a latents file's header (no tensor is read)."""
    with safe_open(str(path), framework="numpy") as f:
        return ChannelStats.from_metadata(f.metadata(), dim)
