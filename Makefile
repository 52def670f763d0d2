# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
# Each creates what it needs: .venv (workstation: train + dev extras) and .venv-edge (the device: edge extra
# only, no TensorFlow), so the device's tests run where TensorFlow cannot be imported.

PYTHON ?= python3
VENV := .venv
EDGE_VENV := .venv-edge
PIP_FLAGS := --quiet --disable-pip-version-check
DEMO_DIR ?= demo-out

.PHONY: demo test lint venvs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[train,dev]'
	touch $@

$(EDGE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install $(PIP_FLAGS) -e '.[edge]' 'pytest>=8'
	touch $@

venvs: $(VENV)/.installed $(EDGE_VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venvs lint
	MAMMO_EDGE_PYTHON=$(abspath $(EDGE_VENV))/bin/python $(VENV)/bin/pytest

demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/mammo-data synth $(DEMO_DIR)/data --per-class 40 --copies 1 --seed 0
	$(VENV)/bin/mammo-data audit $(DEMO_DIR)/data
	$(VENV)/bin/mammo-data split $(DEMO_DIR)/data --out $(DEMO_DIR)/splits.csv --by patient

clean:
	rm -rf $(VENV) $(EDGE_VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
