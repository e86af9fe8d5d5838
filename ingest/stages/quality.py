"""The quality stage (docs/TIERS.md): per-episode metrics, the interaction filter and the tier.

`stage(ep, cfg)` runs on every episode of `ingest run` (ingest/job.py `convert_one`): it measures the
episode on its 10 Hz canonical arrays, cuts idle leading/trailing spans (`cut` mode), measures again and
decides the tier with the category's rules (`cfg.quality`, ingest/stages/tiers.py). It is the only place
that measures an episode and decides its tier: a source puts only its own labels in `quality_metrics`
(`success` 1.0/0.0, `teleop` 1.0/0.0 where a source knows them, EPIC's verb/noun classes), which are
kept, and the placeholder `undecided_tier(has_action)`, which `stage` replaces. An episode without
actions gets the metrics below except the interaction ones (none for `human_actionless` clips, whose
source gives `duration_s` / `frames`) and the tier `actionless`.

Metrics, all floats, over the sides an episode fills (`filled_sides`: both hands for the human
categories, else the sides whose wrist is valid in some frame):

- `valid_fraction`: fraction of (frame, side) pairs whose wrist is valid (`state_mask` of the wrist
  position): hand visibility.
- `keypoint_valid_fraction`: over those valid (frame, side) pairs, the fraction of the 63 keypoint
  values that are valid: tracking confidence of the fingers (0.0 for grippers, which have none).
- `wrist_speed_p99`: 99th percentile (numpy linear interpolation) of `|action position| * fps` in m/s,
  pooled over the sides and over the frames t < T-1 whose action position is valid (the last frame's
  zero motion is not a measurement). 0.0 when there is no such frame.
- `duration_s`: `frames / fps` (each frame covers 1/fps seconds); `frames`: the episode length T.

Motion signals (`robot_signals`; computed for every category, hands included). On the canonical `state`
of the sides, pooled over the sides; a "valid pair" is two consecutive frames whose wrist positions are
both valid:

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

Interaction metrics (ingest/stages/interaction.py): `idle_start_s`, `idle_end_s`, `longest_pause_s`,
`active_steps`, and what `cut` mode removed, `cut_frames_start` / `cut_frames_end`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ingest.stages import interaction, tiers
from ingest.stages.base import Stage
from schemas.canonical import SIDES, Side, part_slice
from schemas.card import EmbodimentKind
from schemas.episode import FPS, CanonicalEpisode, EpisodeMeta, QualityTier
from schemas.source_config import SourceConfig
from schemas.tiers import QualityConfig


def quality_metrics(
    state_mask: np.ndarray,
    action: np.ndarray,
    action_mask: np.ndarray,
    sides: Sequence[Side],
    fps: float = FPS,
) -> dict[str, float]:
    """Visibility, tracking, speed and length metrics of the module docstring from `[T, 146]` arrays."""
    t = int(state_mask.shape[0])
    valid, kps, speeds = [], [], []
    for side in sides:
        pos, kp = part_slice(side, "position"), part_slice(side, "keypoints")
        wrist = state_mask[:, pos.start]
        valid.append(wrist)
        kps.append(state_mask[wrist, kp].reshape(-1))
        ok = action_mask[:-1, pos.start]
        speeds.append(np.linalg.norm(action[:-1, pos].astype(np.float64), axis=-1)[ok] * fps)
    valid_all = np.concatenate(valid) if valid else np.zeros(0, dtype=bool)
    kps_all = np.concatenate(kps) if kps else np.zeros(0, dtype=bool)
    speed_all = np.concatenate(speeds) if speeds else np.zeros(0)
    return {
        "valid_fraction": float(valid_all.mean()) if valid_all.size else 0.0,
        "keypoint_valid_fraction": float(kps_all.mean()) if kps_all.size else 0.0,
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


def filled_sides(state_mask: np.ndarray, kind: EmbodimentKind) -> list[Side]:
    """The sides an episode fills: both hands for the human categories (an unseen hand counts as not
    visible), else the sides whose wrist is valid in some frame."""
    if kind.startswith("human"):
        return list(SIDES)
    return [s for s in SIDES if state_mask[:, part_slice(s, "position").start].any()]


def undecided_tier(has_action: bool) -> QualityTier:
    """The tier a source gives an episode it builds: `actionless` without actions, else `low` until
    `stage` decides (a source neither measures nor decides; `stage` replaces this tier)."""
    return "low" if has_action else "actionless"


def motion_metrics(ep: CanonicalEpisode, sides: Sequence[Side]) -> dict[str, float]:
    """`quality_metrics` and `robot_signals` of one episode: the array metrics but the interaction ones."""
    return {
        **quality_metrics(ep.state_mask, ep.action, ep.action_mask, sides),
        **robot_signals(ep.state, ep.state_mask, sides),
    }


def measure(ep: CanonicalEpisode, sides: Sequence[Side], cfg: QualityConfig) -> dict[str, float]:
    """Every array metric of the module docstring for one episode (the source's labels not included)."""
    metrics = motion_metrics(ep, sides)
    active = interaction.active_steps(ep.state, ep.state_mask, cfg.interaction)
    metrics.update(interaction.idle_spans(active).metrics())
    return metrics


def stage(ep: CanonicalEpisode, cfg: SourceConfig, counts: Counter[str] | None = None) -> CanonicalEpisode:
    """The quality stage of `ingest run`: measure, cut idle spans (`cut` mode), measure, decide. An
    episode without actions is measured (not `human_actionless` clips) and tiered `actionless`. Counts
    the episodes per tier and, `cut_episodes` / `cut_frames`, what the interaction filter cut."""
    counts = Counter() if counts is None else counts
    rules = cfg.quality
    if not ep.meta.has_action:
        metrics = ep.meta.quality_metrics
        if cfg.embodiment_kind != "human_actionless":  # a clip has no arrays: its source gives its length
            metrics = {**metrics, **motion_metrics(ep, filled_sides(ep.state_mask, cfg.embodiment_kind))}
        meta = ep.meta.model_copy(update={"quality_metrics": metrics})
        return _tiered(ep, tiers.decide(metrics, False, rules).apply(meta), counts)
    sides = filled_sides(ep.state_mask, cfg.embodiment_kind)
    active = interaction.active_steps(ep.state, ep.state_mask, rules.interaction)
    rows = interaction.cut_rows(interaction.idle_spans(active), ep.length, rules.interaction)
    cut = interaction.trim(ep, rows)
    if cut.length < ep.length:
        counts["cut_episodes"] += 1
        counts["cut_frames"] += ep.length - cut.length
    metrics = {**ep.meta.quality_metrics, **measure(cut, sides, rules)}
    metrics.update(cut_frames_start=float(rows.start), cut_frames_end=float(ep.length - rows.stop))
    meta = ep.meta.model_copy(update={"quality_metrics": metrics})
    return _tiered(cut, tiers.decide(metrics, True, rules).apply(meta), counts)


def _tiered(ep: CanonicalEpisode, meta: EpisodeMeta, counts: Counter[str]) -> CanonicalEpisode:
    counts[meta.quality_tier] += 1
    return replace(ep, meta=meta)


STAGE = Stage("quality", stage)
