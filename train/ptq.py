"""Post-training quantization: calibrate every tensor's range on training data and turn widths
into a network config (per-tensor power-of-two scales, i.e. integer bits; per-mode integer bits
for the state, which the shared notes measured as what matters most at 8 bits and below).

Calibration runs the float network (NumPy, float64) and records max |value| (or a percentile) of
every tensor and a seeded sample of its values; weights are read directly. :func:`build_config`
then picks, for each tensor and width W, its integer bits I by one of two rules (``choice``):

* ``"range"``: the smallest I whose range covers the calibrated maximum / percentile;
* ``"mse"`` (the default of ``ssmgen train``): the I that minimizes the squared quantization
  error over the sampled values (weights: all their values), relative to each layer's mean
  square where layers share the format (:func:`mse_int_bits`), i.e. the best trade between
  rounding error (I too large) and saturation (I too small). Each candidate is quantized with the
  golden rounding and overflow (``golden.fixedpoint.quantize_float``), so the error is the integer
  model's own. The state keeps the range rule (per mode) under both: an error in the state
  recurs through every later step, and on sdigits (8 bits) per-mode MSE states cost 0.6 points
  of PTQ accuracy against range-covering ones.

Two constraints keep the integer model small: Abar is ``fixed<W,1>`` (|Abar| < 1), and a bias
gets at most the fraction bits of the products it is added to (as int32 biases in TFLite), so an
accumulator is never widened just to align a tiny bias.

Why MSE matters here: the residual stream has one format for every layer, and its largest values
(after the last layer, ~65 on sdigits) are 30x those of the encoder output, so a range-covering
8-bit format leaves the first layer's input ~2 bits; MSE clips the rare large values instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..golden.fixedpoint import quantize_float
from ..spec.config import parse_config
from ..spec.errors import ConfigError
from ..spec.formats import MAX_FORMAT_WIDTH, FixedFormat, Overflow, Quantizer, Rounding, to_float
from ..spec.weights import NetworkWeights

__all__ = ["Calibration", "calibrate", "int_bits_for", "mse_int_bits", "build_config",
           "WIDTH_KEYS", "FORMAT_CHOICES", "uniform_widths", "to_toml"]

#: Rules for picking a tensor's integer bits from its calibration (see the module docstring).
FORMAT_CHOICES = ("range", "mse")
#: Values kept per activation tensor (and layer) for the MSE rule: enough for a stable choice,
#: few enough to keep calibration to seconds.
SAMPLE_VALUES = 1 << 17
#: The MSE rule tries I from the range-covering value down by at most this many bits (clipping
#: more than 2**6 of the range never wins at the widths used here, and it bounds the search).
MSE_SPAN = 6
#: Largest spread of a layer's per-mode state integer bits: finer modes get the layer's largest
#: integer bits minus this (see build_config).
MAX_STATE_SPAN = 16

#: Width groups of a network config: SSM weights, the layer's activations, the network tensors.
WIDTH_KEYS = ("abar", "bbar", "c", "d", "state", "stream", "ssm_out", "net_input", "encoder",
              "encoder_bias", "mix", "mix_bias", "pool", "decoder", "decoder_bias")


def uniform_widths(width: int, **overrides) -> dict:
    widths = {key: width for key in WIDTH_KEYS}
    widths.update(overrides)
    return widths


@dataclass
class Calibration:
    """max |value| (or the percentile) of every tensor (floats) and, per layer, of every state
    (re and im); ``samples``: per tensor, a list of float64 1-D arrays, one per layer (or use)
    sharing its format (weights: all their values; activations: a seeded sample)."""
    maxabs: dict = field(default_factory=dict)
    state: list = field(default_factory=list)     # per layer: float64 (P,)
    samples: dict = field(default_factory=dict)


def _maxabs(x) -> float:
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


def calibrate(weights: NetworkWeights, u: np.ndarray, *, activation: str = "relu",
              percentile: float = 100.0) -> Calibration:
    """Run the float network on u (batch, T, H_in), recording tensor ranges and value samples.
    ``percentile`` < 100 clips activation ranges to that percentile of |value| (states: per
    mode); it does not change the samples."""
    if not 50 <= percentile <= 100:
        raise ConfigError(f"calibration percentile: must be in 50..100, not {percentile}")
    rng = np.random.default_rng(0)     # the samples (and so the MSE choice) are reproducible

    def keep(key, x):
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.size > SAMPLE_VALUES:
            x = rng.choice(x, SAMPLE_VALUES, replace=False)
        s.setdefault(key, []).append(x)

    def stat(x, axis=None):
        x = np.abs(np.asarray(x))
        if percentile >= 100:
            return np.max(x, axis=axis) if axis is not None else float(np.max(x))
        return np.percentile(x, percentile, axis=axis)

    u = np.asarray(u, dtype=np.float64)
    cal = Calibration()
    m = cal.maxabs
    m["net_input"] = _maxabs(u)
    m["encoder"], m["encoder_bias"] = _maxabs(weights.encoder_w), _maxabs(weights.encoder_b)
    m["decoder"], m["decoder_bias"] = _maxabs(weights.decoder_w), _maxabs(weights.decoder_b)
    m["mix"] = max(_maxabs(w) for w in weights.mix_w)
    m["mix_bias"] = max(_maxabs(b) for b in weights.mix_b)
    for key, attr in (("bbar", "bbar"), ("c", "c")):
        m[key] = max(max(_maxabs(getattr(l, attr).real), _maxabs(getattr(l, attr).imag))
                     for l in weights.layers)
    m["d"] = max(_maxabs(l.d) for l in weights.layers)
    # samples: one group per tensor that shares the format (per layer for layer tensors)
    s = cal.samples
    keep("net_input", u)
    for key, value in (("encoder", weights.encoder_w), ("encoder_bias", weights.encoder_b),
                       ("decoder", weights.decoder_w), ("decoder_bias", weights.decoder_b),
                       *(("mix", w) for w in weights.mix_w),
                       *(("mix_bias", b) for b in weights.mix_b),
                       *(("d", l.d) for l in weights.layers)):
        keep(key, value)
    for key in ("bbar", "c"):
        for l in weights.layers:
            keep(key, np.concatenate([getattr(l, key).real.ravel(), getattr(l, key).imag.ravel()]))
    a = u @ weights.encoder_w.T + weights.encoder_b
    keep("stream", a)
    streams, outs = [stat(a)], []
    for l, layer in enumerate(weights.layers):
        batch, T, H = a.shape
        x = np.zeros((batch, layer.states), dtype=np.complex128)
        xmax = np.zeros(layer.states)
        y = np.empty_like(a)
        for k in range(T):
            if layer.kind == "s4d":
                x = layer.abar * x + layer.bbar * a[:, k, layer.channel]
                y[:, k] = (layer.c * x).real.reshape(batch, H, -1).sum(axis=2)
            else:
                x = layer.abar * x + a[:, k] @ layer.bbar.T
                y[:, k] = (x @ layer.c.T).real
            xmax = np.maximum(xmax, np.maximum(stat(x.real, axis=0), stat(x.imag, axis=0)))
        y = y + layer.d * a
        outs.append(stat(y))
        keep("ssm_out", y)
        r = np.maximum(y, 0) if activation == "relu" else y
        a = a + r @ weights.mix_w[l].T + weights.mix_b[l]
        streams.append(stat(a))
        keep("stream", a)
        cal.state.append(xmax)
    m["stream"], m["ssm_out"] = float(max(streams)), float(max(outs))
    pooled = a.mean(axis=1)
    m["pool"] = _maxabs(pooled)
    keep("pool", pooled)
    return cal


def int_bits_for(maxabs: float, width: int, *, min_int_bits: int | None = None) -> int:
    """Smallest integer bits I (>= min_int_bits) with max(fixed<W,I>) >= maxabs."""
    lo = -MAX_FORMAT_WIDTH if min_int_bits is None else max(min_int_bits, -MAX_FORMAT_WIDTH)
    lo = min(lo, width)
    for bits in range(lo, width + 1):
        if ((1 << (width - 1)) - 1) * 2.0 ** (bits - width) >= maxabs:
            return bits
    return width


def _quant_error(values: np.ndarray, width: int, bits: int, rounding: str, overflow: str):
    """Mean squared error of values quantized into fixed<width,bits> (golden rounding/overflow)."""
    q = Quantizer(FixedFormat(width, int(bits)), Rounding(rounding), Overflow(overflow))
    return float(np.mean((to_float(quantize_float(values, q), q.format.frac) - values) ** 2))


def mse_int_bits(groups, width: int, top, *, rounding: str = "half_even",
                 overflow: str = "saturate"):
    """Integer bits I in ``top - MSE_SPAN .. top`` minimizing the quantization error in
    ``fixed<width,I>`` (golden rounding and overflow); ties go to the larger I (less saturation).

    ``groups``: a list of 1-D arrays sharing one format (e.g. the residual stream after each
    layer); the error is the mean over groups of each group's MSE divided by its mean square, so
    a layer whose values are small counts as much as one whose values are large (each is a
    different consumer's input)."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    power = [max(float(np.mean(g ** 2)), np.finfo(np.float64).tiny) for g in groups]
    best, best_err = int(top), np.inf
    for bits in range(int(top), max(int(top) - MSE_SPAN, -MAX_FORMAT_WIDTH) - 1, -1):
        err = np.mean([_quant_error(g, width, bits, rounding, overflow) / pw
                       for g, pw in zip(groups, power)])
        if err < best_err:
            best, best_err = bits, err
    return best


def build_config(meta: dict, cal: Calibration, widths: dict, *, name: str = "ssm_net",
                 steps: int, weights_file: str = "weights.npz", rounding: str = "half_even",
                 overflow: str = "saturate", lanes: int | None = None,
                 per_mode_state: bool = True, choice: str = "range",
                 abar_form: dict | None = None) -> dict:
    """A network config (TOML structure, a dict) for widths (keys: WIDTH_KEYS) from a
    calibration. ``meta``: the SSMNetwork's shape (kind, inputs, channels, modes, layers,
    classes, activation). ``per_mode_state=False``: one integer-bit count for every state (the
    largest), i.e. a per-tensor state format, for comparison. ``choice``: how integer bits are
    picked, ``"range"`` or ``"mse"`` (module docstring); biases always follow the range rule
    (capped by their products' fraction bits), the state the range rule per mode, and Abar is
    always ``fixed<W,1>``. ``abar_form``: extra ``quant.abar`` keys, e.g. ``{"form": "polar",
    "rho_bits": 4, "theta_bits": 6}`` (then W is the decoded Abar's width)."""
    missing = sorted(set(WIDTH_KEYS) - set(widths))
    if missing:
        raise ValueError(f"widths: missing {', '.join(missing)}")
    if choice not in FORMAT_CHOICES:
        raise ConfigError(f"format choice: must be one of {', '.join(FORMAT_CHOICES)}, "
                          f"not {choice!r}")
    m = cal.maxabs
    if choice == "mse" and not cal.samples:
        raise ValueError("build_config(choice='mse') needs a calibration with samples "
                         "(from calibrate())")

    def fmt(width, bits):
        return {"format": f"fixed<{width},{bits}>"}

    def auto(key, **kw):
        bits = int_bits_for(m[key], widths[key], **kw)
        if choice == "mse" and not kw:
            bits = int(mse_int_bits(cal.samples[key], widths[key], bits, rounding=rounding,
                                    overflow=overflow))
        return fmt(widths[key], bits)

    def frac_of(entry):
        w, i = entry["format"][6:-1].split(",")
        return int(w) - int(i)

    kind, H = meta["kind"], meta["channels"]
    states = H * meta["modes"] if kind == "s4d" else meta["modes"]
    model = {"kind": kind, "channels": H}
    if kind == "s4d":
        model["state_size"] = 2 * meta["modes"]
    else:
        model["states"] = states
    wx = widths["state"]
    state_bits = [[int_bits_for(float(v), wx) for v in layer] for layer in cal.state]
    # a mode whose range is 2^-MAX_STATE_SPAN of its layer's largest contributes nothing
    # measurable, but its fine format would widen the exact state sum (mnist1d: modes at 2^-24,
    # a 63-bit sum at 16 bits) and add a shift class to the hardware
    state_bits = [[max(bits, max(layer) - MAX_STATE_SPAN) for bits in layer]
                  for layer in state_bits]
    if not per_mode_state:
        top = max(max(layer) for layer in state_bits)
        state_bits = [[top] * len(layer) for layer in state_bits]
    quant = {
        "defaults": {"rounding": rounding, "overflow": overflow},
        "abar": {**fmt(widths["abar"], 1), **(abar_form or {})},
        "bbar": auto("bbar"), "c": auto("c"), "d": auto("d"),
        "input": auto("stream"), "output": auto("ssm_out"),
        "state": fmt(wx, max(max(layer) for layer in state_bits)),
        "state_acc": {"format": "full"}, "output_acc": {"format": "full"},
    }
    per_step = meta.get("readout", "mean") == "per_step"
    netq = {"input": auto("net_input"), "encoder": auto("encoder"), "mix": auto("mix"),
            "decoder": auto("decoder")}
    if not per_step:                 # a per-step decoder reads the stream, not a pooled mean
        netq["pool"] = auto("pool")
    # biases: no more fraction bits than the products they join
    for bias, weight, source in (("encoder_bias", "encoder", netq["input"]),
                                 ("mix_bias", "mix", quant["output"]),
                                 ("decoder_bias", "decoder",
                                  quant["input"] if per_step else netq["pool"])):
        product_frac = frac_of(netq[weight]) + frac_of(source)
        netq[bias] = auto(bias, min_int_bits=widths[bias] - product_frac)
    if lanes is None:
        lanes = int(np.gcd(states, 16))
    return {
        "name": name, "model": model,
        "weights": {"source": "file", "file": weights_file},
        "quant": quant,
        "hardware": {"lanes": lanes},
        "network": {"inputs": meta["inputs"], "layers": meta["layers"], "steps": steps,
                    **({"readout": "per_step", "outputs": meta["classes"]} if per_step
                       else {"classes": meta["classes"]}),
                    "activation": meta["activation"],
                    "state_int_bits": state_bits, "quant": netq},
    }


def parse(data: dict, base_dir="."):
    return parse_config(data, base_dir=base_dir)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(data: dict, *, header: str = "") -> str:
    """Minimal TOML writer for config dicts (tables, strings, numbers, nested lists)."""
    lines = [header.rstrip()] if header else []

    def table(prefix, d):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"\n[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in tables.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(lines) + "\n"
