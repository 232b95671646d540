"""Fixed-point rounding and overflow as Amaranth expressions, mirroring ``golden/fixedpoint.py``.

Each function builds combinational logic whose integer result equals the golden function of the
same name for every input; ``tests/test_hw_fixed.py`` checks that exhaustively in simulation.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value, signed

from ..golden.fixedpoint import Overflow, Quantizer, Rounding

__all__ = ["round_shift", "apply_overflow", "requantize"]


def round_shift(value: Value, shift: int, rounding: Rounding) -> Value:
    """``value / 2**shift`` rounded per ``rounding`` (``shift <= 0``: exact left shift)."""
    value = Value.cast(value).as_signed()
    if shift <= 0:
        return value << -shift
    floor = value >> shift                       # arithmetic shift: signed operand
    if rounding is Rounding.FLOOR:
        return floor
    if rounding is Rounding.HALF_UP:
        return (value + (1 << (shift - 1))) >> shift
    if rounding is Rounding.TOWARD_ZERO:
        # Negative values round up: add 2**shift - 1 before the floor shift.
        return Mux(value < 0, (value + ((1 << shift) - 1)) >> shift, floor)
    if rounding is Rounding.HALF_EVEN:
        # The dropped bits, unsigned; sign-extend first so shifts beyond the width see them all.
        remainder = Cat(value, value[-1].replicate(max(0, shift - len(value))))[:shift]
        half = 1 << (shift - 1)
        round_up = (remainder > half) | ((remainder == half) & floor[0])
        return floor + round_up
    raise TypeError(f"rounding must be a Rounding, not {rounding!r}")  # pragma: no cover


def apply_overflow(value: Value, width: int, overflow: Overflow) -> Value:
    """Fit a signed value into ``width`` bits: wrap (keep low bits) or saturate (clamp)."""
    value = Value.cast(value).as_signed()
    if len(value) <= width:                      # cannot overflow: sign-extend only
        return Cat(value, value[-1].replicate(width - len(value))).as_signed()
    if overflow is Overflow.WRAP:
        return value[:width].as_signed()
    if overflow is Overflow.SATURATE:
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        clamped = Mux(value > hi, Const(hi, signed(width)),
                      Mux(value < lo, Const(lo, signed(width)), value[:width].as_signed()))
        return clamped.as_signed()
    raise TypeError(f"overflow must be an Overflow, not {overflow!r}")  # pragma: no cover


def requantize(value: Value, frac: int, quantizer: Quantizer, *, to_frac: int | None = None) -> Value:
    """Move a value with ``frac`` fraction bits into ``quantizer``'s format (``to_frac``
    overrides the target fraction bits, for per-mode state formats). Result: signed(W)."""
    target = quantizer.format.frac if to_frac is None else to_frac
    rounded = round_shift(value, frac - target, quantizer.rounding)
    return apply_overflow(rounded, quantizer.format.width, quantizer.overflow)[:quantizer.format.width].as_signed()
