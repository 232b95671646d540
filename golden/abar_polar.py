"""Polar Abar: a pole stored as a radius mantissa and an angle mantissa, each with its own
per-mode power-of-two exponent, decoded exactly into the datapath's ``fixed<W,I>`` Abar.

Why. A trained S4D/S5 model keeps its memory in ``1 - |Abar|`` (~0.005 on sDigits): a uniform
``fixed<4,1>`` grid has no pole with |Abar| above ~0.9, so a 4-bit Cartesian Abar collapses
(docs/abar_4bit.md measures it). In polar form the radius is stored as
``rho = 1 - |Abar| = m_rho * 2**-e_rho`` (unsigned ``rho_bits`` mantissa, ``1 <= m_rho``, so
every pole lies strictly inside the unit circle by construction) and the angle as
``theta = m_theta * 2**-e_theta`` (signed ``theta_bits`` mantissa). The exponents are chosen per
mode, like block floating point: slow poles get small radius steps, slow rotations small angle
steps. Both exponents lie in ``0..F`` (F: Abar's fraction bits in the datapath; a finer step could
not be told apart after decoding).

Decoding, the specification::

    Abar_re = Q((1 - rho) * cos(theta)),  Abar_im = Q((1 - rho) * sin(theta))

with ``Q`` the Abar quantizer's rounding at F fraction bits, applied to the exact real value.
Cosine and sine are evaluated with rational arithmetic (Taylor series with a proven remainder
bound, refined until the rounding is decided), so the integers do not depend on the platform's
libm; ``(1 - rho) cos(theta)`` is irrational unless theta = 0, hence never a rounding tie. The
rounding itself is ``golden.fixedpoint.round_shift`` on an exact proxy (see :func:`_round_exact`).
The datapath then multiplies by the decoded Abar like any Cartesian one: the hardware is the same.

Encoding a float pole (what PTQ and QAT do) rounds ``1 - |Abar|`` and ``arg Abar`` with the same
rounding mode; it runs in float64 like every other weight quantization.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

from ..spec.config import MIN_THETA_BITS
from ..spec.formats import Rounding
from ..spec.quantized import PolarCodes
from .fixedpoint import round_float, round_shift

__all__ = ["encode_polar", "decode_polar", "decode_mode"]
#: Extra fraction bits of the exact proxy handed to round_shift (see _round_exact); F + 24 + 1
#: stays far inside int64.
_GUARD_BITS = 24


def _block_mantissas(values: np.ndarray, lo: int, hi: int, max_exp: int,
                     rounding: Rounding) -> tuple[np.ndarray, np.ndarray]:
    """Each value as mantissa * 2**-exp with mantissa in lo..hi and the largest exp in
    0..max_exp whose rounded mantissa fits (the finest step that still holds the value)."""
    mant = np.zeros(values.shape, dtype=np.int64)
    exp = np.full(values.shape, -1, dtype=np.int64)
    for e in range(max_exp, -1, -1):
        m = round_float(values, e, rounding)
        take = (exp < 0) & (m >= lo) & (m <= hi)
        mant[take], exp[take] = m[take], e
    if np.any(exp < 0):            # callers guarantee that exponent 0 fits every value
        raise AssertionError("polar mantissa does not fit at exponent 0")
    return mant, exp


def encode_polar(abar: np.ndarray, *, rho_bits: int, theta_bits: int, frac: int,
                 rounding: Rounding) -> PolarCodes:
    """Float poles (complex, |Abar| <= 1) -> polar codes. A radius that rounds to 0 (a pole on or
    within half a step of the unit circle) takes the smallest stored radius, one LSB at exponent
    ``frac``: the pole stays strictly inside the circle."""
    abar = np.asarray(abar, dtype=np.complex128)
    if theta_bits < MIN_THETA_BITS:
        raise ValueError(f"theta_bits must be >= {MIN_THETA_BITS}")
    rho = np.clip(1.0 - np.abs(abar), 0.0, 1.0)
    rho_mant, rho_exp = _block_mantissas(rho, 0, (1 << rho_bits) - 1, frac, rounding)
    zero = rho_mant == 0
    rho_mant[zero], rho_exp[zero] = 1, frac
    half = 1 << (theta_bits - 1)
    theta_mant, theta_exp = _block_mantissas(np.angle(abar), -half, half - 1, frac, rounding)
    return PolarCodes(rho_mant, rho_exp, theta_mant, theta_exp)


def _cos_sin_enclosure(x: Fraction, terms: int):
    """Intervals (lo, hi) of Fractions that contain cos(x) and sin(x): Taylor polynomials of
    degree 2*terms - 1 (sin) and 2*terms - 2 (cos), widened by the Lagrange remainder bound
    |x|^(n+1) / (n+1)! (every derivative of cos and sin is at most 1 in magnitude)."""
    cos = sin = Fraction(0)
    term = Fraction(1)                   # x^n / n!
    for n in range(2 * terms):
        if n % 2 == 0:
            cos += term if n % 4 == 0 else -term
        else:
            sin += term if n % 4 == 1 else -term
        term = term * x / (n + 1)
    bound = abs(term)                    # |x|^(2 terms) / (2 terms)! bounds both remainders
    return (cos - bound, cos + bound), (sin - bound, sin + bound)


def _round_exact(lo: Fraction, hi: Fraction, frac: int, rounding: Rounding) -> int | None:
    """Round a real value known to lie strictly between lo and hi (and not to be a dyadic
    rational) to ``frac`` fraction bits, or None when [lo, hi] is too wide to decide.

    If both ends share n = floor(v * 2**(frac+G)), the value lies strictly inside
    (n, n+1) * 2**-(frac+G), and so does the proxy (2n+1) * 2**-(frac+G+1). Every rounding
    boundary (integers and half-integers at frac bits) is a multiple of 2**-(frac+G), so value and
    proxy round alike, and round_shift rounds the proxy exactly: the golden rounding, no copy."""
    scale = 1 << (frac + _GUARD_BITS)
    n_lo, n_hi = (lo * scale).__floor__(), (hi * scale).__floor__()
    if n_lo != n_hi:
        return None
    return int(round_shift(np.int64(2 * n_lo + 1), _GUARD_BITS + 1, rounding))


@functools.lru_cache(maxsize=1 << 16)
def decode_mode(rho_mant: int, rho_exp: int, theta_mant: int, theta_exp: int, frac: int,
                rounding: Rounding) -> tuple[int, int]:
    """One pole's exact decoded (re, im) integers at ``frac`` fraction bits. Cached: QAT decodes
    the same codes at every step."""
    radius = 1 - Fraction(rho_mant, 1 << rho_exp)
    if not 0 <= radius < 1:
        raise ValueError(f"polar code rho = {rho_mant} * 2**-{rho_exp} is outside (0, 1]")
    if theta_mant == 0 or radius == 0:     # exact: (radius, 0) is a dyadic within frac bits
        return int(radius * (1 << frac)), 0
    theta = Fraction(theta_mant, 1 << theta_exp)
    out = [None, None]
    terms = 8
    while None in out:
        for k, (lo, hi) in enumerate(_cos_sin_enclosure(theta, terms)):
            if out[k] is None:
                out[k] = _round_exact(radius * lo, radius * hi, frac, rounding)  # radius >= 0
        terms *= 2
    return out[0], out[1]


def decode_polar(codes: PolarCodes, frac: int, rounding: Rounding) -> tuple[np.ndarray, np.ndarray]:
    """Polar codes -> (re, im) int64 (P,) at ``frac`` fraction bits (see the module docstring)."""
    pairs = [decode_mode(int(a), int(b), int(c), int(d), frac, rounding) for a, b, c, d in
             zip(codes.rho_mant, codes.rho_exp, codes.theta_mant, codes.theta_exp)]
    re = np.array([p[0] for p in pairs], dtype=np.int64)
    im = np.array([p[1] for p in pairs], dtype=np.int64)
    return re, im
