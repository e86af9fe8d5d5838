""".work/ state of one dataset, shared by every job that writes it (`ingest run`, `label`, `caption`,
`hands`, `latents`): the per-dataset lock, the rejects kept across runs, and file-system-safe ids."""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas.atomic import write_text_atomic
from schemas.errors import Refused
from schemas.lerobot import REJECTS_PATH
from schemas.reject import RejectRecord

WORK_DIR = ".work"


def safe_id(source_episode_id: str) -> str:
    """A file-system-safe, collision-free directory name for a source episode id."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source_episode_id)[-80:]
    digest = hashlib.sha1(source_episode_id.encode()).hexdigest()[:10]
    return f"{stem}-{digest}"


def _rejects_dir(root: Path) -> Path:
    return root / WORK_DIR / "rejects"


def save_reject(root: Path, reject: RejectRecord, key: str) -> None:
    """Keep a reject across runs (`.work/rejects/`); `meta/rejects.jsonl` is rebuilt from them."""
    path = _rejects_dir(root) / f"{safe_id(key)}.json"
    write_text_atomic(path, reject.model_dump_json())


def clear_reject(root: Path, key: str) -> None:
    (_rejects_dir(root) / f"{safe_id(key)}.json").unlink(missing_ok=True)


def load_rejects(root: Path) -> list[RejectRecord]:
    """The dataset's rejects: the run's records in `.work/`, or `meta/rejects.jsonl` when the dataset
    was moved without its work folder (a label / caption pass must not drop them)."""
    if not _rejects_dir(root).exists():
        path = root / REJECTS_PATH
        lines = path.read_text().splitlines() if path.is_file() else []
        return [RejectRecord.model_validate_json(x) for x in lines if x.strip()]
    files = sorted(_rejects_dir(root).glob("*.json"))
    records = [RejectRecord.model_validate_json(f.read_text()) for f in files]
    return sorted(records, key=lambda r: r.source_path)


@contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """One run per dataset at a time: a second one fails at once instead of interleaving episodes."""
    (root / WORK_DIR).mkdir(parents=True, exist_ok=True)
    with open(root / WORK_DIR / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(
                f"another `ingest run`, `label` or `caption` is writing {root}", "wait for it to finish"
            ) from None
        yield
