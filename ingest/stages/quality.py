"""First quality rule (CONTRACT.md sections 5 and 8; a later issue refines it).

Metrics, all floats, computed on the 10 Hz canonical arrays:

- `valid_fraction`: fraction of (frame, side) pairs whose wrist is valid (`state_mask` of the wrist
  position), over the sides the source can fill (EgoDex: both; a single-arm robot: `right`).
- `wrist_speed_p99`: 99th percentile (numpy linear interpolation) of `|action position| * fps` in m/s,
  pooled over those sides and over the frames t < T-1 whose action position is valid (the last frame's
  zero motion is not a measurement). 0.0 when there is no such frame.
- `duration_s`: `frames / fps` (each frame covers 1/fps seconds).
- `frames`: the episode length T.

Robot signals (`robot_signals`, merged into `quality_metrics` by the robot sources; a later issue decides
tiers from them, the rule below ignores them). On the canonical `state` of the given sides, pooled over
the sides; a "valid pair" is two consecutive frames whose wrist positions are both valid:

- `idle_ratio`: fraction of valid pairs whose wrist speed `|p[t+1] - p[t]| * fps` is below
  `IDLE_SPEED` (0.01 m/s). 0.0 when there is no valid pair.
- `path_over_displacement`: the wrist path length (sum of `|p[t+1] - p[t]|` over valid pairs) over the
  straight-line distance from the first to the last valid wrist position, that distance floored at
  `MIN_DISPLACEMENT` (1e-3 m). Several sides: summed path over summed (floored) distance. 1.0 for a
  straight line, 0.0 when nothing moves.
- `regrasps`: gripper closing events after the first. A closing event is the gripper value falling
  through `GRIP_THRESHOLD` (0.5) from above (`g[t-1] > 0.5 >= g[t]`) between consecutive frames whose
  gripper is valid (masked frames are skipped over). Summed over sides.
- `jerk_rms`: RMS over the windows of four consecutive valid wrist positions of the norm of the third
  finite difference `p[t+3] - 3 p[t+2] + 3 p[t+1] - p[t]` times `fps**3`, in m/s^3. 0.0 when there is
  no such window.

Tier: `high` when `valid_fraction >= min_valid_fraction` and `wrist_speed_p99 <= max_wrist_speed`
(`pipelines.yaml` section `quality`), else `low`. Action-free sources are `actionless` (not decided here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from schemas.canonical import Side, part_slice
from schemas.episode import FPS, QualityTier
from schemas.pipelines import QualityConfig


def quality_metrics(
    state_mask: np.ndarray,
    action: np.ndarray,
    action_mask: np.ndarray,
    sides: Sequence[Side],
    fps: float = FPS,
) -> dict[str, float]:
    """The four metrics of the module docstring from `[T, 146]` arrays."""
    t = int(state_mask.shape[0])
    valid, speeds = [], []
    for side in sides:
        pos = part_slice(side, "position")
        valid.append(state_mask[:, pos.start])
        ok = action_mask[:-1, pos.start]
        speeds.append(np.linalg.norm(action[:-1, pos].astype(np.float64), axis=-1)[ok] * fps)
    valid_all = np.concatenate(valid) if valid else np.zeros(0, dtype=bool)
    speed_all = np.concatenate(speeds) if speeds else np.zeros(0)
    return {
        "valid_fraction": float(valid_all.mean()) if valid_all.size else 0.0,
        "wrist_speed_p99": float(np.percentile(speed_all, 99)) if speed_all.size else 0.0,
        "duration_s": t / fps,
        "frames": float(t),
    }


IDLE_SPEED = 0.01  # m/s: slower wrist steps count as idle
MIN_DISPLACEMENT = 1e-3  # m: floor of the start -> end distance in `path_over_displacement`
GRIP_THRESHOLD = 0.5  # canonical gripper value a closing gripper falls through


def _closings(grip: np.ndarray) -> int:
    """Number of falls through `GRIP_THRESHOLD` from above in a 1-D sequence."""
    return int(np.count_nonzero((grip[:-1] > GRIP_THRESHOLD) & (grip[1:] <= GRIP_THRESHOLD)))


def robot_signals(
    state: np.ndarray, state_mask: np.ndarray, sides: Sequence[Side], fps: float = FPS
) -> dict[str, float]:
    """The four robot signals of the module docstring from `[T, 146]` state and mask."""
    steps, paths, disps, jerks, regrasps = [], 0.0, 0.0, [], 0
    for side in sides:
        pos, grip = part_slice(side, "position"), part_slice(side, "gripper")
        p, ok = state[:, pos].astype(np.float64), state_mask[:, pos.start].astype(bool)
        pair = ok[:-1] & ok[1:]
        step = np.linalg.norm(np.diff(p, axis=0), axis=-1)[pair]
        steps.append(step)
        paths += float(step.sum())
        idx = np.flatnonzero(ok)
        if idx.size:
            disps += max(float(np.linalg.norm(p[idx[-1]] - p[idx[0]])), MIN_DISPLACEMENT)
        if len(p) >= 4:
            win = ok[:-3] & ok[1:-2] & ok[2:-1] & ok[3:]
            d3 = p[3:] - 3 * p[2:-1] + 3 * p[1:-2] - p[:-3]
            jerks.append(np.linalg.norm(d3, axis=-1)[win] * fps**3)
        g = state[:, grip.start].astype(np.float64)[state_mask[:, grip.start].astype(bool)]
        regrasps += max(_closings(g) - 1, 0)
    step_all = np.concatenate(steps) if steps else np.zeros(0)
    jerk_all = np.concatenate(jerks) if jerks else np.zeros(0)
    return {
        "idle_ratio": float(np.mean(step_all * fps < IDLE_SPEED)) if step_all.size else 0.0,
        "path_over_displacement": paths / max(disps, MIN_DISPLACEMENT),
        "regrasps": float(regrasps),
        "jerk_rms": float(np.sqrt(np.mean(jerk_all**2))) if jerk_all.size else 0.0,
    }


def quality_tier(metrics: dict[str, float], cfg: QualityConfig) -> QualityTier:
    """`high` or `low` by the first rule."""
    enough = metrics["valid_fraction"] >= cfg.min_valid_fraction
    calm = metrics["wrist_speed_p99"] <= cfg.max_wrist_speed
    return "high" if enough and calm else "low"


def assess(
    state_mask: np.ndarray,
    action: np.ndarray,
    action_mask: np.ndarray,
    sides: Sequence[Side],
    cfg: QualityConfig,
) -> tuple[QualityTier, dict[str, float]]:
    """(tier, metrics) for one episode."""
    metrics = quality_metrics(state_mask, action, action_mask, sides)
    return quality_tier(metrics, cfg), metrics
