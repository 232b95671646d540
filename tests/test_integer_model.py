"""Golden integer model (golden/integer_model.py) against exact arithmetic.

The reference below (``ref_run``) is an independent implementation of the timestep specification
in ``golden/integer_model.py``'s module docstring using only Python ints and ``fractions.Fraction``:
no numpy arithmetic and no calls into ``golden/fixedpoint.py``. It reads the model's *integer*
weights and per-mode state integer bits (weight quantization is checked separately below) and the
formats from the config, then for every timestep, state and channel:

* computes every term exactly as a Fraction,
* accumulates: full precision = exact sum; explicit format = each term rounded into the
  accumulator format (its rounding, then its overflow), exact sum, overflow once,
* rounds into the state's own format ``fixed<W_x, I_p>`` and into the output format.

Every random generator is seeded; assertion messages name the case index, seed and position.
"""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import pytest

from ssmgen.golden.discretize import random_weights
from ssmgen.golden.float_model import run_recurrent
from ssmgen.golden.integer_model import (
    dequantize_output,
    quantize_input,
    run_integer,
    run_quantized,
)
from ssmgen.golden.quantize import load_model, quantize_abar, quantize_model
from ssmgen.spec.config import parse_config
from ssmgen.spec.errors import ConfigError
from ssmgen.spec.formats import (
    INT64_SAFE_BITS,
    MAX_FORMAT_WIDTH,
    FixedFormat,
    Overflow,
    Quantizer,
    Rounding,
)
from ssmgen.spec.weights import SSMWeights

SEED = 0x1A7E6E
ROUNDINGS = ("floor", "half_up", "half_even", "toward_zero")
OVERFLOWS = ("wrap", "saturate")
KINDS = ("s4d", "s5")
HALF = Fraction(1, 2)


# =================================================================================================
# Exact reference: Python ints and Fractions only
# =================================================================================================

def pow2(exponent: int) -> Fraction:
    return Fraction(1 << exponent) if exponent >= 0 else Fraction(1, 1 << -exponent)


def ref_round(value: Fraction, frac: int, rounding: str) -> int:
    """The integer q with q * 2**-frac = value rounded in mode ``rounding`` (exact)."""
    scaled = Fraction(value) * pow2(frac)
    low = scaled.numerator // scaled.denominator          # floor (denominator > 0)
    rest = scaled - low                                    # in [0, 1)
    if rounding == "floor":
        return low
    if rounding == "half_up":                              # ties toward +inf
        return low + (1 if rest >= HALF else 0)
    if rounding == "half_even":
        return low + (1 if rest > HALF or (rest == HALF and low % 2 == 1) else 0)
    if rounding == "toward_zero":
        return low + (1 if rest != 0 and scaled < 0 else 0)
    raise AssertionError(f"unknown rounding {rounding!r}")


def ref_overflow(q: int, width: int, overflow: str, events: Counter | None = None, tag=None) -> int:
    """Fit q into a signed width-bit integer; count out-of-range events under (tag, overflow)."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if events is not None and not lo <= q <= hi:
        events[(tag, overflow)] += 1
    if overflow == "saturate":
        return min(max(q, lo), hi)
    if overflow == "wrap":
        return (q - lo) % (1 << width) + lo
    raise AssertionError(f"unknown overflow {overflow!r}")


class RefFormat(NamedTuple):
    width: int
    frac: int
    rounding: str
    overflow: str


def ref_format(quantizer, int_bits: int | None = None) -> RefFormat:
    fmt = quantizer.format
    int_bits = fmt.int_bits if int_bits is None else int(int_bits)
    return RefFormat(fmt.width, fmt.width - int_bits, quantizer.rounding.value,
                     quantizer.overflow.value)


def ref_quantize(value: Fraction, fmt: RefFormat, events=None, tag=None) -> int:
    return ref_overflow(ref_round(value, fmt.frac, fmt.rounding), fmt.width, fmt.overflow,
                        events, tag)


def ref_accumulate(terms, acc: RefFormat | None, events=None, tag=None, sums=None) -> Fraction:
    """ACC(terms) of the spec: exact sum (acc None), or per-term quantization, exact sum,
    one overflow step. ``sums[tag]`` collects the extremes of the exact sum before any overflow
    step (full precision: its value; explicit: the integer sum of the quantized terms)."""
    if acc is None:
        total = sum(terms, Fraction(0))
        result = total
    else:
        total = sum(ref_quantize(t, acc, events, tag + "_term") for t in terms)
        result = Fraction(ref_overflow(total, acc.width, acc.overflow, events, tag)) * pow2(-acc.frac)
    if sums is not None:
        lo, hi = sums.get(tag, (total, total))
        sums[tag] = (min(lo, total), max(hi, total))
    return result


def ref_run(model, u_int, events: Counter | None = None, sums: dict | None = None):
    """Run the spec on integer inputs (nested lists (batch, T, H)); ``events`` counts overflow
    events per (place, mode), ``sums`` collects accumulator extremes (see ref_accumulate).

    Returns (y, xr, xi) as nested lists of ints: (batch, T, H) and (batch, T, P) twice.
    """
    q = model.config.quant
    kind, H, P = model.config.model.kind, model.config.model.channels, model.config.model.states
    fa, fb, fc, fd, fu = (q.abar.format.frac, q.bbar.format.frac, q.c.format.frac,
                          q.d.format.frac, q.input.format.frac)

    def frac_of(values, f):
        return [Fraction(int(v)) * pow2(-f) for v in values]

    ar, ai = frac_of(model.abar_re.tolist(), fa), frac_of(model.abar_im.tolist(), fa)
    d = frac_of(model.d.tolist(), fd)
    if kind == "s4d":
        M = P // H
        channel_of = [p // M for p in range(P)]
        br, bi = frac_of(model.bbar_re.tolist(), fb), frac_of(model.bbar_im.tolist(), fb)
        cr, ci = frac_of(model.c_re.tolist(), fc), frac_of(model.c_im.tolist(), fc)
        inputs = [[(br[p], bi[p], channel_of[p])] for p in range(P)]         # (Bre, Bim, h)
        outputs = [[(cr[p], ci[p], p) for p in range(h * M, (h + 1) * M)] for h in range(H)]
    else:
        inputs = [[(Fraction(int(model.bbar_re[p, h])) * pow2(-fb),
                    Fraction(int(model.bbar_im[p, h])) * pow2(-fb), h) for h in range(H)]
                  for p in range(P)]
        outputs = [[(Fraction(int(model.c_re[h, p])) * pow2(-fc),
                     Fraction(int(model.c_im[h, p])) * pow2(-fc), p) for p in range(P)]
                   for h in range(H)]
    state_fmts = [ref_format(q.state, int_bits) for int_bits in model.state_int_bits.tolist()]
    out_fmt = ref_format(q.output)
    sacc = None if q.state_acc is None else ref_format(q.state_acc)
    oacc = None if q.output_acc is None else ref_format(q.output_acc)

    ys, xrs, xis = [], [], []
    for seq in u_int:
        xr = [Fraction(0)] * P
        xi = [Fraction(0)] * P
        y_seq, xr_seq, xi_seq = [], [], []
        for step in seq:
            u = [Fraction(int(v)) * pow2(-fu) for v in step]
            new_r, new_i, ints_r, ints_i = [], [], [], []
            for p in range(P):
                re_terms = [ar[p] * xr[p] - ai[p] * xi[p]] + [b_re * u[h] for b_re, _, h in inputs[p]]
                im_terms = [ar[p] * xi[p] + ai[p] * xr[p]] + [b_im * u[h] for _, b_im, h in inputs[p]]
                fmt = state_fmts[p]
                qr = ref_quantize(ref_accumulate(re_terms, sacc, events, "state_acc", sums), fmt,
                                  events, "state")
                qi = ref_quantize(ref_accumulate(im_terms, sacc, events, "state_acc", sums), fmt,
                                  events, "state")
                ints_r.append(qr)
                ints_i.append(qi)
                new_r.append(Fraction(qr) * pow2(-fmt.frac))
                new_i.append(Fraction(qi) * pow2(-fmt.frac))
            xr, xi = new_r, new_i
            y_step = []
            for h in range(H):
                terms = [c_re * xr[p] - c_im * xi[p] for c_re, c_im, p in outputs[h]] + [d[h] * u[h]]
                y_step.append(ref_quantize(ref_accumulate(terms, oacc, events, "output_acc", sums),
                                           out_fmt, events, "output"))
            y_seq.append(y_step)
            xr_seq.append(ints_r)
            xi_seq.append(ints_i)
        ys.append(y_seq)
        xrs.append(xr_seq)
        xis.append(xi_seq)
    return ys, xrs, xis


def first_mismatch(got, want):
    """Index of the first differing element of two equal-shape nested lists, or None."""
    got, want = np.asarray(got, dtype=object), np.asarray(want, dtype=object)
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = np.argwhere(got != want)
    return None if diff.size == 0 else tuple(int(i) for i in diff[0])


def assert_matches_reference(model, u_int, label, events=None):
    """run_integer == ref_run bit for bit (outputs and state trajectory), and every exact
    accumulator sum fits the plan's ``sum_bits`` (the hardware adder width)."""
    y, (xr, xi) = run_integer(model, np.asarray(u_int, dtype=np.int64), return_states=True)
    sums = {}
    ry, rxr, rxi = ref_run(model, u_int, events, sums)
    for name, got, want in (("state re", xr.tolist(), rxr), ("state im", xi.tolist(), rxi),
                            ("output", y.tolist(), ry)):
        at = first_mismatch(got, want)
        if at is not None:
            got_v, want_v = np.asarray(got, dtype=object)[at], np.asarray(want, dtype=object)[at]
            pytest.fail(f"{label}: {name} differs at (batch, time, index) {at}: run_integer "
                        f"{got_v}, exact reference {want_v}")
    for tag, plan in (("state_acc", model.state_acc), ("output_acc", model.output_acc)):
        lo, hi = sums.get(tag, (0, 0))
        scale = pow2(plan.frac) if plan.full_precision else 1
        lo, hi = lo * scale, hi * scale
        assert lo.denominator == 1 and hi.denominator == 1
        assert -(1 << (plan.sum_bits - 1)) <= lo and hi < 1 << (plan.sum_bits - 1), (
            f"{label}: {tag} exact sums span {lo}..{hi}, more than {plan.sum_bits} bits ({plan})")
    return y, xr, xi


# --- the reference's own primitives, against hand-worked values ---------------------------------

@pytest.mark.parametrize("value, expected", [
    # value: floor, half_up, half_even, toward_zero (to integers, frac 0)
    (Fraction(5, 2), (2, 3, 2, 2)), (Fraction(-5, 2), (-3, -2, -2, -2)),
    (Fraction(7, 2), (3, 4, 4, 3)), (Fraction(-7, 2), (-4, -3, -4, -3)),
    (Fraction(9, 4), (2, 2, 2, 2)), (Fraction(-9, 4), (-3, -2, -2, -2)),
    (Fraction(11, 4), (2, 3, 3, 2)), (Fraction(-11, 4), (-3, -3, -3, -2)),
    (Fraction(3), (3, 3, 3, 3)), (Fraction(-3), (-3, -3, -3, -3)), (Fraction(0), (0, 0, 0, 0)),
])
def test_reference_rounding(value, expected):
    assert tuple(ref_round(value, 0, r) for r in ROUNDINGS) == expected
    # the same values at 3 fraction bits: value * 8 is an integer, no rounding
    assert all(ref_round(value / 8, 3, r) == ref_round(value, 0, r) for r in ROUNDINGS)


def test_reference_overflow():
    assert [ref_overflow(q, 4, "wrap") for q in (7, 8, 9, -8, -9, 23, -24)] == [7, -8, -7, -8, 7, 7, -8]
    assert [ref_overflow(q, 4, "saturate") for q in (7, 8, 100, -8, -9, -100)] == [7, 7, 7, -8, -8, -8]
    events = Counter()
    ref_overflow(8, 4, "wrap", events, "x")
    ref_overflow(7, 4, "wrap", events, "x")
    assert events == Counter({("x", "wrap"): 1})


# =================================================================================================
# Random configs
# =================================================================================================

def fmt(width, int_bits):
    return f"fixed<{width},{int_bits}>"


def base_dict(kind, H, states, **quant):
    """A valid config dict with moderately wide formats; ``quant`` overrides quant sections."""
    model = ({"kind": "s4d", "channels": H, "state_size": 2 * (states // H)} if kind == "s4d"
             else {"kind": "s5", "channels": H, "states": states})
    q = {"defaults": {"rounding": "half_even", "overflow": "saturate"},
         "abar": {"format": "fixed<16,1>"}, "bbar": {"format": "fixed<16,0>"},
         "c": {"format": "fixed<16,2>"}, "d": {"format": "fixed<16,3>"},
         "input": {"format": "fixed<16,4>"}, "state": {"format": "fixed<24,8>"},
         "output": {"format": "fixed<24,8>"}}
    q.update(quant)
    return {"model": model, "weights": {"source": "random", "seed": 1}, "quant": q}


class Case(NamedTuple):
    index: int
    seed: int
    config: dict
    model: object
    u: list          # nested (batch, T, H) Python ints
    rejected: tuple  # messages of rejected draws (int64 limit, "auto" too wide, weight wraps)


def _draw_config(rng: random.Random, index: int) -> dict:
    kind = KINDS[index % 2]
    t = index // 2                                   # per-kind counter: cycles the modes below
    H = rng.randint(1, 3)
    if kind == "s4d":
        states = H * rng.randint(1, max(1, 8 // H))
    else:
        states = rng.randint(1, 8)
    dt_max = rng.choice([0.1, 0.3, 1.0])
    cfg = base_dict(kind, H, states)
    cfg["weights"] = {"source": "random", "seed": rng.randrange(10_000),
                      "dt_min": dt_max / 10, "dt_max": dt_max}
    q = cfg["quant"]
    q["defaults"] = {"rounding": rng.choice(ROUNDINGS), "overflow": rng.choice(OVERFLOWS)}

    def component(width_range, int_range, **extra):
        w = rng.randint(*width_range)
        i = rng.randint(int_range[0], min(int_range[1], w))
        table = {"format": fmt(w, i)}
        for key in ("rounding", "overflow"):
            if rng.random() < 0.7:
                table[key] = rng.choice(ROUNDINGS if key == "rounding" else OVERFLOWS)
        table.update(extra)
        return table

    abar_w = rng.choice([2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24])
    abar_i = rng.choice([1, 2])
    q["abar"] = {"format": fmt(abar_w, abar_i), "rounding": rng.choice(ROUNDINGS),
                 # at I=1 a pole near +1 rounds to 1.0, which wraps: wrap only with I=2
                 "overflow": "saturate" if abar_i == 1 else rng.choice(OVERFLOWS)}
    q["bbar"] = component((2, 24), (-4, 2))
    q["c"] = component((2, 24), (-1, 2))
    q["d"] = component((2, 24), (0, 3))
    q["input"] = component((2, 24), (-2, 8))
    # state, output, accumulators: every rounding x overflow per kind within 8 consecutive cases
    cycled = {}
    for j, name in enumerate(("state", "output", "state_acc", "output_acc")):
        cycled[name] = {"rounding": ROUNDINGS[(t + j) % 4], "overflow": OVERFLOWS[(t // 4 + j) % 2]}
    state_w = rng.randint(4, 24)
    state_i = rng.randint(-2, min(state_w, 10))
    q["state"] = {"format": fmt(state_w, state_i), **cycled["state"]}
    int_bits_mode = ("none", "list", "auto")[(t // 2 + index) % 3]
    if int_bits_mode == "list":
        q["state"]["int_bits"] = [rng.randint(-3, min(state_w, 8)) for _ in range(states)]
    elif int_bits_mode == "auto":
        q["state"]["int_bits"] = "auto"
    out_w = rng.randint(2, 24)
    q["output"] = {"format": fmt(out_w, rng.randint(-2, min(out_w, 10))), **cycled["output"]}
    for name, explicit in (("state_acc", t % 3 != 0), ("output_acc", t % 3 != 1)):
        if explicit:
            w = rng.randint(2, 24)
            q[name] = {"format": fmt(w, rng.randint(-2, min(w, 12))), **cycled[name]}
        elif rng.random() < 0.5:
            q[name] = {"format": "full"}
    return cfg


def _draw_inputs(rng: random.Random, model, batch=2) -> list:
    fmt_u = model.config.quant.input.format
    lo, hi = fmt_u.min_int, fmt_u.max_int
    T = rng.randint(10, 30)
    H = model.channels
    uniform = [[rng.randint(lo, hi) for _ in range(H)] for _ in range(T)]
    bursts = []
    while len(bursts) < T:        # runs of extreme values: drive states and sums into overflow
        value = [rng.choice([lo, hi, lo, hi, 0, rng.randint(lo, hi)]) for _ in range(H)]
        bursts.extend([value] * rng.randint(2, 8))
    return [uniform, bursts[:T]][:batch]


def make_case(index: int) -> Case:
    seed = SEED + index
    rng = random.Random(seed)
    rejected = []
    for _ in range(40):
        cfg = _draw_config(rng, index)
        try:
            model = load_model(parse_config(cfg))
        except ConfigError as exc:    # a legitimate rejection (checked by dedicated tests)
            rejected.append(str(exc))
            continue
        return Case(index, seed, cfg, model, _draw_inputs(rng, model), tuple(rejected))
    raise AssertionError(f"case {index} (seed {seed}): no valid config in 40 draws: {rejected[-3:]}")


N_CASES = 96
N_CHUNKS = 4


def describe(case: Case) -> str:
    q = case.config["quant"]
    parts = [f"{k}={v}" for k, v in q.items() if k != "defaults"]
    return (f"case {case.index} (seed {case.seed}) {case.config['model']} "
            f"defaults={q['defaults']} " + " ".join(parts))


@pytest.mark.parametrize("chunk", range(N_CHUNKS))
def test_random_configs_match_exact_reference(chunk):
    events = Counter()
    saturating_hits = 0
    for index in range(chunk, N_CASES, N_CHUNKS):
        case = make_case(index)
        case_events = Counter()
        _, xr, xi = assert_matches_reference(case.model, case.u, describe(case), case_events)
        events += case_events
        # a saturating state that went out of range must sit at the format's min or max
        if case_events[("state", "saturate")]:
            w = case.model.config.quant.state.format.width
            lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
            hit = np.any((xr == lo) | (xr == hi) | (xi == lo) | (xi == hi))
            assert hit, f"{describe(case)}: reference saturated the state but it never hit {lo}/{hi}"
            saturating_hits += 1
    # this chunk really exercised overflow, in every place that has an overflow step
    for where in ("state", "output", "state_acc", "output_acc", "state_acc_term", "output_acc_term"):
        for mode in OVERFLOWS:
            assert events[(where, mode)] > 0, (
                f"chunk {chunk}: no {mode} overflow event in {where}; events: {dict(events)}")
    assert saturating_hits >= 2, f"chunk {chunk}: only {saturating_hits} cases saturated the state"


def test_random_configs_cover_the_config_space():
    """The generator reaches every kind x (rounding, overflow) on state, output and explicit
    accumulators, full and explicit accumulators, per-mode lists and "auto", the extreme widths."""
    seen = Counter()
    rejected = 0
    for index in range(N_CASES):
        case = make_case(index)
        rejected += len(case.rejected)
        q = case.model.config.quant
        kind = case.model.kind
        for name in ("state", "output", "state_acc", "output_acc"):
            quantizer = getattr(q, name)
            if quantizer is None:
                seen[(kind, name, "full")] += 1
            else:
                seen[(kind, name, quantizer.rounding.value, quantizer.overflow.value)] += 1
        seen[(kind, "int_bits", type(q.state_int_bits).__name__)] += 1
        seen[("abar width", q.abar.format.width)] += 1
        seen[("state width", q.state.format.width)] += 1
        assert case.model.state_acc.full_precision == (q.state_acc is None)
    missing = []
    for kind in KINDS:
        for name in ("state", "output", "state_acc", "output_acc"):
            missing += [(kind, name, r, o) for r in ROUNDINGS for o in OVERFLOWS
                        if not seen[(kind, name, r, o)]]
        missing += [(kind, n, "full") for n in ("state_acc", "output_acc") if not seen[(kind, n, "full")]]
        missing += [(kind, "int_bits", t) for t in ("NoneType", "tuple", "str")
                    if not seen[(kind, "int_bits", t)]]
    missing += [k for k in (("abar width", 2), ("abar width", 24)) if not seen[k]]
    assert not missing, f"config space not covered: {missing}"
    assert any(seen[("state width", w)] for w in range(4, 8)), "no narrow state format drawn"
    assert any(seen[("state width", w)] for w in range(20, 25)), "no wide state format drawn"
    assert rejected < 3 * N_CASES, f"{rejected} rejected draws for {N_CASES} cases"


# =================================================================================================
# Weight quantization (what ref_run takes as given)
# =================================================================================================

@pytest.mark.parametrize("index", [0, 1, 5, 10, 21, 34])
def test_weights_quantize_exactly(index):
    """Bbar, C, D are the float weights rounded in their format's mode and clamped (an overflow
    would have been a ConfigError under wrap); poles the stability correction left alone are
    plainly rounded; ``dequantized`` is the exact value of the integers."""
    case = make_case(index)
    model, q = case.model, case.model.config.quant
    w = model.float_weights
    label = describe(case)
    for name, values, ints_re, ints_im, quantizer in (
            ("bbar", w.bbar, model.bbar_re, model.bbar_im, q.bbar),
            ("c", w.c, model.c_re, model.c_im, q.c),
            ("d", w.d, model.d, None, q.d)):
        fmt_ = ref_format(quantizer)._replace(overflow="saturate")
        for pos, value in np.ndenumerate(values):
            value = complex(value)
            want_re = ref_quantize(Fraction(value.real), fmt_)
            assert int(ints_re[pos]) == want_re, f"{label}: {name}{pos} re"
            if ints_im is not None:
                assert int(ints_im[pos]) == ref_quantize(Fraction(value.imag), fmt_), f"{label}: {name}{pos} im"
    fmt_a = ref_format(q.abar)._replace(overflow="saturate")
    fa = fmt_a.frac
    plain = 0
    for p, pole in enumerate(w.abar.tolist()):
        r0, i0 = ref_quantize(Fraction(pole.real), fmt_a), ref_quantize(Fraction(pole.imag), fmt_a)
        if r0 * r0 + i0 * i0 < 1 << (2 * fa):
            plain += 1
            assert (int(model.abar_re[p]), int(model.abar_im[p])) == (r0, i0), f"{label}: abar[{p}]"
    assert model.abar_corrected == w.states - plain, label
    deq = model.dequantized()
    for name, frac in (("abar", q.abar.format.frac), ("bbar", q.bbar.format.frac),
                       ("c", q.c.format.frac)):
        arr = getattr(deq, name)
        assert np.array_equal(np.ldexp(arr.real, frac).astype(np.int64), getattr(model, f"{name}_re"))
        assert np.array_equal(np.ldexp(arr.imag, frac).astype(np.int64), getattr(model, f"{name}_im"))
    assert np.array_equal(np.ldexp(deq.d, q.d.format.frac).astype(np.int64), model.d)


def test_quantize_input_matches_reference():
    rng = random.Random(SEED + 7)
    for index in range(8):
        model = make_case(index).model
        q = model.config.quant.input
        span = 2.0 ** (q.format.int_bits + 1)          # reaches beyond the range: overflow
        u = [[[rng.uniform(-span, span) for _ in range(model.channels)] for _ in range(5)]]
        u[0][0][0] = q.format.lsb * 2.5                 # a tie for the half modes
        got = quantize_input(model, u).tolist()
        want = [[[ref_quantize(Fraction(v), ref_format(q)) for v in step] for step in seq] for seq in u]
        assert got == want, f"case {index}: {q}"
        y = run_quantized(model, u)
        assert np.array_equal(y, dequantize_output(model, run_integer(model, quantize_input(model, u))))


# =================================================================================================
# Impulse and step responses against the float model
# =================================================================================================

def _lsb_error_bound(model, steps):
    """Bound on |y_int - y_float| (float model on the dequantized weights, same integer inputs),
    per (time, output channel), for full-precision accumulators and no saturation anywhere:

    The only differences are the roundings. Each step the state rounding adds e_k with
    |Re e|, |Im e| <= dx_p (one state LSB 2**-Fx_p for floor / toward_zero, half of it for the
    half modes), so the state error obeys eps_k = Abar eps_{k-1} + e_k and
    |eps_p[k]| <= sqrt(2) dx_p sum_{j<=k} |Abar_p|^j. The output adds
    |Re(C eps)| <= sum_p |C_hp| |eps_p| and its own rounding dy. 1e-9 absorbs float64 error.
    """
    q = model.config.quant
    deq = model.dequantized()
    half = {"floor": 1.0, "toward_zero": 1.0, "half_up": 0.5, "half_even": 0.5}
    dx = half[q.state.rounding.value] * np.ldexp(1.0, -model.state_frac)             # (P,)
    dy = half[q.output.rounding.value] * q.output.format.lsb
    mag = np.abs(deq.abar)
    k = np.arange(steps)[:, None]
    geometric = (1 - mag ** (k + 1)) / (1 - mag)                                       # (T, P)
    state_err = np.sqrt(2) * dx * geometric                                            # (T, P)
    return state_err @ np.abs(deq.dense_c()).T + dy + 1e-9                             # (T, H)


def _wide_config(kind, H, states, rounding, **weights):
    cfg = base_dict(kind, H, states,
                    defaults={"rounding": rounding, "overflow": "saturate"},
                    input={"format": "fixed<16,3>"},
                    state={"format": "fixed<24,8>", "int_bits": "auto"},
                    output={"format": "fixed<24,8>"})
    cfg["weights"] = {"source": "random", "seed": 11, **weights}
    return load_model(parse_config(cfg))


@pytest.mark.parametrize("kind, H, states", [("s4d", 2, 8), ("s5", 3, 6), ("s5", 1, 1)])
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_impulse_response_matches_float_model(kind, H, states, rounding):
    model = _wide_config(kind, H, states, rounding)
    T = 200
    u_int = np.zeros((H, T, H), dtype=np.int64)
    u_int[np.arange(H), 0, np.arange(H)] = 1 << model.config.quant.input.format.frac   # 1.0
    y_int, (xr, xi) = run_integer(model, u_int, return_states=True)
    w = model.config.quant.state.format.width
    assert np.abs(np.concatenate([xr, xi])).max() < (1 << (w - 1)) - 1, "state saturated"
    y = dequantize_output(model, y_int)
    y_float = run_recurrent(model.dequantized(), np.ldexp(u_int, -model.config.quant.input.format.frac))
    bound = _lsb_error_bound(model, T)[None]                                          # (1, T, H)
    err = np.abs(y - y_float)
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert np.all(err <= bound), (f"{kind} H={H} P={states} {rounding}: error {err[worst]:.3g} > "
                                  f"bound {bound[0, worst[1], worst[2]]:.3g} at (batch, time, h) {worst}")
    # the bound is tight enough to mean something: far below the response itself
    assert bound.max() < 1e-3 * np.abs(y_float).max()


@pytest.mark.parametrize("kind, H, states", [("s4d", 2, 8), ("s5", 3, 6)])
@pytest.mark.parametrize("rounding", ["floor", "half_even"])
def test_step_response_approaches_closed_form(kind, H, states, rounding):
    """u = U constant: the state tends to Bbar U / (1 - Abar), the output to
    Re(C (1 - Abar)^-1 Bbar) U + D U (for the dequantized weights). |Abar| <= exp(-0.25) with
    dt >= 0.5, so after T=150 steps the transient |Abar|^T is below 1e-16 and what remains is the
    rounding error, bounded as for the impulse response with its geometric sums at 1/(1-|Abar|)."""
    model = _wide_config(kind, H, states, rounding, dt_min=0.5, dt_max=1.0)
    fu = model.config.quant.input.format.frac
    U = np.array([1.5, -0.75, 2.25][:H])
    T = 150
    u_int = np.broadcast_to(np.ldexp(U, fu).astype(np.int64), (1, T, H))
    y = dequantize_output(model, run_integer(model, u_int))
    deq = model.dequantized()
    gain = (deq.dense_c() @ (deq.dense_b() / (1 - deq.abar)[:, None])).real           # (H, H)
    y_ss = gain @ U + deq.d * U
    bound = _lsb_error_bound(model, 10 * T)[-1] + 1e-12
    assert np.all(np.abs(y[0, -1] - y_ss) <= bound), (y[0, -1], y_ss, bound)
    assert np.all(np.abs(y[0, -10:] - y_ss) <= bound)       # settled, not passing through
    # the float recurrence gets there too (sanity of the closed form itself)
    y_float = run_recurrent(deq, np.ldexp(u_int, -fu))
    np.testing.assert_allclose(y_float[0, -1], y_ss, rtol=1e-9, atol=1e-12)


# =================================================================================================
# int64 safety
# =================================================================================================

def _widest(**quant):
    base = {"abar": {"format": "fixed<24,1>"}, "bbar": {"format": "fixed<24,0>"},
            "c": {"format": "fixed<24,1>"}, "d": {"format": "fixed<24,2>"},
            "input": {"format": "fixed<24,4>"}, "state": {"format": "fixed<24,8>"},
            "output": {"format": "fixed<24,8>"}}
    base.update(quant)
    return base


WIDEST = [
    ("full", {}),
    ("full, tiny state", _widest(state={"format": "fixed<24,-2>"})),
    ("full, per-mode", _widest(state={"format": "fixed<24,8>", "int_bits": [2, 12, 6, 9]})),
    ("full, auto", _widest(state={"format": "fixed<24,8>", "int_bits": "auto"})),
    ("explicit wrap", _widest(state_acc={"format": "fixed<24,10>", "overflow": "wrap"},
                              output_acc={"format": "fixed<24,10>", "overflow": "wrap"})),
    ("explicit saturate", _widest(state_acc={"format": "fixed<24,6>", "rounding": "floor"},
                                  output_acc={"format": "fixed<24,4>", "rounding": "half_up"})),
    ("explicit, coarse", _widest(state_acc={"format": "fixed<24,24>"},
                                 output_acc={"format": "fixed<24,24>"},
                                 state={"format": "fixed<24,24>"}, input={"format": "fixed<24,24>"},
                                 output={"format": "fixed<24,24>"})),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("label, quant", WIDEST, ids=[w[0] for w in WIDEST])
def test_widest_formats_run_exactly(kind, label, quant):
    """Every component at MAX_FORMAT_WIDTH bits: accepted, every plan within int64, and the
    int64 model equals the Python-int reference for extreme inputs (constant max/min, alternating
    max/min, random)."""
    assert MAX_FORMAT_WIDTH == 24
    H, P = 2, 4
    for rounding in ROUNDINGS:
        quant_ = {**quant, "defaults": {"rounding": rounding, "overflow": "saturate"}}
        model = load_model(parse_config(base_dict(kind, H, P, **quant_)))
        for plan in (model.state_acc, model.output_acc):
            assert plan.sum_bits <= INT64_SAFE_BITS
        f = model.config.quant.input.format
        rng = random.Random(SEED + 24)
        T = 12
        u = [[[f.max_int] * H] * T, [[f.min_int] * H] * T,
             [[f.max_int if (k + h) % 2 else f.min_int for h in range(H)] for k in range(T)],
             [[rng.randint(f.min_int, f.max_int) for _ in range(H)] for _ in range(T)]]
        assert_matches_reference(model, u, f"{kind} {label} {rounding}")


REJECTED = [
    ("state_acc full", _widest(bbar={"format": "fixed<24,-24>"}, input={"format": "fixed<24,-24>"}),
     r"quant\.state_acc: the full-precision sum needs \d+ bits"),
    ("output_acc full", _widest(c={"format": "fixed<24,-24>"}, state={"format": "fixed<24,24>"},
                                input={"format": "fixed<24,24>"}, d={"format": "fixed<24,24>"}),
     r"quant\.output_acc: the full-precision sum needs \d+ bits"),
    ("state_acc align", _widest(state={"format": "fixed<24,24>"}, state_acc={"format": "fixed<24,-24>"}),
     r"quant\.state_acc: aligning a term"),
    ("output_acc align", _widest(state={"format": "fixed<24,24>"}, input={"format": "fixed<24,24>"},
                                 output_acc={"format": "fixed<24,-24>"}),
     r"quant\.output_acc: aligning a term"),
    # the accumulator result moved into a format with many more fraction bits (exact left shift)
    ("output_acc -> output", _widest(output={"format": "fixed<24,-24>"},
                                     output_acc={"format": "fixed<24,24>"}),
     r"quant\.output_acc: .*quant\.output \(frac 48\) needs \d+ bits"),
    ("state_acc -> state", _widest(state={"format": "fixed<24,-24>"}, state_acc={"format": "fixed<24,24>"},
                                   output_acc={"format": "fixed<24,8>"}),
     r"quant\.state_acc: .*quant\.state \(frac 48\) needs \d+ bits"),
    ("output_acc full -> output", _widest(c={"format": "fixed<24,24>"}, state={"format": "fixed<24,24>"},
                                          d={"format": "fixed<24,24>"}, input={"format": "fixed<24,24>"},
                                          output={"format": "fixed<24,-24>"}),
     r"quant\.output_acc: .*quant\.output \(frac 48\) needs \d+ bits"),
    # per-mode formats: the mode with the most integer bits is the one shifted furthest left
    ("state_acc per-mode", _widest(state={"format": "fixed<24,24>", "int_bits": [0, 24, 24, 24]},
                                   input={"format": "fixed<24,7>"}, bbar={"format": "fixed<24,8>"}),
     r"quant\.state_acc: the full-precision sum needs \d+ bits"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("label, quant, message", REJECTED, ids=[r[0] for r in REJECTED])
def test_accumulators_beyond_int64_are_rejected(kind, label, quant, message):
    config = parse_config(base_dict(kind, 2, 4, **quant))
    weights = random_weights(kind, channels=2, states=4, seed=1)
    with pytest.raises(ConfigError, match=message) as info:
        quantize_model(config, weights)
    assert str(INT64_SAFE_BITS) in str(info.value)


def _spread_model(kind):
    """Per-mode int bits 0 and 12 with a slow pole: the wide mode's Abar x term, aligned to the
    fraction bits of the narrow mode, dominates the state accumulator."""
    H, P = 1, 2
    cfg = base_dict(kind, H, P, abar={"format": "fixed<16,1>"}, bbar={"format": "fixed<16,2>"},
                    c={"format": "fixed<16,2>"}, d={"format": "fixed<16,2>"},
                    input={"format": "fixed<16,3>"},
                    state={"format": "fixed<16,0>", "int_bits": [0, 12]},
                    output={"format": "fixed<16,12>"})
    shape = (1, 2) if kind == "s4d" else (2,)
    weights = SSMWeights.from_arrays(
        kind, Abar=np.full(shape, 0.99), Bbar=np.full(shape if kind == "s4d" else (2, 1), 1.9),
        C=np.full(shape if kind == "s4d" else (1, 2), 1.5), D=np.array([0.5]), channels=H, states=P)
    return quantize_model(parse_config(cfg), weights)


@pytest.mark.parametrize("kind", KINDS)
def test_full_precision_width_holds_every_mode(kind):
    """The derived full-precision widths hold the worst case of *every* state, whatever its
    per-mode format (computed here term by term), and the exact sums the reference meets on a
    worst-case input fit them (the hardware adder is ``sum_bits`` wide)."""
    model = _spread_model(kind)
    q = model.config.quant
    fa, fb, fc, fd, fu = (q.abar.format.frac, q.bbar.format.frac, q.c.format.frac,
                          q.d.format.frac, q.input.format.frac)
    wa, wb, wc, wd, wx, wu = (q.abar.format.width, q.bbar.format.width, q.c.format.width,
                              q.d.format.width, q.state.format.width, q.input.format.width)
    fx = [int(f) for f in model.state_frac]
    n_in = 1 if kind == "s4d" else model.channels
    plan = model.state_acc
    need = 0
    for fxp in fx:
        assert plan.frac >= fa + fxp and plan.frac >= fb + fu
        total = ((2 << (wa - 1 + wx - 1)) << (plan.frac - fa - fxp)) + \
            n_in * ((1 << (wb - 1 + wu - 1)) << (plan.frac - fb - fu))
        need = max(need, total.bit_length() + 1)
    assert plan.sum_bits >= need, f"state_acc: {plan.sum_bits} bits, worst mode needs {need}"
    plan = model.output_acc
    total = sum((2 << (wc - 1 + wx - 1)) << (plan.frac - fc - fxp) for fxp in fx) + \
        ((1 << (wd - 1 + wu - 1)) << (plan.frac - fd - fu))
    assert plan.sum_bits >= total.bit_length() + 1, "output_acc"

    # drive the wide mode to its largest value: assert_matches_reference checks that the exact
    # sums fit sum_bits (with the widths derived from the narrowest mode alone they did not)
    T = 400
    u = [[[q.input.format.max_int]] * T]
    _, xr, _ = assert_matches_reference(model, u, f"{kind} per-mode spread")
    assert abs(xr[0, -1, 1]) > 1 << 13, "the wide mode did not grow"


# =================================================================================================
# "auto" state integer bits
# =================================================================================================

def _worst_case_inputs(model, T, rng):
    """Inputs at full magnitude (min_int for negative signs: the larger magnitude), with signs
    aligned so that Re or Im of each state, positive or negative, is as large as possible at the
    last step: u_h[T-1-j] = sign(Re/Im(Abar^j Bbar_p,h)); plus random +-max sequences."""
    deq = model.dequantized()
    f = model.config.quant.input.format
    b = deq.dense_b()                                                   # (P, H)
    j = np.arange(T)[::-1]                                              # lag of each step
    seqs = []
    for p in range(model.states):
        impulse = deq.abar[p] ** j[:, None] * b[p][None, :]             # (T, H)
        for part in (impulse.real, impulse.imag):
            for sign in (1, -1):
                s = np.sign(sign * part)
                s[s == 0] = 1
                seqs.append(np.where(s > 0, f.max_int, f.min_int))
    for _ in range(4):
        seqs.append(np.where(rng.random((T, model.channels)) < 0.5, f.max_int, f.min_int))
    return np.stack(seqs).astype(np.int64)


AUTO_CASES = [  # (seed, state width, abar width, input format, dt range)
    (1, 16, 12, "fixed<8,3>", (0.02, 0.2)),
    (2, 8, 8, "fixed<6,1>", (0.2, 1.0)),
    (3, 6, 6, "fixed<6,0>", (0.3, 1.0)),
    (4, 12, 4, "fixed<8,3>", (0.05, 0.5)),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed, state_width, abar_width, input_fmt, dt", AUTO_CASES)
@pytest.mark.parametrize("rounding", ["floor", "half_even", "toward_zero"])
@pytest.mark.parametrize("state_acc", ["full", "fixed<12,8>"])
def test_auto_int_bits_never_overflow(kind, seed, state_width, abar_width, input_fmt, dt, rounding,
                                      state_acc):
    """With "auto", worst-case inputs never push a state out of its format: the trajectories
    under overflow="saturate" and overflow="wrap" are identical (they differ from the first
    overflow on), and the states do get near the top of their range (the bound is not slack).
    A coarse explicit state accumulator (4 fraction bits, same rounding) adds its own per-term
    rounding error, which the bound must include (floor: a bias of up to 1/16 per term)."""
    H, P = (2, 6) if kind == "s4d" else (2, 5)
    runs = []
    for overflow in OVERFLOWS:
        cfg = base_dict(kind, H, P, state_acc={"format": state_acc} if state_acc == "full" else
                        {"format": state_acc, "rounding": rounding, "overflow": "saturate"},
                        abar={"format": fmt(abar_width, 1)}, bbar={"format": "fixed<10,0>"},
                        input={"format": input_fmt},
                        state={"format": fmt(state_width, 0), "int_bits": "auto",
                               "rounding": rounding, "overflow": overflow},
                        output={"format": "fixed<16,8>"})
        cfg["weights"] = {"source": "random", "seed": seed, "dt_min": dt[0], "dt_max": dt[1]}
        model = load_model(parse_config(cfg))
        T = int(min(1000, 8 / max(1e-3, 1 - np.abs(model.dequantized().abar).max())))
        u = _worst_case_inputs(model, T, np.random.default_rng([SEED, seed]))
        _, (xr, xi) = run_integer(model, u, return_states=True)
        runs.append((xr, xi))
    label = f"{kind} seed={seed} state W={state_width} abar W={abar_width} {rounding} acc {state_acc}"
    (wr, wi), (sr, si) = runs
    bad = np.argwhere((wr != sr) | (wi != si))
    assert bad.size == 0, (f"{label}: state overflowed at (batch, time, p) {tuple(bad[0])}; "
                           f"int bits {model.state_int_bits}")
    if state_acc != "full":       # a coarse accumulator drops small terms: no peak to expect
        return
    peak = np.maximum(np.abs(sr), np.abs(si)).max(axis=(0, 1)) / (1 << (state_width - 1))
    assert peak.max() > 0.2, f"{label}: worst-case inputs reach only {peak.max():.3f} of the range"


# =================================================================================================
# Abar stability correction
# =================================================================================================

def _greedy_path(r, i, target_re: Fraction, target_im: Fraction, frac: int):
    """quantize_abar's documented correction, exactly: step one LSB toward 0 along the axis whose
    step lands closest to the float pole (ties: the real axis), until strictly inside."""
    radius2 = 1 << (2 * frac)
    while r * r + i * i >= radius2:
        steps = []
        if r:
            steps.append((r - (1 if r > 0 else -1), i))
        if i:
            steps.append((r, i - (1 if i > 0 else -1)))
        r, i = min(steps, key=lambda c: (c[0] - target_re) ** 2 + (c[1] - target_im) ** 2)
    return r, i


def _poles_near_circle(rng, n):
    angles = np.concatenate([rng.uniform(-np.pi, np.pi, n),
                             np.arange(8) * np.pi / 4, [0.0, np.pi / 2, np.pi, -np.pi / 2]])
    gaps = np.concatenate([10 ** rng.uniform(-12, -0.5, n), np.full(12, 1e-9)])
    return (1 - gaps) * np.exp(1j * angles)


@pytest.mark.parametrize("width", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("rounding", list(Rounding))
def test_abar_correction_pulls_poles_inside(width, rounding):
    """Poles within 1e-12..0.3 of the unit circle at 2..6 bits (fixed<W,1>, saturate): every
    |Abar_q| < 1 (exact integers), untouched poles are plainly rounded, corrected ones are the
    first stable point on the documented path from the rounded pole, within 2 LSB per axis."""
    rng = np.random.default_rng([SEED, width, list(Rounding).index(rounding)])
    abar = _poles_near_circle(rng, 300)
    assert np.all(np.abs(abar) < 1)
    quantizer = Quantizer(FixedFormat(width, 1), rounding, Overflow.SATURATE)
    re, im, corrected = quantize_abar(abar, quantizer, "correct")
    frac = width - 1
    scale = pow2(frac)
    fmt_ = RefFormat(width, frac, rounding.value, "saturate")
    outside = 0
    for p, pole in enumerate(abar.tolist()):
        r, i = int(re[p]), int(im[p])
        label = f"width {width} {rounding.value} seed {SEED} pole {p} = {pole!r} -> ({r}, {i})"
        assert r * r + i * i < 1 << (2 * frac), f"{label}: |Abar_q| >= 1"
        tr, ti = Fraction(pole.real) * scale, Fraction(pole.imag) * scale
        r0, i0 = ref_quantize(Fraction(pole.real), fmt_), ref_quantize(Fraction(pole.imag), fmt_)
        if r0 * r0 + i0 * i0 >= 1 << (2 * frac):
            outside += 1
        assert (r, i) == _greedy_path(r0, i0, tr, ti, frac), (
            f"{label}: not the first stable point on the path from ({r0}, {i0})")
        assert abs(r - tr) <= 2 and abs(i - ti) <= 2, f"{label}: more than 2 LSB from the float pole"
    assert corrected == outside
    if rounding is Rounding.TOWARD_ZERO:
        assert outside == 0, "rounding toward zero cannot move a pole outwards"
    else:
        assert outside > 0, "no pole needed correcting: the test is vacuous"


@pytest.mark.parametrize("width", [2, 3, 4, 5, 6])
def test_abar_reject_names_quant_abar(width):
    abar = np.array([0.1 + 0.2j, 0.7 + 0.7j, -0.99 + 0.1j, 0.999j])
    quantizer = Quantizer(FixedFormat(width, 1), Rounding.HALF_EVEN, Overflow.SATURATE)
    _, _, corrected = quantize_abar(abar, quantizer, "correct")
    assert corrected > 0
    with pytest.raises(ConfigError, match=r"quant\.abar: mode \d+: .*unstable"):
        quantize_abar(abar, quantizer, "reject")
    # through the config as well
    weights = SSMWeights.from_arrays("s5", Abar=abar, Bbar=np.full((4, 1), 0.1), C=np.full((1, 4), 0.5),
                                     D=np.array([0.0]), channels=1, states=4)
    cfg = base_dict("s5", 1, 4, abar={"format": fmt(width, 1)})
    cfg["quant"]["abar_stability"] = "reject"
    with pytest.raises(ConfigError, match=r"quant\.abar"):
        quantize_model(parse_config(cfg), weights)
    cfg["quant"]["abar_stability"] = "correct"
    model = quantize_model(parse_config(cfg), weights)
    assert model.abar_corrected == corrected
    assert np.all(np.abs(model.dequantized().abar) < 1)


# =================================================================================================
# Input validation
# =================================================================================================

@pytest.fixture(scope="module")
def small_model():
    return load_model(parse_config(base_dict("s5", 2, 3, input={"format": "fixed<6,2>"})))


@pytest.mark.parametrize("shape", [(5, 2), (1, 5, 3), (1, 5, 1), (2,), (1, 1, 5, 2)])
def test_wrong_input_shape_is_rejected(small_model, shape):
    with pytest.raises(ValueError, match=r"\(batch, time, H=2\)"):
        run_integer(small_model, np.zeros(shape, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(batch, time, H=2\)"):
        quantize_input(small_model, np.zeros(shape))


@pytest.mark.parametrize("value", [32, -33, 1 << 40, -(1 << 40)])
def test_out_of_range_input_integers_are_rejected(small_model, value):
    u = np.zeros((2, 4, 2), dtype=np.int64)
    u[1, 2, 1] = value
    with pytest.raises(ValueError, match=r"-32\.\.31"):
        run_integer(small_model, u)


def test_input_range_edges_and_empty_inputs(small_model):
    u = np.array([[[31, -32], [-32, 31]]], dtype=np.int64)
    assert run_integer(small_model, u).shape == (1, 2, 2)
    assert run_integer(small_model, u.astype(np.int32)).tolist() == run_integer(small_model, u).tolist()
    assert run_integer(small_model, u.tolist()).tolist() == run_integer(small_model, u).tolist()
    assert run_integer(small_model, np.zeros((0, 4, 2), dtype=np.int64)).shape == (0, 4, 2)
    assert run_integer(small_model, np.zeros((3, 0, 2), dtype=np.int64)).shape == (3, 0, 2)


def test_non_integer_input_is_rejected(small_model):
    """Real values must go through quantize_input; run_integer used to truncate 1.5 to 1."""
    with pytest.raises(ValueError, match="integer"):
        run_integer(small_model, np.full((1, 3, 2), 1.5))
    with pytest.raises(ValueError, match="integer"):
        run_integer(small_model, np.full((1, 3, 2), 1.0))
    with pytest.raises(ValueError):
        quantize_input(small_model, np.full((1, 3, 2), np.nan))
