"""`pipelines.yaml` section of a LeRobot v2.0 / v2.1 / v3.0 input dataset (`format: lerobot`).

A *field* names per-frame numbers in the input Parquet, in one of three forms:

- `"<column>"`: the whole column (a scalar or a list column), e.g. `"state.eef_position"`;
- `"<column>[a:b]"`: dimensions `a` to `b` (Python slice, `b` exclusive), e.g. `"observation.state[0:3]"`;
- `"modality:<group>.<name>"`: a slice of GR00T's `meta/modality.json`, e.g. `"modality:state.right_arm"`
  (the column is the entry's `original_key`, default `observation.state` for `state` and `action` for
  `action`).

A field, camera or annotation the input's `meta/info.json` (or `modality.json`) does not declare is refused
when the run starts (`EpisodeError` naming it); a column missing from an episode's Parquet rejects that
episode. Nothing is silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from schemas.canonical import Side
from schemas.source_config import EefOffset, SourceConfig

FIELD_PATTERN = r"^(modality:(state|action)\.[^\s\[\]]+|[^\s\[\]:]+(\[\d+:\d+\])?)$"
FieldSpec = Annotated[str, StringConstraints(pattern=FIELD_PATTERN)]
AnnotationKey = Annotated[str, StringConstraints(pattern=r"^annotation\.[^/\s]+$")]

RotationConvention = Literal["quat_xyzw", "quat_wxyz", "euler", "rot6d"]


class ArmMapping(BaseModel):
    """Where one side's end-effector pose and gripper come from, and in which convention.

    The pose is in the robot base frame (`reference_frame: base`); the canonical wrist/gripper-centre frame
    is `T_source_eef @ T_offset` (`eef_offset`: schemas/source_config.py `EefOffset`). The gripper maps
    linearly from `gripper_closed` -> 0 to `gripper_open` -> 1, clipped to [0, 1] (either order, e.g. a
    Robotiq joint angle: open 0.0, closed 0.785)."""

    model_config = ConfigDict(extra="forbid")
    position: FieldSpec | None = Field(None, description="3 values, metres")
    rotation: FieldSpec | None = None
    rotation_convention: RotationConvention = "quat_xyzw"
    euler_order: str = Field(
        "xyz",
        pattern=r"^([xyz]{3}|[XYZ]{3})$",
        description="lower case extrinsic, upper case intrinsic; radians",
    )
    gripper: FieldSpec | None = Field(None, description="1 value")
    gripper_open: float = 1.0
    gripper_closed: float = 0.0
    eef_offset: EefOffset = EefOffset()

    @model_validator(mode="after")
    def _pose_complete(self) -> ArmMapping:
        if (self.position is None) != (self.rotation is None):
            raise ValueError("position and rotation must be given together (or neither: joint-only robot)")
        if self.gripper is not None and self.gripper_open == self.gripper_closed:
            raise ValueError("gripper_open and gripper_closed must differ")
        return self


class CameraSpec(BaseModel):
    """Where a camera's intrinsics come from (schemas/camera.py): each episodes.jsonl line's
    `task_data.camera_data.<camera_data>.camera_params` = [fx, fy, cx, cy, width, height] (the LDA-1B
    sim), or `intrinsics` fixed in the section (same layout; e.g. a head camera from the robot model)."""

    model_config = ConfigDict(extra="forbid")
    camera_data: str | None = None
    intrinsics: list[float] | None = Field(None, min_length=6, max_length=6)
    wrist_of: Side | None = Field(
        None,
        description="a camera on that arm's end effector: the camera_data entry's position / orientation"
        " are its mount on panda_link8 (Isaac Sim: quaternion wxyz, Isaac camera axes; ingest/sources/"
        "lda_sim.py); its per-frame pose in the base frame follows the arm's source EEF pose",
    )
    provenance: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> CameraSpec:
        if (self.camera_data is None) == (self.intrinsics is None):
            raise ValueError("a camera model comes from camera_data or intrinsics, exactly one")
        return self


JointGroup = Annotated[str, StringConstraints(pattern=r"^modality:state\.[a-z_]+$")]


class KinematicsMapping(BaseModel):
    """Forward kinematics for a joint-only robot (ingest/convert/kinematics.py): the model, and the
    `modality:state.<group>` fields of its joints (every group the model knows, GR00T layout). Both hands'
    canonical wrist poses and keypoints come from the model; with `reference_frame: camera` they are taken in
    the model's head camera (the source's ego view), else in the robot base frame."""

    model_config = ConfigDict(extra="forbid")
    model: Literal["gr1_fourier"]
    joints: list[JointGroup] = Field(min_length=1)
    video: str | None = Field(
        None, description="the source video key the model's head camera renders: its camera model and pose"
    )


class LeRobotInputConfig(SourceConfig):
    """A LeRobot v2.0 / v2.1 / v3.0 dataset folder, or a folder of them (GR00T `modality.json` slices
    understood)."""

    format: Literal["lerobot"]
    right: ArmMapping | None = Field(None, description="single-arm robots fill `right`")
    left: ArmMapping | None = None
    joints: list[FieldSpec] = Field(
        default_factory=list, description="fields concatenated into `observation.joints` (10 Hz, linear)"
    )
    kinematics: KinematicsMapping | None = Field(
        None, description="joint-only robots: hands by forward kinematics (then `left`/`right` stay empty)"
    )
    native_action: list[FieldSpec] | None = Field(
        None, description="fields of the source's own action; None: `action`, else every `action(s).*` column"
    )
    cameras: list[str] | None = Field(None, description="video feature keys to keep; None: all declared")
    optional_cameras: list[str] = Field(
        default_factory=list, description="declared cameras whose missing file is skipped, not an error"
    )
    invalid_tasks: list[str] = Field(
        default_factory=lambda: ["valid"], description="task texts that are not instructions (GR00T)"
    )
    camera_models: dict[str, CameraSpec] = Field(
        default_factory=dict, description="source video key -> where its intrinsics are (meta/cameras.jsonl)"
    )
    annotations: list[AnnotationKey] | None = Field(
        None,
        description="`annotation.*` columns of task indices carried over as per-frame text (10 Hz, nearest);"
        " None: every integer `annotation.*` feature of info.json",
    )
    robot_types: list[str] | None = Field(
        None,
        description="info.json `robot_type`s the mapping is for: datasets of other types under the input"
        " folder are skipped, and a single dataset of another type is refused; None: any",
    )

    @model_validator(mode="after")
    def _one_pose_source(self) -> LeRobotInputConfig:
        if self.kinematics is not None and (self.left is not None or self.right is not None):
            raise ValueError("kinematics gives both hands: leave `left` and `right` out")
        if self.reference_frame == "camera" and self.kinematics is None:
            raise ValueError("reference_frame: camera needs a camera model (kinematics)")
        return self
