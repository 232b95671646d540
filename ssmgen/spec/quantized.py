"""A quantized model: integer weights, per-mode state formats and derived accumulator widths.

``QuantizedSSM`` is one layer, ``QuantizedNetwork`` a whole model (its layers are QuantizedSSMs).
``ssmgen.golden.quantize`` makes them from float weights; the golden integer model, the hardware
generator, QAT and the model hash all read them, so they cannot disagree about a weight, a format
or an accumulator width. The arithmetic these numbers take part in is written in
``golden/integer_model.py`` (a layer) and ``golden/network.py`` (a network).

Both types answer the same questions (``kind``, ``describe_formats``, ``manifest_sections``,
``identity``, ``integer_arrays``), so code that takes either never asks which one it has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .config import SSMConfig
from .formats import Quantizer, to_float
from .weights import NetworkWeights, SSMWeights

__all__ = ["AccumulatorPlan", "PolarCodes", "QuantizedSSM", "QuantizedNetwork",
           "FLOAT64_EXACT_BITS"]

#: Integers up to this many bits (signed) are exact in float64: QAT's float64 forward equals the
#: integer model bit for bit when every intermediate fits (``QuantizedNetwork.float64_exact``).
FLOAT64_EXACT_BITS = 53


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
class PolarCodes:
    """The stored form of a layer's poles (``quant.abar.form = "polar"``), int64 (P,) each:
    rho = rho_mant * 2**-rho_exp (1 - |Abar|) and theta = theta_mant * 2**-theta_exp (arg Abar).
    ``golden/abar_polar.py`` encodes and decodes them."""
    rho_mant: np.ndarray
    rho_exp: np.ndarray
    theta_mant: np.ndarray
    theta_exp: np.ndarray

    FIELDS = ("rho_mant", "rho_exp", "theta_mant", "theta_exp")

    def values(self) -> np.ndarray:
        """complex128 (P,): the exact polar poles (1 - rho) e^(i theta), before decoding."""
        rho = np.ldexp(self.rho_mant.astype(np.float64), -self.rho_exp)
        theta = np.ldexp(self.theta_mant.astype(np.float64), -self.theta_exp)
        return (1 - rho) * np.exp(1j * theta)


def _hardware_identity(config: SSMConfig) -> dict:
    """Every field that shapes the circuit: the model's shape and all of ``[hardware]`` (new
    hardware fields are covered without touching this)."""
    hardware = asdict(config.hardware)
    if not hardware["fold_layers"]:
        del hardware["fold_layers"]     # designs from before the option keep their hash
    return {"model": asdict(config.model), "hardware": hardware}


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
    #: weights clamped by a saturating format, per tensor ("abar", "bbar", "c", "d"; only those
    #: with any)
    saturated: dict
    #: quant.abar.form = "polar": the stored radius/angle codes abar_re/abar_im decode from
    abar_polar: PolarCodes | None = None

    #: What one generated design of this model is (the manifest's ``kind``).
    design_kind = "layer"

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
    def saturated_weights(self) -> int:
        """Weights clamped by a saturating format, all tensors together."""
        return sum(self.saturated.values())

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

    def describe_formats(self) -> dict:
        """Every component's format, by name (manifest, demo, ``ssmgen generate``)."""
        q = self.config.quant
        out = {name: str(getattr(q, name)) for name in ("abar", "bbar", "c", "d", "input", "output")}
        if q.abar_polar is not None:
            out["abar"] = f"{q.abar_polar.describe()}, decoded to {q.abar}"
        ints = sorted(set(int(b) for b in self.state_int_bits))
        state_fmt = q.state.format
        out["state"] = (str(q.state) if len(ints) == 1 else
                        f"fixed<{state_fmt.width},I_p> {q.state.rounding.value}/"
                        f"{q.state.overflow.value}, I_p in {ints}")
        out["state_acc"] = self.state_acc.describe()
        out["output_acc"] = self.output_acc.describe()
        return out

    def integer_arrays(self) -> dict:
        """Integer weights as the hardware stores them, with their fraction bits under
        ``<key>.frac``; the per-mode state fraction bits under ``state_frac``; a polar Abar's
        codes under ``Abar.{rho,theta}_{mant,exp}``."""
        q = self.config.quant
        out, fracs = {}, {}
        for key, value, quantizer in (("Abar.re", self.abar_re, q.abar), ("Abar.im", self.abar_im, q.abar),
                                      ("Bbar.re", self.bbar_re, q.bbar), ("Bbar.im", self.bbar_im, q.bbar),
                                      ("C.re", self.c_re, q.c), ("C.im", self.c_im, q.c),
                                      ("D", self.d, q.d)):
            out[key] = value
            fracs[f"{key}.frac"] = np.int64(quantizer.format.frac)
        out["state_frac"] = self.state_frac
        if self.abar_polar is not None:          # the stored form Abar.re/im decode from
            for name in PolarCodes.FIELDS:
                out[f"Abar.{name}"] = getattr(self.abar_polar, name)
        return {**out, **fracs}

    def identity(self) -> dict:
        """What, besides :meth:`integer_arrays`, determines the hardware's behaviour and timing
        (``hashing.model_hash``): shape, hardware options, formats."""
        return {**_hardware_identity(self.config), "formats": self.describe_formats()}

    def _network_summary(self) -> dict:
        """The network's shape, as the hash identity and the manifest give it."""
        net = self.network
        return {"inputs": net.inputs, "layers": net.layers, "steps": net.steps,
                "classes": net.classes, "activation": net.activation,
                # only when not the default: a classifier's hash is unchanged
                **({"readout": net.readout} if net.per_step else {})}

    def manifest_sections(self) -> dict:
        """The manifest's description of the model (the hardware adds ports and timing)."""
        q = self.config.quant
        return {
            "model": {"kind": self.kind, "channels": self.channels, "states": self.states,
                      "modes_per_channel": self.config.model.modes_per_channel},
            "formats": self.describe_formats(),
            "fractions": {"input": q.input.format.frac, "output": q.output.format.frac,
                          "state": [int(f) for f in self.state_frac]},
            "abar_corrected_poles": self.abar_corrected,
            "saturated_weights": self.saturated_weights,
            "saturated_weights_by_tensor": dict(self.saturated),
        }


@dataclass(frozen=True)
class QuantizedNetwork:
    """Integer weights, formats and derived accumulator widths of the whole network.

    encoder_w int64 (H, H_in), encoder_b (H,); mix_w tuple of (H, H), mix_b of (H,);
    decoder_w (classes, H), decoder_b (classes,); each in its network.quant format.
    layers: tuple of QuantizedSSM (one per layer).
    encoder_acc, mix_acc, decoder_acc: full-precision AccumulatorPlans (frac, derived width).
    pool_mult, pool_shift: the mean's constant (M, S); pool_bits: bits of s * M.
    """
    config: SSMConfig
    float_weights: NetworkWeights
    encoder_w: np.ndarray
    encoder_b: np.ndarray
    layers: tuple
    mix_w: tuple
    mix_b: tuple
    decoder_w: np.ndarray
    decoder_b: np.ndarray
    encoder_acc: AccumulatorPlan
    mix_acc: AccumulatorPlan
    decoder_acc: AccumulatorPlan
    pool_mult: int
    pool_shift: int
    pool_bits: int
    #: weights clamped by a saturating format, per tensor ("encoder", "layers.<l>.mix",
    #: "layers.<l>.bbar", ...; only those with any)
    saturated: dict

    design_kind = "network"

    @property
    def kind(self) -> str:
        return self.config.model.kind

    @property
    def network(self):
        return self.config.network

    @property
    def saturated_weights(self) -> int:
        return sum(self.saturated.values())

    @property
    def abar_corrected(self) -> int:
        """Poles pulled back inside the unit circle, over all layers."""
        return sum(layer.abar_corrected for layer in self.layers)

    @property
    def logits_frac(self) -> int:
        q = self.network.logits
        return self.decoder_acc.frac if q is None else q.format.frac

    @property
    def logits_width(self) -> int:
        """Bits of one logit: the exact decoder sum's derived width, or ``network.quant.logits``'s."""
        q = self.network.logits
        return self.decoder_acc.sum_bits if q is None else q.format.width

    @property
    def max_exact_bits(self) -> int:
        """Widest exact intermediate (signed bits) anywhere in the network."""
        bits = [self.encoder_acc.sum_bits, self.mix_acc.sum_bits, self.decoder_acc.sum_bits]
        if not self.network.per_step:
            bits.append(self.pool_bits)
        for layer in self.layers:
            bits += [layer.state_acc.sum_bits, layer.output_acc.sum_bits]
        return max(bits)

    @property
    def float64_exact(self) -> bool:
        """True when every intermediate is an integer of at most 53 bits (times a power of two),
        so a float64 computation in any summation order gives the integer model's values."""
        return self.max_exact_bits <= FLOAT64_EXACT_BITS

    def dequantized(self) -> NetworkWeights:
        """The float weights the integer model actually uses (exact values of the integers)."""
        net = self.network
        f = {name: getattr(net, name).format.frac for name in
             ("encoder", "encoder_bias", "mix", "mix_bias", "decoder", "decoder_bias")}
        return NetworkWeights(to_float(self.encoder_w, f["encoder"]),
                              to_float(self.encoder_b, f["encoder_bias"]),
                              tuple(layer.dequantized() for layer in self.layers),
                              tuple(to_float(w, f["mix"]) for w in self.mix_w),
                              tuple(to_float(b, f["mix_bias"]) for b in self.mix_b),
                              to_float(self.decoder_w, f["decoder"]),
                              to_float(self.decoder_b, f["decoder_bias"]))

    def describe_formats(self) -> dict:
        """Every network tensor's format (each layer's own: ``layers[l].describe_formats()``)."""
        cfg = self.network
        out = {name: str(getattr(cfg, name)) for name in ("input", "encoder", "encoder_bias", "mix",
                                                          "mix_bias", "pool", "decoder", "decoder_bias")
               if getattr(cfg, name) is not None}           # a per-step readout has no pool
        out["logits"] = (f"full precision: {self.decoder_acc.sum_bits} bits, frac "
                         f"{self.decoder_acc.frac}" if cfg.logits is None else str(cfg.logits))
        out["encoder_acc"] = self.encoder_acc.describe()
        out["mix_acc"] = self.mix_acc.describe()
        out["decoder_acc"] = self.decoder_acc.describe()
        if not cfg.per_step:
            out["pool_mean"] = f"* {self.pool_mult} / 2**{self.pool_shift}"
        return out

    def integer_arrays(self) -> dict:
        """Integer weights as the hardware stores them (every layer's
        :meth:`QuantizedSSM.integer_arrays` under ``layers.<l>.``, the linear layers in the
        weights file's layout) plus their fraction bits under ``<key>.frac``."""
        net = self.network
        out, fracs = {}, {}
        for key, value, quantizer in (("encoder.weight", self.encoder_w, net.encoder),
                                      ("encoder.bias", self.encoder_b, net.encoder_bias),
                                      ("decoder.weight", self.decoder_w, net.decoder),
                                      ("decoder.bias", self.decoder_b, net.decoder_bias)):
            out[key] = value
            fracs[f"{key}.frac"] = np.int64(quantizer.format.frac)
        for l, layer in enumerate(self.layers):
            for key, value in layer.integer_arrays().items():
                out[f"layers.{l}.{key}"] = value
            for key, value, quantizer in (("mix.weight", self.mix_w[l], net.mix),
                                          ("mix.bias", self.mix_b[l], net.mix_bias)):
                out[f"layers.{l}.{key}"] = value
                fracs[f"layers.{l}.{key}.frac"] = np.int64(quantizer.format.frac)
        return {**out, **fracs}

    def identity(self) -> dict:
        return {**_hardware_identity(self.config),
                "network": self._network_summary(),
                "formats": self.describe_formats(),
                "layer_formats": [layer.describe_formats() for layer in self.layers]}

    def _network_summary(self) -> dict:
        """The network's shape, as the hash identity and the manifest give it."""
        net = self.network
        return {"inputs": net.inputs, "layers": net.layers, "steps": net.steps,
                "classes": net.classes, "activation": net.activation,
                # only when not the default: a classifier's hash is unchanged
                **({"readout": net.readout} if net.per_step else {})}

    def manifest_sections(self) -> dict:
        cfg, model = self.network, self.config.model
        return {
            "model": {"kind": model.kind, "channels": model.channels, "states": model.states,
                      "modes_per_channel": model.modes_per_channel},
            "network": self._network_summary(),
            "formats": self.describe_formats(),
            "layer_formats": [layer.describe_formats() for layer in self.layers],
            "fractions": {"input": cfg.input.format.frac, "logits": self.logits_frac},
            "abar_corrected_poles": self.abar_corrected,
            "saturated_weights": self.saturated_weights,
            "saturated_weights_by_tensor": dict(self.saturated),
        }
