"""The asyncio transport against real servers on 127.0.0.1.

The well-behaved server is aiosmtpd, run in a thread on an ephemeral port, with STARTTLS,
implicit TLS and AUTH as each test asks, and certificates from a throwaway trustme authority.
The misbehaving ones (a server that injects bytes after its STARTTLS reply, one that never
answers, one that closes idle connections) are small scripts on the test's own event loop.

Each test is a plain function that runs its scenario with ``asyncio.run`` (or ``uvloop.run``);
every wait is bounded. The trio transport's tests (test_trio.py) run the same scenarios and
reuse the servers defined here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("aiosmtpd")
pytest.importorskip("trustme")

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from smtp_proto import (
    AuthenticationFailed,
    ConnectionLost,
    MessageOutcome,
    RemoteProtocolError,
    Timeouts,
    TlsPolicy,
    TlsUnavailable,
)

if TYPE_CHECKING:
    # mypy reads the repository, where the transports are the top-level `transports/` folder;
    # installed, they are smtp_proto.transports, through an import hook mypy cannot follow.
    from transports.asyncio import Client, Pool, _Protocol
else:
    from smtp_proto.transports.asyncio import Client, Pool, _Protocol

# -- certificates ----------------------------------------------------------------------------

#: The authority every test server's certificate comes from; clients trust it explicitly.
AUTHORITY = trustme.CA()
SERVER_CERTIFICATE = AUTHORITY.issue_cert("localhost", "127.0.0.1")

USERNAME = "alice"
PASSWORD = "correct horse battery staple"

#: Small timeouts for the servers that never answer: a reply is awaited 0.3 s.
SHORT_TIMEOUTS = Timeouts(
    greeting=0.3,
    mail=0.3,
    rcpt=0.3,
    data_initiation=0.3,
    data_block=0.3,
    data_termination=0.3,
    other=0.3,
)

#: How long any test waits for anything before giving up.
PATIENCE = 5.0


def server_tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    SERVER_CERTIFICATE.configure_cert(context)
    return context


def client_tls_context(*, trust: bool = True) -> ssl.SSLContext:
    """A client context that verifies certificates, trusting the test authority if asked."""
    context = ssl.create_default_context()
    if trust:
        AUTHORITY.configure_trust(context)
    return context


# -- the aiosmtpd server -----------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """A message the server accepted."""

    sender: str
    recipients: list[str]
    content: bytes
    #: The client's (address, port): one per connection.
    peer: object
    tls: bool


@dataclass
class Handler:
    """An aiosmtpd handler that records messages and refuses the recipients it is told to."""

    refuse: frozenset[str] = frozenset()
    delivered: list[Delivered] = field(default_factory=list)
    #: The clients whose idle connection the server has closed, by (address, port).
    dropped: list[object] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.delivered.append(
            Delivered(
                sender=envelope.mail_from or "",
                recipients=list(envelope.rcpt_tos),
                content=content,
                peer=session.peer,
                tls=server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 2.0.0 Queued"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data == (USERNAME.encode(), PASSWORD.encode())
    # handled=False: aiosmtpd sends the 535 itself.
    return AuthResult(success=ok, handled=False)


class TrackingSMTP(SMTP):
    """aiosmtpd's server, telling the handler when it closes an idle connection."""

    def _timeout_cb(self) -> None:
        if isinstance(self.event_handler, Handler) and self.session is not None:
            self.event_handler.dropped.append(self.session.peer)
        super()._timeout_cb()  # type: ignore[no-untyped-call]


class LocalController(Controller):
    """aiosmtpd's threaded controller, listening on an ephemeral port of 127.0.0.1."""

    def __init__(self, handler: Handler, **smtp_options: Any) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        port = self.listener.getsockname()[1]
        super().__init__(
            handler,
            hostname="127.0.0.1",
            port=port,
            server_hostname="localhost",
            ready_timeout=PATIENCE,
            **smtp_options,
        )

    def factory(self) -> SMTP:
        return TrackingSMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(
            self._factory_invoker, sock=self.listener, ssl=self.ssl_context
        )


@dataclass
class Server:
    port: int
    handler: Handler


@contextlib.contextmanager
def smtp_server(
    *,
    starttls: bool = True,
    implicit_tls: bool = False,
    auth: bool = False,
    refuse: frozenset[str] = frozenset(),
    idle_timeout: float | None = None,
) -> Iterator[Server]:
    """Run aiosmtpd on 127.0.0.1 for the duration of the block."""
    handler = Handler(refuse=refuse)
    options: dict[str, Any] = {}
    if starttls:
        options["tls_context"] = server_tls_context()
    if implicit_tls:
        options["ssl_context"] = server_tls_context()
    if auth:
        options["authenticator"] = authenticator
        options["auth_require_tls"] = True
    if idle_timeout is not None:
        # aiosmtpd closes a connection idle this long, with a 421.
        options["timeout"] = idle_timeout
    controller = LocalController(handler, **options)
    controller.start()
    try:
        yield Server(port=controller.port, handler=handler)
    finally:
        controller.stop()


async def until_dropped(
    server: Server, peer: object, sleep: Callable[[float], Awaitable[None]]
) -> None:
    """Wait (with the test's event loop's *sleep*) until the server has closed the idle
    connection of *peer*."""
    for _ in range(int(PATIENCE / 0.01)):
        if peer in server.handler.dropped:
            await sleep(0.05)  # for the closing to reach the client
            return
        await sleep(0.01)
    raise AssertionError("the server never closed the connection")


# -- scripted servers on the test's loop -----------------------------------------------------


@dataclass
class Script:
    """What a scripted server heard."""

    received: bytearray = field(default_factory=bytearray)
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def read_line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), PATIENCE)


async def drain_until_closed(reader: asyncio.StreamReader, script: Script) -> None:
    # Record everything the client still sends, until it closes (bounded in time and size).
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        for _ in range(100):
            data = await asyncio.wait_for(reader.read(65536), PATIENCE)
            if not data:
                break
            script.received += data


@contextlib.asynccontextmanager
async def scripted_server(
    talk: Callable[[asyncio.StreamReader, asyncio.StreamWriter, Script], Awaitable[None]],
) -> AsyncIterator[tuple[int, Script]]:
    """Serve one connection on 127.0.0.1 with *talk*; yield the port and what was heard."""
    script = Script()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await talk(reader, writer, script)
            await drain_until_closed(reader, script)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            script.done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], script
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(script.done.wait(), PATIENCE)


async def inject_after_starttls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
) -> None:
    """Offer STARTTLS and AUTH, then answer STARTTLS with a 220 followed, in the same write,
    by a forged EHLO reply: the attack of CVE-2011-0411."""
    writer.write(b"220 hostile.example ESMTP\r\n")
    script.received += await read_line(reader)  # EHLO
    writer.write(b"250-hostile.example\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")
    script.received += await read_line(reader)  # STARTTLS
    writer.write(b"220 2.0.0 Go ahead\r\n250-hostile.example\r\n250 AUTH PLAIN LOGIN\r\n")
    await writer.drain()


async def answer_only_hello(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
) -> None:
    """Greet and answer EHLO, then say nothing more."""
    writer.write(b"220 quiet.example ESMTP\r\n")
    script.received += await read_line(reader)  # EHLO
    writer.write(b"250 quiet.example\r\n")
    await writer.drain()


async def never_answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
) -> None:
    """Accept the connection and say nothing."""


# -- helpers ---------------------------------------------------------------------------------


def message(subject: str = "Hello") -> bytes:
    return f"From: a@example.org\r\nSubject: {subject}\r\n\r\nHi.\r\n".encode()


def starttls_client(port: int, **options: Any) -> Client:
    return Client("localhost", port, ssl_context=client_tls_context(), **options)


# -- sending ---------------------------------------------------------------------------------


def test_mixed_recipients_get_their_own_results() -> None:
    async def main(port: int) -> None:
        async with starttls_client(port) as client:
            # What the server said over TLS: no more STARTTLS, and AUTH, which aiosmtpd
            # offers only over TLS.
            assert not client.features.starttls
            assert "PLAIN" in client.features.auth_mechanisms
            result = await client.send_message(
                "a@example.org", ["b@example.org", "nobody@example.org", "c@example.org"], message()
            )
        assert result.outcome is MessageOutcome.ACCEPTED
        assert [r.accepted for r in result.recipients] == [True, False, True]
        refused = result.refused_recipients[0]
        assert refused.address == "nobody@example.org"
        assert refused.reply is not None
        assert refused.reply.code == 550
        assert not refused.transient
        assert [r.address for r in result.delivered_recipients] == [
            "b@example.org",
            "c@example.org",
        ]

    with smtp_server(refuse=frozenset({"nobody@example.org"})) as server:
        asyncio.run(main(server.port))
        [delivered] = server.handler.delivered
    assert delivered.recipients == ["b@example.org", "c@example.org"]
    assert delivered.tls
    assert delivered.content.endswith(b"Hi.\r\n")


def test_email_message_gives_envelope_and_content() -> None:
    email = EmailMessage()
    email["From"] = "sender@example.org"
    email["To"] = "to@example.org"
    email["Bcc"] = "hidden@example.org"
    email["Subject"] = "An EmailMessage"
    email.set_content("Body text.\n")

    async def main(port: int) -> None:
        async with starttls_client(port) as client:
            result = await client.send_message(None, None, email)
        assert result.outcome is MessageOutcome.ACCEPTED

    with smtp_server() as server:
        asyncio.run(main(server.port))
        [delivered] = server.handler.delivered
    assert delivered.sender == "sender@example.org"
    assert sorted(delivered.recipients) == ["hidden@example.org", "to@example.org"]
    assert b"Subject: An EmailMessage" in delivered.content
    assert b"hidden@example.org" not in delivered.content  # Bcc removed


def test_async_iterable_body_is_streamed() -> None:
    chunks = [b"Subject: streamed\r\n", b"\r\n", b".leading dot\r\n", b"last line"]

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await asyncio.sleep(0)
            yield chunk

    async def main(port: int) -> None:
        async with starttls_client(port) as client:
            result = await client.send_message("a@example.org", ["b@example.org"], body())
        assert result.outcome is MessageOutcome.ACCEPTED

    with smtp_server() as server:
        asyncio.run(main(server.port))
        [delivered] = server.handler.delivered
    # The server undoes the dot-stuffing; the missing final line end was added.
    assert delivered.content == b"Subject: streamed\r\n\r\n.leading dot\r\nlast line\r\n"


def test_many_messages_on_one_connection() -> None:
    async def main(port: int) -> None:
        async with starttls_client(port) as client:
            for number in range(5):
                result = await client.send_message(
                    "a@example.org", ["b@example.org"], message(f"number {number}")
                )
                assert result.outcome is MessageOutcome.ACCEPTED
            assert (await client.noop()).code == 250
            assert (await client.rset()).code == 250
            assert (await client.help()).is_positive
            await client.quit()  # and leaving the block after it is fine

    with smtp_server() as server:
        asyncio.run(main(server.port))
        delivered = server.handler.delivered
    assert len(delivered) == 5
    assert len({d.peer for d in delivered}) == 1


def test_options_are_checked_before_connecting() -> None:
    with pytest.raises(ValueError, match="username and password"):
        Client("localhost", username=USERNAME)
    with pytest.raises(ValueError, match="port"):
        Client("localhost", 0)
    with pytest.raises(ValueError, match="ssl_context was given"):
        Client("localhost", tls=TlsPolicy.NONE, ssl_context=client_tls_context())
    with pytest.raises(ValueError, match="max_size"):
        Pool("localhost", max_size=0)

    async def main() -> None:
        client = Client("localhost", tls=TlsPolicy.NONE)
        with pytest.raises(RuntimeError, match="not open"):
            await client.noop()
        with pytest.raises(RuntimeError, match="not open"):
            _ = client.features

    asyncio.run(main())


# -- TLS -------------------------------------------------------------------------------------


def test_starttls_required_but_not_offered() -> None:
    lines: list[str] = []

    async def main(port: int) -> None:
        client = Client("localhost", port, ssl_context=client_tls_context(), debug=lines.append)
        with pytest.raises(TlsUnavailable):
            async with client:
                pytest.fail("the session must not open without TLS")

    with smtp_server(starttls=False) as server:
        asyncio.run(main(server.port))
        assert server.handler.delivered == []
    sent = [line for line in lines if line.startswith("C: ")]
    # Only the greeting exchange went out in plain text, then QUIT.
    assert [line.split()[1] for line in sent] == ["EHLO", "QUIT"]


def test_implicit_tls() -> None:
    async def main(port: int) -> None:
        client = Client("localhost", port, tls=TlsPolicy.IMPLICIT, ssl_context=client_tls_context())
        async with client:
            assert not client.features.starttls
            result = await client.send_message("a@example.org", ["b@example.org"], message())
        assert result.outcome is MessageOutcome.ACCEPTED

    with smtp_server(starttls=False, implicit_tls=True) as server:
        asyncio.run(main(server.port))
        [delivered] = server.handler.delivered
    assert delivered.tls


def test_untrusted_certificate_is_refused() -> None:
    async def main(port: int) -> None:
        client = Client("localhost", port, ssl_context=client_tls_context(trust=False))
        with pytest.raises(ssl.SSLCertVerificationError):
            async with client:
                pytest.fail("the session must not open with an untrusted certificate")

    with smtp_server() as server:
        asyncio.run(main(server.port))
        assert server.handler.delivered == []


def test_login_over_tls_and_debug_log_hides_the_password() -> None:
    lines: list[str] = []

    async def main(port: int) -> None:
        client = starttls_client(port, username=USERNAME, password=PASSWORD, debug=lines.append)
        async with client:
            assert client.features.auth_mechanisms >= {"PLAIN", "LOGIN"}
            result = await client.send_message("a@example.org", ["b@example.org"], message())
        assert result.outcome is MessageOutcome.ACCEPTED

    with smtp_server(auth=True) as server:
        asyncio.run(main(server.port))
        assert len(server.handler.delivered) == 1
    log = "\n".join(lines)
    assert "C: AUTH PLAIN [redacted]" in log
    assert "S: 235" in log
    assert "S: 220" in log
    secret = base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()
    assert PASSWORD not in log
    assert secret not in log
    assert "octets of message content]" in log


def test_wrong_password_fails_and_closes() -> None:
    async def main(port: int) -> None:
        client = starttls_client(port, username=USERNAME, password="wrong")
        with pytest.raises(AuthenticationFailed):
            async with client:
                pytest.fail("the session must not open")

    with smtp_server(auth=True) as server:
        asyncio.run(main(server.port))


# -- hostile and silent servers ---------------------------------------------------------------


def test_bytes_injected_after_starttls_are_refused() -> None:
    async def main() -> None:
        async with scripted_server(inject_after_starttls) as (port, script):
            client = starttls_client(port, username=USERNAME, password=PASSWORD)
            with pytest.raises(RemoteProtocolError, match="injection"):
                async with client:
                    pytest.fail("the session must not open")
        assert b"STARTTLS" in script.received
        assert b"AUTH" not in script.received

    asyncio.run(main())


def test_server_that_never_answers_times_out() -> None:
    async def main() -> None:
        async with scripted_server(never_answer) as (port, _):
            client = Client("127.0.0.1", port, tls=TlsPolicy.NONE, timeouts=SHORT_TIMEOUTS)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with client:
                    pytest.fail("the session must not open")
            assert time.monotonic() - started < 1.0
            # The connection is poisoned: closed, and every later operation refuses.
            with pytest.raises(ConnectionLost):
                await client.noop()

    asyncio.run(main())


def test_cancelled_operation_closes_the_connection() -> None:
    async def main() -> None:
        async with scripted_server(answer_only_hello) as (port, script):
            client = Client("127.0.0.1", port, tls=TlsPolicy.NONE)
            async with client:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(client.noop(), 0.2)
                # Nobody knows where the session stands: it is over.
                with pytest.raises(ConnectionLost):
                    await client.noop()
        assert b"NOOP" in script.received
        assert b"QUIT" not in script.received

    asyncio.run(main())


def test_failing_body_aborts_the_message() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"Subject: half a message\r\n\r\n"
        raise RuntimeError("the source of the message failed")

    async def main(port: int) -> None:
        async with starttls_client(port) as client:
            with pytest.raises(RuntimeError, match="source of the message"):
                await client.send_message("a@example.org", ["b@example.org"], body())
            # The end of the data was never sent: the connection was closed instead.
            with pytest.raises(ConnectionLost):
                await client.noop()

    with smtp_server() as server:
        asyncio.run(main(server.port))
        assert server.handler.delivered == []


# -- connections given and pooled ----------------------------------------------------------


def test_already_connected_socket() -> None:
    async def main(sock: socket.socket) -> None:
        async with Client("localhost", sock=sock, ssl_context=client_tls_context()) as client:
            result = await client.send_message("a@example.org", ["b@example.org"], message())
        assert result.outcome is MessageOutcome.ACCEPTED

    with smtp_server() as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
        asyncio.run(main(sock))
        assert sock.fileno() == -1  # the client closed it
        assert len(server.handler.delivered) == 1


def test_pool_reuses_one_connection() -> None:
    async def main(port: int) -> None:
        async with Pool("localhost", port, max_size=2, ssl_context=client_tls_context()) as pool:
            for number in range(4):
                result = await pool.send_message(
                    "a@example.org", ["b@example.org"], message(f"pooled {number}")
                )
                assert result.outcome is MessageOutcome.ACCEPTED

    with smtp_server() as server:
        asyncio.run(main(server.port))
        delivered = server.handler.delivered
    assert len(delivered) == 4
    assert len({d.peer for d in delivered}) == 1


def test_pool_sends_concurrently_within_its_size() -> None:
    async def main(port: int) -> None:
        async with Pool("localhost", port, max_size=2, ssl_context=client_tls_context()) as pool:
            results = await asyncio.gather(
                *(
                    pool.send_message("a@example.org", ["b@example.org"], message(str(n)))
                    for n in range(6)
                )
            )
        assert all(r.outcome is MessageOutcome.ACCEPTED for r in results)

    with smtp_server() as server:
        asyncio.run(main(server.port))
        delivered = server.handler.delivered
    assert len(delivered) == 6
    assert 1 <= len({d.peer for d in delivered}) <= 2


@pytest.mark.parametrize("check_after", [0.0, 60.0], ids=["health-check", "resend"])
def test_pool_replaces_a_connection_the_server_closed(check_after: float) -> None:
    # The server closes connections idle for 0.1 s. With a health check the pool finds the
    # closed connection before using it; without, the message finds it, gets no reply to
    # MAIL, and is sent again on a new connection.
    lines: list[str] = []

    async def main(server: Server) -> None:
        async with Pool(
            "localhost",
            server.port,
            check_after=check_after,
            ssl_context=client_tls_context(),
            debug=lines.append,
        ) as pool:
            first = await pool.send_message("a@example.org", ["b@example.org"], message("1"))
            await until_dropped(server, server.handler.delivered[0].peer, asyncio.sleep)
            second = await pool.send_message("a@example.org", ["b@example.org"], message("2"))
        assert first.outcome is MessageOutcome.ACCEPTED
        assert second.outcome is MessageOutcome.ACCEPTED

    with smtp_server(idle_timeout=0.1) as server:
        asyncio.run(main(server))
        delivered = server.handler.delivered
    assert len(delivered) == 2
    assert len({d.peer for d in delivered}) == 2
    assert ("C: NOOP" in lines) is (check_after == 0.0)
    mail_commands = [line for line in lines if line.startswith("C: MAIL FROM:")]
    assert len(mail_commands) == (2 if check_after == 0.0 else 3)


def test_pool_closes_connections_idle_too_long() -> None:
    lines: list[str] = []

    async def main(port: int) -> None:
        async with Pool(
            "localhost",
            port,
            idle_timeout=0.1,
            ssl_context=client_tls_context(),
            debug=lines.append,
        ) as pool:
            await pool.send_message("a@example.org", ["b@example.org"], message("1"))
            await asyncio.sleep(0.3)
            await pool.send_message("a@example.org", ["b@example.org"], message("2"))

    with smtp_server() as server:
        asyncio.run(main(server.port))
        delivered = server.handler.delivered
    assert len({d.peer for d in delivered}) == 2
    # The expired connection was ended politely, and so was the second one, by aclose.
    assert lines.count("C: QUIT") == 2
    assert lines.count("S: 221 Bye") == 2


# -- uvloop --------------------------------------------------------------------------------


def test_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main(port: int) -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with starttls_client(port, username=USERNAME, password=PASSWORD) as client:
            result = await client.send_message("a@example.org", ["b@example.org"], message())
        assert result.outcome is MessageOutcome.ACCEPTED

    with smtp_server(auth=True) as server:
        uvloop.run(main(server.port))
        [delivered] = server.handler.delivered
    assert delivered.tls


def test_a_reply_that_comes_as_its_deadline_passes_is_taken() -> None:
    # The deadline's timer and the reply are due at the same turn of the loop: whichever
    # runs first, the bytes that came are returned, not a timeout.
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop, 1024)
        reading = asyncio.ensure_future(protocol.receive(loop.time()))
        await asyncio.sleep(0)  # the read is now waiting, its deadline already due
        assert not reading.done()
        protocol.data_received(b"250 ok\r\n")
        return await reading

    assert asyncio.run(main()) == b"250 ok\r\n"


def test_a_read_past_its_deadline_raises_the_builtin_timeout() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop, 1024)
        started = loop.time()
        with pytest.raises(TimeoutError):
            await protocol.receive(started + 0.05)
        assert 0.05 <= loop.time() - started < PATIENCE
        # Nothing is left waiting: a later reply is simply kept for the next read.
        protocol.data_received(b"250 late\r\n")
        assert await protocol.receive(loop.time()) == b"250 late\r\n"

    asyncio.run(main())


@pytest.mark.parametrize("second_timeout", [0.05, 0.3])
def test_each_read_keeps_its_own_deadline_whatever_came_before(second_timeout: float) -> None:
    # One timer serves the reads' deadlines: a read that ends in time leaves it armed for
    # its deadline, and the next read still times out at its own, earlier or later.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop, 1024)
        first = asyncio.ensure_future(protocol.receive(loop.time() + 0.15))
        await asyncio.sleep(0)
        protocol.data_received(b"250 ok\r\n")
        assert await first == b"250 ok\r\n"
        started = loop.time()
        with pytest.raises(TimeoutError):
            await protocol.receive(started + second_timeout)
        assert second_timeout <= loop.time() - started < second_timeout + 1.0
        # The connection's end stops the timer a read left armed.
        third = asyncio.ensure_future(protocol.receive(loop.time() + PATIENCE))
        await asyncio.sleep(0)
        protocol.data_received(b"250 ok\r\n")
        assert await third == b"250 ok\r\n"
        armed = protocol._watchdog is not None
        protocol.connection_lost(None)
        assert armed
        assert protocol._watchdog is None
        assert await protocol.receive(None) == b""

    asyncio.run(main())
