# wbspine — the two commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-base
FULL   := $(VENV)/.installed-test
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_TOOLS := storescu echoscu storescp dciodvfy Orthanc \
                podman buildah newuidmap fuse-overlayfs slirp4netns runc mmdebstrap
DEMO_OUT ?= demo-out

.PHONY: demo test bench faults-table venv system-deps offline default-model default-model-export clean

venv: $(BASE)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The appliance install set (no torch): what `make demo` needs.
$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

# Tests also cover training/export (torch==2.13.0, the CPU build on CPU machines) and the
# MONAI comparison of the inference benchmark.
$(FULL): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,train,bench]'
	touch $@ $(BASE)

# DCMTK, dicom3tools and Orthanc: real DICOM peers and validators for the tests; podman,
# buildah and mmdebstrap build and run the appliance container in tests/deploy.
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing DICOM tools (missing:$$missing)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends dcmtk dicom3tools orthanc \
	    podman buildah uidmap fuse-overlayfs slirp4netns runc mmdebstrap; \
	fi

test: $(FULL) system-deps
	$(BIN)/python -m pytest

# The full loop on the embedded default model: scanner simulator -> `wbspine serve` -> local
# PACS (Orthanc when installed, else a built-in storage SCP); prints measurements vs truth.
demo: $(BASE)
	$(BIN)/python -m dicom_node.demo --out $(DEMO_OUT) --seed 1 --size full

# Retrain the shipped default model from scratch. On a GPU machine (one H200: ~10 min)
# run training/gpu_default_model.sh OUT and then `make default-model-export RUN=OUT/run`;
# `make default-model` does the same here on the CPU (2 cores: about a day; WORKERS=N
# generates phantoms in parallel, ~2.6 GB each). The dataset is kept between runs.
DEFAULT_DATASET := datasets/default-model
RUN ?= runs/default-model
WORKERS ?= 1
default-model: $(FULL)
	@[ -f $(DEFAULT_DATASET)/dataset.json ] || { \
	  $(BIN)/wbspine dataset from-phantoms --out $(DEFAULT_DATASET) --n 30 --seed 100 --size full --val 0.1 --test 0.1 \
	    --workers $(WORKERS) && \
	  $(BIN)/wbspine dataset import-totalseg --out $(DEFAULT_DATASET) --split train; }
	$(BIN)/wbspine train --config training/configs/default_model.toml --set run.out=$(RUN) --resume
	$(MAKE) default-model-export RUN=$(RUN)

# Bundle a trained run as the default model and record its held-out validation (scored
# through the appliance, on each case's own grid) in the manifest and model card.
default-model-export: $(FULL)
	@[ -f $(DEFAULT_DATASET)/dataset.json ] || { echo "$(DEFAULT_DATASET) is missing: make default-model makes it"; exit 2; }
	rm -rf appliance/models/default
	$(BIN)/wbspine export $(RUN)/best.pt --out appliance/models/default --name wbspine-default \
	  --version 1.1.1 --description "Default model: synthetic phantoms + one pseudo-labelled CT; not for clinical use" \
	  --card-extra training/configs/default_model_card.md
	$(BIN)/python -m export.validate appliance/models/default --dataset $(DEFAULT_DATASET) \
	  --case totalseg-example-ct --record

bench: $(FULL)
	$(BIN)/python tests/benchmarks/bench_phantom.py

# The fault suite (issue #9) with its catalogue table: case | fault | expected | result.
faults-table: $(FULL) system-deps
	$(BIN)/python tests/faults/table.py

# Air-gapped sites: image archive + wheelhouse + bundle + deploy files in build/offline
# (deploy/README.md, "Offline install"). Needs podman (or ENGINE=docker) and the base image.
offline: | $(BIN)/python
	PYTHON=$(BIN)/python deploy/offline.sh build/offline

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache build *.egg-info
