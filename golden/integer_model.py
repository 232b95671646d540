"""Bit-exact integer model of one quantized SSM layer: the specification of the hardware.

Pure functions over int64 arrays, vectorized over batch and states; time is the only loop (the
recurrence is sequential). Every rounding and overflow step is done by ``fixedpoint``.
``golden.quantize`` has proven that no exact intermediate exceeds INT64_SAFE_BITS, so int64
cannot overflow silently here.

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
largest fraction-bit count of its terms with a width derived from the formats (never
truncated). With an
explicit accumulator format, each term is first requantized into it (its rounding and overflow),
the quantized terms are summed exactly, and the overflow mode is applied once to the sum (for
wrap this equals a W-bit adder chain; for saturate a clamp after guard bits).

A ``Q`` step is :func:`ssmgen.golden.fixedpoint.requantize`: one rounding, one overflow.
"""

from __future__ import annotations

import numpy as np

from ..spec.formats import to_float
from ..spec.quantized import AccumulatorPlan, QuantizedSSM
from .fixedpoint import apply_overflow, quantize_float, requantize

__all__ = ["quantize_input", "dequantize_output", "step", "run_integer", "run_quantized"]


def quantize_input(model: QuantizedSSM, u) -> np.ndarray:
    """float (batch, time, H) in real units -> int64 (batch, time, H) in the input format."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 3 or u.shape[2] != model.channels:
        raise ValueError(f"input must have shape (batch, time, H={model.channels}), not {u.shape}")
    return quantize_float(u, model.config.quant.input)


def dequantize_output(model: QuantizedSSM, y_int) -> np.ndarray:
    """int64 outputs -> exact float64 values in real units."""
    return to_float(y_int, model.config.quant.output.format.frac)


class _Accumulator:
    """Adds terms per an AccumulatorPlan: exact alignment (full precision) or per-term
    requantization followed by one overflow step on the sum (explicit format)."""

    def __init__(self, plan: AccumulatorPlan):
        self.plan = plan
        self.total = 0

    def add(self, values, frac, *, sum_axis=None):
        """Add int64 ``values`` with ``frac`` fraction bits (int or broadcastable array),
        summing over ``sum_axis`` after the per-term step."""
        if self.plan.full_precision:
            term = np.left_shift(values, self.plan.frac - np.asarray(frac))   # exact
        else:
            term = requantize(values, frac, self.plan.quantizer)
        self.total = self.total + (term if sum_axis is None else term.sum(axis=sum_axis))

    def result(self):
        if self.plan.full_precision:
            return self.total
        return apply_overflow(self.total, self.plan.width, self.plan.quantizer.overflow)


def _into_state(model: QuantizedSSM, values, frac):
    """Requantize accumulator values (batch, P) into each state's own format (per-mode integer
    bits): requantize shifts by (source frac - format frac), so express each state's target
    fraction bits through the source frac."""
    base = model.config.quant.state
    return requantize(values, frac - model.state_frac + base.format.frac, base)


def _state_update(model: QuantizedSSM, xr, xi, u):
    q = model.config.quant
    fa, fb, fu = q.abar.format.frac, q.bbar.format.frac, q.input.format.frac
    fx = model.state_frac
    ar, ai, br, bi = model.abar_re, model.abar_im, model.bbar_re, model.bbar_im
    new = []
    for ax_part, b_part in ((ar * xr - ai * xi, br), (ar * xi + ai * xr, bi)):
        acc = _Accumulator(model.state_acc)
        acc.add(ax_part, fa + fx)
        if model.kind == "s4d":
            acc.add(b_part * u[:, model.channel], fb + fu)
        elif model.state_acc.full_precision:
            acc.add(u @ b_part.T, fb + fu)                     # exact sum, then aligned
        else:
            acc.add(b_part[None, :, :] * u[:, None, :], fb + fu, sum_axis=2)
        new.append(_into_state(model, acc.result(), model.state_acc.frac))
    return new


def _output(model: QuantizedSSM, xr, xi, u):
    q = model.config.quant
    fc, fd, fu = q.c.format.frac, q.d.format.frac, q.input.format.frac
    fx = model.state_frac
    acc = _Accumulator(model.output_acc)
    if model.kind == "s4d":
        terms = model.c_re * xr - model.c_im * xi                          # (B, P)
        batch = terms.shape[0]
        acc.add(terms.reshape(batch, model.channels, -1),
                (fc + fx).reshape(model.channels, -1), sum_axis=2)
    elif model.output_acc.full_precision:
        shift = fx.max() - fx                                              # align states first
        acc.add((xr << shift) @ model.c_re.T - (xi << shift) @ model.c_im.T, fc + fx.max())
    else:
        terms = model.c_re[None] * xr[:, None, :] - model.c_im[None] * xi[:, None, :]   # (B, H, P)
        acc.add(terms, fc + fx, sum_axis=2)
    acc.add(model.d * u, fd + fu)
    return requantize(acc.result(), model.output_acc.frac, q.output)


def step(model: QuantizedSSM, xr, xi, u):
    """One timestep for a batch: state (re, im) int64 (batch, P) and inputs int64 (batch, H) ->
    (new re, new im, outputs int64 (batch, H)). For callers that keep the state between calls
    (the protocol's reference device); ``run_integer`` loops over it."""
    xr, xi = _state_update(model, xr, xi, u)
    return xr, xi, _output(model, xr, xi, u)


def run_integer(model: QuantizedSSM, u_int, *, return_states: bool = False):
    """Run the layer on integer inputs.

    u_int: int64 (batch, time, H) in the input format; every sequence starts from state 0.
    Returns y_int int64 (batch, time, H) in the output format; with ``return_states`` also the
    state trajectory (re, im) int64 (batch, time, P) each, in the per-mode state formats.
    """
    u_int = np.asarray(u_int)
    if u_int.ndim != 3 or u_int.shape[2] != model.channels:
        raise ValueError(f"input must have shape (batch, time, H={model.channels}), not {u_int.shape}")
    if not np.issubdtype(u_int.dtype, np.integer):
        raise ValueError(f"input must be integers of the input format, not dtype {u_int.dtype} "
                         f"(quantize_input converts real values)")
    fmt = model.config.quant.input.format
    if u_int.size and (u_int.min() < fmt.min_int or u_int.max() > fmt.max_int):
        raise ValueError(f"input integers must lie in {fmt.min_int}..{fmt.max_int} ({fmt})")
    u_int = u_int.astype(np.int64)
    batch, steps, _ = u_int.shape
    xr = np.zeros((batch, model.states), dtype=np.int64)
    xi = np.zeros_like(xr)
    y = np.empty((batch, steps, model.channels), dtype=np.int64)
    states = (np.empty((batch, steps, model.states), dtype=np.int64),
              np.empty((batch, steps, model.states), dtype=np.int64)) if return_states else None
    for k in range(steps):
        xr, xi, y[:, k, :] = step(model, xr, xi, u_int[:, k, :])
        if states is not None:
            states[0][:, k], states[1][:, k] = xr, xi
    return (y, states) if return_states else y


def run_quantized(model: QuantizedSSM, u) -> np.ndarray:
    """Float in, float out through the integer model: quantize input, run, dequantize exactly."""
    return dequantize_output(model, run_integer(model, quantize_input(model, u)))
