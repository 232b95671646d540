"""A generated design's Verilog and its ``manifest.json``.

The manifest is the contract between the generated RTL and everything that drives it (the cocotb
testbench, the native stream bench, the host driver): port names and widths, the bit layout of the
stream payloads, the formats, cycles per timestep and latency, the model hash. One function builds
it for any accelerator component (a single ``SSMLayer`` or a whole ``NetworkAccelerator``): the
quantized model describes itself (``manifest_sections``), the component its timing
(``hardware_summary``) and its ports (its stream signatures).
"""

from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data

from ..spec.hashing import model_hash

__all__ = ["MANIFEST_VERSION", "build_manifest", "layout_fields", "pack_fields", "unpack_fields",
           "to_verilog"]

#: 2: every design says its ``kind`` ("layer" or "network"); a layer's output fields are
#: ``data[h]`` like its inputs; the hash covers every hardware option.
MANIFEST_VERSION = 2


def to_verilog(component, name: str) -> str:
    """Verilog of ``component`` as module ``name``; no source locations, so the text depends on
    the design only (reproducible, comparable byte for byte)."""
    return verilog.convert(component, name=name, emit_src=False)


def layout_fields(layout) -> list[dict]:
    """Flatten a payload layout into the manifest's field list (name, offset, width, signed):
    struct members by name, array elements as ``name[i]``."""
    fields = []
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, data.ArrayLayout):
            elem = Shape.cast(shape.elem_shape)
            for i in range(shape.length):
                fields.append({"name": f"{name}[{i}]", "offset": field.offset + i * elem.width,
                               "width": elem.width, "signed": elem.signed})
        else:
            shape = Shape.cast(shape)
            fields.append({"name": name, "offset": field.offset, "width": shape.width,
                           "signed": shape.signed})
    return fields


def pack_fields(fields: list[dict], values) -> int:
    """Pack integers into a payload bit vector per a manifest field list (two's complement,
    each value masked to its field)."""
    word = 0
    for spec, value in zip(fields, values, strict=True):
        mask = (1 << spec["width"]) - 1
        word |= (int(value) & mask) << spec["offset"]
    return word


def unpack_fields(fields: list[dict], word: int) -> list[int]:
    """Inverse of :func:`pack_fields` (sign-extends signed fields)."""
    out = []
    for spec in fields:
        raw = (word >> spec["offset"]) & ((1 << spec["width"]) - 1)
        if spec["signed"] and raw >> (spec["width"] - 1):
            raw -= 1 << spec["width"]
        out.append(raw)
    return out


def _stream_ports(component) -> dict:
    """Ports of an accelerator with the generated ``u`` (in) and ``y`` (out) streams."""
    ports = {"clk": {"direction": "in", "width": 1},
             "rst": {"direction": "in", "width": 1, "note": "synchronous, active high"}}
    for name, direction, back in (("u", "in", "out"), ("y", "out", "in")):
        layout = component.signature.members[name].signature.members["payload"].shape
        fields = layout_fields(layout)
        ports[f"{name}__payload"] = {"direction": direction, "width": Shape.cast(layout).width,
                                     "fields": fields}
        ports[f"{name}__valid"] = {"direction": direction, "width": 1}
        ports[f"{name}__ready"] = {"direction": back, "width": 1}
    return ports


def build_manifest(model, component, verilog_name: str) -> dict:
    """The manifest of ``component`` generated from ``model`` (a ``QuantizedSSM`` or
    ``QuantizedNetwork``) into the Verilog file ``verilog_name``."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "generator": "ssmgen",
        "kind": model.design_kind,
        "top": model.config.name,
        "verilog": verilog_name,
        "model_hash": model_hash(model),
        **model.manifest_sections(),
        "hardware": component.hardware_summary(),
        # what one beat of each stream carries: a timestep in; a timestep or a whole sequence out
        "stream": {"input_beat": "timestep", "output_beat": component.output_beat},
        "ports": _stream_ports(component),
    }
