"""Cached condition tokens of a frozen Qwen3-VL, per (dataset, episode, cached frame).

`train cache-condition` (`build_condition_cache`) runs the VLM once over frame t and the instruction of every
cached latent frame of a mixture's episodes; `train launch --condition-cache DIR` then reads the tokens with
each sample instead of running the VLM (no VLM in GPU memory, no VLM forward in the step). Layout:

    DIR/condition.json                                   CacheMeta: the encoder, its identity, the width
                                                         (frames of each dataset's first camera, as trained)
    DIR/<dataset>/episode_<index:06d>.safetensors        tokens float16 [T_s, L, dim] (right-padded),
                                                         length int64 [T_s], frame_index int64 [T_s];
                                                         header: the episode's caption

A file is valid for one caption: an episode captioned again is encoded again. Reading uses the latents
reader (`schemas.latents_reader.read_rows`, memory-mapped). Only a frozen encoder's tokens are cached.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from safetensors import safe_open

from schemas.atomic import atomic_path
from schemas.latents_reader import read_rows

CACHE_META = "condition.json"
TOKENS, LENGTH, FRAME_INDEX = "tokens", "length", "frame_index"


class CacheMeta(BaseModel):
    """`DIR/condition.json`."""

    model_config = ConfigDict(extra="forbid")
    encoder: str = Field(description="the encoder's name (e.g. qwen3vl:<folder>)")
    identity: str = Field(description="sha256 of the model folder's config.json and weight file sizes")
    dim: int = Field(gt=0)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CACHE_META).write_text(self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> CacheMeta:
        path = folder / CACHE_META
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {CACHE_META} (build it with `train cache-condition`)")
        return cls.model_validate_json(path.read_text())


def model_identity(folder: Path) -> str:
    """sha256 over the folder's config.json and the names and sizes of its weight files."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for f in sorted(folder.glob("*.safetensors")):
        digest.update(f"{f.name}:{f.stat().st_size}".encode())
    return digest.hexdigest()


def episode_path(folder: Path, dataset: str, episode_index: int) -> Path:
    return folder / dataset / f"episode_{episode_index:06d}.safetensors"


def cached_caption(path: Path) -> str | None:
    """The caption a file was encoded with (None when there is no readable file)."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            return (f.metadata() or {}).get("caption")
    except Exception:  # noqa: BLE001 - missing or torn: encode it again
        return None


def write_episode(path: Path, tokens: list[np.ndarray], frame_index: np.ndarray, caption: str) -> None:
    """Per-frame token matrices [L_i, dim] -> one right-padded float16 file, written atomically."""
    from safetensors.numpy import save_file

    length = np.array([len(t) for t in tokens], dtype=np.int64)
    out = np.zeros((len(tokens), int(length.max()), tokens[0].shape[1]), dtype=np.float16)
    for i, t in enumerate(tokens):
        out[i, : len(t)] = t
    index = np.ascontiguousarray(frame_index, dtype=np.int64)
    with atomic_path(path) as tmp:
        save_file({TOKENS: out, LENGTH: length, FRAME_INDEX: index}, str(tmp), metadata={"caption": caption})


def read_condition(folder: Path, dataset: str, episode_index: int, frame_index: int) -> np.ndarray:
    """float16 [L, dim]: the cached condition tokens of one frame (KeyError / FileNotFoundError naming it)."""
    path = episode_path(folder, dataset, episode_index)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no cached condition tokens (run `train cache-condition`)")
    n = int(read_rows(path, [frame_index], LENGTH)[0])
    return read_rows(path, [frame_index], TOKENS)[0, :n]
