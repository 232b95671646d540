"""A PLL that clocks a board top faster than the board's oscillator (``ssmgen build --clock``).

A network on the iCEBreaker is compute bound at the board's 12 MHz (the trained sDigits model
places at 22 MHz): the PLL of the FPGA multiplies the oscillator up to a requested frequency,
and the whole board top (accelerator, link, UART) runs from its output.

:func:`pll_settings` finds the primitive's dividers by the same search as the vendor-free tools
(``icepll`` for iCE40, ``ecppll`` for ECP5), never above the requested frequency (the request is
what timing is checked against); :func:`pll_domain` instantiates the primitive and makes the
``sync`` domain of its output, held in reset until the PLL has locked and a few microseconds
more (iCE40 block RAM reads as zero for about 3 µs after configuration; Amaranth's own default
domain waits for it the same way).

    iCE40 SB_PLL40_PAD, feedback SIMPLE: f_out = f_in (DIVF + 1) / ((DIVR + 1) 2^DIVQ),
        f_pfd = f_in / (DIVR + 1) in 10..133 MHz, f_vco = f_pfd (DIVF + 1) in 533..1066 MHz,
        DIVR 0..15, DIVF 0..127, DIVQ 1..6
    ECP5 EHXPLLL, feedback CLKOP: f_out = f_in CLKFB_DIV / CLKI_DIV,
        f_pfd = f_in / CLKI_DIV in 3.125..400 MHz, f_vco = f_out CLKOP_DIV in 400..800 MHz,
        CLKI_DIV 1..128, CLKFB_DIV 1..80, CLKOP_DIV 1..128
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, Instance, Module, Signal

__all__ = ["PLLSettings", "pll_settings", "pll_domain"]

#: Microseconds the ``sync`` domain stays in reset after the PLL locks.
RESET_US = 15


@dataclass(frozen=True)
class PLLSettings:
    family: str           #: "ice40" or "ecp5"
    input_hz: float       #: the board's oscillator
    output_hz: float      #: what the PLL makes (at most the request)
    params: dict          #: the primitive's parameters

    def describe(self) -> dict:
        return {"family": self.family, "input_mhz": self.input_hz / 1e6,
                "output_mhz": round(self.output_hz / 1e6, 4), "params": dict(self.params)}


def _ice40(fin: float):
    for divr in range(16):
        pfd = fin / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                fout = vco / 2 ** divq
                # icepll's loop filter setting for the phase detector's frequency
                band = next((k for k, top in enumerate((17e6, 26e6, 44e6, 66e6, 101e6), 1)
                             if pfd < top), 6)
                yield fout, {"FEEDBACK_PATH": "SIMPLE", "DIVR": divr, "DIVF": divf,
                             "DIVQ": divq, "FILTER_RANGE": band}


def _ecp5(fin: float):
    for clki in range(1, 129):
        pfd = fin / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            fout = pfd * clkfb
            # the output divider that puts the VCO nearest the middle of its range
            dividers = [d for d in range(1, 129) if 400e6 <= fout * d <= 800e6]
            if dividers:
                clkop = min(dividers, key=lambda d: abs(fout * d - 600e6))
                yield fout, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                             "CLKOP_CPHASE": clkop - 1, "CLKOP_FPHASE": 0,
                             "FEEDBK_PATH": "CLKOP"}


def pll_settings(family: str, input_hz: float, target_hz: float) -> PLLSettings:
    """The dividers whose output is closest to ``target_hz`` without exceeding it (ties: the
    first found). Raises ValueError naming ``--clock`` when no setting reaches within 10 %."""
    search = {"ice40": _ice40, "ecp5": _ecp5}.get(family)
    if search is None:
        raise ValueError(f"No PLL for FPGA family {family!r}; known: ice40, ecp5")
    best = None
    for fout, params in search(input_hz):
        if fout <= target_hz and (best is None or fout > best[0]):
            best = (fout, params)
    if best is None or best[0] < 0.9 * target_hz:
        reach = f"; the closest below is {best[0] / 1e6:.4g} MHz" if best else ""
        raise ValueError(f"--clock: the {family} PLL cannot make {target_hz / 1e6:g} MHz from "
                         f"{input_hz / 1e6:g} MHz within 10 %{reach}")
    return PLLSettings(family, input_hz, best[0], best[1])


def pll_domain(m: Module, platform, settings: PLLSettings) -> None:
    """Drive the ``sync`` domain of ``m`` from the PLL of ``settings``, fed by the platform's
    default clock pin, and constrain it for nextpnr."""
    sync = ClockDomain("sync")
    m.domains += sync
    platform.add_clock_constraint(sync.clk, settings.output_hz)
    pin = platform.request(platform.default_clk, dir="-")
    locked = Signal()
    params = {f"p_{k}": v for k, v in settings.params.items()}
    if settings.family == "ice40":
        # _PAD: the clock pin feeds the PLL directly (the iCEBreaker's 12 MHz pin is a PLL pad)
        m.submodules.pll = Instance("SB_PLL40_PAD", **params, i_PACKAGEPIN=pin.io, i_RESETB=1,
                                    i_BYPASS=0, o_PLLOUTGLOBAL=sync.clk, o_LOCK=locked)
    else:
        m.submodules.pll = Instance(
            "EHXPLLL", **params, p_CLKOP_ENABLE="ENABLED", p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            a_FREQUENCY_PIN_CLKI=f"{settings.input_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{settings.output_hz / 1e6:.6g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            i_CLKI=pin.io, i_CLKFB=sync.clk, o_CLKOP=sync.clk, o_LOCK=locked, i_RST=0,
            i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0,
            i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0)
    # reset until locked, then RESET_US more (counted on the PLL's clock)
    por = ClockDomain("por", local=True)
    m.domains += por
    delay = max(1, int(RESET_US * 1e-6 * settings.output_hz))
    timer = Signal(range(delay + 1))
    ready = Signal()
    with m.If(timer == delay):
        m.d.por += ready.eq(1)
    with m.Else():
        m.d.por += timer.eq(timer + 1)
    m.d.comb += [por.clk.eq(sync.clk), por.rst.eq(~locked), sync.rst.eq(~ready)]
