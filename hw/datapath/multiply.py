"""Products in DSP blocks or in logic, and which products get the DSP blocks.

Why. Yosys maps every ``$mul`` whose factors are both wider than one bit to a DSP block
(``synth_ice40 -dsp`` even a 4 x 8 bit one), and an iCE40 UP5K has 8 of them: a design with more
products fails to fit although narrow products are cheap in LUTs. ``hardware.dsp_products``
caps how many products stay multipliers; :func:`choose_dsp_products` gives the DSP blocks to
the products that would cost the most logic, and the rest are built here so that Yosys never
sees a ``$mul``: :func:`logic_product` adds the shifted partial products of the narrower factor
(an adder tree in LUTs and carry chains), a product by a constant is shifts and adds over the
constant's canonical signed digits (``const_product``). Both are exactly ``a * b``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value

from .const_product import const_product, csd_digits

__all__ = ["logic_product", "product_in_logic", "logic_cost", "choose_dsp_products",
           "drive_products"]


def _signed(value: Value) -> Value:
    value = Value.cast(value)
    return value if value.shape().signed else Cat(value, Const(0, 1)).as_signed()


def logic_product(a, b) -> Value:
    """``a * b`` (signed or unsigned factors) as a balanced adder tree of the partial products
    ``a << i`` selected by the bits of the narrower factor; the sign bit's row is subtracted
    (two's complement). Exact; no ``$mul`` for Yosys to put in a DSP block."""
    a, b = _signed(a), _signed(b)
    if len(b) > len(a):
        a, b = b, a
    rows = [Mux(b[i], a, 0) << i for i in range(len(b) - 1)]
    rows.append(-(Mux(b[-1], a, 0) << (len(b) - 1)))
    while len(rows) > 1:
        rows = [rows[n] + rows[n + 1] if n + 1 < len(rows) else rows[n]
                for n in range(0, len(rows), 2)]
    return rows[0]


def product_in_logic(a, b) -> Value:
    """``a * b`` without a multiplier: shifts and adds when a factor is a constant, else
    :func:`logic_product`."""
    a, b = Value.cast(a), Value.cast(b)
    if isinstance(a, Const):
        return const_product(b, a.value)
    if isinstance(b, Const):
        return const_product(a, b.value)
    return logic_product(a, b)


def logic_cost(a, b) -> int:
    """Adder bits :func:`product_in_logic` spends on ``a * b``: (rows - 1) x the wider width,
    a constant's rows being its nonzero signed digits. Ranks the products for the DSP blocks."""
    a, b = Value.cast(a), Value.cast(b)
    for const, other in ((a, b), (b, a)):
        if isinstance(const, Const):
            return max(len(csd_digits(const.value)) - 1, 0) * len(other)
    return (min(len(a), len(b)) - 1) * max(len(a), len(b))


def choose_dsp_products(costs, budget: int | None) -> list[bool]:
    """Which of the products (their :func:`logic_cost`) stay multipliers: the ``budget`` most
    expensive in logic (ties: the earlier one), or all when ``budget`` is None."""
    if budget is None:
        return [True] * len(costs)
    ranked = sorted(range(len(costs)), key=lambda i: (-costs[i], i))
    chosen = set(ranked[:budget])
    return [i in chosen for i in range(len(costs))]


def drive_products(m, pending, budget: int | None) -> tuple[list[int], list]:
    """Drive each pending product's result signal: the ``budget`` products dearest in logic
    (None: all) by a multiplier, the others by :func:`product_in_logic`. ``pending``: (result
    signal, record with the factors ``a`` and ``b``). Returns every product's logic cost and
    the records of those that are multipliers."""
    costs = [logic_cost(record.a, record.b) for _, record in pending]
    multipliers = []
    for (value, record), dsp in zip(pending, choose_dsp_products(costs, budget)):
        m.d.comb += value.eq(record.a * record.b if dsp else product_in_logic(record.a, record.b))
        if dsp:
            multipliers.append(record)
    return costs, multipliers
