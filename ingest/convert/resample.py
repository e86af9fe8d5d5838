"""Resampling to 10 Hz (CONTRACT.md section 2).

Output sample k is at `k / fps` seconds after the first source sample; there are K samples, K the largest
count with `(K - 1) / fps <= last source time` (no extrapolation). Each output time is bracketed by two
source samples `lo <= t <= hi` with weight `w` (0 -> lo). Positions, gripper and keypoints interpolate
linearly, rotations by SLERP, confidences take the minimum of the samples that contribute (both when
`0 < w < 1`, the coinciding one when the output time falls on a source sample). `nearest` is the source
sample nearest each output time (ties go to the earlier one): the video frame to keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.convert.geometry import slerp_rotation
from schemas.episode import FPS

# Output times within this fraction of a source interval of a source sample count as that sample.
SNAP = 1e-6


@dataclass(frozen=True)
class ResamplePlan:
    """Where each output sample falls among the source samples."""

    times: np.ndarray  # float64 [K], seconds from the first source sample (k / fps)
    lo: np.ndarray  # int64 [K]
    hi: np.ndarray  # int64 [K]
    weight: np.ndarray  # float64 [K] in [0, 1]; exactly 0 / 1 when the time is a source sample
    nearest: np.ndarray  # int64 [K]

    @property
    def length(self) -> int:
        return int(self.times.shape[0])


def output_count(duration_s: float, fps: float = FPS) -> int:
    """K = largest count with (K - 1) / fps <= duration_s (0 for a negative duration)."""
    if duration_s < 0:
        return 0
    return int(np.floor(duration_s * fps + SNAP)) + 1


def make_plan(src_times: np.ndarray, fps: float = FPS) -> ResamplePlan:
    """Plan for strictly increasing source timestamps (seconds; any spacing, any rate)."""
    src = np.asarray(src_times, dtype=np.float64)
    if src.ndim != 1 or src.size == 0:
        raise ValueError(f"source timestamps must be a non-empty 1-D array, got shape {src.shape}")
    if src.size > 1 and not np.all(np.diff(src) > 0):
        raise ValueError("source timestamps must be strictly increasing")
    src = src - src[0]
    k = output_count(float(src[-1]), fps)
    times = np.arange(k, dtype=np.float64) / fps
    if src.size == 1:
        zeros = np.zeros(k, dtype=np.int64)
        return ResamplePlan(times, zeros, zeros, np.zeros(k), zeros)
    lo = np.clip(np.searchsorted(src, times, side="right") - 1, 0, src.size - 2)
    hi = lo + 1
    w = np.clip((times - src[lo]) / (src[hi] - src[lo]), 0.0, 1.0)
    w = np.where(w < SNAP, 0.0, np.where(w > 1 - SNAP, 1.0, w))
    nearest = np.where(w > 0.5 + SNAP, hi, lo).astype(np.int64)  # a tie (up to rounding) takes the earlier
    return ResamplePlan(times, lo.astype(np.int64), hi.astype(np.int64), w, nearest)


def _weight(plan: ResamplePlan, ndim: int) -> np.ndarray:
    return plan.weight.reshape((-1,) + (1,) * (ndim - 1))


def resample_linear(plan: ResamplePlan, values: np.ndarray) -> np.ndarray:
    """Linear interpolation along axis 0 of `values [N, ...]`; exact source values at source times."""
    v = np.asarray(values, dtype=np.float64)
    a, b, w = v[plan.lo], v[plan.hi], _weight(plan, v.ndim)
    mixed = (1 - w) * a + w * b
    return np.where(w == 0, a, np.where(w == 1, b, mixed))


def resample_rotations(plan: ResamplePlan, R: np.ndarray) -> np.ndarray:
    """SLERP of rotation matrices `[N, ..., 3, 3]` along axis 0."""
    R = np.asarray(R, dtype=np.float64)
    w = plan.weight.reshape((-1,) + (1,) * (R.ndim - 3))
    return slerp_rotation(R[plan.lo], R[plan.hi], w)


def resample_poses(plan: ResamplePlan, T: np.ndarray) -> np.ndarray:
    """4x4 poses `[N, ..., 4, 4]`: translation linearly, rotation by SLERP."""
    T = np.asarray(T, dtype=np.float64)
    out = np.zeros((plan.length,) + T.shape[1:], dtype=np.float64)
    out[..., :3, :3] = resample_rotations(plan, T[..., :3, :3])
    out[..., :3, 3] = resample_linear(plan, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def resample_min(plan: ResamplePlan, values: np.ndarray) -> np.ndarray:
    """Conservative resampling of confidence-like `values [N, ...]`: minimum of the contributing samples."""
    v = np.asarray(values, dtype=np.float64)
    a, b, w = v[plan.lo], v[plan.hi], _weight(plan, v.ndim)
    return np.where(w == 0, a, np.where(w == 1, b, np.minimum(a, b)))


def chunk_ranges(n: int, max_len: int) -> list[tuple[int, int]]:
    """Consecutive `[start, stop)` ranges of at most `max_len` covering `range(n)` (cutting long episodes)."""
    if max_len <= 0:
        raise ValueError("max_len must be positive")
    return [(s, min(s + max_len, n)) for s in range(0, n, max_len)]
