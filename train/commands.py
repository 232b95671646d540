"""``ssmgen train`` and ``ssmgen eval``.

``train``: float training -> B/C equalization (function-preserving) -> PTQ (calibrated formats,
golden integer network) -> QAT (fake quantization through golden/, STE) -> MODEL_DIR::

    config.toml           network config of the QAT model (load_config / the golden model)
    weights.npz           its float weights (golden/network.py layout); config.toml quantizes
                          them into exactly the integers QAT trained with
    integer_weights.npz   those integers and their fraction bits (QuantizedNetwork.integer_arrays)
    ptq_config.toml       the PTQ config (same widths, calibrated on the float model) and
    ptq_weights.npz       the float model's weights
    metrics.json          float, PTQ and QAT accuracy (QAT and PTQ measured on the golden
                          integer network), sizes, seeds, widths, times
    checkpoints/          float.pt, qat.pt (torch state dicts; --init resumes from float.pt)

``eval``: accuracy of a MODEL_DIR (or config) on a task's test split with the float reference or
the golden integer network, or the generated Verilog of the whole network (``--engine rtl``,
sim/native/bench.py), which must give exactly the golden model's predictions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..design import Design
from ..golden.network import predict, run_float_network
from ..golden.quantize import load_network
from ..spec.config import MAX_POLAR_BITS, MIN_THETA_BITS, load_config
from ..spec.errors import ConfigError
from ..spec.formats import to_float
from ..spec.weights import load_network_npz, save_network_npz
from ..util.progress import say

__all__ = ["train_model", "widths_from_bits", "cmd_train", "cmd_eval", "evaluate_model_dir"]


def widths_from_bits(*, weights: int, state: int, activations: int, abar: int | None = None,
                     bias: int | None = None) -> dict:
    """Widths of every tensor group (train.ptq.WIDTH_KEYS) from three knobs: weights (Abar,
    Bbar, C, D, encoder, mixing, decoder), state, activations (network input, residual stream,
    SSM output, pool). Biases default to max(weights, activations)."""
    from .ptq import uniform_widths
    for name, value in (("weight", weights), ("state", state), ("act", activations),
                        ("abar", abar), ("bias", bias)):
        if value is not None and not 2 <= value <= 24:
            raise ConfigError(f"--{name}-bits: must be in 2..24, not {value}")
    bias = max(weights, activations) if bias is None else bias
    return uniform_widths(weights, abar=weights if abar is None else abar, state=state,
                          stream=activations, ssm_out=activations, net_input=activations,
                          pool=activations, encoder_bias=bias, mix_bias=bias, decoder_bias=bias)


def _hardware_options(args):
    """``--dsp-products`` / ``--fold-layers`` as an ``adjust_config`` hook that writes them into
    every config's ``[hardware]`` (None: neither given). They change the circuit, not the
    arithmetic, so PTQ and QAT see the same numbers either way; each config is validated with
    them, so a bad combination stops the run before training."""
    extra = {}
    if args.dsp_products is not None:
        if args.dsp_products < 0:
            raise ConfigError(f"--dsp-products: must be >= 0, not {args.dsp_products}")
        extra["dsp_products"] = args.dsp_products
    if args.fold_layers:
        # the rest (lanes, timing) is checked with the first config, after float training
        if args.kind != "s4d" or args.layers != 2:
            raise ConfigError(f"--fold-layers: folds two s4d layers, not --kind {args.kind} "
                              f"--layers {args.layers}")
        extra["fold_layers"] = True
    if not extra:
        return None
    return lambda data: data["hardware"].update(extra)


def train_model(task, *, out_dir: Path, kind="s4d", channels=32, modes=16, layers=2,
                epochs=100, qat_epochs=6, lr=0.01, qat_lr=0.002, batch_size=64, seed=0,
                widths: dict, dropout=0.2, init=None, progress=True, calib_samples=512,
                name="ssm_net", augment=False, calib="mse", calib_percentile=100.0,
                equalize=True, abar_form: dict | None = None, lanes: int | None = None,
                qat_noise=None, qat_distill: float = 0.0, qat_schedule=(),
                qat_learn_formats: bool = False, adjust_config=None) -> dict:
    """The whole pipeline; returns metrics (also written to out_dir/metrics.json). ``augment``:
    use the task's training-time augmentation (sdigits: random 1-pixel shifts). ``calib``: how
    each tensor's integer bits are chosen (train.ptq.FORMAT_CHOICES; ``calib_percentile`` is the
    range of the ``"range"`` rule). ``equalize``: rescale B and C per mode before PTQ
    (``SSMNetwork.equalize_``; the float model's function is unchanged). ``abar_form``: extra
    ``quant.abar`` keys (the polar form: train.ptq.build_config). ``lanes``: the exported
    config's ``hardware.lanes`` (None: gcd(states, 16)). ``qat_noise`` (``train.noise.Noise``):
    noise-aware QAT, weights and states perturbed during fine-tuning (QS4D). ``qat_distill``: the
    weight of distillation from the float model during QAT (0: off; ``loop.fit``).
    ``qat_schedule``: progressive QAT, e.g. (8, 6): the QAT epochs are split into
    len + 1 stages, stage i with every width below qat_schedule[i] raised to it, the last at
    ``widths`` (formats calibrated once, on the float model). ``qat_learn_formats``: QAT learns
    the activation formats' fraction bits too (``train.learned_formats``; LSQ/PACT with
    power-of-two steps), starting from the calibrated ones. ``adjust_config``: called on every
    config dict built (PTQ, QAT stages, export) before it is used, e.g. to give one layer its
    own formats (``network.layer_quant``, as ``ssmgen sweep``'s per-layer width axes do)."""
    augment = task.augment if augment else None
    import torch

    from .loop import (evaluate_golden, evaluate_torch, fit, load_checkpoint, save_checkpoint)
    from .model import SSMNetwork
    from .ptq import build_config, calibrate, parse, to_toml

    torch.set_num_threads(1)   # small tensors: more threads only add overhead
    out_dir = Path(out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    metrics = {"task": task.name, "seed": seed, "augment": augment is not None,
               "train_samples": len(task.x_train),
               "test_samples": len(task.x_test),
               # what retraining this model at another size or width needs (ssmgen sweep);
               # a model fine-tuned from --init records no float recipe of its own
               "hyper": {"epochs": epochs if init is None else None,
                         "lr": lr if init is None else None, "qat_lr": qat_lr,
                         "batch_size": batch_size, "dropout": dropout}}

    def built(data: dict) -> dict:
        if adjust_config is not None:
            adjust_config(data)
        return data
    t0 = time.perf_counter()
    if init is not None:
        model = load_checkpoint(init)
        model.dropout.p = model.meta["dropout"] = dropout     # --dropout applies to QAT here
        say(f"float model from {init} (no float training)")
        metrics["float_epochs"] = 0
    else:
        model = SSMNetwork(kind=kind, inputs=task.inputs, channels=channels, modes=modes,
                           layers=layers, classes=task.classes, dropout=dropout, seed=seed,
                           readout=task.readout)
        say(f"float training: {kind}, H={channels}, modes={modes}, L={layers}, "
             f"{epochs} epochs on {len(task.x_train)} samples")
        fit(model, task.x_train, task.y_train, epochs=epochs, lr=lr, batch_size=batch_size,
            seed=seed, progress=progress, desc="float", checkpoint=out_dir / "checkpoints/float.pt",
            augment=augment)
        metrics["float_epochs"] = epochs
    save_checkpoint(model, out_dir / "checkpoints/float.pt", extra={"phase": "float"})
    if (model.meta["inputs"] != task.inputs or model.meta["classes"] != task.classes
            or model.readout != task.readout):
        raise ConfigError(f"--init: the checkpoint's model has {model.meta['inputs']} inputs, "
                          f"{model.meta['classes']} outputs and a {model.readout!r} readout; "
                          f"task {task.name} needs {task.inputs}, {task.classes} and "
                          f"{task.readout!r}")
    metrics["model"] = {k: model.meta[k] for k in ("kind", "inputs", "channels", "modes",
                                                   "layers", "classes", "activation")}
    # a classifier's accuracy, or a sequence model's NRMSE (lower is better)
    key, what = ("nrmse", "NRMSE") if task.per_step else ("acc", "accuracy")
    if task.per_step:
        metrics["model"]["readout"] = "per_step"
        metrics["metric"] = "nrmse"
    metrics["float_seconds"] = round(time.perf_counter() - t0, 1)
    metrics[f"float_{key}"], _ = evaluate_torch(model, task.x_test, task.y_test)
    say(f"float test {what} {metrics[f'float_{key}']:.4f} ({metrics['float_seconds']} s)")

    # PTQ: calibrate on (part of) the training split, quantize with the golden model
    if equalize:
        model.equalize_()
    metrics["equalize"] = equalize
    float_weights = model.network_weights()
    cal = calibrate(float_weights, task.x_train[:calib_samples], activation=model.activation,
                    percentile=calib_percentile)
    metrics["calib"] = calib
    metrics["calib_percentile"] = calib_percentile
    ptq_data = built(build_config(model.meta, cal, widths, name=f"{name}_ptq", steps=task.steps,
                                  weights_file="ptq_weights.npz", choice=calib,
                                  abar_form=abar_form, lanes=lanes))
    metrics["abar_form"] = abar_form or {"form": "cartesian"}
    ptq_config = parse(ptq_data, out_dir)
    metrics[f"ptq_{key}"], _ = evaluate_golden(ptq_config, float_weights, task.x_test, task.y_test)
    say(f"PTQ test {what} {metrics[f'ptq_{key}']:.4f} (golden integer network)")
    save_network_npz(out_dir / "ptq_weights.npz", float_weights)
    (out_dir / "ptq_config.toml").write_text(to_toml(ptq_data, header=_header("PTQ", widths)))

    # QAT: fine-tune through fake quantization with the PTQ formats
    t1 = time.perf_counter()
    data = dict(ptq_data, name=name, weights={"source": "file", "file": "weights.npz"})
    config = parse(data, out_dir)
    if qat_epochs > 0:
        say(f"QAT: {qat_epochs} epochs")
        injector = None
        if qat_noise is not None and not qat_noise.zero:
            from .noise import NoiseInjector, state_ranges
            injector = NoiseInjector(qat_noise, state_ranges(load_network(ptq_config)))
            metrics["qat_noise"] = {"weight": qat_noise.weight, "state": qat_noise.state,
                                    "seed": qat_noise.seed}
        teacher = None
        if qat_distill > 0:
            import copy
            teacher = copy.deepcopy(model).eval()     # the (equalized) float model, frozen
            for parameter in teacher.parameters():
                parameter.requires_grad_(False)
            metrics["qat_distill"] = qat_distill
        stages = [(dict(widths, **{k: max(v, floor) for k, v in widths.items()}), f"qat{floor}")
                  for floor in qat_schedule] + [(widths, "qat")]
        if qat_schedule:
            metrics["qat_schedule"] = list(qat_schedule)
        learned = None
        if qat_learn_formats:
            from .learned_formats import ActivationFormats
            learned = ActivationFormats(data, out_dir)
        for index, (stage_widths, desc) in enumerate(stages):
            epochs_here = (qat_epochs * (index + 1)) // len(stages) - (qat_epochs * index) // len(stages)
            stage_config = config if stage_widths is widths else parse(built(build_config(
                model.meta, cal, stage_widths, name=name, steps=task.steps, choice=calib,
                abar_form=abar_form, lanes=lanes)), out_dir)
            if epochs_here:
                fit(model, task.x_train, task.y_train, epochs=epochs_here, lr=qat_lr,
                    batch_size=batch_size, seed=seed + 1 + index, config=stage_config,
                    progress=progress, desc=desc, checkpoint=out_dir / "checkpoints/qat.pt",
                    augment=augment, noise=injector, teacher=teacher, distill=qat_distill,
                    learned=learned if stage_widths is widths else None)
        if learned is not None:      # the learned formats are the exported model's
            data = learned.config_data()
            config = parse(data, out_dir)
            metrics["qat_learned_formats"] = learned.report()
            say("QAT learned formats: " + ", ".join(f"{k} {v['from']} -> {v['to']}"
                                                   for k, v in metrics["qat_learned_formats"].items()))
    metrics["qat_epochs"] = qat_epochs
    metrics["qat_seconds"] = round(time.perf_counter() - t1, 1)
    qat_weights = model.network_weights()
    metrics[f"qat_{key}"], _ = evaluate_golden(config, qat_weights, task.x_test, task.y_test)
    say(f"QAT test {what} {metrics[f'qat_{key}']:.4f} (golden integer network, "
         f"{metrics['qat_seconds']} s)")

    save_network_npz(out_dir / "weights.npz", qat_weights)
    (out_dir / "config.toml").write_text(to_toml(data, header=_header("QAT", widths)))
    exported = load_config(out_dir / "config.toml")
    qnet = load_network(exported)
    np.savez(out_dir / "integer_weights.npz", **qnet.integer_arrays())
    metrics["widths"] = widths
    metrics["float64_exact"] = qnet.float64_exact
    metrics["max_exact_bits"] = qnet.max_exact_bits
    metrics["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _header(kind: str, widths: dict) -> str:
    return (f"# Written by `ssmgen train` ({kind}). Formats calibrated on the training split;\n"
            f"# widths: {', '.join(f'{k} {v}' for k, v in widths.items())}\n")


def cmd_train(args) -> int:
    from .tasks import load_task
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RuntimeError("ssmgen train needs PyTorch: pip install 'ssmgen[train]' "
                           "(CPU: pip install torch==2.13.0)") from None
    abar_form, abar_bits = _abar_form(args)
    widths = widths_from_bits(weights=args.weight_bits or args.bits, state=args.state_bits or args.bits,
                              activations=args.act_bits or args.bits, abar=abar_bits)
    for flag in ("epochs", "qat_epochs"):
        if getattr(args, flag) < 0:
            raise ConfigError(f"--{flag.replace('_', '-')}: must be >= 0, not {getattr(args, flag)}")
    if not 0 <= args.dropout < 1:
        raise ConfigError(f"--dropout: must be in [0, 1), not {args.dropout}")
    for flag in ("channels", "modes", "layers", "batch_size"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')}: must be >= 1, not {getattr(args, flag)}")
    if args.lanes is not None and args.init is None:   # with --init: checked on the config
        states = args.channels * args.modes if args.kind == "s4d" else args.modes
        if args.lanes < 1 or states % args.lanes:
            raise ConfigError(f"--lanes: must divide the layer's {states} states, not "
                              f"{args.lanes}")
    if not 50 <= args.calib_percentile <= 100:
        raise ConfigError(f"--calib-percentile: must be in 50..100, not {args.calib_percentile}")
    if args.calib != "range" and args.calib_percentile != 100:
        raise ConfigError(f"--calib-percentile: applies to --calib range only (--calib is "
                          f"{args.calib}; the mse rule picks its own clipping)")
    qat_noise = _noise(args, "qat_noise")
    if not 0 <= args.qat_distill <= 1:
        raise ConfigError(f"--qat-distill: must be in 0..1, not {args.qat_distill}")
    schedule = _schedule(args.qat_schedule, widths)
    if args.qat_learn_formats and schedule:
        raise ConfigError("--qat-learn-formats: learns the formats of the target widths; not "
                          "with --qat-schedule")
    task = load_task(args.task).subset(args.train_subset, args.test_subset)
    metrics = train_model(task, out_dir=Path(args.output), kind=args.kind, channels=args.channels,
                          modes=args.modes, layers=args.layers, epochs=args.epochs,
                          qat_epochs=args.qat_epochs, lr=args.lr, qat_lr=args.qat_lr,
                          batch_size=args.batch_size, seed=args.seed, widths=widths,
                          qat_noise=qat_noise, qat_distill=args.qat_distill,
                          qat_schedule=schedule, qat_learn_formats=args.qat_learn_formats,
                          dropout=args.dropout,
                          init=args.init, progress=not args.no_progress, augment=args.augment,
                          calib=args.calib, calib_percentile=args.calib_percentile,
                          equalize=not args.no_equalize, name=f"{args.task}_{args.kind}",
                          abar_form=abar_form, lanes=args.lanes,
                          adjust_config=_hardware_options(args))
    key = metrics.get("metric", "acc")
    what = "NRMSE " if key == "nrmse" else ""
    print(f"{task.name}: {what}float {metrics[f'float_{key}']:.4f}, PTQ {metrics[f'ptq_{key}']:.4f}, "
          f"QAT {metrics[f'qat_{key}']:.4f} ({metrics['total_seconds']} s) -> {args.output}")
    return 0


#: Decoded Abar width of the polar form when --abar-bits is not given: the radius of a slow
#: pole (1 - |Abar| ~ 0.005 on sdigits, 4 mantissa bits) needs ~12 fraction bits to survive.
POLAR_DECODED_BITS = 16


def _abar_form(args) -> tuple[dict | None, int | None]:
    """--abar-form and its bit counts -> (extra quant.abar keys or None, Abar width or None)."""
    if args.abar_form == "cartesian":
        for flag in ("rho_bits", "theta_bits"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')}: applies to --abar-form polar only")
        return None, args.abar_bits
    rho = 4 if args.rho_bits is None else args.rho_bits
    theta = 6 if args.theta_bits is None else args.theta_bits
    if not 1 <= rho <= MAX_POLAR_BITS:
        raise ConfigError(f"--rho-bits: must be in 1..{MAX_POLAR_BITS}, not {rho}")
    if not MIN_THETA_BITS <= theta <= MAX_POLAR_BITS:
        raise ConfigError(f"--theta-bits: must be in {MIN_THETA_BITS}..{MAX_POLAR_BITS}, "
                          f"not {theta}")
    bits = POLAR_DECODED_BITS if args.abar_bits is None else args.abar_bits
    return {"form": "polar", "rho_bits": rho, "theta_bits": theta}, bits


def _schedule(text: str | None, widths: dict) -> tuple[int, ...]:
    """--qat-schedule "8,6" -> (8, 6): decreasing widths, each above the narrowest target width."""
    if not text:
        return ()
    try:
        stages = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--qat-schedule: must be comma-separated widths, e.g. 8,6, not "
                          f"{text!r}") from None
    narrowest = min(widths.values())
    if any(b <= narrowest or b > 24 for b in stages) or list(stages) != sorted(stages, reverse=True):
        raise ConfigError(f"--qat-schedule: widths must decrease and lie in {narrowest + 1}..24 "
                          f"(above the narrowest target width {narrowest}), not {text!r}")
    return stages


def _noise(args, prefix: str):
    """``--{prefix}-weight/-state/-seed`` as a ``train.noise.Noise`` (None when both are 0)."""
    from .noise import Noise
    weight, state = getattr(args, f"{prefix}_weight"), getattr(args, f"{prefix}_state")
    seed = getattr(args, f"{prefix}_seed")
    flag = "--" + prefix.replace("_", "-")
    try:
        noise = Noise(weight=weight, state=state, seed=seed)
    except ValueError as exc:       # "noise.weight: ..." -> the flag's name
        field = str(exc).split(":")[0].split(".")[-1]
        raise ConfigError(f"{flag}-{field}:{str(exc).split(':', 1)[1]}") from None
    return None if noise.zero else noise


def evaluate_model_dir(path, task_name: str, engine: str, *, test_subset=None,
                       progress: bool = True, noise=None) -> dict:
    """Accuracy of a MODEL_DIR (or its config.toml) on a task's test split. ``noise``
    (``train.noise.Noise``): engines float (the float-trained checkpoint) and golden (the
    exported model through its config) under weight and state noise, in the torch model."""
    from .tasks import load_task
    path = Path(path)
    if noise is not None:
        if engine == "rtl":
            raise ConfigError("--noise-*: applies to --engine float or golden (the generated "
                              "Verilog is exact integer arithmetic)")
        if not path.is_dir():
            raise ConfigError(f"{path}: noise evaluation needs the MODEL_DIR itself (its "
                              f"checkpoints), not a config file")
    config = load_config(path / "config.toml" if path.is_dir() else path)
    net = config.network
    if net is None:
        raise ConfigError(f"{path}: the config has no [network] section; eval needs a whole model "
                          f"(ssmgen train -o MODEL_DIR writes one)")
    task = load_task(task_name).subset(None, test_subset)
    if net.readout != task.readout:
        raise ConfigError(f"network.readout: the model has {net.readout!r}, task {task_name} "
                          f"needs {task.readout!r}")
    for field, want in (("inputs", task.inputs), ("steps", task.steps), ("classes", task.classes)):
        if getattr(net, field) != want:
            name = "outputs" if (field == "classes" and task.per_step) else field
            raise ConfigError(f"network.{name}: the model has {getattr(net, field)}, task "
                              f"{task_name} needs {want}")
    start = time.perf_counter()
    if noise is not None:
        import torch

        from .noise import load_variant, noisy_accuracy
        torch.set_num_threads(1)
        model, variant_config, qnet = load_variant(path, "float" if engine == "float" else "qat")
        accuracy = noisy_accuracy(model, variant_config, qnet, task.x_test, task.y_test, noise)
        if task.per_step:
            return {"engine": engine, "task": task_name, "total": len(task.x_test),
                    "nrmse": accuracy, "seconds": time.perf_counter() - start, "noise": noise}
        correct = round(accuracy * len(task.y_test))
        return {"engine": engine, "task": task_name, "correct": correct,
                "total": len(task.y_test), "accuracy": accuracy,
                "seconds": time.perf_counter() - start, "noise": noise}
    if engine == "float":
        weights = load_network_npz(config.weights.path, config)
        logits = run_float_network(weights, task.x_test, activation=net.activation,
                                   readout=net.readout)
        values = logits
    elif engine == "golden":
        from .loop import golden_logits
        qnet = load_network(config)
        logits = golden_logits(qnet, task.x_test)
        values = to_float(logits, qnet.logits_frac)
    elif engine == "rtl":
        # The generated Verilog of the whole network in the native stream bench (Verilator);
        # every output is checked against the golden model (a difference raises).
        from tqdm import tqdm

        design = Design.from_quantized(load_network(config))
        say("rtl: generating the network's Verilog and building the simulator (minutes; "
             "cached for this network after the first run) ...")
        bar = None

        def advance(done, total):          # the bar starts with the simulation, not the build
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, desc="rtl sequences", unit="seq", disable=not progress)
            bar.update(done - bar.n)
        try:
            logits = design.run_rtl(design.quantize_input(task.x_test), check=True,
                                    progress=advance)
        finally:
            if bar is not None:
                bar.close()
        values = design.dequantize_output(logits)
    else:
        raise ValueError(f"--engine: must be float, golden or rtl, not {engine!r}")
    if task.per_step:
        from .tasks import nrmse
        return {"engine": engine, "task": task_name, "total": len(task.x_test),
                "nrmse": nrmse(values, task.y_test),
                "mse": float(np.mean((np.asarray(values) - task.y_test) ** 2)),
                "seconds": time.perf_counter() - start}
    pred = predict(logits)
    correct = int(np.sum(pred == task.y_test))
    return {"engine": engine, "task": task_name, "correct": correct, "total": len(task.y_test),
            "accuracy": correct / max(1, len(task.y_test)),
            "seconds": time.perf_counter() - start, "predictions": pred}


def cmd_eval(args) -> int:
    noise = _noise(args, "noise")
    result = evaluate_model_dir(args.model, args.task, args.engine, test_subset=args.test_subset,
                                noise=noise)
    under = ("" if noise is None else f" under noise (weight {noise.weight}, state "
             f"{noise.state}, seed {noise.seed})")
    if "nrmse" in result:             # a sequence model: the outputs' error at every step
        mse = f", MSE {result['mse']:.4g}" if "mse" in result else ""
        print(f"{result['task']} {result['engine']}: NRMSE {result['nrmse']:.4f}{mse} "
              f"({result['total']} sequences){under} in {result['seconds']:.2f} s")
    else:
        print(f"{result['task']} {result['engine']}: accuracy {result['accuracy']:.4f} "
              f"({result['correct']}/{result['total']}){under} in {result['seconds']:.2f} s")
    if args.engine == "rtl":      # a difference would have raised: say what was checked
        what = ("output of every timestep" if "nrmse" in result
                else "logit and prediction")
        print(f"the generated Verilog matched the golden integer model on every {what} of "
              f"all {result['total']} sequences (bit for bit)")
    return 0


def add_parsers(sub) -> None:
    """The ``train`` and ``eval`` subcommands (ssmgen/cli.py calls this)."""
    from .ptq import FORMAT_CHOICES
    from .tasks import TASKS
    p = sub.add_parser("train", help="train a network (float, PTQ, QAT) and export MODEL_DIR "
                                     "(needs the [train] extra)")
    p.add_argument("--task", choices=TASKS, default="sdigits",
                   help="the dataset (built in, nothing downloaded) (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="MODEL_DIR to write")
    p.add_argument("--kind", choices=("s4d", "s5"), default="s4d",
                   help="SSM layer kind (default: %(default)s)")
    p.add_argument("--channels", type=int, default=32,
                   help="H, the residual stream width (default: %(default)s)")
    p.add_argument("--modes", type=int, default=16,
                   help="s4d: complex modes per channel (N/2); s5: states P (default: %(default)s)")
    p.add_argument("--layers", type=int, default=2, help="SSM layers (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=100, help="float epochs (default: %(default)s)")
    p.add_argument("--qat-epochs", type=int, default=6,
                   help="QAT fine-tuning epochs; 0 skips QAT (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.01,
                   help="float learning rate (default: %(default)s)")
    p.add_argument("--qat-lr", type=float, default=0.002,
                   help="QAT learning rate (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="training batch size (default: %(default)s)")
    p.add_argument("--dropout", type=float, default=0.2,
                   help="dropout after each SSM layer's activation (float training and QAT) "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every random source (default: %(default)s)")
    p.add_argument("--bits", type=int, default=8, help="width of every tensor (default: %(default)s)")
    p.add_argument("--weight-bits", type=int, help="Abar, Bbar, C, D, encoder, mixing, decoder")
    p.add_argument("--abar-bits", type=int, help="Abar alone (default: --weight-bits; with "
                                                 "--abar-form polar: the decoded Abar's width, "
                                                 f"default {POLAR_DECODED_BITS})")
    p.add_argument("--abar-form", choices=("cartesian", "polar"), default="cartesian",
                   help="how Abar is stored: cartesian (re, im in fixed<W,1>) or polar (1 - |Abar| "
                        "and arg Abar as mantissas with per-mode exponents, decoded exactly into "
                        "fixed<W,1>; see golden/abar_polar.py) (default: %(default)s)")
    p.add_argument("--rho-bits", type=int, help="--abar-form polar: radius mantissa bits "
                                                "(default 4)")
    p.add_argument("--theta-bits", type=int, help="--abar-form polar: angle mantissa bits "
                                                  "(default 6)")
    p.add_argument("--state-bits", type=int, help="the SSM state (default: --bits)")
    p.add_argument("--act-bits", type=int, help="network input, stream, SSM output, pool")
    p.add_argument("--lanes", type=int,
                   help="hardware.lanes of the exported config: states updated per cycle in each "
                        "SSM layer (divides the layer's states; default gcd(states, 16)); fewer "
                        "lanes, fewer multipliers, more cycles per timestep")
    p.add_argument("--dsp-products", type=int,
                   help="hardware.dsp_products of the exported config: at most this many "
                        "products are DSP blocks, the rest logic (default: all; e.g. 8 for an "
                        "iCE40 UP5K)")
    p.add_argument("--fold-layers", action="store_true",
                   help="hardware.fold_layers of the exported config: two S4D layers take turns "
                        "on one datapath (half the logic, twice the cycles per timestep; "
                        "docs/boards.md)")
    p.add_argument("--init", help="float checkpoint (MODEL_DIR/checkpoints/float.pt): skip "
                                  "float training")
    p.add_argument("--train-subset", type=int, help="use the first N training samples")
    p.add_argument("--test-subset", type=int, help="use the first N test samples")
    p.add_argument("--calib", choices=FORMAT_CHOICES, default="mse",
                   help="how each tensor's integer bits are chosen: mse (least quantization "
                        "error on the calibration data, clipping rare large values) or range "
                        "(cover the calibrated maximum / --calib-percentile); the state always "
                        "covers its per-mode maximum (default: %(default)s)")
    p.add_argument("--calib-percentile", type=float, default=100.0,
                   help="--calib range: calibrate activation and state ranges to this percentile "
                        "of |value| (default: %(default)s, the maximum; 99.99 clips outliers)")
    p.add_argument("--no-equalize", action="store_true",
                   help="skip the per-mode B/C rescaling before PTQ (it leaves the float model's "
                        "function unchanged and gives small Bbar values of slow modes precision)")
    p.add_argument("--augment", action="store_true",
                   help="training-time augmentation (sdigits: random 1-pixel shifts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--qat-distill", type=float, default=0.0,
                   help="weight a in 0..1 of distillation from the float model during QAT: "
                        "loss = (1 - a) CE + a T^2 KL at T = 2 (default: 0, off)")
    p.add_argument("--qat-learn-formats", action="store_true",
                   help="QAT learns the activation formats too (the residual stream's and the "
                        "SSM output's fraction bits; LSQ/PACT with power-of-two steps), starting "
                        "from the calibrated ones")
    p.add_argument("--qat-schedule",
                   help="progressive QAT: comma-separated decreasing widths, e.g. 8,6; the QAT "
                        "epochs are split into stages that raise every narrower width to the "
                        "stage's, then a final stage at the target widths")
    _noise_arguments(p, "qat-noise", "noise-aware QAT (QS4D): during fine-tuning, a new "
                                     "perturbation every batch")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy of a MODEL_DIR on a task's test split")
    p.add_argument("model", help="MODEL_DIR (from ssmgen train) or its config.toml")
    p.add_argument("--task", choices=TASKS, default="sdigits",
                   help="the dataset whose test split is used (default: %(default)s)")
    p.add_argument("--engine", choices=("float", "golden", "rtl"), default="golden",
                   help="float reference, golden integer network, or the generated Verilog "
                        "(checked against golden on every logit) (default: %(default)s)")
    p.add_argument("--test-subset", type=int, help="use the first N test samples")
    _noise_arguments(p, "noise", "evaluate under analog-style noise (train/noise.py; engines "
                                 "float and golden, a MODEL_DIR with its checkpoints)")
    p.set_defaults(func=cmd_eval)


def _noise_arguments(p, prefix: str, what: str) -> None:
    group = p.add_argument_group(f"--{prefix}-*", what)
    group.add_argument(f"--{prefix}-weight", type=float, default=0.0,
                       help="std of the Gaussian noise on every weight, relative to its "
                            "tensor's largest magnitude (default: %(default)s)")
    group.add_argument(f"--{prefix}-state", type=float, default=0.0,
                       help="std of the Gaussian noise on every state at every step, relative to "
                            "the range of the state's format (default: %(default)s)")
    group.add_argument(f"--{prefix}-seed", type=int, default=0,
                       help="seed of the noise (default: %(default)s)")
