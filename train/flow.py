"""Flow matching for the LDA model: the project's convention, per-task losses and Euler samplers.

Convention (lda-model.md 0.2): x_t = (1 - t) x + t eps, eps ~ N(0, I); t = 1 is noise, t = 0 is data;
the model predicts the velocity, target eps - x; t = 0.001 + 0.999 Beta(1.5, 1); a clean conditioning
modality is marked with t = 0. Euler from t = 1 to 0: x <- x - (1 / steps) v(x, t).

Optionally (ModelConfig `action_residual` / `latent_residual`, `prediction="data"`) the flow's data is the
change from the present (chunk minus a_{t-1}, future latent minus o_t, scaled) and the heads output that
data instead of the velocity; the samplers always return absolute normalised values
(`actions_to_flow` / `actions_from_flow`, docs/TRAINING.md). The total loss weights action and latent terms
(`weighted_total`).

Tasks are per-sample ids (never a reordering of the batch); each task's loss is a masked mean over its
real values, and an empty group gives exactly 0:

| task | action input | future-latent input | loss |
|---|---|---|---|
| 0 policy | noisy (t_a) | visual register | actions (x action_mask) |
| 1 forward dynamics | clean (t_a = 0) | noisy (t_o) | future latent |
| 2 inverse dynamics | noisy (t_a) | clean (t_o = 0) | actions, first `future_obs_index` steps |
| 3 visual forecasting | action register | noisy (t_o) | future latent |

Samples of tasks 1-3 without a future latent (`future_valid` False) get no loss at all (counted in
`Losses.dropped`); the data side should never produce them.

No input comes from the future except a task's own slot: the context (`context_inputs`) is of frame t or
before, the chunk's "which dimensions exist" input is the embodiment's (`Batch.action_dims`), and the
future validity (`action_mask`, `future_valid`) only masks the losses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from train.batch import TASK_NAMES, Batch
from train.configs import ModelConfig
from train.model import FORWARD_DYNAMICS, INVERSE_DYNAMICS, POLICY, VISUAL_FORECASTING

T_MIN = 0.001


def model_config(model: nn.Module) -> ModelConfig:
    """The `ModelConfig` of an `LDAModel`, also through a DDP-style wrapper (`.module`)."""
    return getattr(model, "module", model).config


def sample_time(n: int, mode: str, generator: torch.Generator) -> Tensor:
    """n flow times in (0, 1] on the generator's device: 0.001 + 0.999 Beta(1.5, 1) or sigmoid(N(0, 1))."""
    if mode == "beta":
        # Beta(a, 1) has CDF u^a, so U^(1/a) samples it exactly.
        u = torch.rand(n, generator=generator, device=generator.device) ** (1.0 / 1.5)
        return T_MIN + (1.0 - T_MIN) * u
    if mode == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator, device=generator.device))
    raise ValueError(f"unknown time sampling mode {mode!r}")


def interpolate(x: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t) x + t eps, t [B] broadcast over the trailing dims."""
    tb = t.view(-1, *([1] * (x.dim() - 1)))
    return (1 - tb) * x + tb * eps


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask` (broadcast) is True; exactly 0 (with zero gradient) when none is."""
    mask = mask.expand_as(values)
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)


# --------------------------------------------------------------------------------------------------
# What the flow generates: absolute (normalised) values, or the change from the present
# --------------------------------------------------------------------------------------------------


def action_reference(batch: Batch, config: ModelConfig) -> Tensor:
    """[B, 1, A]: what the chunk is generated relative to. `action_residual`: `batch.last_action` (a_{t-1},
    or the action holding the state at t where that is masked, else 0: the repeat-last baseline), an input
    of time t; else 0."""
    if not config.action_residual:
        return torch.zeros_like(batch.actions[:, :1])
    return batch.last_action[:, None, :]


def latent_reference(batch: Batch, config: ModelConfig) -> Tensor:
    """[B, N, L]: what the future latent is generated relative to: o_t (`latent_residual`), else 0."""
    if not config.latent_residual:
        return torch.zeros_like(batch.future_latents)
    return batch.obs_latents[:, -1]


def actions_to_flow(actions: Tensor, batch: Batch, config: ModelConfig) -> Tensor:
    """Normalised chunk -> the flow's data: (a - reference) x scale. Missing values (stored as 0) are not
    filled from `action_mask`: that mask is of the future and must not shape the policy's input."""
    scale = config.action_residual_scale if config.action_residual else 1.0
    return (actions - action_reference(batch, config)) * scale


def actions_from_flow(y: Tensor, batch: Batch, config: ModelConfig) -> Tensor:
    """The flow's data -> normalised chunk (the inverse of `actions_to_flow`)."""
    scale = config.action_residual_scale if config.action_residual else 1.0
    return y / scale + action_reference(batch, config)


def latents_to_flow(latents: Tensor, batch: Batch, config: ModelConfig) -> Tensor:
    scale = config.latent_residual_scale if config.latent_residual else 1.0
    return (latents - latent_reference(batch, config)) * scale


def latents_from_flow(y: Tensor, batch: Batch, config: ModelConfig) -> Tensor:
    scale = config.latent_residual_scale if config.latent_residual else 1.0
    return y / scale + latent_reference(batch, config)


def weighted_total(task_losses: Tensor, config: ModelConfig) -> Tensor:
    """The loss to minimise: action terms (policy, inverse dynamics) x `action_loss_weight`, latent terms
    (forward dynamics, visual forecasting) x `latent_loss_weight`; `task_losses` in TASK_NAMES order."""
    wa, wl = config.action_loss_weight, config.latent_loss_weight
    weights = torch.tensor([wa, wl, wa, wl], dtype=task_losses.dtype, device=task_losses.device)
    return (task_losses * weights).sum()


@dataclass
class Losses:
    """`total` for backward; per-task losses and sample counts stay on device until read (one sync)."""

    total: Tensor
    task_losses: Tensor  # float32 [4], detached, in TASK_NAMES order
    task_counts: Tensor  # int64 [4]: samples in each task's group (tasks 1-3: those with a future latent)
    dropped: Tensor  # int64 []: samples of tasks 1-3 without a future latent (no loss)

    @property
    def per_task(self) -> dict[str, float]:
        return dict(zip(TASK_NAMES, self.task_losses.tolist(), strict=True))

    @property
    def counts(self) -> dict[str, int]:
        return dict(zip(TASK_NAMES, self.task_counts.tolist(), strict=True))


def context_inputs(batch: Batch) -> dict[str, Tensor]:
    """The model inputs a batch gives besides the slots: all from frame t or before, or dataset constants.

    obs latents (t - history_offset, t), state and state_mask (t), history actions and masks (t-H .. t-1),
    and the embodiment's action dimensions (`batch.action_dims`, the dataset card's) and id
    (`batch.embodiment`, which picks per-embodiment action heads). Nothing of t+1 ..:
    `action_mask` and `future_valid` only mask the losses (the policy never learns from them which values
    will exist), `actions` / `future_latents` only enter as a task's noisy or clean slot.
    """
    return dict(
        obs_latents=batch.obs_latents,
        state=batch.state,
        state_mask=batch.state_mask,
        history_actions=batch.history_actions,
        history_mask=batch.history_mask,
        action_dim_mask=batch.action_dims,
        embodiment=batch.embodiment,
    )


def training_losses(
    model: nn.Module, batch: Batch, cond_tokens: Tensor, cond_mask: Tensor, generator: torch.Generator
) -> Losses:
    """One flow-matching draw per sample (time, noise) and the four task losses; total = their sum.

    `generator` drives every random draw (put it on the batch's device to avoid host-device copies).
    """
    config = model_config(model)
    task, device = batch.task, batch.actions.device
    policy, fd, inv, vf = (
        task == i for i in (POLICY, FORWARD_DYNAMICS, INVERSE_DYNAMICS, VISUAL_FORECASTING)
    )
    has_future = batch.future_valid
    t_a = torch.where(policy | inv, sample_time(len(batch), config.time_sampling, generator).to(device), 0.0)
    t_o = torch.where(fd | vf, sample_time(len(batch), config.time_sampling, generator).to(device), 0.0)
    eps_a = torch.randn(batch.actions.shape, generator=generator, device=generator.device).to(device)
    eps_o = torch.randn(batch.future_latents.shape, generator=generator, device=generator.device).to(device)
    # The flow's data (the values themselves, or their change from the present: `actions_to_flow`).
    x_a = actions_to_flow(batch.actions, batch, config)
    x_o = latents_to_flow(batch.future_latents, batch, config)
    v_action, v_obs = model(
        **context_inputs(batch),
        future_slot=interpolate(x_o, eps_o, t_o),
        actions_in=interpolate(x_a, eps_a, t_a),
        t_action=t_a,
        t_obs=t_o,
        task=task,
        cond_tokens=cond_tokens,
        cond_mask=cond_mask,
    )
    if config.prediction == "data":  # the heads give the clean data itself
        diff_a = v_action.float() - x_a
        err_a = diff_a.abs() if config.action_loss == "l1" else diff_a.square()
        err_o = (v_obs.float() - x_o).square()
    else:
        err_a = (v_action.float() - (eps_a - x_a)).square()
        err_o = (v_obs.float() - (eps_o - x_o)).square()
    first_k = torch.arange(config.chunk, device=device) < config.future_obs_index
    real = batch.action_mask & batch.action_dims[:, None, :]  # never a target the model was told is absent
    groups = [policy, fd & has_future, inv & has_future, vf & has_future]
    task_losses = torch.stack(
        [
            masked_mean(err_a, groups[0][:, None, None] & real),
            masked_mean(err_o, groups[1][:, None, None]),
            masked_mean(err_a, groups[2][:, None, None] & first_k[None, :, None] & real),
            masked_mean(err_o, groups[3][:, None, None]),
        ]
    )
    return Losses(
        total=weighted_total(task_losses, config),
        task_losses=task_losses.detach(),
        task_counts=torch.stack([g.sum() for g in groups]),
        dropped=((task != POLICY) & ~has_future).sum(),
    )


# --------------------------------------------------------------------------------------------------
# Euler samplers
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluation mode (no dropout) inside, the previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _velocity(
    model: nn.Module, batch: Batch, cond: tuple[Tensor, Tensor], **slots: Tensor
) -> tuple[Tensor, Tensor]:
    """The model on the batch's context; `slots` gives future_slot, actions_in, t_action, t_obs, task.
    Returns velocities: a "data" model's clean estimate x becomes (x_t - x) / t (t > 0 in the samplers)."""
    v_action, v_obs = model(**context_inputs(batch), cond_tokens=cond[0], cond_mask=cond[1], **slots)
    if model_config(model).prediction == "data":
        t_a, t_o = slots["t_action"].clamp_min(T_MIN), slots["t_obs"].clamp_min(T_MIN)
        v_action = (slots["actions_in"] - v_action.float()) / t_a[:, None, None]
        v_obs = (slots["future_slot"] - v_obs.float()) / t_o[:, None, None]
    return v_action, v_obs


@torch.no_grad()
def sample_actions(
    model: nn.Module,
    batch: Batch,
    cond_tokens: Tensor,
    cond_mask: Tensor,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    inverse: bool = False,
) -> Tensor:
    """Policy: the action chunk [B, C, A] from noise (t 1 -> 0), visual register in the future slot.
    `inverse=True`: inverse dynamics instead, the clean `batch.future_latents` in the future slot.

    Uses the context of `batch` (`context_inputs`: latents, state, history, the embodiment's action
    dimensions); `batch.task`, `batch.actions` and `batch.action_mask` are ignored. Dimensions outside
    `batch.action_dims` come back as 0.
    """
    config = model_config(model)
    steps = steps or config.euler_steps
    b, device = len(batch), batch.actions.device
    dims = batch.action_dims[:, None, :]
    x = torch.randn(batch.actions.shape, generator=generator, device=_gen_device(generator, device)).to(
        device
    )
    x = x * dims
    task = torch.full((b,), INVERSE_DYNAMICS if inverse else POLICY, dtype=torch.long, device=device)
    zeros = torch.zeros(b, device=device)
    future = latents_to_flow(batch.future_latents, batch, config)
    empty_slot = future if inverse else torch.zeros_like(batch.future_latents)
    with eval_mode(model):
        for k in range(steps):
            t = torch.full((b,), 1.0 - k / steps, device=device)
            slots = dict(future_slot=empty_slot, actions_in=x, t_action=t, t_obs=zeros, task=task)
            v, _ = _velocity(model, batch, (cond_tokens, cond_mask), **slots)
            x = (x - v.float() / steps) * dims
    return actions_from_flow(x, batch, config) * dims


@torch.no_grad()
def predict_future(
    model: nn.Module,
    batch: Batch,
    cond_tokens: Tensor,
    cond_mask: Tensor,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Forward dynamics: the future latent [B, N, L] from noise, given the clean `batch.actions` (t = 0)."""
    config = model_config(model)
    steps = steps or config.euler_steps
    b, device = len(batch), batch.actions.device
    shape = batch.future_latents.shape
    actions = actions_to_flow(batch.actions, batch, config)
    x = torch.randn(shape, generator=generator, device=_gen_device(generator, device)).to(device)
    task = torch.full((b,), FORWARD_DYNAMICS, dtype=torch.long, device=device)
    zeros = torch.zeros(b, device=device)
    with eval_mode(model):
        for k in range(steps):
            t = torch.full((b,), 1.0 - k / steps, device=device)
            slots = dict(future_slot=x, actions_in=actions, t_action=zeros, t_obs=t, task=task)
            _, v = _velocity(model, batch, (cond_tokens, cond_mask), **slots)
            x = x - v.float() / steps
    return latents_from_flow(x, batch, config)


def _gen_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


# --------------------------------------------------------------------------------------------------
# Synthetic batches (tests and benchmarks)
# --------------------------------------------------------------------------------------------------


def random_batch(
    config: ModelConfig,
    batch_size: int,
    tasks: list[int] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Batch:
    """A `Batch` of random normalised tensors shaped by `config`, tasks cycling 0..3 unless given.

    Embodiments have a random number of action dimensions (`action_dims`); the last steps of some chunks
    are padding and 5 % of the other chunk values are missing (`action_mask` False, value 0); task-3
    samples are action-free (zero actions, all masks False); policy samples may lack a future.
    """
    g = torch.Generator().manual_seed(seed)
    b, c, h, a = batch_size, config.chunk, config.history_actions, config.action_dim
    task = torch.tensor(tasks if tasks is not None else [i % 4 for i in range(b)], dtype=torch.long)
    n_dims = torch.randint(7, a + 1, (b,), generator=g)
    dims = (torch.arange(a)[None, :] < n_dims[:, None]) & (task != VISUAL_FORECASTING)[:, None]
    n_steps = torch.randint(c // 2, c + 1, (b,), generator=g)
    steps = torch.arange(c)[None, :] < n_steps[:, None]
    randn = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    batch = Batch(
        task=task,
        obs_latents=randn(b, config.obs_history, config.n_latent_tokens, config.latent_dim),
        future_latents=randn(b, config.n_latent_tokens, config.latent_dim),
        future_valid=(task != POLICY) | (torch.rand(b, generator=g) < 0.5),
        state=randn(b, a) * dims,
        state_mask=dims.clone(),
        history_actions=randn(b, h, a) * dims[:, None, :],
        history_mask=dims[:, None, :].expand(b, h, a).clone(),
        actions=randn(b, c, a) * dims[:, None, :],
        action_mask=dims[:, None, :] & steps[:, :, None],
        action_dims=dims.clone(),
        last_action=torch.zeros(b, a),  # set below: a_{t-1} (all history is valid inside dims)
        captions=[f"pick up object {i} and place it in the bin" for i in range(b)],
        dataset=["random"] * b,
        episode_index=torch.arange(b),
        frame_index=torch.zeros(b, dtype=torch.long),
        embodiment=torch.arange(b) % max(1, config.n_embodiments),  # cycling over the model's embodiments
    )
    batch.future_latents[~batch.future_valid] = 0.0
    batch.last_action = batch.history_actions[:, -1].clone()
    batch.action_mask &= torch.rand(b, c, a, generator=g) >= 0.05  # tracking gaps inside the chunk
    batch.actions *= batch.action_mask  # masked values are 0, padded steps included
    return batch.to(device)


def random_cond(
    config: ModelConfig, batch_size: int, length: int = 8, seed: int = 0, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """Random condition tokens [B, length, cond_dim] with a right-padding mask (at least one real token)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch_size, length, config.cond_dim, generator=g)
    lengths = torch.randint(1, length + 1, (batch_size,), generator=g)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return (tokens * mask[..., None]).to(device), mask.to(device)
