"""`train cache-condition`: a frozen Qwen3-VL's condition tokens for every cached frame of a mixture's
episodes (format and reader: `train/condition_cache.py`). A re-run encodes only the episodes whose file is
missing or was encoded for another caption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from schemas.latents import latents_path
from schemas.latents_reader import read_images
from train.condition_cache import CacheMeta, cached_caption, episode_path, model_identity, write_episode


class CacheOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mixture: Path
    root: Path
    condition: Path = Field(description="the local Qwen3-VL folder")
    out: Path
    batch_size: int = Field(16, gt=0, description="frames per VLM forward")


class CacheSummary(BaseModel):
    episodes: int
    encoded: int
    frames: int


def build_condition_cache(opts: CacheOptions) -> CacheSummary:
    from train.conditioning import Qwen3VLConditionEncoder
    from train.data import TrainingData
    from train.plan import DataConfig, n_cached

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encoder = Qwen3VLConditionEncoder(opts.condition, device=device)
    meta = CacheMeta(encoder=encoder.name, identity=model_identity(opts.condition), dim=encoder.dim)
    _check_same_encoder(opts.out, meta)
    cfg = DataConfig(root=opts.root, mixture=opts.mixture, holdout=0, images=True)
    data = TrainingData.open(cfg)  # holdout 0: every matched episode, the held-out ones included
    meta.save(opts.out)
    t, seen, encoded, frames = data.table, set(), 0, 0
    for row in range(len(t.episode_index)):
        info = data.datasets[int(t.dataset[row])]
        key = (info.name, int(t.episode_index[row]))
        path = episode_path(opts.out, *key)
        if key in seen or cached_caption(path) == t.caption[row]:
            seen.add(key)
            continue
        seen.add(key)
        index = np.arange(int(n_cached(int(t.length[row]), info.stride)), dtype=np.int64) * info.stride
        images = read_images(info.path / latents_path(key[1], info.camera, info.chunks_size), index)
        tokens = _encode(encoder, t.caption[row], images, opts.batch_size)
        write_episode(path, tokens, index, t.caption[row])
        encoded, frames = encoded + 1, frames + len(index)
    return CacheSummary(episodes=len(seen), encoded=encoded, frames=frames)


def _encode(encoder, caption: str, images: np.ndarray, batch: int) -> list[np.ndarray]:
    out = []
    with torch.no_grad():
        for a in range(0, len(images), batch):
            part = torch.from_numpy(images[a : a + batch])[:, None]  # one camera
            tokens, mask = encoder([caption] * len(part), part)
            out += [tokens[i, mask[i]].float().cpu().numpy() for i in range(len(part))]
    return out


def _check_same_encoder(folder: Path, meta: CacheMeta) -> None:
    if not (folder / "condition.json").is_file():
        return
    old = CacheMeta.load(folder)
    if old.identity != meta.identity:
        raise ValueError(f"{folder} caches {old.encoder}; use another folder for {meta.encoder}")
