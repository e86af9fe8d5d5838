"""`pipelines.yaml` section of an Open X-Embodiment (RLDS) dataset, read by `ingest/sources/oxe.py`.

The per-dataset canonical end-effector frame (issue 6, item 1):
- `state_key` holds `[x, y, z, a0, a1, a2, gripper]`: the EEF position (metres) and Euler angles (radians) in
  the robot base frame, and the gripper reading; `euler` names the angle convention as scipy does:
  lower-case = extrinsic (rotations about the fixed base axes, applied in that order), upper-case = intrinsic
  (about the moving axes). Bridge: extrinsic "xyz" roll-pitch-yaw, i.e. `R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`.
- `eef_offset`: the rigid offset from the source EEF frame to the canonical wrist/gripper-centre frame,
  `T_canonical = T_eef @ T_offset` (translation in the EEF frame, rotation in the same Euler convention).
- `gripper_range`: the source values meaning closed and fully open; mapped linearly to [0, 1] (1 = open)
  and clipped.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.source_config import SourceConfig

Vec3 = tuple[float, float, float]


class EefOffset(BaseModel):
    """Rigid `T_offset` (source EEF frame -> canonical wrist/gripper-centre frame)."""

    model_config = ConfigDict(extra="forbid")
    translation: Vec3 = (0.0, 0.0, 0.0)  # metres, in the source EEF frame
    euler: Vec3 = (0.0, 0.0, 0.0)  # radians, in the section's `euler` convention


class OxeConfig(SourceConfig):
    format: Literal["oxe"]
    splits: list[str] = Field(default_factory=lambda: ["train", "val"], min_length=1)
    state_key: str = "steps/observation/state"
    action_key: str = "steps/action"
    euler: str = Field("xyz", description="scipy-style: 'xyz' extrinsic, 'XYZ' intrinsic")
    gripper_range: tuple[float, float] = Field((0.0, 1.0), description="(closed, fully open) source values")
    eef_offset: EefOffset = EefOffset()
    cameras: list[str] = Field(default_factory=lambda: ["image_0", "image_1", "image_2", "image_3"])
    state_names: list[str] = Field(default_factory=lambda: ["x", "y", "z", "roll", "pitch", "yaw", "gripper"])
    action_names: list[str] = Field(
        default_factory=lambda: ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
    )

    @field_validator("euler")
    @classmethod
    def _euler(cls, v: str) -> str:
        ok = len(v) == 3 and (set(v) <= set("xyz") or set(v) <= set("XYZ"))
        if not ok or v[0] == v[1] or v[1] == v[2]:
            raise ValueError(f"euler {v!r}: three axes from 'xyz' (extrinsic) or 'XYZ' (intrinsic)")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> OxeConfig:
        if self.gripper_range[0] == self.gripper_range[1]:
            raise ValueError(f"gripper_range {self.gripper_range}: closed and open values must differ")
        if len(self.state_names) != 7:
            raise ValueError("state_names: the state is [x, y, z, 3 Euler angles, gripper] (7 names)")
        return self
