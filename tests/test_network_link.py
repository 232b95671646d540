# amaranth: UnusedElaboratable=no
"""A whole network on a board: the CLASSIFY frames of docs/protocol.md, the reference device on
the golden network, the driver's ``classify``, and the network board top in Amaranth's simulator
over real 8N1 UART timing (``sim/board/transport.py``):

* protocol: the network IDENTIFY_RESP layout, CLASSIFY payloads, known-answer frames;
* ``ReferenceDevice`` on a QuantizedNetwork (the executable specification) against the golden
  network, its NACKs, and the driver over it with faults;
* the RTL answers every request, valid and malformed, byte for byte like ``ReferenceDevice``;
* end to end: ``Accelerator.classify`` over the simulated board equals the golden network, with
  faults on the line.

The networks are tiny (one or two layers, H <= 3, a few states, 4..6 timesteps) and written out
here, with random weights from a seed, so that a simulated request takes a second or two. Random
tests name their seed in assertion messages. (The first line silences Amaranth's warning about
the components that the constructor tests build and never elaborate.)
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest
import tomli_w
from amaranth.hdl import Fragment
from test_link_rtl import FAULT_CASES, LINK_CONFIGS, raw_frame, replay
from test_sw_driver import request

from ssmgen.cli import main
from ssmgen.design import Design
from ssmgen.golden.discretize import random_network_weights
from ssmgen.golden.network import predict, run_integer_network
from ssmgen.golden.quantize import load_model, quantize_network
from ssmgen.hw.link.board_top import BoardCore
from ssmgen.hw.link.network_controller import NetworkLinkController
from ssmgen.sim.board.transport import BoardSimTransport
from ssmgen.spec import protocol as P
from ssmgen.spec.config import parse_config
from ssmgen.spec.hashing import model_hash
from ssmgen.spec.protocol import Cmd, Nack
from ssmgen.spec.weights import save_network_npz
from ssmgen.sw_driver import (Accelerator, DeviceModelTransport, Fault, IdentifyMismatch,
                              ReferenceDevice)

DIVISOR = 4          # clock cycles per UART bit: the fastest the receiver supports


def tiny_network(name, *, kind="s4d", channels=2, size=2, layers=1, inputs=1, classes=3, steps=5,
                 lanes=1, input_format="fixed<8,3>", logits=None, hardware=None) -> dict:
    """A small whole-network config (TOML structure); its weights file is ``<name>.npz``."""
    def fmt(text):
        return {"format": text}
    hardware = hardware or {}
    network = {"inputs": inputs, "layers": layers, "steps": steps, "classes": classes,
               "activation": "relu",
               "quant": {"input": fmt(input_format), "encoder": fmt("fixed<6,2>"),
                         "encoder_bias": fmt("fixed<6,2>"), "mix": fmt("fixed<6,1>"),
                         "mix_bias": fmt("fixed<6,1>"), "pool": fmt("fixed<8,3>"),
                         "decoder": fmt("fixed<6,2>"), "decoder_bias": fmt("fixed<6,2>")}}
    if logits is not None:
        network["quant"]["logits"] = {"format": logits, "rounding": "half_up"}
    return {"name": name,
            "model": {"kind": kind, "channels": channels,
                      ("state_size" if kind == "s4d" else "states"): size},
            "weights": {"source": "file", "file": f"{name}.npz"},
            "quant": {"defaults": {"rounding": "half_even", "overflow": "saturate"},
                      "abar": fmt("fixed<10,1>"), "bbar": fmt("fixed<8,0>"),
                      "c": fmt("fixed<8,1>"), "d": fmt("fixed<6,2>"), "input": fmt("fixed<8,3>"),
                      "state": fmt("fixed<12,4>"), "output": fmt("fixed<8,3>")},
            "hardware": {"lanes": lanes, **hardware}, "network": network}


NETWORKS = {
    # one layer, one input byte per timestep, full-precision logits (3 bytes each), 5 steps
    "net_one": tiny_network("net_one"),
    # two S5 layers, two 2-byte inputs per timestep, 1-byte logits, 4 steps (a power of two)
    "net_two": tiny_network("net_two", kind="s5", channels=3, size=2, layers=2, inputs=2,
                            classes=4, steps=4, lanes=2, input_format="fixed<10,3>",
                            logits="fixed<8,3>"),
    # two S4D layers folded onto one datapath (8 modes per channel, G = 16 per layer beat)
    "net_fold": tiny_network("net_fold", size=16, layers=2, steps=3,
                             hardware={"storage": "memory", "fold_layers": True}),
}


def build(name, seed=1):
    config = parse_config(NETWORKS[name])
    return quantize_network(config, random_network_weights(config, np.random.default_rng(seed)))


@pytest.fixture(scope="module")
def nets():
    return {name: build(name) for name in NETWORKS}


def random_sequences(net, batch, seed):
    fmt = net.network.input.format
    return np.random.default_rng(seed).integers(
        fmt.min_int, fmt.max_int + 1, (batch, net.network.steps, net.network.inputs))


def golden(net, u_int):
    logits = run_integer_network(net, u_int)
    return predict(logits), logits


# --- protocol ---------------------------------------------------------------------------------

def test_network_identify_layout(nets):
    net = nets["net_two"]
    info = ReferenceDevice(net, max_batch=300).info
    payload = info.pack()
    assert len(payload) == P.NETWORK_IDENTIFY_STRUCT.size == 59
    assert payload[:4] == b"SSMG" and payload[4] == 1 and payload[37] == P.NETWORK_KIND == 2
    assert payload[5:37] == bytes.fromhex(model_hash(net))
    cfg = net.network
    assert int.from_bytes(payload[38:40], "little") == cfg.inputs == 2
    assert payload[40] == cfg.input.format.width and payload[41] == cfg.input.format.frac % 256
    assert int.from_bytes(payload[42:46], "little") == cfg.steps
    assert int.from_bytes(payload[46:48], "little") == cfg.classes
    assert payload[48] == net.logits_width == 8 and payload[49] == net.logits_frac % 256
    assert int.from_bytes(payload[50:52], "little") == net.config.model.channels
    assert payload[52] == cfg.layers
    assert int.from_bytes(payload[53:55], "little") == net.layers[0].states
    assert int.from_bytes(payload[55:57], "little") == net.config.hardware.lanes
    assert int.from_bytes(payload[57:59], "little") == 300
    assert P.unpack_identify(payload) == info and info.kind == "network"
    layer_info = ReferenceDevice(load_model(parse_config(LINK_CONFIGS["s4d_tiny"]))).info
    assert P.unpack_identify(layer_info.pack()) == layer_info and layer_info.kind == "layer"
    with pytest.raises(P.ProtocolError, match=r"must be 48 bytes \(a layer\) or 59 \(a network\), "
                                              r"got 50"):
        P.unpack_identify(payload[:50])
    with pytest.raises(P.ProtocolError, match="has kind 7, expected 2"):
        P.unpack_identify(payload[:37] + b"\x07" + payload[38:])


def test_classify_payloads_known_answers():
    """docs/protocol.md's known-answer vectors for CLASSIFY and CLASSIFY_RESP."""
    payload = P.pack_classify(3, np.array([[1], [-1]]), 8)
    assert payload.hex(" ") == "03 00 00 00 02 00 01 ff"
    assert P.encode_frame(Cmd.CLASSIFY, 7, payload).hex(" ") == (
        "00 04 05 07 08 02 03 01 01 02 02 05 01 ff 72 e1 00")
    offset, u = P.unpack_classify(payload, 1, 8)
    assert offset == 3 and u.tolist() == [[1], [-1]]
    response = P.pack_classify_response(1, [2], [[-2, 5, 0]], 12)
    assert response.hex(" ") == "01 00 00 00 01 00 02 00 fe ff 05 00 00 00"
    position, classes, logits = P.unpack_classify_response(response, 3, 12)
    assert (position, classes.tolist(), logits.tolist()) == (1, [2], [[-2, 5, 0]])
    assert P.pack_classify_response(4, [], np.zeros((0, 3)), 12).hex(" ") == "04 00 00 00 00 00"
    with pytest.raises(P.ProtocolError, match="CLASSIFY of 2 timesteps needs 8 payload bytes"):
        P.unpack_classify(payload[:-1], 1, 8)
    with pytest.raises(P.ProtocolError, match="CLASSIFY_RESP of 1 results needs 14 payload bytes"):
        P.unpack_classify_response(response + b"\x00", 3, 12)
    assert P.classify_results(5, 7) == 2 and P.classify_results(5, 1) == 1
    assert P.classify_results(1, 9) == 9
    assert P.default_network_batch(64, 1, 8) == 64                     # sDigits: one sequence
    assert P.default_network_batch(784, 1, 8) == 784                   # 784 bytes fit 1 KiB
    assert P.default_network_batch(784, 4, 10) == 128                  # 8 bytes per timestep


# --- the reference device -----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(NETWORKS))
def test_reference_device_classifies_like_golden(nets, name):
    """Frames of one timestep, less than a sequence, one sequence, several (ending inside one),
    the default; byte-wise reassembly; real units through the network's input quantizer."""
    net = nets[name]
    steps = net.network.steps
    seed = list(NETWORKS).index(name)
    u = random_sequences(net, 5, seed)
    want_classes, want_logits = golden(net, u)
    for max_batch, read_chunk in [(1, None), (steps - 1, 3), (steps, None), (2 * steps + 1, 1),
                                  (None, None)]:
        t = DeviceModelTransport(net, max_batch=max_batch, read_chunk=read_chunk)
        with Accelerator.open(t, expect_hash=net) as acc:
            classes, logits = acc.classify_int(u)
        msg = f"{name} max_batch={max_batch} seed {seed}"
        assert np.array_equal(logits, want_logits) and np.array_equal(classes, want_classes), msg
        assert t.device.steps_applied == u.size // net.network.inputs, msg
    assert acc.info.max_batch == P.default_network_batch(steps, net.network.inputs,
                                                         net.network.input.format.width)
    # one sequence: an int and its logits; real units quantized like Design.quantize_input
    design = Design.from_quantized(net)
    x = np.random.default_rng(seed).normal(0, 1.5, (3, steps, net.network.inputs))
    want = design.reference(design.quantize_input(x))
    with Accelerator.open(DeviceModelTransport(net), expect_hash=design) as acc:
        classes, logits = acc.classify(x)
        assert np.array_equal(classes, predict(want)), f"{name} seed {seed}"
        assert np.array_equal(logits, design.dequantize_output(want)), f"{name} seed {seed}"
        one_class, one_logits = acc.classify(x[1])
        assert one_class == predict(want)[1] and np.array_equal(one_logits, logits[1])
        assert acc.classify_int(np.zeros((0, steps, net.network.inputs), int))[0].shape == (0,)


def test_reference_device_offsets_replays_and_nacks(nets):
    net = nets["net_one"]                   # 5 steps, 1 input of 8 bits
    dev = ReferenceDevice(net, max_batch=7)
    u = random_sequences(net, 3, seed=5).reshape(-1, 1)
    want = run_integer_network(net, u.reshape(3, 5, 1))

    def classify(seq, offset, rows):
        return request(dev, Cmd.CLASSIFY, seq, P.pack_classify(offset, rows, 8))

    def results(frame):
        assert frame.cmd == Cmd.CLASSIFY_RESP, frame
        return P.unpack_classify_response(frame.payload, 3, net.logits_width)

    assert request(dev, Cmd.IDENTIFY, 10).cmd == Cmd.IDENTIFY_RESP
    position, classes, logits = results(classify(11, 0, u[:3]))          # inside sequence 0
    assert (position, classes.size) == (3, 0)
    again = dev.receive(P.encode_frame(Cmd.CLASSIFY, 11, P.pack_classify(0, u[:3], 8)))
    assert P.decode_frame(again[0][1:-1]) == classify(11, 0, u[:3]) and dev.replays == 2
    assert dev.steps_applied == 3                                         # replayed, not re-applied
    # 7 timesteps from position 3: completes sequences 0 and 1
    position, classes, logits = results(classify(12, 3, u[3:10]))
    assert position == 0 and np.array_equal(logits, want[:2])
    assert np.array_equal(classes, predict(want[:2]))
    # an offset that is neither 0 nor the position: BAD_OFFSET with the position's low byte
    classify(13, 0, u[10:12])
    r = classify(14, 4, u[12:13])
    assert (r.cmd, P.unpack_nack(r.payload)) == (Cmd.NACK, (Nack.BAD_OFFSET, 2))
    # offset 0 abandons the unfinished sequence
    position, classes, logits = results(classify(14, 0, u[10:15]))
    assert position == 0 and np.array_equal(logits, want[2:])
    # RESET_STATE drops an unfinished sequence too
    classify(15, 0, u[:2])
    assert request(dev, Cmd.RESET_STATE, 16).cmd == Cmd.RESET_ACK
    r = classify(17, 2, u[2:5])
    assert P.unpack_nack(r.payload) == (Nack.BAD_OFFSET, 0)
    # malformed requests
    for payload in (b"", b"\x00\x00\x00", P.pack_classify(0, u[:2], 8)[:-1],
                    struct.pack("<IH", 0, 0), struct.pack("<IH", 0, 8) + bytes(7)):
        r = request(dev, Cmd.CLASSIFY, 17, payload)
        assert P.unpack_nack(r.payload) == (Nack.BAD_LENGTH, 0), payload.hex(" ")
    for code in (Cmd.STREAM, Cmd.READ, 0x06, 0x85):                      # not a network's
        assert P.unpack_nack(request(dev, code, 17).payload) == (Nack.UNKNOWN_COMMAND, 0)
    assert dev.nacks == {"BAD_OFFSET": 2, "BAD_LENGTH": 5, "UNKNOWN_COMMAND": 4}


def test_layer_and_network_devices_refuse_each_others_commands(nets):
    net = nets["net_one"]
    layer = load_model(parse_config(LINK_CONFIGS["s4d_tiny"]))
    dev = ReferenceDevice(layer, max_batch=4)
    r = request(dev, Cmd.CLASSIFY, 1, P.pack_classify(0, np.zeros((2, 1), int), 8))
    assert P.unpack_nack(r.payload) == (Nack.UNKNOWN_COMMAND, 0)
    with Accelerator.open(DeviceModelTransport(layer)) as acc:
        with pytest.raises(ValueError, match=r"classify\(\) needs a network device, but this one "
                                             r"runs a layer .*use run\(\) / run_int\(\)"):
            acc.classify(np.zeros((1, 5, 1)))
    with Accelerator.open(DeviceModelTransport(net)) as acc:
        with pytest.raises(ValueError, match=r"run_int\(\) needs a layer device.*use classify"):
            acc.run_int(np.zeros((1, 5, 1), int))
        with pytest.raises(ValueError, match=r"must have shape \(batch, steps=5, H_in=1\) or "
                                             r"\(steps=5, H_in=1\) for one sequence, not "
                                             r"\(1, 4, 1\)"):
            acc.classify_int(np.zeros((1, 4, 1), int))
        with pytest.raises(ValueError, match="u_int must be integers"):
            acc.classify_int(np.zeros((5, 1)))
        with pytest.raises(ValueError, match=r"values must lie in -128..127"):
            acc.classify_int(np.full((5, 1), 128))
        with pytest.raises(ValueError, match="needs the network's input quantizer"):
            acc.classify(np.zeros((5, 1)))
        with pytest.raises(ValueError, match="non-finite"):
            acc.classify(np.full((5, 1), np.nan))
    with pytest.raises(IdentifyMismatch, match="expected model"):
        Accelerator.open(DeviceModelTransport(net), expect_hash=layer)
    with pytest.raises(ValueError, match=r"max_batch must be in 1..65535, not 0"):
        ReferenceDevice(net, max_batch=0)


def test_driver_recovers_from_faults_on_the_reference_link(nets):
    net = nets["net_two"]
    seed = 9
    u = random_sequences(net, 6, seed)
    t = DeviceModelTransport(net, max_batch=3, fault_rate=0.3, seed=seed)
    with Accelerator.open(t, expect_hash=net, retries=10) as acc:
        classes, logits = acc.classify_int(u)
    msg = f"seed {seed}: {t.fault_log}"
    want_classes, want_logits = golden(net, u)
    assert np.array_equal(logits, want_logits) and np.array_equal(classes, want_classes), msg
    assert t.device.steps_applied == u.shape[0] * u.shape[1], msg
    assert len(t.fault_log) > 3 and acc.stats["retransmissions"] > 0, msg


# --- the board top in simulation -----------------------------------------------------------------

def network_script(net, max_batch, seed, *, random_requests=8):
    """Requests covering CLASSIFY's paths and the shared malformed ones, then a random mix."""
    rng = random.Random(seed)
    steps, width = net.network.steps, net.network.input.format.width
    fmt = net.network.input.format
    data = np.random.default_rng(seed)

    def classify(seq, offset, n, **kwargs):
        rows = data.integers(fmt.min_int, fmt.max_int + 1, (n, net.network.inputs))
        return raw_frame(Cmd.CLASSIFY, seq, P.pack_classify(offset, rows, width), **kwargs)

    first = classify(2, 0, min(steps + 2, max_batch))      # completes a sequence, starts one
    script = [
        classify(9, 0, 1),                                  # before any IDENTIFY: accepted
        raw_frame(Cmd.IDENTIFY, 0),
        raw_frame(Cmd.IDENTIFY, 0, b"\x01"),
        raw_frame(Cmd.RESET_STATE, 1),                      # drops the unfinished sequence
        first, first,                                       # replay from the result RAM
        raw_frame(Cmd.RESET_STATE, 2),                      # same seq, other command
        classify(3, 1, 1),                                  # BAD_OFFSET (position is 2)
        classify(3, 2, max_batch),                          # continues: ends inside a sequence
        classify(4, 0, steps),                              # restarts: one whole sequence
        classify(5, 0, 1, crc_xor=0x0100),                  # bad CRC
        classify(5, 0, 1, length=3),                        # length field mismatch
        raw_frame(Cmd.CLASSIFY, 5, b"\x00\x00"),            # shorter than offset + n
        raw_frame(Cmd.CLASSIFY, 5, struct.pack("<IH", 0, 0)),               # n = 0
        raw_frame(Cmd.CLASSIFY, 5, P.pack_classify(0, np.zeros((2, net.network.inputs), int),
                                                   width)[:-1]),            # short payload
        raw_frame(Cmd.STREAM, 5), raw_frame(Cmd.READ, 5), raw_frame(0x06, 5),
        raw_frame(0x00, 5), raw_frame(0x85, 5),             # unknown commands
        raw_frame(Cmd.RESET_STATE, 5, b"\x00"),
        classify(7, 0, 1),                                  # seq skipped
        b"\x00\x00\x00",                                    # empty frames: ignored
        b"\x00\x03\x01\x02\x00",                            # decodes to 2 bytes: dropped
        b"\x00\x07\x01\x02\x00",                            # invalid COBS: dropped
        b"\x55\xaa" + raw_frame(Cmd.RESET_STATE, 5),        # garbage before a frame
    ]
    # n > max_batch, its payload complete (the RTL's frame RAM holds only max_batch timesteps)
    script.append(classify(6, 0, max_batch + 1))
    # an encoded frame one byte over RX_MAX: dropped silently
    rx_max = ReferenceDevice(net, max_batch=max_batch).rx_max
    script.append(b"\x00" + bytes([0x11]) * (rx_max + 1) + b"\x00")
    seq, position = 6, 0
    for _ in range(random_requests):                        # random mix, mostly valid
        kind = rng.choice(["classify", "classify", "classify", "reset", "identify", "corrupt",
                           "stale"])
        if kind == "classify":
            n = rng.randrange(1, max_batch + 1)
            offset = rng.choice([0, position, position, rng.randrange(steps)])
            script.append(classify(seq, offset, n))
            position = ((0 if offset == 0 else position) + n) % steps
        elif kind == "reset":
            script.append(raw_frame(Cmd.RESET_STATE, seq))
            position = 0
        elif kind == "identify":
            script.append(raw_frame(Cmd.IDENTIFY, seq))
        elif kind == "corrupt":
            frame = bytearray(classify(seq, 0, 1))
            frame[rng.randrange(1, len(frame) - 1)] ^= rng.randrange(1, 256)
            script.append(bytes(frame))
        else:
            script.append(raw_frame(Cmd.RESET_STATE, (seq - 1) & 0xFF))
        if rng.random() < 0.85:
            seq = (seq + 1) & 0xFF
    return script


@pytest.mark.parametrize("name,max_batch,random_requests",
                         [("net_one", 7, 10), ("net_two", 3, 4)])
def test_rtl_answers_like_reference_device(nets, name, max_batch, random_requests):
    net = nets[name]
    seed = 31 + max_batch
    reference = ReferenceDevice(net, max_batch=max_batch)
    board = BoardSimTransport(net, divisor=DIVISOR, max_batch=max_batch)
    assert board.core.link.rx_max == reference.rx_max
    try:
        script = network_script(net, max_batch, seed, random_requests=random_requests)
        replay(board, reference, script, f"{name} seed {seed}")
        assert board.steps_applied == reference.steps_applied, f"seed {seed}"
        assert reference.nacks["BAD_OFFSET"] >= 1 and board.framing_errors == 0
    finally:
        board.close()


@pytest.mark.parametrize("name,max_batch,batch", [("net_one", 7, 3), ("net_two", None, 2),
                                                  ("net_fold", 4, 2)])
def test_classify_over_the_simulated_board_equals_golden(nets, name, max_batch, batch):
    """Frames that span sequences (max_batch 7 over 5 steps) and one sequence per frame (the
    default); the integer and the real-unit paths."""
    net = nets[name]
    seed = 40 + batch
    u = random_sequences(net, batch, seed)
    board = BoardSimTransport(net, divisor=DIVISOR, max_batch=max_batch)
    design = Design.from_quantized(net)
    with Accelerator.open(board, expect_hash=design) as acc:
        assert acc.info == ReferenceDevice(net, max_batch=max_batch).info
        classes, logits = acc.classify_int(u)
        want_classes, want_logits = golden(net, u)
        assert np.array_equal(logits, want_logits), f"{name} seed {seed}"
        assert np.array_equal(classes, want_classes), f"{name} seed {seed}"
        x = u[0] * 2.0 ** -net.network.input.format.frac       # real units, exactly representable
        one_class, one_logits = acc.classify(x)
        assert one_class == want_classes[0]
        assert np.array_equal(one_logits, design.dequantize_output(want_logits[0]))
    assert board.steps_applied == (batch + 1) * net.network.steps, f"{name} seed {seed}"
    assert acc.stats["retransmissions"] == 0 and board.framing_errors == 0
    board.close()


#: each kind once, each direction twice (the layer's tests take all eight; the framing is shared)
NETWORK_FAULT_CASES = [("to_device", "corrupt"), ("to_host", "truncate"), ("to_host", "drop"),
                       ("to_device", "garbage")]


@pytest.mark.parametrize("direction,kind", NETWORK_FAULT_CASES)
def test_board_link_faults_recover_without_losing_timesteps(nets, direction, kind):
    net = nets["net_one"]
    seed = 200 + FAULT_CASES.index((direction, kind))
    # frames 0, 1: IDENTIFY, RESET_STATE; then one CLASSIFY per 4 timesteps: hit two of them
    faults = [Fault(direction, kind, i) for i in (2, 4)]
    board = BoardSimTransport(net, divisor=DIVISOR, max_batch=4, faults=faults, seed=seed)
    u = random_sequences(net, 2, seed)
    with Accelerator.open(board, expect_hash=net, timeout=5.0) as acc:
        classes, logits = acc.classify_int(u)
    log = board.fault_log
    msg = f"{direction}/{kind} seed {seed}: {log}"
    want_classes, want_logits = golden(net, u)
    assert np.array_equal(logits, want_logits) and np.array_equal(classes, want_classes), msg
    assert board.steps_applied == u.shape[0] * u.shape[1], f"lost or duplicated timesteps; {msg}"
    assert len(log) == 2, f"seed {seed}: {log}"
    if kind != "garbage":
        assert acc.stats["retransmissions"] >= 1, f"seed {seed}: {log}"
    board.close()


@pytest.mark.parametrize("name", ["net_two", "net_fold"])
def test_board_link_random_faults_both_directions(nets, name):
    net = nets[name]
    seed = 6
    board = BoardSimTransport(net, divisor=DIVISOR, max_batch=3, fault_rate=0.25, seed=seed)
    u = random_sequences(net, 2, seed)
    with Accelerator.open(board, expect_hash=net, retries=8) as acc:
        classes, logits = acc.classify_int(u)
    msg = f"seed {seed}: {board.fault_log}"
    want_classes, want_logits = golden(net, u)
    assert np.array_equal(logits, want_logits) and np.array_equal(classes, want_classes), msg
    assert board.steps_applied == u.shape[0] * u.shape[1], msg
    assert board.fault_log, msg
    board.close()


def test_network_board_constructors(nets):
    net = nets["net_one"]
    layer = load_model(parse_config(LINK_CONFIGS["s4d_tiny"]))
    with pytest.raises(TypeError, match="Network must be a QuantizedNetwork, not QuantizedSSM"):
        NetworkLinkController(layer)
    with pytest.raises(ValueError, match="Max_batch must be in 1..65535, not 0"):
        NetworkLinkController(net, max_batch=0)
    with pytest.raises(ValueError, match="over the u16 length limit"):
        NetworkLinkController(net, max_batch=65535)
    # the default max_batch: a whole sequence for a network, DEFAULT_MAX_BATCH for a layer
    network_core, layer_core = BoardCore(net, divisor=8), BoardCore(layer, divisor=8)
    assert network_core.link.max_batch == net.network.steps == 5
    assert network_core.link.max_results == 1 and layer_core.link.max_batch == 32
    for core in (network_core, layer_core):
        Fragment.get(core, None)            # elaborated, as a board top would be


# --- the bitstream -------------------------------------------------------------------------------

def write_network_config(tmp_path, data, seed=1):
    config = parse_config(data)
    save_network_npz(tmp_path / data["weights"]["file"],
                     random_network_weights(config, np.random.default_rng(seed)))
    path = tmp_path / f"{data['name']}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def check_network_build(tmp_path, config, code, out, board_name):
    assert code == 0, out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert report["kind"] == manifest["kind"] == "network" and report["board"] == board_name
    assert manifest["model_hash"] == report["model_hash"] == Design.load(config).hash
    assert (tmp_path / "out" / report["bitstream"]).stat().st_size > 10_000
    assert 0 < report["resources"]["dsps"] <= report["capacity"]["dsps"]
    if report["fmax_valid"]:
        assert report["timing_met"] and f"Fmax {report['fmax_mhz']} MHz" in out
    check_sequence_rates(report, Design.load(config))
    assert f"sequences/s: {report['sequences_per_s']['compute']:g} compute bound" in out
    return report


def check_sequence_rates(report, design):
    """The report's sequences per second from first principles: the accelerator's cycles, and
    the wire bytes of real CLASSIFY frames of max_batch timesteps and their responses (the
    report counts COBS's worst case, at most one byte more per frame)."""
    net, steps, batch = design.quantized, design.quantized.network.steps, report["max_batch"]
    rates, clock = report["sequences_per_s"], report["clock_mhz"] * 1e6
    assert rates["compute"] == pytest.approx(clock / (steps * report["cycles_per_timestep"]),
                                             abs=0.05)
    cfg = net.network
    u = np.full((batch, cfg.inputs), -1, dtype=np.int64)          # no zero bytes for COBS
    request = P.encode_frame(Cmd.CLASSIFY, 1, P.pack_classify(0, u, cfg.input.format.width))
    results = max(1, batch // steps)
    response = P.encode_frame(Cmd.CLASSIFY_RESP, 1, P.pack_classify_response(
        0, [1] * results, np.full((results, cfg.classes), -1), design.quantized.logits_width))
    seconds = 10 * (len(request) + len(response)) / report["baud"]
    assert rates["link"] == pytest.approx(batch / steps / seconds, rel=0.02)
    assert rates["link"] <= batch / steps / seconds + 0.05
    compute = ((batch - 1) * report["cycles_per_timestep"] + report["latency_cycles"]) / clock
    assert rates["stop_and_wait"] == pytest.approx(batch / steps / (seconds + compute), rel=0.02)



def test_build_checks_a_network_before_any_tool_runs(tmp_path, capsys):
    config = write_network_config(tmp_path, NETWORKS["net_one"])
    for option, value, message in [("--max-batch", "0", "Max_batch must be in 1..65535, not 0"),
                                   ("--baud", "2000000", "Baud 2000000 cannot be generated from "
                                                         "a 25 MHz clock")]:
        argv = ["build", str(config), "--board", "ulx3s-85f", "-o", str(tmp_path / "out"),
                option, value]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.synth
def test_build_icebreaker_network_bitstream(tmp_path, capsys):
    """A tiny network board top on the iCEBreaker at 3 Mbaud, clocked by the PLL at 18 MHz
    (about 30 s). One SSM layer of one
    channel and one state (G = 1) with 4-multiplier complex products, 2 classes: 8 multipliers,
    every one an SB_MAC16 (synth_ice40 -dsp), the UP5K's 8. With G = 1 the state-update loop has
    one stage and its DSPs no registers, so nextpnr cannot time it (an invalid Fmax, reported as
    such; docs/synthesis.md)."""
    data = tiny_network("net_board", channels=1, size=2, classes=2, steps=4)
    data["hardware"]["complex_multipliers"] = 4
    config = write_network_config(tmp_path, data)
    # from the PLL at 18 MHz (nextpnr places SB_PLL40_PAD on the 12 MHz pin or fails)
    code = main(["build", str(config), "--board", "icebreaker", "-o", str(tmp_path / "out"),
                 "--baud", "3000000", "--clock", "18"])
    out = capsys.readouterr().out
    report = check_network_build(tmp_path, config, code, out, "icebreaker")
    assert "18 MHz (PLL from 12 MHz)" in out
    assert report["clock_mhz"] == 18.0 and report["pll"]["params"]["DIVF"] == 47
    assert report["placed"]["ICESTORM_PLL"]["used"] == 1
    assert report["max_batch"] == 4                       # the default: one whole sequence
    assert report["uart_divisor"] == 6 and report["baud"] == 3_000_000
    assert report["placed"]["ICESTORM_DSP"]["used"] == report["resources"]["dsps"] == 8
    if not report["fmax_valid"]:
        assert "ground clock" in report["fmax_note"], report["fmax_note"]


@pytest.mark.synth
@pytest.mark.slow
def test_build_ulx3s_network_bitstream(tmp_path, capsys):
    """``net_one`` (one layer, H = 2, G = 2, 3 classes, 5 steps) on the ULX3S at 1 Mbaud, frames
    of two sequences; timing met at 25 MHz (about 40 s; slow, like the layer's ULX3S build)."""
    config = write_network_config(tmp_path, NETWORKS["net_one"])
    code = main(["build", str(config), "--board", "ulx3s-85f", "-o", str(tmp_path / "out"),
                 "--baud", "1000000", "--max-batch", "10"])
    report = check_network_build(tmp_path, config, code, capsys.readouterr().out, "ulx3s-85f")
    assert report["max_batch"] == 10 and report["uart_divisor"] == 25
    assert report["fmax_valid"] and report["timing_met"], report["fmax_note"]
