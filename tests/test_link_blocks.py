# amaranth: UnusedElaboratable=no
"""Gateware building blocks of the board link (UART, CRC-16, COBS) against Python references:
``binascii.crc_hqx``, the ``cobs`` package and the host's ``FrameDecoder``, in Amaranth's
simulator. Random tests name their seed in assertion messages."""

from __future__ import annotations

import binascii
import random

import pytest
from amaranth.sim import Simulator
from cobs import cobs

from ssmgen.hw.link.cobs import COBSDecoder, COBSEncoder
from ssmgen.hw.link.crc16 import CRC16
from ssmgen.hw.link.uart import UARTRx, UARTTx
from ssmgen.spec.protocol import FrameDecoder


def simulate(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


# --- CRC --------------------------------------------------------------------------------------

def test_crc16_matches_crc_hqx():
    seed = 3
    rng = random.Random(seed)
    messages = [b"123456789", b"", bytes(range(256))] + [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(10)]
    dut = CRC16()

    async def tb(ctx):
        for message in messages:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            ctx.set(dut.valid, 1)
            for byte in message:
                ctx.set(dut.data, byte)
                await ctx.tick()
            ctx.set(dut.valid, 0)
            got = ctx.get(dut.crc)
            assert got == binascii.crc_hqx(message, 0xFFFF), f"seed {seed}: {message.hex()}"
        assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1
    simulate(dut, tb)


# --- UART -------------------------------------------------------------------------------------

def line_bits(byte: int, divisor: int) -> list[int]:
    """8N1 waveform of one byte, one entry per clock cycle."""
    bits = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
    return [b for b in bits for _ in range(divisor)]


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_uart_rx_decodes_8n1_and_drops_framing_errors(divisor):
    seed = divisor
    rng = random.Random(seed)
    data = [rng.randrange(256) for _ in range(12)] + [0x00, 0xFF, 0x55]
    dut = UARTRx(divisor)
    received, errors = [], []

    async def driver(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        for index, byte in enumerate(data):
            wave = line_bits(byte, divisor)
            if index == 3:                      # break the stop bit of the 4th byte
                wave[-divisor:] = [0] * divisor
            for level in wave + [1] * rng.randrange(0, 2 * divisor):
                ctx.set(dut.rx, level)
                await ctx.tick()
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)

    async def monitor(ctx):
        ctx.set(dut.data.ready, 1)
        async for _clk, _rst, valid, payload, framing in ctx.tick().sample(
                dut.data.valid, dut.data.payload, dut.framing_error):
            if valid:
                received.append(payload)
            if framing:
                errors.append(len(received))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_testbench(monitor, background=True)
    sim.run()
    expected = data[:3] + data[4:]
    assert received == expected, f"seed {seed}"
    assert errors == [3], f"seed {seed}"


@pytest.mark.parametrize("divisor", [4, 9])
def test_uart_tx_waveform(divisor):
    data = [0x00, 0xA5, 0xFF, 0x3C, 0x01]
    dut = UARTTx(divisor)
    levels = []

    async def tb(ctx):
        for byte in data:
            ctx.set(dut.data.payload, byte)
            ctx.set(dut.data.valid, 1)
            await ctx.tick().until(dut.data.ready)
            await ctx.tick()
            ctx.set(dut.data.valid, 0)
        await ctx.tick().until(~dut.busy)

    async def sampler(ctx):
        async for _clk, _rst, tx in ctx.tick().sample(dut.tx):
            levels.append(tx)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.add_testbench(sampler, background=True)
    sim.run()
    # decode the waveform as a receiver sampling mid-bit would
    decoded, i = [], 0
    while i < len(levels):
        if levels[i] == 0:
            mid = i + divisor // 2
            bits = [levels[mid + k * divisor] for k in range(10)]
            assert bits[0] == 0 and bits[9] == 1
            decoded.append(sum(b << k for k, b in enumerate(bits[1:9])))
            i = mid + 9 * divisor
        i += 1
    assert decoded == data


# --- COBS -------------------------------------------------------------------------------------

def cobs_test_frames(rng):
    frames = [b"\x00", b"\x00\x00", b"\x01", bytes(253 * [1]), bytes(254 * [1]),
              bytes(255 * [1]), bytes(254 * [1]) + b"\x00", bytes(254 * [2]) + b"\x00\x07",
              bytes(508 * [3]), b"\x00" + bytes(300 * [9]) + b"\x00", bytes(range(256))]
    for _ in range(12):
        n = rng.choice([1, 2, 5, 20, 260])
        frames.append(bytes(rng.choice([0, rng.randrange(1, 256)]) for _ in range(n)))
    return frames


def test_cobs_encoder_matches_cobs_package():
    seed = 5
    rng = random.Random(seed)
    frames = cobs_test_frames(rng)
    dut = COBSEncoder()
    out = bytearray()

    async def feeder(ctx):
        for frame in frames:
            for i, byte in enumerate(frame):
                ctx.set(dut.i.payload, {"data": byte, "last": i == len(frame) - 1})
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)
                if rng.random() < 0.2:
                    await ctx.tick().repeat(rng.randrange(1, 4))
        await ctx.tick().until(~dut.busy)
        await ctx.tick().repeat(3)

    async def sink(ctx):
        while True:
            ctx.set(dut.o.ready, rng.random() < 0.7)
            _clk, _rst, valid, ready, payload = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                out.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.add_testbench(sink, background=True)
    sim.run()
    expected = b"".join(b"\x00" + cobs.encode(f) + b"\x00" for f in frames)
    assert bytes(out) == expected, f"seed {seed}"


def test_cobs_decoder_matches_frame_decoder():
    seed = 8
    rng = random.Random(seed)
    max_encoded = 40
    pieces = []
    for frame in cobs_test_frames(rng):
        frame = frame[:rng.randrange(1, 60)]
        pieces.append(b"\x00" + cobs.encode(frame) + b"\x00")
    pieces += [b"\x00\x00\x00", b"\x05\x01\x02\x00",          # code announces more than follows
               bytes(rng.randrange(1, 256) for _ in range(45)) + b"\x00",   # overrun
               b"\x03\x01\x02\x02\x07\x00", b"\xff" + bytes(range(1, 40)) + b"\x00"]
    rng.shuffle(pieces)
    line = b"".join(pieces)

    reference, host = [], FrameDecoder(max_encoded)
    for encoded in host.feed(line):
        try:
            reference.append(cobs.decode(encoded))
        except cobs.DecodeError:
            reference.append(None)

    dut = COBSDecoder(max_encoded)
    frames, current = [], bytearray()

    async def feeder(ctx):
        for byte in line:
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(3)

    async def sink(ctx):
        while True:
            ctx.set(dut.o.ready, rng.random() < 0.6)
            _clk, _rst, valid, ready, beat = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                if beat.end:
                    frames.append(None if beat.error else bytes(current))
                    current.clear()
                else:
                    current.append(beat.data)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.add_testbench(sink, background=True)
    sim.run()
    overruns = frames.count(None) - reference.count(None)
    assert [f for f in frames if f is not None] == [f for f in reference if f is not None], \
        f"seed {seed}"
    # the host decoder drops overruns silently; the RTL ends them with an error beat
    assert host.overruns >= 1 and overruns == host.overruns, f"seed {seed}"


# --- constructor validation -------------------------------------------------------------------

# A constructor that raises leaves an Elaboratable that was never elaborated: the first line of
# this file turns Amaranth's UnusedElaboratable warning off for it.
def test_constructors_reject_bad_parameters():
    from regression_configs import make_config

    from ssmgen.golden.quantize import load_model
    from ssmgen.hw.link.board_top import BoardCore
    from ssmgen.hw.link.controller import LinkController
    from ssmgen.spec.config import parse_config

    with pytest.raises(ValueError, match="Divisor .* must be at least 4, not 3"):
        UARTRx(3)
    with pytest.raises(TypeError):
        UARTTx(8.5)
    with pytest.raises(ValueError, match="Max_encoded must be at least 1, not 0"):
        COBSDecoder(0)
    model = load_model(parse_config(make_config("t", "s4d", channels=1, size=2, lanes=1)))
    with pytest.raises(ValueError, match="Max_batch must be in 1..255, not 0"):
        LinkController(model, max_batch=0)
    with pytest.raises(TypeError, match="Model must be a QuantizedSSM"):
        LinkController("s4d_tiny.toml")
    with pytest.raises(ValueError, match="Fifo_depth must be at least 2, not 1"):
        BoardCore(model, divisor=8, fifo_depth=1)
