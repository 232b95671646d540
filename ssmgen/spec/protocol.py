"""Frames, CRC, COBS and payload layouts of the board link (specified byte for byte in docs/protocol.md).

Pure functions and small dataclasses, shared by the host driver and the reference device, so that
both sides encode every byte the same way.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

import numpy as np
from cobs import cobs as _cobs

from .hashing import model_hash as compute_hash

__all__ = [
    "PROTOCOL_VERSION", "MAGIC", "Cmd", "Nack", "Frame", "DeviceInfo",
    "ProtocolError", "CRCError", "FrameTimeout", "IdentifyMismatch", "NackError",
    "crc16", "cobs_encode", "cobs_decode", "encode_frame", "decode_frame", "FrameDecoder",
    "sample_bytes", "pack_samples", "unpack_samples",
    "pack_stream", "unpack_stream", "pack_read_data", "unpack_read_data",
    "pack_stream_ack", "unpack_stream_ack", "pack_nack", "unpack_nack",
    "stream_payload_size", "max_encoded_size", "check_payload_limit",
    "HEADER_SIZE", "CRC_SIZE", "MIN_FRAME", "MAX_PAYLOAD", "IDENTIFY_STRUCT",
    "REQUESTS", "NETWORK_REQUESTS", "NetworkInfo", "unpack_identify", "NETWORK_IDENTIFY_STRUCT",
    "NETWORK_KIND", "CLASSIFY_HEAD", "CLASSIFY_RESP_HEAD", "MAX_CLASSIFY_BATCH",
    "DEFAULT_CLASSIFY_BYTES", "classify_payload_size", "classify_result_size", "classify_results",
    "classify_response_size", "default_network_batch", "pack_classify", "unpack_classify",
    "pack_classify_response", "unpack_classify_response",
]

PROTOCOL_VERSION = 1
MAGIC = b"SSMG"
HEADER = struct.Struct("<BBH")          # cmd, seq, payload length
HEADER_SIZE = HEADER.size               # 4
CRC_SIZE = 2
MIN_FRAME = HEADER_SIZE + CRC_SIZE      # 6: smallest decoded frame (empty payload)
MAX_PAYLOAD = 0xFFFF
FLAG_START = 0x01
#: IDENTIFY_RESP payload: magic, version, hash, H, W_u, frac_u, W_y, frac_y, states, lanes, max_batch
IDENTIFY_STRUCT = struct.Struct("<4sB32sHBbBbHHB")
#: IDENTIFY_RESP payload of a network device: magic, version, hash, kind, H_in, W_in, frac_in,
#: steps, classes, W_logits, frac_logits, H, layers, states, lanes, max_batch (docs/protocol.md)
NETWORK_IDENTIFY_STRUCT = struct.Struct("<4sB32sBHBbIHBbHBHHH")
#: The ``kind`` byte of a network device's IDENTIFY_RESP (a layer's has no kind byte: the
#: payload's length tells the two apart).
NETWORK_KIND = 2
#: CLASSIFY request payload head: offset (u32, the first timestep's index in its sequence), n (u16)
CLASSIFY_HEAD = struct.Struct("<IH")
#: CLASSIFY_RESP payload head: position (u32, timesteps of the unfinished sequence), m (u16)
CLASSIFY_RESP_HEAD = struct.Struct("<IH")
MAX_CLASSIFY_BATCH = 0xFFFF             # n is a u16
#: Input bytes a network device's CLASSIFY frame holds by default (two iCE40 block RAMs).
DEFAULT_CLASSIFY_BYTES = 1024
_CLASS = struct.Struct("<H")            # the predicted class of one result
_NACK = struct.Struct("<BB")
_STREAM_ACK = struct.Struct("<BB")


class Cmd(enum.IntEnum):
    IDENTIFY = 0x01
    RESET_STATE = 0x02
    STREAM = 0x03
    READ = 0x04
    CLASSIFY = 0x05
    IDENTIFY_RESP = 0x81
    RESET_ACK = 0x82
    STREAM_ACK = 0x83
    READ_DATA = 0x84
    CLASSIFY_RESP = 0x85
    NACK = 0xFF

    @property
    def response(self) -> "Cmd":
        """The success response code of a request: the request code with bit 7 set."""
        return Cmd(self | 0x80)


#: The requests a single-layer device knows; any other code gets NACK UNKNOWN_COMMAND.
REQUESTS = (Cmd.IDENTIFY, Cmd.RESET_STATE, Cmd.STREAM, Cmd.READ)
#: The requests a whole-network device knows.
NETWORK_REQUESTS = (Cmd.IDENTIFY, Cmd.RESET_STATE, Cmd.CLASSIFY)


class Nack(enum.IntEnum):
    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_COMMAND = 3
    BAD_SEQUENCE = 4
    OVERFLOW = 5
    BAD_OFFSET = 6


# --- errors -----------------------------------------------------------------------------------

class ProtocolError(Exception):
    """The board link did not behave as docs/protocol.md says (or the device refused a request)."""


class CRCError(ProtocolError):
    """A frame failed its integrity check: invalid COBS, shorter than a header, or CRC mismatch."""


class FrameTimeout(ProtocolError):
    """No (valid) response arrived in time, even after the allowed retransmissions."""


class IdentifyMismatch(ProtocolError):
    """The device runs a different model than the one the host expects."""


class NackError(ProtocolError):
    """The device answered a request with NACK."""

    def __init__(self, message: str, code: int, detail: int):
        super().__init__(message)
        self.code = code
        self.detail = detail


# --- CRC and COBS -----------------------------------------------------------------------------

def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """COBS encode (Cheshire & Baker) via the ``cobs`` package."""
    return _cobs.encode(bytes(data))


def cobs_decode(data: bytes) -> bytes:
    """Decode one COBS block sequence (without delimiters). Raises CRCError if invalid."""
    try:
        return _cobs.decode(bytes(data))
    except _cobs.DecodeError as exc:
        raise CRCError(f"invalid COBS: {exc}") from None


def check_payload_limit(largest: int, max_batch: int) -> None:
    """The largest payload a device of ``max_batch`` would send or accept must fit the frame
    header's u16 length; the device model and both board-top controllers check it alike."""
    if largest > MAX_PAYLOAD:
        raise ValueError(f"Max_batch {max_batch} makes a {largest}-byte payload, over the u16 "
                         f"length limit {MAX_PAYLOAD}; choose a smaller max_batch")


def max_encoded_size(decoded_size: int) -> int:
    """Upper bound of the COBS encoding of ``decoded_size`` bytes (without delimiters)."""
    return decoded_size + 1 + decoded_size // 254


# --- frames -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    cmd: int
    seq: int
    payload: bytes = b""

    def describe(self) -> str:
        try:
            name = Cmd(self.cmd).name
        except ValueError:
            name = f"0x{self.cmd:02x}"
        return f"{name} seq={self.seq} ({len(self.payload)} payload bytes)"


def frame_bytes(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """The decoded frame: header + payload + CRC."""
    if not 0 <= cmd <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"cmd and seq must be bytes, not cmd={cmd} seq={seq}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the u16 length field ({MAX_PAYLOAD})")
    body = HEADER.pack(cmd, seq, len(payload)) + bytes(payload)
    return body + crc16(body).to_bytes(2, "little")


def encode_frame(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """Wire bytes of one frame: 0x00, COBS(header + payload + CRC), 0x00."""
    return b"\x00" + cobs_encode(frame_bytes(cmd, seq, payload)) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """Decode the bytes between two delimiters.

    Raises CRCError when the frame is corrupt (COBS, short, CRC) and ProtocolError when it is intact
    but its length field disagrees with its size (BAD_LENGTH on the device).
    """
    raw = cobs_decode(encoded)
    if len(raw) < MIN_FRAME:
        raise CRCError(f"frame of {len(raw)} decoded bytes is shorter than the minimum {MIN_FRAME}")
    body, crc = raw[:-CRC_SIZE], int.from_bytes(raw[-CRC_SIZE:], "little")
    if crc16(body) != crc:
        raise CRCError(f"CRC mismatch: frame says 0x{crc:04x}, computed 0x{crc16(body):04x} "
                       f"over {len(body)} bytes (cmd byte 0x{raw[0]:02x}, seq byte {raw[1]})")
    cmd, seq, length = HEADER.unpack_from(body)
    if length != len(body) - HEADER_SIZE:
        raise ProtocolError(f"length field says {length} payload bytes but the frame holds "
                            f"{len(body) - HEADER_SIZE} (cmd 0x{cmd:02x}, seq {seq})")
    return Frame(cmd, seq, bytes(body[HEADER_SIZE:]))


class FrameDecoder:
    """Splits a byte stream at 0x00 delimiters into encoded frames (bounded buffer).

    ``feed`` returns the non-empty encoded frames completed by the new bytes. A run of more than
    ``max_size`` bytes without a delimiter is dropped up to and including the next delimiter.
    """

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._buf = bytearray()
        self._discarding = False
        self.overruns = 0

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for chunk_index, piece in enumerate(bytes(data).split(b"\x00")):
            if chunk_index > 0:                     # a delimiter preceded this piece
                if self._buf and not self._discarding:
                    frames.append(bytes(self._buf))
                self._buf.clear()
                self._discarding = False
            if self._discarding:
                continue
            self._buf += piece
            if len(self._buf) > self.max_size:
                self._buf.clear()
                self._discarding = True
                self.overruns += 1
        return frames

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False


# --- samples and payloads ---------------------------------------------------------------------

def sample_bytes(width: int) -> int:
    """Bytes per sample of a ``width``-bit format: ceil(width / 8)."""
    return (int(width) + 7) // 8


def pack_samples(values, width: int) -> bytes:
    """int array -> little-endian two's complement, ceil(width/8) bytes per value, sign-extended.
    Raises ValueError for values outside the signed ``width``-bit range."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if v.size and (v.min() < lo or v.max() > hi):
        bad = int(v[(v < lo) | (v > hi)][0])
        raise ValueError(f"sample {bad} does not fit a signed {width}-bit format ({lo}..{hi})")
    nb = sample_bytes(width)
    return v.astype("<i8").view(np.uint8).reshape(-1, 8)[:, :nb].tobytes()


def unpack_samples(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of pack_samples; uses only the low ``width`` bits of each sample (as the device)."""
    nb = sample_bytes(width)
    if len(data) != count * nb:
        raise ProtocolError(f"expected {count} samples of {nb} bytes ({count * nb} bytes), got {len(data)}")
    raw = np.zeros((count, 8), dtype=np.uint8)
    raw[:, :nb] = np.frombuffer(data, dtype=np.uint8).reshape(count, nb)
    v = raw.view("<u8").reshape(count).astype(np.int64) & ((1 << width) - 1)
    return np.where(v >= (1 << (width - 1)), v - (1 << width), v).astype(np.int64)


def stream_payload_size(n: int, channels: int, input_width: int) -> int:
    return 1 + n * (1 + channels * sample_bytes(input_width))


def pack_stream(u_steps, starts, input_width: int) -> bytes:
    """STREAM payload: n, then per timestep flags + H input samples. u_steps: (n, H) ints."""
    u_steps = np.asarray(u_steps, dtype=np.int64)
    n, channels = u_steps.shape
    if not 1 <= n <= 255:
        raise ValueError(f"a STREAM carries 1..255 timesteps, not {n}")
    nb = sample_bytes(input_width)
    samples = np.frombuffer(pack_samples(u_steps, input_width), dtype=np.uint8).reshape(n, channels * nb)
    flags = np.asarray(starts, dtype=bool).reshape(n, 1).astype(np.uint8) * FLAG_START
    return bytes([n]) + np.concatenate([flags, samples], axis=1).tobytes()


def unpack_stream(payload: bytes, channels: int, input_width: int):
    """-> (flags uint8 (n,), u int64 (n, H)). Raises ProtocolError if the size is inconsistent."""
    if not payload:
        raise ProtocolError("STREAM payload is empty (needs the timestep count)")
    n = payload[0]
    if len(payload) != stream_payload_size(n, channels, input_width):
        raise ProtocolError(f"STREAM of {n} timesteps needs {stream_payload_size(n, channels, input_width)} "
                            f"payload bytes, got {len(payload)}")
    nb = sample_bytes(input_width)
    rows = np.frombuffer(payload, dtype=np.uint8, offset=1).reshape(n, 1 + channels * nb)
    flags = rows[:, 0].copy()
    u = unpack_samples(rows[:, 1:].tobytes(), input_width, n * channels).reshape(n, channels)
    return flags, u


def pack_read_data(y_steps, output_width: int) -> bytes:
    y_steps = np.asarray(y_steps, dtype=np.int64)
    return bytes([y_steps.shape[0]]) + pack_samples(y_steps, output_width)


def unpack_read_data(payload: bytes, channels: int, output_width: int) -> np.ndarray:
    """READ_DATA payload -> int64 (m, H)."""
    if not payload:
        raise ProtocolError("READ_DATA payload is empty (needs the timestep count)")
    m = payload[0]
    expected = 1 + m * channels * sample_bytes(output_width)
    if len(payload) != expected:
        raise ProtocolError(f"READ_DATA of {m} timesteps needs {expected} payload bytes, got {len(payload)}")
    return unpack_samples(payload[1:], output_width, m * channels).reshape(m, channels)


def pack_stream_ack(accepted: int, pending: int) -> bytes:
    return _STREAM_ACK.pack(accepted, pending)


def unpack_stream_ack(payload: bytes) -> tuple[int, int]:
    if len(payload) != _STREAM_ACK.size:
        raise ProtocolError(f"STREAM_ACK payload must be {_STREAM_ACK.size} bytes, got {len(payload)}")
    return _STREAM_ACK.unpack(payload)


def pack_nack(code: int, detail: int = 0) -> bytes:
    return _NACK.pack(code, detail)


def unpack_nack(payload: bytes) -> tuple[int, int]:
    if len(payload) != _NACK.size:
        raise ProtocolError(f"NACK payload must be {_NACK.size} bytes, got {len(payload)}")
    return _NACK.unpack(payload)


# --- CLASSIFY (a whole-network device) ---------------------------------------------------------

def classify_payload_size(n: int, inputs: int, input_width: int) -> int:
    """CLASSIFY payload bytes for ``n`` timesteps of ``inputs`` samples."""
    return CLASSIFY_HEAD.size + n * inputs * sample_bytes(input_width)


def classify_result_size(classes: int, logits_width: int) -> int:
    """Bytes of one result in CLASSIFY_RESP: the class (u16) and the logits."""
    return _CLASS.size + classes * sample_bytes(logits_width)


def classify_results(steps: int, max_batch: int) -> int:
    """The most sequences one CLASSIFY of up to ``max_batch`` timesteps can complete (it may
    begin anywhere in a sequence of ``steps``)."""
    return (steps - 1 + max_batch) // steps


def classify_response_size(results: int, classes: int, logits_width: int) -> int:
    """CLASSIFY_RESP payload bytes carrying ``results`` results."""
    return CLASSIFY_RESP_HEAD.size + results * classify_result_size(classes, logits_width)


def wire_frame_size(payload_size: int) -> int:
    """Most bytes one frame with ``payload_size`` payload bytes takes on the wire: header, CRC,
    COBS overhead and the two 0x00 delimiters."""
    return max_encoded_size(HEADER_SIZE + payload_size + 2) + 2


def classify_wire_bytes(*, steps: int, max_batch: int, inputs: int, input_width: int,
                        classes: int, logits_width: int) -> tuple[int, int]:
    """Most wire bytes of a CLASSIFY frame of ``max_batch`` timesteps and of its response (the
    results of ``max_batch // steps`` sequences, at least one)."""
    request = wire_frame_size(classify_payload_size(max_batch, inputs, input_width))
    response = wire_frame_size(classify_response_size(max(1, max_batch // steps), classes,
                                                      logits_width))
    return request, response


def default_network_batch(steps: int, inputs: int, input_width: int) -> int:
    """Timesteps per CLASSIFY a network device takes unless told otherwise: a whole sequence
    when its samples fit ``DEFAULT_CLASSIFY_BYTES``, else as many timesteps as fit (at least 1)."""
    per_step = inputs * sample_bytes(input_width)
    return max(1, min(steps, DEFAULT_CLASSIFY_BYTES // per_step, MAX_CLASSIFY_BATCH))


def pack_classify(offset: int, u_steps, input_width: int) -> bytes:
    """CLASSIFY payload: offset (u32), n (u16), then n timesteps of H_in input samples.
    u_steps: (n, H_in) ints; ``offset``: the index of the first timestep in its sequence."""
    u_steps = np.asarray(u_steps, dtype=np.int64)
    n = u_steps.shape[0]
    if not 1 <= n <= MAX_CLASSIFY_BATCH:
        raise ValueError(f"a CLASSIFY carries 1..{MAX_CLASSIFY_BATCH} timesteps, not {n}")
    return CLASSIFY_HEAD.pack(offset, n) + pack_samples(u_steps, input_width)


def unpack_classify(payload: bytes, inputs: int, input_width: int):
    """-> (offset, u int64 (n, H_in)). Raises ProtocolError if the size is inconsistent."""
    if len(payload) < CLASSIFY_HEAD.size:
        raise ProtocolError(f"CLASSIFY payload of {len(payload)} bytes is shorter than its "
                            f"{CLASSIFY_HEAD.size}-byte head (offset, n)")
    offset, n = CLASSIFY_HEAD.unpack_from(payload)
    if len(payload) != classify_payload_size(n, inputs, input_width):
        raise ProtocolError(f"CLASSIFY of {n} timesteps needs "
                            f"{classify_payload_size(n, inputs, input_width)} payload bytes, got "
                            f"{len(payload)}")
    u = unpack_samples(payload[CLASSIFY_HEAD.size:], input_width, n * inputs)
    return offset, u.reshape(n, inputs)


def pack_classify_response(position: int, predictions, logits, logits_width: int) -> bytes:
    """CLASSIFY_RESP payload: position (u32), m (u16), then per result the class (u16) and the
    logits. predictions: (m,) ints; logits: (m, classes) ints."""
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    logits = np.asarray(logits, dtype=np.int64)
    body = b"".join(_CLASS.pack(int(c)) + pack_samples(z, logits_width)
                    for c, z in zip(predictions, logits))
    return CLASSIFY_RESP_HEAD.pack(position, predictions.size) + body


def unpack_classify_response(payload: bytes, classes: int, logits_width: int):
    """CLASSIFY_RESP payload -> (position, predictions int64 (m,), logits int64 (m, classes))."""
    if len(payload) < CLASSIFY_RESP_HEAD.size:
        raise ProtocolError(f"CLASSIFY_RESP payload of {len(payload)} bytes is shorter than its "
                            f"{CLASSIFY_RESP_HEAD.size}-byte head (position, m)")
    position, m = CLASSIFY_RESP_HEAD.unpack_from(payload)
    expected = classify_response_size(m, classes, logits_width)
    if len(payload) != expected:
        raise ProtocolError(f"CLASSIFY_RESP of {m} results needs {expected} payload bytes, got "
                            f"{len(payload)}")
    size = classify_result_size(classes, logits_width)
    rows = [payload[CLASSIFY_RESP_HEAD.size + k * size:][:size] for k in range(m)]
    predictions = np.array([_CLASS.unpack_from(row)[0] for row in rows], dtype=np.int64)
    logits = np.array([unpack_samples(row[_CLASS.size:], logits_width, classes) for row in rows],
                      dtype=np.int64).reshape(m, classes)
    return position, predictions, logits


def nack_name(code: int) -> str:
    try:
        return Nack(code).name
    except ValueError:
        return f"unknown NACK code {code}"


@dataclass(frozen=True)
class DeviceInfo:
    """The IDENTIFY_RESP payload of a single-layer device."""
    model_hash: str            # hex SHA-256, as in manifest.json
    channels: int
    input_width: int
    input_frac: int
    output_width: int
    output_frac: int
    states: int
    lanes: int
    max_batch: int
    version: int = PROTOCOL_VERSION

    #: what the device runs (not a field: a layer's IDENTIFY_RESP carries no kind byte)
    kind = "layer"

    @classmethod
    def of(cls, model, *, max_batch: int, model_hash: str | None = None) -> "DeviceInfo":
        """What a device running the QuantizedSSM ``model`` reports (hash from the weights
        unless given)."""
        q = model.config.quant
        return cls(compute_hash(model) if model_hash is None else model_hash, model.channels,
                   q.input.format.width, q.input.format.frac, q.output.format.width,
                   q.output.format.frac, model.states, model.config.hardware.lanes, max_batch)

    def pack(self) -> bytes:
        return IDENTIFY_STRUCT.pack(MAGIC, self.version, bytes.fromhex(self.model_hash), self.channels,
                                    self.input_width, self.input_frac, self.output_width,
                                    self.output_frac, self.states, self.lanes, self.max_batch)

    @classmethod
    def unpack(cls, payload: bytes) -> "DeviceInfo":
        if len(payload) != IDENTIFY_STRUCT.size:
            raise ProtocolError(f"IDENTIFY_RESP payload must be {IDENTIFY_STRUCT.size} bytes, "
                                f"got {len(payload)}")
        (magic, version, digest, channels, wu, fu, wy, fy, states, lanes,
         max_batch) = IDENTIFY_STRUCT.unpack(payload)
        if magic != MAGIC:
            raise ProtocolError(f"IDENTIFY_RESP magic is {magic!r}, expected {MAGIC!r}: not an "
                                f"ssmgen board top")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"device speaks protocol version {version}, this driver {PROTOCOL_VERSION}")
        if max_batch == 0 or channels == 0 or not (1 <= wu <= 64 and 1 <= wy <= 64):
            raise ProtocolError(f"IDENTIFY_RESP has impossible values: H={channels}, widths "
                                f"{wu}/{wy}, max_batch={max_batch}")
        return cls(digest.hex(), channels, wu, fu, wy, fy, states, lanes, max_batch, version)

    def describe(self) -> str:
        return (f"hash {self.model_hash[:16]}..., H={self.channels}, states={self.states}, "
                f"lanes={self.lanes}, input {self.input_width} bits (frac {self.input_frac}), "
                f"output {self.output_width} bits (frac {self.output_frac}), max_batch={self.max_batch}")


@dataclass(frozen=True)
class NetworkInfo:
    """The IDENTIFY_RESP payload of a whole-network device."""
    model_hash: str            # hex SHA-256, as in manifest.json
    inputs: int                # H_in: samples per timestep
    input_width: int
    input_frac: int
    steps: int                 # timesteps per sequence
    classes: int
    logits_width: int
    logits_frac: int
    channels: int              # H of every SSM layer
    layers: int
    states: int                # P of every SSM layer
    lanes: int
    max_batch: int             # most timesteps per CLASSIFY
    version: int = PROTOCOL_VERSION

    kind = "network"

    @classmethod
    def of(cls, net, *, max_batch: int | None = None,
           model_hash: str | None = None) -> "NetworkInfo":
        """What a device running the QuantizedNetwork ``net`` reports; ``max_batch`` defaults to
        :func:`default_network_batch`. Raises ValueError when a value does not fit its field."""
        cfg = net.network
        fmt = cfg.input.format
        if max_batch is None:
            max_batch = default_network_batch(cfg.steps, cfg.inputs, fmt.width)
        info = cls(compute_hash(net) if model_hash is None else model_hash, cfg.inputs, fmt.width,
                   fmt.frac, cfg.steps, cfg.classes, net.logits_width, net.logits_frac,
                   net.config.model.channels, cfg.layers, net.layers[0].states,
                   net.config.hardware.lanes, max_batch)
        try:
            info.pack()
        except struct.error:
            raise ValueError(f"the network's IDENTIFY_RESP cannot hold its values "
                             f"({info.describe()}): a field overflows its size in "
                             f"docs/protocol.md") from None
        return info

    def pack(self) -> bytes:
        return NETWORK_IDENTIFY_STRUCT.pack(
            MAGIC, self.version, bytes.fromhex(self.model_hash), NETWORK_KIND, self.inputs,
            self.input_width, self.input_frac, self.steps, self.classes, self.logits_width,
            self.logits_frac, self.channels, self.layers, self.states, self.lanes, self.max_batch)

    @classmethod
    def unpack(cls, payload: bytes) -> "NetworkInfo":
        if len(payload) != NETWORK_IDENTIFY_STRUCT.size:
            raise ProtocolError(f"a network's IDENTIFY_RESP payload must be "
                                f"{NETWORK_IDENTIFY_STRUCT.size} bytes, got {len(payload)}")
        (magic, version, digest, kind, inputs, wu, fu, steps, classes, wz, fz, channels, layers,
         states, lanes, max_batch) = NETWORK_IDENTIFY_STRUCT.unpack(payload)
        if magic != MAGIC:
            raise ProtocolError(f"IDENTIFY_RESP magic is {magic!r}, expected {MAGIC!r}: not an "
                                f"ssmgen board top")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"device speaks protocol version {version}, this driver "
                                f"{PROTOCOL_VERSION}")
        if kind != NETWORK_KIND:
            raise ProtocolError(f"IDENTIFY_RESP of {len(payload)} bytes has kind {kind}, expected "
                                f"{NETWORK_KIND} (a network)")
        if (max_batch == 0 or inputs == 0 or steps == 0 or classes == 0
                or not (1 <= wu <= 64 and 1 <= wz <= 64)):
            raise ProtocolError(f"IDENTIFY_RESP has impossible values: H_in={inputs}, steps="
                                f"{steps}, classes={classes}, widths {wu}/{wz}, "
                                f"max_batch={max_batch}")
        return cls(digest.hex(), inputs, wu, fu, steps, classes, wz, fz, channels, layers, states,
                   lanes, max_batch, version)

    def describe(self) -> str:
        return (f"hash {self.model_hash[:16]}..., network of {self.layers} layer(s), H_in="
                f"{self.inputs}, steps={self.steps}, classes={self.classes}, H={self.channels}, "
                f"states={self.states}, lanes={self.lanes}, input {self.input_width} bits (frac "
                f"{self.input_frac}), logits {self.logits_width} bits (frac {self.logits_frac}), "
                f"max_batch={self.max_batch}")


def unpack_identify(payload: bytes) -> DeviceInfo | NetworkInfo:
    """An IDENTIFY_RESP payload of either kind of device, told apart by its length."""
    if len(payload) == NETWORK_IDENTIFY_STRUCT.size:
        return NetworkInfo.unpack(payload)
    if len(payload) != IDENTIFY_STRUCT.size:
        raise ProtocolError(f"IDENTIFY_RESP payload must be {IDENTIFY_STRUCT.size} bytes (a "
                            f"layer) or {NETWORK_IDENTIFY_STRUCT.size} (a network), got "
                            f"{len(payload)}")
    return DeviceInfo.unpack(payload)
