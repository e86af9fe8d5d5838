#!/usr/bin/env bash
# The GPU suite in one command (bench/gpu_suite.py): DINO latents images/s, training-step MFU of 0.5b and 1b
# in bf16, VLM captions/s, written to ONE JSON (default gpu_suite.json; --out FILE to change).
#   bench/gpu_suite.sh                # on a GPU machine, a few minutes
#   bench/gpu_suite.sh --dry          # CPU, tiny models, a few steps: the same code paths (CI)
#   bench/gpu_suite.sh --compile --vlm-dir /models/Qwen3-VL-4B-Instruct --dino-dir /models/dinov3-vits16
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec "$python" "$here/gpu_suite.py" "$@"
