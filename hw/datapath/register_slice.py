"""A register slice for a valid/ready stream (a "skid buffer").

Cuts every combinational path through it, in both directions: the output's payload and valid
come from registers, and so does the input's ready. It still passes one beat per cycle: when the
output is held, the beat accepted in that cycle waits in a second register (the skid) and ready
drops for as long as the skid is full. Payloads pass unchanged, one cycle later when the output
is free.

Without the skid (``skid=False``) the input is ready only while the output register is empty:
ready still comes from a register, at half the cost, but a beat can pass only every second
cycle, which is plenty where beats are G >= 2 cycles apart (a folded network's streams).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Ports: ``i : In(stream.Signature(width))``, ``o : Out(stream.Signature(width))``: a flat
    payload of ``width`` bits (pack fields with ``Cat``). ``skid``: one beat per cycle (True) or
    one every second cycle with one register instead of two (False)."""

    def __init__(self, width: int, *, skid: bool = True):
        self.skid = skid
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        if not self.skid:
            m.d.comb += self.i.ready.eq(~self.o.valid)
            with m.If(self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            with m.If(self.i.valid & ~self.o.valid):
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1)]
            return m
        skid = Signal(len(self.i.payload))
        skid_full = Signal()
        m.d.comb += self.i.ready.eq(~skid_full)
        with m.If(~self.o.valid | self.o.ready):
            # The output register is free this cycle: refill it from the skid first.
            with m.If(skid_full):
                m.d.sync += [self.o.payload.eq(skid), skid_full.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_full):
            m.d.sync += [skid.eq(self.i.payload), skid_full.eq(1)]
        return m
