# Two commands do all the set-up on a fresh machine: `make demo` and `make test` (see README.md).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test lint compat bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	@# No GPU here: the torch installed must be the CPU build, never a multi-GB CUDA one.
	$(BIN)/python -c "import shutil, sys, torch; \
	  sys.exit('CUDA torch installed on a machine without a GPU' if torch.version.cuda and not shutil.which('nvidia-smi') else 0)"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/python -m tests.fixtures.egodex --out $(DEMO)/egodex-sample --episodes 4 --frames 90
	$(BIN)/ingest run egodex --input $(DEMO)/egodex-sample --output $(DEMO)/datasets
	$(BIN)/ingest validate $(DEMO)/datasets/egodex
	@echo "dataset written to $(abspath $(DEMO))/datasets/egodex"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -q

compat: $(STAMP)
	bash tests/compat/run.sh

bench: $(STAMP)
	$(BIN)/python bench/ingest_egodex.py --episodes 24
	$(BIN)/python bench/latents.py
	$(BIN)/python bench/catalog.py

clean:
	rm -rf $(DEMO) .pytest_cache
