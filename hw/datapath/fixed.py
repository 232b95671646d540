"""Fixed-point rounding and overflow as Amaranth expressions, mirroring ``golden/fixedpoint.py``.

Each function builds combinational logic whose integer result equals the golden function of the
same name for every input; ``tests/test_hw_fixed.py`` checks that exhaustively in simulation.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value, signed

from ...spec.formats import Overflow, Quantizer, Rounding

__all__ = ["round_shift", "apply_overflow", "requantize"]


def round_shift(value: Value, shift: int, rounding: Rounding) -> Value:
    """``value / 2**shift`` rounded per ``rounding`` (``shift <= 0``: exact left shift).

    Built as the floor (an arithmetic shift: wires only) plus a one-bit increment decided from
    the dropped bits, so each mode costs one incrementer and a few gates rather than a
    full-width adder or comparator:

    * half_up:      + r[s-1]                      (v + 2^(s-1)) >> s = floor + r[s-1]
    * toward_zero:  + (v < 0 and r != 0)          negative values with a remainder round up
    * half_even:    + r[s-1] and (r[s-2:0] != 0 or floor is odd)
    """
    value = Value.cast(value).as_signed()
    if shift <= 0:
        return value << -shift
    floor = value >> shift                       # arithmetic shift: signed operand
    if rounding is Rounding.FLOOR:
        return floor
    # The dropped bits r, sign-extended first so shifts beyond the width see them all.
    remainder = Cat(value, value[-1].replicate(max(0, shift - len(value))))[:shift]
    half_bit, below_half = remainder[shift - 1], remainder[:shift - 1].any()
    if rounding is Rounding.HALF_UP:
        increment = half_bit
    elif rounding is Rounding.TOWARD_ZERO:
        increment = value[-1] & remainder.any()
    elif rounding is Rounding.HALF_EVEN:
        increment = half_bit & (below_half | floor[0])
    else:
        raise TypeError(f"rounding must be a Rounding, not {rounding!r}")  # pragma: no cover
    return floor + increment


def apply_overflow(value: Value, width: int, overflow: Overflow) -> Value:
    """Fit a signed value into ``width`` bits: wrap (keep low bits) or saturate (clamp)."""
    value = Value.cast(value).as_signed()
    if len(value) <= width:                      # cannot overflow: sign-extend only
        return Cat(value, value[-1].replicate(width - len(value))).as_signed()
    if overflow is Overflow.WRAP:
        return value[:width].as_signed()
    if overflow is Overflow.SATURATE:
        # The value fits iff the bits from the new sign bit up are all copies of the sign: a
        # small AND/OR tree instead of two full-width magnitude comparators (carry chains), which
        # keeps saturation off the critical path.
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        top = value[width - 1:]
        fits = (top == 0) | (top == (1 << len(top)) - 1)
        clamped = Mux(fits, value[:width].as_signed(),
                      Mux(value[-1], Const(lo, signed(width)), Const(hi, signed(width))))
        return clamped.as_signed()
    raise TypeError(f"overflow must be an Overflow, not {overflow!r}")  # pragma: no cover


def requantize(value: Value, frac: int, quantizer: Quantizer, *, to_frac: int | None = None) -> Value:
    """Move a value with ``frac`` fraction bits into ``quantizer``'s format (``to_frac``
    overrides the target fraction bits, for per-mode state formats). Result: signed(W)."""
    target = quantizer.format.frac if to_frac is None else to_frac
    rounded = round_shift(value, frac - target, quantizer.rounding)
    return apply_overflow(rounded, quantizer.format.width, quantizer.overflow)[:quantizer.format.width].as_signed()
