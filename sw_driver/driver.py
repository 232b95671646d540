"""Host driver of the board link: ``Accelerator``.

    with Accelerator.open("/dev/ttyUSB1", expect_hash=model) as acc:
        y = acc.run(u)                    # a layer: float (batch, time, H) in real units
        classes, logits = acc.classify(u) # a network: float (batch, steps, H_in) in real units

Protocol: docs/protocol.md. Every request is retransmitted (identical bytes, same
sequence number) on a timeout or a corrupt response; the device replays instead of re-applying,
so no timestep is lost or applied twice.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np

from ..golden.fixedpoint import quantize_float
from ..golden.integer_model import dequantize_output, quantize_input
from ..golden.network import quantize_network_input
from ..spec.formats import Quantizer, to_float
from ..spec.hashing import model_hash
from ..spec.protocol import (
    CLASSIFY_HEAD, IDENTIFY_STRUCT, MAX_PAYLOAD, NETWORK_IDENTIFY_STRUCT, Cmd, CRCError,
    DeviceInfo, FrameDecoder, FrameTimeout, IdentifyMismatch, Nack, NackError, NetworkInfo,
    ProtocolError, classify_response_size, classify_results, decode_frame, encode_frame,
    max_encoded_size, nack_name, pack_classify, pack_stream, sample_bytes,
    unpack_classify_response, unpack_identify, unpack_nack, unpack_read_data, unpack_stream_ack,
)
from .transport import SerialTransport, Transport

__all__ = ["Accelerator"]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _expected_from(expect):
    """-> (hash hex or None, model or None, manifest dict or None)."""
    if expect is None:
        return None, None, None
    expect = getattr(expect, "quantized", expect)               # a Design: its quantized model
    if hasattr(expect, "config") and hasattr(expect, "design_kind"):   # QuantizedSSM or -Network
        return model_hash(expect), expect, None
    if isinstance(expect, dict):
        if "model_hash" not in expect:
            raise ValueError("expect_hash: a manifest dict must contain 'model_hash'")
        return str(expect["model_hash"]).lower(), None, expect
    if isinstance(expect, (str, os.PathLike)):
        text = os.fspath(expect)
        if _HEX64.match(text):
            return text.lower(), None, None
        path = Path(text)
        if path.is_dir():
            path = path / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except OSError as exc:
            raise ValueError(f"expect_hash: {text!r} is neither a 64-digit hex hash nor a readable "
                             f"manifest.json ({exc.strerror})") from None
        return _expected_from(manifest)
    raise TypeError(f"expect_hash must be None, a hex hash, a manifest (dict or path), a "
                    f"QuantizedSSM or QuantizedNetwork, or a Design, not {type(expect).__name__}")


class Accelerator:
    """An SSM layer or a whole network on a board, driven over a Transport. Use
    ``Accelerator.open``; then ``run`` / ``run_int`` (a layer) or ``classify`` /
    ``classify_int`` (a network)."""

    def __init__(self, transport: Transport, *, expect_hash=None, timeout: float = 0.5,
                 retries: int = 5, batch: int | None = None, owns_transport: bool = False):
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        self.transport = transport
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.requested_batch = batch
        self._owns_transport = owns_transport
        self.expected_hash, self.model, self.manifest = _expected_from(expect_hash)
        self.info: DeviceInfo | NetworkInfo | None = None
        #: timesteps per STREAM (a layer) or per CLASSIFY (a network)
        self.batch = 0
        self._seq = 0
        self._needs_sync = True
        self._decoder = FrameDecoder(max_encoded_size(6 + MAX_PAYLOAD))      # bounded
        self._pending: list[bytes] = []                                     # decoded-to-be frames
        self.stats = {"requests": 0, "retransmissions": 0, "corrupt_frames": 0, "timeouts": 0,
                      "stale_frames": 0}

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, port_or_transport, *, expect_hash=None, baudrate: int = 115200,
             timeout: float = 0.5, retries: int = 5, batch: int | None = None) -> "Accelerator":
        """Open a link (a serial port path/URL or a Transport), IDENTIFY, check the model hash
        against ``expect_hash`` (hex hash, manifest dict or path, QuantizedSSM, QuantizedNetwork
        or Design; None skips the check), and RESET_STATE. Raises IdentifyMismatch when the device
        runs another model."""
        owns = isinstance(port_or_transport, (str, os.PathLike))
        transport = (SerialTransport(os.fspath(port_or_transport), baudrate) if owns
                     else port_or_transport)
        if not owns and not (hasattr(transport, "write") and hasattr(transport, "read")):
            raise TypeError(f"port_or_transport must be a port path or a Transport, not "
                            f"{type(port_or_transport).__name__}")
        try:
            acc = cls(transport, expect_hash=expect_hash, timeout=timeout, retries=retries,
                      batch=batch, owns_transport=owns)
            acc._synchronize()
        except BaseException:
            if owns:
                transport.close()
            raise
        return acc

    def close(self) -> None:
        if self._owns_transport:
            self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- public commands ----------------------------------------------------------------------

    def identify(self) -> DeviceInfo | NetworkInfo:
        """IDENTIFY: the device's model hash and shape (``NetworkInfo`` for a network device);
        also re-synchronizes sequence numbers."""
        frame = self._transact(Cmd.IDENTIFY, b"")
        info = unpack_identify(frame.payload)
        self.info = info
        return info

    def reset_state(self) -> None:
        """RESET_STATE: zero the recurrent state and discard held outputs (a network: drop an
        unfinished sequence)."""
        if self._needs_sync:
            self._synchronize()
        else:
            self._guarded(lambda: self._transact(Cmd.RESET_STATE, b""))

    def run(self, u) -> np.ndarray:
        """float (batch, time, H) in real units -> float64 outputs (batch, time, H), exactly the
        dequantized outputs of the integer model. Every batch item starts from zero state."""
        self._require("layer", "run")
        u = self._real(self._check_shape(u, "u"), "u")
        if self.model is not None:
            return dequantize_output(self.model, self.run_int(quantize_input(self.model, u)))
        if self.manifest is not None:
            q_in = Quantizer.parse(self.manifest["formats"]["input"])
            y = self.run_int(quantize_float(u, q_in))
            return to_float(y, self.manifest["fractions"]["output"])
        raise ValueError("run() with real values needs the model's input quantizer: open with "
                         "expect_hash=<QuantizedSSM or manifest>, or call run_int() with integers")

    def run_int(self, u_int) -> np.ndarray:
        """int (batch, time, H) in the input format -> int64 (batch, time, H) in the output format.
        Each batch item is one sequence (START on its first timestep)."""
        if self._needs_sync:
            self._synchronize()
        info = self._require("layer", "run_int")
        u = self._integers(self._check_shape(u_int, "u_int"), "u_int", "run()")
        batch, steps, H = u.shape
        y = np.empty((batch, steps, H), dtype=np.int64)
        total = batch * steps
        if total == 0:
            return y
        flat = u.astype(np.int64).reshape(total, H)
        starts = np.zeros(total, dtype=bool)
        starts[::steps] = True
        out = y.reshape(total, H)

        def stream_all():
            for first in range(0, total, self.batch):
                n = min(self.batch, total - first)
                ack = self._transact(Cmd.STREAM, pack_stream(flat[first:first + n],
                                                             starts[first:first + n], info.input_width))
                accepted, pending = unpack_stream_ack(ack.payload)
                if accepted != n or pending != n:
                    raise ProtocolError(f"STREAM of {n} timesteps: device accepted {accepted} and "
                                        f"holds {pending} outputs (expected {n} and {n})")
                data = self._transact(Cmd.READ, b"")
                got = unpack_read_data(data.payload, H, info.output_width)
                if got.shape[0] != n:
                    raise ProtocolError(f"READ returned {got.shape[0]} timesteps, expected {n}")
                out[first:first + n] = got
        self._guarded(stream_all)
        return y

    def classify(self, u):
        """Real inputs -> (classes, logits) of a network device, exactly the golden network's.

        ``u``: float (batch, steps, H_in) in real units, or one sequence (steps, H_in); it is
        quantized into the network's input format (like ``Design.quantize_input``). Returns
        int64 classes (batch,) and float64 logits (batch, classes) in real units (the device's
        ``logits_frac``); for one sequence, an int and (classes,)."""
        info = self._require("network", "classify")
        single = np.ndim(u) == 2
        u = self._real(self._check_sequences(u, "u"), "u")
        if single:
            u = u[None]
        if self.model is not None:
            u_int = quantize_network_input(self.model, u)
        elif self.manifest is not None:
            u_int = quantize_float(u, Quantizer.parse(self.manifest["formats"]["input"]))
        else:
            raise ValueError("classify() with real values needs the network's input quantizer: "
                             "open with expect_hash=<QuantizedNetwork, Design or manifest>, or "
                             "call classify_int() with integers")
        classes, logits = self.classify_int(u_int)
        logits = to_float(logits, info.logits_frac)
        return (int(classes[0]), logits[0]) if single else (classes, logits)

    def classify_int(self, u_int):
        """int (batch, steps, H_in) in the network's input format, or one sequence (steps, H_in)
        -> (classes int64 (batch,), logits int64 (batch, classes) with ``info.logits_frac``
        fraction bits); for one sequence, an int and (classes,).

        The sequences travel back to back in CLASSIFY frames of up to ``batch`` timesteps (a
        frame may end inside a sequence and the next continue it); each response carries the
        results of the sequences it completed."""
        if self._needs_sync:
            self._synchronize()
        info = self._require("network", "classify_int")
        single = np.ndim(u_int) == 2
        u = self._integers(self._check_sequences(u_int, "u_int"), "u_int", "classify()")
        if single:
            u = u[None]
        batch, steps = u.shape[:2]
        classes = np.empty(batch, dtype=np.int64)
        logits = np.empty((batch, info.classes), dtype=np.int64)
        total = batch * steps
        flat = u.astype(np.int64).reshape(total, info.inputs)

        def classify_all():
            done = 0
            for first in range(0, total, self.batch):
                n = min(self.batch, total - first)
                frame = self._transact(Cmd.CLASSIFY, pack_classify(first % steps,
                                                                   flat[first:first + n],
                                                                   info.input_width))
                position, got_classes, got_logits = unpack_classify_response(
                    frame.payload, info.classes, info.logits_width)
                finished = (first + n) // steps - first // steps
                if position != (first + n) % steps or got_classes.size != finished:
                    raise ProtocolError(f"CLASSIFY of timesteps {first}..{first + n - 1}: the "
                                        f"device is at timestep {position} of its sequence with "
                                        f"{got_classes.size} result(s), expected "
                                        f"{(first + n) % steps} and {finished}")
                classes[done:done + finished] = got_classes
                logits[done:done + finished] = got_logits
                done += finished
        if total:
            self._guarded(classify_all)
        return (int(classes[0]), logits[0]) if single else (classes, logits)

    # --- internals ----------------------------------------------------------------------------

    def _require(self, kind: str, method: str):
        """The device's info, if it runs a ``kind`` ("layer" or "network"); else ValueError."""
        if self.info is None:
            self._synchronize()
        info = self.info
        if info.kind != kind:
            other = "run() / run_int()" if kind == "network" else "classify() / classify_int()"
            raise ValueError(f"{method}() needs a {kind} device, but this one runs a "
                             f"{info.kind} ({info.describe()}): use {other}")
        return info

    def _real(self, u, name):
        """``u`` as float64, or ValueError if it is not real and finite."""
        if not np.issubdtype(u.dtype, np.number) or np.issubdtype(u.dtype, np.complexfloating):
            raise ValueError(f"{name} must be real numbers, not dtype {u.dtype}")
        u = u.astype(np.float64)
        bad = ~np.isfinite(u)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf), "
                             f"the first {u[where]} at index {where}")
        return u

    def _integers(self, u, name, quantizing):
        """``u``, checked to hold integers of the device's input format."""
        width = self.info.input_width
        if not np.issubdtype(u.dtype, np.integer):
            raise ValueError(f"{name} must be integers of the input format, not dtype {u.dtype} "
                             f"({quantizing} quantizes real values)")
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        if u.size and (u.min() < lo or u.max() > hi):
            raise ValueError(f"{name} values must lie in {lo}..{hi} (signed {width}-bit input "
                             f"format); got {u.min()}..{u.max()}")
        return u

    def _check_sequences(self, u, name):
        """A network's input: (batch, steps, H_in) or one sequence (steps, H_in)."""
        u = np.asarray(u)
        steps, inputs = self.info.steps, self.info.inputs
        if u.ndim not in (2, 3) or u.shape[-2:] != (steps, inputs):
            raise ValueError(f"{name} must have shape (batch, steps={steps}, H_in={inputs}) or "
                             f"(steps={steps}, H_in={inputs}) for one sequence, not {u.shape}")
        return u

    # --- internals ----------------------------------------------------------------------------

    def _check_shape(self, u, name):
        u = np.asarray(u)
        H = self.info.channels if self.info is not None else None
        if u.ndim != 3 or (H is not None and u.shape[2] != H):
            raise ValueError(f"{name} must have shape (batch, time, H={H}), not {u.shape}")
        return u

    def _guarded(self, action):
        """Run a command sequence; any failure leaves the link to be re-synchronized first."""
        try:
            return action()
        except BaseException:
            self._needs_sync = True
            raise

    def _synchronize(self) -> None:
        """IDENTIFY (sequence re-sync and hash check) + RESET_STATE (clean state, empty buffer)."""
        self._needs_sync = True
        self._decoder.reset()
        self._pending.clear()
        info = self.identify()
        if self.expected_hash is not None and info.model_hash != self.expected_hash:
            raise IdentifyMismatch(
                f"the device runs model {info.model_hash} ({info.describe()}), but the expected model "
                f"has hash {self.expected_hash}: load the bitstream generated for this model, or "
                f"pass the manifest.json of the design on the board")
        if self.model is not None:
            self._check_model_shape(info)
        if info.kind == "network":
            per_step = info.inputs * sample_bytes(info.input_width)
            limit = min(info.max_batch, (MAX_PAYLOAD - CLASSIFY_HEAD.size) // per_step)
        else:
            per_step = max(1 + info.channels * sample_bytes(info.input_width),
                           info.channels * sample_bytes(info.output_width))
            limit = min(info.max_batch, (MAX_PAYLOAD - 1) // per_step)
        if limit < 1:
            raise ProtocolError(f"device advertises {info.describe()}: one timestep does not fit "
                                f"a frame")
        self.batch = min(limit, self.requested_batch) if self.requested_batch else limit
        self._transact(Cmd.RESET_STATE, b"")
        self._needs_sync = False

    def _check_model_shape(self, info) -> None:
        """The expected model's shape must be the device's (the hash covers it; this names what
        differs)."""
        model = self.model
        if model.design_kind != info.kind:
            raise IdentifyMismatch(f"the device runs a {info.kind} ({info.describe()}), but the "
                                   f"expected model is a {model.design_kind}")
        if info.kind == "network":
            cfg = model.network
            names = "(H_in, W_in, steps, classes, W_logits)"
            mine = (cfg.inputs, cfg.input.format.width, cfg.steps, cfg.classes, model.logits_width)
            theirs = (info.inputs, info.input_width, info.steps, info.classes, info.logits_width)
        else:
            q = model.config.quant
            names = "(H, W_u, W_y)"
            mine = (model.channels, q.input.format.width, q.output.format.width)
            theirs = (info.channels, info.input_width, info.output_width)
        if mine != theirs:
            raise IdentifyMismatch(f"device shape {names} = {theirs} differs from the model's "
                                   f"{mine}")

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _transact(self, cmd: Cmd, payload: bytes):
        """Send one request and return its success response Frame, retransmitting on timeouts and
        corrupt frames up to ``retries`` times."""
        try:
            return self._transact_once(cmd, payload)
        except BaseException:
            self._needs_sync = True
            raise

    def _transact_once(self, cmd: Cmd, payload: bytes):
        seq = self._next_seq()
        wire = encode_frame(cmd, seq, payload)
        expected = cmd.response
        self.stats["requests"] += 1
        history = []
        attempts = self.retries + 1
        # the timeout covers the device's turnaround; the transfer time of the bytes is added
        byte_time = float(getattr(self.transport, "byte_time", 0.0))
        wait = self.timeout + byte_time * (len(wire) + self._response_size(cmd))
        for attempt in range(attempts):
            if attempt:
                self.stats["retransmissions"] += 1
            self.transport.write(wire)
            outcome = self._await(seq, wait)
            if isinstance(outcome, str):                 # a failure to retransmit after
                history.append(outcome)
                continue
            frame = outcome
            if frame.cmd == expected:
                return frame
            if frame.cmd == Cmd.NACK:
                code, detail = unpack_nack(frame.payload)
                if code == Nack.BAD_CRC:
                    history.append("device reported a CRC error in the request (NACK BAD_CRC)")
                    continue
                hint = {Nack.BAD_SEQUENCE: f"; the device expected seq {detail} (the driver "
                                           f"re-synchronizes before its next request)",
                        Nack.OVERFLOW: f"; {detail} outputs are still held"}.get(code, "")
                raise NackError(f"device refused {cmd.name} seq {seq} with NACK {nack_name(code)}"
                                f"{hint}", code, detail)
            raise ProtocolError(f"{cmd.name} seq {seq} was answered with {frame.describe()}, "
                                f"expected {expected.name}")
        exc_type = FrameTimeout if history and history[-1].startswith("no response") else CRCError
        raise exc_type(f"{cmd.name} seq {seq} failed after {attempts} attempt(s) "
                       f"(retries={self.retries}, timeout {wait:.3g} s each): " + "; ".join(
                           f"#{i + 1}: {h}" for i, h in enumerate(history)))

    def _response_size(self, cmd: Cmd) -> int:
        """Largest wire size of the success response to ``cmd``."""
        payload = {Cmd.IDENTIFY: max(IDENTIFY_STRUCT.size, NETWORK_IDENTIFY_STRUCT.size),
                   Cmd.STREAM: 2}.get(cmd, 0)
        info = self.info
        if cmd == Cmd.READ and info is not None:
            payload = 1 + self.batch * info.channels * sample_bytes(info.output_width)
        if cmd == Cmd.CLASSIFY and info is not None:
            payload = classify_response_size(classify_results(info.steps, self.batch),
                                             info.classes, info.logits_width)
        return max_encoded_size(6 + payload) + 2

    def _await(self, seq: int, wait: float):
        """Read until a frame for ``seq`` arrives (-> Frame) or the attempt fails (-> reason).
        Frames for other sequence numbers (late duplicates) are discarded."""
        deadline = time.monotonic() + wait
        while True:
            while self._pending:
                encoded = self._pending.pop(0)
                try:
                    frame = decode_frame(encoded)
                except ProtocolError as exc:                 # corrupt: most likely our response
                    self.stats["corrupt_frames"] += 1
                    return f"corrupt response ({exc})"
                if frame.seq == seq:
                    return frame
                self.stats["stale_frames"] += 1
            remaining = deadline - time.monotonic()
            data = self.transport.read(remaining) if remaining > 0 else b""
            if not data:
                self.stats["timeouts"] += 1
                return f"no response within {wait:.3g} s"
            self._pending.extend(self._decoder.feed(data))
