# The two commands of the README's Quick start, and their parts.
.PHONY: setup demo test lint typecheck unit sandbox-down bench-startup

setup:
	bash scripts/setup.sh

## Set everything up, start the sandbox, and run the runbook's main jobs against it.
demo: setup
	bash scripts/demo.sh

## Pass the tests: lint, types, then the whole suite against real servers.
test: setup lint typecheck unit

lint:
	.venv/bin/ruff check src tests bench scripts
	.venv/bin/ruff format --check src tests bench scripts

typecheck:
	.venv/bin/mypy

unit:
	.venv/bin/python -m pytest

sandbox-down:
	bash scripts/sandbox.sh down

bench-startup:
	.venv/bin/python bench/startup/run.py
