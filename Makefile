# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
# Each creates what it needs: .venv (workstation: train + dev extras), .venv-edge (the device: edge extra only,
# no TensorFlow) and .venv-tflite (the device with tflite-runtime, which needs numpy < 2), so the device's tests
# run where TensorFlow cannot be imported, under both runtimes.

PYTHON ?= python3
VENV := .venv
EDGE_VENV := .venv-edge
TFLITE_VENV := .venv-tflite
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

$(TFLITE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TFLITE_VENV)
	$(TFLITE_VENV)/bin/pip install $(PIP_FLAGS) 'numpy<2' 'tflite-runtime>=2.14' pillow opencv-python-headless \
		pydicom watchdog 'pytest>=8'
	$(TFLITE_VENV)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

venvs: $(VENV)/.installed $(EDGE_VENV)/.installed $(TFLITE_VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: venvs lint
	MAMMO_EDGE_PYTHON=$(abspath $(EDGE_VENV))/bin/python MAMMO_TFLITE_PYTHON=$(abspath $(TFLITE_VENV))/bin/python \
		$(VENV)/bin/pytest

demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/mammo-data synth $(DEMO_DIR)/data --per-class 40 --copies 1 --seed 0
	$(VENV)/bin/mammo-data audit $(DEMO_DIR)/data
	$(VENV)/bin/mammo-data split $(DEMO_DIR)/data --out $(DEMO_DIR)/splits.csv --by patient

clean:
	rm -rf $(VENV) $(EDGE_VENV) $(TFLITE_VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
