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
STAGE = $(VENV)/bin/mammo-bench stage --log $(DEMO_DIR)/stages.jsonl  # runs one step, prints its time

.PHONY: demo test lint venvs clean mutation system-tools arm64-check pacs-demo

# The device's pinned versions (deploy/constraints.txt) hold in .venv and .venv-edge too, so the tests check what a
# device installs; .venv-tflite cannot take them (tflite-runtime needs numpy < 2, the pinned OpenCV numpy 2).
$(VENV)/.installed: pyproject.toml deploy/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -c deploy/constraints.txt -e '.[train,peers,dev]'
	touch $@

$(EDGE_VENV)/.installed: pyproject.toml deploy/constraints.txt
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install $(PIP_FLAGS) -c deploy/constraints.txt -e '.[edge]' 'pytest>=8'
	touch $@

$(TFLITE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TFLITE_VENV)
	$(TFLITE_VENV)/bin/pip install $(PIP_FLAGS) 'numpy<2' 'tflite-runtime>=2.14' pillow opencv-python-headless \
		pydicom watchdog pynetdicom highdicom starlette uvicorn argon2-cffi dicomweb-client pynacl prometheus-client 'pytest>=8'
	$(TFLITE_VENV)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

venvs: $(VENV)/.installed $(EDGE_VENV)/.installed $(TFLITE_VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# What the tests drive, from Debian: dcmtk (echoscu, storescu, storescp, dsrdump), dicom3tools (dciodvfy), Chromium
# (the pages' browser tests, through Playwright), systemd (systemd-analyze: the units' verify and security checks),
# openssl (install.sh's self-signed certificate for the web app) and Orthanc with its DICOMweb plugin (the PACS the
# device answers into, by C-STORE and by STOW-RS).
# Without root or apt those tests skip and say why.
ORTHANC_DICOMWEB := /usr/share/orthanc/plugins/libOrthancDicomWeb.so
system-tools:
	@if command -v storescu >/dev/null && command -v dciodvfy >/dev/null && command -v chromium >/dev/null \
		&& command -v systemd-analyze >/dev/null && command -v openssl >/dev/null && command -v Orthanc >/dev/null \
		&& [ -e $(ORTHANC_DICOMWEB) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			dcmtk dicom3tools chromium systemd openssl orthanc orthanc-dicomweb >/dev/null; \
	else echo "warning: dcmtk, dicom3tools, chromium, systemd, orthanc or orthanc-dicomweb is missing and cannot be installed here (not root, or no apt)"; fi

# --max-worker-restart 0: a test worker that dies ends the run with its test named (a replaced worker once left the
# run waiting, its group's tests never rescheduled).
test: venvs lint system-tools
	MAMMO_TEST_EDGE_PYTHON=$(abspath $(EDGE_VENV))/bin/python MAMMO_TEST_TFLITE_PYTHON=$(abspath $(TFLITE_VENV))/bin/python \
		$(VENV)/bin/pytest -n 2 --dist loadgroup --max-worker-restart 0

# A clinic's PACS in the loop, after `make demo` (about a minute): Debian's Orthanc on free local ports, a modality's
# study of 4 full-field views sent to it by storescu, routed to the device by the field guide's Lua rule, answered into
# the same study by C-STORE (PROTOCOL=dicomweb: by STOW-RS). Prints the timings and what Orthanc holds; leaves
# Orthanc's storage, the device's folders, every log and Orthanc Explorer's page of the study (a PNG) in $(DEMO_DIR)/pacs.
PROTOCOL ?= dimse
pacs-demo: $(VENV)/.installed system-tools
	@test -f $(DEMO_DIR)/bundle/manifest.json || { echo "no $(DEMO_DIR)/bundle: run \`make demo\` first"; exit 2; }
	rm -rf $(DEMO_DIR)/pacs
	$(VENV)/bin/mammo-bench pacs $(DEMO_DIR)/bundle --studies 1 --protocol $(PROTOCOL) --root $(DEMO_DIR)/pacs \
		--screenshot $(DEMO_DIR)/pacs/orthanc-explorer.png --out $(DEMO_DIR)/pacs/timings.json

# Mutation testing of the device code (not part of `make test`: hours on 2 cores); writes
# benchmarks/results/mutation.json. AGAIN=1 re-runs only the mutants the last run left alive; PENDING=1 with it, only
# those an interrupted run never reached; SAMPLE=N with it, of those never reached N drawn at random (SEED=S, 0 unless
# given), estimating the rest; ONLY=globs with it, only the mutants whose names match.
mutation: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/mutation.py $(if $(AGAIN),--again) $(if $(PENDING),--pending) \
		$(if $(SAMPLE),--sample $(SAMPLE)) $(if $(SEED),--seed $(SEED)) $(if $(ONLY),--only '$(ONLY)')

# The Arm path without a board (root, the internet, about 50 minutes on 2 cores; not part of `make test`): a Debian 12 arm64
# userland under qemu, the offline aarch64 archive installed in it, the bundle's fidelity images on Arm against x86 and
# Keras float. Writes benchmarks/results/arm64-fidelity.json.
BUNDLE ?= $(DEMO_DIR)/bundle
arm64-check: $(VENV)/.installed $(EDGE_VENV)/.installed
	bash deploy/arm64-check.sh $(BUNDLE)

# The whole chain, offline: synthetic data -> a small hybrid from scratch (deterministic) and a small mass detector
# (synthetic films; the first quarter held out, the two dropped in the inbox among them) -> a verified bundle ->
# autotune picks among the variants that passed the gate -> the daemon.
demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)/inbox
	$(STAGE) data -- $(VENV)/bin/mammo-data synth $(DEMO_DIR)/data --per-class 80 --size 96 --copies 1 --seed 0
	$(STAGE) audit -- $(VENV)/bin/mammo-data audit $(DEMO_DIR)/data
	$(STAGE) split -- $(VENV)/bin/mammo-data split $(DEMO_DIR)/data --out $(DEMO_DIR)/splits.csv --by patient
	$(STAGE) train -- $(VENV)/bin/mammo-train --split $(DEMO_DIR)/splits.csv --out $(DEMO_DIR)/run --arch hybrid \
		--input-size 96 --weights none --epochs 4 --lr 1e-3 --batch-size 16 --deterministic --quiet
	$(STAGE) films -- $(VENV)/bin/mammo-data synth $(DEMO_DIR)/films --films 16 --size 192 --seed 1
	$(STAGE) detector -- $(VENV)/bin/mammo-train detector --films $(DEMO_DIR)/films --out $(DEMO_DIR)/detector \
		--epochs 60 --quiet
	$(STAGE) convert -- $(VENV)/bin/mammo-convert $(DEMO_DIR)/run --out $(DEMO_DIR)/bundle --variants int8 --calibration 96 \
		--detector $(DEMO_DIR)/detector --detector-films $(DEMO_DIR)/films
	$(STAGE) autotune -- $(VENV)/bin/mammo-bench autotune $(DEMO_DIR)/bundle --threads 2 --warmup 2 --runs 10 \
		--write-config $(DEMO_DIR)/config.toml
	$(STAGE) samples -- $(VENV)/bin/mammo-data synth $(DEMO_DIR)/samples --per-class 4 --size 96 --copies 0 --seed 99
	cp $(DEMO_DIR)/samples/*/*/*.png $(DEMO_DIR)/inbox/
	cp $(DEMO_DIR)/films/film_001.dcm $(DEMO_DIR)/films/film_001.roi.json $(DEMO_DIR)/inbox/  # a film with 2 regions
	cp $(DEMO_DIR)/films/film_000.dcm $(DEMO_DIR)/inbox/  # a film without regions: answered needs_roi, kept
	printf 'scanner notes, not an image\n' > $(DEMO_DIR)/inbox/notes.png  # refused with its reason, quarantined
	$(STAGE) service -- $(VENV)/bin/mammo-edge run --config $(DEMO_DIR)/config.toml --inbox $(DEMO_DIR)/inbox \
		--results $(DEMO_DIR)/results --archive $(DEMO_DIR)/archive --quarantine $(DEMO_DIR)/quarantine \
		--state $(DEMO_DIR)/state --settle-seconds 0.2 --sidecar-wait 1 --exit-when-idle
	$(VENV)/bin/mammo-bench stages $(DEMO_DIR)/stages.jsonl --out $(DEMO_DIR)/stages.json

clean:
	rm -rf $(VENV) $(EDGE_VENV) $(TFLITE_VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
