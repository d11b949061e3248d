# turnlog developer targets. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo run test cluster-test lint typecheck unit bench clean

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv if missing and install turnlog with every extra (idempotent)

demo: install ## Play the rate-limit-then-resume scenario on an embedded stack and stop it
	$(BIN)/python -m services.demo

run: install ## Run `turnlog up` in the foreground
	$(BIN)/turnlog up

lint: install ## Run ruff and the strict type checker
	$(BIN)/ruff check contracts services tests
	$(BIN)/ruff format --check contracts services tests
	$(BIN)/mypy

test: lint ## Run lint, type checks and the test suite (all but tests/cluster) against real nats-server processes
	$(BIN)/pytest -q --ignore=tests/cluster

cluster-test: install ## Run tests/cluster: a 3-node NATS cluster, leader kill, restarts, runner hand-over, manifests
	$(BIN)/pytest -q tests/cluster

bench: install ## Run the benchmarks and print their tables (ARGS=--quick for a 2-minute run)
	$(BIN)/python -m services.bench $(ARGS)

clean: ## Remove the virtual environment, caches and the default data dir
	rm -rf $(VENV) .turnlog .pytest_cache .mypy_cache .ruff_cache *.egg-info
