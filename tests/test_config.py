"""Config validation (ssmgen/spec/config.py) and weights-file validation through ``load_model``.

Every rejected config must raise ConfigError (weights files: WeightsError) whose message names the
offending field and what is allowed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest

from ssmgen.golden.discretize import random_weights
from ssmgen.golden.quantize import load_model
from ssmgen.spec.config import COMPONENTS, MIN_MEMORY_GROUPS, load_config, parse_config
from ssmgen.spec.errors import ConfigError, WeightsError
from ssmgen.spec.formats import FixedFormat, Overflow, Rounding
from ssmgen.spec.weights import save_npz

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROUNDING_CHOICES = "floor, half_up, half_even, toward_zero"
OVERFLOW_CHOICES = "wrap, saturate"


def valid(kind="s5"):
    """A minimal valid config dict (TOML structure)."""
    model = ({"kind": "s5", "channels": 2, "states": 8} if kind == "s5"
             else {"kind": "s4d", "channels": 2, "state_size": 8})
    return {
        "name": "t",
        "model": model,
        "weights": {"source": "random", "seed": 1},
        "quant": {
            "defaults": {"rounding": "half_even", "overflow": "saturate"},
            "abar": {"format": "fixed<12,1>"}, "bbar": {"format": "fixed<10,0>"},
            "c": {"format": "fixed<10,1>"}, "d": {"format": "fixed<8,2>"},
            "input": {"format": "fixed<8,3>"}, "state": {"format": "fixed<16,4>"},
            "output": {"format": "fixed<12,4>"},
        },
        "hardware": {"lanes": 4, "complex_multipliers": 3},
    }


def with_(data, path, value):
    """Copy of ``data`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    table = data
    for key in parents:
        table = table.setdefault(key, {})
    if value is ...:
        del table[last]
    else:
        table[last] = value
    return data


def rejects(data, *fragments, exc=ConfigError):
    """parse_config(data) raises ``exc`` whose message contains every fragment (literally)."""
    with pytest.raises(exc) as info:
        parse_config(data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- the examples ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kind, H, P, lanes", [
    ("s4d_small", "s4d", 4, 16, 4), ("s5_small", "s5", 4, 8, 8), ("s5_aggressive", "s5", 2, 8, 2),
    ("s4d_up5k", "s4d", 2, 4, 1)])
def test_examples_load(name, kind, H, P, lanes):
    config = load_config(EXAMPLES / f"{name}.toml")
    assert config.name == name
    assert (config.model.kind, config.model.channels, config.model.states) == (kind, H, P)
    assert config.hardware.lanes == lanes
    assert config.cycles_per_timestep == P // lanes
    model = load_model(config)
    assert model.states == P and len(model.state_int_bits) == P


def test_example_details():
    aggressive = load_config(EXAMPLES / "s5_aggressive.toml")
    q = aggressive.quant
    assert q.abar.format == FixedFormat(4, 1) and q.abar.rounding is Rounding.HALF_EVEN
    assert q.bbar.rounding is Rounding.FLOOR and q.bbar.overflow is Overflow.SATURATE   # defaults
    assert q.state.rounding is Rounding.TOWARD_ZERO
    assert q.state_int_bits == (3, 3, 2, 2, 3, 3, 2, 2)
    assert q.state_acc.format == FixedFormat(10, 4) and q.state_acc.overflow is Overflow.WRAP
    assert q.output_acc.overflow is Overflow.SATURATE and q.output_acc.rounding is Rounding.FLOOR
    assert aggressive.hardware.complex_multipliers == 4
    small = load_config(EXAMPLES / "s4d_small.toml")
    assert small.quant.state_int_bits == "auto"
    assert small.quant.state_acc is None and small.quant.output_acc is None
    s5 = load_config(EXAMPLES / "s5_small.toml")
    assert s5.quant.state_int_bits is None and s5.quant.abar_stability == "correct"


def test_defaults_and_name():
    data = with_(valid(), "hardware", ...)
    data = with_(data, "name", ...)
    config = parse_config(data, default_name="layer0")
    assert config.name == "layer0"
    assert config.hardware.lanes == 8 and config.hardware.complex_multipliers == 3
    assert config.quant.state_acc is None and config.quant.abar_stability == "correct"
    assert config.weights.dt_min == 0.01 and config.weights.dt_max == 0.1
    assert load_config(EXAMPLES / "s5_small.toml") == load_config(str(EXAMPLES / "s5_small.toml"))


def test_name_from_file_stem(tmp_path):
    text = (EXAMPLES / "s5_small.toml").read_text().replace('name = "s5_small"', "")
    path = tmp_path / "my-layer.v2.toml"
    path.write_text(text)
    assert load_config(path).name == "my_layer_v2"
    path = tmp_path / "3x.toml"
    path.write_text(text)
    assert load_config(path).name == "ssm_3x"


# --- formats ------------------------------------------------------------------------------------

@pytest.mark.parametrize("component", [*COMPONENTS, "state_acc", "output_acc"])
@pytest.mark.parametrize("text, fragments", [
    ("fixed<1,1>", ["W must be in 2..24", "not 1"]),
    ("fixed<0,0>", ["W must be in 2..24"]),
    ("fixed<25,1>", ["W must be in 2..24", "not 25"]),
    ("fixed<64,8>", ["W must be in 2..24"]),
    ("fixed<8,9>", ["I must be in -24..W=8", "not 9"]),
    ("fixed<8,-25>", ["I must be in -24..W=8", "not -25"]),
    ("fixed<8>", ["fixed<W,I>", "'fixed<8>'"]),
    ("fixed<8,1", ["fixed<W,I>"]),
    ("ufixed<8,1>", ["fixed<W,I>"]),
    ("fixed<8.5,1>", ["fixed<W,I>"]),
    ("8,1", ["fixed<W,I>"]),
    ("", ["fixed<W,I>"]),
    (8, ["fixed<8,1>", "not 8"]),
    (["fixed<8,1>"], ["fixed<8,1>"]),
])
def test_bad_formats(component, text, fragments):
    rejects(with_(valid(), f"quant.{component}.format", text), f"quant.{component}.format:",
            *fragments)


def test_extreme_formats_are_accepted():
    for text in ("fixed<2,2>", "fixed<24,24>", "fixed<24,-24>", "fixed<2,-24>", " fixed < 8 , -2 > "):
        assert parse_config(with_(valid(), "quant.c.format", text)).quant.c.format == FixedFormat.parse(text)


@pytest.mark.parametrize("where", ["quant.state", "quant.output", "quant.abar", "quant.input",
                                   "quant.state_acc", "quant.output_acc"])
def test_unknown_rounding_and_overflow(where):
    data = with_(valid(), f"{where}.format", "fixed<16,4>")
    rejects(with_(data, f"{where}.rounding", "round"), f"{where}.rounding", "'round'",
            f"allowed: {ROUNDING_CHOICES}")
    rejects(with_(data, f"{where}.rounding", "HALF_EVEN"), f"{where}.rounding", ROUNDING_CHOICES)
    rejects(with_(data, f"{where}.overflow", "clip"), f"{where}.overflow", "'clip'",
            f"allowed: {OVERFLOW_CHOICES}")
    rejects(with_(data, f"{where}.overflow", 1), f"{where}.overflow", OVERFLOW_CHOICES)


def test_bad_defaults_name_quant_defaults():
    rejects(with_(valid(), "quant.defaults.rounding", "nearest"), "quant.defaults.rounding",
            "'nearest'", ROUNDING_CHOICES)
    rejects(with_(valid(), "quant.defaults.overflow", "clamp"), "quant.defaults.overflow",
            "'clamp'", OVERFLOW_CHOICES)
    rejects(with_(valid(), "quant.defaults.format", "fixed<8,1>"), "quant.defaults",
            "unknown key(s) format", "allowed: overflow, rounding")
    rejects(with_(valid(), "quant.defaults", "half_even"), "quant.defaults", "expected a table")


def test_missing_rounding_without_defaults():
    data = with_(valid(), "quant.defaults", ...)
    rejects(data, "quant.abar.rounding: missing", ROUNDING_CHOICES)
    data = with_(data, "quant.defaults", {"rounding": "floor"})
    rejects(data, "quant.abar.overflow: missing", OVERFLOW_CHOICES)


def test_per_component_modes_override_defaults():
    data = with_(valid(), "quant.state.rounding", "toward_zero")
    data = with_(data, "quant.state.overflow", "wrap")
    q = parse_config(data).quant
    assert (q.state.rounding, q.state.overflow) == (Rounding.TOWARD_ZERO, Overflow.WRAP)
    assert (q.abar.rounding, q.abar.overflow) == (Rounding.HALF_EVEN, Overflow.SATURATE)


# --- model shape and hardware -------------------------------------------------------------------

def test_lanes_must_divide_the_state_count():
    rejects(with_(valid(), "hardware.lanes", 3), "hardware.lanes", "state count 8", "not 3",
            "allowed: 1, 2, 4, 8")
    data = with_(with_(valid(), "model.states", 12), "hardware.lanes", 5)
    rejects(data, "hardware.lanes", "allowed: 1, 2, 3, 4, 6, 12")
    s4d = with_(with_(valid("s4d"), "model.channels", 3), "hardware.lanes", 5)    # 3 * 4 = 12 states
    rejects(s4d, "hardware.lanes", "state count 12", "not 5", "allowed: 1, 2, 3, 4, 6, 12")
    rejects(with_(valid(), "hardware.lanes", 16), "hardware.lanes", "16", "allowed 1..8")
    rejects(with_(valid(), "hardware.lanes", 0), "hardware.lanes", "allowed 1..8")
    rejects(with_(valid(), "hardware.lanes", 2.0), "hardware.lanes", "must be an integer")
    rejects(with_(valid(), "hardware.lanes", True), "hardware.lanes", "must be an integer")
    for lanes in (1, 2, 4, 8):
        assert parse_config(with_(valid(), "hardware.lanes", lanes)).cycles_per_timestep == 8 // lanes


def test_loop_stages_auto_and_bounds():
    """The state-update loop may take up to G = P / lanes cycles (and at most 7 registers)."""
    for lanes, auto in ((1, 7), (2, 4), (4, 2), (8, 1)):
        config = parse_config(with_(valid(), "hardware.lanes", lanes))
        assert config.hardware.loop_stages == auto
    assert parse_config(with_(with_(valid(), "hardware.lanes", 2), "hardware.loop_stages", 1)
                        ).hardware.loop_stages == 1
    rejects(with_(with_(valid(), "hardware.lanes", 2), "hardware.loop_stages", 5),
            "hardware.loop_stages", "1..4", "not 5")
    rejects(with_(valid(), "hardware.loop_stages", 0), "hardware.loop_stages", "not 0")
    rejects(with_(valid(), "hardware.loop_stages", "max"), "hardware.loop_stages", "\"auto\"")
    rejects(with_(valid(), "hardware.loop_stages", True), "hardware.loop_stages")


def test_storage_auto_and_choices():
    """auto: block RAM from G = MIN_MEMORY_GROUPS groups on; a fully parallel layer has nothing to
    put in memory."""
    wide = with_(valid(), "model.states", 2 * MIN_MEMORY_GROUPS)
    assert parse_config(with_(wide, "hardware.lanes", 1)).hardware.storage == "memory"
    assert parse_config(with_(wide, "hardware.lanes", 4)).hardware.storage == "registers"
    assert parse_config(with_(with_(wide, "hardware.lanes", 4), "hardware.storage", "memory")
                        ).hardware.storage == "memory"
    assert parse_config(with_(with_(wide, "hardware.lanes", 1), "hardware.storage", "registers")
                        ).hardware.storage == "registers"
    assert parse_config(with_(with_(valid(), "hardware.lanes", 8), "hardware.storage", "memory")
                        ).hardware.storage == \
        "registers"                                                   # lanes = P: G = 1
    rejects(with_(valid(), "hardware.storage", "bram"), "hardware.storage", "'bram' is not allowed",
            "allowed: auto, memory, registers")


def test_dsp_products():
    assert parse_config(valid()).hardware.dsp_products is None
    assert parse_config(with_(valid(), "hardware.dsp_products", "all")).hardware.dsp_products is None
    assert parse_config(with_(valid(), "hardware.dsp_products", 0)).hardware.dsp_products == 0
    for bad in (-1, 2.5, True, "8"):
        rejects(with_(valid(), "hardware.dsp_products", bad), "hardware.dsp_products",
                "\"all\" or an integer >= 0", f"not {bad!r}")


@pytest.mark.parametrize("value", [2, 5, 0, True, 3.0, "3"])
def test_complex_multipliers(value):
    rejects(with_(valid(), "hardware.complex_multipliers", value), "hardware.complex_multipliers",
            "must be 3 or 4")


def test_s4d_state_size():
    rejects(with_(valid("s4d"), "model.state_size", 7), "model.state_size", "must be even", "7")
    rejects(with_(valid("s4d"), "model.state_size", 0), "model.state_size", "allowed 2..4096")
    rejects(with_(valid("s4d"), "model.state_size", ...), "model.state_size: missing", "2..4096")
    config = parse_config(with_(with_(valid("s4d"), "model.state_size", 6), "hardware", ...))
    assert config.model.states == 2 * 3 and config.model.modes_per_channel == 3


def test_states_and_state_size_belong_to_their_kind():
    rejects(with_(valid("s4d"), "model.states", 8), "model.states", "is for s5", "model.state_size")
    rejects(with_(valid("s5"), "model.state_size", 8), "model.state_size", "is for s4d",
            "model.states")
    rejects(with_(valid("s5"), "model.states", ...), "model.states: missing", "1..65536")
    rejects(with_(valid("s5"), "model.states", 0), "model.states", "allowed 1..65536")


@pytest.mark.parametrize("path, value, fragments", [
    ("model.kind", "s6", ["model.kind", "'s6'", "allowed: s4d, s5"]),
    ("model.kind", ..., ["model.kind: missing", "s4d, s5"]),
    ("model.channels", 0, ["model.channels", "allowed 1..4096"]),
    ("model.channels", 5000, ["model.channels", "allowed 1..4096"]),
    ("model.channels", "4", ["model.channels", "must be an integer"]),
    ("model.channels", ..., ["model.channels: missing", "1..4096"]),
    ("name", "my layer", ["name:", "identifier"]),
    ("name", 3, ["name:", "identifier"]),
    ("quant.abar_stability", "clip", ["quant.abar_stability", "allowed: correct, reject"]),
    ("weights.source", "url", ["weights.source", "allowed: random, file"]),
    ("weights.source", ..., ["weights.source: missing", "random, file"]),
    ("weights.seed", -1, ["weights.seed", ">= 0"]),
    ("weights.seed", 1.5, ["weights.seed", "must be an integer"]),
    ("weights.dt_min", 0, ["weights.dt_min", "positive number"]),
    ("weights.dt_max", float("nan"), ["weights.dt_max", "positive number"]),
    ("weights.dt_max", "0.1", ["weights.dt_max", "positive number"]),
    ("weights.dt_min", 0.5, ["weights.dt_min", "must not exceed weights.dt_max"]),
])
def test_model_and_weights_fields(path, value, fragments):
    rejects(with_(valid(), path, value), *fragments)


# --- unknown keys, missing sections and components, wrong table types ---------------------------

@pytest.mark.parametrize("path, fragments", [
    ("colour", ["config: unknown key(s) colour", "allowed: hardware, model, name, network, quant, weights"]),
    ("model.depth", ["model: unknown key(s) depth", "allowed: channels, kind, state_size, states"]),
    ("weights.file", ["weights: unknown key(s) file", "allowed: dt_max, dt_min, seed, source"]),
    ("quant.gamma", ["quant: unknown key(s) gamma", "abar", "state_acc", "abar_stability"]),
    ("quant.abar.sign", ["quant.abar: unknown key(s) sign", "allowed: format, int_bits, overflow, rounding"]),
    ("quant.state.frac_bits", ["quant.state: unknown key(s) frac_bits"]),
    ("hardware.dsp", ["hardware: unknown key(s) dsp", "allowed: complex_multipliers, dsp_products, fold_layers, lanes"]),
])
def test_unknown_keys(path, fragments):
    rejects(with_(valid(), path, 1), *fragments)


def test_unknown_keys_in_accumulators():
    rejects(with_(valid(), "quant.state_acc", {"format": "full", "rounding": "floor"}),
            "quant.state_acc: unknown key(s) rounding", "allowed: format")
    rejects(with_(valid(), "quant.output_acc", {"format": "fixed<20,6>", "width": 3}),
            "quant.output_acc: unknown key(s) width")
    rejects(with_(valid(), "quant.output_acc", {"format": "fixed<20,6>", "int_bits": [1]}),
            "quant.output_acc.int_bits", "only for the state")
    rejects(with_(valid(), "quant.abar.int_bits", "auto"), "quant.abar.int_bits", "only for the state")
    rejects(with_(valid(), "weights", {"source": "file", "file": "w.npz", "seed": 3}),
            "weights: unknown key(s) seed", "allowed: file, source")
    q = parse_config(with_(valid(), "quant.output_acc", {"format": "fixed<20,6>"})).quant
    assert q.output_acc.format == FixedFormat(20, 6) and q.output_acc.rounding is Rounding.HALF_EVEN


@pytest.mark.parametrize("section", ["model", "weights", "quant"])
def test_missing_sections(section):
    rejects(with_(valid(), section, ...), f"[{section}]: missing section")


@pytest.mark.parametrize("component", COMPONENTS)
def test_missing_components(component):
    rejects(with_(valid(), f"quant.{component}", ...), f"quant.{component}: missing",
            "components: abar, bbar, c, d, input, state, output")
    rejects(with_(valid(), f"quant.{component}.format", ...), f"quant.{component}.format: missing")


@pytest.mark.parametrize("path, value", [("model", "s5"), ("quant.abar", "fixed<8,1>"),
                                         ("hardware", 4), ("weights", ["random"]),
                                         ("quant.state_acc", "full")])
def test_sections_must_be_tables(path, value):
    where = "model" if path == "model" else path
    rejects(with_(valid(), path, value), f"{where}: expected a table")


def test_config_must_be_a_table():
    with pytest.raises(ConfigError, match="config: expected a table"):
        parse_config(["model"])


# --- per-mode state integer bits ----------------------------------------------------------------

def test_int_bits_lists():
    ok = parse_config(with_(valid(), "quant.state.int_bits", [4, 3, 2, 1, 0, -1, -24, 16]))
    assert ok.quant.state_int_bits == (4, 3, 2, 1, 0, -1, -24, 16)
    assert parse_config(with_(valid(), "quant.state.int_bits", "auto")).quant.state_int_bits == "auto"
    rejects(with_(valid(), "quant.state.int_bits", [4, 4, 4]), "quant.state.int_bits",
            "one entry per state (8)", "not 3")
    rejects(with_(valid(), "quant.state.int_bits", []), "quant.state.int_bits", "(8), not 0")
    s4d = with_(valid("s4d"), "quant.state.int_bits", [4] * 4)      # s4d: H * N/2 = 8 states
    rejects(s4d, "quant.state.int_bits", "one entry per state (8)", "not 4")
    for bad, shown in ((1.5, "1.5"), ("4", "'4'"), (True, "True"), (None, "None")):
        values = [4] * 8
        values[5] = bad
        rejects(with_(valid(), "quant.state.int_bits", values), "quant.state.int_bits[5]",
                "must be an integer", shown)
    rejects(with_(valid(), "quant.state.int_bits", [4] * 7 + [17]), "quant.state.int_bits[7]",
            "I must be in -24..W=16", "17")
    rejects(with_(valid(), "quant.state.int_bits", [4] * 7 + [-25]), "quant.state.int_bits[7]",
            "-24..W=16")
    for bad in ("Auto", "none", 4, {"p": 1}):
        rejects(with_(valid(), "quant.state.int_bits", bad), "quant.state.int_bits",
                "\"auto\" or a list of 8 integers")


# --- TOML files ---------------------------------------------------------------------------------

def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[model]\nkind = "s5\nchannels = 2\n')
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": not valid TOML"):
        load_config(path)
    path.write_text("[model]\n[model]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_nonexistent_config(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": cannot read config"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path)                                   # a directory


def test_errors_from_a_toml_file(tmp_path):
    text = (EXAMPLES / "s5_small.toml").read_text().replace("lanes = 8", "lanes = 3")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"hardware\.lanes: .*allowed: 1, 2, 4, 8"):
        load_config(path)


# --- weights files ------------------------------------------------------------------------------

def file_config(tmp_path, kind="s5", file="w.npz", **quant):
    data = valid(kind)
    data["weights"] = {"source": "file", "file": file}
    for name, value in quant.items():
        data["quant"][name] = value
    return parse_config(data, base_dir=tmp_path)


def good_arrays(kind="s5", seed=4):
    states = 8
    return random_weights(kind, channels=2, states=states, seed=seed).file_arrays()


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_weights_file_round_trip(tmp_path, kind):
    weights = random_weights(kind, channels=2, states=8, seed=4)
    save_npz(tmp_path / "w.npz", weights)
    config = file_config(tmp_path, kind)
    assert config.weights.path == tmp_path / "w.npz"
    model = load_model(config)
    np.testing.assert_array_equal(model.float_weights.abar, weights.abar)
    np.testing.assert_array_equal(model.float_weights.c, weights.c)
    # relative to the config file when loaded from TOML
    toml = tmp_path / "sub" / "layer.toml"
    toml.parent.mkdir()
    save_npz(toml.parent / "w2.npz", weights)
    text = (EXAMPLES / ("s4d_small.toml" if kind == "s4d" else "s5_small.toml")).read_text()
    text = re.sub(r'source = "random"\nseed = \d+', 'source = "file"\nfile = "w2.npz"', text)
    text = re.sub(r"channels = \d+", "channels = 2", text)
    text = re.sub(r"\nstates = \d+", "\nstates = 8", text)
    text = re.sub(r"lanes = \d+", "lanes = 2", text)
    toml.write_text(text)
    loaded = load_config(toml)
    assert loaded.weights.path == toml.parent / "w2.npz"
    np.testing.assert_array_equal(load_model(loaded).float_weights.bbar, weights.bbar)


def test_weights_file_missing(tmp_path):
    with pytest.raises(WeightsError, match=re.escape(str(tmp_path / "w.npz")) + ": cannot read weights"):
        load_model(file_config(tmp_path))
    data = with_(valid(), "weights", {"source": "file"})
    rejects(data, "weights.file: missing", ".npz")
    rejects(with_(data, "weights.file", 3), "weights.file: missing")


def test_weights_file_not_npz(tmp_path):
    (tmp_path / "w.npz").write_text("not a zip file")
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_model(file_config(tmp_path))


@pytest.mark.parametrize("kind", ["s4d", "s5"])
@pytest.mark.parametrize("key", ["Abar", "Bbar", "C", "D"])
def test_weights_file_wrong_shape(tmp_path, kind, key):
    arrays = good_arrays(kind)
    arrays[key] = np.concatenate([arrays[key], arrays[key][:1]])          # one row too many
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match=rf"{key} must have shape \("):
        load_model(file_config(tmp_path, kind))


def test_weights_file_for_another_model(tmp_path):
    save_npz(tmp_path / "w.npz", random_weights("s5", channels=3, states=8, seed=0))
    with pytest.raises(WeightsError, match=r"Bbar must have shape \(8, 2\) for s5 with H=2, states=8"):
        load_model(file_config(tmp_path, "s5"))


@pytest.mark.parametrize("key", ["Abar", "Bbar", "C", "D"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_weights_file_non_finite(tmp_path, key, bad):
    arrays = good_arrays()
    arrays[key] = arrays[key].copy()
    arrays[key].flat[1] = bad
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match=rf"{key} contains NaN or infinite"):
        load_model(file_config(tmp_path))


@pytest.mark.parametrize("missing", [["C"], ["Abar", "D"]])
def test_weights_file_missing_keys(tmp_path, missing):
    arrays = {k: v for k, v in good_arrays().items() if k not in missing}
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match=r"missing key\(s\) " + ", ".join(missing)):
        load_model(file_config(tmp_path))


@pytest.mark.parametrize("pole", [1.0, -1.0, 1j, 0.6 - 0.8j, (1.0 + 1e-12) * np.exp(0.3j), 3.0])
def test_weights_file_unstable(tmp_path, pole):
    arrays = good_arrays()
    arrays["Abar"] = arrays["Abar"].copy()
    arrays["Abar"][3] = pole
    assert abs(arrays["Abar"][3]) >= 1
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match=r"\|Abar\| must be < 1"):
        load_model(file_config(tmp_path))


def test_weights_file_complex_d(tmp_path):
    arrays = good_arrays()
    arrays["D"] = arrays["D"] + 0.5j
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match="D must be real"):
        load_model(file_config(tmp_path))


@pytest.mark.parametrize("component, key, value, fmt", [
    ("bbar", "Bbar", 0.75 + 0.1j, "fixed<10,0>"),          # range -0.5..0.499
    ("c", "C", 0.1 - 1.5j, "fixed<10,1>"),                 # range -1..0.998
    ("d", "D", 2.5, "fixed<8,2>"),                         # range -2..1.98
    ("abar", "Abar", 0.6 + 0.0j, "fixed<8,0>"),           # range -0.5..0.496
])
def test_weight_that_would_wrap(tmp_path, component, key, value, fmt):
    arrays = good_arrays()
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = value
    np.savez(tmp_path / "w.npz", **arrays)
    spec = {"format": fmt, "overflow": "wrap"}
    with pytest.raises(ConfigError, match=rf"quant\.{component}: weight {component}\[.*does not fit "
                                          rf"{re.escape(fmt)}.*overflow = \"wrap\""):
        load_model(file_config(tmp_path, **{component: spec}))
    # saturating instead clamps it (and counts it)
    spec["overflow"] = "saturate"
    model = load_model(file_config(tmp_path, **{component: spec}))
    assert model.saturated_weights >= 1
