# amaranth: UnusedElaboratable=no
"""A linear layer folded in time: ``y[o] = Q(sum_j w[o,j] x[j] + b[o] (+ r[o]))`` with constant
integer weights, ``K`` products per output per cycle instead of all ``H_in`` at once.

Why. The network's linear layers (encoder, mixing, decoder) see one vector every G cycles (G =
the SSM layers' cycles per timestep; the decoder one vector per sequence), but a fully parallel
layer spends ``H_in * H_out`` multipliers on it: the default sDigits mixing alone would need
32 x 32 DSP blocks per layer. Folding the sum over ``F = ceil(H_in / K)`` cycles, with
``K = ceil(H_in / cycles)`` inputs per cycle, needs ``K * H_out`` multipliers and takes one vector
every F <= cycles cycles, so the network's throughput is unchanged. With ``cycles == 1`` (K =
H_in, F = 1) every weight is a constant again and the unit is the fully parallel layer, one
vector per cycle, only pipelined.

Arithmetic. Exactly the golden ``_linear``: each product ``w[o,j] x[j]`` is exact
(signed(W_w + W_x)), aligned to the accumulator's ``plan.frac`` fraction bits by a left shift,
and summed with the aligned bias (and residual) in ``plan.sum_bits`` bits, the derived width
that holds the exact sum. Exact integer sums do not depend on their order, and two's-complement
addition is exact modulo ``2**sum_bits``, so the folded sum equals the golden one bit for bit.
The sum is then either passed out whole or moved into ``quantizer``'s format by
:func:`ssmgen.hw.datapath.fixed.requantize`, as the golden model does.

Schedule (stages advance together; ``x`` padded with zeros to ``K * F`` elements)::

    accept    latch x, r, side; chunk counter k = 0          (input register, one vector)
    issue k   x[kK .. kK+K-1] (a select shared by every output) and the weights w[o, kK + i]
              (a ROM of F words per output and lane), both selected by k
    operands  (F > 1 only) those selects registered, so each multiplier starts from registers
    products  p[o][i] = w[o, kK + i] * x[kK + i]              -> product registers
              (k = 0: also base[o] = b[o] + r[o], aligned)    -> base register
    acc       acc[o] = (k == 0 ? base[o] : acc[o]) + sum_i p[o][i]   (a balanced adder tree)
    output    after chunk F - 1: o.payload = Q(acc[o])       (output register)

So ``latency = F + 3`` cycles (``F + 4`` with the operand registers, F > 1) from an accepted
input beat to its output's valid, and a new beat is accepted every F cycles (while the last
chunk of the previous one issues), or every ``interval`` cycles when given (the counter then
runs on past the last chunk, issuing nothing): a unit at a paced input (the network's encoder)
takes beats exactly as fast as the stream after it, so beats do not queue inside it and its
latency stays fixed. With F = 1 every weight is a constant and the input latch feeds the
multipliers directly: no select, no operand stage.

Flow control. Valid/ready on both sides. The pipeline holds only when a finished sum reaches
the output register while that still holds an unread beat (``o.valid & ~o.ready``); holding
freezes every stage, so no beat is lost or duplicated. ``i.ready`` depends combinationally on
``o.ready`` (through that hold): put a register slice after the unit where a ready chain must be
cut.

DSP blocks: at most ``dsp_products`` products are multipliers (those that would cost the most
logic), the rest adders (``multiply.py``). A network elaborates each unit once without a budget
to rank the products of the whole design; the first line silences Amaranth's warning about that
dry run's unused modules.
"""

from __future__ import annotations

import operator

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.formats import Quantizer
from .fixed import requantize
from .multiply import drive_products
from .signals import wire
from .ssm_layer import Product

__all__ = ["FoldedLinear", "check_linear", "signed_width"]


def check_linear(weights, bias, *, in_width, in_frac, w_frac, b_frac, frac, sum_bits, residual,
                 quantizer, side_width):
    """Validate a linear unit's arguments (as FoldedLinear and SerialLinear take them); returns
    the weights and bias as int64 arrays and the alignment shift of each term of the sum
    (``weight``, ``bias``, and ``residual`` when given)."""
    weights, bias = np.asarray(weights), np.asarray(bias)
    if weights.ndim != 2 or not np.issubdtype(weights.dtype, np.integer):
        raise TypeError(f"Weights must be a 2-D integer array, not {weights.dtype} "
                        f"{weights.shape}")
    out_count, in_count = weights.shape
    if out_count < 1 or in_count < 1:
        raise ValueError(f"Weights must have at least one row and column, not shape "
                         f"{weights.shape}")
    if bias.shape != (out_count,) or not np.issubdtype(bias.dtype, np.integer):
        raise ValueError(f"Bias must be {out_count} integers, not {bias.dtype} {bias.shape}")
    in_width, sum_bits, side_width = (operator.index(v) for v in (in_width, sum_bits, side_width))
    if in_width < 1 or sum_bits < 1 or side_width < 0:
        raise ValueError(f"Widths must be positive (side: non-negative), not in_width "
                         f"{in_width}, sum_bits {sum_bits}, side_width {side_width}")
    if quantizer is not None and not isinstance(quantizer, Quantizer):
        raise TypeError(f"Quantizer must be a Quantizer or None, not {quantizer!r}")
    shifts = {"weight": frac - w_frac - in_frac, "bias": frac - b_frac}
    if residual is not None:
        shifts["residual"] = frac - operator.index(residual[1])
    for name, shift in shifts.items():
        if shift < 0:
            raise ValueError(f"The accumulator's {frac} fraction bits must cover the "
                             f"{name} term's ({shift} too few)")
    return weights.astype(np.int64), bias.astype(np.int64), shifts


def signed_width(values) -> int:
    """Signed bits that hold every integer in ``values`` (at least 1)."""
    return max([1] + [Const.cast(int(v)).shape().width + (0 if int(v) < 0 else 1)
                      for v in values])


class FoldedLinear(wiring.Component):
    """``y[o] = Q(sum_j w[o,j] x[j] + b[o] (+ r[o]))`` over ``F`` cycles, ``K`` MACs per output.

    Parameters
    ----------
    weights : int array (H_out, H_in)    constant integer weights, ``w_frac`` fraction bits
    bias : int array (H_out,)            constant integer bias, ``b_frac`` fraction bits
    in_width, in_frac                    each input element: signed(in_width), in_frac frac bits
    frac, sum_bits                       the accumulator: fraction bits and exact-sum width
                                         (``AccumulatorPlan.frac`` / ``.sum_bits``)
    cycles : int                         cycles available per vector (>= 1): F <= cycles
    interval : int or None               accept at most one beat every ``interval`` cycles
                                         (>= F; None: F). A source that must be paced (the
                                         network input, one timestep per G cycles) gets G.
    residual : (width, frac) or None     an extra per-output term r[o], signed(width)
    quantizer : Quantizer or None        output format (None: the exact sum, signed(sum_bits))
    side_width : int                     bits carried unchanged from input to output beat

    Ports
    -----
    i : In(stream.Signature(StructLayout))
        ``i.payload.x[j]``: signed(in_width), j < H_in; ``i.payload.r[o]``: signed(residual
        width), o < H_out (only with ``residual``); ``i.payload.side``: unsigned(side_width).
    o : Out(stream.Signature(StructLayout))
        ``o.payload.y[o]``: signed(quantizer width or sum_bits); ``o.payload.side``.

    Properties
    ----------
    lanes : int            K = ceil(H_in / cycles), products per output per cycle
    fold : int             F = ceil(H_in / K), cycles per vector
    interval : int         cycles between accepted beats at full rate (F unless given)
    multipliers : int      K * H_out, less the (output, lane) pairs whose weights are all zero
    operand_stage : bool   F > 1: the multiplier operands are registered after their selects
    latency : int          F + 3 + operand_stage: cycles from an accepted input beat to its
                           output's valid
    products : list        every multiplication of the last elaboration
                           (:class:`~ssmgen.hw.datapath.ssm_layer.Product`), for the resource
                           estimate (``synth/estimate.py``)
    """

    def __init__(self, weights, bias, *, in_width, in_frac, w_frac, b_frac, frac, sum_bits,
                 cycles, interval=None, residual=None, quantizer=None, side_width=0,
                 dsp_products=None):
        weights, bias, shifts = check_linear(weights, bias, in_width=in_width, in_frac=in_frac,
                                             w_frac=w_frac, b_frac=b_frac, frac=frac,
                                             sum_bits=sum_bits, residual=residual,
                                             quantizer=quantizer, side_width=side_width)
        out_count, in_count = weights.shape
        cycles = operator.index(cycles)
        if cycles < 1:
            raise ValueError(f"Cycles must be a positive integer, not {cycles}")
        in_width, sum_bits, side_width = (operator.index(v) for v in (in_width, sum_bits,
                                                                      side_width))
        if residual is not None:
            res_width, res_frac = (operator.index(v) for v in residual)
        self.weights, self.bias = weights, bias
        self.in_width, self.in_frac, self.frac, self.sum_bits = in_width, in_frac, frac, sum_bits
        self.shifts = shifts
        self.residual = None if residual is None else (res_width, res_frac)
        self.quantizer = quantizer
        self.side_width = side_width
        self.lanes = -(-in_count // cycles)
        self.fold = -(-in_count // self.lanes)
        interval = self.fold if interval is None else operator.index(interval)
        if interval < self.fold:
            raise ValueError(f"Interval must be at least the fold {self.fold} (cycles per "
                             f"vector), not {interval}")
        self.interval = interval
        self.w_width = signed_width(self.weights.ravel())
        #: Every multiplier of the last elaboration (:class:`Product`): per (output, lane)
        #: the weights it takes, one per chunk (a ROM) or one (a constant), times the lane's
        #: input; for the resource estimate.
        self.products: list[Product] = []
        #: at most this many products are multipliers (DSP blocks), the rest logic
        #: (``multiply.py``); None: all
        self.dsp_products = dsp_products
        #: logic cost of every product of the last elaboration, DSP or not
        self.product_costs: list[int] = []
        out_width = sum_bits if quantizer is None else quantizer.format.width
        in_fields = {"x": data.ArrayLayout(signed(in_width), in_count), "side": side_width}
        if residual is not None:
            in_fields["r"] = data.ArrayLayout(signed(res_width), out_count)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(in_fields))),
            "o": Out(stream.Signature(data.StructLayout({
                "y": data.ArrayLayout(signed(out_width), out_count), "side": side_width})))})

    @property
    def operand_stage(self) -> bool:
        """Whether the multiplier operands are registered (F > 1: they come through selects)."""
        return self.fold > 1

    @property
    def latency(self) -> int:
        return self.fold + 3 + self.operand_stage

    @property
    def hold(self) -> int:
        """Cycles an offered beat waits before it is accepted by an idle unit: none (it is
        latched; ``serial_linear.SerialLinear`` may read in place instead)."""
        return 0

    def _column(self, o: int, lane: int) -> list[int]:
        """The weights lane ``lane`` of output ``o`` multiplies, one per chunk (0 past H_in)."""
        in_count = self.weights.shape[1]
        return [int(self.weights[o, j]) if (j := k * self.lanes + lane) < in_count else 0
                for k in range(self.fold)]

    @property
    def multipliers(self) -> int:
        return sum(any(self._column(o, lane)) for o in range(self.weights.shape[0])
                   for lane in range(self.lanes))

    def elaborate(self, platform):
        m = Module()
        self.products = []
        out_count, in_count = self.weights.shape
        K, F, N = self.lanes, self.fold, self.interval
        wx, ww = self.in_width, self.w_width

        advance = Signal()
        done = Signal()                 # stage "acc" holds a finished sum
        m.d.comb += advance.eq(~(done & self.o.valid & ~self.o.ready))

        # Accept: the input register and the chunk counter.
        x = Signal(wx * K * F)          # zero-padded to K * F elements
        side = Signal(self.side_width)
        res = [Signal(signed(self.residual[0]), name=f"r{o}") for o in range(out_count)] \
            if self.residual is not None else []
        busy = Signal()
        # The chunk counter runs over the interval; chunks F .. N - 1 issue nothing.
        k = Signal(range(N), name="chunk") if N > 1 else Const(0, 1)
        issue = Signal()                # a chunk of the latched vector is issued this cycle
        final = Signal()                # ... and it is the vector's last one
        m.d.comb += [issue.eq(busy & ((k < F) if N > F else 1)), final.eq(k == F - 1)]
        free = Signal()                 # the latch is free for the next beat after this cycle
        m.d.comb += free.eq(k == N - 1)
        m.d.comb += self.i.ready.eq(advance & (~busy | free))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [x.eq(self.i.payload.x.as_value()), side.eq(self.i.payload.side),
                         busy.eq(1)]
            m.d.sync += [r.eq(v) for r, v in zip(res, self.i.payload.r)] if res else []
            if N > 1:
                m.d.sync += k.eq(0)
        with m.Elif(advance & busy):
            if N > 1:
                m.d.sync += k.eq(Mux(free, 0, k + 1))
            with m.If(free):
                m.d.sync += busy.eq(0)

        # Issue: the chunk's inputs (shared by every output) and each output's weight ROM.
        index = k[:max(1, (F - 1).bit_length())]
        chunk = []
        for i in range(K):
            words = Cat(*(x[(kk * K + i) * wx:][:wx] for kk in range(F)))
            chunk.append(wire(m, words.word_select(index, wx) if F > 1 else words,
                                    f"x_lane{i}", signed(wx)))
        weights = {}                    # (output, lane) -> weight; all-zero columns omitted
        for o in range(out_count):
            for i in range(K):
                column = self._column(o, i)
                if not any(column):
                    continue
                if F == 1 or len(set(column)) == 1:
                    weights[o, i] = Const(column[0], signed(ww))
                else:
                    rom = Cat(*(Const(c, signed(ww)) for c in column))
                    weights[o, i] = wire(m, rom.word_select(index, ww), f"w{o}_{i}",
                                               signed(ww))
        flags = dict(valid=issue, first=k == 0, last=final)
        if self.operand_stage:
            # Operands: the selects (a counter-driven mux, a ROM) get their own cycle, so the
            # multipliers start from registers.
            staged = {name: Signal(name=f"a_{name}") for name in flags}
            a_side = Signal(self.side_width, name="a_side")
            a_res = [Signal(signed(self.residual[0]), name=f"a_r{o}") for o in range(len(res))]
            a_chunk = [Signal(signed(wx), name=f"a_x_lane{i}") for i in range(K)]
            a_weights = {key: w if isinstance(w, Const) else Signal(signed(ww), name=f"a_{w.name}")
                         for key, w in weights.items()}
            with m.If(advance):
                m.d.sync += [staged[name].eq(v) for name, v in flags.items()]
                m.d.sync += [a_side.eq(side), *(a.eq(c) for a, c in zip(a_chunk, chunk))]
                m.d.sync += [a_weights[key].eq(w) for key, w in weights.items()
                             if not isinstance(w, Const)]
                with m.If(busy & (k == 0)):
                    m.d.sync += [a.eq(r) for a, r in zip(a_res, res)]
            flags, side, res, chunk, weights = staged, a_side, a_res, a_chunk, a_weights

        # Products (registered), and the bias plus residual aligned at the vector's first chunk.
        p_valid, p_first, p_last = Signal(), Signal(), Signal()
        p_side = Signal(self.side_width)
        products = [[] for _ in range(out_count)]   # per output: its product registers
        pending = []                                # (value, Product) of every product
        for (o, i), weight in weights.items():
            product = Signal(signed(wx + ww), name=f"p{o}_{i}")
            value = Signal(signed(wx + ww), name=f"w{o}_{i}_x")
            with m.If(advance):
                m.d.sync += product.eq(value)
            products[o].append(product)
            # recorded as the layer's products are: the weights per chunk (or the constant),
            # their declared width, and the lane's input, shared by every output
            column = self._column(o, i)
            pending.append((value, Product(
                weight, chunk[i], product,
                (column[0],) if isinstance(weight, Const) else tuple(column), ww, wx,
                ("x_lane", i), "w*x")))
        # the dsp_products most expensive in logic are multipliers, the rest logic
        self.product_costs, self.products = drive_products(m, pending, self.dsp_products)
        base = [Signal(signed(self.sum_bits), name=f"base{o}") for o in range(out_count)]
        with m.If(advance):
            m.d.sync += [p_valid.eq(flags["valid"]), p_first.eq(flags["first"]),
                         p_last.eq(flags["last"]), p_side.eq(side)]
            with m.If(flags["valid"] & flags["first"]):
                for o in range(out_count):
                    term = Const(int(self.bias[o]) << self.shifts["bias"])
                    if res:
                        term = term + (res[o] << self.shifts["residual"])
                    m.d.sync += base[o].eq(term)

        # Accumulate: exact, in sum_bits (two's complement: exact modulo 2**sum_bits, and the
        # final sum fits).
        acc = [Signal(signed(self.sum_bits), name=f"acc{o}") for o in range(out_count)]
        acc_side = Signal(self.side_width)
        with m.If(advance):
            m.d.sync += done.eq(p_valid & p_last)
            with m.If(p_valid):
                m.d.sync += acc_side.eq(p_side)
                for o in range(out_count):
                    # The K products of a chunk as a balanced adder tree, then one add into
                    # the accumulator (or onto the base at the vector's first chunk).
                    terms = [p << self.shifts["weight"] for p in products[o]]
                    while len(terms) > 1:
                        terms = [terms[n] + terms[n + 1] if n + 1 < len(terms) else terms[n]
                                 for n in range(0, len(terms), 2)]
                    total = Mux(p_first, base[o], acc[o])
                    m.d.sync += acc[o].eq(total + terms[0] if terms else total)

        # Output register.
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance & done):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.side.eq(acc_side)]
            for o in range(out_count):
                value = acc[o] if self.quantizer is None else requantize(acc[o], self.frac,
                                                                         self.quantizer)
                m.d.sync += self.o.payload.y[o].eq(value)
        return m
