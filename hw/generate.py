"""Config -> Verilog + manifest.json: what ``ssmgen generate`` writes.

The manifest is the contract between the generated RTL and everything that drives it (the cocotb
testbench, the host driver): port names and widths, the bit layout of the stream payloads, the
formats, cycles per timestep and latency.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from ..golden.quantized import QuantizedSSM, describe_formats
from .ssm_layer import SSMLayer

__all__ = ["GeneratedDesign", "generate", "model_hash", "write_atomically", "generate_network",
           "network_hash"]

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class GeneratedDesign:
    verilog_path: Path
    manifest_path: Path
    manifest: dict


def model_hash(model: QuantizedSSM) -> str:
    """SHA-256 over everything that determines the hardware's behaviour: shape, formats and
    integer weights (not the float weights or file paths)."""
    h = hashlib.sha256()
    # describe_formats names every format with its rounding and overflow.
    h.update(json.dumps({"kind": model.kind, "channels": model.channels, "states": model.states,
                         "lanes": model.config.hardware.lanes,
                         "formats": describe_formats(model),
                         "state_int_bits": model.state_int_bits.tolist()},
                        sort_keys=True).encode())
    for name in ("abar_re", "abar_im", "bbar_re", "bbar_im", "c_re", "c_im", "d"):
        h.update(np.ascontiguousarray(getattr(model, name), dtype="<i8").tobytes())
    return h.hexdigest()


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write via a temporary file and rename, so a failure never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _payload_fields(model: QuantizedSSM) -> tuple[list, list]:
    q = model.config.quant
    wu, wy, H = q.input.format.width, q.output.format.width, model.channels
    u_fields = [{"name": f"data[{h}]", "offset": h * wu, "width": wu, "signed": True}
                for h in range(H)]
    u_fields.append({"name": "start", "offset": H * wu, "width": 1, "signed": False})
    y_fields = [{"name": f"[{h}]", "offset": h * wy, "width": wy, "signed": True} for h in range(H)]
    return u_fields, y_fields


def build_manifest(model: QuantizedSSM, layer: SSMLayer, verilog_name: str) -> dict:
    q = model.config.quant
    u_fields, y_fields = _payload_fields(model)
    H = model.channels
    return {
        "manifest_version": MANIFEST_VERSION,
        "generator": "ssmgen",
        "top": model.config.name,
        "verilog": verilog_name,
        "model_hash": model_hash(model),
        "model": {"kind": model.kind, "channels": H, "states": model.states,
                  "modes_per_channel": model.config.model.modes_per_channel},
        "hardware": {"lanes": layer.lanes,
                     "complex_multipliers": model.config.hardware.complex_multipliers,
                     "cycles_per_timestep": layer.cycles_per_timestep,
                     "loop_stages": layer.loop_stages,
                     "latency_cycles": layer.latency},
        "formats": describe_formats(model),
        "fractions": {"input": q.input.format.frac, "output": q.output.format.frac,
                      "state": [int(f) for f in model.state_frac]},
        "ports": {
            "clk": {"direction": "in", "width": 1},
            "rst": {"direction": "in", "width": 1, "note": "synchronous, active high"},
            "u__payload": {"direction": "in", "width": H * q.input.format.width + 1,
                           "fields": u_fields},
            "u__valid": {"direction": "in", "width": 1},
            "u__ready": {"direction": "out", "width": 1},
            "y__payload": {"direction": "out", "width": H * q.output.format.width,
                           "fields": y_fields},
            "y__valid": {"direction": "out", "width": 1},
            "y__ready": {"direction": "in", "width": 1},
        },
        "abar_corrected_poles": model.abar_corrected,
        "saturated_weights": model.saturated_weights,
    }


def generate(model: QuantizedSSM, out_dir) -> GeneratedDesign:
    """Write ``<name>.v`` and ``manifest.json`` into ``out_dir`` (created if needed)."""
    layer = SSMLayer(model)
    return _write_design(layer, model.config.name, out_dir,
                         lambda verilog_name: build_manifest(model, layer, verilog_name))


def _write_design(component, name: str, out_dir, manifest_for) -> GeneratedDesign:
    """Convert ``component`` to ``<name>.v`` and write it with ``manifest_for(verilog file
    name)`` as manifest.json, each file atomically."""
    out_dir = Path(out_dir)
    text = verilog.convert(component, name=name, emit_src=False)
    verilog_path = out_dir / f"{name}.v"
    manifest = manifest_for(verilog_path.name)
    manifest_path = out_dir / "manifest.json"
    write_atomically(verilog_path, text)
    write_atomically(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return GeneratedDesign(verilog_path, manifest_path, manifest)


# --------------------------------------------------------------------------------------------
# Whole network (hw/network.py)
# --------------------------------------------------------------------------------------------

def _layout_fields(layout, prefix: str = "") -> list[dict]:
    """Flatten a payload layout into the manifest's field list (name, offset, width, signed)."""
    from amaranth.hdl import Shape
    from amaranth.lib import data
    fields = []
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, data.ArrayLayout):
            elem = Shape.cast(shape.elem_shape)
            for i in range(shape.length):
                fields.append({"name": f"{prefix}{name}[{i}]", "offset": field.offset + i * elem.width,
                               "width": elem.width, "signed": elem.signed})
        else:
            shape = Shape.cast(shape)
            fields.append({"name": f"{prefix}{name}", "offset": field.offset,
                           "width": shape.width, "signed": shape.signed})
    return fields


def network_hash(net) -> str:
    """SHA-256 over what determines the network hardware's behaviour: every layer's
    :func:`model_hash`, the network's shape and formats, and its integer weights."""
    cfg = net.network
    h = hashlib.sha256()
    h.update(json.dumps({"layers": [model_hash(layer) for layer in net.layers],
                         "inputs": cfg.inputs, "steps": cfg.steps, "classes": cfg.classes,
                         "activation": cfg.activation,
                         "formats": describe_network_formats(net)}, sort_keys=True).encode())
    for name in ("encoder_w", "encoder_b", "decoder_w", "decoder_b"):
        h.update(np.ascontiguousarray(getattr(net, name), dtype="<i8").tobytes())
    for w, b in zip(net.mix_w, net.mix_b):
        h.update(np.ascontiguousarray(w, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(b, dtype="<i8").tobytes())
    return h.hexdigest()


def describe_network_formats(net) -> dict:
    """Every network tensor's format (the layers' own formats are under ``layers``)."""
    cfg = net.network
    out = {name: str(getattr(cfg, name)) for name in ("input", "encoder", "encoder_bias", "mix",
                                                      "mix_bias", "pool", "decoder", "decoder_bias")}
    out["logits"] = (f"full precision: {net.decoder_acc.sum_bits} bits, frac {net.decoder_acc.frac}"
                     if cfg.logits is None else str(cfg.logits))
    out["encoder_acc"] = net.encoder_acc.describe()
    out["mix_acc"] = net.mix_acc.describe()
    out["decoder_acc"] = net.decoder_acc.describe()
    out["pool_mean"] = f"* {net.pool_mult} / 2**{net.pool_shift}"
    return out


def build_network_manifest(net, accel, verilog_name: str) -> dict:
    from .network import input_layout, output_layout
    cfg = net.network
    u_fields, y_fields = _layout_fields(input_layout(net)), _layout_fields(output_layout(net))
    return {
        "manifest_version": MANIFEST_VERSION,
        "generator": "ssmgen",
        "kind": "network",
        "top": net.config.name,
        "verilog": verilog_name,
        "model_hash": network_hash(net),
        "model": {"kind": net.config.model.kind, "channels": net.config.model.channels,
                  "states": net.config.model.states, "modes_per_channel":
                      net.config.model.modes_per_channel},
        "network": {"inputs": cfg.inputs, "layers": cfg.layers, "steps": cfg.steps,
                    "classes": cfg.classes, "activation": cfg.activation},
        "hardware": {"lanes": accel.layers[0].lanes,
                     "complex_multipliers": net.config.hardware.complex_multipliers,
                     "cycles_per_timestep": accel.cycles_per_timestep,
                     "loop_stages": accel.layers[0].loop_stages,
                     "layer_latency_cycles": [layer.latency for layer in accel.layers],
                     "residual_fifo_depths": accel.fifo_depths,
                     # folded linear layers: cycles per vector and multipliers (the one-input
                     # encoder is combinational: fold 0, constant products)
                     "linear_fold_cycles": {
                         "encoder": 0 if accel.encoder is None else accel.encoder.fold,
                         "mix": accel.mixers[0].fold if accel.mixers else 0,
                         "decoder": accel.decoder.fold},
                     "linear_multipliers": accel.linear_multipliers,
                     "latency_cycles": accel.latency},
        "formats": describe_network_formats(net),
        "layer_formats": [describe_formats(layer) for layer in net.layers],
        "fractions": {"input": cfg.input.format.frac, "logits": net.logits_frac},
        "ports": {
            "clk": {"direction": "in", "width": 1},
            "rst": {"direction": "in", "width": 1, "note": "synchronous, active high"},
            "u__payload": {"direction": "in", "width": sum(f["width"] for f in u_fields),
                           "fields": u_fields},
            "u__valid": {"direction": "in", "width": 1},
            "u__ready": {"direction": "out", "width": 1},
            "y__payload": {"direction": "out", "width": sum(f["width"] for f in y_fields),
                           "fields": y_fields},
            "y__valid": {"direction": "out", "width": 1},
            "y__ready": {"direction": "in", "width": 1},
        },
        "saturated_weights": net.saturated_weights,
    }


def generate_network(net, out_dir) -> GeneratedDesign:
    """Write the whole network's ``<name>.v`` and ``manifest.json`` into ``out_dir``.

    ``net``: a ``golden.network.QuantizedNetwork``. The manifest has the layer manifest's keys
    (ports with payload fields: ``u__payload`` = ``data[i]``, ``start``, ``last``;
    ``y__payload`` = ``logits[c]``, ``prediction``) plus ``kind = "network"`` and ``network``."""
    from .network import NetworkAccelerator
    accel = NetworkAccelerator(net)
    return _write_design(accel, net.config.name, out_dir,
                         lambda verilog_name: build_network_manifest(net, accel, verilog_name))
