"""Experiment: how accurate would a 4-bit Abar be in another representation?

A 4-bit ``fixed<4,1>`` Abar (today's format) has re/im steps of 1/4: no real pole above 0.75 and
no slow pole at all, yet S4D's useful poles sit at |Abar| = 0.99..0.9995. This script measures two
alternative representations with fake quantization, without changing the golden model or the
hardware:

* ``delta``: delta = 1 - Abar (complex) as a B-bit mantissa per part with a per-mode power-of-two
  exponent (``fixed<B, I_p>``, I_p per mode like the state's per-mode integer bits); the hardware
  would compute ``Abar x = x - delta x`` (a B-bit multiply, a shift and a subtract);
* ``polar``: Abar = (1 - rho) e^(i theta) with rho and theta each a B-bit mantissa with a per-mode
  exponent (rho >= one LSB, so |Abar| < 1 by construction). This one is now implemented
  (``quant.abar.form = "polar"``, golden/abar_polar.py, ``ssmgen train --abar-form polar``); the
  script uses that implementation.

Emulation: the representable Abar values are rounded to 15 fraction bits and the golden integer
network runs with Abar in ``fixed<16,1>``, so Abar takes exactly (delta: exactly; polar: to
2**-15) the values of the representation, while every other tensor uses the widths given
(default: 4-bit weights, 8-bit state and activations, the ``ssmgen train`` recipe: B/C
equalization and MSE formats). QAT trains through the representation with a straight-through
gradient. ``--repr fixed`` is the baseline, today's ``fixed<B,1>`` Abar (golden quantizer, same
emulation: its values are exact in ``fixed<16,1>``).

Run:  python benchmarks/abar_repr.py MODEL_DIR/checkpoints/float.pt --repr polar --qat-epochs 6
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import types

import numpy as np
import torch

from ssmgen.golden.fixedpoint import round_float
from ssmgen.golden.quantize import quantize_abar, quantize_abar_polar
from ssmgen.spec.config import AbarPolar
from ssmgen.spec.formats import FixedFormat, Overflow, Quantizer, Rounding, to_float
from ssmgen.train.commands import widths_from_bits
from ssmgen.train.loop import evaluate_golden, evaluate_torch, fit, load_checkpoint
from ssmgen.train.ptq import build_config, calibrate, int_bits_for, parse
from ssmgen.train.tasks import load_task

EMULATION_FRAC = 15          # fraction bits of fixed<16,1>, the Abar format of the emulation


def exponent(peak: np.ndarray, bits: int) -> np.ndarray:
    """Fraction bits per mode: fixed<bits, I_p> with I_p the smallest covering peak_p (a per-mode
    exponent), capped so that the value stays exact in the emulation format."""
    return np.minimum([bits - int_bits_for(float(x), bits) for x in peak], EMULATION_FRAC)


def mantissa(v: np.ndarray, frac: np.ndarray, bits: int) -> np.ndarray:
    """Integer mantissas of v with frac fraction bits: golden rounding, then a clamp to B bits."""
    return np.clip(round_float(v, frac, Rounding.HALF_EVEN), -(1 << (bits - 1)),
                   (1 << (bits - 1)) - 1)


def block_float(v: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Each v_p (real) as a B-bit mantissa with its own exponent -> (values, frac)."""
    frac = exponent(np.abs(v), bits)
    return mantissa(v, frac, bits) * 2.0 ** -frac, frac


def delta_abar(abar: np.ndarray, bits: int) -> np.ndarray:
    """Abar_q = 1 - delta_q; a pole on or outside the unit circle moves Re or Im of Abar_q one
    mantissa LSB toward 0 (the one closest to the float pole) until it is inside."""
    frac = exponent(np.maximum(np.abs(1 - abar.real), np.abs(abar.imag)), bits)  # one per mode
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    qr, qi = mantissa(1 - abar.real, frac, bits), mantissa(-abar.imag, frac, bits)
    for p in range(len(abar)):
        lsb = 2.0 ** -frac[p]
        while (1 - qr[p] * lsb) ** 2 + (qi[p] * lsb) ** 2 >= 1:
            steps = []
            if (r := 1 - qr[p] * lsb) != 0 and lo <= qr[p] + np.sign(r) <= hi:
                steps.append((qr[p] + np.sign(r), qi[p]))
            if qi[p] != 0:
                steps.append((qr[p], qi[p] - np.sign(qi[p])))
            qr[p], qi[p] = min(steps, key=lambda c: abs(1 - c[0] * lsb - 1j * c[1] * lsb - abar[p]))
    return (1 - qr * 2.0 ** -frac) - 1j * qi * 2.0 ** -frac


def polar_abar(abar: np.ndarray, bits: int, theta_bits: int | None = None) -> np.ndarray:
    """The golden polar form (golden/abar_polar.py, ``quant.abar.form = "polar"``), decoded into
    the emulation's fixed<16,1>: an unsigned ``bits`` radius mantissa, a signed angle mantissa."""
    q = Quantizer(FixedFormat(EMULATION_FRAC + 1, 1), Rounding.HALF_EVEN, Overflow.SATURATE)
    polar = AbarPolar(bits, bits if theta_bits is None else theta_bits)
    re, im, _, _ = quantize_abar_polar(abar, q, polar, "correct")
    return to_float(re, EMULATION_FRAC) + 1j * to_float(im, EMULATION_FRAC)


def fixed_abar(abar: np.ndarray, bits: int) -> np.ndarray:
    """Today's format, fixed<B,1>, by the golden quantizer (with its stability correction)."""
    q = Quantizer(FixedFormat(bits, 1), Rounding.HALF_EVEN, Overflow.SATURATE)
    re, im, _ = quantize_abar(abar, q, "correct")
    return to_float(re, bits - 1) + 1j * to_float(im, bits - 1)


REPRS = {"fixed": fixed_abar, "delta": delta_abar, "polar": polar_abar}


class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, abar, fn, bits):
        return torch.from_numpy(fn(abar.detach().numpy(), bits))

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def use_representation(model, fn, bits: int) -> None:
    """Every layer's discrete() returns the represented Abar (STE gradient)."""
    for layer in model.layers:
        plain = layer.discrete

        def discrete(self, plain=plain):
            abar, bbar, c, d = plain()
            return _STE.apply(abar, fn, bits), bbar, c, d
        layer.discrete = types.MethodType(discrete, layer)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="float checkpoint (MODEL_DIR/checkpoints/float.pt)")
    parser.add_argument("--repr", choices=REPRS, default="polar")
    parser.add_argument("--abar-bits", type=int, default=4)
    parser.add_argument("--theta-bits", type=int,
                        help="polar: mantissa bits of the angle (default: --abar-bits)")
    parser.add_argument("--weight-bits", type=int, default=4)
    parser.add_argument("--qat-epochs", type=int, default=6)
    parser.add_argument("--qat-lr", type=float, default=0.002)
    parser.add_argument("--task", default="sdigits")
    args = parser.parse_args(argv)
    if not 2 <= args.abar_bits <= 16:
        parser.error(f"--abar-bits: must be in 2..16, not {args.abar_bits}")
    torch.set_num_threads(1)
    task = load_task(args.task)
    model = load_checkpoint(args.checkpoint)
    model.equalize_()
    result = {"repr": args.repr, "abar_bits": args.abar_bits, "weight_bits": args.weight_bits,
              "float": evaluate_torch(model, task.x_test, task.y_test)[0]}
    represent = REPRS[args.repr]
    if args.theta_bits is not None:
        if args.repr != "polar":
            parser.error("--theta-bits: applies to --repr polar only")
        represent = functools.partial(polar_abar, theta_bits=args.theta_bits)
        result["theta_bits"] = args.theta_bits
    use_representation(model, represent, args.abar_bits)
    abar_width = EMULATION_FRAC + 1
    # the float network with only Abar represented: what the representation alone costs
    result["float_abar_only"] = evaluate_torch(model, task.x_test, task.y_test)[0]
    weights = model.network_weights()
    cal = calibrate(weights, task.x_train[:512], activation=model.activation)
    widths = widths_from_bits(weights=args.weight_bits, state=8, activations=8, abar=abar_width)
    config = parse(build_config(model.meta, cal, widths, steps=task.steps, choice="mse"))
    result["ptq"] = evaluate_golden(config, weights, task.x_test, task.y_test)[0]
    start = time.perf_counter()
    if args.qat_epochs:
        fit(model, task.x_train, task.y_train, epochs=args.qat_epochs, lr=args.qat_lr, seed=1,
            config=config, progress=False)
        result["qat"] = evaluate_golden(config, model.network_weights(), task.x_test,
                                        task.y_test)[0]
    result["qat_epochs"] = args.qat_epochs
    result["qat_seconds"] = round(time.perf_counter() - start)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
