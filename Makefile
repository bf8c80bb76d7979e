# Two commands for a fresh clone with Python >= 3.10 and make: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo demo-sim demo-deploy test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so nothing pulls a multi-GB CUDA build.
$(VENV)/.demo-installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e '.[torch,sklearn,dp,opacus]'
	touch $@

$(VENV)/.test-installed: $(VENV)/.demo-installed
	$(PIP) -e '.[torch,sklearn,dp,opacus,dev]'
	touch $@

demo: demo-deploy

demo-sim: $(VENV)/.demo-installed
	$(BIN)/fedhive simulate examples/digits-mlp/config.toml --out runs/digits-mlp

demo-deploy: $(VENV)/.demo-installed
	$(BIN)/python scripts/demo_deploy.py

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy --strict src/fedhive
	$(BIN)/lint-imports

unit: $(VENV)/.test-installed
	$(BIN)/pytest -n 2 --durations=15

test: lint typecheck unit

bench: $(VENV)/.demo-installed
	$(BIN)/python benchmarks/simulation_overhead.py

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
