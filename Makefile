# Two commands do all the set-up: `make demo` and `make test` (both create .venv on first use).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
export NUMBA_THREADING_LAYER := workqueue

.PHONY: demo test lint lab bench experiment clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Pinned first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m binsr demo

test: $(VENV)/.installed
	$(PY) -m ruff check binsr tests
	BINSR_QUICK=1 $(PY) -m pytest -q tests
	BINSR_QUICK=1 $(PY) -m pytest -q --nbval-lax notebooks

lint: $(VENV)/.installed
	$(PY) -m ruff check binsr tests

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks

bench: $(VENV)/.installed
	$(PY) -m binsr bench

clean:
	rm -rf $(VENV) runs .pytest_cache
