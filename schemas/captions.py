"""Captions (CONTRACT.md section 5: `caption`, `caption_source`, `task_original`): the `captions:` block
of `pipelines.yaml`, a row of a cached-captions JSONL file and what a captioner returns."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CaptionerName = Literal["template", "cached", "vlm"]
CAPTION_SOURCE_PATTERN = r"^(source|template|cached|vlm:.+)$"
VLM_WORK_DIR = ".work/captions"  # under a dataset: the VLM pass's resumable results, one file per setup


class VlmConfig(BaseModel):
    """The VLM captioner: Qwen3-VL from a local folder, a few frames of the episode and its source text."""

    model_config = ConfigDict(extra="forbid")
    model_dir: Path | None = Field(None, description="local folder of a Qwen3-VL model (from_pretrained)")
    frames: int = Field(4, ge=1, le=16, description="frames per episode, evenly spread over it")
    image_size: int = Field(448, ge=32, description="long side of each frame given to the model, px")
    max_new_tokens: int = Field(32, gt=0, le=256)
    batch_size: int = Field(8, gt=0, description="episodes per generate() call")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    camera: str | None = Field(None, description="video key to caption from (default: the first one)")


class CaptionsConfig(BaseModel):
    """The `captions:` block of `pipelines.yaml` (and the flags of `ingest caption`)."""

    model_config = ConfigDict(extra="forbid")
    captioner: CaptionerName = "template"
    captions_file: Path | None = Field(None, description="JSONL of CaptionRow (the `cached` captioner)")
    vlm: VlmConfig = VlmConfig()


class CaptionRow(BaseModel):
    """One line of a cached-captions JSONL file: a caption made elsewhere for one episode."""

    model_config = ConfigDict(extra="forbid")
    source_episode_id: str = Field(min_length=1)
    caption: str = Field(min_length=1)


class CaptionResult(BaseModel):
    """What a captioner returns for one episode (also a line of the VLM pass's work file)."""

    model_config = ConfigDict(extra="forbid")
    source_episode_id: str
    caption: str
    caption_source: str = Field(pattern=CAPTION_SOURCE_PATTERN)
    fallback: bool = Field(False, description="the captioner gave nothing usable; the template was used")


class VlmWorkRow(CaptionResult):
    """A line of the VLM pass's work file: a result and the source text it was made from."""

    task_original: str
