# The two commands of the README's Quick start, and their parts.
.PHONY: setup setup-demo demo demo-deploy test lint typecheck unit sandbox-down bench-startup

## Install everything the tests use (setup-demo: only what the demo runs).
setup:
	bash scripts/setup.sh test

setup-demo:
	bash scripts/setup.sh demo

## Install what the demo runs, start the sandbox, and run the runbook's main jobs against it.
demo: setup-demo
	bash scripts/demo.sh

## The deploy demo on the compose stack: v2 passes the health gate, v2-errors is rolled back.
demo-deploy:
	bash scripts/setup.sh deploy-demo
	bash scripts/demo-deploy.sh

## Pass the tests: lint, types, then the whole suite against real servers.
test: setup lint typecheck unit

lint:
	.venv/bin/ruff check src tests bench scripts
	.venv/bin/ruff format --check src tests bench scripts

typecheck:
	.venv/bin/mypy

unit:
	bash scripts/test.sh

sandbox-down:
	bash scripts/sandbox.sh down

bench-startup:
	.venv/bin/python bench/startup/run.py
