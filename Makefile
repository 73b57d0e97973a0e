# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is pinned through constraints.txt to the CPU build: an unpinned install pulls GBs of CUDA packages.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --constraint constraints.txt

.PHONY: demo test test-fast test-slow lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e '.[test,parquet,ibl]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/learnrules demo

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -m "not study"

test-fast: lint
	$(PY) -m pytest -m "not slow and not study"

test-slow: $(VENV)/.installed-test
	$(PY) -m pytest -m "slow or study"

clean:
	rm -rf $(VENV) build *.egg-info
