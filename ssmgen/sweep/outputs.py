"""What a sweep leaves in its folder: ``results.json`` (everything, the full config of each
point included), ``results.csv`` (one row per point, scalar columns), ``pareto.csv``, the plots
(PNG) and ``report.md`` that embeds them with the Pareto table and the ``fit`` answer; and, on
request, the chosen design exported as a ready config.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np

from ..util.files import write_atomically
from .config import HARDWARE_AXES

__all__ = ["write_outputs", "export_design", "CSV_COLUMNS", "PLOTS"]

#: Scalar columns of results.csv after the axis columns.
CSV_COLUMNS = ("status", "feasible", "feasible_from", "pareto", "fit", "quality",
               "quality_metric", "max_abs_error", "nrmse", "luts", "ffs", "dsps", "brams", "figures_from",
               "fmax_mhz", "timesteps_per_s", "cycles_per_timestep", "latency_cycles",
               "latency_us", "model_hash", "float_accuracy", "model_dir", "reason")
#: Plot file -> (x figure, x label): quality against each.
PLOTS = {"quality_vs_luts.png": ("luts", "LUT4"), "quality_vs_dsps.png": ("dsps", "DSP blocks"),
         "quality_vs_brams.png": ("brams", "block RAMs"),
         "quality_vs_timesteps_per_s.png": ("timesteps_per_s", "timesteps per second")}


def _axis_columns(results: dict) -> list[str]:
    return [f"axis.{name}" for name in results["axes"]]


def _csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["id", *columns], extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in ["id", *columns]})
    return buffer.getvalue()


def _plots(results: dict, out_dir: Path) -> list[str]:
    """Quality against each resource and the throughput, the Pareto points joined; and quality
    against each width axis (the sensitivity of each component). Writes what each plot shows to
    ``plots.json`` (point ids and coordinates), so it can be checked against the CSV. Returns
    the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["points"] if r["quality"] is not None]
    metric = next((r["quality_metric"] for r in rows), "quality")
    ylabel = {"accuracy": "accuracy (test split)", "snr_db": "SNR vs float (dB)"}.get(metric, metric)
    written, shown = [], {}
    for name, (key, xlabel) in PLOTS.items():
        pts = [r for r in rows if r.get(key) is not None]
        if not pts:
            continue
        shown[name] = {"x": key, "points": [[r["id"], r[key], r["quality"]] for r in pts]}
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for source, marker in (("synthesis", "o"), ("estimate", "x")):
            group = [r for r in pts if r["figures_from"] == source]
            if group:
                ax.scatter([r[key] for r in group], [r["quality"] for r in group], marker=marker,
                           alpha=0.6, label=f"figures from {source} ({len(group)})",
                           c=["tab:green" if r["feasible"] else "tab:gray" for r in group])
        # this plot's own front: the feasible points no other beats in quality and this figure
        feasible = [r for r in pts if r["feasible"]]
        better = max if key == "timesteps_per_s" else min
        front = sorted((r for r in feasible
                        if not any(q["quality"] >= r["quality"] and better(q[key], r[key]) == q[key]
                                   and (q["quality"], q[key]) != (r["quality"], r[key])
                                   for q in feasible)), key=lambda r: r[key])
        if front:
            ax.step([r[key] for r in front], [r["quality"] for r in front], "r-", lw=1.2,
                    where="post" if key != "timesteps_per_s" else "pre",
                    label=f"front of quality and {xlabel}")
        marked = [r for r in pts if r["pareto"]]
        if marked:
            ax.scatter([r[key] for r in marked], [r["quality"] for r in marked], s=80,
                       facecolors="none", edgecolors="tab:red",
                       label=f"Pareto set of {', '.join(results['objectives'])}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{results['sweep']}: green = meets the constraints")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / name)
        plt.close(fig)
        written.append(name)
    width_axes = [a for a in results["axes"] if a == "width" or a.startswith("width.")]
    if width_axes:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for axis in width_axes:
            values = sorted({r[f"axis.{axis}"] for r in rows})
            best = [max(r["quality"] for r in rows if r[f"axis.{axis}"] == v) for v in values]
            ax.plot(values, best, "o-", label=axis)
        ax.set_xlabel("width W (bits)")
        ax.set_ylabel(f"best {ylabel}")
        ax.set_title("sensitivity: the best quality at each width of each axis")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "sensitivity.png")
        plt.close(fig)
        written.append("sensitivity.png")
    heatmap = _heatmap(results, rows, ylabel, out_dir)
    if heatmap is not None:
        shown["quality_heatmap.png"] = heatmap
        written.append("quality_heatmap.png")
    write_atomically(out_dir / "plots.json", json.dumps(shown, indent=1) + "\n")
    return [*written, "plots.json"]


def _heatmap(results: dict, rows: list[dict], label: str, out_dir: Path) -> dict | None:
    """With exactly two model axes (axes other than the hardware's) of several values, e.g.
    states x width (QS4D's size against precision): the best quality of each cell (over the
    hardware axes) as a heat map. Returns what it shows, or None."""
    import matplotlib.pyplot as plt
    model_axes = [a for a, values in results["axes"].items()
                  if a not in HARDWARE_AXES and len(values) > 1]
    if len(model_axes) != 2 or not rows:
        return None
    x_axis, y_axis = model_axes
    xs, ys = results["axes"][x_axis], results["axes"][y_axis]
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in rows:
        i, j = ys.index(r[f"axis.{y_axis}"]), xs.index(r[f"axis.{x_axis}"])
        grid[i, j] = np.fmax(grid[i, j], r["quality"])
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 2.5, 0.8 * len(ys) + 2), dpi=120)
    image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    for i in range(len(ys)):
        for j in range(len(xs)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=8,
                        color="white" if grid[i, j] < np.nanmean(grid) else "black")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x_axis)
    ax.set_ylabel(y_axis)
    ax.set_title(f"{results['sweep']}: best {label}")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out_dir / "quality_heatmap.png")
    plt.close(fig)
    return {"x": x_axis, "y": y_axis,
            "cells": [[xs[j], ys[i], float(grid[i, j])] for i in range(len(ys))
                      for j in range(len(xs)) if not np.isnan(grid[i, j])]}


def _table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(["id", *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        cells = []
        for c in ["id", *columns]:
            v = row.get(c)
            cells.append("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(results: dict, plots: list[str]) -> str:
    c = results["counts"]
    axes = _axis_columns(results)
    figures = ["quality", "luts", "ffs", "dsps", "brams", "fmax_mhz", "timesteps_per_s",
               "latency_cycles", "figures_from"]
    pareto = [r for r in results["points"] if r["pareto"]]
    lines = [f"# Sweep {results['sweep']}", "",
             f"Base: {results['base']['kind']} `{results['base']['name']}`. Objectives: "
             f"{', '.join(results['objectives'])}. Strategy: {results['strategy']['kind']}, "
             f"synthesis of {results['synthesize']}.", "",
             f"{c['points']} points: {c['pruned']} pruned by the estimate (even its best case "
             f"breaks a constraint), {c['failed']} failed, {c['synthesized']} synthesized "
             f"(Yosys + nextpnr); the others carry the estimate's figures "
             f"(`figures_from`).", ""]
    fit = next((r for r in results["points"] if r["fit"]), None)
    lines += ["## The fit answer", ""]
    if fit is None:
        lines += ["No point is known to meet the constraints.", ""]
    else:
        lines += [f"Point {fit['id']}: " + ", ".join(f"{a[5:]} = {fit[a]}" for a in axes)
                  + f"; quality {fit['quality']:.4g} ({fit['quality_metric']}), "
                  + ", ".join(f"{r} {fit[r]}" for r in ("luts", "ffs", "dsps", "brams")
                              if fit.get(r) is not None)
                  + (f", {fit['timesteps_per_s']:.4g} timesteps/s" if fit.get("timesteps_per_s")
                     else "") + f" (figures from {fit['figures_from']}).", ""]
    lines += ["## Pareto set", "", _table(pareto, [*axes, *figures]) if pareto
              else "(empty)", ""]
    for name in plots:
        lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def write_outputs(results: dict, out_dir, *, plots: bool = True) -> list[str]:
    """Write results.json, results.csv, pareto.csv, the plots and report.md into ``out_dir``."""
    out_dir = Path(out_dir)
    columns = [*_axis_columns(results), *CSV_COLUMNS]
    write_atomically(out_dir / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    write_atomically(out_dir / "results.csv", _csv(results["points"], columns))
    write_atomically(out_dir / "pareto.csv",
                     _csv([r for r in results["points"] if r["pareto"]], columns))
    written = _plots(results, out_dir) if plots else []
    write_atomically(out_dir / "report.md",
                     _report(results, [w for w in written if w.endswith(".png")]) + "\n")
    return ["results.json", "results.csv", "pareto.csv", *written, "report.md"]


def export_design(results: dict, out_dir, *, point_id: int | None = None) -> Path:
    """Write the ``fit`` answer (or point ``point_id``) as a ready config into ``out_dir``:
    ``config.toml``, with its weights file copied beside it when it has one."""
    from ..train.ptq import to_toml
    chosen = point_id if point_id is not None else results["fit"]
    if chosen is None:
        raise ValueError("--export-best: no point is known to meet the constraints; nothing to "
                         "export")
    row = next((r for r in results["points"] if r["id"] == chosen), None)
    if row is None:
        raise ValueError(f"--export-best: no point {chosen}")
    out_dir = Path(out_dir)
    data = json.loads(json.dumps(row["config"]))
    weights = data.get("weights", {})
    if weights.get("source") == "file":
        source = Path(weights["file"])
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out_dir / source.name)
        data["weights"] = {"source": "file", "file": source.name}
    header = (f"# Exported by `ssmgen sweep` from {results['sweep']}: point {chosen} "
              f"({', '.join(f'{k[5:]}={row[k]}' for k in _axis_columns(results))}).\n")
    return write_atomically(out_dir / "config.toml", to_toml(data, header=header))
