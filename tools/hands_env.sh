#!/usr/bin/env bash
# Build (once) the MediaPipe Hands estimator's environment (ingest/hands/, docs/HANDS.md): mediapipe 0.10.21
# pins numpy<2 and protobuf<5, so it cannot share .venv. It lives outside the clone (like the lerobot
# compat env and the robot model files) and is reused; `EI_FORGE_HANDS_VENV` points at another copy. The
# stamp is named after the hash of tools/hands-env.txt, so a changed pin list rebuilds it. Prints the
# environment's folder.
set -euo pipefail
cd "$(dirname "$0")/.."
HANDS_VENV="${EI_FORGE_HANDS_VENV:-$HOME/.cache/ei-forge/hands-mediapipe-0.10.21}"
PINS=tools/hands-env.txt
STAMP="$HANDS_VENV/.ei-forge-ready-$(sha256sum "$PINS" | cut -c1-12)"
if [ -f "$STAMP" ]; then echo "$HANDS_VENV"; exit 0; fi
rm -rf "$HANDS_VENV"
mkdir -p "$(dirname "$HANDS_VENV")"
python3.11 -m venv "$HANDS_VENV" >&2
"$HANDS_VENV/bin/pip" install -q --no-deps -r "$PINS" >&2
# the models ship in the wheel: check they load (a hand-free frame, no hands found) before stamping
"$HANDS_VENV/bin/python" - >&2 <<'PY'
import numpy as np
import mediapipe as mp
with mp.solutions.hands.Hands(static_image_mode=True, model_complexity=1) as hands:
    assert hands.process(np.zeros((64, 64, 3), np.uint8)).multi_hand_landmarks is None
PY
touch "$STAMP"
echo "$HANDS_VENV"
