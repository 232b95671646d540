"""Continuous -> discrete SSM parameters (zero-order hold) and random demo weights.

A weights file holds *discrete* parameters (see :mod:`ssmgen.spec.weights`); this module is how
demo files are made: draw a stable continuous diagonal system, then discretize it with ZOH as in
the S4D paper (Gu et al. 2022, "On the Parameterization and Initialization of Diagonal SSMs").
NumPy only.
"""

from __future__ import annotations

import numpy as np

from ..spec.weights import NetworkWeights, SSMWeights

__all__ = ["zoh", "random_weights"]


def zoh(A, B, dt):
    """Zero-order-hold discretization of ``x' = diag(A) x + B u`` for a diagonal complex A.

    A:  complex (P,), the diagonal of the continuous state matrix
    B:  complex (P,) or (P, H); row p is scaled by the factor of state p
    dt: real scalar or (P,), step size per state

    Returns ``(Abar, Bbar)`` as complex128 arrays of shapes (P,) and B's shape::

        Abar = exp(dt*A)
        Bbar = (exp(dt*A) - 1) / A * B  =  dt * phi(dt*A) * B,   phi(z) = expm1(z) / z

    The second form is what is computed: ``expm1`` keeps full relative precision when
    ``|dt*A|`` is small (``exp(z) - 1`` would cancel), and ``phi(0) = 1`` is substituted exactly,
    so ``A == 0`` gives the limit ``dt * B`` without a division by zero or a warning.
    """
    A = np.asarray(A, dtype=np.complex128)
    B = np.asarray(B, dtype=np.complex128)
    if A.ndim != 1:
        raise ValueError(f"A must be a vector (P,), not shape {A.shape}")
    if B.shape[:1] != A.shape or B.ndim > 2:
        raise ValueError(f"B must have shape (P,) or (P, H) with P={A.shape[0]}, not {B.shape}")
    dt = np.broadcast_to(np.asarray(dt, dtype=np.float64), A.shape)
    z = dt * A
    nonzero = z != 0
    phi = np.ones_like(z)
    phi[nonzero] = np.expm1(z[nonzero]) / z[nonzero]
    factor = dt * phi
    return np.exp(z), factor.reshape(factor.shape + (1,) * (B.ndim - 1)) * B


def _complex_normal(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    """Circular complex normal with ``E|z|^2 = std**2`` (real and imaginary parts std/sqrt 2)."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * (std / np.sqrt(2))


def _log_uniform(rng: np.random.Generator, shape, low: float, high: float) -> np.ndarray:
    """Step sizes spread evenly over scales, as in S4/S4D/S5 (``exp(uniform(log lo, log hi))``)."""
    return np.exp(rng.uniform(np.log(low), np.log(high), shape))


def random_weights(kind: str, *, channels: int, states: int, seed: int,
                   dt_min: float = 0.01, dt_max: float = 0.1) -> SSMWeights:
    """Demo weights: a random stable continuous diagonal SSM, discretized with :func:`zoh`.

    ``states`` is P for s5 and the total number of complex modes H*M for s4d (so it must be a
    multiple of ``channels``; M = states // channels). Same ``seed`` -> identical weights
    (``numpy.random.default_rng(seed)``, draws in the order dt, [B,] C, D).

    s4d (S4D-Lin): per channel ``A_m = -0.5 + i*pi*m`` for m = 0..M-1, one dt per channel
    (log-uniform in [dt_min, dt_max]), B = 1, C complex normal with std 0.5, D ~ N(0, 1).
    S4D keeps one mode of each conjugate pair and outputs ``2*Re(C x)``; the stored C already
    includes that factor 2, so the model is simply ``y = Re(C x) + D u`` (C's std 0.5 is that of
    the stored, folded C).

    s5: ``Lambda_n = -0.5 + i*pi*n`` for n = 0..P-1, one dt per state (log-uniform), B complex
    normal scaled 1/sqrt(H) (P, H), C complex normal scaled 1/sqrt(P) (H, P), D ~ N(0, 1). The
    scalings keep the output variance roughly independent of H and P.

    Every continuous eigenvalue has real part -0.5, so ``|Abar| = exp(-0.5*dt) < 1``: stable.
    """
    if channels < 1 or states < 1:
        raise ValueError(f"channels and states must be >= 1, not {channels} and {states}")
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max, not dt_min={dt_min}, dt_max={dt_max}")
    rng = np.random.default_rng(seed)
    H = channels
    if kind == "s4d":
        if states % channels:
            raise ValueError(f"s4d states (H*M total modes) must be a multiple of channels={H}, "
                             f"not {states}")
        M = states // H
        A = np.tile(-0.5 + 1j * np.pi * np.arange(M), H)         # flat p = h*M + m
        dt = np.repeat(_log_uniform(rng, H, dt_min, dt_max), M)  # one dt per channel
        abar, bbar = zoh(A, np.ones(states), dt)
        C = _complex_normal(rng, (H, M), 0.5)
        D = rng.standard_normal(H)
        return SSMWeights.from_arrays("s4d", Abar=abar.reshape(H, M), Bbar=bbar.reshape(H, M),
                                      C=C, D=D, channels=H, states=states)
    if kind == "s5":
        P = states
        A = -0.5 + 1j * np.pi * np.arange(P)
        dt = _log_uniform(rng, P, dt_min, dt_max)
        B = _complex_normal(rng, (P, H), 1 / np.sqrt(H))
        C = _complex_normal(rng, (H, P), 1 / np.sqrt(P))
        D = rng.standard_normal(H)
        abar, bbar = zoh(A, B, dt)
        return SSMWeights.from_arrays("s5", Abar=abar, Bbar=bbar, C=C, D=D,
                                      channels=H, states=P)
    raise ValueError(f"model kind must be 's4d' or 's5', not {kind!r}")


def random_network_weights(config, rng: np.random.Generator) -> NetworkWeights:
    """Demo weights of a whole network config: stable random layers (:func:`random_weights`,
    ZOH steps 0.05..0.5) and normal random linear layers, all drawn from ``rng`` (tests and the
    estimate's calibration designs use them)."""
    net, model = config.network, config.model
    H = model.channels
    layers = tuple(random_weights(model.kind, channels=H, states=model.states,
                                  seed=int(rng.integers(1 << 30)), dt_min=0.05, dt_max=0.5)
                   for _ in range(net.layers))
    return NetworkWeights(rng.normal(0, 1, (H, net.inputs)), rng.normal(0, 0.3, H), layers,
                          tuple(rng.normal(0, 0.5, (H, H)) for _ in range(net.layers)),
                          tuple(rng.normal(0, 0.2, H) for _ in range(net.layers)),
                          rng.normal(0, 1, (net.classes, H)), rng.normal(0, 0.3, net.classes))
