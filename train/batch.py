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

import numpy as np
import torch

from schemas.canonical import IDENTITY_ROT6D, PARTS, SIDES, part_slice

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
    # The last action as time t knows it (`last_action`): a_{t-1}, or the action holding the state at t
    # where a_{t-1} is masked, or 0 (normalised); 0 outside `action_dims`. The repeat-last baseline and
    # what a residual chunk is generated relative to (`train.flow.action_reference`); not a model input.
    last_action: torch.Tensor  # float32 [B, A]
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


def hold_action(state, state_mask):
    """The action that keeps the state of [..., A] (data units, numpy or torch): zero motion, identity
    rotation, the state's gripper and keypoints (CONTRACT.md section 4: position and rotation are the step's
    delta, gripper and keypoints the next frame's values). Returns (action, valid); position and rotation
    are always valid, gripper and keypoints where the state is."""
    xp = torch if torch.is_tensor(state) else np
    action, valid = xp.zeros_like(state), xp.zeros_like(state_mask)
    identity = torch.as_tensor(IDENTITY_ROT6D).to(state) if xp is torch else IDENTITY_ROT6D
    for side in SIDES:
        rot = part_slice(side, "rotation")
        action[..., rot] = identity
        valid[..., part_slice(side, "position")] = True
        valid[..., rot] = True
        for part in PARTS[2:]:  # gripper, keypoints: the value at t+1 equals the one at t
            s = part_slice(side, part)
            action[..., s] = state[..., s]
            valid[..., s] = state_mask[..., s]
    return action, valid


def last_action(history_last, history_mask, state, state_mask, action_dims, norm):
    """[..., A] normalised (numpy or torch, as the inputs): a_{t-1} (`history_last`, normalised) where
    `history_mask`; else the action holding the normalised `state` at t (`hold_action`) where that exists;
    else 0 (the normaliser's centre); 0 outside `action_dims`. Only inputs of time t or before."""
    hold, valid = hold_action(norm.unnormalize_state(state, state_mask), state_mask)
    held = norm.normalize_actions(hold, valid)
    where = torch.where if torch.is_tensor(history_last) else np.where
    out = where(action_dims, where(history_mask, history_last, held), 0.0)
    return out if torch.is_tensor(out) else out.astype(np.float32)
