# amaranth: UnusedElaboratable=no
"""A linear layer computed one output after another: ``y[o] = Q(sum_j w[o,j] x[j] + b[o]
(+ r[o]))`` with ``K`` multipliers in all, its weights in block RAM.

Why. :class:`~ssmgen.hw.datapath.folded_linear.FoldedLinear` folds only the sum over the inputs,
so it keeps at least one multiplier, one weight ROM, one accumulator and one rounding per
output: H_out of each, whatever the time it is given. A folded network (one timestep every G
cycles, G = P / lanes, e.g. 128) has time for H_out x H_in products with very few multipliers:
this unit spends ``F = ceil(H_in / K)`` cycles on each output and ``H_out * F`` on a vector, with
``K = ceil(H_in / floor(cycles / H_out))``, so that its cost follows K, not H_out x H_in: one
accumulator, one rounding, one weight memory (``H_out * F`` words of K weights), and the output
register's H_out words, filled one output at a time.

Arithmetic. Exactly the golden ``_linear``, as FoldedLinear: exact products aligned to
``frac`` fraction bits, summed with the aligned bias (and residual) in ``sum_bits`` bits, then
passed out whole or requantized (``fixed.requantize``).

Schedule (stages advance together; a word n = o * F + k of the weight memory holds
w[o, kK .. kK+K-1], zero past H_in)::

    accept    latch x, r, side; counter n = 0
    issue n   o = n // F, k = n % F: the weight memory's address is n; x's chunk k selected;
              r[o] selected (the latch may take the next beat while the vector's last chunk
              issues, so nothing after issue reads the latch)
    operands  the weight word (the memory's read register), the chunk, r[o] and b[o] registered
    products  p[i] = w[n, i] * x[kK + i]; base = b[o] + r[o] aligned   -> registers
    acc       acc = (k == 0 ? base : acc) + sum_i p[i]
    output    after an output's last chunk: Q(acc) into the output register's word o; after
              output H_out - 1 the register is valid

So ``latency = H_out * F + 4`` cycles from an accepted beat to its output's valid, and a beat is
accepted every ``H_out * F`` cycles (``interval`` when given, the counter then runs on issuing
nothing).

Reading in place (``latch=False``): no input latch at all. The unit reads x, r and side straight
from the input payload (a stream's payload holds while valid and not ready) and accepts the beat
in the cycle its last word issues: ``hold = H_out * F - 1`` cycles after the beat was offered,
then ``latency = 4``. That saves H_in + H_out words of flip-flops where the producer keeps its
output in a register anyway (an SSM layer's output register, the pooled features).

Flow control: a completed output waits while the output register still holds an untaken vector
(``o.valid & ~o.ready``): that stops the pipeline, every stage at once. A consumer that takes a
vector within H_out * F cycles of its valid never stops it.

DSP blocks: at most ``dsp_products`` of the K products are multipliers (``multiply.py``); the
first line silences Amaranth's warning about the unused modules of a network's dry elaboration
(see ``network.py``).
"""

from __future__ import annotations

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .fixed import requantize
from .folded_linear import check_linear, signed_width
from .multiply import drive_products
from .signals import select_word, wire
from .ssm_layer import Product

__all__ = ["SerialLinear"]


class SerialLinear(wiring.Component):
    """``y[o] = Q(sum_j w[o,j] x[j] + b[o] (+ r[o]))``, one output every F cycles, K MACs.

    Parameters and ports as :class:`~ssmgen.hw.datapath.folded_linear.FoldedLinear` (``cycles``:
    the cycles available per vector, at least H_out).

    Properties
    ----------
    lanes : int            K, products per cycle
    fold : int             H_out * F, cycles per vector
    interval : int         cycles between accepted beats at full rate (fold unless given)
    multipliers : int      K
    latency : int          cycles from an accepted beat to its output's valid: fold + 4, or
                           4 reading in place
    hold : int             cycles a beat offered to an idle unit waits before it is accepted:
                           0, or fold - 1 reading in place

    With ``argmax``, ``o.payload.best``: unsigned, the index of the largest output (ties: the
    lowest). With ``relu``, ``y[o] = Q(sum_j w[o,j] max(x[j], 0) + ...)``.

    Word streams (folded network layers, where every vector lives in block RAM). With
    ``words=True`` the unit has no output register: ``o`` carries one output per beat as it
    completes (``o.payload.index``, ``o.payload.y``, ``o.payload.side``, ``o.payload.last``:
    the vector's last output), and a beat not taken stops the pipeline. With
    ``residual_words = A`` (address bits) the residual comes from a memory instead of the
    payload: ``i.payload.r_base`` is the address of r[0], and the unit reads r[o] through
    ``r_addr`` / ``r_en`` (a synchronous read port whose word arrives on ``r_data`` a cycle
    later, exactly where the latched r[o] would be registered).

    With ``banks`` = B > 1 the unit holds B linear layers of H_out outputs each (``weights``
    (B * H_out, H_in) and ``bias`` (B * H_out,) stacked by bank) and ``i.payload.bank`` says
    which one a beat goes through: the weight memory holds B x fold words, the beat's bank
    picks its part (folded network layers, ``layer_banks.py``).
    """

    def __init__(self, weights, bias, *, in_width, in_frac, w_frac, b_frac, frac, sum_bits,
                 cycles, interval=None, residual=None, quantizer=None, side_width=0,
                 dsp_products=None, latch=True, argmax=False, relu=False, banks=1,
                 words=False, residual_words=None):
        weights, bias, self.shifts = check_linear(
            weights, bias, in_width=in_width, in_frac=in_frac, w_frac=w_frac, b_frac=b_frac,
            frac=frac, sum_bits=sum_bits, residual=residual, quantizer=quantizer,
            side_width=side_width)
        self.banks = operator.index(banks)
        if self.banks < 1 or weights.shape[0] % self.banks:
            raise ValueError(f"Banks must be >= 1 and divide the {weights.shape[0]} stacked "
                             f"outputs, not {banks}")
        out_count, in_count = weights.shape[0] // self.banks, weights.shape[1]
        cycles = operator.index(cycles)
        if cycles < out_count:
            raise ValueError(f"Cycles must be at least the {out_count} outputs (one output per "
                             f"cycle at most), not {cycles}")
        self.weights, self.bias = weights, bias
        self.in_width, self.frac, self.sum_bits = operator.index(in_width), frac, sum_bits
        self.residual = residual
        self.quantizer = quantizer
        self.side_width = operator.index(side_width)
        per_output = cycles // out_count                 # cycles each output may take
        self.lanes = -(-in_count // per_output)
        self.chunks = -(-in_count // self.lanes)         # F
        self.fold = out_count * self.chunks
        self.latch = bool(latch)
        if not self.latch and interval is not None:
            raise ValueError("Interval needs the input latch: reading in place, the producer "
                             "paces the unit")
        interval = self.fold if interval is None else operator.index(interval)
        if interval < self.fold:
            raise ValueError(f"Interval must be at least the fold {self.fold} (cycles per "
                             f"vector), not {interval}")
        self.interval = interval
        self.w_width = signed_width(weights.ravel())
        self.dsp_products = dsp_products
        #: multiplications of the last elaboration that are multipliers (:class:`Product`)
        self.products: list[Product] = []
        #: logic cost of every product of the last elaboration, DSP or not
        self.product_costs: list[int] = []
        #: also the index of the largest output (ties: the lowest), found as the outputs complete
        #: one by one: one compare instead of a tournament over all of them
        self.argmax = bool(argmax)
        #: max(x, 0) on each input as it is read: the network's ReLU before a mixing unit, once
        #: per multiplier instead of once per input
        self.relu = bool(relu)
        out_width = sum_bits if quantizer is None else quantizer.format.width
        in_fields = {"x": data.ArrayLayout(signed(in_width), in_count), "side": self.side_width}
        if self.banks > 1:
            in_fields["bank"] = range(self.banks)
        self.words = bool(words)
        self.residual_words = residual_words
        if self.words and self.argmax:
            raise ValueError("Argmax needs the output register (words=False)")
        if residual_words is not None and residual is None:
            raise ValueError("Residual_words needs a residual")
        ports = {}
        if residual_words is not None:
            in_fields["r_base"] = unsigned(residual_words)
            ports = {"r_addr": Out(unsigned(residual_words)), "r_en": Out(1),
                     "r_data": In(signed(residual[0]))}
        elif residual is not None:
            in_fields["r"] = data.ArrayLayout(signed(residual[0]), out_count)
        if self.words:
            out_fields = {"index": range(out_count), "y": signed(out_width),
                          "side": self.side_width, "last": 1}
        else:
            out_fields = {"y": data.ArrayLayout(signed(out_width), out_count),
                          "side": self.side_width}
        if self.argmax:
            out_fields["best"] = range(out_count)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(in_fields))),
            "o": Out(stream.Signature(data.StructLayout(out_fields))), **ports})

    @property
    def latency(self) -> int:
        """Cycles from an accepted beat to its vector's output (words: its last word) valid."""
        tail = 3 if self.words else 4
        return self.fold + tail if self.latch else tail

    @property
    def _residual_in_payload(self) -> bool:
        return self.residual is not None and self.residual_words is None

    @property
    def hold(self) -> int:
        return 0 if self.latch else self.fold - 1

    @property
    def multipliers(self) -> int:
        return self.lanes

    def _word(self, n: int) -> list[int]:
        """The K weights of memory word n (stacked output n // F, chunk n % F; 0 past H_in)."""
        o, k = divmod(n, self.chunks)
        in_count = self.weights.shape[1]
        return [int(self.weights[o, j]) if (j := k * self.lanes + i) < in_count else 0
                for i in range(self.lanes)]

    def elaborate(self, platform):
        m = Module()
        self.products = []
        in_count = self.weights.shape[1]
        out_count = self.weights.shape[0] // self.banks
        K, F, N, total = self.lanes, self.chunks, self.interval, self.fold
        wx, ww = self.in_width, self.w_width
        advance = Signal()
        finished = Signal()             # the output stage holds a vector's last output
        done = Signal()                 # the output stage holds a completed output

        # Accept and issue: the input (latched, or read in place) and the counter n over the
        # interval.
        n = Signal(range(N), name="word") if N > 1 else Const(0, 1)
        o = Signal(range(out_count), name="output") if out_count > 1 else Const(0, 1)
        k = Signal(range(F), name="chunk") if F > 1 else Const(0, 1)
        free = n == N - 1
        counters = [v for v in (n, o, k) if not isinstance(v, Const)]
        if self.latch:
            x = Signal(wx * K * F)      # zero-padded to K * F elements
            side = Signal(self.side_width)
            res = [Signal(signed(self.residual[0]), name=f"r{o}")
                   for o in range(out_count)] if self._residual_in_payload else []
            r_base = (Signal(unsigned(self.residual_words), name="r_base")
                      if self.residual_words is not None else None)
            bank = Signal(range(self.banks), name="bank") if self.banks > 1 else Const(0, 1)
            busy = Signal()
            m.d.comb += self.i.ready.eq(advance & (~busy | free))
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [x.eq(self.i.payload.x.as_value()), side.eq(self.i.payload.side),
                             busy.eq(1), *(v.eq(0) for v in counters)]
                if self.banks > 1:
                    m.d.sync += bank.eq(self.i.payload.bank)
                m.d.sync += [r.eq(v) for r, v in zip(res, self.i.payload.r)] if res else []
                if r_base is not None:
                    m.d.sync += r_base.eq(self.i.payload.r_base)
            with m.Elif(advance & busy & free):
                m.d.sync += busy.eq(0)
        else:
            x = Cat(self.i.payload.x.as_value(), Const(0, wx * (K * F - in_count)))
            side = self.i.payload.side
            res = list(self.i.payload.r) if self._residual_in_payload else []
            r_base = self.i.payload.r_base if self.residual_words is not None else None
            bank = self.i.payload.bank if self.banks > 1 else Const(0, 1)
            busy = self.i.valid
            m.d.comb += self.i.ready.eq(advance & free)
        issue = Signal()
        # each output goes straight into the output register as it completes, so the
        # pipeline waits while an untaken vector is there (no second copy of the vector)
        # (words: a completed output waits for its beat to be taken)
        m.d.comb += [advance.eq(~(done & ~self.o.ready) if self.words else
                                ~(done & self.o.valid & ~self.o.ready)),
                     issue.eq(busy & ((n < total) if N > total else 1))]
        # (latched: the accept above restarts the counters instead)
        counting = advance & busy & (~(self.i.valid & self.i.ready) if self.latch else 1)
        with m.If(counting):
            if N > 1:
                m.d.sync += n.eq(Mux(free, 0, n + 1))
            if F > 1:
                m.d.sync += k.eq(Mux(k == F - 1, 0, k + 1))
            if out_count > 1:
                with m.If(k == F - 1):
                    m.d.sync += o.eq(Mux(o == out_count - 1, 0, o + 1))

        # Operands: the weight word (memory read register), the chunk, r[o], b[o], the flags.
        words = [self._word(w) for w in range(total * self.banks)]
        memory = Memory(shape=unsigned(K * ww), depth=len(words), attrs={"rom_style": "block"},
                        init=[sum((v & ((1 << ww) - 1)) << (i * ww) for i, v in enumerate(word))
                              for word in words])
        m.submodules.weights = memory
        read = memory.read_port()
        if self.banks > 1:
            # the beat's bank's part of the memory, and of the bias list
            base = select_word(m, [Const(b * total, range(len(words))) for b in range(self.banks)],
                               bank, unsigned(len(read.addr)), "bank_base")
            # (constants selected, not bank * out_count: Yosys could make a multiplier of it)
            first = select_word(m, [Const(b * out_count, range(len(self.bias)))
                                    for b in range(self.banks)], bank,
                                unsigned(len(Const(len(self.bias) - 1))), "bank_first_output")
            bias_index = wire(m, first + o, "bias_index", unsigned(len(first)))
        else:
            base, bias_index = 0, o
        m.d.comb += [read.addr.eq(base + n), read.en.eq(advance)]
        weight = [read.data[i * ww:][:ww].as_signed() for i in range(K)]
        chunk = [Cat(*(x[(kk * K + i) * wx:][:wx] for kk in range(F))) for i in range(K)]
        chunk = [wire(m, c.word_select(k, wx) if F > 1 else c, f"x_lane{i}", signed(wx))
                 for i, c in enumerate(chunk)]
        if self.relu:
            chunk = [wire(m, Mux(c < 0, 0, c), f"x_lane{i}_relu", signed(wx))
                     for i, c in enumerate(chunk)]
        bias_width = signed_width(self.bias)
        a_x = [Signal(signed(wx), name=f"a_x_lane{i}") for i in range(K)]
        a = {name: Signal(shape, name=f"a_{name}") for name, shape in (
            ("valid", 1), ("first", 1), ("last", 1), ("output", len(Value.cast(o))),
            ("side", self.side_width), ("bias", signed(bias_width)))}
        a_r = Signal(signed(self.residual[0]), name="a_r") if res else None
        if r_base is not None:
            # r[o] from the memory: its read register is the operand register
            m.d.comb += [self.r_addr.eq(r_base + o), self.r_en.eq(advance)]
            a_r = self.r_data
        with m.If(advance):
            m.d.sync += [a["valid"].eq(issue), a["first"].eq(k == 0), a["last"].eq(k == F - 1),
                         a["output"].eq(o), a["side"].eq(side),
                         a["bias"].eq(select_word(m, [Const(int(b), signed(bias_width))
                                                      for b in self.bias], bias_index,
                                                  signed(bias_width), "bias_sel")),
                         *(r.eq(c) for r, c in zip(a_x, chunk))]
            if res:
                m.d.sync += a_r.eq(select_word(m, res, o, signed(self.residual[0]), "r_sel"))

        # Products and the base (bias + residual, aligned).
        pending = []
        p = {name: Signal.like(a[name], name=f"p_{name}") for name in ("valid", "first", "last",
                                                                       "output", "side")}
        base = Signal(signed(self.sum_bits), name="base")
        products = []
        for i in range(K):
            column = [word[i] for word in words]
            if not any(column):
                continue
            value = Signal(signed(wx + ww), name=f"w{i}_x")
            product = Signal(signed(wx + ww), name=f"p{i}")
            products.append(product)
            pending.append((value, Product(weight[i], a_x[i], product, tuple(column), ww, wx,
                                           ("x_lane", i), "w*x")))
        self.product_costs, self.products = drive_products(m, pending, self.dsp_products)
        term = a["bias"] << self.shifts["bias"]
        if a_r is not None:
            term = term + (a_r << self.shifts["residual"])
        with m.If(advance):
            m.d.sync += [p[name].eq(a[name]) for name in p]
            m.d.sync += [product.eq(value) for product, (value, _) in zip(products, pending)]
            m.d.sync += base.eq(term)

        # Accumulate (exact in sum_bits, two's complement), then the output stage.
        acc = Signal(signed(self.sum_bits), name="acc")
        c = {name: Signal.like(p[name], name=f"c_{name}") for name in ("valid", "last", "output",
                                                                       "side")}
        terms = [q << self.shifts["weight"] for q in products]
        while len(terms) > 1:
            terms = [terms[t] + terms[t + 1] if t + 1 < len(terms) else terms[t]
                     for t in range(0, len(terms), 2)]
        start = Mux(p["first"], base, acc)
        with m.If(advance):
            m.d.sync += [c[name].eq(p[name]) for name in c]
            with m.If(p["valid"]):
                m.d.sync += acc.eq(start + terms[0] if terms else start)
        value = acc if self.quantizer is None else requantize(acc, self.frac, self.quantizer)
        value = wire(m, value, "y_value")
        m.d.comb += [done.eq(c["valid"] & c["last"]),
                     finished.eq(done & (c["output"] == out_count - 1))]
        if self.words:
            m.d.comb += [self.o.valid.eq(done), self.o.payload.index.eq(c["output"]),
                         self.o.payload.y.eq(value), self.o.payload.side.eq(c["side"]),
                         self.o.payload.last.eq(c["output"] == out_count - 1)]
            return m
        with m.If(advance & done):
            for j in range(out_count):
                with m.If(c["output"] == j):
                    m.d.sync += self.o.payload.y[j].eq(value)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance & finished):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.side.eq(c["side"])]
        if self.argmax:
            # the running maximum: output 0 starts it, a later output replaces it only when
            # strictly greater, so ties go to the lowest index (numpy.argmax)
            best_value = Signal.like(value, name="best_value")
            best_index = Signal(range(out_count), name="best_index")
            better = wire(m, (c["output"] == 0) | (value > best_value), "better")
            with m.If(advance & done & better):
                m.d.sync += [best_value.eq(value), best_index.eq(c["output"])]
            with m.If(advance & finished):
                m.d.sync += self.o.payload.best.eq(Mux(better, c["output"], best_index))
        return m

