# amaranth: UnusedElaboratable=no
"""hw/datapath/folded_linear.py against an exact integer reference (Python ints), in Amaranth's simulator.

Random weights, biases, residuals, fold factors (``cycles`` from 1, the fully parallel layer, to
more than H_in), with and without an output quantizer (every rounding and overflow mode), and
random idle cycles on the input and back-pressure on the output: every beat comes out once, in
order, bit-exact, with its side bits. Without stalls the unit takes one beat every ``fold``
cycles and answers after exactly ``latency`` cycles. Every random source is seeded; failure
messages name the case, the seed and the beat.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from stream_sim import stream_through

from ssmgen.golden.fixedpoint import requantize
from ssmgen.hw.datapath.folded_linear import FoldedLinear
from ssmgen.spec.formats import Quantizer

SEED = 0xF01D

ROUNDINGS = ("floor", "half_up", "half_even", "toward_zero")
OVERFLOWS = ("wrap", "saturate")


def make_case(seed: int, *, h_in, h_out, cycles, residual, quantized, zero_column=False,
              interval=None):
    """A random unit and its parameters (weights 2..8 bits, inputs 3..9 bits)."""
    rng = random.Random(seed)
    ww, wx, wb = rng.randint(2, 8), rng.randint(3, 9), rng.randint(2, 8)
    w = np.array([[rng.randint(-(1 << (ww - 1)), (1 << (ww - 1)) - 1) for _ in range(h_in)]
                  for _ in range(h_out)], dtype=np.int64)
    if zero_column:
        w[0, :] = 0                     # an output with no multiplier at all
    b = np.array([rng.randint(-(1 << (wb - 1)), (1 << (wb - 1)) - 1) for _ in range(h_out)],
                 dtype=np.int64)
    in_frac, w_frac, b_frac = rng.randint(0, 4), rng.randint(0, 5), rng.randint(0, 6)
    res = (rng.randint(3, 8), rng.randint(0, 4)) if residual else None
    frac = max(in_frac + w_frac, b_frac, res[1] if res else 0) + rng.randint(0, 2)
    bound = (h_in * (1 << (ww - 1)) * (1 << (wx - 1)) << (frac - in_frac - w_frac)) \
        + ((1 << (wb - 1)) << (frac - b_frac))
    if res:
        bound += (1 << (res[0] - 1)) << (frac - res[1])
    sum_bits = bound.bit_length() + 1
    quantizer = None
    if quantized:
        width = rng.randint(3, 10)
        quantizer = Quantizer.parse(f"fixed<{width},{rng.randint(0, width)}> "
                                    f"{rng.choice(ROUNDINGS)}/{rng.choice(OVERFLOWS)}")
    params = dict(in_width=wx, in_frac=in_frac, w_frac=w_frac, b_frac=b_frac, frac=frac,
                  sum_bits=sum_bits, cycles=cycles, interval=interval, residual=res,
                  quantizer=quantizer,
                  side_width=3)
    return w, b, params


def reference(w, b, params, x, r):
    """Exact ``Q(sum_j w[o,j] x[j] + b[o] + r[o])`` with Python ints."""
    frac = params["frac"]
    out = []
    for o in range(w.shape[0]):
        total = sum(int(w[o, j]) * int(x[j]) for j in range(w.shape[1])) \
            << (frac - params["in_frac"] - params["w_frac"])
        total += int(b[o]) << (frac - params["b_frac"])
        if params["residual"] is not None:
            total += int(r[o]) << (frac - params["residual"][1])
        out.append(total)
    if params["quantizer"] is not None:
        out = [int(v) for v in requantize(np.array(out, dtype=np.int64), frac, params["quantizer"])]
    return out


def simulate(dut, beats, *, seed, idle=0.0, stall=0.0):
    """Stream (x, r, side) beats through the unit. Returns the output (y, side) beats and the
    cycles at which each input beat was accepted and each output beat taken."""
    def put(ctx, beat):
        x, r, side = beat
        ctx.set(dut.i.payload.x, [int(v) for v in x])
        if r is not None:
            ctx.set(dut.i.payload.r, [int(v) for v in r])
        ctx.set(dut.i.payload.side, side)

    return stream_through(
        dut, dut.i, dut.o, beats, put=put,
        take=lambda payload: ([int(v) for v in payload.y], int(payload.side)),
        expected=len(beats), seed=seed, idle=idle, stall=stall,
        budget=len(beats) * (dut.interval + 2) * 10 + dut.latency + 100)


def random_beats(rng: random.Random, w, params, count):
    wx = params["in_width"]
    beats = []
    for n in range(count):
        x = [rng.randint(-(1 << (wx - 1)), (1 << (wx - 1)) - 1) for _ in range(w.shape[1])]
        r = None
        if params["residual"] is not None:
            wr = params["residual"][0]
            r = [rng.randint(-(1 << (wr - 1)), (1 << (wr - 1)) - 1) for _ in range(w.shape[0])]
        beats.append((x, r, n % 8))
    return beats


CASES = [
    dict(h_in=8, h_out=3, cycles=8, residual=False, quantized=False),     # K = 1, F = 8
    dict(h_in=8, h_out=4, cycles=3, residual=True, quantized=True),       # K = 3, F = 3, padded
    dict(h_in=5, h_out=2, cycles=2, residual=True, quantized=False),      # K = 3, F = 2, padded
    dict(h_in=4, h_out=3, cycles=1, residual=True, quantized=True),       # fully parallel
    dict(h_in=1, h_out=4, cycles=5, residual=False, quantized=True),      # one input, F = 1
    dict(h_in=6, h_out=3, cycles=16, residual=True, quantized=True,       # cycles > H_in
         zero_column=True),
    dict(h_in=7, h_out=1, cycles=7, residual=False, quantized=True),
    dict(h_in=4, h_out=3, cycles=3, residual=True, quantized=True, interval=3),   # F = 2, paced
    dict(h_in=3, h_out=2, cycles=1, residual=False, quantized=False, interval=4), # F = 1, paced
]


@pytest.mark.parametrize("case_index", range(len(CASES)))
def test_matches_reference_under_random_stalls(case_index):
    seed = SEED + case_index
    w, b, params = make_case(seed, **CASES[case_index])
    dut = FoldedLinear(w, b, **params)
    check_under_stalls(dut, w, b, params, random_beats(random.Random(seed), w, params, 25),
                       f"case {case_index} (seed {seed})", seed)


def check_under_stalls(dut, w, b, params, beats, label: str, seed: int) -> None:
    """Random idle input cycles and back-pressure: every beat comes out once, in order, equal to
    the exact reference, with its side bits (shared with test_serial_linear)."""
    received, _, _ = simulate(dut, beats, seed=seed, idle=0.3, stall=0.5)
    assert len(received) == len(beats), f"{label}: {len(received)} of {len(beats)} beats came out"
    for n, ((x, r, side), (y, got_side)) in enumerate(zip(beats, received)):
        want = reference(w, b, params, x, r)
        assert (y, got_side) == (want, side), f"{label}, beat {n}"


@pytest.mark.parametrize("case_index", range(len(CASES)))
def test_full_rate_spacing_and_latency(case_index):
    """Always valid, always ready: one beat every ``interval`` cycles (``fold`` unless given),
    each answered after exactly ``latency`` cycles."""
    seed = SEED + 50 + case_index
    w, b, params = make_case(seed, **CASES[case_index])
    dut = FoldedLinear(w, b, **params)
    beats = random_beats(random.Random(seed), w, params, 10)
    received, in_cycles, out_cycles = simulate(dut, beats, seed=seed)
    assert [y for y, _ in received] == [reference(w, b, params, x, r) for x, r, _ in beats]
    assert dut.fold <= params["cycles"] and dut.lanes * dut.fold >= w.shape[1]
    assert dut.interval == (params["interval"] or dut.fold)
    assert np.all(np.diff(in_cycles) == dut.interval), (case_index, in_cycles)
    assert [o - i for i, o in zip(in_cycles, out_cycles)] == [dut.latency] * len(beats)


def test_multipliers_and_fold():
    """The default sDigits mixing (32 x 32 over G = 32 cycles): 32 multipliers, 32 cycles; the
    fully parallel case: one multiplier per non-zero weight."""
    w = np.arange(1, 32 * 32 + 1, dtype=np.int64).reshape(32, 32) % 7 - 3
    args = dict(in_width=8, in_frac=3, w_frac=6, b_frac=0, frac=9, sum_bits=24)
    folded = FoldedLinear(w, np.zeros(32, dtype=np.int64), cycles=32, **args)
    assert (folded.lanes, folded.fold, folded.multipliers, folded.latency) == (1, 32, 32, 36)
    assert FoldedLinear(w, np.zeros(32, dtype=np.int64), cycles=10, **args).lanes == 4
    parallel = FoldedLinear(w, np.zeros(32, dtype=np.int64), cycles=1, **args)
    assert (parallel.lanes, parallel.fold, parallel.latency) == (32, 1, 4)
    assert parallel.multipliers == int(np.count_nonzero(w))


def test_bad_arguments_are_rejected():
    args = dict(in_width=8, in_frac=3, w_frac=6, b_frac=0, frac=9, sum_bits=24, cycles=4)
    w, b = np.ones((2, 3), dtype=np.int64), np.zeros(2, dtype=np.int64)
    with pytest.raises(TypeError, match="2-D integer array"):
        FoldedLinear(w.astype(float), b, **args)
    with pytest.raises(ValueError, match="Bias must be 2 integers"):
        FoldedLinear(w, np.zeros(3, dtype=np.int64), **args)
    with pytest.raises(ValueError, match="Cycles must be a positive integer, not 0"):
        FoldedLinear(w, b, **{**args, "cycles": 0})
    with pytest.raises(ValueError, match="fraction bits must cover the weight"):
        FoldedLinear(w, b, **{**args, "frac": 8})
    with pytest.raises(ValueError, match="Interval must be at least the fold 3"):
        FoldedLinear(w, b, **{**args, "cycles": 3}, interval=2)
    with pytest.raises(TypeError, match="Quantizer"):
        FoldedLinear(w, b, **args, quantizer="fixed<8,2>")
