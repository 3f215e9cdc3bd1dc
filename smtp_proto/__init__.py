"""smtp-proto: a sans-I/O SMTP client protocol engine."""

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
