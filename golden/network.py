"""The whole model in fixed point: the bit-exact specification of the full-network hardware.

Architecture (``[network]`` of the config, ``ssmgen/network_config.py``)::

    u (T, H_in) -> encoder (linear) -> L x [ SSM -> activation -> mixing (linear) -> + residual ]
                -> mean over time -> decoder (linear) -> logits (classes) -> arg-max

Arithmetic (the specification; every product and sum exact, one ``Q`` = one
:func:`ssmgen.golden.fixedpoint.requantize` where a value enters a narrower format). Formats:
``Fu`` network input (``network.quant.input``), ``Fs`` the residual stream = each layer's input
(``quant.input``), ``Fy`` each SSM output (``quant.output``), weights ``Fwe, Fbe, Fwm, Fbm, Fwd,
Fbd``, pool ``Fp``::

    encoder   a_0[t,h]   = Q_stream( sum_i We[h,i] u[t,i] + be[h] )
    layer l   y          = SSM_l(a_l)                 (ssmgen.golden.integer_model, per timestep)
              r          = act(y)                     relu: max(y, 0), exact, same format (Fy)
              a_l+1[t,h] = Q_stream( sum_j Wm_l[h,j] r[t,j] + bm_l[h] + a_l[t,h] )
    pool      s[h]       = sum_t a_L[t,h]             exact (frac Fs)
              p[h]       = Q_pool( s[h] * M )         frac Fs + S; M / 2**S = 1/T (see below)
    decoder   z[c]       = sum_h Wd[c,h] p[h] + bd[c]
              logits     = z (full precision, default) or Q_logits(z)
    predict   argmax_c logits[c]; ties go to the LOWEST class index (numpy.argmax)

Each accumulator (encoder, mixing, decoder) is full precision: its terms are aligned exactly to
the largest fraction-bit count among them and summed; its width is derived here
(:class:`~ssmgen.golden.quantized.AccumulatorPlan`) from the formats, so nothing is truncated and
``quantize_network`` proves every intermediate fits int64 (``INT64_SAFE_BITS``), as
``quantize_model`` does for a layer.

Mean pooling: for ``T`` a power of two, ``M = 1`` and ``S = log2 T`` (an exact rounding shift).
Otherwise ``S = bit_length(T) + 15`` and ``M = round_half_even(2**S / T)``, a 16-bit constant:
the divisor is then 1/T to a relative error below 2**-16 (documented, deterministic; the hardware
multiplies by the same constant).

Every layer shares ``[model]`` and ``[quant.*]``; per-mode state integer bits may differ per
layer (``network.state_int_bits``). The time loop runs layer by layer over whole sequences here,
which is the same map as the hardware's timestep-by-timestep order (every stage is causal and
per-timestep except the SSM recurrence and the pooling sum).

Weights file (``.npz``, float64; the integer weights are their quantization):

=========================  ===================  ==============================================
key                        shape                 meaning
=========================  ===================  ==============================================
``encoder.weight``         (H, H_in)             encoder
``encoder.bias``           (H,)
``layers.{l}.Abar`` ...    as a layer file       ``Abar``, ``Bbar``, ``C``, ``D`` of layer l
``layers.{l}.mix.weight``  (H, H)                mixing of layer l
``layers.{l}.mix.bias``    (H,)
``decoder.weight``         (classes, H)
``decoder.bias``           (classes,)
``Abar``, ``Bbar``, ...    as a layer file       a copy of layer 0 for the single-layer tools
=========================  ===================  ==============================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, SSMConfig
from .fixedpoint import (INT64_SAFE_BITS, Quantizer, quantize_float, requantize,
                         round_float, to_float)
from .float_model import run_recurrent
from .integer_model import run_integer
from .quantized import (AccumulatorPlan, _accumulator, quantize_model,
                        quantize_weight)
from .weights import SSMWeights, WeightsError

__all__ = ["NetworkWeights", "QuantizedNetwork", "quantize_network", "load_network",
           "load_network_npz", "save_network_npz", "pool_constants", "run_float_network",
           "run_integer_network", "quantize_network_input", "predict", "FLOAT64_EXACT_BITS"]

#: Integers up to this many bits (signed) are exact in float64: QAT's float64 forward equals the
#: integer model bit for bit when every intermediate fits (``QuantizedNetwork.float64_exact``).
FLOAT64_EXACT_BITS = 53

_LINEARS = ("encoder", "mix", "decoder")


@dataclass(frozen=True)
class NetworkWeights:
    """Float weights of the whole network.

    encoder_w: float64 (H, H_in); encoder_b: (H,)
    layers:    tuple of L SSMWeights (discrete, flat state index)
    mix_w:     tuple of L float64 (H, H); mix_b: tuple of L (H,)
    decoder_w: float64 (classes, H); decoder_b: (classes,)
    """
    encoder_w: np.ndarray
    encoder_b: np.ndarray
    layers: tuple
    mix_w: tuple
    mix_b: tuple
    decoder_w: np.ndarray
    decoder_b: np.ndarray

    @property
    def kind(self) -> str:
        return self.layers[0].kind

    def arrays(self) -> dict:
        """File layout (see the module docstring)."""
        out = {"encoder.weight": self.encoder_w, "encoder.bias": self.encoder_b,
               "decoder.weight": self.decoder_w, "decoder.bias": self.decoder_b}
        for l, layer in enumerate(self.layers):
            for key, value in layer.file_arrays().items():
                out[f"layers.{l}.{key}"] = value
            out[f"layers.{l}.mix.weight"] = self.mix_w[l]
            out[f"layers.{l}.mix.bias"] = self.mix_b[l]
        out.update(self.layers[0].file_arrays())        # layer 0 for the single-layer tools
        return out


def save_network_npz(path, weights: NetworkWeights) -> None:
    np.savez(path, **weights.arrays())


def _network_shapes(config: SSMConfig) -> dict:
    net, H = config.network, config.model.channels
    shapes = {"encoder.weight": (H, net.inputs), "encoder.bias": (H,),
              "decoder.weight": (net.classes, H), "decoder.bias": (net.classes,)}
    for l in range(net.layers):
        shapes[f"layers.{l}.mix.weight"] = (H, H)
        shapes[f"layers.{l}.mix.bias"] = (H,)
    return shapes


def network_weights_from_arrays(config: SSMConfig, arrays: dict, where: str) -> NetworkWeights:
    """Validate file-layout arrays against the config (errors name ``where`` and the key)."""
    net, model = config.network, config.model
    checked = {}
    for key, shape in _network_shapes(config).items():
        if key not in arrays:
            raise WeightsError(f"{where}: missing key {key} (a network weights file holds "
                               f"encoder.*, layers.<l>.*, decoder.*)")
        arr = np.asarray(arrays[key])
        if arr.shape != shape:
            raise WeightsError(f"{where}: {key} must have shape {shape}, not {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise WeightsError(f"{where}: {key} must be real numbers, not dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise WeightsError(f"{where}: {key} contains NaN or infinite values")
        checked[key] = arr.astype(np.float64)
    layers = []
    for l in range(net.layers):
        keys = {k: f"layers.{l}.{k}" for k in ("Abar", "Bbar", "C", "D")}
        missing = [v for v in keys.values() if v not in arrays]
        if missing:
            raise WeightsError(f"{where}: missing key(s) {', '.join(missing)}")
        layers.append(SSMWeights.from_arrays(model.kind, **{k: arrays[v] for k, v in keys.items()},
                                             channels=model.channels, states=model.states,
                                             where=f"{where}: layers.{l}"))
    return NetworkWeights(checked["encoder.weight"], checked["encoder.bias"], tuple(layers),
                          tuple(checked[f"layers.{l}.mix.weight"] for l in range(net.layers)),
                          tuple(checked[f"layers.{l}.mix.bias"] for l in range(net.layers)),
                          checked["decoder.weight"], checked["decoder.bias"])


def load_network_npz(path, config: SSMConfig) -> NetworkWeights:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read network weights: {exc}") from exc
    return network_weights_from_arrays(config, arrays, str(path))


def pool_constants(steps: int) -> tuple[int, int]:
    """(M, S) with M / 2**S = 1/T: exact for T a power of two, else M = round(2**S / T)."""
    if steps & (steps - 1) == 0:
        return 1, steps.bit_length() - 1
    shift = steps.bit_length() + 15
    q, r = divmod(1 << shift, steps)                  # exact: round half to even in integers
    mult = q + (1 if 2 * r > steps or (2 * r == steps and q % 2) else 0)
    return mult, shift


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
    saturated_weights: int

    @property
    def network(self):
        return self.config.network

    @property
    def logits_frac(self) -> int:
        q = self.network.logits
        return self.decoder_acc.frac if q is None else q.format.frac

    @property
    def max_exact_bits(self) -> int:
        """Widest exact intermediate (signed bits) anywhere in the network."""
        bits = [self.encoder_acc.sum_bits, self.mix_acc.sum_bits, self.decoder_acc.sum_bits,
                self.pool_bits]
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

    def integer_arrays(self) -> dict:
        """Integer weights in file layout (what the hardware stores) plus their fraction bits
        under ``<key>.frac`` (per-mode state fraction bits under ``layers.<l>.state_frac``; a
        polar Abar's codes under ``layers.<l>.Abar.{rho,theta}_{mant,exp}``)."""
        net, q = self.network, self.config.quant
        out = {"encoder.weight": self.encoder_w, "encoder.bias": self.encoder_b,
               "decoder.weight": self.decoder_w, "decoder.bias": self.decoder_b}
        fracs = {"encoder.weight": net.encoder, "encoder.bias": net.encoder_bias,
                 "decoder.weight": net.decoder, "decoder.bias": net.decoder_bias}
        for l, layer in enumerate(self.layers):
            for key, value, qz in (("Abar.re", layer.abar_re, q.abar), ("Abar.im", layer.abar_im, q.abar),
                                   ("Bbar.re", layer.bbar_re, q.bbar), ("Bbar.im", layer.bbar_im, q.bbar),
                                   ("C.re", layer.c_re, q.c), ("C.im", layer.c_im, q.c),
                                   ("D", layer.d, q.d), ("mix.weight", self.mix_w[l], net.mix),
                                   ("mix.bias", self.mix_b[l], net.mix_bias)):
                out[f"layers.{l}.{key}"] = value
                fracs[f"layers.{l}.{key}"] = qz
            out[f"layers.{l}.state_frac"] = layer.state_frac
            if layer.abar_polar is not None:     # the stored form Abar.re/im decode from
                for name in ("rho_mant", "rho_exp", "theta_mant", "theta_exp"):
                    out[f"layers.{l}.Abar.{name}"] = getattr(layer.abar_polar, name)
        for key, qz in fracs.items():
            out[f"{key}.frac"] = np.int64(qz.format.frac)
        return out


def _network_weight(values, quantizer: Quantizer, name: str) -> tuple[np.ndarray, int]:
    try:
        ints = quantize_weight(values, quantizer, name)
    except ConfigError as exc:
        raise ConfigError(f"network.{exc}") from None
    clamped = int(np.count_nonzero(ints != round_float(values, quantizer.format.frac,
                                                       quantizer.rounding)))
    return ints, clamped


def _product(width_a: int, width_b: int) -> int:
    return (1 << (width_a - 1)) * (1 << (width_b - 1))


def layer_config(config: SSMConfig, layer: int) -> SSMConfig:
    """The single-layer config of layer ``layer`` (its own per-mode state integer bits)."""
    bits = config.network.state_int_bits
    if bits is None:
        return config
    return dataclasses.replace(config, quant=dataclasses.replace(config.quant,
                                                                 state_int_bits=bits[layer]))


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
    saturated = 0
    for l, layer_weights in enumerate(weights.layers):
        try:
            qlayer = quantize_model(layer_config(config, l), layer_weights)
        except ConfigError as exc:
            raise ConfigError(f"layer {l}: {exc}") from None
        layers.append(qlayer)
        saturated += qlayer.saturated_weights
    ints = {}
    for key, values, quantizer in (("encoder", weights.encoder_w, net.encoder),
                                   ("encoder_bias", weights.encoder_b, net.encoder_bias),
                                   ("decoder", weights.decoder_w, net.decoder),
                                   ("decoder_bias", weights.decoder_b, net.decoder_bias)):
        ints[key], clamped = _network_weight(values, quantizer, key)
        saturated += clamped
    mix_w, mix_b = [], []
    for l in range(net.layers):
        w, c1 = _network_weight(weights.mix_w[l], net.mix, "mix")
        b, c2 = _network_weight(weights.mix_b[l], net.mix_bias, "mix_bias")
        mix_w.append(w)
        mix_b.append(b)
        saturated += c1 + c2

    H = config.model.channels
    fu, wu = net.input.format.frac, net.input.format.width
    fs, ws = q.input.format.frac, q.input.format.width
    fy, wy = q.output.format.frac, q.output.format.width

    def plan(weight: Quantizer, bias: Quantizer, n: int, in_frac: int, in_width: int,
             name: str, residual: bool = False) -> AccumulatorPlan:
        fracs = [weight.format.frac + in_frac] * n + [bias.format.frac]
        bounds = [_product(weight.format.width, in_width)] * n + [1 << (bias.format.width - 1)]
        if residual:
            fracs.append(fs)
            bounds.append(1 << (ws - 1))
        try:
            return _accumulator(None, fracs, bounds, name)
        except ConfigError as exc:
            raise ConfigError(f"network.{exc}") from None

    encoder_acc = plan(net.encoder, net.encoder_bias, net.inputs, fu, wu, "quant.encoder")
    mix_acc = plan(net.mix, net.mix_bias, H, fy, wy, "quant.mix", residual=True)
    wp, fp = net.pool.format.width, net.pool.format.frac
    decoder_acc = plan(net.decoder, net.decoder_bias, H, fp, wp, "quant.decoder")
    mult, shift = pool_constants(net.steps)
    pool_bits = (net.steps * (1 << (ws - 1)) * mult).bit_length() + 1
    checks = [("network.quant.encoder", encoder_acc.width + max(0, fs - encoder_acc.frac)),
              ("network.quant.mix", mix_acc.width + max(0, fs - mix_acc.frac)),
              ("network.quant.pool", pool_bits + max(0, fp - (fs + shift))),
              ("network.quant.decoder", decoder_acc.width + max(
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


# --------------------------------------------------------------------------------------------
# Integer model
# --------------------------------------------------------------------------------------------

def _linear(x, x_frac, w, w_frac, b, b_frac, plan: AccumulatorPlan, residual=None, res_frac=0):
    """Full-precision accumulator: sum_j w[o,j] x[..,j] + b[o] (+ residual[.., o]), exact, at
    ``plan.frac`` fraction bits. x int64 (..., J); w int64 (O, J); returns int64 (..., O)."""
    acc = np.left_shift(x @ w.T, plan.frac - (w_frac + x_frac))   # int64 matmul: exact
    acc = acc + np.left_shift(b, plan.frac - b_frac)
    if residual is not None:
        acc = acc + np.left_shift(residual, plan.frac - res_frac)
    return acc


def _activation(name: str, y: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(y, 0)
    return y


def quantize_network_input(qnet: QuantizedNetwork, u) -> np.ndarray:
    """float (batch, T, H_in) in real units -> int64 in network.quant.input."""
    u = np.asarray(u, dtype=np.float64)
    net = qnet.network
    if u.ndim != 3 or u.shape[2] != net.inputs:
        raise ValueError(f"input must have shape (batch, time, H_in={net.inputs}), not {u.shape}")
    return quantize_float(u, net.input)


def run_integer_network(qnet: QuantizedNetwork, u_int, *, return_intermediates: bool = False):
    """Run the network on integer inputs.

    u_int: int64 (batch, T, H_in) in network.quant.input; T must equal network.steps (the mean's
    constant is derived from it). Returns logits int64 (batch, classes) with
    ``qnet.logits_frac`` fraction bits; with ``return_intermediates`` also a dict: ``stream``
    (list of L+1 int64 (batch, T, H), frac Fs), ``ssm`` (list of L SSM outputs, frac Fy),
    ``pool`` (batch, H) in network.quant.pool.
    """
    net, q = qnet.network, qnet.config.quant
    u_int = np.asarray(u_int)
    if u_int.ndim != 3 or u_int.shape[2] != net.inputs or u_int.shape[1] != net.steps:
        raise ValueError(f"input must have shape (batch, T={net.steps}, H_in={net.inputs}), "
                         f"not {u_int.shape}")
    if not np.issubdtype(u_int.dtype, np.integer):
        raise ValueError(f"input must be integers of network.quant.input, not dtype {u_int.dtype}")
    fmt = net.input.format
    if u_int.size and (u_int.min() < fmt.min_int or u_int.max() > fmt.max_int):
        raise ValueError(f"input integers must lie in {fmt.min_int}..{fmt.max_int} ({fmt})")
    u_int = u_int.astype(np.int64)
    fs, fy = q.input.format.frac, q.output.format.frac
    acc = _linear(u_int, net.input.format.frac, qnet.encoder_w, net.encoder.format.frac,
                  qnet.encoder_b, net.encoder_bias.format.frac, qnet.encoder_acc)
    a = requantize(acc, qnet.encoder_acc.frac, q.input)
    streams, ssm_outs = [a], []
    for l, layer in enumerate(qnet.layers):
        y = run_integer(layer, a)
        ssm_outs.append(y)
        r = _activation(net.activation, y)
        acc = _linear(r, fy, qnet.mix_w[l], net.mix.format.frac, qnet.mix_b[l],
                      net.mix_bias.format.frac, qnet.mix_acc, residual=a, res_frac=fs)
        a = requantize(acc, qnet.mix_acc.frac, q.input)
        streams.append(a)
    total = a.sum(axis=1)                                          # exact: T * 2**(Ws-1) bound
    pooled = requantize(total * qnet.pool_mult, fs + qnet.pool_shift, net.pool)
    z = _linear(pooled, net.pool.format.frac, qnet.decoder_w, net.decoder.format.frac,
                qnet.decoder_b, net.decoder_bias.format.frac, qnet.decoder_acc)
    logits = z if net.logits is None else requantize(z, qnet.decoder_acc.frac, net.logits)
    if return_intermediates:
        return logits, {"stream": streams, "ssm": ssm_outs, "pool": pooled}
    return logits


def predict(logits) -> np.ndarray:
    """Arg-max over the last axis; ties go to the lowest class index."""
    return np.argmax(np.asarray(logits), axis=-1)


# --------------------------------------------------------------------------------------------
# Float reference
# --------------------------------------------------------------------------------------------

def run_float_network(weights: NetworkWeights, u, *, activation: str = "relu") -> np.ndarray:
    """Float64 reference of the same network: u (batch, T, H_in) -> logits (batch, classes)."""
    u = np.asarray(u, dtype=np.float64)
    a = u @ weights.encoder_w.T + weights.encoder_b
    for l, layer in enumerate(weights.layers):
        y = run_recurrent(layer, a)
        a = a + _activation(activation, y) @ weights.mix_w[l].T + weights.mix_b[l]
    return a.mean(axis=1) @ weights.decoder_w.T + weights.decoder_b
