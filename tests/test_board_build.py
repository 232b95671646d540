"""``ssmgen build``: board bitstreams through amaranth-boards and the YoWASP tools.

The iCEBreaker build of a tiny config and the over-capacity check run in CI (``synth`` marker,
about a minute each on 2 shared cores). The ULX3S build (also about a minute, measured) is marked
``slow`` to keep CI short: ``make test-slow`` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from synth_configs import SYNTH_CONFIGS

from ssmgen.cli import main
from ssmgen.design import Design
from ssmgen.hw.link.board_top import uart_divisor
from ssmgen.spec.config import parse_config
from ssmgen.synth.board import BOARDS, BoardBuildError, build_board
from ssmgen.synth.targets import TARGETS


def write_config(tmp_path, name):
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(SYNTH_CONFIGS[name]))
    return path


def test_unknown_board_lists_the_allowed_ones(tmp_path, capsys):
    config = write_config(tmp_path, "s4d_tiny")
    with pytest.raises(SystemExit) as exc:
        main(["build", str(config), "--board", "de10-nano", "-o", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'de10-nano'" in err and "icebreaker" in err and "ulx3s-85f" in err
    model = Design.from_config(parse_config(SYNTH_CONFIGS["s4d_tiny"]))
    with pytest.raises(ValueError, match="--board must be one of icebreaker, ulx3s-85f, not 'x'"):
        build_board(model, "x", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_baud_rate_the_clock_cannot_make_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Baud 4000000 cannot be generated from a 12 MHz clock"):
        uart_divisor(12e6, 4_000_000)
    assert uart_divisor(12e6, 115200) == 104 and uart_divisor(25e6, 115200) == 217
    model = Design.from_config(parse_config(SYNTH_CONFIGS["s4d_tiny"]))
    with pytest.raises(ValueError, match="Baud 4000000 cannot be generated from a 25 MHz clock"):
        build_board(model, "ulx3s-85f", tmp_path / "out", baud=4_000_000)
    assert list(tmp_path.iterdir()) == []


def test_baud_rates_up_to_3_mbaud():
    """The boards' FTDI bridges go up to 3 Mbaud: the iCEBreaker's 12 MHz divides to it, the
    ULX3S's 25 MHz only to 1 Mbaud (3 Mbaud would be 4 % off)."""
    assert uart_divisor(12e6, 3_000_000) == 4 and uart_divisor(12e6, 921_600) == 13
    assert uart_divisor(25e6, 1_000_000) == 25
    with pytest.raises(ValueError, match="Baud 3000000 cannot be generated from a 25 MHz clock "
                                         r"within 2 % \(divisor 8, error 4.2 %\)"):
        uart_divisor(25e6, 3_000_000)
    with pytest.raises(ValueError, match="Baud must be at most 3000000 .*, not 4000000"):
        uart_divisor(48e6, 4_000_000)


def check_build(tmp_path, board_name, code, out):
    board = BOARDS[board_name]
    assert code == 0, out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    bitstream = tmp_path / "out" / f"ssmgen_top{board.bitstream}"
    assert report["bitstream"] == bitstream.name and bitstream.stat().st_size > 10_000
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model_hash"] == report["model_hash"]
    assert manifest["board"]["max_batch"] == report["max_batch"] == 8
    assert 0 < report["resources"]["dsps"] <= report["capacity"]["dsps"]
    assert report["fmax_valid"] and report["timing_met"], report["fmax_note"]
    assert report["fmax_mhz"] >= report["clock_mhz"]
    assert f"Fmax {report['fmax_mhz']} MHz" in out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.build-")]
    return report


@pytest.mark.synth
def test_build_icebreaker_bitstream(tmp_path, capsys):
    config = write_config(tmp_path, "s4d_tiny")
    code = main(["build", str(config), "--board", "icebreaker", "-o", str(tmp_path / "out"),
                 "--max-batch", "8"])
    report = check_build(tmp_path, "icebreaker", code, capsys.readouterr().out)
    assert report["uart_divisor"] == 104 and report["clock_mhz"] == 12.0
    assert report["placed"]["ICESTORM_DSP"]["used"] == report["resources"]["dsps"]


@pytest.mark.synth
@pytest.mark.slow
def test_build_ulx3s_bitstream(tmp_path, capsys):
    config = write_config(tmp_path, "s4d_tiny")
    code = main(["build", str(config), "--board", "ulx3s-85f", "-o", str(tmp_path / "out"),
                 "--max-batch", "8"])
    report = check_build(tmp_path, "ulx3s-85f", code, capsys.readouterr().out)
    assert report["uart_divisor"] == 217 and report["clock_mhz"] == 25.0
    assert report["placed"]["MULT18X18D"]["used"] == report["resources"]["dsps"]


@pytest.mark.synth
def test_over_capacity_names_the_resource_and_writes_nothing(tmp_path):
    model = Design.from_config(parse_config(SYNTH_CONFIGS["s5_tiny"]))       # 11 multipliers > 8 DSPs
    with pytest.raises(BoardBuildError, match=r"does not fit the 1BitSquared iCEBreaker .*"
                                              r"dsps: 11 needed, 8 available"):
        build_board(model, "icebreaker", tmp_path / "out", progress=lambda msg: None)
    assert list(tmp_path.iterdir()) == []             # neither the folder nor a temporary one


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sdigits_up5k"


def test_sdigits_up5k_example_is_the_model_it_claims():
    """The shipped trained model: folded layers with the UP5K's 8 DSP products, 512 cycles per
    timestep, and the golden integer network's accuracy on the sDigits test split equal to its
    metrics.json's QAT accuracy, at least 97%."""
    from ssmgen.golden.network import predict, quantize_network_input, run_integer_network
    from ssmgen.train.tasks import load_task
    design = Design.load(EXAMPLE / "config.toml")
    hardware = design.config.hardware
    assert hardware.fold_layers and hardware.dsp_products == 8 and hardware.lanes == 1
    assert design.cycles_per_timestep == 512
    task = load_task("sdigits")
    qnet = design.quantized
    logits = run_integer_network(qnet, quantize_network_input(qnet, task.x_test))
    accuracy = float(np.mean(predict(logits) == task.y_test))
    metrics = json.loads((EXAMPLE / "metrics.json").read_text())
    assert accuracy == metrics["qat_acc"] >= 0.97


@pytest.mark.synth
@pytest.mark.slow
def test_sdigits_up5k_builds_for_the_icebreaker(tmp_path, capsys):
    """The trained model's iCEBreaker bitstream at 3 Mbaud (about 5 minutes on 2 cores): it
    places, meets timing at the 12 MHz board clock and classifies at least 300 sequences/s,
    computing and with one CLASSIFY frame at a time."""
    code = main(["build", str(EXAMPLE / "config.toml"), "--board", "icebreaker", "--baud",
                 "3000000", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["fmax_valid"] and report["timing_met"], report["fmax_note"]
    cells = report["placed"]["ICESTORM_LC"]
    assert cells["used"] <= cells["available"] == 5280
    assert report["resources"]["dsps"] == 8 and report["resources"]["brams"] <= 30
    rates = report["sequences_per_s"]
    assert rates["compute"] >= 300 and rates["stop_and_wait"] >= 300, rates


def test_pll_settings_and_clock_errors(tmp_path):
    """``--clock``: the PLL's dividers as icepll / ecppll choose them (never above the request),
    the board top built from the PLL's output with the UART divisor of that frequency, and a
    frequency the PLL cannot make refused before any tool runs."""
    from ssmgen.hw.link.board_top import BoardTop
    from ssmgen.hw.link.pll import pll_settings
    ice = pll_settings("ice40", 12e6, 40e6)                    # icepll -i 12 -o 40
    assert ice.output_hz == 39.75e6
    assert ice.params == {"FEEDBACK_PATH": "SIMPLE", "DIVR": 0, "DIVF": 52, "DIVQ": 4,
                          "FILTER_RANGE": 1}
    ecp = pll_settings("ecp5", 12e6, 16e6)                     # ecppll -i 12 -o 16
    assert ecp.output_hz == 16e6
    assert (ecp.params["CLKI_DIV"], ecp.params["CLKFB_DIV"], ecp.params["CLKOP_DIV"]) == (3, 4, 37)
    model = Design.from_config(parse_config(SYNTH_CONFIGS["s4d_tiny"]))
    for board, mhz, primitive, divisor in (("icebreaker", 18, "SB_PLL40_PAD", 6),
                                           ("ulx3s-85f", 50, "EHXPLLL", 50)):
        platform = BOARDS[board].make_platform()
        family = TARGETS[BOARDS[board].target].family
        pll = pll_settings(family, platform.default_clk_frequency, mhz * 1e6)
        top = BoardTop(model.quantized, baud=1_000_000 if divisor == 50 else 3_000_000, pll=pll)
        files = platform.build(top, name="t", do_build=False).files
        rtlil = files["t.il"]
        assert primitive in (rtlil if isinstance(rtlil, str) else rtlil.decode())
        assert top.core.divisor == divisor
    with pytest.raises(ValueError, match="--clock: the ice40 PLL cannot make 5 MHz from 12 MHz"):
        build_board(model, "icebreaker", tmp_path / "out", clock_mhz=5)
    assert not (tmp_path / "out").exists()
