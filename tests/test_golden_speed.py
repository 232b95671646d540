"""The golden model's fast paths are taken where their proofs allow, and stay bit-exact.

* ``fixedpoint.Requantizer`` (requantize with its constants prepared once) equals ``requantize``
  for every rounding and overflow mode, uniform and per-element shifts of either sign, ties and
  the largest magnitudes the int64 model allows; ``FloatRequantizer`` (the same on float64
  integers below 2**52, the layer loop's float path) equals it too;
* ``exact_matmul`` picks float32 / float64 / int64 from the bound and is exact on both sides of
  2**24 and 2**53, where a plain float64 product demonstrably is not;
* ``run_integer`` equals the exact Fraction reference (tests/test_integer_model.py) on layers whose
  matrix products lie just below and just above 2**53 (and 2**24), for s5's input and readout
  sums, uniform and per-mode state formats; on explicit accumulators whose terms enter exactly
  (folded into a product) and ones that are requantized term by term, s4d and s5;
* blocking (batch chunks, time blocks, term blocks) and ``step`` give the same values as one run;
* the network's linear layers take the same float / int64 choice and stay exact.

Every random generator is seeded; messages name the case.
"""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
from test_integer_model import assert_matches_reference, base_dict, pow2
from test_network import network_dict, random_network_weights, ref_network

from ssmgen.golden import integer_model
from ssmgen.golden.fixedpoint import FloatRequantizer, Requantizer, requantize
from ssmgen.golden.integer_model import (
    FLOAT32_EXACT_MAX,
    FLOAT64_EXACT_MAX,
    exact_dtype,
    exact_matmul,
    run_integer,
    step,
)
from ssmgen.golden.network import run_integer_network
from ssmgen.golden.quantize import load_model, quantize_model, quantize_network
from ssmgen.spec.config import parse_config
from ssmgen.spec.errors import ConfigError
from ssmgen.spec.formats import INT64_SAFE_BITS, FixedFormat, Overflow, Quantizer, Rounding
from ssmgen.spec.weights import SSMWeights

SEED = 0x5BEED


# =================================================================================================
# Requantizer == requantize
# =================================================================================================

def _requantize_cases(rng, rounding, overflow):
    """(values, frac, quantizer) triples: uniform and per-element fracs, shifts of both signs
    (including 0 and beyond the cap of 63), exact ties, magnitudes up to the int64 model's
    limit (a left shift keeps them below it, as the callers' proofs do)."""
    for trial in range(300):
        width = int(rng.integers(2, 25))
        fmt = FixedFormat(width, int(rng.integers(-24, width + 1)))
        quantizer = Quantizer(fmt, rounding, overflow)
        shape = (3, 8)
        if trial % 3 == 0:
            frac = int(rng.integers(fmt.frac - 40, fmt.frac + 90))
        else:                                          # per element, mixed signs
            frac = rng.integers(fmt.frac - 30, fmt.frac + 90, size=shape[-1:] if trial % 3 == 1
                                else shape)
        shift = np.asarray(frac) - fmt.frac
        left = np.maximum(-shift, 0)
        bits = np.maximum(INT64_SAFE_BITS - 1 - np.minimum(left, INT64_SAFE_BITS - 1), 1)
        top = np.broadcast_to(np.left_shift(np.int64(1), bits), shape)
        values = rng.integers(-top + 1, top, dtype=np.int64)    # |values << left| < 2**62
        if trial % 4 == 0:                             # exact ties: odd multiples of 2**(s-1)
            s = np.clip(np.broadcast_to(shift, shape), 1, 40)
            values = (2 * rng.integers(-1000, 1000, shape) + 1) << (s - 1)
        values.flat[0] = 0
        yield values, frac, quantizer


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("overflow", list(Overflow))
def test_requantizer_equals_requantize(rounding, overflow):
    rng = np.random.default_rng([SEED, list(Rounding).index(rounding), list(Overflow).index(overflow)])
    for i, (values, frac, quantizer) in enumerate(_requantize_cases(rng, rounding, overflow)):
        want = requantize(values, frac, quantizer)
        before = values.copy()
        prepared = Requantizer(frac, quantizer)
        got = prepared(values)
        out = np.full(want.shape, -7, dtype=np.int64)
        into = prepared(values, out=out)
        label = f"case {i} ({quantizer}, frac {frac})"
        assert got.shape == want.shape, label
        np.testing.assert_array_equal(got, want, err_msg=label)
        np.testing.assert_array_equal(out, want, err_msg=label)
        assert into is out, label
        np.testing.assert_array_equal(values, before, err_msg=f"{label}: input changed")
        # reusable: a second call on other values needs no new constants
        np.testing.assert_array_equal(prepared(values // 3), requantize(values // 3, frac, quantizer),
                                      err_msg=label)


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("overflow", list(Overflow))
def test_float_requantizer_equals_requantize_below_2_52(rounding, overflow):
    """The float64 loop's requantizer: every mode, shifts of both signs, exact ties, values up to
    2**52 - 1 (the largest the float path takes; a left shift keeps them below)."""
    rng = np.random.default_rng([SEED, 7, list(Rounding).index(rounding),
                                 list(Overflow).index(overflow)])
    for i, (values, frac, quantizer) in enumerate(_requantize_cases(rng, rounding, overflow)):
        shift = np.broadcast_to(np.asarray(frac) - quantizer.format.frac, values.shape)
        left = np.maximum(-shift, 0)
        values = values % (1 << np.maximum(51 - left, 1))           # |values << left| < 2**52
        values = np.where(rng.random(values.shape) < 0.5, -values, values)
        if i % 5 == 0:
            values.flat[-1] = (1 << int(max(51 - left.flat[-1], 1))) - 1   # the largest
        want = requantize(values, frac, quantizer)
        prepared = FloatRequantizer(frac, quantizer, values.shape)
        floats = values.astype(np.float64)
        got = prepared(floats, out=np.empty(values.shape))
        label = f"case {i} ({quantizer}, frac {frac})"
        np.testing.assert_array_equal(got, want.astype(np.float64), err_msg=label)
        np.testing.assert_array_equal(prepared(floats, out=floats), want, err_msg=label)  # in place


def test_requantizer_broadcasts_scalar_values_over_per_element_fracs():
    quantizer = Quantizer(FixedFormat(8, 4), Rounding.HALF_EVEN, Overflow.WRAP)
    frac = np.array([2, 4, 6, 9, 70])
    for value in (-1000, -3, 0, 5, 1 << 40):
        got = Requantizer(frac, quantizer)(np.int64(value))
        want = requantize(np.int64(value), frac, quantizer)
        assert got.shape == want.shape == (5,)
        np.testing.assert_array_equal(got, want)
    same = np.full(3, quantizer.format.frac)                    # no shift at all: overflow only
    assert Requantizer(same, quantizer)(np.int64(200)).tolist() == requantize(
        np.int64(200), same, quantizer).tolist() == [-56] * 3


# =================================================================================================
# exact_matmul: the float / int64 choice and its exactness
# =================================================================================================

def _exact_product(a, b):
    """a @ b with Python ints (no rounding anywhere)."""
    return [[sum(int(x) * int(y) for x, y in zip(row, col)) for col in zip(*b.tolist())]
            for row in a.tolist()]


@pytest.mark.parametrize("limit", [FLOAT32_EXACT_MAX, FLOAT64_EXACT_MAX])
def test_exact_matmul_on_both_sides_of_its_bounds(limit):
    """Operands whose bound is exactly ``limit`` take that float type and stay exact; one term
    more crosses it. Row 0 times column 0 is odd and beyond the limit: the float type of the
    limit rounds it, which exact_matmul avoids by switching to the next type."""
    width = 13 if limit == FLOAT32_EXACT_MAX else 24
    big = (1 << (width - 1)) - 1                          # odd, near the format's maximum
    per_term = (1 << (width - 1)) ** 2                    # the formats' bound on one product
    n = limit // per_term
    this, following = ((np.float32, np.float64) if limit == FLOAT32_EXACT_MAX
                       else (np.float64, np.int64))
    rng = np.random.default_rng([SEED, width])
    for terms, expect in ((n, this), (n + 1, following)):
        a = np.where(rng.random((4, terms)) < 0.7, big, -big).astype(np.int64)
        a[0] = big
        if terms % 2 == 0:
            a[0, -1] = big - 1                            # keeps the sum of row 0 odd
        b = np.where(rng.random((terms, 3)) < 0.7, big, -big).astype(np.int64)
        b[:, 0] = big
        assert exact_dtype(terms * per_term) is expect, terms
        got = exact_matmul(a, b, terms * per_term)
        assert got.dtype == np.int64
        assert got.tolist() == _exact_product(a, b), f"{terms} terms of {width}-bit factors"
    rounded = (a.astype(this) @ b.astype(this)).astype(np.int64)
    assert rounded[0, 0] != _exact_product(a, b)[0][0], "the float type would have been exact"


def test_exact_matmul_batched_and_empty():
    rng = np.random.default_rng([SEED, 2])
    a = rng.integers(-100, 100, (2, 5, 7))
    b = rng.integers(-100, 100, (7, 3))
    np.testing.assert_array_equal(exact_matmul(a, b, 7 * 100 * 100), a @ b)
    assert exact_matmul(np.zeros((0, 7), dtype=np.int64), b, 1).shape == (0, 3)


# =================================================================================================
# run_integer on both sides of the bounds, against the exact reference
# =================================================================================================

class _MatmulSpy:
    """Records the bound of every exact_matmul call made through ``module``."""

    def __init__(self, monkeypatch, module=integer_model):
        self.bounds = []
        real = exact_matmul

        def spy(a, b, bound, **kwargs):
            self.bounds.append(bound)
            return real(a, b, bound, **kwargs)

        monkeypatch.setattr(module, "exact_matmul", spy)

    def kinds(self):
        return [np.dtype(exact_dtype(bound)).name for bound in self.bounds]


def _large_s5(H, P, *, quant, seed=1):
    """An s5 layer with slow poles and Bbar and C near the top of their formats."""
    cfg = base_dict("s5", H, P, **quant)
    rng = np.random.default_rng([SEED, seed, H, P])
    c_top = parse_config(cfg).quant.c.format.max_value
    weights = SSMWeights.from_arrays(
        "s5", Abar=0.999 * np.exp(1j * rng.uniform(-0.05, 0.05, P)),
        Bbar=rng.uniform(0.5, 1.0, (P, H)) * np.exp(1j * rng.uniform(-3, 3, (P, H))),
        C=c_top * rng.uniform(0.9, 1.0, (H, P)) * np.exp(1j * rng.uniform(-3, 3, (H, P))),
        D=rng.uniform(-1, 1, H), channels=H, states=P)
    return quantize_model(parse_config(cfg), weights)


def _extreme_inputs(model, T=12, batch=2, seed=0):
    f = model.config.quant.input.format
    rng = np.random.default_rng([SEED, seed])
    u = np.where(rng.random((batch, T, model.channels)) < 0.8, f.max_int, f.min_int)
    u[:, T // 2:] = rng.integers(f.min_int, f.max_int + 1, (batch, T - T // 2, model.channels))
    return u


def _aligned_s5(P, int_bits):
    """An s5 layer whose readout sum uses every bit: real poles and Bbar along 1 + i drive both
    parts of every state to the top of its 24-bit format, C = top (1 - i) adds every product
    with the same sign, and the last state's Re C is one LSB lower (even), so the exact sum is
    odd; beyond 2**53 float64 cannot hold it."""
    quant = {"c": {"format": "fixed<24,1>"}, "bbar": {"format": "fixed<16,2>"}}
    if int_bits is not None:
        quant["state"] = {"format": "fixed<24,8>", "int_bits": int_bits}
    cfg = base_dict("s5", 1, P, **quant)
    fmt = parse_config(cfg).quant.c.format
    c = np.full((1, P), fmt.max_value * (1 - 1j))
    c[0, -1] -= fmt.lsb
    weights = SSMWeights.from_arrays("s5", Abar=np.full(P, 0.999), Bbar=np.full((P, 1), 1.3 + 1.3j),
                                     C=c, D=np.array([0.5]), channels=1, states=P)
    return quantize_model(parse_config(cfg), weights)


READOUT_CASES = [   # (label, P, per-mode int bits, expected type of the readout product)
    ("uniform, bound = 2**53", 64, None, "float64"),
    ("uniform, one state more", 65, None, "int64"),
    ("per-mode spread 5 (just below)", 2, [8, 3], "float64"),
    ("per-mode spread 6 (just above)", 2, [8, 2], "int64"),
]


@pytest.mark.parametrize("label, P, int_bits, expect", READOUT_CASES,
                         ids=[c[0] for c in READOUT_CASES])
def test_s5_readout_product_around_2_53(label, P, int_bits, expect, monkeypatch):
    """Re(C x) summed over the states: 24-bit C and states give 2 * 2**46 per state (times
    2**(Fx_max - Fx_p) for per-mode formats), so the bound crosses 2**53 at the given sizes."""
    model = _aligned_s5(P, int_bits)
    spy = _MatmulSpy(monkeypatch)
    f = model.config.quant.input.format
    u = np.full((2, 24, 1), f.max_int)
    u[1, 18:] = f.min_int
    y, xr, xi = assert_matches_reference(model, u, f"s5 readout {label}")
    assert spy.kinds()[-1] == expect, (label, spy.bounds)
    layer = integer_model._Layer(model)
    rows = np.concatenate([xr, xi], axis=2).reshape(-1, 2 * P)
    exact = exact_matmul(rows, layer.c_matrix, layer.c_matmul_bound)
    assert np.abs(exact).max() > FLOAT64_EXACT_MAX // 2, f"{label}: the sums stay small"
    if expect == "int64":      # the sums do pass 2**53: a float64 product would round them
        rounded = (rows.astype(np.float64) @ layer.c_matrix.astype(np.float64)).astype(np.int64)
        assert np.any(rounded != exact), f"{label}: float64 would have been exact"


DRIVE_CASES = [   # (label, H, bbar/input width, expected float type of the Bbar u product)
    ("2**24 exactly", 4, 12, "float32"),
    ("one channel beyond 2**24", 5, 12, "float64"),
    ("2**53 exactly", 128, 24, "float64"),
    ("one channel beyond 2**53", 129, 24, "int64"),
]


@pytest.mark.parametrize("label, H, width, expect", DRIVE_CASES, ids=[c[0] for c in DRIVE_CASES])
def test_s5_input_product_around_the_float_limits(label, H, width, expect, monkeypatch):
    """Bbar u summed over the channels: H products of two W-bit integers, bound H 2**(2W-2)."""
    quant = {"bbar": {"format": f"fixed<{width},1>"}, "input": {"format": f"fixed<{width},4>"}}
    model = _large_s5(H, 1, quant=quant, seed=2)
    spy = _MatmulSpy(monkeypatch)
    assert_matches_reference(model, _extreme_inputs(model, T=6), f"s5 input {label}")
    assert spy.kinds()[0] == expect, (label, spy.bounds)


def _explicit(kind, *, exact_terms: bool):
    """Explicit (narrow) accumulators whose terms enter exactly (fraction bits and width to
    spare: a plain shift, folded into a product) or must be requantized one by one."""
    if exact_terms:
        acc = {"state_acc": {"format": "fixed<24,10>"}, "output_acc": {"format": "fixed<24,12>"}}
        quant = {"bbar": {"format": "fixed<5,0>"}, "input": {"format": "fixed<5,2>"},
                 "c": {"format": "fixed<5,1>"}, "d": {"format": "fixed<5,1>"},
                 "abar": {"format": "fixed<5,1>"}, "state": {"format": "fixed<8,4>"}}
    else:
        acc = {"state_acc": {"format": "fixed<12,6>", "rounding": "half_even"},
               "output_acc": {"format": "fixed<10,6>", "rounding": "floor", "overflow": "wrap"}}
        quant = {}
    H, P = (2, 6) if kind == "s4d" else (3, 5)
    cfg = base_dict(kind, H, P, **quant, **acc)
    cfg["weights"] = {"source": "random", "seed": 3, "dt_min": 0.01, "dt_max": 0.3}
    return load_model(parse_config(cfg))


@pytest.mark.parametrize("kind", ["s4d", "s5"])
@pytest.mark.parametrize("exact_terms", [True, False], ids=["terms-exact", "terms-requantized"])
def test_explicit_accumulators_both_entries(kind, exact_terms, monkeypatch):
    model = _explicit(kind, exact_terms=exact_terms)
    layer = integer_model._Layer(model)
    entries = (layer.enter_a, layer.enter_b, layer.enter_c)
    assert all((e.shift is not None) == exact_terms for e in entries), kind
    spy = _MatmulSpy(monkeypatch)
    assert_matches_reference(model, _extreme_inputs(model, T=20, seed=4),
                             f"{kind} explicit accumulators, exact terms {exact_terms}")
    if kind == "s5":
        assert len(spy.bounds) == (2 if exact_terms else 0), spy.bounds


# =================================================================================================
# Blocking and step
# =================================================================================================

@pytest.mark.parametrize("kind", ["s4d", "s5"])
@pytest.mark.parametrize("explicit", [False, True])
def test_blocking_and_step_agree_with_one_run(kind, explicit, monkeypatch):
    """Tiny batch chunks, time blocks and term blocks (many of each, ragged ends), and the
    one-timestep ``step`` API, give the values of a single run."""
    acc = ({"state_acc": {"format": "fixed<14,6>"}, "output_acc": {"format": "fixed<12,6>"}}
           if explicit else {})
    H, P = (2, 6) if kind == "s4d" else (2, 5)
    model = load_model(parse_config(base_dict(kind, H, P, **acc,
                                              state={"format": "fixed<16,6>",
                                                     "int_bits": [6, 4, 7, 5, 6, 3][:P]})))
    f = model.config.quant.input.format
    u = np.random.default_rng([SEED, 9]).integers(f.min_int, f.max_int + 1, (7, 23, H))
    y, (xr, xi) = run_integer(model, u, return_states=True)
    monkeypatch.setattr(integer_model, "LOOP_ELEMENTS", 3 * 2 * P)       # 3 sequences a chunk
    monkeypatch.setattr(integer_model, "BLOCK_ELEMENTS", 5 * 3 * 2 * P)  # 5 timesteps a block
    monkeypatch.setattr(integer_model, "TERM_ELEMENTS", 1)               # one row a term block
    y2, (xr2, xi2) = run_integer(model, u, return_states=True)
    for name, got, want in (("y", y2, y), ("re", xr2, xr), ("im", xi2, xi)):
        np.testing.assert_array_equal(got, want, err_msg=f"{kind} blocked run: {name}")
    sr = np.zeros((u.shape[0], P), dtype=np.int64)
    si = np.zeros_like(sr)
    for k in range(u.shape[1]):
        sr, si, yk = step(model, sr, si, u[:, k])
        np.testing.assert_array_equal(yk, y[:, k], err_msg=f"{kind} step {k}: y")
        np.testing.assert_array_equal(sr, xr[:, k], err_msg=f"{kind} step {k}: re")
        np.testing.assert_array_equal(si, xi[:, k], err_msg=f"{kind} step {k}: im")


# =================================================================================================
# The network's linear layers
# =================================================================================================

@pytest.mark.parametrize("inputs, expect", [(2, "float32"), (129, "int64")])
def test_network_linear_layers_choose_their_type_and_stay_exact(inputs, expect, monkeypatch):
    """The encoder's sum over 129 inputs of 24-bit x 24-bit products passes 2**53 (int64);
    small formats stay in float32. Both equal the exact network reference."""
    from ssmgen.golden import network
    rng, rng_np = random.Random(SEED), np.random.default_rng(SEED)
    for _ in range(20):            # resample the rare draw the quantizer rejects (test_network)
        data = network_dict(rng, kind="s5", H=2, modes=2, layers=1, inputs=inputs, classes=3,
                            steps=4)
        if expect == "int64":
            wide = {"rounding": "half_even", "overflow": "saturate"}
            data["network"]["quant"]["input"] = {"format": "fixed<24,2>", **wide}
            data["network"]["quant"]["encoder"] = {"format": "fixed<24,1>", **wide}
        config = parse_config(data)
        try:
            qnet = quantize_network(config, random_network_weights(rng_np, config))
            break
        except ConfigError:
            continue
    else:
        pytest.fail(f"no valid random network (seed {SEED})")
    spy = _MatmulSpy(monkeypatch, network)
    fmt = config.network.input.format
    u = rng_np.integers(fmt.min_int, fmt.max_int + 1, (2, config.network.steps, inputs))
    u[0] = np.where(u[0] < 0, fmt.min_int, fmt.max_int)          # extremes: all bits used
    logits, inter = run_integer_network(qnet, u, return_intermediates=True)
    ref_logits, ref_streams, ref_pool = ref_network(qnet, u.tolist())
    for l, (got, want) in enumerate(zip(inter["stream"], ref_streams)):
        assert got.tolist() == want, f"inputs {inputs}: stream {l} differs"
    assert inter["pool"].tolist() == ref_pool
    got = [[Fraction(int(v)) * pow2(-qnet.logits_frac) for v in row] for row in logits.tolist()]
    assert got == ref_logits, f"inputs {inputs}: logits differ"
    assert spy.kinds()[0] == expect, spy.bounds                 # the encoder
    assert spy.kinds()[1:] == ["float32"] * 2, spy.bounds        # mixing, decoder
