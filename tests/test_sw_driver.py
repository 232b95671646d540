"""Host driver and board-link protocol (docs/protocol.md) against the reference device.

The reference device (``ReferenceDevice``) is the executable spec of the FPGA board top, so the
device-level tests here are also the behaviour the RTL must reproduce. Every random test names its
seed in its assertion messages.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from ssmgen.design import Design
from ssmgen.golden.integer_model import quantize_input, run_integer, run_quantized
from ssmgen.golden.quantize import load_model
from ssmgen.spec import protocol as P
from ssmgen.spec.config import load_config
from ssmgen.spec.hashing import model_hash
from ssmgen.spec.protocol import Cmd, Nack
from ssmgen.sw_driver import (
    Accelerator,
    CRCError,
    DeviceModelTransport,
    Fault,
    FrameTimeout,
    IdentifyMismatch,
    NackError,
    ProtocolError,
    ReferenceDevice,
    SerialTransport,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIGS = ["s4d_small", "s5_small", "s5_aggressive"]


@pytest.fixture(scope="module")
def models():
    return {name: load_model(load_config(EXAMPLES / f"{name}.toml")) for name in CONFIGS}


def random_inputs(model, shape, seed):
    fmt = model.config.quant.input.format
    rng = np.random.default_rng(seed)
    return rng.integers(fmt.min_int, fmt.max_int + 1, size=(*shape, model.channels), dtype=np.int64)


# --- CRC --------------------------------------------------------------------------------------

def crc16_bitwise(data: bytes) -> int:
    """The bitwise definition given in docs/protocol.md (what the RTL implements)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def test_crc_check_value_and_bitwise_definition():
    assert P.crc16(b"123456789") == 0x29B1
    assert P.crc16(b"") == 0xFFFF
    for b in range(256):
        assert P.crc16(bytes([b])) == crc16_bitwise(bytes([b])), b
    for a, b in itertools.product(range(0, 256, 5), repeat=2):
        assert P.crc16(bytes([a, b])) == crc16_bitwise(bytes([a, b])), (a, b)
    seed = 11
    rng = random.Random(seed)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        assert P.crc16(data) == crc16_bitwise(data), f"seed {seed}"


# --- COBS -------------------------------------------------------------------------------------

def small_strings(max_len, alphabet=range(256)):
    for n in range(max_len + 1):
        yield from (bytes(t) for t in itertools.product(alphabet, repeat=n))


def test_cobs_round_trip_exhaustive_small():
    for data in small_strings(2):                                 # all 65793 strings of <= 2 bytes
        e = P.cobs_encode(data)
        assert 0 not in e, data
        assert len(e) <= P.max_encoded_size(len(data)), data
        assert P.cobs_decode(e) == data, data


def test_cobs_block_boundaries_and_known_answers():
    seed = 5
    rng = random.Random(seed)
    for n in [0, 1, 252, 253, 254, 255, 256, 507, 508, 509, 762, 1000]:
        for zero_rate in (0.0, 0.01, 0.5):
            data = bytes(0 if rng.random() < zero_rate else rng.randrange(1, 256) for _ in range(n))
            e = P.cobs_encode(data)
            assert 0 not in e and len(e) <= P.max_encoded_size(n), f"n={n} seed {seed}"
            assert P.cobs_decode(e) == data, f"n={n} seed {seed}"
    assert P.cobs_encode(b"") == b"\x01"
    assert P.cobs_encode(b"\x00") == b"\x01\x01"
    assert P.cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert P.cobs_encode(b"\x01" * 254) == b"\xff" + b"\x01" * 254
    with pytest.raises(CRCError, match="invalid COBS"):
        P.cobs_decode(b"\x05\x01")


# --- frames, samples, decoder -----------------------------------------------------------------

def test_frame_known_answer():
    """Pinned bytes: the RTL's serializer must produce exactly these."""
    assert P.encode_frame(Cmd.IDENTIFY, 0).hex() == "00020101010374f200"         # CRC 0xF274
    assert P.encode_frame(Cmd.STREAM, 7, b"\x01\x01\xff\x00").hex() == "0004030704040101ff03d5a400"
    raw = P.frame_bytes(Cmd.IDENTIFY, 0)
    assert raw == b"\x01\x00\x00\x00" + P.crc16(b"\x01\x00\x00\x00").to_bytes(2, "little")
    wire = P.encode_frame(Cmd.STREAM, 7, b"\x01\x01\xff\x00")
    body = bytes([0x03, 0x07, 0x04, 0x00, 0x01, 0x01, 0xFF, 0x00])
    crc = crc16_bitwise(body)
    assert wire == b"\x00" + P.cobs_encode(body + crc.to_bytes(2, "little")) + b"\x00"
    assert P.decode_frame(wire[1:-1]) == P.Frame(Cmd.STREAM, 7, b"\x01\x01\xff\x00")


def test_every_single_byte_corruption_is_detected():
    wire = P.encode_frame(Cmd.READ_DATA, 200, bytes(range(40)) * 3)
    encoded = wire[1:-1]
    for pos in range(len(encoded)):
        for xor in (0x01, 0x80, 0xFF, 0x5A):
            bad = bytearray(encoded)
            bad[pos] ^= xor
            for piece in bytes(bad).split(b"\x00"):             # a new zero splits the frame
                if piece:
                    with pytest.raises(ProtocolError):
                        P.decode_frame(piece)


def test_frame_length_field_mismatch_is_protocol_error_not_crc():
    body = bytes([Cmd.READ, 1, 5, 0])                           # says 5 payload bytes, has 0
    encoded = P.cobs_encode(body + P.crc16(body).to_bytes(2, "little"))
    with pytest.raises(ProtocolError, match="length field says 5") as info:
        P.decode_frame(encoded)
    assert not isinstance(info.value, CRCError)


def test_frame_decoder_split_anywhere_and_overrun():
    frames = [P.encode_frame(Cmd.STREAM_ACK, s, bytes([s, s])) for s in range(20)]
    stream = b"".join(frames)
    seed = 3
    rng = random.Random(seed)
    for _ in range(20):
        dec = P.FrameDecoder(64)
        out, i = [], 0
        while i < len(stream):
            step = rng.randrange(1, 12)
            out += dec.feed(stream[i:i + step])
            i += step
        assert [P.decode_frame(e).seq for e in out] == list(range(20)), f"seed {seed}"
    dec = P.FrameDecoder(16)
    assert dec.feed(b"\x07" * 40) == []                        # overrun: discarded
    assert dec.feed(b"\x07\x07\x00" + frames[3]) == [frames[3][1:-1]]
    assert dec.overruns == 1


@pytest.mark.parametrize("width", range(2, 25))
def test_sample_packing(width):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    values = np.arange(lo, hi + 1) if width <= 12 else np.array([lo, lo + 1, -1, 0, 1, hi - 1, hi])
    data = P.pack_samples(values, width)
    nb = (width + 7) // 8
    assert len(data) == values.size * nb
    for v, chunk in zip(values[:50], (data[i:i + nb] for i in range(0, len(data), nb))):
        assert chunk == int(v).to_bytes(nb, "little", signed=True), (width, v)
    assert np.array_equal(P.unpack_samples(data, width, values.size), values)
    with pytest.raises(ValueError, match=f"signed {width}-bit"):
        P.pack_samples([hi + 1], width)
    # the receiver uses only the low W bits (extension bits are not checked)
    if width % 8:
        raw = bytearray(int(-1).to_bytes(nb, "little", signed=True))
        raw[-1] &= (1 << (width % 8)) - 1                       # clear the extension bits
        assert P.unpack_samples(bytes(raw), width, 1)[0] == -1


def test_identify_struct_layout(models):
    m = models["s4d_small"]
    info = ReferenceDevice(m, max_batch=200).info
    payload = info.pack()
    assert len(payload) == 48
    assert payload[:4] == b"SSMG" and payload[4] == 1
    assert payload[5:37] == bytes.fromhex(model_hash(m))
    assert int.from_bytes(payload[37:39], "little") == m.channels
    q = m.config.quant
    assert payload[39] == q.input.format.width and payload[40] == q.input.format.frac % 256
    assert payload[41] == q.output.format.width and payload[42] == q.output.format.frac % 256
    assert int.from_bytes(payload[43:45], "little") == m.states
    assert int.from_bytes(payload[45:47], "little") == m.config.hardware.lanes
    assert payload[47] == 200
    assert P.DeviceInfo.unpack(payload) == info


# --- the reference device (executable spec of the board top) ---------------------------------

def request(device, cmd, seq, payload=b""):
    responses = device.receive(P.encode_frame(cmd, seq, payload))
    assert len(responses) <= 1
    return P.decode_frame(responses[0][1:-1]) if responses else None


def test_device_sequence_replay_and_nacks(models):
    m = models["s5_small"]
    dev = ReferenceDevice(m, max_batch=4)
    W = dev.info.input_width
    u = random_inputs(m, (1, 4), seed=0)[0]
    starts = [True, False, False, False]
    assert request(dev, Cmd.IDENTIFY, 10).cmd == Cmd.IDENTIFY_RESP
    stream = P.encode_frame(Cmd.STREAM, 11, P.pack_stream(u[:3], starts[:3], W))
    first = dev.receive(stream)
    assert P.decode_frame(first[0][1:-1]).payload == bytes([3, 3])
    assert dev.receive(stream) == first                        # replay: identical bytes
    assert dev.steps_applied == 3 and dev.replays == 1         # ... and applied once
    # seq 11 again with a different command: BAD_SEQUENCE, expected 12
    r = request(dev, Cmd.READ, 11)
    assert (r.cmd, P.unpack_nack(r.payload)) == (Cmd.NACK, (Nack.BAD_SEQUENCE, 12))
    r = request(dev, Cmd.READ, 13)
    assert P.unpack_nack(r.payload) == (Nack.BAD_SEQUENCE, 12)
    # overflow: 3 held + 2 > max_batch 4; the NACK does not consume seq 12
    r = request(dev, Cmd.STREAM, 12, P.pack_stream(u[:2], [False, False], W))
    assert P.unpack_nack(r.payload) == (Nack.OVERFLOW, 3)
    read = request(dev, Cmd.READ, 12)
    assert read.cmd == Cmd.READ_DATA
    y = P.unpack_read_data(read.payload, m.channels, dev.info.output_width)
    assert np.array_equal(y, run_integer(m, u[None, :3])[0])
    assert request(dev, Cmd.READ, 12) == read                  # replayed READ: same data
    assert P.unpack_read_data(request(dev, Cmd.READ, 13).payload, m.channels, 8).shape == (0, m.channels)
    # malformed requests
    assert P.unpack_nack(request(dev, 0x42, 14).payload) == (Nack.UNKNOWN_COMMAND, 0)
    assert P.unpack_nack(request(dev, Cmd.READ, 14, b"\x00").payload) == (Nack.BAD_LENGTH, 0)
    assert P.unpack_nack(request(dev, Cmd.IDENTIFY, 14, b"\x00").payload) == (Nack.BAD_LENGTH, 0)
    assert P.unpack_nack(request(dev, Cmd.STREAM, 14, b"\x00").payload) == (Nack.BAD_LENGTH, 0)
    four = P.pack_stream(np.zeros((4, m.channels), int), [False] * 4, W)
    assert P.unpack_nack(request(dev, Cmd.STREAM, 14, b"\x05" + four[1:]).payload) == (Nack.BAD_LENGTH, 0)
    assert P.unpack_nack(request(dev, Cmd.STREAM, 14, four[:-1]).payload) == (Nack.BAD_LENGTH, 0)
    # a frame larger than the receive buffer (n > max_batch) is dropped silently
    too_many = P.pack_stream(np.zeros((5, m.channels), int), [False] * 5, W)
    assert request(dev, Cmd.STREAM, 14, too_many) is None and dev._decoder.overruns == 1
    # a corrupt CRC: NACK BAD_CRC echoing the seq byte
    raw = bytearray(P.frame_bytes(Cmd.READ, 14))
    raw[-1] ^= 1
    r = dev.receive(b"\x00" + P.cobs_encode(bytes(raw)) + b"\x00")
    f = P.decode_frame(r[0][1:-1])
    assert (f.cmd, f.seq, P.unpack_nack(f.payload)) == (Cmd.NACK, 14, (Nack.BAD_CRC, 0))
    # undecodable or short frames: silence
    assert dev.receive(b"\x00\x05\x01\x00") == [] and dev.receive(b"\x02\x01\x00") == []
    # RESET_STATE discards held outputs and state
    request(dev, Cmd.STREAM, 14, P.pack_stream(u[:1], [True], W))
    assert request(dev, Cmd.RESET_STATE, 15).cmd == Cmd.RESET_ACK
    assert request(dev, Cmd.READ, 16).payload == b"\x00"
    # reserved flag bits are ignored; state continues without START
    payload = bytearray(P.pack_stream(u[:2], [True, False], W))
    payload[1 + (1 + m.channels)] |= 0xFE
    request(dev, Cmd.STREAM, 17, bytes(payload))
    y2 = P.unpack_read_data(request(dev, Cmd.READ, 18).payload, m.channels, dev.info.output_width)
    assert np.array_equal(y2, run_integer(m, u[None, :2])[0])


def test_device_unsynced_accepts_any_seq_and_identify_resyncs(models):
    dev = ReferenceDevice(models["s4d_small"], max_batch=8)
    assert request(dev, Cmd.READ, 77).cmd == Cmd.READ_DATA     # after power-on: any seq
    assert request(dev, Cmd.READ, 3).cmd == Cmd.NACK           # now synced to 77
    assert request(dev, Cmd.IDENTIFY, 3).cmd == Cmd.IDENTIFY_RESP
    assert request(dev, Cmd.READ, 4).cmd == Cmd.READ_DATA
    assert request(dev, Cmd.IDENTIFY, 255).cmd == Cmd.IDENTIFY_RESP
    assert request(dev, Cmd.RESET_STATE, 0).cmd == Cmd.RESET_ACK   # wraps 255 -> 0


def test_device_resynchronizes_after_garbage(models):
    dev = ReferenceDevice(models["s4d_small"], max_batch=8)
    seed = 21
    rng = random.Random(seed)
    for seq in range(30):
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        responses = dev.receive(garbage + P.encode_frame(Cmd.IDENTIFY, seq))
        frames = [P.decode_frame(r[1:-1]) for r in responses]
        assert frames[-1].cmd == Cmd.IDENTIFY_RESP and frames[-1].seq == seq, f"seed {seed}"
    # a run longer than the receive buffer is dropped up to the next delimiter
    responses = dev.receive(b"\x07" * (dev.rx_max + 10) + P.encode_frame(Cmd.IDENTIFY, 1))
    assert [P.decode_frame(r[1:-1]).cmd for r in responses] == [Cmd.IDENTIFY_RESP]


# --- driver round trips -----------------------------------------------------------------------

@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_equals_golden(models, name):
    m = models[name]
    seed = CONFIGS.index(name)
    for max_batch, shape, read_chunk in [(255, (3, 40), None), (7, (4, 23), 5), (1, (2, 3), 3),
                                         (16, (1, 1), None)]:
        u = random_inputs(m, shape, seed)
        t = DeviceModelTransport(m, max_batch=max_batch, read_chunk=read_chunk)
        with Accelerator.open(t, expect_hash=m) as acc:
            y = acc.run_int(u)
            assert acc.info.max_batch == max_batch
        assert np.array_equal(y, run_integer(m, u)), f"{name} max_batch={max_batch} seed {seed}"
        assert t.device.steps_applied == u.shape[0] * u.shape[1]


def test_float_run_matches_run_quantized(models, tmp_path):
    m = models["s5_aggressive"]
    rng = np.random.default_rng(4)
    u = rng.normal(scale=2.0, size=(2, 30, m.channels))
    acc = Accelerator.open(DeviceModelTransport(m, max_batch=9), expect_hash=m)
    assert np.array_equal(acc.run(u), run_quantized(m, u)), "seed 4"
    # with only the manifest (what a deployed host has), the same numbers
    manifest = Design.from_quantized(m).generate(tmp_path).manifest
    for expect in (manifest, tmp_path / "manifest.json", str(tmp_path)):
        acc = Accelerator.open(DeviceModelTransport(m, max_batch=9), expect_hash=expect)
        assert np.array_equal(acc.run(u), run_quantized(m, u)), f"expect={type(expect).__name__}"
    acc = Accelerator.open(DeviceModelTransport(m), expect_hash=model_hash(m))
    with pytest.raises(ValueError, match="needs the model's input quantizer"):
        acc.run(u)
    assert np.array_equal(acc.run_int(quantize_input(m, u)), run_integer(m, quantize_input(m, u)))


def test_empty_input_sends_nothing(models):
    m = models["s4d_small"]
    t = DeviceModelTransport(m)
    acc = Accelerator.open(t, expect_hash=m)
    assert acc.run_int(np.zeros((0, 5, m.channels), int)).shape == (0, 5, m.channels)
    assert acc.run_int(np.zeros((2, 0, m.channels), int)).shape == (2, 0, m.channels)
    assert t.device.steps_applied == 0


# --- fault injection --------------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["to_device", "to_host"])
@pytest.mark.parametrize("kind", ["corrupt", "truncate", "drop", "garbage"])
def test_scheduled_faults_recover_exactly(models, direction, kind):
    m = models["s4d_small"]
    u = random_inputs(m, (3, 20), seed=7)
    # frames 0/1 are IDENTIFY/RESET at open; later ones hit STREAM and READ of several chunks
    faults = [Fault(direction, kind, i) for i in (0, 2, 3, 6, 9)]
    seed = 100
    t = DeviceModelTransport(m, max_batch=8, faults=faults, seed=seed, read_chunk=11)
    acc = Accelerator.open(t, expect_hash=m, retries=4)
    y = acc.run_int(u)
    assert np.array_equal(y, run_integer(m, u)), f"{direction}/{kind} seed {seed}: {t.fault_log}"
    assert t.device.steps_applied == 60, f"duplicated or lost timesteps; seed {seed}: {t.fault_log}"
    assert len(t.fault_log) == 5


@pytest.mark.parametrize("seed", range(6))
def test_random_faults_both_directions_recover_exactly(models, seed):
    name = CONFIGS[seed % 3]
    m = models[name]
    u = random_inputs(m, (2, 37), seed=seed)
    t = DeviceModelTransport(m, max_batch=10, fault_rate=0.3, seed=seed, read_chunk=1 + seed * 3)
    acc = Accelerator.open(t, expect_hash=m, retries=8)
    y = acc.run_int(u)
    msg = f"{name} seed {seed}: faults {t.fault_log}"
    assert np.array_equal(y, run_integer(m, u)), msg
    assert t.device.steps_applied == u.shape[0] * u.shape[1], msg
    assert t.fault_log, msg
    assert acc.stats["retransmissions"] > 0, msg


def test_persistent_faults_raise_clear_errors_then_recover(models):
    m = models["s5_small"]
    u = random_inputs(m, (1, 12), seed=1)
    t = DeviceModelTransport(m, max_batch=8)
    acc = Accelerator.open(t, expect_hash=m, retries=3)
    t.fault_rate, t.fault_kinds, t.fault_directions = 1.0, ("drop",), ("to_host",)
    with pytest.raises(FrameTimeout, match=r"STREAM seq \d+ failed after 4 attempt\(s\).*no response"):
        acc.run_int(u)
    t.fault_kinds = ("corrupt",)
    with pytest.raises(CRCError, match=r"failed after 4 attempt\(s\).*corrupt response"):
        acc.run_int(u)
    t.fault_directions = ("to_device",)
    with pytest.raises(ProtocolError, match="failed after 4 attempt"):
        acc.run_int(u)
    t.fault_rate = 0.0                      # the link heals: the driver re-synchronizes itself
    assert np.array_equal(acc.run_int(u), run_integer(m, u)), "seed 1"
    with pytest.raises(FrameTimeout, match="no response"):
        Accelerator.open(DeviceModelTransport(m, faults=[Fault("to_host", "drop", i) for i in range(9)]),
                         retries=2)


def test_line_noise_before_frames_is_skipped(models):
    m = models["s4d_small"]
    t = DeviceModelTransport(m, max_batch=16)
    t.inject_line_noise(b"U-Boot 2024.01\r\nbooting\x00\x13\x37")   # e.g. a boot message
    t.write(b"\x55\xaa\x99 noise before the first request")           # reaches the device too
    acc = Accelerator.open(t, expect_hash=m)
    u = random_inputs(m, (2, 9), seed=2)
    t.inject_line_noise(bytes(range(1, 40)))
    assert np.array_equal(acc.run_int(u), run_integer(m, u)), "seed 2"


def test_unexpected_nack_raises_and_driver_resyncs(models):
    m = models["s4d_small"]
    t = DeviceModelTransport(m, max_batch=8)
    acc = Accelerator.open(t, expect_hash=m)
    t.device.synced, t.device.last_seq = True, (acc._seq + 50) & 0xFF   # desynchronize the device
    u = random_inputs(m, (1, 5), seed=0)
    with pytest.raises(NackError, match="BAD_SEQUENCE; the device expected seq"):
        acc.run_int(u)
    assert np.array_equal(acc.run_int(u), run_integer(m, u))       # IDENTIFY re-synced it


# --- identify / open --------------------------------------------------------------------------

def test_identify_mismatch(models):
    dev_model, other = models["s4d_small"], models["s5_small"]
    for expect in (other, model_hash(other), {"model_hash": model_hash(other)}):
        with pytest.raises(IdentifyMismatch, match=f"expected model has hash {model_hash(other)}"):
            Accelerator.open(DeviceModelTransport(dev_model), expect_hash=expect)
    acc = Accelerator.open(DeviceModelTransport(dev_model))          # no expectation: no check
    info = acc.identify()
    assert info.model_hash == model_hash(dev_model) and info.channels == dev_model.channels
    with pytest.raises(ValueError, match="neither a 64-digit hex hash nor a readable manifest"):
        Accelerator.open(DeviceModelTransport(dev_model), expect_hash="/nonexistent/manifest.json")


def test_open_serial_port_that_does_not_exist():
    with pytest.raises(OSError, match="cannot open serial port"):
        Accelerator.open("/dev/does-not-exist-ssmgen")


def test_driver_over_a_pseudo_terminal(models):
    """The real-time path: SerialTransport on a pty whose other end is served by the device."""
    pytest.importorskip("serial")
    import os
    import select
    import threading
    m = models["s4d_small"]
    device = ReferenceDevice(m, max_batch=8)
    master, slave = os.openpty()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if select.select([master], [], [], 0.02)[0]:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    return
                for response in device.receive(data):
                    os.write(master, response)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Accelerator.open(os.ttyname(slave), expect_hash=m, timeout=2.0) as acc:
            u = random_inputs(m, (2, 13), seed=6)
            assert np.array_equal(acc.run_int(u), run_integer(m, u)), "seed 6"
    finally:
        stop.set()
        thread.join(1)
        os.close(master)
        os.close(slave)
    assert device.steps_applied == 26


def test_serial_transport_loopback():
    pytest.importorskip("serial")
    with SerialTransport("loop://") as t:
        assert t.read(0.01) == b""
        frame = P.encode_frame(Cmd.IDENTIFY, 3)
        t.write(frame)
        got = b""
        while len(got) < len(frame):
            chunk = t.read(0.2)
            assert chunk, "loopback returned nothing"
            got += chunk
        assert got == frame


# --- bad inputs -------------------------------------------------------------------------------

def test_bad_inputs_raise_value_error(models):
    m = models["s4d_small"]
    acc = Accelerator.open(DeviceModelTransport(m), expect_hash=m)
    H = m.channels
    with pytest.raises(ValueError, match=r"shape \(batch, time, H=4\), not \(5, 4\)"):
        acc.run(np.zeros((5, H)))
    with pytest.raises(ValueError, match=r"H=4\), not \(1, 5, 3\)"):
        acc.run_int(np.zeros((1, 5, 3), int))
    u = np.zeros((2, 5, H))
    u[1, 3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf.*index \(1, 3, 2\)"):
        acc.run(u)
    u[1, 3, 2] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        acc.run(u)
    with pytest.raises(ValueError, match="must be integers"):
        acc.run_int(np.zeros((1, 2, H)))
    with pytest.raises(ValueError, match=r"must lie in -128\.\.127"):
        acc.run_int(np.full((1, 2, H), 128))
    with pytest.raises(ValueError, match="real numbers"):
        acc.run(np.array([[["a"] * H]]))
    # the link is still usable after the rejected calls
    u = random_inputs(m, (1, 4), seed=0)
    assert np.array_equal(acc.run_int(u), run_integer(m, u))
