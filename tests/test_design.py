"""``Design``: one object for a single layer and a whole network (the Python API), the model
hash, and the files a design writes."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from test_network_hw import CASES, SEED, build_network, random_inputs

from ssmgen.design import Design
from ssmgen.spec.config import HardwareConfig, parse_config

ROOT = Path(__file__).resolve().parent.parent

LAYER = {"name": "hashed", "model": {"kind": "s5", "channels": 2, "states": 8},
         "weights": {"source": "random", "seed": 3},
         "quant": {"defaults": {"rounding": "half_even", "overflow": "saturate"},
                   "abar": {"format": "fixed<10,1>"}, "bbar": {"format": "fixed<8,0>"},
                   "c": {"format": "fixed<8,0>"}, "d": {"format": "fixed<8,2>"},
                   "input": {"format": "fixed<8,3>"}, "state": {"format": "fixed<12,5>"},
                   "output": {"format": "fixed<12,5>"}},
         "hardware": {"lanes": 2, "complex_multipliers": 3, "loop_stages": 2}}
#: Another legal value of every [hardware] field of LAYER (lanes 2 -> 4 keeps loop_stages 2 legal).
OTHER_HARDWARE = {"lanes": 4, "complex_multipliers": 4, "loop_stages": 3, "storage": "memory",
                  "dsp_products": 3}


def _design(data) -> Design:
    return Design.from_config(parse_config(data))


def test_hash_covers_every_hardware_field():
    """Latency depends on every hardware option: two designs that differ in any one of them must
    not identify as the same model (a board's IDENTIFY carries the hash)."""
    # (fold_layers needs a network: tests/test_network.py::test_fold_layers_changes_the_hash_...)
    assert set(OTHER_HARDWARE) | {"fold_layers"} == {f.name for f in
                                                     dataclasses.fields(HardwareConfig)}
    base = _design(LAYER)
    for field, value in OTHER_HARDWARE.items():
        changed = copy.deepcopy(LAYER)
        changed["hardware"][field] = value
        other = _design(changed)
        assert other.hash != base.hash, field
        assert other.manifest["model_hash"] == other.hash
    renamed = dict(copy.deepcopy(LAYER), name="other_name")      # the name is not behaviour
    assert _design(renamed).hash == base.hash


def test_hash_covers_formats_and_weights():
    base = _design(LAYER).hash
    for path, value in ((("quant", "state", "format"), "fixed<12,4>"),
                        (("quant", "output", "rounding"), "floor"),
                        (("weights", "seed"), 4)):
        changed = copy.deepcopy(LAYER)
        table = changed
        for key in path[:-1]:
            table = table[key]
        table[path[-1]] = value
        assert _design(changed).hash != base, path


@pytest.mark.parametrize("kind", ["layer", "network"])
def test_figures_are_the_components_and_the_manifests(kind, tmp_path):
    design = (_design(LAYER) if kind == "layer"
              else Design.from_quantized(build_network(CASES[2], SEED)))
    assert design.kind == kind
    files = design.generate(tmp_path)
    manifest = json.loads(files.manifest_path.read_text())
    assert manifest == design.manifest and manifest["kind"] == kind
    component = design.component()
    hw = manifest["hardware"]
    assert (hw["cycles_per_timestep"], hw["latency_cycles"], hw["lanes"], hw["loop_stages"]) == \
        (design.cycles_per_timestep, design.latency, design.lanes, design.loop_stages) == \
        (component.cycles_per_timestep, component.latency, component.lanes, component.loop_stages)
    assert manifest["stream"] == {"input_beat": "timestep",
                                  "output_beat": "timestep" if kind == "layer" else "sequence"}
    assert files.verilog_path.read_text() == design.verilog()


def test_layer_payload_fields_are_named_alike():
    fields = _design(LAYER).manifest["ports"]
    assert [f["name"] for f in fields["u__payload"]["fields"]] == ["data[0]", "data[1]", "start"]
    assert [f["name"] for f in fields["y__payload"]["fields"]] == ["data[0]", "data[1]"]


def test_beats_round_trip_to_the_golden_outputs():
    layer = _design(LAYER)
    u = np.random.default_rng(1).integers(-128, 128, (2, 5, 2))
    beats = layer.input_beats(u)
    assert beats.shape == (2, 5, 3) and beats[:, 0, 2].tolist() == [1, 1]
    assert beats[:, 1:, 2].sum() == 0
    np.testing.assert_array_equal(layer.outputs_from_beats(layer.reference_beats(u)),
                                  layer.reference(u))
    network = Design.from_quantized(build_network(CASES[1], SEED))
    u = random_inputs(network.quantized, 3, SEED)
    beats = network.input_beats(u)
    assert beats[:, 0, -2].tolist() == [1] * 3 and beats[:, -1, -1].tolist() == [1] * 3
    ref = network.reference_beats(u)
    assert ref.shape == (3, 1, network.quantized.network.classes + 1)
    np.testing.assert_array_equal(network.outputs_from_beats(ref), network.reference(u))


@pytest.mark.parametrize("bad,message", [
    (np.zeros((2, 5, 3)), r"shape \(batch, time, 2\)"),
    (np.zeros((0, 5, 2)), "batch, time >= 1"),
    (np.full((1, 3, 2), np.nan), "NaN or infinite"),
])
def test_bad_inputs_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        _design(LAYER).run(bad)


def test_integer_inputs_must_fit_the_input_format():
    design = _design(LAYER)
    with pytest.raises(ValueError, match=r"-128\.\.127"):
        design.reference_beats(design.check_input(np.full((1, 2, 2), 300), integer=True))


def test_generated_files_follow_the_umask(tmp_path):
    """Verilog and manifest get the mode any tool would give (0666 minus the umask), not the
    temporary file's private 0600."""
    old = os.umask(0o022)
    try:
        files = _design(LAYER).generate(tmp_path)
    finally:
        os.umask(old)
    for path in (files.verilog_path, files.manifest_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_run_engines_agree_where_they_must():
    design = Design.load(ROOT / "examples" / "s5_small.toml")
    u = np.random.default_rng(5).normal(0, 1, (2, 20, design.input_channels))
    golden = design.run(u, "golden")
    float_ = design.run(u, "float")
    assert golden.shape == float_.shape == (2, 20, design.input_channels)
    np.testing.assert_array_equal(golden, design.dequantize_output(
        design.reference(design.quantize_input(u))))
    assert np.abs(golden - float_).max() < 0.5       # quantized, not garbage
    with pytest.raises(ValueError, match="engine must be one of float, golden, rtl"):
        design.run(u, "spice")
