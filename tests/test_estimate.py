"""`train estimate`: its parameter count is `param_count`, its activation formula matches the bytes autograd
really saves (CPU, fp32, `tiny` and `small`, with and without activation checkpointing), its FLOPs match
torch's FlopCounterMode, and the memory arithmetic adds up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from train.cli import app
from train.configs import get_config
from train.estimate import (
    activations,
    block_activations,
    estimate,
    forward_flops,
    saved_activation_bytes,
    train_flops,
)
from train.flow import random_batch, random_cond, training_losses
from train.model import LDAModel, param_count
from train.parallel import apply_block_options

COND_LEN = 8


def _measured(name: str, batch: int, checkpointing: bool) -> int:
    c = get_config(name)
    torch.manual_seed(0)
    model = LDAModel(c).train()
    apply_block_options(model, checkpointing, False)
    inputs = (
        random_batch(c, batch),
        *random_cond(c, batch, length=COND_LEN),
        torch.Generator().manual_seed(0),
    )
    return saved_activation_bytes(model, *inputs, fn=lambda m, *a: training_losses(m, *a))


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_activation_formula_matches_the_saved_tensors(name: str) -> None:
    # Within 2 %: the formula leaves out a few per-sample scalars (masks, has_cond); measured 0.3 % (tiny)
    # and 0.1 % (small) below the saved bytes.
    c = get_config(name)
    assert 4 * 2 * activations(c, COND_LEN, False) == pytest.approx(_measured(name, 2, False), rel=0.02)
    # With checkpointing autograd keeps each block's inputs (T D per block) and what is outside the blocks;
    # the block being recomputed in the backward pass is the formula's extra `block` term, not saved here.
    forward_kept = activations(c, COND_LEN, True) - block_activations(c, COND_LEN)
    assert 4 * 2 * forward_kept == pytest.approx(_measured(name, 2, True), rel=0.05)


def test_parameter_count_and_flops_match_torch() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from train_step import bench_config, meta_flops

    for name, cond in [("tiny", 8), ("1b", 100)]:
        c = bench_config(name)  # 1b: ViT-S/16 latents (196 x 384), Qwen3-VL-4B condition width (2560)
        est = estimate(name, 8, 2, cond_len=cond, latent=(c.n_latent_tokens, c.latent_dim),
                       vlm="none" if name == "tiny" else "qwen3-vl-4b")  # fmt: skip
        assert est.params == param_count(c)
        counted = meta_flops(name, 2, cond)
        assert forward_flops(c, cond) / 1e9 == pytest.approx(counted["fwd_GFLOP_per_sample"], rel=1e-6)
        # The counter skips the input gradients of the first layers (their inputs need none): 0.35 % on
        # tiny, 0.002 % on 1b.
        assert train_flops(c, cond) / 1e9 == pytest.approx(counted["train_GFLOP_per_sample"], rel=0.005)


def test_memory_adds_up_and_fsdp_divides_the_states() -> None:
    ddp = estimate("1b", 256, 8, "h100", "ddp", vlm="qwen3-vl-4b")
    fsdp = estimate("1b", 256, 8, "h100", "fsdp", vlm="qwen3-vl-4b")
    n = ddp.params
    assert ddp.memory_GiB["AdamW state (fp32 m, v)"] == pytest.approx(8 * n / 2**30)
    assert fsdp.memory_GiB["AdamW state (fp32 m, v)"] == pytest.approx(8 * n / 8 / 2**30)
    assert ddp.total_GiB == pytest.approx(sum(ddp.memory_GiB.values()))
    c = get_config("1b", latent_dim=384, n_latent_tokens=196, cond_dim=2560)
    assert ddp.memory_GiB["activations (bf16)"] == pytest.approx(32 * 2 * activations(c, 100, False) / 2**30)
    assert fsdp.total_GiB < ddp.total_GiB
    assert ddp.step_s == pytest.approx(ddp.train_TFLOP_per_step * 1e12 / (8 * 989e12 * 0.35))


def test_cli_prints_the_estimate() -> None:
    out = CliRunner().invoke(app, ["estimate", "--config", "1b", "--batch-size", "32", "--gpus", "8",
                                   "--parallel", "fsdp", "--activation-checkpointing"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "1.784 B parameters" in out.output and "fits" in out.output
    bad = CliRunner().invoke(app, ["estimate", "--gpu", "tpu"])
    assert bad.exit_code == 2
