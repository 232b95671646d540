"""8N1 UART receiver and transmitter as byte streams.

Both take ``divisor`` = clock cycles per bit (clock frequency / baud rate, rounded): 104 for
115200 baud from the iCEBreaker's 12 MHz, 217 from the ULX3S's 25 MHz, and a small value such as
8 in simulation so that a frame costs few simulated cycles.
"""

from __future__ import annotations

import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "check_divisor"]


def check_divisor(divisor) -> int:
    divisor = operator.index(divisor)
    # Mid-bit sampling needs a half-bit wait of at least 2 cycles after the 2-FF synchronizer.
    if divisor < 4:
        raise ValueError(f"Divisor (clock cycles per bit) must be at least 4, not {divisor}")
    return divisor


class UARTRx(wiring.Component):
    """8N1 receiver: 2-FF synchronizer, start bit confirmed at mid-bit, data bits sampled at
    mid-bit, LSB first; a byte whose stop bit is low (framing error) is dropped.

    Ports
    -----
    rx : In(1)                          the line (idle high), asynchronous to the clock
    data : Out(stream.Signature(8))     received bytes; held until taken or the next byte
                                        arrives (then the old one is lost and ``overrun`` pulses)
    busy : Out(1)                       a byte is being received
    overrun : Out(1)                    one-cycle pulse: a byte was lost (consumer too slow)
    framing_error : Out(1)              one-cycle pulse: a stop bit was low
    """

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8)),
                          "busy": Out(1), "overrun": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor + 1))
        bits = Signal(range(9))
        shift = Signal(8)

        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        m.d.sync += [self.overrun.eq(0), self.framing_error.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):          # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bits.eq(bits + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1),
                                 self.overrun.eq(self.data.valid & ~self.data.ready)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):          # wait for the line to return high
                m.d.comb += self.busy.eq(1)
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter: start bit, 8 data bits LSB first, one stop bit.

    Ports
    -----
    data : In(stream.Signature(8))      bytes to send; taken when the transmitter is idle
    tx : Out(1)                         the line (idle high), registered
    busy : Out(1)                       a byte is being sent
    """

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        # start bit, 8 data bits, stop bit; shifted out LSB first
        frame = Signal(10, init=0x3FF)
        remaining = Signal(range(11))

        m.d.comb += [self.tx.eq(frame[0]), self.busy.eq(remaining != 0),
                     self.data.ready.eq(remaining == 0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [frame.eq(Cat(0, self.data.payload, 1)), remaining.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(remaining != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [frame.eq(Cat(frame[1:], 1)), remaining.eq(remaining - 1),
                             timer.eq(self.divisor - 1)]
        return m
