"""Condition encoders: the instruction (and frame t) -> condition tokens for the MM-DiT's cross-attention.

Every encoder maps `captions: list[str]` and, when it `needs_images`, `images: uint8 [B, V, H, W, 3]` (frame t
of V cameras, `Batch.images`) to `Conditioning(tokens float [B, Lc, dim], mask bool [B, Lc])` (right
padding, mask True on real tokens, at least one real token per sample). `name` is what `metrics.jsonl`
and `run.json` record.
- `Qwen3VLConditionEncoder` (the paper's): Qwen3-VL from a local folder (never the Hub) on the image(s)
  and the instruction in its chat template; the last hidden state (after the final norm) as tokens, as in
  LDA. Frozen by default (eval, no_grad); `frozen=False` (`train launch --unfreeze-vlm`) fine-tunes it.
- `SmallTextEncoder` ("random-text"): a random, frozen byte-level text encoder, self-contained and
  deterministic from a seed. Carries no meaning: for CPU tests and demos only.
- `PrecomputedCondition` ("cache:<encoder>"): the tokens come with the batch (`Batch.cond_tokens`, read from
  a `train cache-condition` folder); no encoder runs. `condition_of(encoder, batch)` picks either.
- `CachedConditionEncoder`: memoises a frozen text-only encoder per caption (one caption per episode, so
  a run needs few forwards) and accepts precomputed tokens (`save` / `load`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn


class Conditioning(NamedTuple):
    tokens: Tensor  # float [B, Lc, dim]
    mask: Tensor  # bool [B, Lc]: True on real tokens


def pad_tokens(items: list[Tensor]) -> Conditioning:
    """Per-caption token matrices [Li, dim] -> right-padded `Conditioning`."""
    length = max(x.shape[0] for x in items)
    tokens = items[0].new_zeros(len(items), length, items[0].shape[1])
    mask = torch.zeros(len(items), length, dtype=torch.bool, device=items[0].device)
    for i, x in enumerate(items):
        tokens[i, : x.shape[0]] = x
        mask[i, : x.shape[0]] = True
    return Conditioning(tokens, mask)


class ConditionEncoder(nn.Module, ABC):
    """(captions, images) -> `Conditioning`; `dim` is the token width (the model config's `cond_dim`)."""

    dim: int
    frozen: bool = True
    needs_images: bool = False
    name: str = "condition"

    @abstractmethod
    def encode(self, captions: list[str], images: Tensor | None = None) -> Conditioning: ...

    def forward(self, captions: list[str], images: Tensor | None = None) -> Conditioning:
        return self.encode(captions, images)

    def train(self, mode: bool = True) -> ConditionEncoder:
        """A frozen encoder stays in eval mode even when a parent module calls `.train()`."""
        return super().train(mode and not self.frozen)


class SmallTextEncoder(ConditionEncoder):
    """UTF-8 bytes (after a BOS token) -> embedding + position -> `layers` pre-norm transformer layers.

    Random weights, never trained: the test / demo condition ("random-text"), not the paper's."""

    BOS = 256
    name = "random-text"

    def __init__(
        self,
        dim: int = 32,
        layers: int = 2,
        heads: int = 4,
        max_bytes: int = 128,
        seed: int = 0,
        frozen: bool = True,
    ) -> None:
        super().__init__()
        self.dim, self.max_bytes, self.frozen = dim, max_bytes, frozen
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Embedding(257, dim)
            self.pos = nn.Parameter(torch.randn(max_bytes, dim) * 0.02)
            layer = nn.TransformerEncoderLayer(
                dim, heads, dim_feedforward=4 * dim, dropout=0.0, batch_first=True, norm_first=True
            )
            self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
        self.requires_grad_(not frozen)
        self.train(False)

    def tokenize(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """-> ids int64 [B, L], mask bool [B, L] (BOS + up to max_bytes - 1 bytes)."""
        seqs = [[self.BOS, *c.encode("utf-8")[: self.max_bytes - 1]] for c in captions]
        length = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), length, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        mask = torch.arange(length)[None, :] < torch.tensor([len(s) for s in seqs])[:, None]
        return ids, mask

    def encode(self, captions: list[str], images: Tensor | None = None) -> Conditioning:
        device = self.pos.device
        ids, mask = (x.to(device) for x in self.tokenize(captions))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = self.embed(ids) + self.pos[: ids.shape[1]]
            x = self.norm(self.layers(x, src_key_padding_mask=~mask))
        return Conditioning(x * mask[..., None], mask)


IMAGE_PAD = "<|image_pad|>"
VISION_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"
NOT_A_QWEN_FOLDER = (
    "must be a local Qwen3-VL folder (config.json, weights, tokenizer, preprocessor_config.json); "
    "models load from local folders only"
)


def qwen3vl_folder(path: str | Path) -> Path:
    """`path` if it is a local Qwen3-VL folder, else ValueError with a one-line reason."""
    path = Path(path)
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(f"--condition {path}: {NOT_A_QWEN_FOLDER}")
    import json

    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "qwen3_vl":
        raise ValueError(
            f"--condition {path}: model_type is {model_type!r}, not 'qwen3_vl'; {NOT_A_QWEN_FOLDER}"
        )
    return path


class Qwen3VLConditionEncoder(ConditionEncoder):
    """Qwen3-VL (`Qwen3VLModel`), its tokenizer and image processor from a local folder.

    Per sample the prompt is one user turn of the folder's chat template: the V images of frame t, then
    the instruction (LDA's `build_qwenvl_inputs` order). Every `<|image_pad|>` is expanded to the image's
    merged patches (49 for a 224 px frame). The tokens are the last hidden state over the whole prompt
    (image and text tokens). `images=False` gives the text-only prompt (no frames needed)."""

    needs_images = True

    def __init__(
        self,
        path: str | Path,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        max_caption_chars: int = 512,
        frozen: bool = True,
        images: bool = True,
    ) -> None:
        super().__init__()
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen3VLModel

        path = qwen3vl_folder(path)
        device = torch.device(device)
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "right"
        self.image_processor = (
            AutoImageProcessor.from_pretrained(path, local_files_only=True) if images else None
        )
        self.model = Qwen3VLModel.from_pretrained(path, local_files_only=True, dtype=dtype).to(device)
        self.frozen, self.needs_images = frozen, images
        self.model.requires_grad_(not frozen)
        self.dim = int(self.model.config.text_config.hidden_size)
        self.max_caption_chars = max_caption_chars
        self.name = f"qwen3vl:{path.resolve().name}" + ("" if images else ":text-only")
        self.image_token_id = int(self.model.config.image_token_id)
        if images and self.tokenizer.convert_tokens_to_ids(IMAGE_PAD) != self.image_token_id:
            raise ValueError(f"{path}: the tokenizer's {IMAGE_PAD} is not the model's image_token_id")
        self.train(False)

    def prompt(self, caption: str, n_images: int) -> str:
        """One user turn: n images then the instruction (chat template, or Qwen's markers without one)."""
        caption = caption[: self.max_caption_chars]
        if self.tokenizer.chat_template is None:
            return VISION_BLOCK * n_images + caption
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": caption}]
        messages = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def inputs(self, captions: list[str], images: Tensor | None) -> dict[str, Tensor]:
        """input_ids, attention_mask, mm_token_type_ids (+ pixel_values, image_grid_thw) for the batch."""
        n = 0 if images is None else int(images.shape[1])
        texts = [self.prompt(c, n) for c in captions]
        vision: dict[str, Tensor] = {}
        if n:
            frames = [f.numpy() for f in images.cpu().reshape(-1, *images.shape[2:])]
            vision = dict(self.image_processor(images=frames, return_tensors="pt"))
            merge = int(self.image_processor.merge_size)
            per_image = (vision["image_grid_thw"].prod(-1) // merge**2).tolist()
            texts = [_expand(t, per_image[i * n : (i + 1) * n]) for i, t in enumerate(texts)]
        enc = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        enc["mm_token_type_ids"] = (enc["input_ids"] == self.image_token_id).long()
        return {**enc, **vision}

    def encode(self, captions: list[str], images: Tensor | None = None) -> Conditioning:
        if self.needs_images and images is None:
            raise ValueError(
                f"{self.name} conditions on frame t: the batch has no images (DataConfig.images)"
            )
        device = next(self.model.parameters()).device
        inputs = {
            k: v.to(device) for k, v in self.inputs(captions, images if self.needs_images else None).items()
        }
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        mask = inputs["attention_mask"].bool()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.model(**inputs).last_hidden_state
        return Conditioning(hidden * mask[..., None], mask)


def _expand(text: str, tokens_per_image: list[int]) -> str:
    """Each `<|image_pad|>` of the prompt repeated once per merged patch of its image."""
    parts = text.split(IMAGE_PAD)
    if len(parts) - 1 != len(tokens_per_image):
        raise ValueError(
            f"the prompt has {len(parts) - 1} image placeholders for {len(tokens_per_image)} images"
        )
    pads = [IMAGE_PAD * k for k in tokens_per_image] + [""]
    return "".join(p + pad for p, pad in zip(parts, pads, strict=True))


class CachedConditionEncoder(ConditionEncoder):
    """Per-caption memo over a frozen encoder, or a pure lookup of precomputed tokens (`encoder=None`)."""

    def __init__(
        self, encoder: ConditionEncoder | None = None, cache: dict[str, Tensor] | None = None
    ) -> None:
        super().__init__()
        if encoder is None and not cache:
            raise ValueError("CachedConditionEncoder needs an encoder or precomputed tokens")
        if encoder is not None and not encoder.frozen:
            raise ValueError("only a frozen encoder's tokens can be cached")
        if encoder is not None and encoder.needs_images:
            raise ValueError(
                f"{encoder.name} conditions on images: its tokens are not a function of the caption"
            )
        self.encoder = encoder
        self.cache: dict[str, Tensor] = dict(cache or {})  # caption -> float [Li, dim] on the CPU
        self.dim = encoder.dim if encoder is not None else next(iter(self.cache.values())).shape[1]
        self.name = f"cached:{encoder.name}" if encoder is not None else "cached"

    def encode(self, captions: list[str], images: Tensor | None = None) -> Conditioning:
        missing = sorted({c for c in captions if c not in self.cache})
        if missing:
            if self.encoder is None:
                raise KeyError(f"no cached condition tokens for {missing[:3]} ({len(missing)} captions)")
            tokens, mask = self.encoder.encode(missing)
            for i, caption in enumerate(missing):
                self.cache[caption] = tokens[i, mask[i]].detach().cpu()
        return pad_tokens([self.cache[c] for c in captions])

    def save(self, path: str | Path) -> None:
        torch.save(self.cache, path)

    @classmethod
    def load(cls, path: str | Path, encoder: ConditionEncoder | None = None) -> CachedConditionEncoder:
        return cls(encoder, torch.load(path, weights_only=True))


class PrecomputedCondition(ConditionEncoder):
    """Stands for a frozen encoder whose tokens were cached (`train/condition_cache.py`): each batch
    carries them (`cond_tokens`, `cond_mask`); nothing is computed here."""

    def __init__(self, name: str, dim: int) -> None:
        super().__init__()
        self.name, self.dim = f"cache:{name}", dim

    def encode(self, captions: list[str], images: Tensor | None = None) -> Conditioning:
        raise ValueError(
            f"{self.name}: the batch carries no cached condition tokens (DataConfig.condition_cache)"
        )


def condition_of(encoder: ConditionEncoder, batch) -> Conditioning:
    """A batch's condition: its cached tokens when it has them, else the encoder on captions and frame t."""
    if batch.cond_tokens is not None:
        return Conditioning(batch.cond_tokens, batch.cond_mask)
    return encoder(batch.captions, batch.images)
