"""Model configurations of the LDA MM-DiT: `tiny` (CPU tests), `small` (CPU learning benchmark), `0.5b`
and `1b` (GPU).

`latent_dim` / `n_latent_tokens` follow the latent cache (ViT-S/16: 384 x 196; tests: 32 x 196) and
`cond_dim` follows the condition encoder (Qwen3-VL-4B: 2560), so override them from the dataset:

    config = get_config("1b", latent_dim=384, n_latent_tokens=196)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from train.batch import ACTION_DIM, CHUNK, HISTORY_ACTIONS, OBS_HISTORY


class ModelConfig(BaseModel):
    """Every size and switch of `train.model.LDAModel` and of the flow-matching recipe (`train.flow`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    # Width, depth and heads of the MM-DiT (both streams share them; head dim = hidden / heads).
    hidden: int = Field(gt=0)
    layers: int = Field(gt=0)
    heads: int = Field(gt=0)
    ffn_ratio: float = Field(default=4.0, gt=0)
    # The cached visual latents: channels per token and tokens per frame (196 patches, or 201).
    latent_dim: int = Field(default=384, gt=0)
    n_latent_tokens: int = Field(default=196, gt=0)
    # Frames channel-concatenated with the future slot (o_{t-5}, o_t), history actions, chunk, action width.
    obs_history: int = Field(default=OBS_HISTORY, gt=0)
    history_actions: int = Field(default=HISTORY_ACTIONS, ge=0)
    chunk: int = Field(default=CHUNK, gt=0)
    action_dim: int = Field(default=ACTION_DIM, gt=0)
    # Width of the condition tokens (the condition encoder's hidden size).
    cond_dim: int = Field(default=2560, gt=0)
    # Learned sink ("register") tokens prepended to the visual stream and dropped at the output.
    n_sink_tokens: int = Field(default=32, ge=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    # RMSNorm on queries and keys of the joint attention (bf16 stability at width 1536).
    qk_norm: bool = True
    # Inverse dynamics: action loss only on the first K chunk steps (the steps up to the future frame).
    future_obs_index: int = Field(default=5, gt=0)
    # Flow-matching time law: t = 0.001 + 0.999 Beta(1.5, 1) ("beta") or sigmoid(N(0, 1)) ("logit_normal").
    time_sampling: Literal["beta", "logit_normal"] = "beta"
    euler_steps: int = Field(default=4, gt=0)
    # What the flow generates (train.flow, docs/TRAINING.md "Residual parameterisation and loss weights"):
    # the chunk relative to the last history action, the future latent relative to o_t (each times its scale,
    # so that the flow's data has about unit spread), or (False) the normalised values themselves.
    action_residual: bool = False
    latent_residual: bool = False
    action_residual_scale: float = Field(default=1.0, gt=0)
    latent_residual_scale: float = Field(default=1.0, gt=0)
    # What the heads output: the velocity eps - x ("velocity"), or the flow's clean data x ("data"; the
    # velocity is (x_t - x) / t, the loss the data MSE). With zero-initialised heads, "data" starts at x = 0,
    # which under the residuals above is "no change": the repeat-last / copy-current baselines.
    prediction: Literal["velocity", "data"] = "velocity"
    # The action terms' error under `prediction="data"`: squared ("mse", the conditional mean) or absolute
    # ("l1", the conditional median: what an L1 score rewards, and a gripper that rarely moves stays put
    # instead of hedging a jump). Latent terms are always squared.
    action_loss: Literal["mse", "l1"] = "mse"
    # Weights of the action terms (policy, inverse dynamics) and latent terms (forward dynamics, visual
    # forecasting) in the total loss; the logged per-task losses stay unweighted.
    action_loss_weight: float = Field(default=1.0, ge=0)
    latent_loss_weight: float = Field(default=1.0, ge=0)
    # Action input projections (history, state, chunk) and action output head: one set for every sample
    # ("shared", the default) or one per embodiment ("per_embodiment", as the public LDA-1B code), picked per
    # sample by `Batch.embodiment`, an id into `embodiments` (the names known when the model was built).
    action_heads: Literal["shared", "per_embodiment"] = "shared"
    embodiments: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")
        if self.future_obs_index > self.chunk:
            raise ValueError(f"future_obs_index {self.future_obs_index} > chunk {self.chunk}")
        if self.action_heads == "per_embodiment" and not self.embodiments:
            raise ValueError("per_embodiment action heads need the embodiments' names")
        if len(set(self.embodiments)) != len(self.embodiments):
            raise ValueError(f"embodiments listed twice: {list(self.embodiments)}")
        if self.action_loss == "l1" and self.prediction != "data":
            raise ValueError('action_loss "l1" needs prediction "data" (a velocity target is not a median)')
        return self

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def n_embodiments(self) -> int:
        """Copies of the action heads: 0 when they are shared."""
        return len(self.embodiments) if self.action_heads == "per_embodiment" else 0

    @property
    def n_action_tokens(self) -> int:
        """Action-stream length: history actions, one state token, the chunk."""
        return self.history_actions + 1 + self.chunk

    @property
    def n_obs_tokens(self) -> int:
        """Visual-stream length: sink tokens then one token per latent position."""
        return self.n_sink_tokens + self.n_latent_tokens


CONFIGS: dict[str, ModelConfig] = {
    # CPU tests: a training step on 8 samples x 196 tokens of dim 32 in well under a second.
    "tiny": ModelConfig(
        name="tiny", hidden=64, layers=2, heads=4, latent_dim=32, cond_dim=32, n_sink_tokens=4
    ),
    # CPU learning benchmark (bench/learning.py): as wide as the ViT-S/16 latent (384), so the visual stream
    # can carry the present frame into the forecast; 2 layers, 6 heads x 64 to stay fast on 2 cores. It
    # generates the change from the present and predicts the data (untrained = repeat-last / copy-current):
    # at equal steps on the real samples far closer to the baselines than absolute velocity (BENCHMARKS).
    "small": ModelConfig(
        name="small",
        hidden=384,
        layers=2,
        heads=6,
        cond_dim=32,
        n_sink_tokens=4,
        action_residual=True,
        latent_residual=True,
        latent_residual_scale=2.5,
        prediction="data",
        action_loss="l1",  # the median: a rarely moving gripper stays put (BENCHMARKS "Does it learn?")
    ),
    # About 0.50 B parameters: narrower and shallower than 1b, head dim 64.
    "0.5b": ModelConfig(name="0.5b", hidden=896, layers=12, heads=14, dropout=0.1),
    # LDA-1B's DiT-L: D 1536, 16 layers, 32 heads x 48, cross-attention to Qwen3-VL-4B (2560); 1.78 B
    # parameters, like the public code's 1.77 B backbone (the name follows the paper, not the count).
    "1b": ModelConfig(name="1b", hidden=1536, layers=16, heads=32, dropout=0.1),
}


def get_config(name: str, **overrides: object) -> ModelConfig:
    """A named config with fields replaced (validated again), e.g. the dataset's latent shape."""
    if name not in CONFIGS:
        raise KeyError(f"unknown model config {name!r}; known: {sorted(CONFIGS)}")
    return ModelConfig.model_validate({**CONFIGS[name].model_dump(), **overrides})
