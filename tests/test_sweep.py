"""``ssmgen sweep``: bad sweep files are named before any work; points become the configs they
stand for; the staged evaluation prunes only what cannot fit, caches everything, gives the same
results on a Dask LocalCluster as on a process pool; the Pareto set is non-dominated, the plots
show what the CSV says, a cached rerun changes nothing; examples/sweep_small.toml runs end to
end."""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from ssmgen.cli import main
from ssmgen.design import Design
from ssmgen.spec.errors import ConfigError
from ssmgen.sweep.config import OBJECTIVES, parse_sweep
from ssmgen.sweep.pareto import dominates
from ssmgen.sweep.points import LayerBase, grid_points, random_points
from ssmgen.sweep.runner import run_sweep

ROOT = Path(__file__).resolve().parent.parent
UP5K = ROOT / "examples" / "s4d_up5k.toml"


def _sweep(tmp_path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text.replace("BASE", str(UP5K)))
    return path


SMALL = '''
[base]
config = "BASE"
[axes]
"width.abar" = [6, 10]
"width.state" = [8, 12]
lanes = [1, 2]
[objectives]
names = ["quality", "luts", "dsps"]
[strategy]
synthesize = "none"
[quality]
sequences = 2
steps = 48
'''


@pytest.mark.parametrize("edit,message", [
    ({"axes": {"colour": [1]}}, "axes.colour: unknown axis"),
    ({"axes": {"width": []}}, "axes.width: is empty"),
    ({"axes": {"width": [30]}}, "axes.width: 30 is not allowed; allowed: integers 2..24"),
    ({"axes": {"width.gain": [8]}}, "axes.width.gain: unknown component 'gain'"),
    ({"axes": {"lanes": [2, 2]}}, "axes.lanes: lists a value twice"),
    ({"axes": {"target": ["virtex"]}}, "axes.target: 'virtex' is not allowed"),
    ({"axes": {"storage": ["bram"]}}, "axes.storage: 'bram' is not allowed"),
    ({"axes": {"dsp_products": [-1]}}, "axes.dsp_products: -1 is not allowed"),
    ({"axes": {"fold_layers": [1]}}, "axes.fold_layers: 1 is not allowed; allowed: true, false"),
    ({"axes": {"rho_bits": [4]}}, "axes.rho_bits: applies to polar points only"),
    ({"constraints": {"max_gates": 10}}, "constraints: unknown key(s) max_gates"),
    ({"objectives": {"names": ["speed"]}}, "objectives.names: 'speed' is not allowed"),
    ({"strategy": {"kind": "random"}}, "strategy.samples: missing"),
    ({"strategy": {"kind": "grid", "samples": 3}}, "strategy.samples: applies to kind"),
    ({"strategy": {"kind": "fit", "samples": 0}}, "strategy.samples: 0 is out of range"),
    ({"quality": {"test_subset": 5}}, "quality: unknown key(s) test_subset for a layer base"),
    ({"base": {"config": "missing.toml"}}, "base.config:"),
    ({"base": {}}, "base: give exactly one of base.config"),
    ({"training": {"qat_epochs": 1}}, "training: applies to a MODEL_DIR base"),
    ({"strategy": {"place": "yes"}}, "strategy.place: 'yes' is not allowed"),
    ({"axes": {"states": [0]}}, "axes.states: 0 is not allowed"),
])
def test_bad_sweep_files_name_the_field(edit, message, tmp_path):
    data = {"base": {"config": str(UP5K)}, "axes": {"width": [8]}}
    for section, table in edit.items():
        data[section] = table if section == "base" else {**data.get(section, {}), **table}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sweep(data, path=tmp_path / "s.toml")


def test_a_point_the_config_rejects_stops_the_sweep_before_any_work(tmp_path, capsys):
    """A uniform 6-bit state cannot hold the "auto" integer bits of s4d_small: the sweep stops
    naming the point and the field, and writes nothing."""
    path = tmp_path / "bad.toml"
    path.write_text(f'[base]\nconfig = "{ROOT / "examples" / "s4d_small.toml"}"\n'
                    f'[axes]\nwidth = [12, 6]\n')
    out = tmp_path / "out"
    assert main(["sweep", str(path), "-o", str(out), "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "point width=6 target=ice40-up5k: quant.state.int_bits" in err
    assert not out.exists()


def test_points_are_the_configs_they_stand_for():
    base = LayerBase(UP5K)
    data = base.config_data({"width": 6, "width.state": 12, "lanes": 2,
                             "complex_multipliers": 4})
    quant = data["quant"]
    assert quant["abar"]["format"] == "fixed<6,1>" and quant["c"]["format"] == "fixed<6,1>"
    assert quant["input"]["format"] == "fixed<6,3>"          # integer bits (the range) kept
    assert quant["state"]["format"] == "fixed<12,4>"         # width.state overrides width
    assert quant["d"]["format"] == "fixed<6,2>"
    assert data["hardware"] == {"lanes": 2, "complex_multipliers": 4, "loop_stages": "auto"}
    hardware = base.config_data({"storage": "memory", "dsp_products": 8,
                                 "fold_layers": True})["hardware"]
    assert hardware["storage"] == "memory" and hardware["dsp_products"] == 8
    assert hardware["fold_layers"] is True
    polar = base.config_data({"abar_form": "polar", "width": 6})["quant"]["abar"]
    assert polar["form"] == "polar" and polar["rho_bits"] == 4 and polar["theta_bits"] == 6
    assert polar["format"] == "fixed<16,1>"      # a polar Abar keeps a wide decoded format
    assert UP5K.read_text() == UP5K.read_text()  # (the base file is only read)


def test_model_points_keep_the_base_hardware():
    """A point over a trained MODEL_DIR keeps its base's DSP budget and folding (the widths are
    re-quantized, the circuit options stay), and a hardware axis overrides them."""
    from ssmgen.sweep.points import ModelBase
    base = ModelBase(Path(__file__).resolve().parent.parent / "examples" / "sdigits_up5k")
    hardware = base.config_data({"width.state": 6})["hardware"]
    assert hardware["dsp_products"] == 8 and hardware["fold_layers"] is True
    assert base.config_data({"fold_layers": False})["hardware"]["fold_layers"] is False


def test_grid_and_random_points():
    axes = {"a": (1, 2, 3), "b": ("x", "y"), "target": ("ice40-up5k",)}
    grid = grid_points(axes)
    assert len(grid) == 6 and grid[0] == {"a": 1, "b": "x", "target": "ice40-up5k"}
    sample = random_points(axes, 4, seed=3)
    assert len(sample) == 4 and all(p in grid for p in sample)
    assert sample == random_points(axes, 4, seed=3)
    assert random_points(axes, 10, seed=0) == grid


def _csv_rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_staged_sweep_caches_and_prunes_only_what_cannot_fit(tmp_path):
    sweep = parse_sweep(__import__("tomllib").loads(SMALL.replace("BASE", str(UP5K))),
                        path=tmp_path / "s.toml")
    results = run_sweep(sweep, tmp_path / "out", workers=1, show_progress=False,
                        say=lambda _: None)
    rows = results["points"]
    assert len(rows) == 8
    pruned = [r for r in rows if r["status"] == "pruned"]
    # lanes = 2 doubles the multipliers: 14 DSP blocks by the estimate (exact), 8 on an UP5K
    assert {r["axis.lanes"] for r in pruned} == {2} and len(pruned) == 4
    assert all("dsps: at least 14 by the estimate, 8 allowed" in r["reason"] for r in pruned)
    live = [r for r in rows if r["status"] == "ok"]
    assert all(r["quality_metric"] == "snr_db" and r["quality"] > 10 for r in live)
    # the quality of a config does not depend on its hardware: measured once per format set
    cached = list((tmp_path / "out" / "cache" / "quality").rglob("*.json"))
    assert len(cached) == 4
    # the estimate's figures, said so; wider formats cost more LUTs
    assert all(r["figures_from"] == "estimate" for r in rows)
    start = time.perf_counter()
    again = run_sweep(sweep, tmp_path / "out", workers=1, show_progress=False, say=lambda _: None)
    assert time.perf_counter() - start < 10
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("estimate", "synthesis")}  # noqa: E731
                        for r in rs]
    assert strip(again["points"]) == strip(rows)


def test_memory_designs_are_bounded_by_their_own_held_out_errors():
    """A block-RAM design's intervals come from the held-out block-RAM designs' errors (not the
    register designs'): Yosys's count lies in [est / (1 + over), est / (1 + under)]; DSPs exact."""
    from ssmgen.sweep.runner import Point, _estimate_bounds
    from ssmgen.synth.estimate import error_bounds
    est = {"luts": 9000, "ffs": 9000, "dsps": 20, "brams": 40, "cycles_per_timestep": 64,
           "latency_cycles": 80, "kind": "layer"}
    for storage in ("registers", "memory"):
        point = Point(0, {"target": "ice40-up5k"}, {}, estimate=dict(est, storage=storage))
        _estimate_bounds(point)
        for resource, (under, over) in error_bounds("ice40", "layer", storage).items():
            interval = point.bounds[resource]
            assert interval.lo == math.floor(est[resource] / (1 + over))
            assert interval.hi == math.ceil(est[resource] / (1 + under))
        assert point.bounds["dsps"].lo == point.bounds["dsps"].hi == 20
    # networks of folded layers: DSPs and block RAMs exact, no bound on LUTs and FFs (never
    # pruned by them: the trained example reads outside the held-out networks' errors)
    point = Point(0, {"target": "ice40-up5k"}, {},
                  estimate=dict(est, storage="folded", kind="network"))
    _estimate_bounds(point)
    for resource in ("luts", "ffs"):
        assert (point.bounds[resource].lo, point.bounds[resource].hi) == (0, math.inf)
    assert point.bounds["dsps"].lo == point.bounds["dsps"].hi == 20
    assert point.bounds["brams"].lo == point.bounds["brams"].hi == 40


def test_candidates_are_synthesized_until_the_front_is_settled(monkeypatch, tmp_path):
    """Synthesis goes a batch at a time, the most accurate candidates first; a measured point
    that meets the constraints settles the candidates it surely beats, which are then not
    synthesized, and the front is the one synthesizing every candidate gives."""
    from ssmgen.sweep import runner
    from ssmgen.sweep.pareto import pareto_front
    sweep = parse_sweep({"base": {"config": str(UP5K)}, "axes": {"width": [8]},
                         "objectives": {"names": ["quality", "luts"]},
                         "constraints": {"fit_device": False}}, path=tmp_path / "s.toml")
    # (quality, estimated LUTs, Yosys's LUTs): B is no candidate once A is measured (A is more
    # accurate and, measured, smaller than B can be), but A's estimate alone cannot settle B
    figures = {"A": (90, 1000, 1000), "B": (80, 1600, 1500), "C": (95, 3000, 3100),
               "D": (70, 400, 420)}
    truth, live = {}, []
    for i, (quality, est_luts, luts) in enumerate(figures.values()):
        truth[i] = luts
        est = {"luts": est_luts, "ffs": 100, "dsps": 0, "brams": 0, "cycles_per_timestep": 4,
               "latency_cycles": 9, "kind": "layer", "storage": "registers"}
        point = runner.Point(i, {"target": "ice40-up5k"}, {}, estimate=est,
                             quality={"quality": quality})
        runner._estimate_bounds(point)
        live.append(point)
    synthesized = []

    def fake_run_stage(stage, points, make_job, **run):
        for p in points:
            synthesized.append(p.index)
            p.synth = {"luts": truth[p.index], "ffs": 100, "dsps": 0, "brams": 0,
                       "fmax_valid": False, "fmax_mhz": None}
    monkeypatch.setattr(runner, "_run_stage", fake_run_stage)
    assert len(runner._candidates(sweep, live)) == 4
    runner._synthesize_candidates(sweep, live, None, 1, {})
    assert [list(figures)[i] for i in synthesized] == ["C", "A", "D"]
    measured = [{"id": p.index, "quality": p.quality["quality"], "luts": p.synth["luts"]}
                for p in live if p.synth is not None]
    every = [{"id": p.index, "quality": p.quality["quality"], "luts": truth[p.index]}
             for p in live]
    front = {measured[i]["id"] for i in pareto_front(measured, ["quality", "luts"])}
    assert front == {every[i]["id"] for i in pareto_front(every, ["quality", "luts"])}


def test_pareto_set_is_non_dominated_and_complete():
    rows = [{"quality": q, "luts": l} for q, l in
            [(10, 100), (12, 100), (12, 90), (5, 50), (20, 300), (20, 300), (1, 400)]]
    from ssmgen.sweep.pareto import pareto_front
    front = pareto_front(rows, ("quality", "luts"))
    assert front == [2, 3, 4, 5]
    assert OBJECTIVES["quality"] == "max" and OBJECTIVES["luts"] == "min"


@pytest.mark.parametrize("kind", ["random", "optuna", "fit"])
def test_strategies(kind, tmp_path):
    text = SMALL.replace('synthesize = "none"', f'synthesize = "none"\nkind = "{kind}"' +
                         ('\nsamples = 5' if kind != "fit" else ""))
    sweep = parse_sweep(__import__("tomllib").loads(text.replace("BASE", str(UP5K))),
                        path=tmp_path / "s.toml")
    results = run_sweep(sweep, tmp_path / "out", workers=1, show_progress=False,
                        say=lambda _: None)
    rows = results["points"]
    assert 1 <= len(rows) <= (5 if kind != "fit" else 8)
    feasible = [r for r in rows if r["feasible"]]
    fit = next(r for r in rows if r["fit"])
    assert fit["quality"] == max(r["quality"] for r in feasible)


@pytest.mark.synth
def test_sweep_small_runs_end_to_end(tmp_path):
    """examples/sweep_small.toml as a user runs it: at least 6 points, at least 2 synthesized,
    a Pareto set no point dominates, plots that show the CSV's numbers, report.md with the fit
    answer, an exported config that generates, and a cached rerun that changes nothing."""
    out = tmp_path / "sweep"
    argv = ["sweep", str(ROOT / "examples" / "sweep_small.toml"), "-o", str(out), "--workers",
            "2", "--no-progress", "--export-best", str(tmp_path / "best")]
    assert main(argv) == 0
    rows = _csv_rows(out / "results.csv")
    assert len(rows) >= 6
    synthesized = [r for r in rows if r["figures_from"] == "synthesis"]
    assert len(synthesized) >= 2
    results = json.loads((out / "results.json").read_text())
    objectives = results["objectives"]
    front = [r for r in results["points"] if r["pareto"]]
    feasible = [r for r in results["points"] if r["feasible"]]
    assert front and all(r["figures_from"] == "synthesis" for r in front)
    for p in front:           # non-dominated ...
        assert not any(dominates(q, p, objectives) for q in feasible if q is not p)
    for p in feasible:        # ... and complete: every other feasible point is dominated
        if not p["pareto"]:
            assert any(dominates(q, p, objectives) for q in front)
    by_id = {int(r["id"]): r for r in rows}
    plots = json.loads((out / "plots.json").read_text())
    assert "quality_vs_luts.png" in plots
    for name, shown in plots.items():
        for point_id, x, y in shown.get("points", ()):
            row = by_id[point_id]
            assert float(row[shown["x"]]) == pytest.approx(x) and float(row["quality"]) == y
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text()
    fit = next(r for r in results["points"] if r["fit"])
    assert f"Point {fit['id']}:" in report and "![quality_vs_luts.png]" in report
    # the exported design is the fit point's config: generate takes it, same hash
    design = Design.load(tmp_path / "best" / "config.toml")
    assert design.hash == fit["model_hash"]
    before = (out / "results.csv").read_text()
    start = time.perf_counter()
    assert main(argv) == 0
    assert time.perf_counter() - start < 20
    assert (out / "results.csv").read_text() == before


def test_dask_local_cluster_gives_the_process_pool_results(tmp_path):
    """The same sweep on a Dask LocalCluster and on a process pool: identical results."""
    dask = pytest.importorskip("dask")
    pytest.importorskip("dask.distributed")
    sweep = parse_sweep(__import__("tomllib").loads(SMALL.replace("BASE", str(UP5K))),
                        path=tmp_path / "s.toml")
    with dask.config.set({"temporary-directory": str(tmp_path / "dask")}):
        on_dask = run_sweep(sweep, tmp_path / "dask_out", workers=2, dask="local",
                            show_progress=False, say=lambda _: None)
    on_pool = run_sweep(sweep, tmp_path / "pool_out", workers=2, show_progress=False,
                        say=lambda _: None)

    def comparable(results):
        return [{k: v for k, v in r.items() if k not in ("estimate", "synthesis")}
                for r in results["points"]]
    assert comparable(on_dask) == comparable(on_pool)
    assert on_dask["pareto"] == on_pool["pareto"] and on_dask["fit"] == on_pool["fit"]
    shutil.rmtree(tmp_path / "dask", ignore_errors=True)


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from ssmgen.sweep import stages
    real = stages._RUNNERS["quality"]

    def flaky(job):
        if job["config"]["quant"]["state"]["format"].startswith("fixed<8,"):
            raise RuntimeError("simulated failure")
        return real(job)
    monkeypatch.setitem(stages._RUNNERS, "quality", flaky)
    sweep = parse_sweep(__import__("tomllib").loads(SMALL.replace("BASE", str(UP5K))),
                        path=tmp_path / "s.toml")
    results = run_sweep(sweep, tmp_path / "out", workers=1, show_progress=False,
                        say=lambda _: None)
    failed = [r for r in results["points"] if r["status"] == "failed"]
    assert failed and all("simulated failure" in r["reason"] for r in failed)
    assert any(r["feasible"] for r in results["points"])
    # failures are not cached: a rerun tries them again
    monkeypatch.setitem(stages._RUNNERS, "quality", real)
    again = run_sweep(sweep, tmp_path / "out", workers=1, show_progress=False, say=lambda _: None)
    assert not any(r["status"] == "failed" for r in again["points"])


def test_layer_quality_is_measured_on_the_same_inputs_for_every_point(tmp_path):
    """SNR against the float model on one set of real inputs: a narrower input format sees them
    saturate and scores lower; the base's widths score what a direct measurement gives."""
    sweep = parse_sweep(__import__("tomllib").loads(
        SMALL.replace('"width.abar" = [6, 10]\n"width.state" = [8, 12]',
                      '"width.input" = [4, 8]').replace("BASE", str(UP5K))),
        path=tmp_path / "s.toml")
    results = run_sweep(sweep, tmp_path / "out", workers=1, show_progress=False,
                        say=lambda _: None)
    q = {r["axis.width.input"]: r["quality"] for r in results["points"] if r["status"] == "ok"}
    assert q[4] < q[8]
    design = Design.load(UP5K)
    from ssmgen.spec.formats import FixedFormat
    from ssmgen.stimulus import stimulus_real
    u = stimulus_real("smooth", FixedFormat.parse("fixed<8,3>"), (2, 48, 2), 0)
    y = design.dequantize_output(design.reference(design.quantize_input(u)))
    ref = design.float_reference(u)
    snr = 10 * np.log10(np.sum(ref ** 2) / np.sum((y - ref) ** 2))
    assert q[8] == pytest.approx(snr, abs=1e-3)


def test_an_interrupted_sweep_resumes_from_a_consistent_cache(tmp_path, monkeypatch):
    """Ctrl-C in the middle of a stage: the jobs finished before it are cached whole (each
    entry written atomically), nothing half-written is left, and a rerun completes the sweep
    with the results of an uninterrupted one."""
    from ssmgen.sweep import runner
    sweep = parse_sweep(__import__("tomllib").loads(SMALL.replace("BASE", str(UP5K))),
                        path=tmp_path / "s.toml")
    real, calls = runner.run_job, []

    def interrupted(job):
        calls.append(job["stage"])
        if job["stage"] == "quality" and calls.count("quality") == 3:
            raise KeyboardInterrupt
        return real(job)
    monkeypatch.setattr(runner, "run_job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, tmp_path / "out", workers=1, show_progress=False, say=lambda _: None)
    cache = tmp_path / "out" / "cache"
    entries = list(cache.rglob("*.json"))
    assert len([e for e in entries if e.parent.parent.name == "quality"]) == 2
    assert all(json.loads(e.read_text()) for e in entries)            # every entry whole
    assert not [p for p in cache.rglob("*") if p.name.startswith(".")]   # no temporary files
    monkeypatch.setattr(runner, "run_job", real)
    resumed = run_sweep(sweep, tmp_path / "out", workers=1, show_progress=False,
                        say=lambda _: None)
    fresh = run_sweep(sweep, tmp_path / "fresh", workers=1, show_progress=False,
                      say=lambda _: None)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("estimate", "synthesis")}  # noqa: E731
                        for r in rs["points"]]
    assert strip(resumed) == strip(fresh)


def test_cache_keys_follow_the_generator_source():
    """A changed ssmgen (a new datapath or estimate) must not reuse old results: the cache key
    carries a digest of ssmgen's own source files beside the package versions."""
    from ssmgen.sweep import cache
    digest = cache.versions("estimate")["ssmgen-source"]
    assert len(digest) == 64 and digest == cache.versions("synth")["ssmgen-source"]
    key = cache.ResultCache.key("estimate", {"config": {"a": 1}})
    cache.source_digest.cache_clear()
    original = cache.source_digest
    try:
        cache.source_digest = lambda: "0" * 64      # as if a source file had changed
        assert cache.ResultCache.key("estimate", {"config": {"a": 1}}) != key
    finally:
        cache.source_digest = original
    assert cache.ResultCache.key("estimate", {"config": {"a": 1}}) == key


@pytest.mark.parametrize("name", ["sweep_small", "sweep_up5k"])
def test_example_sweep_files_are_valid(name):
    """The example sweep files whose base ships with the repository parse (sweep_sdigits's base
    is a model the user trains first); the UP5K fit places its candidates, so that the iCE40's
    logic cells decide what fits."""
    from ssmgen.sweep.config import load_sweep
    from ssmgen.sweep.points import load_base
    sweep = load_sweep(ROOT / "examples" / f"{name}.toml")
    load_base(sweep)
    if name == "sweep_up5k":
        assert sweep.strategy.kind == "fit" and sweep.place is True
