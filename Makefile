# caffegen: two commands on a fresh Debian 12 machine.
#   make sweep   set everything up (Debian packages, .venv, the Caffe build) and run the default sweep
#   make test    set everything up and run the tests
# The Caffe build is cached in ~/.cache/caffegen/caffe/<key> (CAFFEGEN_CACHE overrides), keyed by
# source + fix-set + flags; later runs reuse it. CAFFE_ROOT=/path/to/caffe skips the build.

PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
CAFFE_GPU ?=
SPEC      ?= default
JOBS      ?=
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: setup venv caffe browser sweep test test-bundle clean clean-cache help gpu-bundle

help:
	@echo "make sweep   set up and run the default sweep on the demo data (writes runs/default/report.html)"
	@echo "make test    set up and run the tests"
	@echo "make test-bundle   the GPU-bundle tests: compile the lean Caffe variant (minutes, cached) and bundle it"
	@echo "make setup   only set up: Debian packages, $(VENV), Caffe build (CAFFE_GPU=1 for CUDA)"
	@echo "make caffe   only (re)use or build Caffe into the cache"
	@echo "make gpu-bundle   the lean CUDA build as a self-contained folder <= 64 MiB in .gpu-bundle/ (docs/gpu.md)"
	@echo "make clean   remove $(VENV), runs/ and build litter (the Caffe cache stays)"

setup: venv caffe

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

caffe: venv
ifdef CAFFE_ROOT
	@echo "[setup] CAFFE_ROOT=$(CAFFE_ROOT): using that Caffe, not building one"
	$(BIN)/caffegen doctor
else
	CAFFE_GPU=$(CAFFE_GPU) $(BIN)/python -m caffegen.toolchain
endif

# The tests read the tune's page in a real browser: Debian's headless Chromium (installed once).
browser: venv
	@$(BIN)/python -m caffegen.toolchain --test-packages

sweep: setup
	$(BIN)/caffegen sweep $(SPEC) $(if $(JOBS),--jobs $(JOBS))

# Two phases: the suite on TEST_WORKERS workers (pytest-xdist; a file's tests stay on one worker, so a module's
# fixture, the Ray cluster, is made once), then the tests marked `quiet` alone (a wall-clock budget, a Ray cluster's
# 1-s health checks: they need the machine to themselves). A phase PYTEST_ARGS selects nothing of (exit 5) is not a
# failure; both selecting nothing is.
test: setup browser
	@a=0; b=0; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not bundle and not quiet" $(PYTEST_ARGS) || a=$$?; \
	$(BIN)/python -m pytest -m "quiet and not bundle" $(PYTEST_ARGS) || b=$$?; \
	if [ $$a -eq 5 ] && [ $$b -eq 5 ]; then exit 5; fi; \
	for rc in $$a $$b; do if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi; done

# A second, lean Caffe compile (no OpenCV, no pycaffe, reference BLAS) and the bundle made of it: kept out of
# `make test`, run by CI (.ci/run) as its own step.
test-bundle: setup
	$(BIN)/python -m pytest -m bundle $(PYTEST_ARGS)

# The lean CUDA variant (no OpenCV, no pycaffe, reference BLAS) bundled for a GPU host: docs/gpu.md.
# CAFFE_GPU=0 bundles the lean CPU variant instead (what the tests check).
gpu-bundle: venv
	CAFFE_GPU=$(if $(CAFFE_GPU),$(CAFFE_GPU),1) $(BIN)/python -m caffegen.toolchain --bundle .gpu-bundle

clean:
	rm -rf $(VENV) runs .pytest_cache *.egg-info build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-cache:
	rm -rf $${CAFFEGEN_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/caffegen}/caffe
