"""First quality rule (CONTRACT.md sections 5 and 8; a later issue refines it).

Metrics, all floats, computed on the 10 Hz canonical arrays:

- `valid_fraction`: fraction of (frame, side) pairs whose wrist is valid (`state_mask` of the wrist
  position), over the sides the source can fill (EgoDex: both; a single-arm robot: `right`).
- `wrist_speed_p99`: 99th percentile (numpy linear interpolation) of `|action position| * fps` in m/s,
  pooled over those sides and over the frames t < T-1 whose action position is valid (the last frame's
  zero motion is not a measurement). 0.0 when there is no such frame.
- `duration_s`: `frames / fps` (each frame covers 1/fps seconds).
- `frames`: the episode length T.

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
