#!/usr/bin/env bash
# Fetch (once) the robot model files that forward kinematics needs (ingest/stages/kinematics.py): robosuite
# 1.5.2's GR1 body and Fourier-hand MJCF files. Only the XML is kept (kinematics needs no meshes); the wheel
# is fetched with `pip download --no-deps` because robosuite's own dependencies do not fit our pins. The
# folder lives outside the clone (like the lerobot compat env) and is reused; `EI_FORGE_ROBOSUITE_ASSETS`
# points the code at another copy. Prints the assets folder.
set -euo pipefail
PIP="${PIP:-.venv/bin/pip}"
DEST="${EI_FORGE_ROBOSUITE_DIR:-$HOME/.cache/ei-forge/robosuite-1.5.2}"
STAMP="$DEST/.ei-forge-ready-v1"
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
keep = ("robosuite/models/assets/robots/gr1/robot.xml", "robosuite/models/assets/grippers/fourier_left_hand.xml",
        "robosuite/models/assets/grippers/fourier_right_hand.xml", "robosuite-1.5.2.dist-info/licenses/LICENSE")
digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if digest != SHA256:
    sys.exit(f"robosuite wheel sha256 {digest} is not the pinned {SHA256}")
with zipfile.ZipFile(wheel) as z:
    for name in keep:
        z.extract(name, dest)
PY
touch "$STAMP"
echo "$ASSETS"
