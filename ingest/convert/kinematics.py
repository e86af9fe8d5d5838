"""Forward kinematics for joint-only humanoids: the Fourier GR1 with Fourier hands (RoboCasa / GR00T).

The model is robosuite 1.5.2's own MJCF (`robots/gr1/robot.xml`, `grippers/fourier_{left,right}_hand.xml`),
composed the way robosuite mounts a gripper (the hand's bodies become children of `right_eef` / `left_eef`)
and loaded with `mujoco`; only bodies, joints and cameras are kept (geoms and meshes are dropped: kinematics
needs neither). `make setup` puts the assets in `~/.cache/ei-forge/robosuite-1.5.2`
(`tools/fetch_robot_models.sh`); `EI_FORGE_ROBOSUITE_ASSETS` overrides the folder. Without them
`assets_dir()` is None and callers refuse.

Per frame (`mj_kinematics`, all 44 GR00T joints set, legs/waist/neck included): each hand's 21 MANO slots
from Fourier-hand body origins (`HAND_LINKS`; a slot with no link is NaN), the canonical wrist pose by the
human-hand rule (`eef.hand_pose` on those slots), and RoboCasa's ego camera `egoview` (on `head_pitch`) in
the base frame with OpenCV axes. Everything is in the frame of the robot's `base` body (the pelvis).
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ingest.convert import hands
from ingest.convert.eef import hand_pose
from schemas.canonical import N_KEYPOINTS, Side

ASSETS_ENV = "EI_FORGE_ROBOSUITE_ASSETS"
DEFAULT_ASSETS = Path.home() / ".cache/ei-forge/robosuite-1.5.2/robosuite/models/assets"
ROBOT_XML = "robots/gr1/robot.xml"
HAND_XML = "grippers/fourier_{side}_hand.xml"
# RoboCasa's GR1 ego view (GR00T `ego_view`): not in robot.xml; robocasa-gr1-tabletop-tasks adds it in
# `Tabletop.set_cameras` on body `head_pitch` with these numbers, renders it at 1280 x 800 and GR00T pads
# that to a square and resizes it to 256 x 256 (`ego_view_pad_res256`).
CAMERA = "egoview"
EGOVIEW = {"pos": "0.22982822 0 0.0905", "quat": "0.676 0.205 -0.205 -0.676", "fovy": "77"}
EGOVIEW_RENDER = (1280, 800)
# MuJoCo cameras look along -z with +y up; OpenCV looks along +z with +y down: flip y and z.
MUJOCO_TO_OPENCV = np.diag([1.0, -1.0, -1.0])

ARM_JOINTS = ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow_pitch", "wrist_yaw", "wrist_roll",
              "wrist_pitch")  # fmt: skip
LEG_JOINTS = ("hip_roll", "hip_yaw", "hip_pitch", "knee_pitch", "ankle_pitch", "ankle_roll")
NECK_JOINTS = ("head_yaw", "head_roll", "head_pitch")
WAIST_JOINTS = ("torso_waist_yaw", "torso_waist_pitch", "torso_waist_roll")
# The 6 hand values are robosuite's Fourier-hand command layout (FourierRightHand.format_action):
# pinky, ring, middle, index (each drives the proximal and intermediate joint), thumb bend (proximal pitch
# and distal), thumb yaw. The value is set on every joint it drives, clipped to that joint's range.
HAND_GROUPS = (("pinky_proximal", "pinky_intermediate"), ("ring_proximal", "ring_intermediate"),
               ("middle_proximal", "middle_intermediate"), ("index_proximal", "index_intermediate"),
               ("thumb_proximal_pitch", "thumb_distal"), ("thumb_proximal_yaw",))  # fmt: skip
# MANO-21 slot -> Fourier-hand body whose origin is that joint ({S}: R or L). The hand's root body
# (`{side}_hand`, at the wrist-pitch joint) is the wrist. Each finger has two links (MCP, PIP joints) and
# the thumb three (CMC, MCP, IP); a fingertip is the far end of the last link's mesh (`TIP_LINKS`, a body
# `{S}_<finger>_tip` added there). DIP joints have no body: masked.
TIP_LINKS = {4: "thumb_distal", 8: "index_intermediate", 12: "middle_intermediate", 16: "ring_intermediate",
             20: "pinky_intermediate"}  # fmt: skip
HAND_LINKS = {0: "{side}_hand", 1: "{S}_thumb_proximal_base_link", 2: "{S}_thumb_proximal_link",
              3: "{S}_thumb_distal_link", 5: "{S}_index_proximal_link", 6: "{S}_index_intermediate_link",
              9: "{S}_middle_proximal_link", 10: "{S}_middle_intermediate_link",
              13: "{S}_ring_proximal_link", 14: "{S}_ring_intermediate_link",
              17: "{S}_pinky_proximal_link", 18: "{S}_pinky_intermediate_link"}  # fmt: skip
HAND_LINKS |= {slot: "{S}_" + link.split("_")[0] + "_tip" for slot, link in TIP_LINKS.items()}
MESH = "grippers/meshes/fourier_hands/{S}_{link}_link.STL"
MAPPED_SLOTS = np.array(sorted(HAND_LINKS))
SIDES_LR: tuple[Side, Side] = ("left", "right")
# The GR00T demo's modality.json joint groups (group_joints names their model joints).
GR00T_GROUPS = ("left_arm", "left_hand", "left_leg", "neck", "right_arm", "right_hand", "right_leg", "waist")


def assets_dir() -> Path | None:
    """robosuite's `models/assets` folder (env `EI_FORGE_ROBOSUITE_ASSETS`, else the setup cache), or None."""
    folder = Path(os.environ.get(ASSETS_ENV, DEFAULT_ASSETS))
    files = [ROBOT_XML] + [HAND_XML.format(side=s) for s in SIDES_LR]
    files += [MESH.format(S=s, link=link) for s in "LR" for link in TIP_LINKS.values()]
    return folder if all((folder / f).is_file() for f in files) else None


def group_joints(group: str) -> list[str | tuple[str, ...]]:
    """Model joint names of one modality.json group (a hand value drives a tuple of joints)."""
    side, _, part = group.partition("_")
    s = side[0]
    if group not in GR00T_GROUPS:
        raise ValueError(f"modality group {group!r}: not a GR1 joint group {GR00T_GROUPS}")
    if part == "arm":
        return [f"{s}_{j}" for j in ARM_JOINTS]
    if part == "leg":
        return [f"{s}_leg_{j}" for j in LEG_JOINTS]
    if part == "hand":
        return [tuple(f"{s.upper()}_{j}_joint" for j in g) for g in HAND_GROUPS]
    return list(NECK_JOINTS if group == "neck" else WAIST_JOINTS)


# ---------------------------------------------------------------------------------------------- model


def _strip(elem: ET.Element) -> None:
    """Keep bodies, joints, cameras and inertials; drop geoms, sites and everything else."""
    for child in list(elem):
        if child.tag in ("body", "joint", "camera", "inertial", "freejoint"):
            _strip(child)
        else:
            elem.remove(child)


def stl_vertices(path: Path) -> np.ndarray:
    """`[N, 3]` vertices of a binary STL file (80-byte header, count, 50-byte triangles)."""
    data = path.read_bytes()
    count = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
    tri = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    return np.frombuffer(data, dtype=tri, count=count, offset=84)["v"].reshape(-1, 3).astype(np.float64)


def fingertip(folder: Path, side: Side, link: str) -> np.ndarray:
    """The fingertip in a finger's last link frame: its mesh vertex farthest from the link origin (the mesh
    geom has no offset in the hand MJCF, so mesh coordinates are link coordinates)."""
    v = stl_vertices(folder / MESH.format(S=side[0].upper(), link=link))
    return v[np.argmax(np.linalg.norm(v, axis=1))]


def _add_tips(folder: Path, side: Side, bodies: list[ET.Element]) -> None:
    S = side[0].upper()
    for link in TIP_LINKS.values():
        parent = next(el for b in bodies for el in b.iter("body") if el.get("name") == f"{S}_{link}_link")
        pos = " ".join(f"{x:.6f}" for x in fingertip(folder, side, link))
        ET.SubElement(parent, "body", {"name": f"{S}_{link.split('_')[0]}_tip", "pos": pos})


def _hand_bodies(folder: Path, side: Side) -> list[ET.Element]:
    world = ET.parse(folder / HAND_XML.format(side=side)).getroot().find("worldbody")
    bodies = list(world.findall("body"))
    for el in world.iter():
        name = el.get("name")
        if name is not None and not name.startswith(("R_", "L_", f"{side}_")):
            el.set("name", f"{side}_fourier_{name}")  # the hands share names like `eef`: keep them apart
    for b in bodies:
        _strip(b)
    _add_tips(folder, side, bodies)
    return bodies


def compose_xml(folder: Path) -> str:
    """The GR1 MJCF with both Fourier hands mounted as robosuite mounts them, kinematics only."""
    root = ET.parse(folder / ROBOT_XML).getroot()
    for tag in ("asset", "actuator", "sensor", "contact", "equality", "tendon"):
        for el in root.findall(tag):
            root.remove(el)
    world = root.find("worldbody")
    for el in list(world):
        if el.tag != "body":
            world.remove(el)
    for body in world.findall("body"):
        body.remove(body.find("freejoint"))  # GR1ArmsOnly: the base is fixed
        _strip(body)
    for side in SIDES_LR:
        mount = root.find(f".//body[@name='{side}_eef']")
        mount.extend(_hand_bodies(folder, side))
    head = root.find(".//body[@name='head_pitch']")
    ET.SubElement(head, "camera", {"name": CAMERA, "mode": "fixed", **EGOVIEW})
    compiler = root.find("compiler")
    compiler.set("boundmass", "1e-4")
    compiler.set("boundinertia", "1e-8")
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera at `width x height` pixels: `K [3, 3]` and, per frame, `base_from_camera [T, 4, 4]`
    (OpenCV axes: +x right, +y down, +z forward)."""

    name: str
    width: int
    height: int
    fovy_deg: float
    K: np.ndarray
    base_from_camera: np.ndarray

    def frames(self, rows: slice) -> CameraModel:
        """The same camera over frames `rows` (an episode part)."""
        return replace(self, base_from_camera=self.base_from_camera[rows])


def intrinsics(fovy_deg: float, render: tuple[int, int], side: int) -> np.ndarray:
    """MuJoCo's pinhole rendered at `render = (W, H)` (square pixels, `f = (H/2) / tan(fovy/2)`, principal
    point at the centre), then padded to a square (centred) and resized to `side x side` pixels."""
    width, height = render
    f = (height / 2) / np.tan(np.radians(fovy_deg) / 2) * side / max(width, height)
    c = (side - 1) / 2  # the image centre, pixel centres at integers (OpenCV, schemas/camera.py)
    return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


@dataclass
class HandFK:
    """One hand per frame, base frame: canonical wrist pose `[T, 4, 4]`, 21 MANO slots in the wrist frame
    `[T, 21, 3]` (unmapped slots 0) and which slots are mapped `[21]`."""

    wrist: np.ndarray
    keypoints: np.ndarray
    mapped: np.ndarray


@dataclass
class GR1Kinematics:
    """Both hands and the head camera, from the 44 GR00T joints per frame."""

    hands: dict[Side, HandFK]
    camera: CameraModel


class GR1Model:
    """The composed GR1 + Fourier hands model; `forward(joints [T, 44], layout)` gives `GR1Kinematics`."""

    def __init__(self, folder: Path) -> None:
        import mujoco  # the one place that needs it: tests and sources without FK never import it

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_string(compose_xml(folder))
        self.data = mujoco.MjData(self.model)
        self.base = self._id(mujoco.mjtObj.mjOBJ_BODY, "base")
        self.camera = self._id(mujoco.mjtObj.mjOBJ_CAMERA, CAMERA)
        self.fovy_deg = float(self.model.cam_fovy[self.camera])
        self.links = {
            side: np.array([self._id(mujoco.mjtObj.mjOBJ_BODY, n.format(side=side, S=side[0].upper()))
                            for _, n in sorted(HAND_LINKS.items())])
            for side in SIDES_LR
        }  # fmt: skip

    def _id(self, kind, name: str) -> int:
        i = self._mj.mj_name2id(self.model, kind, name)
        if i < 0:
            raise KeyError(f"GR1 model: no {kind.name} named {name!r}")
        return i

    def qpos_map(self, layout: dict[str, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per driven model joint: its source column, its qpos address and its range `[lo, hi]`, from
        modality.json group slices; a group whose width is not the model's is a ValueError."""
        cols, addrs, ranges = [], [], []
        for group, (start, end) in layout.items():
            names = group_joints(group)
            if len(names) != end - start:
                raise ValueError(f"modality group {group}: {end - start} values, the model has {len(names)}")
            for col, joints in zip(range(start, end), names, strict=True):
                for j in (joints,) if isinstance(joints, str) else joints:
                    jid = self._id(self._mj.mjtObj.mjOBJ_JOINT, j)
                    cols.append(col)
                    addrs.append(self.model.jnt_qposadr[jid])
                    ranges.append(self.model.jnt_range[jid])
        return np.array(cols), np.array(addrs), np.array(ranges)

    def forward(self, joints: np.ndarray, layout: dict[str, tuple[int, int]], side: int = 256
                ) -> GR1Kinematics:  # fmt: skip
        """FK of every frame of `joints [T, D]` laid out as `layout` (group -> (start, end)); the camera
        model of the `side x side` padded ego view."""
        cols, addrs, ranges = self.qpos_map(layout)
        q = np.clip(np.asarray(joints, dtype=np.float64)[:, cols], ranges[:, 0], ranges[:, 1])
        t = q.shape[0]
        bodies = np.concatenate([self.links["left"], self.links["right"], [self.base]])
        pos, cam = np.zeros((t, len(bodies), 3)), np.tile(np.eye(4), (t, 1, 1))
        for i in range(t):
            self.data.qpos[addrs] = q[i]
            self._mj.mj_kinematics(self.model, self.data)
            self._mj.mj_camlight(self.model, self.data)
            pos[i] = self.data.xpos[bodies]
            cam[i, :3, :3] = self.data.cam_xmat[self.camera].reshape(3, 3) @ MUJOCO_TO_OPENCV
            cam[i, :3, 3] = self.data.cam_xpos[self.camera]
        base = np.eye(4)  # the base body is fixed: one pose for every frame
        base[:3, :3], base[:3, 3] = self.data.xmat[self.base].reshape(3, 3), self.data.xpos[self.base]
        base_inv = np.linalg.inv(base)
        pts = pos[..., :-1, :] @ base_inv[:3, :3].T + base_inv[:3, 3]
        n = len(MAPPED_SLOTS)
        hands_fk = {side: _hand(pts[:, k * n : (k + 1) * n], side) for k, side in enumerate(SIDES_LR)}
        K = intrinsics(self.fovy_deg, EGOVIEW_RENDER, side)
        camera = CameraModel(CAMERA, side, side, self.fovy_deg, K, base_inv @ cam)
        return GR1Kinematics(hands_fk, camera)


def _hand(points: np.ndarray, side: Side) -> HandFK:
    """Canonical wrist pose and wrist-frame keypoints from the mapped link origins `[T, M, 3]` (base)."""
    t = points.shape[0]
    slots = np.zeros((t, N_KEYPOINTS, 3))
    slots[:, MAPPED_SLOTS] = points
    wrist = hand_pose(slots, side)
    inv = np.linalg.inv(wrist)
    local = slots @ np.swapaxes(inv[:, :3, :3], -1, -2) + inv[:, None, :3, 3]
    mapped = np.zeros(N_KEYPOINTS, dtype=bool)
    mapped[MAPPED_SLOTS] = True
    local[:, ~mapped] = 0.0
    return HandFK(wrist, local, mapped)


def hand_sides(fk: GR1Kinematics, in_camera: bool) -> dict[Side, hands.SideArrays]:
    """Both hands' 73 state/action values (hands.build_side), in the head camera frame per frame
    (`in_camera`; actions camera-motion decoupled) or the base frame. Unmapped keypoint slots are masked,
    and so is the gripper when the thumb or index tip is unmapped."""
    t = fk.camera.base_from_camera.shape[0]
    cam = fk.camera.base_from_camera if in_camera else np.tile(np.eye(4), (t, 1, 1))
    return {
        side: hands.build_side(cam, h.wrist, h.keypoints, np.tile(h.mapped.astype(np.float64), (t, 1)), 0.5)
        for side, h in fk.hands.items()
    }


@functools.lru_cache(maxsize=1)
def gr1_model() -> GR1Model:
    """The GR1 model from `assets_dir()` (loaded once per process); FileNotFoundError without the assets."""
    folder = assets_dir()
    if folder is None:
        raise FileNotFoundError(
            f"robosuite 1.5.2 GR1 assets not found (run `make setup`, or set {ASSETS_ENV})"
        )
    return GR1Model(folder)
