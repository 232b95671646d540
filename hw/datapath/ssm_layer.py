# amaranth: UnusedElaboratable=no
"""One quantized diagonal SSM layer (S4D or S5) as an Amaranth component.

Computes exactly what ``golden/integer_model.py`` specifies, one timestep per input beat:

    x_p[k] = Q_state(ACC(Abar_p x_p[k-1] + sum_h Bbar_p,h u_h[k]))
    y_h[k] = Q_output(ACC(sum_p Re(C_h,p x_p[k]) + D_h u_h[k]))

Parallelism (``lanes``, like hls4ml's ReuseFactor or FINN's PE): the P states are split into
G = P / lanes groups; each clock cycle issues one group, ``lanes`` states at once, so a timestep
takes G cycles and the multipliers are shared G-fold. With lanes = P, G = 1: one timestep per
cycle. Weights are constants baked into the design.

Storage (``hardware.storage``). With G > 1 a lane revisits each of its G states every G cycles,
so the states and the per-state weights (Abar, Bbar, C and the small per-state selectors) are
words of memories G deep, read one group per cycle:

    registers  every state in flip-flops behind a G:1 multiplexer, every weight in a LUT ROM
               (cost grows with P)
    memory     ``amaranth.lib.memory.Memory`` blocks that Yosys maps to block RAM (SB_RAM40_4K,
               DP16KD): one for the states (all lanes' real and imaginary parts in one word:
               the lanes always read and write the same group) and one ROM per pipeline stage
               that reads weights (every field read at that stage packed into one word), so the
               logic follows the lanes and the block RAM the bits.

A memory read is synchronous: the address is presented one cycle before the word is used,
i.e. the group one stage earlier, or for stage 0 the group the issue register takes next
(:meth:`_Pipeline.read_address`), with the read enable on ``advance`` so a held pipeline holds
its words too. The state for the group at stage ``pre`` is read at the cycle the group at
stage ``pre`` - 1 occupies (for ``pre`` = 0, one cycle before issue), G advancing cycles after the
read of the previous round; its write lands at the end of stage L - 1. Read and write of the
same state meet in one cycle only when ``pre`` = 0 and L = G: only then is the read port made
transparent to the write port (read-during-write returns the new word).

With memory storage an s4d layer whose lanes divide the modes per channel reads out serially
(:attr:`SSMLayer.serial_readout`): one running sum, rounding and D u product for all channels,
one input sample selected at issue instead of all H carried down the pipeline.

DSP blocks (``hardware.dsp_products``, or a network's share of it): the products that would cost
the most logic stay multipliers, the rest are built from adders (``multiply.py``). A network
elaborates each layer once without a budget to rank the products of the whole design; the
memories and modules of that dry run are never used, hence the first line, which silences
Amaranth's warning about them.

Pipelining rule. Everything that does not feed back (the input products Bbar u, the readout
Re(C x) + D u, the sum over lanes and groups, the output rounding) is pipelined freely. The
state-update loop (read x_p, multiply by Abar, add Bbar u, round, write x_p) is the only
recurrence: a state is read again G cycles after it was read, so its update may take up to G
cycles. The loop therefore gets L = ``hardware.loop_stages`` registers, 1 <= L <= min(G, 7):

    L = 1   read, multiply, add, round and write in one cycle (the only choice when G = 1)
    L = 2   + a register after the multipliers ("products"; on iCE40 it sits inside SB_MAC16)
    L = 3   + a register on the multiplier operands ("operands": pre-added state, Abar word)
    L = 4   + a register after the accumulator, before rounding ("sum")
    L = 5   + a register between rounding and overflow ("rounded")
    L = 6   + a register after the G:1 state select, before the pre-add ("read")
    L = 7   + a register between the complex product's post-adds and the accumulator ("post_add")

Stages. Stage 0 is the issue register: the accepted beat and the group being issued. A group
travels one stage per advancing cycle; stage s means "fed by registers s cycles after issue".
The loop writes the state at the end of stage L - 1; the readout multiplies at stage L, takes
Re(C x) = C_re x_re - C_im x_im at L + 1, aligns the terms at L + 2, sums the lanes at L + 3,
accumulates over groups at L + 4, rounds at L + 5 and saturates or wraps into the output register
at L + 6. So latency = G + L + 7 cycles from an accepted beat to its output beat.

Flow control. The whole pipeline advances together; it holds only when a finished timestep
reaches the output register while that still holds an unread one (y.valid & ~y.ready). Holding
freezes every stage, the state writes included, so a state is still read G advancing cycles
after its previous read and L <= G keeps every read behind the write it depends on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...spec.quantized import QuantizedSSM
from .const_product import const_product
from .fixed import apply_overflow, requantize, round_shift
from .multiply import drive_products
from .signals import select_word, wire

__all__ = ["SSMLayer", "Product", "input_layout", "output_layout"]

#: Where the state-update loop gets its L - 1 inner registers, in the order they are added.
LOOP_CUTS = ("products", "operands", "sum", "rounded", "read", "post_add")

#: Registers after the loop: readout products, their differences, aligned terms, lane sum, group
#: sum, rounded sum, output register.
READOUT_STAGES = 7


@dataclass(frozen=True)
class Product:
    """One multiplier of the datapath (a product the DSP budget leaves to ``$mul``), as the last
    elaboration built it: a weight (per group a constant) times a signal. The resource estimate
    (``synth/estimate.py``) reads these instead of re-deriving the datapath: which weights, how
    wide, and which products Yosys would merge. Products built in logic are not recorded: the
    estimate counts their adders in the netlist like any other.

    weight:   the weight's values, one per group (G > 1: a ROM), or one value (a constant)
    weight_width: declared bits of the weight
    operand_width: bits of the other factor
    operand_key: identifies the other factor across lanes (equal keys and equal weights are one
        product after Yosys's opt_merge)
    result:   the product's pipeline register, or None when it is used unregistered
    what:     which product of the specification it is (``abar_re*(x_re+x_im)``, ``bbar*u``, ...)
    """
    a: Value
    b: Value
    result: Value | None
    weight: tuple
    weight_width: int
    operand_width: int
    operand_key: tuple
    what: str


def input_layout(model: QuantizedSSM, banks: int = 1,
                 input_words: int | None = None) -> data.StructLayout:
    """One input beat: the H samples of a timestep, and ``start`` (begin a new sequence: the
    previous state is taken as zero); with banks, H = channels / banks and ``bank``, whose
    states the beat updates (``layer_banks.py``); with ``input_words`` (address bits) the
    samples stay in a memory and the beat carries ``base``, the address of sample 0."""
    width = model.config.quant.input.format.width
    samples = ({"base": unsigned(input_words)} if input_words is not None else
               {"data": data.ArrayLayout(signed(width), model.channels // banks)})
    fields = {**samples, "start": 1}
    if banks > 1:
        fields["bank"] = range(banks)
    return data.StructLayout(fields)


def output_layout(model: QuantizedSSM, banks: int = 1) -> data.StructLayout:
    """One output beat: the H outputs of a timestep (of the beat's bank)."""
    width = model.config.quant.output.format.width
    return data.StructLayout({"data": data.ArrayLayout(signed(width), model.channels // banks)})


class SSMLayer(wiring.Component):
    """Diagonal SSM layer datapath with stream interfaces.

    Ports
    -----
    u : In(stream.Signature(input_layout(model)))
        ``u.payload.data[h]``: signed(W_input); ``u.payload.start``: 1 bit.
    y : Out(stream.Signature(output_layout(model)))
        ``y.payload.data[h]``: signed(W_output).

    Properties
    ----------
    cycles_per_timestep : int   G = P / lanes (1 when lanes = P); with banks, per beat: P / (lanes
                                x banks)
    loop_stages : int           L, registers in the state-update loop (see the module docstring)
    latency : int               cycles from an accepted input beat to its output's valid = G + L + 7
    banks : int                 layers sharing the datapath (``layer_banks.py``; ``model`` is then
                                their ``stack_layers``), 1 for a layer of its own
    input_words : int or None   address bits of an input memory (serial readout only): the beat
                                carries ``base`` and the layer reads sample h of it through
                                ``u_addr`` / ``u_en``, a synchronous read port whose word
                                arrives on ``u_word`` a cycle later, at issue; None: the beat
                                carries the samples
    """

    #: One output beat per input beat (the manifest's ``stream.output_beat``).
    output_beat = "timestep"

    def __init__(self, model: QuantizedSSM, *, constants_in_logic: bool = False,
                 dsp_products: int | None | str = "config", banks: int = 1,
                 input_words: int | None = None):
        self.model = model
        self.banks = banks
        self.input_words = input_words
        #: At most this many products are multipliers (DSP blocks), the rest logic
        #: (``multiply.py``); None: all. Default: ``hardware.dsp_products``; a network gives
        #: each layer its share of the whole design's budget.
        self.dsp_products = (model.config.hardware.dsp_products if dsp_products == "config"
                             else dsp_products)
        #: logic cost of every product of the last elaboration (``multiply.logic_cost``), DSP
        #: or not: what a network ranks to share its budget
        self.product_costs: list[int] = []
        #: memories of the last elaboration (memory storage): name, holds, words, word_bits
        self.memories: list[dict] = []
        #: D u as shifts and adds (hw/datapath/const_product.py) instead of a multiplier: the whole
        #: network sets it, where DSP blocks are scarce; a single layer keeps the multiplier.
        self.constants_in_logic = constants_in_logic
        self.lanes = model.config.hardware.lanes
        #: every group of every bank (the memories' depth); a beat issues groups // banks
        self.groups = model.states // self.lanes
        if banks > 1 and not (self.serial_readout and self.groups % banks == 0
                              and model.channels % banks == 0):
            raise ValueError(f"{banks} banks need a serial readout (s4d, memory storage, lanes "
                             f"dividing the modes per channel) and banks dividing the "
                             f"{self.groups} groups and {model.channels} channels")
        if self._routed:
            self.slot, self.slot_base = self._slots()
        #: Every multiplier of the last elaboration (:class:`Product`), for the resource
        #: estimate.
        self.products: list[Product] = []
        if input_words is not None and not self.serial_readout:
            raise ValueError("An input memory needs a serial readout (s4d, memory storage, "
                             "lanes dividing the modes per channel)")
        ports = {} if input_words is None else {
            "u_addr": Out(unsigned(input_words)), "u_en": Out(1),
            "u_word": In(signed(model.config.quant.input.format.width))}
        super().__init__({"u": In(stream.Signature(input_layout(model, banks, input_words))),
                          "y": Out(stream.Signature(output_layout(model, banks))), **ports})

    @property
    def cycles_per_timestep(self) -> int:
        return self.groups // self.banks

    @property
    def loop_stages(self) -> int:
        return self.model.config.hardware.loop_stages

    @property
    def latency(self) -> int:
        return self.cycles_per_timestep + self.loop_stages + READOUT_STAGES

    @property
    def uses_memory(self) -> bool:
        """States and per-state weights in memories (``hardware.storage``; see the module
        docstring)."""
        return self.groups > 1 and self.model.config.hardware.storage == "memory"

    def hardware_summary(self) -> dict:
        """The manifest's ``hardware`` section: parallelism and timing."""
        return {"lanes": self.lanes,
                "complex_multipliers": self.model.config.hardware.complex_multipliers,
                "cycles_per_timestep": self.cycles_per_timestep,
                "loop_stages": self.loop_stages,
                "storage": "memory" if self.uses_memory else "registers",
                "memories": self.memory_summary(),
                "latency_cycles": self.latency}

    def memory_summary(self) -> list[dict]:
        """The memories of memory storage (none with registers): for each its name, what it
        holds, words (G) and bits per word; learnt from an elaboration (a dry one if the layer
        was not elaborated yet)."""
        if self.uses_memory and not self.memories:
            self.elaborate(None)
        return [dict(m) for m in self.memories]

    # --- helpers -------------------------------------------------------------------------------

    def states_of_lane(self, lane: int) -> list[int]:
        return [group * self.lanes + lane for group in range(self.groups)]

    @property
    def _routed(self) -> bool:
        """s4d with G > 1: the readout sums the lanes per slot and routes each slot's sum to its
        channel (see :meth:`_output`), instead of one gated sum per channel and lane."""
        return self.model.kind == "s4d" and self.groups > 1

    @property
    def serial_readout(self) -> bool:
        """Memory storage, s4d, each group inside one channel (lanes divide the modes per
        channel): the channels' sums complete one after another, so one accumulator, one
        rounding and one D u product serve every channel (see :meth:`_serial_output`) and the
        logic does not grow with H either."""
        modes = self.model.states // self.model.channels
        return self.uses_memory and self.model.kind == "s4d" and modes % self.lanes == 0

    def _slots(self) -> tuple[list[int], list[int]]:
        """Routed readout: (slot of each state, first channel of each group). s4d states are
        channel-major (``channel[p] = p // M``), so a group's lanes cover consecutive channels
        base(g) .. base(g) + K - 1; a state's slot is its channel minus its group's base."""
        channel = [int(c) for c in self.model.channel]
        base = [channel[g * self.lanes] for g in range(self.groups)]
        slot = [channel[p] - base[p // self.lanes] for p in range(self.model.states)]
        assert min(slot) >= 0, "s4d states must be channel-major"
        return slot, base

    @staticmethod
    def _acc_term(plan, value, frac):
        """A term entering an accumulator: exact alignment (full precision) or requantized."""
        if plan.full_precision:
            return Value.cast(value).as_signed() << (plan.frac - frac)   # plan.frac >= frac: exact
        return requantize(value, frac, plan.quantizer)

    @staticmethod
    def _acc_result(plan, total):
        if plan.full_precision:
            return total
        return apply_overflow(total, plan.width, plan.quantizer.overflow)

    # --- datapath ------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        self.products, self.memories = [], []
        pipe = _Pipeline(self, m)
        wx = self.model.config.quant.state.format.width
        states = (_MemoryStates if self.uses_memory else _RegisterStates)(pipe, wx)
        # Per output channel (or, when routed, per slot): one term per lane that feeds it.
        contributions = [[] for _ in range(max(self.slot) + 1 if self._routed else
                                           self.model.channels)]
        for lane in range(self.lanes):
            lane_ctx = _Lane(self, pipe, lane)
            x_new = self._state_update(lane_ctx, states)
            for key, term in self._output_terms(lane_ctx, x_new, states):
                contributions[key].append(term)
        self._output(pipe, contributions)
        states.finish()
        pipe.finish()
        return m

    def _state_update(self, lane: "_Lane", states):
        """x_p = Q_state(ACC(Abar_p x_p + sum_h Bbar_p,h u_h)) for the lane's state at stage
        L - 1 (see the module docstring for where the loop's registers sit); writes it back and
        returns it (re, im)."""
        pipe, model, q = lane.pipe, self.model, self.model.config.quant
        L, plan, lane_states = self.loop_stages, model.state_acc, lane.states
        wx, wa, wb = q.state.format.width, q.abar.format.width, q.bbar.format.width
        fa, fb, fu = q.abar.format.frac, q.bbar.format.frac, q.input.format.frac
        cuts = LOOP_CUTS[:L - 1]
        pre = int("read" in cuts)                     # stage of the pre-add (Gauss) and zeroing
        operands = pre + int("operands" in cuts)      # stage of the multipliers
        post = operands + int("products" in cuts)     # stage of the post-adds (Gauss, 4-mult)
        add = post + int("post_add" in cuts)          # stage of the accumulator
        rnd = add + int("sum" in cuts)                # stage of the rounding (per-mode shift)
        write = rnd + int("rounded" in cuts)          # stage of the overflow and the state write
        assert write == L - 1

        # Previous state, as stored for the group at stage `pre` (zero at the start of a
        # sequence).
        xr, xi = (lane.wire(Mux(pipe.stage(pre).start, 0, stored), f"x_prev_{part}")
                  for stored, part in zip(states.read(lane, pre), ("re", "im")))

        # Abar * x, exact; 3 real multipliers (Gauss) or 4, at stage `operands`; post-adds at
        # stage `post`.
        re_vals, im_vals, i = model.abar_re[lane_states], model.abar_im[lane_states], lane.index
        ar = lane.rom(re_vals, wa, "abar_re", operands)
        registers = post - operands
        if model.config.hardware.complex_multipliers == 3:
            sum_vals, dif_vals = re_vals + im_vals, im_vals - re_vals
            a_sum = lane.rom(sum_vals, wa + 1, "abar_sum", operands)
            a_dif = lane.rom(dif_vals, wa + 1, "abar_dif", operands)
            xs, xr_, xi_ = (lane.delay(v, operands - pre, what) for v, what in
                            ((xr + xi, "x_presum"), (xr, "x_re_op"), (xi, "x_im_op")))
            k1 = lane.product(ar, xs, registers, "k1", weight=(re_vals, wa),
                              operand_key=("x_sum", i), what="abar_re*(x_re+x_im)")
            k2 = lane.product(xi_, a_sum, registers, "k2", weight=(sum_vals, wa + 1),
                              operand_key=("x_im", i), what="x_im*abar_sum")
            k3 = lane.product(xr_, a_dif, registers, "k3", weight=(dif_vals, wa + 1),
                              operand_key=("x_re", i), what="x_re*abar_dif")
            ax = (k1 - k2, k1 + k3)
        else:
            ai = lane.rom(im_vals, wa, "abar_im", operands)
            xr_, xi_ = (lane.delay(xr, operands - pre, "x_re_op"),
                        lane.delay(xi, operands - pre, "x_im_op"))
            rr, ii, ri, ir = (lane.product(a, b, registers, name, weight=(vals, wa),
                                           operand_key=(key, i), what=what)
                              for a, b, name, vals, key, what in (
                                  (ar, xr_, "ar_xr", re_vals, "x_re", "abar_re*x_re"),
                                  (ai, xi_, "ai_xi", im_vals, "x_im", "abar_im*x_im"),
                                  (ar, xi_, "ar_xi", re_vals, "x_im", "abar_re*x_im"),
                                  (ai, xr_, "ai_xr", im_vals, "x_re", "abar_im*x_re")))
            ax = (rr - ii, ri + ir)
        ax = tuple(lane.delay(lane.wire(v, f"ax_{part}"), add - post, f"ax_{part}_reg")
                   for v, part in zip(ax, ("re", "im")))

        # Bbar * u (complex x real): feed-forward. Given room before the accumulator, its
        # operands (ROM word, input sample) are registered, then its products.
        b_mult = max(add - 2, 1 if add >= 2 else 0)
        b_sum = min(b_mult + 1, add)
        if model.kind == "s4d":
            u_sel, u_key = self._lane_input(lane, b_mult)
            b_factors = [(model.bbar_re[lane_states], model.bbar_im[lane_states], u_sel, u_key, "")]
        else:
            b_factors = [(model.bbar_re[lane_states, h], model.bbar_im[lane_states, h], pipe.stage(b_mult).u[h],
                          ("u", h), h) for h in range(model.channels)]
        b_terms = [tuple(lane.product(lane.rom(vals, wb, f"bbar{h}_{part}", b_mult), u, b_sum - b_mult,
                                      f"bu{h}_term_{part}", weight=(vals, wb), operand_key=u_key,
                                      what="bbar*u")
                         for vals, part in ((re_vals, "re"), (im_vals, "im")))
                   for re_vals, im_vals, u, u_key, h in b_factors]

        fx_min = min(int(model.state_frac[p]) for p in lane_states)
        x_new = []
        for index, part in enumerate(("re", "im")):
            bu = lane.wire(sum(self._acc_term(plan, t[index], fb + fu) for t in b_terms), f"bu_{part}")
            if plan.full_precision:
                # Per-mode formats: scaling the exact sum by 2^(fx - fx_min) makes the rounding
                # shift the same for every state, and leaves Abar x a constant alignment; only
                # the feed-forward Bbar u needs a per-state shift, chosen ahead of the loop.
                bu = lane.per_class(lambda fx, bu=bu: bu << (fx - fx_min), b_sum, f"bu_{part}_scaled")
                bu = lane.delay(lane.wire(bu, f"bu_{part}_scaled"), add - b_sum, f"bu_{part}_reg")
                total = lane.wire((ax[index] << (plan.frac - fa - fx_min)) + bu, f"acc_{part}")
                total = lane.delay(total, rnd - add, f"acc_{part}_reg")
                rounded = round_shift(total, plan.frac - fx_min, q.state.rounding)
            else:
                bu = lane.delay(bu, add - b_sum, f"bu_{part}_reg")

                def build(fx, index=index, part=part, bu=bu):
                    total = lane.wire(self._acc_term(plan, ax[index], fa + fx) + bu, f"acc_{part}_f{fx}")
                    total = lane.delay(total, rnd - add, f"acc_{part}_f{fx}_reg")
                    acc = lane.wire(self._acc_result(plan, total), f"acc_result_{part}_f{fx}")
                    return round_shift(acc, plan.frac - fx, q.state.rounding)
                # A narrow accumulator rounds Abar x per state format: one sum per format.
                rounded = lane.per_class(build, rnd, f"x_rounded_{part}")
            # One overflow stage into the common state width.
            rounded = lane.delay(lane.wire(rounded, f"x_rounded_{part}"), write - rnd,
                                 f"x_rounded_{part}_reg")
            x = Signal(signed(wx), name=lane.name(f"x_new_{part}"))
            lane.m.d.comb += x.eq(apply_overflow(rounded, wx, q.state.overflow)[:wx].as_signed())
            x_new.append(x)

        states.write(lane, write, x_new)
        return x_new

    def _lane_input(self, lane: "_Lane", stage: int):
        """s4d: the input channel of the lane's state, at ``stage``, and its key (lanes that
        select the same channels per group compute the same value)."""
        if self.serial_readout:
            return lane.pipe.delay(lane.pipe.serial_input, stage, "u_serial"), ("u_serial",)
        channels = [int(self.model.channel[p]) for p in lane.states]
        if len(set(channels)) == 1:
            return lane.pipe.stage(stage).u[channels[0]], ("u", channels[0])
        read = max(stage - 1, 0)
        index = lane.rom_unsigned(channels, "channel", read)
        width = self.model.config.quant.input.format.width
        selected = select_word(lane.m, lane.pipe.stage(read).u, index, signed(width), lane.name("u"))
        return lane.delay(selected, stage - read, "u_sel"), ("u_select", tuple(channels))

    def _output_terms(self, lane: "_Lane", x_new, states):
        """Terms Re(C_h,p x_p) of the lane's state, as (output channel, term) pairs at stage
        L + 2, already aligned/requantized into the output accumulator."""
        model, q, L = self.model, self.model.config.quant, self.loop_stages
        states_of_lane = lane.states
        wc, fc, plan = q.c.format.width, q.c.format.frac, model.output_acc
        if self.groups == 1:
            # The state register itself is x_new one cycle later: no copy needed.
            xn_re, xn_im = states.registers(states_of_lane[0])
        else:
            xn_re, xn_im = (lane.delay(v, 1, f"x_new_{part}_reg") for v, part in zip(x_new, ("re", "im")))

        def c_term(c_re_vals, c_im_vals, what):
            # Two products registered apart (each one SB_MAC16 with its output register).
            re_part = lane.product(lane.rom(c_re_vals, wc, f"{what}_re", L), xn_re, 1, f"{what}_re_x",
                                   weight=(c_re_vals, wc), operand_key=("x_new_re", lane.index),
                                   what="c_re*x_new_re")
            im_part = lane.product(lane.rom(c_im_vals, wc, f"{what}_im", L), xn_im, 1, f"{what}_im_x",
                                   weight=(c_im_vals, wc), operand_key=("x_new_im", lane.index),
                                   what="c_im*x_new_im")
            product = lane.delay(lane.wire(re_part - im_part, f"{what}_x"), 1, f"{what}_x_reg")
            return lane.per_class(lambda fx: self._acc_term(plan, product, fc + fx), L + 2,
                                  f"{what}_term")

        if model.kind == "s5":
            return [(h, c_term(model.c_re[h, states_of_lane], model.c_im[h, states_of_lane], f"c{h}"))
                    for h in range(model.channels)]
        term = c_term(model.c_re[states_of_lane], model.c_im[states_of_lane], "c")
        if not self._routed:
            return [(int(model.channel[states_of_lane[0]]), term)]      # one state per lane
        slots = [self.slot[p] for p in states_of_lane]
        if len(set(slots)) == 1:
            return [(slots[0], term)]
        # The lane's state falls in different slots across groups: gate the term per slot.
        return [(k, Mux(lane.rom_unsigned([int(s == k) for s in slots], f"feeds_slot{k}", L + 2),
                        term, 0))
                for k in sorted(set(slots))]

    def _output(self, pipe: "_Pipeline", contributions):
        """Register the aligned terms at stage L + 2, sum the lanes at L + 3, accumulate over
        groups at L + 4 (D u joins with the first group), round at L + 5, and apply overflow
        into the output register at L + 6.

        ``contributions``: per output channel the lanes' terms, or when routed (s4d, G > 1) per
        slot: then the lanes are summed once per slot, and at L + 4 slot k's sum goes to
        channel base(g) + k of the group. A folded s4d layer thus needs one adder tree, not one
        per channel (each lane would otherwise feed every channel its states belong to); the
        sums are exact, so the order of the additions does not change the result."""
        if self.serial_readout:
            return self._serial_output(pipe, contributions[0])
        m, model, q, plan = pipe.m, self.model, self.model.config.quant, self.model.output_acc
        fd, fu, wd = q.d.format.frac, q.input.format.frac, q.d.format.width
        L = self.loop_stages
        at_sum, at_acc = pipe.stage(L + 3), pipe.stage(L + 4)
        first, valid = at_acc.first, at_acc.valid   # (delayed outside any If: see delay())

        def lane_sum(terms, name, first_group_only=()):
            """Register the terms (L + 3), sum them and register the sum (L + 4); the terms at
            the indices ``first_group_only`` count only for a timestep's first group."""
            terms = [pipe.delay(wire(m, t, f"{name}_term{i}"), 1, f"{name}_term{i}_reg")
                     for i, t in enumerate(terms)]
            for i in first_group_only:
                terms[i] = Mux(at_sum.first, terms[i], 0)
            return pipe.delay(wire(m, sum(terms), f"{name}_lanes"), 1, f"{name}_lanes_reg")

        if self._routed:
            slot_sums = [lane_sum(terms, f"slot{k}") for k, terms in enumerate(contributions)]
            base = pipe.rom_unsigned(self.slot_base, "slot_base", L + 4)
        y_next = Signal(output_layout(model))
        for h in range(model.channels):
            # D u is multiplied at stage L + 1 and registered like the C products.
            u_h = pipe.stage(L + 1).u[h]
            if self.constants_in_logic:
                d_product = pipe.delay(wire(m, const_product(u_h, int(model.d[h])),
                                                  f"y{h}_du"), 1, f"y{h}_du_reg")
            else:
                d_product = pipe.product(Const(int(model.d[h]), signed(wd)), u_h, 1, f"y{h}_du",
                                         weight=([model.d[h]], wd), operand_key=("u", h),
                                         what="d*u")
            d_term = self._acc_term(plan, d_product, fd + fu)
            if self._routed:
                # Channel h takes slot k's sum when its group starts at channel h - k; D u
                # joins at the first group.
                lanes = sum(Mux(base == h - k, slot_sums[k], 0)
                            for k in range(len(slot_sums)) if h >= k)
                first_value = pipe.delay(wire(m, d_term, f"y{h}_d_term"), 2,
                                         f"y{h}_d_term_reg")
            else:
                lanes = lane_sum([d_term, *contributions[h]], f"y{h}",
                                 first_group_only=(0,) if self.groups > 1 else ())
                first_value = 0
            if self.groups == 1:
                total = pipe.delay(lanes, 1, f"y{h}_total")
            else:
                # Running sum over the groups; the last group's sum is read one stage later,
                # before the next timestep's first group overwrites it.
                total = Signal(signed(plan.sum_bits), name=f"y{h}_partial")
                running = Mux(first, first_value, total) + lanes
                with pipe.when(pipe.advance & valid):
                    m.d.sync += total.eq(running)
            m.d.comb += y_next.data[h].eq(self._round_output(pipe, total, f"y{h}"))

        self._output_register(pipe, y_next)

    def _round_output(self, pipe: "_Pipeline", total, name: str):
        """A finished output sum (stage L + 4's register) rounded into the output format: the
        rounding registered at L + 5, the overflow applied after it (for stage L + 6)."""
        m, q, plan = pipe.m, self.model.config.quant, self.model.output_acc
        acc = wire(m, self._acc_result(plan, total), f"{name}_sum")
        rounded = pipe.delay(wire(m, round_shift(acc, plan.frac - q.output.format.frac,
                                                 q.output.rounding), f"{name}_rounded"),
                             1, f"{name}_rounded_reg")
        return apply_overflow(rounded, q.output.format.width, q.output.overflow)

    def _output_register(self, pipe: "_Pipeline", y_next):
        """The output register: loaded with ``y_next`` when a timestep's last group leaves stage
        L + 6, cleared when taken."""
        m, at_out = pipe.m, pipe.stage(self.loop_stages + 6)
        out_valid, out_last = at_out.valid, at_out.last
        with pipe.when(pipe.advance & out_valid & out_last):
            m.d.sync += [self.y.payload.eq(y_next), self.y.valid.eq(1)]
        with m.Elif(self.y.ready):
            m.d.sync += self.y.valid.eq(0)

    def _serial_output(self, pipe: "_Pipeline", terms):
        """The readout of :attr:`serial_readout`: the groups of channel h are consecutive
        (R = modes / lanes of them), so at L + 4 one running sum restarts with D_h u_h at each
        channel's first group and adds the lanes' sum of every group; at L + 5 it is rounded;
        at L + 6, after a channel's last group, it saturates or wraps into that channel's word
        of a buffer, and after the timestep's last group (channel H - 1) the buffer and that
        last word load the output register. The D u product is one per layer: D from the
        weight memory, u the sample the lanes' Bbar u takes (selected at issue)."""
        m, model, q, plan = pipe.m, self.model, self.model.config.quant, self.model.output_acc
        L, G = self.loop_stages, self.groups
        per_channel = G // model.channels
        channel = [g // per_channel for g in range(G)]      # (with banks: across the banks)
        H = model.channels // self.banks                     # outputs of one beat
        fd, fu, wd = q.d.format.frac, q.input.format.frac, q.d.format.width
        # D u at L + 1 (registered: L + 2), aligned and delayed to the accumulator at L + 4
        d_values = [int(model.d[h]) for h in channel]
        d_word = pipe.lookup(d_values, signed(wd), "d", L + 1)
        u = pipe.delay(pipe.serial_input, L + 1, "u_serial_d")
        d_product = pipe.product(d_word, u, 1, "du", weight=(d_values, wd),
                                 operand_key=("u_serial",), what="d*u")
        d_term = pipe.delay(wire(m, self._acc_term(plan, d_product, fd + fu), "d_term"), 2,
                            "d_term_reg")
        lanes = pipe.delay(wire(m, sum(pipe.delay(wire(m, t, f"term{i}"), 1, f"term{i}_reg")
                                       for i, t in enumerate(terms)), "lanes"),
                           1, "lanes_reg")
        channel_first = pipe.rom_unsigned([int(g % per_channel == 0) for g in range(G)],
                                          "channel_first", L + 4)
        at_acc = pipe.stage(L + 4)
        valid = at_acc.valid
        total = Signal(signed(plan.sum_bits), name="y_partial")
        running = Mux(channel_first, d_term, total) + lanes
        with pipe.when(pipe.advance & valid):
            m.d.sync += total.eq(running)
        wy = q.output.format.width
        value = wire(m, self._round_output(pipe, total, "y")[:wy].as_signed(), "y_value")
        at_out = pipe.stage(L + 6)
        out_valid = at_out.valid
        out_channel = pipe.rom_unsigned([c % H for c in channel], "channel_out", L + 6)
        channel_last = pipe.rom_unsigned([int(g % per_channel == per_channel - 1)
                                          for g in range(G)], "channel_last", L + 6)
        buffer = [Signal(signed(wy), name=f"y{h}_done") for h in range(H - 1)]
        with pipe.when(pipe.advance & out_valid & channel_last):
            for h, word in enumerate(buffer):
                with m.If(out_channel == h):
                    m.d.sync += word.eq(value)
        y_next = Signal(output_layout(model, self.banks))
        m.d.comb += [*(y_next.data[h].eq(word) for h, word in enumerate(buffer)),
                     y_next.data[H - 1].eq(value)]
        self._output_register(pipe, y_next)


def _lookup_index(m, values, index, name: str):
    """``values[index]`` for small unsigned ints, combinational: a bit slice of ``index`` where
    the values are ``(index >> k) % 2**j`` (the usual power-of-two shapes), else a LUT ROM."""
    n = len(values)
    for shift in range(max(1, n).bit_length()):
        top = max(values) + 1
        if top & (top - 1) == 0 and all(v == (g >> shift) % top for g, v in enumerate(values)):
            return Value.cast(index)[shift:shift + max(0, top.bit_length() - 1)]
    return select_word(m, [Const(v, range(max(values) + 1)) for v in values], index,
                       unsigned(max(values).bit_length() or 1), name)


class _RegisterStates:
    """States in flip-flops: each lane selects its group's state G:1 at issue."""

    def __init__(self, pipe: "_Pipeline", width: int):
        self.pipe, self.width = pipe, width
        states = pipe.layer.model.states
        self.re = [Signal(signed(width), name=f"x{p}_re") for p in range(states)]
        self.im = [Signal(signed(width), name=f"x{p}_im") for p in range(states)]

    def read(self, lane: "_Lane", stage: int):
        """The lane's stored state (re, im) for the group at ``stage``: selected at issue and
        delayed."""
        group = self.pipe.stage(0).group
        return tuple(lane.delay(select_word(lane.m, [x[p] for p in lane.states], group,
                                            signed(self.width), lane.name(f"x_stored_{part}")),
                                stage, f"x_stored_{part}_reg")
                     for x, part in ((self.re, "re"), (self.im, "im")))

    def write(self, lane: "_Lane", stage: int, x_new):
        """Store the lane's new state (re, im) for the group at ``stage``."""
        at = self.pipe.stage(stage)
        valid, group = at.valid, at.group     # (delayed outside any If: see _Pipeline.delay)
        with self.pipe.when(self.pipe.advance & valid):
            for g, p in enumerate(lane.states):
                with lane.m.If(group == g):
                    lane.m.d.sync += [self.re[p].eq(x_new[0]), self.im[p].eq(x_new[1])]

    def registers(self, p: int):
        """State p's registers (re, im): with G = 1 they hold x_new one cycle later."""
        return self.re[p], self.im[p]

    def finish(self):
        pass


class _MemoryStates:
    """States in one memory of G words, each holding every lane's (re, im) of one group: the
    lanes read and write the same group in the same cycle. Read and write timing: see the
    module docstring."""

    def __init__(self, pipe: "_Pipeline", width: int):
        self.pipe, self.width = pipe, width
        self.word = Signal(2 * width * pipe.layer.lanes, name="x_stored")
        self.new = {}
        self.read_stage = self.write_stage = None

    def read(self, lane: "_Lane", stage: int):
        self.read_stage = stage
        base = 2 * self.width * lane.index
        return tuple(lane.wire(self.word[base + k * self.width:][:self.width].as_signed(),
                               f"x_stored_{part}") for k, part in enumerate(("re", "im")))

    def write(self, lane: "_Lane", stage: int, x_new):
        self.write_stage = stage
        self.new[lane.index] = Cat(*x_new)

    def registers(self, p: int):
        raise AssertionError("memory storage only serves folded layers (G > 1)")  # pragma: no cover

    def finish(self):
        pipe, layer, m = self.pipe, self.pipe.layer, self.pipe.m
        memory = Memory(shape=unsigned(len(self.word)), depth=layer.groups, init=[])
        m.submodules.states = memory
        layer.memories.append({"name": "states", "holds": "states", "words": layer.groups,
                               "word_bits": len(self.word)})
        write = memory.write_port()
        # the read of a group's next round and the write of its update meet in one cycle only
        # when L = G + read stage (i.e. read stage 0, L = G): then read the word being written
        # (with banks, a beat of the same bank may follow at once: G per beat)
        transparent = layer.loop_stages >= layer.cycles_per_timestep + self.read_stage
        read = memory.read_port(transparent_for=(write,) if transparent else ())
        at = pipe.stage(self.write_stage)
        m.d.comb += [read.addr.eq(pipe.read_address(self.read_stage)), read.en.eq(pipe.advance),
                     self.word.eq(read.data),
                     write.addr.eq(at.group), write.en.eq(pipe.advance & at.valid),
                     write.data.eq(Cat(*(self.new[lane] for lane in range(layer.lanes))))]


class _Token:
    """What travels with a group through the pipeline, as seen at one stage. Fields are
    delayed on first use only, so a stage carries just the fields some logic reads there."""

    FIELDS = ("valid",   # a group occupies this stage
              "group",   # which group
              "first",   # it is the first group of its timestep
              "last",    # it is the last group of its timestep
              "start",   # its timestep starts a sequence (previous state = 0)
              "u")       # its timestep's input samples: a list of signed(W_input)

    def __init__(self, pipe: "_Pipeline", stage: int, issued: dict | None = None):
        self._pipe, self._stage, self._fields = pipe, stage, dict(issued or {})

    def __getattr__(self, field):
        if field not in _Token.FIELDS:
            raise AttributeError(field)
        if field not in self._fields:
            prev = getattr(self._pipe.stage(self._stage - 1), field)
            name = f"stage{self._stage}_{field}"
            if field == "u":
                self._fields[field] = [self._pipe.delay(v, 1, f"{name}{h}") for h, v in enumerate(prev)]
            else:
                self._fields[field] = self._pipe.delay(prev, 1, name, reset_less=field != "valid")
        return self._fields[field]


class _Pipeline:
    """The issue stage, the shared advance condition, and delayed views of the token.

    ``advance`` is low only when the output register must hold (see the module docstring);
    every pipeline register is enabled by it, so all stages move together."""

    def __init__(self, layer: SSMLayer, m: Module):
        self.layer, self.m = layer, m
        model, G = layer.model, layer.groups
        final = layer.loop_stages + READOUT_STAGES - 1  # stage that writes the output register
        self.advance = Signal()
        self._stages = {}
        self._conditional = 0      # depth of when() blocks being built
        self._rom_fields = {}      # memory storage: stage -> [(field signal, value per group)]
        self._products = []        # (named result, Product) of every product, see finish()

        # Issue stage: the latched beat and the group to issue next.
        H = model.channels // layer.banks
        words = layer.input_words is not None
        u_data = (Signal(unsigned(layer.input_words), name="issue_base_address") if words else
                  Signal(data.ArrayLayout(signed(model.config.quant.input.format.width), H)))
        start, busy = Signal(name="issue_start"), Signal(name="issue_busy")
        group = Signal(range(G), name="issue_group") if G > 1 else Const(0, 1)
        # a beat issues its bank's groups base .. base + G / banks - 1
        per_beat = layer.cycles_per_timestep
        if layer.banks > 1:
            bank = Signal(range(layer.banks), name="issue_bank")

            def base_of(index, name):
                return select_word(m, [Const(b * per_beat, range(G)) for b in range(layer.banks)],
                                   index, unsigned(len(group)), name)
            base, next_base = base_of(bank, "issue_base"), base_of(layer.u.payload.bank, "next_base")
        else:
            base, next_base = 0, Const(0, 1)    # (a plain 0: no adder of constants below)
        first = (group == base) if G > 1 else Const(1, 1)
        # `last` is kept as a register beside the counter: u.ready depends on it, and a decoder
        # in that path was the longest one of small iCE40 designs.
        last = Signal(name="issue_last") if G > 1 else Const(1, 1)
        self._stages[0] = _Token(self, 0, dict(valid=busy, group=group, first=first, last=last,
                                               start=start,
                                               u=[] if words else [u_data[h] for h in range(H)]))
        out = self.stage(final)
        m.d.comb += self.advance.eq(~(out.valid & out.last & layer.y.valid & ~layer.y.ready))
        m.d.comb += layer.u.ready.eq(self.advance & (~busy | last))
        accept = layer.u.valid & layer.u.ready
        with m.If(accept):
            m.d.sync += [u_data.eq(layer.u.payload.base if words else layer.u.payload.data),
                         start.eq(layer.u.payload.start), busy.eq(1)]
        with m.Elif(self.advance & last):
            m.d.sync += busy.eq(0)
        if G > 1:
            with m.If(self.advance & busy):
                m.d.sync += [group.eq(Mux(last, 0, group + 1)),
                             last.eq(~last & (group == base + per_beat - 2))]
            if layer.banks > 1:
                with m.If(accept):
                    m.d.sync += [bank.eq(layer.u.payload.bank), group.eq(next_base)]
        # (the group counter is 0 whenever the issue stage is idle; a new beat starts at its
        # bank's base)
        self.next_group = Mux(busy & ~last, group + 1, next_base)[:len(group)] if G > 1 else group
        if layer.serial_readout:
            # The one input sample a group needs (its channel's), selected from the latched
            # beat at issue: only 8 bits or so travel down the pipeline instead of all H.
            modes = model.states // model.channels
            channels = [g * layer.lanes // modes % H for g in range(G)]
            if words:
                # read one group ahead, like the weight memories: the next group's channel in
                # its beat's samples (the latched beat's, or the one being accepted)
                continuing = busy & ~last
                beat = Mux(continuing, u_data, layer.u.payload.base)
                m.d.comb += [layer.u_addr.eq(beat + _lookup_index(m, channels, self.next_group,
                                                                  "u_channel_next")),
                             layer.u_en.eq(self.advance)]
                self.serial_input = layer.u_word
            else:
                channel = self.rom_unsigned(channels, "u_channel", 0)
                self.serial_input = select_word(m, [u_data[h] for h in range(H)],
                                                channel, signed(len(u_data[0])), "u_serial")

    def delay(self, value, n: int, name: str, *, reset_less: bool = True):
        """``value`` after ``n`` pipeline registers (constants pass through unregistered).

        Must not be called inside a conditional block (:meth:`when`): the registers would then
        update only under that condition (token fields are delayed lazily, so read them before
        the block)."""
        if self._conditional:
            raise RuntimeError(f"pipeline register {name!r} created inside a conditional block")
        value = Value.cast(value)
        if isinstance(value, Const):
            return value
        for i in range(n):
            reg = Signal(value.shape(), name=name if n == 1 else f"{name}{i + 1}", reset_less=reset_less)
            with self.m.If(self.advance):
                self.m.d.sync += reg.eq(value)
            value = reg
        return value

    @contextlib.contextmanager
    def when(self, condition):
        """``with m.If(condition)`` for the layer's conditional updates (state writes, the
        output register); :meth:`delay` refuses to build pipeline registers inside one."""
        self._conditional += 1
        try:
            with self.m.If(condition):
                yield
        finally:
            self._conditional -= 1

    def product(self, a, b, registers: int, name: str, *, weight: tuple, operand_key: tuple,
                what: str):
        """a * b (exact), named, then ``registers`` pipeline registers. A multiplier when the
        layer's DSP budget takes it (then recorded in the layer's ``products`` with ``weight`` =
        (its values per group, its declared width) and the other factor's ``operand_key``, see
        :class:`Product`), else logic (``multiply.py``)."""
        a, b = Value.cast(a), Value.cast(b)
        # whether a multiplier (a DSP block) or logic computes it is decided in finish(), once
        # every product of the layer is known
        named = Signal((a * b).shape(), name=name)
        result = self.delay(named, registers, f"{name}_reg")
        values, width = weight
        # one factor is the weight (a constant or a ROM word of exactly its declared width)
        operand_width = len(b) if len(a) == width else len(a)
        self._products.append((named, Product(a, b, result if registers else None,
                                              tuple(int(v) for v in values), width,
                                              operand_width, operand_key, what)))
        return result

    def lookup(self, values, shape, name: str, stage: int):
        """``values[group]`` (ints of ``shape``) for the group at ``stage``.

        Registers: a LUT ROM read one stage earlier and registered (so it reaches a multiplier as
        a register; only the group number travels down the pipeline, not the ROM words).
        Memory: a field of the stage's weight memory (built by :meth:`finish`), whose read
        register is that register. A value equal for every group is a constant either way."""
        shape = Shape.cast(shape)
        if self.layer.uses_memory:
            if len(set(values)) == 1:
                return Const(int(values[0]), shape)
            field = Signal(shape, name=name)
            self._rom_fields.setdefault(stage, []).append((field, [int(v) for v in values]))
            return field
        read = max(stage - 1, 0)
        word = select_word(self.m, [Const(int(v), shape) for v in values], self.stage(read).group,
                           shape, f"{name}_s{read}")
        return self.delay(word, stage - read, f"{name}_s{stage}")

    def rom_unsigned(self, values, name: str, stage: int):
        if len(set(values)) == 1:
            return Const(values[0], range(values[0] + 1))
        return self.lookup(values, range(max(values) + 1), name, stage)

    def read_address(self, stage: int):
        """The address for a synchronous memory read port (enabled by ``advance``) whose word
        must belong to the group at ``stage``: the group one stage earlier, or for stage 0 the
        group the issue register takes next."""
        return self.stage(stage - 1).group if stage >= 1 else self.next_group

    def finish(self):
        """Build what needs every product or every weight field first: the products (the
        ``dsp_products`` most expensive in logic as multipliers, the rest in logic), and with
        memory storage each stage's weight memory, one word per group holding every field read
        at that stage (so the fields share block RAM instead of each taking its own narrow
        one)."""
        layer = self.layer
        layer.product_costs, layer.products = drive_products(self.m, self._products,
                                                             layer.dsp_products)
        for stage, fields in sorted(self._rom_fields.items()):
            init = []
            for group in range(self.layer.groups):
                word, offset = 0, 0
                for field, values in fields:
                    word |= (values[group] & ((1 << len(field)) - 1)) << offset
                    offset += len(field)
                init.append(word)
            # block RAM even where a LUT ROM would be smaller: "memory" storage is asked for so
            # that the logic does not grow with P
            memory = Memory(shape=unsigned(offset), depth=self.layer.groups, init=init,
                            attrs={"rom_style": "block"})
            self.m.submodules[f"weights_s{stage}"] = memory
            layer.memories.append({"name": f"weights_s{stage}", "holds": "weights",
                                   "words": self.layer.groups, "word_bits": offset,
                                   "fields": [field.name for field, _ in fields]})
            port = memory.read_port()
            self.m.d.comb += [port.addr.eq(self.read_address(stage)), port.en.eq(self.advance)]
            offset = 0
            for field, _ in fields:
                self.m.d.comb += field.eq(port.data[offset:offset + len(field)])
                offset += len(field)

    def stage(self, s: int) -> _Token:
        """The token as seen by the logic fed from stage ``s``'s registers."""
        if s not in self._stages:
            self._stages[s] = _Token(self, s)
        return self._stages[s]


class _Lane:
    """One lane's view while elaborating: its states, its name prefix, and helpers bound to it."""

    def __init__(self, layer: SSMLayer, pipe: _Pipeline, index: int):
        self.layer, self.pipe, self.m, self.index = layer, pipe, pipe.m, index
        self.states = layer.states_of_lane(index)

    def name(self, what: str) -> str:
        return f"lane{self.index}_{what}"

    def wire(self, value, what: str):
        return wire(self.m, value, self.name(what))

    def delay(self, value, n: int, what: str):
        return self.pipe.delay(value, n, self.name(what))

    def product(self, a, b, registers: int, name: str, **record):
        return self.pipe.product(a, b, registers, self.name(name), **record)

    def rom(self, values, width: int, what: str, stage: int):
        """Per-group weight for the group at ``stage`` (:meth:`_Pipeline.lookup`)."""
        return self.pipe.lookup(values, signed(width), self.name(what), stage)

    def rom_unsigned(self, values, what: str, stage: int):
        return self.pipe.rom_unsigned(values, self.name(what), stage)

    def per_class(self, build, stage: int, what: str):
        """Evaluate ``build(state_frac)`` for each distinct state format among the lane's states
        and select by the group at ``stage`` (per-mode formats need a different shift per state)."""
        fracs = [int(self.layer.model.state_frac[p]) for p in self.states]
        classes = sorted(set(fracs))
        results = [build(frac) for frac in classes]
        if len(results) == 1:
            return results[0]
        index = self.rom_unsigned([classes.index(f) for f in fracs], f"{what}_class", stage)
        width = max(len(Value.cast(r)) for r in results)
        return select_word(self.m, results, index, signed(width), self.name(what))
