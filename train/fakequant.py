"""Fake quantization for QAT: the forward pass calls golden/ (no second copy of the rounding and
overflow rules), the backward pass is a straight-through estimator.

* :func:`fake_quant` - an activation entering a format: ``golden.fixedpoint.round_float`` then
  ``apply_overflow`` (together: ``quantize_float``), returned as the exact float value
  (``to_float``). Gradient: identity where the value did not overflow, zero where it saturated or
  wrapped (clipped STE).
* :func:`fake_quant_layer` - all weights of one SSM layer through
  ``golden.quantize.quantize_model``: the same integers, the same Abar stability correction and
  the same per-mode state formats (explicit or ``"auto"``) as the golden model. Gradient: identity.
* :func:`fake_quant_weight` - a linear layer's weight or bias through
  ``golden.quantize.quantize_weight``. Gradient: identity.

Values travel as float64: a fixed-point value is an integer times a power of two, exact in float64
for integers up to 53 bits, so these round trips are lossless.
"""

from __future__ import annotations

import numpy as np
import torch

from ..golden.fixedpoint import apply_overflow, round_float
from ..golden.quantize import quantize_model, quantize_weight
from ..spec.formats import Quantizer, to_float
from ..spec.weights import SSMWeights

__all__ = ["fake_quant", "fake_quant_weight", "fake_quant_layer"]


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def _tensor(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values)).to(like.device, like.dtype)


class _FakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, quantizer: Quantizer, frac):
        f = quantizer.format.frac if frac is None else frac
        rounded = round_float(_numpy(x), f, quantizer.rounding)
        q = apply_overflow(rounded, quantizer.format.width, quantizer.overflow)
        ctx.save_for_backward(_tensor(rounded == q, x).bool())
        return _tensor(to_float(q, f), x)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


def fake_quant(x: torch.Tensor, quantizer: Quantizer, frac=None) -> torch.Tensor:
    """x (any shape, real) rounded into ``quantizer`` (``frac``: per-element fraction bits,
    broadcastable NumPy int array, for per-mode formats)."""
    return _FakeQuant.apply(x, quantizer, frac)


class _FakeQuantWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, quantizer: Quantizer, name: str):
        return _tensor(to_float(quantize_weight(_numpy(w), quantizer, name), quantizer.format.frac), w)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def fake_quant_weight(w: torch.Tensor, quantizer: Quantizer, name: str) -> torch.Tensor:
    return _FakeQuantWeight.apply(w, quantizer, name)


class _Replace(torch.autograd.Function):
    """Forward: ``value`` (computed by golden/); backward: the gradient passes to ``x`` (STE)."""
    @staticmethod
    def forward(ctx, x, value):
        return value

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def fake_quant_layer(abar, bbar, c, d, config, kind: str):
    """Complex abar, bbar, c and real d (flat layout, see ssmgen/spec/weights.py) of one layer, through
    ``golden.quantize.quantize_model(config, ...)`` -> (abar_re, abar_im, bbar_re, bbar_im, c_re,
    c_im, d, qlayer): the golden model's weights as exact float64 tensors, and the QuantizedSSM
    itself (its per-mode ``state_frac`` and accumulator plans)."""
    weights = SSMWeights(kind, abar=_numpy(abar.real) + 1j * _numpy(abar.imag),
                         bbar=_numpy(bbar.real) + 1j * _numpy(bbar.imag),
                         c=_numpy(c.real) + 1j * _numpy(c.imag), d=_numpy(d))
    qlayer = quantize_model(config, weights)
    deq = qlayer.dequantized()
    pairs = ((abar.real, deq.abar.real), (abar.imag, deq.abar.imag), (bbar.real, deq.bbar.real),
             (bbar.imag, deq.bbar.imag), (c.real, deq.c.real), (c.imag, deq.c.imag), (d, deq.d))
    return (*(_Replace.apply(x, _tensor(v, x)) for x, v in pairs), qlayer)
