"""A product by a constant as shifts and adds (canonical signed digits), with no multiplier.

Why. Yosys maps every ``$mul`` of two operands wider than one bit to a DSP block, even when one
operand is a constant such as a D weight or a one-input encoder weight. A whole network has dozens
of those small constant products (the default sDigits model: 64 D weights and 32 encoder
weights), and they would take DSP blocks that the state updates and the folded layers need.
Written as ``sum(+-(x << shift))`` over the constant's canonical signed digits (at most
ceil((W + 1) / 2) nonzero digits for a W-bit constant, usually fewer), the product becomes a few
adders in LUTs and carry chains. The value is exactly ``x * c``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Value, signed

__all__ = ["csd_digits", "const_product"]


def csd_digits(c: int) -> list[tuple[int, int]]:
    """Canonical signed-digit form of ``c``: [(shift, +1 or -1)] with sum(d << shift) == c and no
    two adjacent nonzero digits (the fewest nonzero digits of any signed-digit form)."""
    digits, shift = [], 0
    while c:
        if c & 1:
            digit = 2 - (c & 3)          # +1 when c = 1 (mod 4), -1 when c = 3 (mod 4)
            digits.append((shift, digit))
            c -= digit
        c >>= 1
        shift += 1
    return digits


def const_product(x, c: int) -> Value:
    """``x * c`` (x signed or unsigned, c a Python int) as shifts and adds; exact, signed, any
    width needed."""
    x = Value.cast(x)
    # an unsigned x gains a zero sign bit, so its top bit is not read as a sign
    x = x.as_signed() if x.shape().signed else Cat(x, Const(0, 1)).as_signed()
    terms = [(x << shift) if digit > 0 else -(x << shift) for shift, digit in csd_digits(int(c))]
    if not terms:
        return Const(0, signed(1))
    return sum(terms[1:], terms[0])
