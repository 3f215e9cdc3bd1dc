"""smtp-proto: a sans-I/O SMTP and LMTP client protocol engine.

The engine consumes bytes and produces events and bytes; it never touches a socket, a clock
or a thread. See :class:`ClientConnection` for the loop a transport runs.
"""

from ._connection import NEED_DATA, PAUSED, ClientConnection, Sentinel
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    ChunkAccepted,
    ConnectionClosed,
    DeliveryStatus,
    EhloFeatures,
    EnhancedStatusCode,
    Event,
    Greeting,
    MessageAccepted,
    MessageRejected,
    ReadyForData,
    RecipientAccepted,
    RecipientRefused,
    Reply,
    SenderAccepted,
    SenderRefused,
    ServiceClosing,
    StartTlsReady,
)
from ._limits import Limits, Timeouts
from ._state import Command, State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "ChunkAccepted",
    "ClientConnection",
    "Command",
    "ConnectionClosed",
    "DeliveryStatus",
    "EhloFeatures",
    "EnhancedStatusCode",
    "Event",
    "Greeting",
    "Limits",
    "LocalProtocolError",
    "MessageAccepted",
    "MessageRejected",
    "ProtocolError",
    "ReadyForData",
    "RecipientAccepted",
    "RecipientRefused",
    "RemoteProtocolError",
    "Reply",
    "SenderAccepted",
    "SenderRefused",
    "Sentinel",
    "ServiceClosing",
    "StartTlsReady",
    "State",
    "Timeouts",
]

# Present every public class as smtp_proto.X, the name users import, in reprs, tracebacks
# and the documentation, rather than as the private module that defines it.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value
