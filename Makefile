# Holdline: two commands for a newcomer (make demo, make test); everything installs into .venv here.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# aws-sam-cli pins boto3, click, cfn-lint, pydantic... against ours: it lives in a virtual environment of its own.
SAM_VENV := .venv-sam
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM_CLI_VERSION := 1.170.0
# The functions' own interpreter for the local Lambda runtime: functions/requirements.txt plus what the
# python3.11 Lambda runtime provides (holdline_local/runtime/requirements.txt), nothing of the dev tooling.
LAMBDA_VENV := .venv-lambda
LAMBDA_STAMP := $(LAMBDA_VENV)/.installed
RUNTIME_REQS := holdline_local/runtime/requirements.txt
RUNTIME_CONSTRAINTS := holdline_local/runtime/constraints.txt

.PHONY: install demo test lint typecheck unit validate-asl validate-template flow-sync bench local clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(SAM_STAMP):
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "aws-sam-cli==$(SAM_CLI_VERSION)"
	touch $(SAM_STAMP)

$(LAMBDA_STAMP): functions/requirements.txt $(RUNTIME_REQS) $(RUNTIME_CONSTRAINTS)
	test -x $(LAMBDA_VENV)/bin/python || $(PYTHON) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  -r functions/requirements.txt -r $(RUNTIME_REQS) -c $(RUNTIME_CONSTRAINTS)
	touch $(LAMBDA_STAMP)

install: $(STAMP) $(NODE_STAMP) $(SAM_STAMP) $(LAMBDA_STAMP)

## Play one simulated Amazon Connect call end to end on the embedded local stack.
demo: $(STAMP) $(SAM_STAMP) $(LAMBDA_STAMP)
	$(BIN)/holdline simulate

## The whole suite: lint, types, ASL validation, tests.
test: install lint typecheck validate-asl validate-template
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

validate-asl: $(NODE_STAMP)
	@for f in statemachines/*.asl.json; do npx --no-install asl-validator --json-path "$$f" || exit 1; done

## The templates as CloudFormation and SAM see them: cfn-lint (both), sam validate --lint, sam build (no container, ~25 s).
validate-template: $(STAMP) $(SAM_STAMP)
	$(BIN)/cfn-lint template.yaml connect/template.yaml
	$(SAM) validate --lint
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	  { $(SAM) build --build-dir "$$d/build" --cache-dir "$$d/cache" >"$$d/log" 2>&1 || { cat "$$d/log"; exit 1; }; } && \
	  echo "sam build: succeeded (no container)"

## Regenerate connect/template.yaml (the nested Connect integration) from flows/transfer-flow.json (tests fail while they differ).
flow-sync: $(STAMP)
	$(BIN)/python -m holdline_local.flows sync

## Run the local stack in the foreground (Ctrl-C stops it).
local: install
	$(BIN)/holdline local up

bench: install
	$(BIN)/python -m holdline_local.bench --json .benchmarks/results.json

clean:
	rm -rf $(VENV) $(SAM_VENV) $(LAMBDA_VENV) .holdline node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
