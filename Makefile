# Two commands do all set-up on a fresh machine: `make demo` and `make test`; `make docs` builds the documentation.
# torch is pinned through constraints.txt to the CPU build: an unpinned install pulls GBs of CUDA packages.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --constraint constraints.txt

.PHONY: demo test test-fast test-slow lint docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e '.[test,parquet,ibl]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-docs: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e '.[test,parquet,ibl,docs]'
	touch $@ $(VENV)/.installed-test $(VENV)/.installed

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

# The documentation, with warnings as errors; its tutorials run during the build, so a broken one fails it.
docs: $(VENV)/.installed-docs
	rm -rf docs/_build docs/auto_tutorials docs/sg_execution_times.rst
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/auto_tutorials docs/sg_execution_times.rst
