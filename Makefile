# psytest developer tasks. Every target creates the virtual environment first if needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN    ?= runs/demo-qwen

.PHONY: setup run test test-fast lint clean

# llama-cpp-python is compiled from source, never with -march=native (it crashes in AMX code on some Intel
# CPUs). On Linux x86-64, with runtime CPU dispatch: llama.cpp's CPU kernels are built once per instruction-set
# level (SSE4.2 to AVX-512) and psytest loads the best one this CPU runs, never the AMX one (see
# docs/local-build.md: 1.6x the prompt rate of the AVX2-only build on an AVX-512 CPU; about 35 minutes on 2
# cores the first time, pip reuses the built wheel afterwards). Elsewhere, the portable AVX2 flags.
# `make setup CMAKE_ARGS='$(PORTABLE_CMAKE_ARGS)'` builds the portable one (about 12 minutes).
PORTABLE_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF
DISPATCH_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DLLAVA_BUILD=OFF
ifeq ($(shell uname -sm),Linux x86_64)
export CMAKE_ARGS ?= $(DISPATCH_CMAKE_ARGS)
else
export CMAKE_ARGS ?= $(PORTABLE_CMAKE_ARGS)
endif

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,test]'
	touch $@

setup: $(BIN)/.installed

# The main job: administer BFI-44 to the embedded default model (Qwen2.5 0.5B, offline) under an
# option-order x template design, in both answer modes, and score it. Re-running resumes (sends nothing).
run: setup
	$(BIN)/psytest administer --inventory bfi-44 --option-orders original,reversed \
		--templates numbered,lettered --mode both --out $(RUN)

# The whole suite, one pytest-xdist worker per core (--dist loadfile: each test file runs whole on one
# worker, so a module's shared fixtures are built once). The 15 slowest tests are printed at the end
# (--durations=15 in pyproject.toml). WORKERS=0 runs it in one process.
WORKERS ?= auto
test: setup
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile

# The edit loop, under 2 minutes: every test not marked slow (no local model, no end-to-end run of
# many commands as processes, no fault or kill suite). `make test` before committing.
test-fast: setup
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile -m "not slow"

# Errors and likely bugs (ruff), types (mypy; see [tool.mypy] in pyproject.toml for the modules not yet clean).
lint: setup
	$(BIN)/ruff check psychometrics tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
