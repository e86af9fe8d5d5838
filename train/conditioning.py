"""Condition encoders: captions -> condition tokens for the MM-DiT's cross-attention.

Every encoder maps `captions: list[str]` to `Conditioning(tokens float [B, Lc, dim], mask bool [B, Lc])`
(right padding, mask True on real tokens, at least one real token per caption):
- `SmallTextEncoder`: self-contained (UTF-8 bytes -> embedding -> a small transformer), deterministic from
  a seed, for CPU runs and tests; frozen by default.
- `Qwen3VLConditionEncoder`: Qwen3-VL's language model from a local folder (never the Hub), frozen, eval,
  no_grad, text-only prompt; the last hidden state (after the final norm) as tokens, as in LDA.
- `CachedConditionEncoder`: memoises a frozen encoder per caption (one caption per episode, so a run
  needs few forwards) and accepts precomputed tokens (`save` / `load`).
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
    """captions -> `Conditioning`; `dim` is the token width (the model config's `cond_dim`)."""

    dim: int
    frozen: bool = True

    @abstractmethod
    def encode(self, captions: list[str]) -> Conditioning: ...

    def forward(self, captions: list[str]) -> Conditioning:
        return self.encode(captions)

    def train(self, mode: bool = True) -> ConditionEncoder:
        """A frozen encoder stays in eval mode even when a parent module calls `.train()`."""
        return super().train(mode and not self.frozen)


class SmallTextEncoder(ConditionEncoder):
    """UTF-8 bytes (after a BOS token) -> embedding + position -> `layers` pre-norm transformer layers."""

    BOS = 256

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

    def encode(self, captions: list[str]) -> Conditioning:
        device = self.pos.device
        ids, mask = (x.to(device) for x in self.tokenize(captions))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = self.embed(ids) + self.pos[: ids.shape[1]]
            x = self.norm(self.layers(x, src_key_padding_mask=~mask))
        return Conditioning(x * mask[..., None], mask)


class Qwen3VLConditionEncoder(ConditionEncoder):
    """Qwen3-VL (`Qwen3VLModel`) and its tokenizer from a local folder; text-only prompt.

    `prompt` formats each caption (e.g. a chat template string containing `{caption}`).
    """

    def __init__(
        self,
        path: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
        max_tokens: int = 128,
        prompt: str = "{caption}",
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer, Qwen3VLModel

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"Qwen3-VL folder {path} does not exist (models load from local folders only)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "right"
        self.model = Qwen3VLModel.from_pretrained(path, local_files_only=True, dtype=dtype).to(device)
        self.model.requires_grad_(False)
        self.dim = int(self.model.config.text_config.hidden_size)
        self.max_tokens, self.prompt = max_tokens, prompt
        self.train(False)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> Conditioning:
        texts = [self.prompt.format(caption=c) for c in captions]
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return Conditioning(hidden * mask[..., None], mask)


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
        self.encoder = encoder
        self.cache: dict[str, Tensor] = dict(cache or {})  # caption -> float [Li, dim] on the CPU
        self.dim = encoder.dim if encoder is not None else next(iter(self.cache.values())).shape[1]

    def encode(self, captions: list[str]) -> Conditioning:
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
