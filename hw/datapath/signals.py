"""Two ways of naming a value in a netlist that every datapath block needs.

``wire``: Amaranth does not share a Python expression used in several places, so every reuse of
a large one (a product feeding the rounding logic, which reads its input several times) would
copy it in the netlist; a named signal is built once.

``select_word``: ``choices[index]`` as a word select from the concatenated choices. Two reasons
not to use ``Array``: Amaranth expands arithmetic on an Array element into one copy per element
(every group would get its own multipliers), and the ``always @*`` case blocks it emits never
evaluate at time 0 in Icarus when the index does not change, leaving constant ROM outputs at X.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Shape, Signal, Value

__all__ = ["wire", "select_word"]


def wire(m, value, name: str, shape=None) -> Signal:
    """``value`` through a combinational signal called ``name`` (of ``shape``, default the
    value's own)."""
    value = Value.cast(value)
    signal = Signal(shape if shape is not None else value.shape(), name=name)
    m.d.comb += signal.eq(value)
    return signal


def select_word(m, choices, index, shape, name: str):
    """``choices[index]`` as a signal of ``shape`` called ``name`` (each choice sign- or
    zero-extended, or truncated, to its width); a single choice is returned as it is."""
    if len(choices) == 1:
        return choices[0]
    shape = Shape.cast(shape)
    words = []
    for choice in choices:
        value = Value.cast(choice)
        pad = shape.width - len(value)
        fill = value[-1] if value.shape().signed else Const(0, 1)
        words.append(Cat(value, fill.replicate(pad)) if pad > 0 else value[:shape.width])
    selected = Signal(shape, name=name)
    m.d.comb += selected.eq(Cat(*words).word_select(index, shape.width))
    return selected
