"""The cached captioner: captions made elsewhere, one `CaptionRow` per line of a JSONL file.

Each caption goes through `clean_instruction` so that it has the dataset's style. An id of the file that
the dataset does not have is an error (`check_known`): it usually means the wrong file or dataset. An
episode the file does not cover keeps its current caption and is reported."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ingest.captions.base import CaptionRequest, kept
from ingest.convert.text import clean_instruction
from schemas.captions import CaptionResult, CaptionRow


def load_captions(path: Path) -> dict[str, str]:
    """source_episode_id -> cleaned caption. Raises ValueError naming the line of a bad row, a caption
    that cleans to nothing, or an id given twice with different captions."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = CaptionRow.model_validate_json(line)
        except ValidationError as e:
            raise ValueError(f"{path}:{n}: not a caption row: {e.errors()[0]['msg']}") from None
        text = clean_instruction(row.caption)
        if not text:
            raise ValueError(f"{path}:{n}: caption {row.caption!r} has no instruction left after cleanup")
        if out.setdefault(row.source_episode_id, text) != text:
            raise ValueError(f"{path}:{n}: {row.source_episode_id!r} given twice with different captions")
    return out


class CachedCaptioner:
    name = "cached"
    needs_frames = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.captions = load_captions(path)

    def check_known(self, episode_ids: set[str]) -> None:
        """Raise ValueError when the file names episodes the dataset does not have."""
        unknown = sorted(set(self.captions) - episode_ids)
        if unknown:
            shown = ", ".join(repr(x) for x in unknown[:5])
            raise ValueError(
                f"{self.path}: {len(unknown)} source_episode_id(s) not in the dataset, e.g. {shown}"
            )

    def caption(self, batch: list[CaptionRequest]) -> list[CaptionResult]:
        return [
            CaptionResult(source_episode_id=r.source_episode_id, caption=self.captions[r.source_episode_id],
                          caption_source=self.name)
            if r.source_episode_id in self.captions
            else kept(r)
            for r in batch
        ]  # fmt: skip
