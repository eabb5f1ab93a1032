# CXR-LT Desktop. Two commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test lint demo installer installer-test bench clean fuzz

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check cxrlt_desktop engine training tests benchmarks installer fuzz

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check cxrlt_desktop engine training tests benchmarks installer fuzz
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

# The image-input fuzzer (docs/security.md): seeds from fuzz/make_corpus.py, then atheris for
# FUZZ_SECONDS. Findings stop the run with a non-zero status and go to FUZZ_DIR/artifacts/
# (reproduce one with `$(PY) fuzz/fuzz_imageio.py FILE`); handled oddities go to FUZZ_DIR/notable/.
FUZZ_SECONDS ?= 600
FUZZ_DIR ?= fuzz/work
FUZZ_FLAGS ?=
FUZZ_STAMP := $(VENV)/.fuzz-installed

$(FUZZ_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[fuzz]'
	touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	$(PY) fuzz/make_corpus.py $(FUZZ_DIR)/seeds
	mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/artifacts
	FUZZ_NOTABLE_DIR=$(FUZZ_DIR)/notable $(PY) fuzz/fuzz_imageio.py \
		$(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds -max_total_time=$(FUZZ_SECONDS) -timeout=60 \
		-artifact_prefix=$(FUZZ_DIR)/artifacts/ -print_final_stats=1 $(FUZZ_FLAGS)

clean:
	rm -rf build dist .pytest_cache
