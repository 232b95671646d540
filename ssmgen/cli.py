"""The ``ssmgen`` command line: generate RTL, run a model on any engine, run the demo."""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from .config import ConfigError, load_config
from .golden.weights import WeightsError

ENGINES = ("float", "golden", "rtl")


def _progress(message: str) -> None:
    print(f"[ssmgen] {message}", file=sys.stderr, flush=True)


def default_config_path() -> Path:
    return Path(str(resources.files("ssmgen") / "default.toml"))


def load_single_layer(config_path, command: str):
    """The single layer of a config, for the commands that take one. A whole network's config
    (a [network] section) is refused by name rather than reduced to its first layer."""
    from .golden.quantized import load_model
    config = load_config(config_path)
    if config.network is not None:
        raise ConfigError(f"{config_path}: [network] describes a whole network; `ssmgen {command}`"
                          f" takes a single-layer config (for a network: ssmgen generate, "
                          f"ssmgen synth, ssmgen eval)")
    return load_model(config)


def _load_layer_or_network(config_path):
    """A config's whole network (a [network] section, as ``ssmgen train`` writes) as a
    ``QuantizedNetwork``, else its single layer as a ``QuantizedSSM``."""
    config = load_config(config_path)
    if config.network is not None:
        from .golden.network import load_network
        return load_network(config)
    from .golden.quantized import load_model
    return load_model(config)


def cmd_generate(args) -> int:
    from .golden.network import QuantizedNetwork
    from .hw.generate import generate, generate_network
    model = _load_layer_or_network(args.config)
    if isinstance(model, QuantizedNetwork):
        _progress(f"generating Verilog for the whole network {model.config.name} "
                  f"({model.network.layers} layers) ...")
        design = generate_network(model, args.output)
    else:
        _progress(f"generating Verilog for {model.config.name} ...")
        design = generate(model, args.output)
    hw = design.manifest["hardware"]
    print(f"wrote {design.verilog_path} and {design.manifest_path}")
    print(f"lanes {hw['lanes']}: {hw['cycles_per_timestep']} cycle(s) per timestep, "
          f"latency {hw['latency_cycles']} cycles")
    return 0


def _read_input(path, channels: int) -> np.ndarray:
    try:
        u = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--input {path}: cannot read a .npy array: {exc}") from None
    if u.ndim != 3 or u.shape[2] != channels:
        raise ValueError(f"--input {path}: must have shape (batch, time, H={channels}), "
                         f"not {u.shape}")
    if not np.issubdtype(u.dtype, np.number) or np.iscomplexobj(u):
        raise ValueError(f"--input {path}: must hold real numbers, not dtype {u.dtype}")
    if not np.all(np.isfinite(u)):
        raise ValueError(f"--input {path}: contains NaN or infinite values")
    return u.astype(np.float64)


def run_engine(model, u: np.ndarray, engine: str, *, simulator: str = "verilator",
               build_dir: Path | None = None) -> np.ndarray:
    """Float (batch, time, H) in real units -> outputs in real units on the chosen engine."""
    from .golden import float_model
    from .golden.integer_model import dequantize_output, quantize_input, run_integer
    if engine == "float":
        return float_model.run_recurrent(model.float_weights, u)
    u_int = quantize_input(model, u)
    if engine == "golden":
        return dequantize_output(model, run_integer(model, u_int))
    from .hw.generate import generate
    from .sim.runner import simulate
    with tempfile.TemporaryDirectory(prefix="ssmgen-rtl-") as tmp:
        design = generate(model, build_dir or tmp)
        _progress(f"simulating {design.verilog_path.name} with {simulator} "
                  f"({u.shape[0]} x {u.shape[1]} timesteps) ...")
        result = simulate(design.manifest_path, u_int, simulator=simulator)
    return dequantize_output(model, result.outputs)


def cmd_run(args) -> int:
    from .hw.generate import write_atomically
    model = load_single_layer(args.config, "run")
    u = _read_input(args.input, model.channels)
    start = time.perf_counter()
    y = run_engine(model, u, args.engine, simulator=args.sim)
    elapsed = time.perf_counter() - start
    buffer = io.BytesIO()
    np.save(buffer, y)
    write_atomically(Path(args.output), buffer.getvalue())
    print(f"{args.engine}: {u.shape[0]} x {u.shape[1]} timesteps in {elapsed:.2f} s -> {args.output}")
    return 0


def cmd_synth(args) -> int:
    from .synth.flow import synthesize
    model = _load_layer_or_network(args.config)   # a network's report has no estimate
    report = synthesize(model, args.target, args.output, place=not args.no_place, progress=_progress)
    print(format_synth_report(report))
    print(f"report: {Path(args.output) / 'report.json'}")
    return 0 if report["fits"] else 1


def format_synth_report(report: dict) -> str:
    acc = report["accelerator"]
    lines = [f"{report['config']} on {report['target']} (lanes {report['lanes']}, "
             f"{report['cycles_per_timestep']} cycle(s)/timestep)",
             "  accelerator: " + ", ".join(f"{k} {v}" for k, v in acc.items()),
             "  of device:   " + ", ".join(f"{k} {v}%" for k, v in report["accelerator_percent"].items())]
    if "estimate" in report:
        est = report["estimate"]
        lines.append("  estimate:    " + ", ".join(f"{k} {est[k]}" for k in acc if k in est)
                     + " (analytic model, no tools)")
    if not report["fits"]:
        lines.append("  DOES NOT FIT: " + "; ".join(report["overflow"]))
    elif report["fmax_mhz"] is not None:
        note = "" if report["fmax_valid"] else f" ({report['fmax_note']})"
        lines.append(f"  Fmax {report['fmax_mhz']} MHz{note}; "
                     f"{report.get('throughput_msteps_per_s')} M timesteps/s")
    else:
        lines.append(f"  {report['fmax_note']}")
    return "\n".join(lines)


def cmd_build(args) -> int:
    from .synth.board import build_board
    model = load_single_layer(args.config, "build")
    report = build_board(model, args.board, args.output, baud=args.baud,
                         max_batch=args.max_batch, progress=_progress)
    print(format_board_report(report))
    print(f"wrote {Path(args.output) / report['bitstream']}, manifest.json and report.json")
    print(f"flash: {report['flash']}")
    return 1 if report["fmax_valid"] and not report["timing_met"] else 0


def format_board_report(report: dict) -> str:
    res = report["resources"]
    lines = [f"{report['config']} on {report['description']}: {report['clock_mhz']:g} MHz, "
             f"UART {report['baud']} baud (divisor {report['uart_divisor']}), "
             f"max_batch {report['max_batch']}",
             "  board top:   " + ", ".join(f"{k} {v}" for k, v in res.items()),
             "  of device:   " + ", ".join(f"{k} {round(100.0 * res.get(k, 0) / cap, 1)}%"
                                        for k, cap in report["capacity"].items() if cap)]
    if report["fmax_mhz"] is None or not report["fmax_valid"]:
        lines.append(f"  Fmax unknown ({report['fmax_note']}): timing not verified")
    else:
        verdict = "met" if report["timing_met"] else "NOT MET: the bitstream may misbehave"
        lines.append(f"  Fmax {report['fmax_mhz']} MHz for a {report['clock_mhz']:g} MHz clock: "
                     f"timing {verdict}")
    return "\n".join(lines)


def cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.config or default_config_path(), out_dir=Path(args.output),
                    simulator=args.sim, seed=args.seed, batch=args.batch, steps=args.steps)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmgen", description="Generate verified FPGA accelerators for quantized diagonal "
                                   "state-space models (S4D, S5).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write the Verilog and manifest.json for a config")
    p.add_argument("config", help="quantization config (TOML)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("run", help="run a model on float (batch, time, H) inputs")
    p.add_argument("config")
    p.add_argument("-i", "--input", required=True, help=".npy, float (batch, time, H), real units")
    p.add_argument("-o", "--output", required=True, help=".npy written with the same shape")
    p.add_argument("--engine", choices=ENGINES, default="golden",
                   help="float reference, golden integer model, or the generated RTL (cocotb)")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("synth", help="Yosys + nextpnr resource and Fmax report (out of context)")
    p.add_argument("config")
    p.add_argument("--target", required=True, choices=("ice40-up5k", "ecp5-25k", "ecp5-85k"))
    p.add_argument("-o", "--output", required=True, help="folder for report.json and tool logs")
    p.add_argument("--no-place", action="store_true", help="Yosys only (no nextpnr, no Fmax)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("build", help="bitstream for a board: the accelerator behind a UART link")
    p.add_argument("config")
    p.add_argument("--board", required=True, choices=("icebreaker", "ulx3s-85f"),
                   help="iCEBreaker (iCE40 UP5K) -> .bin, ULX3S 85F (ECP5) -> .bit")
    p.add_argument("-o", "--output", required=True,
                   help="folder for the bitstream, manifest.json, report.json and logs")
    p.add_argument("--baud", type=int, default=115200, help="UART rate (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=32,
                   help="timesteps per STREAM frame = output buffer (1..255, default: %(default)s)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("demo", help="generate, simulate against the golden model, summarize")
    p.add_argument("config", nargs="?", help="config (default: the built-in default)")
    p.add_argument("-o", "--output", default="ssmgen-demo", help="folder for the RTL (default: %(default)s)")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=64)
    p.set_defaults(func=cmd_demo)

    from .train.commands import add_parsers as add_train_parsers   # train, eval (PTQ / QAT)
    add_train_parsers(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, WeightsError, ValueError) as exc:
        print(f"ssmgen: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:   # SimulationError and toolchain failures
        print(f"ssmgen: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
