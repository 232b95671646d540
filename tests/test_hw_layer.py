# amaranth: UnusedElaboratable=no
"""SSMLayer in Amaranth's own simulator: quick bit-exactness and flow-control checks that need
no Verilog build (the cocotb regression repeats them on the generated Verilog)."""

from __future__ import annotations

import numpy as np
import pytest
from regression_configs import REGRESSION
from stream_sim import stream_through
from test_rtl_regression import _model

from ssmgen.golden.integer_model import run_integer
from ssmgen.golden.quantize import load_model
from ssmgen.spec.config import load_config

EXAMPLES = ["examples/s4d_small.toml", "examples/s5_small.toml", "examples/s5_aggressive.toml",
            "examples/s4d_up5k.toml"]


def simulate_layer(model, u, *, seed, idle=0.0, stall=0.0):
    """Stream u (batch, time, H) through SSMLayer; returns outputs and per-beat cycle stamps."""
    from ssmgen.hw.datapath.ssm_layer import SSMLayer
    dut = SSMLayer(model)
    batch, steps, _ = u.shape

    def put(ctx, beat):
        b, t = beat
        ctx.set(dut.u.payload.data, [int(v) for v in u[b, t]])
        ctx.set(dut.u.payload.start, int(t == 0))

    got, in_cycles, out_cycles = stream_through(
        dut, dut.u, dut.y, [(b, t) for b in range(batch) for t in range(steps)], put=put,
        take=lambda payload: [int(v) for v in payload.data], expected=batch * steps, seed=seed,
        idle=idle, stall=stall, budget=batch * steps * (dut.groups + 2) * 8 + 100)
    return np.array(got).reshape(batch, steps, -1), in_cycles, out_cycles, dut


@pytest.mark.parametrize("path", EXAMPLES)
def test_examples_match_golden_with_stalls(path):
    model = load_model(load_config(path))
    fmt = model.config.quant.input.format
    seed = 11
    u = np.random.default_rng(seed).integers(fmt.min_int, fmt.max_int + 1, (2, 12, model.channels))
    got, _, _, _ = simulate_layer(model, u, seed=seed, idle=0.3, stall=0.4)
    np.testing.assert_array_equal(got, run_integer(model, u), err_msg=f"seed {seed}")


@pytest.mark.parametrize("cfg", [cfg for cfg, _ in REGRESSION[::3]], ids=lambda c: c["name"])
def test_regression_subset_matches_golden(cfg):
    model = _model(cfg)
    fmt = model.config.quant.input.format
    u = np.random.default_rng(3).integers(fmt.min_int, fmt.max_int + 1, (2, 10, model.channels))
    got, _, _, _ = simulate_layer(model, u, seed=3, idle=0.2, stall=0.2)
    np.testing.assert_array_equal(got, run_integer(model, u), err_msg="seed 3")


@pytest.mark.parametrize("path", EXAMPLES)
def test_throughput_and_latency_match_properties(path):
    """Without stalls, outputs come every cycles_per_timestep cycles, latency cycles after their
    input was accepted; the properties (not a hard-coded depth) say what to expect."""
    model = load_model(load_config(path))
    u = np.zeros((1, 8, model.channels), dtype=np.int64)
    _, in_cycles, out_cycles, dut = simulate_layer(model, u, seed=0)
    assert dut.cycles_per_timestep == model.states // model.config.hardware.lanes
    assert np.all(np.diff(out_cycles) == dut.cycles_per_timestep)
    assert np.all(np.diff(in_cycles) == dut.cycles_per_timestep)
    assert out_cycles[0] - in_cycles[0] == dut.latency


def test_start_flag_resets_state_mid_stream():
    """Two sequences back to back give the same outputs as each alone (start clears state)."""
    model = load_model(load_config("examples/s5_small.toml"))
    fmt = model.config.quant.input.format
    u = np.random.default_rng(5).integers(fmt.min_int, fmt.max_int + 1, (1, 6, model.channels))
    both = np.concatenate([u, u], axis=0)
    got, _, _, _ = simulate_layer(model, both, seed=5)
    np.testing.assert_array_equal(got[0], got[1])


def test_banks_and_input_memory_need_a_serial_readout():
    """Banks (folded network layers) and an input memory read one channel's sample per group:
    only a serial readout (s4d, memory storage, lanes dividing the modes) does."""
    from ssmgen.hw.datapath.ssm_layer import SSMLayer
    model = load_model(load_config("examples/s4d_small.toml"))     # registers storage
    with pytest.raises(ValueError, match="2 banks need a serial readout"):
        SSMLayer(model, banks=2)
    with pytest.raises(ValueError, match="An input memory needs a serial readout"):
        SSMLayer(model, input_words=6)
