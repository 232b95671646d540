# amaranth: UnusedElaboratable=no
"""The accelerator on a board: UART pins -> link controller -> SSM layer or whole network.

``BoardCore`` is everything but the pins and the clock: two UART pins in, the accelerator inside
(``SSMLayer`` behind ``LinkController`` for a QuantizedSSM, ``NetworkAccelerator`` behind
``NetworkLinkController`` for a QuantizedNetwork). The simulated transport
(``sim/board/transport.py``) runs exactly this in Amaranth's simulator with a small divisor;
``BoardTop`` puts it on an amaranth-boards platform, taking the board's clock and its ``uart``
resource.

(The first line silences Amaranth's warning about components never elaborated: a board top whose
elaboration stops at a bad parameter, e.g. ``ssmgen build --max-batch 0``, leaves the parts it
built unused.)
"""

from __future__ import annotations

import operator

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...spec.errors import ConfigError
from ..datapath.network import NetworkAccelerator
from ..datapath.ssm_layer import SSMLayer
from .controller import LinkController
from .network_controller import NetworkLinkController
from .pll import PLLSettings, pll_domain
from .uart import UARTRx, UARTTx, check_divisor

__all__ = ["BoardCore", "BoardTop", "DEFAULT_BAUD", "DEFAULT_MAX_BATCH", "MAX_BAUD",
           "uart_divisor"]

DEFAULT_BAUD = 115200
#: a layer's default; a network's is ``spec.protocol.default_network_batch``
DEFAULT_MAX_BATCH = 32
#: The boards' USB serial bridges (FTDI FT2232H on the iCEBreaker, FT231X on the ULX3S) go no
#: faster.
MAX_BAUD = 3_000_000


def uart_divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles per UART bit: clock / baud, rounded. The rate error must stay under 2 % so
    that mid-bit sampling holds over a 10-bit character, the divisor must be at least 4 (the
    receiver's mid-bit sampling) and the rate at most ``MAX_BAUD``. The iCEBreaker's 12 MHz
    makes every standard rate up to 3 Mbaud (divisor 4); the ULX3S's 25 MHz up to 1 Mbaud
    (divisor 25; 2 and 3 Mbaud would be 4 % off)."""
    baud = operator.index(baud)
    if baud <= 0:
        raise ValueError(f"Baud must be positive, not {baud}")
    divisor = round(clock_hz / baud)
    error = abs(clock_hz / divisor - baud) / baud if divisor else 1.0
    if divisor < 4 or error > 0.02:
        raise ValueError(f"Baud {baud} cannot be generated from a {clock_hz / 1e6:g} MHz clock "
                         f"within 2 % (divisor {divisor}, error {100 * error:.1f} %)")
    if baud > MAX_BAUD:
        raise ValueError(f"Baud must be at most {MAX_BAUD} (the boards' USB serial bridges go no "
                         f"faster), not {baud}")
    return divisor


class BoardCore(wiring.Component):
    """UART receiver -> byte FIFO -> link controller <-> accelerator; link controller -> UART
    transmitter.

    Parameters
    ----------
    model : QuantizedSSM or QuantizedNetwork
                            a layer: ``LinkController`` and ``SSMLayer``; a network:
                            ``NetworkLinkController`` and ``NetworkAccelerator``
    divisor : int           clock cycles per UART bit (clock frequency / baud rate), >= 4
    max_batch : int or None a layer: timesteps per STREAM and output buffer capacity, 1..255
                            (None: ``DEFAULT_MAX_BATCH``); a network: timesteps per CLASSIFY,
                            1..65535 (None: ``spec.protocol.default_network_batch``)
    fifo_depth : int        received bytes held while a request executes or its response is
                            sent (the host sends one request at a time; the FIFO absorbs line
                            noise or a retransmission that overlaps a response)

    Ports
    -----
    rx : In(1)              UART line from the host (idle high)
    tx : Out(1)             UART line to the host (idle high)
    busy : Out(1)           receiving a byte, executing a request or sending a response (the
                            simulated transport waits for it to fall)

    Attributes: ``link`` (the controller), ``accelerator`` (the layer or network).
    """

    def __init__(self, model, *, divisor: int, max_batch: int | None = None,
                 fifo_depth: int = 64, model_hash: str | None = None):
        self.divisor = check_divisor(divisor)
        fifo_depth = operator.index(fifo_depth)
        if fifo_depth < 2:
            raise ValueError(f"Fifo_depth must be at least 2, not {fifo_depth}")
        self.fifo_depth = fifo_depth
        if getattr(model, "design_kind", None) == "network":
            if model.network.per_step:
                raise ConfigError("network.readout = \"per_step\": the UART link's CLASSIFY "
                                  "returns one result per sequence; a sequence model has no "
                                  "board protocol yet (generate, synth and run take it)")
            self.link = NetworkLinkController(model, max_batch=max_batch, model_hash=model_hash)
            self.accelerator = NetworkAccelerator(model)
        else:
            self.link = LinkController(model, max_batch=(DEFAULT_MAX_BATCH if max_batch is None
                                                         else max_batch), model_hash=model_hash)
            self.accelerator = SSMLayer(model)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UARTRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UARTTx(self.divisor)
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        m.submodules.link = link = self.link
        m.submodules.accelerator = accelerator = self.accelerator

        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
                     fifo.w_data.eq(uart_rx.data.payload), fifo.w_en.eq(uart_rx.data.valid),
                     uart_rx.data.ready.eq(fifo.w_rdy),
                     link.rx.payload.eq(fifo.r_data), link.rx.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(link.rx.ready),
                     self.busy.eq(uart_rx.busy | uart_rx.data.valid | (fifo.level != 0)
                                  | link.busy | uart_tx.busy)]
        wiring.connect(m, link.tx, uart_tx.data)
        wiring.connect(m, link.u, accelerator.u)
        wiring.connect(m, accelerator.y, link.y)
        return m


class BoardTop(Elaboratable):
    """``BoardCore`` on an amaranth-boards platform, clocked by the board's default clock (the
    iCEBreaker's 12 MHz, the ULX3S's 25 MHz) with the UART on the ``uart`` resource 0 (the
    board's USB serial bridge). The platform's default ``sync`` domain and power-on reset are
    used.

    ``model``: a QuantizedSSM or QuantizedNetwork (see ``BoardCore``). ``baud``: line rate; the
    divisor is ``uart_divisor(clock, baud)``. ``pll`` (``hw/link/pll.py``): clock everything
    from the FPGA's PLL at ``pll.output_hz`` instead of the board's clock.
    """

    def __init__(self, model, *, baud: int = DEFAULT_BAUD, max_batch: int | None = None,
                 model_hash: str | None = None, pll: PLLSettings | None = None):
        baud = operator.index(baud)
        if baud <= 0:
            raise ValueError(f"Baud must be positive, not {baud}")
        self.model = model
        self.baud = baud
        self.max_batch = max_batch
        self.model_hash = model_hash
        self.pll = pll
        self.core = None                  # built at elaboration, when the clock is known

    def elaborate(self, platform):
        m = Module()
        clock_hz = platform.default_clk_frequency
        if self.pll is not None:
            pll_domain(m, platform, self.pll)
            clock_hz = self.pll.output_hz
        divisor = uart_divisor(clock_hz, self.baud)
        m.submodules.core = core = self.core = BoardCore(
            self.model, divisor=divisor, max_batch=self.max_batch, model_hash=self.model_hash)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buffer.i), tx_buffer.o.eq(core.tx)]
        return m
