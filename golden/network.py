"""The whole model in fixed point: the bit-exact specification of the full-network hardware.

Architecture (``[network]`` of the config, ``ssmgen/spec/network_config.py``)::

    u (T, H_in) -> encoder (linear) -> L x [ SSM -> activation -> mixing (linear) -> + residual ]
                -> mean over time -> decoder (linear) -> logits (classes) -> arg-max
                   (network.readout = "mean", a classifier), or
                -> decoder (linear) at every timestep -> outputs (T, classes)
                   (network.readout = "per_step", sequence to sequence)

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

    per_step  z[t,c]     = sum_h Wd[c,h] a_L[t,h] + bd[c]    (no pooling, no arg-max; the
              outputs    = z or Q_logits(z)                   decoder reads the stream, Fs)

Each accumulator (encoder, mixing, decoder) is full precision: its terms are aligned exactly to
the largest fraction-bit count among them and summed; its width is derived here
(:class:`~ssmgen.spec.quantized.AccumulatorPlan`, by ``ssmgen.golden.quantize``) from the formats, so nothing is truncated and
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

The weights file's layout is in ``ssmgen/spec/weights.py``.
"""

from __future__ import annotations

import numpy as np

from ..spec.formats import FixedFormat
from ..spec.quantized import AccumulatorPlan, QuantizedNetwork
from ..spec.weights import NetworkWeights
from .fixedpoint import quantize_float, requantize
from .float_model import run_recurrent
from .integer_model import exact_matmul, run_integer

__all__ = ["pool_constants", "run_float_network", "run_integer_network",
           "quantize_network_input", "predict"]


def pool_constants(steps: int) -> tuple[int, int]:
    """(M, S) with M / 2**S = 1/T: exact for T a power of two, else M = round(2**S / T)."""
    if steps & (steps - 1) == 0:
        return 1, steps.bit_length() - 1
    shift = steps.bit_length() + 15
    q, r = divmod(1 << shift, steps)                  # exact: round half to even in integers
    mult = q + (1 if 2 * r > steps or (2 * r == steps and q % 2) else 0)
    return mult, shift


# --------------------------------------------------------------------------------------------
# Integer model
# --------------------------------------------------------------------------------------------

def _linear(x, x_fmt: FixedFormat, w, w_fmt: FixedFormat, b, b_frac, plan: AccumulatorPlan,
            residual=None, res_frac=0):
    """Full-precision accumulator: sum_j w[o,j] x[..,j] + b[o] (+ residual[.., o]), exact, at
    ``plan.frac`` fraction bits. x int64 (..., J) in ``x_fmt``; w int64 (O, J) in ``w_fmt``;
    returns int64 (..., O)."""
    # |sum_j w x| <= J * max|w| * max|x| from the formats: exact_matmul takes float32/float64
    # (BLAS) when that bound allows, else int64
    bound = w.shape[1] * (-w_fmt.min_int) * (-x_fmt.min_int)
    acc = np.left_shift(exact_matmul(x, w.T, bound), plan.frac - (w_fmt.frac + x_fmt.frac))
    acc += np.left_shift(b, plan.frac - b_frac)
    if residual is not None:
        acc += np.left_shift(residual, plan.frac - res_frac)
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
    ``qnet.logits_frac`` fraction bits, or with a per-step readout the outputs int64 (batch, T,
    classes); with ``return_intermediates`` also a dict: ``stream`` (list of L+1 int64
    (batch, T, H), frac Fs), ``ssm`` (list of L SSM outputs, frac Fy), ``pool`` (batch, H) in
    network.quant.pool (None with a per-step readout).
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
    fs = q.input.format.frac
    acc = _linear(u_int, net.input.format, qnet.encoder_w, net.encoder.format,
                  qnet.encoder_b, net.encoder_bias.format.frac, qnet.encoder_acc)
    a = requantize(acc, qnet.encoder_acc.frac, q.input)
    streams, ssm_outs = [a], []
    for l, layer in enumerate(qnet.layers):
        y = run_integer(layer, a)
        ssm_outs.append(y)
        r = _activation(net.activation, y)
        acc = _linear(r, q.output.format, qnet.mix_w[l], net.mix.format, qnet.mix_b[l],
                      net.mix_bias.format.frac, qnet.mix_acc, residual=a, res_frac=fs)
        a = requantize(acc, qnet.mix_acc.frac, q.input)
        streams.append(a)
    if net.per_step:                                               # the decoder at every step
        pooled = None
        z = _linear(a, q.input.format, qnet.decoder_w, net.decoder.format,
                    qnet.decoder_b, net.decoder_bias.format.frac, qnet.decoder_acc)
    else:
        total = a.sum(axis=1)                                      # exact: T * 2**(Ws-1) bound
        pooled = requantize(total * qnet.pool_mult, fs + qnet.pool_shift, net.pool)
        z = _linear(pooled, net.pool.format, qnet.decoder_w, net.decoder.format,
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

def run_float_network(weights: NetworkWeights, u, *, activation: str = "relu",
                      readout: str = "mean") -> np.ndarray:
    """Float64 reference of the same network: u (batch, T, H_in) -> logits (batch, classes),
    or with ``readout = "per_step"`` the outputs (batch, T, classes)."""
    u = np.asarray(u, dtype=np.float64)
    a = u @ weights.encoder_w.T + weights.encoder_b
    for l, layer in enumerate(weights.layers):
        y = run_recurrent(layer, a)
        a = a + _activation(activation, y) @ weights.mix_w[l].T + weights.mix_b[l]
    features = a if readout == "per_step" else a.mean(axis=1)
    return features @ weights.decoder_w.T + weights.decoder_b
