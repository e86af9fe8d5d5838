"""Per-frame hand detections -> the contract's state, action and masks (docs/HANDS.md).

1. Sides: detections are linked frame to frame into tracks (nearest wrist in the image), and each track
   takes one side by a vote over its frames (the estimator's handedness, weighted by its score, plus the
   chirality of the metric hand, the image half and, with two hands in view, which one is further right),
   so a hand keeps its side over time; two
   tracks claiming one side in the same frame: the weaker vote takes the other side.
2. Metric pose: the metric landmarks (hand-centred, in axes of their own) are rotated onto the image
   landmarks lifted by their relative depth (`orient`), then moved by the translation that makes them
   project onto the image landmarks with the intrinsics (`solve_translation`: linear least squares, then
   Gauss-Newton on the pixel error).
3. Plausibility: a hand is masked when its side vote is weak, its fit is poor (RMS reprojection), its wrist
   depth is out of range, a bone is far from the episode's median length, or its wrist jumps away from
   both neighbours; then the valid frames are smoothed ([1, 2, 1] / 4 over consecutive valid frames).
4. The canonical wrist frame and keypoints from the 21 camera-frame points (`eef.canonical_hand`, the
   contract's rule) and the state / action / masks by `hands.build_side` (gripper by the thumb-index
   rule); the camera is the reference frame at every step (its own motion is not removed unless camera
   poses are given).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ingest.convert import eef, hands
from ingest.hands.backend import Detection
from schemas.canonical import N_KEYPOINTS, SIDES, Side
from schemas.hands import HandsConfig

BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
         (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))  # fmt: skip
TRACK_GATE = 0.15  # a detection continues a track whose last wrist is this close (fraction of width)
TRACK_GAP = 3  # ... and was seen at most this many frames before
CHIRALITY_WEIGHT, HALF_WEIGHT, PAIR_WEIGHT = 0.5, 0.75, 0.75


def default_intrinsics(width: int, height: int, horizontal_fov_deg: float) -> np.ndarray:
    """A pinhole camera of the given horizontal field of view, square pixels, principal point centred."""
    f = (width / 2) / np.tan(np.radians(horizontal_fov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def _residual(points: np.ndarray, uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    z = points[:, 2:3]
    return (points[:, :2] / z) * (K[0, 0], K[1, 1]) + K[:2, 2] - uv


def orient(det: Detection) -> np.ndarray:
    """The metric hand `[21, 3]` rotated into the camera's axes: the rotation (Kabsch, no reflection) that
    best aligns it with the image landmarks lifted by their relative depth (a weak-perspective hand)."""
    a = det.world - det.world.mean(0)
    image3d = np.column_stack([det.image, det.depth])
    b = image3d - image3d.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    R = (u @ np.diag([1.0, 1.0, d]) @ vt).T
    return det.world @ R.T


def solve_translation(
    world: np.ndarray, uv: np.ndarray, K: np.ndarray, iters: int = 5
) -> tuple[np.ndarray, float]:
    """The translation t `[3]` making `world + t` project onto `uv` `[21, 2]` (pixels) with `K`, and the
    RMS pixel error. Linear start from `fx (X + tx) = (u - cx)(Z + tz)` (and v), then Gauss-Newton."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    du, dv = uv[:, 0] - cx, uv[:, 1] - cy
    n = len(world)
    A = np.zeros((2 * n, 3))
    A[:n, 0], A[:n, 2] = fx, -du
    A[n:, 1], A[n:, 2] = fy, -dv
    b = np.concatenate([du * world[:, 2] - fx * world[:, 0], dv * world[:, 2] - fy * world[:, 1]])
    t = np.linalg.lstsq(A, b, rcond=None)[0]
    for _ in range(iters):
        p = world + t
        if (p[:, 2] <= 1e-3).any():
            break
        r = _residual(p, uv, K).reshape(-1)
        z = p[:, 2]
        J = np.zeros((n, 2, 3))
        J[:, 0, 0], J[:, 0, 2] = fx / z, -fx * p[:, 0] / z**2
        J[:, 1, 1], J[:, 1, 2] = fy / z, -fy * p[:, 1] / z**2
        t = t - np.linalg.lstsq(J.reshape(-1, 3), r, rcond=None)[0]
    p = world + t
    if (p[:, 2] <= 1e-3).any():
        return t, np.inf
    return t, float(np.sqrt(np.mean(np.sum(_residual(p, uv, K) ** 2, axis=1))))


def _rodrigues(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3)
    k = w / theta
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * Kx + (1 - np.cos(theta)) * Kx @ Kx


def refine_pose(
    points: np.ndarray, uv: np.ndarray, K: np.ndarray, iters: int = 8
) -> tuple[np.ndarray, float]:
    """The rigid hand `[21, 3]` (camera frame) rotated about its centroid and moved so that it projects onto
    `uv` with the least pixel error (Gauss-Newton on 6 parameters, numeric Jacobian), and the RMS error."""
    c = points.mean(0)
    local = points - c

    def residual(x: np.ndarray) -> np.ndarray:
        p = local @ _rodrigues(x[:3]).T + c + x[3:]
        return _residual(p, uv, K).reshape(-1) if (p[:, 2] > 1e-3).all() else np.full(2 * len(p), 1e6)

    x = np.zeros(6)
    for _ in range(iters):
        r = residual(x)
        J = np.stack([(residual(x + e) - r) / 1e-6 for e in np.eye(6) * 1e-6], axis=1)
        x = x - np.linalg.lstsq(J, r, rcond=None)[0]
    p = local @ _rodrigues(x[:3]).T + c + x[3:]
    return p, float(np.sqrt(np.mean(np.sum(residual(x).reshape(-1, 2) ** 2, axis=1))))


def chirality(world: np.ndarray) -> float:
    """+1 when the metric hand is a right hand, -1 a left (the thumb tip on the palm-normal side that the
    contract's right-hand rule gives), 0 when degenerate."""
    normal = np.cross(world[5] - world[0], world[17] - world[0])
    return float(np.sign(np.dot(normal, world[4] - world[0])))


def side_vote(det: Detection, frame: list[Detection], width: int) -> float:
    """> 0 votes right, < 0 left: the label (weighted by its score), the metric hand's chirality, the image
    half the wrist is in and, when the frame has another hand, which of the two wrists is further right."""
    label = det.score if det.side == "right" else -det.score
    vote = label + CHIRALITY_WEIGHT * chirality(det.world)
    vote += HALF_WEIGHT * float(np.clip((det.image[0, 0] - width / 2) / (width / 4), -1.0, 1.0))
    for other in frame:
        if other is not det:
            vote += PAIR_WEIGHT * (1.0 if det.image[0, 0] > other.image[0, 0] else -1.0)
    return vote


@dataclass
class Track:
    frames: list[int] = field(default_factory=list)
    dets: list[Detection] = field(default_factory=list)
    votes: list[float] = field(default_factory=list)  # side_vote of each detection

    def add(self, k: int, det: Detection, vote: float) -> None:
        self.frames.append(k)
        self.dets.append(det)
        self.votes.append(vote)

    def vote(self) -> float:
        return sum(self.votes)


def link_tracks(frames: list[list[Detection]], width: int) -> list[Track]:
    """Detections linked into tracks: greedy nearest wrist, within TRACK_GATE * width and TRACK_GAP frames."""
    tracks: list[Track] = []
    for k, dets in enumerate(frames):
        live = [t for t in tracks if k - t.frames[-1] <= TRACK_GAP]
        pairs = sorted(
            (float(np.linalg.norm(d.image[0] - t.dets[-1].image[0])), i, j)
            for i, d in enumerate(dets) for j, t in enumerate(live)
        )  # fmt: skip
        used_d, used_t = set(), set()
        for dist, i, j in pairs:
            if dist <= TRACK_GATE * width and i not in used_d and j not in used_t:
                live[j].add(k, dets[i], side_vote(dets[i], dets, width))
                used_d.add(i)
                used_t.add(j)
        for i, d in enumerate(dets):
            if i not in used_d:
                tracks.append(Track())
                tracks[-1].add(k, d, side_vote(d, dets, width))
    return tracks


Assigned = list[tuple[Detection, float] | None]  # per frame: the detection a side got and its side strength


def assign_sides(frames: list[list[Detection]], width: int) -> dict[Side, Assigned]:
    """Per side and frame the detection it gets and the strength of that side (the track's mean vote per
    frame toward it: negative when the track had to take the side it voted against), or None. Strongest
    tracks choose first; a track whose side is taken in one of its frames takes the other side for the
    whole track when that is free, else it loses those frames."""
    out: dict[Side, list] = {s: [None] * len(frames) for s in SIDES}
    tracks = link_tracks(frames, width)
    for tr in sorted(tracks, key=lambda t: -abs(t.vote())):
        vote = tr.vote()
        want: Side = "right" if vote >= 0 else "left"
        other: Side = "left" if want == "right" else "right"
        if any(out[want][k] is not None for k in tr.frames) and all(out[other][k] is None for k in tr.frames):
            want = other
        strength = (vote if want == "right" else -vote) / len(tr.dets)
        for k, d in zip(tr.frames, tr.dets, strict=True):
            if out[want][k] is None:
                out[want][k] = (d, strength)
    return out


@dataclass
class SideFit:
    """One side's camera-frame points `[T, 21, 3]` (NaN where no hand) and which frames are valid."""

    points: np.ndarray
    detected: np.ndarray  # bool [T]
    valid: np.ndarray  # bool [T]
    rms_px: np.ndarray  # [T], NaN where no hand


def fit_side(per_frame: Assigned, K: np.ndarray, width: int, cfg: HandsConfig) -> SideFit:
    t = len(per_frame)
    points = np.full((t, N_KEYPOINTS, 3), np.nan)
    rms = np.full(t, np.nan)
    ok = np.zeros(t, dtype=bool)
    for k, item in enumerate(per_frame):
        if item is None:
            continue
        det, strength = item
        hand = orient(det)
        shift, rms[k] = solve_translation(hand, det.image, K)
        points[k] = hand + shift
        if cfg.refine_pose:
            refined, r = refine_pose(points[k], det.image, K)
            if r < rms[k]:
                points[k], rms[k] = refined, r
        ok[k] = strength >= cfg.min_side_score and rms[k] <= cfg.max_reprojection * width
    detected = np.isfinite(rms)
    ok &= _depth_ok(points, cfg) & _bones_ok(points, ok, cfg)
    ok &= ~_jumps(points, ok, cfg.max_step_m)
    if cfg.smooth:
        points = smooth(points, ok)
    return SideFit(points, detected, ok, rms)


def _depth_ok(points: np.ndarray, cfg: HandsConfig) -> np.ndarray:
    z = points[:, 0, 2]
    with np.errstate(invalid="ignore"):
        return (z >= cfg.depth_m[0]) & (z <= cfg.depth_m[1])


def _bones_ok(points: np.ndarray, ok: np.ndarray, cfg: HandsConfig) -> np.ndarray:
    lengths = np.stack([np.linalg.norm(points[:, a] - points[:, b], axis=-1) for a, b in BONES], axis=1)
    if not ok.any():
        return ok
    median = np.median(lengths[ok], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.abs(lengths / median - 1) <= cfg.max_bone_ratio).all(axis=1)


def _jumps(points: np.ndarray, ok: np.ndarray, max_step: float) -> np.ndarray:
    """Valid frames whose wrist is more than `max_step` from every valid neighbour (next to it in time)."""
    idx = np.flatnonzero(ok)
    bad = np.zeros(len(ok), dtype=bool)
    wrist = points[:, 0]
    for n, k in enumerate(idx):
        near = [j for j in (idx[n - 1] if n else None, idx[n + 1] if n + 1 < len(idx) else None)
                if j is not None and abs(j - k) == 1]  # fmt: skip
        if near and all(np.linalg.norm(wrist[k] - wrist[j]) > max_step for j in near):
            bad[k] = True
    return bad


def smooth(points: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 in time over valid frames; an invalid neighbour drops out (weights renormalised)."""
    out = points.copy()
    for k in np.flatnonzero(ok):
        acc, wsum = 2 * points[k], 2.0
        for j in (k - 1, k + 1):
            if 0 <= j < len(ok) and ok[j]:
                acc, wsum = acc + points[j], wsum + 1.0
        out[k] = acc / wsum
    return out


def camera_from_rotations(rotations: list[np.ndarray | None]) -> tuple[np.ndarray, float]:
    """Camera poses `[T, 4, 4]` (in the first frame's camera) from each frame's rotation since the previous
    one (`x_now = R x_prev`; None: unknown, taken as no rotation), translation unknown (zero), and the
    fraction of steps whose rotation is known."""
    t = len(rotations)
    poses = np.tile(np.eye(4), (t, 1, 1))
    for k in range(1, t):
        R = rotations[k]
        step = np.eye(4)
        if R is not None:
            step[:3, :3] = R.T  # previous camera <- this camera
        poses[k] = poses[k - 1] @ step
    known = sum(r is not None for r in rotations[1:]) / max(1, t - 1)
    return poses, float(known)


def side_arrays(fit: SideFit, side: Side, cam: np.ndarray) -> hands.SideArrays:
    """State / action / masks of one side; frames without a valid hand are identity poses at the camera
    origin with zero keypoints, masked (nothing invented)."""
    t = len(fit.valid)
    wrist = np.tile(np.eye(4), (t, 1, 1))
    kps = np.zeros((t, N_KEYPOINTS, 3))
    if fit.valid.any():
        w, k = eef.canonical_hand(fit.points[fit.valid], side)
        wrist[fit.valid], kps[fit.valid] = cam[fit.valid] @ w, k
    conf = np.repeat(fit.valid.astype(float)[:, None], N_KEYPOINTS, axis=1)
    return hands.build_side(cam, wrist, kps, conf, 0.5)


def hand_metrics(fits: dict[Side, SideFit]) -> dict[str, float]:
    """Detection / valid rates per side and the wrist jitter (median |second difference|, mm)."""
    m: dict[str, float] = {}
    for side, fit in fits.items():
        m[f"hands_detected_{side}"] = float(fit.detected.mean())
        m[f"hands_valid_{side}"] = float(fit.valid.mean())
        w = fit.points[:, 0]
        ok = fit.valid[2:] & fit.valid[1:-1] & fit.valid[:-2]
        acc = np.linalg.norm(w[2:] - 2 * w[1:-1] + w[:-2], axis=-1)[ok]
        if acc.size:
            m[f"hands_jitter_mm_{side}"] = float(np.median(acc) * 1000)
    m["hands_valid_fraction"] = float(np.mean([f.valid.mean() for f in fits.values()]))
    return m


Lifted = tuple[hands.SideArrays, dict[Side, SideFit], dict[str, float]]


def lift(
    frames: list[list[Detection]], K: np.ndarray, width: int, cfg: HandsConfig, cam: np.ndarray | None = None
) -> Lifted:
    """Detections of every 10 Hz frame -> the 146-wide arrays, each side's fit and the episode's metrics.
    `cam` `[T, 4, 4]` (camera poses in a world frame) decouples head motion; None: the camera at each step."""
    t = len(frames)
    cam = np.tile(np.eye(4), (t, 1, 1)) if cam is None else cam
    per_side = assign_sides(frames, width)
    fits = {s: fit_side(per_side[s], K, width, cfg) for s in SIDES}
    arrays = hands.assemble({s: side_arrays(fits[s], s, cam) for s in SIDES}, t)
    return arrays, fits, hand_metrics(fits)
