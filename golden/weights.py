"""Float weights of one diagonal SSM layer: the ``.npz`` file format, its validation, random demos.

Keys and shapes of a weights file (H = channels, M = complex modes per channel, P = states):

=========  ==========================  ==========================  ==========
key        s4d                          s5                          dtype
=========  ==========================  ==========================  ==========
``Abar``   (H, M)                      (P,)                        complex
``Bbar``   (H, M)                      (P, H)                      complex
``C``      (H, M), factor 2 folded in  (H, P)                      complex
``D``      (H,)                        (H,)                        real
=========  ==========================  ==========================  ==========

These are the *discrete* (ZOH) parameters: ``x[k] = Abar * x[k-1] + Bbar u[k]``,
``y[k] = Re(C x[k]) + D u[k]``. For s4d the conjugate modes are folded into C (its factor 2), so
only one mode of each conjugate pair is stored.

In memory both kinds use a flat state index p. For s4d, ``p = h * M + m`` (channel-major) and
``channel[p] = h``: ``bbar`` and ``c`` are (P,) vectors; for s5 they are dense matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SSMWeights", "WeightsError", "load_npz", "save_npz"]


class WeightsError(ValueError):
    """Weights that do not match the model shape or contain non-finite values."""


@dataclass(frozen=True)
class SSMWeights:
    """Discrete float weights, flat state index (see module docstring).

    kind: "s4d" or "s5"
    abar: complex128 (P,)
    bbar: complex128 (P,) for s4d, (P, H) for s5
    c:    complex128 (P,) for s4d, (H, P) for s5
    d:    float64 (H,)
    """
    kind: str
    abar: np.ndarray
    bbar: np.ndarray
    c: np.ndarray
    d: np.ndarray

    @property
    def channels(self) -> int:
        return self.d.shape[0]

    @property
    def states(self) -> int:
        return self.abar.shape[0]

    @property
    def modes_per_channel(self) -> int:
        """M for s4d (complex modes per channel); P for s5 (every state sees every channel)."""
        return self.states // self.channels if self.kind == "s4d" else self.states

    @property
    def channel(self) -> np.ndarray:
        """s4d: channel index of each state, int64 (P,)."""
        if self.kind != "s4d":
            raise AttributeError("only s4d states belong to one channel")
        return np.repeat(np.arange(self.channels), self.modes_per_channel)

    def dense_b(self) -> np.ndarray:
        """Bbar as a dense (P, H) matrix (s4d: block structure with zeros)."""
        if self.kind == "s5":
            return self.bbar
        dense = np.zeros((self.states, self.channels), dtype=np.complex128)
        dense[np.arange(self.states), self.channel] = self.bbar
        return dense

    def dense_c(self) -> np.ndarray:
        """C as a dense (H, P) matrix (s4d: block structure with zeros)."""
        if self.kind == "s5":
            return self.c
        dense = np.zeros((self.channels, self.states), dtype=np.complex128)
        dense[self.channel, np.arange(self.states)] = self.c
        return dense

    @classmethod
    def from_arrays(cls, kind: str, *, Abar, Bbar, C, D, channels: int, states: int,
                    where: str = "weights") -> "SSMWeights":
        """Validate file-layout arrays (see module docstring) and flatten them.

        ``states`` is P (s5) or the total number of complex modes H*M (s4d).
        """
        if kind == "s4d":
            modes = states // channels
            shapes = {"Abar": (channels, modes), "Bbar": (channels, modes),
                      "C": (channels, modes), "D": (channels,)}
        elif kind == "s5":
            shapes = {"Abar": (states,), "Bbar": (states, channels),
                      "C": (channels, states), "D": (channels,)}
        else:
            raise WeightsError(f"{where}: model kind must be 's4d' or 's5', not {kind!r}")
        arrays = {"Abar": Abar, "Bbar": Bbar, "C": C, "D": D}
        checked = {}
        for key, expected in shapes.items():
            arr = np.asarray(arrays[key])
            if arr.shape != expected:
                raise WeightsError(f"{where}: {key} must have shape {expected} for {kind} with "
                                   f"H={channels}, states={states}, not {arr.shape}")
            if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise WeightsError(f"{where}: {key} must be numeric, not dtype {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise WeightsError(f"{where}: {key} contains NaN or infinite values")
            checked[key] = arr
        if np.iscomplexobj(checked["D"]) and np.any(checked["D"].imag != 0):
            raise WeightsError(f"{where}: D must be real")
        magnitude = np.abs(checked["Abar"])
        if np.any(magnitude >= 1):
            worst = float(magnitude.max())
            raise WeightsError(f"{where}: every |Abar| must be < 1 for a stable recurrence; "
                               f"the largest is {worst:.6g}")
        return cls(kind=kind,
                   abar=checked["Abar"].astype(np.complex128).reshape(-1),
                   bbar=checked["Bbar"].astype(np.complex128).reshape(-1) if kind == "s4d"
                   else checked["Bbar"].astype(np.complex128),
                   c=checked["C"].astype(np.complex128).reshape(-1) if kind == "s4d"
                   else checked["C"].astype(np.complex128),
                   d=np.real(checked["D"]).astype(np.float64))

    def file_arrays(self) -> dict:
        """Arrays in file layout (inverse of :meth:`from_arrays`)."""
        if self.kind == "s4d":
            shape = (self.channels, self.modes_per_channel)
            return {"Abar": self.abar.reshape(shape), "Bbar": self.bbar.reshape(shape),
                    "C": self.c.reshape(shape), "D": self.d}
        return {"Abar": self.abar, "Bbar": self.bbar, "C": self.c, "D": self.d}


def load_npz(path, kind: str, *, channels: int, states: int) -> SSMWeights:
    """Load and validate a weights file (errors name the file and the key)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("Abar", "Bbar", "C", "D") if k not in data.files]
            if missing:
                raise WeightsError(f"{path}: missing key(s) {', '.join(missing)}; a weights file "
                                   f"holds Abar, Bbar, C, D (found: {', '.join(data.files) or 'none'})")
            arrays = {k: data[k] for k in ("Abar", "Bbar", "C", "D")}
    except (OSError, ValueError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"{path}: cannot read weights: {exc}") from exc
    return SSMWeights.from_arrays(kind, **arrays, channels=channels, states=states, where=str(path))


def save_npz(path, weights: SSMWeights) -> None:
    np.savez(path, **weights.file_arrays())
