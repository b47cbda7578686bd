# Two commands do everything: `make demo` and `make test` (both create .venv when missing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP = $(VENV)/.installed$(AIRFLOW_VERSION)
# Pin Airflow for one venv, e.g. `make unit AIRFLOW_VERSION=3.3.0 VENV=.venv-min` (.ci/run does).
AIRFLOW_VERSION ?=
export UV_COMPILE_BYTECODE := 1
export UV_LINK_MODE := copy

.PHONY: install test lint typecheck unit demo bench dist clean

# The package with its user-facing extras, plus the development-only dependency groups
# (PEP 735, pyproject's [dependency-groups]; never published).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install -q uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[emulator,bulk]" --group dev \
		$(if $(AIRFLOW_VERSION),"apache-airflow==$(AIRFLOW_VERSION)")
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict truto_airflow

unit: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The sdist and wheel a release would upload (isolated build, as a release would do it), then
# checked by the same tests `make test` runs on its own build: twine check (metadata, README
# rendering), contents, metadata fields, and a fresh project installing the wheel.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/uv build -q --python $(BIN)/python --out-dir dist
	TRUTO_DIST_DIR=dist $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/integration/test_distribution.py tests/integration/test_user_project.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis dist build
