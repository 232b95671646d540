# amaranth: UnusedElaboratable=no
"""The whole quantized network on chip: encoder, L SSM layers (each followed by the activation,
the mixing layer and the residual), mean pooling, decoder and arg-max.

Computes exactly what ``golden/network.py`` specifies (read its module docstring), one timestep
per input beat and one output beat per sequence::

    u beat ─> encoder ─┬─> SSMLayer 0 ─> act ─> mixing + bias ─(+)─> ... layer L-1 ... ─> pool
                       └─> residual FIFO 0 ─────────────────────┘
    pool: s = sum over the sequence (exact) ─> Q_pool(s * M) ─> decoder ─> logits, arg-max

Arithmetic. Every linear layer (encoder, mixing, decoder) is exact and full precision: each
product and the bias (and the residual) are aligned exactly to the accumulator's fraction bits
(``QuantizedNetwork.*_acc``) and summed in ``plan.sum_bits`` bits, then
:func:`ssmgen.hw.datapath.fixed.requantize` moves the sum into the residual-stream format
(``quant.input``) exactly where the golden model does. ReLU is ``max(y, 0)`` on the SSM output
(``quant.output``). The pooling sum is exact; the mean is ``Q_pool(s * M)`` with the golden's
constants ``(M, S) = pool_constants(network.steps)``, and the decoder sum is full precision
(the logits) or requantized into ``network.quant.logits``. Arg-max ties go to the lowest class.

Folding. One timestep enters every G cycles (G = the SSM layers' ``cycles_per_timestep``), so
each linear layer may take up to G cycles per vector. The mixing layers (and the encoder when
H_in > 1) are :class:`~ssmgen.hw.datapath.folded_linear.FoldedLinear` units given G cycles: each of the
H outputs has ``K = ceil(H / G)`` multiply-accumulators fed one chunk of the input per cycle
(weights from a small ROM per output and lane), i.e. ``K * H`` multipliers instead of ``H * H``
(the default sDigits model, H = G = 32: 32 instead of 1024 per layer), one vector every
``F = ceil(H / K) <= G`` cycles, so the throughput stays one timestep per G cycles. The encoder
takes its input beats exactly every G cycles, as layer 0 does, so beats never queue inside it.
The decoder runs once per sequence and gets ``network.steps * G`` cycles (at most H are used):
``classes * ceil(H / (steps * G))`` multipliers. With G = 1 the units are fully parallel
(constant weights, one vector per cycle), only pipelined. A one-input encoder (H_in = 1) is H
constant products whatever G is, so it stays a combinational multiply-add in front of layer 0.
Constant products (a one-input encoder's weights, each layer's D) are shifts and adds
(``hw/datapath/const_product.py``), not multipliers: Yosys would give each a DSP block.
Each unit's latency is F + 4 cycles (input latch, F chunks, operand registers, products,
accumulator, output register; F + 3 when F = 1, without operand registers).

Folded layers (``hardware.fold_layers``, two S4D layers with the same formats, memory storage
and a serial readout). The layers take turns on one SSMLayer of two banks
(``layer_banks.py``: both layers' states and weights side by side in its memories) and one
serial mixing unit of two banks, so the logic is one layer's and a timestep takes 2 G cycles
(G = P / lanes, one layer beat). No vector between them is held in flip-flops: the encoder
and the mixing unit write their results word by word into two activation memories ("a":
layer 0's inputs, "b": layer 1's, ``FOLD_SLOTS`` vectors each), the layer reads its input
sample per group from them and the mixing unit its residual per output, and layer 1's results
go to the pooling word by word (the sums in a memory too)::

    encoder ─words─> a ─┐                          ┌─words─> b (layer 1's inputs) ─┐
                        ├─> SSMLayer ─> mixing unit ┤                               │
    b ──────────────────┘   banks 0/1   (residual   └─words─> pooling ─> decoder    │
    ^                        from a / b)                                            │
    └───────────────────────────────────────────────────────────────────────────────┘

Layer 1's input at step k is layer 0's output at step k after the mixing unit, complete
``fold_ready`` cycles (the layer, the mixing unit's last word, the count) after layer 0's beat
k entered. Layer 1 therefore runs one timestep behind: its beat k enters 3 G after layer 0's
beat k, in the turn after layer 0's beat k + 1 (the encoder delivers a layer-0 beat every
2 G), and at the same time after a sequence's last beat whether or not another sequence
follows, so the rate (one timestep per 2 G) and the latency are exact. The config proves
``fold_ready <= 3 G``. A slot of "a" is freed when the mixing unit has read its vector as the
residual; a slot of "b" is reserved when its layer-0 beat enters, so the mixing unit never
waits for room while the memory waits for the layer. A layer-1 beat that is due goes before a
layer-0 beat. Under back-pressure the turns slip but stay in order per layer, so the results
stay exact. The residual FIFO carries only each beat's address, flags and bank.

Sequences. ``start`` marks a sequence's first beat (the SSM states restart from zero, the pooling
sum restarts) and ``last`` its final beat (the pooled features are taken and one output beat
follows). A one-beat sequence sets both. The mean divides by ``network.steps`` (the golden's
constant), so every sequence must have exactly ``network.steps`` beats for the golden result;
the pooling accumulator is sized for that many.

(The first line silences Amaranth's warning about unused components for the units built in
``__init__``: they are elaborated with the accelerator, or not at all when only its figures are
read, e.g. by ``ssmgen.design.Design``.)

DSP blocks. ``hardware.dsp_products`` caps the multipliers of the whole network; the units share
it (:meth:`NetworkAccelerator._share_dsp_products`) so that the products that would cost the most
logic keep the DSP blocks and the rest become adders (``hw/datapath/multiply.py``).

Flow control. Valid/ready everywhere; back-pressure on ``y`` propagates to ``u`` through the
layers (each layer's pipeline holds when its output is not taken). The register slices'
ready comes from a register, so no combinational path runs from ``y.ready`` back into the
layers, nor from one layer's ready to the previous layer's.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...spec.quantized import QuantizedNetwork
from .layer_banks import stack_layers
from .const_product import const_product
from .fixed import requantize
from .folded_linear import FoldedLinear
from .multiply import choose_dsp_products, logic_cost, product_in_logic
from .register_slice import RegisterSlice
from .serial_linear import SerialLinear
from .signals import select_word, wire
from .ssm_layer import Product, SSMLayer

#: Arg-max tournament levels (a compare and a select each) between register slices.
ARGMAX_LEVELS_PER_SLICE = 2
#: Folded layers: vectors each activation memory holds (a vector lives from its first word
#: written until the mixing unit has read it as a residual: about 2 G for layer 0's inputs,
#: 3 G for layer 1's, one arriving every 2 G)
FOLD_SLOTS = 4

__all__ = ["NetworkAccelerator", "input_layout", "output_layout", "prediction_width",
           "pool_sum_width"]


def prediction_width(net: QuantizedNetwork) -> int:
    return max(1, (net.network.classes - 1).bit_length())


def pool_sum_width(net: QuantizedNetwork) -> int:
    """Signed bits of the exact time sum of ``network.steps`` residual-stream samples."""
    ws = net.config.quant.input.format.width
    return (net.network.steps * (1 << (ws - 1))).bit_length() + 1


def input_layout(net: QuantizedNetwork) -> data.StructLayout:
    """One input beat: the H_in samples of a timestep (``network.quant.input``), ``start`` (first
    beat of a sequence) and ``last`` (final beat of a sequence)."""
    width = net.network.input.format.width
    return data.StructLayout({"data": data.ArrayLayout(signed(width), net.network.inputs),
                              "start": 1, "last": 1})


def output_layout(net: QuantizedNetwork) -> data.StructLayout:
    """A classifier: one output beat per sequence, the logits (golden format, ``logits_frac``
    fraction bits) and their arg-max. A per-step readout: one output beat per timestep, the
    decoder's outputs (``data``, same format)."""
    if net.network.per_step:
        return data.StructLayout({
            "data": data.ArrayLayout(signed(net.logits_width), net.network.classes)})
    return data.StructLayout({
        "logits": data.ArrayLayout(signed(net.logits_width), net.network.classes),
        "prediction": unsigned(prediction_width(net))})


class NetworkAccelerator(wiring.Component):
    """The whole network with stream interfaces.

    Ports
    -----
    u : In(stream.Signature(input_layout(net)))
        ``u.payload.data[i]``: signed(W_net_input), i < H_in (``network.quant.input``);
        ``u.payload.start``: 1 bit, first beat of a sequence;
        ``u.payload.last``: 1 bit, final beat of a sequence.
    y : Out(stream.Signature(output_layout(net)))
        ``y.payload.logits[c]``: signed(net.logits_width), c < classes, with
        ``net.logits_frac`` fraction bits (the decoder's exact sum: its derived width; or
        ``network.quant.logits``'s width);
        ``y.payload.prediction``: unsigned(max(1, ceil(log2 classes))), the arg-max (ties ->
        lowest index).

    Properties
    ----------
    layers : list of SSMLayer      one per network layer, each with its own weights
    cycles_per_timestep : int      G of the layers: one input beat every G cycles at full rate
    encoder : FoldedLinear or None the folded encoder (None: H_in = 1, combinational)
    mixers : list of FoldedLinear  the mixing unit of each layer (G cycles per vector)
    decoder : FoldedLinear         the decoder (network.steps * G cycles per vector)
    latency : int                  cycles from accepting a sequence's last beat to its output
                                   beat's valid, without back-pressure = the folded encoder's
                                   latency (0 when H_in = 1) + per layer (the layer's latency
                                   + the mixing unit's hold and latency + one register slice)
                                   + 3 (pool, logits slice, output registers; 2 with a
                                   serial arg-max, whose slice is the output; 1 with folded
                                   layers, whose decoder's output register is the network's)
                                   + H (a serial pooling's walk) + the decoder's hold and
                                   latency + the register slices of the arg-max tournament;
                                   folded layers: + 3 G (layer 1's turn), one layer's and
                                   mixing unit's terms for both, + 2 (the pooling's sums in a
                                   memory); a folded unit's
                                   latency is F + 4 (F + 3 when F = 1), a serial one's
                                   ``serial_linear.py``; ``hold``: the cycles a unit that reads
                                   in place waits before it accepts (0 otherwise)
    fifo_depths : list of int      residual FIFO depth of each layer
    """

    def __init__(self, net: QuantizedNetwork):
        if getattr(net, "design_kind", None) != "network":
            raise TypeError(f"Network must be a QuantizedNetwork (golden.quantize.quantize_network),"
                            f" not {net!r:.80}")
        cfg = net.network
        if len(net.layers) != cfg.layers:
            raise ValueError(f"network.layers is {cfg.layers}, but the quantized network holds "
                             f"{len(net.layers)} layer(s)")
        H = net.config.model.channels
        for name, arr, shape in (("encoder.weight", net.encoder_w, (H, cfg.inputs)),
                                 ("encoder.bias", net.encoder_b, (H,)),
                                 ("decoder.weight", net.decoder_w, (cfg.classes, H)),
                                 ("decoder.bias", net.decoder_b, (cfg.classes,)),
                                 *((f"layers.{l}.mix.weight", w, (H, H)) for l, w in enumerate(net.mix_w)),
                                 *((f"layers.{l}.mix.bias", b, (H,)) for l, b in enumerate(net.mix_b))):
            if tuple(arr.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, not {tuple(arr.shape)}")
        for l, layer in enumerate(net.layers):
            if layer.channels != H:
                raise ValueError(f"layers.{l}: must have {H} channels (model.channels), not "
                                 f"{layer.channels}")
        if cfg.activation not in ("relu", "identity"):
            raise ValueError(f"network.activation must be 'relu' or 'identity', not "
                             f"{cfg.activation!r}")
        self.net = net
        self.channels = H
        #: a sequence-to-sequence model: the decoder at every timestep, one output beat each
        self.per_step = cfg.per_step
        #: One output beat per sequence, or per timestep (the manifest's ``stream.output_beat``).
        self.output_beat = "timestep" if self.per_step else "sequence"
        #: The multiplications the last elaboration built outside the layers and the folded
        #: units (:class:`Product`; the pooling's ``s * M``), for the resource estimate; the
        #: layers' and units' own are in their ``products``.
        self.products: list[Product] = []
        # (product_costs: set below, once the pooling's form is known)
        #: the layers take turns on one SSMLayer and one mixing unit (``hardware.fold_layers``;
        #: see "Folded layers" in the module docstring)
        self.fold_layers = net.config.hardware.fold_layers
        # D u in logic: DSP blocks are what a whole network runs out of first
        if self.fold_layers:
            if cfg.layers != 2:
                raise ValueError(f"hardware.fold_layers: folds exactly 2 layers today, not "
                                 f"{cfg.layers}")
            #: address bits of the activation memories (see _folded_layers): the bank, then
            #: FOLD_SLOTS vectors of H words
            self.fold_address = (FOLD_SLOTS * H - 1).bit_length() + 1
            self.layers = [SSMLayer(stack_layers(net.layers), constants_in_logic=True,
                                    banks=cfg.layers, input_words=self.fold_address)]
            self._cycles = self.layers[0].cycles_per_timestep * cfg.layers
        else:
            self.layers = [SSMLayer(layer, constants_in_logic=True) for layer in net.layers]
            self._cycles = max(layer.cycles_per_timestep for layer in self.layers)
        #: cycles of one layer beat (G = P / lanes): a network timestep with pipelined layers,
        #: a turn of one layer with folded ones
        self.beat_cycles = self.layers[0].cycles_per_timestep
        q, fy = net.config.quant, net.config.quant.output.format
        plan = lambda acc: dict(frac=acc.frac, sum_bits=acc.sum_bits)   # noqa: E731
        #: memory storage (the small-FPGA architecture): linear layers one output after
        #: another (SerialLinear) and the pooling's mean one channel per cycle, wherever the
        #: time per vector allows it
        self.serial = self.layers[0].uses_memory
        self.serial_pool = self.serial and self._cycles >= H
        #: register slices without their skid register (half the flip-flops, one beat every
        #: second cycle at most): where beats come at least 4 cycles apart, so that a beat that
        #: waits a cycle for its consumer never delays the next
        self.skid = not (self.serial and self._cycles >= 4)
        #: logic cost of each of the pooling's products s * M (H of them, or one serial), DSP
        #: or not
        pool_cost = logic_cost(Const(net.pool_mult), Signal(signed(pool_sum_width(net))))
        self.product_costs = ([] if self.per_step
                              else [pool_cost] * (1 if self.serial_pool else H))

        def linear(weights, bias, *, cycles, in_place=False, relu=False, **options):
            """A SerialLinear where the network is serial and time allows, reading its input in
            place when ``in_place`` (the producer holds it in a register) and applying ``relu``
            to what it reads; else FoldedLinear (the network applies the ReLU then)."""
            if self.serial and cycles >= weights.shape[0]:
                return SerialLinear(weights, bias, cycles=cycles, latch=not in_place, relu=relu,
                                    **options)
            return FoldedLinear(weights, bias, cycles=cycles, **options)

        self.encoder = None
        # (a serial network folds even a one-input encoder: H constant products would be more
        # logic than one multiply-accumulate over G cycles)
        if cfg.inputs > 1 or (self.serial and self._cycles >= H):
            self.encoder = linear(
                net.encoder_w, net.encoder_b, in_width=cfg.input.format.width,
                in_frac=cfg.input.format.frac, w_frac=cfg.encoder.format.frac,
                b_frac=cfg.encoder_bias.format.frac, **plan(net.encoder_acc), cycles=self._cycles,
                interval=self._cycles, quantizer=q.input, side_width=2,
                **({"words": True} if self.fold_layers else {}))
        mix_options = dict(in_width=fy.width, in_frac=fy.frac, w_frac=cfg.mix.format.frac,
                           b_frac=cfg.mix_bias.format.frac, **plan(net.mix_acc),
                           cycles=self.beat_cycles,
                           residual=(q.input.format.width, q.input.format.frac),
                           quantizer=q.input, in_place=True, relu=cfg.activation == "relu")
        if self.fold_layers:
            # one serial unit over the layers' stacked weights, its residual and its results
            # words of the activation memories; the side carries the bank
            self.mixers = [SerialLinear(np.concatenate(net.mix_w), np.concatenate(net.mix_b),
                                        banks=cfg.layers, latch=False, side_width=3, words=True,
                                        residual_words=self.fold_address,
                                        **{k: v for k, v in mix_options.items()
                                           if k != "in_place"})]
        else:
            self.mixers = [linear(net.mix_w[l], net.mix_b[l], side_width=2, **mix_options)
                           for l in range(cfg.layers)]
        # A timestep's residual waits from its entry into the layer until the mixing unit
        # accepts the layer's output: ceil(wait / G) <= wait // G + 1 timesteps at once at full
        # rate, one more as slack (not with memory storage, where each word is H flip-flops)
        self.fifo_depths = [(layer.latency + mix.hold) // layer.cycles_per_timestep
                            + (1 if layer.uses_memory else 2)
                            for layer, mix in zip(self.layers, self.mixers)]
        if self.fold_layers:
            layer, mix = self.layers[0], self.mixers[0]
            #: cycles from a layer-0 beat's entry until its result can enter as a layer-1 beat
            #: (the layer, the mixing unit's last word, the count of complete vectors); it must
            #: come by the turn after the next layer-0 beat (see "Folded layers")
            self.fold_ready = layer.latency + mix.hold + mix.latency + 1
            if self.fold_ready > 3 * self.beat_cycles:
                raise ValueError(f"hardware.fold_layers: a layer-1 beat is ready "
                                 f"{self.fold_ready} cycles after its layer-0 beat, later than "
                                 f"3 x G = {3 * self.beat_cycles}; use fewer lanes (G = P / "
                                 f"lanes larger)")

        # the decoder reads the pooled features once per sequence, or with a per-step readout
        # the last layer's residual stream at every timestep, in the layers' G cycles per
        # vector like a mixing unit (it latches each vector)
        features = q.input if self.per_step else cfg.pool
        decoder_cycles = self._cycles if self.per_step else cfg.steps * self._cycles

        def decoder(in_place):
            # a serial classifier's decoder also finds the arg-max as the logits complete
            serial = not self.per_step and self.serial and decoder_cycles >= cfg.classes
            return linear(net.decoder_w, net.decoder_b, in_width=features.format.width,
                          in_frac=features.format.frac, w_frac=cfg.decoder.format.frac,
                          b_frac=cfg.decoder_bias.format.frac, **plan(net.decoder_acc),
                          cycles=decoder_cycles, quantizer=cfg.logits,
                          in_place=in_place, **({"argmax": True} if serial else {}))

        self.decoder = decoder(in_place=not self.per_step)
        if (not self.per_step and self.decoder.hold + (H if self.serial_pool else 0) + 1
                > decoder_cycles):
            # read in place, the pooled features would still be held when the next sequence's
            # mean is due: latch them instead
            self.decoder = decoder(in_place=False)
        super().__init__({"u": In(stream.Signature(input_layout(net))),
                          "y": Out(stream.Signature(output_layout(net)))})

    @property
    def cycles_per_timestep(self) -> int:
        return self._cycles

    @property
    def latency(self) -> int:
        # a unit that reads its input in place accepts it `hold` cycles after it is offered
        encoder = 0 if self.encoder is None else self.encoder.latency
        # folded: the last layer-0 beat's layer-1 turn comes 3 G after it (see "Folded layers")
        fold = 3 * self.beat_cycles if self.fold_layers else 0
        layers = encoder + fold + sum(layer.latency + mix.hold + mix.latency + 1
                                      for layer, mix in zip(self.layers, self.mixers))
        if self.per_step:     # a timestep's output: the decoder's, straight to the output
            # (folded: its words gathered into a vector register first)
            return layers + int(self.fold_layers) + self.decoder.hold + self.decoder.latency
        return (layers
                + 3 - int(self._serial_argmax) - int(self._decoder_is_output)
                + (self.channels if self.serial_pool else 0)
                # folded: the pooling's sums in a memory (the word held, its sum read)
                + (2 if self.fold_layers else 0)
                + self.decoder.hold + self.decoder.latency + self._argmax_slices)

    @property
    def lanes(self) -> int:
        return self.layers[0].lanes

    @property
    def loop_stages(self) -> int:
        return self.layers[0].loop_stages

    def hardware_summary(self) -> dict:
        """The manifest's ``hardware`` section: parallelism, folding and timing."""
        return {"lanes": self.lanes,
                "complex_multipliers": self.net.config.hardware.complex_multipliers,
                "cycles_per_timestep": self.cycles_per_timestep,
                "loop_stages": self.loop_stages,
                "storage": "memory" if self.serial else "registers",
                "fold_layers": self.fold_layers,
                "layer_memories": [layer.memory_summary() for layer in self.layers],
                "layer_latency_cycles": [layer.latency for layer in self.layers],
                "residual_fifo_depths": self.fifo_depths,
                # folded linear layers: cycles per vector and multipliers (the one-input encoder
                # is combinational: fold 0, constant products)
                "linear_fold_cycles": {
                    "encoder": 0 if self.encoder is None else self.encoder.fold,
                    "mix": self.mixers[0].fold if self.mixers else 0,
                    "decoder": self.decoder.fold},
                "linear_multipliers": self.linear_multipliers,
                "latency_cycles": self.latency}

    @property
    def linear_multipliers(self) -> dict:
        """Multipliers of the linear layers (zero-weight ones pruned): {"encoder", "mix" (per
        layer), "decoder"}; the one-input encoder's are constant products."""
        encoder = (int((self.net.encoder_w != 0).sum()) if self.encoder is None
                   else self.encoder.multipliers)
        return {"encoder": encoder, "mix": [mix.multipliers for mix in self.mixers],
                "decoder": self.decoder.multipliers}

    @property
    def _serial_argmax(self) -> bool:
        """The decoder finds the arg-max itself (a serial decoder: ``SerialLinear(argmax)``)."""
        return getattr(self.decoder, "argmax", False)

    @property
    def _decoder_is_output(self) -> bool:
        """Folded layers (the small-FPGA architecture, where flip-flops are what runs out):
        the serial decoder's output register is the network's, without a logits slice."""
        return self._serial_argmax and self.fold_layers

    @property
    def _argmax_slices(self) -> int:
        """Register slices inside the arg-max tournament (see elaborate)."""
        if self._serial_argmax or self.per_step:
            return 0
        levels = (self.net.network.classes - 1).bit_length()
        return (levels - 1) // ARGMAX_LEVELS_PER_SLICE

    # --- helpers -------------------------------------------------------------------------------

    def _linear(self, m, name, inputs, in_frac, weights, w_frac, bias, b_frac, plan):
        """Full-precision ``sum_j w[o,j] x[j] + b[o]`` at ``plan.frac`` fraction
        bits, as golden ``_linear``: constant products, exact alignment shifts, combinational
        (the one-input encoder). Returns one signed(plan.sum_bits) signal per output (the plan
        proves the exact sum fits)."""
        outs = []
        for o in range(weights.shape[0]):
            terms = []
            for j, x in enumerate(inputs):
                w = int(weights[o, j])
                if w:
                    terms.append(const_product(x, w) << (plan.frac - w_frac - in_frac))
            b = int(bias[o])
            if b:
                terms.append(Const(b << (plan.frac - b_frac)))
            total = sum(terms[1:], terms[0]) if terms else Const(0, signed(1))
            outs.append(wire(m, total, f"{name}{o}_acc", signed(plan.sum_bits)))
        return outs

    # --- datapath ------------------------------------------------------------------------------

    @property
    def units(self) -> list:
        """The sub-components that multiply: SSM layers, mixing units, encoder, decoder."""
        return [*self.layers, *self.mixers, *([self.encoder] if self.encoder else []),
                self.decoder]

    def _share_dsp_products(self, platform) -> None:
        """Give each unit its share of ``hardware.dsp_products``: every unit is elaborated once
        with no budget to learn its products' logic costs, the budget goes to the most expensive
        products of the whole design, and each unit then takes the number of those that are its
        own (it picks the same ones: units rank by the same cost and order). The pooling's H
        constant products s * M take part as one more unit."""
        budget = self.net.config.hardware.dsp_products
        units = self.units
        if budget is None:
            for unit in units:
                unit.dsp_products = None
            self._pool_dsp_products = len(self.product_costs)
            return
        costs = []                                      # (cost, unit index)
        for index, unit in enumerate(units):
            unit.dsp_products = None
            unit.elaborate(platform)
            costs += [(cost, index) for cost in unit.product_costs]
        costs += [(cost, len(units)) for cost in self.product_costs]
        chosen = choose_dsp_products([cost for cost, _ in costs], budget)
        shares = [0] * (len(units) + 1)
        for (_, index), dsp in zip(costs, chosen):
            shares[index] += dsp
        for unit, share in zip(units, shares):
            unit.dsp_products = share
        self._pool_dsp_products = shares[-1]

    def elaborate(self, platform):
        m = Module()
        self.products = []
        self._share_dsp_products(platform)
        net, cfg, q = self.net, self.net.network, self.net.config.quant
        H = self.channels
        fu, fs = cfg.input.format.frac, q.input.format.frac

        if self.fold_layers:
            words = self._folded_layers(m)
        elif self.encoder is None:
            # One input: H constant products, combinational in front of layer 0's issue
            # register and residual FIFO.
            enc = self._linear(m, "enc", [self.u.payload.data[i] for i in range(cfg.inputs)], fu,
                               net.encoder_w, cfg.encoder.format.frac, net.encoder_b,
                               cfg.encoder_bias.format.frac, net.encoder_acc)
            stream_data = [wire(m, requantize(v, net.encoder_acc.frac, q.input), f"a0_{h}")
                           for h, v in enumerate(enc)]
            # The current stream: valid, samples (signed(Ws), frac Fs), flags, and the ready
            # that the next consumer drives.
            src_valid, src_start, src_last = self.u.valid, self.u.payload.start, self.u.payload.last
            src_ready = self.u.ready
        else:
            # Several inputs: the folded encoder (its output register feeds layer 0).
            enc = m.submodules.encoder = self.encoder
            m.d.comb += [enc.i.valid.eq(self.u.valid), self.u.ready.eq(enc.i.ready),
                         enc.i.payload.x.eq(self.u.payload.data),
                         enc.i.payload.side.eq(Cat(self.u.payload.start, self.u.payload.last))]
            stream_data = [wire(m, enc.o.payload.y[h], f"a0_{h}") for h in range(H)]
            src_valid, src_ready = enc.o.valid, enc.o.ready
            src_start = wire(m, enc.o.payload.side[0], "a0_start")
            src_last = wire(m, enc.o.payload.side[1], "a0_last")

        if not self.fold_layers:
            words = None
            stream_data, src_valid, src_start, src_last, src_ready = self._pipelined_layers(
                m, stream_data, src_valid, src_start, src_last, src_ready)
        if self.per_step:
            # Sequence to sequence: every timestep's vector through the decoder, whose output
            # register is the network's (no pooling, no arg-max); folded layers' result words
            # are gathered into one vector first.
            if words is not None:
                stream_data, src_valid, src_ready = self._gather_words(m, words)
            dec = m.submodules.decoder = self.decoder
            m.d.comb += [dec.i.valid.eq(src_valid), src_ready.eq(dec.i.ready),
                         *(dec.i.payload.x[h].eq(stream_data[h]) for h in range(H)),
                         self.y.valid.eq(dec.o.valid), dec.o.ready.eq(self.y.ready),
                         *(self.y.payload.data[c].eq(dec.o.payload.y[c])
                           for c in range(cfg.classes))]
            return m

        # Mean pooling: exact running sum; on the last beat, Q_pool(s * M) into a register.
        sum_width = pool_sum_width(net)
        wp = cfg.pool.format.width
        pooled = [Signal(signed(wp), name=f"pooled{h}") for h in range(H)]
        pooled_valid = Signal()
        pooled_take = Signal()
        with m.If(pooled_take):
            m.d.sync += pooled_valid.eq(0)
        multiplier = Const(net.pool_mult)

        def pool_product(index, total):
            """s * M, a multiplier when the DSP budget has room (see _share_dsp_products)."""
            in_dsp = index < self._pool_dsp_products
            if in_dsp:
                self.products.append(Product(multiplier, total, None, (int(net.pool_mult),),
                                             len(multiplier), sum_width, ("pool_total", index),
                                             "pool*m"))
            return wire(m, total * multiplier if in_dsp else product_in_logic(multiplier, total),
                        f"pool_product{index}")

        def mean_of(total):
            return requantize(pool_product(0, total), fs + net.pool_shift, cfg.pool)

        if words is not None:
            self._pool_words(m, words, pooled, pooled_valid, pooled_take, mean_of)
        else:
            self._pool_vectors(m, (stream_data, src_valid, src_start, src_last, src_ready),
                               pooled, pooled_valid, pooled_take, pool_product, mean_of)

        # The folded decoder (it latches the pooled features), then a register slice before
        # the arg-max.
        dec = m.submodules.decoder = self.decoder
        wz = net.logits_width
        m.d.comb += [dec.i.valid.eq(pooled_valid), pooled_take.eq(pooled_valid & dec.i.ready)]
        m.d.comb += [dec.i.payload.x[h].eq(pooled[h]) for h in range(H)]
        wp = prediction_width(net)
        if self._decoder_is_output:
            # The serial decoder's output register (logits and arg-max) is the network's
            # output register: a copy would cost classes x W_z flip-flops for a cut of the
            # path from y.ready into the decoder's stall logic only.
            m.d.comb += [self.y.valid.eq(dec.o.valid), dec.o.ready.eq(self.y.ready),
                         self.y.payload.prediction.eq(dec.o.payload.best),
                         *(self.y.payload.logits[c].eq(dec.o.payload.y[c])
                           for c in range(cfg.classes))]
            return m
        best = [dec.o.payload.best] if self._serial_argmax else []
        cut = m.submodules.logits_slice = RegisterSlice(cfg.classes * wz + wp * len(best),
                                                        skid=self.skid)
        m.d.comb += [cut.i.valid.eq(dec.o.valid), dec.o.ready.eq(cut.i.ready),
                     cut.i.payload.eq(Cat(*(dec.o.payload.y[c] for c in range(cfg.classes)),
                                          *(Cat(b, Const(0, wp))[:wp] for b in best)))]
        # Arg-max: the serial decoder's, or a tournament, level by level, with a register slice
        # after every ARGMAX_LEVELS_PER_SLICE levels; the logits travel beside it to the output
        # register.
        logits = cut.o.payload[:cfg.classes * wz]
        candidates = [(Const(c, wp), logits[c * wz:(c + 1) * wz].as_signed())
                      for c in range(cfg.classes)]
        if best:
            candidates = [(cut.o.payload[cfg.classes * wz:][:wp], None)]
        valid, ready = cut.o.valid, cut.o.ready     # the stream so far; `ready` is ours to drive
        level = 0
        while len(candidates) > 1:
            candidates = self._argmax_level(m, candidates, level)
            level += 1
            if len(candidates) > 1 and level % ARGMAX_LEVELS_PER_SLICE == 0:
                stage = m.submodules[f"argmax_slice{level}"] = RegisterSlice(
                    cfg.classes * wz + len(candidates) * (wp + wz), skid=self.skid)
                m.d.comb += [stage.i.valid.eq(valid), ready.eq(stage.i.ready),
                             stage.i.payload.eq(Cat(logits, *(Cat(i, v) for i, v in candidates)))]
                valid, ready = stage.o.valid, stage.o.ready
                logits = stage.o.payload[:cfg.classes * wz]
                base = cfg.classes * wz
                candidates = [(stage.o.payload[base + k * (wp + wz):][:wp],
                               stage.o.payload[base + k * (wp + wz) + wp:][:wz].as_signed())
                              for k in range(len(candidates))]
        best_index = candidates[0][0]
        if self._serial_argmax:
            # the logits slice's register is the output register (a third copy of the logits
            # would only add a cycle); y.ready reaches only the slice's output enable
            m.d.comb += [self.y.valid.eq(valid), ready.eq(self.y.ready),
                         self.y.payload.prediction.eq(best_index),
                         *(self.y.payload.logits[c].eq(logits[c * wz:(c + 1) * wz].as_signed())
                           for c in range(cfg.classes))]
            return m
        # y.ready reaches only the last stage's output enable (see "Flow control").
        m.d.comb += ready.eq(~self.y.valid | self.y.ready)
        with m.If(self.y.ready):
            m.d.sync += self.y.valid.eq(0)
        with m.If(valid & ready):
            m.d.sync += self.y.valid.eq(1)
            for c in range(cfg.classes):
                m.d.sync += self.y.payload.logits[c].eq(logits[c * wz:(c + 1) * wz].as_signed())
            m.d.sync += self.y.payload.prediction.eq(best_index)
        return m

    def _pipelined_layers(self, m, stream_data, src_valid, src_start, src_last, src_ready):
        """Each layer with its own SSMLayer, residual FIFO and mixing unit, one after another
        (every layer works on every timestep). Takes the residual stream of layer 0's input and
        returns that of the last layer's output: (samples, valid, start, last, ready), the
        ready to be driven by the consumer."""
        cfg, q, H = self.net.network, self.net.config.quant, self.channels
        ws = q.input.format.width
        for l, (layer, depth) in enumerate(zip(self.layers, self.fifo_depths)):
            m.submodules[f"layer{l}"] = layer
            res = m.submodules[f"residual{l}"] = fifo.SyncFIFO(width=H * ws + 2, depth=depth)
            # Fork: a beat enters the layer and the residual FIFO together.
            m.d.comb += [
                layer.u.valid.eq(src_valid & res.w_rdy),
                res.w_en.eq(src_valid & layer.u.ready),
                src_ready.eq(layer.u.ready & res.w_rdy),
                layer.u.payload.start.eq(src_start),
            ]
            packed = Signal(H * ws + 2, name=f"residual{l}_w_data")
            m.d.comb += res.w_data.eq(packed)
            for h in range(H):
                m.d.comb += [layer.u.payload.data[h].eq(stream_data[h]),
                             packed[h * ws:(h + 1) * ws].eq(stream_data[h])]
            m.d.comb += [packed[H * ws].eq(src_start), packed[H * ws + 1].eq(src_last)]

            # Join: the layer's output with its residual into the folded mixing unit (it
            # latches both); activation, mixing, bias, residual, requantization.
            mix = m.submodules[f"mix{l}"] = self.mixers[l]
            m.d.comb += [mix.i.valid.eq(layer.y.valid & res.r_rdy),
                         layer.y.ready.eq(mix.i.ready & res.r_rdy),
                         res.r_en.eq(mix.i.ready & layer.y.valid),
                         mix.i.payload.side.eq(res.r_data[H * ws:H * ws + 2])]
            # the activation: here on every channel, or in a serial mixing unit on the word it
            # reads
            relu = cfg.activation == "relu" and not getattr(mix, "relu", False)
            for h in range(H):
                y = layer.y.payload.data[h]
                act = wire(m, Mux(y < 0, 0, y) if relu else y, f"act{l}_{h}", y.shape())
                m.d.comb += [mix.i.payload.x[h].eq(act),
                             mix.i.payload.r[h].eq(res.r_data[h * ws:(h + 1) * ws].as_signed())]
            # A register slice after the mixing unit: its ready depends on its output's ready,
            # so without the slice the ready chain would run through every layer.
            cut = m.submodules[f"mix{l}_slice"] = RegisterSlice(H * ws + 2, skid=self.skid)
            m.d.comb += [cut.i.valid.eq(mix.o.valid),
                         cut.i.payload.eq(Cat(*(mix.o.payload.y[h] for h in range(H)),
                                              mix.o.payload.side)),
                         mix.o.ready.eq(cut.i.ready)]
            stream_data = [wire(m, cut.o.payload[h * ws:(h + 1) * ws].as_signed(),
                                      f"a{l + 1}_{h}") for h in range(H)]
            src_valid = cut.o.valid
            src_start = wire(m, cut.o.payload[H * ws], f"a{l + 1}_start")
            src_last = wire(m, cut.o.payload[H * ws + 1], f"a{l + 1}_last")
            src_ready = cut.o.ready
        return stream_data, src_valid, src_start, src_last, src_ready

    def _folded_layers(self, m):
        """The encoder and both layers on one two-bank SSMLayer and one two-bank mixing unit
        (see "Folded layers" in the module docstring), every vector in block RAM. Returns the
        last layer's results as words for the pooling: a dict of valid, index (the channel), y,
        start and last (of its timestep's sequence), final (the timestep's last word) and the
        ready that the pooling drives."""
        q, H, G = self.net.config.quant, self.channels, self.beat_cycles
        ws, S = q.input.format.width, FOLD_SLOTS
        low = self.fold_address - 1          # address bits inside one memory
        enc = m.submodules.encoder = self.encoder
        layer = m.submodules.layer0 = self.layers[0]
        mix = m.submodules.mix0 = self.mixers[0]
        m.d.comb += [enc.i.valid.eq(self.u.valid), self.u.ready.eq(enc.i.ready),
                     enc.i.payload.x.eq(self.u.payload.data),
                     enc.i.payload.side.eq(Cat(self.u.payload.start, self.u.payload.last))]

        # The activation memories: "a" holds layer 0's inputs (the encoder's results), "b"
        # layer 1's (layer 0's results after the mixing unit), S vectors of H words each, in a
        # ring: a vector is written word by word (slot `written`), complete vectors wait for
        # the layer (slot `next`), and a slot is free again once the mixing unit has read the
        # vector as its residual. Each has one write port and two read ports: the layer's
        # input and the mixing unit's residual.
        class Ring:
            def __init__(ring, name):
                ring.memory = m.submodules[f"acts_{name}"] = Memory(
                    shape=signed(ws), depth=S * H, init=[])
                ring.write = ring.memory.write_port()
                ring.read_u, ring.read_r = ring.memory.read_port(), ring.memory.read_port()
                ring.name = name
                # the slot being written and the next one the layer takes
                ring.written = Signal(range(S), name=f"{name}_written")
                ring.next = Signal(range(S), name=f"{name}_next")
                ring.complete = Signal(range(S + 1), name=f"{name}_complete")   # not yet taken
                ring.held = Signal(range(S + 1), name=f"{name}_held")   # taken or reserved, not freed
                ring.flags = [Signal(2, name=f"{name}_flags{k}") for k in range(S)]   # start, last
                ring.next_flags = select_word(m, ring.flags, ring.next, unsigned(2),
                                              f"{name}_next_flags")

            def address(ring, slot, what):
                """The word address of a slot's first word (a LUT ROM: no multiplier)."""
                return select_word(m, [Const(k * H, range(S * H)) for k in range(S)], slot,
                                   unsigned(low), f"{ring.name}_{what}_address")

        a, b = Ring("a"), Ring("b")

        def store(ring, valid, payload):
            """Write one result word into the ring's slot being written; the vector's last word
            completes it (its start and last flags stored beside it)."""
            m.d.comb += [ring.write.addr.eq(ring.address(ring.written, "written") + payload.index),
                         ring.write.data.eq(payload.y), ring.write.en.eq(valid)]
            done = wire(m, valid & payload.last, f"{ring.name}_done")
            with m.If(done):
                m.d.sync += ring.written.eq(ring.written + 1)
                for k in range(S):
                    with m.If(ring.written == k):
                        m.d.sync += ring.flags[k].eq(payload.side[:2])
            return done

        # The encoder writes "a" while a slot is free (complete vectors are held until freed).
        m.d.comb += enc.o.ready.eq(a.held < S)
        a_done = store(a, enc.o.valid & enc.o.ready, enc.o.payload)
        # The mixing unit's layer-0 results go to "b" (a slot was reserved when the layer-0
        # beat entered the layer), its layer-1 results to the pooling.
        mix_bank = wire(m, mix.o.payload.side[2], "mix_out_bank")
        out_ready = Signal(name="fold_out_ready")
        m.d.comb += mix.o.ready.eq(Mux(mix_bank, out_ready, 1))
        b_done = store(b, mix.o.valid & ~mix_bank, mix.o.payload)

        # The layer's turns. A layer-1 beat is due 3 G after its layer-0 beat entered: its
        # vector completes fold_ready cycles after that entry, then waits `wait` cycles.
        wait = 3 * G - self.fold_ready
        if wait:
            age = Signal(range(wait + 1), name="fold_age")
            due = wire(m, (b.complete != 0) & (age == wait), "fold_due")
        else:
            due = wire(m, b.complete != 0, "fold_due")
        res = m.submodules.residual0 = fifo.SyncFIFO(width=self.fold_address + 3,
                                                     depth=self.fifo_depths[0])
        turn1 = due                                     # the beat offered is layer 1's
        offered = wire(m, turn1 | ((a.complete != 0) & (b.held < S)), "fold_offered")
        fire = wire(m, offered & res.w_rdy & layer.u.ready, "fold_fire")
        base = wire(m, Mux(turn1, Cat(b.address(b.next, "next"), Const(1, 1)),
                           Cat(a.address(a.next, "next"), Const(0, 1))),
                    "fold_base", unsigned(self.fold_address))
        flags = wire(m, Mux(turn1, b.next_flags, a.next_flags), "fold_flags")
        m.d.comb += [layer.u.valid.eq(offered & res.w_rdy), res.w_en.eq(fire),
                     layer.u.payload.bank.eq(turn1), layer.u.payload.base.eq(base),
                     layer.u.payload.start.eq(flags[0]),
                     res.w_data.eq(Cat(base, flags, turn1))]
        if wait:
            with m.If(fire & turn1):
                m.d.sync += age.eq(0)
            with m.Elif((b.complete != 0) & (age != wait)):
                m.d.sync += age.eq(age + 1)
        for ring, taken in ((a, fire & ~turn1), (b, fire & turn1)):
            with m.If(taken):
                m.d.sync += ring.next.eq(ring.next + 1)
        # the mixing unit accepting a beat frees its residual's slot
        freed = wire(m, mix.i.valid & mix.i.ready, "fold_freed")
        freed_bank = wire(m, res.r_data[self.fold_address + 2], "fold_freed_bank")
        # (a: complete on the encoder's last word, taken at entry, held until freed;
        # b: reserved (held) at a layer-0 entry, complete on the mixing unit's last word, taken
        # at a layer-1 entry, freed like a)
        for ring, done, taken, reserve, free in (
                (a, a_done, fire & ~turn1, a_done, freed & ~freed_bank),
                (b, b_done, fire & turn1, fire & ~turn1, freed & freed_bank)):
            m.d.sync += [ring.complete.eq(ring.complete + done - taken),
                         ring.held.eq(ring.held + reserve - free)]

        # Reads: the layer's input samples and the mixing unit's residual, each from the memory
        # of the address's bank (its top bit), whose word arrives a cycle later.
        for addr, en, target, port in ((layer.u_addr, layer.u_en, layer.u_word, "read_u"),
                                       (mix.r_addr, mix.r_en, mix.r_data, "read_r")):
            high = Signal(name=f"fold_{port}_bank")
            with m.If(en):
                m.d.sync += high.eq(addr[low])
            port_a, port_b = getattr(a, port), getattr(b, port)
            for read in (port_a, port_b):
                m.d.comb += [read.addr.eq(addr[:low]), read.en.eq(en)]
            m.d.comb += target.eq(Mux(high, port_b.data, port_a.data))

        # Join: the layer's output with its residual's address into the mixing unit, which
        # reads the layer's output in place and applies the ReLU to what it reads.
        m.d.comb += [mix.i.valid.eq(layer.y.valid & res.r_rdy),
                     layer.y.ready.eq(mix.i.ready & res.r_rdy),
                     res.r_en.eq(mix.i.ready & layer.y.valid),
                     mix.i.payload.r_base.eq(res.r_data[:self.fold_address]),
                     mix.i.payload.side.eq(res.r_data[self.fold_address:]),
                     mix.i.payload.bank.eq(freed_bank)]
        for h in range(H):
            m.d.comb += mix.i.payload.x[h].eq(layer.y.payload.data[h])
        return {"valid": wire(m, mix.o.valid & mix_bank, "a2_valid"),
                "index": mix.o.payload.index, "y": mix.o.payload.y,
                "start": mix.o.payload.side[0], "last": mix.o.payload.side[1],
                "final": mix.o.payload.last, "ready": out_ready}

    def _pool_vectors(self, m, source, pooled, pooled_valid, pooled_take, pool_product,
                      mean_of):
        """The mean pooling of a whole vector per beat (``source``: the last layer's residual
        stream, its ready driven here): exact running sums in registers, and on a sequence's
        last beat every channel's mean at once, or with a serial pooling one channel per cycle
        (H cycles)."""
        stream_data, src_valid, src_start, src_last, src_ready = source
        net, cfg, H = self.net, self.net.network, self.channels
        fs, sum_width = net.config.quant.input.format.frac, pool_sum_width(net)
        sums = [Signal(signed(sum_width), name=f"pool_sum{h}") for h in range(H)]
        totals = [wire(m, Mux(src_start, 0, sums[h]) + stream_data[h], f"pool_total{h}",
                       signed(sum_width)) for h in range(H)]
        take = src_valid & src_ready
        if not self.serial_pool:
            # Every channel's mean at the sequence's last beat.
            m.d.comb += src_ready.eq(~src_last | ~pooled_valid | pooled_take)
            means = [pool_product(h, totals[h]) for h in range(H)]
            with m.If(take):
                m.d.sync += [s.eq(t) for s, t in zip(sums, totals)]
                with m.If(src_last):
                    m.d.sync += pooled_valid.eq(1)
                    m.d.sync += [pooled[h].eq(requantize(means[h], fs + net.pool_shift, cfg.pool))
                                 for h in range(H)]
        else:
            # After the last beat, one channel's mean per cycle (H cycles, at most G: the next
            # sequence's beats are held meanwhile, and none is due before G cycles).
            walking = Signal()
            channel = Signal(range(H), name="pool_channel") if H > 1 else Const(0, 1)
            m.d.comb += src_ready.eq(~walking & (~src_last | ~pooled_valid | pooled_take))
            mean = mean_of(select_word(m, sums, channel, signed(sum_width), "pool_sel"))
            with m.If(take):
                m.d.sync += [s.eq(t) for s, t in zip(sums, totals)]
                with m.If(src_last):
                    m.d.sync += walking.eq(1)
            with m.If(walking):
                for h in range(H):
                    with m.If(channel == h):
                        m.d.sync += pooled[h].eq(mean)
                with m.If(channel == H - 1):
                    m.d.sync += [walking.eq(0), pooled_valid.eq(1)]
                    if H > 1:
                        m.d.sync += channel.eq(0)
                if H > 1:
                    with m.Else():
                        m.d.sync += channel.eq(channel + 1)

    def _gather_words(self, m, words):
        """Folded layers' result words of a timestep into one vector register (a per-step
        readout's decoder input): returns (samples, valid, ready), the ready driven by the
        consumer. Words wait while a gathered vector is not yet taken."""
        H, width = self.channels, len(words["y"])
        vector = [Signal(signed(width), name=f"step_word{h}") for h in range(H)]
        full, ready = Signal(name="step_full"), Signal(name="step_ready")
        m.d.comb += words["ready"].eq(~full)
        with m.If(words["valid"] & ~full):
            for h in range(H):
                with m.If(words["index"] == h):
                    m.d.sync += vector[h].eq(words["y"])
            with m.If(words["final"]):
                m.d.sync += full.eq(1)
        with m.If(full & ready):
            m.d.sync += full.eq(0)
        return vector, full, ready

    def _pool_words(self, m, words, pooled, pooled_valid, pooled_take, mean_of):
        """The mean pooling of folded layers, one result word (channel) at a time: the exact
        sums in a memory of H words (read, add, write back a cycle later: one adder, no H
        registers), and after a sequence's last word one channel's mean per cycle from the same
        read port into ``pooled`` (H + 1 cycles)."""
        H, sum_width = self.channels, pool_sum_width(self.net)
        memory = m.submodules.pool_sums = Memory(shape=signed(sum_width), depth=H, init=[])
        write = memory.write_port()
        # a word's read meets the previous word's write when both are the same channel (H = 1)
        read = memory.read_port(transparent_for=(write,))
        walking, draining = Signal(name="pool_walking"), Signal(name="pool_draining")
        channel = Signal(range(H), name="pool_channel") if H > 1 else Const(0, 1)
        done_channel = Signal.like(channel, name="pool_done_channel") if H > 1 else channel
        # the word that completes a sequence starts the walk (when the decoder has taken the
        # previous sequence's features)
        final = wire(m, words["last"] & words["final"], "pool_last")
        # the taken word, a cycle later beside its channel's sum
        held = {"valid": Signal(name="pool_word_valid"), "index": Signal.like(channel),
                "y": Signal.like(words["y"], name="pool_word_y"),
                "start": Signal(name="pool_word_start"), "final": Signal(name="pool_word_final")}
        # no word from a sequence's last until its walk is over (the next sequence's first
        # words would restart the sums being walked)
        m.d.comb += words["ready"].eq(~held["final"] & ~walking & ~draining &
                                      (~final | ~pooled_valid | pooled_take))
        take = wire(m, words["valid"] & words["ready"], "pool_take")
        m.d.sync += [held["valid"].eq(take), held["index"].eq(words["index"]),
                     held["y"].eq(words["y"]), held["start"].eq(words["start"]),
                     held["final"].eq(take & final)]
        m.d.comb += [read.addr.eq(Mux(walking, channel, words["index"])), read.en.eq(1),
                     write.addr.eq(held["index"]), write.en.eq(held["valid"]),
                     write.data.eq(Mux(held["start"], 0, read.data) + held["y"])]
        with m.If(held["final"]):
            m.d.sync += walking.eq(1)
        with m.If(walking):
            m.d.sync += draining.eq(channel == H - 1)
            if H > 1:
                m.d.sync += [channel.eq(Mux(channel == H - 1, 0, channel + 1)),
                             done_channel.eq(channel)]
            with m.If(channel == H - 1):
                m.d.sync += walking.eq(0)
        # the word read for channel c arrives a cycle later: its mean into pooled[c]
        reading = Signal(name="pool_reading")
        m.d.sync += reading.eq(walking)
        mean = mean_of(read.data)
        with m.If(reading):
            for h in range(H):
                with m.If(done_channel == h):
                    m.d.sync += pooled[h].eq(mean)
        with m.If(draining):
            m.d.sync += [draining.eq(0), pooled_valid.eq(1)]

    def _argmax_level(self, m, candidates, level):
        """One tournament level over (index, value) pairs in index order: neighbours meet, the
        right one wins only when strictly greater, so ties go to the lowest index
        (numpy.argmax); an odd last candidate passes through."""
        winners = []
        for k in range(0, len(candidates) - 1, 2):
            (li, lv), (ri, rv) = candidates[k], candidates[k + 1]
            right = wire(m, rv > lv, f"argmax{level}_{k // 2}_right")
            winners.append((wire(m, Mux(right, ri, li), f"argmax{level}_{k // 2}_index"),
                            wire(m, Mux(right, rv, lv), f"argmax{level}_{k // 2}_value")))
        if len(candidates) % 2:
            winners.append(candidates[-1])
        return winners
