"""cocotb stream verification components: driver, monitor and scoreboard for valid/ready streams.

All components step on the falling clock edge: they write their inputs, then wait for ReadOnly so
that combinational ready/valid paths have settled, and record a transfer when valid and ready are
both high (it happens at the next rising edge). This avoids rising-edge sampling races between
simulators.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from ...hw.manifest import unpack_fields

__all__ = ["CycleCounter", "StreamDriver", "StreamMonitor", "Scoreboard", "start_clock_and_reset",
           "stream_pass"]


class CycleCounter:
    """Counts falling clock edges; components read ``now`` for timestamps."""

    def __init__(self, clk):
        self.clk = clk
        self.now = 0

    async def run(self):
        while True:
            await FallingEdge(self.clk)
            self.now += 1


@dataclass
class StreamDriver:
    """Drives beats into a sink (valid/payload out, ready in), with random idle cycles."""
    clk: object
    valid: object
    ready: object
    payload: object
    counter: CycleCounter
    idle_probability: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    sent_cycles: list = field(default_factory=list)

    async def send(self, words: list[int]):
        self.valid.value = 0
        for word in words:
            while True:
                await FallingEdge(self.clk)
                if self.rng.random() < self.idle_probability:
                    self.valid.value = 0
                    continue
                self.payload.value = word
                self.valid.value = 1
                await ReadOnly()
                if int(self.ready.value):
                    self.sent_cycles.append(self.counter.now)
                    break
        await FallingEdge(self.clk)
        self.valid.value = 0


@dataclass
class StreamMonitor:
    """Accepts beats from a source (ready out, valid/payload in), with random back-pressure."""
    clk: object
    valid: object
    ready: object
    payload: object
    counter: CycleCounter
    stall_probability: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    words: list = field(default_factory=list)
    cycles: list = field(default_factory=list)

    async def receive(self, count: int, max_cycles: int | None = None):
        """Take ``count`` beats, or stop once ``max_cycles`` cycles have passed (a design that
        drops a beat must fail the check, not hang it)."""
        while len(self.words) < count:
            if max_cycles is not None and self.counter.now >= max_cycles:
                break
            await FallingEdge(self.clk)
            self.ready.value = int(self.rng.random() >= self.stall_probability)
            await ReadOnly()
            if int(self.valid.value) and int(self.ready.value):
                self.words.append(int(self.payload.value))
                self.cycles.append(self.counter.now)
        await FallingEdge(self.clk)
        self.ready.value = 0


@dataclass
class Scoreboard:
    """Compares received beats with expected ones in order; keeps every mismatch."""
    expected: list
    mismatches: list = field(default_factory=list)

    def compare(self, received: list, describe) -> None:
        if len(received) != len(self.expected):
            self.mismatches.append(f"received {len(received)} beats, expected {len(self.expected)}")
        for index, (got, want) in enumerate(zip(received, self.expected)):
            if list(got) != list(want):
                self.mismatches.append(f"{describe(index)}: got {list(got)}, expected {list(want)}")


async def start_clock_and_reset(dut) -> CycleCounter:
    """Start ``dut.clk`` (10 ns) and a cycle counter, hold ``rst`` for 3 cycles with both streams
    idle, and release it on a falling edge. Returns the counter."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    counter = CycleCounter(dut.clk)
    cocotb.start_soon(counter.run())
    dut.rst.value = 1
    dut.u__valid.value = 0
    dut.y__ready.value = 0
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    return counter


async def stream_pass(dut, counter, words, count, y_fields, *, idle, stall, rng, max_cycles):
    """Send ``words`` on ``u`` and receive ``count`` beats on ``y`` (random idle cycles and
    back-pressure with the given probabilities), giving up ``max_cycles`` cycles after the
    start. Returns (outputs unpacked per ``y_fields``, cycles of the sent beats, cycles of the
    received beats); fewer outputs than ``count`` when time ran out."""
    driver = StreamDriver(dut.clk, dut.u__valid, dut.u__ready, dut.u__payload, counter,
                          idle_probability=idle, rng=random.Random(rng.random()))
    monitor = StreamMonitor(dut.clk, dut.y__valid, dut.y__ready, dut.y__payload, counter,
                            stall_probability=stall, rng=random.Random(rng.random()))
    sender = cocotb.start_soon(driver.send(words))
    await monitor.receive(count, counter.now + max_cycles)
    if len(monitor.words) < count:
        sender.cancel()                  # the design stopped taking beats: nothing to wait for
        dut.u__valid.value = 0
    else:
        await sender
    outputs = [unpack_fields(y_fields, w) for w in monitor.words]
    return outputs, driver.sent_cycles, monitor.cycles
