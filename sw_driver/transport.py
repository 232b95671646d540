"""Byte transports for the board link, and the reference device.

``Transport``: what the driver needs from a link: ``write(bytes)`` and ``read(timeout) -> bytes``
(the bytes that arrived, at least one, or ``b""`` when nothing arrived within ``timeout``).

``SerialTransport``: a UART through pyserial (imported only when used).

``ReferenceDevice``: the device side of docs/protocol.md, byte for byte, computing with the golden
integer model. It is the executable specification of the FPGA board top.

``DeviceModelTransport``: connects the driver to a ReferenceDevice in-process, with fault
injection (corrupt / truncate / drop / garbage, host->device or device->host, per frame index or at
random with a seed). Time is simulated: a read that finds no bytes returns ``b""`` at once,
standing for a timeout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ..golden.integer_model import step
from ..spec.hashing import model_hash as compute_hash
from ..spec.protocol import (
    CRC_SIZE, FLAG_START, HEADER, HEADER_SIZE, MAX_PAYLOAD, MIN_FRAME, REQUESTS, Cmd, CRCError,
    DeviceInfo, FrameDecoder, Nack, cobs_decode, crc16, encode_frame, max_encoded_size, pack_nack,
    pack_read_data, pack_stream_ack, sample_bytes, stream_payload_size, unpack_stream,
)

__all__ = ["Transport", "SerialTransport", "ReferenceDevice", "DeviceModelTransport", "Fault",
           "FaultInjector", "FAULT_KINDS", "DIRECTIONS"]


class Transport:
    """A byte stream. Subclasses implement write and read; close is optional.

    ``byte_time``: seconds one byte takes on the link (the driver adds the transfer time of a
    request and its response to its timeout); 0 for an in-process link.
    """

    byte_time = 0.0

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, timeout: float) -> bytes:
        """Bytes that arrived (at least one), or b"" if none arrived within ``timeout`` seconds."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    """UART via pyserial. ``port`` is a device path (``/dev/ttyUSB1``, ``COM3``) or any pyserial URL
    (``loop://`` for a loopback)."""

    def __init__(self, port: str, baudrate: int = 115200, **serial_kwargs):
        try:
            import serial
        except ImportError:
            raise ImportError("SerialTransport needs pyserial (pip install pyserial)") from None
        try:
            self._serial = serial.serial_for_url(str(port), baudrate=baudrate, timeout=0, **serial_kwargs)
        except serial.SerialException as exc:
            raise OSError(f"cannot open serial port {port!r} at {baudrate} baud: {exc}") from exc
        self.port = str(port)
        self.byte_time = 10.0 / baudrate            # 8N1: start + 8 data + stop bits

    def write(self, data: bytes) -> None:
        self._serial.write(bytes(data))
        self._serial.flush()

    def read(self, timeout: float) -> bytes:
        self._serial.timeout = max(0.0, timeout)
        first = self._serial.read(1)
        if not first:
            return b""
        waiting = self._serial.in_waiting
        return first + (self._serial.read(waiting) if waiting else b"")

    def close(self) -> None:
        self._serial.close()


# --- the reference device ---------------------------------------------------------------------

class ReferenceDevice:
    """Device side of docs/protocol.md on top of the golden integer model (one model instance).

    ``receive(bytes)`` consumes link bytes and returns the wire frames the device sends back.
    Counters: ``steps_applied`` (timesteps fed to the layer), ``replays``, ``nacks`` (by code),
    ``dropped`` (encoded frames discarded silently).
    """

    def __init__(self, model, *, max_batch: int = 255, model_hash: str | None = None):
        if not 1 <= max_batch <= 255:
            raise ValueError(f"max_batch must be in 1..255, not {max_batch}")
        q = model.config.quant
        if model_hash is None:
            model_hash = compute_hash(model)
        self.model = model
        self.info = DeviceInfo(model_hash, model.channels, q.input.format.width, q.input.format.frac,
                               q.output.format.width, q.output.format.frac, model.states,
                               model.config.hardware.lanes, max_batch)
        H = model.channels
        largest = max(stream_payload_size(max_batch, H, self.info.input_width),
                      1 + max_batch * H * sample_bytes(self.info.output_width))
        if largest > MAX_PAYLOAD:
            raise ValueError(f"max_batch={max_batch} makes a {largest}-byte payload, over the u16 "
                             f"length limit {MAX_PAYLOAD}; choose a smaller max_batch")
        self.rx_max = max_encoded_size(MIN_FRAME + stream_payload_size(max_batch, H, self.info.input_width))
        self._decoder = FrameDecoder(self.rx_max)
        self.power_on()

    def power_on(self) -> None:
        """The state after configuration / reset of the FPGA."""
        self.synced = False
        self.last_seq = 0
        self.last_cmd = 0
        self.last_response = b""
        self._decoder.reset()
        self._zero_state()
        self.outputs: list[np.ndarray] = []
        self.steps_applied = 0
        self.replays = 0
        self.dropped = 0
        self.nacks: dict[str, int] = {}

    def _zero_state(self):
        self.xr = np.zeros((1, self.model.states), dtype=np.int64)
        self.xi = np.zeros_like(self.xr)

    def receive(self, data: bytes) -> list[bytes]:
        responses = []
        for encoded in self._decoder.feed(data):
            response = self._handle(encoded)
            if response is not None:
                responses.append(response)
        return responses

    def _nack(self, seq: int, code: Nack, detail: int = 0) -> bytes:
        self.nacks[code.name] = self.nacks.get(code.name, 0) + 1
        return encode_frame(Cmd.NACK, seq, pack_nack(code, detail))

    def _handle(self, encoded: bytes) -> bytes | None:
        try:
            raw = cobs_decode(encoded)
        except CRCError:
            self.dropped += 1
            return None
        if len(raw) < MIN_FRAME:
            self.dropped += 1
            return None
        body, crc = raw[:-CRC_SIZE], int.from_bytes(raw[-CRC_SIZE:], "little")
        if crc16(body) != crc:
            return self._nack(raw[1], Nack.BAD_CRC)
        cmd, seq, length = HEADER.unpack_from(body)
        payload = bytes(body[HEADER_SIZE:])
        if length != len(payload):
            return self._nack(seq, Nack.BAD_LENGTH)
        if cmd not in REQUESTS:
            return self._nack(seq, Nack.UNKNOWN_COMMAND)
        if cmd == Cmd.IDENTIFY:
            if payload:
                return self._nack(seq, Nack.BAD_LENGTH)
            self.synced, self.last_seq, self.last_cmd = True, seq, cmd
            self.last_response = encode_frame(Cmd.IDENTIFY_RESP, seq, self.info.pack())
            return self.last_response
        expected = (self.last_seq + 1) & 0xFF
        if self.synced and seq == self.last_seq:
            if cmd == self.last_cmd:
                self.replays += 1
                return self.last_response
            return self._nack(seq, Nack.BAD_SEQUENCE, expected)
        if self.synced and seq != expected:
            return self._nack(seq, Nack.BAD_SEQUENCE, expected)
        result = self._execute(cmd, payload)
        if isinstance(result, tuple):                      # (Nack code, detail)
            return self._nack(seq, *result)
        self.synced, self.last_seq, self.last_cmd = True, seq, cmd
        self.last_response = encode_frame(Cmd(cmd).response, seq, result)
        return self.last_response

    def _execute(self, cmd: int, payload: bytes):
        """Apply a new request; returns the success payload or (Nack, detail)."""
        if cmd in (Cmd.RESET_STATE, Cmd.READ) and payload:
            return (Nack.BAD_LENGTH, 0)
        if cmd == Cmd.RESET_STATE:
            self._zero_state()
            self.outputs = []
            return b""
        if cmd == Cmd.READ:
            data = pack_read_data(np.array(self.outputs, dtype=np.int64).reshape(-1, self.model.channels),
                                  self.info.output_width)
            self.outputs = []
            return data
        # STREAM
        info = self.info
        if not payload:
            return (Nack.BAD_LENGTH, 0)
        n = payload[0]
        if not 1 <= n <= info.max_batch or len(payload) != stream_payload_size(n, info.channels,
                                                                               info.input_width):
            return (Nack.BAD_LENGTH, 0)
        if len(self.outputs) + n > info.max_batch:
            return (Nack.OVERFLOW, len(self.outputs))
        flags, u = unpack_stream(payload, info.channels, info.input_width)
        for k in range(n):
            if flags[k] & FLAG_START:
                self._zero_state()
            uk = u[k:k + 1]
            # The device keeps the state between STREAM frames, as the RTL does.
            self.xr, self.xi, y = step(self.model, self.xr, self.xi, uk)
            self.outputs.append(y[0])
        self.steps_applied += n
        return pack_stream_ack(n, len(self.outputs))


# --- in-process transport with fault injection ------------------------------------------------

FAULT_KINDS = ("corrupt", "truncate", "drop", "garbage")
DIRECTIONS = ("to_device", "to_host")


@dataclass(frozen=True)
class Fault:
    """Inject ``kind`` into the ``index``-th frame (0-based) travelling in ``direction``.

    corrupt: XOR one byte (delimiters included) with a random non-zero value; truncate: lose the
    tail of the frame, its final delimiter included; drop: lose the whole frame; garbage: random
    bytes (zeros possible) before the frame.
    """
    direction: str
    kind: str
    index: int

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"fault direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")


class FaultInjector:
    """Applies ``Fault`` entries and random faults to frames, one direction's frames counted
    separately. Shared by every transport that injects faults (DeviceModelTransport here, the
    simulated board top in ``ssmgen.sim.board.transport``).

    ``faults``: Fault entries at given frame indices. ``fault_rate``: probability that each frame
    (in ``fault_directions``) gets a fault drawn from ``fault_kinds``, with ``random.Random(seed)``.
    ``log`` lists what was injected.
    """

    def __init__(self, faults=(), *, fault_rate: float = 0.0, fault_kinds=FAULT_KINDS,
                 fault_directions=DIRECTIONS, seed: int = 0):
        self.faults = {(f.direction, f.index): f.kind for f in faults}
        for kind in fault_kinds:
            Fault(DIRECTIONS[0], kind, 0)                 # validates the names
        for direction in fault_directions:
            Fault(direction, FAULT_KINDS[0], 0)
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be in 0..1, not {fault_rate}")
        self.fault_rate, self.fault_kinds = fault_rate, tuple(fault_kinds)
        self.fault_directions = tuple(fault_directions)
        self.rng = random.Random(seed)
        self.frames = {d: 0 for d in DIRECTIONS}
        self.log: list[str] = []

    def inject(self, direction: str, data: bytes) -> bytes:
        """The bytes of one frame travelling in ``direction`` as they arrive (possibly none)."""
        index = self.frames[direction]
        self.frames[direction] += 1
        kind = self.faults.get((direction, index))
        if (kind is None and self.fault_rate and direction in self.fault_directions
                and self.rng.random() < self.fault_rate):
            kind = self.rng.choice(self.fault_kinds)
        if kind is None:
            return data
        self.log.append(f"{direction} frame {index}: {kind}")
        rng = self.rng
        if kind == "drop" or not data:
            return b""
        if kind == "corrupt":
            out = bytearray(data)
            out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
            return bytes(out)
        if kind == "truncate":
            return data[:rng.randrange(1, len(data))] if len(data) > 1 else b""
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 17))) + data   # garbage


class DeviceModelTransport(Transport):
    """The driver's link to an in-process ReferenceDevice.

    ``faults``: Fault entries at given frame indices. ``fault_rate``: probability that each frame
    (in ``fault_directions``) gets a fault drawn from ``fault_kinds``, with ``random.Random(seed)``.
    Each host ``write`` counts as one frame towards the device; each device response as one frame
    towards the host. ``read_chunk`` limits how many bytes one read returns (exercises reassembly).
    ``fault_log`` lists what was injected.
    """

    def __init__(self, model=None, *, device: ReferenceDevice | None = None, max_batch: int = 255,
                 faults=(), fault_rate: float = 0.0, fault_kinds=FAULT_KINDS,
                 fault_directions=DIRECTIONS, seed: int = 0, read_chunk: int | None = None):
        if device is None:
            if model is None:
                raise ValueError("DeviceModelTransport needs a model or a ReferenceDevice")
            device = ReferenceDevice(model, max_batch=max_batch)
        self.device = device
        self.injector = FaultInjector(faults, fault_rate=fault_rate, fault_kinds=fault_kinds,
                                      fault_directions=fault_directions, seed=seed)
        self.seed = seed
        self.rng = self.injector.rng
        self.frames = self.injector.frames
        self.fault_log = self.injector.log
        self.read_chunk = read_chunk
        self._rx = bytearray()
        self.closed = False

    # The fault settings live in the injector; they may be changed between requests.
    fault_rate = property(lambda self: self.injector.fault_rate,
                          lambda self, value: setattr(self.injector, "fault_rate", value))
    fault_kinds = property(lambda self: self.injector.fault_kinds,
                           lambda self, value: setattr(self.injector, "fault_kinds", tuple(value)))
    fault_directions = property(lambda self: self.injector.fault_directions,
                                lambda self, value: setattr(self.injector, "fault_directions",
                                                            tuple(value)))

    def _inject(self, direction: str, data: bytes) -> bytes:
        return self.injector.inject(direction, data)

    def write(self, data: bytes) -> None:
        if self.closed:
            raise OSError("DeviceModelTransport is closed")
        for response in self.device.receive(self._inject("to_device", bytes(data))):
            self._rx += self._inject("to_host", response)

    def read(self, timeout: float) -> bytes:
        if self.closed:
            raise OSError("DeviceModelTransport is closed")
        n = len(self._rx) if self.read_chunk is None else min(self.read_chunk, len(self._rx))
        data = bytes(self._rx[:n])
        del self._rx[:n]
        return data

    def inject_line_noise(self, data: bytes) -> None:
        """Bytes that reach the host without being a device frame (e.g. boot messages)."""
        self._rx += bytes(data)

    def close(self) -> None:
        self.closed = True
