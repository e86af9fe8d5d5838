"""The template captioner: `clean_instruction` of the source's text (always available, the default)."""

from __future__ import annotations

from ingest.captions.base import CaptionRequest, kept
from ingest.convert.text import prefer_english
from schemas.captions import CaptionResult
from schemas.episode import EpisodeMeta


def template_caption(task_original: str, caption: str) -> str:
    """The cleaned source text; else the cleaned current caption (a source's own template, e.g. an
    EgoDex task folder or a HOT3D object list); "" when neither leaves anything. English first: where the
    source text is not English-like and the caption is (AgiBot A2D: task_name 超市打包, caption its
    english_task_name), the caption wins and `task_original` keeps the source's own text."""
    return prefer_english([task_original, caption])


def template_meta(meta: EpisodeMeta) -> EpisodeMeta:
    """The episode's meta with the template caption (unchanged when the template gives nothing)."""
    text = template_caption(meta.task_original, meta.caption)
    if not text:
        return meta
    return meta.model_copy(update={"caption": text, "caption_source": "template"})


class TemplateCaptioner:
    name = "template"
    needs_frames = False

    def caption(self, batch: list[CaptionRequest]) -> list[CaptionResult]:
        out = []
        for req in batch:
            text = template_caption(req.task_original, req.caption)
            out.append(
                CaptionResult(source_episode_id=req.source_episode_id, caption=text, caption_source=self.name)
                if text
                else kept(req)
            )
        return out
