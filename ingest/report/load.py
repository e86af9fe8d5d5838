"""A published dataset, read through the contract's models: info, card, episodes, rejects, cameras, and one
episode's per-frame columns. A file that is missing or fails its model is refused with one line naming it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from schemas.camera import CAMERAS_PATH, CameraRecord
from schemas.card import DatasetCard
from schemas.errors import Refused
from schemas.lerobot import (
    CARD_PATH,
    EPISODES_PATH,
    INFO_PATH,
    REJECTS_PATH,
    EpisodeRecord,
    InfoJson,
    data_path,
    video_path,
)
from schemas.reject import RejectRecord

M = TypeVar("M", bound=BaseModel)
VECTOR_COLUMNS = ("observation.state", "action", "observation.state_mask", "action_mask")


def _where(e: ValidationError) -> str:
    err = e.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc']) or '(file)'}: {err['msg']}"


def read_model(root: Path, rel: str, model: type[M]) -> M:
    path = root / rel
    if not path.is_file():
        raise Refused(f"{path} is missing", "give a dataset folder written by `ingest run` (ROOT/NAME)")
    try:
        return model.model_validate_json(path.read_text())
    except ValidationError as e:
        raise Refused(f"{path}: {_where(e)}", "run `ingest validate` on the dataset") from e


def read_lines(root: Path, rel: str, model: type[M], required: bool = True) -> list[M]:
    path = root / rel
    if not path.is_file():
        if required:
            raise Refused(f"{path} is missing", "give a dataset folder written by `ingest run` (ROOT/NAME)")
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            out.append(model.model_validate_json(line)) if line.strip() else None
        except ValidationError as e:
            raise Refused(f"{path} line {i}: {_where(e)}", "run `ingest validate` on the dataset") from e
    return out


@dataclass
class Dataset:
    """What a report shows of one dataset folder (ROOT/NAME)."""

    root: Path
    info: InfoJson
    card: DatasetCard
    episodes: list[EpisodeRecord]
    rejects: list[RejectRecord]
    cameras: dict[int, list[CameraRecord]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.root.resolve().name

    def video(self, episode: int, key: str) -> Path:
        return self.root / video_path(episode, key)


def load(root: Path) -> Dataset:
    cameras: dict[int, list[CameraRecord]] = {}
    for cam in read_lines(root, CAMERAS_PATH, CameraRecord, required=False):
        cameras.setdefault(cam.episode_index, []).append(cam)
    return Dataset(
        root=root,
        info=read_model(root, INFO_PATH, InfoJson),
        card=read_model(root, CARD_PATH, DatasetCard),
        episodes=read_lines(root, EPISODES_PATH, EpisodeRecord),
        rejects=read_lines(root, REJECTS_PATH, RejectRecord, required=False),
        cameras=cameras,
    )


def episode_columns(root: Path, episode: int) -> dict[str, np.ndarray]:
    """The episode's numeric per-frame columns as arrays `[T]` or `[T, D]` (vectors, masks, camera poses,
    extra columns, timestamps); text columns are left out."""
    path = root / data_path(episode)
    if not path.is_file():
        raise Refused(f"{path} is missing", "run `ingest validate` on the dataset")
    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            arr = np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), -1)
        else:
            arr = np.asarray(col.to_numpy(zero_copy_only=False))
        if arr.dtype.kind in "biuf":
            out[name] = arr
    return out
