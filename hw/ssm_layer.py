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
        model, q = self.model, self.model.config.quant
        H, L, G = model.channels, self.lanes, self.groups
        wx = q.state.format.width
        fa, fb, fc, fd, fu = (q.abar.format.frac, q.bbar.format.frac, q.c.format.frac,
                              q.d.format.frac, q.input.format.frac)
        wa, wb, wc, wd = (q.abar.format.width, q.bbar.format.width, q.c.format.width,
                          q.d.format.width)

        # Control: latched input beat, group counter, output register.
        u_data = Signal(data.ArrayLayout(signed(q.input.format.width), H))
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
        u = [u_data[h] for h in range(H)]

        x_re = [Signal(signed(wx), name=f"x{p}_re") for p in range(model.states)]
        x_im = [Signal(signed(wx), name=f"x{p}_im") for p in range(model.states)]
        state_plan, out_plan = model.state_acc, model.output_acc

        contributions = [[] for _ in range(H)]   # per output channel: terms from each lane
        for lane in range(L):
            states = self._states_of_lane(lane)

            def rom(values, width, what):
                return self._rom(m, values, width, group, f"lane{lane}_{what}")

            # Previous state (zero at the start of a sequence).
            xr = self._wire(m, Mux(start, 0, self._select(m, [x_re[p] for p in states], group,
                                                          signed(wx), f"lane{lane}_xprev_re")),
                            f"lane{lane}_x_re")
            xi = self._wire(m, Mux(start, 0, self._select(m, [x_im[p] for p in states], group,
                                                          signed(wx), f"lane{lane}_xprev_im")),
                            f"lane{lane}_x_im")

            # Abar * x, exact; 3 real multipliers (Gauss) or 4.
            ar = rom(model.abar_re[states], wa, "abar_re")
            ai = rom(model.abar_im[states], wa, "abar_im")
            if model.config.hardware.complex_multipliers == 3:
                a_sum = rom(model.abar_re[states] + model.abar_im[states], wa + 1, "abar_sum")
                a_dif = rom(model.abar_im[states] - model.abar_re[states], wa + 1, "abar_dif")
                k1 = self._wire(m, ar * (xr + xi), f"lane{lane}_k1")
                ax_re = k1 - xi * a_sum
                ax_im = k1 + xr * a_dif
            else:
                ax_re = ar * xr - ai * xi
                ax_im = ar * xi + ai * xr
            ax_re = self._wire(m, ax_re, f"lane{lane}_ax_re")
            ax_im = self._wire(m, ax_im, f"lane{lane}_ax_im")

            # Bbar * u terms (complex x real), each a term of the state accumulator.
            if model.kind == "s4d":
                channel_rom = [int(model.channel[p]) for p in states]
                if len(set(channel_rom)) == 1:
                    u_sel = u[channel_rom[0]]
                else:
                    index = self._rom_unsigned(m, channel_rom, group, f"lane{lane}_channel")
                    u_sel = self._select(m, u, index, signed(q.input.format.width), f"lane{lane}_u")
                b_terms = [(rom(model.bbar_re[states], wb, "bbar_re") * u_sel,
                            rom(model.bbar_im[states], wb, "bbar_im") * u_sel)]
            else:
                b_terms = [(rom(model.bbar_re[states, h], wb, f"bbar{h}_re") * u[h],
                            rom(model.bbar_im[states, h], wb, f"bbar{h}_im") * u[h]) for h in range(H)]
            bu = [self._wire(m, sum(self._acc_term(state_plan, self._wire(m, t[part], f"lane{lane}_bu_term"),
                                                       fb + fu) for t in b_terms),
                             f"lane{lane}_bu_{name}")
                  for part, name in ((0, "re"), (1, "im"))]

            def new_state(ax, bu_part, part):
                def build(fx):
                    total = self._wire(m, self._acc_term(state_plan, ax, fa + fx) + bu_part,
                                       f"lane{lane}_acc_{part}")
                    acc = self._wire(m, self._acc_result(state_plan, total), f"lane{lane}_sum_{part}")
                    return requantize(acc, state_plan.frac, q.state, to_frac=fx)
                return self._per_class(m, lane, group, build, f"lane{lane}_xq_{part}")

            xn_re = Signal(signed(wx), name=f"lane{lane}_x_re")
            xn_im = Signal(signed(wx), name=f"lane{lane}_x_im")
            m.d.comb += [xn_re.eq(new_state(ax_re, bu[0], "re")),
                         xn_im.eq(new_state(ax_im, bu[1], "im"))]
            with m.If(step):
                if G == 1:
                    m.d.sync += [x_re[states[0]].eq(xn_re), x_im[states[0]].eq(xn_im)]
                else:
                    for g, p in enumerate(states):
                        with m.If(group == g):
                            m.d.sync += [x_re[p].eq(xn_re), x_im[p].eq(xn_im)]

            # Output terms Re(C x_new) for the channels this lane's states feed.
            def c_term(c_re_vals, c_im_vals, what):
                product = self._wire(m, rom(c_re_vals, wc, f"{what}_re") * xn_re
                                     - rom(c_im_vals, wc, f"{what}_im") * xn_im,
                                     f"lane{lane}_{what}_x")
                return self._per_class(m, lane, group,
                                       lambda fx: self._acc_term(out_plan, product, fc + fx),
                                       f"lane{lane}_{what}_term")
            if model.kind == "s4d":
                term = c_term(model.c_re[states], model.c_im[states], "c")
                channel_rom = [int(model.channel[p]) for p in states]
                for h in sorted(set(channel_rom)):
                    if len(set(channel_rom)) == 1:
                        contributions[h].append(term)
                    else:
                        mine = self._rom_unsigned(m, [int(c == h) for c in channel_rom], group,
                                                  f"lane{lane}_feeds_y{h}")
                        contributions[h].append(Mux(mine, term, 0))
            else:
                for h in range(H):
                    contributions[h].append(c_term(model.c_re[h, states], model.c_im[h, states], f"c{h}"))

        # Output accumulation across groups; the D u term seeds the sum at group 0.
        y_next = Signal(output_layout(model))
        for h in range(H):
            d_term = self._acc_term(out_plan, Const(int(model.d[h]), signed(wd)) * u[h], fd + fu)
            if G == 1:
                running = d_term + sum(contributions[h])
            else:
                partial = Signal(signed(out_plan.sum_bits), name=f"y{h}_partial")
                running = Mux(group == 0, d_term, partial) + sum(contributions[h])
                with m.If(step):
                    m.d.sync += partial.eq(running)
            running = self._wire(m, running, f"y{h}_running")
            acc = self._wire(m, self._acc_result(out_plan, running), f"y{h}_sum")
            m.d.comb += y_next[h].eq(requantize(acc, out_plan.frac, q.output))

        with m.If(step & last):
            m.d.sync += [self.y.payload.eq(y_next), self.y.valid.eq(1)]
        with m.Elif(self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        return m
