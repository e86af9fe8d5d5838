"""Captioners: one unified instruction per episode (`caption`, `caption_source`; the source's own text
stays in `task_original`). See docs/CAPTIONS.md.

- `template` (`template.py`): rule-based cleanup of the source's text (`ingest.convert.text`); run on
  every episode by `ingest run` before it is staged (the `caption` stage, `ingest/stages/caption.py`).
- `cached` (`cached.py`): captions made elsewhere, from a JSONL file of `schemas.captions.CaptionRow`.
- `vlm` (`vlm.py`): Qwen3-VL from a local folder, given a few frames and the source text.
`job.py` re-captions a published dataset with any of them (`ingest caption`). Heavy imports (torch,
transformers, Ray) stay inside `vlm.py` and `job.py`.
"""

from ingest.captions.base import Captioner, CaptionRequest
from ingest.captions.template import TemplateCaptioner, template_caption, template_meta

__all__ = ["CaptionRequest", "Captioner", "TemplateCaptioner", "template_caption", "template_meta"]
