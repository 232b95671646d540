"""The device side of the board link protocol (docs/protocol.md), byte for byte.

``LinkController`` sits between the UART byte streams and the SSM layer's stream ports. It does
what ``sw_driver.transport.ReferenceDevice`` (the executable specification) does, in the same
order: receive a frame (delimiters, COBS, CRC-16), check it (length, command, sequence number,
payload), execute it (IDENTIFY, RESET_STATE, STREAM into the layer, READ from the output buffer),
remember the response for replay, and send it (CRC-16, COBS). The tests compare its answers with
ReferenceDevice's for the same request bytes, malformed requests included.

Data path::

    rx bytes -> COBSDecoder -> frame RAM (decoded bytes; header fields and the CRC are taken on
                               the fly)
    STREAM: frame RAM -> timestep registers -> layer.u ... layer.y -> output RAM (max_batch x H)
    response: header / registers / IDENTIFY constant / output RAM -> CRC -> COBSEncoder -> tx bytes

One request is handled at a time (the host sends the next only after the response), so the
frame RAM is not double-buffered: while a request executes and its response is sent, the decoder
holds further bytes back and the FIFO in front of it absorbs them.
"""

from __future__ import annotations

import operator

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...spec.hashing import model_hash as compute_hash
from ...spec.protocol import (
    HEADER_SIZE, IDENTIFY_STRUCT, MAX_PAYLOAD, MIN_FRAME, Cmd, DeviceInfo, Nack, max_encoded_size,
    sample_bytes, stream_payload_size,
)
from ...spec.quantized import QuantizedSSM
from ..datapath.const_product import const_product
from ..datapath.ssm_layer import input_layout, output_layout
from .cobs import COBSDecoder, COBSEncoder
from .crc16 import CRC_INIT, crc16_update

__all__ = ["LinkController", "device_info"]

# What a response carries after its header.
_NACK, _IDENTIFY, _EMPTY, _ACK, _READ = range(5)


def device_info(model: QuantizedSSM, *, max_batch: int,
                model_hash: str | None = None) -> DeviceInfo:
    """The IDENTIFY_RESP contents of a board top for ``model`` (what ReferenceDevice reports)."""
    if model_hash is None:
        model_hash = compute_hash(model)
    q = model.config.quant
    return DeviceInfo(model_hash, model.channels, q.input.format.width, q.input.format.frac,
                      q.output.format.width, q.output.format.frac, model.states,
                      model.config.hardware.lanes, max_batch)


class LinkController(wiring.Component):
    """Frame receiver, command executor and response sender of the board link.

    Parameters
    ----------
    model : QuantizedSSM
        Fixes H, the sample widths and the IDENTIFY constants (model hash from the weights).
    max_batch : int
        Most timesteps per STREAM = output buffer capacity (1..255), advertised in IDENTIFY.

    Ports
    -----
    rx : In(stream.Signature(8))                          bytes from the UART receiver
    tx : Out(stream.Signature(8))                         bytes to the UART transmitter
    u : Out(stream.Signature(input_layout(model)))        to the layer: ``data[h]`` signed(W_u),
                                                          ``start`` 1 bit
    y : In(stream.Signature(output_layout(model)))        from the layer: ``data[h]`` signed(W_y)
    busy : Out(1)                                         a request is being executed or answered

    Sizes: frame RAM ``6 + 1 + max_batch * (1 + H * B_u)`` bytes; output RAM ``max_batch`` words
    of ``H * W_y`` bits; COBS encoder buffer 254 bytes.
    """

    def __init__(self, model: QuantizedSSM, *, max_batch: int = 32, model_hash: str | None = None):
        if not isinstance(model, QuantizedSSM):
            raise TypeError(f"Model must be a QuantizedSSM, not {type(model).__name__}")
        max_batch = operator.index(max_batch)
        if not 1 <= max_batch <= 255:
            raise ValueError(f"Max_batch must be in 1..255, not {max_batch}")
        self.model = model
        self.info = device_info(model, max_batch=max_batch, model_hash=model_hash)
        self.max_batch = max_batch
        self.channels = H = model.channels
        self.input_width, self.output_width = self.info.input_width, self.info.output_width
        self.input_bytes = sample_bytes(self.input_width)       # B_u
        self.output_bytes = sample_bytes(self.output_width)     # B_y
        self.step_bytes = 1 + H * self.input_bytes              # flags + H samples
        largest = max(stream_payload_size(max_batch, H, self.input_width),
                      1 + max_batch * H * self.output_bytes)
        if largest > MAX_PAYLOAD:
            raise ValueError(f"Max_batch {max_batch} makes a {largest}-byte payload, over the u16 "
                             f"length limit {MAX_PAYLOAD}; choose a smaller max_batch")
        #: largest valid request, decoded (the frame RAM's size)
        self.frame_bytes = MIN_FRAME + stream_payload_size(max_batch, H, self.input_width)
        #: RX_MAX: longer encoded frames are dropped (as ReferenceDevice.rx_max)
        self.rx_max = max_encoded_size(self.frame_bytes)
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "u": Out(stream.Signature(input_layout(model))),
                          "y": In(stream.Signature(output_layout(model))), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        H, By = self.channels, self.output_bytes
        m.submodules.decoder = decoder = COBSDecoder(self.rx_max)
        m.submodules.encoder = encoder = COBSEncoder()
        wiring.connect(m, wiring.flipped(self.rx), decoder.i)
        wiring.connect(m, encoder.o, wiring.flipped(self.tx))

        m.submodules.frame_ram = frame_ram = Memory(shape=8, depth=self.frame_bytes, init=[])
        frame_wr, frame_rd = frame_ram.write_port(), frame_ram.read_port()
        out_width = H * self.output_width
        m.submodules.out_ram = out_ram = Memory(shape=out_width, depth=self.max_batch, init=[])
        out_wr, out_rd = out_ram.write_port(), out_ram.read_port()

        # --- receive: decoded bytes into the frame RAM, header and CRC on the fly -------------
        count = Signal(range(self.rx_max + 1))      # decoded bytes so far
        cmd, seq, length, n = Signal(8), Signal(8), Signal(16), Signal(8)
        rx_crc = Signal(16, init=CRC_INIT)          # over all bytes but the last two
        older, newer = Signal(8), Signal(8)         # the last two bytes: the CRC, once complete
        beat = decoder.o.payload
        rx_restart = [count.eq(0), rx_crc.eq(CRC_INIT)]

        # --- device registers (docs/protocol.md section 4) ------------------------------------------
        synced, last_seq, last_cmd = Signal(), Signal(8), Signal(8)
        pending = Signal(range(self.max_batch + 1))       # outputs held
        read_count = Signal(range(self.max_batch + 1))    # outputs sent by the last READ (replay)
        ack_accepted, ack_pending = Signal(8), Signal(8)  # the last STREAM_ACK (replay)
        # The layer zeroes its state only through `start`: RESET_STATE and power-up force it on
        # the next timestep fed, which is exactly "state = 0" in ReferenceDevice.
        force_start = Signal(init=1)

        # --- response being sent ---------------------------------------------------------------
        resp_code, resp_seq, resp_len = Signal(8), Signal(8), Signal(16)
        resp_kind = Signal(range(5))
        nack_code, nack_detail = Signal(8), Signal(8)
        tx_crc = Signal(16, init=CRC_INIT)
        pos = Signal(range(IDENTIFY_STRUCT.size))         # byte within the current part
        identify = Const(int.from_bytes(self.info.pack(), "little"), 8 * IDENTIFY_STRUCT.size)

        # --- STREAM execution ------------------------------------------------------------------
        ptr = Signal(range(self.frame_bytes + 1))        # frame RAM address of the next byte
        step_pos = Signal(range(self.step_bytes))
        steps_done = Signal(8)
        flags = Signal(8)
        samples = Signal(8 * H * self.input_bytes)        # H samples, B_u bytes each, LE
        word_index = Signal(range(self.max_batch + 1))
        out_shift = Signal(8 * H * By)
        out_pos = Signal(range(H * By))

        def read_len(outputs):
            return 1 + const_product(outputs, H * By)

        def nack(code, detail=0):
            return [resp_kind.eq(_NACK), resp_code.eq(Cmd.NACK), resp_seq.eq(seq), resp_len.eq(2),
                    nack_code.eq(code), nack_detail.eq(detail)]

        def respond(code, kind, size):
            return [resp_kind.eq(kind), resp_code.eq(code), resp_seq.eq(seq), resp_len.eq(size)]

        def record():            # a new command executed: remember it for replay
            return [synced.eq(1), last_seq.eq(seq), last_cmd.eq(cmd)]

        def emit(byte, last=0, crc=True):
            """Offer one frame byte to the encoder; returns the handshake condition."""
            m.d.comb += [encoder.i.valid.eq(1), encoder.i.payload.data.eq(byte),
                         encoder.i.payload.last.eq(last)]
            if crc:
                with m.If(encoder.i.ready):
                    m.d.sync += tx_crc.eq(crc16_update(tx_crc, byte))
            return encoder.i.ready

        m.d.comb += self.busy.eq(encoder.busy)
        with m.FSM():
            with m.State("RECEIVE"):
                m.d.comb += decoder.o.ready.eq(1)
                with m.If(decoder.o.valid & ~beat.end):
                    m.d.comb += [frame_wr.addr.eq(count), frame_wr.data.eq(beat.data),
                                 frame_wr.en.eq(count < self.frame_bytes)]
                    m.d.sync += [count.eq(count + 1), older.eq(newer), newer.eq(beat.data)]
                    with m.If(count >= 2):
                        m.d.sync += rx_crc.eq(crc16_update(rx_crc, older))
                    for index, field in enumerate((cmd, seq, length[:8], length[8:], n)):
                        with m.If(count == index):
                            m.d.sync += field.eq(beat.data)
                with m.If(decoder.o.valid & beat.end):
                    with m.If(beat.error | (count < MIN_FRAME)):
                        m.d.sync += rx_restart                  # dropped silently
                    with m.Else():
                        m.next = "DECIDE"

            with m.State("DECIDE"):           # docs/protocol.md section 4, in its order
                m.d.comb += self.busy.eq(1)
                m.d.sync += [tx_crc.eq(CRC_INIT), pos.eq(0)]
                m.next = "HEADER"
                expected = (last_seq + 1)[:8]
                empty = length == 0
                with m.If(rx_crc != Cat(older, newer)):
                    m.d.sync += nack(Nack.BAD_CRC)
                with m.Elif(length != count - MIN_FRAME):
                    m.d.sync += nack(Nack.BAD_LENGTH)
                with m.Elif((cmd == 0) | (cmd > Cmd.READ)):
                    m.d.sync += nack(Nack.UNKNOWN_COMMAND)
                with m.Elif(cmd == Cmd.IDENTIFY):           # exempt from sequencing
                    with m.If(~empty):
                        m.d.sync += nack(Nack.BAD_LENGTH)
                    with m.Else():
                        m.d.sync += [*record(), *respond(Cmd.IDENTIFY_RESP, _IDENTIFY,
                                                         IDENTIFY_STRUCT.size)]
                with m.Elif(synced & (seq == last_seq)):    # a retransmission
                    with m.If(cmd != last_cmd):
                        m.d.sync += nack(Nack.BAD_SEQUENCE, expected)
                    with m.Elif(cmd == Cmd.RESET_STATE):
                        m.d.sync += respond(Cmd.RESET_ACK, _EMPTY, 0)
                    with m.Elif(cmd == Cmd.STREAM):
                        m.d.sync += respond(Cmd.STREAM_ACK, _ACK, 2)
                    with m.Else():
                        m.d.sync += respond(Cmd.READ_DATA, _READ, read_len(read_count))
                with m.Elif(synced & (seq != expected)):
                    m.d.sync += nack(Nack.BAD_SEQUENCE, expected)
                with m.Elif(cmd == Cmd.RESET_STATE):
                    with m.If(~empty):
                        m.d.sync += nack(Nack.BAD_LENGTH)
                    with m.Else():
                        m.d.sync += [*record(), *respond(Cmd.RESET_ACK, _EMPTY, 0),
                                     pending.eq(0), force_start.eq(1)]
                with m.Elif(cmd == Cmd.READ):
                    with m.If(~empty):
                        m.d.sync += nack(Nack.BAD_LENGTH)
                    with m.Else():
                        m.d.sync += [*record(), *respond(Cmd.READ_DATA, _READ, read_len(pending)),
                                     read_count.eq(pending), pending.eq(0)]
                with m.Else():                                 # STREAM
                    with m.If(empty | (n == 0) | (n > self.max_batch)
                              | (length != 1 + const_product(n, self.step_bytes))):
                        m.d.sync += nack(Nack.BAD_LENGTH)
                    with m.Elif(pending + n > self.max_batch):
                        m.d.sync += nack(Nack.OVERFLOW, pending)
                    with m.Else():
                        m.d.sync += [*record(), *respond(Cmd.STREAM_ACK, _ACK, 2),
                                     ptr.eq(HEADER_SIZE + 1), step_pos.eq(0), steps_done.eq(0)]
                        m.next = "LOAD_ADDR"

            # STREAM: per timestep, flags and samples from the frame RAM, into the layer
            with m.State("LOAD_ADDR"):
                m.d.comb += [self.busy.eq(1), frame_rd.addr.eq(ptr)]
                m.next = "LOAD_DATA"
            with m.State("LOAD_DATA"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [ptr.eq(ptr + 1), step_pos.eq(step_pos + 1)]
                with m.If(step_pos == 0):
                    m.d.sync += flags.eq(frame_rd.data)
                with m.Else():
                    m.d.sync += samples.eq(Cat(samples[8:], frame_rd.data))
                with m.If(step_pos == self.step_bytes - 1):
                    m.d.sync += step_pos.eq(0)
                    m.next = "FEED"
                with m.Else():
                    m.next = "LOAD_ADDR"
            with m.State("FEED"):
                m.d.comb += [self.busy.eq(1), self.u.valid.eq(1),
                             self.u.payload.start.eq(flags[0] | force_start)]
                for h in range(H):
                    lsb = 8 * h * self.input_bytes       # only the low W_u bits are used
                    m.d.comb += self.u.payload.data[h].eq(samples[lsb:lsb + self.input_width])
                with m.If(self.u.ready):
                    m.d.sync += force_start.eq(0)
                    m.next = "COLLECT"
            with m.State("COLLECT"):
                m.d.comb += [self.busy.eq(1), self.y.ready.eq(1),
                             out_wr.addr.eq(pending), out_wr.data.eq(self.y.payload.as_value()),
                             out_wr.en.eq(self.y.valid)]
                with m.If(self.y.valid):
                    m.d.sync += [pending.eq(pending + 1), steps_done.eq(steps_done + 1)]
                    with m.If(steps_done + 1 == n):
                        m.d.sync += [ack_accepted.eq(n), ack_pending.eq(pending + 1),
                                     tx_crc.eq(CRC_INIT), pos.eq(0)]
                        m.next = "HEADER"
                    with m.Else():
                        m.next = "LOAD_ADDR"

            # response: header, payload by kind, CRC
            with m.State("HEADER"):
                m.d.comb += self.busy.eq(1)
                header = Cat(resp_code, resp_seq, resp_len)
                with m.If(emit(header.word_select(pos[:2], 8))):
                    m.d.sync += pos.eq(pos + 1)
                    with m.If(pos == 3):
                        m.d.sync += pos.eq(0)
                        with m.Switch(resp_kind):
                            with m.Case(_NACK, _ACK):
                                m.next = "PAIR"
                            with m.Case(_IDENTIFY):
                                m.next = "IDENTIFY"
                            with m.Case(_READ):
                                m.next = "READ_COUNT"
                            with m.Default():
                                m.next = "CRC"
            with m.State("PAIR"):
                m.d.comb += self.busy.eq(1)
                pair = Signal(16)
                m.d.comb += pair.eq(Cat(nack_code, nack_detail))
                with m.If(resp_kind == _ACK):
                    m.d.comb += pair.eq(Cat(ack_accepted, ack_pending))
                with m.If(emit(pair.word_select(pos[0], 8))):
                    m.d.sync += pos.eq(pos + 1)
                    with m.If(pos == 1):
                        m.d.sync += pos.eq(0)
                        m.next = "CRC"
            with m.State("IDENTIFY"):
                m.d.comb += self.busy.eq(1)
                with m.If(emit(identify.word_select(pos, 8))):
                    m.d.sync += pos.eq(pos + 1)
                    with m.If(pos == IDENTIFY_STRUCT.size - 1):
                        m.d.sync += pos.eq(0)
                        m.next = "CRC"
            with m.State("READ_COUNT"):
                m.d.comb += self.busy.eq(1)
                with m.If(emit(read_count)):
                    m.d.sync += word_index.eq(0)
                    with m.If(read_count == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "READ_ADDR"
            with m.State("READ_ADDR"):
                m.d.comb += [self.busy.eq(1), out_rd.addr.eq(word_index)]
                m.next = "READ_LOAD"
            with m.State("READ_LOAD"):
                m.d.comb += self.busy.eq(1)
                wy = self.output_width
                m.d.sync += [out_pos.eq(0), out_shift.eq(Cat(*(
                    Cat(out_rd.data[h * wy:(h + 1) * wy],
                        out_rd.data[(h + 1) * wy - 1].replicate(8 * By - wy))   # sign-extend
                    for h in range(H))))]
                m.next = "READ_BYTES"
            with m.State("READ_BYTES"):
                m.d.comb += self.busy.eq(1)
                with m.If(emit(out_shift[:8])):
                    m.d.sync += [out_shift.eq(out_shift >> 8), out_pos.eq(out_pos + 1)]
                    with m.If(out_pos == H * By - 1):
                        m.d.sync += word_index.eq(word_index + 1)
                        with m.If(word_index + 1 == read_count):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "READ_ADDR"
            with m.State("CRC"):
                m.d.comb += self.busy.eq(1)
                with m.If(emit(tx_crc.word_select(pos[0], 8), last=pos[0], crc=False)):
                    m.d.sync += pos.eq(pos + 1)
                    with m.If(pos[0]):
                        m.d.sync += rx_restart
                        m.next = "RECEIVE"
        return m
