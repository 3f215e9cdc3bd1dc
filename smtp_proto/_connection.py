"""The client connection: the one object a transport drives.

The loop every transport runs is the same, whatever its I/O:

1. write whatever :meth:`ClientConnection.data_to_send` returns;
2. call :meth:`ClientConnection.next_event` until it returns :data:`NEED_DATA`;
3. read from the network, with :attr:`ClientConnection.timeout` as the deadline, and pass
   what arrived to :meth:`ClientConnection.receive_data` (``b""`` when the peer closed).

Commands are methods (:meth:`~ClientConnection.ehlo`, :meth:`~ClientConnection.mail`, ...).
Each checks the session's state and its arguments, and appends the command's bytes to an
outbox; nothing is produced when a check fails. The engine also writes on its own in one
case: when EHLO is refused with 500 or 502 it sends HELO (RFC 5321 section 4.1.4), so a
transport must flush the outbox after pulling events as well as after sending commands.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import inspect
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice, repeat, starmap, takewhile
from operator import itemgetter
from typing import (
    TYPE_CHECKING,
    Concatenate,
    Final,
    NoReturn,
    ParamSpec,
    TypeAlias,
    TypeVar,
    cast,
)

from ._commands import format_command, format_hello, format_mail, format_rcpt
from ._data import DataWriter
from ._envelope import Body, ServerCapabilityError, line_allowance
from ._errors import (
    InsecureAuthenticationError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from ._events import (
    AuthFailed,
    ConnectionClosed,
    DeliveryStatus,
    EhloFeatures,
    Event,
    MessageAccepted,
    MessageRejected,
    RecipientAccepted,
    Reply,
    ServiceClosing,
    StartTlsReady,
)
from ._limits import Limits, Timeouts
from ._replies import ReplyReader
from ._sasl import Mechanism, SaslError, choose_mechanism, password_mechanisms
from ._transaction import DEFAULT_CHUNK_SIZE, MailTransaction, Recipient

if TYPE_CHECKING:
    from email.message import Message
from ._state import (
    ENDED_STATES,
    GROUP_ENDERS,
    MESSAGE_END_COMMANDS,
    REPLY_TRANSITIONS,
    SEND_TRANSITIONS,
    TIMEOUT_FIELD,
    TRANSACTION_COMMANDS,
    TRANSACTION_STATES,
    TRANSITIONS_BY_DIGIT,
    Command,
    ReplyClass,
    State,
)

__all__ = ["NEED_DATA", "PAUSED", "ClientConnection", "Sentinel"]

# The states after a whole envelope sent from READY (see _send_whole_envelope).
_AFTER_ENVELOPE = SEND_TRANSITIONS[SEND_TRANSITIONS[State.READY][Command.MAIL]][Command.RCPT]
_AFTER_ENVELOPE_AND_DATA = SEND_TRANSITIONS[_AFTER_ENVELOPE][Command.DATA]


class Sentinel(enum.Enum):
    """The two things :meth:`ClientConnection.next_event` returns that are not events."""

    #: Nothing more can be parsed: feed more bytes with ``receive_data``.
    NEED_DATA = "NEED_DATA"
    #: The engine is waiting for the transport, not the server: after STARTTLS was
    #: accepted, do the TLS handshake and call ``tls_established``.
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
PAUSED: Final = Sentinel.PAUSED

# The verbs that have methods of their own, because they change the session's state.
# send_command() refuses them so that the state machine can never be bypassed.
_RESERVED_VERBS = frozenset(
    {"EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "QUIT", "STARTTLS"}
    | {"NOOP", "VRFY", "EXPN", "HELP", "AUTH"}
)

# RFC 6531 section 3.2: a non-ASCII address may only go in a transaction whose MAIL carries
# SMTPUTF8. encode_address() turns a non-ASCII domain into an A-label instead.
_NEEDS_SMTPUTF8 = (
    "a non-ASCII address needs MAIL's SMTPUTF8 parameter (RFC 6531 section 3.2); "
    "see encode_address() for internationalised domains"
)

# RFC 5321 section 4.1.4: a server that does not know EHLO answers 500 or 502, and the client
# may then fall back to HELO.
_EHLO_UNKNOWN = frozenset({500, 502})

# Events the session learns something from beyond its state (see _record); most replies
# (a sender's or a recipient's acceptance, say) teach it nothing more.
_RECORDED_EVENTS: frozenset[type[Event]] = frozenset({EhloFeatures, MessageRejected, StartTlsReady})

# States in which _take_replies stops: the session ended, or waits for the TLS handshake.
_REPLIES_NOT_TAKEN = ENDED_STATES | {State.TLS_HANDSHAKE}
# The commands whose replies _take_replies may take without making their events.
_SHORT_WAY = frozenset({Command.MAIL, Command.RCPT, Command.DATA, Command.END_OF_DATA})
# What a 354 to DATA does to the state, as the reply table says (read once, not per reply).
_DATA_READY_STATES = REPLY_TRANSITIONS[Command.DATA, ReplyClass.INTERMEDIATE][1]

# Commands whose replies may need more than the reply table (a HELO fallback, a chunk
# after a failed one, an AUTH challenge); the others go straight to it.
_REPLIES_CHECKED_FIRST = frozenset({Command.EHLO, Command.BDAT, Command.BDAT_LAST, Command.AUTH})


class _Transaction:
    # One mail transaction's bookkeeping, shared by the commands that belong to it.
    __slots__ = ("accepted", "message_failed", "owner", "utf8")

    def __init__(self, owner: MailTransaction | None, utf8: bool) -> None:
        # Under LMTP, the recipients accepted, whom the replies to the content answer for.
        self.accepted: list[str] = []
        self.message_failed = False
        # Whether MAIL carried SMTPUTF8, which non-ASCII recipients need (RFC 6531).
        self.utf8 = utf8
        # The MailTransaction that sent it, which is told of every reply to it.
        self.owner = owner


# RFC 4422 section 3.1: a SASL mechanism name is 1 to 20 upper-case letters, digits, "-" and
# "_". Checked so a custom mechanism cannot put anything else on the AUTH line.
_SASL_NAME = re.compile(r"[A-Z0-9_-]{1,20}")


class _AuthExchange:
    # The state of one AUTH exchange while its challenges are answered.
    __slots__ = ("cancelled_because", "deferred_response", "mechanism", "rounds")

    def __init__(self, mechanism: Mechanism, deferred_response: bytes | None) -> None:
        self.mechanism = mechanism
        # An initial response too long for the AUTH line, to be sent after the first 334.
        self.deferred_response = deferred_response
        self.rounds = 0
        self.cancelled_because: str | None = None


# A command on the wire whose reply has not arrived (or, under LMTP, not all replies):
# (command, argument, transaction). A plain tuple, since one is made for every command sent,
# and a message's RCPTs are then made in one step, in C (_send_rcpts). Under LMTP the replies
# to the end of a message are counted by the connection (_lmtp_replies), not here: only the
# oldest entry is ever being answered.
_Pending: TypeAlias = tuple[Command, str, _Transaction | None]
_COMMAND_AND_TRANSACTION = itemgetter(0, 2)

_Params = ParamSpec("_Params")
_Result = TypeVar("_Result")


def _poisons(
    method: Callable[Concatenate[ClientConnection, _Params], _Result],
) -> Callable[Concatenate[ClientConnection, _Params], _Result]:
    # Every public entry point goes through here: a poisoned connection refuses the call,
    # and a protocol error raised by the call poisons the connection.
    name = method.__name__

    @functools.wraps(method)
    def guarded(
        self: ClientConnection, /, *args: _Params.args, **kwargs: _Params.kwargs
    ) -> _Result:
        if self._poisoned_by is not None:
            self._refuse_poisoned(name, self._poisoned_by)
        try:
            return method(self, *args, **kwargs)
        except ProtocolError as exc:
            self._poison(type(exc))
            raise

    code = method.__code__
    if code.co_argcount > 1 or code.co_kwonlyargcount or code.co_flags & _VARIABLE_ARGUMENTS:
        return guarded
    # The same for a method of no arguments (next_event, once per reply), without the
    # cost of packing and unpacking arguments that do not exist.
    bare = cast("Callable[[ClientConnection], _Result]", method)

    @functools.wraps(method)
    def guarded_bare(self: ClientConnection, /) -> _Result:
        if self._poisoned_by is not None:
            self._refuse_poisoned(name, self._poisoned_by)
        try:
            return bare(self)
        except ProtocolError as exc:
            self._poison(type(exc))
            raise

    return cast("Callable[Concatenate[ClientConnection, _Params], _Result]", guarded_bare)


_VARIABLE_ARGUMENTS = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS


def _unguarded(
    method: Callable[[ClientConnection], _Result],
) -> Callable[[ClientConnection], _Result]:
    # The method _poisons wrapped, for a caller that is itself guarded.
    return cast("Callable[[ClientConnection], _Result]", inspect.unwrap(method))


# Methods after which a poisoned connection re-raises the kind of error that poisoned it;
# every other method raises LocalProtocolError, since calling it was the caller's mistake.
_RECEIVING = frozenset({"receive_data", "next_event"})


class ClientConnection:
    """The client side of one SMTP or LMTP session, without any I/O.

    :param lmtp: speak LMTP (RFC 2033): greet with LHLO and expect one reply per accepted
        recipient after the message.
    :param tls_active: the connection is already encrypted (implicit TLS, RFC 8314).
    :param require_tls: refuse to start a mail transaction, and never fall back from EHLO to
        HELO, until TLS is active. Set it when the transport's policy is "STARTTLS required".
    :param peer_is_loopback: the server is on a loopback address, where nothing crosses a
        network; mechanisms that expose secrets are then allowed without TLS, as Go's
        net/smtp allows them. The transport, which knows the address, says so.
    :param limits: bounds on buffering and counts; see :class:`Limits`.
    :param timeouts: reply timeouts to publish; see :class:`Timeouts`.
    """

    def __init__(
        self,
        *,
        lmtp: bool = False,
        tls_active: bool = False,
        require_tls: bool = False,
        peer_is_loopback: bool = False,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self._lmtp = lmtp
        # The events whose replies _record learns from: under LMTP also every accepted
        # recipient, whom the replies to the content answer for.
        self._recorded_events = _RECORDED_EVENTS | ({RecipientAccepted} if lmtp else set())
        self._tls_active = tls_active
        self._require_tls = require_tls
        self._peer_is_loopback = peer_is_loopback
        self._auth: _AuthExchange | None = None
        self._authenticated = False
        self._limits = limits if limits is not None else Limits()
        self._timeouts = timeouts if timeouts is not None else Timeouts()
        self._reader = ReplyReader(self._limits)
        self._state = State.AWAIT_GREETING
        # Commands awaiting replies, oldest first. Replies are matched to commands purely by
        # counting (RFC 2920 section 3.1), so the greeting waits here like a command.
        self._pending: deque[_Pending] = deque([(Command.GREETING, "", None)])
        # Under LMTP, the replies the oldest entry, a message's end, has had so far.
        self._lmtp_replies = 0
        self._outbox: list[bytes] = []
        # What the outbox holds, line by line, fit for a debug log: secrets redacted and
        # message content summarised.
        self._outbox_log: list[str | None] = []
        self._features: EhloFeatures | None = None
        # self._features.pipelining, kept with it: it is asked for before every command.
        self._pipelining = False
        self._transaction: _Transaction | None = None
        # The most recent transaction started, even once it has ended.
        self._last_transaction: _Transaction | None = None
        # The MailTransactions started and perhaps not finished, oldest first (finished
        # ones are dropped from the front as new ones start).
        self._open_owners: deque[MailTransaction] = deque()
        self._new_owner: MailTransaction | None = None
        self._new_utf8 = False
        self._rset_deferred = False
        # The DATA content's writer, made by the first send_data after the 354 (State
        # DATA_BODY): content a transaction prepared in wire form needs none.
        self._data_writer: DataWriter | None = None
        self._end_of_stream = False
        self._closed: ConnectionClosed | None = None
        # Set when a 421 arrives: what it means for the transaction is decided then.
        self._delivery_at_421: DeliveryStatus | None = None
        self._poisoned_by: type[ProtocolError] | None = None

    # -- what the transport and the caller can see --------------------------------------

    @property
    def state(self) -> State:
        """The session's state, as of the commands sent so far."""
        return self._state

    @property
    def features(self) -> EhloFeatures | None:
        """What the last successful EHLO, LHLO or HELO announced; None before one, and again
        after STARTTLS, since nothing learned before TLS can be trusted after it."""
        return self._features

    @property
    def lmtp(self) -> bool:
        """Whether this is an LMTP session."""
        return self._lmtp

    @property
    def tls_active(self) -> bool:
        """Whether the transport has said the connection is encrypted."""
        return self._tls_active

    @property
    def authenticated(self) -> bool:
        """Whether an AUTH exchange succeeded in this session (since the last TLS handshake)."""
        return self._authenticated

    @property
    def limits(self) -> Limits:
        """The bounds this connection enforces."""
        return self._limits

    @property
    def timeouts(self) -> Timeouts:
        """The reply timeouts this connection publishes through :attr:`timeout`."""
        return self._timeouts

    @property
    def pipelining(self) -> bool:
        """Whether commands may be sent before earlier replies arrive (RFC 2920)."""
        return self._pipelining

    @property
    def can_start_transaction(self) -> bool:
        """Whether MAIL (or :meth:`send_message`) may be sent now: the session is ready and
        either nothing awaits a reply or the server allows pipelining past what does."""
        return (
            self._state is State.READY
            and self._may_send(Command.MAIL)
            and not (self._require_tls and not self._tls_active)
        )

    @property
    def commands_in_flight(self) -> int:
        """How many commands (the greeting included) still await their reply."""
        return len(self._pending)

    @property
    def timeout(self) -> float | None:
        """Seconds the transport should allow for what the engine waits on now: the reply to
        the oldest outstanding command, or, while message content is being sent, each write
        of it (RFC 5321 section 4.5.3.2). None when nothing is awaited."""
        if self._pending:
            return float(getattr(self._timeouts, TIMEOUT_FIELD[self._pending[0][0]]))
        if self._state is State.DATA_BODY:
            return self._timeouts.data_block
        return None

    # -- I/O in and out ----------------------------------------------------------------

    def data_to_send_and_log(self) -> tuple[bytes, tuple[str, ...]]:
        """Like :meth:`data_to_send`, and also what those bytes say, one entry per command
        line, for a debug log: AUTH credentials appear as ``[redacted]`` and message content
        as its size only, so the log never holds a secret or a message."""
        # A command's log line is its own text, decoded only here: most callers never ask.
        log = tuple(
            data.decode("utf-8", "backslashreplace").removesuffix("\r\n")
            if entry is None
            else entry
            for data, entry in zip(self._outbox, self._outbox_log, strict=True)
        )
        return self.data_to_send(), log

    def data_to_send(self) -> bytes:
        """Take the bytes to write to the server (``b""`` if there are none)."""
        data = b"".join(self._outbox)
        self._outbox.clear()
        self._outbox_log.clear()
        return data

    @_poisons
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the server; ``b""`` means the server closed the connection.

        Nothing is parsed here; call :meth:`next_event` to get what the bytes mean.
        """
        if self._end_of_stream:
            raise LocalProtocolError("receive_data() called after the end of the stream")
        if not data:
            self._end_of_stream = True
            return
        if self._state is State.TLS_HANDSHAKE:
            # RFC 3207 section 5 / CVE-2011-0411 and its successors: anything received in
            # plain text after the 220 could have been injected by a man in the middle.
            raise RemoteProtocolError(
                "received plain-text bytes after the reply to STARTTLS (possible injection)"
            )
        self._reader.feed(data)

    @_poisons
    def next_event(self) -> Event | Sentinel:
        """Return the next event, :data:`NEED_DATA` or :data:`PAUSED`.

        Raises :class:`RemoteProtocolError` if the server broke the protocol.
        """
        if self._closed is not None:
            return self._closed
        if self._state is State.TLS_HANDSHAKE:
            return self._close() if self._end_of_stream else PAUSED
        while True:
            reply = self._reader.next_reply()
            if reply is None:
                # A partial reply cut off by the close is meaningless and dropped.
                return self._close() if self._end_of_stream else NEED_DATA
            event = self._on_reply(reply)
            if self._rset_deferred:
                self._send_deferred_rset()
            if event is not None:
                return event

    # next_event without its guard, for _take_replies, which runs under a guard of its own
    # and asks for an event once per reply.
    _next_event = _unguarded(next_event)

    @_poisons
    def _take_replies(self) -> bool:
        # For send_transactions, which reads no event: take in every complete reply
        # received, as next_event would, until more bytes are needed or the session ends
        # or pauses, and say whether any was taken. The replies a batch receives for each
        # message go the short way, without the event nobody would read: a recipient's
        # reply, and a sender's, DATA's and the content's positive one. The reply table
        # gives none of them a state change but the 354's, made here from the table, and
        # outside LMTP nothing is recorded of them (a test holds the table to that), so
        # only their transaction learns of them.
        pending = self._pending
        reader = self._reader
        taken = False
        while self._state not in _REPLIES_NOT_TAKEN:
            if self._lmtp or not pending or pending[0][0] not in _SHORT_WAY:
                if self._next_event() is NEED_DATA:
                    return taken
                taken = True
                continue
            reply = reader.next_reply()
            if reply is None:
                if self._end_of_stream:
                    # next_event ends the session, as the stream has ended.
                    self._next_event()
                return taken
            taken = True
            command, _, transaction = pending[0]
            owner = transaction.owner if transaction is not None else None
            code = reply.code
            if owner is None:
                # The caller's own command, outside any MailTransaction.
                self._on_reply(reply)
            elif command is Command.MAIL:
                if code < 300 and owner._outcome is None:
                    pending.popleft()
                    owner._on_sender_accepted(reply)
                else:
                    self._on_reply(reply)
                # As for recipients, no deferred RSET is looked for: neither an accepted
                # nor a refused sender calls for a reset (a refused one opened no
                # transaction), and one called for earlier goes with the next reply
                # taken through next_event. A property test compares the two ways.
            elif command is Command.RCPT:
                if code < 300 or (code >= 400 and code != 421):
                    pending.popleft()
                    # Copies of the reply may answer the transaction's other RCPTs in
                    # flight, if it has any (a message to one recipient has none).
                    others = owner._rcpt_sent - owner._rcpt_answered - 1
                    count = 1 + (
                        self._take_repeated_reply(reply, transaction, others) if others else 0
                    )
                    owner._on_recipient_reply(reply, accepted=code < 300, count=count)
                    # Unlike next_event, no deferred RSET is looked for: a transaction
                    # whose recipients were all refused resets at once (the RCPT just
                    # answered made room), unless DATA was pipelined after them, and then
                    # DATA's reply decides instead (MailTransaction._after_recipients).
                else:
                    # A 421, or a 3xx (which _on_reply refuses).
                    self._on_reply(reply)
            elif owner._outcome is None and code // 100 == (3 if command is Command.DATA else 2):
                pending.popleft()
                if command is Command.DATA:
                    # DATA ends a group, so nothing has been sent since: its transaction is
                    # still the current one, and the state moves as the table says.
                    self._set_state(_DATA_READY_STATES.get(self._state, self._state))
                    owner._on_ready_for_data()
                else:
                    owner._on_message_reply(reply, accepted=True)
                # Neither calls for a reset: the content is wanted, or it ended and the
                # message is decided.
            else:
                # DATA or the content refused, a 421, or a reply after the outcome: the
                # table decides. No reset is left waiting: one a refused DATA calls for
                # may go at once, as nothing is in flight after DATA, and a server that
                # refuses the content has ended the transaction itself.
                self._on_reply(reply)
        return taken

    def _take_repeated_reply(
        self, reply: Reply, transaction: _Transaction | None, limit: int
    ) -> int:
        # A server answers each recipient of a message with the same line, as a rule. After
        # a recipient's *reply*, the copies of it that follow in the buffer, up to *limit*
        # (the transaction's RCPTs still unanswered), answer the next commands in flight as
        # long as they are RCPTs of the same *transaction*: each copy is one reply, counted
        # against one command, as next_reply and _on_reply would count them. Return how
        # many were taken.
        reader = self._reader
        found = reader.repeats(reply, limit)
        if not found:
            return 0
        pending = self._pending
        # The leading entries that are (RCPT, transaction), compared by identity (neither
        # class defines equality), and then removed; both loops run in C, since this runs
        # for most of a batch's replies.
        taken = len(
            list(
                takewhile(
                    (Command.RCPT, transaction).__eq__,
                    map(_COMMAND_AND_TRANSACTION, islice(pending, found)),
                )
            )
        )
        deque(starmap(pending.popleft, repeat((), taken)), maxlen=0)
        reader.skip(reply, taken)
        return taken

    # -- commands ----------------------------------------------------------------------

    @_poisons
    def ehlo(self, domain: str) -> None:
        """Send EHLO (RFC 5321 section 4.1.1.1). Falls back to HELO by itself if the server
        answers 500 or 502, unless TLS is required and not yet active."""
        self._refuse_in_lmtp("EHLO")
        self._send(Command.EHLO, domain, self._hello_line("EHLO", domain))

    @_poisons
    def helo(self, domain: str) -> None:
        """Send HELO, for servers that do not speak ESMTP."""
        self._refuse_in_lmtp("HELO")
        self._send(Command.HELO, domain, self._hello_line("HELO", domain))

    @_poisons
    def lhlo(self, domain: str) -> None:
        """Send LHLO, the greeting of LMTP (RFC 2033 section 4.1)."""
        if not self._lmtp:
            raise LocalProtocolError("LHLO is only for LMTP sessions (ClientConnection(lmtp=True))")
        self._send(Command.LHLO, domain, self._hello_line("LHLO", domain))

    @_poisons
    def mail(self, sender: str, parameters: Mapping[str, str | None] | None = None) -> None:
        """Send ``MAIL FROM:<sender>`` with optional ESMTP parameters (``{"SIZE": "1024"}``;
        a value of None sends the keyword alone). An empty sender is the null path ``<>``."""
        self._begin_transaction(None, sender, parameters or {})

    @_poisons
    def rcpt(self, recipient: str, parameters: Mapping[str, str | None] | None = None) -> None:
        """Send ``RCPT TO:<recipient>`` with optional ESMTP parameters."""
        parameters = parameters or {}
        line = format_rcpt(recipient, parameters, max_line_length=self._line_limit(parameters))
        self._send_rcpt(recipient, line)

    @_poisons
    def data(self) -> None:
        """Send DATA. After :class:`ReadyForData`, send the content with :meth:`send_data`
        and finish with :meth:`end_data`."""
        self._send(Command.DATA, "", b"DATA\r\n")

    @_poisons
    def send_data(self, chunk: bytes | bytearray | memoryview) -> None:
        """Send a chunk of message content, of any size, split anywhere.

        Line ends are normalised to CRLF and lines starting with ``.`` are dot-stuffed
        (RFC 5321 section 4.5.2), with state kept across chunks, so no content can end the
        data early. Content containing NUL raises :class:`ValueError` and produces nothing.
        """
        if self._state is not State.DATA_BODY:
            raise LocalProtocolError(f"no message content can be sent in state {self._state.name}")
        writer = self._data_writer
        if writer is None:
            writer = self._data_writer = DataWriter()
        output = writer.feed(chunk)
        self._write(output, f"[{len(output)} octets of message content]")

    @_poisons
    def end_data(self) -> None:
        """End the message content: a CRLF if the content lacked one, then ``.`` CRLF."""
        if self._state is not State.DATA_BODY:
            raise LocalProtocolError(
                f"no message content is being sent in state {self._state.name}"
            )
        new_state = self._check_send(Command.END_OF_DATA)
        # No writer yet: no content was sent, and a fresh one ends an empty message.
        writer = self._data_writer or DataWriter()
        self._data_writer = None
        self._push(Command.END_OF_DATA, "", writer.end(), new_state, log=".")

    @_poisons
    def _send_prepared_data(self, content: bytes, end: bytes) -> None:
        # send_data and end_data at once, for content a transaction has already put in its
        # wire form with a DataWriter of its own (MailTransaction._prepare_content).
        if self._state is not State.DATA_BODY:
            raise LocalProtocolError(f"no message content can be sent in state {self._state.name}")
        new_state = self._check_send(Command.END_OF_DATA)
        self._data_writer = None
        if content:
            self._write(content, f"[{len(content)} octets of message content]")
        self._push(Command.END_OF_DATA, "", end, new_state, log=".")

    @_poisons
    def bdat(self, chunk: bytes | bytearray | memoryview, *, last: bool = False) -> None:
        """Send one BDAT chunk (RFC 3030): exactly these octets, without dot-stuffing or
        line-end changes. The chunk marked *last* ends the message. Chunks may be pipelined;
        once one is refused, no further chunk can be sent."""
        if self._features is None or not self._features.chunking:
            raise LocalProtocolError("the server did not announce CHUNKING")
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"BDAT content must be bytes, not {type(chunk).__name__}")
        command = Command.BDAT_LAST if last else Command.BDAT
        new_state = self._check_send(command)
        size = memoryview(chunk).nbytes
        line = b"BDAT %d LAST\r\n" % size if last else b"BDAT %d\r\n" % size
        self._push(command, "", line, new_state)
        if size:
            self._write(bytes(chunk), f"[{size} octets of message content]")

    @_poisons
    def rset(self) -> None:
        """Send RSET, abandoning any mail transaction."""
        self._send(Command.RSET, "", b"RSET\r\n")

    @_poisons
    def noop(self) -> None:
        """Send NOOP."""
        self._send(Command.NOOP, "", b"NOOP\r\n")

    @_poisons
    def vrfy(self, argument: str) -> None:
        """Send VRFY."""
        self._send(Command.VRFY, argument, self._command_line("VRFY", (argument,)))

    @_poisons
    def expn(self, argument: str) -> None:
        """Send EXPN."""
        self._send(Command.EXPN, argument, self._command_line("EXPN", (argument,)))

    @_poisons
    def help(self, argument: str | None = None) -> None:
        """Send HELP, optionally about a topic."""
        arguments = () if argument is None else (argument,)
        self._send(Command.HELP, argument or "", self._command_line("HELP", arguments))

    @_poisons
    def quit(self) -> None:
        """Send QUIT."""
        self._send(Command.QUIT, "", b"QUIT\r\n")

    @_poisons
    def starttls(self) -> None:
        """Send STARTTLS (RFC 3207). On :class:`StartTlsReady` the engine pauses; do the
        handshake, then call :meth:`tls_established`."""
        if self._tls_active:
            raise LocalProtocolError("TLS is already active")
        if self._features is None or not self._features.starttls:
            raise LocalProtocolError("the server did not announce STARTTLS")
        self._send(Command.STARTTLS, "", b"STARTTLS\r\n")

    @_poisons
    def tls_established(self) -> None:
        """Tell the engine the TLS handshake succeeded. Everything learned before it is
        forgotten (RFC 3207 section 4.2): send EHLO again before anything else."""
        if self._state is not State.TLS_HANDSHAKE:
            raise LocalProtocolError(f"no TLS handshake is expected in state {self._state.name}")
        self._tls_active = True
        self._authenticated = False
        self._features = None
        self._pipelining = False
        self._reader.clear()
        self._state = State.GREETED

    @_poisons
    def auth(self, mechanism: Mechanism, *, allow_without_tls: bool = False) -> None:
        """Authenticate with a SASL *mechanism* (RFC 4954); see :mod:`smtp_proto` for the
        mechanisms provided. The engine answers the server's challenges itself and reports
        the outcome as :class:`AuthSucceeded` or :class:`AuthFailed`.

        A mechanism that exposes a password or token (``sends_secret``) is refused with
        :class:`InsecureAuthenticationError` unless TLS is active, the peer is on loopback,
        or *allow_without_tls* is set. A mechanism the server did not announce is refused
        with :class:`ServerCapabilityError`.
        """
        name = mechanism.name
        if not isinstance(name, str) or not _SASL_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a SASL mechanism name (RFC 4422 section 3.1)")
        if self._authenticated:
            raise LocalProtocolError("already authenticated (RFC 4954 section 4: AUTH once)")
        new_state = self._check_send(Command.AUTH)
        if self._features is None or name not in self._features.auth_mechanisms:
            raise ServerCapabilityError("AUTH", f"the server did not announce AUTH {name}")
        if (
            mechanism.sends_secret
            and not (self._tls_active or self._peer_is_loopback)
            and not allow_without_tls
        ):
            raise InsecureAuthenticationError(
                f"AUTH {name} would send credentials in plain text: use TLS first"
            )
        line = b"AUTH " + name.encode("ascii")
        initial = mechanism.initial_response()
        deferred = None
        if initial is not None:
            # RFC 4954 section 4: an empty initial response is sent as "=", and one that
            # would make the AUTH line too long waits for the server's first (empty) 334.
            encoded = base64.b64encode(initial) or b"="
            if len(line) + len(encoded) + 3 <= self._limits.max_command_line_length:
                line += b" " + encoded
            else:
                deferred = initial
        self._auth = _AuthExchange(mechanism, deferred)
        self._push(Command.AUTH, name, line + b"\r\n", new_state)

    def send_message(
        self,
        sender: str | None,
        recipients: Sequence[str | Recipient] | None,
        body: bytes | bytearray | memoryview | Message | Iterable[bytes] | None = None,
        *,
        size: int | None = None,
        body_type: Body | None = None,
        smtputf8: bool | None = None,
        ret: str | None = None,
        envid: str | None = None,
        requiretls: bool = False,
        mail_options: Mapping[str, str | None] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        pipeline_content_up_to: int = 0,
        start: bool = True,
    ) -> MailTransaction:
        """Start sending one message; the returned :class:`MailTransaction` reports the
        outcome for the message and for each recipient once :attr:`~MailTransaction.done`.

        :param sender: the reverse path (``""`` for the null sender); None to take it from
            an email message, as ``smtplib.send_message`` does.
        :param recipients: addresses, or :class:`Recipient` values with their own DSN and
            extension parameters; None to take them from an email message.
        :param body: the content as bytes, an ``email.message.Message`` (serialised as
            ``smtplib.send_message`` does: ``Bcc`` removed, UTF-8 headers when needed), an
            iterable of byte chunks, or None to stream it with
            :meth:`MailTransaction.feed_body` and :meth:`MailTransaction.end_body`.
        :param size: the content's size for SIZE (RFC 1870); computed when the content is
            given whole.
        :param body_type: 7BIT, 8BITMIME or BINARYMIME; detected when the content is given
            whole. BINARYMIME needs CHUNKING.
        :param smtputf8: force SMTPUTF8 (RFC 6531); it is also used whenever an address or
            the message needs it.
        :param ret: DSN RET (``"FULL"`` or ``"HDRS"``), RFC 3461.
        :param envid: DSN ENVID, RFC 3461.
        :param requiretls: RFC 8689 REQUIRETLS (needs TLS and the server's support).
        :param mail_options: further MAIL parameters.
        :param chunk_size: octets per write or BDAT chunk when the content was given whole.
        :param pipeline_content_up_to: with CHUNKING and PIPELINING, send content of at
            most this many octets with the envelope instead of after the recipients'
            replies; 0 (the default) waits, so no content is sent when every recipient is
            refused.
        :param start: False to check the message and return its transaction without sending
            anything; :meth:`MailTransaction.start` sends it later, when
            :attr:`can_start_transaction` allows. This is how several messages are queued to
            be pipelined one after another (see :func:`send_transactions`).

        Everything is checked before the first command is written: a message the server
        cannot take raises :class:`ServerCapabilityError` and a malformed address or
        parameter :class:`ValueError`, and the connection stays usable.
        """
        return MailTransaction(
            self,
            sender,
            recipients,
            body,
            size=size,
            body_type=body_type,
            smtputf8=smtputf8,
            ret=ret,
            envid=envid,
            requiretls=requiretls,
            mail_options=mail_options,
            chunk_size=chunk_size,
            pipeline_content_up_to=pipeline_content_up_to,
            start=start,
        )

    def login(self, username: str, password: str, *, allow_without_tls: bool = False) -> Mechanism:
        """Authenticate with a password, by the strongest mechanism both sides support:
        SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, then LOGIN. Only what the server
        announced in its last EHLO counts, so after STARTTLS only the list given over TLS.
        Returns the mechanism chosen; the outcome comes as an event, as with :meth:`auth`.
        """
        offered = self._features.auth_mechanisms if self._features is not None else ()
        mechanism = choose_mechanism(offered, password_mechanisms(username, password))
        if mechanism is None:
            raise ServerCapabilityError(
                "AUTH", "the server announced no password mechanism this client supports"
            )
        self.auth(mechanism, allow_without_tls=allow_without_tls)
        return mechanism

    @_poisons
    def send_command(self, verb: str, *arguments: str) -> None:
        """Send an extension command the engine has no method for, such as ETRN or XCLIENT.
        Its reply comes back as a :class:`Reply`. Verbs that change the session's state
        must use their own method."""
        if isinstance(verb, str) and verb.upper() in _RESERVED_VERBS:
            raise ValueError(f"use the {verb.lower()}() method to send {verb.upper()}")
        self._send(Command.OTHER, verb, self._command_line(verb, arguments))

    # -- internals ---------------------------------------------------------------------

    def _refuse_in_lmtp(self, verb: str) -> None:
        if self._lmtp:
            raise LocalProtocolError(f"an LMTP session greets with LHLO, not {verb}")

    def _hello_line(self, verb: str, domain: str) -> bytes:
        return format_hello(verb, domain, max_line_length=self._limits.max_command_line_length)

    def _command_line(self, verb: str, arguments: tuple[str, ...]) -> bytes:
        return format_command(verb, arguments, max_line_length=self._limits.max_command_line_length)

    def _may_send(self, command: Command) -> bool:
        # Whether *command* may be sent now. Asked several times per message, so it makes
        # no message; _refusal says why not, and _check_send raises it.
        if command not in SEND_TRANSITIONS[self._state]:
            return False
        pending = self._pending
        return not pending or (
            self._pipelining
            and pending[-1][0] not in GROUP_ENDERS
            and len(pending) < self._limits.max_commands_in_flight
        )

    def _refusal(self, command: Command) -> str:
        # Why *command* cannot be sent now, when _may_send says it cannot.
        if command not in SEND_TRANSITIONS[self._state]:
            return f"{command.value} cannot be sent in state {self._state.name}"
        waiting_for = self._pending[-1][0]
        if waiting_for in GROUP_ENDERS or not self._pipelining:
            return f"{command.value} cannot be sent before the reply to {waiting_for.value}" + (
                "" if self._pipelining else " (the server does not offer PIPELINING)"
            )
        return (
            f"{len(self._pending)} commands already await replies (Limits.max_commands_in_flight)"
        )

    def _check_send(self, command: Command) -> State:
        # The state after sending *command*, or LocalProtocolError if it cannot be sent now.
        if not self._may_send(command):
            raise LocalProtocolError(self._refusal(command))
        return SEND_TRANSITIONS[self._state][command]

    def _line_limit(self, parameters: Mapping[str, str | None]) -> int:
        # RFC 5321 section 4.5.3.1.4's limit, plus what each extension used adds to it.
        return self._limits.max_command_line_length + line_allowance(parameters)

    # -- for MailTransaction ---------------------------------------------------------------

    def _begin_transaction(
        self,
        owner: MailTransaction | None,
        sender: str,
        parameters: Mapping[str, str | None],
        line: bytes | None = None,
        utf8: bool | None = None,
    ) -> None:
        # *line* is the MAIL line when the caller has formatted (and so checked) it already,
        # and *utf8* whether *parameters* hold SMTPUTF8, when the caller knows.
        if self._require_tls and not self._tls_active:
            raise LocalProtocolError("TLS is required before a mail transaction can start")
        if line is None:
            line = format_mail(sender, parameters, max_line_length=self._line_limit(parameters))
        if utf8 is None:
            utf8 = any(keyword.upper() == "SMTPUTF8" for keyword in parameters)
        if not sender.isascii() and not utf8:
            raise ValueError(_NEEDS_SMTPUTF8)
        new_state = self._check_send(Command.MAIL)
        self._new_owner = owner
        self._new_utf8 = utf8
        self._push(Command.MAIL, sender, line, new_state)
        if owner is not None:
            self._open(owner)

    def _open(self, owner: MailTransaction) -> None:
        # *owner* has sent its MAIL: the end of the session must reach it.
        open_owners = self._open_owners
        while open_owners and open_owners[0]._outcome is not None:  # done, without a call
            open_owners.popleft()
        open_owners.append(owner)

    def _send_whole_envelope(self, owner: MailTransaction) -> bool:
        # A pipelined transaction's MAIL, every RCPT and, unless BDAT follows, DATA, in one
        # step: what _begin_transaction, _send_rcpts and _send_if_allowed do one command at
        # a time, for the usual case, where the whole envelope fits in flight. It runs for
        # every message, and each of their checks is already answered. The transaction
        # has just been told the session is ready (can_start_transaction: READY, MAIL may
        # go, TLS as required), and it made its lines, checking them and encoding every
        # address for the SMTPUTF8 it declares. From READY, MAIL leads to a state that
        # takes RCPT, RCPT to one that takes RCPT and DATA, all within the transaction,
        # and neither MAIL nor RCPT ends a group, so only room in flight can stop them (a
        # test holds the table to this). Return False, having sent nothing, if there is
        # not room for them all: the transaction then sends its envelope the long way.
        recipients = owner._wire_recipients
        data = not owner._use_bdat
        pending = self._pending
        count = len(recipients) + (2 if data else 1)
        if len(pending) + count > self._limits.max_commands_in_flight:
            return False
        transaction = self._transaction = self._last_transaction = _Transaction(owner, owner._utf8)
        pending.append((Command.MAIL, owner._wire_sender, transaction))
        pending.extend(zip(repeat(Command.RCPT), recipients, repeat(transaction)))
        outbox = self._outbox
        outbox.append(owner._mail_line)
        outbox += owner._rcpt_lines
        if data:
            pending.append((Command.DATA, "", transaction))
            outbox.append(b"DATA\r\n")
            self._state = _AFTER_ENVELOPE_AND_DATA
        else:
            self._state = _AFTER_ENVELOPE
        # None: each line is its own log entry (see data_to_send_and_log).
        self._outbox_log += [None] * count
        self._open(owner)
        return True

    def _send_rcpt(self, recipient: str, line: bytes) -> None:
        # *line* was made by format_rcpt, which checked it.
        self._check_rcpt_encoding((recipient,))
        self._send(Command.RCPT, recipient, line)

    def _send_rcpts(self, recipients: list[str], lines: list[bytes], start: int) -> int:
        # For a pipelined envelope (MailTransaction._send_envelope runs only with
        # PIPELINING): send as many RCPTs from *start* on as the session lets go now, all in
        # one step (this runs for every message), and return the index of the first one
        # left. What _may_send checks is the same for each of them: the state after a RCPT
        # is one that takes RCPT again (a test holds the table to it), so only the count of
        # commands in flight can stop them, and it is counted here.
        if start >= len(recipients) or not self._may_send(Command.RCPT):
            return start
        stop = min(
            len(recipients), start + self._limits.max_commands_in_flight - len(self._pending)
        )
        sending = recipients[start:stop]
        self._check_rcpt_encoding(sending)
        rcpt = Command.RCPT
        transaction = self._transaction
        self._pending.extend(zip(repeat(rcpt), sending, repeat(transaction)))
        self._outbox += lines[start:stop]
        # None: each line is its own log entry (see data_to_send_and_log).
        self._outbox_log += [None] * len(sending)
        # The state after RCPT takes RCPT again, so it is one within the transaction, which
        # _set_state would keep.
        self._state = SEND_TRANSITIONS[self._state][rcpt]
        return stop

    def _check_rcpt_encoding(self, recipients: Iterable[str]) -> None:
        transaction = self._transaction
        if transaction is not None and not transaction.utf8 and not "".join(recipients).isascii():
            raise ValueError(_NEEDS_SMTPUTF8)

    def _abandon(self, message: str) -> NoReturn:
        # The transaction found, in the middle of the content, that it cannot go on: the
        # content cannot be taken back, so the connection is poisoned.
        self._poison(LocalProtocolError)
        raise LocalProtocolError(message)

    def _refuse_poisoned(self, method: str, poisoned_by: type[ProtocolError]) -> NoReturn:
        error = poisoned_by if method in _RECEIVING else LocalProtocolError
        raise error(f"the connection is unusable after an earlier {poisoned_by.__name__}")

    def _poison(self, error: type[ProtocolError]) -> None:
        # Nothing is written after a protocol error, not even what the engine wrote by
        # itself earlier in the same call (the HELO fallback, an AUTH response): however
        # the bytes arrived, whole or one at a time, the connection ends the same way.
        self._poisoned_by = error
        self._state = State.ERROR
        self._outbox.clear()
        self._outbox_log.clear()

    def _send_deferred_rset(self) -> None:
        if self._send_if_allowed(Command.RSET, b"RSET\r\n"):
            self._rset_deferred = False

    def _reset_soon(self) -> None:
        # RSET for a failed MailTransaction. The caller may have pipelined a command that
        # must be answered before anything else is sent (a NOOP, say); the RSET then goes
        # as soon as the session allows, rather than breaking the pipelining rules.
        if not self._send_if_allowed(Command.RSET, b"RSET\r\n"):
            self._rset_deferred = True

    def _owns_current_transaction(self, owner: MailTransaction) -> bool:
        return self._last_transaction is not None and self._last_transaction.owner is owner

    def _send_if_allowed(self, command: Command, line: bytes) -> bool:
        # Send *command*, which takes no argument, if the session lets it go now (DATA as
        # room appears, an RSET that may have to wait); say whether it went.
        if not self._may_send(command):
            return False
        self._push(command, "", line, SEND_TRANSITIONS[self._state][command])
        return True

    def _send(self, command: Command, argument: str, line: bytes) -> None:
        # Checks come first and produce nothing; only then is the command committed.
        self._push(command, argument, line, self._check_send(command))

    def _push(
        self,
        command: Command,
        argument: str,
        line: bytes,
        new_state: State,
        *,
        log: str | None = None,
    ) -> None:
        if command is Command.MAIL:
            self._transaction = self._last_transaction = _Transaction(
                self._new_owner, self._new_utf8
            )
            self._new_owner = None
        transaction = self._transaction if command in TRANSACTION_COMMANDS else None
        self._pending.append((command, argument, transaction))
        if command is Command.AUTH and b" " in line[5:]:
            # Keep the verb and the mechanism's name, hide the initial response.
            log = line[: line.index(b" ", 5)].decode("ascii") + " [redacted]"
        # _write and _set_state, written out: this runs for nearly every command.
        self._outbox.append(line)
        self._outbox_log.append(log)
        self._state = new_state
        if new_state not in TRANSACTION_STATES:
            self._transaction = None

    def _write(self, data: bytes, log: str | None = None) -> None:
        # *log* None: the line is its own log entry (see data_to_send_and_log).
        self._outbox.append(data)
        self._outbox_log.append(log)

    def _set_state(self, state: State) -> None:
        self._state = state
        if state not in TRANSACTION_STATES:
            self._transaction = None

    def _on_reply(self, reply: Reply) -> Event | None:
        # RFC 5321 section 3.8: 421 may answer any command, or come unprompted, and means
        # the server is going away. Every other reply must answer an outstanding command.
        code = reply.code
        if code == 421:
            return self._service_closing(reply)
        pending = self._pending
        if not pending:
            raise RemoteProtocolError(f"the server sent a {code} reply to no command")
        command, argument, transaction = pending[0]
        transition = TRANSITIONS_BY_DIGIT[command][code // 100]
        if transition is None:
            raise RemoteProtocolError(f"a {code} reply is not a valid answer to {command.value}")
        build, state_changes, kind = transition
        if command in _REPLIES_CHECKED_FIRST:
            if command is Command.EHLO and code in _EHLO_UNKNOWN and self._may_use_helo():
                pending.popleft()
                self._push(
                    Command.HELO,
                    argument,
                    self._hello_line("HELO", argument),
                    self._state,
                )
                return None
            if (
                transaction is not None
                and transaction.message_failed
                and command in (Command.BDAT, Command.BDAT_LAST)
            ):
                # Once a chunk failed, the message outcome has been reported; later chunks'
                # replies (typically 503) are passed on as they are.
                pending.popleft()
                return reply
            if command is Command.AUTH and (exchange := self._auth) is not None:
                return self._auth_reply(command, argument, exchange, reply, kind)
        if self._lmtp and command in MESSAGE_END_COMMANDS:
            event = self._lmtp_message_reply(transaction, reply, kind)
        else:
            pending.popleft()
            event = build(argument, reply)
            if state_changes and (transaction is None or transaction is self._transaction):
                new_state = state_changes.get(self._state)
                if new_state is not None:
                    self._set_state(new_state)
            if type(event) in self._recorded_events:
                self._record(event, argument, transaction)
        # Last, once the session's state is up to date: the transaction that sent the
        # command may answer by sending more.
        if transaction is not None and transaction.owner is not None:
            transaction.owner._on_event(event)
        return event

    def _record(self, event: Event, argument: str, transaction: _Transaction | None) -> None:
        # What the session learns from a reply, beyond its state: only for the events in
        # _recorded_events. Every event class is final, so comparing exact types says what
        # isinstance says, without its calls.
        if type(event) is RecipientAccepted:
            # RCPT is only sent within a transaction, so it always has one.
            cast("_Transaction", transaction).accepted.append(argument)
        elif type(event) is EhloFeatures:
            self._features = event
            self._pipelining = event.pipelining
        elif type(event) is MessageRejected and transaction is not None:
            transaction.message_failed = True
        elif type(event) is StartTlsReady and self._reader.buffered:
            raise RemoteProtocolError(
                "the server sent bytes after its reply to STARTTLS, before the TLS "
                "handshake (possible injection)"
            )

    def _auth_reply(
        self,
        command: Command,
        argument: str,
        exchange: _AuthExchange,
        reply: Reply,
        kind: ReplyClass,
    ) -> Event | None:
        if kind is ReplyClass.INTERMEDIATE:
            self._answer_challenge(exchange, reply)
            return None
        self._pending.popleft()
        self._auth = None
        build = REPLY_TRANSITIONS[command, kind][0]
        event = build(argument, reply)
        if kind is ReplyClass.POSITIVE:
            if exchange.cancelled_because is not None:
                # RFC 4954 section 4: a cancelled exchange is answered with 501.
                raise RemoteProtocolError(
                    f"the server accepted AUTH {argument} after the client cancelled it"
                )
            try:
                exchange.mechanism.success()
            except SaslError as exc:
                # The server said yes without proving it knows the secret (a SCRAM server
                # signature missing or wrong): whoever answered is not who we think.
                raise RemoteProtocolError(
                    f"the server accepted AUTH {argument} but failed to authenticate itself: {exc}"
                ) from None
            self._authenticated = True
            return event
        if isinstance(event, AuthFailed) and exchange.cancelled_because is not None:
            event = dataclasses.replace(event, reason=exchange.cancelled_because)
        return event

    def _answer_challenge(self, exchange: _AuthExchange, reply: Reply) -> None:
        if exchange.cancelled_because is not None:
            raise RemoteProtocolError("the server sent a challenge after AUTH was cancelled")
        exchange.rounds += 1
        if exchange.rounds > self._limits.max_auth_rounds:
            self._cancel_auth(exchange, "too many challenges (Limits.max_auth_rounds)")
            return
        response = exchange.deferred_response
        exchange.deferred_response = None
        if response is None:
            try:
                # RFC 4954 section 4: the challenge is one line of base64, and a client
                # that cannot decode it cancels the exchange.
                if len(reply.lines) != 1:
                    raise ValueError("a challenge is a single line")
                challenge = base64.b64decode(reply.lines[0].encode("ascii"), validate=True)
            except ValueError:
                self._cancel_auth(exchange, "the server's challenge is not valid base64")
                return
            try:
                response = exchange.mechanism.respond(challenge)
            except SaslError as exc:
                self._cancel_auth(exchange, str(exc))
                return
        encoded = base64.b64encode(response)
        if len(encoded) > self._limits.max_auth_line_length:
            self._cancel_auth(exchange, "the response is too long (Limits.max_auth_line_length)")
            return
        self._write(encoded + b"\r\n", "[redacted]")

    def _cancel_auth(self, exchange: _AuthExchange, reason: str) -> None:
        exchange.cancelled_because = reason
        self._write(b"*\r\n")

    def _may_use_helo(self) -> bool:
        # Falling back to HELO gives up STARTTLS, so never when TLS is required but absent.
        return not (self._require_tls and not self._tls_active)

    def _lmtp_message_reply(
        self, transaction: _Transaction | None, reply: Reply, kind: ReplyClass
    ) -> Event:
        # RFC 2033 section 4.2: one reply per recipient accepted by RCPT, in RCPT order.
        recipients = transaction.accepted if transaction is not None else []
        recipient = recipients[self._lmtp_replies] if recipients else None
        self._lmtp_replies += 1
        if self._lmtp_replies >= max(len(recipients), 1):
            self._pending.popleft()
            self._lmtp_replies = 0
        if kind is ReplyClass.POSITIVE:
            return MessageAccepted(reply=reply, recipient=recipient)
        return MessageRejected(reply=reply, recipient=recipient)

    def _service_closing(self, reply: Reply) -> Event:
        # The server will answer nothing further: whatever was in flight is lost, and any
        # transaction under way failed (a 421 to the final dot is a refusal, not an
        # unknown outcome).
        in_transaction = self._transaction is not None or any(
            transaction is not None for _, _, transaction in self._pending
        )
        self._delivery_at_421 = (
            DeliveryStatus.FAILED if in_transaction else DeliveryStatus.NO_TRANSACTION
        )
        event = ServiceClosing(reply=reply)
        self._end_session(event)
        return event

    def _close(self) -> ConnectionClosed:
        delivery = self._delivery_at_421
        if delivery is None:
            if any(command in MESSAGE_END_COMMANDS for command, _, _ in self._pending):
                delivery = DeliveryStatus.UNKNOWN
            elif self._transaction is not None or any(
                transaction is not None for _, _, transaction in self._pending
            ):
                delivery = DeliveryStatus.FAILED
            else:
                delivery = DeliveryStatus.NO_TRANSACTION
        self._closed = ConnectionClosed(delivery=delivery)
        self._end_session(self._closed)
        return self._closed

    def _end_session(self, event: Event) -> None:
        # Nothing more will be answered: every unfinished MailTransaction learns why, in
        # the order they started, whether or not a command of its own still awaits a reply
        # (one may be waiting only for room to send, or for content it can no longer send).
        owners = list(self._open_owners)
        self._open_owners.clear()
        self._pending.clear()
        self._data_writer = None
        self._set_state(State.CLOSED)
        for owner in owners:
            owner._on_event(event)
