"""Float64 reference of one diagonal SSM layer, in its two equivalent forms.

Recurrent (what the hardware does, step by step)::

    x[k] = Abar * x[k-1] + Bbar u[k],   x[-1] = 0
    y[k] = Re(C x[k]) + D * u[k]

Convolutional (the same map written as a causal convolution, used to cross-check the recurrence)::

    y[k] = sum_{j<=k} K[j] u[k-j] + D * u[k],   K[j] = Re(C diag(Abar**j) Bbar)

Shapes: u and y are float64 (batch, time, H). For s4d each state p only reads and writes its
own channel ``weights.channel[p]`` (flat (P,) bbar and c, p = h*M + m), so the kernel is one
scalar per channel; for s5 bbar is (P, H), c is (H, P) and the kernel is an H x H matrix per lag.
"""

from __future__ import annotations

import numpy as np

from ..spec.weights import SSMWeights

__all__ = ["run_recurrent", "kernel", "run_convolutional"]


def _check_input(weights: SSMWeights, u) -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 3 or u.shape[2] != weights.channels:
        raise ValueError(f"u must have shape (batch, time, H={weights.channels}), not {u.shape}")
    return u


def run_recurrent(weights: SSMWeights, u) -> np.ndarray:
    """Run the recurrence; the state starts at zero for every batch item.

    u: float64 (batch, T, H) -> y: float64 (batch, T, H).

    The loop runs over time only; batch and states are vectorized. s4d stays in its flat (P,)
    form (input gathered by ``channel``, output summed over each channel's M contiguous modes)
    instead of multiplying by the mostly-zero dense matrices, so one step costs O(batch * P).
    """
    u = _check_input(weights, u)
    batch, T, H = u.shape
    x = np.zeros((batch, weights.states), dtype=np.complex128)
    y = np.empty_like(u)
    if weights.kind == "s4d":
        channel, M = weights.channel, weights.modes_per_channel
        for k in range(T):
            x = weights.abar * x + weights.bbar * u[:, k, channel]               # (batch, P)
            y[:, k] = (weights.c * x).real.reshape(batch, H, M).sum(axis=2)
    else:
        bbar_t, c_t = weights.bbar.T, weights.c.T
        for k in range(T):
            x = weights.abar * x + u[:, k] @ bbar_t                              # (batch, P)
            y[:, k] = (x @ c_t).real
    return y + weights.d * u


def kernel(weights: SSMWeights, length: int) -> np.ndarray:
    """Convolution kernel ``K[j] = Re(C diag(Abar**j) Bbar)`` for lags j = 0..length-1.

    s4d: float64 (length, H), ``K[j, h] = sum_{p in channel h} Re(C_p Abar_p**j Bbar_p)``.
    s5:  float64 (length, H_out, H_in).

    Computed from the Vandermonde matrix ``Abar[None] ** arange(length)[:, None]`` (length, P)
    rather than by repeated multiplication, so it is independent of the recurrence it checks.
    D is not included (it is the separate lag-0 skip term).
    """
    if length < 0:
        raise ValueError(f"kernel length must be >= 0, not {length}")
    powers = weights.abar[None, :] ** np.arange(length)[:, None]                 # (L, P)
    if weights.kind == "s4d":
        H, M = weights.channels, weights.modes_per_channel
        return (powers * (weights.c * weights.bbar)).real.reshape(length, H, M).sum(axis=2)
    return ((weights.c[None, :, :] * powers[:, None, :]) @ weights.bbar).real  # (L, H, H)


def run_convolutional(weights: SSMWeights, u) -> np.ndarray:
    """Same map as :func:`run_recurrent`, computed as an FFT convolution with :func:`kernel`.

    u: float64 (batch, T, H) -> y: float64 (batch, T, H).

    Both signals are zero-padded to a power of two n >= 2T, so the circular convolution of the
    FFT equals the linear (causal) one on the first T outputs.
    """
    u = _check_input(weights, u)
    T = u.shape[1]
    n = 1 << max(2 * T - 1, 1).bit_length()                                     # >= 2T
    K_f = np.fft.rfft(kernel(weights, T), n=n, axis=0)   # (F, H) or (F, H_out, H_in)
    u_f = np.fft.rfft(u, n=n, axis=1)                    # (batch, F, H)
    if weights.kind == "s4d":
        y_f = K_f[None] * u_f
    else:
        y_f = np.einsum("foi,bfi->bfo", K_f, u_f)
    return np.fft.irfft(y_f, n=n, axis=1)[:, :T] + weights.d * u
