"""The model hash: one SHA-256 that names a generated design's behaviour and timing.

It covers everything the hardware computes with or depends on: the model's shape, every
``[hardware]`` option (lanes, complex multipliers, loop stages: they set the latency), every
format with its rounding and overflow, and the integer weights (``integer_arrays``). It leaves out
what does not reach the circuit: the config's name, file paths and the float weights. The
manifest, the synthesis and board reports and a board's IDENTIFY response all carry it, so a host
can tell whether a bitstream is the design it expects.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["model_hash"]


def model_hash(model) -> str:
    """Hex SHA-256 of a ``QuantizedSSM`` or ``QuantizedNetwork`` (``spec/quantized.py``)."""
    h = hashlib.sha256()
    h.update(json.dumps(model.identity(), sort_keys=True).encode())
    for key, array in sorted(model.integer_arrays().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
    return h.hexdigest()
