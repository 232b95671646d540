"""Low-bit targets over seeds: float vs PTQ vs QAT for the issue's bit-width targets, mean and
spread over independently trained models (not one lucky seed).

For each seed: one float model (``ssmgen train``'s recipe, its checkpoint reused on the next run),
then for each target PTQ and QAT from that float model exactly as ``ssmgen train --init ...``
does (B/C equalization, MSE formats, QAT ``--qat-epochs``). Every accuracy is the golden integer
network's on the whole test split.

Targets (widths of ``ssmgen train``; "polar" = ``--abar-form polar``: 1 - |Abar| in 4 and arg
Abar in 6 mantissa bits, decoded exactly for the hardware's multiplier):

* every tensor at 8 bits; at 6 bits;
* every tensor at 4 bits, Abar polar;
* 4-bit weights incl. a polar Abar, 4-bit activations, 8-bit state;
* 2-bit weights incl. a polar Abar, 8-bit state and activations.

Writes docs/lowbit_targets_TASK_KIND.json and docs/lowbit_targets.md (every table measured so
far). A benchmark prints and records figures; it asserts nothing.

Run:  python benchmarks/lowbit_targets.py --task sdigits --kind s5 [--seeds 0,1,2] [--qat-epochs 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from findings import MODELS      # the same S4D and S5 models as the findings
from ssmgen.train.commands import POLAR_DECODED_BITS, train_model, widths_from_bits
from ssmgen.train.tasks import TASKS, load_task

ROOT = Path(__file__).resolve().parent.parent
POLAR = {"form": "polar", "rho_bits": 4, "theta_bits": 6}
#: (label, widths_from_bits arguments, abar_form)
TARGETS = (
    ("every tensor 8 bits", dict(weights=8, state=8, activations=8), None),
    ("every tensor 6 bits", dict(weights=6, state=6, activations=6), None),
    ("every tensor 4 bits, Abar polar", dict(weights=4, state=4, activations=4,
                                            abar=POLAR_DECODED_BITS), POLAR),
    ("4-bit weights, Abar polar, 4-bit activations, 8-bit state",
     dict(weights=4, state=8, activations=4, abar=POLAR_DECODED_BITS), POLAR),
    ("2-bit weights, Abar polar, 8-bit state and activations",
     dict(weights=2, state=8, activations=8, abar=POLAR_DECODED_BITS), POLAR),
)


def log(msg):
    print(f"[targets {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(args) -> dict:
    task = load_task(args.task)
    work = Path(args.work) / f"{args.task}_{args.kind}"
    rows = {label: [] for label, _, _ in TARGETS}
    floats, start = [], time.perf_counter()
    for seed in args.seeds:
        float_ckpt = work / f"seed{seed}" / "float" / "checkpoints" / "float.pt"
        for index, (label, bits, abar_form) in enumerate(TARGETS):
            out = work / f"seed{seed}" / (f"t{index}" if index else "float")
            # the first target of a seed trains the float model (or reuses it)
            init = float_ckpt if float_ckpt.exists() else None
            metrics = train_model(
                task, out_dir=out, **MODELS[args.kind], epochs=args.epochs,
                qat_epochs=args.qat_epochs, seed=seed, widths=widths_from_bits(**bits),
                init=init, progress=False, name=f"{args.task}_{args.kind}",
                abar_form=abar_form)
            if index == 0:
                floats.append(metrics["float_acc"])
            rows[label].append({"seed": seed, "ptq": metrics["ptq_acc"], "qat": metrics["qat_acc"]})
            log(f"{args.task} {args.kind} seed {seed}: {label}: PTQ {metrics['ptq_acc']:.4f}, "
                f"QAT {metrics['qat_acc']:.4f} (float {floats[-1]:.4f})")
    return {"task": args.task, "kind": args.kind, "seeds": list(args.seeds),
            "qat_epochs": args.qat_epochs, "epochs": args.epochs, "float": floats,
            "targets": rows, "minutes": round((time.perf_counter() - start) / 60, 1),
            "command": "python benchmarks/lowbit_targets.py " + " ".join(args.argv)}


def write_markdown(results, path: Path):
    lines = ["# Low-bit targets over seeds", "",
             "Written by `benchmarks/lowbit_targets.py` (commands below). Per seed one float "
             "model, then PTQ and QAT for each target from it (`ssmgen train`'s recipe: B/C "
             "equalization, MSE formats); accuracies of the golden integer network on the whole "
             "test split, mean ± std over seeds (population std). Polar Abar: 1 − |Abar| in 4 "
             "and arg Abar in 6 mantissa bits with per-mode exponents (`--abar-form polar`).", ""]
    for r in results:
        f = np.array(r["float"])
        lines += [f"## {r['task']}, {r['kind'].upper()}", "",
                  f"`{r['command']}`: seeds {', '.join(map(str, r['seeds']))}, float "
                  f"{r['epochs']} epochs, QAT {r['qat_epochs']} epochs; {r['minutes']} min on "
                  f"2 cores shared with other work. Float: **{100 * f.mean():.1f} ± "
                  f"{100 * f.std():.1f}** ({', '.join(f'{100 * v:.1f}' for v in f)}).", "",
                  "| target | PTQ | QAT | QAT − float | QAT per seed |", "|---|---|---|---|---|"]
        for label, row in r["targets"].items():
            ptq = np.array([x["ptq"] for x in row])
            qat = np.array([x["qat"] for x in row])
            gap = qat - f[:len(qat)]
            lines.append(f"| {label} | {100 * ptq.mean():.1f} ± {100 * ptq.std():.1f} | "
                         f"{100 * qat.mean():.1f} ± {100 * qat.std():.1f} | "
                         f"{100 * gap.mean():+.1f} ± {100 * gap.std():.1f} | "
                         + ", ".join(f"{100 * v:.1f}" for v in qat) + " |")
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=TASKS, default="sdigits")
    parser.add_argument("--kind", choices=sorted(MODELS), default="s5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--qat-epochs", type=int, default=20)
    parser.add_argument("--work", default=str(ROOT / "build" / "targets"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    out = Path(args.out)
    result = run(args)
    (out / f"lowbit_targets_{args.task}_{args.kind}.json").write_text(
        json.dumps(result, indent=1) + "\n")
    results = [json.loads(p.read_text()) for p in sorted(out.glob("lowbit_targets_*.json"))]
    write_markdown(results, out / "lowbit_targets.md")
    log(f"wrote {out / 'lowbit_targets.md'}")


if __name__ == "__main__":
    main()
