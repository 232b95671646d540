"""A Transport to the board top running in Amaranth's simulator, with real UART bit timing.

``BoardSimTransport`` simulates ``hw.link.board_top.BoardCore`` (UART, FIFO, link controller, SSM
layer or whole network: everything but the board's pins and clock) and bit-bangs its UART: host
bytes are shifted onto the ``rx`` pin as 8N1 characters of ``divisor`` clock cycles per bit, and
the ``tx`` pin is decoded by sampling mid-bit. ``sw_driver.Accelerator.open(transport)`` works over it unchanged,
so the path host -> UART bytes -> RTL -> UART bytes -> host is exercised end to end.

Time is simulated. ``read`` advances the simulation until the link falls quiet (nothing left to
send, no byte on either line, the board top not busy) and returns what the board sent; b"" then
means the board will not answer (the driver's timeout). Faults are injected per frame with the
same ``FaultInjector`` as ``DeviceModelTransport``: each host ``write`` is one frame towards the
board, each ``0x00 ... 0x00`` frame the board sends is one frame towards the host.
"""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator

from ...hw.link.board_top import BoardCore
from ...hw.link.uart import check_divisor
from ...spec.protocol import max_encoded_size
from ...sw_driver.transport import DIRECTIONS, FAULT_KINDS, FaultInjector, Transport

__all__ = ["BoardSimTransport"]

CLOCK_PERIOD = 1e-6          # simulated seconds per clock cycle (a nominal 1 MHz)


async def _ticks(ctx, count: int) -> None:
    # Not ``ctx.tick().repeat(count)``: a repeat left suspended when the transport is garbage
    # collected raises "aclose(): asynchronous generator is already running".
    for _ in range(count):
        await ctx.tick()


class BoardSimTransport(Transport):
    """Parameters: ``model`` (QuantizedSSM or QuantizedNetwork), ``divisor`` (clock cycles per
    UART bit, >= 4; small keeps the simulation fast), ``max_batch`` (timesteps per STREAM, the
    board top's output buffer, for a layer; timesteps per CLASSIFY for a network), fault
    injection as in ``DeviceModelTransport`` (``faults``, ``fault_rate``, ``fault_kinds``,
    ``fault_directions``, ``seed``), ``host_divisor`` (the host UART's bit time in board clock
    cycles, default ``divisor``: another value models a baud-rate mismatch), ``vcd`` (a file to trace the board top's signals into, for
    debugging; written when the transport is closed).

    Counters: ``steps_applied`` (timesteps the layer or network accepted), ``framing_errors``
    (characters from the board with a low stop bit; always 0 for a correct transmitter),
    ``cycles``.
    ``fault_log`` lists the injected faults.
    """

    def __init__(self, model, *, divisor: int = 8, max_batch: int = 8, faults=(),
                 fault_rate: float = 0.0, fault_kinds=FAULT_KINDS, fault_directions=DIRECTIONS,
                 seed: int = 0, model_hash: str | None = None, host_divisor: int | None = None,
                 vcd: str | None = None):
        self.core = BoardCore(model, divisor=divisor, max_batch=max_batch, model_hash=model_hash)
        self.divisor = self.core.divisor
        # The host's bit time in board clock cycles: a different value models the mismatch
        # between the host's baud clock and the board's (a few percent is tolerated).
        self.host_divisor = self.divisor if host_divisor is None else check_divisor(host_divisor)
        self.injector = FaultInjector(faults, fault_rate=fault_rate, fault_kinds=fault_kinds,
                                      fault_directions=fault_directions, seed=seed)
        self.fault_log = self.injector.log
        self.byte_time = 10 * self.host_divisor * CLOCK_PERIOD
        link = self.core.link
        #: cycles the board may stay busy without the simulation being considered hung: the
        #: largest response on the line plus a full STREAM's or CLASSIFY's computation, with
        #: ample margin
        self._busy_limit = (20 * self.divisor * (max_encoded_size(6 + link.largest_response) + 2)
                            + link.max_batch * 64 * (self.core.accelerator.latency
                                                     + self.core.accelerator.cycles_per_timestep
                                                     + link.step_bytes + 8)
                            + 10_000)
        self._to_device: deque[int] = deque()
        self._from_device = bytearray()
        self._to_host = bytearray()
        self._sending = self._receiving = False
        self._busy = False
        self.steps_applied = 0
        self.framing_errors = 0
        self.closed = False

        self._sim = Simulator(self.core)
        self._sim.add_clock(CLOCK_PERIOD)
        for bench in (self._drive_rx, self._watch_tx, self._watch_busy, self._count_steps):
            self._sim.add_testbench(bench, background=True)
        self._vcd = None
        if vcd is not None:
            self._vcd = self._sim.write_vcd(vcd)
            self._vcd.__enter__()
        self._now = 0.0

    @property
    def cycles(self) -> int:
        return round(self._now / CLOCK_PERIOD)

    # --- simulated host UART ------------------------------------------------------------------

    async def _drive_rx(self, ctx):
        rx, divisor = self.core.rx, self.host_divisor
        ctx.set(rx, 1)
        while True:
            if not self._to_device:
                self._sending = False
                await _ticks(ctx, divisor)
                continue
            self._sending = True
            byte = self._to_device.popleft()
            for level in [0, *((byte >> i) & 1 for i in range(8)), 1]:   # 8N1, LSB first
                ctx.set(rx, level)
                await _ticks(ctx, divisor)

    async def _watch_tx(self, ctx):
        tx, divisor = self.core.tx, self.host_divisor
        while True:
            await ctx.negedge(tx)                              # start bit
            self._receiving = True
            await _ticks(ctx, divisor // 2)              # middle of the start bit
            if ctx.get(tx):                                    # a glitch, not a character
                self._receiving = False
                continue
            byte = 0
            for i in range(8):
                await _ticks(ctx, divisor)
                byte |= ctx.get(tx) << i
            await _ticks(ctx, divisor)
            if not ctx.get(tx):
                self.framing_errors += 1
            self._from_device.append(byte)
            self._receiving = False

    async def _watch_busy(self, ctx):
        while True:
            self._busy = bool(ctx.get(self.core.busy))
            await ctx.changed(self.core.busy)

    async def _count_steps(self, ctx):
        while True:
            await ctx.posedge(self.core.accelerator.u.valid)
            self.steps_applied += 1

    # --- Transport ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed:
            raise OSError("BoardSimTransport is closed")
        self._to_device.extend(self.injector.inject("to_device", bytes(data)))

    def read(self, timeout: float) -> bytes:
        """Bytes the board sent (after fault injection), or b"" if it falls quiet without
        sending any. ``timeout`` (real seconds) is not used: the simulation runs until quiet."""
        if self.closed:
            raise OSError("BoardSimTransport is closed")
        if not self._to_host:
            self._run_until_quiet()
        data = bytes(self._to_host)
        self._to_host.clear()
        return data

    def close(self) -> None:
        if self._vcd is not None and not self.closed:
            self._vcd.__exit__(None, None, None)
        self.closed = True

    # --- internals ----------------------------------------------------------------------------

    def _idle(self) -> bool:
        return not (self._to_device or self._sending or self._receiving or self._busy)

    def _run_until_quiet(self) -> None:
        step = 10 * max(self.divisor, self.host_divisor) * CLOCK_PERIOD    # a character
        quiet, busy_since = 0, self._now
        while quiet < 2:
            self._now += step
            self._sim.run_until(self._now)
            self._deliver()
            if self._idle():
                quiet += 1
                busy_since = self._now
            else:
                quiet = 0
                limit = self._busy_limit * CLOCK_PERIOD + len(self._to_device) * step
                if self._now - busy_since > limit:
                    raise RuntimeError(f"simulated board top still busy after "
                                       f"{round((self._now - busy_since) / CLOCK_PERIOD)} cycles "
                                       f"(cycle {self.cycles}): the link or the layer hangs")
        self._deliver(flush=True)

    def _deliver(self, flush: bool = False) -> None:
        """Move complete ``0x00 ... 0x00`` frames from the board to the host, through the fault
        injector; with ``flush``, also anything left that is not a complete frame."""
        buf = self._from_device
        while buf:
            if buf[0] != 0:                       # not the start of a frame: pass it on as is
                end = buf.find(0)
                cut = len(buf) if end < 0 else end
                self._to_host += buf[:cut]
                del buf[:cut]
                continue
            end = buf.find(0, 1)
            if end < 0:
                break                             # frame still arriving
            if end == 1:                          # two delimiters: not a frame
                self._to_host.append(0)
                del buf[:1]
                continue
            self._to_host += self.injector.inject("to_host", bytes(buf[:end + 1]))
            del buf[:end + 1]
        if flush and buf:
            self._to_host += buf
            buf.clear()
