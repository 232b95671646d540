"""The ``ssmgen`` command line. Every command takes a config (a single layer or a whole network,
as ``ssmgen train`` writes) and works through one :class:`~ssmgen.design.Design`."""

from __future__ import annotations

import argparse
import io
import sys
import time
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from .demo import run_demo
from .design import ENGINES, Design
from .sim.simulators import SIMULATORS
from .spec.errors import ConfigError, WeightsError
from .spec.starter import KINDS, starter_config
from .stimulus import STIMULI
from .synth.board import BOARDS
from .synth.targets import TARGETS
from .train.commands import add_parsers as add_train_parsers
from .util.files import write_atomically
from .util.progress import say, warn
from .verify import parse_seeds, verify_design, write_results

__all__ = ["main", "build_parser", "default_config_path"]


def default_config_path() -> Path:
    """The built-in default config (``make demo`` runs it)."""
    return Path(str(resources.files("ssmgen") / "default.toml"))


def cmd_generate(args) -> int:
    design = Design.load(args.config)
    say(f"generating Verilog for {design.name} ({design.kind}) ...")
    for note in design.quantization_notes():
        warn(note)
    files = design.generate(args.output)
    print(f"wrote {files.verilog_path} and {files.manifest_path}")
    print(f"lanes {design.lanes}: {design.cycles_per_timestep} cycle(s) per timestep, "
          f"latency {design.latency} cycles")
    return 0


def _read_input(path, design: Design) -> np.ndarray:
    try:
        u = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--input {path}: cannot read a .npy array: {exc}") from None
    try:
        return design.check_input(u, integer=False)
    except ValueError as exc:
        raise ValueError(f"--input {path}: {exc}") from None


def cmd_run(args) -> int:
    design = Design.load(args.config)
    u = _read_input(args.input, design)
    outside = design.inputs_out_of_range(u)
    if outside:
        q = design.input_quantizer
        verb = "saturated" if q.overflow.value == "saturate" else "wrapped"
        warn(f"{outside} of {u.size} input values lie outside the input format {q.format} "
             f"({q.format.min_value:g}..{q.format.max_value:g}) and were {verb}")
    start = time.perf_counter()
    if args.engine == "rtl":
        say(f"simulating {design.name} with {args.sim} ({u.shape[0]} x {u.shape[1]} timesteps) ...")
    y = design.run(u, args.engine, simulator=args.sim)
    elapsed = time.perf_counter() - start
    buffer = io.BytesIO()
    np.save(buffer, y)
    write_atomically(Path(args.output), buffer.getvalue())
    print(f"{args.engine}: {u.shape[0]} x {u.shape[1]} timesteps in {elapsed:.2f} s -> {args.output}")
    return 0


def cmd_verify(args) -> int:
    design = Design.load(args.config)
    seeds = parse_seeds(args.seeds)
    say(f"verifying {design.name} ({design.kind}) on {args.sim}: seeds "
        f"{', '.join(map(str, seeds))}, stimulus {args.stimulus}, random stalls (input idle "
        f"{args.idle:g}, output back-pressure {args.stall:g}); building a design's simulator "
        f"the first time can take a minute")
    report = verify_design(design, config=args.config, seeds=seeds, sequences=args.sequences,
                           steps=args.steps, stimulus=args.stimulus, idle_probability=args.idle,
                           stall_probability=args.stall, simulator=args.sim,
                           out_dir=args.output, progress=print)
    write_results(report, junit=args.junit, json_path=args.json)
    for result in report.seeds:
        if result.passed:
            continue
        print(f"seed {result.seed}: {len(result.failures)} failure(s):")
        for failure in result.failures[:10]:
            print(f"  {failure}")
        print(f"  reproduce: {report.reproduce(result.seed)}")
        print(f"  simulator log: {result.log}")
        if args.verbose:
            log = Path(result.log)
            print(log.read_text(errors="replace") if log.exists() else "  (no log written)")
    passed = sum(r.passed for r in report.seeds)
    verdict = "PASS" if report.passed else "FAIL"
    print(f"{verdict}: {design.name} ({design.kind}, model hash {design.hash[:16]}): {passed} of "
          f"{len(report.seeds)} seed(s) bit-exact with golden, timing as in the manifest "
          f"({design.cycles_per_timestep} cycle(s)/timestep, latency {design.latency})")
    return 0 if report.passed else 1


def cmd_sweep(args) -> int:
    from .sweep.config import load_sweep
    from .sweep.outputs import export_design, write_outputs
    from .sweep.runner import run_sweep
    sweep = load_sweep(args.sweep)
    out = Path(args.output)
    start = time.perf_counter()
    results = run_sweep(sweep, out, workers=args.workers, dask=args.dask,
                        synthesize=args.synthesize, show_progress=not args.no_progress, say=say)
    written = write_outputs(results, out)
    counts = results["counts"]
    print(f"{sweep.name}: {counts['points']} points, {counts['pruned']} pruned by the estimate, "
          f"{counts['failed']} failed, {counts['synthesized']} synthesized; Pareto set: "
          f"{len(results['pareto'])} point(s)")
    fit = next((r for r in results["points"] if r["fit"]), None)
    if fit is None:
        print("fit: no point is known to meet the constraints")
    else:
        axes = ", ".join(f"{k[5:]}={v}" for k, v in fit.items() if k.startswith("axis."))
        resources = ", ".join(f"{r} {fit[r]}" for r in ("luts", "ffs", "dsps", "brams")
                              if fit.get(r) is not None)
        rate = (f", {fit['timesteps_per_s']:.4g} timesteps/s" if fit.get("timesteps_per_s")
                else "")
        print(f"fit: point {fit['id']} ({axes}): {fit['quality_metric']} {fit['quality']:.4g}, "
              f"{resources}{rate} (from {fit['figures_from']})")
    failed = [r for r in results["points"] if r["status"] == "failed"]
    for row in failed[:5]:
        warn(f"point {row['id']} failed: {row['reason']}")
    print(f"wrote {', '.join(written)} to {out} ({time.perf_counter() - start:.0f} s)")
    if args.export_best:
        path = export_design(results, args.export_best)
        print(f"exported the fit answer to {path}")
    return 0


def cmd_init(args) -> int:
    sys.stdout.write(starter_config(args.kind, name=args.name))
    return 0


def cmd_synth(args) -> int:
    report = Design.load(args.config).synthesize(args.target, args.output,
                                                 place=not args.no_place, progress=say)
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
    if "multipliers_by_operator" in report:
        lines.append("  multipliers: " + ", ".join(
            f"{op} {t['multipliers']} ({t['dsps']} DSP" + (f", {t['in_luts']} in LUTs)" if t["in_luts"]
                                                          else ")")
            for op, t in report["multipliers_by_operator"].items()))
    lines.append("  fits:        " + ("yes" if report["fits"]
                                      else "NO: " + "; ".join(report["overflow"])))
    if report["fmax_mhz"] is not None:
        note = "" if report["fmax_valid"] else f" ({report['fmax_note']})"
        lines.append(f"  Fmax {report['fmax_mhz']} MHz{note}; "
                     f"{report.get('throughput_msteps_per_s')} M timesteps/s")
    else:
        lines.append(f"  {report['fmax_note']}")
    return "\n".join(lines)


def cmd_build(args) -> int:
    report = Design.load(args.config).build_board(args.board, args.output, baud=args.baud,
                                                  max_batch=args.max_batch, clock_mhz=args.clock,
                                                  progress=say)
    print(format_board_report(report))
    print(f"wrote {Path(args.output) / report['bitstream']}, manifest.json and report.json")
    print(f"flash: {report['flash']}")
    return 1 if report["fmax_valid"] and not report["timing_met"] else 0


def format_board_report(report: dict) -> str:
    res = report["resources"]
    pll = report.get("pll")
    source = f" (PLL from {pll['input_mhz']:g} MHz)" if pll else ""
    lines = [f"{report['config']} on {report['description']}: {report['clock_mhz']:g} MHz{source}, "
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
    if "sequences_per_s" in report:
        rates = report["sequences_per_s"]
        lines.append(f"  sequences/s: {rates['compute']:g} compute bound, {rates['link']:g} link "
                     f"bound, {rates['stop_and_wait']:g} one CLASSIFY frame at a time")
    return "\n".join(lines)


def cmd_demo(args) -> int:
    return run_demo(args.config or default_config_path(), out_dir=Path(args.output),
                    simulator=args.sim, seed=args.seed, batch=args.batch, steps=args.steps)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmgen", description="Generate verified FPGA accelerators for quantized diagonal "
                                   "state-space models (S4D, S5).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {metadata.version('ssmgen')}")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = "config (TOML): a single layer, or a whole network (MODEL_DIR/config.toml)"

    p = sub.add_parser("generate", help="write the Verilog and manifest.json for a config")
    p.add_argument("config", help=config_help)
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("run", help="run a model on float (batch, time, inputs) inputs")
    p.add_argument("config", help=config_help)
    p.add_argument("-i", "--input", required=True,
                   help=".npy, float (batch, time, H) in real units (a network: (batch, "
                        "network.steps, network.inputs))")
    p.add_argument("-o", "--output", required=True,
                   help=".npy written in real units: (batch, time, H), a network's logits "
                        "(batch, classes), a per-step network's outputs (batch, time, "
                        "outputs)")
    p.add_argument("--engine", choices=ENGINES, default="golden",
                   help="float reference, golden integer model, or the generated RTL "
                        "(default: %(default)s)")
    p.add_argument("--sim", choices=SIMULATORS, default="verilator",
                   help="simulator for --engine rtl (default: %(default)s)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("verify", help="the cocotb regression of a design: RTL == golden, bit for "
                                      "bit, under random stalls (exit 1 on any failure)",
                       description="Check the generated RTL of a config or MODEL_DIR against its "
                                   "golden model, bit for bit, with random stalls, and its "
                                   "measured timing against the manifest. Exit status 0 only "
                                   "when every seed passes, 1 when any fails, 2 on bad input.")
    p.add_argument("config", help="config (TOML) or a trained MODEL_DIR")
    p.add_argument("--seeds", default="2",
                   help="a count N (seeds 0..N-1) or a comma-separated list (e.g. 4,17) "
                        "(default: %(default)s)")
    p.add_argument("--sequences", type=int, default=4,
                   help="sequences per seed (default: %(default)s)")
    p.add_argument("--steps", type=int, default=None,
                   help="timesteps per sequence (default: 64; a network: its network.steps)")
    p.add_argument("--stimulus", default="full-range",
                   help=f"{', '.join(STIMULI)}, or a .npy file of real inputs (batch, time, "
                        f"inputs) (default: %(default)s)")
    p.add_argument("--idle", type=float, default=0.3,
                   help="probability of an idle input cycle (default: %(default)s)")
    p.add_argument("--stall", type=float, default=0.4,
                   help="probability of output back-pressure in a cycle (default: %(default)s)")
    p.add_argument("--sim", choices=SIMULATORS, default="verilator",
                   help="simulator (default: %(default)s)")
    p.add_argument("-o", "--output", default="ssmgen-verify",
                   help="folder for the Verilog, manifest and simulator logs "
                        "(default: %(default)s)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per seed)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the simulator log of a failing seed")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("sweep", help="co-design sweep: formats, parallelism and targets against "
                                     "quality, resources and throughput",
                       description="Explore the axes of a sweep file (docs/sweeps.md): each point "
                                   "is estimated, pruned when it cannot meet the constraints, "
                                   "measured (golden model), and synthesized when it can still "
                                   "be on the Pareto front; results are cached in DIR/cache.")
    p.add_argument("sweep", help="sweep file (TOML)")
    p.add_argument("-o", "--output", required=True,
                   help="folder for results.csv/json, pareto.csv, plots, report.md and the cache")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel jobs (default: the machine's cores)")
    p.add_argument("--dask", metavar="local|ADDRESS", default=None,
                   help="run the jobs on Dask: 'local' starts a LocalCluster, else the address "
                        "of a running scheduler (tcp://host:8786); needs the [dask] extra")
    p.add_argument("--synthesize", choices=("candidates", "all", "none"), default=None,
                   help="override the sweep file's strategy.synthesize")
    p.add_argument("--export-best", metavar="DIR",
                   help="write the fit answer as a ready config (and its weights) into DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("init", help="print a commented starting config (redirect it to a file)")
    p.add_argument("--kind", choices=KINDS, default="s4d",
                   help="S4D (a SISO SSM per channel) or S5 (one MIMO SSM) (default: %(default)s)")
    p.add_argument("--name", default="my_ssm",
                   help="the config's name: the Verilog module's (default: %(default)s)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("synth", help="Yosys + nextpnr resource and Fmax report (out of context)")
    p.add_argument("config", help=config_help)
    p.add_argument("--target", required=True, choices=tuple(TARGETS), help="FPGA device")
    p.add_argument("-o", "--output", required=True, help="folder for report.json and tool logs")
    p.add_argument("--no-place", action="store_true", help="Yosys only (no nextpnr, no Fmax)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("build", help="bitstream for a board: the accelerator behind a UART link")
    p.add_argument("config", help=config_help)
    p.add_argument("--board", required=True, choices=tuple(BOARDS),
                   help="iCEBreaker (iCE40 UP5K) -> .bin, ULX3S 85F (ECP5) -> .bit")
    p.add_argument("-o", "--output", required=True,
                   help="folder for the bitstream, manifest.json, report.json and logs")
    p.add_argument("--baud", type=int, default=115200,
                   help="UART rate, up to 3000000 where the board clock makes it within 2 %% "
                        "(iCEBreaker: 3 Mbaud; ULX3S: 1 Mbaud) (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=None,
                   help="a layer: timesteps per STREAM frame = output buffer (1..255, default 32); "
                        "a network: timesteps per CLASSIFY frame (1..65535, default a whole "
                        "sequence if its samples fit 1 KiB)")
    p.add_argument("--clock", type=float, default=None, metavar="MHZ",
                   help="run from the FPGA's PLL at this frequency (at most; the closest the PLL "
                        "makes is used and reported) instead of the board clock (iCEBreaker "
                        "12 MHz, ULX3S 25 MHz): where a network is compute bound")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("demo", help="generate, simulate against the golden model, summarize")
    p.add_argument("config", nargs="?", help="config (default: the built-in default)")
    p.add_argument("-o", "--output", default="ssmgen-demo", help="folder for the RTL (default: %(default)s)")
    p.add_argument("--sim", choices=SIMULATORS, default="verilator",
                   help="simulator (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="stimulus and stall seed (default: %(default)s)")
    p.add_argument("--batch", type=int, default=4, help="sequences (default: %(default)s)")
    p.add_argument("--steps", type=int, default=64,
                   help="timesteps per sequence; a network uses its network.steps "
                        "(default: %(default)s)")
    p.set_defaults(func=cmd_demo)

    add_train_parsers(sub)                       # train, eval (PTQ / QAT; the [train] extra)
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
