"""Running a :class:`FakeServer` on a loopback socket, for tests of whole transports.

This is the only part of :mod:`smtp_proto.testing` that does I/O. One background thread runs
a ``selectors`` loop: it accepts a connection on 127.0.0.1, sends the fake's greeting, and
then passes whatever the client writes to :meth:`FakeServer.receive` and writes back the
replies. Connections are served one at a time, in the order they arrive; the next waits in
the listening socket's backlog until the current one ends.

Everything is bounded: every socket operation has a timeout, the loop wakes up at least
every :data:`_POLL_INTERVAL` seconds to see whether it should stop, and it stops when the
context manager exits or after *lifetime* seconds, whichever comes first.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterator

from ._server import FakeServer

__all__ = ["serve_loopback"]

# How often the loop checks whether it was told to stop, in seconds.
_POLL_INTERVAL = 0.05

# What one read may return; larger than a TLS record (16 KiB), so that one read of a TLS
# socket takes a whole record and nothing decrypted stays behind where the selector cannot
# see it.
_READ_SIZE = 65536


class _Loop:
    # The thread's state: the listening socket and the one connection being served. The
    # selector's data is None for the listener and the socket itself for a connection.

    def __init__(
        self,
        *,
        fake: FakeServer,
        listener: socket.socket,
        ssl_context: ssl.SSLContext | None,
        implicit_tls: bool,
        timeout: float,
        lifetime: float,
    ) -> None:
        self.fake = fake
        self.listener = listener
        self.ssl_context = ssl_context
        self.implicit_context = ssl_context if implicit_tls else None
        self.timeout = timeout
        self.deadline = time.monotonic() + lifetime
        self.stop = threading.Event()
        self.selector = selectors.DefaultSelector()
        self.connection: socket.socket | None = None

    def run(self) -> None:
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                for key, _ in self.selector.select(_POLL_INTERVAL):
                    if key.data is None:
                        self._accept()
                    elif not self._serve(key.data):
                        self._hang_up(key.data)
        finally:
            if self.connection is not None:
                self.connection.close()
            self.selector.close()
            self.listener.close()

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        sock.settimeout(self.timeout)
        try:
            if self.implicit_context is not None:
                sock = self.implicit_context.wrap_socket(sock, server_side=True)
            sock.sendall(self.fake.connect())
        except OSError:
            # A failed handshake (the client did not trust the certificate, say) or a
            # client already gone: the test sees that on its side; keep listening.
            sock.close()
            return
        self.selector.unregister(self.listener)
        self.connection = sock
        self.selector.register(sock, selectors.EVENT_READ, sock)

    def _serve(self, sock: socket.socket) -> bool:
        # One read and its replies; False when the connection is over.
        try:
            data = sock.recv(_READ_SIZE)
            if not data:
                return False
            sock.sendall(self.fake.receive(data))
            if self.fake.tls_pending:
                # RFC 3207: the 220 went out in plain text; the handshake comes next.
                context = self.ssl_context
                if context is None:
                    return False
                self.selector.unregister(sock)
                self.connection = sock = context.wrap_socket(sock, server_side=True)
                self.selector.register(sock, selectors.EVENT_READ, sock)
        except OSError:
            return False
        return not self.fake.closed

    def _hang_up(self, sock: socket.socket) -> None:
        # A failed STARTTLS handshake has already taken the socket out of the selector, and
        # closed it.
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()
        self.connection = None
        self.selector.register(self.listener, selectors.EVENT_READ, None)


@contextlib.contextmanager
def serve_loopback(
    fake: FakeServer,
    *,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    timeout: float = 5.0,
    lifetime: float = 120.0,
) -> Iterator[tuple[str, int]]:
    """Serve *fake* on 127.0.0.1 from a background thread; yields ``(host, port)``.

    :param ssl_context: a server-side context (certificate loaded). With it, STARTTLS
        (when *fake* announces it) wraps the connection after the ``220``; without it, a
        STARTTLS the fake accepts is followed by a close, like a server whose TLS setup is
        broken.
    :param implicit_tls: start TLS at once, before the greeting (RFC 8314); needs
        *ssl_context*.
    :param timeout: bounds every read, write and TLS handshake, in seconds.
    :param lifetime: the server stops after this many seconds even if the ``with`` block
        has not ended.

    The thread stops, and every socket is closed, when the ``with`` block exits:

    >>> from smtp_proto import TlsPolicy
    >>> from smtp_proto.testing import FakeServer, serve_loopback
    >>> from smtp_proto.transports.sync import Client
    >>> fake = FakeServer()
    >>> fake.refuse_recipient("nobody@example.com")
    >>> with serve_loopback(fake) as (host, port):
    ...     with Client(host, port, tls=TlsPolicy.NONE) as client:
    ...         result = client.send_message("me@example.com", ["nobody@example.com"], b"Hi")
    >>> result.outcome, result.recipients[0].accepted
    (<MessageOutcome.REJECTED: 'rejected'>, False)
    """
    if implicit_tls and ssl_context is None:
        raise ValueError("implicit_tls needs an ssl_context")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(timeout)
    loop = _Loop(
        fake=fake,
        listener=listener,
        ssl_context=ssl_context,
        implicit_tls=implicit_tls,
        timeout=timeout,
        lifetime=lifetime,
    )
    thread = threading.Thread(target=loop.run, name="smtp_proto.testing loopback", daemon=True)
    thread.start()
    try:
        host, port = listener.getsockname()[:2]
        yield host, port
    finally:
        loop.stop.set()
        thread.join(timeout + 1.0)
