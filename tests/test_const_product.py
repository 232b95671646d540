"""hw/datapath/const_product.py: the canonical signed digits sum to the constant, and the shift-and-add
product equals x * c for every x of the width (Amaranth simulator), with no multiplier."""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from ssmgen.hw.datapath.const_product import const_product, csd_digits


@pytest.mark.parametrize("c", range(-300, 301))
def test_csd_digits_sum_to_the_constant_without_adjacent_digits(c):
    digits = csd_digits(c)
    assert sum(d << s for s, d in digits) == c
    shifts = [s for s, _ in digits]
    assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))


@pytest.mark.parametrize("c", [0, 1, -1, 3, -3, 7, -8, 85, -86, 127, -128])
def test_const_product_is_exact_for_every_input(c):
    x = Signal(signed(6))
    y = Signal(signed(16))
    m = Module()
    m.d.comb += y.eq(const_product(x, c))
    mismatches = []

    async def bench(ctx):
        for v in range(-32, 32):
            ctx.set(x, v)
            if ctx.get(y) != v * c:
                mismatches.append((v, ctx.get(y)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches
