"""``ssmgen verify`` (the regression of a user's own design) and ``ssmgen.testing`` (the same
check as pytest cases): passes on the examples, fails with a clear summary on a corrupted golden
expectation and on a latency that differs from the manifest, writes valid JUnit and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ssmgen.cli import main
from ssmgen.design import Design
from ssmgen.hw.datapath.ssm_layer import SSMLayer
from ssmgen.sim.simulators import available_simulators
from ssmgen.stimulus import make_stimulus
from ssmgen.verify import parse_seeds

ROOT = Path(__file__).resolve().parent.parent
# the layer configs (the sweep_*.toml beside them are sweep files)
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml") if not p.name.startswith("sweep_"))
SMALL = ROOT / "examples" / "s5_small.toml"
# Icarus needs no compile step: use it for the round trips when it is there.
FAST_SIM = "icarus" if "icarus" in available_simulators() else "verilator"


def _verify(tmp_path, config, *extra):
    out = tmp_path / "out"
    argv = ["verify", str(config), "--sim", FAST_SIM, "-o", str(out), "--sequences", "2",
            "--steps", "24", "--junit", str(tmp_path / "junit.xml"), "--json",
            str(tmp_path / "results.json"), *extra]
    return main(argv)


@pytest.mark.rtl
@pytest.mark.parametrize("config", EXAMPLES, ids=lambda p: p.stem)
def test_verify_passes_on_every_example(config, tmp_path, capsys):
    assert _verify(tmp_path, config, "--seeds", "2") == 0
    out = capsys.readouterr().out
    assert out.count("PASS  2 x 24 timesteps") == 2 and "PASS: " in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["passed"] and [s["seed"] for s in results["seeds"]] == [0, 1]
    design = Design.load(config)
    for seed in results["seeds"]:
        assert seed["cycles_per_timestep"] == design.cycles_per_timestep
        assert set(seed["latencies"]) == {design.latency}
        assert Path(seed["log"]).exists()


def _junit_cases(path: Path) -> list[ET.Element]:
    """The test cases of a JUnit file, checking the structure CI tools read."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == int(root.get("tests"))
    failures = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failures)
    for case in cases:
        assert case.get("classname") and case.get("name")
        float(case.get("time"))
    return cases


@pytest.mark.rtl
def test_verify_fails_on_a_corrupted_golden_expectation(tmp_path, capsys, monkeypatch):
    """One expected value off by one LSB in seed 1: that seed fails, names the beat and how to
    reproduce it; the exit status is 1; JUnit has one case per seed, the second failing."""
    layer_design = type(Design.load(SMALL))
    real = layer_design.reference_beats
    calls = []

    def corrupted(self, u_int):             # called once per seed: corrupt the second
        calls.append(1)
        beats = real(self, u_int)
        if len(calls) == 2:
            beats = beats.copy()
            beats[1, 5, 0] += 1
        return beats

    monkeypatch.setattr(layer_design, "reference_beats", corrupted)
    assert _verify(tmp_path, SMALL, "--seeds", "0,1") == 1
    out = capsys.readouterr().out
    assert "seed 0: PASS" in out and "seed 1: FAIL" in out
    assert "output beat 29 (sequence 1, t 5): got" in out
    assert "reproduce: ssmgen verify" in out and "--seeds 1" in out
    assert out.strip().splitlines()[-1].startswith("FAIL: s5_small")
    cases = _junit_cases(tmp_path / "junit.xml")
    assert [c.get("name") for c in cases] == ["seed 0", "seed 1"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert "sequence 1, t 5" in failure.get("message") and "reproduce:" in failure.text
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["passed"] is False and results["seeds"][1]["reproduce"].startswith("ssmgen")


@pytest.mark.rtl
def test_verify_fails_when_the_latency_differs_from_the_manifest(tmp_path, capsys, monkeypatch):
    """A component that claims one cycle more than its circuit takes: the manifest is wrong,
    the beats are right, and verify says so."""
    monkeypatch.setattr(SSMLayer, "latency",
                        property(lambda self: self.groups + self.loop_stages + 7 + 1))
    assert _verify(tmp_path, SMALL, "--seeds", "1", "-v") == 1
    out = capsys.readouterr().out
    assert "latency other than the manifest's 10 cycles" in out
    assert "simulator log:" in out and "cocotb" in out          # -v shows the log


@pytest.mark.rtl
def test_verify_takes_a_network_and_every_stimulus(tmp_path, capsys):
    from test_cli import _network_config
    config = _network_config(tmp_path)
    steps = Design.load(config).steps
    for stimulus in ("smooth", "extremes"):
        assert main(["verify", str(config), "--sim", FAST_SIM, "--seeds", "1", "--stimulus",
                     stimulus, "-o", str(tmp_path / stimulus)]) == 0
    u = np.random.default_rng(0).normal(0, 1, (3, steps, 1))
    np.save(tmp_path / "u.npy", u)
    assert main(["verify", str(config), "--sim", FAST_SIM, "--seeds", "1", "--stimulus",
                 str(tmp_path / "u.npy"), "-o", str(tmp_path / "npy")]) == 0
    assert "PASS  3 x" in capsys.readouterr().out
    assert main(["verify", str(config), "--steps", str(steps + 1), "-o", str(tmp_path)]) == 2
    assert f"network.steps = {steps}" in capsys.readouterr().err


def test_extremes_stimulus_drives_saturation():
    """Runs of the extreme input values drive outputs into saturation far more often than
    uniformly random inputs (s5_aggressive: about 46% of outputs against 1%)."""
    design = Design.load(ROOT / "examples" / "s5_aggressive.toml")
    fmt, out = design.input_quantizer.format, design.config.quant.output.format

    def saturated(stimulus):
        u = make_stimulus(design, stimulus, sequences=4, steps=64, seed=3)
        y = design.reference(u)
        return u, np.mean((y == out.max_int) | (y == out.min_int))

    u, extremes = saturated("extremes")
    assert set(np.unique(u)) <= {fmt.min_int, 0, fmt.max_int}
    assert np.count_nonzero(np.diff(u, axis=1)) < u.size / 4      # runs, not noise
    assert extremes > 0.2 and extremes > 10 * saturated("full-range")[1]


@pytest.mark.parametrize("text,seeds", [("3", [0, 1, 2]), ("4,17", [4, 17]), ("9,", [9])])
def test_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "0"], "--seeds: a count must be in 1..1000"),
    (["--seeds", "1,1"], "distinct seeds"),
    (["--seeds", "a"], "--seeds: must be a count"),
    (["--stimulus", "noise"], "--stimulus: must be one of full-range, smooth, extremes"),
    (["--idle", "1.5"], "--idle: a probability in 0..0.9"),
    (["--sequences", "0"], "--sequences: must be >= 1"),
])
def test_bad_options_are_named(argv, message, tmp_path, capsys):
    assert main(["verify", str(SMALL), "-o", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.rtl
def test_pytest_helper_runs_a_users_config_outside_the_repo(tmp_path):
    """A user's project: a config and a test file that calls ssmgen.testing; pytest reports one
    case per design and seed, and a failure shows the mismatching beat."""
    project = tmp_path / "user_project"
    (project / "designs").mkdir(parents=True)
    (project / "designs" / "mine.toml").write_text(SMALL.read_text().replace(
        'name = "s5_small"', 'name = "mine"'))
    (project / "test_rtl.py").write_text(textwrap.dedent(f"""
        from ssmgen.testing import verify_cases

        test_rtl = verify_cases(["designs/mine.toml"], seeds=2, sequences=2, steps=16,
                                simulator="{FAST_SIM}")
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", "test_rtl.py"], cwd=project,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 passed" in proc.stdout
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                                "-p", "no:cacheprovider", "test_rtl.py"], cwd=project,
                               capture_output=True, text=True, timeout=300).stdout
    assert "test_rtl.py::test_rtl[mine.toml-seed0]" in collected
    assert "test_rtl.py::test_rtl[mine.toml-seed1]" in collected
