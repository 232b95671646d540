"""``ssmgen demo``: the main job on one config, end to end.

Generates the RTL, streams random sequences through it under cocotb (with random stalls on both
sides), compares with the golden integer model bit for bit, and prints a summary: formats,
cycles per timestep, latency, mismatches, and the quantization error against the float model.
Works alike for a single layer and a whole network (then the outputs compared are the logits).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .design import Design
from .stimulus import smooth_inputs
from .util.progress import say

__all__ = ["run_demo"]


def run_demo(config_path, *, out_dir: Path, simulator: str = "verilator", seed: int = 0,
             batch: int = 4, steps: int = 64) -> int:
    if batch < 1 or steps < 2:
        raise ValueError(f"--batch must be >= 1 and --steps >= 2, not {batch} and {steps}")
    design = Design.load(config_path)
    config = design.config
    steps = design.steps or steps
    say(f"config {config_path}: {design.kind} of {config.model.kind}, H={config.model.channels}, "
        f"P={config.model.states} states, lanes={design.lanes}")

    t0 = time.perf_counter()
    files = design.generate(out_dir)
    say(f"generated {files.verilog_path} in {time.perf_counter() - t0:.1f} s")

    u = smooth_inputs(design, batch=batch, steps=steps, seed=seed)
    u_int = design.quantize_input(u)
    say(f"simulating with {simulator} ({batch} sequences x {steps} timesteps, random stalls; "
        f"the first Verilator build takes a minute) ...")
    t0 = time.perf_counter()
    sim = design.simulate(u_int, simulator=simulator, seed=seed, idle_probability=0.2,
                          stall_probability=0.3, work_dir=out_dir, raise_on_failure=False)
    sim_time = time.perf_counter() - t0

    expected = design.reference_beats(u_int)
    mismatches = len(sim.failures)
    y_rtl = design.dequantize_output(sim.outputs) if not sim.failures else None
    y_float = design.float_reference(u)

    print(f"\nssmgen demo: {design.name} ({design.kind}, {config.model.kind}, "
          f"H={config.model.channels}, P={config.model.states})")
    print("  formats:")
    for name, text in design.describe_formats().items():
        print(f"    {name:<12} {text}")
    if design.quantized.abar_corrected:
        print(f"    ({design.quantized.abar_corrected} Abar pole(s) pulled inside the unit circle)")
    hw = design.manifest["hardware"]
    print(f"  hardware:   lanes {hw['lanes']}, {hw['complex_multipliers']} real multipliers per "
          f"complex product, {hw['loop_stages']} pipeline stage(s) in the state-update loop")
    measured = sim.check.cycles_per_timestep
    print(f"  cycles/timestep: {measured if measured is None else f'{measured:g}'} measured, "
          f"{design.cycles_per_timestep} in manifest")
    print(f"  latency:    {sim.check.latency_cycles} cycles measured, {design.latency} in manifest")
    print(f"  simulated:  {sim.check.simulated_cycles} cycles in {sim_time:.1f} s ({simulator})")
    print(f"  RTL vs golden integer model: {expected.size} output values, mismatches = {mismatches}")
    for failure in sim.failures[:5]:
        print(f"    {failure}")
    if y_rtl is not None:
        err = y_rtl - y_float
        snr = 10 * np.log10(np.sum(y_float ** 2) / max(np.sum(err ** 2), 1e-300))
        print(f"  RTL vs float reference: max |error| {np.abs(err).max():.4g}, SNR {snr:.1f} dB")
    print(f"  RTL written to {files.verilog_path}")
    return 0 if mismatches == 0 else 1
