"""The ssmgen command line as a user runs it: generate, run on every engine, demo, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssmgen.cli import main
from ssmgen.sim.simulators import available_simulators

ROOT = Path(__file__).resolve().parent.parent
# the layer configs (the sweep_*.toml beside them are sweep files)
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml") if not p.name.startswith("sweep_"))
# Icarus needs no compile step: use it for the CLI round trips when it is there.
FAST_SIM = "icarus" if "icarus" in available_simulators() else "verilator"


def _inputs(tmp_path, channels, seed=0, shape=(2, 25)):
    u = np.random.default_rng(seed).normal(0, 2.0, (*shape, channels))
    path = tmp_path / "u.npy"
    np.save(path, u)
    return path, u


def test_generate_writes_verilog_and_manifest(tmp_path, capsys):
    out = tmp_path / "rtl"
    assert main(["generate", str(ROOT / "examples/s5_small.toml"), "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    verilog = (out / manifest["verilog"]).read_text()
    assert f"module {manifest['top']}(" in verilog
    assert str(ROOT) not in verilog and str(tmp_path) not in verilog and "/home/" not in verilog
    assert manifest["hardware"]["cycles_per_timestep"] == 1
    assert manifest["ports"]["u__payload"]["width"] == 4 * 8 + 1
    assert "1 cycle(s) per timestep" in capsys.readouterr().out


@pytest.mark.rtl
@pytest.mark.parametrize("config", EXAMPLES, ids=lambda p: p.stem)
def test_run_golden_and_rtl_are_identical(config, tmp_path):
    from ssmgen.spec.config import load_config
    channels = load_config(config).model.channels
    u_path, u = _inputs(tmp_path, channels)
    outputs = {}
    for engine in ("float", "golden", "rtl"):
        out = tmp_path / f"y_{engine}.npy"
        argv = ["run", str(config), "-i", str(u_path), "-o", str(out), "--engine", engine]
        assert main(argv + ["--sim", FAST_SIM]) == 0
        outputs[engine] = np.load(out)
        assert outputs[engine].shape == u.shape
    np.testing.assert_array_equal(outputs["rtl"], outputs["golden"])
    # The quantized model tracks the float reference (loosely: the aggressive example is 4-bit).
    assert np.corrcoef(outputs["golden"].ravel(), outputs["float"].ravel())[0, 1] > 0.5


@pytest.mark.parametrize("bad,message", [
    (np.zeros((2, 5)), "must have shape"),
    (np.zeros((1, 5, 3)), "must have shape"),
    (np.full((1, 5, 4), np.nan), "NaN"),
    (np.zeros((1, 5, 4), dtype=np.complex128), "real numbers"),
])
def test_run_rejects_bad_input_and_writes_nothing(bad, message, tmp_path, capsys):
    u_path = tmp_path / "u.npy"
    np.save(u_path, bad)
    out = tmp_path / "y.npy"
    code = main(["run", str(ROOT / "examples/s5_small.toml"), "-i", str(u_path), "-o", str(out)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bad_config_gives_field_named_error(tmp_path, capsys):
    text = (ROOT / "examples/s5_small.toml").read_text().replace("lanes = 8", "lanes = 3")
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["generate", str(config), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "hardware.lanes" in err and "allowed: 1, 2, 4, 8" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.rtl
def test_demo_on_built_in_default_reports_zero_mismatches(tmp_path):
    """`ssmgen demo` as the README's first screen runs it (console script, default config)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "ssmgen.cli", "demo", "-o", str(tmp_path / "demo"),
                           "--sim", FAST_SIM, "--steps", "20", "--batch", "2"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mismatches = 0" in proc.stdout
    assert "cycles/timestep: 8 measured, 8 in manifest" in proc.stdout


def _network_config(tmp_path) -> Path:
    """A small random whole network written as a user would have it: config.toml + weights."""
    import tomli_w
    from test_network_hw import CASES, SEED, build_network

    from ssmgen.spec.weights import save_network_npz
    qnet = build_network(CASES[2], SEED)
    data = dict(qnet.config.source, name="net", weights={"source": "file", "file": "w.npz"})
    save_network_npz(tmp_path / "w.npz", qnet.float_weights)
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.rtl
def test_demo_and_run_take_a_whole_network(tmp_path, capsys):
    """The commands have one path for a layer and a network: demo streams whole sequences
    through the network's RTL with random stalls; run gives its logits on every engine."""
    config = _network_config(tmp_path)
    assert main(["demo", str(config), "-o", str(tmp_path / "demo"), "--sim", FAST_SIM,
                 "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert "mismatches = 0" in out and "(network, s4d" in out
    from ssmgen.design import Design
    design = Design.load(config)
    u_path, _ = _inputs(tmp_path, design.input_channels, shape=(2, design.steps))
    logits = {}
    for engine in ("float", "golden", "rtl"):
        argv = ["run", str(config), "-i", str(u_path), "-o", str(tmp_path / f"{engine}.npy"),
                "--engine", engine, "--sim", FAST_SIM]
        assert main(argv) == 0
        logits[engine] = np.load(tmp_path / f"{engine}.npy")
        assert logits[engine].shape == (2, design.quantized.network.classes)
    np.testing.assert_array_equal(logits["rtl"], logits["golden"])


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("ssmgen 0.")


def test_every_option_says_what_it_does():
    """--help of every command explains every option (and shows defaults where there are)."""
    import argparse

    from ssmgen.cli import build_parser
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {action.dest}" for name, sub in commands.choices.items()
               for action in sub._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert not missing, missing
    undocumented_default = [f"{name} {action.dest}" for name, sub in commands.choices.items()
                            for action in sub._actions
                            if action.default not in (None, False, argparse.SUPPRESS)
                            and action.help and "default" not in action.help
                            and action.dest != "func"]
    assert not undocumented_default, undocumented_default


def test_init_writes_a_config_that_generates(tmp_path, capsys):
    for kind in ("s4d", "s5"):
        assert main(["init", "--kind", kind, "--name", f"my_{kind}"]) == 0
        config = tmp_path / f"my_{kind}.toml"
        config.write_text(capsys.readouterr().out)
        assert main(["generate", str(config), "-o", str(tmp_path / kind)]) == 0
        capsys.readouterr()
        manifest = json.loads((tmp_path / kind / "manifest.json").read_text())
        assert manifest["top"] == f"my_{kind}" and manifest["model"]["kind"] == kind
    with pytest.raises(SystemExit):                     # argparse names the choices
        main(["init", "--kind", "s6"])
    assert "invalid choice: 's6'" in capsys.readouterr().err


def test_generate_and_run_warn_about_saturation(tmp_path, capsys):
    """Weights clamped by a saturating format, Abar poles moved inside the unit circle, inputs
    outside the input format: said on stderr with counts and the tensors concerned."""
    text = (ROOT / "examples/s5_small.toml").read_text()
    text = text.replace('[quant.abar]\nformat = "fixed<10,1>"', '[quant.abar]\nformat = "fixed<3,1>"')
    config = tmp_path / "narrow.toml"
    config.write_text(text)
    assert main(["generate", str(config), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "ssmgen: warning:" in err and "weight(s) saturated" in err and "(abar " in err
    assert "Abar pole(s) pulled inside the unit circle" in err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["saturated_weights_by_tensor"]["abar"] > 0
    u_path, u = _inputs(tmp_path, 4)
    u[0, 0, 0] = 100.0                        # fixed<8,3> ends at 3.96875
    np.save(u_path, u)
    assert main(["run", str(config), "-i", str(u_path), "-o", str(tmp_path / "y.npy")]) == 0
    err = capsys.readouterr().err
    assert "input values lie outside the input format fixed<8,3> (-4..3.96875) and were " \
           "saturated" in err
