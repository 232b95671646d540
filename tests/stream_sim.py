"""Amaranth-simulator harness for the stream components' unit tests (SSMLayer, NetworkAccelerator,
FoldedLinear, RegisterSlice): one source that offers beats with random idle cycles, one sink with
random back-pressure, and the cycle of every transfer on either side."""

from __future__ import annotations

import random

from amaranth.sim import Simulator


def stream_through(dut, source, sink, beats, *, put, take, expected: int, seed: int,
                   idle: float = 0.0, stall: float = 0.0, budget: int, probe=None):
    """Offer ``beats`` on the stream ``source`` and take ``expected`` beats from ``sink``.

    put(ctx, beat): sets ``source.payload`` for one beat; take(payload) -> the received item;
    probe(ctx, ready): optional, called each sink cycle before ``sink.ready`` is set (a test may
    check combinational paths there). ``budget``: cycles to simulate at most.

    Returns (received items, cycles at which each beat was accepted, cycles at which each output
    beat was taken)."""
    rng = random.Random(seed)
    received, in_cycles, out_cycles = [], [], []
    cycle = [0]

    async def counter(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def offer(ctx):
        for beat in beats:
            while rng.random() < idle:
                ctx.set(source.valid, 0)
                await ctx.tick()
            put(ctx, beat)
            ctx.set(source.valid, 1)
            await ctx.tick().until(source.ready)
            in_cycles.append(cycle[0])
        ctx.set(source.valid, 0)

    async def collect(ctx):
        while len(received) < expected:
            ready = int(rng.random() >= stall)
            if probe is not None:
                probe(ctx, ready)
            ctx.set(sink.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(sink.valid, sink.payload)
            if valid and ready:
                received.append(take(payload))
                out_cycles.append(cycle[0])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(counter)
    sim.add_testbench(offer)
    sim.add_testbench(collect)
    sim.run_until(1e-6 * budget)
    return received, in_cycles, out_cycles
