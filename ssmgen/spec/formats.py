"""Fixed-point formats: ``fixed<W,I>`` with its rounding and overflow modes, and the exact value
of an integer in a format. What rounding and overflow *do* is defined in one place,
``ssmgen.golden.fixedpoint``; this module only names and validates them.

A format ``fixed<W,I>`` is a signed two's-complement number of ``W`` bits of which ``I`` are integer
bits including the sign, as in ap_fixed: the value of the integer ``q`` is ``q * 2**-(W-I)``.
``I`` may be negative (for small values such as a ZOH-discretized Bbar) but not above ``W``.
"""

from __future__ import annotations

import enum
import operator
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["Rounding", "Overflow", "FixedFormat", "Quantizer", "to_float", "MAX_FORMAT_WIDTH",
           "INT64_SAFE_BITS"]

#: Widest format a component may use. Chosen so that every exact intermediate of the integer
#: model provably fits int64 (``ssmgen.golden.quantize`` checks the derived widths when a config is quantized).
MAX_FORMAT_WIDTH = 24
#: Exact intermediates of the integer model must fit in this many bits (signed), leaving int64
#: headroom for the rounding offset added before a shift.
INT64_SAFE_BITS = 62


class Rounding(enum.Enum):
    """How fraction bits are dropped. Named plainly because libraries disagree on defaults."""
    FLOOR = "floor"              #: toward -inf (truncation of two's complement; ap_fixed AP_TRN)
    HALF_UP = "half_up"          #: to nearest, ties toward +inf (ap_fixed AP_RND)
    HALF_EVEN = "half_even"      #: to nearest, ties to even (convergent; ap_fixed AP_RND_CONV)
    TOWARD_ZERO = "toward_zero"  #: toward 0 (ap_fixed AP_TRN_ZERO)


class Overflow(enum.Enum):
    """What happens when the rounded integer does not fit in W bits."""
    WRAP = "wrap"          #: keep the low W bits (two's-complement wrap-around)
    SATURATE = "saturate"  #: clamp to [-2**(W-1), 2**(W-1) - 1]


_FORMAT_RE = re.compile(r"^\s*fixed\s*<\s*(-?\d+)\s*,\s*(-?\d+)\s*>\s*$")


@dataclass(frozen=True)
class FixedFormat:
    """Signed fixed-point format ``fixed<width,int_bits>``."""
    width: int
    int_bits: int

    def __post_init__(self):
        width = operator.index(self.width)
        int_bits = operator.index(self.int_bits)
        if not 2 <= width <= MAX_FORMAT_WIDTH:
            raise ValueError(f"width W must be in 2..{MAX_FORMAT_WIDTH}, not {width}")
        if not -MAX_FORMAT_WIDTH <= int_bits <= width:
            raise ValueError(f"integer bits I must be in -{MAX_FORMAT_WIDTH}..W={width}, not {int_bits}")
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "int_bits", int_bits)

    @classmethod
    def parse(cls, text: str) -> "FixedFormat":
        """Parse ``"fixed<W,I>"``."""
        if not isinstance(text, str):
            raise TypeError(f"format must be a string like 'fixed<8,1>', not {text!r}")
        match = _FORMAT_RE.match(text)
        if match is None:
            raise ValueError(f"format must look like 'fixed<W,I>', not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def frac(self) -> int:
        """Fraction bits F = W - I; the value of integer q is q * 2**-F."""
        return self.width - self.int_bits

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1))

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    @property
    def max_value(self) -> float:
        return self.max_int * self.lsb

    @property
    def min_value(self) -> float:
        return self.min_int * self.lsb

    def with_int_bits(self, int_bits: int) -> "FixedFormat":
        return FixedFormat(self.width, int_bits)

    def __str__(self):
        return f"fixed<{self.width},{self.int_bits}>"


@dataclass(frozen=True)
class Quantizer:
    """A format together with the rounding and overflow used when a value enters it."""
    format: FixedFormat
    rounding: Rounding
    overflow: Overflow

    def __str__(self):
        return f"{self.format} {self.rounding.value}/{self.overflow.value}"

    @classmethod
    def parse(cls, text: str) -> "Quantizer":
        """Inverse of ``str()``: ``"fixed<8,3> half_even/saturate"`` (manifest formats)."""
        fmt, _, modes = str(text).strip().rpartition(" ")
        rounding, _, overflow = modes.partition("/")
        return cls(FixedFormat.parse(fmt), Rounding(rounding), Overflow(overflow))


def to_float(values, frac) -> np.ndarray:
    """Exact real value of integers with ``frac`` fraction bits (exact for |int| < 2**53)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"expected an integer array, not dtype {values.dtype}")
    return np.ldexp(values.astype(np.float64), -np.asarray(frac, dtype=np.int64))
