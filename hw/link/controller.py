"""The device side of the board link protocol for a single SSM layer (docs/protocol.md), byte for
byte.

``LinkController`` sits between the UART byte streams and the SSM layer's stream ports. It does
what ``sw_driver.transport.ReferenceDevice`` (the executable specification) does for a layer, in
the same order: receive a frame, check it, execute it (IDENTIFY, RESET_STATE, STREAM into the
layer, READ from the output buffer), remember the response for replay, and send it. Receiving,
the checks of docs/protocol.md section 4 and sending are ``frames.FrameEngine``'s; this module
adds STREAM and READ. The tests compare its answers with ReferenceDevice's for the same request
bytes, malformed requests included.

Data path::

    rx bytes -> COBSDecoder -> frame RAM (decoded bytes; header fields and the CRC are taken on
                               the fly)
    STREAM: frame RAM -> timestep register -> layer.u ... layer.y -> output RAM (max_batch x H)
    response: header / registers / IDENTIFY constant / output RAM -> CRC -> COBSEncoder -> tx bytes
"""

from __future__ import annotations

import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...spec.protocol import (
    HEADER_SIZE, IDENTIFY_STRUCT, MIN_FRAME, REQUESTS, Cmd, DeviceInfo, Nack, check_payload_limit,
    max_encoded_size, sample_bytes, stream_payload_size,
)
from ...spec.quantized import QuantizedSSM
from ..datapath.const_product import const_product
from ..datapath.ssm_layer import input_layout, output_layout
from .frames import FrameEngine, sign_extend

__all__ = ["LinkController", "device_info"]


def device_info(model: QuantizedSSM, *, max_batch: int,
                model_hash: str | None = None) -> DeviceInfo:
    """The IDENTIFY_RESP contents of a board top for ``model`` (what ReferenceDevice reports)."""
    return DeviceInfo.of(model, max_batch=max_batch, model_hash=model_hash)


class LinkController(wiring.Component):
    """Frame receiver, command executor and response sender of the board link of a layer.

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
        #: payload bytes of the largest response (READ_DATA of max_batch timesteps, or IDENTIFY)
        self.largest_response = max(IDENTIFY_STRUCT.size, 1 + max_batch * H * self.output_bytes)
        largest = max(stream_payload_size(max_batch, H, self.input_width), self.largest_response)
        check_payload_limit(largest, max_batch)
        #: largest valid request, decoded (the frame RAM's size)
        self.frame_bytes = MIN_FRAME + stream_payload_size(max_batch, H, self.input_width)
        #: RX_MAX: longer encoded frames are dropped (as ReferenceDevice.rx_max)
        self.rx_max = max_encoded_size(self.frame_bytes)
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "u": Out(stream.Signature(input_layout(model))),
                          "y": In(stream.Signature(output_layout(model))), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        H, By, wy = self.channels, self.output_bytes, self.output_width
        f = FrameEngine(m, self.rx, self.tx, requests=REQUESTS, frame_bytes=self.frame_bytes,
                        identify=self.info.pack(), head_bytes=1, field_bytes=2,
                        step_bytes=self.step_bytes)
        n = f.head[:8]                                    # STREAM: timesteps in the frame

        m.submodules.out_ram = out_ram = Memory(shape=H * wy, depth=self.max_batch, init=[])
        out_wr, out_rd = out_ram.write_port(), out_ram.read_port()

        pending = Signal(range(self.max_batch + 1))       # outputs held
        read_count = Signal(range(self.max_batch + 1))    # outputs sent by the last READ (replay)
        ack_accepted, ack_pending = Signal(8), Signal(8)  # the last STREAM_ACK (replay)
        steps_done = Signal(8)
        # The layer zeroes its state only through `start`: RESET_STATE and power-up force it on
        # the next timestep fed, which is exactly "state = 0" in ReferenceDevice.
        force_start = Signal(init=1)

        # READ_DATA: count, then the outputs sign-extended to B_y bytes, oldest first
        f.body(out_rd, read_count, lambda word: Cat(*(
            sign_extend(word[h * wy:(h + 1) * wy], 8 * By) for h in range(H))), H * By)

        def read_data(count):
            return f.respond(Cmd.READ_DATA, 1 + const_product(count, H * By), (count, 1),
                             body=count != 0)

        def stream_ack(accepted, held):
            return f.respond(Cmd.STREAM_ACK, 2, (accepted, 1), (held, 1))

        def replay():
            with m.If(f.cmd == Cmd.STREAM):
                m.d.sync += stream_ack(ack_accepted, ack_pending)
            with m.Else():
                m.d.sync += read_data(read_count)

        def execute():
            empty = f.length == 0
            with m.If(f.cmd == Cmd.READ):
                with m.If(~empty):
                    m.d.sync += f.nack(Nack.BAD_LENGTH)
                with m.Else():
                    m.d.sync += [*f.record(), *read_data(pending), read_count.eq(pending),
                                 pending.eq(0)]
            with m.Else():                                 # STREAM
                with m.If(empty | (n == 0) | (n > self.max_batch)
                          | (f.length != 1 + const_product(n, self.step_bytes))):
                    m.d.sync += f.nack(Nack.BAD_LENGTH)
                with m.Elif(pending + n > self.max_batch):
                    m.d.sync += f.nack(Nack.OVERFLOW, pending)
                with m.Else():
                    m.d.sync += [*f.record(), *f.load(HEADER_SIZE + 1), steps_done.eq(0)]

        with f.fsm(execute=execute, replay=replay, reset=[pending.eq(0), force_start.eq(1)],
                   busy=self.busy):
            # STREAM: each timestep (flags, then H samples) into the layer, its output into the RAM
            with m.State("FEED"):
                flags, samples = f.step[:8], f.step[8:]
                m.d.comb += [self.u.valid.eq(1), self.u.payload.start.eq(flags[0] | force_start)]
                for h in range(H):
                    lsb = 8 * h * self.input_bytes       # only the low W_u bits are used
                    m.d.comb += self.u.payload.data[h].eq(samples[lsb:lsb + self.input_width])
                with m.If(self.u.ready):
                    m.d.sync += force_start.eq(0)
                    m.next = "COLLECT"
            with m.State("COLLECT"):
                m.d.comb += [self.y.ready.eq(1), out_wr.addr.eq(pending),
                             out_wr.data.eq(self.y.payload.as_value()), out_wr.en.eq(self.y.valid)]
                with m.If(self.y.valid):
                    m.d.sync += [pending.eq(pending + 1), steps_done.eq(steps_done + 1)]
                    with m.If(steps_done + 1 == n):
                        m.d.sync += [ack_accepted.eq(n), ack_pending.eq(pending + 1),
                                     *stream_ack(n, pending + 1), *f.begin_response()]
                        m.next = "HEADER"
                    with m.Else():
                        m.next = "LOAD_ADDR"
        return m
