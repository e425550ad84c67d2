# survpgc — setup, tests, demo, benchmarks.
#
#   make setup   virtual environment + pinned install (idempotent; ~1 s when nothing changed)
#   make test    setup if needed, then ruff (lint + format check) and the whole pytest suite (import contracts included)
#   make test-fast  the same without the tests marked slow (the inner loop while developing)
#   make imports the import contracts of .importlinter alone, with lint-imports' full report
#   make demo    setup if needed, then the end-to-end demo (synthetic cohort + TCGA-LIHC) into runs/demo
#   make bench   run the standalone benchmarks in benchmarks/ (recipe.py, score_diagnosis.py and components.py need inputs)
#   make lock    re-resolve requirements/lock.txt from pyproject.toml (maintainers only)
#
# The environment lives in $(SURVPGC_VENV) when set (CI points it outside the clone so the ~6 GB of
# torch is reused between fresh clones), otherwise in .venv/ inside the checkout.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= $(if $(SURVPGC_VENV),$(SURVPGC_VENV),$(CURDIR)/.venv)
PY := $(VENV)/bin/python
LOCK := requirements/lock.txt
PYTEST_ARGS ?=

.PHONY: setup test test-fast imports lint format bench demo lock clean-venv help

help:
	@sed -n '2,14p' Makefile

setup:
	@VENV="$(VENV)" PYTHON="$(PYTHON)" LOCK="$(LOCK)" bash tools/setup_env.sh

lint: setup
	$(PY) -m ruff check src tests benchmarks tools
	$(PY) -m ruff format --check src tests benchmarks tools

format: setup
	$(PY) -m ruff format src tests benchmarks tools
	$(PY) -m ruff check --fix src tests benchmarks tools

imports: setup
	PYTHONPATH=tools $(VENV)/bin/lint-imports --no-cache

test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-fast: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

demo: setup
	$(PY) -m survpgc.cli demo --out runs/demo

BENCHES := survival_core models extract predict_speed calibration_init feature_store

bench: setup
	@for b in $(BENCHES); do echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py || exit 1; done
	PYTHON=$(PY) bash benchmarks/gpu_check.sh --device cpu

lock:
	@VENV="$(VENV)" PYTHON="$(PYTHON)" LOCK="$(LOCK)" bash tools/setup_env.sh --relock

clean-venv:
	rm -rf "$(VENV)"
