"""An SMTP and LMTP client for trio: :class:`Client` and :class:`Pool`.

The same API as :mod:`smtp_proto.transports.asyncio`, written once for both in
:class:`smtp_proto.transports._pool.ClientBase` and ``PoolBase``; this module supplies the
I/O. Its heart is :meth:`Client._run`, the runner of the engine's operations
(:func:`smtp_proto.open_session`, :func:`~smtp_proto.execute`,
:func:`~smtp_proto.send_transaction`, ...), which decide everything and ask for I/O:

* ``Write``: :meth:`trio.abc.SendStream.send_all`;
* ``Read``: :meth:`trio.abc.ReceiveStream.receive_some`, under a deadline set when a reply
  starts to be awaited (``fresh``) and kept until it is complete, so a server trickling
  bytes cannot stretch the wait (writes have one each);
* ``StartTls``: the stream is wrapped in a :class:`trio.SSLStream` that checks the
  certificate against the host the client was given, and the handshake is done. Trio's
  streams buffer nothing: every byte received in plain text was handed to the engine, which
  refuses any that followed the ``220``, so none can survive the handshake;
* ``NeedBody``: the next chunk of the async iterable given as the message.

**Errors.** What the engine raises passes through: :class:`smtp_proto.SMTPClientError` and
its subclasses for a refusal (``TlsUnavailable``, ``AuthenticationFailed``, ...),
:class:`smtp_proto.RemoteProtocolError` for a server that broke the protocol,
:class:`ValueError` for an argument the engine refused before sending anything. A lost
connection (trio's :class:`trio.BrokenResourceError`) is reported by the engine as
``ConnectionLost``, with the trio error as its cause, or as a message outcome of ``FAILED``
or ``DELIVERY_UNKNOWN``. A reply (or a write, or connecting) that takes longer than
:class:`smtp_proto.Timeouts` allows raises the built-in :class:`TimeoutError`, chained from
:class:`trio.TooSlowError`: the asyncio transport raises the same, so one ``except
TimeoutError`` serves both. A failed TLS handshake raises the :mod:`ssl` error itself, such
as :class:`ssl.SSLCertVerificationError`, not trio's wrapper.

After a timeout, a protocol error, a lost connection, a failing async iterable or a
cancelled operation the connection is closed at once, without QUIT, and every later
operation raises ``ConnectionLost`` (see ``ClientBase``). A client's operations are
serialized by a lock; a :class:`Pool` sends on several connections at once.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, TypeVar

import trio

from smtp_proto import (
    IORequest,
    Limits,
    Mechanism,
    NeedBody,
    Read,
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

# How much one read asks for. The engine parses whatever arrives, so this only trades
# system calls against memory.
_RECEIVE_SIZE = 64 * 1024

# Whether a socket is a file descriptor that os.write takes (not so on Windows).
_DIRECT_WRITES = os.name == "posix"

# How long closing may take once the session is over: the TLS close_notify. Closing is a
# courtesy, so it is kept short; past it the connection is closed without it.
_CLOSE_TIMEOUT = 5.0


def _deadline_after(timeout: float | None) -> float:
    # Trio's clock *timeout* seconds from now (None: never).
    return math.inf if timeout is None else trio.current_time() + timeout


def _addresses(stream: trio.abc.Stream) -> tuple[object, object]:
    # The (peer, own) socket addresses under *stream*, when it is a socket at all.
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        return stream.socket.getpeername(), stream.socket.getsockname()
    return None, None


class Client(ClientBase):
    """One SMTP (or LMTP) session on trio, used as an async context manager::

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
    :class:`smtp_proto.transports._pool.ClientBase`, which the asyncio client shares.

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
    :param stream: an already-connected stream (such as a :class:`trio.SocketStream`) to use
        instead of connecting, in plain text: the client wraps it in TLS as *tls* says. The
        client owns it from then on and closes it.
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
        stream: trio.abc.Stream | None = None,
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
        if stream is not None and not isinstance(stream, trio.abc.Stream):
            raise TypeError(f"stream must be a trio.abc.Stream, not {type(stream).__name__}")
        self._setup(settings, trio.Lock())
        self._stream = stream

    @classmethod
    def _from_settings(cls, settings: Settings) -> Client:
        # For Pool, whose settings are checked once for all its clients.
        client = cls.__new__(cls)
        client._setup(settings, trio.Lock())
        client._stream = None
        return client

    # -- the runner --------------------------------------------------------------------

    async def _run(self, operation: Generator[IORequest, bytes | None, _T]) -> _T:
        value: bytes | None = None
        deadline = math.inf
        # One cancel scope for the whole operation, its deadline moved to each wait's: a
        # scope made and entered for every write and every read costs several times as
        # much as moving a deadline, and a message takes a write and a read.
        scope = trio.CancelScope()
        # What the scope's deadline bounds now: a write (True) or a reply, and the timeout.
        writing, timeout = False, 0.0
        with scope:
            while True:
                try:
                    request = operation.send(value)
                except StopIteration as stop:
                    result: _T = stop.value
                    return result
                except BaseException as exc:
                    scope.deadline = math.inf
                    await self._after_engine_error(exc)
                    raise
                value = None
                try:
                    if isinstance(request, Write):
                        if self._broken_by is None and (rest := self._write_now(request.data)):
                            writing, timeout = True, self._write_timeout()
                            scope.deadline = trio.current_time() + timeout
                            await self._write(rest)
                    elif isinstance(request, Read):
                        if request.fresh:
                            deadline = _deadline_after(request.timeout)
                        writing = False
                        timeout = math.inf if request.timeout is None else request.timeout
                        scope.deadline = deadline
                        value = await self._read()
                    else:
                        # The handshake keeps a deadline of its own; the caller's content
                        # has none.
                        scope.deadline = math.inf
                        if isinstance(request, StartTls):
                            self._stream = await self._handshake(
                                self._wire(),
                                self._settings.timeouts.other,
                                "the STARTTLS handshake",
                            )
                        elif isinstance(request, NeedBody):
                            value = await self._next_body_chunk()
                except BaseException:
                    operation.close()
                    await self._abort()
                    raise
        # Leaving the scope without returning or raising: its deadline passed, and the
        # connection has been aborted on the way out.
        if writing:
            raise TimeoutError(f"the server took no data for {timeout:g} seconds") from (
                trio.TooSlowError()
            )
        raise TimeoutError(f"the server did not answer within {timeout:g} seconds") from (
            trio.TooSlowError()
        )

    def _write_now(self, data: bytes) -> bytes | memoryview:
        # What a plain socket's buffer takes at once goes with one system call, without a
        # deadline to move or the stream's machinery (a command, or a message's content,
        # nearly always fits); return what is left for _write, under the deadline. A full
        # buffer, or a broken connection, leaves it all to _write, which tells the two
        # apart; TLS streams go through _write whole, as every write does where a socket
        # is not a file descriptor (Windows).
        stream = self._stream
        if not _DIRECT_WRITES or type(stream) is not trio.SocketStream:
            return data
        try:
            sent = os.write(stream.socket.fileno(), data)
        except OSError:
            return data
        return b"" if sent == len(data) else memoryview(data)[sent:]

    async def _write(self, data: bytes | memoryview) -> None:
        # Under the runner's deadline.
        try:
            await self._wire().send_all(data)
        except trio.BrokenResourceError as exc:
            self._broken_by = exc

    async def _read(self) -> bytes:
        # Under the runner's deadline.
        if self._broken_by is not None:
            return b""
        try:
            # (bytes() of bytes is the same object; an SSLStream gives a bytearray.)
            data = bytes(await self._wire().receive_some(_RECEIVE_SIZE))
        except trio.BrokenResourceError as exc:
            # A reset is an end like any other to the engine, which knows what it means for
            # the message in flight.
            self._broken_by = exc
            data = b""
        self._log_received(data)
        return data

    async def _handshake(
        self, stream: trio.abc.Stream, timeout: float, what: str
    ) -> trio.SSLStream[trio.abc.Stream]:
        # Trio's streams buffer nothing: every byte received before the handshake went to
        # the engine, which refuses any that followed the 220 to STARTTLS.
        settings = self._settings
        tls_stream = trio.SSLStream(stream, settings.tls_context(), server_hostname=settings.host)
        try:
            with trio.fail_after(timeout):
                await tls_stream.do_handshake()
        except trio.TooSlowError as exc:
            raise TimeoutError(f"{what} took longer than {timeout:g} seconds") from exc
        except trio.BrokenResourceError as exc:
            # Raise what went wrong (a certificate that failed verification, say) as the ssl
            # module names it, as the asyncio transport does.
            if isinstance(exc.__cause__, ssl.SSLError):
                raise exc.__cause__ from None
            raise
        return tls_stream

    # -- connecting and closing --------------------------------------------------------

    async def _connect(self) -> tuple[object, object]:
        settings = self._settings
        timeout = settings.timeouts.greeting
        try:
            # Connecting and the implicit TLS handshake share the greeting's timeout.
            with trio.fail_after(timeout):
                if self._stream is None:
                    self._stream = await trio.open_tcp_stream(settings.host, settings.port)
                if settings.tls is TlsPolicy.IMPLICIT:
                    self._stream = await self._handshake(self._stream, timeout, "the TLS handshake")
        except trio.TooSlowError as exc:
            raise TimeoutError(f"could not connect within {timeout:g} seconds") from exc
        return _addresses(self._stream)

    def _wire(self) -> trio.abc.Stream:
        if self._stream is None:
            raise RuntimeError("the session is not open: use `async with Client(...)`")
        return self._stream

    async def _abort(self) -> None:
        self._closed = True
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Cancelled, aclose() still closes the stream, only without the TLS goodbye.
        with trio.move_on_after(_CLOSE_TIMEOUT):
            await self._wire().aclose()


class Pool(PoolBase[Client]):
    """Reuses connections for high-volume sending: a bounded number of clients (max_size), an
    idle timeout after which an idle connection is closed, and a health check (NOOP) before
    reusing a connection that has been idle longer than `check_after` seconds; broken
    connections are discarded.

    For example, to send *messages*, ``(sender, recipients, content)`` tuples, on up to four
    connections at once::

        async def send_all(messages, host="mail.example.com", port=587, context=None):
            async with Pool(host, port, ssl_context=context, username="me", password="...") as pool:
                async with trio.open_nursery() as nursery:
                    for message in messages:
                        nursery.start_soon(pool.send_message, *message)

    :param max_size: the most connections open at once; more concurrent sends wait.
    :param idle_timeout: seconds after which an idle connection is closed (with QUIT). The
        pool runs no background task: expired connections are closed the next time the pool
        is used, and by ``aclose``.
    :param check_after: seconds of idleness after which a connection is checked with NOOP
        before it is reused.
    :param client_options: the keyword arguments of :class:`Client` (but ``stream``); they
        are checked at once. A ``mechanism`` is copied for each connection.

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
            semaphore=trio.Semaphore,
        )

    def _now(self) -> float:
        return trio.current_time()

    def _new_client(self, settings: Settings) -> Client:
        return Client._from_settings(settings)
