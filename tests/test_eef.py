"""The canonical end-effector frame (docs/CONTRACT.md): the hand rule on known hands, and its meaning on
the real EgoDex video (projected wrists land on the hands; a top grasp approaches downward)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ingest.convert import eef
from ingest.convert.camera import project
from ingest.convert.geometry import axis_rotation, rotation_from_6d
from ingest.sources import egodex
from ingest.sources.base import SourceEpisodeRef
from schemas.canonical import part_slice
from schemas.pipelines import PipelinesFile
from tests.fixtures.hand_rule import canonical_wrist

ROOT = Path(__file__).resolve().parents[1]
EGODEX = ROOT.parent / "shared" / "realdata" / "egodex"


def flat_right_hand() -> np.ndarray:
    """A right hand lying palm down on a table (world z up): fingers along +y, thumb on the left (-x)."""
    p = np.zeros((21, 3))
    p[1:5] = [[-0.03, 0.03, 0.01], [-0.05, 0.05, 0.01], [-0.06, 0.07, 0.01], [-0.07, 0.09, 0.01]]
    for f, x in enumerate((-0.025, 0.0, 0.02, 0.04)):  # index, middle, ring, little
        for j in range(4):
            p[5 + 4 * f + j] = [x, 0.09 - 0.005 * abs(f - 1) + 0.025 * j, 0.0]
    return p


def test_palm_down_right_hand_approaches_down_and_closes_forward() -> None:
    R = eef.hand_frame(flat_right_hand(), "right")
    np.testing.assert_allclose(R[:, 2], [0, 0, -1], atol=1e-12)  # approach: out of the palm, down
    np.testing.assert_allclose(R[:, 0], [0, 1, 0], atol=1e-12)  # closing: toward the fingers
    np.testing.assert_allclose(R[:, 1], [1, 0, 0], atol=1e-12)  # toward the little finger
    assert np.isclose(np.linalg.det(R), 1.0)


def test_mirrored_left_hand_gets_the_same_approach_and_closing() -> None:
    """A left hand is the right hand mirrored (x -> -x): same approach and closing, y toward its thumb."""
    left = flat_right_hand() * [-1, 1, 1]
    R = eef.hand_frame(left, "left")
    np.testing.assert_allclose(R[:, 2], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(R[:, 0], [0, 1, 0], atol=1e-12)
    assert left[4, 0] > 0 and R[:, 1] @ [1, 0, 0] > 0.99  # thumb tip at +x, y toward it


def test_frame_turns_with_the_hand_and_matches_the_written_out_rule() -> None:
    rng = np.random.default_rng(0)
    hand = flat_right_hand() + rng.normal(0, 0.004, (21, 3))
    turn = axis_rotation("z", 0.7) @ axis_rotation("x", -1.1)
    moved = hand @ turn.T + [0.3, -0.2, 0.5]
    T, kps = eef.canonical_hand(moved[None], "right")
    np.testing.assert_allclose(T[0, :3, :3], turn @ eef.hand_frame(hand, "right"), atol=1e-12)
    np.testing.assert_allclose(T[0], canonical_wrist(moved[None], "right")[0], atol=1e-12)
    np.testing.assert_allclose(kps[0], (hand - hand[0]) @ eef.hand_frame(hand, "right"), atol=1e-12)


def test_degenerate_hand_is_a_named_error() -> None:
    with pytest.raises(ValueError, match="degenerate left hand keypoints .* at frame 1"):
        eef.canonical_hand(np.stack([flat_right_hand(), np.zeros((21, 3))]), "left")


# ------------------------------------------------------------------------------------- real EgoDex video

# Wrist pixels picked by hand on source video frames (every 40 px gridded, viewed at 960x540 and doubled
# here to the video's 1920x1080): the point where the forearm meets the heel of the palm. 2026-12-07.
ANNOTATED_WRISTS = {
    ("basic_pick_and_place/0", 0): {"left": (500, 770)},  # right hand leaves the image
    ("basic_pick_and_place/0", 45): {"left": (456, 550), "right": (1556, 580)},
    ("basic_pick_and_place/0", 90): {"left": (524, 640), "right": (1650, 560)},
}
WRIST_TOLERANCE_PX = 80  # at 1920x1080: about 5 cm at half a metre (f = 737 px)


def _converted(ep_id: str):
    h5 = EGODEX / f"{ep_id}.hdf5"
    ref = SourceEpisodeRef(
        source_episode_id=ep_id, files={"hdf5": str(h5), "mp4": str(h5.with_suffix(".mp4"))}
    )
    (ep,) = egodex.SOURCE.convert(ref, PipelinesFile.load(ROOT / "pipelines.yaml").source("egodex"))
    with h5py.File(h5) as f:
        return ep, f["camera/intrinsic"][()].astype(np.float64)


@pytest.mark.realdata
@pytest.mark.skipif(not EGODEX.is_dir(), reason="needs ../shared/realdata/egodex")
@pytest.mark.parametrize("key", sorted(ANNOTATED_WRISTS), ids=lambda k: f"{k[0]}@{k[1]}")
def test_published_wrist_projects_onto_the_annotated_wrist(key: tuple[str, int]) -> None:
    ep_id, source_frame = key
    ep, K = _converted(ep_id)
    k = source_frame // 3  # output frame k shows source frame 3k
    assert ep.videos["observation.images.ego"].frame_indices[k] == source_frame
    for side, pixel in ANNOTATED_WRISTS[key].items():
        uv = project(K, ep.state[k, part_slice(side, "position")].astype(np.float64))
        assert np.linalg.norm(uv - pixel) < WRIST_TOLERANCE_PX, (side, uv, pixel)


def _approach_from_down(ep_id: str, side: str, frames: range) -> np.ndarray:
    """Degrees between the published approach axis (+z, in the camera frame, turned into EgoDex's
    gravity-aligned world with the camera pose) and world down (ARKit: -y)."""
    ep, _ = _converted(ep_id)
    with h5py.File(EGODEX / f"{ep_id}.hdf5") as f:
        cam = f["transforms/camera"][()].astype(np.float64)
    out = []
    for s in frames:
        R = rotation_from_6d(ep.state[s // 3, part_slice(side, "rotation")].astype(np.float64))
        out.append(np.degrees(np.arccos(np.clip(-(cam[s, :3, :3] @ R[:, 2])[1], -1, 1))))
    return np.array(out)


@pytest.mark.realdata
@pytest.mark.skipif(not EGODEX.is_dir(), reason="needs ../shared/realdata/egodex")
def test_human_top_grasp_approaches_down_and_side_grasp_sideways() -> None:
    """Spans seen on the video: open_close/1, the right hand presses the flap down palm first (source frames
    114-123); add_remove_lid/0, the right hand grips the lid from above while the left hand holds the jar from
    its side (36-54). Measured: 1-10, 23-26 and 62-64 degrees from down."""
    assert _approach_from_down("open_close/1", "right", range(114, 124, 3)).max() < 15
    assert _approach_from_down("add_remove_lid/0", "right", range(36, 55, 3)).max() < 30
    side = _approach_from_down("add_remove_lid/0", "left", range(36, 55, 3))
    assert (side > 55).all()  # the palm faces the jar's side, not down
