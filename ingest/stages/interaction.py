"""The interaction filter (docs/TIERS.md): spans without hand-object interaction, measured and cut.

A 10 Hz step t -> t+1 is *active* when some side is valid at both frames (wrist position in
`state_mask`) and its wrist moves at least `idle_speed` m/s or its gripper (valid at both frames)
changes at least `idle_gripper_rate` per second. Hands out of view, still hands and a robot standing
still are all idle. From the steps:

- `idle_start_s` / `idle_end_s`: the idle steps before the first / after the last active step;
- `longest_pause_s`: the longest run of idle steps between two active ones;
- `active_steps`: how many steps are active (0: no interaction at all; then `idle_start_s` is the
  whole episode and nothing is cut).

`cut` mode trims leading/trailing spans of at least `min_span_s` from the episode before it is written
(`trim`: arrays, video frame indices, extra and annotation columns alike; the new last frame gets the
contract's zero-motion action) and records `cut_frames_start` / `cut_frames_end`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import BaseModel, ConfigDict

from ingest.convert.geometry import IDENTITY_6D
from schemas.canonical import SIDES, part_slice
from schemas.episode import FPS, CanonicalEpisode
from schemas.tiers import InteractionConfig


class IdleSpans(BaseModel):
    """Idle spans of one episode, in 10 Hz steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: int
    end: int
    longest_pause: int
    active: int

    def metrics(self, fps: float = FPS) -> dict[str, float]:
        return {
            "idle_start_s": self.start / fps,
            "idle_end_s": self.end / fps,
            "longest_pause_s": self.longest_pause / fps,
            "active_steps": float(self.active),
        }


def active_steps(
    state: np.ndarray, state_mask: np.ndarray, cfg: InteractionConfig, fps: float = FPS
) -> np.ndarray:
    """bool `[T-1]`: which steps t -> t+1 show interaction (module docstring)."""
    active = np.zeros(max(state.shape[0] - 1, 0), dtype=bool)
    for side in SIDES:
        pos, grip = part_slice(side, "position"), part_slice(side, "gripper")
        ok = state_mask[:, pos.start]
        both = ok[:-1] & ok[1:]
        speed = np.linalg.norm(np.diff(state[:, pos].astype(np.float64), axis=0), axis=-1) * fps
        g_ok = state_mask[:-1, grip.start] & state_mask[1:, grip.start]
        rate = np.abs(np.diff(state[:, grip.start].astype(np.float64))) * fps
        active |= both & ((speed >= cfg.idle_speed) | (g_ok & (rate >= cfg.idle_gripper_rate)))
    return active


def _longest_run(idle: np.ndarray) -> int:
    """Longest run of True in a 1-D bool array."""
    if not idle.any():
        return 0
    edges = np.diff(np.concatenate([[0], idle.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def idle_spans(active: np.ndarray) -> IdleSpans:
    """Leading, trailing and longest interior idle runs of the step activity `active`."""
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return IdleSpans(start=len(active), end=0, longest_pause=0, active=0)
    first, last = int(idx[0]), int(idx[-1])
    inner = _longest_run(~active[first : last + 1])
    return IdleSpans(start=first, end=len(active) - 1 - last, longest_pause=inner, active=int(idx.size))


def cut_rows(spans: IdleSpans, length: int, cfg: InteractionConfig, fps: float = FPS) -> slice:
    """The frames `cut` mode keeps: without leading/trailing idle spans of at least `min_span_s`."""
    if cfg.mode != "cut" or spans.active == 0:
        return slice(0, length)
    start = spans.start if spans.start / fps >= cfg.min_span_s else 0
    end = spans.end if spans.end / fps >= cfg.min_span_s else 0
    return slice(start, length - end)


def _zero_last_action(
    action: np.ndarray, action_mask: np.ndarray, state: np.ndarray, smask: np.ndarray
) -> None:
    """The contract's last-frame action, in place: zero motion, identity rotation, the frame's own
    gripper and keypoints. A side the source does not fill (all-zero rotations) stays zeros."""
    for side in SIDES:
        pos, rot = part_slice(side, "position"), part_slice(side, "rotation")
        rest = slice(part_slice(side, "gripper").start, part_slice(side, "keypoints").stop)
        if not action[:, rot].any():
            continue
        action[-1, pos] = 0.0
        action[-1, rot] = IDENTITY_6D
        action[-1, rest] = state[-1, rest]
        action_mask[-1, pos.start : rest.stop] = smask[-1, pos.start : rest.stop]


def trim(ep: CanonicalEpisode, rows: slice) -> CanonicalEpisode:
    """The episode restricted to frames `rows` (every per-frame field alike)."""
    if rows == slice(0, ep.length):
        return ep
    part = ep.frames(rows)
    if rows.stop < ep.length:
        action, amask = part.action.copy(), part.action_mask.copy()
        _zero_last_action(action, amask, part.state, part.state_mask)
        part = replace(part, action=action, action_mask=amask)
    return part
