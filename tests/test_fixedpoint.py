"""Tests of ssmgen's fixed-point semantics (golden/fixedpoint.py).

Checked against
  * an exact reference written here with Python ints and ``fractions.Fraction`` only
    (no numpy): rounding of a rational to an integer in each mode, wrap/saturate into W bits;
  * APyTypes, an independent fixed-point library (section at the end).

Every random generator is seeded; assertion messages name the seed and the failing input.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import pytest

from ssmgen.golden.fixedpoint import (
    apply_overflow,
    quantize_float,
    requantize,
    round_float,
    round_shift,
)
from ssmgen.spec.formats import (
    INT64_SAFE_BITS,
    MAX_FORMAT_WIDTH,
    FixedFormat,
    Overflow,
    Quantizer,
    Rounding,
    to_float,
)

SEED = 0x55D6E7  # base seed; every test derives its generator from (SEED, tag...)
ROUNDINGS = list(Rounding)
OVERFLOWS = list(Overflow)
WIDTHS = range(2, MAX_FORMAT_WIDTH + 1)
MODE_PAIRS = [(r, o) for r in ROUNDINGS for o in OVERFLOWS]
MODE_IDS = [f"{r.value}-{o.value}" for r, o in MODE_PAIRS]
HALF = Fraction(1, 2)


def rng_for(*tag):
    """Seeded generator for a test; returns (generator, seed description for messages)."""
    # stable across processes (str hash() is salted): strings become their first 8 bytes, ints mod 2**32
    key = [SEED] + [t % 2**32 if isinstance(t, int) else int.from_bytes(str(t).encode()[:8].ljust(8, b"\0"), "little")
                    for t in tag]
    return np.random.default_rng(key), f"seed=np.random.default_rng({key})"


# ---------------------------------------------------------------------------------------------
# 1. Exact reference: Python ints and Fraction only
# ---------------------------------------------------------------------------------------------

def ref_round(x: Fraction, rounding: Rounding) -> int:
    """Round the rational ``x`` to an integer, exactly."""
    x = Fraction(x)
    if rounding is Rounding.FLOOR:
        return math.floor(x)
    if rounding is Rounding.TOWARD_ZERO:
        return math.trunc(x)
    if rounding is Rounding.HALF_UP:
        return math.floor(x + HALF)
    if rounding is Rounding.HALF_EVEN:
        low = math.floor(x)
        rest = x - low
        if rest > HALF or (rest == HALF and low % 2 == 1):
            return low + 1
        return low
    raise AssertionError(rounding)


def ref_overflow(n: int, width: int, overflow: Overflow) -> int:
    """Fit the integer ``n`` into signed ``width`` bits."""
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    if overflow is Overflow.SATURATE:
        return lo if n < lo else hi if n > hi else n
    if overflow is Overflow.WRAP:
        low_bits = n & (2**width - 1)  # Python ints behave as infinitely sign-extended
        return low_bits - 2**width if low_bits >> (width - 1) else low_bits
    raise AssertionError(overflow)


def exact_value(n: int, frac: int) -> Fraction:
    """Value of the integer ``n`` with ``frac`` fraction bits (frac may be negative)."""
    return Fraction(int(n)) * Fraction(2) ** (-int(frac))


def ref_requantize(n: int, frac: int, fmt: FixedFormat, rounding: Rounding, overflow: Overflow) -> int:
    scaled = exact_value(n, frac) * Fraction(2) ** fmt.frac
    return ref_overflow(ref_round(scaled, rounding), fmt.width, overflow)


def np_ref_overflow(r: np.ndarray, width: int, overflow: Overflow) -> np.ndarray:
    """Vectorized overflow reference (floor division, exact in int64); itself checked against
    :func:`ref_overflow` in test_np_ref_overflow_matches_python_reference."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if overflow is Overflow.SATURATE:
        return np.where(r > hi, hi, np.where(r < lo, lo, r))
    m = 1 << width
    return r - m * np.floor_divide(r - lo, m)


def assert_ints_equal(got, want, inputs, context):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.dtype == np.int64, f"{context}: dtype {got.dtype}, expected int64"
    assert got.shape == want.shape, f"{context}: shape {got.shape} != {want.shape}"
    bad = np.flatnonzero(got.ravel() != want.ravel())
    if bad.size:
        i = bad[0]
        inp = {k: np.broadcast_to(np.asarray(v), got.shape).ravel()[i] for k, v in inputs.items()}
        inp = {k: (v.item() if hasattr(v, "item") else v) for k, v in inp.items()}
        raise AssertionError(
            f"{context}: {bad.size} mismatches; first at flat index {i}: input {inp!r} "
            f"got {got.ravel()[i]!r}, want {want.ravel()[i]!r}")


def test_reference_rounding_hand_cases():
    cases = {  # x: (floor, half_up, half_even, toward_zero)
        Fraction(5, 2): (2, 3, 2, 2), Fraction(-5, 2): (-3, -2, -2, -2),
        Fraction(3, 2): (1, 2, 2, 1), Fraction(-3, 2): (-2, -1, -2, -1),
        Fraction(1, 2): (0, 1, 0, 0), Fraction(-1, 2): (-1, 0, 0, 0),
        Fraction(7, 4): (1, 2, 2, 1), Fraction(-7, 4): (-2, -2, -2, -1),
        Fraction(1, 4): (0, 0, 0, 0), Fraction(-1, 4): (-1, 0, 0, 0),
        Fraction(-3): (-3, -3, -3, -3), Fraction(0): (0, 0, 0, 0),
    }
    modes = (Rounding.FLOOR, Rounding.HALF_UP, Rounding.HALF_EVEN, Rounding.TOWARD_ZERO)
    for x, want in cases.items():
        got = tuple(ref_round(x, m) for m in modes)
        assert got == want, f"ref_round({x}) = {got}, want {want}"
    # HALF_EVEN agrees with Python's own (ties-to-even) Fraction rounding on a grid
    for num in range(-200, 201):
        x = Fraction(num, 8)
        assert ref_round(x, Rounding.HALF_EVEN) == round(x), x


def test_reference_overflow_hand_cases():
    assert [ref_overflow(n, 8, Overflow.WRAP) for n in (127, 128, 255, 256, -128, -129, -257)] == \
        [127, -128, -1, 0, -128, 127, -1]
    assert [ref_overflow(n, 8, Overflow.SATURATE) for n in (127, 128, 10**30, -128, -129, -10**30)] == \
        [127, 127, 127, -128, -128, -128]
    assert [ref_overflow(n, 2, Overflow.WRAP) for n in range(-4, 5)] == [0, 1, -2, -1, 0, 1, -2, -1, 0]


def test_np_ref_overflow_matches_python_reference():
    rng, seed = rng_for("np_ref_overflow")
    for width in WIDTHS:
        edge = np.arange(-(3 << width), (3 << width) + 1, max(1, (1 << width) // 64), dtype=np.int64)
        around = np.concatenate([b + np.arange(-3, 4) for b in
                                 (-(1 << (width - 1)), (1 << (width - 1)) - 1, -(1 << width), 1 << width)])
        rand = rng.integers(-(1 << 61), 1 << 61, 500)
        r = np.concatenate([edge, around, rand]).astype(np.int64)
        for overflow in OVERFLOWS:
            want = np.array([ref_overflow(int(v), width, overflow) for v in r], dtype=np.int64)
            assert_ints_equal(np_ref_overflow(r, width, overflow), want, {"r": r},
                              f"np_ref_overflow W={width} {overflow} {seed}")


# ---------------------------------------------------------------------------------------------
# 2. requantize / round_shift / apply_overflow
# ---------------------------------------------------------------------------------------------

SMALL_SOURCE_BITS = 10
#: every integer of a 10-bit source (and so of every narrower source width)
SMALL_VALUES = np.arange(-(1 << (SMALL_SOURCE_BITS - 1)), 1 << (SMALL_SOURCE_BITS - 1), dtype=np.int64)
#: right shifts (drop bits), 0, left shifts (negative), and shifts past the int64 width
SMALL_SHIFTS = np.array(list(range(-5, SMALL_SOURCE_BITS + 5)) + [30, 62, 63, 64, 65, 100], dtype=np.int64)


def int_bits_choices(width):
    return sorted({width, width - 1, width // 2, 1, 0, -3, -MAX_FORMAT_WIDTH})


@functools.lru_cache(maxsize=None)
def small_round_table(rounding: Rounding) -> np.ndarray:
    """ref_round(SMALL_VALUES / 2**shift) for every shift in SMALL_SHIFTS: shape (shifts, values)."""
    return np.array([[ref_round(exact_value(int(v), int(s)), rounding) for v in SMALL_VALUES]
                     for s in SMALL_SHIFTS], dtype=np.int64)


@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_requantize_exhaustive_small(rounding, overflow):
    table = small_round_table(rounding)
    for width in WIDTHS:
        want = np_ref_overflow(table, width, overflow)
        for int_bits in int_bits_choices(width):
            fmt = FixedFormat(width, int_bits)
            q = Quantizer(fmt, rounding, overflow)
            # all shifts at once: per-row frac broadcast against the values
            frac = (fmt.frac + SMALL_SHIFTS)[:, None]
            got = requantize(SMALL_VALUES[None, :], frac, q)
            assert_ints_equal(got, want, {"value": SMALL_VALUES[None, :], "frac": frac},
                              f"requantize(..., {q}) exhaustive, broadcast frac")
            # and each shift with a scalar frac
            for k, shift in enumerate(SMALL_SHIFTS):
                got = requantize(SMALL_VALUES, int(fmt.frac + shift), q)
                assert_ints_equal(got, want[k], {"value": SMALL_VALUES},
                                  f"requantize(..., frac={fmt.frac + shift}, {q}) exhaustive")
    # a few entries re-derived straight from the Fraction reference (guards the table's indexing)
    fmt = FixedFormat(5, -2)
    for v in (-512, -37, -1, 0, 1, 11, 511):
        for shift in (-3, 0, 1, 4, 9, 64):
            want1 = ref_requantize(v, fmt.frac + shift, fmt, rounding, overflow)
            got1 = requantize(np.int64(v), fmt.frac + shift, Quantizer(fmt, rounding, overflow))
            assert int(got1) == want1, f"requantize({v}, frac={fmt.frac + shift}, {fmt})"


#: right shifts up to 100 (past int64), 0 and left shifts
WIDE_SHIFTS = [-12, -3, -1, 0, 1, 2, 5, 13, 24, 31, 40, 48, 59, 61, 62, 63, 64, 65, 70, 96]
WIDE_MAG_BITS = 60  # |values| < 2**60 < 2**INT64_SAFE_BITS
assert WIDE_MAG_BITS < INT64_SAFE_BITS


@functools.lru_cache(maxsize=None)
def wide_values(shift: int) -> tuple[np.ndarray, str]:
    """~2000 seeded wide integers for a shift, with exact ties and their neighbours."""
    rng, seed = rng_for("wide", shift)
    n = 2000
    mag = rng.integers(0, WIDE_MAG_BITS + 1, n)
    vals = rng.integers(-(1 << WIDE_MAG_BITS), 1 << WIDE_MAG_BITS, n) >> (WIDE_MAG_BITS - mag)
    parts = [vals, np.array([0, 1, -1, (1 << WIDE_MAG_BITS) - 1, -(1 << WIDE_MAG_BITS)], dtype=np.int64)]
    if 0 < shift < WIDE_MAG_BITS:
        m = rng.integers(-(1 << (WIDE_MAG_BITS - shift - 1)), 1 << (WIDE_MAG_BITS - shift - 1), 150)
        ties = (m << shift) + (1 << (shift - 1))
        parts += [ties, ties + 1, ties - 1]
    v = np.concatenate(parts).astype(np.int64)
    if shift < 0:  # left shift must stay inside the safe range
        v = v >> -shift
    assert np.all(np.abs(v << max(-shift, 0)) < (1 << INT64_SAFE_BITS))
    return v, seed


@functools.lru_cache(maxsize=None)
def wide_round_ref(shift: int, rounding: Rounding) -> np.ndarray:
    vals, _ = wide_values(shift)
    return np.array([ref_round(exact_value(int(v), shift), rounding) for v in vals], dtype=np.int64)


@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_requantize_random_wide(rounding, overflow):
    rng, seed = rng_for("wide-int-bits", rounding.value, overflow.value)
    for shift in WIDE_SHIFTS:
        vals, vseed = wide_values(shift)
        ref = wide_round_ref(shift, rounding)
        for width in WIDTHS:
            fmt = FixedFormat(width, int(rng.integers(-MAX_FORMAT_WIDTH, width + 1)))
            q = Quantizer(fmt, rounding, overflow)
            got = requantize(vals, fmt.frac + shift, q)
            assert_ints_equal(got, np_ref_overflow(ref, width, overflow), {"value": vals},
                              f"requantize(frac={fmt.frac + shift}, {q}) wide; values {vseed}, "
                              f"format {seed}")


@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_requantize_per_element_frac(rounding, overflow):
    rng, seed = rng_for("per-element", rounding.value, overflow.value)
    n = 150
    for width in WIDTHS:
        fmt = FixedFormat(width, int(rng.integers(-MAX_FORMAT_WIDTH, width + 1)))
        q = Quantizer(fmt, rounding, overflow)
        mag = rng.integers(0, 51, n)
        vals = rng.integers(-(1 << 50), 1 << 50, n) >> (50 - mag)
        frac = fmt.frac + rng.integers(-10, 71, n)  # left shifts keep |value| < 2**60
        got = requantize(vals, frac, q)
        want = np.array([ref_requantize(int(v), int(f), fmt, rounding, overflow)
                         for v, f in zip(vals, frac)], dtype=np.int64)
        assert_ints_equal(got, want, {"value": vals, "frac": frac}, f"requantize per-element frac {q}; {seed}")


def test_round_shift_huge_shifts_regression():
    """Shifts of 64 bits or more (reachable: frac up to 2*48 for products of fixed<24,-24>)."""
    x = np.array([-(1 << 61), -5, -1, 0, 1, 5, (1 << 61), (1 << 62) - 1, -(1 << 62) + 1], dtype=np.int64)
    for rounding in ROUNDINGS:
        for shift in (62, 63, 64, 65, 96, 200):
            want = np.array([ref_round(exact_value(int(v), shift), rounding) for v in x], dtype=np.int64)
            assert_ints_equal(round_shift(x, shift, rounding), want, {"value": x},
                              f"round_shift(shift={shift}, {rounding})")


def test_round_shift_array_shift_and_input_types():
    rng, seed = rng_for("round_shift-array")
    x = rng.integers(-(1 << 40), 1 << 40, 3000)
    shift = rng.integers(-15, 70, 3000)
    for rounding in ROUNDINGS:
        want = np.array([ref_round(exact_value(int(v), int(s)), rounding) for v, s in zip(x, shift)],
                        dtype=np.int64)
        assert_ints_equal(round_shift(x, shift, rounding), want, {"value": x, "shift": shift},
                          f"round_shift array shift {rounding}; {seed}")
    # non-int64 integer inputs are accepted, floats are refused
    assert round_shift(np.array([5, -5], dtype=np.int32), 1, Rounding.HALF_EVEN).tolist() == [2, -2]
    assert round_shift([7, -7], 1, Rounding.HALF_UP).tolist() == [4, -3]
    with pytest.raises(TypeError):
        round_shift(np.array([1.0]), 1, Rounding.FLOOR)


def test_apply_overflow_boundaries():
    for width in WIDTHS:
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        x = np.concatenate([b + np.arange(-5, 6) for b in (lo, hi, 0, 1 << width, -(1 << width),
                                                          1 << 40, -(1 << 40))]).astype(np.int64)
        for overflow in OVERFLOWS:
            want = np.array([ref_overflow(int(v), width, overflow) for v in x], dtype=np.int64)
            assert_ints_equal(apply_overflow(x, width, overflow), want, {"value": x},
                              f"apply_overflow W={width} {overflow}")


# ---------------------------------------------------------------------------------------------
# 3. quantize_float
# ---------------------------------------------------------------------------------------------

FLOAT_FORMATS = [FixedFormat(*wi) for wi in
                 [(8, 1), (16, 4), (12, -3), (24, 24), (2, 2), (2, -24), (24, -24), (5, 0), (24, 1), (3, 3)]]


@functools.lru_cache(maxsize=None)
def float_cases(fmt: FixedFormat) -> tuple[np.ndarray, str]:
    rng, seed = rng_for("float", fmt.width, fmt.int_bits)
    f, w, i = fmt.frac, fmt.width, fmt.int_bits
    n = 1500
    random = rng.standard_normal(n) * np.exp2(rng.integers(-f - 6, i + 4, n).astype(np.float64))
    k = rng.integers(-(1 << (w + 1)), 1 << (w + 1), 400).astype(np.float64)
    ties = np.ldexp(k + 0.5, -f)                     # exact: (2k+1) * 2**-(f+1)
    grid = np.ldexp(k, -f)
    beside = np.concatenate([np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf),
                             np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf)])
    lsb = fmt.lsb
    special = np.array([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, -2.2250738585072014e-308,
                        fmt.max_value, fmt.min_value, fmt.max_value + lsb / 2, fmt.min_value - lsb / 2,
                        fmt.max_value + lsb, fmt.min_value - lsb, 0.5 * lsb, -0.5 * lsb, 1.5 * lsb, -1.5 * lsb])
    return np.concatenate([random, ties, -ties, grid, beside, special]), seed


@functools.lru_cache(maxsize=None)
def float_round_ref(fmt: FixedFormat, rounding: Rounding) -> np.ndarray:
    x, _ = float_cases(fmt)
    scale = Fraction(2) ** fmt.frac
    return np.array([ref_round(Fraction(float(v)) * scale, rounding) for v in x], dtype=np.int64)


@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_quantize_float_matches_fraction_reference(rounding, overflow):
    for fmt in FLOAT_FORMATS:
        x, seed = float_cases(fmt)
        q = Quantizer(fmt, rounding, overflow)
        want = np_ref_overflow(float_round_ref(fmt, rounding), fmt.width, overflow)
        assert_ints_equal(quantize_float(x, q), want, {"x": x}, f"quantize_float({q}); {seed}")


@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_quantize_float_per_element_frac(rounding, overflow):
    rng, seed = rng_for("float-frac", rounding.value, overflow.value)
    fmt = FixedFormat(16, 3)
    q = Quantizer(fmt, rounding, overflow)
    n = 600
    frac = rng.integers(0, 49, n)
    x = rng.standard_normal(n) * np.exp2(rng.integers(-30, 12, n).astype(np.float64))
    x[:100] = np.ldexp(rng.integers(-1000, 1000, 100) + 0.5, -frac[:100])  # exact ties
    got = quantize_float(x, q, frac=frac)
    want = np.array([ref_overflow(ref_round(Fraction(float(v)) * Fraction(2) ** int(f), rounding),
                                  fmt.width, overflow) for v, f in zip(x, frac)], dtype=np.int64)
    assert_ints_equal(got, want, {"x": x, "frac": frac}, f"quantize_float per-element frac {q}; {seed}")


def test_round_float_no_overflow_step():
    """round_float: the rounding half of quantize_float, exact up to the int64 model's range."""
    rng, seed = rng_for("round_float")
    n = 2000
    frac = rng.integers(0, 61, n)
    x = rng.standard_normal(n) * np.exp2(rng.integers(-70, 60, n).astype(np.float64))
    x = np.where(np.abs(np.ldexp(x, frac)) < 2.0**INT64_SAFE_BITS, x, 0.75)
    x[:300] = np.ldexp(rng.integers(-(1 << 40), 1 << 40, 300) + 0.5, -frac[:300])  # exact ties
    x[300:310] = [5e-324, -5e-324, 2.0**-1022, -(2.0**-1022), 0.0, -0.0, 1.5, -1.5, 2.5, -2.5]
    for rounding in ROUNDINGS:
        want = np.array([ref_round(Fraction(float(v)) * Fraction(2) ** int(f), rounding)
                         for v, f in zip(x, frac)], dtype=np.int64)
        assert_ints_equal(round_float(x, frac, rounding), want, {"x": x, "frac": frac},
                          f"round_float {rounding}; {seed}")
        assert_ints_equal(round_float(x[:310], 0, rounding), np.array(
            [ref_round(Fraction(float(v)), rounding) for v in x[:310]], dtype=np.int64), {"x": x[:310]},
            f"round_float scalar frac=0 {rounding}; {seed}")
    with pytest.raises(ValueError):
        round_float([1.0, np.nan], 0, Rounding.FLOOR)
    with pytest.raises(ValueError):
        round_float(2.0**INT64_SAFE_BITS, 0, Rounding.FLOOR)


def test_quantize_float_rejects_nonfinite_and_too_large():
    q = Quantizer(FixedFormat(8, 1), Rounding.HALF_EVEN, Overflow.SATURATE)
    for bad in (np.nan, np.inf, -np.inf, [0.0, np.nan], [[1.0], [-np.inf]]):
        with pytest.raises(ValueError):
            quantize_float(bad, q)
    q24 = Quantizer(FixedFormat(24, 24), Rounding.FLOOR, Overflow.SATURATE)
    with pytest.raises(ValueError):
        quantize_float(2.0**INT64_SAFE_BITS, q24)
    with pytest.raises(ValueError):
        quantize_float(1.0, q, frac=INT64_SAFE_BITS)
    # just inside the integer model's range: quantized, then saturated / wrapped exactly
    assert int(quantize_float(2.0**61, q24)) == (1 << 23) - 1
    assert int(quantize_float(-(2.0**61), q24)) == -(1 << 23)
    assert int(quantize_float(2.0**61 + 2.0**23, Quantizer(FixedFormat(24, 24), Rounding.FLOOR,
                                                             Overflow.WRAP))) == -(1 << 23)


def test_quantize_float_scalar():
    q = Quantizer(FixedFormat(8, 1), Rounding.HALF_EVEN, Overflow.SATURATE)
    assert int(quantize_float(0.5, q)) == 64
    assert int(quantize_float(1.0, q)) == 127
    assert int(quantize_float(-1.0, q)) == -128
    assert int(quantize_float(3 / 256, q)) == 2   # 1.5 lsb -> even
    assert int(quantize_float(5 / 256, q)) == 2   # 2.5 lsb -> even


# ---------------------------------------------------------------------------------------------
# 4. FixedFormat parsing and validation
# ---------------------------------------------------------------------------------------------

def test_parse_ok():
    assert FixedFormat.parse("fixed<8,1>") == FixedFormat(8, 1)
    assert FixedFormat.parse("  fixed < 16 , -3 >  ") == FixedFormat(16, -3)
    assert FixedFormat.parse("fixed<24,24>") == FixedFormat(24, 24)
    assert FixedFormat.parse(f"fixed<2,-{MAX_FORMAT_WIDTH}>") == FixedFormat(2, -MAX_FORMAT_WIDTH)
    for width in WIDTHS:
        for int_bits in range(-MAX_FORMAT_WIDTH, width + 1):
            fmt = FixedFormat(width, int_bits)
            assert FixedFormat.parse(str(fmt)) == fmt
            assert str(fmt) == f"fixed<{width},{int_bits}>"


@pytest.mark.parametrize("text", [
    "fixed<1,1>", "fixed<0,0>", "fixed<-8,1>", f"fixed<{MAX_FORMAT_WIDTH + 1},1>", "fixed<100,1>",
    "fixed<8,9>", f"fixed<8,-{MAX_FORMAT_WIDTH + 1}>",
    "", "fixed", "fixed<8>", "fixed<8,1", "fixed8,1>", "ufixed<8,1>", "ap_fixed<8,1>", "fixed<8,1.5>",
    "fixed<8.0,1>", "fixed<8,1>x", "fixed<8,,1>", "fixed<a,b>", "fixed<8,1,2>", "fixed<+8,1>",
])
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        FixedFormat.parse(text)


@pytest.mark.parametrize("obj", [8, None, b"fixed<8,1>", (8, 1), 8.1])
def test_parse_rejects_non_str(obj):
    with pytest.raises(TypeError):
        FixedFormat.parse(obj)


def test_constructor_validation():
    for w, i in [(1, 1), (0, 0), (MAX_FORMAT_WIDTH + 1, 0), (8, 9), (8, -MAX_FORMAT_WIDTH - 1)]:
        with pytest.raises(ValueError):
            FixedFormat(w, i)
    with pytest.raises(TypeError):
        FixedFormat(8.0, 1)
    with pytest.raises(TypeError):
        FixedFormat(8, "1")
    assert FixedFormat(np.int64(8), np.int32(1)) == FixedFormat(8, 1)
    assert type(FixedFormat(np.int64(8), 1).width) is int


def test_format_properties():
    f = FixedFormat(8, 1)
    assert (f.frac, f.min_int, f.max_int, f.lsb) == (7, -128, 127, 1 / 128)
    assert (f.min_value, f.max_value) == (-1.0, 127 / 128)
    g = FixedFormat(12, -3)
    assert (g.frac, g.min_int, g.max_int, g.lsb) == (15, -2048, 2047, 2.0**-15)
    assert g.max_value == 2047 * 2.0**-15 and g.min_value == -(2.0**-4)
    for width in WIDTHS:
        for int_bits in range(-MAX_FORMAT_WIDTH, width + 1):
            fmt = FixedFormat(width, int_bits)
            assert fmt.frac == width - int_bits
            assert fmt.min_int == -(2 ** (width - 1)) and fmt.max_int == 2 ** (width - 1) - 1
            assert Fraction(fmt.lsb) == Fraction(2) ** -fmt.frac
            assert Fraction(fmt.max_value) == Fraction(fmt.max_int) * Fraction(2) ** -fmt.frac
            assert Fraction(fmt.min_value) == -Fraction(2) ** (int_bits - 1)
            assert fmt.with_int_bits(0) == FixedFormat(width, 0)
    q = Quantizer(f, Rounding.HALF_EVEN, Overflow.SATURATE)
    assert str(q) == "fixed<8,1> half_even/saturate"


# ---------------------------------------------------------------------------------------------
# 6. to_float
# ---------------------------------------------------------------------------------------------

def test_to_float_exact():
    rng, seed = rng_for("to_float")
    n = 3000
    mag = rng.integers(0, 54, n)
    vals = rng.integers(-(1 << 53) + 1, 1 << 53, n) >> (53 - mag)
    vals[:4] = [(1 << 53) - 1, -(1 << 53) + 1, 0, -1]
    frac = rng.integers(-30, 80, n)
    got = to_float(vals, frac)
    assert got.dtype == np.float64
    for v, f, g in zip(vals, frac, got):
        assert Fraction(float(g)) == exact_value(int(v), int(f)), f"to_float({v}, {f}) = {g!r}; {seed}"
    # scalar frac broadcast; round trip through quantize_float is the identity in range
    fmt = FixedFormat(24, 5)
    ints = np.arange(fmt.min_int, fmt.max_int + 1, 997, dtype=np.int64)
    back = quantize_float(to_float(ints, fmt.frac), Quantizer(fmt, Rounding.FLOOR, Overflow.WRAP))
    assert_ints_equal(back, ints, {"int": ints}, "quantize_float(to_float(q)) round trip")


# ---------------------------------------------------------------------------------------------
# 5. Cross-check against APyTypes
# ---------------------------------------------------------------------------------------------
# APyTypes (>= 0.5) documents its QuantizationMode members as:
#   TRN      "Truncation (remove bits, round towards negative infinity)"     == our FLOOR
#   RND      "Round to nearest, ties towards positive infinity"              == our HALF_UP
#   RND_CONV "Round to nearest, ties to even"                                == our HALF_EVEN
#   TRN_ZERO "Unbiased magnitude truncation (round towards zero)"           == our TOWARD_ZERO
# and OverflowMode WRAP "Two's complement overflow. Remove MSBs." / SAT "Saturate to the closest
# of most positive and most negative value." Its ``int_bits`` counts the sign bit, as ap_fixed
# does (checked in test_apytypes_conventions), so fixed<W,I> == (int_bits=I, frac_bits=W-I).

APY_QUANTIZATION = {Rounding.FLOOR: "TRN", Rounding.HALF_UP: "RND",
                    Rounding.HALF_EVEN: "RND_CONV", Rounding.TOWARD_ZERO: "TRN_ZERO"}
APY_OVERFLOW = {Overflow.WRAP: "WRAP", Overflow.SATURATE: "SAT"}


def apy_modes(apy, rounding, overflow):
    return getattr(apy.QuantizationMode, APY_QUANTIZATION[rounding]), getattr(apy.OverflowMode,
                                                                               APY_OVERFLOW[overflow])


def apy_signed(arr, width) -> np.ndarray:
    """Two's-complement bit patterns of an APyFixedArray of ``width`` bits -> signed int64."""
    bits = np.asarray(arr.to_bits(numpy=True)).astype(np.int64)
    return np.where(bits >= (1 << (width - 1)), bits - (1 << width), bits)


def apy_requantize(apy, vals, frac, fmt, rounding, overflow):
    src = apy.APyFixedArray(np.asarray(vals, dtype=np.int64), bits=64, frac_bits=int(frac))
    qm, om = apy_modes(apy, rounding, overflow)
    out = src.cast(int_bits=fmt.int_bits, frac_bits=fmt.frac, quantization=qm, overflow=om)
    assert out.bits == fmt.width
    return apy_signed(out, fmt.width)


def test_apytypes_conventions():
    apy = pytest.importorskip("apytypes")
    # int_bits includes the sign, as ap_fixed and ssmgen: every pattern of (int_bits=I,
    # frac_bits=W-I) lies in [min_value, max_value] of fixed<W,I>, both ends reached.
    for w, i in [(8, 1), (5, 0), (6, -3), (4, 4), (2, 2)]:
        fmt = FixedFormat(w, i)
        allv = apy.APyFixedArray(list(range(1 << w)), int_bits=i, frac_bits=w - i).to_numpy()
        assert allv.min() == fmt.min_value and allv.max() == fmt.max_value, (fmt, allv.min(), allv.max())
    # mode mapping on +-0.5, +-1.5, +-1 (frac 1 -> frac 0)
    halves = [-3, -2, -1, 1, 2, 3]
    src = apy.APyFixedArray(halves, bits=8, frac_bits=1)
    for rounding in ROUNDINGS:
        qm, om = apy_modes(apy, rounding, Overflow.WRAP)
        theirs = src.cast(int_bits=8, frac_bits=0, quantization=qm, overflow=om).to_numpy().tolist()
        ours = [ref_round(Fraction(v, 2), rounding) for v in halves]
        assert theirs == ours, (rounding, theirs, ours)
    # overflow mapping
    big = apy.APyFixedArray([200, -200 & 0xFFFF], bits=16, frac_bits=0)
    for overflow, want in [(Overflow.WRAP, [-56, 56]), (Overflow.SATURATE, [127, -128])]:
        qm, om = apy_modes(apy, Rounding.FLOOR, overflow)
        assert apy_signed(big.cast(int_bits=8, frac_bits=0, quantization=qm, overflow=om), 8).tolist() == want


@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_requantize_matches_apytypes(rounding, overflow):
    apy = pytest.importorskip("apytypes")
    rng, seed = rng_for("apytypes", rounding.value, overflow.value)
    for shift in WIDE_SHIFTS:
        vals, vseed = wide_values(shift)
        for width in WIDTHS:
            fmt = FixedFormat(width, int(rng.integers(-MAX_FORMAT_WIDTH, width + 1)))
            q = Quantizer(fmt, rounding, overflow)
            frac = fmt.frac + shift
            assert_ints_equal(requantize(vals, frac, q), apy_requantize(apy, vals, frac, fmt, rounding, overflow),
                              {"value": vals}, f"requantize(frac={frac}, {q}) vs APyTypes; values {vseed}, "
                                               f"format {seed}")
    # exhaustive small source for a few formats
    for fmt in (FixedFormat(4, 1), FixedFormat(8, -3), FixedFormat(3, 3)):
        for shift in (-3, 0, 1, 3, 7, 12):
            q = Quantizer(fmt, rounding, overflow)
            frac = fmt.frac + shift
            assert_ints_equal(requantize(SMALL_VALUES, frac, q),
                              apy_requantize(apy, SMALL_VALUES, frac, fmt, rounding, overflow),
                              {"value": SMALL_VALUES}, f"requantize(frac={frac}, {q}) vs APyTypes exhaustive")


@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_quantize_float_matches_apytypes(rounding, overflow):
    apy = pytest.importorskip("apytypes")
    rng, seed = rng_for("apytypes-float", rounding.value, overflow.value)
    qm, om = apy_modes(apy, rounding, overflow)
    extra = 24
    for fmt in FLOAT_FORMATS:
        # values exactly representable with frac + extra fraction bits (so from_float is exact)
        k = rng.integers(-(1 << 40), 1 << 40, 800) >> rng.integers(0, 41, 800)
        k[:200] = (rng.integers(-(1 << 20), 1 << 20, 200) << extra) + (1 << (extra - 1))  # ties
        x = np.ldexp(k.astype(np.float64), -(fmt.frac + extra))
        src = apy.APyFixedArray.from_float(x, bits=96, frac_bits=fmt.frac + extra)
        assert np.array_equal(src.to_numpy(), x)
        theirs = apy_signed(src.cast(int_bits=fmt.int_bits, frac_bits=fmt.frac, quantization=qm, overflow=om),
                            fmt.width)
        q = Quantizer(fmt, rounding, overflow)
        assert_ints_equal(quantize_float(x, q), theirs, {"x": x}, f"quantize_float({q}) vs APyTypes; {seed}")


def test_quantizer_parse_inverts_str():
    for r in Rounding:
        for o in Overflow:
            q = Quantizer(FixedFormat(8, -3), r, o)
            assert Quantizer.parse(str(q)) == q
    with pytest.raises(ValueError):
        Quantizer.parse("fixed<8,3> nearest/saturate")
