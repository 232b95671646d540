"""Findings: how far our SSMs quantize (the shape of Q-S5's and QS4D's results on our tasks).

For each task: train a float model (or reuse its checkpoint), then

* float vs PTQ vs QAT accuracy with every tensor at one width W (16/12/10/8/6/4/3/2 bits);
* the issue's two targets: QAT with 8-bit weights/state/activations, and QAT with 4-bit weights
  (Abar, Bbar, C, D, encoder, mixing, decoder) with 8-bit state and activations;
* per-component PTQ sensitivity: everything at 16 bits except one component (Abar, state, Bbar,
  C, D, activations) at 8/6/4/3/2 bits; and the state with one format for all modes (per-tensor)
  vs a format per mode.

Recipe (``ssmgen train``'s): the float model's B and C are equalized per mode (function-preserving,
``SSMNetwork.equalize_``), then every format is calibrated on 512 training samples with the MSE
rule (``--calib mse``; ``--calib range`` for the older range-covering formats), and QAT fine-tunes
the equalized float model. PTQ and QAT accuracies are those of the golden integer network
(bit-exact spec of the hardware) on the full test split. Writes docs/findings.md, docs/findings.png and docs/findings_<task>[_s5].json;
findings.md also includes the pages of the other studies (low-bit targets over seeds, noise
robustness, size vs precision: COMPANIONS), each written by its own script. A benchmark prints
and records figures; it asserts nothing.

For the sequence-to-sequence task (``lorenz``) the score is the NRMSE of the outputs at every
timestep instead of the accuracy (lower is better).

Run:  python benchmarks/findings.py [--tasks sdigits,sfreq,mnist1d,lorenz] [--epochs 100] [--qat-epochs 6]
      (checkpoints are kept under build/findings/ and reused on the next run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from ssmgen.train.commands import widths_from_bits
from ssmgen.train.loop import evaluate_golden, evaluate_torch, fit, load_checkpoint, save_checkpoint
from ssmgen.train.model import SSMNetwork
from ssmgen.train.ptq import FORMAT_CHOICES, build_config, calibrate, parse, uniform_widths
from ssmgen.train.tasks import load_task

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = (16, 12, 10, 8, 6, 4, 3, 2)
SENS_WIDTHS = (8, 6, 4, 3, 2)
COMPONENTS = {"Abar": ("abar",), "state": ("state",), "Bbar": ("bbar",), "C": ("c",),
              "D": ("d",), "activations": ("stream", "ssm_out", "net_input", "pool")}
#: The models compared: the `ssmgen train` defaults for S4D; for S5 (Q-S5's architecture) as many
#: channels and 64 states per layer, shared by all channels (``--kind s5``)
MODELS = {"s4d": dict(kind="s4d", channels=32, modes=16, layers=2),
          "s5": dict(kind="s5", channels=32, modes=64, layers=2)}
TASK_ORDER = ("sdigits", "sfreq", "mnist1d", "lorenz")
#: the pages of the other quantization studies, included at the end of findings.md: (page, the
#: benchmark that writes it)
COMPANIONS = (("lowbit_targets.md", "lowbit_targets.py"),
              ("noise_robustness.md", "noise_robustness.py"),
              ("size_precision.md", "size_precision.py"))


def log(msg):
    print(f"[findings {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def float_checkpoint(name: str, args, work: Path) -> Path:
    # the recipe is in the name, so a changed recipe retrains instead of reusing a stale model
    kind = "" if args.kind == "s4d" else f"_{args.kind}"
    return work / (f"{name}{kind}_float_e{args.epochs}_lr{args.lr}_do{args.dropout}"
                   f"_wd{args.weight_decay}_s{args.seed}.pt")


def float_model(task, args, work: Path) -> SSMNetwork:
    ckpt = float_checkpoint(task.name, args, work)
    if ckpt.exists():
        log(f"{task.name}: reusing {ckpt}")
        return load_checkpoint(ckpt)
    model = SSMNetwork(inputs=task.inputs, classes=task.classes, seed=args.seed,
                       dropout=args.dropout, readout=task.readout,
                       **MODELS[args.kind])
    start = time.perf_counter()
    fit(model, task.x_train, task.y_train, epochs=args.epochs, lr=args.lr, seed=args.seed,
        weight_decay=args.weight_decay, progress=False)
    log(f"{task.name}: float training {time.perf_counter() - start:.0f} s")
    save_checkpoint(model, ckpt)
    return model


def equalized(model: SSMNetwork, args) -> SSMNetwork:
    if not args.no_equalize:
        model.equalize_()
    return model


def run_task(name: str, args, work: Path) -> dict:
    task = load_task(name)
    model = equalized(float_model(task, args, work), args)
    # the score: a classifier's accuracy, or a sequence model's NRMSE (lower is better)
    float_acc, _ = evaluate_torch(model, task.x_test, task.y_test)
    weights = model.network_weights()
    cal = calibrate(weights, task.x_train[:512], activation=model.activation)
    log(f"{name}: float {float_acc:.4f}")

    def lost(score):
        """PTQ lost against float: more than half a point of accuracy, or 5% more NRMSE."""
        return score > 1.05 * float_acc if task.per_step else score < float_acc - 0.005

    def ptq(widths, **kw):
        cfg = parse(build_config(model.meta, cal, widths, steps=task.steps, choice=args.calib,
                                 **kw))
        return evaluate_golden(cfg, weights, task.x_test, task.y_test)[0]

    def qat(widths):
        m = equalized(load_checkpoint(float_checkpoint(name, args, work)), args)
        cfg = parse(build_config(m.meta, cal, widths, steps=task.steps, choice=args.calib))
        start = time.perf_counter()
        fit(m, task.x_train, task.y_train, epochs=args.qat_epochs, lr=args.qat_lr,
            seed=args.seed + 1, config=cfg, progress=False)
        acc = evaluate_golden(cfg, m.network_weights(), task.x_test, task.y_test)[0]
        return acc, time.perf_counter() - start

    result = {"task": name, "model": MODELS[args.kind], "train": len(task.x_train),
              "test": len(task.x_test),
              "metric": "nrmse" if task.per_step else "accuracy",
              "float": float_acc, "epochs": args.epochs, "qat_epochs": args.qat_epochs,
              "lr": args.lr, "qat_lr": args.qat_lr, "seed": args.seed,
              "dropout": args.dropout, "calib": args.calib, "equalize": not args.no_equalize,
              "command": "python benchmarks/findings.py " + " ".join(args.argv), "uniform": [], "targets": [], "sensitivity": {},
              "state_scale": []}
    qat_widths = set(args.qat_widths)
    for w in args.widths:
        row = {"width": w, "ptq": ptq(uniform_widths(w))}
        # QAT where PTQ lost against float (elsewhere PTQ already matches it)
        if w in qat_widths and (args.qat_all or lost(row["ptq"])):
            row["qat"], row["qat_seconds"] = qat(uniform_widths(w))
        log(f"{name}: W={w}: {row}")
        result["uniform"].append(row)
    if name == "sdigits":
        for label, widths in (("QAT 4-bit weights (incl. Abar), 8-bit state and activations",
                               widths_from_bits(weights=4, state=8, activations=8)),
                              ("QAT 4-bit weights, 8-bit Abar, state and activations",
                               widths_from_bits(weights=4, state=8, activations=8, abar=8))):
            acc, seconds = qat(widths)
            row = {"label": label, "qat": acc, "ptq": ptq(widths), "qat_seconds": seconds,
                   "delta": acc - float_acc}
            log(f"{name}: target {row}")
            result["targets"].append(row)
    if name == "sdigits":     # the 8-bit target is the uniform W=8 row (biases 8 bits too)
        eight = next((row for row in result["uniform"] if row["width"] == 8), None)
        if eight is not None:
            acc = eight.get("qat", eight["ptq"])
            result["targets"].insert(0, {"label": "QAT 8-bit weights, state, activations"
                                         + ("" if "qat" in eight else " (PTQ already within 0.5%)"),
                                         "qat": acc, "ptq": eight["ptq"],
                                         "delta": acc - float_acc})
    for comp, keys in COMPONENTS.items():
        row = {}
        for w in args.sens_widths:
            row[w] = ptq(uniform_widths(16, **{k: w for k in keys}))
        result["sensitivity"][comp] = row
        log(f"{name}: sensitivity {comp}: {row}")
    for w in [w for w in (10, 8, 6) if w in args.sens_widths or w == 10]:
        widths = uniform_widths(16, state=w)
        result["state_scale"].append({"width": w, "per_mode": ptq(widths),
                                      "per_tensor": ptq(widths, per_mode_state=False)})
    return result


def results_file(task: str, kind: str) -> str:
    return f"findings_{task}.json" if kind == "s4d" else f"findings_{task}_{kind}.json"


def describe(model: dict) -> str:
    states = (f"{model['modes']} complex modes per channel" if model["kind"] == "s4d"
              else f"{model['modes']} states per layer")
    return f"{model['kind'].upper()}, H = {model['channels']}, {states}, {model['layers']} layers"


def pct(x):
    return "—" if x is None else f"{100 * x:.1f}"


def scorer(r):
    """How a result's scores print: accuracy in percent, or the NRMSE itself."""
    if r.get("metric") == "nrmse":
        return lambda x: "—" if x is None else f"{x:.4f}"
    return pct


def write_markdown(results, path: Path):
    lines = ["# Quantization findings", "",
             "Generated by `benchmarks/findings.py` (the command and run time of each task are "
             f"below; {os.cpu_count()} CPU cores shared with other work, "
             f"{platform.python_implementation()} {platform.python_version()}, "
             f"torch {torch.__version__}). Do not edit by hand.", "",
             "Models (named in each section): S4D as `ssmgen train`'s defaults, S5 (Q-S5's "
             "architecture: one MIMO SSM per layer) with as many channels; ReLU, mean pooling. "
             "QAT fine-tunes the float model after a function-preserving per-mode B/C "
             "equalization. Formats: power-of-two scales calibrated on 512 training samples "
             "(`--calib` rule below: mse = least relative quantization error per layer, range = "
             "cover the maximum; per-mode integer bits for the state, which always cover its "
             "maximum, floored at the layer's largest minus 16), half_even rounding, saturation, full-precision accumulators. PTQ and QAT "
             "accuracies are measured on the "
             "golden integer network (bit-exact spec of the hardware) on the whole test split.", ""]
    for r in results:
        model = r.get("model", MODELS["s4d"])
        show = scorer(r)
        nrmse = r.get("metric") == "nrmse"
        lines += [f"## {r['task']}, {model['kind'].upper()} ({r['train']} train / {r['test']} test)",
                  "", f"Model: {describe(model)}.", "",
                  f"`{r['command']}`: float training {r['epochs']} epochs (lr {r['lr']}, "
                  f"dropout {r.get('dropout', 0.1)}), QAT {r['qat_epochs']} epochs "
                  f"(lr {r['qat_lr']}), formats {r.get('calib', 'range')}, B/C equalization "
                  f"{'on' if r.get('equalize') else 'off'}, seed {r['seed']}; "
                  f"{r.get('minutes', '?')} min.", "",
                  (f"A sequence-to-sequence model (per-step readout), scored by the NRMSE of "
                   f"its outputs at every timestep (lower is better). Float NRMSE: "
                   f"**{show(r['float'])}**." if nrmse else
                   f"Float accuracy: **{pct(r['float'])}%**."), "",
                  "### Every tensor at W bits", "",
                  ("QAT runs where PTQ's NRMSE is more than 5% above float's" if nrmse else
                   "QAT runs where PTQ loses more than 0.5 points")
                  + ", at the widths given by `--qat-widths` (— : not run).", "",
                  "| W | float | PTQ | QAT |", "|---|---|---|---|"]
        for row in r["uniform"]:
            lines.append(f"| {row['width']} | {show(r['float'])} | {show(row['ptq'])} | "
                         f"{show(row.get('qat'))} |")
        if r["targets"]:
            lines += ["", "### Targets", "", "| configuration | PTQ | QAT | QAT − float |",
                      "|---|---|---|---|"]
            for row in r["targets"]:
                lines.append(f"| {row['label']} | {pct(row['ptq'])} | {pct(row['qat'])} | "
                             f"{100 * row['delta']:+.1f} |")
        sens = sorted(next(iter(r["sensitivity"].values())), reverse=True)
        lines += ["", "### PTQ sensitivity: one component at W bits, the rest at 16", "",
                  "| component | " + " | ".join(f"W={w}" for w in sens) + " |",
                  "|---|" + "---|" * len(sens)]
        for comp, row in r["sensitivity"].items():
            lines.append(f"| {comp} | " + " | ".join(show(row[w]) for w in sens) + " |")
        lines += ["", "### State format: one per mode vs one for all modes (PTQ, rest at 16)", "",
                  "| state W | per mode | per tensor |", "|---|---|---|"]
        for row in r["state_scale"]:
            lines.append(f"| {row['width']} | {show(row['per_mode'])} | {show(row['per_tensor'])} |")
        lines.append("")
    lines += ["![accuracy vs width](findings.png)", ""]
    # the studies of the other benchmarks, so that this page shows every table: each is its
    # own page too, written (with its command, seeds and run time) by the script it names
    for name, what in COMPANIONS:
        page = path.parent / name
        if page.exists():
            lines += [f"<!-- included from {name}, written by benchmarks/{what} -->", ""]
            lines += [("#" + line) if line.startswith("#") else line
                      for line in page.read_text().splitlines()]
            lines.append("")
    path.write_text("\n".join(lines))


def write_plot(results, path: Path):
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4 * len(results)), squeeze=False)
    for (ax1, ax2), r in zip(axes, results):
        nrmse = r.get("metric") == "nrmse"
        scale = 1 if nrmse else 100           # NRMSE as it is (log axis), accuracy in %
        label, limits = ("test NRMSE (lower is better)", {}) if nrmse else ("test accuracy %", {"ylim": (0, 100)})
        ws = [row["width"] for row in r["uniform"]]
        ax1.axhline(scale * r["float"], color="k", ls="--", label="float")
        ax1.plot(ws, [scale * row["ptq"] for row in r["uniform"]], "o-", label="PTQ")
        q = [(row["width"], scale * row["qat"]) for row in r["uniform"] if "qat" in row]
        if q:
            ax1.plot(*zip(*q), "s-", label="QAT")
        title = f"{r['task']}, {r.get('model', MODELS['s4d'])['kind'].upper()}"
        ax1.set(xlabel="bits (every tensor)", ylabel=label, title=title, **limits)
        ax1.invert_xaxis()
        ax1.legend()
        for comp, row in r["sensitivity"].items():
            sens = sorted(row, reverse=True)
            ax2.plot(sens, [scale * row[w] for w in sens], "o-", label=comp)
        ax2.set(xlabel="bits (one component; rest 16)", ylabel=f"PTQ {label}",
                title=f"{title}: PTQ sensitivity", **limits)
        if nrmse:
            ax1.set_yscale("log")
            ax2.set_yscale("log")
        ax2.invert_xaxis()
        ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="sdigits,sfreq")
    parser.add_argument("--kind", choices=sorted(MODELS), default="s4d",
                        help="the SSM layer kind (findings_TASK.json for s4d, "
                             "findings_TASK_s5.json for s5)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--qat-epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--qat-lr", type=float, default=0.002)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--calib", choices=FORMAT_CHOICES, default="mse")
    parser.add_argument("--no-equalize", action="store_true")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    parser.add_argument("--qat-widths", type=int, nargs="+", default=list(WIDTHS))
    parser.add_argument("--sens-widths", type=int, nargs="+", default=list(SENS_WIDTHS))
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite findings.md / .png from the stored findings_*.json")
    parser.add_argument("--qat-all", action="store_true",
                        help="QAT at every width, also where PTQ already matches float")
    parser.add_argument("--work", default=str(ROOT / "build" / "findings"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    torch.set_num_threads(1)   # small tensors: threads only add overhead (and spin under load)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in [] if args.report_only else args.tasks.split(","):
        start = time.perf_counter()
        result = run_task(name, args, work)
        result["minutes"] = round((time.perf_counter() - start) / 60, 1)
        (out / results_file(name, args.kind)).write_text(
            json.dumps(result, indent=1, default=str) + "\n")
    # the report covers every task measured so far (tasks may be run by separate invocations)
    results = [json.loads((out / results_file(name, kind)).read_text())
               for name in TASK_ORDER for kind in MODELS if (out / results_file(name, kind)).exists()]
    for r in results:   # JSON turned the integer keys of the sensitivity rows into strings
        r["sensitivity"] = {c: {int(w): v for w, v in row.items()} for c, row in r["sensitivity"].items()}
    write_markdown(results, out / "findings.md")
    write_plot(results, out / "findings.png")
    log(f"wrote {out / 'findings.md'} and findings.png")


if __name__ == "__main__":
    main()
