# CXR-LT Desktop. Two commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test lint demo installer installer-test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check cxrlt_desktop engine training tests benchmarks installer

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check cxrlt_desktop engine training tests benchmarks installer
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/pytest -q

DEMO_DIR ?= demo
HEADLESS ?=
demo: $(STAMP)
	$(VENV)/bin/cxrlt demo $(DEMO_DIR) $(if $(HEADLESS),--headless,)

installer: $(STAMP)
	$(PY) -m pip install -q -e '.[installer]'
	$(VENV)/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build installer/cxrlt.spec

installer-test: installer
	QT_QPA_PLATFORM=offscreen dist/cxrlt/cxrlt gui --self-test

clean:
	rm -rf build dist .pytest_cache
