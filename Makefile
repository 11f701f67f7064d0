# The two commands of the README. Each builds .venv on first use (idempotent: pip runs
# again only when pyproject.toml changed) and then does its job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# One BLAS thread per process keeps timings comparable and avoids oversubscribing 2 cores.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MPLBACKEND := Agg

.PHONY: test course lint bench clean help

help:
	@echo "make course   build, validate, release and autograde the course (the main job)"
	@echo "make test     ruff + the whole pytest suite"
	@echo "make bench    every benchmark in bench/ at full size"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.stamp-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[$*]"
	@touch $@

course: $(VENV)/.stamp-course
	$(BIN)/tito course

lint: $(VENV)/.stamp-course,dev,deploy,cluster
	$(BIN)/ruff check .

test: $(VENV)/.stamp-course,dev,deploy,cluster
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(VENV)/.stamp-course,dev,deploy,cluster
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf course .pytest_cache .ruff_cache .hypothesis
