"""Bit-exact integer model of one quantized SSM layer: the specification of the hardware.

Pure functions over int64 arrays, vectorized over batch and states; time is the only loop (the
recurrence is sequential). Every rounding and overflow step is done by ``fixedpoint``.
``golden.quantize`` has proven that no exact intermediate exceeds INT64_SAFE_BITS, so int64
cannot overflow silently here.

Arithmetic of one timestep (the specification; all products exact):

* state update, for each state p (re and im alike)::

      terms  = Abar_p * x_p[k-1]                (complex x complex, frac Fa + Fx_p)
             + Bbar_p,h * u_h  for each h       (complex x real,    frac Fb + Fu; s4d: one h)
      x_p[k] = Q_state( ACC_state(terms) )

* output, for each channel h::

      terms  = Re(C_h,p * x_p[k]) for each p    (frac Fc + Fx_p; s4d: the channel's own modes)
             + D_h * u_h                        (frac Fd + Fu)
      y_h[k] = Q_output( ACC_output(terms) )

``ACC(terms)`` with a *full-precision* accumulator (the default) is the exact sum, held at the
largest fraction-bit count of its terms with a width derived from the formats (never
truncated). With an
explicit accumulator format, each term is first requantized into it (its rounding and overflow),
the quantized terms are summed exactly, and the overflow mode is applied once to the sum (for
wrap this equals a W-bit adder chain; for saturate a clamp after guard bits).

A ``Q`` step is :func:`ssmgen.golden.fixedpoint.requantize`: one rounding, one overflow.

How it is computed (the same values, faster). Only the recurrence needs a loop over time; all
else is done for every timestep at once: the ``Bbar u`` terms before the loop, the readout
``Re(C x) + D u`` and ``Q_output`` after it, from the stored state trajectory. Where a term
provably enters its accumulator as a plain left shift (always with full precision; with an
explicit format when it drops no fraction bit and cannot overflow) the shift is folded into the
weights and the terms of one sum are added by a matrix product, in float32 or float64 (BLAS)
when a bound derived from the formats keeps it exact (:func:`exact_matmul`), else in int64.
Otherwise each term is requantized on its own, as the specification says. With a
full-precision state accumulator narrower than 53 bits the loop itself runs on float64
integers (``fixedpoint.FloatRequantizer``: numpy's int64 products are scalar, its float64 ones
SIMD; the same integers). The work runs on batch chunks and blocks of timesteps that stay in
the cache, in reused buffers, with requantizers prepared once (``fixedpoint.Requantizer``).
"""

from __future__ import annotations

import numpy as np

from ..spec.formats import FixedFormat, to_float
from ..spec.quantized import AccumulatorPlan, QuantizedSSM
from .fixedpoint import FLOAT_EXACT_BITS, FloatRequantizer, Requantizer, quantize_float

__all__ = ["quantize_input", "dequantize_output", "step", "run_integer", "run_quantized",
           "exact_matmul", "exact_dtype"]

#: Largest bound on a product's sums for which float32 (24-bit significand) and float64
#: (53-bit) hold every integer involved exactly; see exact_matmul.
FLOAT32_EXACT_MAX = 1 << 24
FLOAT64_EXACT_MAX = 1 << 53
#: int64 elements of one timestep's state in the loop (a batch chunk, 128 KiB): the loop's
#: arrays stay in the L2 cache and below glibc's mmap threshold (page faults on every call).
LOOP_ELEMENTS = 1 << 14
#: int64 elements of one block of timesteps of a batch chunk (1 MiB): the inputs, accumulators
#: and states of a block are computed before, in and after the loop while still cached.
BLOCK_ELEMENTS = 1 << 17
#: int64 elements per temporary when terms are requantized one by one (explicit formats, s5).
TERM_ELEMENTS = 1 << 15


def quantize_input(model: QuantizedSSM, u) -> np.ndarray:
    """float (batch, time, H) in real units -> int64 (batch, time, H) in the input format."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 3 or u.shape[2] != model.channels:
        raise ValueError(f"input must have shape (batch, time, H={model.channels}), not {u.shape}")
    return quantize_float(u, model.config.quant.input)


def dequantize_output(model: QuantizedSSM, y_int) -> np.ndarray:
    """int64 outputs -> exact float64 values in real units."""
    return to_float(y_int, model.config.quant.output.format.frac)


def exact_matmul(a, b, bound: int, *, out=None, buffers=None) -> np.ndarray:
    """``a @ b`` of integer arrays, exactly, as int64 (written into ``out`` when given;
    ``buffers(name, shape, dtype)`` may lend the float temporaries, see ``_Scratch``).

    ``bound``: a proven bound (Python int) on ``sum_j |a[..., i, j] * b[j, k]|`` for every output,
    derived by the caller from the formats; it picks the type (:func:`exact_dtype`). In float32
    or float64 (BLAS) the product is exact because a float with a p-bit significand holds every
    integer of magnitude <= 2**p: every product is an integer of magnitude <= bound <= 2**p, so
    each multiplication is exact (a factor too large for the float type could only meet a zero,
    and rounded * 0 is still 0); every partial sum, in whatever order or grouping BLAS adds
    (blocking, SIMD lanes, fused multiply-add), is a sum of some of those products, an integer of
    magnitude <= bound, so each addition is exact too; the result converts back to int64
    exactly. int64 is exact by the caller's int64 proof, but has no BLAS.
    """
    dtype = exact_dtype(bound)
    a, b = np.asarray(a), np.asarray(b)
    if dtype is np.int64:
        return np.matmul(a.astype(np.int64, copy=False), b.astype(np.int64, copy=False), out=out)
    if buffers is None:
        product = np.matmul(a.astype(dtype), b.astype(dtype))
    else:
        a_float = buffers("matmul_a", a.shape, dtype)
        np.copyto(a_float, a, casting="unsafe")
        product = buffers("matmul_product", a.shape[:-1] + b.shape[-1:], dtype)
        np.matmul(a_float, b.astype(dtype), out=product)
    if out is None:
        return product.astype(np.int64)
    np.copyto(out, product, casting="unsafe")
    return out


def exact_dtype(bound: int):
    """The fastest type in which a matrix product whose sums are bounded by ``bound`` is exact:
    float32 up to 2**24, float64 up to 2**53, else int64."""
    if bound <= FLOAT32_EXACT_MAX:
        return np.float32
    return np.float64 if bound <= FLOAT64_EXACT_MAX else np.int64


def _magnitude(fmt: FixedFormat) -> int:
    """Largest |integer| of a signed format (its min_int)."""
    return 1 << (fmt.width - 1)


def _sum_bound(term_bound: int, shifts) -> int:
    """Bound on |sum_j t_j| for terms |t_j| <= term_bound << shifts[j] (Python int, exact)."""
    values, counts = np.unique(np.asarray(shifts), return_counts=True)
    return sum(int(n) * (term_bound << int(v)) for v, n in zip(values, counts))


class _Entry:
    """How one kind of term enters an accumulator: the per-term step of ``ACC`` in the spec.

    ``shift`` (int64 array, per term or per state) when entering is an exact left shift: always
    for full precision (``plan.frac`` is the largest fraction-bit count of its terms), and for an
    explicit format when no fraction bit is dropped and the shifted bound fits its width, so its
    requantization neither rounds nor overflows. Otherwise ``shift`` is None and the terms are
    requantized into the format one by one."""

    def __init__(self, plan: AccumulatorPlan, frac, bound: int, shape=()):
        shift = plan.frac - np.asarray(frac, dtype=np.int64)
        exact = plan.full_precision or (
            np.all(shift >= 0) and (bound << int(shift.max())) < 1 << (plan.width - 1))
        self.shift = shift if exact else None
        # constants of the terms' full trailing shape: numpy is faster without broadcasting
        self._requantize = None if exact else Requantizer(
            np.broadcast_to(frac, np.broadcast_shapes(shift.shape, shape)).copy(), plan.quantizer)

    def __call__(self, terms, out=None) -> np.ndarray:
        if self.shift is not None:
            return np.left_shift(terms, self.shift, out=out)
        return self._requantize(terms, out=out)


def _row_blocks(rows: int, per_row: int, elements: int):
    """Slices of ``rows`` so that a block holds about ``elements`` values."""
    step = max(1, elements // max(1, per_row))
    return [slice(i, min(rows, i + step)) for i in range(0, rows, step)]


class _Scratch:
    """Buffers reused from block to block, by name. Why: glibc maps every array of 128 KiB or
    more freshly from the system, and faulting its pages in costs about as much as the
    arithmetic done on it."""

    def __init__(self):
        self._flat = {}

    def __call__(self, name: str, shape, dtype=np.int64) -> np.ndarray:
        size, key = int(np.prod(shape)), (name, np.dtype(dtype))
        flat = self._flat.get(key)
        if flat is None or flat.size < size:
            flat = self._flat[key] = np.empty(size, dtype=dtype)
        return flat[:size].reshape(shape)


class _Layer:
    """A layer's arithmetic with everything that does not depend on the inputs prepared once.

    Works on blocks of timesteps of a batch chunk: inputs (T, b, H), accumulators and states
    (T, b, 2, P) with (re, im) on the third axis, time-major so that one timestep is contiguous."""

    def __init__(self, model: QuantizedSSM):
        q = model.config.quant
        self.model = model
        self.kind, self.H, self.P = model.kind, model.channels, model.states
        fa, fb, fc, fd, fu = (q.abar.format.frac, q.bbar.format.frac, q.c.format.frac,
                              q.d.format.frac, q.input.format.frac)
        fx = np.asarray(model.state_frac, dtype=np.int64)
        x_max, u_max = _magnitude(q.state.format), _magnitude(q.input.format)
        sacc, oacc = model.state_acc, model.output_acc

        # state update: Re/Im(Abar x) is one term (two products) with frac Fa + Fx_p
        self.enter_a = _Entry(sacc, fa + fx, 2 * _magnitude(q.abar.format) * x_max)
        self.a_frac, self.state_acc, self.state_q = fa + fx, sacc, q.state
        # into each state's own format (per-mode integer bits): requantize shifts by (source
        # frac - format frac), so express each state's fraction bits through the source frac
        self.state_source_frac = sacc.frac - fx + q.state.format.frac
        self._loops = {}
        # the loop in float64 (FloatRequantizer: SIMD products, one-operation rounding) where
        # every value in it is an integer below 2**52: a full-precision state accumulator,
        # whose exact sum (Abar x entered exactly, plus the Bbar u sums) has at most sum_bits
        # signed bits; else in int64
        self.float_loop = sacc.full_precision and sacc.sum_bits < FLOAT_EXACT_BITS
        # Bbar_p,h u_h terms (frac Fb + Fu): entered before the loop
        self.b_bound = _magnitude(q.bbar.format) * u_max
        self.enter_b = _Entry(sacc, fb + fu, self.b_bound)
        if self.kind == "s4d":                       # (2, H, M): states p = h M + m
            self.b = np.stack([model.bbar_re, model.bbar_im]).reshape(2, self.H, -1)
            if self.enter_b.shift is not None:       # exact entry: fold the shift into Bbar
                self.b = self.b << self.enter_b.shift
        else:                                        # (2P, H)
            self.b = np.concatenate([model.bbar_re, model.bbar_im])

        # output: Re(C_h,p x_p) is one term (two products) with frac Fc + Fx_p, D_h u_h another
        c_bound = 2 * _magnitude(q.c.format) * x_max
        self.enter_c = _Entry(oacc, fc + fx, c_bound,
                              shape=(self.H, self.P) if self.kind == "s5" else ())
        self.enter_d = _Entry(oacc, fd + fu, _magnitude(q.d.format) * u_max)
        self.sum_output = (None if oacc.full_precision   # the explicit format's overflow step
                           else Requantizer(oacc.frac, oacc.quantizer))
        self.into_output = Requantizer(oacc.frac, q.output)
        shift = self.enter_c.shift
        if self.kind == "s4d":                       # (P,) vectors; exact: shifts folded in
            self.c_re = model.c_re if shift is None else model.c_re << shift
            self.c_im = model.c_im if shift is None else model.c_im << shift
        elif shift is not None:
            # one product over (re, im) of all states: the per-state part of the shift goes
            # into C (aligning every state to the largest Fx), the common part after it
            self.c_base = int(shift.min())
            rel = shift - self.c_base
            self.c_matrix = np.concatenate([(model.c_re << rel).T, (-(model.c_im << rel)).T])
            self.c_matmul_bound = _sum_bound(c_bound // 2, np.concatenate([rel, rel]))

    # -- before the loop ----------------------------------------------------------------------

    def drive(self, u, out, scratch: _Scratch) -> np.ndarray:
        """The sum of the entered Bbar u terms of every state, at the state accumulator's
        fraction bits, into ``out`` (T, b, 2, P)."""
        T, nb, H = u.shape
        if self.kind == "s4d":                       # one term per state: its own channel
            exact = self.enter_b.shift is not None
            terms = out if exact else scratch("terms", out.shape)
            np.multiply(u[:, :, None, :, None], self.b, out=terms.reshape(T, nb, 2, H, -1))
            return out if exact else self.enter_b(terms, out=out)
        rows, total = u.reshape(T * nb, H), out.reshape(T * nb, 2 * self.P)
        if self.enter_b.shift is not None:           # exact entry: the sum is a product
            exact_matmul(rows, self.b.T, H * self.b_bound, out=total, buffers=scratch)
            total <<= self.enter_b.shift
        else:                                        # each term requantized on its own
            for r in _row_blocks(T * nb, self.b.size, TERM_ELEMENTS):
                shape = (r.stop - r.start,) + self.b.shape
                terms = np.multiply(rows[r, None, :], self.b, out=scratch("terms", shape))
                np.sum(self.enter_b(terms, out=scratch("entered", shape)), axis=2, out=total[r])
        return out

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self, shape):
        """The loop's constants, broadcast to the shape of one timestep (b, 2, P): numpy runs
        same-shape operands about twice as fast as broadcast ones on arrays this small."""
        def full(values):
            return np.ascontiguousarray(np.broadcast_to(values, shape))

        if shape not in self._loops:
            ar, ai = self.model.abar_re, self.model.abar_im
            if self.enter_a.shift is not None:       # exact entry: fold the shift into Abar
                ar, ai = ar << self.enter_a.shift, ai << self.enter_a.shift
            enter_a = (None if self.enter_a.shift is not None
                       else Requantizer(full(self.a_frac), self.state_acc.quantizer))
            sum_state = (None if self.state_acc.full_precision
                         else Requantizer(full(self.state_acc.frac), self.state_acc.quantizer))
            self._loops[shape] = (full(np.stack([ar, ar])),     # (re, im) * a_same
                                  full(np.stack([-ai, ai])),    # + (im, re) * a_swap = Abar x
                                  enter_a, sum_state,
                                  Requantizer(full(self.state_source_frac), self.state_q))
        return self._loops[shape]

    def _float_loop(self, shape):
        """The float64 loop's constants (see ``float_loop``), per timestep shape (b, 2, P)."""
        key = ("float", shape)
        if key not in self._loops:
            a_same, a_swap = self._loop(shape)[:2]              # Abar, shift folded in
            self._loops[key] = (a_same.astype(np.float64), a_swap.astype(np.float64),
                                FloatRequantizer(self.state_source_frac, self.state_q, shape))
        return self._loops[key]

    def recur(self, states, x, scratch: _Scratch) -> np.ndarray:
        """The state trajectory from the initial state x (b, 2, P), in place: ``states``
        (T, b, 2, P) holds the entered Bbar u sums on entry and the states on return."""
        if self.float_loop:
            return self._recur_float(states, x, scratch)
        a_same, a_swap, enter_a, sum_state, into_state = self._loop(x.shape)
        acc, spare = np.empty(x.shape, dtype=np.int64), np.empty(x.shape, dtype=np.int64)
        for k in range(states.shape[0]):
            np.multiply(x, a_same, out=acc)
            np.multiply(x[:, ::-1], a_swap, out=spare)
            acc += spare
            if enter_a is not None:
                acc, spare = enter_a(acc, out=spare), acc
            acc += states[k]
            if sum_state is not None:
                acc, spare = sum_state(acc, out=spare), acc
            x = into_state(acc, out=states[k])
        return states

    def _recur_float(self, states, x, scratch) -> np.ndarray:
        """:meth:`recur` in float64, the same integers (``float_loop``)."""
        a_same, a_swap, into_state = self._float_loop(x.shape)
        trajectory = scratch("float_states", states.shape, np.float64)
        np.copyto(trajectory, states, casting="unsafe")          # exact: |values| < 2**52
        x = x.astype(np.float64)
        acc, spare = np.empty(x.shape), np.empty(x.shape)
        for k in range(states.shape[0]):
            np.multiply(x, a_same, out=acc)
            np.multiply(x[:, ::-1], a_swap, out=spare)
            acc += spare
            acc += trajectory[k]
            x = into_state(acc, out=trajectory[k])
        np.copyto(states, trajectory, casting="unsafe")
        return states

    # -- after the loop ----------------------------------------------------------------------

    def readout(self, states, u, scratch: _Scratch) -> np.ndarray:
        """Outputs (T, b, H) from the state trajectory and the inputs."""
        T, nb, _, P = states.shape
        x = states.reshape(T * nb, 2, P)
        acc = self._c_terms(x, scratch)
        acc += self.enter_d(self.model.d * u.reshape(T * nb, self.H))
        if self.sum_output is not None:
            acc = self.sum_output(acc)
        return self.into_output(acc).reshape(T, nb, self.H)

    def _c_terms(self, x, scratch: _Scratch) -> np.ndarray:
        """Sum over each channel's states of the entered Re(C x) terms, (N, H)."""
        m, n = self.model, x.shape[0]
        xr, xi = x[:, 0], x[:, 1]
        if self.kind == "s4d":
            terms = np.multiply(xr, self.c_re, out=scratch("c_re", xr.shape))
            spare = np.multiply(xi, self.c_im, out=scratch("c_im", xr.shape))
            terms -= spare
            if self.enter_c.shift is None:
                terms = self.enter_c(terms, out=spare)
            return terms.reshape(n, self.H, -1).sum(axis=2)
        if self.enter_c.shift is not None:
            total = exact_matmul(x.reshape(n, 2 * self.P), self.c_matrix, self.c_matmul_bound,
                                 buffers=scratch)
            total <<= self.c_base
            return total
        total = np.empty((n, self.H), dtype=np.int64)
        for r in _row_blocks(n, m.c_re.size, TERM_ELEMENTS):     # each term requantized
            shape = (r.stop - r.start,) + m.c_re.shape                  # (rows, H, P)
            terms = np.multiply(xr[r, None, :], m.c_re, out=scratch("terms", shape))
            spare = np.multiply(xi[r, None, :], m.c_im, out=scratch("entered", shape))
            terms -= spare
            np.sum(self.enter_c(terms, out=spare), axis=2, out=total[r])
        return total

    def run_block(self, u, x, scratch: _Scratch):
        """Outputs (T, b, H) and states (T, b, 2, P, a scratch buffer) of a block of timesteps
        u (T, b, H) from the state x (b, 2, P) before it."""
        states = self.drive(u, scratch("states", u.shape[:2] + (2, self.P)), scratch)
        self.recur(states, x, scratch)
        return self.readout(states, u, scratch), states


def step(model: QuantizedSSM, xr, xi, u):
    """One timestep for a batch: state (re, im) int64 (batch, P) and inputs int64 (batch, H) ->
    (new re, new im, outputs int64 (batch, H)). For callers that keep the state between calls
    (the protocol's reference device); ``run_integer`` runs whole sequences."""
    x = np.stack([xr, xi], axis=1).astype(np.int64)
    y, states = _Layer(model).run_block(np.asarray(u, dtype=np.int64)[None], x, _Scratch())
    return states[0, :, 0].copy(), states[0, :, 1].copy(), y[0]


def run_integer(model: QuantizedSSM, u_int, *, return_states: bool = False):
    """Run the layer on integer inputs.

    u_int: int64 (batch, time, H) in the input format; every sequence starts from state 0.
    Returns y_int int64 (batch, time, H) in the output format; with ``return_states`` also the
    state trajectory (re, im) int64 (batch, time, P) each, in the per-mode state formats.
    """
    u_int = np.asarray(u_int)
    if u_int.ndim != 3 or u_int.shape[2] != model.channels:
        raise ValueError(f"input must have shape (batch, time, H={model.channels}), not {u_int.shape}")
    if not np.issubdtype(u_int.dtype, np.integer):
        raise ValueError(f"input must be integers of the input format, not dtype {u_int.dtype} "
                         f"(quantize_input converts real values)")
    fmt = model.config.quant.input.format
    if u_int.size and (u_int.min() < fmt.min_int or u_int.max() > fmt.max_int):
        raise ValueError(f"input integers must lie in {fmt.min_int}..{fmt.max_int} ({fmt})")
    batch, steps, channels = u_int.shape
    P = model.states
    layer, scratch = _Layer(model), _Scratch()
    u_t = u_int.astype(np.int64).transpose(1, 0, 2)          # time-major
    y = np.empty((steps, batch, channels), dtype=np.int64)
    states = np.empty((steps, batch, 2, P), dtype=np.int64) if return_states else None
    for rows in _row_blocks(batch, 2 * P, LOOP_ELEMENTS):
        x = np.zeros((rows.stop - rows.start, 2, P), dtype=np.int64)
        for times in _row_blocks(steps, x.size, BLOCK_ELEMENTS):
            y_block, block = layer.run_block(np.ascontiguousarray(u_t[times, rows]), x, scratch)
            y[times, rows] = y_block
            if states is not None:
                states[times, rows] = block
            x = block[-1].copy()                 # the scratch buffer is reused by the next block
    y = np.ascontiguousarray(y.transpose(1, 0, 2))
    if states is None:
        return y
    return y, (np.ascontiguousarray(states[:, :, 0].transpose(1, 0, 2)),
               np.ascontiguousarray(states[:, :, 1].transpose(1, 0, 2)))


def run_quantized(model: QuantizedSSM, u) -> np.ndarray:
    """Float in, float out through the integer model: quantize input, run, dequantize exactly."""
    return dequantize_output(model, run_integer(model, quantize_input(model, u)))
