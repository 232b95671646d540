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

__all__ = ["round_shift", "apply_overflow", "requantize", "round_float", "quantize_float",
           "Requantizer", "FloatRequantizer", "FLOAT_EXACT_BITS"]

#: Integers of at most this many signed bits (|v| < 2**52) go through :class:`FloatRequantizer`
#: exactly: float64 holds every integer below 2**53, a power-of-two scaling is exact, and
#: adding 1/2 before a floor (half_up) stays below 2**53.
FLOAT_EXACT_BITS = 53


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


class FloatRequantizer:
    """:class:`Requantizer` on integers held as float64 (|values| < 2**52, the caller's proof):
    ``FloatRequantizer(frac, q, shape)(v)`` equals ``Requantizer(frac, q)(v)`` as floats, bit for
    bit (tests/test_golden_speed.py checks every mode).

    Why: numpy multiplies int64 arrays one element at a time on most CPUs but float64 arrays in
    SIMD lanes, and the rounding is one operation here instead of four. Exactness: the scale
    2**-(frac - format frac) is a power of two, so ``v * scale`` is exact; floor, rint (half to
    even), trunc (toward zero) and floor(x + 1/2) (half up) of it are exact integers (the sum
    needs no more bits than v + 2**(s-1) < 2**53); an element shifted left becomes an integer
    the rounding leaves alone; saturation is a clip, wrapping a floating modulo of integers
    below 2**53, both exact. ``shape``: the shape of the arrays it gets (constants are
    broadcast to it once: same-shape operands are faster)."""

    def __init__(self, frac, quantizer: Quantizer, shape):
        fmt = quantizer.format
        shift = np.asarray(frac, dtype=np.int64) - fmt.frac
        self._scale = np.ascontiguousarray(np.broadcast_to(np.ldexp(1.0, -shift), shape))
        self._round = {Rounding.FLOOR: np.floor, Rounding.HALF_EVEN: np.rint,
                       Rounding.TOWARD_ZERO: np.trunc, Rounding.HALF_UP: None}[quantizer.rounding]
        self.overflow = quantizer.overflow
        self._lo, self._hi = float(fmt.min_int), float(fmt.max_int)
        self._modulus = float(1 << fmt.width)

    def __call__(self, values, out) -> np.ndarray:
        """Requantize ``values`` (float64 integers) into ``out`` (may be ``values`` itself)."""
        np.multiply(values, self._scale, out=out)
        if self._round is None:                              # half up: floor(x + 1/2)
            out += 0.5
            np.floor(out, out=out)
        else:
            self._round(out, out=out)
        if self.overflow is Overflow.SATURATE:
            return np.clip(out, self._lo, self._hi, out=out)
        out -= self._lo                                       # wrap: lo + (v - lo) mod 2**W
        np.mod(out, self._modulus, out=out)
        out += self._lo
        return out


class Requantizer:
    """:func:`requantize` prepared for one ``frac`` (int or array, e.g. per-mode formats) and one
    quantizer, then applied to many arrays: ``Requantizer(frac, q)(values)`` equals
    ``requantize(values, frac, q)`` bit for bit (tests/test_golden_speed.py checks every mode).

    Why a second form: ``requantize`` derives its shift constants on every call (about 20 array
    operations, ~30 us on a thousand elements), and the golden model's time loop requantizes the
    same shapes once per timestep. Here the constants are computed once and a call is a handful
    of integer operations on the values. Same precondition: |values| < 2**INT64_SAFE_BITS.

    The rounding identities, for a right shift by s >= 1 (x = q 2**s + r, 0 <= r < 2**s):
    toward zero: ceil(x / 2**s) = floor((x + 2**s - 1) / 2**s) for x < 0; half to even:
    floor((x + 2**(s-1) - 1 + (q & 1)) / 2**s) is q for r < 2**(s-1), q + 1 for r > 2**(s-1), and
    at the tie r = 2**(s-1) is q + (q & 1), the even neighbour. No sum exceeds 2**63 - 1 for
    |x| < 2**62 and s <= 63 (the cap of :func:`round_shift`). Elements with a shift <= 0 get
    s = 0 (offset 0, parity mask 0: the identity) after their exact left shift.
    """

    def __init__(self, frac, quantizer: Quantizer):
        fmt = quantizer.format
        shift = np.asarray(frac, dtype=np.int64) - fmt.frac
        left = np.maximum(-shift, 0)
        s = np.clip(shift, 0, INT64_SAFE_BITS + 1)
        half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s, 1) - 1), 0)
        self.rounding, self.overflow = quantizer.rounding, quantizer.overflow
        self._shape = shift.shape                             # the result broadcasts to it
        self._left = left if np.any(left) else None           # None: no element shifts left
        self._shift = s if np.any(s) else None                # None: no element is rounded
        if quantizer.rounding is Rounding.HALF_UP:
            self._offset = half
        elif quantizer.rounding is Rounding.TOWARD_ZERO:
            self._offset = np.where(s > 0, (half - 1) + half, 0)   # 2**s - 1, no overflow at s = 63
        elif quantizer.rounding is Rounding.HALF_EVEN:
            self._offset = np.where(s > 0, half - 1, 0)
            self._parity = (s > 0).astype(np.int64)
        self._lo = np.int64(-(1 << (fmt.width - 1)))
        self._hi = np.int64((1 << (fmt.width - 1)) - 1)
        self._mask = np.int64((1 << fmt.width) - 1)

    def __call__(self, values, out=None) -> np.ndarray:
        """The requantized int64 array. ``out``: where to write it (the result's shape, not
        sharing memory with ``values``); the work happens in it, so a loop that passes the same
        buffers allocates nothing (fresh arrays over 128 KiB cost page faults on every call)."""
        x = _as_int64(values)
        if out is None:
            out = np.empty(np.broadcast_shapes(x.shape, self._shape), dtype=np.int64)
        if self._left is not None:
            if self._shift is None:
                x = np.left_shift(x, self._left, out=out)
            else:                        # mixed signs: keep the shifted values apart from out
                x = np.left_shift(x, self._left)
        if self._shift is not None:
            x = self._round(x, out)
        return self._fit(x, out)

    def _round(self, x, out):
        """Round x / 2**s into ``out`` (x is left untouched)."""
        s, r = self._shift, self.rounding
        if r is Rounding.FLOOR:
            return np.right_shift(x, s, out=out)
        if r is Rounding.HALF_UP:
            t = np.add(x, self._offset, out=out)
        elif r is Rounding.TOWARD_ZERO:
            t = np.right_shift(x, 63, out=out)                 # -1 (all ones) where x < 0
            t &= self._offset                                  # 2**s - 1 where x < 0
            t += x
        elif r is Rounding.HALF_EVEN:
            t = np.right_shift(x, s, out=out)                  # floor(x / 2**s): its parity
            t &= self._parity
            t += self._offset
            t += x
        else:  # pragma: no cover - enum is closed
            raise TypeError(f"rounding must be a Rounding, not {r!r}")
        t >>= s
        return t

    def _fit(self, x, out):
        """The overflow step, from x into ``out`` (x may be out itself)."""
        if self.overflow is Overflow.SATURATE:
            np.maximum(x, self._lo, out=out)
            return np.minimum(out, self._hi, out=out)
        if self.overflow is Overflow.WRAP:
            np.subtract(x, self._lo, out=out)
            out &= self._mask
            out += self._lo
            return out
        raise TypeError(f"overflow must be an Overflow, not {self.overflow!r}")  # pragma: no cover
