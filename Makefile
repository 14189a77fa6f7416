# The two commands a new user types: `make demo` and `make test`. Both create .venv first.
# `make test-fast` skips the end-to-end and subprocess tests (marked `slow`) for quick development loops.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast clean-venv

setup: $(STAMP)

$(STAMP): setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "ms-suite needs Python 3.11 (MindSpore 2.7.2 wheels); set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip check
	touch $(STAMP)

demo: setup
	$(VENV)/bin/ms-suite train -c configs/quickstart.yaml

test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q tests

test-fast: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -m "not slow" tests

clean-venv:
	rm -rf $(VENV)

.PHONY: docs
docs: setup  # regenerates docs/reference/ from the code, then builds the site into site/ (strict: no broken links)
	$(PY) -m ms_suite.cli.docs_reference
	$(VENV)/bin/mkdocs build --strict --site-dir site
