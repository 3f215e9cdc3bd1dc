"""The client's course of action, written once for every transport.

A transport has to do more than move bytes: greet, say EHLO, upgrade with STARTTLS when its
policy says so, authenticate, send messages and wait for replies. That logic is the same
whatever the I/O, so it is written here once, as generators that *ask* for I/O instead of
doing it. Each yields an :class:`IORequest` and is resumed with the result:

* :class:`Write` - write these bytes; resume with ``None``;
* :class:`Read` - read some bytes within ``timeout`` seconds; resume with them (``b""`` when
  the peer closed); on a timeout, throw the transport's timeout error into the generator or
  simply abandon it;
* :class:`StartTls` - do the TLS handshake on the connection, checking the certificate
  against the host the caller configured; resume with ``None``;
* :class:`NeedBody` - supply the next chunk of message content from an iterator the
  transport holds (for example an async one); resume with the chunk, or ``None`` at the end.

A transport's runner is then a dozen lines for any backend (see the transports in
``smtp_proto.transports``), and everything decided here is tested without sockets.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TypeAlias, final

from ._connection import NEED_DATA, PAUSED, ClientConnection
from ._errors import LocalProtocolError
from ._events import (
    AuthFailed,
    AuthSucceeded,
    ConnectionClosed,
    EhloFeatures,
    Event,
    Greeting,
    Reply,
    ServiceClosing,
    StartTlsReady,
    fast_constructor,
)
from ._sasl import Mechanism
from ._state import ENDED_STATES
from ._transaction import MailTransaction, TransactionResult

__all__ = [
    "AuthenticationFailed",
    "ConnectionLost",
    "GreetingRefused",
    "HelloRefused",
    "IORequest",
    "NeedBody",
    "Read",
    "SMTPClientError",
    "StartTls",
    "TlsPolicy",
    "TlsUnavailable",
    "Write",
    "authenticate",
    "execute",
    "open_session",
    "send_transaction",
    "send_transactions",
    "settle",
]


class TlsPolicy(enum.Enum):
    """How a client protects the connection."""

    #: TLS from the first byte (RFC 8314 implicit TLS, port 465).
    IMPLICIT = "implicit"
    #: STARTTLS, and fail if the server does not offer it or refuses it.
    REQUIRED = "required"
    #: STARTTLS when offered, plain text otherwise. An explicit opt-in: it does not protect
    #: against an attacker who removes STARTTLS from the EHLO reply. A refused upgrade is
    #: still an error, never a silent fall back.
    OPPORTUNISTIC = "opportunistic"
    #: Plain text (for local relays and tests).
    NONE = "none"


@final
@dataclass(frozen=True, slots=True)
class Write:
    """Write all of :attr:`data` to the peer."""

    data: bytes


@final
@dataclass(frozen=True, slots=True)
class Read:
    """Read some bytes from the peer (``b""`` when it closed)."""

    #: Seconds the whole awaited reply may take, as published by the engine.
    timeout: float | None
    #: True when this read starts the wait for a reply: the transport sets its deadline
    #: to now plus *timeout* and keeps it for the following reads until the next fresh
    #: one, so a server trickling bytes cannot stretch the wait (RFC 5321 section
    #: 4.5.3.2 times the whole reply, not each read).
    fresh: bool = True


# The requests a batch makes once per round trip, made without their dataclass __init__.
_new_write = fast_constructor(Write)
_new_read = fast_constructor(Read)


@final
@dataclass(frozen=True, slots=True)
class StartTls:
    """Do the TLS handshake now, verifying the host the caller configured."""


@final
@dataclass(frozen=True, slots=True)
class NeedBody:
    """Supply the next chunk of message content (``None`` once it is all sent)."""


IORequest: TypeAlias = Write | Read | StartTls | NeedBody


class SMTPClientError(Exception):
    """A step of the session failed; :attr:`reply` is the server's answer, if it gave one."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class GreetingRefused(SMTPClientError):
    """The server refused service in its greeting."""


class HelloRefused(SMTPClientError):
    """The server refused EHLO (and HELO)."""


class TlsUnavailable(SMTPClientError):
    """TLS was required but the server did not offer STARTTLS, or refused it."""


class AuthenticationFailed(SMTPClientError):
    """AUTH failed."""


class ConnectionLost(SMTPClientError):
    """The server closed the connection (or said 421) before answering."""


def execute(
    conn: ClientConnection, command: Callable[[], object] | None = None
) -> Generator[IORequest, bytes | None, Event]:
    """Run *command* (a call of a connection method) and return the event that answers it.

    With no command, return the next event (the greeting, say). Replies still awaited for
    earlier commands (an RSET a transaction sent, say) are waited for first, so the event
    returned is the one that answers *command*. A 421 or a closed connection raises
    :class:`ConnectionLost`.
    """
    if command is not None:
        yield from settle(conn)
        command()
    fresh = True
    while True:
        yield from _flush(conn)
        event = conn.next_event()
        if event is NEED_DATA:
            # Pulling events may have written (an AUTH response, the HELO fallback).
            yield from _receive(conn, fresh)
            fresh = False
            continue
        if event is PAUSED:
            raise AssertionError("execute() is not used while a TLS handshake is due")
        if isinstance(event, (ServiceClosing, ConnectionClosed)):
            raise ConnectionLost(
                "the server closed the connection",
                event.reply if isinstance(event, ServiceClosing) else None,
            )
        return event


def settle(conn: ClientConnection) -> Generator[IORequest, bytes | None, None]:
    """Wait until no command awaits a reply. The events that arrive meanwhile have been
    seen by the engine (and by any transaction they belong to) and are dropped."""
    while conn.commands_in_flight:
        yield from execute(conn)


def open_session(
    conn: ClientConnection, local_hostname: str, tls: TlsPolicy
) -> Generator[IORequest, bytes | None, EhloFeatures]:
    """Read the greeting, say EHLO (or LHLO), and upgrade to TLS as *tls* requires.

    Returns what the server announced, over TLS when TLS is in use.
    """
    greeting = yield from execute(conn)
    if not isinstance(greeting, Greeting) or not greeting.accepted:
        reply = greeting.reply if isinstance(greeting, Greeting) else None
        raise GreetingRefused("the server refused service in its greeting", reply)
    features = yield from _hello(conn, local_hostname)
    if tls in (TlsPolicy.REQUIRED, TlsPolicy.OPPORTUNISTIC) and not conn.tls_active:
        if not features.starttls:
            if tls is TlsPolicy.REQUIRED:
                raise TlsUnavailable("the server does not offer STARTTLS", features.reply)
            return features
        ready = yield from execute(conn, conn.starttls)
        if not isinstance(ready, StartTlsReady):
            raise TlsUnavailable("the server refused STARTTLS", _reply_of(ready))
        yield StartTls()
        conn.tls_established()
        features = yield from _hello(conn, local_hostname)
    return features


def _hello(
    conn: ClientConnection, local_hostname: str
) -> Generator[IORequest, bytes | None, EhloFeatures]:
    hello = conn.lhlo if conn.lmtp else conn.ehlo
    event = yield from execute(conn, lambda: hello(local_hostname))
    if not isinstance(event, EhloFeatures):
        raise HelloRefused("the server refused EHLO", _reply_of(event))
    return event


def authenticate(
    conn: ClientConnection,
    mechanism: Mechanism,
    *,
    allow_without_tls: bool = False,
) -> Generator[IORequest, bytes | None, AuthSucceeded]:
    """AUTH with *mechanism*; raises :class:`AuthenticationFailed` on failure."""
    event = yield from execute(
        conn, lambda: conn.auth(mechanism, allow_without_tls=allow_without_tls)
    )
    if isinstance(event, AuthFailed):
        raise AuthenticationFailed(
            f"AUTH {event.mechanism} failed"
            + (f": {event.reason}" if event.reason else f" ({event.reply.code})"),
            event.reply,
        )
    if not isinstance(event, AuthSucceeded):  # pragma: no cover - the engine guarantees
        raise AssertionError(event)
    return event


def send_transaction(
    conn: ClientConnection, transaction: MailTransaction, *, external_body: bool = False
) -> Generator[IORequest, bytes | None, TransactionResult]:
    """Drive *transaction* to its outcome. With *external_body* the content comes from the
    transport through :class:`NeedBody` requests; otherwise the transaction pulls it from
    what it was given."""
    fresh = True
    while not transaction.done:
        yield from _flush(conn)
        if transaction.body_wanted:
            if external_body:
                chunk = yield NeedBody()
                if chunk is None:
                    transaction.end_body()
                else:
                    transaction.feed_body(chunk)
            else:
                transaction.pull_body()
            continue
        event = conn.next_event()
        if event is NEED_DATA:
            yield from _flush(conn)
            transaction._prepare_content()  # while the server works (see send_transactions)
            yield from _read(conn, fresh)
            fresh = False
        else:
            fresh = True
    yield from _flush(conn)
    return transaction.result


def send_transactions(
    conn: ClientConnection, transactions: Sequence[MailTransaction]
) -> Generator[IORequest, bytes | None, list[TransactionResult]]:
    """Send several messages on one connection, each as soon as the session allows, and
    return their results in the same order.

    The *transactions* come from :meth:`ClientConnection.send_message` with
    ``start=False``, so every message has been checked before anything is sent. With
    PIPELINING the next message's envelope goes out with the end of the previous one's
    content (RFC 2920 section 3.1), so each message costs about one round trip; with
    CHUNKING too and content sent with the envelope (``pipeline_content_up_to``), several
    whole messages travel in one write, up to :attr:`Limits.max_commands_in_flight`
    commands awaiting replies. Without PIPELINING they go one after the other. Content of
    more than one chunk (``chunk_size``) is written a chunk at a time, as
    :func:`send_transaction` writes it. Replies that arrive together are all taken in
    before it decides what to send next.

    If the session ends (a 421, or the server closing), the messages not yet started get
    the outcome ``FAILED``: nothing of them was sent.
    """
    waiting = deque(transactions)
    max_in_flight = conn.limits.max_commands_in_flight
    started: deque[MailTransaction] = deque()
    ended: list[MailTransaction] = []  # since the last read
    fresh = True
    while True:
        # A message starts when its whole envelope fits within the commands allowed in
        # flight: started with less room, it would trickle out a command per reply.
        while (
            waiting
            and conn.can_start_transaction
            and max_in_flight - conn.commands_in_flight
            >= min(waiting[0]._envelope_commands, max_in_flight)
        ):
            transaction = waiting.popleft()
            transaction._start(session_ready=True)
            started.append(transaction)
        # Whatever the extensions, only the newest transaction can want content: the next
        # one cannot start before the previous one's content has ended.
        if started and (newest := started[-1]).body_wanted:
            newest.pull_body()
            if newest.body_wanted:
                # More content follows: this piece goes now, so a long message never waits
                # in memory whole, and the server works on it while the next is made. A
                # message of one piece ends with it and travels with the next envelope.
                yield from _flush(conn)
            continue
        while started and started[0]._outcome is not None:  # done, without a call
            ended.append(started.popleft())
        if not started:
            if not waiting or conn.state in ENDED_STATES:
                break
            if not conn.commands_in_flight:
                # Nothing awaited can make room: waiting would hang (TLS required but not
                # active, say).
                raise LocalProtocolError(
                    "a mail transaction cannot start now: wait until can_start_transaction"
                )
        event = conn.next_event()
        if event is NEED_DATA:
            # Everything received has been answered: write it all at once, then read.
            yield from _flush(conn)
            # The results of the messages that have ended are made now, while the server
            # works on what was just written, rather than after the last reply.
            for transaction in ended:
                transaction.result  # noqa: B018 - made and kept
            ended.clear()
            # So is the content of a message whose DATA awaits its 354.
            if started:
                started[-1]._prepare_content()
            received = yield _new_read(conn.timeout, fresh)
            conn.receive_data(received or b"")
            # Take in every reply that has arrived before deciding again what to send:
            # deciding once after them costs less than deciding after each, and what is
            # decided still goes out before the next read, which starts a reply of its own
            # if one was taken.
            fresh = conn._take_replies()
            continue
        fresh = True
        conn._take_replies()
    for transaction in waiting:
        transaction._never_started()
    yield from _flush(conn)
    return [transaction.result for transaction in transactions]


def _flush(conn: ClientConnection) -> Generator[IORequest, bytes | None, None]:
    # Write whatever the engine has to send.
    data = conn.data_to_send()
    if data:
        yield _new_write(data)


def _receive(conn: ClientConnection, fresh: bool) -> Generator[IORequest, bytes | None, None]:
    # Write what is pending, then read within the engine's timeout and feed what arrives.
    yield from _flush(conn)
    yield from _read(conn, fresh)


def _read(conn: ClientConnection, fresh: bool) -> Generator[IORequest, bytes | None, None]:
    # Read within the engine's timeout and feed what arrives.
    received = yield Read(conn.timeout, fresh)
    conn.receive_data(received or b"")


def _reply_of(event: Event) -> Reply | None:
    # A refused EHLO, HELO or STARTTLS is reported as the Reply itself.
    return event if isinstance(event, Reply) else None
