#!/usr/bin/env bash
# `make compat`: write datasets with our pipeline, then load them with the official lerobot 0.3.3.
set -euo pipefail
cd "$(dirname "$0")/../.."
COMPAT_VENV=$(bash tests/compat/make_env.sh)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export RAY_USAGE_STATS_ENABLED=0
.venv/bin/python -m tests.fixtures.egodex --out "$WORK/egodex-sample" --episodes 3 --frames 60
.venv/bin/ingest run egodex --input "$WORK/egodex-sample" --output "$WORK/out" --name fixture --no-progress
datasets=("$WORK/out/fixture")
REAL=../shared/realdata
if [ -d "$REAL/egodex" ]; then
  .venv/bin/ingest run egodex --input "$REAL/egodex" --output "$WORK/out" --name real --no-progress
  datasets+=("$WORK/out/real")
fi
if [ -d "$REAL/oxe_bridge_rlds" ]; then
  .venv/bin/ingest run oxe --input "$REAL/oxe_bridge_rlds/bridge_dataset/1.0.0" --output "$WORK/out" --no-progress
  datasets+=("$WORK/out/oxe")
fi
if [ -d "$REAL/gr00t_demo_robot_sim.PickNPlace" ]; then
  .venv/bin/ingest run lerobot_gr00t_gr1 --input "$REAL/gr00t_demo_robot_sim.PickNPlace" --output "$WORK/out" \
    --no-progress
  datasets+=("$WORK/out/lerobot_gr00t_gr1")
fi
for d in "${datasets[@]}"; do .venv/bin/ingest validate "$d"; done
"$COMPAT_VENV/bin/python" tests/compat/check_lerobot.py "${datasets[@]}"
