"""The one error type a converter raises for bad input: it names the file and the field."""

from __future__ import annotations

from pathlib import Path

from schemas.reject import Stage


class EpisodeError(Exception):
    """Bad or unreadable source episode. The job turns it into a `meta/rejects.jsonl` line."""

    def __init__(self, path: Path | str, field: str, message: str, stage: Stage = "convert") -> None:
        self.path, self.field, self.stage = str(path), field, stage
        super().__init__(f"{path}: {field}: {message}")
