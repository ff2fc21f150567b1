# Holdline: two commands for a newcomer (make demo, make test); everything installs into .venv here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install demo test lint typecheck unit validate-asl bench local clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

## Play one simulated Amazon Connect call end to end on the embedded local stack.
demo: install
	$(BIN)/holdline simulate

## The whole suite: lint, types, ASL validation, tests.
test: install lint typecheck validate-asl
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

validate-asl: $(NODE_STAMP)
	@for f in statemachines/*.asl.json; do npx --no-install asl-validator --json-path "$$f" || exit 1; done

## Run the local stack in the foreground (Ctrl-C stops it).
local: install
	$(BIN)/holdline local up

bench: install
	$(BIN)/python -m holdline_local.bench --json .benchmarks/results.json

clean:
	rm -rf $(VENV) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
