"""Reading one field of a TOML table, with errors that name the field, the value and what is
allowed. The config sections (``config.py``, ``network_config.py``) are written with these, so
every section words its errors the same way."""

from __future__ import annotations

from .errors import ConfigError
from .formats import FixedFormat, Overflow, Quantizer, Rounding

__all__ = ["expect_table", "reject_unknown", "int_field", "choice_field", "format_field",
           "quantizer_field", "accumulator_field", "int_bits_list", "ROUNDINGS", "OVERFLOWS"]

ROUNDINGS = tuple(r.value for r in Rounding)
OVERFLOWS = tuple(o.value for o in Overflow)


def expect_table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, not {value!r}")
    return value


def reject_unknown(table: dict, allowed, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(allowed))}")


def _range_text(lo, hi) -> str:
    return f" {lo}..{hi}" if hi is not None else f" >= {lo}"


def int_field(table: dict, key: str, where: str, *, lo: int, hi: int | None = None,
              default: int | None = None) -> int:
    """``table[key]`` as an integer in lo..hi (``default`` when absent; required without one)."""
    if key not in table:
        if default is None:
            raise ConfigError(f"{where}.{key}: missing (an integer{_range_text(lo, hi)})")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key}: must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(f"{where}.{key}: {value} is out of range; allowed{_range_text(lo, hi)}")
    return value


def choice_field(table: dict, key: str, where: str, choices, default=None):
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{where}.{key}: missing; allowed: {', '.join(choices)}")
    if value not in choices:
        raise ConfigError(f"{where}.{key}: {value!r} is not allowed; allowed: {', '.join(choices)}")
    return value


def format_field(value, where: str) -> FixedFormat:
    try:
        return FixedFormat.parse(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def quantizer_field(table: dict, where: str, defaults: dict) -> Quantizer:
    """A component's ``format``, ``rounding`` and ``overflow``; the modes fall back to
    ``defaults`` (``[quant.defaults]``). Per-mode ``int_bits`` exist only for the state."""
    if "int_bits" in table and not where.endswith("quant.state"):
        raise ConfigError(f"{where}.int_bits: per-mode formats exist only for the state")
    reject_unknown(table, ("format", "rounding", "overflow", "int_bits"), where)
    if "format" not in table:
        raise ConfigError(f"{where}.format: missing (e.g. \"fixed<8,1>\")")
    fmt = format_field(table["format"], f"{where}.format")
    rounding = choice_field(table, "rounding", where, ROUNDINGS, defaults.get("rounding"))
    overflow = choice_field(table, "overflow", where, OVERFLOWS, defaults.get("overflow"))
    return Quantizer(fmt, Rounding(rounding), Overflow(overflow))


def accumulator_field(table, where: str, defaults: dict) -> Quantizer | None:
    """An accumulator (or any sum whose default is exact): ``format = "full"`` (the default)
    gives None, full precision with a derived width; else a quantizer as for a component."""
    table = expect_table({"format": "full"} if table is None else table, where)
    if table.get("format", "full") == "full":
        reject_unknown(table, ("format",), where)
        return None
    return quantizer_field(table, where, defaults)


def int_bits_list(value, count: int, width: int | None, where: str) -> tuple[int, ...]:
    """A list of ``count`` integer-bit counts, each valid for a ``width``-bit format (not checked
    when ``width`` is None: that format's own error is reported elsewhere)."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of {count} integers, not {value!r:.80}")
    if len(value) != count:
        raise ConfigError(f"{where}: needs one entry per state ({count}), not {len(value)}")
    for index, bits in enumerate(value):
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise ConfigError(f"{where}[{index}]: must be an integer, not {bits!r}")
        if width is not None:
            try:
                FixedFormat(width, bits)
            except ValueError as exc:
                raise ConfigError(f"{where}[{index}]: {exc}") from None
    return tuple(value)
