"""What the transports share: everything that is not one event loop's I/O.

The asyncio and trio transports have the same API and differ only in their event loop, so
whatever one of them would otherwise copy from the other lives here, written once and tested
through both (the blocking transport uses the plain helpers too):

* :class:`Settings` and :func:`make_settings`: a client's options, checked and completed with
  their defaults in one place, so that every transport refuses the same mistakes with the
  same messages, and a pool checks its clients' options before it opens anything;
* :func:`new_connection`: the engine a client drives, with the debug log wired in
  (:class:`LoggingConnection`, :class:`ReceivedLog`);
* :func:`hello_name` and :func:`is_loopback`: what the client learns from the socket's
  addresses;
* :func:`login_mechanism`: which SASL mechanism the client's credentials call for;
* :class:`IdleConnections`: a pool's idle connections and the decisions about them, with time
  passed in as an argument, never read from a clock;
* :class:`ClientBase` and :class:`PoolBase`: the async client's and pool's API, built on a
  handful of primitives each transport implements for its loop (connect, run an engine
  operation, abort, close; read the clock). They await nothing but those primitives and the
  locks the transport hands them, so they run unchanged on asyncio and on trio.

Nothing here opens a socket, reads a clock or imports an event loop. The one exception to "no
I/O" is :func:`ssl.create_default_context`, which reads the system's certificate
authorities.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import dataclasses
import functools
import ipaddress
import ssl
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeAlias, TypedDict, TypeVar

from smtp_proto import (
    DEFAULT_CHUNK_SIZE,
    Body,
    ClientConnection,
    ConnectionLost,
    EhloFeatures,
    IORequest,
    Limits,
    MailTransaction,
    Mechanism,
    MessageOutcome,
    ProtocolError,
    Recipient,
    Reply,
    ServerCapabilityError,
    SMTPClientError,
    State,
    Timeouts,
    TlsPolicy,
    TransactionResult,
    authenticate,
    choose_mechanism,
    execute,
    open_session,
    password_mechanisms,
    send_transaction,
    send_transactions,
    settle,
)

if TYPE_CHECKING:
    from email.message import Message

    from typing_extensions import Self

__all__ = [
    "CAN_QUIT_STATES",
    "BatchMessage",
    "ClientBase",
    "ClientOptions",
    "IdleConnections",
    "LoggingConnection",
    "MessageBody",
    "PoolBase",
    "ReceivedLog",
    "Settings",
    "check_pool_limits",
    "hello_name",
    "is_loopback",
    "login_mechanism",
    "make_settings",
    "new_connection",
    "prepare_batch",
]

#: What a client's ``send_message`` takes as the message: its octets, an email message (sent
#: as ``smtplib.send_message`` would), an iterable of chunks, or an async iterable of chunks
#: (read by the transport as the engine asks for content).
MessageBody: TypeAlias = (
    "bytes | bytearray | memoryview | Message | Iterable[bytes] | AsyncIterable[bytes]"
)

#: One message of a batch (``send_messages``): the sender, the recipients and the content, as
#: ``send_message`` takes them (content given whole or as a plain iterable of chunks).
BatchMessage: TypeAlias = (
    "tuple[str | None, Sequence[str | Recipient] | None, "
    "bytes | bytearray | memoryview | Message | Iterable[bytes]]"
)

#: The states in which a session can still be ended politely with QUIT. In any other state
#: (a transaction or a TLS handshake abandoned half way, the connection closed or poisoned)
#: the client closes the connection without a word.
CAN_QUIT_STATES = frozenset({State.READY, State.GREETED, State.GREETING_REFUSED})

#: The number of the SMTP submission port with implicit TLS (RFC 8314 section 7.3), and of the
#: SMTP port, used for everything else. LMTP has no registered port; give it explicitly.
IMPLICIT_TLS_PORT = 465
SMTP_PORT = 25


class ClientOptions(TypedDict, total=False):
    """The keyword arguments a pool passes on to each of its clients (see ``Client``)."""

    tls: TlsPolicy
    ssl_context: ssl.SSLContext | None
    local_hostname: str | None
    timeouts: Timeouts | None
    limits: Limits | None
    lmtp: bool
    username: str | None
    password: str | None
    mechanism: Mechanism | None
    allow_auth_without_tls: bool
    debug: Callable[[str], None] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """A client's options, checked and with every default filled in."""

    host: str
    port: int
    tls: TlsPolicy
    #: The context for TLS; None only when *tls* is :attr:`TlsPolicy.NONE`.
    ssl_context: ssl.SSLContext | None
    #: The name to greet with, or None for an address literal of the client's own address.
    local_hostname: str | None
    timeouts: Timeouts
    limits: Limits
    lmtp: bool
    username: str | None = field(repr=False)
    password: str | None = field(repr=False)
    mechanism: Mechanism | None
    allow_auth_without_tls: bool
    debug: Callable[[str], None] | None

    def tls_context(self) -> ssl.SSLContext:
        """The context for a TLS handshake (there is one whenever TLS may be used)."""
        if self.ssl_context is None:
            raise RuntimeError("no TLS handshake happens under TlsPolicy.NONE")
        return self.ssl_context

    def for_another_connection(self) -> Settings:
        """These settings for one more connection of a pool. A SASL mechanism keeps the state
        of its exchange, so each connection gets its own (shallow) copy of it."""
        if self.mechanism is None:
            return self
        return dataclasses.replace(self, mechanism=copy.copy(self.mechanism))


def make_settings(
    host: str,
    port: int | None = None,
    *,
    tls: TlsPolicy = TlsPolicy.REQUIRED,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    timeouts: Timeouts | None = None,
    limits: Limits | None = None,
    lmtp: bool = False,
    username: str | None = None,
    password: str | None = None,
    mechanism: Mechanism | None = None,
    allow_auth_without_tls: bool = False,
    debug: Callable[[str], None] | None = None,
) -> Settings:
    """Check a client's options and fill in the defaults; see ``Client`` for their meaning.

    Raises :class:`TypeError` or :class:`ValueError` for an option that cannot work, before
    anything is connected.
    """
    if not isinstance(host, str) or not host:
        raise ValueError("host must be a non-empty str")
    if not isinstance(tls, TlsPolicy):
        raise TypeError(f"tls must be a TlsPolicy, not {type(tls).__name__}")
    if port is None:
        port = IMPLICIT_TLS_PORT if tls is TlsPolicy.IMPLICIT else SMTP_PORT
    if type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"port must be an int from 1 to 65535, not {port!r}")
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext, not {type(ssl_context).__name__}")
    if tls is TlsPolicy.NONE:
        if ssl_context is not None:
            raise ValueError("an ssl_context was given but tls is TlsPolicy.NONE")
    elif ssl_context is None:
        # Certificates and host names verified against the system's authorities.
        ssl_context = ssl.create_default_context()
    if local_hostname is not None and not isinstance(local_hostname, str):
        raise TypeError("local_hostname must be a str")
    if timeouts is not None and not isinstance(timeouts, Timeouts):
        raise TypeError(f"timeouts must be a Timeouts, not {type(timeouts).__name__}")
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, not {type(limits).__name__}")
    if (username is None) != (password is None):
        raise ValueError("give both username and password, or neither")
    for value, name in ((username, "username"), (password, "password")):
        if value is not None and not isinstance(value, str):
            # The message names the argument but never shows it: it may be a secret.
            raise TypeError(f"{name} must be a str")
    if mechanism is not None:
        if not isinstance(mechanism, Mechanism):
            raise TypeError(f"mechanism must be a Mechanism, not {type(mechanism).__name__}")
        if username is not None:
            raise ValueError("give a mechanism or a username and password, not both")
    if debug is not None and not callable(debug):
        raise TypeError("debug must be a callable taking one str")
    return Settings(
        host=host,
        port=port,
        tls=tls,
        ssl_context=ssl_context,
        local_hostname=local_hostname,
        timeouts=timeouts if timeouts is not None else Timeouts(),
        limits=limits if limits is not None else Limits(),
        lmtp=bool(lmtp),
        username=username,
        password=password,
        mechanism=mechanism,
        allow_auth_without_tls=bool(allow_auth_without_tls),
        debug=debug,
    )


def check_pool_limits(max_size: int, idle_timeout: float, check_after: float) -> None:
    """Refuse pool sizes and durations that cannot work."""
    if type(max_size) is not int or max_size < 1:
        raise ValueError(f"max_size must be a positive int, not {max_size!r}")
    for value, name in ((idle_timeout, "idle_timeout"), (check_after, "check_after")):
        if type(value) not in (int, float) or not value >= 0:
            raise ValueError(f"{name} must be a number of seconds, not {value!r}")


# -- the engine, with the debug log ------------------------------------------------------


class LoggingConnection(ClientConnection):
    """A :class:`ClientConnection` that reports what it sends as ``"C: ..."`` debug lines
    to *debug*, when it is not None.

    The lines come from :meth:`ClientConnection.data_to_send_and_log`: AUTH credentials are
    ``[redacted]`` and message content appears as its size. The engine's operations
    (``open_session``, ``send_transaction``, ...) take the outbox with ``data_to_send()``
    themselves and hand the transport bytes only, so the log is taken here, at the moment
    the bytes leave the engine.
    """

    def __init__(
        self,
        debug: Callable[[str], None] | None,
        *,
        lmtp: bool,
        tls_active: bool,
        require_tls: bool,
        peer_is_loopback: bool,
        limits: Limits,
        timeouts: Timeouts,
    ) -> None:
        super().__init__(
            lmtp=lmtp,
            tls_active=tls_active,
            require_tls=require_tls,
            peer_is_loopback=peer_is_loopback,
            limits=limits,
            timeouts=timeouts,
        )
        self._debug = debug
        # True while data_to_send_and_log() runs, in case it calls data_to_send() itself.
        self._taking_log = False

    def data_to_send(self) -> bytes:
        if self._debug is None or self._taking_log:
            return super().data_to_send()
        self._taking_log = True
        try:
            data, lines = self.data_to_send_and_log()
        finally:
            self._taking_log = False
        for line in lines:
            self._debug("C: " + line)
        return data


class ReceivedLog:
    """Turns the bytes read from the server into ``"S: ..."`` debug lines, one per line.

    A line split across reads is held until its end arrives, but never more than
    *max_line_length* octets of it: a longer one is logged in pieces. What servers send is
    their replies, which hold no secret of the client's.
    """

    def __init__(self, debug: Callable[[str], None], max_line_length: int) -> None:
        self._debug = debug
        self._max_line_length = max_line_length
        self._partial = b""

    def feed(self, data: bytes) -> None:
        if not data:
            self._emit(self._partial)
            self._partial = b""
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._emit(line)
        if len(self._partial) > self._max_line_length:
            self._emit(self._partial)
            self._partial = b""

    def _emit(self, line: bytes) -> None:
        if line:
            self._debug("S: " + line.removesuffix(b"\r").decode("utf-8", "backslashreplace"))


def new_connection(settings: Settings, *, tls_active: bool, peer: object) -> ClientConnection:
    """The engine for one session with these *settings*, to a server at address *peer*:
    a :class:`LoggingConnection` when there is a debug log to write, else the engine itself,
    which spares every write a call through the logging layer."""
    make: Callable[..., ClientConnection] = (
        ClientConnection
        if settings.debug is None
        else functools.partial(LoggingConnection, settings.debug)
    )
    return make(
        lmtp=settings.lmtp,
        tls_active=tls_active,
        # "STARTTLS required" also forbids the engine's fall back from EHLO to HELO, which
        # would give STARTTLS up.
        require_tls=settings.tls in (TlsPolicy.REQUIRED, TlsPolicy.IMPLICIT),
        peer_is_loopback=is_loopback(peer),
        limits=settings.limits,
        timeouts=settings.timeouts,
    )


# -- what the socket tells -----------------------------------------------------------------


def _ip_of(address: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # A socket address is a tuple whose first item is the IP (with "%scope" for a link-local
    # IPv6 address); anything else (a Unix socket's path, None) has no IP.
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return None
    try:
        ip = ipaddress.ip_address(address[0].partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(peer: object) -> bool:
    """Whether the socket address *peer* is on a loopback network, where nothing the client
    sends crosses a network (the engine then allows password mechanisms without TLS)."""
    ip = _ip_of(peer)
    return ip is not None and ip.is_loopback


def hello_name(local_hostname: str | None, local_address: object) -> str:
    """The name to give in EHLO (or LHLO): the one configured, else an address literal of
    the client's own end of the connection (RFC 5321 section 4.1.3), which needs no DNS
    lookup and is never wrong; else ``localhost``."""
    if local_hostname is not None:
        return local_hostname
    ip = _ip_of(local_address)
    if ip is None:
        return "localhost"
    return f"[{ip}]" if ip.version == 4 else f"[IPv6:{ip}]"


def prepare_batch(
    conn: ClientConnection,
    messages: Iterable[BatchMessage],
    chunk_size: int,
    pipeline_content_up_to: int,
) -> list[MailTransaction]:
    """The transactions of a ``send_messages`` batch, every message checked and none sent:
    a refused message leaves the session as it was."""
    return [
        conn.send_message(
            sender,
            recipients,
            body,
            chunk_size=chunk_size,
            pipeline_content_up_to=pipeline_content_up_to,
            start=False,
        )
        for sender, recipients, body in messages
    ]


def login_mechanism(settings: Settings, features: EhloFeatures) -> Mechanism | None:
    """The SASL mechanism to authenticate with, or None when no credentials were given.

    With a username and password, the strongest password mechanism the server announced
    (as :meth:`ClientConnection.login` chooses); :class:`ServerCapabilityError` if there is
    none.
    """
    if settings.mechanism is not None:
        return settings.mechanism
    if settings.username is None or settings.password is None:
        return None
    mechanism = choose_mechanism(
        features.auth_mechanisms, password_mechanisms(settings.username, settings.password)
    )
    if mechanism is None:
        raise ServerCapabilityError(
            "AUTH", "the server announced no password mechanism this client supports"
        )
    return mechanism


# -- a pool's idle connections -------------------------------------------------------------

_Connection = TypeVar("_Connection")


class IdleConnections(Generic[_Connection]):
    """The idle connections of a pool, each with the time it became idle.

    The pool hands out the most recently used connection first: it is the one most likely
    still open, and the others age until they expire. Times are the event loop's clock,
    given by the caller.
    """

    def __init__(self, *, idle_timeout: float, check_after: float) -> None:
        self._idle_timeout = idle_timeout
        self._check_after = check_after
        # Oldest first: connections are put back in the order of the clock.
        self._idle: list[tuple[_Connection, float]] = []

    def __len__(self) -> int:
        return len(self._idle)

    def put(self, connection: _Connection, now: float) -> None:
        """Keep *connection*, idle from *now*."""
        self._idle.append((connection, now))

    def take(self, now: float) -> tuple[_Connection, bool] | None:
        """Remove and return the most recently used connection, with whether it has been idle
        longer than ``check_after`` and so needs a health check before use; None if none
        is idle."""
        if not self._idle:
            return None
        connection, since = self._idle.pop()
        return connection, now - since > self._check_after

    def expired(self, now: float) -> list[_Connection]:
        """Remove and return every connection idle for longer than ``idle_timeout``."""
        keep = [(c, since) for c, since in self._idle if now - since <= self._idle_timeout]
        gone = [c for c, since in self._idle if now - since > self._idle_timeout]
        self._idle = keep
        return gone

    def take_all(self) -> list[_Connection]:
        """Remove and return every idle connection."""
        connections = [c for c, _ in self._idle]
        self._idle = []
        return connections


# -- the async client and pool, on any event loop -----------------------------------------

_Result = TypeVar("_Result")


class ClientBase(abc.ABC):
    """One SMTP (or LMTP) session, used as an async context manager; the API of the asyncio
    and trio clients, which subclass it.

    Entering connects, reads the greeting, says EHLO (LHLO for LMTP), applies the TLS policy
    and, when credentials or a mechanism were given, authenticates; leaving sends QUIT (if
    the session allows it) and closes the connection.

    A subclass implements the I/O, for its event loop:

    * :meth:`_connect`: open the connection (with the TLS handshake under implicit TLS);
    * :meth:`_run`: carry out the I/O an engine operation asks for;
    * :meth:`_abort` and :meth:`_close`: close the connection at once, or gracefully;

    and passes :meth:`_setup` a lock of its loop. Everything here awaits only those.

    **Poisoning.** A timeout, a protocol error, a lost connection, an exception from the
    message's async iterable, or a cancellation in the middle of an operation leaves the
    session in a state nobody can know: the subclass's runner aborts the connection (no
    QUIT), and every later operation raises :class:`smtp_proto.ConnectionLost`. A refusal
    (:class:`smtp_proto.SMTPClientError`) or an argument the engine refused
    (:class:`ValueError`) leaves the session usable.

    **Concurrency.** Operations are serialized by the lock: tasks sharing one client take
    turns. A pool sends on several connections at once.
    """

    # -- set up by the subclass --------------------------------------------------------

    def _setup(self, settings: Settings, lock: AbstractAsyncContextManager[None]) -> None:
        self._settings = settings
        self._lock = lock
        self._conn: ClientConnection | None = None
        self._received_log: ReceivedLog | None = None
        self._body: AsyncIterator[bytes] | None = None
        # Why the connection broke, when the transport was told (a reset, say): given as the
        # cause of the ConnectionLost that follows.
        self._broken_by: BaseException | None = None
        # Set once the connection is closed, whatever the reason.
        self._closed = False

    @abc.abstractmethod
    async def _connect(self) -> tuple[object, object]:
        """Open the connection, with the TLS handshake under implicit TLS, and return the
        socket addresses of the server and of the client's end (None where unknown).
        :meth:`_abort` is called if this raises."""

    @abc.abstractmethod
    async def _run(self, operation: Generator[IORequest, bytes | None, _Result]) -> _Result:
        """Carry out the I/O *operation* asks for until it returns its result. An exception
        from the operation goes through :meth:`_after_engine_error`; any other (I/O,
        timeout, cancellation) aborts the connection."""

    @abc.abstractmethod
    async def _abort(self) -> None:
        """Close the connection at once, without QUIT or a TLS goodbye; set ``_closed``."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Close the connection gracefully, within a bounded time; set ``_closed``."""

    # -- the session ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._conn is not None or self._closed:
            raise RuntimeError("a client is entered once")
        try:
            peer, own_address = await self._connect()
        except BaseException:
            await self._abort()
            raise
        settings = self._settings
        conn = new_connection(settings, tls_active=settings.tls is TlsPolicy.IMPLICIT, peer=peer)
        self._conn = conn
        if settings.debug is not None:
            self._received_log = ReceivedLog(settings.debug, settings.limits.max_reply_line_length)
        greeting_name = hello_name(settings.local_hostname, own_address)
        try:
            async with self._lock:
                await self._run(open_session(conn, greeting_name, settings.tls))
                mechanism = login_mechanism(settings, self.features)
                if mechanism is not None:
                    await self._run(
                        authenticate(
                            conn, mechanism, allow_without_tls=settings.allow_auth_without_tls
                        )
                    )
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown()

    @property
    def features(self) -> EhloFeatures:
        """What the server announced in its last EHLO (over TLS when TLS is in use)."""
        features = self._conn.features if self._conn is not None else None
        if features is None:
            raise RuntimeError("the session is not open: use `async with Client(...)`")
        return features

    async def send_message(
        self,
        sender: str | None,
        recipients: Sequence[str | Recipient] | None,
        body: MessageBody,
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
    ) -> TransactionResult:
        """Send one message and return what became of it, for each recipient too.

        *body* is the message: bytes, an :class:`email.message.Message` (sender and
        recipients may then be None, to take them from its headers, as
        ``smtplib.send_message`` does), an iterable of byte chunks, or an async iterable of
        them, read as the content is sent. The keyword arguments are those of
        :meth:`smtp_proto.ClientConnection.send_message`.

        Refused recipients do not raise: see :attr:`TransactionResult.recipients`. A message
        the server cannot take raises :class:`smtp_proto.ServerCapabilityError` before
        anything is sent. A connection lost during the transaction gives the outcome
        ``FAILED`` (not delivered) or ``DELIVERY_UNKNOWN`` (the end of the content was sent
        but not answered).
        """
        async with self._lock:
            conn = self._engine()
            if not conn.can_start_transaction:
                # The replies still awaited (an RSET after a failed message, say) come first.
                await self._run(settle(conn))
            if isinstance(body, AsyncIterable):
                # Read by the transport as the engine asks for content (NeedBody).
                streamed, content = aiter(body), None
            else:
                streamed, content = None, body
            transaction = conn.send_message(
                sender,
                recipients,
                content,
                size=size,
                body_type=body_type,
                smtputf8=smtputf8,
                ret=ret,
                envid=envid,
                requiretls=requiretls,
                mail_options=mail_options,
                chunk_size=chunk_size,
                pipeline_content_up_to=pipeline_content_up_to,
            )
            self._body = streamed
            try:
                return await self._run(
                    send_transaction(conn, transaction, external_body=streamed is not None)
                )
            finally:
                self._body = None

    async def send_messages(
        self,
        messages: Iterable[BatchMessage],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        pipeline_content_up_to: int = 0,
    ) -> list[TransactionResult]:
        """Send several messages, pipelined one after another, and return what became of
        each, in order.

        Each of *messages* is ``(sender, recipients, body)`` as :meth:`send_message` takes
        them (content as bytes, an email message or a plain iterable of chunks). Every
        message is checked before the first is sent. With PIPELINING each message costs
        about one round trip instead of two or more; with CHUNKING as well and
        *pipeline_content_up_to* at least the messages' size, several whole messages go in
        one write (see :func:`smtp_proto.send_transactions`). Messages that need their own
        extension parameters (DSN, SIZE, ...) go through :meth:`send_message`. If the
        session ends part way, the messages not yet started get the outcome ``FAILED``.
        """
        async with self._lock:
            conn = self._engine()
            if not conn.can_start_transaction:
                await self._run(settle(conn))
            transactions = prepare_batch(conn, messages, chunk_size, pipeline_content_up_to)
            return await self._run(send_transactions(conn, transactions))

    async def noop(self) -> Reply:
        """Send NOOP and return the reply."""
        return await self._simple(lambda conn: conn.noop())

    async def rset(self) -> Reply:
        """Send RSET and return the reply."""
        return await self._simple(lambda conn: conn.rset())

    async def vrfy(self, address: str) -> Reply:
        """Send VRFY and return the reply."""
        return await self._simple(lambda conn: conn.vrfy(address))

    async def expn(self, mailing_list: str) -> Reply:
        """Send EXPN and return the reply."""
        return await self._simple(lambda conn: conn.expn(mailing_list))

    async def help(self, topic: str | None = None) -> Reply:
        """Send HELP (about *topic*) and return the reply."""
        return await self._simple(lambda conn: conn.help(topic))

    async def command(self, verb: str, *arguments: str) -> Reply:
        """Send an extension command the engine has no method for (such as ETRN) and return
        the reply. Commands that change the session's state are refused with ValueError."""
        return await self._simple(lambda conn: conn.send_command(verb, *arguments))

    async def quit(self) -> None:
        """Send QUIT, wait for the reply and close the connection. Leaving the ``async
        with`` block does this too."""
        async with self._lock:
            conn = self._engine()
            try:
                await self._run(execute(conn, conn.quit))
            except ConnectionLost:
                return  # closed without a reply: the session is over all the same
        await self._close()

    # -- for the subclass's runner ---------------------------------------------------------

    def _engine(self) -> ClientConnection:
        """The engine, if the connection is open; ConnectionLost if it was closed."""
        if self._conn is None:
            raise RuntimeError("the session is not open: use `async with Client(...)`")
        if self._closed:
            raise ConnectionLost("the connection is closed")
        return self._conn

    def _write_timeout(self) -> float:
        """Seconds one write may take. The engine publishes what it waits on; while content
        is sent that is each write of it (RFC 5321 section 4.5.3.2.5)."""
        return self._engine().timeout or self._settings.timeouts.data_block

    def _log_received(self, data: bytes) -> None:
        if self._received_log is not None:
            self._received_log.feed(data)

    async def _next_body_chunk(self) -> bytes | None:
        """The next chunk of the streamed message (for NeedBody); None at its end."""
        if self._body is None:  # pragma: no cover - the engine asks only for streamed content
            raise AssertionError("the engine asked for content that was not streamed")
        return await anext(self._body, None)

    async def _after_engine_error(self, exc: BaseException) -> None:
        """Decide what an exception from the engine's side leaves. A refusal or a refused
        argument leaves the session where it was; anything else (a protocol error, a lost
        connection, a transaction abandoned half way) leaves nothing worth keeping."""
        conn = self._conn
        if isinstance(exc, Exception) and conn is not None and conn.state in CAN_QUIT_STATES:
            return
        if isinstance(exc, ConnectionLost) and exc.__cause__ is None:
            # Say why, when the transport knows: a reset tells more than "closed".
            exc.__cause__ = self._broken_by
        await self._abort()

    # -- internals -------------------------------------------------------------------------

    @property
    def _usable(self) -> bool:
        # Whether a pool may hand this client out again.
        return not self._closed and self._conn is not None and self._conn.state is State.READY

    async def _simple(self, command: Callable[[ClientConnection], None]) -> Reply:
        # A command whose answer is a plain Reply.
        async with self._lock:
            conn = self._engine()
            event = await self._run(execute(conn, lambda: command(conn)))
        if not isinstance(event, Reply):  # pragma: no cover - the engine guarantees it
            raise AssertionError(f"expected a Reply, got {event!r}")
        return event

    async def _shutdown(self) -> None:
        """End the session: QUIT if the session allows it, then close, whatever happens."""
        if self._closed or self._conn is None:
            return  # closed already, or never opened (a failed connect aborts itself)
        if self._conn.state in CAN_QUIT_STATES:
            # Best effort: the connection is closed below all the same.
            with contextlib.suppress(SMTPClientError, ProtocolError, OSError):
                await self.quit()
        if not self._closed:
            await self._close()


_Client = TypeVar("_Client", bound=ClientBase)


class PoolBase(abc.ABC, Generic[_Client]):
    """Reuses connections for high-volume sending: a bounded number of clients (max_size), an
    idle timeout after which an idle connection is closed, and a health check (NOOP) before
    reusing a connection that has been idle longer than `check_after` seconds; broken
    connections are discarded.

    The pool runs no background task: connections idle longer than ``idle_timeout`` are
    closed (with QUIT) the next time the pool is used, and by :meth:`aclose`.

    When a reused connection turns out to have been closed by the server while idle (the
    message's MAIL got no reply, or the connection was found lost before it), the message is
    sent again, once, on a new connection: nothing of it was delivered, so this cannot
    duplicate it.

    A subclass gives its loop's semaphore class, its clock and its client class.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_size: int,
        idle_timeout: float,
        check_after: float,
        semaphore: Callable[[int], AbstractAsyncContextManager[None]],
    ) -> None:
        check_pool_limits(max_size, idle_timeout, check_after)
        self._settings = settings
        self._idle: IdleConnections[_Client] = IdleConnections(
            idle_timeout=idle_timeout, check_after=check_after
        )
        # Held while a connection is in use (or being opened): at most max_size of them.
        self._slots = semaphore(max_size)
        self._closed = False

    @abc.abstractmethod
    def _now(self) -> float:
        """The event loop's clock."""

    @abc.abstractmethod
    def _new_client(self, settings: Settings) -> _Client:
        """A client (not yet entered) with *settings*."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def send_message(
        self,
        sender: str | None,
        recipients: Sequence[str | Recipient] | None,
        body: MessageBody,
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
    ) -> TransactionResult:
        """Send one message on one of the pool's connections, waiting for one if all
        ``max_size`` are busy; see ``Client.send_message``."""

        async def attempt(client: _Client) -> TransactionResult:
            try:
                return await client.send_message(
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
                )
            finally:
                await self._release(client)

        async with self._slots:
            if self._closed:
                raise RuntimeError("the pool is closed")
            client, reused = await self._acquire()
            try:
                result = await attempt(client)
            except ConnectionLost:
                # Lost before the message started (an RSET still awaited, say).
                if not reused:
                    raise
            else:
                if not (reused and _unanswered(result)):
                    return result
            # The server closed the reused connection while it was idle and answered nothing
            # of this message, so it was not delivered: send it once more on a new one.
            return await attempt(await self._open())

    async def aclose(self) -> None:
        """Close every idle connection (with QUIT); connections in use are closed when their
        message is done. Sending afterwards raises RuntimeError."""
        self._closed = True
        for client in self._idle.take_all():
            await client._shutdown()

    async def _acquire(self) -> tuple[_Client, bool]:
        # An idle connection that still works, else a new one; and whether it was reused.
        now = self._now()
        for client in self._idle.expired(now):
            await client._shutdown()
        while (taken := self._idle.take(now)) is not None:
            client, needs_check = taken
            if client._usable and (not needs_check or await _healthy(client)):
                return client, True
            await client._shutdown()
        return await self._open(), False

    async def _open(self) -> _Client:
        client = self._new_client(self._settings.for_another_connection())
        await client.__aenter__()
        return client

    async def _release(self, client: _Client) -> None:
        if self._closed or not client._usable:
            await client._shutdown()
        else:
            self._idle.put(client, self._now())


async def _healthy(client: ClientBase) -> bool:
    # A connection idle for a while may have been closed by the server, or be about to.
    try:
        return (await client.noop()).is_positive
    except (SMTPClientError, ProtocolError, OSError):
        return False


def _unanswered(result: TransactionResult) -> bool:
    # The connection ended before the server answered MAIL: nothing of the message reached it
    # (content is sent only after a reply to MAIL, unless pipelined with it, and then the
    # outcome is DELIVERY_UNKNOWN, not FAILED).
    return result.outcome is MessageOutcome.FAILED and result.sender_reply is None
