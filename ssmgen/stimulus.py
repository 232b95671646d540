"""Input sequences to check a design with, as integers of its input format.

``full-range``: every input value equally likely (what the project's own regression drives: it
reaches saturation and the rounding corners). ``smooth``: a clipped random walk, the kind of
signal a sensor gives. ``extremes``: runs of the largest, the smallest and zero inputs, long
enough to push the states and outputs into their overflow modes. A ``.npy`` file of real inputs
(batch, T, input channels) is quantized like any real input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["STIMULI", "make_stimulus", "smooth_inputs", "smooth_real", "stimulus_real"]

STIMULI = ("full-range", "smooth", "extremes")


def smooth_inputs(design, *, batch: int, steps: int, seed: int) -> np.ndarray:
    """A smooth random signal within the design's input range, in real units: a clipped
    random walk."""
    return smooth_real(design.input_quantizer.format, (batch, steps, design.input_channels), seed)


def smooth_real(fmt, shape, seed: int) -> np.ndarray:
    """A clipped random walk of ``shape`` within ``fmt``'s range, in real units."""
    rng = np.random.default_rng(seed)
    return np.clip(np.cumsum(rng.normal(0, 0.3, shape), axis=1), fmt.min_value, fmt.max_value)


def _extremes(rng, fmt, shape) -> np.ndarray:
    batch, steps, channels = shape
    out = np.empty(shape, dtype=np.int64)
    levels = np.array([fmt.min_int, fmt.max_int, 0])
    longest = max(2, steps // 4)
    for b in range(batch):
        for c in range(channels):
            t = 0
            while t < steps:
                run = int(rng.integers(1, longest + 1))
                out[b, t:t + run, c] = levels[rng.choice(3, p=[0.4, 0.4, 0.2])]
                t += run
    return out


def stimulus_real(kind: str, fmt, shape, seed: int) -> np.ndarray:
    """A stimulus of ``kind`` (one of :data:`STIMULI`) in real units, drawn for input format
    ``fmt`` (the integers of full-range and extremes are exact values of ``fmt``)."""
    if kind == "smooth":
        return smooth_real(fmt, shape, seed)
    rng = np.random.default_rng(seed)
    if kind == "full-range":
        ints = rng.integers(fmt.min_int, fmt.max_int + 1, shape)
    elif kind == "extremes":
        ints = _extremes(rng, fmt, shape)
    else:
        raise ValueError(f"--stimulus: must be one of {', '.join(STIMULI)} or a .npy file of "
                         f"real inputs, not {kind!r}")
    return np.ldexp(ints.astype(np.float64), -fmt.frac)


def make_stimulus(design, stimulus: str, *, sequences: int, steps: int, seed: int) -> np.ndarray:
    """int64 (sequences, steps, input channels) in the design's input format. ``stimulus``: one
    of :data:`STIMULI` or the path of a ``.npy`` file of real inputs (then ``sequences`` and
    ``steps`` come from the file)."""
    shape = (sequences, steps, design.input_channels)
    if stimulus in STIMULI:
        return design.quantize_input(stimulus_real(stimulus, design.input_quantizer.format,
                                                   shape, seed))
    path = Path(stimulus)
    if path.suffix != ".npy":
        raise ValueError(f"--stimulus: must be one of {', '.join(STIMULI)} or a .npy file of real "
                         f"inputs, not {stimulus!r}")
    try:
        u = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--stimulus {path}: cannot read a .npy array: {exc}") from None
    try:
        return design.quantize_input(design.check_input(u, integer=False))
    except ValueError as exc:
        raise ValueError(f"--stimulus {path}: {exc}") from None
