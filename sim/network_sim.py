"""Run a generated whole network (``hw/network.py``) in simulation.

:func:`simulate_network` runs a generated design (manifest + Verilog) under the cocotb
testbench ``tb_network`` (the network counterpart of ``runner.simulate``: random stalls,
latency check, scoreboard); :func:`run_network_rtl` is the one-call path an ``--engine rtl``
evaluation uses: generate the Verilog of a quantized network into a cache folder, stream a
batch through the native stream bench (``native_bench``: fast enough for a whole test split),
return logits and predictions, checked against the golden model bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runner import SimulationError, default_cache_dir, run_testbench

__all__ = ["NetworkSimulationResult", "simulate_network", "run_network_rtl"]

TESTBENCH_MODULE = "ssmgen.sim.tb_network"


@dataclass(frozen=True)
class NetworkSimulationResult:
    logits: np.ndarray               #: int64 (batch, classes), ``net.logits_frac`` fraction bits
    predictions: np.ndarray          #: int64 (batch,)
    mismatches: list[str]            #: empty when every output equals the golden model
    latency_cycles: list[int]        #: last input beat -> output beat, per sequence (no stalls)
    simulated_cycles: int


def simulate_network(manifest_path, inputs: np.ndarray, *, expected_logits=None,
                     expected_predictions=None, simulator: str = "verilator", seed: int = 0,
                     idle_probability: float = 0.0, stall_probability: float = 0.0,
                     check_timing: bool = True, cache_dir: Path | None = None,
                     verbose: bool = False) -> NetworkSimulationResult:
    """Run integer ``inputs`` (batch, T, H_in) through the generated network under cocotb.

    With ``expected_logits`` (batch, classes) and ``expected_predictions`` (batch,), the
    testbench compares bit for bit and raises SimulationError listing the first mismatches."""
    if (expected_logits is None) != (expected_predictions is None):
        raise ValueError("expected_logits and expected_predictions must be given together")
    arrays = {"inputs": inputs}
    if expected_logits is not None:
        arrays.update(expected_logits=expected_logits, expected_predictions=expected_predictions)
    res = run_testbench(manifest_path, TESTBENCH_MODULE, arrays,
                        {"expected_logits": None, "expected_predictions": None,
                         "idle_probability": idle_probability,
                         "stall_probability": stall_probability, "check_timing": check_timing},
                        simulator=simulator, seed=seed, cache_dir=cache_dir, verbose=verbose)
    return NetworkSimulationResult(
        logits=res["logits"], predictions=res["predictions"],
        mismatches=[str(s) for s in res["mismatches"]],
        latency_cycles=[int(v) for v in res["latency_cycles"]],
        simulated_cycles=int(res["cycles"]))


def run_network_rtl(net, u_int, *, simulator: str = "verilator", check: bool = True,
                    work_dir=None, cache_dir: Path | None = None, progress=None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Run a quantized network's generated RTL on a batch: the ``--engine rtl`` path.

    net:   ``golden.network.QuantizedNetwork``
    u_int: int64 (batch, T = network.steps, H_in) in ``network.quant.input`` (float inputs:
           ``golden.network.quantize_network_input`` first)
    Returns (logits int64 (batch, classes) with ``net.logits_frac`` fraction bits,
    predictions int64 (batch,)). The sequences stream back to back through the native stream
    bench (``sim/native_bench.py``: no Python per cycle, so a whole test split takes minutes);
    with ``check`` every logit and prediction is compared with
    ``golden.network.run_integer_network`` and any difference raises SimulationError.
    ``progress(done, total)`` is called as sequences finish. The Verilog goes to ``work_dir``
    (default: a folder per network hash under the cache), so repeated calls reuse the build."""
    from ..golden.network import predict, run_integer_network
    from ..hw.generate import generate_network, network_hash
    from .native_bench import run_stream
    from .stream import sequence_words
    u_int = np.asarray(u_int)
    cfg = net.network
    if u_int.ndim != 3 or u_int.shape[1] != cfg.steps or u_int.shape[2] != cfg.inputs:
        raise ValueError(f"input must have shape (batch, T={cfg.steps}, H_in={cfg.inputs}), "
                         f"not {u_int.shape}")
    if work_dir is None:
        work_dir = (cache_dir or default_cache_dir()) / "designs" / network_hash(net)[:16]
    design = generate_network(net, work_dir)
    words = sequence_words(design.manifest["ports"]["u__payload"]["fields"], u_int)
    batch = len(u_int)
    hw = design.manifest["hardware"]
    # Every sequence at full rate plus the pipeline's latency, with a wide margin.
    max_cycles = 2 * (len(words) * hw["cycles_per_timestep"] + hw["latency_cycles"]) + 1000
    run = run_stream(design.manifest_path, words, batch, max_cycles=max_cycles,
                     simulator=simulator, cache_dir=cache_dir, progress=progress)
    out = np.array(run.outputs, dtype=np.int64)
    logits, predictions = out[:, :-1], out[:, -1]
    if check:
        want = run_integer_network(net, u_int)
        want_pred = predict(want)
        bad = [i for i in range(batch) if not (np.array_equal(logits[i], want[i])
                                               and predictions[i] == want_pred[i])]
        if bad:
            first = ", ".join(f"sequence {i}: RTL {logits[i].tolist()} -> {predictions[i]}, "
                              f"golden {want[i].tolist()} -> {want_pred[i]}" for i in bad[:3])
            raise SimulationError(f"{len(bad)} of {batch} sequences differ from the golden "
                                  f"model; first: {first}")
    return logits, predictions
