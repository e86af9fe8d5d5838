"""`train eval`: action L1 on held-out episodes (the paper's scaling proxy) and forward-dynamics error.

- policy: sample the 16-step chunk with the Euler sampler (visual register in the future slot);
- inverse dynamics: the same, given the clean future latent; scored on the first K steps (the steps
  between the current and the future frame), as trained;
- forward dynamics: predict the future latent from the clean actions; error in normalised latent units.
Action L1 is in the data's own units (metres, 6D rotation, gripper), over real (unmasked) values only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel

from train.loop import CHECKPOINT, TrainOptions, load_checkpoint


class EvalReport(BaseModel):
    run: Path
    step: int
    samples: int
    policy_action_l1: float | None
    inverse_action_l1: float | None
    forward_latent_mse: float | None
    counts: dict[str, int]


class _Mean:
    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        self.total += float((values * mask).sum())
        self.count += int(mask.sum())

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


def _load(run_dir: Path, device: torch.device):
    from train.configs import ModelConfig
    from train.data import Normalizer
    from train.model import LDAModel

    state = load_checkpoint(run_dir)
    if state is None:
        raise FileNotFoundError(f"no {CHECKPOINT} in {run_dir}")
    model = LDAModel(ModelConfig.model_validate(state["model_config"]))
    model.load_state_dict(state["model"])
    opts = TrainOptions.model_validate(state["options"])
    return state, model.to(device).eval(), opts, Normalizer.model_validate(state["normalizer"])


def evaluate(run_dir: Path, mixture: Path | None = None, root: Path | None = None, n: int = 64,
             steps: int | None = None, seed: int = 0) -> EvalReport:  # fmt: skip
    """Score the run's last checkpoint on `n` held-out samples of the mixture (default: the run's)."""
    from train.data import build_eval_samples
    from train.flow import predict_future, sample_actions
    from train.setup import condition_encoder, data_config

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    state, model, opts, norm = _load(run_dir, device)
    opts = opts.model_copy(update={"mixture": mixture or opts.mixture, "root": root or opts.root,
                                   "loader_workers": 0, "seed": seed})  # fmt: skip
    encoder = condition_encoder(opts, device)
    cfg = data_config(opts, 1)
    tasks = ("policy", "forward_dynamics", "inverse_dynamics")
    batches = build_eval_samples(cfg, n, normalizer=norm, tasks=tasks)
    k = model.config.future_obs_index
    policy, inverse, forward = _Mean(), _Mean(), _Mean()
    gen = torch.Generator(device=device).manual_seed(seed)
    for batch in batches:
        batch = batch.to(device)
        cond = encoder(batch.captions)
        tokens, mask = cond[0].to(device), cond[1].to(device)
        truth = norm.unnormalize_actions(batch.actions, batch.action_mask)
        for inv, acc in ((False, policy), (True, inverse)):
            which = batch.task == (2 if inv else 0)
            pred = sample_actions(model, batch, tokens, mask, steps, gen, inverse=inv)
            err = (norm.unnormalize_actions(pred, batch.action_mask) - truth).abs()
            valid = batch.action_mask & which[:, None, None]
            if inv:
                valid = valid & (torch.arange(valid.shape[1], device=device) < k)[None, :, None]
            acc.add(err, valid)
        fd = (batch.task == 1) & batch.future_valid
        future = predict_future(model, batch, tokens, mask, steps, gen)
        forward.add(((future - batch.future_latents) ** 2).mean(dim=(1, 2)), fd)
    counts = {t: int(sum(int((b.task == i).sum()) for b in batches)) for i, t in enumerate(("policy",
              "forward_dynamics", "inverse_dynamics"))}  # fmt: skip
    return EvalReport(run=run_dir, step=int(state["step"]), samples=sum(len(b) for b in batches),
                      policy_action_l1=policy.value, inverse_action_l1=inverse.value,
                      forward_latent_mse=forward.value, counts=counts)  # fmt: skip
