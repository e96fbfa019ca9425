# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
AZURITE := node_modules/.bin/azurite

.PHONY: help venv tools test test-fast lint demo demo-rotation bench emulator devhost clean

help:
	@echo "make demo    - run the demo batch end to end on the local emulator and devhost"
	@echo "make demo-rotation - a Key Vault event rotates a secret shared by four instances (report, canary)"
	@echo "make test    - run the whole test suite (coverage of core, orchestrators, activities, triggers: 90 % floor)"
	@echo "make lint    - ruff and mypy, as the GitHub workflow runs them"
	@echo "make bench   - run the benchmark scripts and print their figures"
	@echo "make emulator / make devhost - run one local service in the foreground"

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; set PYTHON=... (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

venv: $(VENV)/.installed

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

tools: venv $(AZURITE)

test: tools
	$(PY) -m pytest --cov --cov-report=term --cov-fail-under=90 tests

test-fast: tools
	$(PY) -m pytest -x -q tests

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

demo: tools
	$(PY) -m examples.demo

demo-rotation: tools
	$(PY) -m examples.demo_rotation

bench: tools
	@for s in benchmarks/*.py; do echo "== $$s"; $(PY) $$s || exit 1; done

emulator: venv
	$(PY) -m emulator --env-file .emulator/emulator.env

devhost: tools
	$(PY) -m devhost start --app function_app.py

clean:
	rm -rf $(VENV) node_modules .devhost .emulator .azurite .pytest_cache .coverage out
