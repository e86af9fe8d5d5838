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
if [ -d "$REAL/lerobot_v21_lda1b_sim_pick_place" ]; then
  .venv/bin/ingest run lerobot_lda1b_sim --input "$REAL/lerobot_v21_lda1b_sim_pick_place" --output "$WORK/out" \
    --no-progress
  datasets+=("$WORK/out/lerobot_lda1b_sim")
fi
if [ -d "$REAL/lerobot_v21_unitree_g1_inspire" ]; then
  # the sample ships videos for 4 of its 100 episodes: the other 96 are named rejects
  .venv/bin/ingest run lerobot_unitree_g1_inspire --input "$REAL/lerobot_v21_unitree_g1_inspire" \
    --output "$WORK/out" --no-progress --max-reject-ratio 1
  datasets+=("$WORK/out/lerobot_unitree_g1_inspire")
fi
# LeRobot v3.0 and InternData-A1 inputs (generated: no real sample)
.venv/bin/python -m tests.fixtures.lerobot --kind v30 --out "$WORK/lerobot-v30"
.venv/bin/ingest run interndata --input "$WORK/lerobot-v30" --output "$WORK/out" --name interndata_v30 --no-progress
datasets+=("$WORK/out/interndata_v30")
# AgiBot World: generated episodes, and the real proprio_stats.h5 in a generated folder with videos
.venv/bin/python -m tests.fixtures.agibot --out "$WORK/agibot-sample" --episodes 3
.venv/bin/ingest run agibot --input "$WORK/agibot-sample" --output "$WORK/out" --name agibot_fixture --no-progress
datasets+=("$WORK/out/agibot_fixture")
if [ -f "$REAL/agibot_world/proprio_stats_beta_sample/proprio_stats.h5" ]; then
  .venv/bin/python -m tests.fixtures.agibot --out "$WORK/agibot-real" --size 64x48 \
    --proprio "$REAL/agibot_world/proprio_stats_beta_sample/proprio_stats.h5"
  .venv/bin/ingest run agibot --input "$WORK/agibot-real" --output "$WORK/out" --no-progress
  datasets+=("$WORK/out/agibot")
fi
if [ -d "$REAL/agibot_world/a2d_genie_sim_episode" ]; then
  # the real folder as it is: an A2D aligned episode and a lone proprio_stats.h5, no videos
  .venv/bin/ingest run agibot --input "$REAL/agibot_world" --output "$WORK/out" --name agibot_world_real \
    --no-progress
  datasets+=("$WORK/out/agibot_world_real")
fi
# HOT3D: MANO keypoints through smplx with a generated MANO-like model (the real one cannot be shipped)
.venv/bin/python -m tests.fixtures.hot3d "$WORK/hot3d-sample" --mano-dir "$WORK/mano"
.venv/bin/ingest run hot3d --input "$WORK/hot3d-sample" --output "$WORK/out" --name hot3d_fixture \
  --mano-dir "$WORK/mano" --no-progress
datasets+=("$WORK/out/hot3d_fixture")
if [ -d "$REAL/hot3d/data_sample" ]; then
  .venv/bin/python -m tests.fixtures.hot3d "$WORK/hot3d-real" --mano-dir "$WORK/mano" --real "$REAL/hot3d/data_sample"
  .venv/bin/ingest run hot3d --input "$WORK/hot3d-real" --output "$WORK/out" --mano-dir "$WORK/mano" --no-progress
  datasets+=("$WORK/out/hot3d")
fi
# Action-free human video: Ego4D, EPIC-KITCHENS (real annotations over generated stand-in videos), a folder
for k in ego4d epic videos; do
  .venv/bin/python -m tests.fixtures.human --kind $k --out "$WORK/$k-sample"
  .venv/bin/ingest run $k --input "$WORK/$k-sample" --output "$WORK/out" --no-progress
  datasets+=("$WORK/out/$k")
done
if [ -d "$REAL/epic_kitchens_100" ]; then
  .venv/bin/python -m tests.fixtures.human --kind epic --real "$REAL/epic_kitchens_100" --out "$WORK/epic-real"
  .venv/bin/ingest run epic --input "$WORK/epic-real" --output "$WORK/out" --name epic_real --no-progress
  datasets+=("$WORK/out/epic_real")
fi
if [ -d "$REAL/ego4d_goalstep" ]; then
  .venv/bin/python -m tests.fixtures.human --kind ego4d --real "$REAL/ego4d_goalstep" --out "$WORK/ego4d-real"
  .venv/bin/ingest run ego4d --input "$WORK/ego4d-real" --output "$WORK/out" --name ego4d_real --no-progress
  datasets+=("$WORK/out/ego4d_real")
fi
if [ -d "$REAL/egodex" ]; then
  # real egocentric clips (EgoDex's videos alone) as action-free video, then hands estimated in place
  mkdir -p "$WORK/ego-clips"
  for f in basic_pick_and_place/1 open_close/1; do ln -s "$(realpath "$REAL/egodex/$f.mp4")" "$WORK/ego-clips/${f//\//_}.mp4"; done
  .venv/bin/ingest run videos --input "$WORK/ego-clips" --output "$WORK/out" --name ego_clips_hands --no-progress
  .venv/bin/ingest hands "$WORK/out/ego_clips_hands"
  datasets+=("$WORK/out/ego_clips_hands")
fi
if [ -d "$REAL/ssv2" ]; then
  .venv/bin/ingest run ssv2 --input "$REAL/ssv2" --output "$WORK/out" --no-progress --hands mediapipe --workers 1
  datasets+=("$WORK/out/ssv2")
fi
for d in "${datasets[@]}"; do .venv/bin/ingest validate "$d"; done
"$COMPAT_VENV/bin/python" tests/compat/check_lerobot.py "${datasets[@]}"
