"""Training and evaluation loops (seeded, tqdm progress bars, checkpoints)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..golden.network import predict, quantize_network_input, run_integer_network
from ..golden.quantize import quantize_network
from ..spec.formats import to_float
from .model import SSMNetwork
from .tasks import nrmse

#: Softening of the logits for distillation (Hinton et al. use 2..20; 2 suits 10 classes).
DISTILL_TEMPERATURE = 2.0

__all__ = ["fit", "evaluate_torch", "evaluate_golden", "golden_logits", "save_checkpoint",
           "load_checkpoint", "score", "nrmse", "is_regression"]


def is_regression(y) -> bool:
    """Targets of a sequence-to-sequence task (float, (n, T, outputs)) rather than class labels
    (integers, (n,))."""
    return np.asarray(y).ndim == 3


def score(outputs, y) -> float:
    """A classifier's accuracy (arg-max of the logits), or a sequence model's NRMSE."""
    if is_regression(y):
        return nrmse(outputs, y)
    return float(np.mean(predict(outputs) == np.asarray(y)))


def _progress(iterable, *, desc: str, enabled: bool, total=None):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr,
                dynamic_ncols=True)


def fit(model: SSMNetwork, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
        batch_size: int = 64, seed: int = 0, config=None, weight_decay: float = 0.01,
        ssm_lr_scale: float = 0.5, progress: bool = True, desc: str = "train",
        checkpoint: Path | None = None, log=None, augment=None, noise=None, teacher=None,
        distill: float = 0.0, temperature: float = DISTILL_TEMPERATURE, learned=None,
        format_lr: float = 0.02) -> list[dict]:
    """AdamW with a cosine schedule (one warm-up epoch), cross-entropy. ``config``: QAT (the
    quantized forward pass with fake quantization, formats fixed by the config). The recurrence's
    own parameters (A, dt) get ``lr * ssm_lr_scale`` and no weight decay. Returns per-epoch
    history; with ``checkpoint``, saves the model after every epoch (``load_checkpoint``).
    ``augment(x_batch, rng)``: training-time augmentation (seeded from ``seed``). ``noise``
    (``train.noise.NoiseInjector``): noise-aware training, new weight noise every batch.
    ``teacher`` (a float SSMNetwork, frozen) with ``distill`` = a in (0, 1]: knowledge
    distillation (Hinton et al. 2015), loss = (1 - a) CE + a T^2 KL(teacher || student) on
    logits softened by ``temperature`` T. Targets ``y`` of a sequence-to-sequence model (float,
    (n, T, outputs); ``is_regression``) train with the mean squared error instead of the
    cross-entropy (and without distillation). ``learned``
    (``train.learned_formats.ActivationFormats``, QAT): the activation formats' fraction bits are
    learned too (instead of ``config``'s), at ``format_lr`` (a fraction bit is a unit: a rate
    near ``lr`` would never move one across a rounding boundary in a few epochs)."""
    regression = is_regression(y)
    if regression and teacher is not None and distill > 0:
        raise ValueError("distillation (--qat-distill) is for classifiers, not sequence "
                         "models (per-step readout)")
    aug_rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ssm = [p for layer in model.layers for p in layer.ssm_parameters()]
    ssm_ids = {id(p) for p in ssm}
    other = [p for p in model.parameters() if id(p) not in ssm_ids]
    groups = [{"params": other, "weight_decay": weight_decay},
              {"params": ssm, "weight_decay": 0.0, "lr": lr * ssm_lr_scale}]
    if learned is not None:
        groups.append({"params": list(learned.parameters()), "weight_decay": 0.0,
                       "lr": format_lr})
    opt = torch.optim.AdamW(groups, lr=lr)
    base = [group["lr"] for group in opt.param_groups]
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64 if regression else torch.int64)
    n = len(xt)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    warmup = steps_per_epoch
    loss_fn = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    history = []
    step = 0
    bar = _progress(range(epochs), desc=desc, enabled=progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=g)
        start, total_loss, correct = time.perf_counter(), 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
            for group, lr0 in zip(opt.param_groups, base):
                group["lr"] = lr0 * scale
            xb = xt[idx]
            if augment is not None:
                xb = torch.as_tensor(augment(xb.numpy(), aug_rng), dtype=torch.float64)
            if noise is not None:
                noise.resample()
            logits = model(xb, config, noise, learned)
            loss = loss_fn(logits, yt[idx])
            if teacher is not None and distill > 0:
                with torch.no_grad():
                    soft = torch.softmax(teacher(xb) / temperature, dim=-1)
                kl = nn.functional.kl_div(torch.log_softmax(logits / temperature, dim=-1), soft,
                                          reduction="batchmean")
                loss = (1 - distill) * loss + distill * temperature ** 2 * kl
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            total_loss += loss.item() * len(idx)
            if not regression:
                correct += int((logits.argmax(-1) == yt[idx]).sum())
        record = {"epoch": epoch + 1, "loss": total_loss / n,
                  "seconds": time.perf_counter() - start}
        if not regression:
            record["train_acc"] = correct / n
        history.append(record)
        shown = {"loss": f"{record['loss']:.4g}"}
        if not regression:
            shown["acc"] = f"{record['train_acc']:.3f}"
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(**shown)
        if log is not None:
            log(f"{desc} epoch {epoch + 1}/{epochs}: "
                + ", ".join(f"{'train acc' if k == 'acc' else k} {v}" for k, v in shown.items()))
        if checkpoint is not None:
            save_checkpoint(model, checkpoint, extra={"phase": desc, "epoch": epoch + 1})
    return history


@torch.no_grad()
def evaluate_torch(model: SSMNetwork, x, y, *, config=None, batch_size: int = 512):
    """(score, logits float64 (n, classes) or outputs (n, T, outputs)) of the torch forward pass
    in eval mode; the score is the accuracy, or a sequence model's NRMSE (:func:`score`)."""
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float64)
    logits = torch.cat([model(xt[i:i + batch_size], config) for i in range(0, len(xt), batch_size)])
    logits = logits.numpy()
    return score(logits, y), logits


def golden_logits(qnet, x, *, batch_size: int = 512) -> np.ndarray:
    """Integer logits (or a per-step model's integer outputs) of the golden network on float
    inputs (batch, T, H_in)."""
    out = [run_integer_network(qnet, quantize_network_input(qnet, x[i:i + batch_size]))
           for i in range(0, len(x), batch_size)]
    net = qnet.network
    empty = (0, net.steps, net.classes) if net.per_step else (0, net.classes)
    return np.concatenate(out) if out else np.zeros(empty, dtype=np.int64)


def evaluate_golden(config, weights, x, y):
    """(score, integer logits) of the golden integer network for a config and float weights:
    the accuracy, or a sequence model's NRMSE of its exact output values (:func:`score`)."""
    qnet = quantize_network(config, weights)
    logits = golden_logits(qnet, x)
    return score(to_float(logits, qnet.logits_frac), y), logits


def save_checkpoint(model: SSMNetwork, path, *, extra: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"meta": model.meta, "state_dict": model.state_dict(), **(extra or {})}, tmp)
    tmp.replace(path)


def load_checkpoint(path) -> SSMNetwork:
    data = torch.load(path, map_location="cpu", weights_only=False)
    model = SSMNetwork(**data["meta"])
    model.load_state_dict(data["state_dict"])
    return model
