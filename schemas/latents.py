"""Cached DINOv3 latents (contract, section 7): `meta/latents.json`, the per-episode file layout and the
`latents:` section of `pipelines.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.lerobot import CHUNKS_SIZE, episode_chunk

LATENTS_META_PATH = "meta/latents.json"
LATENTS_PATH = "latents/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.safetensors"
LATENTS_KEY = "latents"  # float16[T_s, tokens, dim]
FRAME_INDEX_KEY = "frame_index"  # int64[T_s]
IMAGES_KEY = (
    "images"  # uint8[T_s, 224, 224, 3]: the frame the latent was encoded from (`LatentsConfig.images`)
)
IMAGE_SIZE = 224
PATCH_SIZE = 16
N_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 196: the 14x14 grid, row-major
DIM = 384
N_REGISTERS = 4
DEFAULT_STRIDE = 3
RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: these latents come from an untrained encoder. They are for demos and tests only "
    "and carry no visual meaning; do not train on them."
)

ResizePolicy = Literal["center_crop", "letterbox"]
TokenLayout = Literal["patch", "cls_registers_patch"]


def n_tokens(layout: TokenLayout, n_registers: int = N_REGISTERS, n_patches: int = N_PATCHES) -> int:
    """196 for `patch`; CLS + registers + patches (201 for ViT-S/16 with 4 registers) otherwise."""
    return n_patches if layout == "patch" else 1 + n_registers + n_patches


def latents_path(episode_index: int, video_key: str, chunks_size: int = CHUNKS_SIZE) -> str:
    return LATENTS_PATH.format(
        episode_chunk=episode_chunk(episode_index, chunks_size),
        video_key=video_key,
        episode_index=episode_index,
    )


class LatentsConfig(BaseModel):
    """The `latents:` section of `pipelines.yaml` (and the flags of `ingest latents`)."""

    model_config = ConfigDict(extra="forbid")
    model_dir: Path | None = Field(None, description="local folder of a DINOv3ViTModel (from_pretrained)")
    random_weights: bool = Field(False, description="no weights: random ViT-S/16 (demos and tests only)")
    stride: int = Field(DEFAULT_STRIDE, gt=0, description="cache frames with frame_index % stride == 0")
    resize: ResizePolicy = "center_crop"
    tokens: TokenLayout = "patch"
    batch_size: int = Field(64, gt=0)
    images: bool = Field(
        True,
        description="also store each cached frame as uint8 224x224 RGB (the VLM condition encoder's input)",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="compute dtype: auto = bf16 autocast on CUDA, fp32 on CPU; stored as float16"
    )

    @model_validator(mode="after")
    def _one_weight_source(self) -> LatentsConfig:
        if self.model_dir is not None and self.random_weights:
            raise ValueError("give either model_dir or random_weights, not both")
        return self


class ChannelMoments(BaseModel):
    """Per-channel mean/std of one camera's latents over the whole dataset (every token of every frame)."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=0, description="number of token vectors the moments are computed from")
    mean: list[float]
    std: list[float]


class LatentsMeta(BaseModel):
    """`meta/latents.json`."""

    model_config = ConfigDict(extra="forbid")
    model_id: str | None = Field(None, description="model id (or folder name) of pretrained weights")
    revision: str | None = Field(None, description="snapshot commit, or sha256 of the weight files")
    random_weights: bool = False
    warning: str | None = None
    config_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    init_seed: int | None = Field(None, description="torch seed of the random init (random weights only)")
    image_size: Literal[224] = IMAGE_SIZE
    patch_size: int = PATCH_SIZE
    resize: ResizePolicy
    tokens: TokenLayout
    n_registers: int = Field(N_REGISTERS, ge=0)
    n_tokens: int = Field(gt=0)
    dim: int = Field(DIM, gt=0)
    dtype: Literal["float16"] = "float16"
    stride: int = Field(DEFAULT_STRIDE, gt=0)
    images: bool = Field(False, description="every file also holds the frames as uint8 224x224 RGB")
    cameras: list[str]
    stats: dict[str, ChannelMoments]
    path: str = LATENTS_PATH

    @model_validator(mode="after")
    def _consistent(self) -> LatentsMeta:
        self._check_weights()
        n_patches = (self.image_size // self.patch_size) ** 2
        if self.n_tokens != n_tokens(self.tokens, self.n_registers, n_patches):
            raise ValueError(f"n_tokens {self.n_tokens} does not match layout {self.tokens!r}")
        if sorted(self.stats) != sorted(self.cameras):
            raise ValueError(f"stats cameras {sorted(self.stats)} != cameras {sorted(self.cameras)}")
        for cam, m in self.stats.items():
            if len(m.mean) != self.dim or len(m.std) != self.dim:
                raise ValueError(f"{cam}: mean/std must have {self.dim} values")
        return self

    def _check_weights(self) -> None:
        if self.random_weights:
            if self.model_id is not None or self.revision is not None:
                raise ValueError("random weights have no model_id/revision")
            if self.warning is None:
                self.warning = RANDOM_WEIGHTS_WARNING  # loud by construction
        elif self.model_id is None:
            raise ValueError("pretrained latents need model_id (or random_weights: true)")

    def file_path(self, episode_index: int, video_key: str) -> str:
        return latents_path(episode_index, video_key)

    @classmethod
    def load(cls, root: Path) -> LatentsMeta:
        """Read `ROOT/meta/latents.json` of a dataset."""
        return cls.model_validate_json((root / LATENTS_META_PATH).read_text())
