"""Fixed-point semantics of ssmgen: the one place where quantize, round and overflow are defined.

Everything else (the integer model, the hardware generator's expectations, QAT, the tests) calls
these functions; nothing re-implements them. The formats and mode names they take are declared in
``ssmgen.spec.formats``.

Integers travel as ``numpy.int64`` arrays together with their number of fraction bits ``frac``
(value = int * 2**-frac). Moving a value into a narrower format is one :func:`requantize`: drop
fraction bits with a rounding mode, then fit the integer into ``W`` bits with an overflow mode.
Shifting left (gaining fraction bits) is exact.
"""

from __future__ import annotations

import numpy as np

from ..spec.formats import INT64_SAFE_BITS, Overflow, Quantizer, Rounding

__all__ = ["round_shift", "apply_overflow", "requantize", "round_float", "quantize_float"]


def _as_int64(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype != np.int64:
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"expected an integer array, not dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    return arr


def round_shift(values, shift, rounding: Rounding) -> np.ndarray:
    """Divide integers by ``2**shift`` and round, exactly; ``shift <= 0`` multiplies (exact).

    ``values``: int64 array; ``shift``: int or int array broadcastable to it. Returns int64.
    Callers guarantee |values| < 2**INT64_SAFE_BITS so the rounding offset cannot overflow.
    """
    x = _as_int64(values)
    shift = np.asarray(shift, dtype=np.int64)
    uniform = shift.ndim == 0          # one shift for all elements: compute only its branch
    if uniform and shift <= 0:
        return np.left_shift(x, -shift)
    # Shift amount used where shift > 0. Capped at INT64_SAFE_BITS + 1 = 63: for |x| < 2**62 every
    # shift >= 63 gives the same result in every mode (x / 2**s lies strictly inside (-1/2, 1/2)),
    # and numpy shifts by >= 64 bits (or 1 << 63) would overflow int64 and break the round modes.
    s = np.clip(shift, 1, INT64_SAFE_BITS + 1)
    one = np.int64(1)
    floor = np.right_shift(x, s)
    if rounding is Rounding.FLOOR:
        right = floor
    elif rounding is Rounding.HALF_UP:
        right = np.right_shift(x + np.left_shift(one, s - 1), s)
    elif rounding is Rounding.TOWARD_ZERO:
        right = np.where(x < 0, -np.right_shift(-x, s), floor)
    elif rounding is Rounding.HALF_EVEN:
        remainder = x - np.left_shift(floor, s)  # in [0, 2**s)
        half = np.left_shift(one, s - 1)
        round_up = (remainder > half) | ((remainder == half) & ((floor & 1) == 1))
        right = floor + round_up.astype(np.int64)
    else:  # pragma: no cover - enum is closed
        raise TypeError(f"rounding must be a Rounding, not {rounding!r}")
    if uniform:
        return right
    return np.where(shift > 0, right, np.left_shift(x, np.maximum(-shift, 0)))


def apply_overflow(values, width: int, overflow: Overflow) -> np.ndarray:
    """Fit integers into a signed ``width``-bit range with the given overflow mode."""
    x = _as_int64(values)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if overflow is Overflow.SATURATE:
        return np.clip(x, lo, hi)
    if overflow is Overflow.WRAP:
        mask = np.int64((1 << width) - 1)
        return ((x - lo) & mask) + lo
    raise TypeError(f"overflow must be an Overflow, not {overflow!r}")  # pragma: no cover


def requantize(values, frac, quantizer: Quantizer) -> np.ndarray:
    """Move integers with ``frac`` fraction bits into ``quantizer``'s format: round, then overflow.

    ``frac`` may be an int or an array broadcastable to ``values`` (per-element formats).
    """
    fmt = quantizer.format
    rounded = round_shift(values, np.asarray(frac) - fmt.frac, quantizer.rounding)
    return apply_overflow(rounded, fmt.width, quantizer.overflow)


def round_float(values, frac, rounding: Rounding) -> np.ndarray:
    """Round real numbers to integers at ``frac`` fraction bits, exactly; no overflow step.

    ``frac``: int or int array broadcastable to ``values``. Raises ``ValueError`` on NaN,
    infinity, or magnitudes the int64 model cannot hold.
    """
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantize NaN or infinite values")
    scaled = np.ldexp(x, np.asarray(frac, dtype=np.int64))   # exact: scaling by a power of two
    if np.any(np.abs(scaled) >= 2.0 ** INT64_SAFE_BITS):
        raise ValueError(f"value too large for the integer model ({np.max(np.abs(x)):g})")
    low = np.floor(scaled)
    remainder = scaled - low                                  # exact for float64
    low_i = low.astype(np.int64)
    if rounding is Rounding.FLOOR:
        up = np.zeros(x.shape, dtype=bool)
    elif rounding is Rounding.HALF_UP:
        up = remainder >= 0.5
    elif rounding is Rounding.TOWARD_ZERO:
        up = (remainder > 0) & (scaled < 0)
    elif rounding is Rounding.HALF_EVEN:
        up = (remainder > 0.5) | ((remainder == 0.5) & ((low_i & 1) == 1))
    else:  # pragma: no cover
        raise TypeError(f"rounding must be a Rounding, not {rounding!r}")
    return low_i + up.astype(np.int64)


def quantize_float(values, quantizer: Quantizer, *, frac=None) -> np.ndarray:
    """Quantize real numbers into a fixed-point format, exactly (no double rounding).

    ``frac`` overrides the format's fraction bits (per-element formats: an array). Raises
    ``ValueError`` on NaN or infinity.
    """
    f = quantizer.format.frac if frac is None else frac
    rounded = round_float(values, f, quantizer.rounding)
    return apply_overflow(rounded, quantizer.format.width, quantizer.overflow)
