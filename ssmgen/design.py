# amaranth: UnusedElaboratable=no
"""``Design``: one generated accelerator, whatever it computes: a single SSM layer or a whole
network. It is what every command takes and the Python API users script against::

    from ssmgen.design import Design

    design = Design.load("examples/s5_small.toml")      # or a trained MODEL_DIR/config.toml
    design.generate("build/s5")                         # Verilog + manifest.json
    y = design.run(u)                                   # golden integer model, real units
    check = design.simulate(design.quantize_input(u), idle_probability=0.2)  # cocotb, bit-exact
    report = design.synthesize("ice40-up5k", "build/synth")                  # Yosys + nextpnr

A design bundles three things that must agree: the quantized model (``ssmgen.spec.quantized``,
whose golden integer model is the specification), the Amaranth component that implements it
(``hw/datapath``), and the manifest that describes the component's ports, formats and timing
(``hw/manifest.py``). Cycle figures are read from the component, the one place that derives them.

The two kinds differ only in their streams, which this class hides behind one vocabulary:

=====================  =================================  ====================================
                       layer                              network
=====================  =================================  ====================================
input beat             a timestep: H samples, ``start``   a timestep: H_in samples, ``start``,
                                                          ``last``
output beat            a timestep: H outputs              a sequence: logits, prediction
natural output         int64 (batch, T, H)                logits int64 (batch, classes)
=====================  =================================  ====================================

Which kind a config makes is decided in one place, :meth:`Design.from_quantized`.

(The first line silences Amaranth's warning about components never elaborated: a design whose
figures are read but which is never built keeps one such component, on purpose.)
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .golden import float_model
from .golden.fixedpoint import round_float
from .golden.integer_model import dequantize_output, quantize_input, run_integer
from .golden.network import (predict, quantize_network_input, run_float_network,
                             run_integer_network)
from .golden.quantize import load_quantized
from .hw.datapath.network import NetworkAccelerator
from .hw.datapath.ssm_layer import SSMLayer
from .hw.manifest import build_manifest, pack_fields, to_verilog
from .sim.native.bench import run_stream
from .sim.simulators import SimulationError, default_cache_dir
from .sim.verify.runner import StreamCheck, check_stream
from .spec.config import SSMConfig, load_config
from .spec.formats import Quantizer, to_float
from .spec.hashing import model_hash
from .spec.quantized import QuantizedNetwork, QuantizedSSM
from .synth.board import build_board
from .synth.estimate import estimate
from .synth.flow import synthesize
from .util.files import write_atomically

__all__ = ["Design", "GeneratedFiles", "Simulation", "ENGINES"]

#: What ``Design.run`` computes with: the float reference, the golden integer model, the RTL.
ENGINES = ("float", "golden", "rtl")


@dataclass(frozen=True)
class GeneratedFiles:
    verilog_path: Path
    manifest_path: Path
    manifest: dict


@dataclass(frozen=True)
class Simulation:
    """A cocotb run of the generated RTL (``Design.simulate``)."""
    outputs: np.ndarray          #: the natural outputs (layer: (batch, T, H); network: logits)
    check: StreamCheck           #: beats, failures, measured cycles per timestep and latencies

    @property
    def failures(self) -> list[str]:
        return self.check.failures


class Design:
    """A generated accelerator: quantized model + component + manifest + golden reference.

    Build one with :meth:`load` (a config file), :meth:`from_config` or :meth:`from_quantized`.
    """

    def __init__(self, quantized):
        self.quantized = quantized

    # --- construction: the one place that tells a layer from a network -------------------------

    @classmethod
    def load(cls, config_path) -> "Design":
        """The design of a config file (a single layer, or a whole network with ``[network]``)
        or of a trained MODEL_DIR (its ``config.toml``)."""
        path = Path(config_path)
        return cls.from_config(load_config(path / "config.toml" if path.is_dir() else path))

    @classmethod
    def from_config(cls, config: SSMConfig) -> "Design":
        """Load or generate the config's weights, quantize them, and wrap the result."""
        return cls.from_quantized(load_quantized(config))

    @staticmethod
    def from_quantized(quantized) -> "Design":
        if isinstance(quantized, QuantizedNetwork):
            return _NetworkDesign(quantized)
        if isinstance(quantized, QuantizedSSM):
            return _LayerDesign(quantized)
        raise TypeError(f"expected a QuantizedSSM or QuantizedNetwork, not {quantized!r:.80}")

    # --- identity --------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """Either "layer" or "network" (the manifest's ``kind``)."""
        return self.quantized.design_kind

    @property
    def config(self) -> SSMConfig:
        return self.quantized.config

    @property
    def name(self) -> str:
        """The config's name: the Verilog module's name."""
        return self.config.name

    @functools.cached_property
    def hash(self) -> str:
        """The model hash (``ssmgen.spec.hashing``): behaviour and timing of the hardware."""
        return model_hash(self.quantized)

    def describe_formats(self) -> dict:
        return self.quantized.describe_formats()

    # --- the hardware ----------------------------------------------------------------------------

    def component(self):
        """A new Amaranth component of the design (a component can be elaborated into only one
        circuit, so every use gets its own)."""
        raise NotImplementedError

    @functools.cached_property
    def _reference_component(self):
        """One component kept for its properties (the cycle figures); never elaborated."""
        return self.component()

    @property
    def cycles_per_timestep(self) -> int:
        """Clock cycles between input beats at full rate (G = P / lanes)."""
        return self._reference_component.cycles_per_timestep

    @property
    def latency(self) -> int:
        """Cycles from the input beat that completes an output to that output beat's valid,
        without back-pressure."""
        return self._reference_component.latency

    @property
    def lanes(self) -> int:
        return self._reference_component.lanes

    @property
    def loop_stages(self) -> int:
        return self._reference_component.loop_stages

    @property
    def verilog_name(self) -> str:
        return f"{self.name}.v"

    @functools.cached_property
    def manifest(self) -> dict:
        return build_manifest(self.quantized, self._reference_component, self.verilog_name)

    def verilog(self) -> str:
        """The design's Verilog (module ``name``), reproducible byte for byte."""
        return self._verilog

    @functools.cached_property
    def _verilog(self) -> str:
        # converted once: a whole network takes seconds to minutes
        return to_verilog(self.component(), self.name)

    def generate(self, out_dir) -> GeneratedFiles:
        """Write ``<name>.v`` and ``manifest.json`` into ``out_dir`` (created if needed), each
        atomically."""
        out_dir = Path(out_dir)
        text = self.verilog()
        verilog_path = write_atomically(out_dir / self.verilog_name, text)
        manifest_path = write_atomically(out_dir / "manifest.json",
                                         json.dumps(self.manifest, indent=2) + "\n")
        return GeneratedFiles(verilog_path, manifest_path, self.manifest)

    # --- streams: what goes in and comes out -----------------------------------------------------

    @property
    def input_quantizer(self) -> Quantizer:
        """The format of the input samples."""
        raise NotImplementedError

    @property
    def input_channels(self) -> int:
        raise NotImplementedError

    @property
    def steps(self) -> int | None:
        """The sequence length the design requires (a network's ``network.steps``), or None when
        any length works (a layer)."""
        raise NotImplementedError

    def outputs_per_sequence(self, steps: int) -> int:
        """Output beats per sequence of ``steps`` input beats."""
        raise NotImplementedError

    def check_input(self, u, *, integer: bool) -> np.ndarray:
        """``u`` as (batch, T, input channels), real numbers (``integer=False``) or integers of
        the input format; ValueError naming what is wrong otherwise."""
        u = np.asarray(u)
        if u.ndim != 3 or u.shape[2] != self.input_channels or u.shape[0] < 1 or u.shape[1] < 1:
            raise ValueError(f"input must have shape (batch, time, {self.input_channels}) with "
                             f"batch, time >= 1, not {u.shape}")
        if self.steps is not None and u.shape[1] != self.steps:
            raise ValueError(f"input must have network.steps = {self.steps} timesteps per "
                             f"sequence, not {u.shape[1]}")
        if integer:
            fmt = self.input_quantizer.format
            if not np.issubdtype(u.dtype, np.integer):
                raise ValueError(f"input must be integers of the input format {fmt}, not dtype "
                                 f"{u.dtype}")
            if u.min() < fmt.min_int or u.max() > fmt.max_int:
                raise ValueError(f"input integers must lie in {fmt.min_int}..{fmt.max_int} ({fmt})")
            return u.astype(np.int64)
        if not np.issubdtype(u.dtype, np.number) or np.iscomplexobj(u):
            raise ValueError(f"input must hold real numbers, not dtype {u.dtype}")
        if not np.all(np.isfinite(u)):
            raise ValueError("input contains NaN or infinite values")
        return u.astype(np.float64)

    def quantize_input(self, u) -> np.ndarray:
        """Real inputs (batch, T, input channels) -> int64 in the input format."""
        raise NotImplementedError

    def inputs_out_of_range(self, u) -> int:
        """How many real inputs fall outside the input format once rounded: quantizing them
        saturates or wraps them (the input format's overflow mode)."""
        q = self.input_quantizer
        ints = round_float(np.asarray(u, dtype=np.float64), q.format.frac, q.rounding)
        return int(np.count_nonzero((ints < q.format.min_int) | (ints > q.format.max_int)))

    def quantization_notes(self) -> list[str]:
        """What quantizing the weights did that a user should know: weights clamped by a
        saturating format (per tensor), Abar poles pulled inside the unit circle."""
        notes = []
        saturated = self.quantized.saturated
        if saturated:
            detail = ", ".join(f"{tensor} {count}" for tensor, count in saturated.items())
            notes.append(f"{sum(saturated.values())} weight(s) saturated, clamped to their "
                         f"format's range ({detail})")
        if self.quantized.abar_corrected:
            notes.append(f"{self.quantized.abar_corrected} Abar pole(s) pulled inside the unit "
                         f"circle (quant.abar_stability = \"correct\")")
        return notes

    def dequantize_output(self, y_int) -> np.ndarray:
        """Natural integer outputs -> their exact real values."""
        raise NotImplementedError

    def reference(self, u_int) -> np.ndarray:
        """The golden integer model's natural outputs for integer inputs: the specification."""
        raise NotImplementedError

    def float_reference(self, u) -> np.ndarray:
        """The unquantized float model's natural outputs for real inputs."""
        raise NotImplementedError

    def input_beats(self, u_int) -> np.ndarray:
        """int64 (batch, T, input fields): each input beat's payload field values."""
        raise NotImplementedError

    def reference_beats(self, u_int) -> np.ndarray:
        """int64 (batch, outputs per sequence, output fields): the output beats the RTL must
        produce, per the golden model."""
        raise NotImplementedError

    def outputs_from_beats(self, beats) -> np.ndarray:
        """Output beats (as :meth:`reference_beats`) -> natural integer outputs."""
        raise NotImplementedError

    # --- running it --------------------------------------------------------------------------------

    def run(self, u, engine: str = "golden", *, simulator: str = "verilator") -> np.ndarray:
        """Real inputs -> natural outputs in real units on ``engine`` (see :data:`ENGINES`):
        ``golden`` and ``rtl`` give identical values."""
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        u = self.check_input(u, integer=False)
        if engine == "float":
            return self.float_reference(u)
        u_int = self.quantize_input(u)
        y_int = self.reference(u_int) if engine == "golden" else self.run_rtl(u_int, simulator=simulator)
        return self.dequantize_output(y_int)

    def simulate(self, u_int, *, check: bool = True, simulator: str = "verilator", seed: int = 0,
                 idle_probability: float = 0.0, stall_probability: float = 0.0,
                 check_timing: bool = True, work_dir=None, cache_dir=None, verbose: bool = False,
                 raise_on_failure: bool = True, log_path=None) -> Simulation:
        """Run integer inputs through the generated RTL under the cocotb testbench: random idle
        cycles and back-pressure with the given probabilities, every output beat compared bit for
        bit with the golden model (``check``), the measured cycles per timestep and latencies with
        the manifest's (``check_timing``). Raises SimulationError on any failure unless
        ``raise_on_failure`` is False. The Verilog goes to ``work_dir`` (default: a folder per
        model hash under the cache); ``log_path`` keeps the simulator's log."""
        u_int = self.check_input(u_int, integer=True)
        files = self.generate(work_dir or self._work_dir(cache_dir))
        result = check_stream(files.manifest_path, self.input_beats(u_int),
                              expected=self.reference_beats(u_int) if check else None,
                              simulator=simulator, seed=seed, idle_probability=idle_probability,
                              stall_probability=stall_probability, check_timing=check_timing,
                              cache_dir=cache_dir, verbose=verbose,
                              raise_on_failure=raise_on_failure, log_path=log_path)
        outputs = self.outputs_from_beats(result.outputs) if len(result.outputs) else result.outputs
        return Simulation(outputs, result)

    def run_rtl(self, u_int, *, simulator: str = "verilator", check: bool = True, work_dir=None,
                cache_dir=None, progress=None) -> np.ndarray:
        """Natural outputs of the generated RTL for integer inputs, fast: the sequences stream back
        to back through the native stream bench (``sim/native``: no Python per cycle, so a whole
        test split takes minutes). With ``check`` every output beat is compared with the golden
        model and any difference raises SimulationError. ``progress(done, total)`` is called as
        output beats arrive."""
        u_int = self.check_input(u_int, integer=True)
        files = self.generate(work_dir or self._work_dir(cache_dir))
        fields = files.manifest["ports"]["u__payload"]["fields"]
        beats = self.input_beats(u_int)
        words = [pack_fields(fields, beat) for sequence in beats.tolist() for beat in sequence]
        batch, steps = u_int.shape[:2]
        per_sequence = self.outputs_per_sequence(steps)
        # Every sequence at full rate plus the pipeline's latency, with a wide margin.
        max_cycles = 2 * (len(words) * self.cycles_per_timestep + self.latency) + 1000
        run = run_stream(files.manifest_path, words, batch * per_sequence, max_cycles=max_cycles,
                         simulator=simulator, cache_dir=cache_dir, progress=progress)
        got = np.array(run.outputs, dtype=np.int64).reshape(batch, per_sequence, -1)
        if check:
            want = self.reference_beats(u_int)
            bad = np.flatnonzero(np.any(got != want, axis=2).reshape(-1))
            if bad.size:
                first = "; ".join(f"sequence {i // per_sequence}, beat {i % per_sequence}: RTL "
                                  f"{got.reshape(-1, got.shape[2])[i].tolist()}, golden "
                                  f"{want.reshape(-1, want.shape[2])[i].tolist()}" for i in bad[:3])
                raise SimulationError(f"{bad.size} of {got.shape[0] * per_sequence} output beats "
                                      f"differ from the golden model; first: {first}")
        return self.outputs_from_beats(got)

    def _work_dir(self, cache_dir) -> Path:
        return Path(cache_dir or default_cache_dir()) / "designs" / f"{self.name}-{self.hash[:16]}"

    # --- synthesis -------------------------------------------------------------------------------

    def synthesize(self, target: str, out_dir, *, place: bool = True, progress=print) -> dict:
        """Yosys (+ nextpnr unless ``place`` is False) for a target device; writes
        ``out_dir/report.json`` and returns the report (``synth/flow.py``)."""
        return synthesize(self, target, out_dir, place=place, progress=progress)

    def estimate(self, target: str) -> dict:
        """The analytic resource model (no tools: ``synth/estimate.py``; its measured error is
        in docs/synthesis.md)."""
        return estimate(self, target)

    def build_board(self, board: str, out_dir, **options) -> dict:
        """A bitstream of the design (a layer or a whole network) behind the UART link for a
        board (``synth/board.py``; a network answers CLASSIFY, docs/protocol.md)."""
        return build_board(self, board, out_dir, **options)


class _LayerDesign(Design):
    def component(self):
        return SSMLayer(self.quantized)

    @property
    def input_quantizer(self) -> Quantizer:
        return self.config.quant.input

    @property
    def input_channels(self) -> int:
        return self.quantized.channels

    @property
    def steps(self) -> None:
        return None

    def outputs_per_sequence(self, steps: int) -> int:
        return steps

    def quantize_input(self, u) -> np.ndarray:
        return quantize_input(self.quantized, u)

    def dequantize_output(self, y_int) -> np.ndarray:
        return dequantize_output(self.quantized, y_int)

    def reference(self, u_int) -> np.ndarray:
        return run_integer(self.quantized, u_int)

    def float_reference(self, u) -> np.ndarray:
        return float_model.run_recurrent(self.quantized.float_weights, u)

    def input_beats(self, u_int) -> np.ndarray:
        u_int = np.asarray(u_int, dtype=np.int64)
        start = np.zeros(u_int.shape[:2] + (1,), dtype=np.int64)
        start[:, 0] = 1
        return np.concatenate([u_int, start], axis=2)

    def reference_beats(self, u_int) -> np.ndarray:
        return self.reference(u_int)

    def outputs_from_beats(self, beats) -> np.ndarray:
        return np.asarray(beats, dtype=np.int64)


class _NetworkDesign(Design):
    def component(self):
        return NetworkAccelerator(self.quantized)

    @property
    def input_quantizer(self) -> Quantizer:
        return self.quantized.network.input

    @property
    def input_channels(self) -> int:
        return self.quantized.network.inputs

    @property
    def steps(self) -> int:
        return self.quantized.network.steps

    def outputs_per_sequence(self, steps: int) -> int:
        return steps if self.quantized.network.per_step else 1

    def quantize_input(self, u) -> np.ndarray:
        return quantize_network_input(self.quantized, u)

    def dequantize_output(self, y_int) -> np.ndarray:
        return to_float(y_int, self.quantized.logits_frac)

    def reference(self, u_int) -> np.ndarray:
        return run_integer_network(self.quantized, u_int)

    def float_reference(self, u) -> np.ndarray:
        net = self.quantized.network
        return run_float_network(self.quantized.float_weights, u, activation=net.activation,
                                 readout=net.readout)

    def input_beats(self, u_int) -> np.ndarray:
        u_int = np.asarray(u_int, dtype=np.int64)
        flags = np.zeros(u_int.shape[:2] + (2,), dtype=np.int64)
        flags[:, 0, 0] = 1                      # start: a sequence's first beat
        flags[:, -1, 1] = 1                     # last: its final beat
        return np.concatenate([u_int, flags], axis=2)

    def reference_beats(self, u_int) -> np.ndarray:
        logits = self.reference(u_int)
        if self.quantized.network.per_step:     # one output vector per timestep
            return logits
        return np.concatenate([logits, predict(logits)[:, None]], axis=1)[:, None, :]

    def outputs_from_beats(self, beats) -> np.ndarray:
        beats = np.asarray(beats, dtype=np.int64)
        return beats if self.quantized.network.per_step else beats[:, 0, :-1]
