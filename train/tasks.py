"""Offline sequence-classification tasks (NumPy only; nothing is downloaded).

* ``sdigits``: scikit-learn's bundled 8x8 digits (1797 images), read pixel by pixel in raster
  order: T = 64 steps, 1 feature (intensity / 16, in [0, 1]), 10 classes. A fixed, seeded,
  stratified split (20% per class): 1438 train / 359 test.
* ``sfreq``: procedurally generated noisy oscillations: T = 64 steps, 1 feature, 8 classes. Class
  c is a sinusoid of period ``4 * 1.12**c`` steps (4 .. 8.8 steps; each sample's period jittered
  by up to 2%) with random phase and amplitude in [0.3, 1], plus white noise (std 1) and a random
  offset in [-0.3, 0.3]. Periods closer than the frequency resolution of a short window, and a
  signal below the noise, make it a memory / frequency-resolution task. 2000 train / 500 test,
  generated from a fixed seed.
* ``mnist1d``: MNIST-1D (Greydanus 2020), generated offline by the ``mnist1d`` package's own
  generator, ``make_dataset`` with its default arguments (seed 42; its download function is never
  called): T = 40 steps, 1 feature (standardised over the dataset), 10 classes, 4000 train /
  1000 test. Published baselines on this split (the paper): logistic regression ~32%, MLP ~68%,
  GRU ~91%, CNN ~94%. Harder than sdigits for a small model: the digit templates are padded,
  sheared, scaled, translated and given correlated noise.
* ``lorenz``: sequence to sequence (a per-step readout, ``network.readout = "per_step"``):
  next-step prediction of the Lorenz system (sigma 10, rho 28, beta 8/3; RK4 with step 0.01,
  sampled every 0.04 time units). Input: x(t), 1 feature; target: x(t + 0.04), 1 output, at
  every one of T = 64 steps. Each sequence is a window of its own trajectory from a seeded random
  start after 10 time units of burn-in (on the attractor); both standardised by the training
  split's mean and std of x. 2000 train / 500 test; the model must infer the unseen y and z from
  x's history. Scored by the NRMSE (:func:`nrmse`).

Every split is deterministic: ``load_task(name)`` returns the same arrays on every call.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Task", "load_task", "TASKS", "nrmse"]

TASKS = ("sdigits", "sfreq", "mnist1d", "lorenz")


@dataclass(frozen=True)
class Task:
    """x_*: float64 (n, T, features); y_*: int64 (n,) class labels, or for a sequence-to-sequence
    task (``per_step``) float64 (n, T, classes) targets at every timestep."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    #: training-time augmentation: (x batch, numpy Generator) -> x batch; None for none
    augment: Callable | None = None

    @property
    def per_step(self) -> bool:
        """A sequence-to-sequence task: a target vector per timestep (``network.readout =
        "per_step"``), scored by the NRMSE instead of the accuracy."""
        return self.y_train.ndim == 3

    @property
    def readout(self) -> str:
        """The network readout the task needs (``network.readout``)."""
        return "per_step" if self.per_step else "mean"

    @property
    def steps(self) -> int:
        return self.x_train.shape[1]

    @property
    def inputs(self) -> int:
        return self.x_train.shape[2]

    def subset(self, train: int | None = None, test: int | None = None) -> "Task":
        """The first ``train`` / ``test`` samples (the splits are already shuffled)."""
        return Task(self.name, self.x_train[:train], self.y_train[:train],
                    self.x_test[:test], self.y_test[:test], self.classes, self.augment)


def nrmse(outputs, y) -> float:
    """A sequence-to-sequence task's score: root mean squared error over every output, divided
    by the targets' standard deviation (0: perfect; 1: no better than predicting their mean)."""
    outputs, y = np.asarray(outputs, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean((outputs - y) ** 2)) / max(float(np.std(y)), 1e-300))


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return rng.permutation(np.array(train)), rng.permutation(np.array(test))


def shift_digits(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Augmentation for sdigits: shift each 8x8 image by -1, 0 or +1 pixels in each direction
    (zero fill), then read it pixel by pixel again."""
    n = x.shape[0]
    img = np.pad(x.reshape(n, 8, 8), ((0, 0), (1, 1), (1, 1)))
    dy, dx = rng.integers(0, 3, n), rng.integers(0, 3, n)
    rows = dy[:, None] + np.arange(8)[None, :]
    cols = dx[:, None] + np.arange(8)[None, :]
    out = img[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.reshape(n, 64, 1)


def _sdigits() -> Task:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:   # pragma: no cover - the [train] extra installs it
        raise RuntimeError("task sdigits needs scikit-learn (pip install 'ssmgen[train]')") from exc
    digits = load_digits()       # bundled with scikit-learn: no download
    x = (digits.data.astype(np.float64) / 16.0).reshape(-1, 64, 1)
    y = digits.target.astype(np.int64)
    train, test = _stratified_split(y, 0.2, seed=0)
    return Task("sdigits", x[train], y[train], x[test], y[test], 10, shift_digits)


def _sfreq(n_train: int = 2000, n_test: int = 500, steps: int = 64, classes: int = 8,
           seed: int = 1234) -> Task:
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, classes, n)
    period = 4.0 * 1.12 ** y * rng.uniform(0.98, 1.02, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = rng.uniform(0.3, 1.0, n)
    offset = rng.uniform(-0.3, 0.3, n)
    t = np.arange(steps)
    x = (amp[:, None] * np.sin(2 * np.pi * t[None, :] / period[:, None] + phase[:, None])
         + offset[:, None] + rng.normal(0, 1.0, (n, steps)))
    x = x[:, :, None]
    return Task("sfreq", x[:n_train], y[:n_train].astype(np.int64),
                x[n_train:], y[n_train:].astype(np.int64), classes)


def _mnist1d() -> Task:
    """A copy of the generated split (generating takes about 2 s; callers may write theirs)."""
    task = _generate_mnist1d()
    return Task(task.name, *(a.copy() for a in (task.x_train, task.y_train, task.x_test,
                                                task.y_test)), task.classes)


@functools.lru_cache(maxsize=1)
def _generate_mnist1d() -> Task:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:   # pragma: no cover - the [train] extra installs it
        raise RuntimeError("task mnist1d needs the mnist1d package (pip install "
                           "'ssmgen[train]')") from exc
    # make_dataset seeds NumPy's and Python's global generators (its reproducibility): give
    # the caller's back afterwards
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x_train, x_test = (np.asarray(data[k], dtype=np.float64)[:, :, None] for k in ("x", "x_test"))
    y_train, y_test = (np.asarray(data[k], dtype=np.int64) for k in ("y", "y_test"))
    return Task("mnist1d", x_train, y_train, x_test, y_test, 10)


def _lorenz(n_train: int = 2000, n_test: int = 500, steps: int = 64, seed: int = 4321,
            h: float = 0.01, every: int = 4, burn_in: float = 10.0) -> Task:
    sigma, rho, beta = 10.0, 28.0, 8.0 / 3.0

    def deriv(s):
        x, y, z = s[:, 0], s[:, 1], s[:, 2]
        return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=1)

    def rk4(s):
        k1 = deriv(s)
        k2 = deriv(s + 0.5 * h * k1)
        k3 = deriv(s + 0.5 * h * k2)
        k4 = deriv(s + h * k3)
        return s + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    state = rng.normal(0.0, 1.0, (n, 3)) + np.array([0.0, 0.0, 25.0])
    for _ in range(int(round(burn_in / h))):
        state = rk4(state)
    xs = np.empty((n, steps + 1))
    for k in range(steps + 1):
        xs[:, k] = state[:, 0]
        for _ in range(every):
            state = rk4(state)
    mean, std = xs[:n_train].mean(), xs[:n_train].std()
    xs = (xs - mean) / std
    x, y = xs[:, :-1, None], xs[:, 1:, None]
    return Task("lorenz", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 1)


def load_task(name: str) -> Task:
    if name == "sdigits":
        return _sdigits()
    if name == "sfreq":
        return _sfreq()
    if name == "mnist1d":
        return _mnist1d()
    if name == "lorenz":
        return _lorenz()
    raise ValueError(f"task must be one of {', '.join(TASKS)}, not {name!r}")
