"""Byte transports for the board link, and the reference device.

``Transport``: what the driver needs from a link: ``write(bytes)`` and ``read(timeout) -> bytes``
(the bytes that arrived, at least one, or ``b""`` when nothing arrived within ``timeout``).

``SerialTransport``: a UART through pyserial (imported only when used).

``ReferenceDevice``: the device side of docs/protocol.md, byte for byte, computing with the golden
integer model of a single layer or of a whole network. It is the executable specification of the
FPGA board top.

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
from ..golden.network import predict, run_integer_network
from ..spec.protocol import (
    CLASSIFY_HEAD, CRC_SIZE, FLAG_START, HEADER, HEADER_SIZE, MAX_CLASSIFY_BATCH, MIN_FRAME,
    NETWORK_REQUESTS, REQUESTS, Cmd, CRCError, DeviceInfo, FrameDecoder, Nack, NetworkInfo,
    check_payload_limit, classify_payload_size, classify_response_size, classify_results, cobs_decode,
    crc16, encode_frame, max_encoded_size, pack_classify_response, pack_nack, pack_read_data,
    pack_stream_ack, sample_bytes, stream_payload_size, unpack_classify, unpack_stream,
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
    """Device side of docs/protocol.md on top of the golden integer model: a single layer
    (STREAM, READ) when ``model`` is a QuantizedSSM, a whole network (CLASSIFY) when it is a
    QuantizedNetwork.

    ``receive(bytes)`` consumes link bytes and returns the wire frames the device sends back.
    ``max_batch``: most timesteps per STREAM (a layer: 1..255, default 255) or per CLASSIFY (a
    network: 1..65535, default ``spec.protocol.default_network_batch``).
    Counters: ``steps_applied`` (timesteps fed to the layer or network), ``replays``, ``nacks``
    (by code), ``dropped`` (encoded frames discarded silently).
    """

    def __init__(self, model, *, max_batch: int | None = None, model_hash: str | None = None):
        network = getattr(model, "design_kind", None) == "network"
        self.model = model
        self.commands = (_NetworkCommands if network else _LayerCommands)(model, max_batch,
                                                                          model_hash)
        self.info = self.commands.info
        self.rx_max = max_encoded_size(MIN_FRAME + self.commands.largest_request)
        self._decoder = FrameDecoder(self.rx_max)
        self.power_on()

    @property
    def steps_applied(self) -> int:
        return self.commands.steps_applied

    def power_on(self) -> None:
        """The state after configuration / reset of the FPGA."""
        self.synced = False
        self.last_seq = 0
        self.last_cmd = 0
        self.last_response = b""
        self._decoder.reset()
        self.commands.power_on()
        self.replays = 0
        self.dropped = 0
        self.nacks: dict[str, int] = {}

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
        if cmd not in self.commands.requests:
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
        if cmd == Cmd.RESET_STATE:
            if payload:
                return (Nack.BAD_LENGTH, 0)
            self.commands.reset_state()
            return b""
        return self.commands.execute(cmd, payload)


class _LayerCommands:
    """STREAM and READ of a single-layer device, on the golden integer model."""

    requests = REQUESTS

    def __init__(self, model, max_batch: int | None, model_hash: str | None):
        max_batch = 255 if max_batch is None else max_batch
        if not 1 <= max_batch <= 255:
            raise ValueError(f"max_batch must be in 1..255, not {max_batch}")
        self.model = model
        self.info = DeviceInfo.of(model, max_batch=max_batch, model_hash=model_hash)
        H = model.channels
        #: payload bytes of the largest valid request
        self.largest_request = stream_payload_size(max_batch, H, self.info.input_width)
        largest = max(self.largest_request,
                      1 + max_batch * H * sample_bytes(self.info.output_width))
        check_payload_limit(largest, max_batch)

    def power_on(self) -> None:
        self.reset_state()
        self.steps_applied = 0

    def reset_state(self) -> None:
        """RESET_STATE: zero state, no outputs held."""
        self._zero_state()
        self.outputs: list[np.ndarray] = []

    def _zero_state(self):
        self.xr = np.zeros((1, self.model.states), dtype=np.int64)
        self.xi = np.zeros_like(self.xr)

    def execute(self, cmd: int, payload: bytes):
        if cmd == Cmd.READ:
            if payload:
                return (Nack.BAD_LENGTH, 0)
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


class _NetworkCommands:
    """CLASSIFY of a whole-network device, on the golden integer network.

    The device holds the timesteps of the unfinished sequence (``sequence``, its ``position``);
    a CLASSIFY continues it (``offset`` = position) or starts a new one (``offset`` = 0), and
    every sequence it completes is classified at once.
    """

    requests = NETWORK_REQUESTS

    def __init__(self, net, max_batch: int | None, model_hash: str | None):
        if max_batch is not None and not 1 <= max_batch <= MAX_CLASSIFY_BATCH:
            raise ValueError(f"max_batch must be in 1..{MAX_CLASSIFY_BATCH}, not {max_batch}")
        self.net = net
        self.info = info = NetworkInfo.of(net, max_batch=max_batch, model_hash=model_hash)
        self.largest_request = classify_payload_size(info.max_batch, info.inputs, info.input_width)
        largest = max(self.largest_request, classify_response_size(
            classify_results(info.steps, info.max_batch), info.classes, info.logits_width))
        check_payload_limit(largest, info.max_batch)

    def power_on(self) -> None:
        self.reset_state()
        self.steps_applied = 0

    def reset_state(self) -> None:
        """RESET_STATE: the unfinished sequence is dropped."""
        self.sequence: list[np.ndarray] = []

    def execute(self, cmd: int, payload: bytes):
        info = self.info                                   # cmd is CLASSIFY
        if len(payload) < CLASSIFY_HEAD.size:
            return (Nack.BAD_LENGTH, 0)
        offset, n = CLASSIFY_HEAD.unpack_from(payload)
        if not 1 <= n <= info.max_batch or len(payload) != classify_payload_size(
                n, info.inputs, info.input_width):
            return (Nack.BAD_LENGTH, 0)
        position = len(self.sequence)
        if offset not in (0, position):
            return (Nack.BAD_OFFSET, position & 0xFF)
        if offset == 0:
            self.sequence = []                      # a new sequence: an unfinished one is dropped
        _, u = unpack_classify(payload, info.inputs, info.input_width)
        complete = []
        for timestep in u:
            self.sequence.append(timestep)
            if len(self.sequence) == info.steps:
                complete.append(self.sequence)
                self.sequence = []
        self.steps_applied += n
        logits = (run_integer_network(self.net, np.array(complete, dtype=np.int64)) if complete
                  else np.zeros((0, info.classes), dtype=np.int64))
        return pack_classify_response(len(self.sequence), predict(logits), logits,
                                      info.logits_width)


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
    """The driver's link to an in-process ReferenceDevice (of ``model``, a layer or a network,
    with ``max_batch``; or the given ``device``).

    ``faults``: Fault entries at given frame indices. ``fault_rate``: probability that each frame
    (in ``fault_directions``) gets a fault drawn from ``fault_kinds``, with ``random.Random(seed)``.
    Each host ``write`` counts as one frame towards the device; each device response as one frame
    towards the host. ``read_chunk`` limits how many bytes one read returns (exercises reassembly).
    ``fault_log`` lists what was injected.
    """

    def __init__(self, model=None, *, device: ReferenceDevice | None = None,
                 max_batch: int | None = None, faults=(), fault_rate: float = 0.0,
                 fault_kinds=FAULT_KINDS, fault_directions=DIRECTIONS, seed: int = 0,
                 read_chunk: int | None = None):
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
