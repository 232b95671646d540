"""Out-of-context synthesis harness: the accelerator with its ports driven from inside the chip.

The bare accelerator has more I/O bits than small packages have pins (iCE40 SG48: 39), so
place-and-route cannot measure it directly. The harness feeds the input stream (payload, valid)
and the output's ready from an LFSR and folds the output stream into one registered pin, so
nothing is optimized away and only clk, rst and that pin leave the chip. The LFSR and the fold
are small and add short paths only; the synthesis report states that this scheme was used.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

__all__ = ["SynthHarness"]


class SynthHarness(wiring.Component):
    """Ports: ``out : Out(1)`` (a fold of every output bit, registered).

    ``layer``: the accelerator, any component with the generated ``u`` and ``y`` streams (an
    ``SSMLayer`` or a ``NetworkAccelerator``)."""

    def __init__(self, layer: wiring.Component):
        self.layer = layer
        super().__init__({"out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = layer = self.layer
        payload_width = len(layer.u.payload.as_value())
        width = max(payload_width + 2, 8)
        # Fibonacci LFSR (x^n + x^(n-1) + 1 style taps); any non-constant sequence will do.
        lfsr = Signal(width, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[1] ^ lfsr[width - 1]))
        m.d.comb += [layer.u.payload.as_value().eq(lfsr[:payload_width]),
                     layer.u.valid.eq(lfsr[payload_width]),
                     layer.y.ready.eq(lfsr[payload_width + 1])]
        fold = Signal()
        m.d.sync += fold.eq(layer.y.payload.as_value().xor() ^ layer.y.valid ^ layer.u.ready)
        m.d.comb += self.out.eq(fold)
        return m
