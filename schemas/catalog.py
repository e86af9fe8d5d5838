"""The catalog's rows and what each quality tier may train (issue 4; CONTRACT.md section 8).

- `CatalogEpisode` / `CatalogDataset`: one row of `ROOT/catalog/episodes.parquet` / `datasets.parquet`,
  each with its polars schema (`episode_schema`, `dataset_schema`) derived from the model (`polars_schema`).
- `TIER_TASKS`: the table of what each quality tier may train, which a mixture may narrow but never widen.

The selection language is `catalog/where.py`, the mixture file `catalog/mixture_file.py`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from schemas.canonical import VECTOR_DIM, dimension_names
from schemas.card import EmbodimentKind
from schemas.episode import QualityTier

CATALOG_DIR = "catalog"
EPISODES_FILE = "catalog/episodes.parquet"
DATASETS_FILE = "catalog/datasets.parquet"
LATENTS_META_PATH = "meta/latents.json"
LATENTS_PATH = "latents/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.safetensors"

Category = EmbodimentKind
CATEGORIES: tuple[str, ...] = get_args(EmbodimentKind)
TIERS: tuple[str, ...] = get_args(QualityTier)
Task = Literal["policy", "forward_dynamics", "inverse_dynamics", "visual_forecasting"]
TASKS: tuple[str, ...] = get_args(Task)
Stage = Literal["pretraining", "post_training"]
Weighting = Literal["hours", "uniform", "explicit"]

# CONTRACT.md section 8: what each tier may train.
TIER_TASKS: dict[str, tuple[str, ...]] = {
    "high": TASKS,
    "low": ("forward_dynamics", "inverse_dynamics", "visual_forecasting"),
    "actionless": ("visual_forecasting",),
}
# The one widening the contract allows: low-tier policy, "optional in post-training".
POST_TRAINING_EXTRA: dict[str, tuple[str, ...]] = {"low": ("policy",)}


def allowed_tasks(tier: str, stage: str = "pretraining") -> tuple[str, ...]:
    """The tasks `tier` may train at `stage`; actionless data is never widened."""
    extra = POST_TRAINING_EXTRA.get(tier, ()) if stage == "post_training" else ()
    return tuple(t for t in TASKS if t in TIER_TASKS[tier] or t in extra)


def dims_bitstring(names: list[str]) -> str:
    """The valid canonical dimensions as 146 characters, `1` = may be valid; unknown names raise."""
    all_names = dimension_names()
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise ValueError(f"unknown canonical dimension names: {unknown[:5]}")
    valid = set(names)
    return "".join("1" if n in valid else "0" for n in all_names)


def dims_from_bitstring(bits: str) -> list[str]:
    return [n for n, b in zip(dimension_names(), bits, strict=True) if b == "1"]


# --------------------------------------------------------------------------- catalog rows

Bits = str  # 146 characters of 0/1, in `dimension_names()` order
BITS_PATTERN = rf"^[01]{{{VECTOR_DIM}}}$"


class CatalogEpisode(BaseModel):
    """One row of `ROOT/catalog/episodes.parquet`: one episode of one dataset."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(description="the dataset folder name under ROOT")
    episode_index: int = Field(ge=0)
    source_episode_id: str
    source: str = Field(description="the dataset card's source (e.g. egodex)")
    embodiment: str
    category: Category = Field(description="the dataset card's embodiment_kind")
    quality_tier: QualityTier
    tier_rule: str = Field("", description="what decided the tier (docs/TIERS.md)")
    tier_reason: str = ""
    has_action: bool
    length: int = Field(gt=0, description="frames at the dataset's fps")
    seconds: float = Field(ge=0, description="length / fps")
    caption: str
    caption_source: str
    task: str = Field(description="task_original: the source's own text")
    valid_state_dims: Bits = Field(pattern=BITS_PATTERN)
    valid_action_dims: Bits = Field(pattern=BITS_PATTERN)
    latents_present: bool = Field(description="meta/latents.json and every camera's latents file exist")
    path: str = Field(description="the episode's data Parquet, relative to ROOT")


class CatalogDataset(BaseModel):
    """One row of `ROOT/catalog/datasets.parquet`: one dataset folder and the fingerprint of its meta."""

    model_config = ConfigDict(extra="forbid")
    dataset: str
    path: str = Field(description="the dataset folder, relative to ROOT")
    source: str
    source_version: str
    license: str
    category: Category
    robot_type: str | None
    reference_frame: Literal["camera", "base"]
    fps: int = Field(gt=0)
    episodes: int = Field(ge=0)
    frames: int = Field(ge=0)
    hours: float = Field(ge=0, description="info.json total_frames / fps / 3600")
    rejects: int = Field(ge=0)
    cameras: list[str]
    valid_state_dims: Bits = Field(pattern=BITS_PATTERN)
    valid_action_dims: Bits = Field(pattern=BITS_PATTERN)
    latents: bool = Field(description="meta/latents.json exists")
    latent_episodes: int = Field(ge=0, description="episodes whose latents are all present")
    fingerprint: str = Field(description="sha256 of the sizes and mtimes of the meta files")


def episode_schema() -> dict[str, Any]:
    """The polars schema of `CatalogEpisode` (polars is imported when called, not at module load)."""
    return polars_schema(CatalogEpisode)


def dataset_schema() -> dict[str, Any]:
    """The polars schema of `CatalogDataset`."""
    return polars_schema(CatalogDataset)


def polars_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A row model's polars schema derived from its annotations, in field order: `str`, `int`, `float`,
    `bool` -> String, Int64, Float64, Boolean; `Literal` -> `pl.Enum` of its values in order; `list[X]` ->
    `pl.List`; `X | None` -> X (nullable)."""
    import polars as pl

    simple = {str: pl.String, int: pl.Int64, float: pl.Float64, bool: pl.Boolean}
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        ann, args = field.annotation, get_args(field.annotation)
        if get_origin(ann) is Literal:
            out[name] = pl.Enum(list(args))
        elif get_origin(ann) is list:
            out[name] = pl.List(simple[args[0]])
        elif type(None) in args:  # Optional[X]
            out[name] = simple[next(a for a in args if a is not type(None))]
        else:
            out[name] = simple[ann]
    return out
