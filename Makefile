# Two commands on a fresh machine:  `make reproduce` (the whole pipeline)  and  `make test`.
# Each creates the virtual environment from the lock when it is missing or stale: requirements.lock (torch's
# CUDA build and its CUDA packages) where nvidia-smi finds a GPU, else requirements-cpu.lock (CPU build, no
# CUDA download). TORCH=cpu or TORCH=cuda overrides the detection.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ifeq ($(origin TORCH),undefined)
TORCH := $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
endif
ifeq ($(TORCH),cuda)
LOCK := requirements.lock
else ifeq ($(TORCH),cpu)
LOCK := requirements-cpu.lock
else
$(error TORCH=$(TORCH): expected cpu or cuda)
endif
# The CPU torch wheel's source: the PyTorch CPU index when it answers (asked once; an index that cannot be
# reached would cost pip retries for every package), else pip's own find-links (PIP_FIND_LINKS=<folder>).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SOURCE = $(if $(filter cpu,$(TORCH)),$(shell $(PYTHON) -c "import urllib.request as r; r.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" >/dev/null 2>&1 && echo --extra-index-url $(TORCH_CPU_INDEX)))
STAMP := $(VENV)/.installed-$(TORCH)
KERAS_STAMP := $(VENV)/.installed-keras-$(TORCH)
# Jobs call `cnnrepro`, `snakemake` and `dvc` by name: the environment's bin comes first.
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg
# Parallel job slots for `make reproduce`: the machine's cores unless CORES=N is given.
CORES ?= $(shell nproc 2>/dev/null || echo 1)
PORT ?= 5000

.PHONY: reproduce test test-all keras lint report dvc-repro dvc-exp mlflow-ui system-deps clean-env lock lock-check

# The lock has a sha256 for every package, so pip installs in hash-checking mode: it refuses any package
# the lock does not name (the lock is closed), and `pip check` then proves the set is consistent.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.installed*
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SOURCE) -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

# TensorFlow is an optional extra (the default params train PyTorch only); the tests need it.
$(KERAS_STAMP): $(STAMP) requirements-keras.lock
	$(BIN)/python -m pip install --quiet $(TORCH_SOURCE) -r $(LOCK) -r requirements-keras.lock
	$(BIN)/python -m pip check
	touch $@

keras: $(KERAS_STAMP)

## Regenerate the three locks from pyproject.toml with uv's resolver (pins move only when pyproject.toml
## forces them; UPGRADE=1 lets them all move). TORCH_WHEELS=<folder>: where the CPU torch wheel lies when
## the PyTorch CPU index cannot be reached.
lock: $(STAMP)
	$(BIN)/python tools/lock.py $(if $(UPGRADE),--upgrade)

## Fail when a lock is not what pyproject.toml resolves to (needs the package indexes).
lock-check: $(STAMP)
	$(BIN)/python tools/lock.py --check

## The main job: every stage, from download to reports/comparison.*, under Snakemake. First one screen
## with the plan (jobs, device, estimated time), then a progress line per running training.
reproduce: $(STAMP)
	$(BIN)/cnnrepro reproduce --cores $(CORES)

## The same DAG under DVC, as one pipeline: the directory lock, the MLflow store created once, and one
## parent run exported to every stage (CNNREPRO_PARENT_RUN_ID; one you set yourself is kept, not closed).
## Extra arguments: make dvc-repro DVC_ARGS="train_idx --force"
dvc-repro: $(STAMP)
	$(BIN)/python -m cnnrepro.orchestration.pipeline_run -- $(BIN)/dvc repro $(DVC_ARGS)

## A DVC experiment under the same lock and parent run: make dvc-exp EXP_ARGS="-n two-epochs -S train.overrides.mnist_dense.epochs=2"
## (then `dvc exp show`, `dvc metrics diff`, `dvc plots diff`).
dvc-exp: $(STAMP)
	$(BIN)/python -m cnnrepro.orchestration.pipeline_run -- $(BIN)/dvc exp run $(EXP_ARGS)

## Regenerate the report from whatever runs exist.
report: $(STAMP)
	$(BIN)/cnnrepro report --runs runs --clean-summary data/clean/summary.json --out reports

## The test suite CI runs (the fast subset; slow end-to-end runs are marked `slow`).
test: $(KERAS_STAMP) system-deps
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/pytest -m "not slow"

## Every test, the slow end-to-end runs included.
test-all: $(KERAS_STAMP) system-deps
	$(BIN)/pytest

## The numeric parity tests under other CPU code paths (oneDNN/MKL/ATen ISA caps, TensorFlow without oneDNN):
## make test-isa ISA="avx2 eigen" runs some of them (scripts/test-isa.sh lists them).
.PHONY: test-isa
test-isa: $(KERAS_STAMP)
	PYTHON=$(BIN)/python bash scripts/test-isa.sh $(ISA)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

## Browse the runs (make mlflow-ui PORT=5001): prints the runs page's address in the model-training view.
mlflow-ui: $(STAMP)
	$(BIN)/python -m cnnrepro.tracking.ui --port $(PORT)

## Headless Chromium for the report's HTML tests (Debian's package). Installs nothing unasked: it says what it
## would run, asks on a terminal, and otherwise skips (those tests then skip). INSTALL_CHROMIUM=yes installs
## without asking, INSTALL_CHROMIUM=no never asks. Under CI (CI=true, which CI systems set) it installs
## without asking, as root or through `sudo -n` (never a password prompt), and a failed install fails the
## target; the HTML tests then fail instead of skipping when Chromium is missing.
INSTALL_CHROMIUM ?= ask
system-deps:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	case "$$(printf %s "$$CI" | tr A-Z a-z)" in 1|true|yes) IN_CI=1 ;; *) IN_CI= ;; esac; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif [ -n "$$IN_CI" ]; then SUDO="sudo -n "; else SUDO="sudo "; fi; \
	CMD="$${SUDO}apt-get update && $${SUDO}env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium"; \
	echo "system-deps: chromium is not installed; the report's HTML tests need it (headless, at 1280 px)."; \
	echo "system-deps: to install Debian's package this would run: $$CMD"; \
	ANSWER=$(INSTALL_CHROMIUM); \
	if [ "$$ANSWER" = ask ]; then \
	  if [ -n "$$IN_CI" ]; then echo "system-deps: CI=$$CI: installing without asking"; ANSWER=yes; \
	  elif [ -t 0 ]; then printf "system-deps: run it now? [y/N] "; read ANSWER; else ANSWER=no; fi; \
	fi; \
	case "$$ANSWER" in \
	  y|Y|yes) echo "system-deps: running: $$CMD"; sh -c "$$CMD" && command -v chromium >/dev/null \
	    || { echo "system-deps: installing chromium failed; the HTML tests need it" >&2; exit 1; } ;; \
	  *) echo "system-deps: skipped; the Chromium tests will be skipped (make system-deps INSTALL_CHROMIUM=yes installs it)" ;; \
	esac

clean-env:
	rm -rf $(VENV)

.PHONY: bench-gpu gpu-pack

## Every default training under snakemake on this machine (train.runs_per_gpu side by side per GPU),
## timed in one table: per variant wall time, img/s, share of peak, and the total (data stages first).
bench-gpu: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) data/split/book data/split/keras_example data/prepared/mnist.npz data/prepared/fashion_mnist.npz
	$(BIN)/cnnrepro bench --pipeline --cores $(CORES)

## Fill the ignored .gpu/ for a bare, offline CUDA machine (../shared/gpu/README.md); there: bash .gpu/check.sh
gpu-pack:
	bash scripts/gpu-pack.sh

## The SLURM profile on a real one-node SLURM cluster started here, with an MLflow tracking server:
## needs root and `apt-get install slurm-wlm slurmdbd munge mariadb-server` (README, "On a SLURM cluster").
.PHONY: test-slurm
test-slurm: $(STAMP)
	scripts/slurm-cluster.sh start
	$(BIN)/pytest tests/test_slurm_cluster.py -s
