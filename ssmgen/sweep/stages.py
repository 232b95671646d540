"""The stages that evaluate a sweep point, cheapest first (training, where a sweep asks for
it, comes before them: a trained model's weights determine the rest). Each is a plain function
of a plain dict (a *job*), so that a process pool or a Dask worker can run it anywhere:

* ``float_train`` (minutes; a point whose size differs from its MODEL_DIR base's): the float
  model of that size, trained from scratch as ``ssmgen train`` does (one per size, shared by
  every width of it);
* ``train`` (minutes; MODEL_DIR bases with ``[training]`` or size axes only): PTQ and QAT of
  the point at its widths from a float checkpoint (the base's or its size's), as ``ssmgen
  train --init`` does; writes a MODEL_DIR into the job's ``work`` folder (complete or not at
  all, like ``float_train``);
* ``estimate`` (milliseconds): the config validated and quantized, the analytic resource
  estimate (``synth/estimate.py``) on the point's target, its cycles per timestep and latency;
* ``quality`` (seconds): the golden integer model on the sweep's data: a layer's SNR (and max
  |error|) against the float model on the job's real inputs (the same for every point, so a
  point with a narrower input format sees them saturate as a real signal would), a network's
  accuracy on its task's test split;
* ``synth`` (seconds to minutes): Yosys (``synth/flow.py``): cells; and nextpnr where the
  sweep needs Fmax (``SweepConfig.place``): Fmax and the timesteps per second it gives.

A job never raises: an exception comes back as ``{"error": "..."}``, so one point's failure
is recorded and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import functools
import io
import shutil
import time
import traceback
from pathlib import Path

import numpy as np

from ..design import Design
from ..spec.config import parse_config
from ..synth.estimate import bounds_storage

__all__ = ["run_job", "STAGES"]

STAGES = ("float_train", "train", "estimate", "quality", "synth")


def _design(job) -> Design:
    return Design.from_config(parse_config(job["config"], base_dir="."))


def _estimate(job) -> dict:
    design = _design(job)
    out = {"cycles_per_timestep": design.cycles_per_timestep, "latency_cycles": design.latency,
           "lanes": design.lanes, "kind": design.kind, "model_hash": design.hash,
           # (the config resolves "auto" and keeps "memory" only where there is something to
           # fold; folded layers have bounds of their own)
           "storage": bounds_storage(design.config)}
    try:
        est = design.estimate(job["target"])
    except ValueError as exc:         # a design the estimate does not cover: no figures
        out["estimate_note"] = str(exc)
        return out
    out.update({r: est[r] for r in ("luts", "ffs", "dsps", "brams")})
    return out


@functools.lru_cache(maxsize=4)
def _task(name: str, test_subset: int | None):
    from ..train.tasks import load_task
    return load_task(name).subset(None, test_subset)


def _quality(job) -> dict:
    design = _design(job)
    if design.kind == "network":
        task = _task(job["task"], job["quality"]["test_subset"])
        logits = []
        for i in range(0, len(task.x_test), 256):
            logits.append(design.reference(design.quantize_input(task.x_test[i:i + 256])))
        if task.per_step:
            # a sequence model: its NRMSE, as a quality that is higher when better (1: perfect
            # prediction, 0: no better than the targets' mean), so that it ranks as accuracy does
            from ..train.tasks import nrmse
            error = nrmse(design.dequantize_output(np.concatenate(logits)), task.y_test)
            return {"quality": 1.0 - error, "quality_metric": "1-nrmse", "nrmse": error,
                    "samples": len(task.y_test)}
        predictions = np.argmax(np.concatenate(logits), axis=-1)
        correct = int(np.sum(predictions == task.y_test))
        return {"quality": correct / len(task.y_test), "quality_metric": "accuracy",
                "correct": correct, "samples": len(task.y_test)}
    u = design.check_input(job["inputs"], integer=False)    # the same for every point
    y_float = design.float_reference(u)
    y = design.dequantize_output(design.reference(design.quantize_input(u)))
    err = y - y_float
    power = float(np.sum(y_float ** 2))
    noise = float(np.sum(err ** 2))
    snr = 10 * np.log10(power / noise) if noise > 0 else float("inf")
    return {"quality": round(float(snr), 4), "quality_metric": "snr_db",
            "max_abs_error": float(np.abs(err).max())}


def _synth(job) -> dict:
    design = _design(job)
    work = Path(job["work"])
    try:
        report = design.synthesize(job["target"], work, place=job["place"],
                                   progress=lambda _: None)
    finally:
        shutil.rmtree(work / "work", ignore_errors=True)     # keep report.json, not the netlists
    acc = report["accelerator"]
    out = {r: acc.get(r, 0) for r in ("luts", "ffs", "dsps", "brams")}
    out.update({"fits": report["fits"], "overflow": report["overflow"],
                "fmax_mhz": report["fmax_mhz"], "fmax_valid": report["fmax_valid"],
                "fmax_note": report["fmax_note"], "synth_seconds": report["seconds"]})
    return out


def _train_atomically(job, run) -> dict:
    """Run ``run(out_dir)`` (``train_model``, quiet) into a ``.partial`` folder beside the
    job's ``work`` folder, then rename it: a trained model is complete or absent, never half.
    Returns ``run``'s metrics."""
    work = Path(job["work"])
    partial = work.with_name(work.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        metrics = run(partial)
    shutil.rmtree(work, ignore_errors=True)
    partial.rename(work)
    return metrics


def _task_of(job):
    from ..train.tasks import load_task
    return load_task(job["task"]).subset(job["train_samples"], None)


def _float_train(job) -> dict:
    from ..train.commands import train_model
    meta = job["meta"]
    metrics = _train_atomically(job, lambda out: train_model(
        _task_of(job), out_dir=out, kind=meta["kind"], channels=meta["channels"],
        modes=meta["modes"], layers=meta["layers"], epochs=job["epochs"], qat_epochs=0,
        lr=job["lr"], batch_size=job["batch_size"], seed=job["seed"], widths=job["widths"],
        dropout=job["dropout"], progress=False, name=job["name"], augment=job["augment"],
        calib=job["calib"]))
    return {"model_dir": Path(job["work"]).name, **_scores(metrics, ("float",)),
            "train_seconds": metrics["total_seconds"]}


def _scores(metrics: dict, phases) -> dict:
    """A trained model's scores from its metrics.json: ``<phase>_acc`` of a classifier,
    ``<phase>_nrmse`` of a sequence model."""
    key = metrics.get("metric", "acc")
    return {f"{phase}_{key}": metrics[f"{phase}_{key}"] for phase in phases}


def _train(job) -> dict:
    from ..train.commands import train_model
    from .points import apply_layer_widths

    def run(out):
        return train_model(
            _task_of(job), out_dir=out, init=job["init"], qat_epochs=job["qat_epochs"],
            qat_lr=job["qat_lr"], batch_size=job["batch_size"], seed=job["seed"],
            widths=job["widths"], dropout=job["dropout"], progress=False,
            calib_samples=job["calib_samples"], name=job["name"], augment=job["augment"],
            calib=job["calib"], calib_percentile=job["calib_percentile"],
            equalize=job["equalize"], abar_form=job["abar_form"],
            adjust_config=lambda data: apply_layer_widths(data, job["layer_values"]))
    metrics = _train_atomically(job, run)
    shutil.rmtree(Path(job["work"]) / "checkpoints", ignore_errors=True)   # weights: the npz
    return {"model_dir": Path(job["work"]).name,
            **_scores(metrics, ("float", "ptq", "qat")),
            "train_seconds": metrics["total_seconds"]}


_RUNNERS = {"float_train": _float_train, "train": _train, "estimate": _estimate,
            "quality": _quality, "synth": _synth}


def run_job(job: dict) -> dict:
    """Run one stage of one point; returns its figures and ``seconds``, or ``error``."""
    start = time.perf_counter()
    try:
        result = _RUNNERS[job["stage"]](job)
    except Exception as exc:                  # recorded, not raised: the sweep goes on
        tail = traceback.format_exc().strip().splitlines()[-1]
        result = {"error": f"{type(exc).__name__}: {exc}" if str(exc) else tail}
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result
