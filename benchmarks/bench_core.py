"""Core benchmark: prints figures, asserts nothing (tests assert behaviour, this measures).

* golden integer model throughput, in timesteps x states per second, on one core (BLAS threads
  default to 1 here; the line says which setting was used), and the evaluation time of an
  sDigits-sized network (359 sequences x 64 steps, 2 layers of 512 states, H = 32);
* RTL generation time (config -> Verilog) for the example configs;
* simulated cycles per timestep of a fully parallel design (lanes = states; must be 1) and of a
  folded one, measured by the cocotb testbench.

Run: python benchmarks/bench_core.py [--sim verilator|icarus] [--quick] [--golden-only]
"""

from __future__ import annotations

import os

# One core for the golden figures: BLAS reads these when numpy is first imported.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _var in THREAD_VARS:
    os.environ.setdefault(_var, "1")

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ssmgen.design import Design
from ssmgen.golden.discretize import random_weights
from ssmgen.golden.integer_model import run_integer
from ssmgen.golden.network import run_integer_network
from ssmgen.golden.quantize import load_model, quantize_network
from ssmgen.spec.config import parse_config
from ssmgen.spec.weights import NetworkWeights

ROOT = Path(__file__).resolve().parent.parent
# the layer configs (the sweep_*.toml beside them are sweep files)
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml") if not p.name.startswith("sweep_"))


def sized_config(kind, channels, size, *, narrow_acc=False):
    model = {"kind": kind, "channels": channels,
             ("states" if kind == "s5" else "state_size"): size}
    quant = {"defaults": {"rounding": "half_even", "overflow": "saturate"},
             "abar": {"format": "fixed<10,1>"}, "bbar": {"format": "fixed<8,0>"},
             "c": {"format": "fixed<8,0>"}, "d": {"format": "fixed<8,2>"},
             "input": {"format": "fixed<8,3>"}, "state": {"format": "fixed<16,6>"},
             "output": {"format": "fixed<16,8>"}}
    if narrow_acc:
        quant["state_acc"] = {"format": "fixed<20,6>"}
        quant["output_acc"] = {"format": "fixed<20,8>"}
    return parse_config({"name": f"{kind}_{channels}x{size}", "model": model,
                         "weights": {"source": "random", "seed": 0}, "quant": quant})


def _best_time(fn, repeats=3):
    """Best wall time of ``repeats`` calls after a warm-up call (the machine may be shared)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_golden(batch, steps):
    threads = " ".join(f"{var}={os.environ.get(var, 'unset')}" for var in THREAD_VARS)
    print(f"golden integer model throughput (batch x time x states per second; best of 3 after "
          f"a warm-up; {threads})")
    cases = [("s4d", 16, 64, False), ("s4d", 64, 64, False), ("s5", 16, 64, False),
             ("s5", 64, 128, False), ("s5", 16, 64, True)]
    for kind, channels, size, narrow in cases:
        model = load_model(sized_config(kind, channels, size, narrow_acc=narrow))
        fmt = model.config.quant.input.format
        u = np.random.default_rng(0).integers(fmt.min_int, fmt.max_int + 1,
                                              (batch, steps, model.channels))
        elapsed = _best_time(lambda: run_integer(model, u))
        rate = batch * steps * model.states / elapsed
        acc = "narrow acc" if narrow else "full acc"
        print(f"  {kind:<4} H={channels:<3} P={model.states:<5} {acc:<10} batch {batch:<3} "
              f"T {steps:<4}: {rate / 1e6:8.2f} M timestep-states/s ({elapsed:.3f} s)")


def sdigits_sized_network(kind):
    """A random network of the default sDigits shape and 8-bit formats with per-mode states:
    H = 32, 2 layers of 512 states (s4d: 16 modes per channel; s5: P = 512), T = 64, 1 input,
    10 classes."""
    rng = np.random.default_rng(0)
    H, P, layers, T = 32, 512, 2, 64
    layer_formats = {"abar": "fixed<8,1>", "bbar": "fixed<8,-1>", "c": "fixed<8,-1>",
                     "d": "fixed<8,2>", "input": "fixed<8,2>", "output": "fixed<8,2>",
                     "state": "fixed<8,2>"}
    network_formats = {"input": "fixed<8,2>", "encoder": "fixed<8,1>", "encoder_bias": "fixed<8,1>",
                       "mix": "fixed<8,0>", "mix_bias": "fixed<8,0>", "pool": "fixed<8,1>",
                       "decoder": "fixed<8,1>", "decoder_bias": "fixed<8,0>"}
    data = {"name": f"sdigits_{kind}", "weights": {"source": "file", "file": "unused.npz"},
            "model": {"kind": kind, "channels": H,
                      **({"state_size": 2 * P // H} if kind == "s4d" else {"states": P})},
            "quant": {"defaults": {"rounding": "half_even", "overflow": "saturate"},
                      **{name: {"format": f} for name, f in layer_formats.items()}},
            "network": {"inputs": 1, "layers": layers, "steps": T, "classes": 10,
                        "state_int_bits": rng.integers(0, 3, (layers, P)).tolist(),
                        "quant": {name: {"format": f} for name, f in network_formats.items()}}}
    ssm = tuple(random_weights(kind, channels=H, states=P, seed=l, dt_min=0.01, dt_max=0.3)
                for l in range(layers))
    weights = NetworkWeights(rng.normal(0, 1, (H, 1)), rng.normal(0, 0.3, H), ssm,
                             tuple(rng.normal(0, 0.3, (H, H)) for _ in range(layers)),
                             tuple(rng.normal(0, 0.2, H) for _ in range(layers)),
                             rng.normal(0, 1, (10, H)), rng.normal(0, 0.3, 10))
    return quantize_network(parse_config(data), weights)


def bench_golden_network(sequences=359):
    print(f"golden network evaluation, sDigits-sized ({sequences} sequences x 64 steps, "
          f"2 layers x 512 states, H 32)")
    for kind in ("s4d", "s5"):
        qnet = sdigits_sized_network(kind)
        net = qnet.network
        fmt = net.input.format
        u = np.random.default_rng(1).integers(fmt.min_int, fmt.max_int + 1,
                                              (sequences, net.steps, net.inputs))
        elapsed = _best_time(lambda: run_integer_network(qnet, u))
        rate = sequences * net.steps * qnet.config.model.states * net.layers / elapsed
        print(f"  {kind:<4}: {elapsed * 1e3:8.1f} ms ({rate / 1e6:.1f} M timestep-states/s "
              f"over its layers, linear layers included)")


def bench_generation():
    print("RTL generation time (config -> Verilog + manifest)")
    with tempfile.TemporaryDirectory() as tmp:
        Design.load(EXAMPLES[0]).generate(Path(tmp) / "warmup")   # Yosys warm-up
        for path in EXAMPLES:
            design = Design.load(path)
            start = time.perf_counter()
            files = design.generate(Path(tmp) / path.stem)
            elapsed = time.perf_counter() - start
            size = files.verilog_path.stat().st_size / 1024
            print(f"  {path.name:<22} lanes {design.lanes:<3} P {design.config.model.states:<3}: "
                  f"{elapsed:6.2f} s, {size:7.0f} KiB of Verilog")


def bench_cycles(simulator, steps):
    print(f"simulated cycles per timestep ({simulator}, cocotb, no stalls)")
    with tempfile.TemporaryDirectory() as tmp:
        for path in EXAMPLES:
            design = Design.load(path)
            fmt = design.input_quantizer.format
            u = np.random.default_rng(0).integers(fmt.min_int, fmt.max_int + 1,
                                                  (2, steps, design.input_channels))
            start = time.perf_counter()
            sim = design.simulate(u, simulator=simulator, work_dir=Path(tmp) / path.stem,
                                  raise_on_failure=False)
            elapsed = time.perf_counter() - start
            lanes, states = design.lanes, design.config.model.states
            tag = "lanes = all" if lanes == states else f"lanes = {lanes} of {states}"
            print(f"  {path.name:<22} {tag:<16}: {sim.check.cycles_per_timestep:g} cycles/timestep "
                  f"(manifest {design.cycles_per_timestep}), latency "
                  f"{sim.check.latency_cycles} (manifest {design.latency}), "
                  f"failures {len(sim.failures)} [{elapsed:.1f} s incl. build]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--golden-only", action="store_true",
                        help="only the golden model's figures (no RTL generation, no simulation)")
    args = parser.parse_args()
    bench_golden(batch=8 if args.quick else 32, steps=64 if args.quick else 256)
    bench_golden_network()
    if args.golden_only:
        return
    bench_generation()
    bench_cycles(args.sim, steps=50 if args.quick else 200)


if __name__ == "__main__":
    main()
