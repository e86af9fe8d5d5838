# Two commands do all the set-up on a fresh machine: `make demo` and `make test` (see README.md).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1

.PHONY: setup hands-env browser demo test lint compat bench clean

$(STAMP): pyproject.toml requirements.lock tools/fetch_robot_models.sh tools/hands_env.sh tools/hands-env.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	@# Robot model files for forward kinematics, outside the clone (robosuite's deps do not fit our pins).
	PIP=$(BIN)/pip bash tools/fetch_robot_models.sh
	@# The MediaPipe Hands estimator's own environment (numpy<2, protobuf<5), outside the clone.
	bash tools/hands_env.sh
	@# No GPU here: the torch installed must be the CPU build, never a multi-GB CUDA one.
	$(BIN)/python -c "import shutil, sys, torch; \
	  sys.exit('CUDA torch installed on a machine without a GPU' if torch.version.cuda and not shutil.which('nvidia-smi') else 0)"
	touch $(STAMP)

setup: $(STAMP) browser

hands-env:
	bash tools/hands_env.sh

# Headless Chromium for the browser tests (Debian's package; skipped with a note when it cannot be installed).
browser:
	bash tools/browser.sh

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/python -m tests.fixtures.egodex --out $(DEMO)/egodex-sample --episodes 8 --frames 90
	$(BIN)/ingest run egodex --input $(DEMO)/egodex-sample --output $(DEMO)/datasets
	@# Random DINOv3 weights: no model is downloaded here (meta/latents.json says so loudly).
	$(BIN)/ingest latents $(DEMO)/datasets/egodex --random-weights
	$(BIN)/ingest validate $(DEMO)/datasets/egodex
	$(BIN)/catalog build $(DEMO)/datasets
	$(BIN)/catalog stats --root $(DEMO)/datasets
	$(BIN)/train launch --mixture mixtures/ei30k.yaml --root $(DEMO)/datasets --config tiny --steps 100 \
	  --batch-size 8 --lr 1e-3 --out $(DEMO)/run
	$(BIN)/train eval --run $(DEMO)/run --samples 16
	@echo "dataset written to $(abspath $(DEMO))/datasets/egodex, training run in $(abspath $(DEMO))/run"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint browser
	$(BIN)/pytest -q

compat: $(STAMP)
	bash tests/compat/run.sh

bench: $(STAMP)
	$(BIN)/python bench/ingest_egodex.py --episodes 24
	$(BIN)/python bench/latents.py
	$(BIN)/python bench/catalog.py
	$(BIN)/python bench/video_cut.py
	$(BIN)/python bench/caption.py
	$(BIN)/python bench/convert_real.py
	$(BIN)/python bench/hands_accuracy.py

clean:
	rm -rf $(DEMO) .pytest_cache
