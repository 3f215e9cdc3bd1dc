"""The trio transport against real servers on 127.0.0.1: the scenarios of test_asyncio.py.

The well-behaved server is the same aiosmtpd, in a thread, as in test_asyncio.py, whose
helpers are imported from there. The misbehaving ones are small scripts served with
``trio.serve_tcp`` inside the test's own nursery, cancelled when the test is done.

Each test is a plain function that runs its scenario with ``trio.run``; every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("trio")

import trio
from test_asyncio import (
    PASSWORD,
    PATIENCE,
    SHORT_TIMEOUTS,
    USERNAME,
    Server,
    client_tls_context,
    message,
    smtp_server,
    until_dropped,
)

from smtp_proto import (
    AuthenticationFailed,
    ConnectionLost,
    MessageOutcome,
    RemoteProtocolError,
    TlsPolicy,
    TlsUnavailable,
    TransactionResult,
)

if TYPE_CHECKING:
    # mypy reads the repository, where the transports are the top-level `transports/` folder;
    # installed, they are smtp_proto.transports, through an import hook mypy cannot follow.
    from transports.trio import Client, Pool
else:
    from smtp_proto.transports.trio import Client, Pool


def starttls_client(port: int, **options: Any) -> Client:
    return Client("localhost", port, ssl_context=client_tls_context(), **options)


# -- scripted servers in the test's nursery ----------------------------------------------------


@dataclass
class Script:
    """What a scripted server heard."""

    received: bytearray = field(default_factory=bytearray)
    done: trio.Event = field(default_factory=trio.Event)


async def read_line(stream: trio.abc.Stream, script: Script) -> None:
    # The client sends one command at a time to a server without PIPELINING.
    start = len(script.received)
    for _ in range(100):
        if b"\n" in script.received[start:]:
            return
        data = await stream.receive_some(65536)
        if not data:
            return
        script.received += data


async def drain_until_closed(stream: trio.abc.Stream, script: Script) -> None:
    # Record everything the client still sends, until it closes (bounded in size), or the
    # server's talk closed the connection itself.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        for _ in range(100):
            data = await stream.receive_some(65536)
            if not data:
                return
            script.received += data


Talk = Callable[[trio.abc.Stream, Script], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_server(talk: Talk) -> AsyncIterator[tuple[int, Script]]:
    """Serve one connection on 127.0.0.1 with *talk*; yield the port and what was heard."""
    script = Script()

    async def serve(stream: trio.SocketStream) -> None:
        try:
            async with stream:
                with trio.move_on_after(PATIENCE):
                    await talk(stream, script)
                    await drain_until_closed(stream, script)
        finally:
            script.done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1")
        )
        try:
            yield listeners[0].socket.getsockname()[1], script
            with trio.move_on_after(PATIENCE):
                await script.done.wait()
        finally:
            nursery.cancel_scope.cancel()


async def inject_after_starttls(stream: trio.abc.Stream, script: Script) -> None:
    """Offer STARTTLS and AUTH, then answer STARTTLS with a 220 followed, in the same write,
    by a forged EHLO reply: the attack of CVE-2011-0411."""
    await stream.send_all(b"220 hostile.example ESMTP\r\n")
    await read_line(stream, script)  # EHLO
    await stream.send_all(b"250-hostile.example\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")
    await read_line(stream, script)  # STARTTLS
    await stream.send_all(b"220 2.0.0 Go ahead\r\n250-hostile.example\r\n250 AUTH PLAIN LOGIN\r\n")


async def answer_only_hello(stream: trio.abc.Stream, script: Script) -> None:
    """Greet and answer EHLO, then say nothing more."""
    await stream.send_all(b"220 quiet.example ESMTP\r\n")
    await read_line(stream, script)  # EHLO
    await stream.send_all(b"250 quiet.example\r\n")


async def never_answer(stream: trio.abc.Stream, script: Script) -> None:
    """Accept the connection and say nothing."""


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
        trio.run(main, server.port)
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
        trio.run(main, server.port)
        [delivered] = server.handler.delivered
    assert delivered.sender == "sender@example.org"
    assert sorted(delivered.recipients) == ["hidden@example.org", "to@example.org"]
    assert b"Subject: An EmailMessage" in delivered.content
    assert b"hidden@example.org" not in delivered.content  # Bcc removed


def test_async_iterable_body_is_streamed() -> None:
    chunks = [b"Subject: streamed\r\n", b"\r\n", b".leading dot\r\n", b"last line"]

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await trio.sleep(0)
            yield chunk

    async def main(port: int) -> None:
        async with starttls_client(port) as client:
            result = await client.send_message("a@example.org", ["b@example.org"], body())
        assert result.outcome is MessageOutcome.ACCEPTED

    with smtp_server() as server:
        trio.run(main, server.port)
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
        trio.run(main, server.port)
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

    trio.run(main)


# -- TLS -------------------------------------------------------------------------------------


def test_starttls_required_but_not_offered() -> None:
    lines: list[str] = []

    async def main(port: int) -> None:
        client = Client("localhost", port, ssl_context=client_tls_context(), debug=lines.append)
        with pytest.raises(TlsUnavailable):
            async with client:
                pytest.fail("the session must not open without TLS")

    with smtp_server(starttls=False) as server:
        trio.run(main, server.port)
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
        trio.run(main, server.port)
        [delivered] = server.handler.delivered
    assert delivered.tls


def test_untrusted_certificate_is_refused() -> None:
    async def main(port: int) -> None:
        client = Client("localhost", port, ssl_context=client_tls_context(trust=False))
        with pytest.raises(ssl.SSLCertVerificationError):
            async with client:
                pytest.fail("the session must not open with an untrusted certificate")

    with smtp_server() as server:
        trio.run(main, server.port)
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
        trio.run(main, server.port)
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
        trio.run(main, server.port)


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

    trio.run(main)


async def up_to_the_content(stream: trio.abc.Stream, script: Script) -> None:
    """Greet, offer PIPELINING, and answer one pipelined envelope up to DATA's 354."""
    await stream.send_all(b"220 scripted.example ESMTP\r\n")
    await read_line(stream, script)  # EHLO
    await stream.send_all(b"250-scripted.example\r\n250 PIPELINING\r\n")
    for _ in range(3):  # MAIL, RCPT, DATA: pipelined, perhaps in one read
        if script.received.count(b"\r\n") >= 4:
            break
        await read_line(stream, script)
    await stream.send_all(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")


def test_server_that_stops_reading_makes_a_write_time_out() -> None:
    # The server takes the envelope and says 354, then reads nothing more: once the socket
    # buffers are full the content's write waits, and its own deadline ends it.
    stop = trio.Event()

    async def stop_reading(stream: trio.abc.Stream, script: Script) -> None:
        await up_to_the_content(stream, script)
        await stop.wait()

    async def main() -> None:
        content = (b"x" * 78 + b"\r\n") * (400 * 1024)  # 32 MiB, more than buffers hold
        async with scripted_server(stop_reading) as (port, _):
            client = Client("127.0.0.1", port, tls=TlsPolicy.NONE, timeouts=SHORT_TIMEOUTS)
            async with client:
                started = trio.current_time()
                with pytest.raises(
                    TimeoutError, match=r"^the server took no data for 0.3 seconds$"
                ) as raised:
                    await client.send_message("a@example.org", ["b@example.org"], content)
                assert trio.current_time() - started < PATIENCE
                assert isinstance(raised.value.__cause__, trio.TooSlowError)
                stop.set()
                with pytest.raises(ConnectionLost):
                    await client.noop()

    trio.run(main)


@pytest.mark.parametrize("direct", [True, False])
def test_plain_writes_with_and_without_direct_writes(
    monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    # A plain socket's writes go to the kernel at once where a socket is a file descriptor
    # (POSIX), and through the stream elsewhere: the messages arrive the same either way.
    monkeypatch.setattr(sys.modules[Client.__module__], "_DIRECT_WRITES", direct)
    contents = [b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(3)]

    async def main(port: int) -> None:
        async with Client("127.0.0.1", port, tls=TlsPolicy.NONE) as client:
            results = await client.send_messages(
                [("a@example.org", ["b@example.org"], content) for content in contents]
            )
        assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 3

    with smtp_server(starttls=False) as server:
        trio.run(main, server.port)
        assert [d.content for d in server.handler.delivered] == contents


def test_a_connection_reset_while_writing_ends_the_session() -> None:
    # The server takes the first octets of the content and closes with the rest unread,
    # which resets the connection: the writes that follow fail, and the session ends.
    async def reset(stream: trio.abc.Stream, script: Script) -> None:
        await up_to_the_content(stream, script)
        await stream.receive_some(1)
        await stream.aclose()

    async def main() -> None:
        content = (b"x" * 78 + b"\r\n") * (400 * 1024)  # 32 MiB, more than buffers hold
        async with scripted_server(reset) as (port, _):
            client = Client("127.0.0.1", port, tls=TlsPolicy.NONE)
            async with client:
                result = await client.send_message("a@example.org", ["b@example.org"], content)
            # The connection ended with the content sent as far as the client knows, and no
            # reply to it: whether the message was taken cannot be known, and is not claimed.
            assert result.outcome is MessageOutcome.DELIVERY_UNKNOWN
            assert result.message_reply is None

    trio.run(main)


def test_server_that_never_answers_times_out() -> None:
    async def main() -> None:
        async with scripted_server(never_answer) as (port, _):
            client = Client("127.0.0.1", port, tls=TlsPolicy.NONE, timeouts=SHORT_TIMEOUTS)
            started = trio.current_time()
            with pytest.raises(TimeoutError) as raised:
                async with client:
                    pytest.fail("the session must not open")
            assert trio.current_time() - started < 1.0
            assert isinstance(raised.value.__cause__, trio.TooSlowError)
            # The connection is poisoned: closed, and every later operation refuses.
            with pytest.raises(ConnectionLost):
                await client.noop()

    trio.run(main)


def test_cancelled_operation_closes_the_connection() -> None:
    async def main() -> None:
        async with scripted_server(answer_only_hello) as (port, script):
            client = Client("127.0.0.1", port, tls=TlsPolicy.NONE)
            async with client:
                with trio.move_on_after(0.2) as scope:
                    await client.noop()
                assert scope.cancelled_caught
                # Nobody knows where the session stands: it is over.
                with pytest.raises(ConnectionLost):
                    await client.noop()
        assert b"NOOP" in script.received
        assert b"QUIT" not in script.received

    trio.run(main)


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
        trio.run(main, server.port)
        assert server.handler.delivered == []


# -- connections given and pooled ----------------------------------------------------------


def test_already_connected_stream() -> None:
    async def main(port: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with Client("localhost", stream=stream, ssl_context=client_tls_context()) as client:
            result = await client.send_message("a@example.org", ["b@example.org"], message())
        assert result.outcome is MessageOutcome.ACCEPTED
        assert stream.socket.fileno() == -1  # the client closed it

    with smtp_server() as server:
        trio.run(main, server.port)
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
        trio.run(main, server.port)
        delivered = server.handler.delivered
    assert len(delivered) == 4
    assert len({d.peer for d in delivered}) == 1


def test_pool_sends_concurrently_within_its_size() -> None:
    results: list[TransactionResult] = []

    async def main(port: int) -> None:
        async def send(pool: Pool, number: int) -> None:
            content = message(str(number))
            results.append(await pool.send_message("a@example.org", ["b@example.org"], content))

        pool = Pool("localhost", port, max_size=2, ssl_context=client_tls_context())
        async with pool, trio.open_nursery() as nursery:
            for number in range(6):
                nursery.start_soon(send, pool, number)

    with smtp_server() as server:
        trio.run(main, server.port)
        delivered = server.handler.delivered
    assert len(results) == 6
    assert all(r.outcome is MessageOutcome.ACCEPTED for r in results)
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
            await until_dropped(server, server.handler.delivered[0].peer, trio.sleep)
            second = await pool.send_message("a@example.org", ["b@example.org"], message("2"))
        assert first.outcome is MessageOutcome.ACCEPTED
        assert second.outcome is MessageOutcome.ACCEPTED

    with smtp_server(idle_timeout=0.1) as server:
        trio.run(main, server)
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
            await trio.sleep(0.3)
            await pool.send_message("a@example.org", ["b@example.org"], message("2"))

    with smtp_server() as server:
        trio.run(main, server.port)
        delivered = server.handler.delivered
    assert len({d.peer for d in delivered}) == 2
    # The expired connection was ended politely, and so was the second one, by aclose.
    assert lines.count("C: QUIT") == 2
    assert lines.count("S: 221 Bye") == 2
