"""Golden whole-network integer model (golden/network.py) against exact arithmetic.

``ref_network`` below is an independent implementation of the specification in
``golden/network.py``'s docstring with Python ints and ``fractions.Fraction`` only (no numpy
arithmetic, no golden/fixedpoint.py). Its SSM layers use test_integer_model's exact layer
reference ``ref_run`` (itself independent of the golden code). Random small networks cover s4d
and s5, every rounding and overflow mode, per-layer per-mode state formats, a power-of-two and a
non-power-of-two sequence length (the mean's constant), and an explicit logits format. Every
generator is seeded; messages name the case and seed.
"""

from __future__ import annotations

import re

import random
from fractions import Fraction

import numpy as np
import pytest
from test_integer_model import pow2, ref_format, ref_quantize, ref_round, ref_run

from ssmgen.golden.discretize import random_network_weights as golden_random_network_weights
from ssmgen.golden.network import (
    pool_constants,
    predict,
    quantize_network_input,
    run_float_network,
    run_integer_network,
)
from ssmgen.golden.quantize import load_model, load_network, quantize_network
from ssmgen.spec.config import parse_config
from ssmgen.spec.errors import ConfigError, WeightsError
from ssmgen.spec.weights import NetworkWeights, save_network_npz

SEED = 0x2E7
ROUNDINGS = ("floor", "half_up", "half_even", "toward_zero")
OVERFLOWS = ("wrap", "saturate")


def network_dict(rng: random.Random, *, kind, H, modes, layers, inputs, classes, steps,
                 explicit_state=False, logits=None, weights_file="w.npz",
                 per_step=False) -> dict:
    """A random network config (TOML structure); ``per_step``: a sequence-to-sequence model
    (``network.readout = "per_step"``, ``classes`` outputs per timestep, no pool format)."""
    def q(width_lo=4, width_hi=12, int_lo=-2, int_hi=4):
        width = rng.randint(width_lo, width_hi)
        return {"format": f"fixed<{width},{rng.randint(int_lo, min(int_hi, width))}>",
                "rounding": rng.choice(ROUNDINGS), "overflow": rng.choice(OVERFLOWS)}
    states = H * modes if kind == "s4d" else modes
    state = q(8, 14, 1, 5)
    model = {"kind": kind, "channels": H}
    model["state_size" if kind == "s4d" else "states"] = 2 * modes if kind == "s4d" else modes
    data = {
        "model": model,
        "weights": {"source": "file", "file": weights_file},
        "quant": {"abar": {"format": f"fixed<{rng.randint(6, 12)},1>", "overflow": "saturate",
                           "rounding": rng.choice(ROUNDINGS)},
                  "bbar": q(int_lo=-3, int_hi=1), "c": q(int_lo=0, int_hi=2),
                  "d": {**q(int_lo=1, int_hi=3), "overflow": "saturate"},
                  "input": q(6, 12, 1, 4), "state": state, "output": q(6, 12, 1, 4)},
        "network": {"inputs": inputs, "layers": layers, "steps": steps, "classes": classes,
                    "activation": rng.choice(["relu", "identity"]),
                    "quant": {"input": q(4, 10, 1, 3), "encoder": {**q(4, 10, 0, 2), "overflow": "saturate"},
                              "encoder_bias": {**q(4, 10, 0, 2), "overflow": "saturate"},
                              "mix": {**q(4, 10, 0, 2), "overflow": "saturate"},
                              "mix_bias": {**q(4, 10, 0, 2), "overflow": "saturate"},
                              "pool": q(4, 10, 0, 4),
                              "decoder": {**q(4, 10, 0, 2), "overflow": "saturate"},
                              "decoder_bias": {**q(4, 10, 0, 2), "overflow": "saturate"}}},
    }
    width = int(state["format"][6:-1].split(",")[0])
    if explicit_state:
        data["network"]["state_int_bits"] = [[rng.randint(0, min(5, width)) for _ in range(states)]
                                             for _ in range(layers)]
    if logits is not None:
        data["network"]["quant"]["logits"] = logits
    if per_step:
        data["network"]["readout"] = "per_step"
        data["network"]["outputs"] = data["network"].pop("classes")
        del data["network"]["quant"]["pool"]
    return data


def random_network_weights(rng_np: np.random.Generator, config) -> NetworkWeights:
    return golden_random_network_weights(config, rng_np)


def ref_network(qnet, u_int):
    """Exact reference: returns (logits as Fractions (batch, classes), streams, pooled ints); with
    a per-step readout the outputs as Fractions (batch, T, classes) and pooled None."""
    net, q = qnet.network, qnet.config.quant

    def val(ints, quantizer):
        f = quantizer.format.frac
        return [Fraction(int(v)) * pow2(-f) for v in ints]

    We = [val(row, net.encoder) for row in qnet.encoder_w.tolist()]
    be = val(qnet.encoder_b.tolist(), net.encoder_bias)
    stream_fmt = ref_format(q.input)
    fu, fs, fy = net.input.format.frac, q.input.format.frac, q.output.format.frac
    H = len(be)
    a = [[[ref_quantize(sum((We[h][i] * Fraction(int(x)) * pow2(-fu)
                             for i, x in enumerate(step)), Fraction(0)) + be[h], stream_fmt)
           for h in range(H)] for step in seq] for seq in u_int]
    streams = [a]
    for l, layer in enumerate(qnet.layers):
        y = ref_run(layer, a)[0]
        Wm = [val(row, net.mix) for row in qnet.mix_w[l].tolist()]
        bm = val(qnet.mix_b[l].tolist(), net.mix_bias)
        new = []
        for b, seq in enumerate(y):
            new_seq = []
            for t, step in enumerate(seq):
                r = [max(v, 0) if net.activation == "relu" else v for v in step]
                new_seq.append([ref_quantize(
                    sum((Wm[h][j] * Fraction(r[j]) * pow2(-fy) for j in range(H)), Fraction(0))
                    + bm[h] + Fraction(a[b][t][h]) * pow2(-fs), stream_fmt) for h in range(H)])
            new.append(new_seq)
        a = new
        streams.append(a)
    Wd = [val(row, net.decoder) for row in qnet.decoder_w.tolist()]
    bd = val(qnet.decoder_b.tolist(), net.decoder_bias)

    def decode(features, frac):
        row = []
        for c in range(len(bd)):
            z = sum((Wd[c][h] * Fraction(features[h]) * pow2(-frac) for h in range(H)),
                    Fraction(0)) + bd[c]
            if net.logits is not None:
                z = Fraction(ref_quantize(z, ref_format(net.logits))) * pow2(-net.logits.format.frac)
            row.append(z)
        return row

    if net.per_step:              # the decoder at every timestep, on the stream itself
        return [[decode(step, fs) for step in seq] for seq in a], streams, None
    pool_fmt = ref_format(net.pool)
    T = net.steps
    if T & (T - 1) == 0:
        recip = Fraction(1, T)
    else:
        shift = T.bit_length() + 15
        recip = Fraction(ref_round(Fraction(1, T), shift, "half_even"), 1 << shift)
    pooled = [[ref_quantize(sum((Fraction(seq[t][h]) for t in range(T)), Fraction(0))
                            * pow2(-fs) * recip, pool_fmt) for h in range(H)] for seq in a]
    return [decode(p, net.pool.format.frac) for p in pooled], streams, pooled


CASES = [
    dict(kind="s4d", H=2, modes=2, layers=2, inputs=1, classes=3, steps=8),
    dict(kind="s5", H=2, modes=3, layers=1, inputs=2, classes=2, steps=5),
    dict(kind="s4d", H=3, modes=1, layers=1, inputs=2, classes=4, steps=6, explicit_state=True),
    dict(kind="s5", H=2, modes=2, layers=2, inputs=1, classes=3, steps=4, explicit_state=True,
         logits={"format": "fixed<10,3>", "rounding": "half_up", "overflow": "saturate"}),
    dict(kind="s4d", H=2, modes=2, layers=1, inputs=1, classes=2, steps=7,
         logits={"format": "fixed<6,2>", "rounding": "floor", "overflow": "wrap"}),
    dict(kind="s5", H=3, modes=2, layers=2, inputs=3, classes=3, steps=8),
    # sequence to sequence: the decoder at every timestep
    dict(kind="s4d", H=2, modes=2, layers=2, inputs=1, classes=2, steps=6, per_step=True),
    dict(kind="s5", H=3, modes=2, layers=1, inputs=2, classes=1, steps=5, per_step=True,
         logits={"format": "fixed<9,3>", "rounding": "half_even", "overflow": "saturate"}),
]


@pytest.mark.parametrize("case_index", range(len(CASES) * 2))
def test_network_matches_exact_reference(case_index):
    case = CASES[case_index % len(CASES)]
    seed = SEED + case_index
    rng, rng_np = random.Random(seed), np.random.default_rng(seed)
    for attempt in range(20):      # resample the rare config the int64 proof rejects
        try:
            config = parse_config(network_dict(rng, **case))
            qnet = quantize_network(config, random_network_weights(rng_np, config))
            break
        except ConfigError:
            continue
    else:
        pytest.fail(f"case {case_index} (seed {seed}): no valid random config")
    net = config.network
    fmt = net.input.format
    u_int = rng_np.integers(fmt.min_int, fmt.max_int + 1, (3, net.steps, net.inputs))
    logits, inter = run_integer_network(qnet, u_int, return_intermediates=True)
    ref_logits, ref_streams, ref_pool = ref_network(qnet, u_int.tolist())
    for l, (got, want) in enumerate(zip(inter["stream"], ref_streams)):
        assert got.tolist() == want, f"case {case_index} (seed {seed}): stream {l} differs"
    if net.per_step:
        assert inter["pool"] is None and logits.shape == (3, net.steps, net.classes)
        got = [[[Fraction(int(v)) * pow2(-qnet.logits_frac) for v in step] for step in seq]
               for seq in logits.tolist()]
        assert got == ref_logits, f"case {case_index} (seed {seed}): outputs differ"
        assert qnet.max_exact_bits <= 62
        return
    assert inter["pool"].tolist() == ref_pool, f"case {case_index} (seed {seed}): pool differs"
    got = [[Fraction(int(v)) * pow2(-qnet.logits_frac) for v in row] for row in logits.tolist()]
    assert got == ref_logits, f"case {case_index} (seed {seed}): logits differ"
    want_pred = [row.index(max(row)) for row in ref_logits]       # first maximum
    assert predict(logits).tolist() == want_pred
    # every exact intermediate was proven to fit: the accumulators' derived widths hold
    assert qnet.max_exact_bits <= 62


def test_argmax_ties_go_to_the_lowest_index():
    assert predict(np.array([[3, 7, 7, 1], [5, 5, 5, 5], [-2, -1, -1, -3]])).tolist() == [1, 0, 1]


def test_pool_constants():
    assert pool_constants(64) == (1, 6)
    assert pool_constants(1) == (1, 0)
    for T in (3, 5, 7, 10, 100, 1000, 12345):
        mult, shift = pool_constants(T)
        assert mult.bit_length() <= 17
        assert abs(Fraction(mult, 1 << shift) - Fraction(1, T)) <= Fraction(1, 1 << (shift + 1))
        assert abs(Fraction(mult, 1 << shift) * T - 1) < Fraction(1, 1 << 15)


def _write(tmp_path, rng_seed=3, **case):
    rng, rng_np = random.Random(rng_seed), np.random.default_rng(rng_seed)
    data = network_dict(rng, **case)
    config = parse_config(data, base_dir=tmp_path)
    weights = random_network_weights(rng_np, config)
    save_network_npz(tmp_path / "w.npz", weights)
    return data, config, weights


def test_weights_file_round_trips_and_holds_each_layer_once(tmp_path):
    data, config, weights = _write(tmp_path, kind="s5", H=2, modes=2, layers=2, inputs=1,
                                   classes=2, steps=4)
    qnet = load_network(config)
    direct = quantize_network(config, weights)
    for a, b in zip(qnet.integer_arrays().values(), direct.integer_arrays().values()):
        np.testing.assert_array_equal(a, b)
    with np.load(config.weights.path) as stored:    # no copy of layer 0 under plain keys
        assert sorted(stored.files) == sorted(
            ["encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias",
             *(f"layers.{l}.{k}" for l in range(2)
               for k in ("Abar", "Bbar", "C", "D", "mix.weight", "mix.bias"))])
    with pytest.raises(ConfigError, match="describes a whole network"):
        load_model(config)                  # never reduced to one of its layers


def wide_formats(data: dict) -> dict:
    """``data`` with every format 20 bits wide (half_even, saturate), a ReLU and the state's
    integer bits from quant.state: close to the float network."""
    for name in data["network"]["quant"]:
        data["network"]["quant"][name] = {"format": "fixed<20,6>", "rounding": "half_even",
                                          "overflow": "saturate"}
    data["network"]["activation"] = "relu"
    data["quant"].update({k: {"format": f, "rounding": "half_even", "overflow": "saturate"}
                          for k, f in (("abar", "fixed<20,1>"), ("bbar", "fixed<20,0>"),
                                       ("c", "fixed<20,2>"), ("d", "fixed<20,3>"),
                                       ("input", "fixed<20,8>"), ("state", "fixed<20,8>"),
                                       ("output", "fixed<20,8>"))})
    data["network"].pop("state_int_bits", None)
    return data


def test_float_network_tracks_integer_network_at_wide_formats(tmp_path):
    """Two-tier check: the 16-bit integer network stays close to the float reference."""
    data, config, weights = _write(tmp_path, kind="s4d", H=3, modes=2, layers=2, inputs=1,
                                   classes=3, steps=16)
    config = parse_config(wide_formats(data), base_dir=tmp_path)
    qnet = quantize_network(config, weights)
    u = np.random.default_rng(1).uniform(-1, 1, (4, 16, 1))
    logits = run_integer_network(qnet, quantize_network_input(qnet, u))
    ref = run_float_network(weights, u, activation="relu")
    np.testing.assert_allclose(logits * 2.0 ** -qnet.logits_frac, ref, atol=2e-2)


def test_per_step_float_network_tracks_integer_network_at_wide_formats(tmp_path):
    """A per-step readout: one output vector per timestep, close to the float reference at
    16-bit-plus formats, and the same layers as the classifier (only the readout differs)."""
    rng = random.Random(5)
    data = network_dict(rng, kind="s5", H=3, modes=4, layers=2, inputs=2, classes=2, steps=12,
                        per_step=True)
    config = parse_config(wide_formats(data), base_dir=tmp_path)
    weights = random_network_weights(np.random.default_rng(5), config)
    qnet = quantize_network(config, weights)
    u = np.random.default_rng(1).uniform(-1, 1, (4, 12, 2))
    out = run_integer_network(qnet, quantize_network_input(qnet, u))
    ref = run_float_network(weights, u, activation="relu", readout="per_step")
    assert out.shape == ref.shape == (4, 12, 2)
    np.testing.assert_allclose(out * 2.0 ** -qnet.logits_frac, ref, atol=2e-2)
    # the classifier's mean readout of the same stream: the mean of the per-step features
    mean = run_float_network(weights, u, activation="relu")
    np.testing.assert_allclose(mean, ref.mean(axis=1), atol=1e-12)


def test_per_step_readout_keeps_classifier_hashes():
    from ssmgen.design import Design
    rng = random.Random(2)
    case = dict(kind="s4d", H=2, modes=2, layers=1, inputs=1, classes=2, steps=4)
    mean = parse_config(network_dict(random.Random(2), **case))
    explicit = network_dict(random.Random(2), **case)
    explicit["network"]["readout"] = "mean"
    weights = random_network_weights(np.random.default_rng(2), mean)
    # an explicit readout = "mean" is the default: same design, same hash
    assert (Design.from_quantized(quantize_network(mean, weights)).hash
            == Design.from_quantized(quantize_network(parse_config(explicit), weights)).hash)
    seq = parse_config(network_dict(rng, **case, per_step=True))
    design = Design.from_quantized(quantize_network(seq, weights))
    assert design.outputs_per_sequence(4) == 4
    assert design.hash != Design.from_quantized(quantize_network(mean, weights)).hash


@pytest.mark.parametrize("patch,message", [
    (lambda d: d["network"].pop("steps"), "network.steps: missing"),
    (lambda d: d["network"].update(layers=0), "network.layers: 0 is out of range"),
    (lambda d: d["network"].update(activation="gelu"), "network.activation: 'gelu' is not allowed"),
    (lambda d: d["network"].update(colour=1), "network: unknown key(s) colour"),
    (lambda d: d["network"]["quant"].pop("pool"), "network.quant.pool: missing"),
    (lambda d: d["network"]["quant"]["mix"].update(format="fixed<40,2>"), "network.quant.mix.format"),
    (lambda d: d["network"]["quant"]["mix"].update(rounding="up"), "network.quant.mix.rounding"),
    (lambda d: d["network"].update(state_int_bits=[[1, 2]]), "network.state_int_bits"),
    (lambda d: d["network"].update(state_int_bits=[[1, 2, 3, 4], [1, 2, 3, "x"]]),
     "network.state_int_bits[1][3]"),
    (lambda d: d["network"]["quant"].update(logits={"format": "full", "rounding": "floor"}),
     "network.quant.logits: unknown key(s) rounding"),
    (lambda d: d["network"].update(readout="last"), "network.readout: 'last' is not allowed"),
    (lambda d: d["network"].update(readout="per_step"),
     "network.classes: not with readout = 'per_step'; give network.outputs"),
    (lambda d: d["network"].update(outputs=2), "network.outputs: not with readout = 'mean'"),
    (lambda d: (d["network"].update(readout="per_step", outputs=d["network"].pop("classes"))),
     "network.quant.pool: a per-step readout has no pooling"),
    (lambda d: (d["network"].update(readout="per_step"), d["network"].pop("classes"),
                d["network"]["quant"].pop("pool")), "network.outputs: missing"),
])
def test_bad_network_config_names_the_field(patch, message):
    data = network_dict(random.Random(1), kind="s4d", H=2, modes=2, layers=2, inputs=1,
                        classes=2, steps=4)
    patch(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_bad_network_weights_name_the_key(tmp_path):
    data, config, weights = _write(tmp_path, kind="s4d", H=2, modes=2, layers=1, inputs=1,
                                   classes=2, steps=4)
    arrays = weights.arrays()
    arrays["decoder.weight"] = arrays["decoder.weight"][:, :1]
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match=r"decoder.weight must have shape \(2, 2\)"):
        load_network(config)
    del arrays["decoder.weight"]
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match="missing key decoder.weight"):
        load_network(config)


def test_bad_inputs_are_rejected(tmp_path):
    data, config, weights = _write(tmp_path, kind="s4d", H=2, modes=2, layers=1, inputs=1,
                                   classes=2, steps=4)
    qnet = quantize_network(config, weights)
    with pytest.raises(ValueError, match="T=4"):
        run_integer_network(qnet, np.zeros((1, 5, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        run_integer_network(qnet, np.zeros((1, 4, 1)))


@pytest.mark.parametrize("layer_quant,message", [
    ({"2": {"state": {"format": "fixed<8,2>"}}}, "network.layer_quant.2: not a layer; allowed: 0..1"),
    ({"0": {"input": {"format": "fixed<8,2>"}}}, "network.layer_quant.0: unknown key(s) input"),
    ({"1": {"bbar": {"format": "fixed<30,2>"}}}, "network.layer_quant.1: quant.bbar.format"),
    ({"1": {"abar": {"form": "polar"}}}, "network.layer_quant.1: quant.abar.rho_bits: missing"),
])
def test_layer_quant_errors_name_the_layer_and_field(layer_quant, message, tmp_path):
    data, _, _ = _write(tmp_path, kind="s4d", H=2, modes=2, layers=2, inputs=1, classes=2, steps=4)
    data["network"]["layer_quant"] = layer_quant
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(data, base_dir=tmp_path)


def test_layer_quant_gives_each_layer_its_formats(tmp_path):
    data, _, weights = _write(tmp_path, kind="s5", H=2, modes=2, layers=2, inputs=1, classes=2,
                              steps=4)
    data["network"]["layer_quant"] = {"1": {"c": {"format": "fixed<4,1>", "overflow": "saturate"}}}
    config = parse_config(data, base_dir=tmp_path)
    assert config.layer(0).quant.c == config.quant.c
    assert str(config.layer(1).quant.c.format) == "fixed<4,1>"
    assert config.layer(1).quant.bbar == config.quant.bbar
    qnet = quantize_network(config, weights)
    assert qnet.layers[1].config.quant.c.format.width == 4


def _fold_dict(**hardware):
    """A two-layer s4d network of 2 channels x 8 modes (G = 16 with one lane), with
    ``hardware.fold_layers`` and the given hardware fields."""
    data = network_dict(random.Random(2), kind="s4d", H=2, modes=8, layers=2, inputs=1,
                        classes=2, steps=4)
    data["hardware"] = {"lanes": 1, "storage": "memory", "fold_layers": True, **hardware}
    return data


@pytest.mark.parametrize("patch,message", [
    (lambda d: d.pop("network"), "hardware.fold_layers: folds the layers of a network; this "
                                 "config has no [network]"),
    (lambda d: d["hardware"].update(fold_layers=1), "hardware.fold_layers: must be true or false"),
    (lambda d: d["hardware"].update(storage="registers"),
     "hardware.fold_layers: needs hardware.storage = \"memory\""),
    (lambda d: d["model"].update(channels=4) or d["hardware"].update(lanes=16),
     "hardware.fold_layers: needs hardware.lanes dividing the 8 modes per channel"),
    (lambda d: d["network"].update(layers=3, state_int_bits=None) or d["network"].pop(
        "state_int_bits"), "hardware.fold_layers: folds exactly 2 layers today"),
    (lambda d: d["network"].update(layer_quant={"1": {"state": {"format": "fixed<8,2>"}}}),
     "network.layer_quant.1 gives layer 1 its own"),
    (lambda d: d["hardware"].update(lanes=4),
     "hardware.fold_layers: a layer-1 beat would be ready 22 cycles after its layer-0 beat, "
     "later than its turn 3 x P / lanes = 12"),
])
def test_bad_fold_layers_config_names_the_field(patch, message):
    patch(data := _fold_dict())
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_fold_layers_changes_the_hash_only_where_set():
    """Configs without ``hardware.fold_layers`` keep the model hash they had before the option
    existed (it is left out of the identity when false); folding changes the circuit, so it
    changes the hash."""
    from ssmgen.spec.hashing import model_hash
    config = parse_config(_fold_dict())
    weights = random_network_weights(np.random.default_rng(0), config)
    folded = quantize_network(config, weights)
    plain = quantize_network(parse_config(_fold_dict(fold_layers=False)), weights)
    assert "fold_layers" not in plain.identity()["hardware"]
    assert folded.identity()["hardware"]["fold_layers"] is True
    assert model_hash(folded) != model_hash(plain)
    np.testing.assert_array_equal(run_integer_network(folded, np.zeros((1, 4, 1), np.int64)),
                                  run_integer_network(plain, np.zeros((1, 4, 1), np.int64)))
