"""Seeded Gaussian noise on weights and states: QS4D's analog-noise robustness experiment.

An analog (in-memory) SSM accelerator stores each weight as a programmed conductance and each
state as a charge: both come out perturbed. QS4D (arXiv 2507.06079) models that as Gaussian noise
and reports that QAT-trained models lose less accuracy under it than post-training-quantized ones.
This module is that noise model for ssmgen's torch network (``train/model.py``):

* **weights**: every weight tensor (encoder, mixing, decoder weights and biases; each layer's
  Abar, Bbar, C, D, real and imaginary parts together) gets ``N(0, (weight * r)^2)`` added
  element-wise, ``r`` = the tensor's largest magnitude (max over |re|, |im| for a complex one).
  One draw per tensor per *device* (``NoiseInjector.resample``): an evaluation of a whole test
  split sees the same perturbed weights, as one programmed chip would; repeats with other seeds
  are other chips.
* **state**: every state, every timestep, gets ``N(0, (state * r_p)^2)`` added after its update
  (after its quantization in a quantized model), ``r_p`` = the range of state p's own format,
  ``2^(I_p - 1)`` (the per-mode formats of the model's config: a float model is given the ranges
  of its PTQ config, so that float, PTQ and QAT models see the same absolute noise).

Noise is added to the dequantized (exact real) values, so it is continuous: the quantized model
under noise is the golden integer network's arithmetic with analog perturbations, no longer an
integer computation. With both levels zero nothing is drawn and the forward pass is unchanged
(bit-equal to the golden network in eval mode; tests/test_noise.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Noise", "NoiseInjector", "state_ranges", "VARIANTS", "load_variant", "noisy_accuracy"]


@dataclass(frozen=True)
class Noise:
    """Relative noise levels (standard deviations as fractions of a range) and the seed."""
    weight: float = 0.0
    state: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("weight", "state"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"noise.{name}: must be a number in 0..1 (a standard deviation "
                                 f"relative to the range), not {value!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"noise.seed: must be an integer >= 0, not {self.seed!r}")

    @property
    def zero(self) -> bool:
        return self.weight == 0 and self.state == 0


def state_ranges(qnet) -> list[np.ndarray]:
    """Per layer, the range ``2^(I_p - 1)`` of each state's format, in real units (P,)."""
    return [np.ldexp(1.0, (layer.config.quant.state.format.width - 1)
                     - np.asarray(layer.state_frac, dtype=np.int64))
            for layer in qnet.layers]           # (a layer may have its own state width)


class NoiseInjector:
    """Adds :class:`Noise` to a forward pass of ``SSMNetwork`` (its ``noise`` argument).

    ``ranges``: :func:`state_ranges` of the quantized network whose state formats define the
    state noise's scale (needed when ``noise.state > 0``)."""

    def __init__(self, noise: Noise, ranges: list[np.ndarray] | None = None):
        if noise.state > 0 and ranges is None:
            raise ValueError("state noise needs the state formats' ranges (state_ranges(qnet))")
        self.noise = noise
        self._ranges = [torch.as_tensor(r, dtype=torch.float64) for r in ranges or []]
        self._generator = torch.Generator().manual_seed(noise.seed)
        self._draws: dict[str, torch.Tensor] = {}

    def resample(self) -> None:
        """A new device: the next forward pass draws new weight perturbations (state noise is
        drawn afresh at every step anyway)."""
        self._draws.clear()

    def _normal(self, shape) -> torch.Tensor:
        return torch.randn(shape, generator=self._generator, dtype=torch.float64)

    def weight(self, w: torch.Tensor, name: str) -> torch.Tensor:
        """``w`` (real or complex) plus this device's perturbation of tensor ``name``."""
        if self.noise.weight == 0:
            return w
        if name not in self._draws:
            shape = w.shape + ((2,) if w.is_complex() else ())
            self._draws[name] = self._normal(shape)
        draw, v = self._draws[name], w.detach()      # (the scale is not trained through)
        if w.is_complex():
            scale = self.noise.weight * torch.maximum(v.real.abs().max(), v.imag.abs().max())
            return torch.complex(w.real + scale * draw[..., 0], w.imag + scale * draw[..., 1])
        return w + self.noise.weight * v.abs().max() * draw

    def state(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """States ``x`` (..., P) of layer ``layer`` after one update, plus fresh noise."""
        if self.noise.state == 0:
            return x
        if layer >= len(self._ranges) or self._ranges[layer].shape[-1] != x.shape[-1]:
            raise ValueError(f"state noise: no state ranges for layer {layer} with "
                             f"{x.shape[-1]} states")
        return x + self.noise.state * self._ranges[layer] * self._normal(x.shape)


#: The three models of a MODEL_DIR that ``ssmgen train`` writes, by what they are.
VARIANTS = ("float", "ptq", "qat")


def load_variant(model_dir, variant: str):
    """(torch model in eval mode, config or None, quantized network for the state ranges) of
    one model of a MODEL_DIR: ``float`` (the float-trained network, its checkpoint), ``ptq``
    (that network through ``ptq_config.toml``) or ``qat`` (the QAT checkpoint through
    ``config.toml``, i.e. the exported model; the float checkpoint when QAT was skipped)."""
    from ..golden.quantize import load_network
    from ..spec.config import load_config
    from ..spec.errors import ConfigError
    from .loop import load_checkpoint

    if variant not in VARIANTS:
        raise ValueError(f"variant: must be one of {', '.join(VARIANTS)}, not {variant!r}")
    model_dir = Path(model_dir)
    checkpoints = model_dir / "checkpoints"
    qat = checkpoints / "qat.pt"
    checkpoint = qat if variant == "qat" and qat.exists() else checkpoints / "float.pt"
    if not checkpoint.exists():
        raise ConfigError(f"{model_dir}: no {checkpoint.relative_to(model_dir)}; noise "
                          f"evaluation needs a MODEL_DIR written by `ssmgen train`")
    metrics = json.loads((model_dir / "metrics.json").read_text())
    model = load_checkpoint(checkpoint)
    if variant != "qat" and metrics.get("equalize", False):
        model.equalize_()        # as PTQ saw it (function-preserving for the float model)
    model.eval()
    ptq_config = load_config(model_dir / "ptq_config.toml")
    config = (None if variant == "float" else ptq_config if variant == "ptq"
              else load_config(model_dir / "config.toml"))
    qnet = load_network(ptq_config if config is None else config)
    return model, config, qnet


@torch.no_grad()
def noisy_accuracy(model, config, qnet, x, y, noise: Noise, *, batch_size: int = 512) -> float:
    """Test accuracy (a sequence model: NRMSE, ``train.loop.score``) of one device (one weight
    draw) under ``noise``; at zero noise the quantized models' outputs are the golden integer
    network's."""
    from .loop import score

    model.eval()
    injector = None if noise.zero else NoiseInjector(noise, state_ranges(qnet))
    xt = torch.as_tensor(x, dtype=torch.float64)
    logits = torch.cat([model(xt[i:i + batch_size], config, injector)
                        for i in range(0, len(xt), batch_size)]).numpy()
    return score(logits, y)
