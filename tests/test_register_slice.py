"""hw/register_slice.py: every beat passes once, in order, unchanged; one beat per cycle when
the output is always ready; the input's ready does not depend on the output's ready in the
same cycle (it comes from a register)."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from ssmgen.hw.register_slice import RegisterSlice


def _run(words, *, idle: float, stall: float, seed: int):
    dut = RegisterSlice(8)
    rng = random.Random(seed)
    received, taken_cycles, ready_checks = [], [], []
    cycle = [0]

    async def counter(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def source(ctx):
        for word in words:
            while rng.random() < idle:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, word)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        while len(received) < len(words):
            ready = int(rng.random() >= stall)
            # i.ready before and after toggling o.ready in the same cycle must agree
            ctx.set(dut.o.ready, 1 - ready)
            before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, ready)
            ready_checks.append(before == ctx.get(dut.i.ready))
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                received.append(payload)
                taken_cycles.append(cycle[0])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(counter)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-6 * (len(words) * 20 + 50))
    return received, taken_cycles, ready_checks


@pytest.mark.parametrize("seed", range(4))
def test_every_beat_once_in_order_under_random_stalls(seed):
    words = [random.Random(seed).randrange(256) for _ in range(60)]
    received, _, ready_checks = _run(words, idle=0.3, stall=0.5, seed=seed)
    assert received == words, f"seed {seed}"
    assert all(ready_checks), "i.ready changed with o.ready in the same cycle"


def test_full_throughput_when_never_stalled():
    words = list(range(40))
    received, cycles, _ = _run(words, idle=0.0, stall=0.0, seed=0)
    assert received == words
    assert [b - a for a, b in zip(cycles, cycles[1:])] == [1] * (len(words) - 1)
