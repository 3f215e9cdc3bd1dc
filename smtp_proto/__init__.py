"""smtp-proto: a sans-I/O SMTP and LMTP client protocol engine.

The engine consumes bytes and produces events and bytes; it never touches a socket, a clock
or a thread. See :class:`ClientConnection` for the loop a transport runs.
"""

from ._connection import NEED_DATA, PAUSED, ClientConnection, Sentinel
from ._envelope import (
    Body,
    ServerCapabilityError,
    detect_body,
    encode_address,
    line_allowance,
    mail_parameters,
    rcpt_parameters,
    xtext_decode,
    xtext_encode,
)
from ._errors import (
    InsecureAuthenticationError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from ._events import (
    AuthFailed,
    AuthSucceeded,
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
from ._message import message_envelope, message_needs_smtputf8, serialize_message
from ._sasl import (
    MAX_SCRAM_ITERATIONS,
    CramMD5,
    External,
    Login,
    Mechanism,
    OAuthBearer,
    Plain,
    SaslError,
    ScramSha1,
    ScramSha256,
    XOAuth2,
    choose_mechanism,
    password_mechanisms,
)
from ._state import Command, State
from ._transaction import (
    MailTransaction,
    MessageOutcome,
    Recipient,
    RecipientResult,
    TransactionResult,
)

__all__ = [
    "MAX_SCRAM_ITERATIONS",
    "NEED_DATA",
    "PAUSED",
    "AuthFailed",
    "AuthSucceeded",
    "Body",
    "ChunkAccepted",
    "ClientConnection",
    "Command",
    "ConnectionClosed",
    "CramMD5",
    "DeliveryStatus",
    "EhloFeatures",
    "EnhancedStatusCode",
    "Event",
    "External",
    "Greeting",
    "InsecureAuthenticationError",
    "Limits",
    "LocalProtocolError",
    "Login",
    "MailTransaction",
    "Mechanism",
    "MessageAccepted",
    "MessageOutcome",
    "MessageRejected",
    "OAuthBearer",
    "Plain",
    "ProtocolError",
    "ReadyForData",
    "Recipient",
    "RecipientAccepted",
    "RecipientRefused",
    "RecipientResult",
    "RemoteProtocolError",
    "Reply",
    "SaslError",
    "ScramSha1",
    "ScramSha256",
    "SenderAccepted",
    "SenderRefused",
    "Sentinel",
    "ServerCapabilityError",
    "ServiceClosing",
    "StartTlsReady",
    "State",
    "Timeouts",
    "TransactionResult",
    "XOAuth2",
    "choose_mechanism",
    "detect_body",
    "encode_address",
    "line_allowance",
    "mail_parameters",
    "message_envelope",
    "message_needs_smtputf8",
    "password_mechanisms",
    "rcpt_parameters",
    "serialize_message",
    "xtext_decode",
    "xtext_encode",
]

# Present every public class as smtp_proto.X, the name users import, in reprs, tracebacks
# and the documentation, rather than as the private module that defines it.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value
