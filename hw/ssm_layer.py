"""One quantized diagonal SSM layer (S4D or S5) as an Amaranth component.

Computes exactly what ``golden/integer_model.py`` specifies, one timestep per input beat:

    x_p[k] = Q_state(ACC(Abar_p x_p[k-1] + sum_h Bbar_p,h u_h[k]))
    y_h[k] = Q_output(ACC(sum_p Re(C_h,p x_p[k]) + D_h u_h[k]))

Parallelism (``lanes``, like hls4ml's ReuseFactor or FINN's PE): the P states are split into
G = P / lanes groups; each clock cycle updates one group, ``lanes`` states at once, so a timestep
takes G cycles and the multipliers are shared G-fold. With lanes = P, G = 1: one timestep per
cycle. Weights are constants baked into the design (a small ROM per lane when G > 1).

Pipeline: an accepted beat is latched (cycle 0); cycles 1..G update the groups, each reading its
states and writing them back in the same cycle (so a state is revisited G cycles later, never
before its update lands); the output register is written at the end of the last group.
While the last group waits for the output register, the sweep stalls; a new beat is accepted in
the same cycle the last group completes, so G cycles per timestep are sustained.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.quantized import QuantizedSSM
from .fixed import apply_overflow, requantize

__all__ = ["SSMLayer", "input_layout", "output_layout"]


def input_layout(model: QuantizedSSM) -> data.StructLayout:
    """One input beat: the H samples of a timestep, and ``start`` (begin a new sequence: the
    previous state is taken as zero)."""
    width = model.config.quant.input.format.width
    return data.StructLayout({"data": data.ArrayLayout(signed(width), model.channels),
                              "start": 1})


def output_layout(model: QuantizedSSM) -> data.ArrayLayout:
    """One output beat: the H outputs of a timestep."""
    return data.ArrayLayout(signed(model.config.quant.output.format.width), model.channels)


class SSMLayer(wiring.Component):
    """Diagonal SSM layer datapath with stream interfaces.

    Ports
    -----
    u : In(stream.Signature(input_layout(model)))
        ``u.payload.data[h]``: signed(W_input); ``u.payload.start``: 1 bit.
    y : Out(stream.Signature(output_layout(model)))
        ``y.payload[h]``: signed(W_output).

    Properties
    ----------
    cycles_per_timestep : int   G = P / lanes (1 when lanes = P)
    latency : int               cycles from an accepted input beat to its output's valid = G + 1
    """

    def __init__(self, model: QuantizedSSM):
        self.model = model
        self.lanes = model.config.hardware.lanes
        self.groups = model.states // self.lanes
        super().__init__({"u": In(stream.Signature(input_layout(model))),
                          "y": Out(stream.Signature(output_layout(model)))})

    @property
    def cycles_per_timestep(self) -> int:
        return self.groups

    @property
    def latency(self) -> int:
        return self.groups + 1

    # --- helpers -------------------------------------------------------------------------------

    def _states_of_lane(self, lane: int) -> list[int]:
        return [group * self.lanes + lane for group in range(self.groups)]

    def _select(self, m, choices, index, shape, name):
        """``choices[index]`` as a named signal, built as a word select from the concatenated
        choices. Two reasons not to use ``Array``: Amaranth expands arithmetic on an Array
        element into one copy per element (every group would get its own multipliers), and the
        ``always @*`` case blocks it emits never evaluate at time 0 in Icarus when the index
        does not change, leaving constant ROM outputs at X."""
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

    @staticmethod
    def _wire(m, value, name):
        """Name a value through a signal. Amaranth does not share a Python expression used in
        several places, so every reuse of a large one (a product feeding the rounding logic,
        which reads its input several times) would copy it in the netlist."""
        value = Value.cast(value)
        wire = Signal(value.shape(), name=name)
        m.d.comb += wire.eq(value)
        return wire

    def _rom(self, m, values, width: int, group, name):
        """Per-group constant: a Const when there is one group, else a ROM indexed by group."""
        consts = [Const(int(v), signed(width)) for v in values]
        return self._select(m, consts, group, signed(width), name)

    def _per_class(self, m, lane: int, group, build, name):
        """Evaluate ``build(state_frac)`` for each distinct state format among the lane's states
        and select by group (per-mode formats need a different shift per state)."""
        fracs = [int(self.model.state_frac[p]) for p in self._states_of_lane(lane)]
        classes = sorted(set(fracs))
        results = [build(frac) for frac in classes]
        if len(results) == 1:
            return results[0]
        index = self._rom_unsigned(m, [classes.index(f) for f in fracs], group, f"{name}_class")
        width = max(len(Value.cast(r)) for r in results)
        return self._select(m, results, index, signed(width), name)

    def _rom_unsigned(self, m, values, group, name):
        shape = range(max(values) + 1)
        return self._select(m, [Const(v, shape) for v in values], group, shape, name)

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
        ctl = self._control(m)
        wx = self.model.config.quant.state.format.width
        x_re = [Signal(signed(wx), name=f"x{p}_re") for p in range(self.model.states)]
        x_im = [Signal(signed(wx), name=f"x{p}_im") for p in range(self.model.states)]
        contributions = [[] for _ in range(self.model.channels)]   # per output: one term per lane
        for lane in range(self.lanes):
            lane_ctx = _Lane(self, m, lane, ctl)
            x_new = self._state_update(lane_ctx, x_re, x_im)
            for h, term in self._output_terms(lane_ctx, x_new):
                contributions[h].append(term)
        self._output(m, ctl, contributions)
        return m

    def _control(self, m) -> "_Control":
        """Input latch, group counter and the step condition (see the module docstring)."""
        q, G = self.model.config.quant, self.groups
        u_data = Signal(data.ArrayLayout(signed(q.input.format.width), self.model.channels))
        start = Signal()
        busy = Signal()
        group = Signal(range(G)) if G > 1 else Const(0, 1)
        last = (group == G - 1) if G > 1 else Const(1, 1)
        out_free = ~self.y.valid | self.y.ready
        step = busy & (~last | out_free)
        m.d.comb += self.u.ready.eq(~busy | (last & step))
        with m.If(self.u.valid & self.u.ready):
            m.d.sync += [u_data.eq(self.u.payload.data), start.eq(self.u.payload.start),
                         busy.eq(1)]
        with m.Elif(step & last):
            m.d.sync += busy.eq(0)
        if G > 1:
            with m.If(step):
                m.d.sync += group.eq(Mux(last, 0, group + 1))
        u = [u_data[h] for h in range(self.model.channels)]
        return _Control(u=u, start=start, group=group, last=last, step=step)

    def _state_update(self, lane: "_Lane", x_re, x_im):
        """x_p = Q_state(ACC(Abar_p x_p + sum_h Bbar_p,h u_h)) for the lane's current state;
        writes it back on ``step`` and returns it (re, im)."""
        m, model, q, ctl = lane.m, self.model, self.model.config.quant, lane.ctl
        states, plan = lane.states, model.state_acc
        wx, wa, wb = q.state.format.width, q.abar.format.width, q.bbar.format.width
        fa, fb, fu = q.abar.format.frac, q.bbar.format.frac, q.input.format.frac

        # Previous state (zero at the start of a sequence).
        xr, xi = (lane.wire(Mux(ctl.start, 0, self._select(m, [x[p] for p in states], ctl.group,
                                                             signed(wx), lane.name(f"x_stored_{part}"))),
                            f"x_prev_{part}")
                  for x, part in ((x_re, "re"), (x_im, "im")))

        # Abar * x, exact; 3 real multipliers (Gauss) or 4.
        ar = lane.rom(model.abar_re[states], wa, "abar_re")
        ai = lane.rom(model.abar_im[states], wa, "abar_im")
        if model.config.hardware.complex_multipliers == 3:
            a_sum = lane.rom(model.abar_re[states] + model.abar_im[states], wa + 1, "abar_sum")
            a_dif = lane.rom(model.abar_im[states] - model.abar_re[states], wa + 1, "abar_dif")
            k1 = lane.wire(ar * (xr + xi), "k1")
            ax = (lane.wire(k1 - xi * a_sum, "ax_re"), lane.wire(k1 + xr * a_dif, "ax_im"))
        else:
            ax = (lane.wire(ar * xr - ai * xi, "ax_re"), lane.wire(ar * xi + ai * xr, "ax_im"))

        # Bbar * u (complex x real): one term per input channel feeding the state.
        if model.kind == "s4d":
            u_sel = self._lane_input(lane)
            b_terms = [(lane.rom(model.bbar_re[states], wb, "bbar_re") * u_sel,
                        lane.rom(model.bbar_im[states], wb, "bbar_im") * u_sel)]
        else:
            b_terms = [(lane.rom(model.bbar_re[states, h], wb, f"bbar{h}_re") * ctl.u[h],
                        lane.rom(model.bbar_im[states, h], wb, f"bbar{h}_im") * ctl.u[h])
                       for h in range(model.channels)]

        x_new = []
        for index, part in enumerate(("re", "im")):
            bu = lane.wire(sum(self._acc_term(plan, lane.wire(t[index], f"bu_term_{part}"), fb + fu)
                               for t in b_terms), f"bu_{part}")

            def build(fx, index=index, part=part, bu=bu):
                total = lane.wire(self._acc_term(plan, ax[index], fa + fx) + bu, f"acc_{part}")
                acc = lane.wire(self._acc_result(plan, total), f"acc_result_{part}")
                return requantize(acc, plan.frac, q.state, to_frac=fx)
            x = Signal(signed(wx), name=lane.name(f"x_new_{part}"))
            m.d.comb += x.eq(self._per_class(m, lane.index, ctl.group, build, lane.name(f"xq_{part}")))
            x_new.append(x)

        stored = (x_re, x_im)
        with m.If(ctl.step):
            for g, p in enumerate(states):
                with m.If(ctl.group == g):
                    m.d.sync += [stored[0][p].eq(x_new[0]), stored[1][p].eq(x_new[1])]
        return x_new

    def _lane_input(self, lane: "_Lane"):
        """s4d: the input channel of the lane's current state."""
        channels = [int(self.model.channel[p]) for p in lane.states]
        if len(set(channels)) == 1:
            return lane.ctl.u[channels[0]]
        index = self._rom_unsigned(lane.m, channels, lane.ctl.group, lane.name("channel"))
        width = self.model.config.quant.input.format.width
        return self._select(lane.m, lane.ctl.u, index, signed(width), lane.name("u"))

    def _output_terms(self, lane: "_Lane", x_new):
        """Terms Re(C_h,p x_p) of the lane's current state, as (output channel, term) pairs,
        already aligned/requantized into the output accumulator."""
        model, q, states = self.model, self.model.config.quant, lane.states
        wc, fc, plan = q.c.format.width, q.c.format.frac, model.output_acc
        xn_re, xn_im = x_new

        def c_term(c_re_vals, c_im_vals, what):
            product = lane.wire(lane.rom(c_re_vals, wc, f"{what}_re") * xn_re
                                - lane.rom(c_im_vals, wc, f"{what}_im") * xn_im, f"{what}_x")
            return self._per_class(lane.m, lane.index, lane.ctl.group,
                                   lambda fx: self._acc_term(plan, product, fc + fx),
                                   lane.name(f"{what}_term"))

        if model.kind == "s5":
            return [(h, c_term(model.c_re[h, states], model.c_im[h, states], f"c{h}"))
                    for h in range(model.channels)]
        term = c_term(model.c_re[states], model.c_im[states], "c")
        channels = [int(model.channel[p]) for p in states]
        if len(set(channels)) == 1:
            return [(channels[0], term)]
        # The lane's states belong to several channels: gate the term per channel.
        return [(h, Mux(self._rom_unsigned(lane.m, [int(c == h) for c in channels], lane.ctl.group,
                                           lane.name(f"feeds_y{h}")), term, 0))
                for h in sorted(set(channels))]

    def _output(self, m, ctl: "_Control", contributions):
        """Sum the lanes' terms across groups (D u seeds the sum at group 0), then
        y_h = Q_output(ACC(...)) into the output register at the end of the last group."""
        model, q, plan = self.model, self.model.config.quant, self.model.output_acc
        fd, fu, wd = q.d.format.frac, q.input.format.frac, q.d.format.width
        y_next = Signal(output_layout(model))
        for h in range(model.channels):
            d_term = self._acc_term(plan, Const(int(model.d[h]), signed(wd)) * ctl.u[h], fd + fu)
            if self.groups == 1:
                running = d_term + sum(contributions[h])
            else:
                partial = Signal(signed(plan.sum_bits), name=f"y{h}_partial")
                running = Mux(ctl.group == 0, d_term, partial) + sum(contributions[h])
                with m.If(ctl.step):
                    m.d.sync += partial.eq(running)
            running = self._wire(m, running, f"y{h}_running")
            acc = self._wire(m, self._acc_result(plan, running), f"y{h}_sum")
            m.d.comb += y_next[h].eq(requantize(acc, plan.frac, q.output))

        with m.If(ctl.step & ctl.last):
            m.d.sync += [self.y.payload.eq(y_next), self.y.valid.eq(1)]
        with m.Elif(self.y.ready):
            m.d.sync += self.y.valid.eq(0)


@dataclass(frozen=True)
class _Control:
    u: list            #: latched input samples, signed(W_input) each
    start: Value       #: the latched beat starts a new sequence
    group: Value       #: group being updated this cycle
    last: Value        #: it is the last group of the timestep
    step: Value        #: the sweep advances this cycle


class _Lane:
    """One lane's view while elaborating: its states, its name prefix, and helpers bound to it."""

    def __init__(self, layer: SSMLayer, m: Module, index: int, ctl: _Control):
        self.layer, self.m, self.index, self.ctl = layer, m, index, ctl
        self.states = layer._states_of_lane(index)

    def name(self, what: str) -> str:
        return f"lane{self.index}_{what}"

    def wire(self, value, what: str):
        return self.layer._wire(self.m, value, self.name(what))

    def rom(self, values, width: int, what: str):
        return self.layer._rom(self.m, values, width, self.ctl.group, self.name(what))
