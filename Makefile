# Two commands do all the set-up: `make demo` and `make test` (both create .venv on first use).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
export NUMBA_THREADING_LAYER := workqueue

.PHONY: demo test test-browser lint lab book present notebook bench experiment clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Pinned first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m binsr demo

# BINSR_SOLUTIONS=1: the exercise solutions, hidden behind buttons in the notebooks, run in their cells for nbval.
test: $(VENV)/.installed
	$(PY) -m ruff check binsr tests
	$(PY) -m ruff format --check binsr tests
	BINSR_QUICK=1 $(PY) -m pytest -q tests --ignore=tests/browser
	BINSR_QUICK=1 BINSR_SOLUTIONS=1 $(PY) -m pytest -q --nbval-lax notebooks
	$(BROWSER_TESTS)

# Every notebook in JupyterLab, every widget moved, driven by Chromium (tests/browser). Without a Chromium it is
# skipped, and says so; with BINSR_REQUIRE_BROWSER=1 (CI) pytest runs anyway and a missing browser fails.
CHROMIUM := $(or $(BINSR_CHROMIUM),$(shell command -v chromium || command -v chromium-browser))
define BROWSER_TESTS
	@if [ -z "$(CHROMIUM)" ] && [ -z "$$BINSR_REQUIRE_BROWSER" ]; then \
		echo "*** browser tests SKIPPED: no Chromium found (apt-get install chromium, or set BINSR_CHROMIUM) ***"; \
	else \
		echo "browser tests: every notebook in JupyterLab with $(or $(CHROMIUM),no Chromium)"; \
		BINSR_QUICK=1 $(PY) -m pytest -q tests/browser; \
	fi
endef

test-browser: $(VENV)/.installed
	$(BROWSER_TESTS)

# ruff's linter, and its formatter as a check: `ruff format binsr tests` applies it. A statement kept compact on
# purpose (a registry, a table) ends with `# fmt: skip`.
lint: $(VENV)/.installed
	$(PY) -m ruff check binsr tests
	$(PY) -m ruff format --check binsr tests

# Jupyter refuses to run as root (e.g. in a container) without --allow-root. It prints the URL to open, with its
# token; LAB_ARGS adds options, e.g. `make lab LAB_ARGS="--ip=0.0.0.0 --no-browser"` to reach it from the host.
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# The course as a static site, from the notebooks as saved (nothing runs): Sphinx + myst-nb (docs/conf.py). -E reads
# every page afresh; -W -n: a broken link, cross-reference or image fails the build.
BOOK := build/book
book: $(VENV)/.installed
	$(PY) -m sphinx -b html -E -W --keep-going -n -q -c docs . $(BOOK)
	@echo "The course site is built: open file://$(abspath $(BOOK))/index.html"
	@echo "(or serve it: $(PY) -m http.server --directory $(BOOK) 8000, then http://127.0.0.1:8000/)"

# One notebook for class, its code hidden and its widgets live (Voila runs it in a fresh kernel), e.g. NB=03.
# Voila prints the URL; PRESENT_ARGS adds options, e.g. PRESENT_ARGS="--Voila.ip=0.0.0.0" to reach it from the host.
NB ?= 01
PRESENT_PORT ?= 8866
present: $(VENV)/.installed
	@nb="$$(ls notebooks/$(NB)_*.ipynb 2>/dev/null | head -1)"; \
	if [ -z "$$nb" ]; then echo "no notebook notebooks/$(NB)_*.ipynb: NB is its number, 01 to 10" >&2; exit 2; fi; \
	echo "Presenter view of $$nb: open http://127.0.0.1:$(PRESENT_PORT)/ once Voila says it is running (Ctrl-C stops it)"; \
	$(VENV)/bin/voila "$$nb" --no-browser --port=$(PRESENT_PORT) $(PRESENT_ARGS)

# Execute one notebook in full (not quick mode) and save it with its outputs, e.g. NB=06; its figures are then
# slimmed for the repository (binsr.viz.saved), and the seconds its Run All took are printed for its row of the
# run-time table in notebooks/README.md (tests/test_guide.py checks the table against the saved times).
notebook: $(VENV)/.installed
	@nb="$$(ls notebooks/$(NB)_*.ipynb 2>/dev/null | head -1)"; \
	if [ -z "$$nb" ]; then echo "no notebook notebooks/$(NB)_*.ipynb: NB is its number, 01 to 10" >&2; exit 2; fi; \
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1800 "$$nb" && \
	$(PY) -m binsr.viz.saved "$$nb" && \
	$(PY) -c "import sys; from binsr.viz.lesson import run_seconds; print(f'{sys.argv[1]}: Run All took {run_seconds(sys.argv[1]):.0f} s')" "$$nb"

bench: $(VENV)/.installed
	$(PY) -m binsr bench

clean:
	rm -rf $(VENV) runs .pytest_cache build/book
