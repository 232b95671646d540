"""The ``[network]`` section of a config: a whole model (encoder, L SSM layers, activation,
position-wise mixing, residual, mean pooling, decoder, arg-max) around the single-layer config.

A config without ``[network]`` is a single SSM layer, exactly as before. With it, ``[model]`` and
``[quant.*]`` describe *every* SSM layer (same shape and formats), ``[quant.input]`` is the format
of the residual stream (the input of every layer), ``[quant.output]`` the format of each layer's
SSM output (before the activation), and ``[weights]`` names the network weights file
(``ssmgen.golden.network``; it also holds layer 0 under the plain single-layer keys, so the
single-layer commands still accept the config and see layer 0).

Reference::

    [network]
    inputs = 1                 # H_in: features per timestep entering the encoder
    layers = 2                 # L SSM layers, each: SSM -> activation -> mixing -> + residual
    steps = 64                 # T: sequence length; mean pooling divides the time sum by T
    classes = 10               # decoder outputs; the prediction is their arg-max
    activation = "relu"        # "relu" (exact in fixed point) or "identity"
    # state_int_bits = [[...], [...]]   # optional: integer bits of every state of every layer
    #                                   # (L lists of P integers; overrides quant.state.int_bits)

    [network.quant.input]      # the network's input features
    format = "fixed<8,2>"      # rounding / overflow inherit [quant.defaults] like [quant.*]
    [network.quant.encoder]    # encoder weight (H, H_in); likewise:
    [network.quant.encoder_bias]   # encoder bias (H,)
    [network.quant.mix]        # mixing weight of each layer (H, H)
    [network.quant.mix_bias]   # mixing bias (H,)
    [network.quant.pool]       # mean-pooled features (H,)
    [network.quant.decoder]    # decoder weight (classes, H)
    [network.quant.decoder_bias]   # decoder bias (classes,)
    [network.quant.logits]     # decoder output: format = "full" (default: exact, derived width)
                               # or fixed<W,I> with rounding/overflow

The arithmetic these formats take part in is written in ``golden/network.py``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

from .golden.fixedpoint import Quantizer

__all__ = ["NetworkConfig", "parse_network", "NETWORK_TENSORS", "ACTIVATIONS"]

#: Tensors of the network (outside the SSM layers) with a fixed-point format, all required.
NETWORK_TENSORS = ("input", "encoder", "encoder_bias", "mix", "mix_bias", "pool",
                   "decoder", "decoder_bias")
ACTIVATIONS = ("relu", "identity")


@dataclass(frozen=True)
class NetworkConfig:
    inputs: int
    layers: int
    steps: int
    classes: int
    activation: str
    #: None: every layer uses quant.state's integer bits (or "auto"); else one tuple per layer.
    state_int_bits: tuple[tuple[int, ...], ...] | None
    input: Quantizer
    encoder: Quantizer
    encoder_bias: Quantizer
    mix: Quantizer
    mix_bias: Quantizer
    pool: Quantizer
    decoder: Quantizer
    decoder_bias: Quantizer
    #: None: the exact decoder sum (full precision, derived width).
    logits: Quantizer | None


def parse_network(table, model, quant_table) -> NetworkConfig:
    """Validate ``[network]``; ``model`` is the parsed ModelShape, ``quant_table`` the raw
    ``[quant]`` table (its ``defaults`` are inherited)."""
    from .config import (ConfigError, _choice, _expect_table, _int, _quantizer, _reject_unknown)
    where = "network"
    _expect_table(table, where)
    _reject_unknown(table, ("inputs", "layers", "steps", "classes", "activation",
                            "state_int_bits", "quant"), where)
    inputs = _int(table, "inputs", where, lo=1, hi=4096)
    layers = _int(table, "layers", where, lo=1, hi=64)
    steps = _int(table, "steps", where, lo=1, hi=1 << 20)
    classes = _int(table, "classes", where, lo=1, hi=4096)
    activation = _choice(table, "activation", where, ACTIVATIONS, "relu")
    defaults = quant_table.get("defaults", {}) if isinstance(quant_table, dict) else {}
    qtable = _expect_table(table.get("quant", {}), "network.quant")
    _reject_unknown(qtable, (*NETWORK_TENSORS, "logits"), "network.quant")
    quantizers = {}
    for name in NETWORK_TENSORS:
        if name not in qtable:
            raise ConfigError(f"network.quant.{name}: missing; every network tensor needs a "
                              f"format (tensors: {', '.join(NETWORK_TENSORS)})")
        sub = _expect_table(qtable[name], f"network.quant.{name}")
        if "int_bits" in sub:
            raise ConfigError(f"network.quant.{name}.int_bits: per-mode formats exist only for "
                              f"the state")
        quantizers[name] = _quantizer(sub, f"network.quant.{name}", defaults)
    logits_table = _expect_table(qtable.get("logits", {"format": "full"}), "network.quant.logits")
    if logits_table.get("format", "full") == "full":
        _reject_unknown(logits_table, ("format",), "network.quant.logits")
        logits = None
    else:
        if "int_bits" in logits_table:
            raise ConfigError("network.quant.logits.int_bits: per-mode formats exist only for "
                              "the state")
        logits = _quantizer(logits_table, "network.quant.logits", defaults)
    state_int_bits = _state_int_bits(table.get("state_int_bits"), layers, model,
                                     quant_table, ConfigError)
    return NetworkConfig(inputs, layers, steps, classes, activation, state_int_bits,
                         logits=logits, **quantizers)


def _state_int_bits(value, layers, model, quant_table, ConfigError):
    where = "network.state_int_bits"
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != layers:
        raise ConfigError(f"{where}: must be a list of {layers} lists (one per layer) of "
                          f"{model.states} integers, not {value!r:.80}")
    from .golden.fixedpoint import FixedFormat
    try:
        width = FixedFormat.parse(quant_table["state"]["format"]).width
    except (KeyError, TypeError, ValueError):
        width = None          # quant.state itself is reported by the [quant] parser
    out = []
    for layer, bits in enumerate(value):
        if not isinstance(bits, list) or len(bits) != model.states:
            raise ConfigError(f"{where}[{layer}]: needs one integer per state ({model.states}), "
                              f"not {bits!r:.80}")
        for index, b in enumerate(bits):
            if isinstance(b, bool) or not isinstance(b, int):
                raise ConfigError(f"{where}[{layer}][{index}]: must be an integer, not {b!r}")
            if width is not None:
                try:
                    FixedFormat(width, b)
                except ValueError as exc:
                    raise ConfigError(f"{where}[{layer}][{index}]: {exc}") from None
        out.append(tuple(bits))
    return tuple(out)
