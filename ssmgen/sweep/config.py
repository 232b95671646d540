"""The sweep file: what ``ssmgen sweep SWEEP.toml`` explores and how it chooses.

Reference (every key; ``examples/sweep_small.toml`` is a complete file)::

    name = "my_sweep"                 # optional (default: the file's stem)

    [base]                            # exactly one of:
    config = "layer.toml"             # a single-layer config (path relative to this file), or
    # model = "build/sdigits"         # a trained MODEL_DIR (`ssmgen train`): a whole network

    [axes]                            # every axis is a list of values; the sweep takes their
    width = [4, 6, 8]                 # product. width: every component's width W; each keeps
    "width.state" = [8, 12]           # its integer bits I (its range; I = W where I > W).
                                      # "width.<name>": one component (layer: abar, bbar, c, d,
                                      # input, state, output; network: the groups of
                                      # `ssmgen train`: abar, bbar, c, d, state, stream,
                                      # ssm_out, net_input, encoder, mix, pool, decoder, and
                                      # *_bias); it overrides `width` for that component
    "width.layers.1.state" = [6, 8]   # network: one layer's own width of abar, bbar, c, d or
                                      # state (network.layer_quant: mixed precision per layer)
    abar_form = ["cartesian", "polar"]    # with rho_bits / theta_bits axes for the polar points
    lanes = [1, 2, 4]                 # hardware.lanes (must divide the state count)
    complex_multipliers = [3, 4]
    loop_stages = ["auto", 2]
    storage = ["memory", "registers"]  # hardware.storage: block RAM or flip-flops
    dsp_products = ["all", 8]         # hardware.dsp_products: the DSP budget
    fold_layers = [false, true]       # hardware.fold_layers: two s4d layers on one datapath
    target = ["ice40-up5k", "ecp5-85k"]   # default: ["ice40-up5k"]
    states = [16, 32]                 # model.state_size (s4d: N, P = H N / 2) or model.states
    channels = [16, 32]               # (s5); and H. Costly over a MODEL_DIR: every size is
                                      # trained anew ([training]); a layer base with a weights
                                      # file cannot change size (random weights can)

    [objectives]                      # what the Pareto front trades off
    names = ["quality", "luts", "dsps"]   # quality (maximized: accuracy, 1 - NRMSE for a
                                      # sequence model, or SNR in dB for a layer), luts, ffs,
                                      # dsps, brams, cycles_per_timestep,
                                      # latency_cycles (minimized), timesteps_per_s (maximized)

    [constraints]
    fit_device = true                 # within the target's capacity (default true)
    max_luts = 4000                   # also max_ffs, max_dsps, max_brams
    min_timesteps_per_s = 1e6         # Fmax / cycles per timestep
    min_quality = 0.9

    [strategy]
    kind = "grid"                     # grid: every point; random: `samples` of them;
                                      # optuna: NSGA-II over the axes (the [sweep] extra);
                                      # fit: the most accurate point that meets the constraints
    samples = 20                      # random, optuna; fit: over a random sample of the grid
    seed = 0
    synthesize = "candidates"         # candidates: the points that can still be on the Pareto
                                      # front (fit: the best ones until one is confirmed);
                                      # all; none (estimates only)
    place = "auto"                    # nextpnr after Yosys: true; false (cell counts only, no
                                      # Fmax); auto: when an objective or a constraint needs
                                      # Fmax (timesteps_per_s, min_timesteps_per_s)

    [quality]                         # how quality is measured
    stimulus = "smooth"               # layer: full-range | smooth | extremes | a .npy of real
    sequences = 8                     # inputs; the golden model's output against the float
    steps = 64                        # model's: SNR in dB (and max |error|)
    seed = 0
    # test_subset = 200               # model: accuracy on (the first N of) the task's test split
    # weights = "final"               # model: "final" (weights.npz, after QAT) or "float"
    # calib_samples = 512             # model: training samples that calibrate the formats

    [training]                        # model base only: training per point (costly; every
    qat_epochs = 2                    # trained model is cached under output/models/). QAT of
                                      # each point at its widths from the base's float model
                                      # (default 0: post-training quantization, no training)
    # epochs = 40                     # float epochs of a point whose size differs from the base
    # lr, qat_lr, batch_size, dropout, seed: default the base's own (metrics.json "hyper")

Every error names the field and what is allowed, and the sweep checks every point's config
before any work starts.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..spec.config import MAX_POLAR_BITS, MIN_THETA_BITS, STORAGE_CHOICES
from ..spec.errors import ConfigError
from ..spec.fields import choice_field, expect_table, int_field, reject_unknown
from ..spec.formats import MAX_FORMAT_WIDTH
from ..stimulus import STIMULI
from ..synth.targets import TARGETS

__all__ = ["SweepConfig", "Base", "Constraints", "Strategy", "Quality", "load_sweep",
           "parse_sweep", "OBJECTIVES", "RESOURCES", "LAYER_COMPONENTS", "NETWORK_GROUPS",
           "PER_LAYER_COMPONENTS", "STRATEGIES", "SYNTHESIZE", "per_layer_axis", "Training",
           "COSTLY_AXES", "HARDWARE_AXES"]

#: Objective -> direction.
OBJECTIVES = {"quality": "max", "luts": "min", "ffs": "min", "dsps": "min", "brams": "min",
              "cycles_per_timestep": "min", "latency_cycles": "min", "timesteps_per_s": "max"}
RESOURCES = ("luts", "ffs", "dsps", "brams")
#: The width groups of a layer's config and of a network (``train.ptq.WIDTH_KEYS``).
LAYER_COMPONENTS = ("abar", "bbar", "c", "d", "input", "state", "output")
NETWORK_GROUPS = ("abar", "bbar", "c", "d", "state", "stream", "ssm_out", "net_input", "encoder",
                  "encoder_bias", "mix", "mix_bias", "pool", "decoder", "decoder_bias")
#: What one network layer may have its own width of (``width.layers.<l>.<component>``).
PER_LAYER_COMPONENTS = ("abar", "bbar", "c", "d", "state")
STRATEGIES = ("grid", "random", "optuna", "fit")
SYNTHESIZE = ("candidates", "all", "none")
#: Axes that are not widths, with the check of one value.
_PLAIN_AXES = ("abar_form", "rho_bits", "theta_bits", "lanes", "complex_multipliers",
               "loop_stages", "storage", "dsp_products", "fold_layers", "target", "states",
               "channels")
#: Axes that change the model's size: they need a model per point.
COSTLY_AXES = ("states", "channels")
#: Axes that change only the hardware (and where it is built): never what a model learns.
HARDWARE_AXES = ("lanes", "complex_multipliers", "loop_stages", "storage", "dsp_products",
                 "fold_layers", "target")


@dataclass(frozen=True)
class Base:
    kind: str          #: "layer" (a config) or "model" (a trained MODEL_DIR)
    path: Path


@dataclass(frozen=True)
class Constraints:
    fit_device: bool = True
    max: dict = field(default_factory=dict)          #: resource -> limit
    min_timesteps_per_s: float | None = None
    min_quality: float | None = None


@dataclass(frozen=True)
class Strategy:
    kind: str = "grid"
    samples: int | None = None
    seed: int = 0
    synthesize: str = "candidates"
    place: str | bool = "auto"


@dataclass(frozen=True)
class Quality:
    stimulus: str = "smooth"
    sequences: int = 8
    steps: int = 64
    seed: int = 0
    test_subset: int | None = None
    weights: str = "final"
    calib_samples: int = 512


@dataclass(frozen=True)
class Training:
    """``[training]``: how points over a MODEL_DIR are trained. ``None``: the base's own
    setting (metrics.json)."""
    qat_epochs: int = 0
    epochs: int | None = None
    lr: float | None = None
    qat_lr: float | None = None
    batch_size: int | None = None
    dropout: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class SweepConfig:
    name: str
    path: Path                        #: the sweep file (relative paths start at its folder)
    base: Base
    axes: dict                        #: axis -> tuple of values, in the file's order
    objectives: tuple
    constraints: Constraints
    strategy: Strategy
    quality: Quality
    training: Training = Training()
    source: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.axes.values())

    @property
    def place(self) -> bool:
        """Whether synthesis places and routes (for Fmax): ``strategy.place``, or when "auto"
        whether an objective or a constraint needs Fmax."""
        if self.strategy.place != "auto":
            return self.strategy.place
        return ("timesteps_per_s" in self.objectives
                or self.constraints.min_timesteps_per_s is not None)


def _values(table, axis) -> list:
    values = table[axis]
    where = f"axes.{axis}"
    if not isinstance(values, list):
        raise ConfigError(f"{where}: must be a list of values, not {values!r}")
    if not values:
        raise ConfigError(f"{where}: is empty; give at least one value")
    if len({repr(v) for v in values}) != len(values):
        raise ConfigError(f"{where}: lists a value twice: {values!r}")
    return values


def _ints(values, where, lo, hi):
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"{where}: {v!r} is not allowed; allowed: integers {lo}..{hi}")


def per_layer_axis(axis: str) -> tuple[int, str] | None:
    """``width.layers.<l>.<component>`` -> (l, component); None for any other axis."""
    parts = axis.split(".")
    if len(parts) == 4 and parts[:2] == ["width", "layers"] and parts[2].isdigit():
        return int(parts[2]), parts[3]
    return None


def _axis(table: dict, axis: str, base: Base) -> tuple:
    where = f"axes.{axis}"
    values = _values(table, axis)
    per_layer = per_layer_axis(axis)
    if axis.startswith("width.layers."):
        if base.kind != "model":
            raise ConfigError(f"{where}: per-layer widths apply to a network (base.model)")
        if per_layer is None or per_layer[1] not in PER_LAYER_COMPONENTS:
            raise ConfigError(f"{where}: must be width.layers.<layer>.<component> with a "
                              f"component of {', '.join(PER_LAYER_COMPONENTS)}")
        _ints(values, where, 2, MAX_FORMAT_WIDTH)
    elif axis == "width" or axis.startswith("width."):
        if axis.startswith("width."):
            name = axis.split(".", 1)[1]
            allowed = LAYER_COMPONENTS if base.kind == "layer" else NETWORK_GROUPS
            if name not in allowed:
                raise ConfigError(f"{where}: unknown component {name!r} for a {base.kind} base; "
                                  f"allowed: {', '.join(allowed)}")
        _ints(values, where, 2, MAX_FORMAT_WIDTH)
    elif axis == "abar_form":
        for v in values:
            if v not in ("cartesian", "polar"):
                raise ConfigError(f"{where}: {v!r} is not allowed; allowed: cartesian, polar")
    elif axis == "rho_bits":
        _ints(values, where, 1, MAX_POLAR_BITS)
    elif axis == "theta_bits":
        _ints(values, where, MIN_THETA_BITS, MAX_POLAR_BITS)
    elif axis == "lanes":
        _ints(values, where, 1, 65536)
    elif axis == "complex_multipliers":
        for v in values:
            if v not in (3, 4) or isinstance(v, bool):
                raise ConfigError(f"{where}: {v!r} is not allowed; allowed: 3, 4")
    elif axis == "loop_stages":
        for v in values:
            if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 7):
                raise ConfigError(f"{where}: {v!r} is not allowed; allowed: \"auto\" or 1..7")
    elif axis == "storage":
        for v in values:
            if v not in STORAGE_CHOICES:
                raise ConfigError(f"{where}: {v!r} is not allowed; allowed: "
                                  f"{', '.join(STORAGE_CHOICES)}")
    elif axis == "dsp_products":
        for v in values:
            if v != "all" and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"{where}: {v!r} is not allowed; allowed: \"all\" or an "
                                  f"integer >= 0")
    elif axis == "fold_layers":
        for v in values:
            if not isinstance(v, bool):
                raise ConfigError(f"{where}: {v!r} is not allowed; allowed: true, false")
    elif axis == "target":
        for v in values:
            if v not in TARGETS:
                raise ConfigError(f"{where}: {v!r} is not allowed; allowed: {', '.join(TARGETS)}")
    elif axis in COSTLY_AXES:
        _ints(values, where, 1, 4096)
        if base.kind == "model":
            _require_torch(where, "over a MODEL_DIR a size is trained")
    else:
        raise ConfigError(f"axes.{axis}: unknown axis; allowed: width, width.<component>, "
                          f"{', '.join(_PLAIN_AXES)}")
    return tuple(values)


def _base(table, folder: Path) -> Base:
    reject_unknown(table, ("config", "model"), "base")
    if ("config" in table) == ("model" in table):
        raise ConfigError("base: give exactly one of base.config (a single-layer config) or "
                          "base.model (a trained MODEL_DIR)")
    key = "config" if "config" in table else "model"
    if not isinstance(table[key], str):
        raise ConfigError(f"base.{key}: must be a path, not {table[key]!r}")
    path = (folder / table[key]).resolve()
    if key == "config" and not path.is_file():
        raise ConfigError(f"base.config: {path} is not a file")
    if key == "model" and not (path / "config.toml").is_file():
        raise ConfigError(f"base.model: {path} is not a MODEL_DIR (no config.toml in it)")
    if key == "model" and not (path / "metrics.json").is_file():
        raise ConfigError(f"base.model: {path} has no metrics.json (write MODEL_DIR with "
                          f"`ssmgen train`)")
    return Base("layer" if key == "config" else "model", path)


def _objectives(table) -> tuple:
    reject_unknown(table, ("names",), "objectives")
    names = table.get("names", ["quality", "luts", "dsps"])
    if not isinstance(names, list) or not names:
        raise ConfigError(f"objectives.names: must be a non-empty list, not {names!r}")
    for name in names:
        if name not in OBJECTIVES:
            raise ConfigError(f"objectives.names: {name!r} is not allowed; allowed: "
                              f"{', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives.names: lists an objective twice: {names!r}")
    return tuple(names)


def _number(table, key, where, lo):
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < lo:
        raise ConfigError(f"{where}.{key}: must be a number >= {lo}, not {value!r}")
    return float(value)


def _constraints(table) -> Constraints:
    where = "constraints"
    allowed = ("fit_device", "min_timesteps_per_s", "min_quality", *(f"max_{r}" for r in RESOURCES))
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (a constraint on an "
                          f"unknown resource?); allowed: {', '.join(allowed)}")
    fit = table.get("fit_device", True)
    if not isinstance(fit, bool):
        raise ConfigError(f"{where}.fit_device: must be true or false, not {fit!r}")
    limits = {r: int_field(table, f"max_{r}", where, lo=0) for r in RESOURCES if f"max_{r}" in table}
    return Constraints(fit, limits, _number(table, "min_timesteps_per_s", where, 0),
                       _number(table, "min_quality", where, -1e9))


def _strategy(table) -> Strategy:
    where = "strategy"
    reject_unknown(table, ("kind", "samples", "seed", "synthesize", "place"), where)
    kind = choice_field(table, "kind", where, STRATEGIES, "grid")
    samples = None
    if kind in ("random", "optuna"):
        samples = int_field(table, "samples", where, lo=1, hi=100000)
    elif kind == "fit" and "samples" in table:          # fit over a random sample of the grid
        samples = int_field(table, "samples", where, lo=1, hi=100000)
    elif "samples" in table:
        raise ConfigError(f"{where}.samples: applies to kind = \"random\", \"optuna\" or "
                          f"\"fit\" only")
    seed = int_field(table, "seed", where, lo=0, default=0)
    synthesize = choice_field(table, "synthesize", where, SYNTHESIZE, "candidates")
    if kind == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError("strategy.kind: \"optuna\" needs the [sweep] extra "
                              "(pip install 'ssmgen[sweep]')") from None
    place = table.get("place", "auto")
    if not (place == "auto" or isinstance(place, bool)):
        raise ConfigError(f"{where}.place: {place!r} is not allowed; allowed: true, false, "
                          f"\"auto\"")
    return Strategy(kind, samples, seed, synthesize, place)


def _quality(table, base: Base, folder: Path) -> Quality:
    where = "quality"
    layer_keys = ("stimulus", "sequences", "steps", "seed")
    model_keys = ("test_subset", "weights", "calib_samples", "seed")
    allowed = layer_keys if base.kind == "layer" else model_keys
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} for a {base.kind} base; "
                          f"allowed: {', '.join(allowed)}")
    stimulus = table.get("stimulus", "smooth")
    if stimulus not in STIMULI:
        if not isinstance(stimulus, str) or not stimulus.endswith(".npy"):
            raise ConfigError(f"{where}.stimulus: {stimulus!r} is not allowed; allowed: "
                              f"{', '.join(STIMULI)} or a .npy file of real inputs")
        path = (folder / stimulus).resolve()
        if not path.is_file():
            raise ConfigError(f"{where}.stimulus: {path} is not a file")
        stimulus = str(path)
    weights = choice_field(table, "weights", where, ("final", "float"), "final")
    test_subset = (int_field(table, "test_subset", where, lo=1) if "test_subset" in table
                   else None)
    return Quality(stimulus, int_field(table, "sequences", where, lo=1, hi=4096, default=8),
                   int_field(table, "steps", where, lo=2, hi=1 << 16, default=64),
                   int_field(table, "seed", where, lo=0, default=0), test_subset, weights,
                   int_field(table, "calib_samples", where, lo=1, default=512))


def _require_torch(where: str, why: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError(f"{where}: {why}, which needs PyTorch: pip install "
                          f"'ssmgen[train]'") from None


def _training(table, base: Base) -> Training:
    where = "training"
    if table and base.kind != "model":
        raise ConfigError(f"{where}: applies to a MODEL_DIR base (base.model) only")
    reject_unknown(table, ("qat_epochs", "epochs", "lr", "qat_lr", "batch_size", "dropout",
                           "seed"), where)
    rate = {key: _number(table, key, where, 0) for key in ("lr", "qat_lr")}
    for key, value in rate.items():
        if value is not None and not 0 < value <= 1:
            raise ConfigError(f"{where}.{key}: must be in (0, 1], not {value!r}")
    dropout = _number(table, "dropout", where, 0)
    if dropout is not None and dropout >= 1:
        raise ConfigError(f"{where}.dropout: must be in [0, 1), not {dropout!r}")

    def optional(key, lo, hi):
        return int_field(table, key, where, lo=lo, hi=hi) if key in table else None
    qat_epochs = int_field(table, "qat_epochs", where, lo=0, hi=1000, default=0)
    if qat_epochs:
        _require_torch(f"{where}.qat_epochs", "QAT per point trains")
    return Training(qat_epochs,
                    optional("epochs", 1, 100000), rate["lr"], rate["qat_lr"],
                    optional("batch_size", 1, 1 << 16), dropout, optional("seed", 0, 1 << 31))


def parse_sweep(data: dict, *, path: Path) -> SweepConfig:
    """Validate a sweep file already read into a dict; ``path``: the file (for relative paths
    and the default name)."""
    path = Path(path).resolve()
    folder = path.parent
    expect_table(data, "sweep")
    reject_unknown(data, ("name", "base", "axes", "objectives", "constraints", "strategy",
                          "quality", "training"), "sweep")
    name = data.get("name", path.stem.replace("-", "_"))
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"name: must be an identifier (letters, digits, _), not {name!r}")
    if "base" not in data:
        raise ConfigError("[base]: missing section (base.config or base.model)")
    base = _base(expect_table(data["base"], "base"), folder)
    axes_table = expect_table(data.get("axes", {}), "axes")
    axes = {axis: _axis(axes_table, axis, base) for axis in axes_table}
    for polar_key in ("rho_bits", "theta_bits"):
        if polar_key in axes and "polar" not in axes.get("abar_form", ()):
            raise ConfigError(f"axes.{polar_key}: applies to polar points only; add \"polar\" to "
                              f"axes.abar_form")
    axes.setdefault("target", ("ice40-up5k",))
    strategy = _strategy(expect_table(data.get("strategy", {}), "strategy"))
    return SweepConfig(name, path, base, axes,
                       _objectives(expect_table(data.get("objectives", {}), "objectives")),
                       _constraints(expect_table(data.get("constraints", {}), "constraints")),
                       strategy,
                       _quality(expect_table(data.get("quality", {}), "quality"), base, folder),
                       _training(expect_table(data.get("training", {}), "training"), base),
                       source=data)


def load_sweep(path) -> SweepConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the sweep file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_sweep(data, path=path)
