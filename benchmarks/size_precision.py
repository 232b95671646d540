"""Model size against precision (QS4D's trade-off): QAT accuracy over (state size x bit width).

For each state size (S4D complex modes per channel; H fixed) one float model is trained
(``ssmgen train``'s recipe, checkpoint reused on the next run), then for each width W QAT with
every tensor at W bits except the state at max(W, 8) bits and Abar polar below 8 bits (the
parts that stay wide are the ones the findings show collapse alone: see findings.md). Each cell
also records the model's weight memory in bits, so the table reads as accuracy against model
size. Accuracies: the golden integer network on the whole test split.

Writes docs/size_precision.md, .json and .png (a heat map). A benchmark prints and records
figures; it asserts nothing.

Run:  python benchmarks/size_precision.py [--task sdigits] [--modes 2,4,8,16] [--widths 8,6,4,3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lowbit_targets import POLAR   # the same polar Abar as the low-bit targets
from ssmgen.golden.quantize import load_network
from ssmgen.spec.config import load_config
from ssmgen.train.commands import POLAR_DECODED_BITS, train_model, widths_from_bits
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=TASKS, default="sdigits")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--modes", default="2,4,8,16")
    parser.add_argument("--widths", default="8,6,4,3")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--qat-epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "build" / "size_precision"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    argv = argv if argv is not None else __import__("sys").argv[1:]
    torch.set_num_threads(1)
    modes = [int(m) for m in args.modes.split(",")]
    widths = [int(w) for w in args.widths.split(",")]
    task, work, out = load_task(args.task), Path(args.work), Path(args.out)
    start = time.perf_counter()
    cells, floats = {}, {}
    for m in modes:
        float_ckpt = work / f"m{m}" / "float" / "checkpoints" / "float.pt"
        for w in widths:
            run = work / f"m{m}" / ("float" if not float_ckpt.exists() else f"w{w}")
            polar = w < 8
            metrics = train_model(
                task, out_dir=run, channels=args.channels, modes=m, epochs=args.epochs,
                qat_epochs=args.qat_epochs, seed=args.seed, progress=False,
                widths=widths_from_bits(weights=w, state=max(w, 8), activations=w,
                                        abar=POLAR_DECODED_BITS if polar else None),
                init=float_ckpt if float_ckpt.exists() else None,
                abar_form=POLAR if polar else None, name=f"{args.task}_s4d")
            floats[m] = metrics["float_acc"]
            cells[f"{m},{w}"] = {"qat": metrics["qat_acc"], "ptq": metrics["ptq_acc"],
                                 "weight_bits": weight_bits(run)}
            log(f"modes {m}, W {w}: {cells[f'{m},{w}']}")
    result = {"task": args.task, "channels": args.channels, "modes": modes, "widths": widths,
              "float": floats, "cells": cells, "seed": args.seed, "qat_epochs": args.qat_epochs,
              "minutes": round((time.perf_counter() - start) / 60, 1),
              "command": " ".join(["python benchmarks/size_precision.py", *argv])}
    (out / "size_precision.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Model size against precision (QS4D's trade-off)", "",
             f"Written by `{result['command']}` ({result['minutes']} min on 2 cores shared with "
             f"other work): S4D on {args.task}, H = {args.channels}, 2 layers, seed {args.seed}; "
             f"QAT {args.qat_epochs} epochs with every tensor at W bits except the state at "
             "max(W, 8) and, below 8 bits, a polar Abar (4 + 6 mantissa bits). Cells: QAT "
             "accuracy of the golden integer network (%) / stored weight kbit.", "",
             "| modes per channel (states per layer) | float | "
             + " | ".join(f"W = {w}" for w in widths) + " |",
             "|---|---|" + "---|" * len(widths)]
    for m in modes:
        lines.append(f"| {m} ({args.channels * m}) | {100 * floats[m]:.1f} | " + " | ".join(
            f"{100 * cells[f'{m},{w}']['qat']:.1f} / {cells[f'{m},{w}']['weight_bits'] / 1000:.1f}"
            for w in widths) + " |")
    lines += ["", "![accuracy over state size and width](size_precision.png)", ""]
    (out / "size_precision.md").write_text("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    grid = np.array([[100 * cells[f"{m},{w}"]["qat"] for w in widths] for m in modes])
    fig, ax = plt.subplots(figsize=(6, 4))
    image = ax.imshow(grid, cmap="viridis", vmin=max(0, grid.min() - 5), vmax=100, origin="lower")
    ax.set(xticks=range(len(widths)), xticklabels=[str(w) for w in widths],
           yticks=range(len(modes)), yticklabels=[str(m) for m in modes],
           xlabel="bits (W)", ylabel="complex modes per channel",
           title=f"{args.task} S4D: QAT accuracy %")
    for i in range(len(modes)):
        for j in range(len(widths)):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="w", fontsize=9)
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(out / "size_precision.png", dpi=110)
    log(f"wrote {out / 'size_precision.md'}")


if __name__ == "__main__":
    main()
