"""Training (train/, PyTorch): fake quantization is golden/'s, the QAT forward pass equals the
golden integer network bit for bit, training runs on tiny subsets, export -> load_config round
trip, `ssmgen train` / `ssmgen eval` on the command line, and bad inputs name their field.

These tests need the [train] extra (CI installs torch==2.13.0); sizes are tiny (seconds each).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the [train] extra (PyTorch) is not installed")
torch.set_num_threads(1)   # tiny tensors: extra threads only spin on a loaded 2-core machine

from ssmgen.cli import main  # noqa: E402
from ssmgen.design import Design  # noqa: E402
from ssmgen.golden.fixedpoint import quantize_float, round_float  # noqa: E402
from ssmgen.golden.quantize import load_network, quantize_network  # noqa: E402
from ssmgen.spec.config import load_config  # noqa: E402
from ssmgen.spec.errors import ConfigError  # noqa: E402
from ssmgen.spec.formats import FixedFormat, Overflow, Quantizer, Rounding, to_float  # noqa: E402
from ssmgen.spec.weights import load_network_npz  # noqa: E402
from ssmgen.train.commands import widths_from_bits  # noqa: E402
from ssmgen.train.fakequant import fake_quant, fake_quant_weight  # noqa: E402
from ssmgen.train.loop import evaluate_torch, fit, golden_logits  # noqa: E402
from ssmgen.train.model import SSMNetwork  # noqa: E402
from ssmgen.train.ptq import build_config, calibrate, int_bits_for, mse_int_bits, parse, to_toml  # noqa: E402
from ssmgen.train.tasks import load_task  # noqa: E402

SEED = 0x7A1


@pytest.fixture(scope="module")
def digits():
    return load_task("sdigits").subset(96, 48)


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("overflow", list(Overflow))
def test_fake_quant_is_golden_quantize_float_with_clipped_ste(rounding, overflow):
    rng = np.random.default_rng(SEED)
    q = Quantizer(FixedFormat(5, 2), rounding, overflow)
    # random values, exact ties (k + 1/2 LSBs) and values far outside the range
    values = np.concatenate([rng.uniform(-3, 3, 500), (np.arange(-40, 40) + 0.5) / 8,
                             rng.uniform(-100, 100, 50)])
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    out = fake_quant(x, q)
    ints = quantize_float(values, q)
    np.testing.assert_array_equal(out.detach().numpy(), to_float(ints, q.format.frac))
    out.sum().backward()
    # clipped STE: gradient 1 where the rounded value fits the format, 0 where it overflowed
    fmt = q.format
    rounded = round_float(values, fmt.frac, rounding)
    fits = (rounded >= fmt.min_int) & (rounded <= fmt.max_int)
    np.testing.assert_array_equal(x.grad.numpy(), fits.astype(np.float64))
    assert fits.any() and not fits.all()


def test_fake_quant_per_mode_fractions():
    q = Quantizer(FixedFormat(8, 2), Rounding.HALF_EVEN, Overflow.SATURATE)
    frac = np.array([6, 3, 9])
    x = torch.tensor([[0.1234, 1.77, 0.01], [-0.5, -3.1, 0.2]], dtype=torch.float64)
    got = fake_quant(x, q, frac).numpy()
    np.testing.assert_array_equal(got, to_float(quantize_float(x.numpy(), q, frac=frac), frac))


def test_fake_quant_weight_rejects_wrapping_weights_with_the_field():
    q = Quantizer(FixedFormat(4, 1), Rounding.HALF_EVEN, Overflow.WRAP)
    with pytest.raises(ConfigError, match="quant.mix"):
        fake_quant_weight(torch.tensor([3.0], dtype=torch.float64), q, "mix")


def _config_for(model, x, widths, steps, choice="range"):
    cal = calibrate(model.network_weights(), x, activation=model.activation)
    return parse(build_config(model.meta, cal, widths, steps=steps, choice=choice))


@pytest.mark.parametrize("kind,bits", [("s4d", 8), ("s5", 6), ("s4d", 4), ("s5", 12)])
def test_qat_forward_equals_golden_integer_network(digits, kind, bits):
    """Eval-mode QAT logits == golden integer logits * 2**-frac, bit for bit (float64 exact)."""
    model = SSMNetwork(kind=kind, channels=4, modes=3, layers=2, classes=10, seed=SEED + bits)
    # a short float training so that the network is not at its initialization
    fit(model, digits.x_train[:48], digits.y_train[:48], epochs=1, lr=0.01, progress=False)
    config = _config_for(model, digits.x_train, widths_from_bits(weights=bits, state=bits,
                                                                 activations=bits), 64)
    qnet = quantize_network(config, model.network_weights())
    assert qnet.float64_exact, qnet.max_exact_bits
    acc, logits = evaluate_torch(model, digits.x_test, digits.y_test, config=config)
    golden = golden_logits(qnet, digits.x_test)
    np.testing.assert_array_equal(logits, golden * 2.0 ** -qnet.logits_frac)
    assert acc == np.mean(np.argmax(golden, axis=1) == digits.y_test)


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_qat_forward_equals_golden_after_equalization_and_mse_formats(digits, kind):
    """The default recipe (B/C equalization, MSE-chosen formats) keeps QAT == golden."""
    model = SSMNetwork(kind=kind, channels=4, modes=3, layers=2, classes=10, seed=SEED)
    fit(model, digits.x_train[:48], digits.y_train[:48], epochs=1, lr=0.01, progress=False)
    model.equalize_()
    config = _config_for(model, digits.x_train, widths_from_bits(weights=4, state=8,
                                                                 activations=8), 64, "mse")
    qnet = quantize_network(config, model.network_weights())
    _, logits = evaluate_torch(model, digits.x_test, digits.y_test, config=config)
    np.testing.assert_array_equal(logits, golden_logits(qnet, digits.x_test)
                                  * 2.0 ** -qnet.logits_frac)


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_qat_forward_equals_golden_with_polar_abar(digits, kind):
    """QAT through a polar Abar (4-bit radius, 6-bit angle, decoded into fixed<16,1>) is the
    golden integer network too: fake_quant_layer decodes through golden/abar_polar.py."""
    model = SSMNetwork(kind=kind, channels=4, modes=3, layers=2, classes=10, seed=SEED)
    fit(model, digits.x_train[:48], digits.y_train[:48], epochs=1, lr=0.01, progress=False)
    cal = calibrate(model.network_weights(), digits.x_train, activation=model.activation)
    config = parse(build_config(model.meta, cal, widths_from_bits(weights=4, state=8,
                                                                  activations=8, abar=16),
                                steps=64, choice="mse",
                                abar_form={"form": "polar", "rho_bits": 4, "theta_bits": 6}))
    assert config.quant.abar_polar is not None
    qnet = quantize_network(config, model.network_weights())
    _, logits = evaluate_torch(model, digits.x_test, digits.y_test, config=config)
    np.testing.assert_array_equal(logits, golden_logits(qnet, digits.x_test)
                                  * 2.0 ** -qnet.logits_frac)


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_equalization_keeps_the_function_and_balances_bbar_and_c(digits, kind):
    model = SSMNetwork(kind=kind, channels=4, modes=3, layers=2, classes=10, seed=SEED)
    fit(model, digits.x_train[:48], digits.y_train[:48], epochs=1, lr=0.01, progress=False)
    _, before = evaluate_torch(model, digits.x_test, digits.y_test)
    model.equalize_()
    _, after = evaluate_torch(model, digits.x_test, digits.y_test)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-9)
    def peak(z, axis):        # per state: max |re|, |im| (s5: over the channels too)
        z = np.maximum(np.abs(z.real), np.abs(z.imag))
        return z if z.ndim == 1 else z.max(axis=axis)

    for layer in model.network_weights().layers:
        # each state p: Bbar_p and C_p now have the same magnitude
        np.testing.assert_allclose(peak(layer.bbar, 1), peak(layer.c, 0), rtol=1e-9)


def test_mse_int_bits_clips_rare_outliers_and_weighs_groups_equally():
    rng = np.random.default_rng(SEED)
    values = rng.normal(0, 1, 20000)
    top = int_bits_for(np.max(np.abs(values)), 8)      # covers the largest value
    # independent reference: half_even rounding (np.round) and saturation in fixed<8,I>
    errors = {i: np.mean((np.clip(np.round(values * 2.0 ** (8 - i)), -128, 127)
                          * 2.0 ** (i - 8) - values) ** 2) for i in range(top - 6, top + 1)}
    best = min(errors, key=errors.get)
    assert mse_int_bits([values], 8, top) == best < top      # the rare tail saturates
    # a group of small values sharing the format with one of large values: the relative error
    # of each counts, so the format is not sized for the large group alone
    small, large = rng.normal(0, 0.5, 5000), rng.normal(0, 20, 5000)
    alone = mse_int_bits([large], 8, 7)
    assert mse_int_bits([small, large], 8, 7) < alone
    # ties go to the larger integer bits: exactly representable values need no clipping
    assert mse_int_bits([np.array([0.0, 1.0, -1.0])], 8, 3) == 3


def test_bad_format_choice_and_percentile_name_the_field(digits):
    model = SSMNetwork(kind="s4d", channels=2, modes=2, layers=1, classes=10, seed=1)
    cal = calibrate(model.network_weights(), digits.x_train[:8])
    with pytest.raises(ConfigError, match="format choice: must be one of range, mse, not 'max'"):
        build_config(model.meta, cal, widths_from_bits(weights=8, state=8, activations=8),
                     steps=64, choice="max")
    with pytest.raises(ConfigError, match="calibration percentile: must be in 50..100, not 101"):
        calibrate(model.network_weights(), digits.x_train[:8], percentile=101)


def test_qat_forward_equals_golden_with_odd_length_and_logits_format():
    """Non-power-of-two T (the mean's 16-bit constant) and an explicit logits format."""
    rng = np.random.default_rng(SEED)
    x = rng.uniform(-1, 1, (12, 7, 2))
    model = SSMNetwork(kind="s5", inputs=2, channels=3, modes=4, layers=1, classes=3, seed=3)
    cal = calibrate(model.network_weights(), x)
    data = build_config(model.meta, cal, widths_from_bits(weights=7, state=9, activations=8),
                        steps=7)
    data["network"]["quant"]["logits"] = {"format": "fixed<8,2>", "rounding": "floor"}
    config = parse(data)
    qnet = quantize_network(config, model.network_weights())
    _, logits = evaluate_torch(model, x, np.zeros(12, dtype=np.int64), config=config)
    np.testing.assert_array_equal(logits, golden_logits(qnet, x) * 2.0 ** -qnet.logits_frac)


def test_float_forward_equals_golden_float_reference(digits):
    from ssmgen.golden.network import run_float_network
    for kind in ("s4d", "s5"):
        model = SSMNetwork(kind=kind, channels=4, modes=3, layers=2, classes=10, seed=5)
        _, logits = evaluate_torch(model, digits.x_test, digits.y_test)
        ref = run_float_network(model.network_weights(), digits.x_test)
        np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-9)


def test_training_smoke_float_and_qat_reduce_the_loss(digits):
    model = SSMNetwork(kind="s4d", channels=8, modes=4, layers=1, classes=10, seed=SEED)
    history = fit(model, digits.x_train, digits.y_train, epochs=4, lr=0.02, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    config = _config_for(model, digits.x_train, widths_from_bits(weights=6, state=8,
                                                                 activations=8), 64)
    qat = fit(model, digits.x_train, digits.y_train, epochs=2, lr=0.002, config=config,
              progress=False)
    assert all(np.isfinite(h["loss"]) for h in qat)
    for layer in model.network_weights().layers:
        assert np.all(np.abs(layer.abar) < 1)
    qnet = quantize_network(config, model.network_weights())
    for layer in qnet.layers:     # quantized poles stay inside the unit circle (exact check)
        frac = config.quant.abar.format.frac
        assert np.all(layer.abar_re.astype(object) ** 2 + layer.abar_im.astype(object) ** 2
                      < (1 << (2 * frac)))


def test_training_is_seeded(digits):
    def run():
        model = SSMNetwork(kind="s5", channels=4, modes=3, layers=1, classes=10, seed=2)
        fit(model, digits.x_train[:32], digits.y_train[:32], epochs=1, lr=0.01, seed=4,
            progress=False)
        return model.network_weights().decoder_w
    np.testing.assert_array_equal(run(), run())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    argv = ["train", "--task", "sdigits", "-o", str(out), "--train-subset", "64",
            "--test-subset", "40", "--channels", "4", "--modes", "2", "--layers", "1",
            "--epochs", "2", "--qat-epochs", "1", "--bits", "8", "--weight-bits", "6",
            "--lanes", "2", "--no-progress"]
    assert main(argv) == 0
    return out


def test_export_round_trips_through_load_config(model_dir):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    for key in ("float_acc", "ptq_acc", "qat_acc", "widths", "total_seconds"):
        assert key in metrics
    assert metrics["widths"]["abar"] == 6 and metrics["widths"]["state"] == 8
    config = load_config(model_dir / "config.toml")
    assert config.network.layers == 1 and config.network.steps == 64
    assert config.hardware.lanes == 2          # --lanes
    assert config.quant.abar.format.width == 6
    qnet = load_network(config)
    stored = np.load(model_dir / "integer_weights.npz")
    for key, value in qnet.integer_arrays().items():
        np.testing.assert_array_equal(stored[key], value, err_msg=key)
    # dequantized weights quantize to the same integers (idempotent)
    again = quantize_network(config, qnet.dequantized())
    for key, value in again.integer_arrays().items():
        np.testing.assert_array_equal(stored[key], value, err_msg=key)
    # the PTQ config is consumable too
    assert load_network(load_config(model_dir / "ptq_config.toml")).network.layers == 1
    assert load_network_npz(config.weights.path, config).layers[0].states == 8


def test_polar_abar_model_exports_its_codes(tmp_path):
    """--abar-form polar: the config says so, the integers carry the radius/angle codes, and
    the golden eval reproduces the QAT accuracy."""
    out = tmp_path / "polar"
    assert main(["train", "--task", "sdigits", "-o", str(out), "--train-subset", "48",
                 "--test-subset", "20", "--channels", "4", "--modes", "2", "--layers", "1",
                 "--epochs", "1", "--qat-epochs", "1", "--weight-bits", "4",
                 "--abar-form", "polar", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["abar_form"] == {"form": "polar", "rho_bits": 4, "theta_bits": 6}
    config = load_config(out / "config.toml")
    assert config.quant.abar_polar.rho_bits == 4 and config.quant.abar.format.width == 16
    stored = np.load(out / "integer_weights.npz")
    assert np.all((stored["layers.0.Abar.rho_mant"] >= 1) & (stored["layers.0.Abar.rho_mant"] < 16))
    assert main(["eval", str(out), "--engine", "golden", "--test-subset", "20"]) == 0


def test_eval_golden_reproduces_the_exported_qat_accuracy(model_dir, capsys):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert main(["eval", str(model_dir), "--task", "sdigits", "--engine", "golden",
                 "--test-subset", "40"]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {metrics['qat_acc']:.4f}" in out
    assert main(["eval", str(model_dir / "config.toml"), "--engine", "float",
                 "--test-subset", "40"]) == 0
    assert "sdigits float: accuracy" in capsys.readouterr().out


@pytest.mark.rtl
def test_eval_rtl_gives_the_golden_accuracy(model_dir, capsys):
    """The exported model's generated Verilog (cocotb + Verilator) predicts exactly what the
    golden model does (the testbench compares every logit; a difference raises)."""
    assert main(["eval", str(model_dir), "--engine", "golden", "--test-subset", "6"]) == 0
    golden = capsys.readouterr().out.split("accuracy ")[1].split(" in ")[0]
    assert main(["eval", str(model_dir), "--engine", "rtl", "--test-subset", "6"]) == 0
    out = capsys.readouterr().out
    assert f"sdigits rtl: accuracy {golden}" in out
    assert "matched the golden integer model on every logit and prediction of all 6" in out


@pytest.mark.rtl
def test_verify_passes_on_a_trained_model_dir(model_dir, tmp_path, capsys):
    """`ssmgen verify MODEL_DIR`: the trained network's RTL under random stalls, bit for bit."""
    assert main(["verify", str(model_dir), "--seeds", "1", "--sequences", "2", "-o",
                 str(tmp_path / "verify"), "--junit", str(tmp_path / "junit.xml")]) == 0
    out = capsys.readouterr().out
    assert "seed 0: PASS  2 x 64 timesteps" in out and "(network, model hash" in out


def test_generate_on_a_model_dir_writes_the_whole_network(model_dir, tmp_path, capsys):
    """`ssmgen generate` on a trained model's config builds the whole network, not layer 0."""
    out = tmp_path / "rtl"
    assert main(["generate", str(model_dir / "config.toml"), "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "network" and manifest["network"]["layers"] == 1
    assert "prediction" in [f["name"] for f in manifest["ports"]["y__payload"]["fields"]]
    assert "latency" in capsys.readouterr().out


def test_build_takes_a_network_config(model_dir, capsys):
    """`build` accepts a trained network (the board link classifies whole sequences); its
    options are checked before any tool runs: 4 Mbaud is beyond a 12 MHz clock."""
    argv = ["build", str(model_dir / "config.toml"), "--board", "icebreaker", "-o", "out",
            "--baud", "4000000"]
    assert main(argv) == 2
    assert "Baud 4000000 cannot be generated from a 12 MHz clock" in capsys.readouterr().err


def test_run_takes_a_network_config(model_dir, tmp_path):
    """`run` on a trained model: logits (batch, classes) in real units, golden == the
    network's own golden model."""
    design = Design.load(model_dir / "config.toml")
    u = np.random.default_rng(3).normal(0, 1, (3, 64, 1))
    np.save(tmp_path / "u.npy", u)
    argv = ["run", str(model_dir / "config.toml"), "-i", str(tmp_path / "u.npy"), "-o",
            str(tmp_path / "y.npy")]
    assert main(argv) == 0
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (3, 10)
    np.testing.assert_array_equal(y, design.dequantize_output(design.reference(design.quantize_input(u))))
    np.save(tmp_path / "u.npy", u[:, :10])
    assert main(argv) == 2          # a network needs network.steps timesteps


def test_eval_on_a_mismatched_task_names_the_field(model_dir, capsys):
    assert main(["eval", str(model_dir), "--task", "sfreq", "--test-subset", "4"]) == 2
    assert "network.classes: the model has 10, task sfreq needs 8" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--bits", "1"], "--weight-bits: must be in 2..24, not 1"),
    (["--state-bits", "30"], "--state-bits: must be in 2..24, not 30"),
    (["--channels", "0"], "--channels: must be >= 1, not 0"),
    (["--epochs", "-1"], "--epochs: must be >= 0, not -1"),
    (["--calib-percentile", "20"], "--calib-percentile: must be in 50..100, not 20.0"),
    (["--calib-percentile", "99.9"], "--calib-percentile: applies to --calib range only"),
    (["--dropout", "1"], "--dropout: must be in [0, 1), not 1.0"),
    (["--rho-bits", "4"], "--rho-bits: applies to --abar-form polar only"),
    (["--lanes", "3"], "--lanes: must divide the layer's 512 states, not 3"),
    (["--abar-form", "polar", "--theta-bits", "2"], "--theta-bits: must be in 3..16, not 2"),
    (["--abar-form", "polar", "--rho-bits", "0"], "--rho-bits: must be in 1..16, not 0"),
])
def test_train_bad_arguments_name_the_field(tmp_path, capsys, argv, message):
    assert main(["train", "-o", str(tmp_path / "m"), "--no-progress", *argv]) == 2
    assert message in capsys.readouterr().err


def test_eval_without_network_section_names_it(capsys):
    from pathlib import Path
    example = Path(__file__).resolve().parent.parent / "examples" / "s5_small.toml"
    assert main(["eval", str(example)]) == 2
    assert "no [network] section" in capsys.readouterr().err


def test_to_toml_round_trips_a_config_dict(digits, tmp_path):
    import tomllib
    model = SSMNetwork(kind="s4d", channels=2, modes=2, layers=2, classes=10, seed=1)
    data = build_config(model.meta, calibrate(model.network_weights(), digits.x_train[:8]),
                        widths_from_bits(weights=8, state=10, activations=8), steps=64)
    assert tomllib.loads(to_toml(data)) == data


def test_sfreq_task_is_deterministic_and_balanced():
    a, b = load_task("sfreq"), load_task("sfreq")
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (2000, 64, 1) and a.classes == 8
    assert np.bincount(a.y_train, minlength=8).min() > 150
    with pytest.raises(ValueError, match="task must be one of"):
        load_task("mnist")


def _model_sweep(model_dir, axes: str, extra: str = "") -> str:
    """A sweep file over ``model_dir``: ``axes`` (TOML lines), no device limits, no synthesis,
    accuracy on 40 test sequences; ``extra``: more sections."""
    return (f'[base]\nmodel = "{model_dir}"\n[axes]\n{axes}\n[constraints]\nfit_device = false\n'
            f'[strategy]\nsynthesize = "none"\n[quality]\ntest_subset = 40\n{extra}')


def test_sweep_over_a_trained_model(model_dir, tmp_path):
    """`ssmgen sweep` with a MODEL_DIR base: each point is PTQ of the model at its widths
    (formats calibrated anew), its accuracy the golden network's on the test split; a per-layer
    width is that layer's own format (network.layer_quant); the exported config reproduces the
    point's accuracy."""
    from ssmgen.spec.config import load_config as load
    from ssmgen.sweep.config import load_sweep
    from ssmgen.sweep.outputs import export_design
    from ssmgen.sweep.runner import run_sweep
    from ssmgen.train.tasks import load_task
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(_model_sweep(model_dir,
                                       'width = [3, 8]\n"width.layers.0.state" = [6, 10]'))
    results = run_sweep(load_sweep(sweep_file), tmp_path / "out", workers=1,
                        show_progress=False, say=lambda _: None)
    rows = {(r["axis.width"], r["axis.width.layers.0.state"]): r for r in results["points"]}
    assert len(rows) == 4 and all(r["quality_metric"] == "accuracy" for r in rows.values())
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows[(8, 10)]["quality"] >= rows[(3, 6)]["quality"]
    config = rows[(8, 6)]["config"]
    assert config["network"]["layer_quant"]["0"]["state"]["format"].startswith("fixed<6,")
    best = export_design(results, tmp_path / "best", point_id=rows[(8, 10)]["id"])
    exported = load(best)
    assert exported.layer(0).quant.state.format.width == 10
    task = load_task("sdigits").subset(None, 40)
    design = Design.load(best)
    logits = design.reference(design.quantize_input(task.x_test))
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == task.y_test))
    assert accuracy == rows[(8, 10)]["quality"]


def test_sweep_trains_its_points(model_dir, tmp_path):
    """`[training]` and size axes over a MODEL_DIR: each point is trained (QAT from the base's
    float model at its widths; a new size from scratch), once per model (points that differ in
    hardware only share it); its config is the trained model's, its accuracy the golden
    network's on those weights; a rerun trains nothing, and a deleted model is trained again.
    Bad training settings name the field before any work."""
    from ssmgen.spec.config import load_config as load
    from ssmgen.sweep.config import load_sweep
    from ssmgen.sweep.runner import run_sweep
    from ssmgen.train.tasks import load_task
    sweep_file = tmp_path / "sweep.toml"
    text = _model_sweep(model_dir, "width = [4, 8]\nchannels = [4, 2]\nlanes = [1, 2]",
                        "[training]\nqat_epochs = 1\nepochs = 1\n")
    sweep_file.write_text(text)

    def sweep():
        return run_sweep(load_sweep(sweep_file), tmp_path / "out", workers=1,
                         show_progress=False, say=lambda _: None)
    results = sweep()
    rows = results["points"]
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    models = {(r["axis.width"], r["axis.channels"]): r["model_dir"] for r in rows}
    assert len(set(models.values())) == 4          # lanes do not change the trained model
    # one float model for the new size, shared by both widths; the base's size starts from the
    # base's float model
    assert len(list((tmp_path / "out" / "models").glob("float-*"))) == 1
    floats = {(r["axis.width"], r["axis.channels"]): r["float_accuracy"] for r in rows}
    assert floats[4, 2] == floats[8, 2] and floats[4, 4] == floats[8, 4]
    task = load_task("sdigits").subset(None, 40)
    for row in rows:
        config = row["config"]
        assert config["model"]["channels"] == row["axis.channels"]
        assert config["hardware"]["lanes"] == row["axis.lanes"]
        assert config["quant"]["bbar"]["format"].startswith(f"fixed<{row['axis.width']},")
        assert Path(config["weights"]["file"]).parent == tmp_path / "out" / row["model_dir"]
        design = Design.from_config(load(tmp_path / "out" / row["model_dir"] / "config.toml"))
        logits = design.reference(design.quantize_input(task.x_test))
        assert float(np.mean(np.argmax(logits, axis=-1) == task.y_test)) == row["quality"]
    # two model axes (width, channels) and one hardware axis: a heat map of the best quality
    from ssmgen.sweep.outputs import write_outputs
    write_outputs(results, tmp_path / "out")
    heatmap = json.loads((tmp_path / "out" / "plots.json").read_text())["quality_heatmap.png"]
    assert (heatmap["x"], heatmap["y"]) == ("width", "channels")
    assert sorted(heatmap["cells"]) == sorted(
        [w, c, max(r["quality"] for r in rows if (r["axis.width"], r["axis.channels"]) == (w, c))]
        for w, c in models)
    trained = {m: (tmp_path / "out" / m / "weights.npz").stat().st_mtime_ns
               for m in set(models.values())}
    again = sweep()
    assert [r["quality"] for r in again["points"]] == [r["quality"] for r in rows]
    assert all((tmp_path / "out" / m / "weights.npz").stat().st_mtime_ns == t
               for m, t in trained.items())
    shutil.rmtree(tmp_path / "out" / models[(4, 2)])
    third = sweep()
    assert (tmp_path / "out" / models[(4, 2)] / "config.toml").is_file()
    assert [r["quality"] for r in third["points"]] == [r["quality"] for r in rows]

    sweep_file.write_text(text.replace("channels = [4, 2]", "states = [3]"))
    with pytest.raises(ConfigError, match="axes.states: 3 is not allowed for an s4d model"):
        sweep()
    metrics = json.loads((model_dir / "metrics.json").read_text())
    old = tmp_path / "old_model"
    shutil.copytree(model_dir, old)
    del metrics["hyper"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    without_epochs = text.replace("\nepochs = 1\n", "\n")
    sweep_file.write_text(without_epochs.replace(str(model_dir), str(old)))
    with pytest.raises(ConfigError, match="training.qat_lr: .* does not record it"):
        sweep()


# --- noise injection (train/noise.py) and the mnist1d task ---------------------------------------

from ssmgen.train.noise import Noise, NoiseInjector, load_variant, noisy_accuracy, state_ranges  # noqa: E402


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_zero_noise_is_the_identity_and_noise_is_seeded(digits, kind):
    """An injector at zero noise leaves the quantized forward pass bit-equal to the golden
    network and the float one equal to the float reference; a seed fixes every draw, another
    seed gives other draws; a device keeps its weight draw until resample()."""
    model = SSMNetwork(kind=kind, channels=4, modes=3, layers=2, classes=10, seed=SEED)
    fit(model, digits.x_train[:48], digits.y_train[:48], epochs=1, lr=0.01, progress=False)
    config = _config_for(model, digits.x_train, widths_from_bits(weights=8, state=8,
                                                                 activations=8), 64)
    qnet = quantize_network(config, model.network_weights())
    ranges = state_ranges(qnet)
    x = torch.as_tensor(digits.x_test[:16])
    model.eval()
    with torch.no_grad():
        silent = NoiseInjector(Noise(), ranges)
        golden = golden_logits(qnet, digits.x_test[:16]) * 2.0 ** -qnet.logits_frac
        np.testing.assert_array_equal(model(x, config, silent).numpy(), golden)
        np.testing.assert_allclose(model(x, None, silent).numpy(), model(x).numpy(), atol=1e-9)

        def run(noise, injector=None):
            return model(x, config, injector or NoiseInjector(noise, ranges)).numpy()
        for noise in (Noise(weight=0.05, seed=3), Noise(state=0.05, seed=3)):
            a, b = run(noise), run(noise)
            np.testing.assert_array_equal(a, b)
            assert not np.array_equal(a, golden)
            other = Noise(weight=noise.weight, state=noise.state, seed=4)
            assert not np.array_equal(a, run(other))
        device = NoiseInjector(Noise(weight=0.05, seed=1), ranges)
        first = run(None, device)
        np.testing.assert_array_equal(first, run(None, device))   # the same chip
        device.resample()
        assert not np.array_equal(first, run(None, device))       # another chip


def test_noise_scales_with_each_tensor_and_state_range():
    """Weight noise std = level * max |w| of the tensor (re and im alike); state noise std =
    level * 2^(I_p - 1) of each state's format."""
    n = 200_000
    injector = NoiseInjector(Noise(weight=0.1, state=0.01, seed=0),
                             [np.array([1.0, 8.0])])
    w = torch.zeros(n, dtype=torch.float64)
    w[0] = -4.0
    np.testing.assert_allclose(torch.std(injector.weight(w, "w")[1:] - w[1:]).item(), 0.4,
                               rtol=0.02)
    z = torch.zeros(n, dtype=torch.complex128)
    z[0] = 2j
    noisy = injector.weight(z, "z")
    for part in (noisy.real, noisy.imag):
        np.testing.assert_allclose(torch.std(part[1:]).item(), 0.2, rtol=0.02)
    x = injector.state(torch.zeros(n, 2, dtype=torch.float64), 0)
    np.testing.assert_allclose(torch.std(x, dim=0).numpy(), [0.01, 0.08], rtol=0.02)
    with pytest.raises(ValueError, match="no state ranges for layer 1"):
        injector.state(torch.zeros(3, 2, dtype=torch.float64), 1)


@pytest.mark.parametrize("field,value", [("weight", -0.1), ("state", 1.5), ("weight", float("nan")),
                                         ("seed", -1)])
def test_noise_levels_name_their_field(field, value):
    with pytest.raises(ValueError, match=f"noise.{field}: must be"):
        Noise(**{field: value})


def test_noisy_accuracy_at_zero_noise_is_each_models_exported_accuracy(model_dir):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    task = load_task("sdigits").subset(None, 40)
    for variant in ("float", "ptq", "qat"):
        model, config, qnet = load_variant(model_dir, variant)
        assert (config is None) == (variant == "float")
        accuracy = noisy_accuracy(model, config, qnet, task.x_test, task.y_test, Noise())
        assert accuracy == pytest.approx(metrics[f"{variant}_acc"], abs=1e-12), variant
    with pytest.raises(ValueError, match="variant: must be one of"):
        load_variant(model_dir, "int8")


def test_eval_under_noise_on_the_command_line(model_dir, capsys):
    argv = ["eval", str(model_dir), "--test-subset", "40", "--noise-weight", "0.05",
            "--noise-state", "0.02", "--noise-seed", "7"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "under noise (weight 0.05, state 0.02, seed 7)" in first
    assert main(argv) == 0
    assert capsys.readouterr().out.split(" in ")[0] == first.split(" in ")[0]    # seeded
    for bad, message in (([ "--noise-weight", "2"], "--noise-weight: must be a number in 0..1"),
                         (["--noise-seed", "-2", "--noise-state", "0.1"], "--noise-seed: must be"),
                         (["--noise-weight", "0.1", "--engine", "rtl"], "applies to --engine")):
        assert main(["eval", str(model_dir), *bad]) != 0
        assert message in capsys.readouterr().err
    assert main(["eval", str(model_dir / "config.toml"), "--noise-weight", "0.1"]) != 0
    assert "needs the MODEL_DIR itself" in capsys.readouterr().err


def _qat_from(model_dir, out, *options) -> dict:
    """QAT of the fixture's float model with ``options``; checks that the exported model is
    still exactly the golden network (its recorded accuracy) and returns its metrics."""
    assert main(["train", "--task", "sdigits", "-o", str(out), "--init",
                 str(model_dir / "checkpoints" / "float.pt"), "--train-subset", "64",
                 "--test-subset", "40", "--bits", "8", "--weight-bits", "6", "--lanes", "2",
                 "--no-progress", *options]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    task = load_task("sdigits").subset(None, 40)
    model, config, qnet = load_variant(out, "qat")
    assert noisy_accuracy(model, config, qnet, task.x_test, task.y_test, Noise()) == \
        pytest.approx(metrics["qat_acc"], abs=1e-12)
    return metrics


def test_noise_aware_qat_trains_and_records_its_noise(model_dir, tmp_path):
    metrics = _qat_from(model_dir, tmp_path / "noisy", "--qat-epochs", "1",
                        "--qat-noise-weight", "0.02", "--qat-noise-state", "0.01")
    assert metrics["qat_noise"] == {"weight": 0.02, "state": 0.01, "seed": 0}
    # fine-tuned from --init: no float recipe of its own to retrain other sizes with
    assert metrics["hyper"]["epochs"] is None and metrics["hyper"]["lr"] is None


def test_mnist1d_task_is_generated_offline_and_deterministic():
    pytest.importorskip("mnist1d", reason="the [train] extra installs mnist1d")
    import random
    np.random.seed(123)
    random.seed(123)
    before = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    a = load_task("mnist1d")
    assert (np.random.random(), random.random()) == before     # the caller's generators kept
    b = load_task("mnist1d")
    assert a.x_train.shape == (4000, 40, 1) and a.x_test.shape == (1000, 40, 1)
    assert a.classes == 10 and set(np.unique(a.y_test)) == set(range(10))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    a.x_train[0] = 99.0                                          # a copy per caller
    assert load_task("mnist1d").x_train[0, 0, 0] != 99.0


def test_state_formats_span_at_most_max_state_span(digits):
    """A mode whose state range is far below its layer's largest gets the layer's integer bits
    minus MAX_STATE_SPAN, so that the exact state sum stays within int64 (mnist1d has modes at
    2^-24); modes within the span keep their own formats."""
    from ssmgen.train.ptq import MAX_STATE_SPAN
    model = SSMNetwork(kind="s4d", channels=2, modes=2, layers=1, classes=10, seed=SEED)
    cal = calibrate(model.network_weights(), digits.x_train[:32], activation=model.activation)
    cal.state = [np.array([4.0, 2.0 ** -3, 2.0 ** -30, 0.0])]
    data = build_config(model.meta, cal, widths_from_bits(weights=16, state=16, activations=16),
                        steps=64)
    top = int_bits_for(4.0, 16)
    assert data["network"]["state_int_bits"] == [[top, int_bits_for(2.0 ** -3, 16),
                                                  top - MAX_STATE_SPAN, top - MAX_STATE_SPAN]]
    quantize_network(parse(data), model.network_weights())     # the exact sums fit int64


def test_distillation_and_progressive_qat_export_a_golden_model(model_dir, tmp_path):
    """--qat-distill and --qat-schedule change only how QAT trains: the exported model is at the
    target widths and its golden accuracy is the one recorded."""
    out = tmp_path / "progressive"
    metrics = _qat_from(model_dir, out, "--qat-epochs", "2", "--qat-distill", "0.5",
                        "--qat-schedule", "8")
    assert metrics["qat_distill"] == 0.5 and metrics["qat_schedule"] == [8]
    assert load_config(out / "config.toml").quant.abar.format.width == 6


@pytest.mark.parametrize("flags,message", [
    (["--qat-distill", "1.5"], "--qat-distill: must be in 0..1"),
    (["--qat-schedule", "6,8"], "--qat-schedule: widths must decrease"),
    (["--qat-schedule", "4", "--bits", "4"], "above the narrowest target width 4"),
    (["--qat-schedule", "eight"], "--qat-schedule: must be comma-separated widths"),
])
def test_qat_recipe_options_name_their_field(tmp_path, capsys, flags, message):
    assert main(["train", "-o", str(tmp_path / "x"), *flags]) != 0
    assert message in capsys.readouterr().err


# --- sequence to sequence: a per-step readout, the lorenz task -----------------------------------

def test_lorenz_task_is_generated_offline_and_deterministic():
    from ssmgen.train.tasks import nrmse
    task = load_task("lorenz")
    assert task.per_step and task.classes == 1
    assert task.x_train.shape == (2000, 64, 1) and task.y_test.shape == (500, 64, 1)
    again = load_task("lorenz")
    np.testing.assert_array_equal(task.x_test, again.x_test)
    # the target is the next sample of the same (standardised) trajectory
    np.testing.assert_array_equal(task.y_train[:, :-1], task.x_train[:, 1:])
    assert abs(task.x_train.mean()) < 0.01 and abs(task.x_train.std() - 1) < 0.05
    # repeating the last input (persistence) is the baseline a model must beat
    assert 0.1 < nrmse(task.x_test, task.y_test) < 0.4
    assert nrmse(task.y_test, task.y_test) == 0.0


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_per_step_qat_forward_equals_golden_integer_network(kind):
    """A sequence model's eval-mode QAT outputs at every timestep == the golden integer
    network's, bit for bit; MSE training reduces the loss."""
    task = load_task("lorenz").subset(48, 16)
    model = SSMNetwork(kind=kind, channels=4, modes=3, layers=2, classes=1, seed=SEED,
                       readout="per_step")
    history = fit(model, task.x_train, task.y_train, epochs=3, lr=0.01, progress=False)
    assert history[-1]["loss"] < history[0]["loss"] and "train_acc" not in history[-1]
    config = _config_for(model, task.x_train, widths_from_bits(weights=6, state=10,
                                                               activations=8), 64, "mse")
    assert config.network.per_step and config.network.pool is None
    qnet = quantize_network(config, model.network_weights())
    error, outputs = evaluate_torch(model, task.x_test, task.y_test, config=config)
    golden = golden_logits(qnet, task.x_test)
    assert golden.shape == (16, 64, 1)
    np.testing.assert_array_equal(outputs, golden * 2.0 ** -qnet.logits_frac)
    from ssmgen.train.tasks import nrmse
    assert error == nrmse(golden * 2.0 ** -qnet.logits_frac, task.y_test)


def test_train_and_eval_a_sequence_model(tmp_path, capsys):
    """`ssmgen train --task lorenz`: float, PTQ and QAT NRMSE in metrics.json (no accuracy),
    a per-step config exported, `eval` reproducing the QAT NRMSE, its Verilog generated, a sweep
    over it scored by 1 - NRMSE, its NRMSE under noise; board builds and distillation refuse a
    sequence model by name."""
    out = tmp_path / "lorenz"
    assert main(["train", "--task", "lorenz", "-o", str(out), "--train-subset", "64",
                 "--test-subset", "32", "--channels", "4", "--modes", "2", "--layers", "1",
                 "--epochs", "2", "--qat-epochs", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "lorenz: NRMSE float" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "nrmse" and "qat_acc" not in metrics
    assert metrics["model"]["readout"] == "per_step"
    config = load_config(out / "config.toml")
    assert config.network.readout == "per_step" and config.network.classes == 1
    assert main(["eval", str(out), "--task", "lorenz", "--test-subset", "32"]) == 0
    printed = capsys.readouterr().out
    assert f"lorenz golden: NRMSE {metrics['qat_nrmse']:.4f}, MSE " in printed
    assert "(32 sequences)" in printed
    assert main(["eval", str(out), "--task", "lorenz", "--engine", "float",
                 "--test-subset", "32"]) == 0
    # under noise: zero noise is the golden NRMSE, weight noise makes it worse
    capsys.readouterr()
    assert main(["eval", str(out), "--task", "lorenz", "--test-subset", "32",
                 "--noise-weight", "0"]) == 0
    assert f"NRMSE {metrics['qat_nrmse']:.4f}" in capsys.readouterr().out
    assert main(["eval", str(out), "--task", "lorenz", "--test-subset", "32",
                 "--noise-weight", "0.2", "--noise-seed", "3"]) == 0
    noisy = float(capsys.readouterr().out.split("NRMSE ")[1].split(" ")[0])
    assert noisy > metrics["qat_nrmse"]
    assert main(["eval", str(out), "--task", "sdigits", "--test-subset", "8"]) == 2
    assert "network.readout: the model has 'per_step', task sdigits needs 'mean'" in capsys.readouterr().err
    assert main(["generate", str(out), "-o", str(tmp_path / "rtl")]) == 0
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    assert manifest["stream"]["output_beat"] == "timestep"
    assert main(["build", str(out / "config.toml"), "--board", "icebreaker",
                 "-o", str(tmp_path / "board")]) != 0
    assert "no board protocol yet" in capsys.readouterr().err
    assert main(["train", "--task", "lorenz", "-o", str(tmp_path / "d"), "--init",
                 str(out / "checkpoints" / "float.pt"), "--qat-distill", "0.5",
                 "--train-subset", "16", "--test-subset", "8", "--no-progress"]) != 0
    assert "distillation (--qat-distill) is for classifiers" in capsys.readouterr().err
    # a sweep over it: quality 1 - NRMSE (higher is better, as accuracy), the NRMSE beside it
    from ssmgen.sweep.config import load_sweep
    from ssmgen.sweep.runner import run_sweep
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(_model_sweep(out, "width = [4, 8]").replace("test_subset = 40",
                                                                        "test_subset = 32"))
    results = run_sweep(load_sweep(sweep_file), tmp_path / "sweep", workers=1,
                        show_progress=False, say=lambda _: None)
    rows = {r["axis.width"]: r for r in results["points"]}
    assert all(r["quality_metric"] == "1-nrmse" and r["status"] == "ok" for r in rows.values())
    assert all(r["quality"] == pytest.approx(1 - r["nrmse"], abs=1e-12) for r in rows.values())
    assert all(0 < r["nrmse"] < 10 for r in rows.values())


@pytest.mark.rtl
def test_eval_rtl_of_a_sequence_model_gives_the_golden_nrmse(tmp_path, capsys):
    """A sequence model's generated Verilog produces every timestep's outputs bit for bit as
    the golden network does (the testbench compares them), so its NRMSE is golden's."""
    out = tmp_path / "lorenz"
    assert main(["train", "--task", "lorenz", "-o", str(out), "--train-subset", "32",
                 "--test-subset", "4", "--channels", "2", "--modes", "2", "--layers", "1",
                 "--epochs", "1", "--qat-epochs", "0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--task", "lorenz", "--test-subset", "4"]) == 0
    golden = capsys.readouterr().out.split("NRMSE ")[1].split(" ")[0]
    assert main(["eval", str(out), "--task", "lorenz", "--engine", "rtl", "--test-subset", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"lorenz rtl: NRMSE {golden}" in printed
    assert "every output of every timestep of all 4 sequences" in printed


def test_learned_activation_formats_stay_golden_and_move(digits):
    """--qat-learn-formats: the activation formats' fraction bits are parameters (LSQ/PACT with
    power-of-two steps). They get a gradient and move; the forward pass at any point is the
    golden network of the config with the rounded formats (eval mode: bit for bit)."""
    from ssmgen.train.learned_formats import ActivationFormats
    model = SSMNetwork(kind="s4d", channels=4, modes=3, layers=2, classes=10, seed=SEED)
    fit(model, digits.x_train[:48], digits.y_train[:48], epochs=1, lr=0.01, progress=False)
    cal = calibrate(model.network_weights(), digits.x_train, activation=model.activation)
    data = build_config(model.meta, cal, widths_from_bits(weights=6, state=8, activations=4),
                        steps=64, choice="mse")
    learned = ActivationFormats(data)
    start = {k: float(p.detach()) for k, p in learned.frac.items()}
    assert learned.rounded() == {k: round(v) for k, v in start.items()}
    fit(model, digits.x_train[:48], digits.y_train[:48], epochs=2, lr=0.002, progress=False,
        learned=learned, format_lr=0.3)
    moved = {k: float(p.detach()) - start[k] for k, p in learned.frac.items()}
    assert all(abs(v) > 0 for v in moved.values()), moved
    exported = parse(learned.config_data())
    assert exported.quant.input.format.width == 4
    assert exported.quant.input.format.frac == learned.rounded()["stream"]
    assert exported.quant.output.format.frac == learned.rounded()["ssm_out"]
    qnet = quantize_network(exported, model.network_weights())
    golden = golden_logits(qnet, digits.x_test) * 2.0 ** -qnet.logits_frac
    _, logits = evaluate_torch(model, digits.x_test, digits.y_test, config=exported)
    np.testing.assert_array_equal(logits, golden)
    model.eval()
    with torch.no_grad():
        through = model(torch.as_tensor(digits.x_test), learned=learned).numpy()
    np.testing.assert_array_equal(through, golden)


def test_learned_formats_on_the_command_line_are_recorded(tmp_path, capsys):
    out = tmp_path / "lf"
    assert main(["train", "--task", "sdigits", "-o", str(out), "--train-subset", "48",
                 "--test-subset", "16", "--channels", "4", "--modes", "2", "--layers", "1",
                 "--epochs", "1", "--qat-epochs", "1", "--bits", "4", "--state-bits", "8",
                 "--qat-learn-formats", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    learned = metrics["qat_learned_formats"]
    config = load_config(out / "config.toml")
    assert learned["stream"]["to"] == str(config.quant.input.format)
    assert learned["ssm_out"]["to"] == str(config.quant.output.format)
    assert main(["eval", str(out), "--test-subset", "16"]) == 0
    assert f"accuracy {metrics['qat_acc']:.4f}" in capsys.readouterr().out
    assert main(["train", "-o", str(tmp_path / "x"), "--qat-learn-formats", "--qat-schedule",
                 "8", "--bits", "6", "--no-progress"]) == 2
    assert "--qat-learn-formats: learns the formats of the target widths" in capsys.readouterr().err
