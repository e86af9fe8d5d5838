"""Yardsticks for `train eval`: what a model must beat on the same held-out samples.

Actions (data units, as the model's L1; see docs/CONTRACT.md section 4: position/rotation are the step's
delta, gripper and keypoints the next frame's values):
- `zero`: the all-zero action;
- `mean`: the training-mean action (the run's normaliser mean; `--normalize-per dataset`: the sample's
  dataset's own mean);
- `repeat_last`: the last history action (a_{t-1}) repeated over the whole chunk; where that dimension of
  a_{t-1} is masked (episode start, occlusion), the action that holds the current state instead: zero
  position delta, identity rotation, gripper and keypoints of the state at t (where the state is valid);
  where neither exists, the normaliser's centre (the training mean). This is `Batch.last_action`, the
  very reference a residual model generates its chunk from (`train.flow.action_reference`).

Latents (normalised units, as the model's forward-dynamics MSE):
- `mean_latent`: the training-mean latent (the run's normaliser channel mean, i.e. 0 once normalised);
- `copy_current`: the current observation's latent o_t as the forecast of o_{t+K}.

Every prediction is a full-shape tensor; the caller scores it with the model's own masks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from train.batch import Batch
from train.normalize import Normalizer

ACTION_BASELINES: tuple[str, ...] = ("zero", "mean", "repeat_last")
LATENT_BASELINES: tuple[str, ...] = ("mean_latent", "copy_current")


def action_baselines(batch: Batch, norm: Normalizer) -> dict[str, Tensor]:
    """Each action baseline's chunk [B, C, A] in data units (unmasked: score with the model's mask)."""
    shape = batch.actions.shape
    means = [norm.for_dataset(d).action_mean for d in batch.dataset]  # --normalize-per dataset: its own
    mean = torch.as_tensor(means, dtype=torch.float32, device=batch.actions.device)
    repeat = norm.unnormalize_actions_for(batch.dataset, batch.last_action)  # a_{t-1}, else hold, else centre
    return {
        "zero": torch.zeros(shape, device=batch.actions.device),
        "mean": mean[:, None, :].expand(shape),
        "repeat_last": repeat[:, None, :].expand(shape),
    }


def latent_baselines(batch: Batch) -> dict[str, Tensor]:
    """Each latent baseline's forecast [B, N, L] of the future latent, in normalised units."""
    return {"mean_latent": torch.zeros_like(batch.future_latents), "copy_current": batch.obs_latents[:, -1]}
