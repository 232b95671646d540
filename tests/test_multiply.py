"""hw/datapath/multiply.py: products built in logic are exact for every input, the DSP budget
goes to the products dearest in logic, and Yosys maps exactly the chosen products to DSP blocks
(as many as the estimate says)."""

from __future__ import annotations

import copy
import itertools

import pytest
from amaranth.hdl import Const, Module, Signal, signed, unsigned
from amaranth.sim import Simulator
from synth_configs import SYNTH_CONFIGS

from ssmgen.design import Design
from ssmgen.hw.datapath.multiply import (
    choose_dsp_products, logic_cost, logic_product, product_in_logic,
)
from ssmgen.spec.config import parse_config


def _values(shape):
    if shape.signed:
        return range(-(1 << (shape.width - 1)), 1 << (shape.width - 1))
    return range(1 << shape.width)


@pytest.mark.parametrize("a_shape,b_shape", [
    (signed(4), signed(3)), (signed(5), unsigned(3)), (unsigned(3), signed(4)),
    (signed(1), signed(3)), (signed(2), signed(2)), (signed(6), signed(5)), (unsigned(4), unsigned(2)),
])
def test_logic_product_is_exact_for_every_input(a_shape, b_shape):
    a, b = Signal(a_shape), Signal(b_shape)
    product = logic_product(a, b)
    out = Signal(product.shape())
    m = Module()
    m.d.comb += out.eq(product)
    mismatches = []

    async def bench(ctx):
        for x, y in itertools.product(_values(a_shape), _values(b_shape)):
            ctx.set(a, x)
            ctx.set(b, y)
            if ctx.get(out) != x * y:
                mismatches.append((x, y, ctx.get(out)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, mismatches[:5]


def test_a_constant_factor_becomes_shifts_and_adds():
    x = Signal(signed(8))
    assert logic_cost(Const(5, signed(4)), x) == 8          # 5 = 4 + 1: one adder of 8 bits
    assert logic_cost(Const(4, signed(4)), x) == 0          # a shift
    assert logic_cost(Signal(signed(4)), x) == 3 * 8        # 4 rows of 8 bits: 3 adders
    # no multiplication operator in either form
    for factor in (Const(-7, signed(4)), Signal(signed(4))):
        assert "*" not in repr(product_in_logic(factor, x))


def test_the_budget_goes_to_the_dearest_products():
    costs = [10, 40, 40, 5, 30]
    assert choose_dsp_products(costs, None) == [True] * 5
    assert choose_dsp_products(costs, 0) == [False] * 5
    assert choose_dsp_products(costs, 2) == [False, True, True, False, False]
    assert choose_dsp_products(costs, 3) == [False, True, True, False, True]
    assert choose_dsp_products(costs, 1) == [False, True, False, False, False]   # ties: earlier
    assert choose_dsp_products(costs, 9) == [True] * 5


@pytest.mark.synth
@pytest.mark.parametrize("budget", [0, 4])
def test_yosys_maps_exactly_the_budgeted_products_to_dsp_blocks(budget, tmp_path):
    """s5_tiny needs 11 SB_MAC16 with every product a multiplier (test_synth); capped at
    ``budget``, Yosys uses that many and the estimate agrees."""
    data = copy.deepcopy(SYNTH_CONFIGS["s5_tiny"])
    data["hardware"]["dsp_products"] = budget
    design = Design.from_config(parse_config(data))
    report = design.synthesize("ice40-up5k", tmp_path, place=False, progress=lambda msg: None)
    assert report["accelerator"]["dsps"] == budget == design.estimate("ice40-up5k")["dsps"]
    assert report["fits"]
