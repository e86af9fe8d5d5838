#!/usr/bin/env bash
# Build (once) the separate lerobot 0.3.3 environment used to check that our datasets load in the
# official v2.1 reader. It lives outside the clone and is reused: several GB, minutes the first time.
set -euo pipefail
COMPAT_VENV="${EI_FORGE_COMPAT_VENV:-$HOME/.cache/ei-forge/compat-lerobot033}"
STAMP="$COMPAT_VENV/.ei-forge-ready-v1"
if [ -f "$STAMP" ]; then echo "$COMPAT_VENV"; exit 0; fi
rm -rf "$COMPAT_VENV"
mkdir -p "$(dirname "$COMPAT_VENV")"
python3.11 -m venv "$COMPAT_VENV" >&2
"$COMPAT_VENV/bin/pip" install -q torch==2.7.1 torchvision==0.22.1 \
  'datasets==3.6.0' 'huggingface-hub>=0.34.2,<0.36' jsonlines 'av>=14.2,<16' pillow packaging \
  pyarrow pandas 'numpy<2.3' >&2
"$COMPAT_VENV/bin/pip" install -q --no-deps lerobot==0.3.3 >&2
touch "$STAMP"
echo "$COMPAT_VENV"
