"""``ssmgen demo``: the main job on one config, end to end.

Generates the RTL, streams random sequences through it under cocotb (with random stalls on both
sides), compares with the golden integer model bit for bit, and prints a summary: formats,
cycles per timestep, latency, mismatches, and the quantization error against the float model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .cli import load_single_layer
from .golden import float_model
from .golden.integer_model import dequantize_output, quantize_input, run_integer
from .golden.quantized import describe_formats
from .hw.generate import generate
from .sim.runner import simulate


def _say(message: str) -> None:
    print(f"[ssmgen demo] {message}", file=sys.stderr, flush=True)


def run_demo(config_path, *, out_dir: Path, simulator: str = "verilator", seed: int = 0,
             batch: int = 4, steps: int = 64) -> int:
    if batch < 1 or steps < 2:
        raise ValueError(f"--batch must be >= 1 and --steps >= 2, not {batch} and {steps}")
    model = load_single_layer(config_path, "demo")
    config = model.config
    _say(f"config {config_path}: {model.kind}, H={model.channels}, P={model.states} states, "
         f"lanes={config.hardware.lanes}")

    t0 = time.perf_counter()
    design = generate(model, out_dir)
    _say(f"generated {design.verilog_path} in {time.perf_counter() - t0:.1f} s")

    # Inputs: a smooth random signal within the input format's range (real units).
    rng = np.random.default_rng(seed)
    fmt = config.quant.input.format
    u = np.cumsum(rng.normal(0, 0.3, (batch, steps, model.channels)), axis=1)
    u = np.clip(u, fmt.min_value, fmt.max_value)
    u_int = quantize_input(model, u)
    expected = run_integer(model, u_int)

    _say(f"simulating with {simulator} ({batch} sequences x {steps} timesteps, random stalls; "
         f"the first Verilator build takes a minute) ...")
    t0 = time.perf_counter()
    result = simulate(design.manifest_path, u_int, expected=expected, simulator=simulator,
                      seed=seed, idle_probability=0.2, stall_probability=0.3)
    sim_time = time.perf_counter() - t0

    y_rtl = dequantize_output(model, result.outputs)
    y_float = float_model.run_recurrent(model.float_weights, u)
    err = y_rtl - y_float
    snr = 10 * np.log10(np.sum(y_float ** 2) / max(np.sum(err ** 2), 1e-300))
    mismatches = int(np.count_nonzero(result.outputs != expected)) + len(result.mismatches)
    hw = design.manifest["hardware"]

    print(f"\nssmgen demo: {config.name} ({model.kind}, H={model.channels}, P={model.states})")
    print("  formats:")
    for name, text in describe_formats(model).items():
        print(f"    {name:<11} {text}")
    if model.abar_corrected:
        print(f"    ({model.abar_corrected} Abar pole(s) pulled inside the unit circle)")
    print(f"  hardware:   lanes {hw['lanes']}, {hw['complex_multipliers']} real multipliers per "
          f"complex product, {hw['loop_stages']} pipeline stage(s) in the state-update loop")
    print(f"  cycles/timestep: {result.cycles_per_timestep:g} measured, "
          f"{hw['cycles_per_timestep']} in manifest")
    print(f"  latency:    {result.latency_cycles} cycles measured, {hw['latency_cycles']} in manifest")
    print(f"  simulated:  {result.simulated_cycles} cycles in {sim_time:.1f} s ({simulator})")
    print(f"  RTL vs golden integer model: {expected.size} outputs, mismatches = {mismatches}")
    print(f"  RTL vs float reference: max |error| {np.abs(err).max():.4g}, SNR {snr:.1f} dB")
    print(f"  RTL written to {design.verilog_path}")
    return 0 if mismatches == 0 else 1
