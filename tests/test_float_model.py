"""Float reference model: ZOH, random demo weights, recurrent vs convolutional form."""

import warnings

import numpy as np
import pytest

from ssmgen.golden.discretize import random_weights, zoh
from ssmgen.golden.float_model import kernel, run_convolutional, run_recurrent
from ssmgen.spec.errors import WeightsError
from ssmgen.spec.weights import SSMWeights

# (kind, channels, states): s4d states = H*M total modes, s5 states = P.
CONFIGS = [("s4d", 3, 12), ("s4d", 1, 1), ("s5", 3, 8), ("s5", 2, 1)]


def _weights(kind, channels, states, seed=0, **kw):
    return random_weights(kind, channels=channels, states=states, seed=seed, **kw)


# --- zoh -----------------------------------------------------------------------------------------

def test_zoh_matches_formula():
    A = np.array([-0.5 + 3j, -2.0 - 1j, -0.1 + 0.0j])
    B = np.array([1.0, 0.5 - 2j, 3j])
    dt = np.array([0.1, 0.03, 0.7])
    abar, bbar = zoh(A, B, dt)
    np.testing.assert_allclose(abar, np.exp(dt * A), rtol=1e-14)
    np.testing.assert_allclose(bbar, (np.exp(dt * A) - 1) / A * B, rtol=1e-13)


def test_zoh_matches_quadrature():
    """Bbar = int_0^dt exp(A s) ds * B, by composite Simpson with 2000 intervals."""
    A = np.array([-0.5 + 3j, -2.0 - 1j, -0.5 + 40j])
    dt = np.array([0.1, 0.7, 0.05])
    B = np.array([[1.0, 2j], [0.5 - 2j, -1.0], [3j, 1 + 1j]])          # (P, H)
    n = 2000
    s = np.linspace(0, 1, n + 1)[:, None] * dt                          # (n+1, P)
    w = np.ones(n + 1)
    w[1:-1:2], w[2:-1:2] = 4, 2
    integral = (w[:, None] * np.exp(A * s)).sum(axis=0) * dt / (3 * n)  # (P,)
    abar, bbar = zoh(A, B, dt)
    np.testing.assert_allclose(bbar, integral[:, None] * B, rtol=1e-11)
    np.testing.assert_allclose(abar, np.exp(A * dt), rtol=1e-14)


def test_zoh_zero_and_tiny_eigenvalues():
    A = np.array([0.0, 1e-13 - 1e-13j, -1e-9j])
    B = np.array([2.0 - 1j, 1.0, 1.0])
    dt = 0.5
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        abar, bbar = zoh(A, B, dt)
    assert abar[0] == 1 and bbar[0] == dt * B[0]                        # exact limit
    z = dt * A
    np.testing.assert_allclose(bbar, dt * (1 + z / 2 + z**2 / 6) * B, rtol=1e-15)


def test_zoh_broadcasts_scalar_dt_and_matrix_b():
    A = np.array([-1 + 1j, -0.5 - 2j])
    B = np.arange(6).reshape(2, 3) + 1j
    abar, bbar = zoh(A, B, 0.2)
    assert abar.shape == (2,) and bbar.shape == (2, 3)
    np.testing.assert_allclose(bbar, zoh(A, np.ones(2), 0.2)[1][:, None] * B, rtol=1e-15)


# --- random_weights ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,channels,states", CONFIGS)
def test_random_weights_shapes_stability_reproducible(kind, channels, states):
    w = _weights(kind, channels, states, seed=7)
    same = _weights(kind, channels, states, seed=7)
    other = _weights(kind, channels, states, seed=8)
    for name in ("abar", "bbar", "c", "d"):
        np.testing.assert_array_equal(getattr(w, name), getattr(same, name))
    assert not np.array_equal(w.d, other.d)
    P, H = states, channels
    assert w.kind == kind and w.channels == H and w.states == P
    assert w.abar.shape == (P,) and w.d.shape == (H,)
    assert w.bbar.shape == ((P,) if kind == "s4d" else (P, H))
    assert w.c.shape == ((P,) if kind == "s4d" else (H, P))
    assert w.abar.dtype == w.bbar.dtype == w.c.dtype == np.complex128 and w.d.dtype == np.float64
    assert np.all(np.abs(w.abar) < 1)
    dt = -2 * np.log(np.abs(w.abar))                                    # |Abar| = exp(-0.5 dt)
    assert np.all((dt > 0.01 - 1e-12) & (dt < 0.1 + 1e-12))
    if kind == "s4d":                                                   # one dt per channel
        assert np.allclose(dt.reshape(H, -1), dt.reshape(H, -1)[:, :1])
        assert w.file_arrays()["Abar"].shape == (H, states // H)


def test_random_weights_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiple"):
        _weights("s4d", 3, 10)
    with pytest.raises(ValueError, match="kind"):
        _weights("s6", 3, 9)
    with pytest.raises(ValueError, match="dt_min"):
        _weights("s5", 3, 9, dt_min=0.2, dt_max=0.1)


# --- recurrent vs convolutional ------------------------------------------------------------------

@pytest.mark.parametrize("kind,channels,states", CONFIGS)
def test_recurrent_matches_convolutional(kind, channels, states):
    w = _weights(kind, channels, states, seed=1)
    u = np.random.default_rng(2).standard_normal((3, 150, channels))
    y_rec = run_recurrent(w, u)
    y_conv = run_convolutional(w, u)
    assert y_rec.shape == y_conv.shape == u.shape and y_rec.dtype == np.float64
    np.testing.assert_allclose(y_rec, y_conv, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("T", [0, 1, 2, 5])
def test_short_sequences(T):
    w = _weights("s5", 2, 4, seed=3)
    u = np.random.default_rng(4).standard_normal((2, T, 2))
    np.testing.assert_allclose(run_recurrent(w, u), run_convolutional(w, u), atol=1e-12)


@pytest.mark.parametrize("kind,channels,states", CONFIGS)
def test_impulse_response_is_kernel(kind, channels, states):
    w = _weights(kind, channels, states, seed=5)
    T = 60
    K = kernel(w, T)
    assert K.shape == ((T, channels) if kind == "s4d" else (T, channels, channels))
    for i in range(channels):
        u = np.zeros((1, T, channels))
        u[0, 0, i] = 1.0
        y = run_recurrent(w, u)[0]                                      # (T, H)
        if kind == "s4d":
            expected = np.zeros((T, channels))
            expected[:, i] = K[:, i]
        else:
            expected = K[:, :, i].copy()
        expected[0, i] += w.d[i]
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_step_response_steady_state(kind):
    """After a long step of ones x converges to (1 - Abar)^-1 Bbar 1; check y against that."""
    H, P = 2, 6
    w = _weights(kind, H, P, seed=9)
    T = 8000                                          # |Abar|^T <= exp(-0.5 * 0.01 * T) ~ 4e-18
    y = run_recurrent(w, np.ones((1, T, H)))[0, -1]
    if kind == "s4d":
        per_state = (w.c * w.bbar / (1 - w.abar)).real
        expected = np.bincount(w.channel, weights=per_state, minlength=H) + w.d
    else:
        expected = (w.c @ (w.bbar.sum(axis=1) / (1 - w.abar))).real + w.d
    np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-9)


# --- tiny hand-computed case ---------------------------------------------------------------------

ABAR, BBAR, C, D = 0.5 + 0.3j, 0.2 - 0.1j, 1.5 + 0.5j, 0.25
U = [1.0, -2.0, 0.5, 3.0, 0.0, -1.25]


def _python_loop(u):
    x, y = 0j, []
    for uk in u:
        x = ABAR * x + BBAR * uk
        y.append((C * x).real + D * uk)
    return y


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_tiny_case_by_hand(kind):
    """P = H = 1: both kinds reduce to the same scalar recurrence."""
    abar = [[ABAR]] if kind == "s4d" else [ABAR]                       # file layout (H, M) / (P,)
    w = SSMWeights.from_arrays(kind, Abar=abar, Bbar=[[BBAR]], C=[[C]], D=[D],
                               channels=1, states=1)
    u = np.array(U).reshape(1, -1, 1)
    reference = _python_loop(U)
    # By hand: x0 = 0.2-0.1j, y0 = Re((1.5+0.5j)(0.2-0.1j)) + 0.25 = 0.35 + 0.25;
    # x1 = (0.5+0.3j)(0.2-0.1j) - 2(0.2-0.1j) = -0.27+0.21j, y1 = -0.405-0.105 - 0.5.
    assert reference[:2] == pytest.approx([0.6, -1.01], abs=1e-15)
    np.testing.assert_allclose(run_recurrent(w, u)[0, :, 0], reference, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(run_convolutional(w, u)[0, :, 0], reference, atol=1e-14)
    np.testing.assert_allclose(kernel(w, 3).reshape(-1),
                               [(C * ABAR**j * BBAR).real for j in range(3)], rtol=1e-15)


def test_input_shape_is_checked():
    w = _weights("s5", 2, 4)
    with pytest.raises(ValueError, match="batch, time"):
        run_recurrent(w, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="H=2"):
        run_convolutional(w, np.zeros((1, 5, 3)))


def test_unstable_weights_are_rejected():
    with pytest.raises(WeightsError):
        SSMWeights.from_arrays("s5", Abar=[1.0], Bbar=[[1.0]], C=[[1.0]], D=[0.0],
                               channels=1, states=1)
