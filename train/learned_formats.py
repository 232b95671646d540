"""Learned power-of-two activation formats for QAT: LSQ (Esser et al. 2020) and PACT (Choi et al.
2018) learn a quantizer's step and clipping range by gradient descent; here the step stays a
power of two, so that the hardware keeps shifts, and what is learned is the number of fraction
bits F of each activation format (the residual stream, ``quant.input``, and the SSM output,
``quant.output``; width W fixed, range 2^(W-1-F)). The integer bits of each format, W - F, are
what the exported config holds.

Each format has a continuous parameter f; the forward pass uses F = round(f) (a straight-through
estimator) through golden/'s quantizer as every other fake quantization does, so eval-mode
outputs stay the golden integer network's. The gradient of a quantized value q = 2^-F clip(round(
x 2^F)) with respect to F, with rounding passed straight through, is ``ln 2 (x - q)`` where x
lies inside the range (finer steps shrink the rounding error) and ``-ln 2 q`` where it was
clipped (finer steps clip harder): LSQ's step gradient in the exponent's units, scaled as LSQ
scales it by 1 / sqrt(elements x Q_max). The term enters as ``(f - f.detach()) x dq/dF``,
zero in the forward pass, so the quantized values are exactly golden's.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..spec.config import parse_config
from ..spec.formats import FixedFormat

__all__ = ["ActivationFormats", "LEARNED_FORMATS"]

#: learned format -> its place in a config dict
LEARNED_FORMATS = {"stream": ("quant", "input"), "ssm_out": ("quant", "output")}


def _format(data: dict, key: str) -> FixedFormat:
    table = data
    for part in LEARNED_FORMATS[key]:
        table = table[part]
    return FixedFormat.parse(table["format"])


class ActivationFormats(nn.Module):
    """The learned fraction bits of the activation formats of one config (a network config
    dict, as ``train.ptq.build_config`` writes it; ``base_dir`` resolves its weights file)."""

    def __init__(self, data: dict, base_dir="."):
        super().__init__()
        self.data, self.base_dir = copy.deepcopy(data), base_dir
        self.frac = nn.ParameterDict({
            key: nn.Parameter(torch.tensor(float(_format(data, key).frac), dtype=torch.float64))
            for key in LEARNED_FORMATS})
        self._configs: dict = {}

    def rounded(self) -> dict:
        """{format: its fraction bits now}."""
        return {key: int(round(float(p.detach()))) for key, p in self.frac.items()}

    def config_data(self) -> dict:
        """The config dict with each learned format at its fraction bits now."""
        data = copy.deepcopy(self.data)
        for key, frac in self.rounded().items():
            *path, name = LEARNED_FORMATS[key]
            table = data
            for part in path:
                table = table[part]
            width = _format(self.data, key).width
            table[name] = dict(table[name], format=f"fixed<{width},{width - frac}>")
        return data

    def report(self) -> dict:
        """{format: {"from": the calibrated format, "to": the learned one, "fraction_bits": the
        parameter now}} for metrics.json."""
        learned = self.config_data()
        return {key: {"from": str(_format(self.data, key)), "to": str(_format(learned, key)),
                      "fraction_bits": round(float(self.frac[key].detach()), 4)}
                for key in LEARNED_FORMATS}

    def config(self):
        """The parsed config of :meth:`config_data` (cached per rounded fraction bits)."""
        key = tuple(sorted(self.rounded().items()))
        if key not in self._configs:
            self._configs[key] = parse_config(self.config_data(), base_dir=self.base_dir)
        return self._configs[key]

    def attach(self, key: str, x: torch.Tensor, q: torch.Tensor, quantizer) -> torch.Tensor:
        """``q`` (x fake-quantized by ``quantizer``, the learned format ``key`` now) with the
        gradient of its fraction bits added; the same values."""
        fmt = quantizer.format
        step = 2.0 ** -fmt.frac
        hi, lo = fmt.max_int * step, fmt.min_int * step
        with torch.no_grad():
            clipped = (x > hi) | (x < lo)
            slope = math.log(2.0) * torch.where(clipped, -q, x - q)
            slope = slope / math.sqrt(max(x.numel(), 1) * fmt.max_int)
        f = self.frac[key]
        return q + (f - f.detach()) * slope
