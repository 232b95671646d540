# amaranth: UnusedElaboratable=no
"""hw/datapath/serial_linear.py against the exact integer reference of test_folded_linear, in
Amaranth's simulator: random weights, biases, residuals, quantizers, K from 1 to H_in, paced
inputs, products in logic, random idle cycles and back-pressure. Every beat comes out once, in
order, bit-exact, with its side bits; at full rate one beat every ``interval`` cycles, each
answered after ``latency`` cycles. Seeds are in the failure messages."""

from __future__ import annotations

import random

import numpy as np
import pytest
from stream_sim import stream_through
from test_folded_linear import (SEED, check_under_stalls, make_case, random_beats, reference,
                                simulate)

from ssmgen.hw.datapath.serial_linear import SerialLinear

CASES = [
    dict(h_in=8, h_out=3, cycles=24, residual=False, quantized=False),    # K = 1, F = 8
    dict(h_in=8, h_out=4, cycles=12, residual=True, quantized=True),      # K = 3, F = 3, padded
    dict(h_in=5, h_out=2, cycles=2, residual=True, quantized=False),      # K = 5, one cycle each
    dict(h_in=1, h_out=4, cycles=5, residual=False, quantized=True),      # one input
    dict(h_in=6, h_out=3, cycles=40, residual=True, quantized=True,       # an all-zero row
         zero_column=True),
    dict(h_in=7, h_out=1, cycles=7, residual=False, quantized=True),      # one output
    dict(h_in=4, h_out=3, cycles=6, residual=True, quantized=True, interval=9),   # paced
]


#: (case, latch): every case latched, and read in place where no interval paces it (reading in
#: place, the producer paces the unit)
VARIANTS = [(i, True) for i in range(len(CASES))] + \
    [(i, False) for i, case in enumerate(CASES) if case.get("interval") is None]
VARIANT_IDS = [f"{i}-{'latched' if latch else 'in_place'}" for i, latch in VARIANTS]


def _unit(case_index, seed, **extra):
    w, b, params = make_case(seed, **CASES[case_index])
    return w, b, params, SerialLinear(w, b, **params, **extra)


@pytest.mark.parametrize("dsp_products", [None, 0])
@pytest.mark.parametrize("case_index,latch", VARIANTS, ids=VARIANT_IDS)
def test_matches_reference_under_random_stalls(case_index, latch, dsp_products):
    seed = SEED + 200 + case_index
    w, b, params, dut = _unit(case_index, seed, dsp_products=dsp_products, latch=latch)
    check_under_stalls(dut, w, b, params, random_beats(random.Random(seed), w, params, 12),
                       f"case {case_index} (seed {seed})", seed)
    if dsp_products == 0:
        assert dut.products == [] and len(dut.product_costs) > 0


@pytest.mark.parametrize("case_index,latch", VARIANTS, ids=VARIANT_IDS)
def test_full_rate_spacing_and_latency(case_index, latch):
    """Always valid, always ready: one beat every ``interval`` cycles, each answered
    ``latency`` cycles after it was accepted (reading in place: accepted ``hold`` cycles after
    it was offered)."""
    seed = SEED + 250 + case_index
    w, b, params, dut = _unit(case_index, seed, latch=latch)
    beats = random_beats(random.Random(seed), w, params, 6)
    received, in_cycles, out_cycles = simulate(dut, beats, seed=seed)
    assert [y for y, _ in received] == [reference(w, b, params, x, r) for x, r, _ in beats]
    assert dut.fold <= params["cycles"] and dut.lanes * dut.chunks >= w.shape[1]
    assert dut.fold == w.shape[0] * dut.chunks and dut.multipliers == dut.lanes
    assert np.all(np.diff(in_cycles) == dut.interval), (case_index, in_cycles)
    assert [o - i for i, o in zip(in_cycles, out_cycles)] == [dut.latency] * len(beats)
    assert in_cycles[0] - in_cycles_of_latched(case_index, seed) == dut.hold


def in_cycles_of_latched(case_index, seed):
    """When the latched unit accepts its first beat (offered at once, taken at once)."""
    w, b, params, dut = _unit(case_index, seed)
    return simulate(dut, random_beats(random.Random(seed), w, params, 1), seed=seed)[1][0]


def test_mixing_16_by_16_over_128_cycles_takes_two_multipliers():
    """16 outputs in G = 128 cycles leave 8 cycles per output for 16 inputs: K = 2, F = 8;
    twice the time, one multiplier."""
    w = np.arange(256, dtype=np.int64).reshape(16, 16) % 7 - 3
    args = dict(in_width=8, in_frac=3, w_frac=6, b_frac=0, frac=9, sum_bits=24)
    unit = SerialLinear(w, np.zeros(16, dtype=np.int64), cycles=128, **args)
    assert (unit.lanes, unit.chunks, unit.fold, unit.latency) == (2, 8, 128, 132)
    assert SerialLinear(w, np.zeros(16, dtype=np.int64), cycles=256, **args).lanes == 1


def test_bad_arguments_are_rejected():
    args = dict(in_width=8, in_frac=3, w_frac=6, b_frac=0, frac=9, sum_bits=24, cycles=4)
    w, b = np.ones((2, 3), dtype=np.int64), np.zeros(2, dtype=np.int64)
    with pytest.raises(TypeError, match="2-D integer array"):
        SerialLinear(w.astype(float), b, **args)
    with pytest.raises(ValueError, match="Cycles must be at least the 2 outputs"):
        SerialLinear(w, b, **{**args, "cycles": 1})
    with pytest.raises(ValueError, match="Interval must be at least the fold 4"):
        SerialLinear(w, b, **args, interval=3)
    with pytest.raises(ValueError, match="Interval needs the input latch"):
        SerialLinear(w, b, **args, interval=4, latch=False)
    # (word streams and banks, the folded network's, are checked through the network:
    # tests/test_network_hw.py::test_folded_layers_match_golden_with_stalls)
    with pytest.raises(ValueError, match="Banks must be >= 1 and divide the 2 stacked outputs"):
        SerialLinear(w, b, **args, banks=3)
    with pytest.raises(ValueError, match="Argmax needs the output register"):
        SerialLinear(w, b, **args, words=True, argmax=True)
    with pytest.raises(ValueError, match="Residual_words needs a residual"):
        SerialLinear(w, b, **args, residual_words=5)


@pytest.mark.parametrize("case_index", [0, 1, 3, 4])
def test_argmax_of_the_outputs(case_index):
    """``argmax``: the index of the largest output beside the outputs, ties to the lowest
    (numpy.argmax), under random stalls; all-equal outputs give 0."""
    seed = SEED + 300 + case_index
    w, b, params, dut = _unit(case_index, seed, argmax=True)
    beats = random_beats(random.Random(seed), w, params, 10)
    received, _, _ = stream_through(
        dut, dut.i, dut.o, beats, put=lambda ctx, beat: _put(ctx, dut, beat),
        take=lambda payload: ([int(v) for v in payload.y], int(payload.best)),
        expected=len(beats), seed=seed, idle=0.3, stall=0.5, budget=len(beats) * 400)
    assert len(received) == len(beats)
    for n, ((x, r, _), (y, best)) in enumerate(zip(beats, received)):
        assert y == reference(w, b, params, x, r), f"seed {seed}, beat {n}"
        assert best == int(np.argmax(y)), f"seed {seed}, beat {n}: {y}"
    flat = SerialLinear(np.zeros_like(w), np.full_like(b, 3), **params, argmax=True)
    ties = [(x, None if r is None else [0] * len(r), side) for x, r, side in beats[:2]]
    got, _, _ = stream_through(
        flat, flat.i, flat.o, ties, put=lambda ctx, beat: _put(ctx, flat, beat),
        take=lambda payload: int(payload.best), expected=2, seed=seed, budget=2000)
    assert got == [0, 0]


def _put(ctx, dut, beat):
    x, r, side = beat
    ctx.set(dut.i.payload.x, [int(v) for v in x])
    if r is not None:
        ctx.set(dut.i.payload.r, [int(v) for v in r])
    ctx.set(dut.i.payload.side, side)
