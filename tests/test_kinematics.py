"""Forward kinematics of the GR1 + Fourier hands (ingest/convert/kinematics.py): the joint order against the
model, mirror symmetry, the hand's chirality, the ego camera, and on the real GR00T video: published wrists
project onto hand-annotated wrists, and what the demo's grasps look like in the canonical frame."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest.convert import kinematics
from ingest.convert.camera import project
from schemas.canonical import part_slice

ROOT = Path(__file__).resolve().parents[1]
GR00T = ROOT.parent / "shared" / "realdata" / "gr00t_demo_robot_sim.PickNPlace"
needs_model = pytest.mark.skipif(kinematics.assets_dir() is None, reason="needs the GR1 model (make setup)")
needs_demo = pytest.mark.skipif(not (GR00T / "meta/info.json").is_file(), reason="needs ../shared/realdata")
LAYOUT = {g: (i, j) for g, i, j in [("left_arm", 0, 7), ("left_hand", 7, 13), ("left_leg", 13, 19),
          ("neck", 19, 22), ("right_arm", 22, 29), ("right_hand", 29, 35), ("right_leg", 35, 41),
          ("waist", 41, 44)]}  # fmt: skip
FINGER_PIP = {"index": 6, "middle": 10, "ring": 14, "little": 18}


def demo_joints(ep: int) -> np.ndarray:
    table = pq.read_table(GR00T / f"data/chunk-000/episode_{ep:06d}.parquet", columns=["observation.state"])
    return np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)).astype(np.float64)


def mirror_right_to_left(q: np.ndarray) -> np.ndarray:
    """The left arm and hand as the mirror image (in the body's sagittal plane) of the right: joints about
    x (roll) and z (yaw) change sign, joints about y (pitch) and the finger flexions keep theirs."""
    out = q.copy()
    out[:, 0:7] = q[:, 22:29] * np.array([1, -1, -1, 1, -1, -1, 1])
    out[:, 7:13] = q[:, 29:35]
    return out


def test_intrinsics_of_the_padded_ego_view() -> None:
    """fovy 77 at 1280 x 800, padded to 1280 x 1280 and resized to 256: f = 400 / tan(38.5 deg) / 5."""
    K = kinematics.intrinsics(77.0, (1280, 800), 256)
    np.testing.assert_allclose(K, [[100.5738, 0, 127.5], [0, 100.5738, 127.5], [0, 0, 1]], atol=1e-4)


@needs_model
def test_model_has_every_joint_of_the_gr00t_layout() -> None:
    model = kinematics.gr1_model()
    cols, addrs, ranges = model.qpos_map(LAYOUT)
    assert sorted(set(cols)) == list(range(44)) and len(set(addrs)) == len(addrs) == 44 + 10  # 5 coupled/hand
    with pytest.raises(ValueError, match="left_arm: 6 values, the model has 7"):
        model.qpos_map({"left_arm": (0, 6)})
    with pytest.raises(ValueError, match="not a GR1 joint group"):
        model.qpos_map({"tail": (0, 3)})


@needs_model
@needs_demo
@pytest.mark.realdata
def test_demo_joints_lie_in_the_model_ranges_in_this_order() -> None:
    """Each demo arm column within its model joint's range: the one-sided shoulder-roll and elbow ranges
    (left roll [0, 3], right roll [-3, 0], elbows [-3, 0]) would reject a swapped arm or joint order. The
    fingers overrun their (soft, simulated) limits by up to 0.4 rad while squeezing an object."""
    model = kinematics.gr1_model()
    cols, _, ranges = model.qpos_map(LAYOUT)
    q = np.concatenate([demo_joints(ep) for ep in range(5)])
    values = q[:, cols]
    lo, hi = values >= ranges[:, 0] - 0.01, values <= ranges[:, 1] + 0.01
    hand = np.isin(cols, list(range(7, 13)) + list(range(29, 35)))
    assert (lo & hi)[:, ~hand].all()
    assert (values[:, hand] >= ranges[hand, 0] - 0.4).all() and (
        values[:, hand] <= ranges[hand, 1] + 0.4
    ).all()
    assert q[:, 1].min() > 0.0 and q[:, 23].max() < 0.01 and q[:, [3, 25]].max() < 0.01


@needs_model
@needs_demo
@pytest.mark.realdata
def test_mirrored_joints_give_mirrored_hands() -> None:
    """The right arm's demo motion mirrored onto the left arm: the left wrist is the right one with base y
    negated, and its wrist-frame keypoints are the right hand's with y negated (left y runs toward the
    thumb, right y toward the little finger)."""
    q = mirror_right_to_left(demo_joints(0)[::10])
    fk = kinematics.gr1_model().forward(q, LAYOUT)
    left, right = fk.hands["left"], fk.hands["right"]
    flip = np.array([1.0, -1.0, 1.0])
    np.testing.assert_allclose(left.wrist[:, :3, 3], right.wrist[:, :3, 3] * flip, atol=1e-3)
    np.testing.assert_allclose(left.keypoints, right.keypoints * flip, atol=2e-3)
    assert (left.mapped == right.mapped).all() and left.mapped.sum() == 17


@needs_model
def test_zero_pose_wrist_is_the_chain_of_robot_xml_offsets() -> None:
    """At zero joints the right wrist (hand root) is the sum of robot.xml's body offsets, typed here from
    the file: waist yaw/pitch/roll, right_arm_mount (turned -25 deg about x), upper-arm roll (turned back),
    upper-arm yaw, lower arm, hand yaw, hand roll; the hand's root adds no offset."""
    a = np.radians(-25.0)
    mount_rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    wrist = np.array([0, 0, 0.0065]) + [0, 0, 0.055] + [0, 0, 0.085] + [0, -0.12664, 0.21725]
    wrist = wrist + mount_rot @ [0, -0.067, 0]
    wrist = wrist + [0, -0.039996, -0.057473] + [0, 1.28859e-05, -0.18853] + [0, 0, -0.0405]
    wrist = wrist + [0, 1.3775e-05, -0.20153]
    fk = kinematics.gr1_model().forward(np.zeros((1, 44)), LAYOUT)
    np.testing.assert_allclose(fk.hands["right"].wrist[0, :3, 3], wrist, atol=2e-4)


@needs_model
def test_fingers_curl_toward_the_approach_axis() -> None:
    """Flexing each finger moves its PIP toward the palm side: the canonical +z (the palm normal, from the
    MANO layout) agrees with the robot hand's own flexion, on both hands (a mirrored slot mapping fails)."""
    q_open, q_bent = np.zeros((1, 44)), np.zeros((1, 44))
    q_bent[0, [7, 8, 9, 10, 29, 30, 31, 32]] = 0.8  # pinky, ring, middle, index of both hands
    model = kinematics.gr1_model()
    a, b = model.forward(q_open, LAYOUT), model.forward(q_bent, LAYOUT)
    for side in ("left", "right"):
        for pip in FINGER_PIP.values():
            move = b.hands[side].keypoints[0, pip] - a.hands[side].keypoints[0, pip]  # wrist frame
            assert move[2] > 0.01, (side, pip, move)


@needs_model
def test_open_hand_fingertips_have_the_finger_lengths_in_order() -> None:
    """Open hands: each fingertip (far end of its last link's mesh) lies beyond its PIP, 3.5-5.5 cm on, and
    from the wrist the middle finger is the longest and the little finger the shortest (slots in order)."""
    fk = kinematics.gr1_model().forward(np.zeros((1, 44)), LAYOUT)
    for side in ("left", "right"):
        kp = fk.hands[side].keypoints[0]
        reach = np.linalg.norm(kp[[8, 12, 16, 20]], axis=1)  # index, middle, ring, little tips from the wrist
        assert reach.argmax() == 1 and reach.argmin() == 3 and (reach > 0.15).all() and (reach < 0.2).all()
        for pip, tip in ((6, 8), (10, 12), (14, 16), (18, 20), (3, 4)):
            assert 0.035 < np.linalg.norm(kp[tip] - kp[pip]) < 0.055, (side, tip)


@needs_model
def test_ego_camera_looks_forward_and_down_from_the_head() -> None:
    """The ego camera (OpenCV axes, base frame) at the demo's fixed head: +z forward and down, +x to the
    robot's right (-y), +y down; about 0.5 m above the pelvis and in front of the neck."""
    fk = kinematics.gr1_model().forward(np.zeros((1, 44)), LAYOUT)
    T = fk.camera.base_from_camera[0]
    R = T[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    assert R[0, 2] > 0.4 and R[2, 2] < -0.4  # looks forward and down
    assert R[1, 0] < -0.99 and R[2, 1] < -0.5  # image right = robot right, image down = down
    assert 0.5 < T[2, 3] < 0.8 and 0.1 < T[0, 3] < 0.4


# ------------------------------------------------------------------------------------- real GR00T video


@needs_demo
@pytest.mark.realdata
def test_ego_video_is_the_1280x800_render_padded_to_a_square() -> None:
    """The video rows outside 48..208 are the black padding of a 1280 x 800 render resized to 256 wide:
    the principal point is the image centre and the focal length scales by 256 / 1280."""
    path = GR00T / "videos/chunk-000/observation.images.ego_view/episode_000000.mp4"
    with av.open(str(path)) as c:
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float64)
    rows = rgb.mean(axis=(1, 2))
    assert rows[:46].max() < 8 and rows[210:].max() < 8 and rows[50:206].min() > 30


# Wrist pixels picked by hand on source video frames (256 x 256, viewed as 8x nearest-neighbour crops with
# a 4 px grid): the centre of the light-grey wrist cap between the grey forearm and the black Fourier hand
# (the right hand; the left wrist sits on the bottom edge of the render in every frame). Keys: episode,
# 10 Hz frame (source frame 2k). 2026-12-07.
ANNOTATED_RIGHT_WRISTS = {
    (0, 75): (176.0, 187.0),
    (1, 220): (218.8, 143.8),
    (2, 100): (159.4, 153.1),
    (3, 130): (176.3, 175.0),
    (4, 30): (166.3, 176.3),
}
WRIST_TOLERANCE_PX = 8.0  # at 256 px and f = 100.6 px: about 2.5 cm at 0.3 m


def _projection():
    sys.path.insert(0, str(ROOT / "docs/figures"))
    import project_gr1

    return project_gr1


@needs_model
@needs_demo
@pytest.mark.realdata
@pytest.mark.parametrize("key", sorted(ANNOTATED_RIGHT_WRISTS), ids=lambda k: f"ep{k[0]}@{k[1]}")
def test_published_wrist_projects_onto_the_annotated_wrist(key: tuple[int, int]) -> None:
    ep, t = key
    rec = _projection().convert(GR00T, ep)
    assert rec.videos["observation.images.ego_view"].frame_indices[t] == 2 * t
    xyz = rec.arrays.state[t, part_slice("right", "position")].astype(np.float64)
    uv = project(_projection().ego_K(rec), xyz)
    assert np.linalg.norm(uv - ANNOTATED_RIGHT_WRISTS[key]) < WRIST_TOLERANCE_PX, (uv, key)


@needs_model
@needs_demo
@pytest.mark.realdata
def test_gr1_grasps_are_oblique_top_grasps() -> None:
    """While the right hand is closed on an object (mean finger flexion > 1 rad), its canonical approach
    axis (+z, base frame: x forward, y left, z up) points down, 20-55 degrees off vertical (median per
    episode), tilted back toward the robot; the closing axis (+x, toward the fingers) points forward. GR1
    reaches over the counter and grasps from above-front: neither a pure top grasp nor a side grasp."""
    model = kinematics.gr1_model()
    for ep in range(5):
        q = demo_joints(ep)
        closed = q[:, 29:33].mean(axis=1) > 1.0
        R = model.forward(q[closed], LAYOUT).hands["right"].wrist[:, :3, :3]
        z, x = R[:, :, 2], R[:, :, 0]
        from_down = np.degrees(np.arccos(np.clip(-z[:, 2], -1, 1)))
        assert closed.sum() > 50 and 20 < np.median(from_down) < 55, (ep, np.median(from_down))
        assert np.median(z[:, 0]) < 0 and np.median(x[:, 0]) > 0.4, ep


@needs_model
@needs_demo
@pytest.mark.realdata
def test_gripper_opening_closes_on_the_object() -> None:
    """Published right-hand gripper (thumb tip to index tip / 10 cm): fully open at the start, and while
    the fingers are closed on an object (mean flexion > 1 rad) the tips stay 4-9 cm apart around it."""
    for ep in range(5):
        rec = _projection().convert(GR00T, ep)
        grip = rec.arrays.state[:, part_slice("right", "gripper")][:, 0]
        q = demo_joints(ep)[rec.videos["observation.images.ego_view"].frame_indices]
        closed = q[:, 29:33].mean(axis=1) > 1.0
        assert grip[0] == 1.0 and closed.sum() > 20
        assert 0.4 < np.median(grip[closed]) < 0.9, (ep, np.median(grip[closed]))


@needs_demo
@pytest.mark.realdata
def test_demo_layout_is_the_modality_json() -> None:
    groups = json.loads((GR00T / "meta/modality.json").read_text())["state"]
    assert {g: (v["start"], v["end"]) for g, v in groups.items()} == LAYOUT
