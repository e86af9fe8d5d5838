"""The `hands:` block of an action-free video section of `pipelines.yaml` (ingest/hands/, docs/HANDS.md):
how `ingest hands` (and `ingest run --hands`) estimates MANO-21 hands from the video."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HandsSource = Literal["source", "estimated"]


class HandsConfig(BaseModel):
    """Estimator, camera fallback, smoothing and plausibility limits of estimated hands."""

    model_config = ConfigDict(extra="forbid")
    estimator: Literal["mediapipe"] = "mediapipe"
    horizontal_fov_deg: float = Field(
        80.0, gt=10, lt=170,
        description="pinhole field of view assumed when the episode has no camera model (no distortion)",
    )  # fmt: skip
    model_complexity: Literal[0, 1] = 1
    min_detection_confidence: float = Field(0.5, ge=0, le=1)
    min_tracking_confidence: float = Field(0.5, ge=0, le=1)
    min_side_score: float = Field(0.5, ge=0, le=1, description="a hand whose side vote is weaker is masked")
    refine_pose: bool = Field(
        False, description="refit rotation and translation on the 2D landmarks: better poses, noisier actions"
    )
    smooth: bool = Field(True, description="[1, 2, 1] / 4 over consecutive valid 10 Hz frames")
    max_step_m: float = Field(0.25, gt=0, description="a wrist this far from both its neighbours is a jump")
    depth_m: tuple[float, float] = Field((0.15, 2.0), description="plausible wrist depth in the camera")
    max_bone_ratio: float = Field(0.6, gt=0, description="a bone this far off its median: implausible")
    max_reprojection: float = Field(0.02, gt=0, description="RMS fit of the metric hand, fraction of width")
    camera_rotation: bool = Field(
        True, description="estimate the camera's rotation from background tracks (hands masked) and remove it"
    )
    max_tier: Literal["high", "low"] = Field(
        "low", description="estimated hands train dynamics and forecasting, not the policy, unless `high`"
    )
