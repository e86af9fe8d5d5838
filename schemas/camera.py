"""The camera model that travels with the data (CONTRACT.md "Camera models"): per episode and camera, the
pinhole intrinsics at the published video's size, the distortion where the source gives it, and the
camera's pose (static, or per frame in a float32 column), so any consumer can project into the image.

Conventions: pixel centres at integer coordinates (OpenCV), camera axes OpenCV (+x right, +y down,
+z forward); a pose is `<pose_frame>_from_camera`. A per-frame pose column holds
`[x, y, z, qw, qx, qy, qz]` per row (`POSE_NAMES`).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

CAMERA_PREFIX = "observation.images."
POSE_PREFIX = "observation.camera_pose."
POSE_NAMES = ["x", "y", "z", "qw", "qx", "qy", "qz"]
CAMERAS_PATH = "meta/cameras.jsonl"
ASPECT_TOLERANCE = 0.01  # intrinsics of another size of the same sensor scale to the video's size


def pose_column(camera: str) -> str:
    """`observation.camera_pose.<name>` for the camera `observation.images.<name>`."""
    return POSE_PREFIX + camera.removeprefix(CAMERA_PREFIX)


class CameraModel(BaseModel):
    """One camera of one episode. `width` x `height` is the size the intrinsics are given at: the
    source's calibration size as a source fills it, the published video's size in the dataset."""

    model_config = ConfigDict(extra="forbid")
    camera: str = Field(description="the video feature key, e.g. observation.images.ego")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str | None = Field(None, description="e.g. opencv, fisheye624; null: none known")
    distortion: list[float] | None = None
    pose_frame: str | None = Field(None, description="what the pose is given in: world, base, ...")
    pose: list[list[float]] | None = Field(None, description="static 4x4 <pose_frame>_from_camera")
    pose_column: str | None = Field(None, description="per-frame pose column, observation.camera_pose.*")
    provenance: str

    @model_validator(mode="after")
    def _one_pose(self) -> Self:
        if self.pose is not None and self.pose_column is not None:
            raise ValueError("a camera has a static pose or a pose column, not both")
        if (self.pose is not None or self.pose_column is not None) and not self.pose_frame:
            raise ValueError("a camera pose needs its pose_frame")
        if (self.distortion is None) != (self.distortion_model is None):
            raise ValueError("distortion and distortion_model go together")
        return self

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera for its image resized to `width` x `height` (each axis by its own factor,
        pixel centres mapped onto pixel centres: c' = (c + 0.5) * s - 0.5). Distortion coefficients act
        on normalised coordinates and do not change."""
        sx, sy = width / self.width, height / self.height
        return self.model_copy(
            update={
                "width": width,
                "height": height,
                "fx": self.fx * sx,
                "fy": self.fy * sy,
                "cx": (self.cx + 0.5) * sx - 0.5,
                "cy": (self.cy + 0.5) * sy - 0.5,
            }
        )

    def shifted(self, x: int, y: int, width: int, height: int) -> CameraModel:
        """The same camera with its picture placed at (x, y) of a `width` x `height` frame (padding)."""
        if (x, y, width, height) == (0, 0, self.width, self.height):
            return self
        return self.model_copy(
            update={"width": width, "height": height, "cx": self.cx + x, "cy": self.cy + y}
        )


class CameraRecord(CameraModel):
    """One line of `meta/cameras.jsonl`: a published episode's camera."""

    episode_index: int = Field(ge=0)
