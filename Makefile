# Two commands on a fresh machine: `make train` and `make test`. Both install what is missing first.
# The interpreter: an active virtual environment's (VIRTUAL_ENV set: its python), else this
# project's own .venv, made with the first python3 on the PATH on first use (a system Python may
# refuse installs, PEP 668, or should not get them). PYTHON=/path/to/python picks another one.
ifdef VIRTUAL_ENV
PYTHON ?= $(VIRTUAL_ENV)/bin/python
else
PYTHON ?= $(CURDIR)/.venv/bin/python
endif
PIP := $(PYTHON) -m pip
export PYTHON  # scripts started by make (.ci/run's steps) use the same interpreter
GLUE_DIR ?= $(if $(wildcard ../shared/data/glue),$(abspath ../shared/data/glue),)
# Folders given relative (GLUE_DIR=../shared/data/glue make test) are made absolute against this
# folder, so that every process started below (tests run train.py from other folders) finds them.
absolute = $(if $(filter /% ~%,$(1)),$(1),$(abspath $(1)))
override GLUE_DIR := $(call absolute,$(GLUE_DIR))
export GLUE_DIR
ifneq ($(SUPERGLUE_DIR),)
override SUPERGLUE_DIR := $(call absolute,$(SUPERGLUE_DIR))
export SUPERGLUE_DIR
endif
ifneq ($(MAXPOOLBERT_CACHE),)
override MAXPOOLBERT_CACHE := $(call absolute,$(MAXPOOLBERT_CACHE))
export MAXPOOLBERT_CACHE
endif
RUNS ?= outputs
ARGS ?=
# Settings given without ARGS's quotes (`make train ARGS=task=mrpc pooling=cls`: make takes
# pooling=cls for a variable of its own and would drop it): passed on to train.py after ARGS.
MAKE_VARIABLES := PYTHON VIRTUAL_ENV GLUE_DIR SUPERGLUE_DIR MAXPOOLBERT_CACHE RUNS ARGS TEST_JOBS STUDY LAUNCHER JOBS PAGE LAUNCH SWEEP_ARGS
SETTINGS := $(strip $(foreach v,$(filter-out $(MAKE_VARIABLES),$(.VARIABLES)),$(if $(filter command line,$(origin $(v))),'$(v)=$($(v))')))

.PHONY: install install-stats train test test-fast test-slurm test-gpu lint report bench study clean

# The project's virtual environment (only when PYTHON is its python).
$(CURDIR)/.venv/bin/python:
	@command -v python3 >/dev/null || { echo "error: python3 not found: install Python 3.10 or later" >&2; exit 2; }
	@echo "creating the virtual environment .venv with $$(command -v python3) ($$(python3 --version))"
	python3 -m venv .venv || { rm -rf .venv; echo "error: python3 -m venv failed: install the venv module (Debian, Ubuntu: apt install python3-venv), or activate a virtual environment of yours" >&2; exit 2; }

# The stamp holds the interpreter it was made with: another interpreter installs again.
ifneq ($(shell cat .install.stamp 2>/dev/null),$(PYTHON))
.PHONY: .install.stamp
endif

# torch first: the pinned CPU build lies on disk here; a bare `torch` requirement would pull
# a multi-GB CUDA build. An already importable torch (e.g. a CUDA build on a GPU box) is kept.
.install.stamp: pyproject.toml | $(filter $(CURDIR)/.venv/bin/python,$(PYTHON))
	@echo "installing into $(PYTHON) ($$($(PYTHON) --version))"
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,bench]"
	@echo "$(PYTHON)" > $@

# The stamp alone is not enough: another checkout's `pip install -e` (a moved or second clone)
# makes `maxpoolbert` import from elsewhere, so the install is redone when it does.
install: .install.stamp
	@cd / && $(PYTHON) -c "import maxpoolbert, sys; sys.exit(not maxpoolbert.__file__.startswith('$(CURDIR)/'))" \
		2>/dev/null || $(PIP) install -q --no-deps -e "$(CURDIR)"
	@echo "python: $(PYTHON) ($$($(PYTHON) --version))"

# The statistics' reference implementations, for their cross-checks (tests/test_statistics.py).
install-stats: install
	$(PIP) install -q -e ".[stats]"

train: install
	$(PYTHON) train.py $(ARGS) $(SETTINGS)

# Two test processes (pytest-xdist); the tests of a module that share its fixtures stay in one
# (tests/conftest.py). TEST_JOBS=0: one process, as before.
TEST_JOBS ?= 2
test: install
	$(PYTHON) -m pytest -q -n $(TEST_JOBS) --dist loadgroup tests

# Before a commit: the suite without its end-to-end cases (marked slow: real train.py processes,
# training beyond a few steps, sweeps, DDP, SLURM); `make test` (and CI) runs everything.
test-fast: install
	$(PYTHON) -m pytest -q -n $(TEST_JOBS) --dist loadgroup -m "not slow and not slurm" tests

# Against a real single-node SLURM cluster that the tests start and stop (scripts/slurm_cluster.sh;
# root on a Debian-like machine: installs slurm-wlm and munge when missing).
test-slurm: install
	$(PYTHON) -m pytest -q -m slurm tests

# The GPU tests alone (tests/test_gpu.py: skipped with the reason where CUDA is absent).
test-gpu: install
	$(PYTHON) -m pytest -q -m gpu tests

lint: install
	$(PYTHON) -m ruff check maxpoolbert tests scripts train.py

report: install
	$(PYTHON) -m maxpoolbert.report --runs $(RUNS) --out reports $(ARGS)

# A reference study: run or continue it (finished runs are skipped), archive the runs' predictions
# without the gold labels (no GLUE data in the repository: the report reads them from GLUE_DIR), then
# its page, with the report options committed beside the runs (PAGE/runs/report.yaml).
#   make study                          the current study (reference_study_v2, docs/results_v2/), seed by seed
#   make study STUDY=reference_study    the first study (docs/results/); more seeds: ARGS="seed=6,7,8"
#   make study STUDY=fast_modes         bf16 autocast and torch.compile against fp32 eager (docs/fast_modes/), seed by seed
#   make study STUDY=reference_study_full LAUNCHER=gpu_shared JOBS=4    on a GPU machine
STUDY ?= reference_study_v2
LAUNCHER ?= joblib
JOBS ?= 2
PAGE_reference_study_v2 = docs/results_v2
LAUNCH_reference_study_v2 = PYTHON="$(PYTHON)" JOBS=$(JOBS) scripts/study_v2.sh
PAGE_fast_modes = docs/fast_modes
LAUNCH_fast_modes = (status=0; for seed in 1 2 3 4 5; do $(PYTHON) train.py -m experiment=fast_modes study.mode=fp32,bf16 \
	hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS) hydra.sweeper.params.seed=$$seed || status=1; done; \
	$(PYTHON) train.py -m experiment=fast_modes study.mode=compile hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS) \
	'hydra.sweeper.params.seed="range(1,4)"' || status=1; exit $$status)
PAGE ?= $(or $(PAGE_$(STUDY)),docs/results)
LAUNCH ?= $(or $(LAUNCH_$(STUDY)),$(PYTHON) train.py -m experiment=$(STUDY) hydra/launcher=$(LAUNCHER) hydra.launcher.n_jobs=$(JOBS) $(ARGS) $(SETTINGS))
study: install
	$(LAUNCH); \
	status=$$?; $(PYTHON) scripts/archive_predictions.py $(PAGE)/runs && \
	$(PYTHON) -m maxpoolbert.report --runs $(PAGE)/runs --out $(PAGE) && exit $$status

# Where CUDA is present: the GPU benchmark (scripts/bench_gpu.py, bf16 + TF32 on both sides);
# else the CPU ones: a single run (scripts/bench.py) and a seed sweep (scripts/bench_sweep.py, SWEEP_ARGS).
bench: install
	@if $(PYTHON) -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; \
	then $(PYTHON) scripts/bench_gpu.py $(ARGS); else $(PYTHON) scripts/bench.py $(ARGS) && \
	$(PYTHON) scripts/bench_sweep.py $(SWEEP_ARGS); fi

clean:
	rm -rf outputs multirun reports .pytest_cache .install.stamp
