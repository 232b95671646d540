"""hw/datapath/register_slice.py: every beat passes once, in order, unchanged; one beat per cycle when
the output is always ready (one every second cycle without the skid); the input's ready does not
depend on the output's ready in the same cycle (it comes from a register)."""

from __future__ import annotations

import random

import pytest
from stream_sim import stream_through

from ssmgen.hw.datapath.register_slice import RegisterSlice


def _run(words, *, idle: float, stall: float, seed: int, skid: bool = True):
    dut = RegisterSlice(8, skid=skid)
    ready_checks = []

    def probe(ctx, ready):
        # i.ready before and after toggling o.ready in the same cycle must agree
        ctx.set(dut.o.ready, 1 - ready)
        before = ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, ready)
        ready_checks.append(before == ctx.get(dut.i.ready))

    received, _, taken_cycles = stream_through(
        dut, dut.i, dut.o, words, put=lambda ctx, word: ctx.set(dut.i.payload, word),
        take=int, expected=len(words), seed=seed, idle=idle, stall=stall,
        budget=len(words) * 20 + 50, probe=probe)
    return received, taken_cycles, ready_checks


@pytest.mark.parametrize("skid", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_every_beat_once_in_order_under_random_stalls(seed, skid):
    words = [random.Random(seed).randrange(256) for _ in range(60)]
    received, _, ready_checks = _run(words, idle=0.3, stall=0.5, seed=seed, skid=skid)
    assert received == words, f"seed {seed}"
    assert all(ready_checks), "i.ready changed with o.ready in the same cycle"


@pytest.mark.parametrize("skid,spacing", [(True, 1), (False, 2)])
def test_full_throughput_when_never_stalled(skid, spacing):
    words = list(range(40))
    received, cycles, _ = _run(words, idle=0.0, stall=0.0, seed=0, skid=skid)
    assert received == words
    assert [b - a for a, b in zip(cycles, cycles[1:])] == [spacing] * (len(words) - 1)
