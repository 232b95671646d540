# amaranth: UnusedElaboratable=no
"""NetworkAccelerator (hw/datapath/network.py) against the golden whole-network integer model.

Two tiers, as for the single layer: Amaranth's simulator on random small networks (s4d and s5,
one and two layers, with and without lane sharing, every rounding/overflow mode drawn at random,
per-mode state formats, power-of-two and other sequence lengths, explicit logits formats), with
random idle cycles on the input and back-pressure on the output; then the generated Verilog
under cocotb (Verilator, and Icarus when installed). Every check is exact equality of logits and
predictions; every random source is seeded and failure messages name the case and seed.
"""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
from stream_sim import stream_through
from test_network import network_dict, random_network_weights

from ssmgen.design import Design
from ssmgen.golden.network import predict, run_integer_network
from ssmgen.golden.quantize import quantize_network
from ssmgen.hw.datapath.multiply import logic_cost
from ssmgen.hw.datapath.serial_linear import SerialLinear
from ssmgen.hw.manifest import pack_fields
from ssmgen.sim.native.bench import run_stream
from ssmgen.sim.simulators import SimulationError
from ssmgen.spec.config import parse_config
from ssmgen.spec.errors import ConfigError

SEED = 0x4E7

CASES = [
    dict(kind="s4d", H=2, modes=1, layers=1, inputs=1, classes=3, steps=4),
    dict(kind="s5", H=2, modes=2, layers=2, inputs=2, classes=2, steps=5, lanes=1),
    dict(kind="s4d", H=2, modes=2, layers=2, inputs=1, classes=4, steps=3, lanes=2,
         explicit_state=True),
    dict(kind="s5", H=1, modes=3, layers=1, inputs=2, classes=3, steps=4,
         logits={"format": "fixed<8,3>", "rounding": "half_up", "overflow": "saturate"}),
    dict(kind="s5", H=2, modes=2, layers=1, inputs=1, classes=2, steps=6, lanes=1,
         logits={"format": "fixed<6,1>", "rounding": "floor", "overflow": "wrap"}),
    # one-beat sequences: start and last on the same beat
    dict(kind="s4d", H=1, modes=2, layers=2, inputs=1, classes=2, steps=1, activation="relu"),
    # ten classes: the arg-max tournament has a register slice inside
    dict(kind="s4d", H=2, modes=1, layers=1, inputs=1, classes=10, steps=3),
    # folded linear layers: H = 6 over G = 3 (2 products per output per cycle), a 4-input
    # encoder over 2 cycles, the decoder over steps x G = 6 cycles (one product per class)
    dict(kind="s4d", H=6, modes=1, layers=2, inputs=4, classes=3, steps=2, lanes=2),
    # padded folds: H = 5 over G = 2 (3 per cycle), a 3-input encoder, the decoder over
    # steps x G = 2 cycles (3 per cycle)
    dict(kind="s5", H=5, modes=2, layers=1, inputs=3, classes=4, steps=1, lanes=1),
]


def build_network(case: dict, seed: int):
    """A random quantized network for ``case`` (resampling the rare config the int64 proof
    rejects)."""
    case = dict(case)
    lanes = case.pop("lanes", None)
    hardware = case.pop("hardware", {})
    activation = case.pop("activation", None)
    rng, rng_np = random.Random(seed), np.random.default_rng(seed)
    for _ in range(20):
        data = network_dict(rng, **case)
        if lanes is not None or hardware:
            data["hardware"] = {**({} if lanes is None else {"lanes": lanes}), **hardware}
        if activation is not None:
            data["network"]["activation"] = activation
        try:
            config = parse_config(data)
            return quantize_network(config, random_network_weights(rng_np, config))
        except ConfigError:
            continue
    raise AssertionError(f"seed {seed}: no valid random config for {case}")


def random_inputs(qnet, batch: int, seed: int) -> np.ndarray:
    fmt = qnet.network.input.format
    return np.random.default_rng(seed).integers(fmt.min_int, fmt.max_int + 1,
                                                (batch, qnet.network.steps, qnet.network.inputs))


def stream_network(qnet, u, *, seed, idle=0.0, stall=0.0):
    """Stream u (batch, T, H_in) through NetworkAccelerator in Amaranth's simulator: (the
    output beats, each a classifier's (logits, prediction) or a per-step model's outputs, the
    cycles at which each input beat was accepted and each output beat taken, the component)."""
    from ssmgen.hw.datapath.network import NetworkAccelerator
    dut = NetworkAccelerator(qnet)
    batch, steps, _ = u.shape

    def put(ctx, beat):
        b, t = beat
        ctx.set(dut.u.payload.data, [int(v) for v in u[b, t]])
        ctx.set(dut.u.payload.start, int(t == 0))
        ctx.set(dut.u.payload.last, int(t == steps - 1))

    if dut.per_step:
        expected, take = batch * steps, lambda payload: [int(v) for v in payload.data]
    else:
        expected = batch
        take = lambda payload: ([int(v) for v in payload.logits], int(payload.prediction))  # noqa: E731
    budget = batch * steps * (dut.cycles_per_timestep + 2) * 8 + dut.latency * 4 + 200
    outputs, in_cycles, out_cycles = stream_through(
        dut, dut.u, dut.y, [(b, t) for b in range(batch) for t in range(steps)], put=put,
        take=take, expected=expected, seed=seed, idle=idle, stall=stall, budget=budget)
    assert len(outputs) == expected, f"seed {seed}: {len(outputs)} of {expected} outputs in {budget} cycles"
    return outputs, in_cycles, out_cycles, dut


def simulate_network(qnet, u, *, seed, idle=0.0, stall=0.0):
    """A classifier through :func:`stream_network`: logits (batch, classes), predictions
    (batch,), the input and output cycles, and the component."""
    outputs, in_cycles, out_cycles, dut = stream_network(qnet, u, seed=seed, idle=idle,
                                                         stall=stall)
    return (np.array([o[0] for o in outputs]), np.array([o[1] for o in outputs]), in_cycles,
            out_cycles, dut)


@pytest.mark.parametrize("case_index", range(len(CASES)))
def test_random_networks_match_golden_with_stalls(case_index):
    seed = SEED + case_index
    qnet = build_network(CASES[case_index], seed)
    u = random_inputs(qnet, 3, seed)
    want = run_integer_network(qnet, u)
    got, preds, _, _, _ = simulate_network(qnet, u, seed=seed, idle=0.3, stall=0.4)
    where = f"case {case_index} (seed {seed})"
    np.testing.assert_array_equal(got, want, err_msg=f"{where}: logits")
    np.testing.assert_array_equal(preds, predict(want), err_msg=f"{where}: predictions")


#: Block RAM storage and a DSP budget: G = 16 (memories by "auto"), folded mixing, 3 of the
#: design's products as multipliers and the rest in logic; and every product in logic.
BUDGET_CASES = [
    dict(kind="s4d", H=2, modes=8, layers=2, inputs=1, classes=3, steps=3, lanes=1,
         hardware={"dsp_products": 3}),
    dict(kind="s5", H=3, modes=8, layers=1, inputs=2, classes=4, steps=2, lanes=2,
         hardware={"dsp_products": 0, "storage": "memory"}),
]


def matches_golden_with_stalls(case, seed, batch=3):
    """A random network of ``case`` streamed with random idle cycles and back-pressure: logits
    and predictions equal the golden network's. Returns the component."""
    qnet = build_network(case, seed)
    u = random_inputs(qnet, batch, seed)
    want = run_integer_network(qnet, u)
    got, preds, _, _, dut = simulate_network(qnet, u, seed=seed, idle=0.3, stall=0.4)
    np.testing.assert_array_equal(got, want, err_msg=f"{case} (seed {seed})")
    np.testing.assert_array_equal(preds, predict(want))
    return dut


@pytest.mark.parametrize("case_index", range(len(BUDGET_CASES)))
def test_memory_storage_and_dsp_budget_match_golden_with_stalls(case_index):
    dut = matches_golden_with_stalls(BUDGET_CASES[case_index], SEED + 50 + case_index)
    assert all(layer.uses_memory for layer in dut.layers)
    # the small-FPGA architecture: linear layers output by output, the mean channel by channel
    assert dut.serial and dut.serial_pool
    assert all(isinstance(unit, SerialLinear) for unit in [*dut.mixers, dut.decoder])
    assert isinstance(dut.encoder, SerialLinear) and dut.decoder.argmax
    budget = dut.net.config.hardware.dsp_products
    # the budget holds for the whole design and goes to the products dearest in logic
    costs = sorted((cost for unit in [*dut.units, dut] for cost in unit.product_costs),
                   reverse=True)
    used = [logic_cost(p.a, p.b) for unit in [*dut.units, dut] for p in unit.products]
    assert len(used) == budget
    assert sorted(used, reverse=True) == costs[:budget]


#: Folded layers (hardware.fold_layers): both layers on one two-bank SSMLayer and one two-bank
#: mixing unit; a DSP budget, per-mode state formats, two inputs, one-beat sequences, two lanes.
FOLD_CASES = [
    dict(kind="s4d", H=2, modes=8, layers=2, inputs=1, classes=3, steps=3, lanes=1,
         hardware={"fold_layers": True, "storage": "memory", "dsp_products": 3}),
    dict(kind="s4d", H=3, modes=8, layers=2, inputs=2, classes=4, steps=4, lanes=1,
         explicit_state=True, activation="relu",
         hardware={"fold_layers": True, "storage": "memory"}),
    dict(kind="s4d", H=2, modes=16, layers=2, inputs=1, classes=2, steps=1, lanes=2,
         activation="identity", hardware={"fold_layers": True, "storage": "memory"}),
]


@pytest.mark.parametrize("case_index", range(len(FOLD_CASES)))
def test_folded_layers_match_golden_with_stalls(case_index):
    """Two layers taking turns on one datapath: bit-exact with the golden network under random
    idle cycles and back-pressure, with one SSMLayer (two banks) and one mixing unit."""
    dut = matches_golden_with_stalls(FOLD_CASES[case_index], SEED + 60 + case_index, batch=4)
    assert dut.fold_layers and len(dut.layers) == len(dut.mixers) == 1
    assert dut.layers[0].banks == dut.mixers[0].banks == 2
    assert dut.cycles_per_timestep == 2 * dut.beat_cycles
    summary = dut.hardware_summary()
    assert summary["fold_layers"] and summary["cycles_per_timestep"] == 2 * dut.beat_cycles


def mixed_precision(qnet, seed: int):
    """The same network with each layer's own formats (``network.layer_quant``): layer 1 gets
    a narrower state, Bbar, C and a polar Abar; layer 0 a narrow explicit state accumulator."""
    import copy
    data = copy.deepcopy(qnet.config.source)
    state = parse_config(data).quant.state.format
    data["network"]["layer_quant"] = {
        "0": {"state_acc": {"format": f"fixed<{state.width + 4},{state.int_bits + 2}>",
                            "rounding": "floor", "overflow": "saturate"}},
        "1": {"state": {"format": f"fixed<{state.width - 2},{state.int_bits}>"},
              "bbar": {"format": "fixed<5,-1>", "overflow": "saturate"},
              "c": {"format": "fixed<5,1>", "overflow": "saturate"},
              "abar": {"format": "fixed<14,1>", "form": "polar", "rho_bits": 3,
                       "theta_bits": 5}}}
    data["network"].pop("state_int_bits", None)
    return quantize_network(parse_config(data), qnet.float_weights)


def test_mixed_precision_per_layer_matches_golden():
    """Each layer with its own formats is a real hardware option: bit-exact with golden, and
    each SSMLayer is built in its layer's formats."""
    seed = SEED + 50
    qnet = mixed_precision(build_network(CASES[2], seed), seed)
    formats = [layer.describe_formats() for layer in qnet.layers]
    assert formats[0]["state_acc"] != formats[1]["state_acc"]
    assert formats[1]["abar"].startswith("polar: rho 3-bit") and "fixed<5,-1>" in formats[1]["bbar"]
    u = random_inputs(qnet, 3, seed)
    want = run_integer_network(qnet, u)
    got, preds, _, _, dut = simulate_network(qnet, u, seed=seed, idle=0.3, stall=0.4)
    np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(preds, predict(want))
    assert [layer.model.config.quant.bbar.format.width for layer in dut.layers] == \
        [qnet.config.quant.bbar.format.width, 5]
    assert Design.from_quantized(qnet).manifest["layer_formats"] == formats


@pytest.mark.parametrize("case", [CASES[i] for i in (0, 2, 6, 7, 8)] + BUDGET_CASES + FOLD_CASES)
def test_full_rate_throughput_and_latency(case):
    """Without stalls the accelerator takes one beat every cycles_per_timestep cycles, and each
    output follows its sequence's last beat after exactly ``latency`` cycles."""
    seed = SEED + 7
    qnet = build_network(case, seed)
    u = random_inputs(qnet, 3, seed)
    got, _, in_cycles, out_cycles, dut = simulate_network(qnet, u, seed=seed)
    np.testing.assert_array_equal(got, run_integer_network(qnet, u), err_msg=f"seed {seed}")
    layer_turns = 2 if dut.fold_layers else 1        # folded: each layer takes a beat
    assert dut.cycles_per_timestep == dut.layers[0].cycles_per_timestep * layer_turns
    assert np.all(np.diff(in_cycles) == dut.cycles_per_timestep), in_cycles
    steps = qnet.network.steps
    lasts = in_cycles[steps - 1::steps]
    assert [o - i for i, o in zip(lasts, out_cycles)] == [dut.latency] * len(lasts)


def test_argmax_ties_go_to_the_lowest_class():
    """All-zero decoder weights and equal biases: every logit ties, the prediction is class 0;
    two equal maxima above a lower class pick the first of them."""
    qnet = build_network(dict(kind="s5", H=1, modes=2, layers=1, inputs=1, classes=4, steps=2),
                         SEED)
    u = random_inputs(qnet, 2, SEED)
    ties = dataclasses.replace(qnet, decoder_w=np.zeros_like(qnet.decoder_w),
                               decoder_b=np.array([1, 3, 3, 2], dtype=np.int64))
    got, preds, _, _, _ = simulate_network(ties, u, seed=1)
    np.testing.assert_array_equal(got, run_integer_network(ties, u))
    assert preds.tolist() == predict(got).tolist() == [1, 1]
    flat = dataclasses.replace(ties, decoder_b=np.zeros_like(qnet.decoder_b))
    _, preds, _, _, _ = simulate_network(flat, u, seed=1)
    assert preds.tolist() == [0, 0]


def test_bad_network_is_rejected():
    from ssmgen.hw.datapath.network import NetworkAccelerator
    with pytest.raises(TypeError, match="QuantizedNetwork"):
        NetworkAccelerator("net")
    qnet = build_network(CASES[0], SEED)
    bad = dataclasses.replace(qnet, decoder_w=qnet.decoder_w[:, :1])
    with pytest.raises(ValueError, match=r"decoder.weight must have shape \(3, 2\)"):
        NetworkAccelerator(bad)


# --- sequence to sequence: the decoder at every timestep -----------------------------------------

#: Per-step readouts (network.readout = "per_step"): one output beat per timestep. Registers
#: with shared lanes (G = 2), a 2-input encoder and an explicit output format; block RAM with a
#: DSP budget (serial mixing and decoder units); one output per step.
PER_STEP_CASES = [
    dict(kind="s4d", H=2, modes=2, layers=2, inputs=1, classes=2, steps=4, lanes=2,
         per_step=True),
    dict(kind="s5", H=3, modes=2, layers=1, inputs=2, classes=3, steps=3, lanes=1, per_step=True,
         logits={"format": "fixed<9,3>", "rounding": "half_even", "overflow": "saturate"}),
    dict(kind="s4d", H=2, modes=8, layers=2, inputs=1, classes=1, steps=3, lanes=1,
         per_step=True, hardware={"dsp_products": 3, "storage": "memory"}),
    # folded layers: the last layer's result words gathered into one vector per timestep
    dict(kind="s4d", H=3, modes=8, layers=2, inputs=1, classes=2, steps=3, lanes=1,
         per_step=True, hardware={"fold_layers": True, "storage": "memory", "dsp_products": 3}),
    dict(kind="s4d", H=2, modes=16, layers=2, inputs=2, classes=1, steps=2, lanes=2,
         per_step=True, activation="identity",
         hardware={"fold_layers": True, "storage": "memory"}),
]


def simulate_per_step(qnet, u, *, seed, idle=0.0, stall=0.0):
    """A per-step model through :func:`stream_network`: (outputs (batch, T, classes), input
    cycles, output cycles, the component)."""
    outputs, in_cycles, out_cycles, dut = stream_network(qnet, u, seed=seed, idle=idle,
                                                         stall=stall)
    return np.array(outputs).reshape(u.shape[0], u.shape[1], -1), in_cycles, out_cycles, dut


@pytest.mark.parametrize("case_index", range(len(PER_STEP_CASES)))
def test_per_step_networks_match_golden_with_stalls(case_index):
    seed = SEED + 80 + case_index
    qnet = build_network(PER_STEP_CASES[case_index], seed)
    u = random_inputs(qnet, 3, seed)
    want = run_integer_network(qnet, u)
    assert want.shape == (3, qnet.network.steps, qnet.network.classes)
    got, _, _, dut = simulate_per_step(qnet, u, seed=seed, idle=0.3, stall=0.4)
    np.testing.assert_array_equal(got, want, err_msg=f"case {case_index} (seed {seed})")
    assert dut.output_beat == "timestep" and not dut.products       # no pooling
    # full rate: a beat every G cycles, each output exactly `latency` after its input
    got, in_cycles, out_cycles, dut = simulate_per_step(qnet, u, seed=seed)
    np.testing.assert_array_equal(got, want)
    assert np.all(np.diff(in_cycles) == dut.cycles_per_timestep), in_cycles
    assert (np.asarray(out_cycles) - np.asarray(in_cycles)).tolist() == [dut.latency] * len(in_cycles)


def test_per_step_readout_refuses_the_board():
    from ssmgen.hw.link.board_top import BoardCore
    qnet = build_network(PER_STEP_CASES[0], SEED)
    with pytest.raises(ConfigError, match="no board protocol yet"):
        BoardCore(qnet, divisor=4)


# --- cocotb: the generated Verilog --------------------------------------------------------------

#: Two s4d layers sharing lanes (G = 2, per-mode state formats), ReLU, four classes.
RTL_CASE = dict(kind="s4d", H=2, modes=2, layers=2, inputs=1, classes=4, steps=3, lanes=2,
                explicit_state=True, activation="relu")
#: The same in block RAM with two multipliers, the other products in logic.
RTL_MEMORY_CASE = dict(RTL_CASE, hardware={"storage": "memory", "dsp_products": 2})
#: A per-step readout: one output beat per timestep (sequence to sequence).
RTL_PER_STEP_CASE = dict(kind="s4d", H=2, modes=2, layers=2, inputs=1, classes=2, steps=3,
                         lanes=2, activation="relu", per_step=True)
#: The same on folded layers (the last layer's result words gathered per timestep).
RTL_PER_STEP_FOLD_CASE = dict(RTL_PER_STEP_CASE, modes=8, lanes=1,
                              hardware={"storage": "memory", "dsp_products": 2,
                                        "fold_layers": True})
#: Folded layers (G = 8 x 2 / 1 = 16 cycles a layer beat), per-mode state formats.
RTL_FOLD_CASE = dict(RTL_CASE, modes=8, lanes=1,
                     hardware={"storage": "memory", "dsp_products": 2, "fold_layers": True})


@pytest.mark.rtl
@pytest.mark.parametrize("case", [RTL_CASE, RTL_MEMORY_CASE, RTL_FOLD_CASE, RTL_PER_STEP_CASE,
                                  RTL_PER_STEP_FOLD_CASE],
                         ids=["registers", "memory", "folded", "per_step", "per_step_folded"])
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_generated_network_matches_golden_under_cocotb(simulator, case, tmp_path, rtl_simulator):
    """Generated Verilog == golden logits and predictions (a per-step model: every timestep's
    outputs, one output beat per input beat) with random stalls on both streams; the testbench
    also checks the manifest's latency against measurement."""
    rtl_simulator(simulator)
    seed = SEED + 100
    qnet = build_network(case, seed)
    design = Design.from_quantized(qnet)
    assert design.manifest["kind"] == "network"
    u = random_inputs(qnet, 4, seed)
    want = run_integer_network(qnet, u)
    result = design.simulate(u, simulator=simulator, seed=seed, idle_probability=0.3,
                             stall_probability=0.4, work_dir=tmp_path)
    assert result.failures == []
    np.testing.assert_array_equal(result.outputs, want, err_msg=f"{simulator}, seed {seed}")
    assert result.check.cycles_per_timestep == design.cycles_per_timestep
    if qnet.network.per_step:
        assert design.manifest["stream"]["output_beat"] == "timestep"
        assert result.check.latencies == [design.latency] * 4 * qnet.network.steps
        return
    np.testing.assert_array_equal(result.check.outputs[:, 0, -1], predict(want))
    assert result.check.latencies == [design.latency] * 4


@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_run_rtl_returns_golden_results(simulator, tmp_path, monkeypatch, rtl_simulator):
    """The --engine rtl entry point: the native stream bench (no Python per cycle) gives the
    golden logits, sequences back to back at full rate (one output every T x G cycles), and a
    difference from the golden model raises."""
    rtl_simulator(simulator)
    seed = SEED + 100
    design = Design.from_quantized(build_network(RTL_CASE, seed))
    qnet = design.quantized
    u = random_inputs(qnet, 5, seed + 1)
    logits = design.run_rtl(u, simulator=simulator, work_dir=tmp_path)
    want = run_integer_network(qnet, u)
    np.testing.assert_array_equal(logits, want, err_msg=simulator)

    # the same design through run_stream: output spacing and latency as the manifest says
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    hw, steps = manifest["hardware"], qnet.network.steps
    fields = manifest["ports"]["u__payload"]["fields"]
    words = [pack_fields(fields, beat) for seq in design.input_beats(u).tolist() for beat in seq]
    run = run_stream(tmp_path / "manifest.json", words, len(u), max_cycles=10_000,
                     simulator=simulator)
    gaps = np.diff(run.output_cycles).tolist()
    assert gaps == [steps * hw["cycles_per_timestep"]] * (len(u) - 1)
    # the first beat is taken at cycle 0, the last beat of sequence 0 at (T - 1) x G, and its
    # output is taken `latency` cycles later
    assert run.output_cycles[0] == (steps - 1) * hw["cycles_per_timestep"] + hw["latency_cycles"]

    with pytest.raises(ValueError, match="network.steps = 3"):
        design.run_rtl(u[:, :2], simulator=simulator, work_dir=tmp_path)
    monkeypatch.setattr(type(design), "reference", lambda self, u: want + 1)
    with pytest.raises(SimulationError, match="5 of 5 output beats differ from the golden model"):
        design.run_rtl(u, simulator=simulator, work_dir=tmp_path)
