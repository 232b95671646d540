"""The device side of the board link for a whole network (docs/protocol.md, CLASSIFY), byte for
byte.

``NetworkLinkController`` sits between the UART byte streams and ``NetworkAccelerator``'s stream
ports. It does what ``sw_driver.transport.ReferenceDevice`` does for a network, in the same order:
receiving, the checks of docs/protocol.md section 4 and sending are ``frames.FrameEngine``'s; this
module adds CLASSIFY.

A CLASSIFY carries ``n`` timesteps that continue the unfinished sequence (``offset`` = the
device's ``position``) or start a new one (``offset`` = 0). Each timestep enters the network as
one beat, with ``start`` at position 0 and ``last`` at position ``steps - 1``; the network answers
each ``last`` beat with one result beat (logits and prediction), ``latency`` cycles later, which
goes into the result RAM while the following timesteps are fed. Once every result of the frame
is in, CLASSIFY_RESP carries the new position and the results, read from the result RAM (which
keeps them for a replay until the next new command executes).

Data path::

    rx bytes -> COBSDecoder -> frame RAM
    CLASSIFY: frame RAM -> timestep register -> network.u ... network.y -> result RAM
    response: header / position and count / IDENTIFY constant / result RAM -> CRC -> COBSEncoder
"""

from __future__ import annotations

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...spec.protocol import (
    CLASSIFY_HEAD, CLASSIFY_RESP_HEAD, HEADER_SIZE, MAX_CLASSIFY_BATCH, MIN_FRAME,
    NETWORK_IDENTIFY_STRUCT, NETWORK_REQUESTS, Cmd, Nack, NetworkInfo, check_payload_limit,
    classify_payload_size,
    classify_response_size, classify_result_size, classify_results, max_encoded_size,
    sample_bytes,
)
from ..datapath.const_product import const_product
from ..datapath.network import input_layout, output_layout
from .frames import FrameEngine, sign_extend

__all__ = ["NetworkLinkController"]


class NetworkLinkController(wiring.Component):
    """Frame receiver, CLASSIFY executor and response sender of the board link of a network.

    Parameters
    ----------
    net : QuantizedNetwork
        Fixes H_in, steps, classes, the sample widths and the IDENTIFY constants.
    max_batch : int or None
        Most timesteps per CLASSIFY (1..65535), advertised in IDENTIFY; None:
        ``spec.protocol.default_network_batch`` (a whole sequence when it fits 1 KiB).

    Ports
    -----
    rx : In(stream.Signature(8))                    bytes from the UART receiver
    tx : Out(stream.Signature(8))                   bytes to the UART transmitter
    u : Out(stream.Signature(input_layout(net)))    to the network: ``data[i]`` signed(W_in),
                                                    ``start``, ``last`` 1 bit each
    y : In(stream.Signature(output_layout(net)))    from the network: ``logits[c]``
                                                    signed(W_logits), ``prediction``
    busy : Out(1)                                   a request is being executed or answered

    Sizes: frame RAM ``6 + 6 + max_batch * H_in * B_in`` bytes; result RAM ``max_results =
    ceil((steps - 1 + max_batch) / steps)`` words of ``classes * W_logits + ceil(log2 classes)``
    bits; COBS encoder buffer 254 bytes.
    """

    def __init__(self, net, *, max_batch: int | None = None, model_hash: str | None = None):
        if getattr(net, "design_kind", None) != "network":
            raise TypeError(f"Network must be a QuantizedNetwork, not {type(net).__name__}")
        if max_batch is not None:
            max_batch = operator.index(max_batch)
            if not 1 <= max_batch <= MAX_CLASSIFY_BATCH:
                raise ValueError(f"Max_batch must be in 1..{MAX_CLASSIFY_BATCH}, not {max_batch}")
        self.net = net
        self.info = info = NetworkInfo.of(net, max_batch=max_batch, model_hash=model_hash)
        self.max_batch = info.max_batch
        self.steps, self.inputs, self.classes = info.steps, info.inputs, info.classes
        self.input_width, self.logits_width = info.input_width, info.logits_width
        self.input_bytes = sample_bytes(self.input_width)          # B_in
        self.logits_bytes = sample_bytes(self.logits_width)        # B_z
        self.step_bytes = self.inputs * self.input_bytes           # H_in samples
        #: most results one CLASSIFY completes (the result RAM's depth)
        self.max_results = classify_results(self.steps, self.max_batch)
        #: bytes of one result in CLASSIFY_RESP: class (u16) and logits
        self.result_bytes = classify_result_size(self.classes, self.logits_width)
        #: payload bytes of the largest response (CLASSIFY_RESP with max_results, or IDENTIFY)
        self.largest_response = max(NETWORK_IDENTIFY_STRUCT.size, classify_response_size(
            self.max_results, self.classes, self.logits_width))
        largest = max(classify_payload_size(self.max_batch, self.inputs, self.input_width),
                      self.largest_response)
        check_payload_limit(largest, self.max_batch)
        #: largest valid request, decoded (the frame RAM's size)
        self.frame_bytes = MIN_FRAME + classify_payload_size(self.max_batch, self.inputs,
                                                             self.input_width)
        #: RX_MAX: longer encoded frames are dropped (as ReferenceDevice.rx_max)
        self.rx_max = max_encoded_size(self.frame_bytes)
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "u": Out(stream.Signature(input_layout(net))),
                          "y": In(stream.Signature(output_layout(net))), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        steps, Bz = self.steps, self.logits_bytes
        f = FrameEngine(m, self.rx, self.tx, requests=NETWORK_REQUESTS,
                        frame_bytes=self.frame_bytes, identify=self.info.pack(),
                        head_bytes=CLASSIFY_HEAD.size, field_bytes=CLASSIFY_RESP_HEAD.size,
                        step_bytes=self.step_bytes)
        offset, n = f.head[:32], f.head[32:48]            # CLASSIFY_HEAD: u32 offset, u16 n

        m.submodules.result_ram = result_ram = Memory(shape=output_layout(self.net),
                                                      depth=self.max_results, init=[])
        result_wr, result_rd = result_ram.write_port(), result_ram.read_port()

        position = Signal(range(steps))                   # timesteps of the unfinished sequence
        fed = Signal(range(self.max_batch + 1))           # timesteps of this frame fed
        lasts = Signal(range(self.max_results + 1))       # `last` beats fed: results to come
        results = Signal(range(self.max_results + 1))     # results in the RAM
        # the last CLASSIFY_RESP (replay): position and result count; the results stay in the RAM
        sent_position = Signal(range(steps))
        sent_results = Signal(range(self.max_results + 1))

        # CLASSIFY_RESP body: per result the class (u16) and the logits sign-extended to B_z bytes
        wp = len(Value.cast(self.y.payload.prediction))
        f.body(result_rd, sent_results, lambda word: Cat(
            word.prediction, Const(0, 16 - wp),
            *(sign_extend(word.logits[c], 8 * Bz) for c in range(self.classes))),
            self.result_bytes)

        def classify_resp(at, count):
            return f.respond(Cmd.CLASSIFY_RESP, CLASSIFY_RESP_HEAD.size
                             + const_product(count, self.result_bytes), (at, 4), (count, 2),
                             body=count != 0)

        def replay():
            m.d.sync += classify_resp(sent_position, sent_results)

        def execute():                                     # CLASSIFY, the only other request
            with m.If((f.length < CLASSIFY_HEAD.size) | (n == 0) | (n > self.max_batch)
                      | (f.length != CLASSIFY_HEAD.size + const_product(n, self.step_bytes))):
                m.d.sync += f.nack(Nack.BAD_LENGTH)
            with m.Elif((offset != 0) & (offset != position)):
                m.d.sync += f.nack(Nack.BAD_OFFSET, position)
            with m.Else():
                m.d.sync += [*f.record(), *f.load(HEADER_SIZE + CLASSIFY_HEAD.size),
                             fed.eq(0), lasts.eq(0), results.eq(0)]
                with m.If(offset == 0):                    # a new sequence: drop an unfinished one
                    m.d.sync += position.eq(0)

        with f.fsm(execute=execute, replay=replay, reset=[position.eq(0)],
                   busy=self.busy) as fsm:
            with m.State("FEED"):
                last = position == steps - 1
                m.d.comb += [self.u.valid.eq(1), self.u.payload.start.eq(position == 0),
                             self.u.payload.last.eq(last)]
                for i in range(self.inputs):
                    lsb = 8 * i * self.input_bytes       # only the low W_in bits are used
                    m.d.comb += self.u.payload.data[i].eq(f.step[lsb:lsb + self.input_width])
                with m.If(self.u.ready):
                    m.d.sync += [fed.eq(fed + 1), position.eq(Mux(last, 0, position + 1))]
                    with m.If(last):
                        m.d.sync += lasts.eq(lasts + 1)
                    with m.If(fed + 1 == n):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "LOAD_ADDR"
            with m.State("DRAIN"):                         # the frame's last results
                with m.If(results == lasts):
                    m.d.sync += [sent_position.eq(position), sent_results.eq(results),
                                 *classify_resp(position, results), *f.begin_response()]
                    m.next = "HEADER"
        # Results arrive while the frame's later timesteps are loaded and fed, in order.
        executing = (fsm.ongoing("LOAD_ADDR") | fsm.ongoing("LOAD_DATA") | fsm.ongoing("FEED")
                     | fsm.ongoing("DRAIN"))
        m.d.comb += [self.y.ready.eq(executing), result_wr.addr.eq(results),
                     result_wr.data.eq(self.y.payload), result_wr.en.eq(executing & self.y.valid)]
        with m.If(executing & self.y.valid):
            m.d.sync += results.eq(results + 1)
        return m
