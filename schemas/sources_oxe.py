"""`pipelines.yaml` section of an Open X-Embodiment (RLDS) dataset, read by `ingest/sources/oxe.py`.

One reader serves every OXE dataset; a section is a *key mapping* from the dataset's flattened
`features.json` keys to the canonical episode (issue 6). A *field* names per-step numbers:

- `"<key>"`: the whole feature, flattened per step, e.g. `"steps/observation/base_pose_tool_reached"`;
- `"<key>[a:b]"`: values `a` to `b` of it (Python slice, `b` exclusive), e.g.
  `"steps/observation/state[0:3]"`.

The canonical end-effector frame per dataset:
- `position` (3 values, metres) and `rotation` give the source EEF pose in the robot base frame;
  `rotation_convention` says how the rotation is stored: `euler` (3 angles, radians, in `euler_order`,
  scipy-style: lower-case extrinsic about the fixed base axes applied in that order, upper-case intrinsic
  about the moving axes; Bridge and DROID: extrinsic `xyz`, i.e. `R = Rz(a2) @ Ry(a1) @ Rx(a0)`),
  `quat_xyzw` or `quat_wxyz` (4 values, normalised when read). Without both (a joint-only robot) the
  wrist dimensions stay masked and `joints` carry the robot state.
- `eef_offset`: the rigid offset from the source EEF frame to the canonical wrist/gripper-centre frame,
  `T_canonical = T_eef @ T_offset` (translation in metres in the EEF frame, rotation as a wxyz quaternion).
- `gripper` (1 value) with `gripper_range`: the source values meaning (closed, fully open), mapped linearly
  to [0, 1] (1 = open) and clipped; either order (DROID and RT-1 store 1 = closed: `[1.0, 0.0]`).

A camera is kept only where the record has it: `camera_flags` names each camera's presence flag (a
per-step or episode-level number or boolean; absent where false at every step), else a record whose frames
are empty or all black has no such camera. A dataset's cameras are the same for every episode: the writer
publishes a camera only if every published episode has it (docs/CONTRACT.md, Decisions).

Every key of a section is checked against `features.json` before any record is read: an unknown key, a
slice outside a feature, or a feature of the wrong kind refuses the whole run, naming key and dataset.
The defaults are the `bridge_dataset` ("bridge_orig") layout.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.source_config import EefOffset, SourceConfig

FIELD_PATTERN = r"^[^\s\[\]]+(\[\d+:\d+\])?$"
FieldSpec = Annotated[str, StringConstraints(pattern=FIELD_PATTERN)]
RotationConvention = Literal["euler", "quat_xyzw", "quat_wxyz"]


class NamedField(BaseModel):
    """Per-step values kept beside the canonical vectors, with the names of their dimensions
    (default: `<last key part>.<i>`, or the last key part alone for one value)."""

    model_config = ConfigDict(extra="forbid")
    key: FieldSpec
    names: list[str] | None = None


class SuccessSignal(BaseModel):
    """Where an episode's success flag comes from (`quality_metrics["success"]`, 1.0 or 0.0).

    A numeric feature gives success when its value is above 0.5: a per-step feature at its last step
    (RT-1: `steps/reward`), an episode-level one as is. A text feature (DROID: `episode_metadata/file_path`)
    gives 1.0 when `success_pattern` is found in it, 0.0 when `failure_pattern` is, and no flag otherwise."""

    model_config = ConfigDict(extra="forbid")
    key: str
    success_pattern: str | None = None  # regular expression, searched
    failure_pattern: str | None = None


def _bridge_action() -> list[NamedField]:
    return [NamedField(key="steps/action", names=["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"])]


def _bridge_state() -> list[NamedField]:
    names = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    return [NamedField(key="steps/observation/state", names=names)]


class OxeConfig(SourceConfig):
    format: Literal["oxe"]
    splits: list[str] = Field(default_factory=lambda: ["train", "val"], min_length=1)
    position: FieldSpec | None = "steps/observation/state[0:3]"
    rotation: FieldSpec | None = "steps/observation/state[3:6]"
    rotation_convention: RotationConvention = "euler"
    euler_order: str = Field(
        "xyz", pattern=r"^([xyz]{3}|[XYZ]{3})$", description="lower case extrinsic, upper case intrinsic"
    )
    gripper: FieldSpec | None = "steps/observation/state[6:7]"
    gripper_range: tuple[float, float] = Field((0.0, 1.0), description="(closed, fully open) source values")
    eef_offset: EefOffset = EefOffset()
    instructions: list[str] = Field(
        default_factory=lambda: ["steps/language_instruction"],
        description="text features; the first non-empty one is the caption",
    )
    cameras: list[str] | None = Field(None, description="per-step image features; None: all of them")
    camera_flags: dict[str, str] = Field(
        default_factory=dict,
        description="camera key -> the source's presence flag for it (Bridge: episode_metadata/has_image_N); "
        "a record whose flag is false has no such camera. A camera without a flag is absent from a record "
        "whose frames are all empty or all black",
    )
    native_action: list[NamedField] = Field(default_factory=_bridge_action)
    native_state: list[NamedField] = Field(default_factory=_bridge_state)
    joints: list[NamedField] = Field(default_factory=list, description="-> observation.joints (linear)")
    success: SuccessSignal | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OxeConfig:
        if (self.position is None) != (self.rotation is None):
            raise ValueError("position and rotation must be given together (or neither: joint-only robot)")
        if self.gripper_range[0] == self.gripper_range[1]:
            raise ValueError(f"gripper_range {self.gripper_range}: closed and open values must differ")
        unmapped = sorted(set(self.camera_flags) - set(self.cameras or self.camera_flags))
        if unmapped:
            raise ValueError(f"camera_flags {unmapped}: not in cameras")
        axes = self.euler_order.lower()
        if axes[0] == axes[1] or axes[1] == axes[2]:
            raise ValueError(f"euler_order {self.euler_order!r}: consecutive axes must differ")
        return self
