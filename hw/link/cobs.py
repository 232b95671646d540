"""Streaming COBS (Consistent Overhead Byte Stuffing) with 0x00 frame delimiters.

COBS as in Cheshire & Baker and the ``cobs`` PyPI package (docs/protocol.md section 1): a
frame is a sequence of blocks, each a code byte ``c`` (1..255) and ``c - 1`` non-zero data bytes;
a block with ``c < 255`` that is not the last stands for its data followed by one 0x00.

``COBSDecoder`` splits the line at 0x00, decodes, and flags frames that are invalid or too long.
``COBSEncoder`` turns a frame into ``0x00 COBS(frame) 0x00`` with a 254-byte lookahead buffer.
"""

from __future__ import annotations

import operator

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["COBSDecoder", "COBSEncoder", "decoded_layout", "frame_byte_layout"]

#: COBSDecoder output beat. ``end = 0``: ``data`` is the next decoded byte. ``end = 1``: the frame
#: is complete (a delimiter arrived); ``error = 1`` if it must be discarded (invalid COBS or more
#: than ``max_encoded`` bytes), and ``data`` is meaningless.
decoded_layout = data.StructLayout({"data": 8, "end": 1, "error": 1})

#: COBSEncoder input beat: ``last`` marks the final byte of the frame.
frame_byte_layout = data.StructLayout({"data": 8, "last": 1})


class COBSDecoder(wiring.Component):
    """Delimiter splitter and COBS decoder, one encoded byte per cycle, no buffering.

    Mirrors ``spec.protocol.FrameDecoder`` + ``cobs_decode``: an empty encoded frame (two
    delimiters in a row) produces nothing; a run of more than ``max_encoded`` non-zero bytes is
    dropped up to the next delimiter (its end beat has ``error = 1``); a code byte announcing more
    bytes than arrive before the delimiter makes the frame invalid (``error = 1``).

    Ports
    -----
    i : In(stream.Signature(8))                 line bytes, delimiters included
    o : Out(stream.Signature(decoded_layout))   decoded bytes and one end beat per frame
    """

    def __init__(self, max_encoded: int):
        max_encoded = operator.index(max_encoded)
        if max_encoded < 1:
            raise ValueError(f"Max_encoded must be at least 1, not {max_encoded}")
        self.max_encoded = max_encoded
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(decoded_layout))})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.max_encoded + 1))     # encoded bytes of this frame so far
        remaining = Signal(8)                           # data bytes left in the current block
        code_ff = Signal()                              # current block's code is 255 (no zero)
        discarding = Signal()
        byte = self.i.payload

        def consume(*updates):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += list(updates)

        def produce(fields, *updates):
            m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready)]
            m.d.comb += [getattr(self.o.payload, name).eq(value) for name, value in fields.items()]
            with m.If(self.i.valid & self.o.ready):
                m.d.sync += list(updates)

        reset = [count.eq(0), remaining.eq(0), code_ff.eq(0), discarding.eq(0)]
        with m.If(byte == 0):
            with m.If((count != 0) | discarding):
                produce({"end": 1, "error": discarding | (remaining != 0)}, *reset)
            with m.Else():
                consume()
        with m.Elif(discarding):
            consume()
        with m.Elif(count == self.max_encoded):         # one byte too many: drop the frame
            consume(discarding.eq(1))
        with m.Elif(remaining == 0):                    # a code byte
            code_updates = [count.eq(count + 1), remaining.eq(byte - 1), code_ff.eq(byte == 0xFF)]
            with m.If((count != 0) & ~code_ff):         # the previous block implied a zero
                produce({"data": 0}, *code_updates)
            with m.Else():
                consume(*code_updates)
        with m.Else():
            produce({"data": byte}, count.eq(count + 1), remaining.eq(remaining - 1))
        return m


class COBSEncoder(wiring.Component):
    """Frame bytes -> ``0x00 COBS(frame) 0x00`` on the line.

    Bytes are collected until a zero (not stored: it is implied by the block), 254 non-zero bytes
    or the last byte; then the block's code and its data follow from a 254-byte buffer (one block
    RAM). The output equals ``b"\\x00" + cobs.encode(frame) + b"\\x00"`` byte for byte.

    Ports
    -----
    i : In(stream.Signature(frame_byte_layout))   frame bytes; ``last`` on the final one
    o : Out(stream.Signature(8))                  line bytes
    busy : Out(1)                                 a frame is being encoded or sent
    """

    def __init__(self):
        super().__init__({"i": In(stream.Signature(frame_byte_layout)),
                          "o": Out(stream.Signature(8)), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = Memory(shape=8, depth=254, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port()          # synchronous: data one cycle after the address

        n = Signal(range(255))           # data bytes in the current block
        index = Signal(range(255))
        ends_frame = Signal()            # the current block is the frame's last
        final_block = Signal()           # after it, an empty block (the frame ended in a zero)

        m.d.comb += [wr.addr.eq(n), wr.data.eq(self.i.payload.data)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.o.payload.eq(0), self.o.valid.eq(self.i.valid)]
                with m.If(self.i.valid & self.o.ready):
                    m.d.sync += [n.eq(0), ends_frame.eq(0), final_block.eq(0)]
                    m.next = "FILL"
            with m.State("FILL"):
                m.d.comb += [self.busy.eq(1), self.i.ready.eq(1)]
                with m.If(self.i.valid):
                    last = self.i.payload.last
                    with m.If(self.i.payload.data == 0):
                        m.d.sync += [ends_frame.eq(last), final_block.eq(last)]
                        m.next = "CODE"
                    with m.Else():
                        m.d.comb += wr.en.eq(1)
                        m.d.sync += [n.eq(n + 1), ends_frame.eq(last)]
                        with m.If(last | (n == 253)):
                            m.next = "CODE"
            with m.State("CODE"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1), self.o.payload.eq(n + 1),
                             rd.addr.eq(0)]
                with m.If(self.o.ready):
                    m.d.sync += index.eq(0)
                    with m.If(n != 0):
                        m.next = "DATA"
                    with m.Else():
                        m.next = "NEXT"
            with m.State("DATA"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1), self.o.payload.eq(rd.data),
                             rd.addr.eq(index)]
                with m.If(self.o.ready):
                    m.d.comb += rd.addr.eq(index + 1)
                    m.d.sync += index.eq(index + 1)
                    with m.If(index + 1 == n):
                        m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += n.eq(0)
                with m.If(final_block):
                    m.d.sync += final_block.eq(0)
                    m.next = "CODE"              # n = 0: the empty block 0x01
                with m.Elif(ends_frame):
                    m.next = "DELIMIT"
                with m.Else():
                    m.next = "FILL"
            with m.State("DELIMIT"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1), self.o.payload.eq(0)]
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
