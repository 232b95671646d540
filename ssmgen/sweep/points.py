"""From a sweep's axes to points, and from a point to the config it stands for.

A point is a dict ``axis -> value``. Its config is the base's config with the point's values put
in: the TOML structure of a single layer (``spec/config.py``) or, for a trained MODEL_DIR, the
network config ``train.ptq.build_config`` writes for the point's widths (post-training
quantization of the base model: its formats calibrated anew for those widths, as
``ssmgen train`` does). ``target`` is not part of the config: it says where to build it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import random
import tomllib
from pathlib import Path

import numpy as np

from ..golden.quantize import load_quantized, quantize_network
from ..spec.config import parse_config
from ..spec.errors import ConfigError
from ..spec.formats import FixedFormat
from ..spec.weights import load_network_npz
from .config import (COSTLY_AXES, LAYER_COMPONENTS, NETWORK_GROUPS, SweepConfig, Training,
                     per_layer_axis)

__all__ = ["grid_points", "random_points", "point_label", "LayerBase", "ModelBase", "load_base",
           "apply_layer_widths", "content_hash", "file_hash"]

#: Mantissa bits of a polar Abar when an axis does not say (``ssmgen train``'s defaults), and
#: the decoded width of a polar Abar whose base is Cartesian.
POLAR_DEFAULTS = {"rho_bits": 4, "theta_bits": 6}
POLAR_DECODED_BITS = 16


def grid_points(axes: dict) -> list[dict]:
    """Every combination of the axes' values, in the file's order (the last axis fastest)."""
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def random_points(axes: dict, samples: int, seed: int) -> list[dict]:
    """``samples`` distinct points of the grid, drawn with ``seed`` (the whole grid when it is
    smaller)."""
    sizes = [len(v) for v in axes.values()]
    total = int(np.prod(sizes))
    if samples >= total:
        return grid_points(axes)
    chosen = sorted(random.Random(seed).sample(range(total), samples))
    names = list(axes)
    points = []
    for index in chosen:
        values = {}
        for name, size in zip(reversed(names), reversed(sizes)):
            index, digit = divmod(index, size)
            values[name] = axes[name][digit]
        points.append({n: values[n] for n in names})
    return points


def point_label(values: dict) -> str:
    """``width=8 lanes=4 target=ice40-up5k``: how errors and reports name a point."""
    return " ".join(f"{k}={v}" for k, v in values.items())


def content_hash(obj) -> str:
    """SHA-256 of a JSON-able object in canonical form."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _with_width(fmt_text: str, width: int) -> str:
    """``fixed<W,I>`` -> ``fixed<width,I'>``, keeping the integer bits (the range) where they
    fit: I' = min(I, width)."""
    fmt = FixedFormat.parse(fmt_text)
    return f"fixed<{width},{min(fmt.int_bits, width)}>"


def _polar(values: dict, base_abar: dict) -> dict | None:
    """The point's polar-Abar keys, or None for a Cartesian point."""
    form = values.get("abar_form", base_abar.get("form", "cartesian"))
    if form != "polar":
        return None
    return {"form": "polar",
            **{key: values.get(key, base_abar.get(key, default))
               for key, default in POLAR_DEFAULTS.items()}}


class LayerBase:
    """A single-layer config as the base: points change its formats and hardware."""
    kind = "layer"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.folder = self.path.parent
        try:
            self.data = tomllib.loads(self.path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"base.config: cannot read {self.path}: {exc}") from None
        self.config = parse_config(self.data, base_dir=self.folder,
                                   default_name=self.path.stem.replace("-", "_"))
        if self.config.network is not None:
            raise ConfigError(f"base.config: {self.path} describes a whole network; a sweep "
                              f"over a network takes its trained MODEL_DIR as base.model")
        self.name = self.config.name

    def identity(self) -> dict:
        """What, besides a point's config, its results depend on: the weights file's bytes."""
        w = self.config.weights
        return {"weights": file_hash(str(w.path)) if w.source == "file" else "random"}

    def check(self, values: dict, data: dict) -> None:
        """Validate and quantize the point's config (ConfigError / ValueError naming the
        field), the int64 proof included."""
        load_quantized(parse_config(data, base_dir="."))

    def config_data(self, values: dict) -> dict:
        data = copy.deepcopy(self.data)
        data["name"] = self.name
        if self.config.weights.source == "file":     # absolute: points parse from anywhere
            data["weights"] = {"source": "file", "file": str(self.config.weights.path)}
        quant = data["quant"]
        for comp in LAYER_COMPONENTS:
            width = values.get(f"width.{comp}", values.get("width"))
            polar = comp == "abar" and _polar(values, quant["abar"]) is not None
            if width is None or (polar and f"width.{comp}" not in values):
                continue          # a polar Abar's decoded width changes only by width.abar
            quant[comp]["format"] = _with_width(quant[comp]["format"], width)
            if comp == "state" and isinstance(quant[comp].get("int_bits"), list):
                quant[comp]["int_bits"] = [min(b, width) for b in quant[comp]["int_bits"]]
        polar = _polar(values, quant["abar"])
        for key in ("form", *POLAR_DEFAULTS):
            quant["abar"].pop(key, None)
        if polar is not None:
            quant["abar"].update(polar)
            fmt = FixedFormat.parse(quant["abar"]["format"])
            if "width.abar" not in values and fmt.width < POLAR_DECODED_BITS \
                    and self.data["quant"]["abar"].get("form") != "polar":
                quant["abar"]["format"] = f"fixed<{POLAR_DECODED_BITS},1>"
        model = data["model"]
        if "channels" in values:
            model["channels"] = values["channels"]
        if "states" in values:
            model["states" if model["kind"] == "s5" else "state_size"] = values["states"]
        _hardware(data, values)
        return data


def _hardware(data: dict, values: dict) -> None:
    """Put the point's hardware values in. A point that changes the lanes but not the loop
    stages gets ``loop_stages = "auto"``: the base's count may not be legal for its lanes."""
    hw = data.setdefault("hardware", {})
    for key in ("lanes", "complex_multipliers", "loop_stages", "storage", "dsp_products",
                "fold_layers"):
        if key in values:
            hw[key] = values[key]
    if "lanes" in values and "loop_stages" not in values:
        hw["loop_stages"] = "auto"


class ModelBase:
    """A trained MODEL_DIR as the base: points quantize its weights anew (PTQ) for their widths
    and set their hardware; accuracy is measured on the task's test split. With
    ``[training]`` (``qat_epochs``) or a size axis (``states``, ``channels``) a point is
    trained first: a point of another size gets a float model of its size (:meth:`float_job`,
    the ``float_train`` stage), then every trained point PTQ and QAT at its widths from its
    float model, the base's or its size's (:meth:`train_job`, the ``train`` stage); its config
    is then the trained model's (:meth:`trained_config_data`)."""
    kind = "model"

    def __init__(self, path: Path, *, weights: str = "final", calib_samples: int = 512,
                 training: Training = Training()):
        self.path = Path(path)
        self.metrics = json.loads((self.path / "metrics.json").read_text())
        for key in ("task", "model", "widths", "calib"):
            if key not in self.metrics:
                raise ConfigError(f"base.model: {self.path / 'metrics.json'} has no {key!r} "
                                  f"(write MODEL_DIR with `ssmgen train`)")
        self.config = parse_config(tomllib.loads((self.path / "config.toml").read_text()),
                                   base_dir=self.path)
        self.name = self.config.name
        self.weights_path = self.path / ("weights.npz" if weights == "final" else "ptq_weights.npz")
        if not self.weights_path.is_file():
            raise ConfigError(f"quality.weights: {self.weights_path} is missing")
        self.calib_samples = calib_samples
        self.task_name = self.metrics["task"]
        self.training = training

    def identity(self) -> dict:
        return {"weights": file_hash(str(self.weights_path)), "task": self.task_name,
                "calib": self.metrics["calib"], "calib_samples": self.calib_samples}

    @functools.cached_property
    def _task(self):
        from ..train.tasks import load_task
        return load_task(self.task_name)

    @functools.cached_property
    def calibration(self):
        """Ranges and samples of every tensor of the base model on training data (NumPy)."""
        from ..train.ptq import calibrate
        weights = load_network_npz(self.weights_path, self.config)
        return calibrate(weights, self._task.x_train[:self.calib_samples],
                         activation=self.config.network.activation)

    # -- the model of a point -------------------------------------------------------------------

    def _size(self, axis: str, meta: dict) -> int:
        """The value of a size axis for model ``meta``: channels, or the config's state count
        field (s4d: state_size N = 2 x modes per channel; s5: states = modes)."""
        if axis == "channels":
            return meta["channels"]
        return 2 * meta["modes"] if meta["kind"] == "s4d" else meta["modes"]

    def resized(self, values: dict) -> bool:
        return any(axis in values and values[axis] != self._size(axis, self.metrics["model"])
                   for axis in COSTLY_AXES)

    def needs_training(self, values: dict) -> bool:
        return self.training.qat_epochs > 0 or self.resized(values)

    def _meta(self, values: dict) -> dict:
        meta = dict(self.metrics["model"])
        if "channels" in values:
            meta["channels"] = values["channels"]
        if "states" in values:
            states = values["states"]
            if meta["kind"] == "s4d" and states % 2:
                raise ConfigError(f"axes.states: {states} is not allowed for an s4d model: its "
                                  f"state_size N holds N / 2 complex modes per channel, so N "
                                  f"must be even")
            meta["modes"] = states // 2 if meta["kind"] == "s4d" else states
        return meta

    @functools.lru_cache(maxsize=16)
    def _initial(self, kind, channels, modes):
        """The weights of an untrained model of that size (seeded, as training starts) and
        their calibration: what a resized point's config is checked with before training."""
        from ..train.model import SSMNetwork
        from ..train.ptq import calibrate
        meta = self.metrics["model"]
        model = SSMNetwork(kind=kind, inputs=meta["inputs"], channels=channels, modes=modes,
                           layers=meta["layers"], classes=meta["classes"],
                           seed=self.metrics["seed"])
        weights = model.network_weights()
        return weights, calibrate(weights, self._task.x_train[:self.calib_samples],
                                  activation=meta["activation"])

    def check(self, values: dict, data: dict) -> None:
        """Validate and quantize the point's config (ConfigError / ValueError naming the
        field); a resized point with its untrained model's weights."""
        config = parse_config(data, base_dir=".")
        if not self.resized(values):
            load_quantized(config)
            return
        meta = self._meta(values)
        quantize_network(config, self._initial(meta["kind"], meta["channels"], meta["modes"])[0])

    def _widths(self, values: dict) -> tuple[dict, dict | None]:
        """The point's width per tensor group and its polar-Abar keys (None: Cartesian)."""
        widths = dict(self.metrics["widths"])
        base_abar = self.metrics.get("abar_form", {})
        polar = _polar(values, base_abar)
        for group in NETWORK_GROUPS:
            width = values.get(f"width.{group}", values.get("width"))
            if width is not None and not (group == "abar" and polar is not None
                                          and f"width.{group}" not in values):
                widths[group] = width
        if polar is not None and "width.abar" not in values \
                and base_abar.get("form") != "polar":
            widths["abar"] = max(widths["abar"], POLAR_DECODED_BITS)
        return widths, polar

    def config_data(self, values: dict) -> dict:
        """The point's config: PTQ of the base at its widths; for a resized point, the config
        its untrained model would get (the check before training; the trained model's
        replaces it)."""
        from ..train.ptq import build_config
        widths, polar = self._widths(values)
        meta = self._meta(values)
        resized = self.resized(values)
        calibration = (self._initial(meta["kind"], meta["channels"], meta["modes"])[1]
                       if resized else self.calibration)
        data = build_config(meta, calibration, widths, name=self.name,
                            steps=self.config.network.steps, weights_file=str(self.weights_path),
                            choice=self.metrics["calib"], abar_form=polar)
        apply_layer_widths(data, values)
        self._set_hardware(data, values, resized)
        return data

    def _set_hardware(self, data: dict, values: dict, resized: bool) -> None:
        """The base's hardware where it still applies (a resized model keeps the lanes
        ``build_config`` chose unless an axis sets them), then the point's own."""
        hw = data["hardware"]
        hw["complex_multipliers"] = self.config.hardware.complex_multipliers
        base_hw = self.config.source.get("hardware", {})
        # the DSP budget, storage and folding as the base asks, whatever the size
        for key in ("dsp_products", "storage", "fold_layers"):
            if key in base_hw:
                hw[key] = base_hw[key]
        if not resized:
            hw["lanes"] = self.config.hardware.lanes
            if isinstance(base_hw.get("loop_stages"), int):
                hw["loop_stages"] = base_hw["loop_stages"]
        _hardware(data, values)

    # -- training -------------------------------------------------------------------------------

    def _setting(self, key: str):
        value = getattr(self.training, key)
        if value is None:
            value = self.metrics.get("hyper", {}).get(key)
        if value is None:
            raise ConfigError(f"training.{key}: {self.path / 'metrics.json'} does not record "
                              f"it (a MODEL_DIR written before ssmgen recorded its training "
                              f"settings, or fine-tuned from --init, whose float training "
                              f"was not its own); give it in [training]")
        return value

    def float_job(self, values: dict, work) -> dict:
        """The ``float_train`` stage's job of a resized point: its float model, trained from
        scratch with the base's settings (one per size, shared by every width)."""
        meta = self._meta(values)
        return {"stage": "float_train", "task": self.task_name,
                "train_samples": self.metrics["train_samples"], "meta": meta,
                "widths": dict(self.metrics["widths"]), "epochs": self._setting("epochs"),
                "lr": self._setting("lr"), "batch_size": self._setting("batch_size"),
                "dropout": self._setting("dropout"), "seed": self._seed(),
                "augment": self.metrics.get("augment", False), "calib": self.metrics["calib"],
                "name": self.name, "work": None if work is None else str(work)}

    def float_identity(self, values: dict) -> dict:
        job = self.float_job(values, work=None)
        job.pop("work")
        return job

    def train_identity(self, values: dict) -> dict:
        """Everything a point's trained model depends on besides the base (plain data): the
        values of the axes that are not hardware, and the training settings (a resized point:
        its float model's, in place of the base's float checkpoint)."""
        job = self.train_job(values, work=None, init=None)
        job.pop("work")
        job["init"] = (self.float_identity(values) if self.resized(values)
                       else file_hash(job["init"]))
        return job

    def _seed(self) -> int:
        return self.training.seed if self.training.seed is not None else self.metrics["seed"]

    def train_job(self, values: dict, work, init=None) -> dict:
        """The ``train`` stage's job of a point (``stages._train``): PTQ and QAT at the point's
        widths from a float checkpoint: the base's, or for a resized point ``init`` (its
        ``float_train`` result's)."""
        if not self.resized(values):
            init = self.path / "checkpoints" / "float.pt"
            if not init.is_file():
                raise ConfigError(f"training.qat_epochs: QAT per point starts from the base's "
                                  f"float model, and {init} is missing")
        widths, polar = self._widths(values)
        return {"stage": "train", "task": self.task_name,
                "train_samples": self.metrics["train_samples"],
                "init": None if init is None else str(init), "widths": widths,
                "abar_form": polar,
                "layer_values": {k: v for k, v in values.items() if per_layer_axis(k)},
                "qat_epochs": self.training.qat_epochs, "qat_lr": self._setting("qat_lr"),
                "batch_size": self._setting("batch_size"),
                "dropout": self._setting("dropout"), "seed": self._seed(),
                "augment": self.metrics.get("augment", False),
                "calib": self.metrics["calib"],
                "calib_percentile": self.metrics.get("calib_percentile", 100.0),
                "equalize": self.metrics.get("equalize", True),
                "calib_samples": self.calib_samples, "name": self.name,
                "work": None if work is None else str(work)}

    def trained_config_data(self, values: dict, model_dir: Path) -> dict:
        """The point's config once its model is trained (``model_dir``, written by the train
        stage): that model's formats and weights, the point's hardware."""
        data = tomllib.loads((Path(model_dir) / "config.toml").read_text())
        data["name"] = self.name
        data["weights"] = {"source": "file", "file": str(Path(model_dir) / "weights.npz")}
        self._set_hardware(data, values, self.resized(values))
        return data


def apply_layer_widths(data: dict, values: dict) -> None:
    """``width.layers.<l>.<component>``: layer l's own format of the component
    (``[network.layer_quant]``), the shared format's integer bits kept; its per-mode state
    integer bits capped at the width."""
    for axis, width in values.items():
        per_layer = per_layer_axis(axis)
        if per_layer is None:
            continue
        layer, comp = per_layer
        table = {"format": _with_width(data["quant"][comp]["format"], width)}
        if comp == "abar" and data["quant"]["abar"].get("form") == "polar":
            table["format"] = f"fixed<{width},1>"
        data["network"].setdefault("layer_quant", {}).setdefault(str(layer), {})[comp] = table
        bits = data["network"].get("state_int_bits")
        if comp == "state" and bits and layer < len(bits):
            bits[layer] = [min(b, width) for b in bits[layer]]


def load_base(sweep: SweepConfig):
    if sweep.base.kind == "layer":
        return LayerBase(sweep.base.path)
    return ModelBase(sweep.base.path, weights=sweep.quality.weights,
                     calib_samples=sweep.quality.calib_samples, training=sweep.training)
