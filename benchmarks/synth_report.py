"""Synthesis figures: resources and Fmax per config and target, as a Markdown table.

    python benchmarks/synth_report.py                      # the example configs
    python benchmarks/synth_report.py --baselines          # the CI baseline configs
    python benchmarks/synth_report.py --baselines --update # rewrite tests/baselines/synth.json

Each run writes its report.json under --work (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ssmgen.design import Design
from ssmgen.spec.config import load_config, parse_config
from ssmgen.synth.flow import synthesize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from synth_configs import BASELINE_RUNS, SYNTH_CONFIGS  # noqa: E402

BASELINE_FILE = ROOT / "tests" / "baselines" / "synth.json"
EXAMPLE_RUNS = [("default", "ice40-up5k"), ("default", "ecp5-85k"),
                ("s4d_up5k", "ice40-up5k"), ("s4d_up5k", "ecp5-25k"),
                ("s4d_small", "ice40-up5k"), ("s4d_small", "ecp5-85k"),
                ("s5_aggressive", "ice40-up5k"), ("s5_aggressive", "ecp5-85k"),
                ("s5_small", "ice40-up5k"), ("s5_small", "ecp5-85k")]


def _model(name: str, baseline: bool):
    if baseline:
        config = parse_config(SYNTH_CONFIGS[name])
    elif name == "default":                          # the built-in default of `ssmgen demo`
        config = load_config(ROOT / "ssmgen" / "default.toml")
    else:
        config = load_config(ROOT / "examples" / f"{name}.toml")
    return Design.from_config(config)


def _row(report: dict, loop_stages: int) -> str:
    a = report["accelerator"]
    if report["fits"]:
        fmax = f"{report['fmax_mhz']}" if report["fmax_valid"] else f"({report['fmax_mhz']}, invalid)"
    else:
        fmax = "does not fit: " + "; ".join(report["overflow"])
    return (f"| {report['config']} | {report['target']} | {report['lanes']} | {loop_stages} | {a['luts']} | "
            f"{a['ffs']} | {a['carry']} | {a['dsps']} | {a['brams']} | {fmax} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", action="store_true", help="the CI baseline configs")
    parser.add_argument("--update", action="store_true", help="rewrite the baseline file")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--only", nargs="*", default=None, metavar="CONFIG",
                        help="only these configs (names as in the table)")
    args = parser.parse_args()
    runs = BASELINE_RUNS if args.baselines else EXAMPLE_RUNS
    if args.only:
        runs = [run for run in runs if run[0] in args.only]
    work = args.work or Path(tempfile.mkdtemp(prefix="ssmgen-synth-"))
    # docs/synthesis.md's table, column for column
    print("| config | target | lanes | loop stages | LUT4 | FF | carry | DSP | BRAM | Fmax MHz |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    baselines = {}
    for name, target in runs:
        model = _model(name, args.baselines)
        report = synthesize(model, target, work / f"{name}-{target}",
                            progress=lambda msg: print(f"  .. {msg}", file=sys.stderr, flush=True))
        print(_row(report, model.config.hardware.loop_stages), flush=True)
        baselines[f"{name}/{target}"] = {k: report[k] for k in ("accelerator", "fits", "fmax_mhz",
                                                               "fmax_valid")}
    if args.update:
        if not args.baselines:
            raise SystemExit("--update rewrites the CI baselines: use it with --baselines")
        if args.only:   # a partial run replaces only its own entries
            baselines = {**json.loads(BASELINE_FILE.read_text()), **baselines}
        BASELINE_FILE.write_text(json.dumps(baselines, indent=2, sort_keys=True) + "\n")
        print(f"wrote {BASELINE_FILE}")


if __name__ == "__main__":
    main()
