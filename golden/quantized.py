"""A quantized SSM layer: integer weights, per-mode state formats and derived accumulator formats.

This is what both the golden integer model and the hardware generator consume, so the two cannot
disagree about a weight, a format or an accumulator width.

Arithmetic of one timestep (the specification; all products exact):

* state update, for each state p (re and im alike)::

      terms  = Abar_p * x_p[k-1]                (complex x complex, frac Fa + Fx_p)
             + Bbar_p,h * u_h  for each h       (complex x real,    frac Fb + Fu; s4d: one h)
      x_p[k] = Q_state( ACC_state(terms) )

* output, for each channel h::

      terms  = Re(C_h,p * x_p[k]) for each p    (frac Fc + Fx_p; s4d: the channel's own modes)
             + D_h * u_h                        (frac Fd + Fu)
      y_h[k] = Q_output( ACC_output(terms) )

``ACC(terms)`` with a *full-precision* accumulator (the default) is the exact sum, held at the
largest fraction-bit count of its terms with a width derived here (never truncated). With an
explicit accumulator format, each term is first requantized into it (its rounding and overflow),
the quantized terms are summed exactly, and the overflow mode is applied once to the sum (for
wrap this equals a W-bit adder chain; for saturate a clamp after guard bits).

A ``Q`` step is :func:`ssmgen.golden.fixedpoint.requantize`: one rounding, one overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import AbarPolar, ConfigError, SSMConfig
from .abar_polar import PolarCodes, decode_polar, encode_polar
from .fixedpoint import (INT64_SAFE_BITS, Overflow, Quantizer, apply_overflow, round_float,
                         to_float)
from .weights import SSMWeights, load_npz

__all__ = ["AccumulatorPlan", "QuantizedSSM", "quantize_model", "load_model", "quantize_abar",
           "quantize_abar_polar", "quantize_weight"]


@dataclass(frozen=True)
class AccumulatorPlan:
    """How one accumulator holds its sum.

    quantizer: None for full precision, else the user's format (terms enter it one by one).
    frac: fraction bits of the sum.
    sum_bits: signed bits that hold the exact sum of the (quantized) terms, before the final
        overflow step: the hardware adder width.
    width: bits of the accumulator after its overflow step (= sum_bits for full precision).
    n_terms: number of terms summed per output element.
    """
    quantizer: Quantizer | None
    frac: int
    sum_bits: int
    width: int
    n_terms: int

    @property
    def full_precision(self) -> bool:
        return self.quantizer is None

    def describe(self) -> str:
        if self.quantizer is None:
            return f"full precision: {self.width} bits, frac {self.frac}"
        return f"{self.quantizer} ({self.n_terms} terms, {self.sum_bits}-bit adder)"


@dataclass(frozen=True)
class QuantizedSSM:
    """Integer weights and formats of one layer (flat state index, see ``weights.py``).

    abar_re, abar_im: int64 (P,)                 frac Fa
    bbar_re, bbar_im: int64 (P,) s4d | (P, H) s5  frac Fb
    c_re, c_im:       int64 (P,) s4d | (H, P) s5  frac Fc
    d:                int64 (H,)                  frac Fd
    state_int_bits:   int64 (P,) integer bits of each state (width is the state format's)
    """
    config: SSMConfig
    float_weights: SSMWeights
    abar_re: np.ndarray
    abar_im: np.ndarray
    bbar_re: np.ndarray
    bbar_im: np.ndarray
    c_re: np.ndarray
    c_im: np.ndarray
    d: np.ndarray
    state_int_bits: np.ndarray
    state_acc: AccumulatorPlan
    output_acc: AccumulatorPlan
    abar_corrected: int      #: modes pulled back inside the unit circle
    saturated_weights: int   #: weights clamped by a saturating format
    #: quant.abar.form = "polar": the stored radius/angle codes abar_re/abar_im decode from
    abar_polar: PolarCodes | None = None

    @property
    def kind(self) -> str:
        return self.config.model.kind

    @property
    def channels(self) -> int:
        return self.config.model.channels

    @property
    def states(self) -> int:
        return self.config.model.states

    @property
    def channel(self) -> np.ndarray:
        return self.float_weights.channel

    @property
    def state_frac(self) -> np.ndarray:
        """int64 (P,): fraction bits of each state."""
        return self.config.quant.state.format.width - self.state_int_bits

    def state_quantizer(self, p: int) -> Quantizer:
        q = self.config.quant.state
        return Quantizer(q.format.with_int_bits(int(self.state_int_bits[p])), q.rounding, q.overflow)

    def dequantized(self) -> SSMWeights:
        """The float weights the integer model actually uses (exact values of the integers)."""
        q = self.config.quant
        fa, fb, fc, fd = (q.abar.format.frac, q.bbar.format.frac, q.c.format.frac, q.d.format.frac)
        return SSMWeights(self.kind,
                          abar=to_float(self.abar_re, fa) + 1j * to_float(self.abar_im, fa),
                          bbar=to_float(self.bbar_re, fb) + 1j * to_float(self.bbar_im, fb),
                          c=to_float(self.c_re, fc) + 1j * to_float(self.c_im, fc),
                          d=to_float(self.d, fd))


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


def _accumulator(plan_quantizer: Quantizer | None, term_fracs, term_bounds, name: str) -> AccumulatorPlan:
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
        saturated = sum(_quantize_weight(part, q.abar, "abar")[1]
                        for part in (weights.abar.real, weights.abar.imag))
    else:
        abar_re, abar_im, corrected, polar_codes = quantize_abar_polar(
            weights.abar, q.abar, q.abar_polar, q.abar_stability)
        saturated = 0     # a polar pole cannot leave the format
    ints = {}
    for name, values, quantizer in (("bbar_re", weights.bbar.real, q.bbar),
                                    ("bbar_im", weights.bbar.imag, q.bbar),
                                    ("c_re", weights.c.real, q.c), ("c_im", weights.c.imag, q.c),
                                    ("d", weights.d, q.d)):
        ints[name], clamped = _quantize_weight(values, quantizer, name.split("_")[0])
        saturated += clamped

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
    state_acc = _accumulator(
        q.state_acc,
        [(fa.frac + fx_min, fa.frac + fx_max)] + [q.bbar.format.frac + fu] * inputs_per_state,
        [_product_bound(wa, wx, complex_terms=2)] + [_product_bound(wb, wu, complex_terms=1)] * inputs_per_state,
        "state_acc")
    output_acc = _accumulator(
        q.output_acc,
        [(q.c.format.frac + fx_min, q.c.format.frac + fx_max)] * states_per_output + [q.d.format.frac + fu],
        [_product_bound(wc, wx, complex_terms=2)] * states_per_output + [_product_bound(wd, wu, complex_terms=1)],
        "output_acc")
    _check_requantize(state_acc, "state_acc", fx_max, "state")
    _check_requantize(output_acc, "output_acc", q.output.format.frac, "output")
    return QuantizedSSM(config, weights, abar_re, abar_im, ints["bbar_re"], ints["bbar_im"],
                        ints["c_re"], ints["c_im"], ints["d"], state_int_bits,
                        state_acc, output_acc, corrected, saturated, polar_codes)


def load_model(config: SSMConfig) -> QuantizedSSM:
    """Load (or generate) the config's float weights and quantize them."""
    src = config.weights
    if src.source == "random":
        from .discretize import random_weights
        weights = random_weights(config.model.kind, channels=config.model.channels,
                                 states=config.model.states, seed=src.seed,
                                 dt_min=src.dt_min, dt_max=src.dt_max)
    else:
        weights = load_npz(src.path, config.model.kind, channels=config.model.channels,
                           states=config.model.states)
    return quantize_model(config, weights)


def describe_formats(model: QuantizedSSM) -> dict:
    """Human/JSON summary of every component's format (manifest and demo output)."""
    q = model.config.quant
    out = {name: str(getattr(q, name)) for name in ("abar", "bbar", "c", "d", "input", "output")}
    if q.abar_polar is not None:
        out["abar"] = f"{q.abar_polar.describe()}, decoded to {q.abar}"
    ints = sorted(set(int(b) for b in model.state_int_bits))
    state_fmt = q.state.format
    out["state"] = (str(q.state) if len(ints) == 1 else
                    f"fixed<{state_fmt.width},I_p> {q.state.rounding.value}/"
                    f"{q.state.overflow.value}, I_p in {ints}")
    out["state_acc"] = model.state_acc.describe()
    out["output_acc"] = model.output_acc.describe()
    return out

