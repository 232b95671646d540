"""Noise robustness (QS4D's analog-noise experiment): accuracy of float, PTQ and QAT models under
Gaussian noise on the weights and on the state (``train/noise.py`` defines the noise model).

For each MODEL_DIR given (written by ``ssmgen train``: float checkpoint, ``ptq_config.toml``,
QAT checkpoint and ``config.toml``), and each noise level, the test split is evaluated on
``--seeds`` devices (independent weight draws and state noise), in the torch model whose
zero-noise logits are the golden integer network's (tests/test_train.py). Weight noise and state
noise are swept separately (the other at zero). Extra QAT models (e.g. noise-aware QAT, ``ssmgen
train --qat-noise-weight ...``) join a task's rows with ``--extra TASK=LABEL=MODEL_DIR``.

A section is named by its task, or ``TASK/NAME`` for another model on the same task (e.g.
``sdigits/S5``); each run updates its sections in docs/noise_robustness.json and keeps the others
(with the command that measured them), so models can be measured by separate runs.

Writes docs/noise_robustness.md (tables: mean and spread over seeds), docs/noise_robustness.json
and docs/noise_robustness.png. A benchmark prints and records figures; it asserts nothing.

Run:  python benchmarks/noise_robustness.py --model sdigits=MODEL_DIR [--model mnist1d=DIR]
          [--model sdigits/S5=DIR] [--extra sdigits="noise-aware QAT"=DIR] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ssmgen.train.noise import VARIANTS, Noise, load_variant, noisy_accuracy
from ssmgen.train.tasks import load_task

ROOT = Path(__file__).resolve().parent.parent
WEIGHT_LEVELS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
STATE_LEVELS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)
LABELS = {"float": "float", "ptq": "PTQ", "qat": "QAT"}
#: the command of the sections measured before each section recorded its own (2026-12-07)
LEGACY_COMMAND = ("--seeds 5 --model sdigits=build/sdigits_default --extra sdigits=noise-aware "
                  "QAT=build/sdigits_noiseqat --model mnist1d=build/mnist1d_default --extra "
                  "mnist1d=noise-aware QAT=build/mnist1d_noiseqat")


def log(msg):
    print(f"[noise {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def curves(model_dir, variant, task, args):
    """{"weight": [(level, mean, std)], "state": [...]} of one model."""
    model, config, qnet = load_variant(model_dir, variant)
    out = {}
    for kind, levels in (("weight", args.weight_levels), ("state", args.state_levels)):
        rows = []
        for level in levels:
            seeds = [0] if level == 0 else range(args.seeds)   # no noise: one exact figure
            accs = [noisy_accuracy(model, config, qnet, task.x_test, task.y_test,
                                   Noise(**{kind: level, "seed": seed})) for seed in seeds]
            rows.append((level, float(np.mean(accs)), float(np.std(accs))))
        out[kind] = rows
    return out


def write_markdown(results, path: Path, args):
    lines = ["# Noise robustness: float vs PTQ vs QAT under weight and state noise", "",
             "Written by `benchmarks/noise_robustness.py` (each section's command and seeds "
             "below; devices: independent weight draws, fresh state "
             "noise per step), test split, accuracy mean ± std over seeds. The noise model is "
             "`train/noise.py`: weight noise std = level × the tensor's largest |value|; state "
             "noise std = level × the range 2^(I-1) of each state's format, added after every "
             "update. The quantized models' zero-noise figures are the golden integer network's. "
             "The MODEL_DIRs: `ssmgen train --task TASK -o build/TASK_default` (defaults, seed 0; "
             "8-bit QAT), and the noise-aware ones `ssmgen train --task TASK --init "
             "build/TASK_default/checkpoints/float.pt --qat-noise-weight 0.02 --qat-noise-state "
             "0.01 -o build/TASK_noiseqat`; S5: the same with `--kind s5 --modes 64` (as "
             "findings.md's S5 models).", ""]
    for task, r in results.items():
        command = r.get("command", args.legacy_command)
        lines += [f"## {task}", "", f"`python benchmarks/noise_robustness.py {command}`, "
                  f"{r.get('seeds', 5)} seeds per level. Models: " + "; ".join(
                      f"{m['label']}: `{m['source']}`" for m in r["models"]) + f". Run time "
                  f"{r['minutes']} min on 2 cores.", ""]
        for kind, title in (("weight", "Weight noise"), ("state", "State noise")):
            levels = [row[0] for row in r["models"][0]["curves"][kind]]
            lines += [f"### {title} (relative std)", "",
                      "| model | " + " | ".join(f"{100 * lv:g}%" for lv in levels) + " |",
                      "|---|" + "---|" * len(levels)]
            for m in r["models"]:
                lines.append(f"| {m['label']} | " + " | ".join(
                    f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std else "")
                    for _, mean, std in m["curves"][kind]) + " |")
            lines.append("")
    lines += ["![accuracy vs noise](noise_robustness.png)", ""]
    path.write_text("\n".join(lines))


def write_plot(results, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4 * len(results)), squeeze=False)
    for row, (task, r) in zip(axes, results.items()):
        for ax, kind in zip(row, ("weight", "state")):
            for m in r["models"]:
                levels, means, stds = zip(*m["curves"][kind])
                ax.errorbar([100 * lv for lv in levels], [100 * v for v in means],
                            yerr=[100 * s for s in stds], marker="o", capsize=3, label=m["label"])
            ax.set(xlabel=f"{kind} noise std (% of range)", ylabel="test accuracy %",
                   title=f"{task}: {kind} noise", ylim=(0, 100))
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _source(model_dir: Path, variant: str) -> str:
    """The MODEL_DIR's name, the model used, and its QAT noise if it was trained with one."""
    metrics = json.loads((model_dir / "metrics.json").read_text())
    noise = metrics.get("qat_noise") if variant == "qat" else None
    trained = ("" if noise is None else f", QAT with weight noise {noise['weight']} and state "
               f"noise {noise['state']}")
    return f"{model_dir.name} ({variant}{trained})"


def _pairs(items, parts: int, flag: str):
    out = []
    for item in items:
        fields = item.split("=", parts - 1)
        if len(fields) != parts:
            raise SystemExit(f"{flag}: expected {'='.join(['X'] * parts)}, not {item!r}")
        out.append(fields)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="TASK=MODEL_DIR")
    parser.add_argument("--extra", action="append", default=[], help="TASK=LABEL=MODEL_DIR")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--weight-levels", type=float, nargs="+", default=list(WEIGHT_LEVELS))
    parser.add_argument("--state-levels", type=float, nargs="+", default=list(STATE_LEVELS))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    args.legacy_command = LEGACY_COMMAND
    torch.set_num_threads(1)
    out = Path(args.out)
    extras = _pairs(args.extra, 3, "--extra")
    stored = out / "noise_robustness.json"
    # sections measured by earlier runs stay (their command with them)
    results = json.loads(stored.read_text()) if stored.exists() else {}
    for section, model_dir in _pairs(args.model, 2, "--model"):
        start = time.perf_counter()
        task = load_task(section.split("/")[0])
        models = [(LABELS[v], model_dir, v) for v in VARIANTS]
        models += [(label, path, "qat") for t, label, path in extras if t == section]
        entries = []
        for label, path, variant in models:
            log(f"{section}: {label} ({path})")
            entries.append({"label": label, "source": _source(Path(path), variant),
                            "curves": curves(path, variant, task, args)})
            for kind in ("weight", "state"):
                log("  " + kind + ": " + ", ".join(f"{100 * lv:g}% {100 * m:.1f}"
                                                   for lv, m, _ in entries[-1]["curves"][kind]))
        results[section] = {"models": entries, "seeds": args.seeds,
                            "command": " ".join(args.argv),
                            "minutes": round((time.perf_counter() - start) / 60, 1)}
    stored.write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(results, out / "noise_robustness.md", args)
    write_plot(results, out / "noise_robustness.png")
    log(f"wrote {out / 'noise_robustness.md'}, .json and .png")


if __name__ == "__main__":
    main()
