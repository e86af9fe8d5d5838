"""The one way to replace a file atomically: write a temporary file beside it, then `os.replace` it.

A reader sees the old file or the new one, never half of one; a write that fails leaves the old file and
no temporary behind. The lowest layer, so `ingest`, `catalog` and `train` share it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield the temporary path to write `path`'s new content to (`.<name>.tmp` beside it); when the block
    ends without an error it replaces `path` in one rename, otherwise it is removed and the error goes on.
    The parent folder is created. The name is fixed, not per process: a run killed (SIGKILL: no cleanup)
    while writing leaves `.<name>.tmp`, and the re-run that writes `path` again reuses and removes it (a
    per-process name would stay in the dataset forever). One writer per file: the dataset lock sees to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """`path.write_text(text)`, atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
