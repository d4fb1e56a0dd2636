# `make run`  — create .venv, install spr, run the main job (for now: the SPR training demo).
# `make test` — create .venv with the dev extras, lint, run the whole suite.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip's local-mirror configuration prints one warning per package; keep real errors.
PIP_FILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e . 2>&1 | $(PIP_FILTER)
	$(BIN)/python -c "import spr, mip, compress_extras"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]" 2>&1 | $(PIP_FILTER)
	$(BIN)/python -c "import spr, mip, compress_extras, pytest"
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/python experiments/demo_spr.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python experiments/bench_regularizer.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
