"""The `pipelines.yaml` section of a HOT3D source (reader: ingest/sources/hot3d.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from schemas.source_config import SourceConfig


class Hot3dConfig(SourceConfig):
    format: Literal["hot3d"]
    camera_key: str = "observation.images.ego"
    # Headset (metadata.json `headset`) -> the image stream whose camera is the reference frame and whose
    # video `<sequence>/<stream>.mp4` is kept: Aria's RGB camera, Quest3's left monochrome camera.
    camera_streams: dict[str, str] = Field(default_factory=lambda: {"Aria": "214-1", "Quest3": "1201-1"})
    # Stream -> the image size its calibration is given at, where the calibration file does not say
    # (Aria's online calibration; Quest3's camera_models.json has imageWidth / imageHeight).
    calibration_sizes: dict[str, tuple[int, int]] = Field(default_factory=lambda: {"214-1": (1408, 1408)})
    # Folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl (licence-gated, never shipped); `ingest run --mano-dir`
    # (RunOptions.mano_dir) replaces it for one run.
    mano_dir: Path | None = None
    num_pca_comps: int = Field(15, ge=1, le=45, description="MANO pose PCA coefficients per hand in HOT3D")
    flat_hand_mean: bool = False
