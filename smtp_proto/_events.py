"""The values the engine hands to its caller.

Every event is an immutable, slotted, keyword-only dataclass: it is validated once when made
and can be compared, hashed where its fields allow, and stored. Events that carry a server
reply keep the whole :class:`Reply`, raw bytes included, so nothing the server said is lost.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, TypeVar, final

__all__ = [
    "AuthFailed",
    "AuthSucceeded",
    "ChunkAccepted",
    "ConnectionClosed",
    "DeliveryStatus",
    "EhloFeatures",
    "EnhancedStatusCode",
    "Event",
    "Greeting",
    "MessageAccepted",
    "MessageRejected",
    "ReadyForData",
    "RecipientAccepted",
    "RecipientRefused",
    "Reply",
    "SenderAccepted",
    "SenderRefused",
    "ServiceClosing",
    "StartTlsReady",
]


class Event:
    """Base class of everything :meth:`ClientConnection.next_event` returns."""

    __slots__ = ()


_Value = TypeVar("_Value")


def fast_constructor(cls: type[_Value]) -> Callable[..., _Value]:
    """A constructor of *cls*, a frozen slotted dataclass of one to four fields without
    ``__post_init__``, taking its fields positionally in their order: for the engine's own
    values, made many times per message, whose fields it knows to be right.

    The dataclass's ``__init__`` sets each field of a frozen instance through
    ``object.__setattr__``; setting the slots directly makes the same object in about a
    third of the time. A class with ``__post_init__`` is refused, since its checks would be
    skipped.
    """
    if "__post_init__" in vars(cls) or not getattr(cls, "__slots__", None):
        raise TypeError(f"{cls.__name__} cannot be made without its __init__")
    # The engine's values have one to four fields; each count gets a constructor of its
    # own, since a loop over the fields would cost what this saves.
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    setters = tuple(getattr(cls, name).__set__ for name in names)
    new = object.__new__
    if len(setters) == 1:
        (set_first,) = setters

        def make_one(first: Any) -> _Value:
            value = new(cls)
            set_first(value, first)
            return value

        return make_one
    if len(setters) == 2:
        set_first, set_second = setters

        def make_two(first: Any, second: Any) -> _Value:
            value = new(cls)
            set_first(value, first)
            set_second(value, second)
            return value

        return make_two
    if len(setters) == 3:
        set_first, set_second, set_third = setters

        def make_three(first: Any, second: Any, third: Any) -> _Value:
            value = new(cls)
            set_first(value, first)
            set_second(value, second)
            set_third(value, third)
            return value

        return make_three
    if len(setters) == 4:
        set_first, set_second, set_third, set_fourth = setters

        def make_four(first: Any, second: Any, third: Any, fourth: Any) -> _Value:
            value = new(cls)
            set_first(value, first)
            set_second(value, second)
            set_third(value, third)
            set_fourth(value, fourth)
            return value

        return make_four
    raise TypeError(f"{cls.__name__} has {len(setters)} fields; up to 4 are supported")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class EnhancedStatusCode:
    """An RFC 3463 enhanced status code, ``class.subject.detail``, such as ``5.1.1``."""

    #: 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    status_class: int
    subject: int
    detail: int

    def __post_init__(self) -> None:
        if self.status_class not in (2, 4, 5):
            raise ValueError(f"status class must be 2, 4 or 5, not {self.status_class!r}")
        # RFC 3463 section 2: subject is 1 to 3 digits, detail 1 to 3 digits.
        for name in ("subject", "detail"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= 999:
                raise ValueError(f"{name} must be an int from 0 to 999, not {value!r}")

    def __str__(self) -> str:
        return f"{self.status_class}.{self.subject}.{self.detail}"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Reply(Event):
    """One complete server reply, possibly of several lines (RFC 5321 section 4.2).

    Returned as an event of its own for commands that have no more specific outcome (NOOP,
    RSET, VRFY, EXPN, HELP, QUIT and extension commands), and carried by every other event.
    """

    #: The three-digit reply code.
    code: int
    #: The text of each line after the code and its separator, decoded as UTF-8; octets that
    #: are not UTF-8 are kept as lone surrogates (``surrogateescape``), so no reply is lost
    #: or refused for its encoding.
    lines: tuple[str, ...]
    #: The RFC 3463 code that starts the first line, when present and consistent with
    #: :attr:`code`.
    enhanced_status: EnhancedStatusCode | None = None
    #: Every octet of the reply as received, CRLFs included.
    raw: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if type(self.code) is not int or not 200 <= self.code <= 599:
            raise ValueError(f"reply code must be an int from 200 to 599, not {self.code!r}")
        if not isinstance(self.lines, tuple) or not self.lines:
            raise ValueError("a reply has a non-empty tuple of lines")

    @property
    def text(self) -> str:
        """All lines of text joined with newlines."""
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        """A 2xx reply: the command succeeded."""
        return self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """A 3xx reply: the server waits for more (the 354 to DATA, the 334 of AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """A 4xx reply: the command failed, and may succeed if tried again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """A 5xx reply: the command failed and will fail again."""
        return self.code >= 500

    @property
    def is_negative(self) -> bool:
        """A 4xx or 5xx reply."""
        return self.code >= 400


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting(Event):
    """The server's opening reply. A positive one (220) lets the session start; a 554 means
    the server will serve no mail and the client should only send QUIT (RFC 5321 section
    3.1)."""

    reply: Reply

    @property
    def accepted(self) -> bool:
        """Whether the server will serve this session (a 2xx greeting)."""
        return self.reply.is_positive


def _params_of(value: object) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else ()


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class EhloFeatures(Event):
    """The positive reply to EHLO, LHLO or HELO, with the service extensions it announces.

    After HELO (or the HELO fallback) :attr:`esmtp` is false and there are no extensions.
    Keywords are upper-cased; their parameters are kept as sent. Keywords the engine does
    not know are kept too.
    """

    reply: Reply
    #: True after EHLO or LHLO, false after HELO.
    esmtp: bool
    #: The first word of the reply: the name the server gives itself.
    server_name: str
    #: Each announced keyword (upper case) mapped to its parameters.
    extensions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze the mapping so the event stays a value even if the caller kept the dict.
        object.__setattr__(self, "extensions", MappingProxyType(dict(self.extensions)))

    def supports(self, keyword: str) -> bool:
        """Whether the server announced *keyword* (case-insensitive)."""
        return keyword.upper() in self.extensions

    @property
    def pipelining(self) -> bool:
        """RFC 2920 command pipelining."""
        return "PIPELINING" in self.extensions

    @property
    def chunking(self) -> bool:
        """RFC 3030 BDAT."""
        return "CHUNKING" in self.extensions

    @property
    def starttls(self) -> bool:
        """RFC 3207 STARTTLS."""
        return "STARTTLS" in self.extensions

    @property
    def smtputf8(self) -> bool:
        """RFC 6531 internationalised addresses and headers."""
        return "SMTPUTF8" in self.extensions

    @property
    def eight_bit_mime(self) -> bool:
        """RFC 6152 8-bit message content."""
        return "8BITMIME" in self.extensions

    @property
    def binary_mime(self) -> bool:
        """RFC 3030 binary message content (with BDAT only)."""
        return "BINARYMIME" in self.extensions

    @property
    def dsn(self) -> bool:
        """RFC 3461 delivery status notifications."""
        return "DSN" in self.extensions

    @property
    def enhanced_status_codes(self) -> bool:
        """RFC 2034 enhanced status codes in replies."""
        return "ENHANCEDSTATUSCODES" in self.extensions

    @property
    def requiretls(self) -> bool:
        """RFC 8689 REQUIRETLS."""
        return "REQUIRETLS" in self.extensions

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """The SASL mechanisms announced with AUTH (RFC 4954), upper-cased."""
        return frozenset(m.upper() for m in _params_of(self.extensions.get("AUTH")))

    @property
    def max_message_size(self) -> int | None:
        """The largest message the server accepts (RFC 1870), or ``None`` for no known
        limit: SIZE absent, announced without a value, as 0, or with a malformed value."""
        params = _params_of(self.extensions.get("SIZE"))
        # Bound the digits before int(): a hostile 10,000-digit SIZE costs nothing.
        if len(params) != 1 or not params[0].isascii() or not params[0].isdigit():
            return None
        if len(params[0]) > 20:
            return None
        return int(params[0]) or None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class SenderAccepted(Event):
    """A positive reply to MAIL FROM."""

    sender: str
    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class SenderRefused(Event):
    """A negative reply to MAIL FROM: the transaction did not start."""

    sender: str
    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientAccepted(Event):
    """A positive reply to RCPT TO."""

    recipient: str
    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientRefused(Event):
    """A negative reply to RCPT TO. The rest of the transaction goes on; see
    :attr:`Reply.is_transient` and :attr:`Reply.is_permanent` for whether to retry."""

    recipient: str
    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyForData(Event):
    """The 354 reply to DATA: send the message with :meth:`ClientConnection.send_data`
    and finish it with :meth:`ClientConnection.end_data`."""

    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkAccepted(Event):
    """A positive reply to a BDAT chunk that was not the last one."""

    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class MessageAccepted(Event):
    """The server took responsibility for the message (the reply to the final dot or to
    BDAT LAST). Under LMTP there is one such event or :class:`MessageRejected` for each
    accepted recipient, named in :attr:`recipient`."""

    reply: Reply
    recipient: str | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRejected(Event):
    """The server refused the message: a negative reply to DATA, to a BDAT chunk, or to the
    end of the data. Under LMTP, :attr:`recipient` names the recipient concerned."""

    reply: Reply
    recipient: str | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class StartTlsReady(Event):
    """The 220 reply to STARTTLS. The engine is now paused: perform the TLS handshake, then
    call :meth:`ClientConnection.tls_established` and send EHLO again."""

    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceClosing(Event):
    """A 421 reply: the server is closing the connection (RFC 5321 section 3.8). It may come
    in reply to any command or unprompted; every command still outstanding is lost."""

    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSucceeded(Event):
    """The 235 that ends a successful AUTH exchange (RFC 4954 section 4). For mechanisms
    that authenticate the server too (SCRAM), the server's proof has been checked."""

    #: The SASL mechanism used, such as ``"SCRAM-SHA-256"``.
    mechanism: str
    reply: Reply


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailed(Event):
    """AUTH failed: the server refused it (535 bad credentials, 534 mechanism too weak, 538
    encryption required, 454 temporary failure, ...), or the client cancelled the exchange
    with ``*`` because a challenge made no sense; :attr:`reason` then says why."""

    mechanism: str
    reply: Reply
    #: Why the client cancelled, or None if the server ended the exchange by itself.
    reason: str | None = None


class DeliveryStatus(enum.Enum):
    """What a closed connection means for the message in flight (RFC 5321 section 6.1)."""

    #: No mail transaction was under way.
    NO_TRANSACTION = "no-transaction"
    #: A transaction was under way and its end of data had not been sent, or the server
    #: answered it with 421: the message was not delivered, and may be retried.
    FAILED = "failed"
    #: The end of data was sent but its reply never came: the server may or may not have
    #: taken the message, so retrying risks a duplicate.
    UNKNOWN = "unknown"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    """The server closed the connection. Once returned, :meth:`ClientConnection.next_event`
    keeps returning it."""

    delivery: DeliveryStatus = DeliveryStatus.NO_TRANSACTION
