"""Host side of the board link: a framed, CRC-checked, retransmitting protocol over a UART to the
FPGA board top (docs/protocol.md), the driver ``Accelerator`` (``run`` for a single layer,
``classify`` for a whole network), and an in-process reference device."""

from .driver import Accelerator
from ..spec.protocol import (CRCError, DeviceInfo, FrameTimeout, IdentifyMismatch, NackError,
                             NetworkInfo, ProtocolError)
from .transport import (DeviceModelTransport, Fault, ReferenceDevice, SerialTransport,
                        Transport)

__all__ = ["Accelerator", "DeviceInfo", "NetworkInfo", "ProtocolError", "CRCError", "FrameTimeout",
           "IdentifyMismatch", "NackError", "Transport", "SerialTransport", "ReferenceDevice",
           "DeviceModelTransport", "Fault"]
