"""`train estimate`: memory per GPU and step time of a config, batch and GPU count, from formulas.

Activations (elements per sample; T = T_o + T_a tokens of both streams, D hidden, F FFN width, H heads,
Lc condition tokens, N latent positions, lat latent width, C chunk, A action width), derived by listing
what each op of `MMDiTBlock.forward` keeps for the backward pass (flash-style attention kernels, which
keep q, k, v, the output and one log-sum-exp per head and token, not the T x T matrix):

    per block  = T (22 D + 2 F + 4 H + 6) + 2 experts x (8 D + 2 Lc D)
      22 D per token: block input, norm1 output, modulated input, qkv output (3 D), q and k after their
      RMSNorm (2 D), the joint attention's q, k, v (3 D) and output, the out-projection's input and
      output, the residual after attention, cross-attention (norm output, queries, output), the residual
      after it, norm2 output, modulated input, FFN output; 2 F: fc1 output and GELU output; 4 H + 6: the
      RMSNorm and attention statistics and the three LayerNorms' mean and rstd. Per sample and expert:
      its adaLN output (6 D), two (1 + scale) (2 D), the condition keys and values (2 Lc D).
    outside    = N ((F_obs + 1) lat + 2 D + lat) + T_o D     (visual embedding input, final layer, loss)
               + 2 A (H_a + C) + C (5 D + 256 + A) + T_a D   (action encoders, final layer, loss)
    with activation checkpointing: T D per block (its inputs) + one block recomputed + outside.

`tests/test_estimate.py` checks these against the bytes of every tensor autograd saves (counted with
`torch.autograd.graph.saved_tensors_hooks`, storages deduplicated) for `tiny` and `small` on CPU.

FLOPs: 2 per multiply-add; training = 3 x forward (+ 1 forward recomputed with checkpointing). Per
sample: 6 x (parameters applied per token x tokens) + the attention products (QK^T and AV, 4 T^2 D
forward) + the per-sample terms (adaLN, condition keys / values): `train_flops` spells it out and the test
compares it with torch's FlopCounterMode on the meta device.
"""

from __future__ import annotations

from pydantic import BaseModel

from train.configs import ModelConfig, get_config
from train.model import TIME_FREQ_DIM, param_count

GiB = 2**30

# Usable memory (what torch reports as total) and dense bf16 peak, from NVIDIA's data sheets (SXM parts).
GPUS: dict[str, tuple[float, float]] = {
    "h100": (79.1 * GiB, 989e12),
    "h200": (139.8 * GiB, 989e12),
    "a100": (79.1 * GiB, 312e12),
}
# Frozen condition encoders held in bf16 beside the model: (parameters, token width). Approximate counts
# from the model cards (Qwen3-VL-4B: 4.4 B with its vision tower; hidden size 2560).
VLMS: dict[str, tuple[float, int]] = {"none": (0.0, 0), "qwen3-vl-4b": (4.4e9, 2560)}
RESERVE = 2 * GiB  # CUDA context, cuBLAS workspace, allocator fragmentation (an allowance, not measured)


def _tokens(c: ModelConfig) -> tuple[int, int]:
    return c.n_obs_tokens, c.n_action_tokens


def block_activations(c: ModelConfig, cond_len: int) -> int:
    """Elements one MMDiTBlock keeps for the backward pass, per sample."""
    t = sum(_tokens(c))
    d, f = c.hidden, int(c.hidden * c.ffn_ratio)
    return t * (22 * d + 2 * f + 4 * c.heads + 6) + 2 * (8 * d + 2 * cond_len * d)


def outside_activations(c: ModelConfig) -> int:
    """Elements kept outside the blocks (embeddings, final layers, loss), per sample."""
    t_o, t_a = _tokens(c)
    d, n, lat, a = c.hidden, c.n_latent_tokens, c.latent_dim, c.action_dim
    visual = n * ((c.obs_history + 1) * lat + 2 * d + lat) + t_o * d
    action = 2 * a * (c.history_actions + c.chunk) + c.chunk * (5 * d + TIME_FREQ_DIM + a) + t_a * d
    return visual + action


def activations(c: ModelConfig, cond_len: int, checkpointing: bool) -> int:
    """Elements kept per sample during one training step (peak, at the start of the backward pass)."""
    block = block_activations(c, cond_len)
    kept = c.layers * (sum(_tokens(c)) * c.hidden if checkpointing else block)
    return kept + (block if checkpointing else 0) + outside_activations(c)


def forward_flops(c: ModelConfig, cond_len: int) -> float:
    """FLOPs of one forward pass, per sample (matrix products only)."""
    t_o, t_a = _tokens(c)
    t, d, f, lat, a = t_o + t_a, c.hidden, int(c.hidden * c.ffn_ratio), c.latent_dim, c.action_dim
    per_token = 6 * d * d + 2 * d * f  # qkv, out-projection, cross q and out-projection, FFN
    per_expert = 6 * d * d + cond_len * c.cond_dim * 2 * d  # adaLN, condition keys / values
    attention = 2 * t * t * d + 2 * t * cond_len * d  # joint QK^T + AV, cross QK^T + AV
    blocks = c.layers * (t * per_token + 2 * per_expert + attention)
    n = c.n_latent_tokens
    visual = n * (c.obs_history + 1) * lat * d + 2 * d * d + n * d * lat
    action = (c.history_actions + 1) * 2 * a * d + c.chunk * (2 * a * d + (d + TIME_FREQ_DIM) * d + d * d)
    action += 2 * d * d + c.chunk * d * a
    time = TIME_FREQ_DIM * d + d * d
    return 2.0 * (blocks + visual + action + time)


def train_flops(c: ModelConfig, cond_len: int) -> float:
    """Forward + backward FLOPs per sample (backward = 2 x forward)."""
    return 3 * forward_flops(c, cond_len)


class Estimate(BaseModel):
    config: str
    params: int
    batch_per_gpu: float
    gpus: int
    gpu: str
    parallel: str
    activation_checkpointing: bool
    vlm: str
    memory_GiB: dict[str, float]
    total_GiB: float
    capacity_GiB: float
    fits: bool
    train_TFLOP_per_step: float
    mfu: float
    step_s: float
    samples_per_s: float

    def lines(self) -> list[str]:
        ac = "on" if self.activation_checkpointing else "off"
        out = [f"{self.config}: {self.params / 1e9:.3f} B parameters, {self.gpus} x {self.gpu}, "
               f"{self.parallel}, {self.batch_per_gpu:g} samples per GPU, activation checkpointing {ac}, "
               f"condition encoder {self.vlm}"]  # fmt: skip
        out += [f"  {k:<28} {v:8.2f} GiB" for k, v in self.memory_GiB.items()]
        verdict = "fits" if self.fits else "does NOT fit"
        out.append(f"  {'total per GPU':<28} {self.total_GiB:8.2f} GiB of {self.capacity_GiB:.1f}: {verdict}")
        out.append(f"  step: {self.train_TFLOP_per_step:.1f} TFLOP -> {self.step_s * 1e3:.0f} ms at "
                   f"{self.mfu:.0%} MFU, {self.samples_per_s:.0f} samples/s")  # fmt: skip
        return out


def estimate(config: str = "1b", batch_size: int = 32, gpus: int = 8, gpu: str = "h100",
             parallel: str = "ddp", checkpointing: bool = False, vlm: str = "qwen3-vl-4b",
             mfu: float = 0.35, cond_len: int = 100, latent: tuple[int, int] = (196, 384),
             act_bytes: int = 2) -> Estimate:  # fmt: skip
    """Memory per GPU and step time; `batch_size` is the global batch, bf16 activations (2 bytes)."""
    if parallel not in ("ddp", "fsdp"):
        raise ValueError(f"unknown parallel {parallel!r}: ddp or fsdp")
    if gpu not in GPUS or vlm not in VLMS:
        raise ValueError(f"unknown gpu {gpu!r} ({sorted(GPUS)}) or vlm {vlm!r} ({sorted(VLMS)})")
    vlm_params, vlm_dim = VLMS[vlm]
    shape = {"n_latent_tokens": latent[0], "latent_dim": latent[1]} | (
        {"cond_dim": vlm_dim} if vlm_dim else {}
    )
    c = get_config(config, **shape)
    n = param_count(c)
    shards = gpus if parallel == "fsdp" else 1
    per_gpu = batch_size / gpus
    mem = {"parameters (fp32)": 4 * n / shards, "gradients (fp32)": 4 * n / shards,
           "AdamW state (fp32 m, v)": 8 * n / shards}  # fmt: skip
    if parallel == "fsdp" and gpus > 1:
        root = _outside_params(c)
        # In flight: the root unit and two blocks (one computing, one prefetched), bf16 + fp32 gradients.
        mem["FSDP gathered units"] = 6 * (2 * (n - root) / c.layers + root)
    else:
        mem["bf16 weight copies"] = 2 * n
        if gpus > 1:
            mem["DDP gradient buckets"] = 4 * n
    mem["activations (bf16)"] = per_gpu * act_bytes * activations(c, cond_len, checkpointing)
    mem["condition encoder (bf16)"] = 2 * vlm_params
    mem["reserve"] = RESERVE
    total = sum(mem.values())
    capacity, peak = GPUS[gpu]
    work = train_flops(c, cond_len) + (forward_flops(c, cond_len) if checkpointing else 0.0)
    work = batch_size * (work + 2 * vlm_params * cond_len)
    step = work / (gpus * peak * mfu)
    return Estimate(config=config, params=n, batch_per_gpu=per_gpu, gpus=gpus, gpu=gpu, parallel=parallel,
                    activation_checkpointing=checkpointing, vlm=vlm,
                    memory_GiB={k: v / GiB for k, v in mem.items()}, total_GiB=total / GiB,
                    capacity_GiB=capacity / GiB, fits=total <= capacity, train_TFLOP_per_step=work / 1e12,
                    mfu=mfu, step_s=step, samples_per_s=batch_size / step)  # fmt: skip


def _outside_params(c: ModelConfig) -> int:
    """Parameters outside the blocks (FSDP's root unit)."""
    import torch

    from train.model import MMDiTBlock

    with torch.device("meta"):
        block = sum(p.numel() for p in MMDiTBlock(c).parameters())
    return param_count(c) - c.layers * block


def saved_activation_bytes(model, *inputs, fn) -> int:
    """Bytes of the tensors autograd saves for the backward of `fn(model, *inputs)` (storages counted once,
    parameters excluded): the measurement the formulas are checked against."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(model, *inputs)
    return sum(seen.values())
