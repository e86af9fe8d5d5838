#!/usr/bin/env bash
# Fetch (once) the robot model files that forward kinematics needs (ingest/convert/kinematics.py): robosuite
# 1.5.2's GR1 body and Fourier-hand MJCF files, and the meshes of the fingers' last links (their far ends
# are the fingertips); nothing else of the package is kept. The wheel is fetched with `pip download
# --no-deps` (robosuite's own dependencies do not fit our pins) and checked by sha256. The folder lives
# outside the clone (like the lerobot compat env) and is reused; `EI_FORGE_ROBOSUITE_ASSETS`
# points the code at another copy. Prints the assets folder.
set -euo pipefail
PIP="${PIP:-.venv/bin/pip}"
DEST="${EI_FORGE_ROBOSUITE_DIR:-$HOME/.cache/ei-forge/robosuite-1.5.2}"
STAMP="$DEST/.ei-forge-ready-v2"
ASSETS="$DEST/robosuite/models/assets"
if [ -f "$STAMP" ]; then echo "$ASSETS"; exit 0; fi
rm -rf "$DEST"
mkdir -p "$DEST"
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
"$PIP" download -q --no-deps robosuite==1.5.2 -d "$WHEELS" >&2
"$(dirname "$PIP")/python" - "$WHEELS"/robosuite-1.5.2-py3-none-any.whl "$DEST" <<'PY'
import hashlib, sys, zipfile
SHA256 = "b9e02df55de8949739de6ba1d196d2ba59cf33c51a76efcfbe5c2f73cdcf99ce"
wheel, dest = sys.argv[1:]
A = "robosuite/models/assets"
keep = [f"{A}/robots/gr1/robot.xml", f"{A}/grippers/fourier_left_hand.xml", f"{A}/grippers/fourier_right_hand.xml",
        "robosuite-1.5.2.dist-info/licenses/LICENSE"]
keep += [f"{A}/grippers/meshes/fourier_hands/{s}_{link}_link.STL" for s in "LR"
         for link in ("thumb_distal", "index_intermediate", "middle_intermediate", "ring_intermediate",
                      "pinky_intermediate")]
digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if digest != SHA256:
    sys.exit(f"robosuite wheel sha256 {digest} is not the pinned {SHA256}")
with zipfile.ZipFile(wheel) as z:
    for name in keep:
        z.extract(name, dest)
PY
touch "$STAMP"
echo "$ASSETS"
