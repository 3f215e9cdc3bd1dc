"""A complete smtp-proto transport on :mod:`selectors`: non-blocking sockets, one thread.

smtp-proto ships transports for blocking sockets, asyncio and trio. This one is for a
backend it does not ship, to show what any other one takes: the course of the session
(greeting, EHLO, STARTTLS, AUTH, the mail transaction, QUIT) comes from the engine's
generators, :func:`smtp_proto.open_session`, :func:`smtp_proto.authenticate`,
:func:`smtp_proto.send_transaction` and :func:`smtp_proto.execute`. They *ask* for I/O;
:meth:`SelectorsTransport.run` does what they ask with a non-blocking socket and a
selector, and enforces the deadlines the engine publishes.

As a script it sends one message read from standard input::

    python selectors_transport.py --tls required HOST PORT SENDER RECIPIENT... < message.eml

with the password, if any, in the ``SMTP_PASSWORD`` environment variable.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import selectors
import socket
import ssl
import sys
import time
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import TypeVar

import smtp_proto

Result = TypeVar("Result")

#: How long one write of the outbox may take, and the TLS handshake. RFC 5321 section
#: 4.5.3.2.5 gives three minutes for each block of message content.
WRITE_TIMEOUT = 180.0


class SelectorsTransport:
    """A connected non-blocking socket, and the runner for the engine's generators."""

    def __init__(self, sock: socket.socket, host: str, ssl_context: ssl.SSLContext | None):
        sock.setblocking(False)
        self._sock = sock
        self._host = host
        self._ssl_context = ssl_context
        # One selector for the whole connection, watching the socket's descriptor; the
        # descriptor stays the same when the socket is wrapped in TLS.
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock.fileno(), selectors.EVENT_READ)
        self._watching = selectors.EVENT_READ

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> SelectorsTransport:
        """Connect to *host* without blocking (name resolution excepted), within *timeout*."""
        deadline = time.monotonic() + timeout
        error: OSError = OSError(f"{host!r} has no address")
        for family, kind, protocol, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        ):
            sock = socket.socket(family, kind, protocol)
            sock.setblocking(False)
            try:
                status = sock.connect_ex(address)
                if status in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                    with selectors.DefaultSelector() as selector:
                        selector.register(sock, selectors.EVENT_WRITE)
                        if not selector.select(max(deadline - time.monotonic(), 0)):
                            raise TimeoutError(f"connecting to {host!r} timed out")
                    status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if status:
                    raise OSError(status, os.strerror(status))
            except OSError as failure:
                sock.close()
                error = failure
                continue
            return cls(sock, host, ssl_context)
        raise error

    @property
    def peer_is_loopback(self) -> bool:
        """Whether the server is on this machine, which the engine uses to allow AUTH
        without TLS (no secret crosses a network)."""
        address = self._sock.getpeername()[0]
        return ipaddress.ip_address(address.split("%")[0]).is_loopback

    # -- the runner --------------------------------------------------------------------------

    def run(self, operation: Generator[smtp_proto.IORequest, bytes | None, Result]) -> Result:
        """Do the I/O *operation* asks for until it returns, and return what it returns.

        A timeout raises :class:`TimeoutError` and abandons the operation; the connection is
        then unusable, as the engine's state no longer matches the server's.
        """
        answer: bytes | None = None
        deadline: float | None = None
        while True:
            try:
                request = operation.send(answer)
            except StopIteration as finished:
                result: Result = finished.value
                return result
            answer = None
            if isinstance(request, smtp_proto.Write):
                self._send_all(request.data)
            elif isinstance(request, smtp_proto.Read):
                # The timeout covers the whole reply, not each read: the deadline is set
                # when a new wait starts and kept while the reply trickles in.
                if request.fresh or deadline is None:
                    timeout = request.timeout
                    deadline = None if timeout is None else time.monotonic() + timeout
                answer = self._receive(deadline)
            elif isinstance(request, smtp_proto.StartTls):
                self.start_tls()
            else:
                # NeedBody is only asked for with send_transaction(external_body=True).
                raise TypeError(f"this runner does not stream content: {request!r}")

    # -- the I/O itself ----------------------------------------------------------------------

    def start_tls(self) -> None:
        """The TLS handshake, checking the certificate against the host connected to."""
        context = self._ssl_context or ssl.create_default_context()
        tls = context.wrap_socket(
            self._sock, server_hostname=self._host, do_handshake_on_connect=False
        )
        self._sock = tls
        deadline = time.monotonic() + WRITE_TIMEOUT
        while True:
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self._wait(selectors.EVENT_READ, deadline)
            except ssl.SSLWantWriteError:
                self._wait(selectors.EVENT_WRITE, deadline)

    def _send_all(self, data: bytes) -> None:
        deadline = time.monotonic() + WRITE_TIMEOUT
        view = memoryview(data)
        while view:
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._wait(selectors.EVENT_WRITE, deadline)
                continue
            except ssl.SSLWantReadError:  # TLS may need to read before it can write
                self._wait(selectors.EVENT_READ, deadline)
                continue
            view = view[sent:]

    def _receive(self, deadline: float | None) -> bytes:
        # Try first, wait after: a TLS socket may hold decrypted bytes already, which no
        # selector can see.
        while True:
            try:
                return self._sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._wait(selectors.EVENT_READ, deadline)
            except ssl.SSLWantWriteError:
                self._wait(selectors.EVENT_WRITE, deadline)

    def _wait(self, events: int, deadline: float | None) -> None:
        if events != self._watching:
            self._selector.modify(self._sock.fileno(), events)
            self._watching = events
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("the server did not answer in time")
        if not self._selector.select(remaining):
            raise TimeoutError("the server did not answer in time")

    def close(self) -> None:
        self._selector.close()
        self._sock.close()

    def __enter__(self) -> SelectorsTransport:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def send_message(
    host: str,
    port: int,
    sender: str,
    recipients: Sequence[str],
    body: bytes,
    *,
    tls: smtp_proto.TlsPolicy = smtp_proto.TlsPolicy.REQUIRED,
    ssl_context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    local_hostname: str = "localhost",
) -> smtp_proto.TransactionResult:
    """Connect, send one message and quit; return what became of it for each recipient.

    Raises :class:`smtp_proto.SMTPClientError` subclasses for a failed step of the session
    (refused greeting or EHLO, TLS unavailable, failed AUTH, lost connection),
    :class:`smtp_proto.ProtocolError` subclasses for a broken protocol, :class:`OSError`
    (:class:`TimeoutError` included) for the network. A message the server refused is not
    an exception: it is in the result.
    """
    implicit = tls is smtp_proto.TlsPolicy.IMPLICIT
    with SelectorsTransport.connect(host, port, ssl_context=ssl_context) as transport:
        if implicit:
            transport.start_tls()
        conn = smtp_proto.ClientConnection(
            tls_active=implicit,
            require_tls=tls in (smtp_proto.TlsPolicy.IMPLICIT, smtp_proto.TlsPolicy.REQUIRED),
            peer_is_loopback=transport.peer_is_loopback,
        )
        features = transport.run(smtp_proto.open_session(conn, local_hostname, tls))
        if username is not None and password is not None:
            mechanism = smtp_proto.choose_mechanism(
                features.auth_mechanisms, smtp_proto.password_mechanisms(username, password)
            )
            if mechanism is None:
                raise smtp_proto.AuthenticationFailed("no password mechanism in common")
            transport.run(smtp_proto.authenticate(conn, mechanism))
        transaction = conn.send_message(sender, recipients, body)
        result = transport.run(smtp_proto.send_transaction(conn, transaction))
        # The outcome is known already: a server that hangs up before answering QUIT
        # changes nothing.
        with contextlib.suppress(smtp_proto.ConnectionLost):
            transport.run(smtp_proto.execute(conn, conn.quit))
        return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send one message read from standard input.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("sender")
    parser.add_argument("recipients", nargs="+")
    parser.add_argument(
        "--tls", choices=[policy.value for policy in smtp_proto.TlsPolicy], default="required"
    )
    parser.add_argument("--user", help="log in as this user, with $SMTP_PASSWORD")
    arguments = parser.parse_args(argv)
    result = send_message(
        arguments.host,
        arguments.port,
        arguments.sender,
        arguments.recipients,
        sys.stdin.buffer.read(),
        tls=smtp_proto.TlsPolicy(arguments.tls),
        username=arguments.user,
        password=os.environ.get("SMTP_PASSWORD"),
    )
    print(result.outcome.value)
    for recipient in result.recipients:
        reply = recipient.message_reply if recipient.accepted else recipient.reply
        said = f"{reply.code} {reply.text}" if reply is not None else "no reply"
        print(f"  {recipient.address}: {'delivered' if recipient.delivered else said}")
    return 0 if result.outcome is smtp_proto.MessageOutcome.ACCEPTED else 1


if __name__ == "__main__":
    sys.exit(main())
