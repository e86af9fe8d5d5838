"""`bench/gpu_suite.sh --dry`: the GPU suite's code paths on CPU with tiny models; one JSON, every part."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train.configs import get_config
from train.model import param_count

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_writes_one_json_with_every_part(tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([REPO / "bench/gpu_suite.sh", "--dry", "--out", out], check=True, capture_output=True,
                   env=env, timeout=600)  # fmt: skip
    report = json.loads(out.read_text())
    assert report["dry"] is True and report["device"] == "cpu"
    assert not [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    assert report["latents"]["model"] == "tiny-random" and report["latents"]["images_per_s"] > 0
    tiny = report["train"]["tiny"]
    assert "error" not in tiny
    assert tiny["params_M"] == pytest.approx(param_count(get_config("tiny")) / 1e6)
    assert tiny["MFU"] is None  # no peak to divide by on a CPU
    # TFLOP/s x step time = the FLOPs of one step of 4 samples (0.2473 GFLOP each, FlopCounterMode).
    assert tiny["TFLOP_per_s"] * tiny["step_ms"] / 1e3 * 1e12 / 4 == pytest.approx(0.2473e9, rel=1e-3)
    assert tiny["samples_per_s"] == pytest.approx(4 / (tiny["step_ms"] / 1e3))
    assert report["captions"]["model"].startswith("tiny-random") and report["captions"]["captions_per_s"] > 0
