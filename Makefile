# The two commands a new user types: `make demo` and `make test`. Both create the environments first:
# .venv (the suite) and .venv-insight (MindInsight, which needs an older protobuf than onnx allows).
# `make test-fast` skips the end-to-end and subprocess tests (marked `slow`) for quick development loops.
# Both run pytest in two worker processes (pytest-xdist); tests that share a module's trained run stay on one.
PYTEST := -m pytest -q -n 2 --dist loadgroup
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INSIGHT_VENV := .venv-insight
INSIGHT_STAMP := $(INSIGHT_VENV)/.installed

.PHONY: setup demo test test-fast docs zoo-stats clean-venv check-python

setup: $(STAMP) $(INSIGHT_STAMP)

check-python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "ms-suite needs Python 3.11 (MindSpore 2.7.2 wheels); set PYTHON=/path/to/python3.11"'

$(STAMP): setup.py | check-python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip check
	touch $(STAMP)

$(INSIGHT_STAMP): requirements-insight.txt | check-python
	$(PYTHON) -m venv $(INSIGHT_VENV)
	$(INSIGHT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INSIGHT_VENV)/bin/python -m pip install --quiet -r requirements-insight.txt
	$(INSIGHT_VENV)/bin/python -m pip check
	touch $(INSIGHT_STAMP)

demo: setup
	$(VENV)/bin/ms-suite train -c configs/quickstart.yaml

test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MS_SUITE_INSIGHT_BIN="$(CURDIR)/$(INSIGHT_VENV)/bin" $(PY) $(PYTEST) --durations=15 tests

test-fast: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MS_SUITE_INSIGHT_BIN="$(CURDIR)/$(INSIGHT_VENV)/bin" $(PY) $(PYTEST) -m "not slow" tests

zoo-stats: setup  # after changing a model family: its parameter and FLOP counts, shipped for `ms-suite list`
	$(PY) -c "from ms_suite.models.stats import write_zoo_stats; print(write_zoo_stats())"

clean-venv:
	rm -rf $(VENV) $(INSIGHT_VENV)

docs: setup  # regenerates docs/reference/ from the code, then builds the site into site/ (strict: no broken links)
	$(PY) -m ms_suite.cli.docs_reference
	$(VENV)/bin/mkdocs build --strict --site-dir site
