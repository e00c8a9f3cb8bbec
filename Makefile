# ser_lightning: everything a new user needs, from a machine with only Python 3.11.
#   make train            train ACNT on log-mel features of the built-in demo corpus
#   make train ARGS="model=acnt data=ravdess data.root=/data/ravdess"
#   make test             the default (fast) test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: help install train test test-all lint format clean clean-all demo

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'
	@echo "targets: install train test test-all lint format demo clean clean-all"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "ser_lightning needs Python 3.11; set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) -m ser_lightning.train $(ARGS)

demo: $(STAMP)
	$(PY) -m ser_lightning.data.demo --root data/demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" $(ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check ser_lightning tests experiments
	$(PY) -m ruff format --check ser_lightning tests experiments

format: $(STAMP)
	$(PY) -m ruff format ser_lightning tests experiments
	$(PY) -m ruff check --fix ser_lightning tests experiments

clean:
	rm -rf outputs/train outputs/eval outputs/predict outputs/export outputs/debug .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

clean-all: clean
	rm -rf $(VENV) .cache data/demo
