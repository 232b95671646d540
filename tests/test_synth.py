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
from ssmgen.config import parse_config
from ssmgen.golden.quantized import load_model
from ssmgen.synth.flow import synthesize

BASELINES = json.loads((Path(__file__).parent / "baselines" / "synth.json").read_text())
pytestmark = pytest.mark.synth


@pytest.mark.parametrize("name,target", BASELINE_RUNS, ids=[f"{n}-{t}" for n, t in BASELINE_RUNS])
def test_synthesis_matches_baseline(name, target, tmp_path):
    report = synthesize(load_model(parse_config(SYNTH_CONFIGS[name])), target, tmp_path,
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
    assert "DOES NOT FIT: dsps: 11 needed, 8 available" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["fits"] is False and report["placed"] is None


def test_ice40_unregistered_dsp_fmax_is_flagged_invalid():
    """nextpnr's iCE40 Fmax with unregistered SB_MAC16s is an artefact; the baseline records it
    as invalid rather than as a speed (see the report's fmax_note)."""
    assert BASELINES["s4d_tiny/ice40-up5k"]["fmax_valid"] is False
