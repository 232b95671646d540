"""Float weights: the ``.npz`` file formats of one SSM layer and of a whole network, and their
validation (every error names the file and the key).

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

A whole network's file (``[network]`` configs) holds every layer under ``layers.{l}.`` and the
linear layers around them (float64; the integer weights are their quantization):

=========================  ===================  ==============================================
key                        shape                 meaning
=========================  ===================  ==============================================
``encoder.weight``         (H, H_in)             encoder
``encoder.bias``           (H,)
``layers.{l}.Abar`` ...    as a layer file       ``Abar``, ``Bbar``, ``C``, ``D`` of layer l
``layers.{l}.mix.weight``  (H, H)                mixing of layer l
``layers.{l}.mix.bias``    (H,)
``decoder.weight``         (classes, H)
``decoder.bias``           (classes,)
=========================  ===================  ==============================================

In memory both kinds use a flat state index p. For s4d, ``p = h * M + m`` (channel-major) and
``channel[p] = h``: ``bbar`` and ``c`` are (P,) vectors; for s5 they are dense matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SSMConfig
from .errors import WeightsError

__all__ = ["SSMWeights", "WeightsError", "load_npz", "save_npz", "NetworkWeights",
           "network_weights_from_arrays", "load_network_npz", "save_network_npz"]


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


# --------------------------------------------------------------------------------------------
# A whole network's weights file (layout: the module docstring)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetworkWeights:
    """Float weights of the whole network.

    encoder_w: float64 (H, H_in); encoder_b: (H,)
    layers:    tuple of L SSMWeights (discrete, flat state index)
    mix_w:     tuple of L float64 (H, H); mix_b: tuple of L (H,)
    decoder_w: float64 (classes, H); decoder_b: (classes,)
    """
    encoder_w: np.ndarray
    encoder_b: np.ndarray
    layers: tuple
    mix_w: tuple
    mix_b: tuple
    decoder_w: np.ndarray
    decoder_b: np.ndarray

    @property
    def kind(self) -> str:
        return self.layers[0].kind

    def arrays(self) -> dict:
        """File layout (the module docstring's table)."""
        out = {"encoder.weight": self.encoder_w, "encoder.bias": self.encoder_b,
               "decoder.weight": self.decoder_w, "decoder.bias": self.decoder_b}
        for l, layer in enumerate(self.layers):
            for key, value in layer.file_arrays().items():
                out[f"layers.{l}.{key}"] = value
            out[f"layers.{l}.mix.weight"] = self.mix_w[l]
            out[f"layers.{l}.mix.bias"] = self.mix_b[l]
        return out


def save_network_npz(path, weights: NetworkWeights) -> None:
    np.savez(path, **weights.arrays())


def _network_shapes(config: SSMConfig) -> dict:
    net, H = config.network, config.model.channels
    shapes = {"encoder.weight": (H, net.inputs), "encoder.bias": (H,),
              "decoder.weight": (net.classes, H), "decoder.bias": (net.classes,)}
    for l in range(net.layers):
        shapes[f"layers.{l}.mix.weight"] = (H, H)
        shapes[f"layers.{l}.mix.bias"] = (H,)
    return shapes


def network_weights_from_arrays(config: SSMConfig, arrays: dict, where: str) -> NetworkWeights:
    """Validate file-layout arrays against the config (errors name ``where`` and the key)."""
    net, model = config.network, config.model
    checked = {}
    for key, shape in _network_shapes(config).items():
        if key not in arrays:
            raise WeightsError(f"{where}: missing key {key} (a network weights file holds "
                               f"encoder.*, layers.<l>.*, decoder.*)")
        arr = np.asarray(arrays[key])
        if arr.shape != shape:
            raise WeightsError(f"{where}: {key} must have shape {shape}, not {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise WeightsError(f"{where}: {key} must be real numbers, not dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise WeightsError(f"{where}: {key} contains NaN or infinite values")
        checked[key] = arr.astype(np.float64)
    layers = []
    for l in range(net.layers):
        keys = {k: f"layers.{l}.{k}" for k in ("Abar", "Bbar", "C", "D")}
        missing = [v for v in keys.values() if v not in arrays]
        if missing:
            raise WeightsError(f"{where}: missing key(s) {', '.join(missing)}")
        layers.append(SSMWeights.from_arrays(model.kind, **{k: arrays[v] for k, v in keys.items()},
                                             channels=model.channels, states=model.states,
                                             where=f"{where}: layers.{l}"))
    return NetworkWeights(checked["encoder.weight"], checked["encoder.bias"], tuple(layers),
                          tuple(checked[f"layers.{l}.mix.weight"] for l in range(net.layers)),
                          tuple(checked[f"layers.{l}.mix.bias"] for l in range(net.layers)),
                          checked["decoder.weight"], checked["decoder.bias"])


def load_network_npz(path, config: SSMConfig) -> NetworkWeights:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read network weights: {exc}") from exc
    return network_weights_from_arrays(config, arrays, str(path))
