"""Run a sweep: points -> staged evaluation (estimate, quality, synthesis) -> feasibility, the
Pareto front and the ``fit`` answer.

Jobs run on a ``concurrent.futures`` executor: a process pool on this machine, or a Dask
cluster (``Client.get_executor()``: a ``LocalCluster``, or a running scheduler, or a batch
cluster through dask-jobqueue). The same code path serves all of them. Every finished job is
cached at once (``cache.py``), so Ctrl-C loses at most the jobs in flight, and a rerun picks up
where the sweep stopped.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..spec.errors import ConfigError
from ..spec.formats import FixedFormat
from ..stimulus import STIMULI, stimulus_real
from ..synth.targets import TARGETS
from .cache import ResultCache
from .config import OBJECTIVES, RESOURCES, SweepConfig
from .pareto import FMAX_CEILING_HZ, Interval, estimate_error, pareto_front, surely_dominated
from .points import content_hash, file_hash, grid_points, load_base, point_label, random_points
from .stages import run_job

__all__ = ["Point", "run_sweep", "executor_for"]


@dataclass
class Point:
    """One point of a sweep and everything measured about it."""
    index: int
    values: dict                       #: axis -> value
    config: dict                       #: its config (TOML structure)
    keys: dict = field(default_factory=dict)       #: stage -> cache key
    float_train: dict | None = None    #: the float_train stage's result (resized points)
    train: dict | None = None          #: the train stage's result (points that train)
    estimate: dict | None = None
    quality: dict | None = None
    synth: dict | None = None
    status: str = "ok"                 #: ok | pruned | failed
    reason: str = ""
    bounds: dict = field(default_factory=dict)     #: objective -> Interval (before synthesis)

    @property
    def target(self) -> str:
        return self.values["target"]

    @property
    def family(self) -> str:
        return TARGETS[self.target].family

    @property
    def label(self) -> str:
        return point_label(self.values)


# --- executors ---------------------------------------------------------------------------------

@contextlib.contextmanager
def executor_for(workers: int, dask: str | None):
    """The executor jobs run on: None (this process) for one worker, a process pool, or a Dask
    cluster's executor (``dask="local"``: a LocalCluster of ``workers`` processes; else the
    address of a running scheduler)."""
    if dask is None:
        if workers <= 1:
            yield None
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield pool
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--dask: needs the [dask] extra (pip install 'ssmgen[dask]')") from None
    cluster = None
    if dask == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(dask)
    try:
        yield client.get_executor()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _map(executor, jobs: list[dict], *, done, desc: str, show: bool) -> None:
    """Run ``jobs`` (run_job), calling ``done(i, result)`` as each finishes (in any order)."""
    from tqdm import tqdm
    with tqdm(total=len(jobs), desc=desc, unit="job", disable=not show or not jobs,
              leave=True) as bar:
        if executor is None:
            for i, job in enumerate(jobs):
                done(i, run_job(job))
                bar.update()
            return
        futures = {executor.submit(run_job, job): i for i, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as exc:          # a worker died: record it, go on
                    result = {"error": f"worker failed: {type(exc).__name__}: {exc}"}
                done(futures[future], result)
                bar.update()
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            raise


# --- points ------------------------------------------------------------------------------------

def _config_identity(data: dict) -> dict:
    """A config without what does not change results (its name, its weights file's path: the
    base's identity carries the weights' hash)."""
    out = copy.deepcopy(data)
    out.pop("name", None)
    out.pop("weights", None)
    return out


class PointMaker:
    """Turns axis values into points: each config validated and quantized (the int64 proof
    included), its cache keys derived. Values that give a config and target seen before give no
    new point."""

    def __init__(self, sweep: SweepConfig, base, cache: ResultCache | None = None,
                 models_dir: Path | None = None):
        self.base = base
        self.cache = cache
        self.models_dir = models_dir           #: where trained models go (train stage)
        self.unsaved: dict[str, dict] = {}     #: checked configs not yet in the cache
        self.base_id = base.identity()
        self.quality_settings = dict(sweep.quality.__dict__)
        self.place = sweep.place
        self.seen: dict[str, int] = {}
        self.count = 0

    def config(self, values: dict) -> dict:
        """The point's config; ConfigError naming the point and the field if it is invalid. A
        config built and checked before (the cache's "config" stage) is taken as it is: over a
        trained model, building one is a calibration search of every tensor's format."""
        config_values = {k: v for k, v in values.items() if k != "target"}
        key = ResultCache.key("config", {"values": config_values, **self.base_id})
        cached = self.cache.get("config", key) if self.cache is not None else None
        if cached is not None:
            return cached["config"]
        try:
            data = self.base.config_data(config_values)
            self.base.check(config_values, data)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"point {point_label(values)}: {exc}") from None
        self.unsaved[key] = {"config": data}
        return data

    def save(self) -> None:
        """Cache the configs checked so far (only once the sweep may start: a rejected point
        leaves nothing behind)."""
        if self.cache is not None:
            for key, entry in self.unsaved.items():
                self.cache.put("config", key, entry)
        self.unsaved = {}

    def make(self, values: dict, data: dict) -> Point | None:
        ident = _config_identity(data)
        key = content_hash({"config": ident, "target": values["target"]})
        if key in self.seen:
            return None
        self.seen[key] = self.count
        point = Point(self.count, dict(values), data)
        self.count += 1
        if self.base.kind == "model" and self.base.needs_training(values):
            # the other stages' keys follow from the trained model (finish_training)
            point.keys = {"train": ResultCache.key("train", {
                "model": self.base.train_identity(values), **self.base_id})}
            if self.base.resized(values):
                point.keys["float_train"] = ResultCache.key("float_train", {
                    "model": self.base.float_identity(values), **self.base_id})
        else:
            self._stage_keys(point, self.base_id)
        return point

    def _stage_keys(self, point: Point, identity: dict) -> None:
        ident = _config_identity(point.config)
        quality_config = {k: v for k, v in ident.items() if k != "hardware"}
        point.keys.update({
            "estimate": ResultCache.key("estimate", {"config": ident, "target": point.target,
                                                     **identity}),
            "quality": ResultCache.key("quality", {"config": quality_config,
                                                   "quality": self.quality_settings,
                                                   **identity}),
            "synth": ResultCache.key("synth", {"config": ident, "target": point.target,
                                               "place": self.place, **identity}),
        })

    def float_job(self, point: Point) -> dict:
        return self.base.float_job(point.values,
                                   self.models_dir / f"float-{point.keys['float_train'][:16]}")

    def train_job(self, point: Point) -> dict:
        init = (None if point.float_train is None else
                self.trained_dir(point.float_train) / "checkpoints" / "float.pt")
        return self.base.train_job(point.values, self.models_dir / point.keys["train"][:16],
                                   init)

    def trained_dir(self, result: dict) -> Path:
        return self.models_dir / result["model_dir"]

    def finish_training(self, point: Point) -> None:
        """A trained point's config and stage keys: its model's formats and weights (their
        bytes' hash in every key)."""
        model_dir = self.trained_dir(point.train)
        point.config = self.base.trained_config_data(point.values, model_dir)
        self._stage_keys(point, {**self.base_id,
                                 "weights": file_hash(str(model_dir / "weights.npz"))})


def make_points(maker: PointMaker, values_list: list[dict]) -> list[Point]:
    """Points for ``values_list``: every config is checked first, so a point the config rejects
    stops the sweep here, naming the point and the field, before any work starts."""
    configs = [maker.config(values) for values in values_list]
    maker.save()
    return [p for p in (maker.make(v, c) for v, c in zip(values_list, configs)) if p is not None]


def _layer_inputs(sweep: SweepConfig, base, point: Point) -> np.ndarray:
    """The real inputs every point of a layer sweep is measured on: drawn in the base's input
    format, with the point's channel count."""
    q = sweep.quality
    if q.stimulus not in STIMULI:
        return np.load(q.stimulus, allow_pickle=False)
    fmt = FixedFormat.parse(base.data["quant"]["input"]["format"])
    channels = point.config["model"]["channels"]
    return stimulus_real(q.stimulus, fmt, (q.sequences, q.steps, channels), q.seed)


# --- stages ------------------------------------------------------------------------------------

def _run_stage(stage: str, points: list[Point], make_job, *, executor, cache: ResultCache,
               show: bool, usable=lambda result: True) -> None:
    """Run ``stage`` for ``points``, from the cache where it can (a cached result that is not
    ``usable`` any more, e.g. a trained model whose folder was deleted, runs again); points
    sharing a key (a quality result does not depend on the hardware) run once."""
    by_key: dict[str, list[Point]] = {}
    for point in points:
        cached = cache.get(stage, point.keys[stage])
        if cached is not None and usable(cached):
            setattr(point, stage, cached)
        else:
            by_key.setdefault(point.keys[stage], []).append(point)
    keys = list(by_key)

    def done(i, result):
        cache.put(stage, keys[i], result)
        for point in by_key[keys[i]]:
            setattr(point, stage, result)

    _map(executor, [make_job(by_key[k][0]) for k in keys], done=done,
         desc=f"{stage} ({len(points) - sum(map(len, by_key.values()))} cached)", show=show)


def _limits(sweep: SweepConfig, point: Point) -> dict:
    """resource -> the most the point may use (the device's capacity and the sweep's limits)."""
    limits = dict(TARGETS[point.target].capacity) if sweep.constraints.fit_device else {}
    for resource, value in sweep.constraints.max.items():
        limits[resource] = min(limits.get(resource, value), value)
    return {r: v for r, v in limits.items() if r in RESOURCES}


def _estimate_bounds(point: Point) -> None:
    """Objective intervals from the estimate, widened by its measured error."""
    est = point.estimate
    cycles = est["cycles_per_timestep"]
    point.bounds = {"cycles_per_timestep": Interval(cycles),
                    "latency_cycles": Interval(est["latency_cycles"]),
                    "timesteps_per_s": Interval(0.0, FMAX_CEILING_HZ[point.family] / cycles)}
    errors = estimate_error(point.family, est["kind"], est.get("storage", "registers"))
    for resource in RESOURCES:
        if resource in est and (resource not in errors or errors[resource] is not None):
            under, over = errors.get(resource, (0.0, 0.0))
            # estimate = true x (1 + e), e in [under, over]
            point.bounds[resource] = Interval(math.floor(est[resource] / (1 + over)),
                                              math.ceil(est[resource] / (1 + under)))
        else:
            point.bounds[resource] = Interval(0, math.inf)


def _prune(sweep: SweepConfig, point: Point) -> None:
    """Mark the point pruned when even its best case breaks a constraint."""
    reasons = []
    for resource, limit in _limits(sweep, point).items():
        lo = point.bounds[resource].lo
        if lo > limit:
            reasons.append(f"{resource}: at least {lo} by the estimate, {limit} allowed")
    rate = sweep.constraints.min_timesteps_per_s
    if rate is not None and point.bounds["timesteps_per_s"].hi < rate:
        reasons.append(f"timesteps/s: at most {point.bounds['timesteps_per_s'].hi:.3g} "
                       f"({point.estimate['cycles_per_timestep']} cycles per timestep at the "
                       f"family's ceiling clock), {rate:g} required")
    if reasons:
        point.status, point.reason = "pruned", "; ".join(reasons)


def _surely_feasible(sweep: SweepConfig, point: Point) -> bool:
    if point.synth is not None and "error" not in point.synth:
        return _synth_feasible(sweep, point)[0]
    if sweep.constraints.min_timesteps_per_s is not None:
        return False                  # no throughput is certain before synthesis
    return all(point.bounds[r].hi <= limit for r, limit in _limits(sweep, point).items())


def _synth_feasible(sweep: SweepConfig, point: Point) -> tuple[bool, str]:
    s = point.synth
    reasons = [f"{r}: {s[r]} used, {limit} allowed" for r, limit in _limits(sweep, point).items()
               if s.get(r, 0) > limit]
    rate = sweep.constraints.min_timesteps_per_s
    if rate is not None:
        if not (s.get("fmax_valid") and s.get("fmax_mhz")):
            reasons.append(f"timesteps/s unknown: {s.get('fmax_note') or 'no valid Fmax'}")
        elif s["fmax_mhz"] * 1e6 / point.estimate["cycles_per_timestep"] < rate:
            reasons.append(f"timesteps/s: {s['fmax_mhz'] * 1e6 / point.estimate['cycles_per_timestep']:.3g}, "
                           f"{rate:g} required")
    return not reasons, "; ".join(reasons)


def _quality_ok(sweep: SweepConfig, point: Point) -> bool:
    q = point.quality
    return (q is not None and "error" not in q
            and (sweep.constraints.min_quality is None or q["quality"] >= sweep.constraints.min_quality))


def _figures(point: Point) -> dict:
    """Best-known figures: synthesized where synthesized, else the estimate."""
    est, syn = point.estimate or {}, point.synth
    measured = syn is not None and "error" not in syn
    out = {r: (syn if measured else est).get(r) for r in RESOURCES}
    out["cycles_per_timestep"] = est.get("cycles_per_timestep")
    out["latency_cycles"] = est.get("latency_cycles")
    fmax = syn.get("fmax_mhz") if measured and syn.get("fmax_valid") else None
    out["fmax_mhz"] = fmax
    out["timesteps_per_s"] = (fmax * 1e6 / out["cycles_per_timestep"]
                              if fmax and out["cycles_per_timestep"] else None)
    out["latency_us"] = (out["latency_cycles"] / fmax if fmax and out["latency_cycles"] else None)
    out["quality"] = point.quality.get("quality") if point.quality and "error" not in point.quality else None
    out["source"] = "synthesis" if measured else "estimate"
    return out


def _candidates(sweep: SweepConfig, live: list[Point]) -> list[Point]:
    """The points synthesis must settle (strategy other than fit): those that are not surely
    dominated by a point that surely meets the constraints."""
    objectives = sweep.objectives
    for point in live:
        point.bounds["quality"] = Interval(point.quality["quality"])
        _measured_bounds(point)
    anchors = [p.bounds for p in live if _surely_feasible(sweep, p)]
    return [p for p in live if not surely_dominated(p.bounds, anchors, objectives)]


def _measured_bounds(point: Point) -> None:
    """A synthesized point's figures replace its estimate intervals: exact from now on."""
    s = point.synth
    if s is None or "error" in s:
        return
    for resource in RESOURCES:
        point.bounds[resource] = Interval(s.get(resource, 0))
    if s.get("fmax_valid") and s.get("fmax_mhz"):
        point.bounds["timesteps_per_s"] = Interval(
            s["fmax_mhz"] * 1e6 / point.estimate["cycles_per_timestep"])


def _synthesize_candidates(sweep: SweepConfig, live: list[Point], synth_job, workers: int,
                           run: dict) -> None:
    """Synthesize the candidates a batch (``workers`` points) at a time, the most accurate
    (then the smallest by the estimate) first: each measured point's exact figures may make
    others surely dominated, which then need no synthesis. The front is the one synthesizing
    every candidate would give, since a point is skipped only when a measured point that meets
    the constraints surely dominates it."""
    while True:
        pending = [p for p in _candidates(sweep, live) if p.synth is None]
        if not pending:
            return
        pending.sort(key=lambda p: (-p.quality["quality"], p.estimate.get("luts") or 0))
        _run_stage("synth", pending[:max(1, workers)], synth_job, **run)


def _train(maker: PointMaker, points: list[Point], run: dict) -> None:
    """The training stages, for the points that need them: a float model per size that
    differs from the base's, then a quantized model per size and widths (shared by the points
    that differ only in hardware); then the trained points' configs and keys."""
    def usable(checked: str):
        return lambda result: (maker.trained_dir(result) / checked).is_file()

    resized = [p for p in points if "float_train" in p.keys]
    _run_stage("float_train", resized, maker.float_job,
               usable=usable("checkpoints/float.pt"), **run)
    for point in resized:
        if "error" in point.float_train:
            point.status, point.reason = "failed", f"float_train: {point.float_train['error']}"
    training = [p for p in points if "train" in p.keys and p.status == "ok"]
    _run_stage("train", training, maker.train_job, usable=usable("config.toml"), **run)
    for point in training:
        if "error" in point.train:
            point.status, point.reason = "failed", f"train: {point.train['error']}"
        else:
            maker.finish_training(point)


def _evaluate(sweep: SweepConfig, base, maker: PointMaker, points: list[Point],
              run: dict) -> None:
    """Training where the sweep asks for it, then stages (a) and (b): estimate every point,
    prune what cannot meet the constraints, measure the quality of the rest."""
    _train(maker, points, run)
    points = [p for p in points if p.status == "ok"]
    _run_stage("estimate", points,
               lambda p: {"stage": "estimate", "config": p.config, "target": p.target}, **run)
    for point in points:
        if "error" in point.estimate:
            point.status, point.reason = "failed", f"estimate: {point.estimate['error']}"
            continue
        _estimate_bounds(point)
        _prune(sweep, point)
    live = [p for p in points if p.status == "ok"]
    _run_stage("quality", live,
               lambda p: {"stage": "quality", "config": p.config, "kind": base.kind,
                          "task": getattr(base, "task_name", None),
                          "quality": sweep.quality.__dict__,
                          "inputs": _layer_inputs(sweep, base, p) if base.kind == "layer"
                          else None}, **run)
    for point in live:
        if "error" in point.quality:
            point.status, point.reason = "failed", f"quality: {point.quality['error']}"


def run_sweep(sweep: SweepConfig, out_dir, *, workers: int | None = None, dask: str | None = None,
              synthesize: str | None = None, show_progress: bool = True, say=print) -> dict:
    """Run the sweep; returns its results (``outputs.py`` writes them)."""
    out_dir = Path(out_dir)
    workers = workers or os.cpu_count() or 1
    synthesize = synthesize or sweep.strategy.synthesize
    base = load_base(sweep)
    cache = ResultCache(out_dir / "cache")
    maker = PointMaker(sweep, base, cache, out_dir / "models")
    with executor_for(workers, dask) as executor:
        run = dict(executor=executor, cache=cache, show=show_progress)
        if sweep.strategy.kind == "optuna":
            say(f"{sweep.name}: NSGA-II over a grid of {sweep.grid_size}, "
                f"{sweep.strategy.samples} trial(s) ...")
            points = _optuna_points(sweep, base, maker, run, workers)
        else:
            values_list = (random_points(sweep.axes, sweep.strategy.samples, sweep.strategy.seed)
                           if sweep.strategy.samples else grid_points(sweep.axes))
            say(f"{sweep.name}: {len(values_list)} point(s) of a grid of {sweep.grid_size}; "
                f"checking every config ...")
            points = make_points(maker, values_list)
            _evaluate(sweep, base, maker, points, run)
        live = [p for p in points if p.status == "ok" and _quality_ok(sweep, p)]

        def synth_job(p):
            return {"stage": "synth", "config": p.config, "target": p.target,
                    "place": sweep.place, "work": str(out_dir / "work" / p.keys["synth"][:16])}

        if synthesize == "all":
            _run_stage("synth", live, synth_job, **run)
        elif synthesize == "candidates" and sweep.strategy.kind == "fit":
            _synthesize_fit(sweep, live, synth_job, workers, run)
        elif synthesize == "candidates":
            _synthesize_candidates(sweep, live, synth_job, workers, run)
    reference_format = base.data["quant"]["input"]["format"] if base.kind == "layer" else None
    return _results(sweep, base, points, synthesize, reference_format)


def _optuna_points(sweep: SweepConfig, base, maker: PointMaker, run: dict,
                   workers: int) -> list[Point]:
    """NSGA-II (Optuna) over the axes: batches of ``workers`` trials, each evaluated by the
    estimate and the quality stage; the objectives it optimizes are the estimate's figures
    (synthesis, afterwards, settles the front as for a grid). A point that breaks a constraint
    by the estimate is told as infeasible (``Trial.set_constraint``); one whose config is
    invalid, as failed."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if OBJECTIVES[o] == "max" else "minimize" for o in sweep.objectives]
    sampler = optuna.samplers.NSGAIISampler(seed=sweep.strategy.seed,
                                            population_size=max(4, min(50, sweep.strategy.samples // 3)))
    study = optuna.create_study(directions=directions, sampler=sampler)
    points, asked = [], 0
    while asked < sweep.strategy.samples:
        batch = []
        for _ in range(min(workers, sweep.strategy.samples - asked)):
            trial = study.ask()
            asked += 1
            values = {axis: trial.suggest_categorical(axis, list(choices))
                      for axis, choices in sweep.axes.items()}
            try:
                point = maker.make(values, maker.config(values))
                maker.save()
            except ConfigError:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            if point is None:              # seen before: no new information
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            batch.append((trial, point))
        _evaluate(sweep, base, maker, [p for _, p in batch], run)
        for trial, point in batch:
            points.append(point)
            figures = _figures(point)
            if point.status == "failed" or any(figures.get(o) is None
                                               for o in sweep.objectives if o != "timesteps_per_s"):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            violation = 0.0
            for resource, limit in _limits(sweep, point).items():
                if figures.get(resource) is not None:
                    violation = max(violation, figures[resource] - limit)
            trial.set_constraint("resources", violation)
            values = [figures[o] if figures.get(o) is not None else
                      point.bounds["timesteps_per_s"].hi for o in sweep.objectives]
            study.tell(trial, values)
    return points


def _synthesize_fit(sweep, live, synth_job, workers, run) -> None:
    """``fit``: synthesize the best points by quality, a batch at a time, until the best one
    that synthesis confirms is better than every point not yet synthesized."""
    order = sorted(live, key=lambda p: -p.quality["quality"])
    confirmed = None
    while True:
        pending = [p for p in order if p.synth is None
                   and (confirmed is None or p.quality["quality"] > confirmed)]
        if not pending:
            return
        _run_stage("synth", pending[:max(1, workers)], synth_job, **run)
        ok = [p.quality["quality"] for p in order
              if p.synth is not None and "error" not in p.synth and _synth_feasible(sweep, p)[0]]
        confirmed = max(ok) if ok else None


def _results(sweep: SweepConfig, base, points: list[Point], synthesize: str,
             reference_format) -> dict:
    rows = []
    for point in points:
        figures = _figures(point) if point.estimate and "error" not in point.estimate else {}
        feasible, why = None, point.reason
        if point.status == "ok":
            if not _quality_ok(sweep, point):
                feasible, why = False, (f"quality below {sweep.constraints.min_quality}"
                                        if point.quality else why)
            elif point.synth is not None and "error" not in point.synth:
                feasible, why = _synth_feasible(sweep, point)
            elif point.synth is not None:
                feasible, why = None, f"synthesis failed: {point.synth['error']}"
            elif _surely_feasible(sweep, point):
                feasible = True
            elif synthesize == "none" and sweep.constraints.min_timesteps_per_s is None \
                    and all(point.estimate.get(r) is not None for r in RESOURCES):
                # estimates only, by the user's choice: judged on the estimate itself
                over = [f"{r}: {point.estimate[r]} estimated, {limit} allowed"
                        for r, limit in _limits(sweep, point).items() if point.estimate[r] > limit]
                feasible, why = not over, "; ".join(over)
        rows.append({"id": point.index, **{f"axis.{k}": v for k, v in point.values.items()},
                     "status": point.status, "reason": why, "feasible": feasible,
                     "feasible_from": figures.get("source") if feasible is not None else None,
                     **{k: v for k, v in figures.items() if k != "source"},
                     "figures_from": figures.get("source"),
                     "quality_metric": (point.quality or {}).get("quality_metric"),
                     "max_abs_error": (point.quality or {}).get("max_abs_error"),
                     "nrmse": (point.quality or {}).get("nrmse"),          # a sequence model
                     "float_accuracy": (point.train or {}).get("float_acc"),
                     "model_dir": (str(Path("models") / point.train["model_dir"])
                                   if point.train and "model_dir" in point.train else None),
                     "training": point.train,
                     "estimate": point.estimate, "synthesis": point.synth,
                     "model_hash": (point.estimate or {}).get("model_hash"),
                     "config": point.config})
    objectives = sweep.objectives
    eligible = [r for r in rows if r["feasible"] and all(r.get(o) is not None for o in objectives)]
    front = {eligible[i]["id"] for i in pareto_front(eligible, objectives)}
    for row in rows:
        row["pareto"] = row["id"] in front
    fit = None
    if eligible:
        best = max(eligible, key=lambda r: (r["quality"], *(
            -(r[o] or 0) if OBJECTIVES[o] == "min" else (r[o] or 0)
            for o in objectives if o != "quality")))
        fit = best["id"]
    for row in rows:
        row["fit"] = row["id"] == fit
    return {"sweep": sweep.name, "sweep_file": str(sweep.path), "base": {
                "kind": sweep.base.kind, "path": str(sweep.base.path), "name": base.name},
            "axes": {k: list(v) for k, v in sweep.axes.items()}, "objectives": list(objectives),
            "constraints": {"fit_device": sweep.constraints.fit_device,
                            **{f"max_{k}": v for k, v in sweep.constraints.max.items()},
                            "min_timesteps_per_s": sweep.constraints.min_timesteps_per_s,
                            "min_quality": sweep.constraints.min_quality},
            "strategy": sweep.strategy.__dict__, "synthesize": synthesize, "place": sweep.place,
            "quality_settings": sweep.quality.__dict__, "reference_input_format": reference_format,
            "points": rows, "pareto": sorted(front), "fit": fit,
            "counts": {"points": len(rows),
                       "pruned": sum(r["status"] == "pruned" for r in rows),
                       "failed": sum(r["status"] == "failed" for r in rows),
                       "synthesized": sum(r["figures_from"] == "synthesis" for r in rows)}}
