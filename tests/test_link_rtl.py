"""The board top's link logic in Amaranth's simulator, over real 8N1 UART timing
(``sim/board/transport.py``), against the executable specification ``ReferenceDevice``:

* known-answer frames: for the same request bytes, valid and malformed, the RTL answers byte for
  byte what ReferenceDevice answers;
* end to end: ``Accelerator.run`` over the simulated board equals the golden integer model;
* fault injection on the line: the driver recovers, no timestep is lost or applied twice.

Amaranth's simulator runs a few thousand cycles per second here, so the configs are tiny and the
UART divisor small. Random tests name their seed in assertion messages.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from regression_configs import make_config

from ssmgen.golden.integer_model import dequantize_output, quantize_input, run_integer
from ssmgen.golden.quantize import load_model
from ssmgen.sim.board.transport import BoardSimTransport
from ssmgen.spec import protocol as P
from ssmgen.spec.config import parse_config
from ssmgen.spec.protocol import Cmd
from ssmgen.sw_driver import Accelerator, Fault, IdentifyMismatch, ReferenceDevice

LINK_CONFIGS = {
    # 1 channel, 1-byte samples: the cheapest to simulate
    "s4d_tiny": make_config("s4d_tiny", "s4d", channels=1, size=4, lanes=1, abar=(8, 1),
                            bbar=(8, 0), c=(8, 1), d=(6, 2), input=(8, 3), state=(10, 4),
                            output=(8, 4)),
    # 2 channels, 2-byte inputs, 3-byte outputs, lanes < states
    "s4d_wide": make_config("s4d_wide", "s4d", channels=2, size=4, lanes=2, abar=(12, 1),
                            c=(12, 1), input=(10, 3), state=(20, 6), output=(18, 6)),
    # dense S5: 2 channels, 2 lanes over 4 states, 2-byte outputs
    "s5_small": make_config("s5_small", "s5", channels=2, size=4, lanes=2, abar=(10, 1),
                            state=(12, 4), output=(12, 5)),
}

DIVISOR = 4          # clock cycles per UART bit: the fastest the receiver supports


@pytest.fixture(scope="module")
def models():
    return {name: load_model(parse_config(cfg)) for name, cfg in LINK_CONFIGS.items()}


def random_inputs(model, shape, seed):
    fmt = model.config.quant.input.format
    rng = np.random.default_rng(seed)
    return rng.integers(fmt.min_int, fmt.max_int + 1, size=(*shape, model.channels), dtype=np.int64)


def raw_frame(cmd, seq, payload=b"", *, length=None, crc_xor=0):
    """Wire bytes of a frame whose length field and CRC may be wrong on purpose."""
    body = struct.pack("<BBH", cmd, seq, len(payload) if length is None else length) + payload
    crc = P.crc16(body) ^ crc_xor
    return b"\x00" + P.cobs_encode(body + crc.to_bytes(2, "little")) + b"\x00"


def stream_payload(model, n, seed, *, flags=None):
    u = random_inputs(model, (n,), seed)
    starts = np.zeros(n, dtype=bool) if flags is None else np.asarray(flags, dtype=bool)
    return P.pack_stream(u, starts, model.config.quant.input.format.width)


def request_script(model, max_batch, seed, *, random_requests=14):
    """Requests covering every path of docs/protocol.md section 4, malformed ones included, then
    a random mix. Each entry is the bytes of one host write."""
    rng = random.Random(seed)
    S = Cmd
    script = [
        raw_frame(S.RESET_STATE, 9),                        # before any IDENTIFY: accepted
        raw_frame(S.IDENTIFY, 0),
        raw_frame(S.IDENTIFY, 0, b"\x01"),                  # IDENTIFY with payload
        raw_frame(S.RESET_STATE, 1),
        raw_frame(S.READ, 2),                               # nothing held: m = 0
        raw_frame(S.STREAM, 3, stream_payload(model, 2, seed, flags=[1, 0])),
        raw_frame(S.STREAM, 3, stream_payload(model, 2, seed, flags=[1, 0])),   # replay
        raw_frame(S.READ, 3),                               # same seq, other cmd
        raw_frame(S.READ, 4),
        raw_frame(S.READ, 4),                               # replayed READ (from the RAM)
        raw_frame(S.STREAM, 5, stream_payload(model, 1, seed + 1), crc_xor=0x0100),  # bad CRC
        raw_frame(S.STREAM, 5, stream_payload(model, 1, seed + 1), length=3),   # len mismatch
        raw_frame(0x09, 5), raw_frame(0x00, 5), raw_frame(0x84, 5),             # unknown cmds
        raw_frame(S.RESET_STATE, 5, b"\x00"), raw_frame(S.READ, 5, b"\x01\x02"),
        raw_frame(S.STREAM, 5, b""),                                            # no n
        raw_frame(S.STREAM, 5, stream_payload(model, 1, seed)[:-1]),            # short payload
        raw_frame(S.STREAM, 5, b"\x00"),                                        # n = 0
        raw_frame(S.STREAM, 7, stream_payload(model, 1, seed)),                 # seq skipped
        raw_frame(S.STREAM, 5, stream_payload(model, max_batch, seed + 2,
                                              flags=[3] + [0xFE] * (max_batch - 1))),
        raw_frame(S.STREAM, 6, stream_payload(model, 1, seed + 3)),             # overflow
        raw_frame(S.READ, 6),
        b"\x00\x00\x00",                                    # empty frames: ignored
        b"\x00\x03\x01\x02\x00",                            # decodes to 2 bytes: dropped
        b"\x00\x07\x01\x02\x00",                            # invalid COBS: dropped
        b"\x55\xaa" + raw_frame(S.RESET_STATE, 7),          # garbage before a frame
    ]
    if max_batch < 255:                                     # n > max_batch
        payload = bytes([max_batch + 1]) + stream_payload(model, max_batch + 1, seed)[1:]
        script.append(raw_frame(S.STREAM, 8, payload))
    # a frame followed by bytes without a delimiter: the next write's leading 0x00 ends them
    # as a 2-byte frame, which is dropped
    script.append(raw_frame(S.STREAM, 8, stream_payload(model, max_batch, seed)) + b"\x01" * 3)
    # an encoded frame one byte over RX_MAX (an oversize STREAM): dropped silently
    rx_max = ReferenceDevice(model, max_batch=max_batch).rx_max
    script.append(b"\x00" + bytes([0x11]) * (rx_max + 1) + b"\x00")
    script.append(raw_frame(S.READ, 9))
    script.append(raw_frame(S.READ, 9))
    seq = 10
    for _ in range(random_requests):                        # random mix, mostly valid
        kind = rng.choice(["stream", "read", "reset", "identify", "corrupt", "stale"])
        if kind == "stream":
            n = rng.randrange(1, max_batch + 1)
            flags = [rng.randrange(256) for _ in range(n)]
            script.append(raw_frame(S.STREAM, seq, stream_payload(model, n, rng.randrange(1000),
                                                                   flags=flags)))
        elif kind == "read":
            script.append(raw_frame(S.READ, seq))
        elif kind == "reset":
            script.append(raw_frame(S.RESET_STATE, seq))
        elif kind == "identify":
            script.append(raw_frame(S.IDENTIFY, seq))
        elif kind == "corrupt":
            frame = bytearray(raw_frame(S.READ, seq))
            frame[rng.randrange(1, len(frame) - 1)] ^= rng.randrange(1, 256)
            script.append(bytes(frame))
        else:
            script.append(raw_frame(S.READ, (seq - 1) & 0xFF))
        if rng.random() < 0.8:
            seq = (seq + 1) & 0xFF
    return script


def replay(board, reference, script, label: str) -> None:
    """Each request of ``script`` to the simulated board and to the reference device: the board
    answers with exactly the reference's bytes (shared with the network link's tests)."""
    for index, request in enumerate(script):
        expected = b"".join(reference.receive(request))
        board.write(request)
        got = board.read(0.0)
        assert got == expected, (f"{label}, request #{index} {request.hex(' ')} "
                                 f"(cycle {board.cycles}):\n  RTL       {got.hex(' ')}\n"
                                 f"  reference {expected.hex(' ')}")


@pytest.mark.parametrize("name,max_batch,random_requests",
                         [("s4d_tiny", 3, 14), ("s4d_wide", 2, 3), ("s5_small", 2, 3)])
def test_rtl_answers_like_reference_device(models, name, max_batch, random_requests):
    model = models[name]
    seed = 17 + max_batch
    reference = ReferenceDevice(model, max_batch=max_batch)
    board = BoardSimTransport(model, divisor=DIVISOR, max_batch=max_batch)
    assert board.core.link.rx_max == reference.rx_max
    try:
        script = request_script(model, max_batch, seed, random_requests=random_requests)
        replay(board, reference, script, f"{name} seed {seed}")
        assert board.steps_applied == reference.steps_applied, f"seed {seed}"
        assert board.framing_errors == 0
    finally:
        board.close()


def test_known_answer_identify():
    """IDENTIFY seq 0 on a fresh board: the 48-byte struct with the model's constants."""
    model = load_model(parse_config(LINK_CONFIGS["s4d_tiny"]))
    board = BoardSimTransport(model, divisor=DIVISOR, max_batch=5)
    board.write(P.encode_frame(Cmd.IDENTIFY, 0))
    assert P.encode_frame(Cmd.IDENTIFY, 0).hex(" ") == "00 02 01 01 01 03 74 f2 00"
    frame = P.decode_frame(board.read(0.0)[1:-1])
    info = P.DeviceInfo.unpack(frame.payload)
    assert (frame.cmd, frame.seq) == (Cmd.IDENTIFY_RESP, 0)
    assert info == ReferenceDevice(model, max_batch=5).info
    assert (info.channels, info.input_width, info.output_width, info.max_batch) == (1, 8, 8, 5)
    board.close()


@pytest.mark.parametrize("name,divisor,max_batch,shape", [
    ("s4d_tiny", 10, 2, (1, 5)),        # more oversampling; several chunks per sequence
    ("s4d_wide", DIVISOR, 3, (2, 3)),   # multi-byte samples both ways
    ("s5_small", DIVISOR, 2, (2, 3)),
    ("s4d_wide", DIVISOR, 45, (1, 45)), # a 271-byte READ_DATA: COBS blocks of 254 bytes
])
def test_end_to_end_equals_golden(models, name, divisor, max_batch, shape):
    model = models[name]
    seed = sum(shape) + divisor
    u_int = random_inputs(model, shape, seed)
    board = BoardSimTransport(model, divisor=divisor, max_batch=max_batch)
    with Accelerator.open(board, expect_hash=model) as acc:
        y = acc.run_int(u_int)
        assert np.array_equal(y, run_integer(model, u_int)), f"{name} seed {seed}"
        runs = 1
        if max_batch < 10:     # real units through the same path: dequantized golden outputs
            u = u_int * 2.0 ** -model.config.quant.input.format.frac
            assert np.array_equal(acc.run(u), dequantize_output(model, run_integer(
                model, quantize_input(model, u)))), f"{name} seed {seed}"
            runs = 2
    assert board.steps_applied == runs * shape[0] * shape[1], f"{name} seed {seed}"
    assert acc.stats["retransmissions"] == 0 and board.framing_errors == 0
    board.close()


@pytest.mark.parametrize("host_divisor", [31, 33])
def test_uart_tolerates_a_baud_mismatch(models, host_divisor):
    """The host's bit time 3 % off the board's (32 cycles per bit): mid-bit sampling holds.
    (At 9 % off, 29 or 35 cycles, the link fails: the host's Fault-free frames go unanswered.)"""
    model = models["s4d_tiny"]
    board = BoardSimTransport(model, divisor=32, max_batch=1, host_divisor=host_divisor)
    u = random_inputs(model, (1, 1), host_divisor)
    with Accelerator.open(board, expect_hash=model) as acc:
        assert np.array_equal(acc.run_int(u), run_integer(model, u)), f"seed {host_divisor}"
    assert acc.stats["retransmissions"] == 0 and board.framing_errors == 0
    board.close()


def test_identify_mismatch_is_an_error(models):
    board = BoardSimTransport(models["s4d_tiny"], divisor=DIVISOR, max_batch=2)
    with pytest.raises(IdentifyMismatch, match="expected model"):
        Accelerator.open(board, expect_hash=models["s5_small"])
    board.close()


FAULT_CASES = [(d, k) for d in ("to_device", "to_host")
               for k in ("corrupt", "truncate", "drop", "garbage")]


@pytest.mark.parametrize("direction,kind", FAULT_CASES)
def test_link_faults_recover_without_losing_timesteps(models, direction, kind):
    model = models["s4d_tiny"]
    seed = 100 + FAULT_CASES.index((direction, kind))
    # frames 0, 1: IDENTIFY, RESET_STATE; then STREAM/READ pairs: hit a STREAM and a READ
    faults = [Fault(direction, kind, i) for i in (2, 5)]
    board = BoardSimTransport(model, divisor=DIVISOR, max_batch=3, faults=faults, seed=seed)
    u = random_inputs(model, (2, 3), seed)
    with Accelerator.open(board, expect_hash=model, timeout=5.0) as acc:
        y = acc.run_int(u)
    log = board.fault_log
    assert np.array_equal(y, run_integer(model, u)), f"{direction}/{kind} seed {seed}: {log}"
    assert board.steps_applied == u.shape[0] * u.shape[1], (
        f"lost or duplicated timesteps; {direction}/{kind} seed {seed}: {log}")
    assert len(log) == 2, f"seed {seed}: {log}"
    if kind != "garbage":     # garbage before a frame's leading 0x00 is simply discarded
        assert acc.stats["retransmissions"] >= 1, f"seed {seed}: {log}"
    board.close()


def test_random_faults_both_directions(models):
    model = models["s5_small"]
    seed = 4
    board = BoardSimTransport(model, divisor=DIVISOR, max_batch=3, fault_rate=0.25, seed=seed)
    u = random_inputs(model, (2, 4), seed)
    with Accelerator.open(board, expect_hash=model, retries=8) as acc:
        y = acc.run_int(u)
    msg = f"seed {seed}: {board.fault_log}"
    assert np.array_equal(y, run_integer(model, u)), msg
    assert board.steps_applied == u.shape[0] * u.shape[1], msg
    assert board.fault_log, msg
    board.close()
