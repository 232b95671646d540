"""Folded layers (``hardware.fold_layers``): the L layers of a network as L banks of one SSM layer.

An S4D state reads only its own channel's input and feeds only its own channel's output, so L
layers of H channels with the same formats are one layer of L x H channels whose channel
``l * H + h`` is layer l's channel h: their weights, per-mode state formats and states side by
side in the same memories (:func:`stack_layers`). The datapath runs one bank per input beat:
a beat of bank l issues only bank l's G = P / lanes groups (global group ``l * G + g``), takes
H samples and gives H outputs, so one layer's logic does L layers' work at G cycles per beat,
L x G cycles per timestep (``SSMLayer(banks=L)``).

Each bank keeps its own states, so the banks' beats may interleave freely as long as each
bank's own beats stay in order: the network (``network.py``) runs bank l one timestep behind
bank l - 1 (layer l's input at step k is layer l - 1's output at step k, after the mixing unit),
taking turns beat by beat.

Arithmetic is unchanged: each state still rounds into its own format, each channel's output
sum is exact (full precision) or the layers' common accumulator format. A full-precision
accumulator of the stacked layer holds every layer's terms at the most fraction bits any layer
uses and in enough bits for the widest of them: exact sums in a wider register are the same
sums, so the rounding into the state and output formats gives the golden result bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...spec.quantized import AccumulatorPlan, QuantizedSSM
from ...spec.weights import SSMWeights

__all__ = ["stack_layers"]


def _common_plan(plans: list[AccumulatorPlan]) -> AccumulatorPlan:
    """An accumulator that holds every plan's sums exactly (see the module docstring)."""
    first = plans[0]
    if not first.full_precision:
        if any(plan != first for plan in plans):
            raise ValueError("folded layers need the same accumulator format in every layer")
        return first
    frac = max(plan.frac for plan in plans)
    bits = max(plan.sum_bits + frac - plan.frac for plan in plans)
    return AccumulatorPlan(None, frac, bits, bits, first.n_terms)


def stack_layers(layers) -> QuantizedSSM:
    """One S4D QuantizedSSM of L x H channels and L x P states holding the L layers side by
    side (layer l's state p is state ``l * P + p``, its channel h channel ``l * H + h``)."""
    first = layers[0]
    if first.kind != "s4d":
        raise ValueError(f"folded layers must be s4d, not {first.kind!r}")
    quant = first.config.quant
    for index, layer in enumerate(layers):
        other = dataclasses.replace(layer.config.quant, state_int_bits=quant.state_int_bits)
        if other != quant or layer.config.model != first.config.model:
            raise ValueError(f"folded layers need the same shape and formats; layer {index} "
                             f"differs from layer 0")

    def joined(name):
        return np.concatenate([getattr(layer, name) for layer in layers])

    weights = SSMWeights("s4d", *(np.concatenate([getattr(layer.float_weights, name)
                                                  for layer in layers])
                                  for name in ("abar", "bbar", "c", "d")))
    model = dataclasses.replace(first.config.model,
                                channels=first.channels * len(layers),
                                states=first.states * len(layers))
    bits = joined("state_int_bits")
    config = dataclasses.replace(first.config, model=model,
                                 quant=dataclasses.replace(quant, state_int_bits=tuple(
                                     int(b) for b in bits)))
    return dataclasses.replace(
        first, config=config, float_weights=weights,
        **{name: joined(name) for name in ("abar_re", "abar_im", "bbar_re", "bbar_im", "c_re",
                                           "c_im", "d")},
        state_int_bits=bits,
        state_acc=_common_plan([layer.state_acc for layer in layers]),
        output_acc=_common_plan([layer.output_acc for layer in layers]),
        abar_corrected=sum(layer.abar_corrected for layer in layers),
        saturated={}, abar_polar=None)
