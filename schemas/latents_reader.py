"""Trainer-side reader of the cached DINOv3 latents and frames (contract, section 7).

numpy + safetensors only (no torch, nothing of `ingest/`). `safe_open` memory-maps the file; each slice
copies only the rows it covers, so reading a few frames of a long episode touches a few hundred KB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors import safe_open

from schemas.latents import FRAME_INDEX_KEY, IMAGES_KEY, LATENTS_KEY


def latent_frame_indices(path: Path) -> np.ndarray:
    """The `frame_index` (int64[T_s]) of one episode's latents file: which frames are cached."""
    with safe_open(str(path), framework="numpy") as f:
        return np.asarray(f.get_tensor(FRAME_INDEX_KEY), dtype=np.int64)


def _rows_of(cached: np.ndarray, wanted: np.ndarray, path: Path) -> np.ndarray:
    rows = np.searchsorted(cached, wanted).clip(max=max(len(cached) - 1, 0))
    found = (cached[rows] == wanted) if len(cached) else np.zeros(len(wanted), dtype=bool)
    if not found.all():
        missing = sorted(set(wanted[~found].tolist()))
        raise KeyError(f"{path}: frame indices {missing} are not cached (stride or episode length)")
    return rows


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Sorted distinct rows -> [start, stop) runs of consecutive rows."""
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(rows, breaks)]


def has_images(path: Path) -> bool:
    """Whether one episode's latents file also holds its frames (`images`, uint8[T_s, 224, 224, 3])."""
    with safe_open(str(path), framework="numpy") as f:
        return IMAGES_KEY in f.keys()  # noqa: SIM118 - safe_open has no __contains__


def read_latents(path: Path, frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Latents of the given frame indices of one episode, in the order asked: float16[N, tokens, dim].

    Memory-mapped: only the rows asked for are copied out of the file. Raises KeyError naming the frame
    indices that are not cached (not a multiple of the stride, or past the end of the episode)."""
    return read_rows(path, frame_indices, LATENTS_KEY)


def read_images(path: Path, frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """The cached frames themselves, in the order asked: uint8[N, 224, 224, 3] (RGB, resized and cropped
    or letterboxed like the latents' input). KeyError when the file holds no frames or not these."""
    return read_rows(path, frame_indices, IMAGES_KEY)


def read_rows(path: Path, frame_indices: Sequence[int] | np.ndarray, key: str) -> np.ndarray:
    """Rows of tensor `key` (one row per cached frame) for the given frame indices, in the order asked."""
    wanted = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    with safe_open(str(path), framework="numpy") as f:
        if key not in f.keys():  # noqa: SIM118 - safe_open has no __contains__
            raise KeyError(f"{path}: no {key!r} tensor")
        cached = np.asarray(f.get_tensor(FRAME_INDEX_KEY), dtype=np.int64)
        rows = _rows_of(cached, wanted, path)
        tensor = f.get_slice(key)
        shape = tensor.get_shape()
        if len(rows) == 0:
            return np.empty((0, *shape[1:]), dtype=np.uint8 if key == IMAGES_KEY else np.float16)
        distinct = np.unique(rows)
        parts = [np.asarray(tensor[a:b]) for a, b in _runs(distinct)]
    block = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return np.ascontiguousarray(block[np.searchsorted(distinct, rows)])
