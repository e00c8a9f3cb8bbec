# ser_lightning: everything a new user needs, from a machine with only Python 3.11.
#   make train            train ACNT on log-mel features of the built-in demo corpus
#   make train ARGS="model=acnt data=ravdess data.root=/data/ravdess"
#   make serve            serve the latest `make train` run's best model: web page and API on 127.0.0.1:8000
#   make serve ARGS="port=8080 batching.max_wait_ms=10"
#   make test             check the lock, then the default (fast) test suite
#   make install          create .venv with exactly the packages of requirements.lock
#   make lock             regenerate requirements.lock after changing pyproject.toml
#   make docs             build the documentation site into site/ (strict: a broken link fails)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

# The installer is pinned like everything else: a newer uv could resolve or install differently.
UV_VERSION := 0.13.9
UV_HOME := .tools/uv-$(UV_VERSION)
UV ?= $(UV_HOME)/bin/uv
LOCK := requirements.lock
# one resolution for every platform (torch's CUDA wheels are Linux-only markers inside it), with
# hashes; the header names `make lock` as the way to regenerate it
LOCK_FLAGS := pyproject.toml --group dev --group build --group docs --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock" --quiet
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: help install sync lock check-lock train serve test test-slow test-all lint format docs clean clean-all demo

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'
	@echo "targets: install lock check-lock train serve test test-slow test-all lint format docs demo clean clean-all"

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "ser_lightning needs Python 3.11; set PYTHON=/path/to/python3.11")'
	@echo "bootstrapping uv $(UV_VERSION) into $(UV_HOME)"
	@$(PYTHON) -m pip install -qq --disable-pip-version-check --root-user-action=ignore \
		--target $(UV_HOME) uv==$(UV_VERSION)

# Always synchronised (a no-op taking about a second when nothing changed): packages that are
# not in the lock are removed, so .venv cannot drift from requirements.lock. Bytecode is compiled
# at install (about 30 s once; up-to-date files are skipped after): every process then reads it,
# also where PYTHONDONTWRITEBYTECODE is set, instead of compiling torch again (import torch 4.8 s
# -> 3.6 s, Lightning 23 s -> 9.6 s on 2 cores, measured once each after the compile).
install: sync $(STAMP)

sync: $(UV)
	@test -x $(PY) || { echo "creating $(VENV) (first install downloads ~3 GB: torch with its CUDA libraries)"; \
		$(UV) venv --quiet --python $(PYTHON) $(VENV); }
	@$(UV) pip sync --quiet --compile-bytecode --python $(PY) --require-hashes $(LOCK)
	@$(UV) pip install --quiet --python $(PY) --no-deps --no-build-isolation --editable .

# After a change of the lock (or a new .venv): check that the compiled pair loads and say so.
$(STAMP): $(LOCK) pyproject.toml | sync
	@$(PY) -c 'import ser_lightning.utils.environment as e; print(e.install_summary())'
	@touch $@

# keeps every locked version that still fits; LOCK_ARGS=--upgrade (or --upgrade-package NAME) moves on
LOCK_ARGS ?=
lock: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) $(LOCK_ARGS) --output-file $(LOCK)

# Resolves pyproject.toml again, preferring the locked versions: any difference means that a
# dependency changed without relocking.
check-lock: $(UV)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cp $(LOCK) "$$tmp/$(LOCK)" && \
	$(UV) pip compile $(LOCK_FLAGS) --output-file "$$tmp/$(LOCK)" && \
	if ! diff -u $(LOCK) "$$tmp/$(LOCK)" > "$$tmp/diff"; then \
		head -n 40 "$$tmp/diff"; \
		echo "$(LOCK) does not match pyproject.toml: run 'make lock' and commit $(LOCK)" >&2; exit 1; \
	fi

train: install
	$(PY) -m ser_lightning.train $(ARGS)

# The best checkpoint of the latest run under outputs/train/runs (what `make train` writes);
# with none there, `make train` runs first (TRAIN_ARGS are its overrides).
TRAIN_ARGS ?=
serve: install
	@ckpt=$$($(PY) -m ser_lightning.serving.latest outputs/train/runs 2>/dev/null) || { \
		echo "no trained model under outputs/train/runs: training one first (make train)"; \
		$(PY) -m ser_lightning.train $(TRAIN_ARGS) && \
		ckpt=$$($(PY) -m ser_lightning.serving.latest outputs/train/runs); } && \
	echo "serving $$ckpt" && \
	$(PY) -m ser_lightning.serve ckpt_path="$$ckpt" $(ARGS)

demo: install
	$(PY) -m ser_lightning.demo_corpus --root data/demo

# the slowest tests are listed at the end, so that the default suite's budget (~10 min on 2 cores)
# is watched where it is spent
test: check-lock install
	$(PY) -m pytest -m "not slow" --durations=20 $(ARGS)

# the long end-to-end tests (calibration stored by training, eval robustness, the eval and export
# command lines, the temperature inside the ONNX graph, the benchmarks' smoke runs); CI runs them too
test-slow: install
	$(PY) -m pytest -m slow --durations=10 $(ARGS)

test-all: check-lock install
	$(PY) -m pytest $(ARGS)

lint: install
	$(PY) -m ruff check ser_lightning hydra_plugins tests experiments
	$(PY) -m ruff format --check ser_lightning hydra_plugins tests experiments

format: install
	$(PY) -m ruff format ser_lightning hydra_plugins tests experiments
	$(PY) -m ruff check --fix ser_lightning hydra_plugins tests experiments

# The pages of docs/ and the API reference from the docstrings (mkdocs.yml), into site/. Strict:
# any warning (a link to a missing page or heading, a docstring that does not render) fails.
# NO_MKDOCS_2_WARNING silences the Material theme's banner about its end of life (May 2027).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site $(ARGS)

clean:
	rm -rf outputs/train outputs/eval outputs/predict outputs/export outputs/debug .pytest_cache site
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

clean-all: clean
	rm -rf $(VENV) .tools .cache data/demo
