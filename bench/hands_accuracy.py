"""Accuracy of the estimated hands (ingest/hands/, MediaPipe) against EgoDex's ARKit hands, on real video.

    .venv/bin/python bench/hands_accuracy.py [--frames 150] [--width 640] \
        [--figure docs/figures/hands_egodex.png]

For each real EgoDex episode (../shared/realdata/egodex) the video is decoded at 10 Hz (output frame k =
source frame 3k), scaled to `--width` (the published size, 640x360 in `pipelines.yaml`), and run through
the estimator and the lifting of `ingest hands` (intrinsics from the HDF5, scaled). Per hand, over the frames
where the ground-truth wrist projects inside the image: detection rate (a valid, unmasked estimate), 2D
keypoint error (px at 1920x1080), MPJPE in the camera frame, PA-MPJPE (similarity Procrustes), wrist position
and rotation (canonical hand frame) errors, and the action error against the contract's ground-truth deltas
(camera frame at t; the estimate has no camera motion). Frames/s per CPU core = frames / the estimator
process's CPU seconds. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import av
import numpy as np

from ingest.convert import eef
from ingest.convert.camera import project
from ingest.convert.geometry import invert_pose, transform_points
from ingest.hands.backend import MediaPipeHands
from ingest.hands.lift import camera_from_rotations, lift
from ingest.sources.egodex import IMAGE_SIZE, read_hdf5
from schemas.canonical import SIDES
from schemas.hands import HandsConfig

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "egodex"
STRIDE = 3  # 30 Hz source -> 10 Hz


def frames_10hz(mp4: Path, n: int, width: int) -> list[np.ndarray]:
    """The first `n` 10 Hz frames (source frames 0, 3, 6, ...), RGB, scaled to `width`."""
    out = []
    with av.open(str(mp4)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % STRIDE == 0:
                h = round(f.height * width / f.width / 2) * 2
                out.append(f.to_ndarray(format="rgb24", width=width, height=h))
                if len(out) == n:
                    break
    return out


def ground_truth(h5: Path, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """K at 1920x1080 and per side the 21 joints in the camera frame `[n, 21, 3]` at 10 Hz."""
    raw = read_hdf5(h5)
    idx = np.arange(n) * STRIDE
    cam_inv = invert_pose(raw.camera[idx])
    gt = {s: np.stack([transform_points(cam_inv[k], raw.joints[s][i, :, :3, 3]) for k, i in enumerate(idx)])
          for s in SIDES}  # fmt: skip
    return raw.intrinsic, gt, raw.camera[idx]


def procrustes_error(est: np.ndarray, gt: np.ndarray) -> float:
    """Mean joint error after the similarity transform (scale, rotation, translation) best aligning est."""
    a, b = est - est.mean(0), gt - gt.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    s[-1] *= d
    u[:, -1] *= d
    scale = s.sum() / (a**2).sum()
    return float(np.linalg.norm(scale * a @ (u @ vt) - b, axis=1).mean())


def rotation_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    cos = (np.trace(np.swapaxes(Ra, -1, -2) @ Rb, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def side_errors(fit, gt: np.ndarray, cam: np.ndarray, K: np.ndarray, side: str, est_cam: np.ndarray
                ) -> dict[str, list[float]]:  # fmt: skip
    """Per-frame errors of one side where the GT hand is in view."""
    uv_gt = project(K, gt[:, 0])
    inview = np.isfinite(uv_gt).all(1) & (uv_gt[:, 0] >= 0) & (uv_gt[:, 0] < IMAGE_SIZE[0])
    inview &= (uv_gt[:, 1] >= 0) & (uv_gt[:, 1] < IMAGE_SIZE[1])
    ok = inview & fit.valid
    est = fit.points
    e: dict[str, list[float]] = {"inview": [int(inview.sum())], "detected": [int(ok.sum())]}
    e["px"] = [float(np.linalg.norm(project(K, est[k]) - project(K, gt[k]), axis=1).mean())
               for k in np.flatnonzero(ok)]  # fmt: skip
    e["mpjpe"] = [float(np.linalg.norm(est[k] - gt[k], axis=1).mean()) for k in np.flatnonzero(ok)]
    e["pa"] = [procrustes_error(est[k], gt[k]) for k in np.flatnonzero(ok)]
    e["wrist"] = [float(np.linalg.norm(est[k, 0] - gt[k, 0])) for k in np.flatnonzero(ok)]
    R_est, R_gt = eef.hand_frame(est, side), eef.hand_frame(gt, side)
    e["rot"] = [float(rotation_deg(R_est[k], R_gt[k])) for k in np.flatnonzero(ok)]
    still = np.tile(np.eye(4), (len(est), 1, 1))
    e.update(action_errors(est, gt, cam, still, ok, side, ""))
    e.update(action_errors(est, gt, cam, est_cam, ok, side, "_cam"))
    return e


def action_errors(est, gt, cam, est_cam, ok, side, tag) -> dict[str, list[float]]:
    """Position / rotation delta errors against the contract's GT action (wrist at t+1 in the camera frame
    at t): the estimate with its camera poses `est_cam` (identity: no camera motion)."""
    both = np.flatnonzero(ok[:-1] & ok[1:])
    T_est, T_gt = eef.hand_pose(est, side), eef.hand_pose(gt, side)
    world, est_world = cam @ T_gt, est_cam @ T_est
    dp, dr = [], []
    for k in both:
        gt_next = invert_pose(cam[k]) @ world[k + 1]
        est_next = invert_pose(est_cam[k]) @ est_world[k + 1]
        dp.append(
            float(np.linalg.norm((est_next[:3, 3] - T_est[k, :3, 3]) - (gt_next[:3, 3] - T_gt[k, :3, 3])))
        )
        r_gt = T_gt[k, :3, :3].T @ gt_next[:3, :3]
        r_est = T_est[k, :3, :3].T @ est_next[:3, :3]
        dr.append(float(rotation_deg(r_est, r_gt)))
    return {f"dpos{tag}": dp, f"drot{tag}": dr}


def camera_errors(cam: np.ndarray, rotations: list) -> list[float]:
    """Degrees between each estimated frame-to-frame camera rotation and EgoDex's."""
    out = []
    for k in range(1, len(cam)):
        if rotations[k] is not None:
            gt = (invert_pose(cam[k - 1]) @ cam[k])[:3, :3]  # previous camera <- this camera
            out.append(float(rotation_deg(rotations[k].T, gt)))
    return out


def summary(errs: list[dict[str, list[float]]]) -> dict[str, float]:
    cat = {k: sum((e[k] for e in errs), []) for k in errs[0]}
    mean = {k: float(np.mean(v)) if v else float("nan") for k, v in cat.items()}
    return {
        "frames_in_view": int(sum(cat["inview"])),
        "detection_rate": round(sum(cat["detected"]) / max(1, sum(cat["inview"])), 3),
        "keypoint_2d_px": round(mean["px"], 1),
        "mpjpe_mm": round(mean["mpjpe"] * 1000, 1),
        "pa_mpjpe_mm": round(mean["pa"] * 1000, 1),
        "wrist_position_cm": round(mean["wrist"] * 100, 2),
        "wrist_rotation_deg": round(mean["rot"], 1),
        "action_position_mm": round(mean["dpos"] * 1000, 1),
        "action_rotation_deg": round(mean["drot"], 2),
        "action_position_mm_camera_rotation_removed": round(mean["dpos_cam"] * 1000, 1),
        "action_rotation_deg_camera_rotation_removed": round(mean["drot_cam"], 2),
    }


def run(frames_per_episode: int, width: int, figure: Path | None, cfg: HandsConfig) -> dict:
    errs = {s: [] for s in SIDES}
    n_frames, wall, shown, cam_err, cam_known, gt_steps = 0, 0.0, [], [], [], []
    options = (cfg.model_complexity, cfg.min_detection_confidence, cfg.min_tracking_confidence)
    with MediaPipeHands(*options) as est:
        for h5 in sorted(REAL.rglob("*.hdf5")):
            frames = frames_10hz(h5.with_suffix(".mp4"), frames_per_episode, width)
            K, gt, cam = ground_truth(h5, len(frames))
            scale = width / IMAGE_SIZE[0]
            K_small = K * [[scale], [scale], [1]]
            est.reset(K_small)
            t0 = time.perf_counter()
            results = [est.estimate(f) for f in frames]
            wall += time.perf_counter() - t0
            n_frames += len(frames)
            rotations = [r.camera_rotation for r in results]
            est_cam, known = camera_from_rotations(rotations)
            cam_err += camera_errors(cam, rotations)
            cam_known.append(known)
            gt_steps += list(rotation_deg(np.eye(3), (invert_pose(cam[:-1]) @ cam[1:])[:, :3, :3]))
            _, fits, _ = lift([r.hands for r in results], K_small, width, cfg, est_cam)
            for s in SIDES:
                errs[s].append(side_errors(fits[s], gt[s], cam, K, s, est_cam))
            shown.append((h5, frames, fits, gt, K_small))
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = cpu.ru_utime + cpu.ru_stime
    out = {s: summary(errs[s]) for s in SIDES}
    out["camera"] = {
        "rotation_estimated_fraction": round(float(np.mean(cam_known)), 3),
        "rotation_error_deg_median": round(float(np.median(cam_err)), 2),
        "rotation_error_deg_mean": round(float(np.mean(cam_err)), 2),
        "true_rotation_per_step_deg_mean": round(float(np.mean(gt_steps)), 2),
    }
    out["frames"] = n_frames
    out["frames_per_s_wall"] = round(n_frames / wall, 1)
    out["frames_per_s_per_core"] = round(n_frames / cpu_s, 1)
    out["width"] = width
    if figure is not None:
        draw_figure(shown, figure)
    return out


def draw_figure(shown, path: Path) -> None:
    """A 2x2 grid: four episodes' frames with GT (green) and estimated (red) keypoints."""
    from PIL import Image, ImageDraw

    from ingest.convert.camera import draw_points

    tiles = []
    for h5, frames, fits, gt, K in shown[:4]:
        k = int(np.argmax(fits["left"].valid & fits["right"].valid)) if len(frames) else 0
        img = Image.fromarray(frames[k])
        draw = ImageDraw.Draw(img)
        for s in SIDES:
            draw_points(draw, K, gt[s][k], colour=(40, 230, 40))
            if fits[s].valid[k]:
                draw_points(draw, K, fits[s].points[k], colour=(255, 40, 40))
        label = f"{h5.parent.name}/{h5.stem} frame {k}: ground truth green, estimate red"
        draw.text((8, 8), label, fill=(255, 255, 255))
        tiles.append(img)
    w, h = tiles[0].size
    grid = Image.new("RGB", (2 * w, 2 * h))
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % 2) * w, (i // 2) * h))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.quantize(colors=192).save(path, optimize=True)  # a palette keeps the figure small


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150, help="10 Hz frames per episode (from the start)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--refine-pose", action="store_true", help="hands.refine_pose: true (docs/HANDS.md)")
    args = ap.parse_args()
    if not any(REAL.rglob("*.hdf5")):
        raise SystemExit(f"bench/hands_accuracy.py: no EgoDex episode under {REAL} (../shared/realdata)")
    cfg = HandsConfig(refine_pose=args.refine_pose)
    print(json.dumps(run(args.frames, args.width, args.figure, cfg), indent=1))


if __name__ == "__main__":
    main()
