"""Model size against precision (QS4D's trade-off): QAT accuracy over (state size x bit width),
run as one ``ssmgen sweep`` with training axes.

The base is an S4D model trained by ``ssmgen train`` (H channels, the largest state size; kept
under ``--work`` and reused). The sweep's axes are ``states`` (the config's state_size N: N / 2
complex modes per channel) and ``width`` (every tensor at W bits, the state at 8 bits: max(W, 8)
for the widths here), with a polar Abar (4 + 6 mantissa bits, decoded at 16 bits) at every
width; ``[training] qat_epochs`` makes every point QAT-trained at its widths, and every state size
other than the base's gets its own float model (the base's recipe, trained once per size and
shared by its widths). Each cell also records the model's stored weight bits, so the table reads
as accuracy against model size. Accuracies: the golden integer network on the whole test split.

Writes docs/size_precision.md, .json and .png (the sweep's heat map), and the sweep's own
outputs under ``--work``/sweep. A benchmark prints and records figures; it asserts nothing.

Run:  python benchmarks/size_precision.py [--task sdigits] [--modes 2,4,8,16] [--widths 8,6,4,3]
      [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from lowbit_targets import POLAR   # the same polar Abar as the low-bit targets
from ssmgen.golden.quantize import load_network
from ssmgen.spec.config import load_config
from ssmgen.sweep.config import parse_sweep
from ssmgen.sweep.outputs import write_outputs
from ssmgen.sweep.runner import run_sweep
from ssmgen.train.commands import train_model, widths_from_bits
from ssmgen.train.tasks import TASKS, load_task

ROOT = Path(__file__).resolve().parent.parent


def log(msg):
    print(f"[size {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def weight_bits(model_dir: Path) -> int:
    """Bits of every stored weight of the exported network: each integer array's size times its
    format's width; a polar Abar as its two mantissas (its small per-mode exponents, the state
    formats and the fraction-bit scalars are left out)."""
    qnet = load_network(load_config(model_dir / "config.toml"))
    q, net = qnet.config.quant, qnet.network
    polar = q.abar_polar
    widths = {"encoder.weight": net.encoder, "encoder.bias": net.encoder_bias,
              "decoder.weight": net.decoder, "decoder.bias": net.decoder_bias,
              "mix.weight": net.mix, "mix.bias": net.mix_bias, "Bbar.re": q.bbar,
              "Bbar.im": q.bbar, "C.re": q.c, "C.im": q.c, "D": q.d}
    widths = {name: quantizer.format.width for name, quantizer in widths.items()}
    if polar is None:
        widths.update({"Abar.re": q.abar.format.width, "Abar.im": q.abar.format.width})
    else:
        widths.update({"Abar.rho_mant": polar.rho_bits, "Abar.theta_mant": polar.theta_bits})
    total = 0
    for name, array in qnet.integer_arrays().items():
        key = name.split(".", 2)[-1] if name.startswith("layers.") else name
        total += int(np.size(array)) * widths.get(key, 0)
    return total


def base_model(args, work: Path) -> Path:
    """The sweep's base: ``ssmgen train``'s recipe at the largest state size (reused when its
    folder is complete)."""
    base = work / f"base_m{max(args.modes)}"
    if (base / "metrics.json").is_file() and "hyper" in json.loads((base / "metrics.json").read_text()):
        return base
    shutil.rmtree(base, ignore_errors=True)
    log(f"training the base model (H = {args.channels}, {max(args.modes)} modes per channel)")
    train_model(load_task(args.task), out_dir=base, channels=args.channels, modes=max(args.modes),
                epochs=args.epochs, qat_epochs=args.qat_epochs, seed=args.seed, progress=False,
                widths=widths_from_bits(weights=8, state=8, activations=8),
                name=f"{args.task}_s4d")
    return base


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=TASKS, default="sdigits")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--modes", default="2,4,8,16")
    parser.add_argument("--widths", default="8,6,4,3")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--qat-epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default=str(ROOT / "build" / "size_precision"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    argv = argv if argv is not None else sys.argv[1:]
    args.modes = [int(m) for m in args.modes.split(",")]
    widths = [int(w) for w in args.widths.split(",")]
    if max(widths) > 8:
        parser.error("--widths: at most 8 (the state stays at 8 bits, max(W, 8))")
    work, out = Path(args.work), Path(args.out)
    start = time.perf_counter()
    base = base_model(args, work)
    sweep = parse_sweep({
        "name": f"size_precision_{args.task}", "base": {"model": str(base.resolve())},
        "axes": {"states": [2 * m for m in args.modes], "width": widths, "width.state": [8],
                 "abar_form": ["polar"], "rho_bits": [POLAR["rho_bits"]],
                 "theta_bits": [POLAR["theta_bits"]]},
        "objectives": {"names": ["quality", "luts"]}, "constraints": {"fit_device": False},
        "strategy": {"synthesize": "none"},
        "training": {"qat_epochs": args.qat_epochs}}, path=work / "size_precision.toml")
    log(f"sweep: {len(args.modes)} state sizes x {len(widths)} widths, QAT {args.qat_epochs} "
        f"epochs each, {args.workers} workers")
    results = run_sweep(sweep, work / "sweep", workers=args.workers, say=log)
    write_outputs(results, work / "sweep")
    cells, floats = {}, {}
    for row in results["points"]:
        if row["status"] != "ok":
            raise SystemExit(f"point {row['id']} {row['status']}: {row['reason']}")
        m, w = row["axis.states"] // 2, row["axis.width"]
        floats[m] = row["float_accuracy"]
        cells[f"{m},{w}"] = {"qat": row["quality"], "ptq": row["training"]["ptq_acc"],
                             "weight_bits": weight_bits(work / "sweep" / row["model_dir"])}
    result = {"task": args.task, "channels": args.channels, "modes": args.modes,
              "widths": widths, "float": floats, "cells": cells, "seed": args.seed,
              "qat_epochs": args.qat_epochs,
              "minutes": round((time.perf_counter() - start) / 60, 1),
              "command": " ".join(["python benchmarks/size_precision.py", *argv])}
    (out / "size_precision.json").write_text(json.dumps(result, indent=1) + "\n")
    shutil.copyfile(work / "sweep" / "quality_heatmap.png", out / "size_precision.png")
    lines = ["# Model size against precision (QS4D's trade-off)", "",
             f"Written by `{result['command']}` ({result['minutes']} min on 2 cores, the base "
             f"model's training included when it ran): one `ssmgen sweep` over a trained "
             f"MODEL_DIR with the axes `states` and `width` and `[training] qat_epochs = "
             f"{args.qat_epochs}`. S4D on {args.task}, H = {args.channels}, 2 layers, seed "
             f"{args.seed}; each state size trained once in float (`ssmgen train`'s recipe), "
             f"each cell QAT {args.qat_epochs} epochs with every tensor at W bits except the "
             "state at 8 bits, and a polar Abar (4 + 6 mantissa bits) at every width. Cells: "
             "QAT accuracy of the golden integer network (%) / stored weight kbit.", "",
             "| modes per channel (states per layer) | float | "
             + " | ".join(f"W = {w}" for w in widths) + " |",
             "|---|---|" + "---|" * len(widths)]
    for m in args.modes:
        lines.append(f"| {m} ({args.channels * m}) | {100 * floats[m]:.1f} | " + " | ".join(
            f"{100 * cells[f'{m},{w}']['qat']:.1f} / {cells[f'{m},{w}']['weight_bits'] / 1000:.1f}"
            for w in widths) + " |")
    lines += ["", "![accuracy over state size and width](size_precision.png)", "",
              "The heat map is the sweep's own (`quality_heatmap.png`): `states` is the config's "
              "state_size N, i.e. 2 x the modes per channel.", ""]
    (out / "size_precision.md").write_text("\n".join(lines))
    log(f"wrote {out / 'size_precision.md'}")


if __name__ == "__main__":
    main()
