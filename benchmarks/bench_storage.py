"""Cost that follows lanes, not the state count: one S4D layer (H = 16 channels) with P = 64,
128, 256 and 512 complex states at lanes = 1 and 4, its states and per-state weights in block RAM
(``hardware.storage = "memory"``) and, for comparison, in registers and LUT ROMs.

Prints Yosys's LUT4 / FF / DSP / block RAM counts (``synth_ice40 -dsp -dff``, or the ``--target``
given) beside the analytic estimate's, and for each lane count how much LUTs and FFs grow per
doubling of P. Yosys only (no place and route): about a minute per design on 2 cores.

    python benchmarks/bench_storage.py [--target ice40-up5k] [--storage memory registers]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from ssmgen.design import Design
from ssmgen.spec.config import parse_config

STATES = (64, 128, 256, 512)
LANES = (1, 4)
CHANNELS = 16


def layer_config(states: int, lanes: int, storage: str) -> dict:
    """An 8-bit-weight, 16-bit-state S4D layer of ``states`` complex states."""
    formats = {"abar": "fixed<10,1>", "bbar": "fixed<8,-1>", "c": "fixed<8,1>",
               "d": "fixed<8,2>", "input": "fixed<8,3>", "state": "fixed<16,5>",
               "output": "fixed<12,4>"}
    quant = {"defaults": {"rounding": "half_even", "overflow": "saturate"},
             **{name: {"format": fmt} for name, fmt in formats.items()}}
    return {"name": f"p{states}_lanes{lanes}_{storage}",
            "model": {"kind": "s4d", "channels": CHANNELS, "state_size": 2 * states // CHANNELS},
            "weights": {"source": "random", "seed": 1}, "quant": quant,
            "hardware": {"lanes": lanes, "storage": storage}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="ice40-up5k")
    parser.add_argument("--storage", nargs="+", default=["memory", "registers"],
                        choices=["memory", "registers"])
    parser.add_argument("--states", nargs="+", type=int, default=list(STATES))
    args = parser.parse_args(argv)
    keys = ("luts", "ffs", "dsps", "brams")
    print(f"target {args.target}; S4D layer, H = {CHANNELS}; yosys (estimate)")
    print(f"{'storage':9} {'lanes':>5} {'P':>5}  " + "  ".join(f"{k:>16}" for k in keys)
          + "  seconds")
    for storage in args.storage:
        for lanes in LANES:
            previous = None
            for states in args.states:
                design = Design.from_config(parse_config(layer_config(states, lanes, storage)))
                started = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    report = design.synthesize(args.target, tmp, place=False,
                                               progress=lambda *_: None)
                yosys, estimate = report["accelerator"], design.estimate(args.target)
                cells = "  ".join(f"{yosys.get(k, 0):>7} ({estimate.get(k, 0):>6})" for k in keys)
                growth = ""
                if previous is not None:
                    growth = "  x2 P: " + ", ".join(
                        f"{k} {100 * (yosys[k] / previous[k] - 1):+.0f}%" for k in ("luts", "ffs")
                        if previous.get(k))
                print(f"{storage:9} {lanes:>5} {states:>5}  {cells}  "
                      f"{time.perf_counter() - started:7.0f}{growth}", flush=True)
                previous = yosys
    return 0


if __name__ == "__main__":
    sys.exit(main())
