"""Core benchmark: prints figures, asserts nothing (tests assert behaviour, this measures).

* golden integer model throughput, in timesteps x states per second;
* RTL generation time (config -> Verilog) for the example configs;
* simulated cycles per timestep of a fully parallel design (lanes = states; must be 1) and of a
  folded one, measured by the cocotb testbench.

Run: python benchmarks/bench_core.py [--sim verilator|icarus] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ssmgen.design import Design
from ssmgen.golden.integer_model import run_integer
from ssmgen.golden.quantize import load_model
from ssmgen.spec.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


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


def bench_golden(batch, steps):
    print("golden integer model throughput (batch x time x states per second)")
    cases = [("s4d", 16, 64, False), ("s4d", 64, 64, False), ("s5", 16, 64, False),
             ("s5", 64, 128, False), ("s5", 16, 64, True)]
    for kind, channels, size, narrow in cases:
        model = load_model(sized_config(kind, channels, size, narrow_acc=narrow))
        fmt = model.config.quant.input.format
        u = np.random.default_rng(0).integers(fmt.min_int, fmt.max_int + 1,
                                              (batch, steps, model.channels))
        start = time.perf_counter()
        run_integer(model, u)
        elapsed = time.perf_counter() - start
        rate = batch * steps * model.states / elapsed
        acc = "narrow acc" if narrow else "full acc"
        print(f"  {kind:<4} H={channels:<3} P={model.states:<5} {acc:<10} batch {batch:<3} "
              f"T {steps:<4}: {rate / 1e6:8.2f} M timestep-states/s ({elapsed:.2f} s)")


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
    args = parser.parse_args()
    bench_golden(batch=8 if args.quick else 32, steps=64 if args.quick else 256)
    bench_generation()
    bench_cycles(args.sim, steps=50 if args.quick else 200)


if __name__ == "__main__":
    main()
