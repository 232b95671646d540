"""The ``[network]`` section of a config: a whole model (encoder, L SSM layers, activation,
position-wise mixing, residual, then a readout: mean pooling, decoder and arg-max for a
classifier, or the decoder at every timestep for a sequence-to-sequence model) around the
single-layer config.

A config without ``[network]`` is a single SSM layer. With it, ``[model]`` and
``[quant.*]`` describe *every* SSM layer (same shape and formats), ``[quant.input]`` is the format
of the residual stream (the input of every layer), ``[quant.output]`` the format of each layer's
SSM output (before the activation), and ``[weights]`` names the network weights file
(its layout: ``weights.py``).

Reference::

    [network]
    inputs = 1                 # H_in: features per timestep entering the encoder
    layers = 2                 # L SSM layers, each: SSM -> activation -> mixing -> + residual
    steps = 64                 # T: sequence length; mean pooling divides the time sum by T
    readout = "mean"           # "mean": pool over time, decode, arg-max (a classifier);
                               # "per_step": decode every timestep (sequence to sequence:
                               # one output vector per input vector, no pooling, no arg-max)
    classes = 10               # decoder outputs; the prediction is their arg-max
    # outputs = 3              # per_step: decoder outputs per timestep (instead of classes)
    activation = "relu"        # "relu" (exact in fixed point) or "identity"
    # state_int_bits = [[...], [...]]   # optional: integer bits of every state of every layer
    #                                   # (L lists of P integers; overrides quant.state.int_bits)

    [network.quant.input]      # the network's input features
    format = "fixed<8,2>"      # rounding / overflow inherit [quant.defaults] like [quant.*]
    [network.quant.encoder]    # encoder weight (H, H_in); likewise:
    [network.quant.encoder_bias]   # encoder bias (H,)
    [network.quant.mix]        # mixing weight of each layer (H, H)
    [network.quant.mix_bias]   # mixing bias (H,)
    [network.quant.pool]       # mean-pooled features (H,); not with readout = "per_step",
                               # whose decoder reads the residual stream (quant.input)
    [network.quant.decoder]    # decoder weight (classes, H)
    [network.quant.decoder_bias]   # decoder bias (classes,)
    [network.quant.logits]     # decoder output (logits, or a per-step model's outputs):
                               # format = "full" (default: exact, derived width)
                               # or fixed<W,I> with rounding/overflow

    [network.layer_quant.1.state]  # optional: layer 1's own format of a component, merged over
    format = "fixed<12,4>"     # [quant.state] (mixed precision per layer); allowed for the SSM's
                               # own tensors: abar, bbar, c, d, state, state_acc, output_acc
                               # (input and output are the residual stream's and the SSM
                               # output's formats, shared by every layer)

The arithmetic these formats take part in is written in ``golden/network.py``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .fields import (accumulator_field, choice_field, expect_table, int_bits_list, int_field,
                     quantizer_field, reject_unknown)
from .formats import Quantizer

__all__ = ["NetworkConfig", "parse_network", "NETWORK_TENSORS", "ACTIVATIONS", "READOUTS",
           "LAYER_COMPONENTS"]

#: Tensors of the network (outside the SSM layers) with a fixed-point format, all required.
NETWORK_TENSORS = ("input", "encoder", "encoder_bias", "mix", "mix_bias", "pool",
                   "decoder", "decoder_bias")
ACTIVATIONS = ("relu", "identity")
#: "mean": mean pooling, decoder, arg-max (a classifier); "per_step": the decoder at every
#: timestep (sequence to sequence)
READOUTS = ("mean", "per_step")
#: Components a layer may give its own format (``[network.layer_quant.<l>.<component>]``).
LAYER_COMPONENTS = ("abar", "bbar", "c", "d", "state", "state_acc", "output_acc")


@dataclass(frozen=True)
class NetworkConfig:
    inputs: int
    layers: int
    steps: int
    #: the decoder's outputs: a classifier's classes, or a per-step model's outputs per timestep
    classes: int
    activation: str
    #: None: every layer uses quant.state's integer bits (or "auto"); else one tuple per layer.
    state_int_bits: tuple[tuple[int, ...], ...] | None
    input: Quantizer
    encoder: Quantizer
    encoder_bias: Quantizer
    mix: Quantizer
    mix_bias: Quantizer
    #: None with readout = "per_step" (no pooling)
    pool: Quantizer | None
    decoder: Quantizer
    decoder_bias: Quantizer
    #: None: the exact decoder sum (full precision, derived width).
    logits: Quantizer | None
    #: per layer, its own component tables (raw TOML, merged over ``[quant.*]`` by
    #: ``config.py``, which checks them); empty dicts where a layer has none
    layer_quant: tuple = ()
    readout: str = "mean"

    @property
    def per_step(self) -> bool:
        """A sequence-to-sequence model: the decoder's outputs at every timestep."""
        return self.readout == "per_step"


def parse_network(table, *, states: int, state_width: int, defaults: dict) -> NetworkConfig:
    """Validate ``[network]``. ``states``: P of every layer; ``state_width``: W of
    ``quant.state``; ``defaults``: ``[quant.defaults]`` (inherited like by ``[quant.*]``)."""
    where = "network"
    expect_table(table, where)
    reject_unknown(table, ("inputs", "layers", "steps", "readout", "classes", "outputs",
                           "activation", "state_int_bits", "quant", "layer_quant"), where)
    inputs = int_field(table, "inputs", where, lo=1, hi=4096)
    layers = int_field(table, "layers", where, lo=1, hi=64)
    steps = int_field(table, "steps", where, lo=1, hi=1 << 20)
    readout = choice_field(table, "readout", where, READOUTS, "mean")
    per_step = readout == "per_step"
    # a classifier has classes, a per-step model outputs: the decoder's width either way
    width_key, other_key = ("outputs", "classes") if per_step else ("classes", "outputs")
    if other_key in table:
        raise ConfigError(f"{where}.{other_key}: not with readout = {readout!r}; give "
                          f"{where}.{width_key} (the decoder's outputs)")
    classes = int_field(table, width_key, where, lo=1, hi=4096)
    activation = choice_field(table, "activation", where, ACTIVATIONS, "relu")
    qtable = expect_table(table.get("quant", {}), "network.quant")
    reject_unknown(qtable, (*NETWORK_TENSORS, "logits"), "network.quant")
    if per_step and "pool" in qtable:
        raise ConfigError("network.quant.pool: a per-step readout has no pooling (its decoder "
                          "reads the residual stream, quant.input); remove it")
    quantizers = {"pool": None}
    for name in NETWORK_TENSORS:
        if per_step and name == "pool":
            continue
        if name not in qtable:
            raise ConfigError(f"network.quant.{name}: missing; every network tensor needs a "
                              f"format (tensors: {', '.join(NETWORK_TENSORS)})")
        quantizers[name] = quantizer_field(expect_table(qtable[name], f"network.quant.{name}"),
                                           f"network.quant.{name}", defaults)
    logits = accumulator_field(qtable.get("logits"), "network.quant.logits", defaults)
    state_int_bits = None
    if table.get("state_int_bits") is not None:
        value = table["state_int_bits"]
        if not isinstance(value, list) or len(value) != layers:
            raise ConfigError(f"network.state_int_bits: must be a list of {layers} lists (one per "
                              f"layer) of {states} integers, not {value!r:.80}")
        state_int_bits = tuple(int_bits_list(bits, states, state_width,
                                             f"network.state_int_bits[{layer}]")
                               for layer, bits in enumerate(value))
    return NetworkConfig(inputs, layers, steps, classes, activation, state_int_bits,
                         logits=logits, layer_quant=_layer_quant(table.get("layer_quant", {}),
                                                                 layers),
                         readout=readout, **quantizers)


def _layer_quant(table, layers: int) -> tuple:
    """``[network.layer_quant]``: layer index -> component -> table (the tables themselves are
    checked where they are merged over ``[quant.*]``)."""
    where = "network.layer_quant"
    expect_table(table, where)
    out = [{} for _ in range(layers)]
    for key, components in table.items():
        if not (key.isdigit() and int(key) < layers):
            raise ConfigError(f"{where}.{key}: not a layer; allowed: 0..{layers - 1}")
        expect_table(components, f"{where}.{key}")
        reject_unknown(components, LAYER_COMPONENTS, f"{where}.{key}")
        for name, sub in components.items():
            expect_table(sub, f"{where}.{key}.{name}")
        out[int(key)] = components
    return tuple(out)
