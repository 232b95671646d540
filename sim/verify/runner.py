"""Build a generated design with a simulator and run the cocotb testbench (``testbench.py``) on it.

Builds are cached per Verilog content hash (``sim/simulators.py``), so rerunning the same design
skips the compile (Verilator: seconds for a layer, minutes for a large network).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..simulators import (SimulationError, build_lock, check_simulator, default_cache_dir,
                          log_tail, patched_environ, verilator_env)

__all__ = ["StreamCheck", "check_stream", "stream_budget", "TESTBENCH_MODULE"]

TESTBENCH_MODULE = "ssmgen.sim.verify.testbench"


@dataclass(frozen=True)
class StreamCheck:
    """What the testbench measured on a design."""
    outputs: np.ndarray              #: int64 (batch, outputs per sequence, output fields), no-stall pass
    failures: list[str]              #: mismatching or missing beats, wrong timing; empty = passed
    cycles_per_timestep: float | None  #: mean interval between accepted input beats (no stalls)
    latencies: list[int]             #: per output beat, from the input beat that completes it
    simulated_cycles: int

    @property
    def latency_cycles(self) -> int | None:
        return self.latencies[0] if self.latencies else None


def stream_budget(manifest: dict, batch: int, steps: int, *, idle: float, stall: float) -> int:
    """Cycles one pass may take before the testbench gives up: the beats at full rate plus the
    pipeline's latency, slowed by the stall probabilities, with a wide margin."""
    hw = manifest["hardware"]
    full_rate = batch * steps * hw["cycles_per_timestep"] + hw["latency_cycles"]
    slowdown = 1.0 / max((1.0 - idle) * (1.0 - stall), 0.05)
    return int(4 * full_rate * slowdown) + 1000


def check_stream(manifest_path, inputs: np.ndarray, *, expected: np.ndarray | None = None,
                 simulator: str = "verilator", seed: int = 0, idle_probability: float = 0.0,
                 stall_probability: float = 0.0, check_timing: bool = True,
                 cache_dir: Path | None = None, verbose: bool = False,
                 raise_on_failure: bool = True, log_path=None) -> StreamCheck:
    """Stream input beats through a generated design under cocotb and check what comes out.

    inputs:   int64 (batch, T, input fields) in the manifest's ``u__payload`` field order
    expected: int64 (batch, outputs per sequence, output fields), compared bit for bit
    With ``raise_on_failure`` (the default) any failure raises SimulationError listing the
    first ones; else they are returned in ``failures``. ``log_path``: where to keep the
    simulator's log (by default it is dropped with the run's temporary folder)."""
    inputs = np.asarray(inputs, dtype=np.int64)
    if inputs.ndim != 3 or inputs.shape[0] < 1 or inputs.shape[1] < 1:
        raise ValueError(f"inputs must be int64 (batch, T, fields) with batch, T >= 1, not "
                         f"shape {inputs.shape}")
    manifest = json.loads(Path(manifest_path).read_text())
    arrays = {"inputs": inputs}
    if expected is not None:
        arrays["expected"] = expected
    budget = stream_budget(manifest, inputs.shape[0], inputs.shape[1], idle=idle_probability,
                           stall=stall_probability)
    res = _run_testbench(manifest_path, TESTBENCH_MODULE, arrays,
                         {"expected": None, "idle_probability": idle_probability,
                          "stall_probability": stall_probability, "check_timing": check_timing,
                          "max_cycles": budget},
                         simulator=simulator, seed=seed, cache_dir=cache_dir, verbose=verbose,
                         log_path=log_path)
    check = StreamCheck(
        outputs=res["outputs"], failures=[str(s) for s in res["failures"]],
        cycles_per_timestep=(float(res["cycles_per_timestep"]) if "cycles_per_timestep" in res
                             else None),
        latencies=[int(v) for v in res["latencies"]], simulated_cycles=int(res["cycles"]))
    if raise_on_failure and check.failures:
        first = "\n  ".join(check.failures[:5])
        raise SimulationError(f"{len(check.failures)} failure(s) under {simulator} (seed {seed});"
                              f" first:\n  {first}")
    return check


def _run_testbench(manifest_path, testbench_module: str, arrays: dict, settings: dict, *,
                   simulator: str = "verilator", seed: int = 0, cache_dir: Path | None = None,
                   verbose: bool = False, log_path=None) -> dict:
    """Build (cached by the Verilog's hash) and run a cocotb testbench on a generated design.

    The testbench reads its job from the JSON file named by ``SSMGEN_JOB``: ``manifest``,
    ``results`` (the .npz it must write), ``seed``, every entry of ``settings``, and for each
    entry of ``arrays`` the path of an .npy file holding it (int64). Returns the results .npz as a
    dict (whatever the test's verdict: the caller reads its ``failures``); raises
    SimulationError when the build or the run fails before writing results."""
    check_simulator(simulator)
    from cocotb_tools.runner import get_runner

    manifest_path = Path(manifest_path).resolve()
    manifest = json.loads(manifest_path.read_text())
    verilog_path = manifest_path.parent / manifest["verilog"]
    digest = hashlib.sha256(verilog_path.read_bytes()).hexdigest()[:16]
    build_dir = (cache_dir or default_cache_dir()) / simulator / f"{manifest['top']}-{digest}"

    env = verilator_env() if simulator == "verilator" else {}
    if simulator == "verilator" and shutil.which("ccache"):
        env["OBJCACHE"] = "ccache"
    build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] if simulator == "verilator" else []
    timescale = ("1ns", "1ps")
    build_dir.mkdir(parents=True, exist_ok=True)
    with patched_environ(env), build_lock(build_dir):
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
                                      f"{log_tail(build_dir / 'build.log')}") from None
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
                runner.test(test_module=testbench_module, hdl_toplevel=manifest["top"],
                            build_dir=build_dir, test_dir=tmp, timescale=timescale,
                            results_xml=str(tmp / "results.xml"), seed=seed,
                            extra_env={"SSMGEN_JOB": str(tmp / "job.json")},
                            log_file=None if verbose else log)
                crash = None
            except (SystemExit, Exception) as exc:    # also a failed check: results tell which
                crash = exc
            if log_path is not None and log.exists():
                Path(log_path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, log_path)
            if not (tmp / "results.npz").exists():
                raise SimulationError(f"{simulator} run failed ({crash}); the testbench wrote no "
                                      f"results:\n{log_tail(log)}") from None
            with np.load(tmp / "results.npz") as res:
                return {key: res[key] for key in res.files}
