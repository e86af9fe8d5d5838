"""The canonical 146-wide state/action vector (CONTRACT.md section 4).

Two sides of 73 values each: `left` at offset 0, `right` at offset 73. Within one side:
wrist position (3), wrist rotation 6D (6), gripper opening (1), 21 hand keypoints (63).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Side = Literal["left", "right"]
SIDES: tuple[Side, Side] = ("left", "right")
SIDE_DIM = 73
VECTOR_DIM = 2 * SIDE_DIM
N_KEYPOINTS = 21
IDENTITY_ROT6D = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=np.float32)

# MANO-21 / OpenPose keypoint order.
KEYPOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)  # fmt: skip
THUMB_TIP = 4
INDEX_TIP = 8


class SideSlices(BaseModel):
    """Index ranges inside one side's 73 values."""

    model_config = ConfigDict(frozen=True)
    position: tuple[int, int] = (0, 3)
    rotation: tuple[int, int] = (3, 9)
    gripper: tuple[int, int] = (9, 10)
    keypoints: tuple[int, int] = (10, 73)


SLICES = SideSlices()
PARTS = ("position", "rotation", "gripper", "keypoints")


def side_offset(side: Side) -> int:
    return 0 if side == "left" else SIDE_DIM


def part_slice(side: Side, part: str) -> slice:
    """Slice of `part` ("position" | "rotation" | "gripper" | "keypoints") of `side` in the 146 vector."""
    lo, hi = getattr(SLICES, part)
    off = side_offset(side)
    return slice(off + lo, off + hi)


def keypoint_slice(side: Side, k: int) -> slice:
    start = part_slice(side, "keypoints").start + 3 * k
    return slice(start, start + 3)


def dimension_names() -> list[str]:
    """The 146 names, e.g. `left.position.x`, `right.rot6d.3`, `left.keypoint.thumb_tip.z`."""
    names: list[str] = []
    for side in SIDES:
        names += [f"{side}.position.{a}" for a in "xyz"]
        names += [f"{side}.rot6d.{i}" for i in range(6)]
        names.append(f"{side}.gripper")
        names += [f"{side}.keypoint.{k}.{a}" for k in KEYPOINT_NAMES for a in "xyz"]
    assert len(names) == VECTOR_DIM
    return names
