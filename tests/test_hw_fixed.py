"""Bit-exactness of the Amaranth fixed-point expressions (hw/datapath/fixed.py) against the golden
functions of the same names (golden/fixedpoint.py, the specification).

Each case (function, rounding, overflow, source width, shift, target width) builds ONE
combinational module holding the expression, sweeps every value of the signed source signal in a
single Amaranth testbench, and compares the whole sweep against the golden function evaluated on
the numpy array of all inputs at once.

Grid:
  * ``round_shift``: 4 rounding modes x source widths 2..9 x shifts -3..width+2, exhaustive.
  * ``apply_overflow``: 2 overflow modes x source widths 2..10 x target widths 2..10, exhaustive
    (target wider than the source included: the no-overflow path).
  * ``requantize``: 4 x 2 modes x shifts -3..width+2 x target widths 2..10, exhaustive for source
    widths 2..6; for source widths 7..9 a fixed set of corner cases (shift 0, shifts beyond the
    width, targets wider than the rounded value, narrowest target) plus a seeded random sample.
  * ``requantize(..., to_frac=...)`` (per-mode state formats): every mode, several formats and
    source/target fraction pairs, against the golden model's own per-state formulation.

Every random generator is seeded; assertion messages name the case and the first failing input.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, Value, signed, unsigned
from amaranth.sim import Simulator

from ssmgen.golden import fixedpoint as golden
from ssmgen.hw.datapath import fixed as hw
from ssmgen.spec.formats import FixedFormat, Overflow, Quantizer, Rounding

SEED = 0x48F1C5
ROUNDINGS = list(Rounding)
OVERFLOWS = list(Overflow)
MODE_PAIRS = [(r, o) for r in ROUNDINGS for o in OVERFLOWS]
MODE_IDS = [f"{r.value}-{o.value}" for r, o in MODE_PAIRS]
TARGET_WIDTHS = range(2, 11)
EXHAUSTIVE_REQUANTIZE_WIDTHS = range(2, 7)
SAMPLED_REQUANTIZE_WIDTHS = range(7, 10)
SAMPLES_PER_WIDTH = 12


def _rng(*tag) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(repr(tag).encode())])


def _shifts(width: int) -> range:
    """-3 .. width+2: left shifts, 0, ordinary right shifts, shifts beyond the source width."""
    return range(-3, width + 3)


def _all_values(width: int, is_signed: bool = True) -> np.ndarray:
    if is_signed:
        return np.arange(-(1 << (width - 1)), 1 << (width - 1), dtype=np.int64)
    return np.arange(0, 1 << width, dtype=np.int64)


def _simulate(build, width: int, *, is_signed: bool = True):
    """Build ``build(x)`` for a ``width``-bit source signal ``x`` into one combinational module,
    sweep every value of ``x`` in one testbench. Returns (inputs, outputs, output shape)."""
    x = Signal(signed(width) if is_signed else unsigned(width), name="x")
    expr = Value.cast(build(x))
    y = Signal(expr.shape(), name="y")
    m = Module()
    m.d.comb += y.eq(expr)
    inputs = _all_values(width, is_signed)
    outputs = []

    async def testbench(ctx):
        for v in inputs.tolist():
            ctx.set(x, v)
            await ctx.delay(1e-9)
            outputs.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    return inputs, np.array(outputs, dtype=np.int64), expr.shape()


def _assert_equal(case: str, inputs, got, expected):
    expected = np.asarray(expected, dtype=np.int64)
    assert got.shape == expected.shape, f"{case}: {got.shape} outputs, expected {expected.shape}"
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, (
        f"{case}: {bad.size}/{inputs.size} inputs differ; first failing input x={int(inputs[bad[0]])}: "
        f"hw={int(got[bad[0]])}, golden={int(expected[bad[0]])}")


def _check_requantize(rounding, overflow, width, shift, target_width):
    """One requantize case: a format of ``target_width`` bits whose fraction bits sit ``shift``
    below the source's (int_bits varied with the case so negative and positive I both occur)."""
    int_bits = (shift + width) % (target_width + 3) - 2          # in -2..target_width
    fmt = FixedFormat(target_width, int_bits)
    q = Quantizer(fmt, rounding, overflow)
    frac = fmt.frac + shift
    case = f"requantize({q}, sw={width}, frac={frac}, shift={shift})"
    inputs, got, shape = _simulate(lambda x: hw.requantize(x, frac, q), width)
    assert shape.signed and shape.width == target_width, f"{case}: result shape {shape}, expected signed({target_width})"
    _assert_equal(case, inputs, got, golden.requantize(inputs, frac, q))


# --- round_shift --------------------------------------------------------------------------------

@pytest.mark.parametrize("width", range(2, 10))
@pytest.mark.parametrize("rounding", ROUNDINGS, ids=[r.value for r in ROUNDINGS])
def test_round_shift_exhaustive(rounding, width):
    for shift in _shifts(width):
        case = f"round_shift({rounding.value}, sw={width}, shift={shift})"
        inputs, got, shape = _simulate(lambda x: hw.round_shift(x, shift, rounding), width)
        assert shape.signed, f"{case}: result shape {shape} is not signed"
        _assert_equal(case, inputs, got, golden.round_shift(inputs, shift, rounding))


# --- apply_overflow -----------------------------------------------------------------------------

@pytest.mark.parametrize("width", range(2, 11))
@pytest.mark.parametrize("overflow", OVERFLOWS, ids=[o.value for o in OVERFLOWS])
def test_apply_overflow_exhaustive(overflow, width):
    for target_width in TARGET_WIDTHS:
        case = f"apply_overflow({overflow.value}, sw={width}, W={target_width})"
        inputs, got, shape = _simulate(lambda x: hw.apply_overflow(x, target_width, overflow), width)
        assert shape.signed and shape.width == target_width, f"{case}: result shape {shape}, expected signed({target_width})"
        _assert_equal(case, inputs, got, golden.apply_overflow(inputs, target_width, overflow))


# --- requantize ---------------------------------------------------------------------------------

@pytest.mark.parametrize("width", EXHAUSTIVE_REQUANTIZE_WIDTHS)
@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_requantize_exhaustive(rounding, overflow, width):
    for shift, target_width in itertools.product(_shifts(width), TARGET_WIDTHS):
        _check_requantize(rounding, overflow, width, shift, target_width)


def _sampled_cases(rounding, overflow, width):
    corners = [
        (0, 2), (0, width), (0, width + 1), (0, 10),        # no rounding; wrap/saturate or not
        (1, 2), (1, width - 1), (1, width),                 # a tie bit; rounding up may overflow
        (width - 1, 2), (width, 2), (width + 2, 10),        # shifts at and beyond the width
        (-3, 2), (-3, 10), (-1, width + 1),                 # exact left shifts
    ]
    rest = [c for c in itertools.product(_shifts(width), TARGET_WIDTHS) if c not in corners]
    rng = _rng("requantize", rounding.value, overflow.value, width)
    picks = rng.choice(len(rest), size=SAMPLES_PER_WIDTH, replace=False)
    return corners + [rest[i] for i in sorted(picks)]


@pytest.mark.parametrize("width", SAMPLED_REQUANTIZE_WIDTHS)
@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_requantize_sampled(rounding, overflow, width):
    for shift, target_width in _sampled_cases(rounding, overflow, width):
        _check_requantize(rounding, overflow, width, shift, target_width)


# --- requantize with a per-mode target fraction (to_frac) -------------------------------------

TO_FRAC_CASES = [
    # (source width, source frac, format, to_frac)
    (8, 10, "fixed<6,1>", 5),       # to_frac == format frac: same as no override
    (8, 10, "fixed<6,1>", 7),       # finer than the format: fewer bits dropped, more overflow
    (8, 10, "fixed<6,1>", 2),       # coarser than the format
    (8, 10, "fixed<6,1>", 13),      # finer than the source: exact left shift
    (7, 4, "fixed<4,-2>", 1),       # negative int_bits format
    (7, 4, "fixed<4,-2>", 12),
    (9, 12, "fixed<10,3>", 12),     # shift 0, target wider than the source
    (9, 12, "fixed<10,3>", 0),      # shift beyond the source width
    (6, 3, "fixed<3,3>", 3),
    (6, 3, "fixed<3,3>", -2),       # negative target fraction bits
]


@pytest.mark.parametrize(("rounding", "overflow"), MODE_PAIRS, ids=MODE_IDS)
def test_requantize_to_frac(rounding, overflow):
    for width, frac, fmt_text, to_frac in TO_FRAC_CASES:
        fmt = FixedFormat.parse(fmt_text)
        q = Quantizer(fmt, rounding, overflow)
        case = f"requantize({q}, sw={width}, frac={frac}, to_frac={to_frac})"
        inputs, got, shape = _simulate(lambda x: hw.requantize(x, frac, q, to_frac=to_frac), width)
        assert shape.signed and shape.width == fmt.width, f"{case}: result shape {shape}, expected signed({fmt.width})"
        # The golden model's per-state formulation (golden/integer_model.py): shift the source
        # frac so that requantize's (frac - format frac) equals (frac - to_frac).
        expected = golden.requantize(inputs, frac - to_frac + fmt.frac, q)
        # ... which is, spelled out, one rounding then one overflow step.
        spelled = golden.apply_overflow(golden.round_shift(inputs, frac - to_frac, rounding),
                                        fmt.width, overflow)
        assert np.array_equal(expected, spelled), f"{case}: golden formulations disagree"
        _assert_equal(case, inputs, got, expected)
        if to_frac == fmt.frac:
            _, got_default, _ = _simulate(lambda x: hw.requantize(x, frac, q), width)
            _assert_equal(f"{case} vs to_frac=None", inputs, got_default, got)
