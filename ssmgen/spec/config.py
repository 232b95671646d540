"""Quantization config: a TOML file naming the model shape, every component's fixed-point format,
rounding and overflow, the hardware parallelism and where the weights come from.

Reference (every key; see examples/ for complete files)::

    name = "s5_small"                 # optional, used for the Verilog module name

    [model]
    kind = "s5"                       # "s4d" (SISO per channel) or "s5" (MIMO)
    channels = 4                      # H: input and output channels
    states = 8                        # s5: P complex states
    # state_size = 8                  # s4d instead of states: N (even); N/2 complex modes per channel

    [weights]
    source = "random"                 # "random" (demo: S4D-Lin / S5 init + ZOH) or "file"
    seed = 1                          # random only
    # dt_min = 0.01, dt_max = 0.1     # random only: ZOH step range
    # file = "weights.npz"            # file only: path relative to this config

    [quant.defaults]                  # optional: inherited by components that omit these keys
    rounding = "half_even"            # floor | half_up | half_even | toward_zero
    overflow = "saturate"             # wrap | saturate

    [quant.abar]                      # likewise bbar, c, d, input, state, output
    format = "fixed<10,1>"            # fixed<W,I>: W bits, I integer bits incl. sign (ap_fixed)
    rounding = "half_even"
    overflow = "saturate"
    # form = "polar"                  # Abar only: "cartesian" (default: re, im in `format`) or
    # rho_bits = 4                    # "polar": 1 - |Abar| as an unsigned rho_bits mantissa and
    # theta_bits = 6                  # arg Abar as a signed theta_bits mantissa, each with a
                                      # per-mode exponent, decoded exactly into `format` for the
                                      # datapath (golden/abar_polar.py; format needs I >= 1)

    [quant.state]
    format = "fixed<16,4>"
    int_bits = "auto"                 # optional per-mode formats: a list of P integers, or "auto"

    [quant.state_acc]                 # accumulator of Abar x + Bbar u; output_acc: of Re(C x) + D u
    format = "full"                   # full precision (default), or fixed<W,I> with rounding/overflow

    [quant]
    abar_stability = "correct"        # "correct" (pull poles inside the unit circle) or "reject"

    [hardware]
    lanes = 8                         # states updated per clock cycle; must divide the state count
    complex_multipliers = 3           # real multipliers per complex product: 3 (Gauss) or 4
    loop_stages = "auto"              # registers in the state-update loop: 1..min(G, 7), G = P/lanes;
                                      # "auto" = min(G, 7). A state is revisited every G cycles, so the
                                      # loop may take up to G cycles; more stages = higher Fmax

    [network]                         # optional: a whole model (encoder, L layers, pooling,
                                      # decoder) around the layer; see network_config.py
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .fields import (accumulator_field, choice_field, expect_table, int_bits_list, int_field,
                     quantizer_field, reject_unknown, OVERFLOWS, ROUNDINGS)
from .formats import Quantizer
from .network_config import NetworkConfig, parse_network

__all__ = ["ConfigError", "ModelShape", "QuantConfig", "AbarPolar", "HardwareConfig",
           "WeightsSource", "SSMConfig", "NetworkConfig", "load_config", "parse_config",
           "COMPONENTS", "MAX_LOOP_STAGES", "MIN_MEMORY_GROUPS", "STORAGE_CHOICES", "MIN_THETA_BITS", "MAX_POLAR_BITS"]

#: Components with a plain fixed-point format.
COMPONENTS = ("abar", "bbar", "c", "d", "input", "state", "output")
ACCUMULATORS = ("state_acc", "output_acc")
STABILITY_MODES = ("correct", "reject")
ABAR_FORMS = ("cartesian", "polar")
#: A signed angle mantissa of fewer bits cannot hold theta = +-pi at exponent 0 (round(pi) = 3).
MIN_THETA_BITS = 3
#: Widest radius or angle mantissa a config may ask for (quant.abar.rho_bits / theta_bits).
MAX_POLAR_BITS = 16
#: Most registers the state-update loop can use (hw/datapath/ssm_layer.py: LOOP_CUTS + the
#: state itself).
MAX_LOOP_STAGES = 7
#: ``hardware.storage = "auto"`` keeps a folded layer's states and per-state weights in block RAM
#: from this many groups (G = P / lanes) on: below it, a memory word is read too rarely for the
#: block RAM it takes (an iCE40 block holds 256 words of 16 bits) to save logic.
MIN_MEMORY_GROUPS = 16
STORAGE_CHOICES = ("auto", "memory", "registers")


@dataclass(frozen=True)
class ModelShape:
    kind: str        #: "s4d" or "s5"
    channels: int    #: H
    states: int      #: P: complex states held in hardware (s4d: H * N/2)

    @property
    def modes_per_channel(self) -> int:
        return self.states // self.channels if self.kind == "s4d" else self.states


@dataclass(frozen=True)
class AbarPolar:
    """``quant.abar.form = "polar"``: mantissa bits of the stored radius and angle
    (golden/abar_polar.py); ``quant.abar``'s format is the decoded Abar's, in the datapath."""
    rho_bits: int
    theta_bits: int

    def describe(self) -> str:
        return f"polar: rho {self.rho_bits}-bit, theta {self.theta_bits}-bit, per-mode exponents"


@dataclass(frozen=True)
class QuantConfig:
    abar: Quantizer
    bbar: Quantizer
    c: Quantizer
    d: Quantizer
    input: Quantizer
    state: Quantizer
    output: Quantizer
    #: None: every state uses ``state.format``; "auto": integer bits per mode from a worst-case
    #: bound (no overflow possible); a tuple: integer bits of each state.
    state_int_bits: None | str | tuple[int, ...]
    #: None means full precision (derived width, exact).
    state_acc: Quantizer | None
    output_acc: Quantizer | None
    abar_stability: str
    #: None: Cartesian Abar (re, im rounded into ``abar.format``); else the polar form.
    abar_polar: AbarPolar | None = None


@dataclass(frozen=True)
class HardwareConfig:
    """``[hardware]``: every field changes the generated circuit (its timing at least), so the
    model hash covers them all (``hashing.py``)."""
    lanes: int
    complex_multipliers: int
    loop_stages: int            #: pipeline registers in the state-update loop (1..min(G, 7))
    #: where a folded layer (G = P / lanes > 1) keeps its states and per-state weights:
    #: "memory" (block RAM: cost follows lanes, not P) or "registers" (flip-flops and LUT ROMs);
    #: a fully parallel layer (G = 1) always uses registers
    storage: str = "registers"
    #: at most this many products are multipliers (DSP blocks), chosen by the generator as
    #: those that would cost the most logic; the rest are adders in LUTs; None: every product
    dsp_products: int | None = None
    #: a network's layers take turns on one SSM datapath and one mixing unit (each beat of
    #: the shared layer is one layer's timestep; ``hw/datapath/network.py``): the logic of
    #: one layer for L layers' work, L times the cycles per timestep
    fold_layers: bool = False


@dataclass(frozen=True)
class WeightsSource:
    source: str                 #: "random" or "file"
    seed: int = 0
    dt_min: float = 0.01
    dt_max: float = 0.1
    path: Path | None = None


@dataclass(frozen=True)
class SSMConfig:
    """A validated config: one SSM layer, or with ``network`` a whole model whose layers all
    share ``model``, ``quant`` and ``hardware``."""
    name: str
    model: ModelShape
    quant: QuantConfig
    hardware: HardwareConfig
    weights: WeightsSource
    source: dict = field(default_factory=dict, compare=False, repr=False)
    #: ``[network]``: a whole model; None: one layer.
    network: NetworkConfig | None = None
    #: per network layer: its own QuantConfig (``[network.layer_quant.<l>]`` merged over
    #: ``[quant.*]``), or None where the layer uses ``quant``
    layer_quants: tuple = ()

    @property
    def cycles_per_timestep(self) -> int:
        return self.model.states // self.hardware.lanes

    def layer(self, index: int) -> "SSMConfig":
        """The single-layer config of network layer ``index``: its own formats where
        ``network.layer_quant`` gives them, its own per-mode state integer bits where
        ``network.state_int_bits`` does."""
        if self.network is None:
            return self
        quant = (self.layer_quants[index] if self.layer_quants and self.layer_quants[index]
                 else self.quant)
        bits = self.network.state_int_bits
        if bits is not None:
            quant = dataclasses.replace(quant, state_int_bits=bits[index])
        return dataclasses.replace(self, quant=quant)


def _model(table) -> ModelShape:
    where = "model"
    reject_unknown(table, ("kind", "channels", "states", "state_size"), where)
    kind = choice_field(table, "kind", where, ("s4d", "s5"))
    channels = int_field(table, "channels", where, lo=1, hi=4096)
    if kind == "s5":
        if "state_size" in table:
            raise ConfigError("model.state_size: is for s4d; an s5 model gives model.states (P)")
        states = int_field(table, "states", where, lo=1, hi=65536)
    else:
        if "states" in table:
            raise ConfigError("model.states: is for s5; an s4d model gives model.state_size "
                              "(N, even: N/2 complex modes per channel)")
        n = int_field(table, "state_size", where, lo=2, hi=4096)
        if n % 2:
            raise ConfigError(f"model.state_size: must be even (N/2 complex modes), not {n}")
        states = channels * (n // 2)
    return ModelShape(kind, channels, states)


def _state_int_bits(value, model, state_fmt):
    where = "quant.state.int_bits"
    if value is None or value == "auto":
        return value
    if isinstance(value, list):
        return int_bits_list(value, model.states, state_fmt.width, where)
    raise ConfigError(f"{where}: must be \"auto\" or a list of {model.states} integers, "
                      f"not {value!r}")


def _defaults(table) -> dict:
    """``[quant.defaults]``, checked here so that a bad default names quant.defaults."""
    defaults = expect_table(table.get("defaults", {}), "quant.defaults")
    reject_unknown(defaults, ("rounding", "overflow"), "quant.defaults")
    for key, choices in (("rounding", ROUNDINGS), ("overflow", OVERFLOWS)):
        if key in defaults:
            choice_field(defaults, key, "quant.defaults", choices)
    return defaults


def _quant(table, model) -> QuantConfig:
    where = "quant"
    reject_unknown(table, (*COMPONENTS, *ACCUMULATORS, "defaults", "abar_stability"), where)
    defaults = _defaults(table)
    quantizers = {}
    for name in COMPONENTS:
        if name not in table:
            raise ConfigError(f"quant.{name}: missing; every component needs a format "
                              f"(components: {', '.join(COMPONENTS)})")
        sub = expect_table(table[name], f"quant.{name}")
        if name == "abar":
            sub, abar_polar = _abar_form(sub)
        quantizers[name] = quantizer_field(sub, f"quant.{name}", defaults)
    state_int_bits = _state_int_bits(table["state"].get("int_bits"), model, quantizers["state"].format)
    accs = {name: accumulator_field(table.get(name), f"quant.{name}", defaults)
            for name in ACCUMULATORS}
    stability = choice_field(table, "abar_stability", where, STABILITY_MODES, "correct")
    if abar_polar is not None and quantizers["abar"].format.int_bits < 1:
        raise ConfigError(f"quant.abar.format: the polar form decodes |Abar| < 1 into it, so it "
                          f"needs I >= 1 integer bits, not {quantizers['abar'].format}")
    return QuantConfig(**quantizers, state_int_bits=state_int_bits, abar_stability=stability,
                       abar_polar=abar_polar, **accs)


def _abar_form(table):
    """Split ``quant.abar``'s form keys off its quantizer keys -> (quantizer table, AbarPolar or
    None)."""
    where = "quant.abar"
    form = choice_field(table, "form", where, ABAR_FORMS, "cartesian")
    rest = {k: v for k, v in table.items() if k not in ("form", "rho_bits", "theta_bits")}
    if form == "cartesian":
        for key in ("rho_bits", "theta_bits"):
            if key in table:
                raise ConfigError(f"{where}.{key}: applies to form = \"polar\" only")
        return rest, None
    return rest, AbarPolar(int_field(table, "rho_bits", where, lo=1, hi=MAX_POLAR_BITS),
                           int_field(table, "theta_bits", where, lo=MIN_THETA_BITS,
                                     hi=MAX_POLAR_BITS))


def _hardware(table, model) -> HardwareConfig:
    where = "hardware"
    reject_unknown(table, ("lanes", "complex_multipliers", "loop_stages", "storage",
                           "dsp_products", "fold_layers"), where)
    lanes = int_field(table, "lanes", where, lo=1, hi=model.states, default=model.states)
    if model.states % lanes:
        divisors = [d for d in range(1, model.states + 1) if model.states % d == 0]
        raise ConfigError(f"hardware.lanes: must divide the state count {model.states}, not "
                          f"{lanes}; allowed: {', '.join(map(str, divisors))}")
    mults = table.get("complex_multipliers", 3)
    if isinstance(mults, bool) or not isinstance(mults, int) or mults not in (3, 4):
        raise ConfigError(f"hardware.complex_multipliers: must be 3 or 4, not {mults!r}")
    # A state is read again G = P / lanes cycles after it was read, so its update may take up to
    # G cycles (registers): beyond 7 there is nothing left in the loop worth splitting.
    most = min(model.states // lanes, MAX_LOOP_STAGES)
    stages = table.get("loop_stages", "auto")
    if stages == "auto":
        stages = most
    elif isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= most:
        raise ConfigError(f"hardware.loop_stages: must be \"auto\" or an integer 1..{most} "
                          f"(at most min(P / lanes, {MAX_LOOP_STAGES}) = min({model.states // lanes}, "
                          f"{MAX_LOOP_STAGES})), not {stages!r}")
    storage = choice_field(table, "storage", where, STORAGE_CHOICES, default="auto")
    groups = model.states // lanes
    if storage == "auto":
        storage = "memory" if groups >= MIN_MEMORY_GROUPS else "registers"
    elif storage == "memory" and groups == 1:
        storage = "registers"       # nothing to fold: one word per memory would be all it held
    dsp = table.get("dsp_products", "all")
    if dsp != "all" and (isinstance(dsp, bool) or not isinstance(dsp, int) or dsp < 0):
        raise ConfigError(f"hardware.dsp_products: must be \"all\" or an integer >= 0 (the most "
                          f"products left to DSP blocks), not {dsp!r}")
    fold = table.get("fold_layers", False)
    if not isinstance(fold, bool):
        raise ConfigError(f"hardware.fold_layers: must be true or false, not {fold!r}")
    return HardwareConfig(lanes, mults, stages, storage, None if dsp == "all" else dsp, fold)


def _weights(table, base_dir) -> WeightsSource:
    where = "weights"
    source = choice_field(table, "source", where, ("random", "file"))
    if source == "random":
        reject_unknown(table, ("source", "seed", "dt_min", "dt_max"), where)
        seed = int_field(table, "seed", where, lo=0, default=0)
        dt = []
        for key, default in (("dt_min", 0.01), ("dt_max", 0.1)):
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value <= 0:
                raise ConfigError(f"weights.{key}: must be a positive number, not {value!r}")
            dt.append(float(value))
        if dt[0] > dt[1]:
            raise ConfigError(f"weights.dt_min: {dt[0]} must not exceed weights.dt_max {dt[1]}")
        return WeightsSource("random", seed=seed, dt_min=dt[0], dt_max=dt[1])
    reject_unknown(table, ("source", "file"), where)
    if not isinstance(table.get("file"), str):
        raise ConfigError("weights.file: missing (path of a .npz, relative to the config file)")
    return WeightsSource("file", path=(base_dir / table["file"]))


def parse_config(data: dict, *, base_dir: Path | str = ".", default_name: str = "ssm") -> SSMConfig:
    """Validate a config already read into a dict (TOML structure)."""
    expect_table(data, "config")
    reject_unknown(data, ("name", "model", "weights", "quant", "hardware", "network"), "config")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"name: must be an identifier (letters, digits, _), not {name!r}")
    for section in ("model", "weights", "quant"):
        if section not in data:
            raise ConfigError(f"[{section}]: missing section")
    model = _model(expect_table(data["model"], "model"))
    quant = _quant(expect_table(data["quant"], "quant"), model)
    hardware = _hardware(expect_table(data.get("hardware", {}), "hardware"), model)
    weights = _weights(expect_table(data["weights"], "weights"), Path(base_dir))
    network, layer_quants = None, ()
    if "network" in data:   # a whole model around the layer: see network_config.py
        network = parse_network(data["network"], states=model.states,
                                state_width=quant.state.format.width,
                                defaults=_defaults(data["quant"]))
        layer_quants = tuple(_layer_quant(data["quant"], overrides, index, model)
                             for index, overrides in enumerate(network.layer_quant))
    if hardware.fold_layers:
        _check_fold_layers(model, hardware, network, layer_quants)
    return SSMConfig(name, model, quant, hardware, weights, source=data, network=network,
                     layer_quants=layer_quants)


def _check_fold_layers(model: ModelShape, hardware: HardwareConfig, network, layer_quants):
    """``hardware.fold_layers``: one S4D datapath with a serial readout (memory storage, lanes
    dividing the modes per channel) serves every layer, so the layers must share its formats."""
    where = "hardware.fold_layers"
    if network is None:
        raise ConfigError(f"{where}: folds the layers of a network; this config has no [network]")
    if model.kind != "s4d":
        raise ConfigError(f"{where}: needs model.kind = \"s4d\" (one readout per channel), not "
                          f"{model.kind!r}")
    if hardware.storage != "memory":
        raise ConfigError(f"{where}: needs hardware.storage = \"memory\" (the layers' states and "
                          f"weights share block RAM), here {hardware.storage!r}")
    modes = model.modes_per_channel
    if modes % hardware.lanes:
        raise ConfigError(f"{where}: needs hardware.lanes dividing the {modes} modes per "
                          f"channel (a serial readout), not {hardware.lanes}")
    if network.layers != 2:
        raise ConfigError(f"{where}: folds exactly 2 layers today, not network.layers = "
                          f"{network.layers}")
    # a layer-0 beat's result must be back, through the layer (G + L + 7 cycles) and the serial
    # mixing unit (fold + 2 to its last word: H outputs of ceil(H / K) chunks,
    # hw/datapath/serial_linear.py) and counted complete (1), by its layer-1 turn 3 G after it
    # entered
    groups, H = model.states // hardware.lanes, model.channels
    per_output = groups // H
    fold = H * -(-H // -(-H // per_output))
    ready = groups + hardware.loop_stages + 7 + fold + 2 + 1
    if ready > 3 * groups:
        raise ConfigError(f"{where}: a layer-1 beat would be ready {ready} cycles after its "
                          f"layer-0 beat, later than its turn 3 x P / lanes = {3 * groups}; use "
                          f"fewer lanes or fewer loop_stages")
    for index, quant in enumerate(layer_quants):
        if quant is not None:
            raise ConfigError(f"{where}: the layers share one datapath and its formats; "
                              f"network.layer_quant.{index} gives layer {index} its own")


def _layer_quant(quant_table: dict, overrides: dict, index: int, model: ModelShape):
    """One network layer's QuantConfig: its ``[network.layer_quant.<index>]`` tables merged
    over ``[quant.*]`` (a table replaces the keys it gives), or None without overrides."""
    if not overrides:
        return None
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in quant_table.items()}
    for name, table in overrides.items():
        base = merged.get(name, {})
        if name == "abar" and "form" in table:          # a new form: none of the old form's keys
            base = {k: v for k, v in base.items() if k not in ("form", "rho_bits", "theta_bits")}
        merged[name] = {**base, **table}
    try:
        return _quant(merged, model)
    except ConfigError as exc:
        raise ConfigError(f"network.layer_quant.{index}: {exc}") from None


def load_config(path) -> SSMConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, base_dir=path.parent, default_name=_identifier(path.stem))


def _identifier(stem: str) -> str:
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in stem)
    return name if name.isidentifier() else f"ssm_{name}"
