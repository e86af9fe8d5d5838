"""The training batch: the one contract between `train/data.py` and the model / losses.

Shapes (B samples): N = latent tokens (196 patches, or 201), L = latent dim (384 for ViT-S/16),
A = 146 (the canonical vector), C = action chunk (16), H = history actions (5), F = obs history (2).
Every tensor is already normalised (state/actions with per-dimension mean/std, latents with the
per-channel mean/std of `meta/latents.json`); masked values are 0 and their mask is False.

Time: the model's context (obs latents, state, history, `action_dims`, captions) comes from frame t or
before, or is a constant of the sample's dataset. `actions`, `action_mask`, `future_latents` and
`future_valid` describe t .. t+C-1 and t + future_offset: they are targets (or the clean slot of a task that
is given the future), and their masks only mask the loss (`train.flow.context_inputs` is the one place
that picks the context).

Task ids (CONTRACT.md section 8; never reorder a batch by task, use these ids as masks):
0 policy, 1 forward dynamics, 2 inverse dynamics, 3 visual forecasting.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

TASK_NAMES: tuple[str, ...] = ("policy", "forward_dynamics", "inverse_dynamics", "visual_forecasting")
TASK_IDS: dict[str, int] = {name: i for i, name in enumerate(TASK_NAMES)}
ACTION_DIM = 146
CHUNK = 16
HISTORY_ACTIONS = 5
OBS_HISTORY = 2


@dataclass
class Batch:
    task: torch.Tensor  # int64 [B]
    obs_latents: torch.Tensor  # float32 [B, F, N, L]: (o_{t - history_offset}, o_t), oldest first
    future_latents: torch.Tensor  # float32 [B, N, L]: o_{t + future_offset} (zeros when absent)
    future_valid: torch.Tensor  # bool [B]: a future latent exists (tasks 1-3 need it)
    state: torch.Tensor  # float32 [B, A]
    state_mask: torch.Tensor  # bool [B, A]
    history_actions: torch.Tensor  # float32 [B, H, A]: actions t-H .. t-1
    history_mask: torch.Tensor  # bool [B, H, A]
    actions: torch.Tensor  # float32 [B, C, A]: actions t .. t+C-1 (padded past the episode end)
    action_mask: torch.Tensor  # bool [B, C, A]: which target values exist (masks the loss only)
    # The action dimensions the sample's embodiment has: its dataset card's `valid_action_dims` (all False
    # for an episode without actions). A dataset constant, so no future; every action_mask is inside it.
    action_dims: torch.Tensor  # bool [B, A]
    captions: list[str]  # the unified instruction of each sample's episode
    # Where each sample comes from (for evaluation and debugging): dataset name, episode, frame.
    dataset: list[str]
    episode_index: torch.Tensor  # int64 [B]
    frame_index: torch.Tensor  # int64 [B]
    # Frame t itself, for a condition encoder that sees images (Qwen3-VL): uint8 [B, V, H, W, 3] RGB, V
    # cameras, read from the latents cache (`DataConfig.images`); None when the run's encoder is text-only.
    images: torch.Tensor | None = None
    # Cached condition tokens of frame t and the instruction (`train cache-condition`): float32 [B, Lc, dim]
    # and their right-padding mask bool [B, Lc]; None when the condition encoder runs in the step.
    cond_tokens: torch.Tensor | None = None
    cond_mask: torch.Tensor | None = None
    # Each sample's embodiment: an id into the names the model was built with (`ModelConfig.embodiments`),
    # from its dataset's meta/info.json `robot_type`. Only per-embodiment action heads read it.
    embodiment: torch.Tensor | None = None  # int64 [B]

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device, non_blocking=non_blocking) if torch.is_tensor(value) else value
        return Batch(**moved)

    def pin_memory(self) -> Batch:
        """Called by the DataLoader when `pin_memory=True`."""
        pinned = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in pinned.items():
            if torch.is_tensor(v):
                pinned[k] = v.pin_memory()
        return Batch(**pinned)

    def slice(self, start: int, stop: int) -> Batch:
        """Samples start..stop-1 (micro-batches for gradient accumulation, a rank's share of a batch)."""
        return Batch(**{f.name: _rows(getattr(self, f.name), slice(start, stop)) for f in fields(self)})

    def select(self, index: torch.Tensor) -> Batch:
        """The samples at `index` (int64 [K]), in that order (one task's samples, for evaluation)."""
        rows = index.tolist()
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                value = value[index.to(value.device)] if torch.is_tensor(value) else [value[i] for i in rows]
            picked[f.name] = value
        return Batch(**picked)

    def __len__(self) -> int:
        return int(self.task.shape[0])


def _rows(value, rows: slice):
    return None if value is None else value[rows]
