"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR), one byte per cycle.

The board link's frames end with this CRC (docs/protocol.md section 2); Python's
``binascii.crc_hqx(data, 0xFFFF)`` computes the same value.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CRC_INIT", "CRC_POLY", "crc16_update", "CRC16"]

CRC_INIT = 0xFFFF
CRC_POLY = 0x1021


def crc16_update(crc, byte) -> Value:
    """The CRC after one more byte: an expression (8 unrolled shift/XOR steps, MSB first)."""
    crc = Value.cast(crc)[:16] ^ Cat(Const(0, 8), Value.cast(byte)[:8])
    for _ in range(8):
        crc = Cat(Const(0, 1), crc[:15]) ^ Mux(crc[15], CRC_POLY, 0)
    return crc


class CRC16(wiring.Component):
    """CRC register fed one byte per cycle.

    Ports
    -----
    clear : In(1)       restart at 0xFFFF (takes priority over ``valid``)
    valid : In(1)       ``data`` is a byte to include this cycle
    data : In(8)
    crc : Out(16)       CRC of the bytes included since the last clear, registered
    """

    def __init__(self):
        super().__init__({"clear": In(1), "valid": In(1), "data": In(8),
                          "crc": Out(16, init=CRC_INIT)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.clear):
            m.d.sync += self.crc.eq(CRC_INIT)
        with m.Elif(self.valid):
            m.d.sync += self.crc.eq(crc16_update(self.crc, self.data))
        return m
