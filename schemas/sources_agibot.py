"""`pipelines.yaml` section of an AgiBot World dataset (`format: agibot`, reader: ingest/sources/agibot.py),
and the JSON files of the release the reader parses (`task_info`, camera extrinsics).

A *field* names per-row numbers in `proprio_stats.h5`: `"<dataset>"` (the whole dataset, flattened per
row) or `"<dataset>[a:b]"` (values `a` to `b`, Python slice), e.g. `"state/end/position[0:3]"` is the
left flange position of the `(N, 2, 3)` dataset. The release has two gripper layouts (source-formats.md
3.3); the per-side name `{state,action}/{left,right}_effector/<x>` also reads the left / right half of a
combined `{state,action}/effector/<x>` `(N, 2k)`, so one section serves both.

Each side is an `ArmMapping` (the LeRobot input's; schemas/sources_lerobot.py): the flange pose in the
robot base frame and its rotation convention (AgiBot stores **xyzw** quaternions), the rigid offset to
the canonical wrist/gripper-centre frame (`T_canonical = T_flange @ T_offset`), and the gripper range.
AgiBot's effector state follows its command (0 = open, 1 = closed) times 120 (the real Beta file): 0 is
open and 120 closed, so `gripper_open: 0`, `gripper_closed: 120`.

Reference frame (`reference_frame`): `camera` expresses every pose in the `reference_camera`'s frame at
the same row, from `parameters/<task>/<episode>/camera/<cam>_extrinsic_params_aligned.json` (one
camera-to-base pose per row; `camera_convention` says whether its axes are OpenCV or OpenGL, and OpenGL
is turned to OpenCV); `base` keeps the robot base frame and ignores the extrinsics.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from schemas.source_config import SourceConfig
from schemas.sources_lerobot import ArmMapping
from schemas.sources_oxe import NamedField

CameraConvention = Literal["opencv", "opengl"]


def _arm(index: int, side: str) -> ArmMapping:
    return ArmMapping(
        position=f"state/end/position[{3 * index}:{3 * index + 3}]",
        rotation=f"state/end/orientation[{4 * index}:{4 * index + 4}]",
        rotation_convention="quat_xyzw",
        gripper=f"state/{side}_effector/position",
        gripper_open=0.0,
        gripper_closed=120.0,
    )


def _native_action() -> list[NamedField]:
    xyz = [f"{s}.{a}" for s in ("left", "right") for a in "xyz"]
    quat = [f"{s}.q{a}" for s in ("left", "right") for a in "xyzw"]
    return [
        NamedField(key="action/end/position", names=xyz),
        NamedField(key="action/end/orientation", names=quat),
        NamedField(key="action/left_effector/position", names=["left.gripper"]),
        NamedField(key="action/right_effector/position", names=["right.gripper"]),
    ]


def _joints() -> list[NamedField]:
    arm = [f"{s}_arm_joint{i}" for s in ("left", "right") for i in range(1, 8)]
    return [NamedField(key="state/joint/position", names=arm)]


class RobotBase(BaseModel):
    """Where the robot base's pose in the sim world is (Genie Sim A2D `aligned_joints.h5`, whose end
    poses are world poses): `T_base_eef = inv(T_world_base) @ T_world_eef`."""

    model_config = ConfigDict(extra="forbid")
    position: str = "state/robot/position"
    rotation: str = "state/robot/orientation"
    rotation_convention: Literal["quat_xyzw", "quat_wxyz"] = "quat_wxyz"  # the A2D sample: [1, 0, 0, 0]


class AlignedArms(BaseModel):
    """The arm mappings of Genie Sim A2D `aligned_joints.h5` folders where they differ from the release's
    (that file stores other quaternion orders and another end point)."""

    model_config = ConfigDict(extra="forbid")
    left: ArmMapping | None = None
    right: ArmMapping | None = None


class AgibotConfig(SourceConfig):
    """An AgiBot World (Alpha / Beta) release folder: `observations/`, `proprio_stats/`, `task_info/`,
    `parameters/`."""

    format: Literal["agibot"]
    left: ArmMapping | None = Field(default_factory=lambda: _arm(0, "left"))
    right: ArmMapping | None = Field(default_factory=lambda: _arm(1, "right"))
    cameras: list[str] = Field(
        default_factory=lambda: ["head_color", "hand_left_color", "hand_right_color"],
        description="`videos/<name>.mp4` to keep, as `observation.images.<name without _color>`",
    )
    reference_camera: str = Field("head", description="`<name>_extrinsic_params_aligned.json` (camera frame)")
    camera_convention: CameraConvention = "opencv"
    native_action: list[NamedField] = Field(default_factory=_native_action, description="-> action.native")
    joints: list[NamedField] = Field(default_factory=_joints, description="-> observation.joints (linear)")
    hand_joints: list[NamedField] = Field(
        default_factory=list, description="dexterous hands -> observation.hand_joints / action.hand_joints"
    )
    robot_base: RobotBase = Field(
        default_factory=RobotBase, description="aligned_joints.h5 (world-frame end poses): the base pose"
    )
    aligned: AlignedArms | None = Field(
        None, description="aligned_joints.h5 folders: these arms instead of left / right; None: the same"
    )

    @model_validator(mode="after")
    def _consistent(self) -> AgibotConfig:
        if self.left is None and self.right is None and not self.hand_joints:
            raise ValueError("map at least one side (left / right) or hand_joints")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras {self.cameras}: names repeat")
        return self


# ---------------------------------------------------------------------------------------------- release JSON


class ActionSegment(BaseModel):
    """One sub-skill of `label_info.action_config`, in source (30 Hz) frame numbers."""

    model_config = ConfigDict(extra="ignore")
    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=0)
    action_text: str = ""
    english_action_text: str | None = None  # A2D `data_info.json`
    skill: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ActionSegment:
        if self.end_frame < self.start_frame:
            raise ValueError(f"end_frame {self.end_frame} before start_frame {self.start_frame}")
        return self

    @property
    def text(self) -> str:
        return (self.english_action_text or self.action_text).strip()


class LabelInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action_config: list[ActionSegment] = Field(default_factory=list)


class TaskEpisode(BaseModel):
    """One episode's entry of `task_info/task_<id>.json` (or an A2D `data_info.json`)."""

    model_config = ConfigDict(extra="ignore")
    episode_id: int
    task_name: str
    english_task_name: str | None = None  # A2D: task_name is Chinese
    init_scene_text: str | None = None
    label_info: LabelInfo = Field(default_factory=LabelInfo)

    @property
    def caption(self) -> str:
        return (self.english_task_name or self.task_name).strip()


TaskInfoFile = TypeAdapter(list[TaskEpisode] | TaskEpisode)

Matrix3 = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


class Extrinsic(BaseModel):
    model_config = ConfigDict(extra="ignore")
    rotation_matrix: Matrix3
    translation_vector: tuple[float, float, float]


class ExtrinsicEntry(BaseModel):
    """One row of `<cam>_extrinsic_params_aligned.json`: the camera-to-base pose."""

    model_config = ConfigDict(extra="ignore")
    extrinsic: Extrinsic


ExtrinsicsFile = TypeAdapter(list[ExtrinsicEntry])


class Intrinsic(BaseModel):
    """Pinhole intrinsics of a `<cam>_intrinsic_params.json` at the camera's video size (the file gives
    no size); distortion keys may be missing (source-formats.md 3.4, 3.5)."""

    model_config = ConfigDict(extra="ignore")
    fx: float = Field(gt=0)
    fy: float = Field(gt=0)
    ppx: float
    ppy: float
    distortion_model: str | None = None
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0

    def coefficients(self) -> list[float]:
        """OpenCV order (k1, k2, p1, p2, k3)."""
        return [self.k1, self.k2, self.p1, self.p2, self.k3]


class WrappedIntrinsic(BaseModel):
    model_config = ConfigDict(extra="ignore")
    intrinsic: Intrinsic


IntrinsicsFile = TypeAdapter(WrappedIntrinsic | Intrinsic)  # AgiBot World wraps it, A2D is flat
