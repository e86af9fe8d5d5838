"""The LDA MM-DiT: a latent-dynamics action model over two token streams (after LDA-1B, DiT, SD3).

Streams (B samples, D = hidden):
- visual: per latent position n, the channels [o_{t-5}[n] | o_t[n] | future slot[n]] -> Linear((F+1) L -> D),
  plus a learned position embedding; `n_sink_tokens` learned tokens in front, dropped at the output.
- action: [history actions (H) | state (1) | chunk (C)] tokens, a learned position embedding. Masked
  dimensions are zeroed and the mask is an input channel, so a 0 value and a missing value differ.

Per-sample task (`train.batch.TASK_IDS`) decides what fills the slots (lda-model.md section 7.2):

| task | future slot | chunk tokens | adaLN time |
|---|---|---|---|
| 0 policy | visual register | noisy actions (t_action) | t_action |
| 1 forward dynamics | noisy future latent (t_obs) | clean actions (t_action = 0) | t_obs |
| 2 inverse dynamics | clean future latent (t_obs = 0) | noisy actions (t_action) | t_action |
| 3 visual forecasting | noisy future latent (t_obs) | action register | t_obs |

The substitution is per sample (`torch.where` on the task id), never by reordering the batch. The
conditioning vector is embed(t * 1000) + task embedding; each block modulates each stream with its own
adaLN-Zero (shift / scale / gate), runs ONE joint attention over both streams with per-stream QKV and
output projections, then a per-stream cross-attention to the condition tokens and a per-stream FFN.
Per-embodiment action heads (`ModelConfig.action_heads`): the history / state / chunk encoders and the
action output layer have one copy per embodiment, picked per sample by `embodiment` ids (`EmbodimentLinear`).
No parallelism here: FSDP / DDP / compile wrap this module from outside.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from train.batch import TASK_IDS
from train.configs import ModelConfig

POLICY = TASK_IDS["policy"]
FORWARD_DYNAMICS = TASK_IDS["forward_dynamics"]
INVERSE_DYNAMICS = TASK_IDS["inverse_dynamics"]
VISUAL_FORECASTING = TASK_IDS["visual_forecasting"]
N_TASKS = len(TASK_IDS)
TIME_FREQ_DIM = 256


# --------------------------------------------------------------------------------------------------
# Embedding layers
# --------------------------------------------------------------------------------------------------


def timestep_sinusoid(t: Tensor, dim: int = TIME_FREQ_DIM, max_period: float = 10000.0) -> Tensor:
    """diffusers `get_timestep_embedding(t * 1000, dim, flip_sin_to_cos=True, downscale_freq_shift=1)`.

    t in [0, 1] (float [B]) -> float32 [B, dim], cosines first.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1)
    args = (t.float() * 1000.0)[:, None] * exponent.exp()[None, :]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class TimestepEmbedder(nn.Module):
    """t -> sinusoid(t * 1000, 256) -> Linear -> SiLU -> Linear: [B] -> [B, D]."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(TIME_FREQ_DIM, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_sinusoid(t).to(self.mlp[0].weight.dtype))


class SharedLinear(nn.Linear):
    """`nn.Linear` that takes (and ignores) the per-sample embodiment ids, so shared and per-embodiment
    action layers are called alike. Same parameters and names as `nn.Linear` (old checkpoints load)."""

    def forward(self, x: Tensor, embodiment: Tensor | None = None) -> Tensor:
        return super().forward(x)


class EmbodimentLinear(nn.Module):
    """One Linear(in -> out) per embodiment, picked per sample by `embodiment` (int64 [B]); GR00T's
    `CategorySpecificLinear`. Every copy runs on the whole batch and each sample keeps its own copy's output:
    the batch is never reordered, shapes are static, and every copy stays in the graph (a copy whose
    embodiment is absent from the batch gets a zero gradient, so DDP needs no unused-parameter search).
    x [B, ..., in] -> [B, ..., out]."""

    def __init__(self, n: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in self.weight:
            nn.init.xavier_uniform_(w)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, embodiment: Tensor | None) -> Tensor:
        if embodiment is None:
            raise ValueError("per-embodiment action heads need each sample's embodiment (Batch.embodiment)")
        every = torch.einsum("b...i,eoi->eb...o", x, self.weight.to(x.dtype))
        own = every[embodiment, torch.arange(x.shape[0], device=x.device)]
        return own + self.bias[embodiment].to(x.dtype).view(x.shape[0], *([1] * (x.dim() - 2)), -1)


def action_linear(n_embodiments: int, in_features: int, out_features: int) -> SharedLinear | EmbodimentLinear:
    """A layer of the action encoders / head: shared (n 0) or one copy per embodiment."""
    if n_embodiments:
        return EmbodimentLinear(n_embodiments, in_features, out_features)
    return SharedLinear(in_features, out_features)


class ChunkActionEncoder(nn.Module):
    """GR00T-style action encoder: each chunk token sees its own time.

    W1([a * m | m]) -> concat sinusoid(t) -> W2 -> SiLU -> W3: [B, C, A] -> [B, C, D]; with
    `n_embodiments`, each W has one copy per embodiment.
    """

    def __init__(self, action_dim: int, hidden: int, n_embodiments: int = 0) -> None:
        super().__init__()
        self.w1 = action_linear(n_embodiments, 2 * action_dim, hidden)
        self.w2 = action_linear(n_embodiments, hidden + TIME_FREQ_DIM, hidden)
        self.w3 = action_linear(n_embodiments, hidden, hidden)

    def forward(
        self, actions: Tensor, dim_mask: Tensor, t: Tensor, embodiment: Tensor | None = None
    ) -> Tensor:
        h = self.w1(masked_with_flags(actions, dim_mask[:, None, :].expand_as(actions)), embodiment)
        time = timestep_sinusoid(t).to(h.dtype)[:, None, :].expand(-1, h.shape[1], -1)
        return self.w3(F.silu(self.w2(torch.cat([h, time], dim=-1), embodiment)), embodiment)


def masked_with_flags(x: Tensor, mask: Tensor) -> Tensor:
    """[..., A] values and bool mask -> [..., 2A]: the values with masked entries zeroed, then the mask."""
    m = mask.to(x.dtype)
    return torch.cat([x * m, m], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x [B, n, D], shift / scale [B, 1, D]."""
    return x * (1 + scale) + shift


def split_heads(x: Tensor, heads: int) -> Tensor:
    """[B, n, D] -> [B, heads, n, D / heads]."""
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """[B, heads, n, d] -> [B, n, heads * d]."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


# --------------------------------------------------------------------------------------------------
# The MM-DiT block with modality experts
# --------------------------------------------------------------------------------------------------


class RMSNorm(nn.RMSNorm):
    """`nn.RMSNorm` with its weight cast to the input's dtype, so bf16 autocast keeps the fused kernel."""

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


class FeedForward(nn.Module):
    def __init__(self, hidden: int, ratio: float, dropout: float) -> None:
        super().__init__()
        inner = int(hidden * ratio)
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(F.gelu(self.fc1(x), approximate="tanh")))


class CrossAttention(nn.Module):
    """Stream tokens (queries) attend to the condition tokens (keys / values) under a padding mask.

    A sample without any condition token gets a zero update instead of a NaN softmax.
    """

    def __init__(self, hidden: int, cond_dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(cond_dim, 2 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, cond: Tensor, attn_mask: Tensor, has_cond: Tensor) -> Tensor:
        q = split_heads(self.q(self.norm(x)), self.heads)
        k, v = (split_heads(z, self.heads) for z in self.kv(cond).chunk(2, dim=-1))
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask[:, None, None, :], dropout_p=p)
        return self.proj(merge_heads(out)) * has_cond[:, None, None].to(x.dtype)


class StreamExpert(nn.Module):
    """One stream's own weights inside a block: adaLN, norms, QKV, output projection, cross-attn, FFN."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.hidden
        self.ada = nn.Linear(d, 6 * d)  # shift, scale, gate for attention; shift, scale, gate for the FFN
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = RMSNorm(config.head_dim, eps=1e-6) if config.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(config.head_dim, eps=1e-6) if config.qk_norm else nn.Identity()
        self.proj = nn.Linear(d, d)
        self.cross = CrossAttention(d, config.cond_dim, config.heads, config.dropout)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ffn = FeedForward(d, config.ffn_ratio, config.dropout)

    def qkv_heads(self, x: Tensor, shift: Tensor, scale: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = (
            split_heads(z, heads) for z in self.qkv(modulate(self.norm1(x), shift, scale)).chunk(3, -1)
        )
        return self.q_norm(q), self.k_norm(k), v


class MMDiTBlock(nn.Module):
    """Two modality experts (visual, action) sharing one joint self-attention."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.experts = nn.ModuleList([StreamExpert(config), StreamExpert(config)])
        self.captured: list[Tensor] | None = None  # set by `capture_attention` only

    def forward(
        self, x_obs: Tensor, x_act: Tensor, c: Tensor, cond: Tensor, cond_attn_mask: Tensor, has_cond: Tensor
    ) -> tuple[Tensor, Tensor]:
        """x_obs [B, No, D], x_act [B, Na, D]; c: SiLU(conditioning) [B, D]; cond [B, Lc, cond_dim]."""
        xs = (x_obs, x_act)
        mods = [e.ada(c)[:, None, :].chunk(6, dim=-1) for e in self.experts]
        qkvs = [
            e.qkv_heads(x, m[0], m[1], self.heads) for e, x, m in zip(self.experts, xs, mods, strict=True)
        ]
        q, k, v = (torch.cat(z, dim=2) for z in zip(*qkvs, strict=True))
        if self.captured is None:
            p = self.dropout if self.training else 0.0
            joint = merge_heads(F.scaled_dot_product_attention(q, k, v, dropout_p=p))
        else:
            joint = merge_heads(explicit_attention(q, k, v, self.captured))
        outs = joint.split([x_obs.shape[1], x_act.shape[1]], dim=1)
        new = []
        for e, x, m, o in zip(self.experts, xs, mods, outs, strict=True):
            x = x + m[2] * e.proj(o)
            x = x + e.cross(x, cond, cond_attn_mask, has_cond)
            x = x + m[5] * e.ffn(modulate(e.norm2(x), m[3], m[4]))
            new.append(x)
        return new[0], new[1]


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, store: list[Tensor]) -> Tensor:
    """softmax(q k^T / sqrt(d)) v (no mask, no dropout) with its probabilities [B, heads, Nq, Nk] (float32)
    appended to `store`; q / k / v [B, heads, n, d]."""
    probs = torch.softmax((q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1]), dim=-1)
    store.append(probs.detach())
    return probs.to(v.dtype) @ v


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[list[Tensor]]]:
    """Inside, every joint attention of `model` (an `LDAModel`, or a wrapper of one) is computed explicitly
    and its probabilities kept: the yielded list holds one list per block, one [B, heads, Nq, Nk] tensor
    per forward call. Outside (the default, training included) the blocks use `scaled_dot_product_attention`
    and keep nothing. For evaluation and pictures only (`train viz`): no dropout, more memory."""
    blocks = [m for m in model.modules() if isinstance(m, MMDiTBlock)]
    stores: list[list[Tensor]] = [[] for _ in blocks]
    for block, store in zip(blocks, stores, strict=True):
        block.captured = store
    try:
        yield stores
    finally:
        for block in blocks:
            block.captured = None


class FinalLayer(nn.Module):
    """adaLN (shift / scale) then a linear head, both zero-initialised (DiT); with `n_embodiments`, both
    have one copy per embodiment."""

    def __init__(self, hidden: int, out_dim: int, n_embodiments: int = 0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.ada = action_linear(n_embodiments, hidden, 2 * hidden)
        self.linear = action_linear(n_embodiments, hidden, out_dim)

    def forward(self, x: Tensor, c: Tensor, embodiment: Tensor | None = None) -> Tensor:
        shift, scale = self.ada(c, embodiment)[:, None, :].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale), embodiment)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


class LDAModel(nn.Module):
    """The MM-DiT velocity model: returns (action velocity [B, C, A], future-latent velocity [B, N, L])."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, lat, a, n_emb = config.hidden, config.latent_dim, config.action_dim, config.n_embodiments
        # Visual stream.
        self.obs_in = nn.Linear((config.obs_history + 1) * lat, d)
        self.obs_pos = nn.Parameter(torch.empty(config.n_latent_tokens, d))
        self.sinks = nn.Parameter(torch.empty(config.n_sink_tokens, d))
        self.visual_register = nn.Parameter(torch.empty(lat))  # broadcast over the N positions (policy)
        # Action stream.
        # Per-embodiment (config.action_heads): the history, state and chunk encoders and the action head.
        self.history_in = action_linear(n_emb, 2 * a, d)
        self.state_in = action_linear(n_emb, 2 * a, d)
        self.chunk_in = ChunkActionEncoder(a, d, n_emb)
        self.action_pos = nn.Parameter(torch.empty(config.n_action_tokens, d))
        self.action_register = nn.Parameter(torch.empty(config.chunk, d))  # visual forecasting
        # Conditioning.
        self.time_embed = TimestepEmbedder(d)
        self.task_embed = nn.Embedding(N_TASKS, d)
        self.cond_norm = nn.LayerNorm(config.cond_dim, eps=1e-6)
        self.blocks = nn.ModuleList([MMDiTBlock(config) for _ in range(config.layers)])
        self.obs_out = FinalLayer(d, lat)
        self.action_out = FinalLayer(d, a, n_emb)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears, N(0, 0.02) embeddings, zero adaLN / cross-attn output / heads (adaLN-Zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, EmbodimentLinear):
                module.reset_parameters()
        for p in (self.obs_pos, self.sinks, self.visual_register, self.action_pos, self.action_register):
            nn.init.normal_(p, std=0.02)
        nn.init.normal_(self.task_embed.weight, std=0.02)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        zeroed = [self.obs_out.ada, self.obs_out.linear, self.action_out.ada, self.action_out.linear]
        for block in self.blocks:
            for e in block.experts:
                zeroed += [e.ada, e.cross.proj]
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        obs_latents: Tensor,
        future_slot: Tensor,
        state: Tensor,
        state_mask: Tensor,
        history_actions: Tensor,
        history_mask: Tensor,
        actions_in: Tensor,
        action_dim_mask: Tensor,
        t_action: Tensor,
        t_obs: Tensor,
        task: Tensor,
        cond_tokens: Tensor,
        cond_mask: Tensor,
        embodiment: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Velocities of the chunk actions and of the future latent.

        obs_latents [B, F, N, L] (oldest first); future_slot [B, N, L] (noisy or clean future latent, ignored
        for policy); state [B, A] + state_mask; history_actions [B, H, A] + history_mask; actions_in [B, C, A]
        (noisy or clean chunk, ignored for visual forecasting) + action_dim_mask [B, A] (the dimensions the
        embodiment has: a constant of the sample's dataset, never the future chunk's validity);
        t_action, t_obs float [B] (0 = clean, 1 = noise); task int64 [B];
        cond_tokens [B, Lc, cond_dim] + cond_mask bool [B, Lc] (True = real token); embodiment int64 [B]
        (`Batch.embodiment`, read only by per-embodiment action heads).
        Returns v_action [B, C, A] and v_obs [B, N, L] for every sample; the losses pick what counts.
        """
        x_obs = self.embed_visual(obs_latents, future_slot, task)
        x_act = self.embed_actions(
            state, state_mask, history_actions, history_mask, actions_in, action_dim_mask, t_action, task,
            embodiment,
        )  # fmt: skip
        t_cond = torch.where((task == POLICY) | (task == INVERSE_DYNAMICS), t_action, t_obs)
        c = F.silu(self.time_embed(t_cond) + self.task_embed(task))
        cond = self.cond_norm(cond_tokens.to(self.dtype))
        has_cond = cond_mask.any(dim=1)
        cond_attn_mask = cond_mask | ~has_cond[:, None]  # an all-padding row would give a NaN softmax
        for block in self.blocks:
            x_obs, x_act = block(x_obs, x_act, c, cond, cond_attn_mask, has_cond)
        v_obs = self.obs_out(x_obs[:, self.config.n_sink_tokens :], c)
        v_action = self.action_out(x_act[:, -self.config.chunk :], c, embodiment)
        return v_action, v_obs

    def embed_visual(self, obs_latents: Tensor, future_slot: Tensor, task: Tensor) -> Tensor:
        """[B, F, N, L] + [B, N, L] -> [B, S + N, D]: channel-concat per position, project, sinks in front."""
        b, f, n, lat = obs_latents.shape
        slot = torch.where((task == POLICY)[:, None, None], self.visual_register, future_slot.to(self.dtype))
        frames = obs_latents.to(self.dtype).permute(0, 2, 1, 3).reshape(b, n, f * lat)
        x = self.obs_in(torch.cat([frames, slot], dim=-1)) + self.obs_pos
        return torch.cat([self.sinks.expand(b, -1, -1).to(x.dtype), x], dim=1)

    def embed_actions(
        self,
        state: Tensor,
        state_mask: Tensor,
        history_actions: Tensor,
        history_mask: Tensor,
        actions_in: Tensor,
        action_dim_mask: Tensor,
        t_action: Tensor,
        task: Tensor,
        embodiment: Tensor | None = None,
    ) -> Tensor:
        """-> [B, H + 1 + C, D]: history, state, chunk (the action register for visual forecasting)."""
        dt, emb = self.dtype, embodiment
        history = self.history_in(masked_with_flags(history_actions.to(dt), history_mask), emb)
        state_tok = self.state_in(masked_with_flags(state.to(dt), state_mask), emb)[:, None, :]
        chunk = self.chunk_in(actions_in.to(dt), action_dim_mask, t_action, emb)
        chunk = torch.where(
            (task == VISUAL_FORECASTING)[:, None, None], self.action_register.to(chunk.dtype), chunk
        )
        return torch.cat([history, state_tok, chunk], dim=1) + self.action_pos

    @property
    def dtype(self) -> torch.dtype:
        return self.obs_in.weight.dtype


def param_count(config: ModelConfig) -> int:
    """Parameters of `LDAModel(config)`, counted on the meta device (no memory, instant at 1b)."""
    with torch.device("meta"):
        model = LDAModel(config)
    return sum(p.numel() for p in model.parameters())
