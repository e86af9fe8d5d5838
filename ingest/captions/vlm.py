"""The VLM captioner: Qwen3-VL (transformers) from a local folder, never the Hub.

Per episode it is given a few frames (evenly spread over the episode, time order) and the source's text,
and asked for one imperative instruction. A batch of episodes is one `generate` call: greedy, a small
`max_new_tokens`, left padding. The answer's first line goes through `clean_instruction`; an empty answer
falls back to the template caption (recorded as `fallback`).

Preprocessing is the model folder's own tokenizer (with its chat template) and image processor; the image
placeholders are expanded here (one `<|image_pad|>` per merged patch), so no video processor and no
torchvision are needed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ingest.captions.base import CaptionRequest
from ingest.captions.template import template_caption
from ingest.convert.text import clean_instruction
from ingest.errors import EpisodeError
from schemas.captions import CaptionResult, VlmConfig

IMAGE_PAD = "<|image_pad|>"
PROMPT = (
    "These are {n} frames of one episode of a video, in time order. {described} "
    "Write the task shown as one short imperative instruction for a robot, starting with a verb, "
    "lower case, no full stop. Answer with the instruction only."
)
PROMPT_VERSION = 1  # bump when PROMPT changes: it keys the resumable results of `ingest caption`
NO_MODEL_MESSAGE = (
    "the vlm captioner needs a local Qwen3-VL folder: pass --model-dir (or set captions.vlm.model_dir in "
    "pipelines.yaml) to a folder with config.json, the weights, the tokenizer and preprocessor_config.json"
)
_HF_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/[0-9a-f]{7,64}/?$")


def model_name(model_dir: Path) -> str:
    """`org/name` for a Hugging Face cache snapshot, else the folder's name (`caption_source` vlm:<it>)."""
    m = _HF_SNAPSHOT.search(model_dir.resolve().as_posix())
    return f"{m['org']}/{m['name']}" if m else model_dir.resolve().name


def prompt_text(task_original: str, n_frames: int) -> str:
    text = task_original.strip()
    described = f'The source describes the task as: "{text}".' if text else "The source gives no description."
    return PROMPT.format(n=n_frames, described=described)


def frame_positions(length: int, n: int) -> np.ndarray:
    """`n` episode frame indices evenly spread from the first to the last frame (fewer when shorter)."""
    if length <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, length - 1, min(n, length)).round().astype(np.int64))


def decode_frames(video: Path, frames: np.ndarray, long_side: int) -> np.ndarray:
    """uint8 [N, H, W, 3] of the given frames, long side scaled to `long_side` in the codec scaler."""
    import av

    from ingest.video import Decoder

    decoder, out = Decoder(video), []
    try:
        for _, frame in decoder.needed(frames):
            scale = long_side / max(frame.width, frame.height)
            w, h = max(2, round(frame.width * scale)), max(2, round(frame.height * scale))
            out.append(frame.reformat(w, h, format="rgb24", interpolation="AREA").to_ndarray())
    except (av.FFmpegError, OSError) as e:
        raise EpisodeError(video, "video", f"cannot decode: {e}", stage="video") from e
    if len(out) != len(np.unique(frames)):
        what = f"video has {decoder.n_decoded} frames{decoder.error}, needed frame {int(frames[-1])}"
        raise EpisodeError(video, "video", what, stage="video")
    return np.stack(out)


def first_line(answer: str) -> str:
    """The answer's first non-empty line without quotes or an `Instruction:` label."""
    line = next((x for x in answer.splitlines() if x.strip()), "")
    line = re.sub(r"^\s*(instruction|answer)\s*:\s*", "", line, flags=re.IGNORECASE)
    return line.strip().strip("\"'")


class VlmCaptioner:
    """Qwen3-VL loaded once (an actor of the caption job holds one)."""

    needs_frames = True

    def __init__(self, cfg: VlmConfig, device: str = "cpu") -> None:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen3VLForConditionalGeneration

        if cfg.model_dir is None:
            raise ValueError(NO_MODEL_MESSAGE)
        if not (cfg.model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"{cfg.model_dir}: not a model folder (no config.json); {NO_MODEL_MESSAGE}"
            )
        path = str(cfg.model_dir)
        self.cfg, self.device = cfg, torch.device(device)
        self.name = f"vlm:{model_name(cfg.model_dir)}"
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, padding_side="left")
        self.image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        model = Qwen3VLForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=dtype)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.image_token_id = self._image_token_id()
        self.merge = int(self.image_processor.merge_size)

    def _image_token_id(self) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        if token_id != self.model.config.image_token_id:
            raise ValueError(
                f"{self.cfg.model_dir}: tokenizer's {IMAGE_PAD} is {token_id}, "
                f"the model's image_token_id is {self.model.config.image_token_id}"
            )
        return int(token_id)

    def _chat(self, req: CaptionRequest, n_frames: int) -> str:
        content: list[dict[str, str]] = [{"type": "image"} for _ in range(n_frames)]
        content.append({"type": "text", "text": prompt_text(req.task_original, n_frames)})
        messages = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _expand(self, text: str, tokens_per_image: list[int]) -> str:
        """Each image placeholder repeated once per merged patch of its image."""
        parts = text.split(IMAGE_PAD)
        if len(parts) - 1 != len(tokens_per_image):
            raise ValueError(
                f"chat template gave {len(parts) - 1} image placeholders for {len(tokens_per_image)}"
            )
        pads = [IMAGE_PAD * n for n in tokens_per_image] + [""]
        return "".join(p + pad for p, pad in zip(parts, pads, strict=True))

    def inputs(self, batch: list[CaptionRequest]) -> dict[str, Any]:
        """Model inputs for a batch: input_ids, attention_mask, mm_token_type_ids, pixel_values,
        image_grid_thw (images of every request in order)."""
        frames = [list(r.frames) if r.frames is not None else [] for r in batch]
        images = [f for fs in frames for f in fs]
        vision = self.image_processor(images=images, return_tensors="pt") if images else {}
        grid = vision["image_grid_thw"] if images else None
        counts = (grid.prod(-1) // self.merge**2).tolist() if grid is not None else []
        texts, start = [], 0
        for req, fs in zip(batch, frames, strict=True):
            texts.append(self._expand(self._chat(req, len(fs)), counts[start : start + len(fs)]))
            start += len(fs)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc["mm_token_type_ids"] = (enc["input_ids"] == self.image_token_id).long()
        return {**enc, **vision}

    def generate(self, batch: list[CaptionRequest]) -> list[str]:
        """The raw answers, one per request."""
        import torch

        inputs = {k: v.to(self.device) for k, v in self.inputs(batch).items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def caption(self, batch: list[CaptionRequest]) -> list[CaptionResult]:
        out = []
        for req, answer in zip(batch, self.generate(batch), strict=True):
            text = clean_instruction(first_line(answer))
            source = self.name
            if not text:
                text, source = template_caption(req.task_original, req.caption) or req.caption, "template"
            out.append(CaptionResult(source_episode_id=req.source_episode_id, caption=text,
                                     caption_source=source, fallback=source == "template"))  # fmt: skip
        return out
