"""PyTorch S4D / S5 network with the architecture of ``golden/network.py``.

Parameters are continuous (S4D-Lin / S5 initialization): ``A = -exp(log_neg_re) + i a_im``, a
step ``dt = exp(log_dt)`` (one per channel for s4d, one per state for s5), complex B and C, real
D; the discrete weights are their zero-order hold, ``Abar = exp(dt A)``,
``Bbar = (Abar - 1) / A * B`` (as ``golden.discretize.zoh``). Everything is float64.

Two forward passes:

* float (``config=None``): each SSM layer as an FFT convolution with its kernel (fast, for
  training); the golden float reference ``run_float_network`` computes the same map.
* quantized (``config`` = an SSMConfig with ``[network]``): the recurrence timestep by timestep
  with every weight and activation fake-quantized through golden/ (``train.fakequant``), in the
  order of ``golden/network.py``'s specification. In eval mode, when
  ``QuantizedNetwork.float64_exact`` holds, its logits equal the golden integer network's bit for
  bit (tests/test_train.py checks it); in training mode dropout is applied after the activation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..golden.network import pool_constants
from ..spec.network_config import READOUTS
from ..spec.weights import NetworkWeights, SSMWeights
from .fakequant import fake_quant, fake_quant_layer, fake_quant_weight

__all__ = ["SSMLayer", "SSMNetwork"]

DTYPE = torch.float64


def _activation(x, quantizer, learned, key: str):
    """An activation into its format (golden's rounding), with its learned fraction bits'
    gradient when ``learned`` (``train.learned_formats.ActivationFormats``) is given."""
    q = fake_quant(x, quantizer)
    return q if learned is None else learned.attach(key, x, q, quantizer)


class SSMLayer(nn.Module):
    """One diagonal SSM layer (H channels). s4d: ``modes`` = M complex modes per channel
    (P = H*M, flat index p = h*M + m); s5: ``modes`` = P states."""

    def __init__(self, kind: str, channels: int, modes: int, *, dt_min: float, dt_max: float,
                 generator: torch.Generator):
        super().__init__()
        self.kind, self.channels, self.modes = kind, channels, modes
        H = channels
        g = generator
        if kind == "s4d":
            P = H * modes
            a_im = math.pi * torch.arange(modes, dtype=DTYPE).repeat(H)
            n_dt = H
            b = torch.ones(P, dtype=torch.complex128)
            c = torch.randn(P, dtype=torch.complex128, generator=g) * 0.5
        elif kind == "s5":
            P = modes
            a_im = math.pi * torch.arange(P, dtype=DTYPE)
            n_dt = P
            b = torch.randn(P, H, dtype=torch.complex128, generator=g) / math.sqrt(H)
            c = torch.randn(H, P, dtype=torch.complex128, generator=g) / math.sqrt(P)
        else:
            raise ValueError(f"kind must be 's4d' or 's5', not {kind!r}")
        self.states = P
        u = torch.rand(n_dt, dtype=DTYPE, generator=g)
        self.log_dt = nn.Parameter(math.log(dt_min) + u * (math.log(dt_max) - math.log(dt_min)))
        self.log_neg_re = nn.Parameter(torch.full((P,), math.log(0.5), dtype=DTYPE))
        self.a_im = nn.Parameter(a_im)
        self.b_re, self.b_im = nn.Parameter(b.real.clone()), nn.Parameter(b.imag.clone())
        self.c_re, self.c_im = nn.Parameter(c.real.clone()), nn.Parameter(c.imag.clone())
        self.d = nn.Parameter(torch.randn(H, dtype=DTYPE, generator=g))

    def ssm_parameters(self):
        """The recurrence's own parameters (smaller learning rate, no weight decay)."""
        return [self.log_dt, self.log_neg_re, self.a_im]

    def discrete(self):
        """(abar (P,), bbar (P,) | (P, H), c (P,) | (H, P), d (H,)): complex128 / float64."""
        A = torch.complex(-torch.exp(self.log_neg_re), self.a_im)
        dt = torch.exp(self.log_dt)
        if self.kind == "s4d":
            dt = dt.repeat_interleave(self.modes)
        abar = torch.exp(dt * A)
        factor = (abar - 1) / A
        b = torch.complex(self.b_re, self.b_im)
        bbar = factor * b if self.kind == "s4d" else factor[:, None] * b
        return abar, bbar, torch.complex(self.c_re, self.c_im), self.d

    @torch.no_grad()
    def equalize_(self) -> np.ndarray:
        """Rescale each state p: B's row by s_p, C's column by 1/s_p, which leaves the layer's map
        unchanged (the state x_p scales by s_p, and per-mode state formats absorb that). With
        s_p = sqrt(r_c / r_b) (r: max |re|, |im| of Bbar_p resp. C_p), every mode gets the same
        magnitude sqrt(r_b r_c) in Bbar and in C: the per-tensor formats then give each mode the
        most precision the pair allows (cross-layer equalization, Nagel et al. 2019). At 4-bit
        weights, the slow modes' small Bbar otherwise round to zero. Returns s (P,)."""
        _, bbar, c, _ = self.discrete()
        def peak(z, dim):
            z = torch.maximum(z.real.abs(), z.imag.abs())
            return z if z.dim() == 1 else z.amax(dim=dim)
        rb = peak(bbar, 1)                                     # s5: bbar (P, H); c (H, P)
        rc = peak(c, 0)
        scale = torch.where((rb > 0) & (rc > 0), torch.sqrt(rc / rb.clamp_min(1e-300)),
                            torch.ones_like(rb))
        if self.kind == "s4d":
            for t in (self.b_re, self.b_im):
                t.mul_(scale)
            for t in (self.c_re, self.c_im):
                t.div_(scale)
        else:
            for t in (self.b_re, self.b_im):
                t.mul_(scale[:, None])
            for t in (self.c_re, self.c_im):
                t.div_(scale[None, :])
        return scale.numpy().copy()

    def weights(self) -> SSMWeights:
        abar, bbar, c, d = (t.detach().cpu().numpy() for t in self.discrete())
        return SSMWeights(self.kind, abar=abar.astype(np.complex128), bbar=bbar.astype(np.complex128),
                          c=c.astype(np.complex128), d=d.astype(np.float64))

    def forward_float(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, T, H) -> y (B, T, H) as a causal FFT convolution with the kernel."""
        abar, bbar, c, d = self.discrete()
        T = u.shape[1]
        powers = torch.exp(torch.log(abar)[None, :] * torch.arange(T, dtype=DTYPE)[:, None])
        n = 2 * T
        u_f = torch.fft.rfft(u, n=n, dim=1)
        if self.kind == "s4d":
            K = (powers * (c * bbar)[None]).real.reshape(T, self.channels, self.modes).sum(-1)
            y_f = u_f * torch.fft.rfft(K, n=n, dim=0)[None]
        else:
            K = torch.einsum("hp,tp,pk->thk", c, powers, bbar).real
            y_f = torch.einsum("fhk,bfk->bfh", torch.fft.rfft(K, n=n, dim=0), u_f)
        return torch.fft.irfft(y_f, n=n, dim=1)[:, :T] + d * u

    def forward_quant(self, a: torch.Tensor, config, noise=None, index: int = 0,
                      learned=None) -> torch.Tensor:
        """a (B, T, H): exact values in quant.input -> y (B, T, H) in quant.output, the golden
        integer model's recurrence (full-precision accumulators) in float64. ``noise``
        (``train.noise.NoiseInjector``) perturbs the quantized weights and each quantized state
        of this layer (number ``index``); ``learned`` (``train.learned_formats``) learns the
        output format's fraction bits."""
        q = config.quant
        if q.state_acc is not None or q.output_acc is not None:
            raise ValueError("QAT supports full-precision accumulators only "
                             "(quant.state_acc / quant.output_acc = \"full\")")
        abar, bbar, c, d = self.discrete()
        ar, ai, br, bi, cr, ci, dq, qlayer = fake_quant_layer(abar, bbar, c, d, config, self.kind)
        weights = (torch.complex(ar, ai), torch.complex(br, bi), torch.complex(cr, ci), dq)
        return self._recur(a, weights, noise, index,
                           state_q=lambda x: fake_quant(x, q.state, qlayer.state_frac),
                           output_q=lambda y: _activation(y, q.output, learned, "ssm_out"))

    def forward_recurrent(self, a: torch.Tensor, noise=None, index: int = 0) -> torch.Tensor:
        """The float map of :meth:`forward_float`, timestep by timestep (so that ``noise`` can
        reach the state): for float models under noise."""
        return self._recur(a, self.discrete(), noise, index)

    def _recur(self, a, weights, noise, index, state_q=None, output_q=None):
        """``x[k] = Abar x[k-1] + Bbar u[k]``, ``y[k] = Re(C x[k]) + D u[k]`` over a (B, T, H),
        each state through ``state_q`` and each output through ``output_q`` when given."""
        if noise is not None:
            weights = tuple(noise.weight(w, f"layers.{index}.{name}")
                            for w, name in zip(weights, ("abar", "bbar", "c", "d")))
        abar, bbar, c, d = weights
        ar, ai, br, bi, cr, ci = abar.real, abar.imag, bbar.real, bbar.imag, c.real, c.imag
        B, T, H = a.shape
        P = self.states
        xr = a.new_zeros(B, P)
        xi = a.new_zeros(B, P)
        ys = []
        for k in range(T):
            u = a[:, k]
            if self.kind == "s4d":
                uc = u.repeat_interleave(self.modes, dim=1)              # (B, P): u[channel[p]]
                nr = ar * xr - ai * xi + br * uc
                ni = ar * xi + ai * xr + bi * uc
            else:
                nr = ar * xr - ai * xi + u @ br.T
                ni = ar * xi + ai * xr + u @ bi.T
            x = torch.stack([nr, ni])
            if state_q is not None:
                x = state_q(x)
            if noise is not None:
                x = noise.state(x, index)
            xr, xi = x.unbind(0)
            if self.kind == "s4d":
                out = (cr * xr - ci * xi).reshape(B, H, self.modes).sum(-1)
            else:
                out = xr @ cr.T - xi @ ci.T
            y = out + d * u
            ys.append(y if output_q is None else output_q(y))
        return torch.stack(ys, dim=1)


class SSMNetwork(nn.Module):
    """encoder -> L x [SSM -> activation -> mixing -> + residual] -> mean over time -> decoder
    (``readout = "mean"``: logits (B, classes)), or -> decoder at every timestep (``readout =
    "per_step"``: outputs (B, T, classes), sequence to sequence)."""

    def __init__(self, *, kind: str = "s4d", inputs: int = 1, channels: int = 32,
                 modes: int = 16, layers: int = 2, classes: int = 10, activation: str = "relu",
                 dropout: float = 0.1, seed: int = 0, dt_min: float = 0.001, dt_max: float = 0.1,
                 readout: str = "mean"):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, not {readout!r}")
        self.meta = dict(kind=kind, inputs=inputs, channels=channels, modes=modes, layers=layers,
                         classes=classes, activation=activation, dropout=dropout, seed=seed,
                         dt_min=dt_min, dt_max=dt_max)
        if readout != "mean":        # (a classifier's meta, and so its checkpoints, unchanged)
            self.meta["readout"] = readout
        self.readout = readout
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.encoder = nn.Linear(inputs, channels, dtype=DTYPE)
        self.layers = nn.ModuleList(SSMLayer(kind, channels, modes, dt_min=dt_min, dt_max=dt_max,
                                             generator=g) for _ in range(layers))
        self.mix = nn.ModuleList(nn.Linear(channels, channels, dtype=DTYPE) for _ in range(layers))
        self.decoder = nn.Linear(channels, classes, dtype=DTYPE)
        self.dropout = nn.Dropout(dropout)
        self.activation = activation

    @property
    def states(self) -> int:
        return self.layers[0].states

    def equalize_(self) -> None:
        """Function-preserving B/C rescaling of every layer (``SSMLayer.equalize_``)."""
        for layer in self.layers:
            layer.equalize_()

    def _act(self, y):
        return torch.relu(y) if self.activation == "relu" else y

    def _features(self, a: torch.Tensor) -> torch.Tensor:
        """What the float decoder reads: the mean over time, or every timestep."""
        return a if self.readout == "per_step" else a.mean(dim=1)

    def forward(self, u: torch.Tensor, config=None, noise=None, learned=None) -> torch.Tensor:
        """u (B, T, inputs) float64 -> logits (B, classes), or outputs (B, T, classes) with a
        per-step readout; quantized when ``config`` is given; with ``noise``
        (``train.noise.NoiseInjector``) on weights and states; with ``learned``
        (``train.learned_formats.ActivationFormats``, QAT) its activation formats, learned."""
        if learned is not None:
            config = learned.config()
        if config is not None:
            return self._forward_quant(u, config, noise, learned)
        if noise is None:
            a = self.encoder(u)
            for layer, mix in zip(self.layers, self.mix):
                a = a + mix(self.dropout(self._act(layer.forward_float(a))))
            return self.decoder(self._features(a))

        def linear(x, module, name):
            return (x @ noise.weight(module.weight, name).T
                    + noise.weight(module.bias, f"{name}_bias"))

        a = linear(u, self.encoder, "encoder")
        for l, (layer, mix) in enumerate(zip(self.layers, self.mix)):
            y = layer.forward_recurrent(a, noise, l)
            a = a + linear(self.dropout(self._act(y)), mix, f"mix{l}")
        return linear(self._features(a), self.decoder, "decoder")

    def _forward_quant(self, u, config, noise=None, learned=None):
        net, q = config.network, config.quant
        if net.steps != u.shape[1]:
            raise ValueError(f"network.steps = {net.steps}, but the input has {u.shape[1]} steps")

        def linear(x, module, wq, bq, name, key=None):
            w = fake_quant_weight(module.weight, wq, name)
            b = fake_quant_weight(module.bias, bq, f"{name}_bias")
            if noise is not None:       # (key: the tensor's own name, e.g. one layer's mix)
                key = key or name
                w, b = noise.weight(w, key), noise.weight(b, f"{key}_bias")
            return x @ w.T + b

        u = fake_quant(u, net.input)
        a = _activation(linear(u, self.encoder, net.encoder, net.encoder_bias, "encoder"),
                        q.input, learned, "stream")
        for l, (layer, mix) in enumerate(zip(self.layers, self.mix)):
            y = layer.forward_quant(a, config.layer(l), noise, l, learned)
            r = self.dropout(self._act(y))
            a = _activation(linear(r, mix, net.mix, net.mix_bias, "mix", f"mix{l}") + a,
                            q.input, learned, "stream")
        if net.per_step:                 # the decoder reads the stream at every timestep
            features = a
        else:
            mult, shift = pool_constants(net.steps)
            features = fake_quant(a.sum(dim=1) * (mult * 2.0 ** -shift), net.pool)
        logits = linear(features, self.decoder, net.decoder, net.decoder_bias, "decoder")
        return logits if net.logits is None else fake_quant(logits, net.logits)

    def network_weights(self) -> NetworkWeights:
        """The float weights (discrete SSM weights by ZOH) for golden/ and the export."""
        def arr(t):
            return t.detach().cpu().numpy().astype(np.float64).copy()
        return NetworkWeights(arr(self.encoder.weight), arr(self.encoder.bias),
                              tuple(layer.weights() for layer in self.layers),
                              tuple(arr(m.weight) for m in self.mix),
                              tuple(arr(m.bias) for m in self.mix),
                              arr(self.decoder.weight), arr(self.decoder.bias))
