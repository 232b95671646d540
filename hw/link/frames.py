"""The frame machinery every device side of the board link shares (docs/protocol.md sections 1-4).

``FrameEngine`` builds, into a device controller's module, what does not depend on what the
device computes: receive a frame (delimiters, COBS, CRC-16) into the frame RAM, decide what to do
with it in the order of docs/protocol.md section 4 (length, command, IDENTIFY, retransmission and
sequence numbers, RESET_STATE), load timesteps from the frame RAM, and send the response (header,
fixed fields, a body read word by word from a RAM, CRC-16, COBS). The controllers add what their
device does: ``LinkController`` (``controller.py``) streams timesteps through a single SSM layer,
``NetworkLinkController`` (``network_controller.py``) classifies whole sequences with a network.

A controller's ``elaborate``::

    f = FrameEngine(m, self.rx, self.tx, requests=..., frame_bytes=..., identify=info.pack(),
                    head_bytes=..., field_bytes=..., step_bytes=...)
    f.body(read_port, count, to_bytes, word_bytes)          # what a response body is made of
    with f.fsm(execute=..., replay=..., reset=[...], busy=self.busy) as fsm:
        with m.State("FEED"): ...                           # its own states

States the engine defines: RECEIVE, DECIDE, LOAD_ADDR, LOAD_DATA (then ``FEED``, the
controller's), HEADER, IDENTIFY, FIELDS, BODY_ADDR, BODY_LOAD, BODY_BYTES, CRC. A controller's
execution starts with ``f.load(address)`` (next state LOAD_ADDR; after ``step_bytes`` bytes the
FSM enters ``FEED`` with the timestep in ``f.step``) and ends with ``f.respond(...)``,
``f.begin_response()`` and ``m.next = "HEADER"``.

One request is handled at a time (the host sends the next only after the response), so the
frame RAM is not double-buffered: while a request executes and its response is sent, the decoder
holds further bytes back and the FIFO in front of it absorbs them.
"""

from __future__ import annotations

from contextlib import contextmanager

from amaranth.hdl import Cat, Const, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ...spec.protocol import HEADER_SIZE, MIN_FRAME, Cmd, Nack, max_encoded_size
from .cobs import COBSDecoder, COBSEncoder
from .crc16 import CRC_INIT, crc16_update

__all__ = ["FrameEngine", "sign_extend"]


def sign_extend(value, width: int) -> Value:
    """``value`` (a signed quantity of ``len(value)`` bits) sign-extended to ``width`` bits."""
    value = Value.cast(value)
    return Cat(value, value[-1].replicate(width - len(value)))


def _le_bytes(value, count: int) -> Value:
    """The low ``8 * count`` bits of ``value``, zero-extended: a little-endian field."""
    value = Value.cast(value).as_unsigned()
    if len(value) >= 8 * count:
        return value[:8 * count]
    return Cat(value, Const(0, 8 * count - len(value)))


class FrameEngine:
    """Frame receiver, section-4 decisions and response sender, built into module ``m``.

    Parameters
    ----------
    m : Module                  the controller's module
    rx, tx : the controller's ``In(stream.Signature(8))`` / ``Out(stream.Signature(8))`` ports
    requests : the request codes the device knows (IDENTIFY and RESET_STATE among them)
    frame_bytes : int           decoded size of the largest valid request (the frame RAM's size)
    identify : bytes            the IDENTIFY_RESP payload (a constant)
    head_bytes : int            leading payload bytes captured into ``head`` while receiving
    field_bytes : int           most bytes of a response's fixed fields
    step_bytes : int            bytes of one timestep in the frame RAM (``load`` reads them)

    Attributes for the controller
    -----------------------------
    cmd, seq : Signal(8); length : Signal(16)     the received frame's header
    head : Signal(8 * head_bytes)                 its first payload bytes, little-endian
    step : Signal(8 * step_bytes)                 the timestep ``load`` read, little-endian
    rx_max : int                                  RX_MAX (longer encoded frames are dropped)
    """

    def __init__(self, m, rx, tx, *, requests, frame_bytes: int, identify: bytes,
                 head_bytes: int, field_bytes: int, step_bytes: int):
        self.m = m
        self.requests = tuple(requests)
        self.frame_bytes = frame_bytes
        self.identify = bytes(identify)
        self.head_bytes, self.field_bytes, self.step_bytes = head_bytes, field_bytes, step_bytes
        self.rx_max = max_encoded_size(frame_bytes)
        m.submodules.decoder = self.decoder = COBSDecoder(self.rx_max)
        m.submodules.encoder = self.encoder = COBSEncoder()
        wiring.connect(m, wiring.flipped(rx), self.decoder.i)
        wiring.connect(m, self.encoder.o, wiring.flipped(tx))
        m.submodules.frame_ram = frame_ram = Memory(shape=8, depth=frame_bytes, init=[])
        self._frame_wr, self._frame_rd = frame_ram.write_port(), frame_ram.read_port()

        # --- the received frame: header and leading payload bytes on the fly
        self.cmd, self.seq, self.length = Signal(8), Signal(8), Signal(16)
        self.head = Signal(8 * max(1, head_bytes))
        self._count = Signal(range(self.rx_max + 1))       # decoded bytes so far
        self._rx_crc = Signal(16, init=CRC_INIT)           # over all bytes but the last two
        self._older, self._newer = Signal(8), Signal(8)    # the last two bytes (the CRC, at the end)

        # --- device registers (docs/protocol.md section 4)
        self._synced, self._last_seq, self._last_cmd = Signal(), Signal(8), Signal(8)

        # --- timestep loading
        self._ptr = Signal(range(frame_bytes + 1))         # frame RAM address of the next byte
        self._step_pos = Signal(range(step_bytes))
        self.step = Signal(8 * step_bytes)

        # --- the response being sent
        self._code, self._resp_seq, self._resp_len = Signal(8), Signal(8), Signal(16)
        self._is_identify = Signal()
        self._fields = Signal(8 * max(2, field_bytes))     # at least a NACK's two bytes
        self._fields_len = Signal(range(max(2, field_bytes) + 1))
        self._has_body = Signal()
        self._tx_crc = Signal(16, init=CRC_INIT)
        self._pos = Signal(range(max(len(self.identify), len(self._fields) // 8, 4)))
        self._body = None

    # --- statements for the controller -----------------------------------------------------

    def respond(self, code, size, *fields, body=0) -> list:
        """Statements that make the response: ``code``, payload ``size`` bytes (a value), fixed
        ``fields`` as (value, bytes) pairs, little-endian, then the body when ``body`` is true."""
        nbytes = sum(count for _, count in fields)
        if nbytes > len(self._fields) // 8:
            raise ValueError(f"Fields of {nbytes} bytes exceed field_bytes {self.field_bytes}")
        packed = Cat(*(_le_bytes(value, count) for value, count in fields)) if fields else 0
        return [self._code.eq(code), self._resp_seq.eq(self.seq), self._resp_len.eq(size),
                self._is_identify.eq(0), self._fields.eq(packed), self._fields_len.eq(nbytes),
                self._has_body.eq(body)]

    def nack(self, code: Nack, detail=0) -> list:
        """NACK ``code`` with ``detail`` (its low 8 bits)."""
        return self.respond(Cmd.NACK, 2, (code, 1), (detail, 1))

    def record(self) -> list:
        """A new command executed: remember it for replay."""
        return [self._synced.eq(1), self._last_seq.eq(self.seq), self._last_cmd.eq(self.cmd)]

    def begin_response(self) -> list:
        """Statements to run on the way to the HEADER state."""
        restart = [self._tx_crc.eq(CRC_INIT), self._pos.eq(0)]
        return restart if self._body is None else [*restart, self._index.eq(0)]

    def load(self, address) -> list:
        """Start loading timesteps at frame RAM ``address`` (and set the next state to
        LOAD_ADDR); each complete timestep enters the controller's FEED state in ``step``."""
        self.m.next = "LOAD_ADDR"
        return [self._ptr.eq(address), self._step_pos.eq(0)]

    def body(self, read_port, count, to_bytes, word_bytes: int) -> None:
        """A response body is ``count`` words of ``read_port``'s memory (addresses 0..count-1),
        each sent as the ``word_bytes`` little-endian bytes of ``to_bytes(read_port.data)``."""
        self._body = (read_port, count, to_bytes, word_bytes)
        self._index = Signal.like(count, name="body_index")     # the word being sent

    # --- the state machine ---------------------------------------------------------------------

    @contextmanager
    def fsm(self, *, execute, replay, reset, busy):
        """Open the controller's FSM with the engine's states; the ``with`` body adds the
        controller's own (FEED first). In DECIDE:

        ``execute()`` adds the statements of a new, in-sequence request other than IDENTIFY
        and RESET_STATE (payload checks, then execution: ``load`` or a response);
        ``replay()`` those of a retransmission (``cmd == last_cmd``) other than RESET_STATE: the
        stored response; ``reset``: the statements of RESET_STATE besides its response.
        ``busy`` is driven high outside RECEIVE and while the encoder sends.
        """
        m = self.m
        with m.FSM() as fsm:
            self._receive()
            self._decide(execute, replay, reset)
            self._load_states()
            yield fsm
            self._send()
        m.d.comb += busy.eq(self.encoder.busy | ~fsm.ongoing("RECEIVE"))

    def _receive(self):
        m, beat, decoder = self.m, self.decoder.o.payload, self.decoder
        count, frame_wr = self._count, self._frame_wr
        header = [self.cmd, self.seq, self.length[:8], self.length[8:]]
        header += [self.head[8 * i:8 * (i + 1)] for i in range(self.head_bytes)]
        with m.State("RECEIVE"):
            m.d.comb += decoder.o.ready.eq(1)
            with m.If(decoder.o.valid & ~beat.end):
                m.d.comb += [frame_wr.addr.eq(count), frame_wr.data.eq(beat.data),
                             frame_wr.en.eq(count < self.frame_bytes)]
                m.d.sync += [count.eq(count + 1), self._older.eq(self._newer),
                             self._newer.eq(beat.data)]
                with m.If(count >= 2):
                    m.d.sync += self._rx_crc.eq(crc16_update(self._rx_crc, self._older))
                for index, field in enumerate(header):
                    with m.If(count == index):
                        m.d.sync += field.eq(beat.data)
            with m.If(decoder.o.valid & beat.end):
                with m.If(beat.error | (count < MIN_FRAME)):
                    m.d.sync += self._rx_restart()             # dropped silently
                with m.Else():
                    m.next = "DECIDE"

    def _rx_restart(self):
        return [self._count.eq(0), self._rx_crc.eq(CRC_INIT)]

    def _decide(self, execute, replay, reset):
        m, cmd, seq = self.m, self.cmd, self.seq
        synced, last_seq, last_cmd = self._synced, self._last_seq, self._last_cmd
        with m.State("DECIDE"):           # docs/protocol.md section 4, in its order
            m.d.sync += self.begin_response()
            m.next = "HEADER"
            expected = (last_seq + 1)[:8]
            empty = self.length == 0
            known = Cat(*(cmd == code for code in self.requests)).any()
            with m.If(self._rx_crc != Cat(self._older, self._newer)):
                m.d.sync += self.nack(Nack.BAD_CRC)
            with m.Elif(self.length != self._count - MIN_FRAME):
                m.d.sync += self.nack(Nack.BAD_LENGTH)
            with m.Elif(~known):
                m.d.sync += self.nack(Nack.UNKNOWN_COMMAND)
            with m.Elif(cmd == Cmd.IDENTIFY):           # exempt from sequencing
                with m.If(~empty):
                    m.d.sync += self.nack(Nack.BAD_LENGTH)
                with m.Else():
                    m.d.sync += [*self.record(),
                                 *self.respond(Cmd.IDENTIFY_RESP, len(self.identify)),
                                 self._is_identify.eq(1)]
            with m.Elif(synced & (seq == last_seq)):    # a retransmission
                with m.If(cmd != last_cmd):
                    m.d.sync += self.nack(Nack.BAD_SEQUENCE, expected)
                with m.Elif(cmd == Cmd.RESET_STATE):
                    m.d.sync += self.respond(Cmd.RESET_ACK, 0)
                with m.Else():
                    replay()
            with m.Elif(synced & (seq != expected)):
                m.d.sync += self.nack(Nack.BAD_SEQUENCE, expected)
            with m.Elif(cmd == Cmd.RESET_STATE):
                with m.If(~empty):
                    m.d.sync += self.nack(Nack.BAD_LENGTH)
                with m.Else():
                    m.d.sync += [*self.record(), *self.respond(Cmd.RESET_ACK, 0), *reset]
            with m.Else():
                execute()

    def _load_states(self):
        """A timestep's ``step_bytes`` bytes from the frame RAM into ``step``, then FEED."""
        m, ptr, step_pos, frame_rd = self.m, self._ptr, self._step_pos, self._frame_rd
        with m.State("LOAD_ADDR"):
            m.d.comb += frame_rd.addr.eq(ptr)
            m.next = "LOAD_DATA"
        with m.State("LOAD_DATA"):
            m.d.sync += [ptr.eq(ptr + 1), step_pos.eq(step_pos + 1),
                         self.step.eq(Cat(self.step[8:], frame_rd.data))]
            with m.If(step_pos == self.step_bytes - 1):
                m.d.sync += step_pos.eq(0)
                m.next = "FEED"
            with m.Else():
                m.next = "LOAD_ADDR"

    def _emit(self, byte, last=0, crc=True):
        """Offer one frame byte to the encoder; returns the handshake condition."""
        m, encoder = self.m, self.encoder
        m.d.comb += [encoder.i.valid.eq(1), encoder.i.payload.data.eq(byte),
                     encoder.i.payload.last.eq(last)]
        if crc:
            with m.If(encoder.i.ready):
                m.d.sync += self._tx_crc.eq(crc16_update(self._tx_crc, byte))
        return encoder.i.ready

    def _send(self):
        """The response: header, payload (IDENTIFY constant, or fixed fields and a body), CRC."""
        m, pos = self.m, self._pos
        identify = Const(int.from_bytes(self.identify, "little"), 8 * len(self.identify))

        def after_fields():
            if self._body is None:
                m.next = "CRC"
            else:
                with m.If(self._has_body):
                    m.next = "BODY_ADDR"
                with m.Else():
                    m.next = "CRC"

        with m.State("HEADER"):
            header = Cat(self._code, self._resp_seq, self._resp_len)
            with m.If(self._emit(header.word_select(pos[:2], 8))):
                m.d.sync += pos.eq(pos + 1)
                with m.If(pos == HEADER_SIZE - 1):
                    m.d.sync += pos.eq(0)
                    with m.If(self._is_identify):
                        m.next = "IDENTIFY"
                    with m.Elif(self._fields_len != 0):
                        m.next = "FIELDS"
                    with m.Else():
                        after_fields()
        with m.State("IDENTIFY"):
            with m.If(self._emit(identify.word_select(pos, 8))):
                m.d.sync += pos.eq(pos + 1)
                with m.If(pos == len(self.identify) - 1):
                    m.d.sync += pos.eq(0)
                    m.next = "CRC"
        with m.State("FIELDS"):
            with m.If(self._emit(self._fields.word_select(pos, 8))):
                m.d.sync += pos.eq(pos + 1)
                with m.If(pos == self._fields_len - 1):
                    m.d.sync += pos.eq(0)
                    after_fields()
        if self._body is not None:
            self._body_states()
        with m.State("CRC"):
            with m.If(self._emit(self._tx_crc.word_select(pos[0], 8), last=pos[0], crc=False)):
                m.d.sync += pos.eq(pos + 1)
                with m.If(pos[0]):
                    m.d.sync += self._rx_restart()
                    m.next = "RECEIVE"

    def _body_states(self):
        """``count`` words from the body RAM, oldest first, each as ``word_bytes`` bytes."""
        m = self.m
        read_port, count, to_bytes, word_bytes = self._body
        index = self._index
        shift = Signal(8 * word_bytes)
        byte_pos = Signal(range(word_bytes))
        with m.State("BODY_ADDR"):
            m.d.comb += read_port.addr.eq(index)
            m.next = "BODY_LOAD"
        with m.State("BODY_LOAD"):
            m.d.sync += [byte_pos.eq(0), shift.eq(to_bytes(read_port.data))]
            m.next = "BODY_BYTES"
        with m.State("BODY_BYTES"):
            with m.If(self._emit(shift[:8])):
                m.d.sync += [shift.eq(shift >> 8), byte_pos.eq(byte_pos + 1)]
                with m.If(byte_pos == word_bytes - 1):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index + 1 == count):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "BODY_ADDR"
