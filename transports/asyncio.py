"""An SMTP and LMTP client for asyncio (uvloop included): :class:`Client` and :class:`Pool`.

The API (a session as an async context manager, ``send_message``, the other commands, the
pool's policy) is written once for asyncio and trio, in
:class:`smtp_proto.transports._pool.ClientBase` and ``PoolBase``; this module supplies the
I/O. Its heart is :meth:`Client._run`, the runner of the engine's operations
(:func:`smtp_proto.open_session`, :func:`~smtp_proto.execute`,
:func:`~smtp_proto.send_transaction`, ...), which decide everything and ask for I/O:

* ``Write``: the bytes are written, waiting while the transport's buffer is full;
* ``Read``: the bytes that have arrived are returned, waiting for some if there are none,
  against a deadline set when a reply starts to be awaited (``fresh``) and kept until it is
  complete, so a server trickling bytes cannot stretch the wait;
* ``StartTls``: :meth:`asyncio.loop.start_tls` on the open connection, checking the
  certificate against the host the client was given;
* ``NeedBody``: the next chunk of the async iterable given as the message.

The connection is a small :class:`asyncio.Protocol` of this module with a buffer it controls
(not a :class:`asyncio.StreamReader`), so that it can guarantee that no byte received in
plain text survives the TLS handshake: any the engine has not seen is refused as an
injection.

**Errors.** What the engine raises passes through: :class:`smtp_proto.SMTPClientError` and
its subclasses for a refusal (``TlsUnavailable``, ``AuthenticationFailed``, ...),
:class:`smtp_proto.RemoteProtocolError` for a server that broke the protocol,
:class:`ValueError` for an argument the engine refused before sending anything. A lost
connection is reported by the engine as ``ConnectionLost`` (with the socket error, if any,
as its cause), or as a message outcome of ``FAILED`` or ``DELIVERY_UNKNOWN``. A reply (or a
write, or connecting) that takes longer than :class:`smtp_proto.Timeouts` allows raises the
built-in :class:`TimeoutError`, on every Python version and exactly as the trio transport
does. Certificate failures raise :class:`ssl.SSLCertVerificationError`.

After a timeout, a protocol error, a lost connection, a failing async iterable or a
cancelled operation the connection is closed at once, without QUIT, and every later
operation raises ``ConnectionLost`` (see ``ClientBase``). A client's operations are
serialized by a lock; a :class:`Pool` sends on several connections at once.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, TypeVar, cast

from smtp_proto import (
    IORequest,
    Limits,
    Mechanism,
    NeedBody,
    Read,
    RemoteProtocolError,
    StartTls,
    Timeouts,
    TlsPolicy,
    Write,
)

from ._pool import ClientBase, ClientOptions, PoolBase, Settings, make_settings

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Client", "Pool"]

_T = TypeVar("_T")

# How long closing may take once the session is over: the TLS close_notify exchange and the
# server's end of the TCP connection. Closing is a courtesy, so it is kept short; past it the
# connection is aborted.
_CLOSE_TIMEOUT = 5.0


async def _until(deadline: float | None, awaitable: Awaitable[_T]) -> _T:
    """Await *awaitable*, raising the built-in :class:`TimeoutError` once the event loop's
    clock passes *deadline* (None: no deadline)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout_at(deadline):
            return await awaitable
    # Python 3.10 has no asyncio.timeout, and its wait_for raises asyncio.TimeoutError,
    # which is not yet the built-in one.
    timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError from None


def _deadline_after(timeout: float | None) -> float | None:
    # The event loop's time *timeout* seconds from now (None: never).
    return None if timeout is None else asyncio.get_running_loop().time() + timeout


class _Protocol(asyncio.Protocol):
    """The connection's receiving end: bytes go to a buffer that each read empties whole.

    Nothing is parsed here. The buffer is bounded: past ``Limits.max_receive_buffer`` octets
    the transport stops reading until the client reads. Writing is paused and resumed by the
    transport's flow control, which :meth:`drain` waits on.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_buffer: int) -> None:
        self._loop = loop
        self._max_buffer = max_buffer
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._reading_paused = False
        self._data_waiter: asyncio.Future[None] | None = None
        # The deadline of the wait in progress, and the timer that keeps it (see _watch).
        self._deadline: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        #: Whether the server's side has ended (end of stream, or the connection lost).
        self.at_eof = False
        #: Why the connection was lost, when it was lost to an error.
        self.lost_because: BaseException | None = None
        #: Done once the connection is closed and its socket released.
        self.closed: asyncio.Future[None] = loop.create_future()

    # -- called by the transport ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport is always a full Transport.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self._max_buffer and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake(self._data_waiter)

    def eof_received(self) -> bool:
        self.at_eof = True
        self._wake(self._data_waiter)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.at_eof = True
        self.lost_because = exc
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._wake(self._data_waiter)
        self._wake(self._drain_waiter)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake(self._drain_waiter)

    # -- called by the client ------------------------------------------------------------

    @property
    def transport(self) -> asyncio.Transport:
        """The transport; replaced by the TLS one after STARTTLS."""
        if self._transport is None:
            raise RuntimeError("not connected")
        return self._transport

    @transport.setter
    def transport(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    @property
    def buffered(self) -> int:
        """Octets received and not yet read."""
        return len(self._buffer)

    @property
    def writing_paused(self) -> bool:
        """Whether the transport's write buffer is full, so a writer must drain."""
        return self._writing_paused and not self.at_eof

    async def receive(self, deadline: float | None = None) -> bytes:
        """The bytes received since the last call, waiting for some; ``b""`` once the
        server has closed the connection and everything before has been read. Raises the
        built-in :class:`TimeoutError` if nothing has come when the event loop's clock
        passes *deadline* (None: no deadline)."""
        if not self._buffer and not self.at_eof:
            waiter = self._data_waiter = self._loop.create_future()
            self._deadline = deadline
            watchdog = self._watchdog
            if deadline is not None and (watchdog is None or watchdog.when() > deadline):
                self._arm(deadline)
            try:
                await waiter
            finally:
                self._data_waiter = None
                self._deadline = None
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    # Deadlines. A timeout scope around each wait, or a timer set and cancelled for each,
    # costs more than the wait for a reply itself, and every reply is awaited under a
    # deadline. So one timer, the watchdog, serves every wait: a wait whose deadline is no
    # earlier than the timer's leaves it as it is, and when the timer fires it fails the
    # wait in progress if that wait's deadline has passed, or else moves itself to it.

    def _arm(self, when: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self._loop.call_at(when, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        waiter, deadline = self._data_waiter, self._deadline
        if waiter is None or deadline is None or waiter.done():
            return  # nothing waits now; the next wait arms the timer again
        if self._loop.time() >= deadline:
            waiter.set_exception(TimeoutError())
        else:
            self._arm(deadline)

    async def drain(self) -> None:
        """Wait until the transport's write buffer has room again."""
        if self._writing_paused and not self.at_eof:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    @staticmethod
    def _wake(waiter: asyncio.Future[None] | None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Client(ClientBase):
    """One SMTP (or LMTP) session on asyncio, used as an async context manager::

        async def send(message, host="mail.example.com", port=587, context=None):
            async with Client(
                host, port, ssl_context=context, username="me", password="..."
            ) as client:
                return await client.send_message("me@example.com", ["you@example.org"], message)

    Entering connects, reads the greeting, says EHLO (LHLO for LMTP), applies the TLS policy
    and, when credentials or a mechanism were given, authenticates; leaving sends QUIT (if
    the session allows it) and closes the connection. The operations (``send_message``,
    ``noop``, ``rset``, ``vrfy``, ``expn``, ``help``, ``command``, ``quit``) and the
    ``features`` the server announced are documented on
    :class:`smtp_proto.transports._pool.ClientBase`, which the trio client shares.

    :param host: the server's name or address; TLS certificates are checked against it.
    :param port: 465 when *tls* is :attr:`TlsPolicy.IMPLICIT`, otherwise 25.
    :param tls: :attr:`~TlsPolicy.REQUIRED` (the default: STARTTLS, and
        :class:`smtp_proto.TlsUnavailable` if the server does not offer it, so that nothing
        but EHLO, STARTTLS and QUIT is ever sent in plain text), :attr:`~TlsPolicy.IMPLICIT`
        (TLS from the first byte), :attr:`~TlsPolicy.OPPORTUNISTIC` or
        :attr:`~TlsPolicy.NONE`.
    :param ssl_context: the TLS configuration; by default :func:`ssl.create_default_context`,
        which verifies certificates and host names.
    :param local_hostname: the name to greet with; by default an address literal of the
        client's own address, such as ``[192.0.2.1]``.
    :param timeouts: how long each reply may take (:class:`smtp_proto.Timeouts`). The
        greeting's timeout also bounds connecting (and the implicit TLS handshake), the
        timeout of "other" commands the STARTTLS handshake.
    :param limits: bounds on what the engine buffers (:class:`smtp_proto.Limits`).
    :param lmtp: speak LMTP (RFC 2033); each recipient then gets its own outcome.
    :param username: with *password*, log in by the strongest password mechanism both sides
        support.
    :param password: the password for *username*.
    :param mechanism: log in with this SASL mechanism instead (such as
        :class:`smtp_proto.XOAuth2`).
    :param allow_auth_without_tls: allow mechanisms that expose a secret on a connection
        without TLS (they are always allowed on a loopback address).
    :param sock: an already-connected socket to use instead of connecting, in plain text:
        the client wraps it in TLS as *tls* says. The client owns it from then on and closes
        it.
    :param debug: called with one line for each line sent (``"C: ..."``, credentials
        redacted and message content as its size) and received (``"S: ..."``).
    """

    def __init__(
        self,
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
        sock: socket.socket | None = None,
        debug: Callable[[str], None] | None = None,
    ) -> None:
        settings = make_settings(
            host,
            port,
            tls=tls,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
            timeouts=timeouts,
            limits=limits,
            lmtp=lmtp,
            username=username,
            password=password,
            mechanism=mechanism,
            allow_auth_without_tls=allow_auth_without_tls,
            debug=debug,
        )
        if sock is not None and not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
        self._setup(settings, asyncio.Lock())
        self._sock = sock
        self._protocol: _Protocol | None = None

    @classmethod
    def _from_settings(cls, settings: Settings) -> Client:
        # For Pool, whose settings are checked once for all its clients.
        client = cls.__new__(cls)
        client._setup(settings, asyncio.Lock())
        client._sock = None
        client._protocol = None
        return client

    # -- the runner --------------------------------------------------------------------

    async def _run(self, operation: Generator[IORequest, bytes | None, _T]) -> _T:
        value: bytes | None = None
        deadline: float | None = None
        while True:
            try:
                request = operation.send(value)
            except StopIteration as stop:
                result: _T = stop.value
                return result
            except BaseException as exc:
                await self._after_engine_error(exc)
                raise
            value = None
            try:
                if isinstance(request, Write):
                    await self._write(request.data)
                elif isinstance(request, Read):
                    if request.fresh or deadline is None:
                        deadline = _deadline_after(request.timeout)
                    value = await self._read(deadline, request.timeout)
                elif isinstance(request, StartTls):
                    await self._start_tls()
                elif isinstance(request, NeedBody):
                    value = await self._next_body_chunk()
            except BaseException:
                operation.close()
                await self._abort()
                raise

    async def _write(self, data: bytes) -> None:
        protocol = self._wire()
        if protocol.at_eof:
            return  # the connection is gone; the engine learns it from the next read
        protocol.transport.write(data)
        if not protocol.writing_paused:
            # Nothing to wait for: a timeout set up and cancelled for every write costs more
            # than the write itself.
            return
        timeout = self._write_timeout()
        try:
            await _until(_deadline_after(timeout), protocol.drain())
        except TimeoutError:
            raise TimeoutError(f"the server took no data for {timeout:g} seconds") from None

    async def _read(self, deadline: float | None, timeout: float | None) -> bytes:
        protocol = self._wire()
        try:
            data = await protocol.receive(deadline)
        except TimeoutError:
            raise TimeoutError(f"the server did not answer within {timeout:g} seconds") from None
        if not data:
            self._broken_by = protocol.lost_because
        self._log_received(data)
        return data

    async def _start_tls(self) -> None:
        protocol = self._wire()
        if protocol.buffered:
            # RFC 3207 section 5: bytes received in plain text before the handshake may have
            # been injected by a man in the middle; they never reach the TLS session.
            raise RemoteProtocolError(
                "the server sent bytes after its reply to STARTTLS, before the TLS "
                "handshake (possible injection)"
            )
        settings = self._settings
        loop = asyncio.get_running_loop()
        timeout = settings.timeouts.other
        try:
            transport = await _until(
                _deadline_after(timeout),
                loop.start_tls(
                    protocol.transport,
                    protocol,
                    settings.tls_context(),
                    server_hostname=settings.host,
                ),
            )
        except TimeoutError:
            raise TimeoutError(
                f"the STARTTLS handshake took longer than {timeout:g} seconds"
            ) from None
        if transport is None:  # pragma: no cover - asyncio returns None only when closing
            raise ConnectionError("the connection closed during the TLS handshake")
        protocol.transport = transport

    # -- connecting and closing --------------------------------------------------------

    async def _connect(self) -> tuple[object, object]:
        settings = self._settings
        loop = asyncio.get_running_loop()
        implicit = settings.tls is TlsPolicy.IMPLICIT
        tls_context = settings.tls_context() if implicit else None
        tls_hostname = settings.host if implicit else None

        def protocol_factory() -> _Protocol:
            return _Protocol(loop, settings.limits.max_receive_buffer)

        if self._sock is not None:
            connecting = loop.create_connection(
                protocol_factory, sock=self._sock, ssl=tls_context, server_hostname=tls_hostname
            )
        else:
            connecting = loop.create_connection(
                protocol_factory,
                settings.host,
                settings.port,
                ssl=tls_context,
                server_hostname=tls_hostname,
            )
        timeout = settings.timeouts.greeting
        try:
            # Connecting and the implicit TLS handshake share the greeting's timeout.
            transport, self._protocol = await _until(_deadline_after(timeout), connecting)
        except TimeoutError:
            raise TimeoutError(f"could not connect within {timeout:g} seconds") from None
        return transport.get_extra_info("peername"), transport.get_extra_info("sockname")

    def _wire(self) -> _Protocol:
        if self._protocol is None:
            raise RuntimeError("the session is not open: use `async with Client(...)`")
        return self._protocol

    async def _abort(self) -> None:
        self._closed = True
        if self._protocol is not None:
            self._protocol.transport.abort()
        elif self._sock is not None:
            self._sock.close()  # given, and never connected

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        protocol = self._wire()
        protocol.transport.close()
        try:
            await _until(_deadline_after(_CLOSE_TIMEOUT), protocol.closed)
        except TimeoutError:
            protocol.transport.abort()


class Pool(PoolBase[Client]):
    """Reuses connections for high-volume sending: a bounded number of clients (max_size), an
    idle timeout after which an idle connection is closed, and a health check (NOOP) before
    reusing a connection that has been idle longer than `check_after` seconds; broken
    connections are discarded.

    For example, to send *messages*, ``(sender, recipients, content)`` tuples, on up to four
    connections at once::

        async def send_all(messages, host="mail.example.com", port=587, context=None):
            async with Pool(host, port, ssl_context=context, username="me", password="...") as pool:
                sends = [pool.send_message(*message) for message in messages]
                return await asyncio.gather(*sends)

    :param max_size: the most connections open at once; more concurrent sends wait.
    :param idle_timeout: seconds after which an idle connection is closed (with QUIT). The
        pool runs no background task: expired connections are closed the next time the pool
        is used, and by ``aclose``.
    :param check_after: seconds of idleness after which a connection is checked with NOOP
        before it is reused.
    :param client_options: the keyword arguments of :class:`Client` (but ``sock``); they are
        checked at once. A ``mechanism`` is copied for each connection.

    ``send_message``, ``aclose`` and the retry of a message whose reused connection the
    server had closed are documented on :class:`smtp_proto.transports._pool.PoolBase`.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        max_size: int = 4,
        idle_timeout: float = 60.0,
        check_after: float = 5.0,
        **client_options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(
            make_settings(host, port, **client_options),
            max_size=max_size,
            idle_timeout=idle_timeout,
            check_after=check_after,
            semaphore=asyncio.Semaphore,
        )

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _new_client(self, settings: Settings) -> Client:
        return Client._from_settings(settings)
