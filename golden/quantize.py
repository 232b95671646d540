"""Quantization: float weights and a config -> a quantized model (``ssmgen.spec.quantized``).

Each weight is rounded into its component's format (golden rounding, then a clamp; a weight that
would wrap is an error), Abar is kept strictly inside the unit circle, the per-mode state integer
bits are resolved ("auto": the smallest that provably cannot overflow), and every accumulator's
width is derived from the formats, with a proof that each exact intermediate of the golden
integer model fits int64 (a config that would not is rejected, naming the field).
"""

from __future__ import annotations

import numpy as np

from ..spec.config import AbarPolar, SSMConfig
from ..spec.errors import ConfigError
from ..spec.formats import INT64_SAFE_BITS, Overflow, Quantizer, to_float
from ..spec.quantized import AccumulatorPlan, QuantizedNetwork, QuantizedSSM
from ..spec.weights import NetworkWeights, SSMWeights, load_network_npz, load_npz
from .abar_polar import decode_polar, encode_polar
from .discretize import random_weights
from .fixedpoint import apply_overflow, round_float
from .network import pool_constants

__all__ = ["quantize_model", "quantize_network", "load_quantized", "load_model", "load_network",
           "quantize_abar", "quantize_abar_polar", "quantize_weight", "plan_accumulator"]


def quantize_abar(abar: np.ndarray, quantizer: Quantizer, stability: str):
    """Quantize complex poles (Cartesian form), keeping every |Abar_q| < 1.

    Rounding re and im separately can put a pole on or outside the unit circle (|Abar| = 1.085
    seen at 4 bits), and the recurrence then diverges: see :func:`_stabilize`.

    Returns (re, im, number_of_corrected_poles), re/im int64 (P,).
    """
    (re, _), (im, _) = (_quantize_weight(part, quantizer, "abar") for part in (abar.real, abar.imag))
    return _stabilize(re, im, abar, quantizer, stability)


def quantize_abar_polar(abar: np.ndarray, quantizer: Quantizer, polar: AbarPolar,
                        stability: str):
    """Quantize complex poles in polar form (golden/abar_polar.py): encode, then decode exactly
    into ``quantizer``'s format. Returns (re, im, corrected, codes)."""
    fmt = quantizer.format
    codes = encode_polar(abar, rho_bits=polar.rho_bits, theta_bits=polar.theta_bits,
                         frac=fmt.frac, rounding=quantizer.rounding)
    re, im = decode_polar(codes, fmt.frac, quantizer.rounding)
    # |decoded| <= 1 - 2^-F: both parts fit the format (I >= 1, checked by the config)
    return (*_stabilize(re, im, codes.values(), quantizer, stability), codes)


def _stabilize(re: np.ndarray, im: np.ndarray, target: np.ndarray, quantizer: Quantizer,
               stability: str):
    """Keep every quantized pole strictly inside the unit circle. With ``stability="correct"`` a
    pole on or outside it is pulled in one LSB at a time, along the axis whose step keeps it
    closest to ``target`` (the pole before rounding), until it lies strictly inside;
    ``"reject"`` raises instead. The check uses exact integers. Returns (re, im, corrected)."""
    frac = quantizer.format.frac
    radius2 = 1 << (2 * frac)            # |a|^2 < 1  <=>  re^2 + im^2 < 2^(2F), exactly
    target_re = np.ldexp(target.real, frac)
    target_im = np.ldexp(target.imag, frac)
    corrected = 0
    for p in range(re.shape[0]):
        r, i = int(re[p]), int(im[p])
        if r * r + i * i < radius2:
            continue
        if stability == "reject":
            raise ConfigError(
                f"quant.abar: mode {p}: Abar = {target[p]:.6g} quantizes to |Abar_q| = "
                f"{np.hypot(r, i) / 2 ** frac:.6g} >= 1 in {quantizer.format} (unstable); "
                f"use more bits or quant.abar_stability = \"correct\"")
        while r * r + i * i >= radius2:
            steps = []
            if r:
                steps.append((r - (1 if r > 0 else -1), i))
            if i:
                steps.append((r, i - (1 if i > 0 else -1)))
            r, i = min(steps, key=lambda c: (c[0] - target_re[p]) ** 2 + (c[1] - target_im[p]) ** 2)
        re[p], im[p] = r, i
        corrected += 1
    return re, im, corrected


def _quantize_weight(values, quantizer: Quantizer, name: str):
    """Quantize constant weights; a weight that would wrap is an error (silent garbage otherwise).

    Returns (ints, number clamped by saturation).
    """
    fmt = quantizer.format
    rounded = round_float(values, fmt.frac, quantizer.rounding)
    outside = (rounded > fmt.max_int) | (rounded < fmt.min_int)
    if quantizer.overflow is Overflow.WRAP and np.any(outside):
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        value = np.asarray(values)[index]
        raise ConfigError(
            f"quant.{name}: weight {name}{list(index)} = {value:.6g} does not fit {fmt} "
            f"(range {fmt.min_value:g}..{fmt.max_value:g}) and overflow = \"wrap\" would turn it "
            f"into garbage; widen the integer bits or use overflow = \"saturate\"")
    return apply_overflow(rounded, fmt.width, Overflow.SATURATE), int(np.count_nonzero(outside))


def quantize_weight(values, quantizer: Quantizer, name: str) -> np.ndarray:
    """Constant weights -> int64 in ``quantizer``'s format: its rounding, then a clamp (a weight
    that would wrap under ``overflow = "wrap"`` raises ConfigError naming ``quant.<name>``).
    Used for every weight of the network and by QAT's fake quantization."""
    return _quantize_weight(values, quantizer, name)[0]


def _auto_state_int_bits(weights: SSMWeights, abar_q: np.ndarray, bbar_q: np.ndarray,
                         config: SSMConfig) -> np.ndarray:
    """Smallest integer bits per mode for which the state provably cannot overflow.

    With |u| <= U and a rounding error per step below one state LSB, plus one accumulator LSB per
    term with an explicit state accumulator (n terms: |e| < sqrt(2) (2^-F + n 2^-F_acc) for a
    complex state), |x_p| <= (sum_h |Bbar_p,h| U + |e|) / (1 - |Abar_p|), which also bounds re
    and im. (A wrapping accumulator that overflows is garbage no state format can bound.)
    """
    q = config.quant
    width = q.state.format.width
    u_max = max(-q.input.format.min_value, q.input.format.max_value)
    b_rows = np.abs(bbar_q) if weights.kind == "s4d" else np.abs(bbar_q).sum(axis=1)
    margin = 1.0 - np.abs(abar_q)
    n_terms = 1 + (1 if weights.kind == "s4d" else weights.channels)
    acc_error = 0.0 if q.state_acc is None else n_terms * 2.0 ** -q.state_acc.format.frac
    bits = np.empty(weights.states, dtype=np.int64)
    for p in range(weights.states):
        for int_bits in range(-width + 2, width + 1):
            frac = width - int_bits
            bound = (b_rows[p] * u_max + np.sqrt(2) * (2.0 ** -frac + acc_error)) / margin[p]
            if bound <= ((1 << (width - 1)) - 1) * 2.0 ** -frac:
                break
        else:
            raise ConfigError(
                f"quant.state.int_bits: \"auto\" needs more than W={width} integer bits for mode "
                f"{p} (|Abar| = {abs(abar_q[p]):.6g}, worst-case |x| = {bound:.4g}); widen the "
                f"state or give int_bits explicitly")
        bits[p] = int_bits
    return bits


def plan_accumulator(plan_quantizer: Quantizer | None, term_fracs, term_bounds, name: str) -> AccumulatorPlan:
    """Derive an accumulator's widths and prove every intermediate fits the int64 golden model.

    term_fracs / term_bounds: per term kind, fraction bits and max |integer| (Python ints); one
    entry per term of one sum. A term whose fraction bits differ per state (Fa + Fx_p, Fc + Fx_p)
    gives the pair (min, max) over the states: the sum is held at the largest, and the term with
    the fewest fraction bits is the one shifted furthest left when aligned (worst case).
    """
    n_terms = len(term_fracs)
    spans = [(f, f) if isinstance(f, (int, np.integer)) else (int(f[0]), int(f[1]))
             for f in term_fracs]
    for frac, bound in zip(term_fracs, term_bounds):
        if bound.bit_length() + 1 > INT64_SAFE_BITS:
            raise ConfigError(f"quant.{name}: a product needs {bound.bit_length() + 1} bits, more "
                              f"than the golden model's int64 limit of {INT64_SAFE_BITS}")
    if plan_quantizer is None:
        frac = max(hi for _, hi in spans)
        total = sum(bound << (frac - lo) for (lo, _), bound in zip(spans, term_bounds))
        bits = total.bit_length() + 1
        if bits > INT64_SAFE_BITS:
            raise ConfigError(
                f"quant.{name}: the full-precision sum needs {bits} bits (terms with fraction bits "
                f"{min(lo for lo, _ in spans)}..{frac} aligned), more than the golden model's int64 "
                f"limit of {INT64_SAFE_BITS}; narrow the formats or give quant.{name}.format "
                f"explicitly")
        return AccumulatorPlan(None, frac, bits, bits, n_terms)
    fmt = plan_quantizer.format
    for (lo, _), bound in zip(spans, term_bounds):
        if (bound << max(0, fmt.frac - lo)).bit_length() + 1 > INT64_SAFE_BITS:
            raise ConfigError(f"quant.{name}: aligning a term to {fmt} needs more than "
                              f"{INT64_SAFE_BITS} bits")
    sum_bits = fmt.width + max(0, (n_terms - 1).bit_length())
    return AccumulatorPlan(plan_quantizer, fmt.frac, sum_bits, fmt.width, n_terms)


def _check_requantize(plan: AccumulatorPlan, name: str, to_frac: int, target: str) -> None:
    """Moving an accumulator into a format with more fraction bits is an exact left shift of its
    result (``plan.width`` bits); that intermediate must fit the int64 golden model too."""
    bits = plan.width + max(0, to_frac - plan.frac)
    if bits > INT64_SAFE_BITS:
        raise ConfigError(
            f"quant.{name}: its {plan.width}-bit result (frac {plan.frac}) shifted into "
            f"quant.{target} (frac {to_frac}) needs {bits} bits, more than the golden model's "
            f"int64 limit of {INT64_SAFE_BITS}; give quant.{name} more fraction bits or "
            f"quant.{target} fewer")


def _product_bound(width_a: int, width_b: int, *, complex_terms: int) -> int:
    """Max |integer| of a sum of ``complex_terms`` products of signed W_a x W_b integers."""
    return complex_terms * (1 << (width_a - 1)) * (1 << (width_b - 1))


def quantize_model(config: SSMConfig, weights: SSMWeights) -> QuantizedSSM:
    """Quantize float weights with the config's formats and derive all accumulator formats."""
    model = config.model
    if (weights.kind, weights.channels, weights.states) != (model.kind, model.channels, model.states):
        raise ConfigError(
            f"weights: shape ({weights.kind}, H={weights.channels}, states={weights.states}) does "
            f"not match [model] ({model.kind}, H={model.channels}, states={model.states})")
    q = config.quant
    if q.abar_polar is None:
        abar_re, abar_im, corrected = quantize_abar(weights.abar, q.abar, q.abar_stability)
        polar_codes = None
        # quantize_abar reports corrections, not clamps: count Abar's clamped parts here
        saturated = {"abar": sum(_quantize_weight(part, q.abar, "abar")[1]
                                 for part in (weights.abar.real, weights.abar.imag))}
    else:
        abar_re, abar_im, corrected, polar_codes = quantize_abar_polar(
            weights.abar, q.abar, q.abar_polar, q.abar_stability)
        saturated = {"abar": 0}     # a polar pole cannot leave the format
    ints = {}
    for name, values, quantizer in (("bbar_re", weights.bbar.real, q.bbar),
                                    ("bbar_im", weights.bbar.imag, q.bbar),
                                    ("c_re", weights.c.real, q.c), ("c_im", weights.c.imag, q.c),
                                    ("d", weights.d, q.d)):
        tensor = name.split("_")[0]
        ints[name], clamped = _quantize_weight(values, quantizer, tensor)
        saturated[tensor] = saturated.get(tensor, 0) + clamped

    fa = q.abar.format
    if q.state_int_bits is None:
        state_int_bits = np.full(model.states, q.state.format.int_bits, dtype=np.int64)
    elif q.state_int_bits == "auto":
        abar_q = to_float(abar_re, fa.frac) + 1j * to_float(abar_im, fa.frac)
        bbar_q = (to_float(ints["bbar_re"], q.bbar.format.frac)
                  + 1j * to_float(ints["bbar_im"], q.bbar.format.frac))
        state_int_bits = _auto_state_int_bits(weights, abar_q, bbar_q, config)
    else:
        state_int_bits = np.array(q.state_int_bits, dtype=np.int64)

    wa, wb, wc, wd = (q.abar.format.width, q.bbar.format.width, q.c.format.width, q.d.format.width)
    wx, wu = q.state.format.width, q.input.format.width
    fx_max = int((wx - state_int_bits).max())
    fx_min = int((wx - state_int_bits).min())
    fu = q.input.format.frac
    inputs_per_state = 1 if model.kind == "s4d" else model.channels
    states_per_output = model.modes_per_channel
    # Re/im of Abar*x is a sum of two products; of Bbar*u a single product.
    state_acc = plan_accumulator(
        q.state_acc,
        [(fa.frac + fx_min, fa.frac + fx_max)] + [q.bbar.format.frac + fu] * inputs_per_state,
        [_product_bound(wa, wx, complex_terms=2)] + [_product_bound(wb, wu, complex_terms=1)] * inputs_per_state,
        "state_acc")
    output_acc = plan_accumulator(
        q.output_acc,
        [(q.c.format.frac + fx_min, q.c.format.frac + fx_max)] * states_per_output + [q.d.format.frac + fu],
        [_product_bound(wc, wx, complex_terms=2)] * states_per_output + [_product_bound(wd, wu, complex_terms=1)],
        "output_acc")
    _check_requantize(state_acc, "state_acc", fx_max, "state")
    _check_requantize(output_acc, "output_acc", q.output.format.frac, "output")
    return QuantizedSSM(config, weights, abar_re, abar_im, ints["bbar_re"], ints["bbar_im"],
                        ints["c_re"], ints["c_im"], ints["d"], state_int_bits,
                        state_acc, output_acc, corrected,
                        {k: v for k, v in saturated.items() if v}, polar_codes)


def load_model(config: SSMConfig) -> QuantizedSSM:
    """Load (or generate) a single-layer config's float weights and quantize them. A whole
    network's config is refused by name (:func:`load_network`, :func:`load_quantized`), never
    reduced to one of its layers."""
    if config.network is not None:
        raise ConfigError("network: the config describes a whole network ([network]); load it "
                          "with load_network or load_quantized, not as a single layer")
    src = config.weights
    if src.source == "random":
        weights = random_weights(config.model.kind, channels=config.model.channels,
                                 states=config.model.states, seed=src.seed,
                                 dt_min=src.dt_min, dt_max=src.dt_max)
    else:
        weights = load_npz(src.path, config.model.kind, channels=config.model.channels,
                           states=config.model.states)
    return quantize_model(config, weights)


# --------------------------------------------------------------------------------------------
# Whole network
# --------------------------------------------------------------------------------------------

def _network_weight(values, quantizer: Quantizer, name: str) -> tuple[np.ndarray, int]:
    try:
        ints = quantize_weight(values, quantizer, name)
    except ConfigError as exc:
        raise ConfigError(f"network.{exc}") from None
    clamped = int(np.count_nonzero(ints != round_float(values, quantizer.format.frac,
                                                       quantizer.rounding)))
    return ints, clamped


def quantize_network(config: SSMConfig, weights: NetworkWeights) -> QuantizedNetwork:
    """Quantize float network weights with the config's formats; derive every accumulator width
    and prove the int64 bound (ConfigError naming the field otherwise)."""
    net, q = config.network, config.quant
    if net is None:
        raise ConfigError("network: the config has no [network] section (a single layer)")
    if len(weights.layers) != net.layers:
        raise ConfigError(f"network.layers: {net.layers}, but the weights hold "
                          f"{len(weights.layers)} layer(s)")
    layers = []
    saturated = {}            # per tensor: layers.<l>.<tensor> for the SSM layers' own
    for l, layer_weights in enumerate(weights.layers):
        try:
            qlayer = quantize_model(config.layer(l), layer_weights)
        except ConfigError as exc:
            raise ConfigError(f"layer {l}: {exc}") from None
        layers.append(qlayer)
        saturated.update({f"layers.{l}.{k}": v for k, v in qlayer.saturated.items()})
    ints = {}
    for key, values, quantizer in (("encoder", weights.encoder_w, net.encoder),
                                   ("encoder_bias", weights.encoder_b, net.encoder_bias),
                                   ("decoder", weights.decoder_w, net.decoder),
                                   ("decoder_bias", weights.decoder_b, net.decoder_bias)):
        ints[key], saturated[key] = _network_weight(values, quantizer, key)
    mix_w, mix_b = [], []
    for l in range(net.layers):
        w, saturated[f"layers.{l}.mix"] = _network_weight(weights.mix_w[l], net.mix, "mix")
        b, saturated[f"layers.{l}.mix_bias"] = _network_weight(weights.mix_b[l], net.mix_bias,
                                                               "mix_bias")
        mix_w.append(w)
        mix_b.append(b)
    saturated = {k: v for k, v in saturated.items() if v}

    H = config.model.channels
    fu, wu = net.input.format.frac, net.input.format.width
    fs, ws = q.input.format.frac, q.input.format.width
    fy, wy = q.output.format.frac, q.output.format.width

    def plan(weight: Quantizer, bias: Quantizer, n: int, in_frac: int, in_width: int,
             name: str, residual: bool = False) -> AccumulatorPlan:
        fracs = [weight.format.frac + in_frac] * n + [bias.format.frac]
        bounds = [_product_bound(weight.format.width, in_width, complex_terms=1)] * n + [1 << (bias.format.width - 1)]
        if residual:
            fracs.append(fs)
            bounds.append(1 << (ws - 1))
        try:
            return plan_accumulator(None, fracs, bounds, name)
        except ConfigError as exc:
            raise ConfigError(f"network.{exc}") from None

    encoder_acc = plan(net.encoder, net.encoder_bias, net.inputs, fu, wu, "quant.encoder")
    mix_acc = plan(net.mix, net.mix_bias, H, fy, wy, "quant.mix", residual=True)
    # the decoder reads the pooled features, or with a per-step readout the residual stream
    decoder_in = q.input if net.per_step else net.pool
    wp, fp = decoder_in.format.width, decoder_in.format.frac
    decoder_acc = plan(net.decoder, net.decoder_bias, H, fp, wp, "quant.decoder")
    mult, shift = pool_constants(net.steps)
    pool_bits = (net.steps * (1 << (ws - 1)) * mult).bit_length() + 1
    checks = [("network.quant.encoder", encoder_acc.width + max(0, fs - encoder_acc.frac)),
              ("network.quant.mix", mix_acc.width + max(0, fs - mix_acc.frac))]
    if not net.per_step:
        checks.append(("network.quant.pool", pool_bits + max(0, fp - (fs + shift))))
    checks += [("network.quant.decoder", decoder_acc.width + max(
                  0, (net.logits.format.frac - decoder_acc.frac) if net.logits else 0))]
    for name, bits in checks:
        if bits > INT64_SAFE_BITS:
            raise ConfigError(f"{name}: an intermediate needs {bits} bits, more than the golden "
                              f"model's int64 limit of {INT64_SAFE_BITS}; narrow the formats")
    return QuantizedNetwork(config, weights, ints["encoder"], ints["encoder_bias"], tuple(layers),
                            tuple(mix_w), tuple(mix_b), ints["decoder"], ints["decoder_bias"],
                            encoder_acc, mix_acc, decoder_acc, mult, shift, pool_bits, saturated)


def load_network(config: SSMConfig) -> QuantizedNetwork:
    """Load the config's network weights file and quantize it."""
    if config.network is None:
        raise ConfigError("network: the config has no [network] section (a single layer)")
    if config.weights.source != "file":
        raise ConfigError("weights.source: a network needs source = \"file\" (the network "
                          "weights file)")
    return quantize_network(config, load_network_npz(config.weights.path, config))


def load_quantized(config: SSMConfig) -> QuantizedSSM | QuantizedNetwork:
    """The config's quantized model: its whole network when it has ``[network]``, else its
    single layer."""
    return load_model(config) if config.network is None else load_network(config)
