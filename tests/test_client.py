"""The transport-independent course of a session, run against the in-memory server."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from peer import FakeServer

from smtp_proto import (
    AuthenticationFailed,
    ClientConnection,
    ConnectionLost,
    EhloFeatures,
    GreetingRefused,
    HelloRefused,
    IORequest,
    Login,
    MessageOutcome,
    NeedBody,
    Plain,
    Read,
    Reply,
    StartTls,
    TlsPolicy,
    TlsUnavailable,
    TransactionResult,
    Write,
    authenticate,
    execute,
    open_session,
    send_transaction,
)

STARTTLS_KEYWORDS = ("PIPELINING", "STARTTLS", "AUTH PLAIN", "8BITMIME")


class Runner:
    """Executes I/O requests against a FakeServer, recording them."""

    def __init__(self, server: FakeServer, *, trickle: bool = False) -> None:
        self.server = server
        self.trickle = trickle
        self.incoming = server.greeting()
        self.requests: list[IORequest] = []
        self.body: Iterator[bytes] = iter(())

    def run(self, operation: Generator[IORequest, bytes | None, object]) -> object:
        value: bytes | None = None
        for _ in range(10_000):
            try:
                request = operation.send(value)
            except StopIteration as stop:
                return stop.value
            self.requests.append(request)
            value = None
            if isinstance(request, Write):
                self.incoming += self.server.receive(request.data)
            elif isinstance(request, Read):
                assert self.incoming or self.server._closed, "the client waits forever"
                size = 1 if self.trickle else len(self.incoming)
                value, self.incoming = self.incoming[:size], self.incoming[size:]
            elif isinstance(request, NeedBody):
                value = next(self.body, None)
        raise AssertionError("the operation never finished")  # pragma: no cover


def session(
    server: FakeServer, tls: TlsPolicy = TlsPolicy.NONE, **options: object
) -> tuple[ClientConnection, Runner, EhloFeatures]:
    conn = ClientConnection(lmtp=server.lmtp, **options)  # type: ignore[arg-type]
    runner = Runner(server)
    features = runner.run(open_session(conn, "client.example", tls))
    assert isinstance(features, EhloFeatures)
    return conn, runner, features


def test_plain_session() -> None:
    conn, runner, features = session(FakeServer(keywords=STARTTLS_KEYWORDS))
    assert features.starttls
    assert not conn.tls_active
    assert not any(isinstance(r, StartTls) for r in runner.requests)


@pytest.mark.parametrize("policy", [TlsPolicy.REQUIRED, TlsPolicy.OPPORTUNISTIC])
def test_starttls_when_offered(policy: TlsPolicy) -> None:
    server = FakeServer(keywords=STARTTLS_KEYWORDS)
    conn, runner, features = session(server, policy)
    assert conn.tls_active
    assert not features.starttls  # announced over TLS, where it is no longer offered
    assert server.commands == ["EHLO client.example", "STARTTLS", "EHLO client.example"]
    assert sum(isinstance(r, StartTls) for r in runner.requests) == 1


def test_required_tls_never_falls_back() -> None:
    with pytest.raises(TlsUnavailable, match="does not offer"):
        session(FakeServer(keywords=("PIPELINING",)), TlsPolicy.REQUIRED)


def test_opportunistic_tls_without_starttls_stays_plain() -> None:
    conn, _, _ = session(FakeServer(keywords=("PIPELINING",)), TlsPolicy.OPPORTUNISTIC)
    assert not conn.tls_active


def test_refused_starttls_is_an_error_even_when_opportunistic() -> None:
    server = FakeServer(keywords=STARTTLS_KEYWORDS)
    answer = server._answer
    server._answer = lambda line: (  # type: ignore[method-assign]
        b"454 4.7.0 TLS not available\r\n" if line == "STARTTLS" else answer(line)
    )
    with pytest.raises(TlsUnavailable, match="refused") as info:
        session(server, TlsPolicy.OPPORTUNISTIC)
    assert info.value.reply is not None
    assert info.value.reply.code == 454


def test_implicit_tls_does_not_upgrade_again() -> None:
    _conn, runner, _ = session(
        FakeServer(keywords=STARTTLS_KEYWORDS), TlsPolicy.REQUIRED, tls_active=True
    )
    assert not any(isinstance(r, StartTls) for r in runner.requests)


def test_refused_greeting() -> None:
    server = FakeServer()
    server.greeting = lambda: b"554 5.3.2 no service\r\n"  # type: ignore[method-assign]
    with pytest.raises(GreetingRefused) as info:
        session(server)
    assert info.value.reply is not None
    assert info.value.reply.code == 554


def test_refused_hello() -> None:
    server = FakeServer()
    server.keywords = ()
    conn = ClientConnection()
    runner = Runner(server)
    runner.incoming = b"220 hi\r\n"
    server._answer = lambda line: b"550 5.7.1 go away\r\n"  # type: ignore[method-assign]
    with pytest.raises(HelloRefused) as info:
        runner.run(open_session(conn, "client.example", TlsPolicy.NONE))
    assert info.value.reply is not None
    assert info.value.reply.code == 550


def test_lmtp_session_uses_lhlo() -> None:
    server = FakeServer(lmtp=True)
    session(server)
    assert server.commands == ["LHLO client.example"]


def test_execute_returns_the_reply_to_its_command_not_to_earlier_ones() -> None:
    server = FakeServer(keywords=("PIPELINING", "CHUNKING"), bdat=lambda _: b"552 too big\r\n")
    conn, runner, _ = session(server)
    tx = conn.send_message("a@example.org", ["b@example.org"], b"x" * 10, chunk_size=4)
    result = runner.run(send_transaction(conn, tx))
    assert result == tx.result
    assert tx.result.outcome is MessageOutcome.REJECTED
    assert conn.commands_in_flight  # the RSET the failure caused is still unanswered
    reply = runner.run(execute(conn, conn.noop))
    assert isinstance(reply, Reply)
    assert server.commands[-2:] == ["RSET", "NOOP"]


@pytest.mark.parametrize(("ending", "code"), [(b"421 4.3.2 bye\r\n", 421), (b"", None)])
def test_execute_raises_when_the_server_goes(ending: bytes, code: int | None) -> None:
    conn, runner, _ = session(FakeServer())
    server = runner.server
    server._answer = lambda line: ending  # type: ignore[method-assign]
    server._closed = not ending
    with pytest.raises(ConnectionLost) as info:
        runner.run(execute(conn, conn.noop))
    assert (info.value.reply.code if info.value.reply else None) == code


def test_execute_is_not_for_a_paused_engine() -> None:
    server = FakeServer(keywords=STARTTLS_KEYWORDS)
    conn, runner, _ = session(server)
    runner.run(execute(conn, conn.starttls))
    with pytest.raises(AssertionError, match="TLS handshake"):
        runner.run(execute(conn))


def test_authenticate() -> None:
    server = FakeServer(keywords=STARTTLS_KEYWORDS)
    conn, runner, _ = session(server, TlsPolicy.REQUIRED)
    event = runner.run(authenticate(conn, Plain("alice", "s3cret")))
    assert type(event).__name__ == "AuthSucceeded"
    server = FakeServer(keywords=STARTTLS_KEYWORDS, auth=lambda _: b"535 5.7.8 bad credentials\r\n")
    conn, runner, _ = session(server, TlsPolicy.REQUIRED)
    with pytest.raises(AuthenticationFailed, match=r"AUTH PLAIN failed \(535\)") as info:
        runner.run(authenticate(conn, Plain("alice", "wrong")))
    assert info.value.reply is not None
    assert "wrong" not in str(info.value)


def test_authenticate_cancelled_says_why() -> None:
    # A challenge that is not base64 is cancelled with "*", which this server calls an
    # unknown command: the failure carries the client's reason.
    server = FakeServer(keywords=("AUTH LOGIN",), auth=lambda _: b"334 %%%\r\n")
    conn, runner, _ = session(server)
    with pytest.raises(AuthenticationFailed, match="base64"):
        runner.run(authenticate(conn, Login("alice", "s3cret"), allow_without_tls=True))
    assert server.commands[-1] == "*"


def test_content_from_the_transport() -> None:
    server = FakeServer(keywords=("PIPELINING", "8BITMIME"))
    conn, runner, _ = session(server)
    tx = conn.send_message("a@example.org", ["b@example.org"])
    runner.body = iter([b"one\n", b"two"])
    result = runner.run(send_transaction(conn, tx, external_body=True))
    assert isinstance(result, TransactionResult)
    assert result.outcome is MessageOutcome.ACCEPTED
    assert server.messages == [b"one\r\ntwo\r\n"]
    assert sum(isinstance(r, NeedBody) for r in runner.requests) == 3


def test_a_deadline_covers_the_whole_reply() -> None:
    server = FakeServer(keywords=("PIPELINING",))
    conn = ClientConnection()
    runner = Runner(server, trickle=True)
    runner.run(open_session(conn, "client.example", TlsPolicy.NONE))
    reads = [r for r in runner.requests if isinstance(r, Read)]
    # The greeting and the EHLO reply each start one deadline; every other read continues one.
    assert sum(r.fresh for r in reads) == 2
    assert len(reads) == len(server.greeting()) + len(b"250-fake.example\r\n250 PIPELINING\r\n")
    assert all(r.timeout == 300 for r in reads)
    tx = conn.send_message("a@example.org", ["b@example.org"], b"x")
    runner.requests.clear()
    runner.run(send_transaction(conn, tx))
    reads = [r for r in runner.requests if isinstance(r, Read)]
    assert reads[0].fresh
    assert not all(r.fresh for r in reads)
