"""The transport-independent course of a session, run against the in-memory server."""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from peer import FakeServer

from smtp_proto import (
    NEED_DATA,
    AuthenticationFailed,
    ClientConnection,
    ConnectionLost,
    EhloFeatures,
    GreetingRefused,
    HelloRefused,
    InsecureAuthenticationError,
    IORequest,
    Limits,
    LocalProtocolError,
    Login,
    MailTransaction,
    MessageOutcome,
    NeedBody,
    Plain,
    Read,
    RemoteProtocolError,
    Reply,
    StartTls,
    State,
    Timeouts,
    TlsPolicy,
    TlsUnavailable,
    TransactionResult,
    Write,
    authenticate,
    execute,
    open_session,
    send_transaction,
    send_transactions,
)

STARTTLS_KEYWORDS = ("PIPELINING", "STARTTLS", "AUTH PLAIN", "8BITMIME")


class Runner:
    """Executes I/O requests against a FakeServer, recording them."""

    def __init__(
        self,
        server: FakeServer,
        *,
        trickle: bool = False,
        on_read: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.trickle = trickle
        #: Called at every read, before it is answered.
        self.on_read = on_read
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
                if self.on_read is not None:
                    self.on_read()
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
    with pytest.raises(TlsUnavailable, match=r"^the server does not offer STARTTLS$") as info:
        session(FakeServer(keywords=("PIPELINING",)), TlsPolicy.REQUIRED)
    # The reply is the EHLO reply that did not announce it.
    assert info.value.reply is not None
    assert info.value.reply.lines == ("fake.example", "PIPELINING")


def test_opportunistic_tls_without_starttls_stays_plain() -> None:
    conn, _, _ = session(FakeServer(keywords=("PIPELINING",)), TlsPolicy.OPPORTUNISTIC)
    assert not conn.tls_active


def test_refused_starttls_is_an_error_even_when_opportunistic() -> None:
    server = FakeServer(keywords=STARTTLS_KEYWORDS)
    answer = server._answer
    server._answer = lambda line: (  # type: ignore[method-assign]
        b"454 4.7.0 TLS not available\r\n" if line == "STARTTLS" else answer(line)
    )
    with pytest.raises(TlsUnavailable, match=r"^the server refused STARTTLS$") as info:
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
    with pytest.raises(
        GreetingRefused, match=r"^the server refused service in its greeting$"
    ) as info:
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
    with pytest.raises(HelloRefused, match=r"^the server refused EHLO$") as info:
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
    # The RSET the failure caused is written before the transaction returns.
    assert server.commands[-1] == "RSET"
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
    with pytest.raises(ConnectionLost, match=r"^the server closed the connection$") as info:
        runner.run(execute(conn, conn.noop))
    assert (info.value.reply.code if info.value.reply else None) == code


def test_a_transaction_ends_when_the_server_closes() -> None:
    conn, runner, _ = session(FakeServer())
    server = runner.server
    server._answer = lambda line: b""  # type: ignore[method-assign]
    server._closed = True
    tx = conn.send_message("a@example.org", ["b@example.org"], b"x")
    result = runner.run(send_transaction(conn, tx))
    assert isinstance(result, TransactionResult)
    assert result.outcome is MessageOutcome.FAILED


def test_execute_is_not_for_a_paused_engine() -> None:
    server = FakeServer(keywords=STARTTLS_KEYWORDS)
    conn, runner, _ = session(server)
    runner.run(execute(conn, conn.starttls))
    with pytest.raises(
        AssertionError, match=r"^execute\(\) is not used while a TLS handshake is due$"
    ):
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


def test_authenticate_needs_tls_unless_allowed() -> None:
    server = FakeServer(keywords=("AUTH PLAIN",))
    conn, runner, _ = session(server)
    with pytest.raises(InsecureAuthenticationError):
        runner.run(authenticate(conn, Plain("alice", "s3cret")))
    assert not any(command.startswith("AUTH") for command in server.commands)


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
    # Each reply (to MAIL, RCPT, DATA and the final dot, read one octet at a time) starts a
    # deadline: the one for the command it answers.
    replies = [
        b"250 2.0.0 ok\r\n",
        b"250 2.0.0 ok\r\n",
        b"354 go ahead\r\n",
        b"250 2.0.0 queued\r\n",
    ]
    expected = [
        (timeout, index == 0)
        for reply, timeout in zip(replies, [300, 300, 120, 600], strict=True)
        for index in range(len(reply))
    ]
    assert [(r.timeout, r.fresh) for r in reads] == expected


def batch(
    keywords: tuple[str, ...], count: int, max_commands_in_flight: int = 100
) -> tuple[FakeServer, ClientConnection, Runner, list[bytes]]:
    server = FakeServer(keywords=keywords)
    conn, runner, _ = session(server, limits=Limits(max_commands_in_flight=max_commands_in_flight))
    server.writes = 0
    runner.requests.clear()
    bodies = [b"message %d\n.dot\n" % i for i in range(count)]
    return server, conn, runner, bodies


def send_batch(
    conn: ClientConnection, runner: Runner, bodies: list[bytes], **options: object
) -> list[TransactionResult]:
    transactions = [
        conn.send_message(
            "a@example.org",
            [f"b{i}@example.org"],
            body,
            start=False,
            **options,  # type: ignore[arg-type]
        )
        for i, body in enumerate(bodies)
    ]
    # Checked and queued, but nothing is sent before the batch runs.
    assert conn.data_to_send() == b""
    results = runner.run(send_transactions(conn, transactions))
    assert isinstance(results, list)
    return results


def test_a_batch_with_pipelining_costs_one_round_trip_per_message() -> None:
    server, conn, runner, bodies = batch(("PIPELINING", "8BITMIME"), 5)
    results = send_batch(conn, runner, bodies)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 5
    assert [r.recipients[0].address for r in results] == [f"b{i}@example.org" for i in range(5)]
    assert server.messages == [b"message %d\r\n.dot\r\n" % i for i in range(5)]
    # The first envelope, then each message's content and final dot together with the next
    # message's envelope, then the last content: one write per message, plus one.
    assert server.writes == 6
    # And one read for each of those writes' replies.
    assert sum(isinstance(r, Read) for r in runner.requests) == 6
    assert conn.can_start_transaction


def test_a_batch_takes_in_a_reply_received_before_it_began() -> None:
    # The caller's NOOP was answered, and the answer received but not read: the batch takes
    # it in before anything else, without reading, and then sends its messages.
    server, conn, runner, bodies = batch(("PIPELINING", "8BITMIME"), 2)
    conn.noop()
    conn.receive_data(server.receive(conn.data_to_send()))
    results = send_batch(conn, runner, bodies)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 2
    assert server.commands[-7:] == [
        "NOOP",
        "MAIL FROM:<a@example.org>",
        "RCPT TO:<b0@example.org>",
        "DATA",
        "MAIL FROM:<a@example.org>",
        "RCPT TO:<b1@example.org>",
        "DATA",
    ]
    # Its first request is the first envelope, and every read starts a reply of its own.
    assert isinstance(runner.requests[0], Write)
    reads = [r for r in runner.requests if isinstance(r, Read)]
    assert len(reads) == 3
    assert all(r.fresh for r in reads)


def test_a_batch_with_chunking_sends_whole_messages_in_one_write() -> None:
    server, conn, runner, bodies = batch(("PIPELINING", "CHUNKING"), 5)
    results = send_batch(conn, runner, bodies, pipeline_content_up_to=1000)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 5
    assert server.messages == [b"message %d\r\n.dot\r\n" % i for i in range(5)]
    assert server.writes == 1


@pytest.mark.parametrize("keywords", [("PIPELINING", "8BITMIME"), ("PIPELINING", "CHUNKING")])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_long_message_in_a_batch_is_written_a_chunk_at_a_time(
    keywords: tuple[str, ...], streamed: bool
) -> None:
    server, conn, runner, _ = batch(keywords, 0)
    pieces = [b"%d" % i * 100 + b"\n" for i in range(10)]
    long_body: bytes | Iterator[bytes] = iter(pieces) if streamed else b"".join(pieces)
    transactions = [
        conn.send_message("a@example.org", ["b@example.org"], body, start=False, chunk_size=101)
        for body in (b"short one\n", long_body, b"short two\n")
    ]
    results = runner.run(send_transactions(conn, transactions))
    assert isinstance(results, list)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 3
    assert server.messages == [
        b"short one\r\n",
        b"".join(pieces).replace(b"\n", b"\r\n"),
        b"short two\r\n",
    ]
    writes = [r.data for r in runner.requests if isinstance(r, Write)]
    per_write = [sum(p.rstrip() in data for p in pieces) for data in writes]
    # The pieces are written as they are made: one a write, except that BDAT holds each
    # chunk back until the next one comes (the last must carry LAST), so the last two of
    # a body given whole share a write. Nothing gathers the message whole.
    assert sum(per_write) == 10
    assert max(per_write) == (2 if "CHUNKING" in keywords and not streamed else 1)
    assert max(len(data) for data in writes) < 2 * (101 + 12) + 100


def test_in_a_batch_each_reply_starts_a_deadline() -> None:
    _, conn, runner, bodies = batch(("PIPELINING", "8BITMIME"), 2)
    runner.trickle = True
    results = send_batch(conn, runner, bodies)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 2
    reads = [r for r in runner.requests if isinstance(r, Read)]
    # Read one octet at a time: the first read of each reply is fresh (a new deadline for
    # the command it answers), the others continue it.
    replies = [
        b"250 2.0.0 ok\r\n",  # MAIL
        b"250 2.0.0 ok\r\n",  # RCPT
        b"354 go ahead\r\n",  # DATA
        b"250 2.0.0 queued\r\n",  # the first message's dot
        b"250 2.0.0 ok\r\n",
        b"250 2.0.0 ok\r\n",
        b"354 go ahead\r\n",
        b"250 2.0.0 queued\r\n",
    ]
    assert [r.fresh for r in reads] == [
        index == 0 for reply in replies for index in range(len(reply))
    ]


def test_a_batch_within_the_commands_in_flight_limit() -> None:
    server, conn, runner, bodies = batch(("PIPELINING", "CHUNKING"), 6, max_commands_in_flight=6)
    results = send_batch(conn, runner, bodies, pipeline_content_up_to=1000)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 6
    # Three commands a message, six at most awaiting replies: two messages per write.
    assert server.writes == 3


def test_a_message_in_a_batch_starts_only_when_its_whole_envelope_fits() -> None:
    # Three commands a message, five at most awaiting replies: after the first message two
    # places are free, too few for the next one, which waits for the replies rather than
    # trickle out a command per reply.
    server, conn, runner, bodies = batch(("PIPELINING", "CHUNKING"), 3, max_commands_in_flight=5)
    results = send_batch(conn, runner, bodies, pipeline_content_up_to=1000)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 3
    writes = [r.data for r in runner.requests if isinstance(r, Write)]
    assert [w.count(b"MAIL FROM:") for w in writes] == [1, 1, 1]
    assert server.writes == 3


def test_a_batch_without_pipelining_waits_for_each_reply() -> None:
    server, conn, runner, bodies = batch(("8BITMIME",), 3)
    results = send_batch(conn, runner, bodies)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 3
    assert server.messages == [b"message %d\r\n.dot\r\n" % i for i in range(3)]
    assert server.writes == 3 * 4


def test_a_refused_message_in_a_batch_leaves_the_others_alone() -> None:
    server, conn, runner, bodies = batch(("PIPELINING", "8BITMIME"), 3)
    server.rcpt = lambda address: (
        b"550 5.1.1 no such user\r\n" if address == "b1@example.org" else b"250 2.1.5 ok\r\n"
    )
    server.data = lambda: b"354 go ahead\r\n"
    results = send_batch(conn, runner, bodies)
    assert [r.outcome for r in results] == [
        MessageOutcome.ACCEPTED,
        MessageOutcome.REJECTED,
        MessageOutcome.ACCEPTED,
    ]
    assert results[1].recipients[0].reply is not None
    assert results[1].recipients[0].reply.code == 550
    # The refused message's pipelined DATA got only the final dot (RFC 2920 section 3.1).
    assert server.messages == [
        bodies[0].replace(b"\n", b"\r\n"),
        b"",
        bodies[2].replace(b"\n", b"\r\n"),
    ]


def _mail_answered(*replies: bytes) -> Callable[[FakeServer], None]:
    def setup(server: FakeServer) -> None:
        answers = iter(replies)
        server.mail = lambda _: next(answers)

    return setup


def _closing_at_the_second_mail(server: FakeServer) -> None:
    # The server reads the second message's MAIL and closes without a word.
    mails = iter([True, False])

    def mail(_: str) -> bytes:
        if next(mails):
            return b"250 2.1.0 ok\r\n"
        server._closed = True
        return b""

    server.mail = mail


def _421_to_the_second_rcpt(server: FakeServer) -> None:
    # The 421 comes with the replies before it (to the previous message's content and to
    # MAIL), so it is taken in with them.
    server.rcpt = lambda address: (
        b"421 4.3.2 going down\r\n" if address == "b1@example.org" else b"250 2.1.5 ok\r\n"
    )


@pytest.mark.parametrize(
    ("setup", "second_reply"),
    [
        (_mail_answered(b"250 2.1.0 ok\r\n", b"421 4.3.2 going down\r\n"), 421),
        (_closing_at_the_second_mail, None),
        (_421_to_the_second_rcpt, 421),
    ],
)
def test_a_batch_cut_short_fails_the_rest_without_sending_them(
    setup: Callable[[FakeServer], None], second_reply: int | None
) -> None:
    # The session ends during the second message (a 421, or a close): it fails (a close
    # before its content ended cannot have delivered it), and the two after it were never
    # sent.
    server, conn, runner, bodies = batch(("PIPELINING", "8BITMIME"), 4)
    setup(server)
    results = send_batch(conn, runner, bodies)
    assert [r.outcome for r in results] == [
        MessageOutcome.ACCEPTED,
        MessageOutcome.FAILED,
        MessageOutcome.FAILED,
        MessageOutcome.FAILED,
    ]
    message_reply = results[1].message_reply
    assert (message_reply.code if message_reply is not None else None) == second_reply
    # The last two never started: no reply of any kind.
    assert results[2].sender_reply is None
    assert results[3].recipients[0].reply is None
    assert sum(c.startswith("MAIL") for c in server.commands) == 2
    assert conn.state is State.CLOSED


def test_a_354_to_a_recipient_in_a_batch_is_a_protocol_error() -> None:
    server, conn, runner, bodies = batch(("PIPELINING", "8BITMIME"), 3)
    server.rcpt = lambda address: (
        b"354 go ahead\r\n" if address == "b1@example.org" else b"250 2.1.5 ok\r\n"
    )
    with pytest.raises(RemoteProtocolError, match=r"^a 354 reply is not a valid answer to RCPT$"):
        send_batch(conn, runner, bodies)
    assert conn.state is State.ERROR


def test_a_batch_behind_the_callers_own_transaction_takes_its_replies_then_refuses() -> None:
    server, conn, runner, _ = batch(("PIPELINING", "8BITMIME"), 1)
    conn.mail("a@example.org")
    conn.rcpt("own@example.org")
    transaction = conn.send_message("a@example.org", ["b@example.org"], b"x", start=False)
    with pytest.raises(LocalProtocolError, match="cannot start"):
        runner.run(send_transactions(conn, [transaction]))
    assert conn.commands_in_flight == 0
    assert server.commands[-2:] == ["MAIL FROM:<a@example.org>", "RCPT TO:<own@example.org>"]


def _answering(replies: list[bytes]) -> Callable[[str], bytes]:
    # RCPT is answered with each of *replies* in turn, then with 250.
    answers = iter(replies)
    return lambda _: next(answers, b"250 2.1.5 ok") + b"\r\n"


@settings(max_examples=60, deadline=None)
@given(
    refusals=st.lists(st.sampled_from([b"250 2.1.5 ok", b"450 4.2.1 busy", b"550 5.1.1 no"])),
    recipients=st.integers(1, 4),
    keywords=st.sampled_from(
        [("PIPELINING", "8BITMIME"), ("PIPELINING", "CHUNKING"), ("8BITMIME",)]
    ),
)
def test_a_batch_ends_the_same_whether_replies_come_together_or_apart(
    refusals: list[bytes], recipients: int, keywords: tuple[str, ...]
) -> None:
    # Replies that arrive together are taken in by the batch's short way for recipients;
    # a byte at a time, each goes through next_event. Both must end alike.
    outcomes = []
    for trickle in (False, True):
        server = FakeServer(keywords=keywords)
        server.rcpt = _answering(refusals)
        conn = ClientConnection()
        runner = Runner(server, trickle=trickle)
        runner.run(open_session(conn, "client.example", TlsPolicy.NONE))
        transactions = [
            conn.send_message(
                "a@example.org",
                [f"r{i}.{j}@example.org" for j in range(recipients)],
                b"message %d\r\n" % i,
                start=False,
            )
            for i in range(3)
        ]
        results = runner.run(send_transactions(conn, transactions))
        outcomes.append((results, server.commands, server.messages))
    assert outcomes[0] == outcomes[1]


class _EveryReplyThroughNextEvent(ClientConnection):
    """Takes a batch's replies one by one through next_event, with no short way."""

    def _take_replies(self) -> bool:
        ended = (State.CLOSED, State.ERROR, State.QUIT_SENT, State.TLS_HANDSHAKE)
        taken = False
        while self.state not in ended and self.next_event() is not NEED_DATA:
            taken = True
        return taken


def _scripted(draw: Callable[[list[bytes]], bytes]) -> dict[str, object]:
    # Hooks of the in-memory server answering each command with a reply drawn from a list
    # that mixes the usual with the odd: refusals, 421, a 354 or a multiline reply where
    # none belongs.
    return {
        "mail": lambda _: draw([b"250 2.1.0 ok\r\n", b"550 5.1.8 no\r\n", b"421 4.3.2 bye\r\n"]),
        "rcpt": lambda _: draw(
            [
                b"250 2.1.5 ok\r\n",
                b"450 4.2.1 later\r\n",
                b"550 5.1.1 no\r\n",
                b"421 4.3.2 bye\r\n",
                b"354 odd\r\n",
                b"250-two\r\n250 lines\r\n",
            ]
        ),
        "data": lambda: draw([b"354 go\r\n", b"554 5.5.1 no\r\n", b"421 4.3.2 bye\r\n"]),
        "message": lambda _: draw([b"250 2.0.0 ok\r\n", b"550 5.7.1 no\r\n", b"421 bye\r\n"]),
        "bdat": lambda _: draw([b"250 2.0.0 ok\r\n", b"552 5.3.4 too big\r\n"]),
    }


def _in_runs(chooser: random.Random, usual: float) -> Callable[[list[bytes]], bytes]:
    # Servers answer alike commands alike: half the time, the answer last given to the
    # same command is given again, so that runs of equal replies come often. Otherwise
    # the usual answer (the first) comes with probability *usual*, so that sessions that
    # mostly succeed, and reach their later messages, are drawn as well.
    last: dict[bytes, bytes] = {}

    def draw(options: list[bytes]) -> bytes:
        kind = options[0]
        if kind not in last or chooser.random() < 0.5:
            last[kind] = options[0] if chooser.random() < usual else chooser.choice(options)
        return last[kind]

    return draw


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    keywords=st.sampled_from(
        [("PIPELINING", "8BITMIME"), ("PIPELINING", "CHUNKING"), ("8BITMIME",), ("CHUNKING",)]
    ),
    lmtp=st.booleans(),
    recipients=st.integers(1, 6),
    pipeline_content_up_to=st.sampled_from([0, 1000]),
    in_flight=st.sampled_from([3, 100]),
    usual=st.sampled_from([0.0, 0.9]),
)
def test_the_short_way_for_replies_ends_as_next_event_would(
    *,
    seed: int,
    usual: float,
    keywords: tuple[str, ...],
    lmtp: bool,
    recipients: int,
    pipeline_content_up_to: int,
    in_flight: int,
) -> None:
    # The same batch against the same answers, with its replies taken the short way and
    # through next_event only: the results (or the error), what the server received, the
    # state and every request made (each read's timeout, and whether it starts a reply)
    # must be the same. Runs of equal replies exercise the way a run is taken
    # at once, and an envelope longer than the commands allowed in flight the RCPTs sent
    # as replies make room.
    ends = []
    for connection_class in (ClientConnection, _EveryReplyThroughNextEvent):
        chooser = random.Random(seed)
        hooks = _scripted(_in_runs(chooser, usual))
        server = FakeServer(keywords=keywords, lmtp=lmtp, **hooks)  # type: ignore[arg-type]
        conn = connection_class(lmtp=lmtp, limits=Limits(max_commands_in_flight=in_flight))
        runner = Runner(server)
        runner.run(open_session(conn, "client.example", TlsPolicy.NONE))
        transactions = [
            conn.send_message(
                "a@example.org",
                [f"r{i}.{j}@example.org" for j in range(recipients)],
                b"message %d\r\n" % i,
                start=False,
                pipeline_content_up_to=pipeline_content_up_to,
            )
            for i in range(3)
        ]
        try:
            end: object = runner.run(send_transactions(conn, transactions))
        except (RemoteProtocolError, LocalProtocolError) as exc:
            end = (type(exc).__name__, str(exc))
        ends.append((end, server.commands, server.messages, conn.state, runner.requests))
    assert ends[0] == ends[1]


def test_a_run_of_equal_replies_is_never_taken_past_the_transactions_rcpts() -> None:
    # A run of equal replies is taken at once for the RCPTs of one transaction at the front
    # of those in flight, and for nothing after them even if asked: here the caller's RSET
    # follows them, and the server answers it with the same line. (A batch asks for the
    # RCPTs its message has in flight; should a caller's own commands stand among them, this
    # guard still matches every reply to its own command.)
    server = FakeServer(keywords=("PIPELINING", "8BITMIME"))
    same = b"250 2.0.0 ok\r\n"
    server.rcpt = lambda _: same
    conn, _, _ = session(server)
    conn.mail("a@example.org")
    conn.rcpt("b@example.org")
    conn.rcpt("c@example.org")
    conn.rset()
    conn.receive_data(server.receive(conn.data_to_send()))
    assert type(conn.next_event()).__name__ == "SenderAccepted"
    accepted = conn.next_event()
    assert type(accepted).__name__ == "RecipientAccepted"
    reply = accepted.reply  # type: ignore[union-attr]
    _, _, transaction = conn._pending[0]
    assert conn._take_repeated_reply(reply, transaction, 5) == 1
    assert [command.name for command, _, _ in conn._pending] == ["RSET"]
    assert conn._reader.buffered == len(same)
    rset_reply = conn.next_event()
    assert isinstance(rset_reply, Reply)
    assert rset_reply.raw == same
    assert conn.commands_in_flight == 0


@pytest.mark.parametrize("keywords", [("PIPELINING", "8BITMIME"), ("PIPELINING", "CHUNKING")])
def test_a_batch_makes_each_result_once_while_the_server_works(
    keywords: tuple[str, ...],
) -> None:
    # The result of a message that has ended is made before the next read, while the
    # server works on what was just written, and is the very result returned at the end.
    _, conn, runner, bodies = batch(keywords, 4)
    transactions = [
        conn.send_message("a@example.org", [f"b{i}@example.org"], body, start=False)
        for i, body in enumerate(bodies)
    ]
    made_before_a_read = []

    def on_read() -> None:
        ended = [t for t in transactions if t.done]
        if ended:
            made_before_a_read.append(all(t._result is not None for t in ended))

    runner.on_read = on_read
    results = runner.run(send_transactions(conn, transactions))
    assert isinstance(results, list)
    assert len(made_before_a_read) >= 2
    assert all(made_before_a_read)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 4
    assert all(r is t.result for r, t in zip(results, transactions, strict=True))


@pytest.mark.parametrize("one_by_one", [False, True])
def test_content_awaiting_its_354_is_made_ready_while_the_server_works(one_by_one: bool) -> None:
    # Before each read that may bring a message's 354, its content is already in wire form
    # (the work done while the server works, not while it waits), and goes out unchanged.
    server, conn, runner, bodies = batch(("PIPELINING", "8BITMIME"), 3)
    transactions = [
        conn.send_message("a@example.org", [f"b{i}@example.org"], body, start=False)
        for i, body in enumerate(bodies)
    ]
    ready_at_reads = []

    def on_read() -> None:
        for t in transactions:
            if t._data_sent and not t._content_started:
                ready_at_reads.append(t._wire_content is not None)

    runner.on_read = on_read
    if one_by_one:
        for t in transactions:
            t.start()
            assert isinstance(runner.run(send_transaction(conn, t)), TransactionResult)
    else:
        runner.run(send_transactions(conn, transactions))
    assert ready_at_reads == [True] * 3
    assert [t.result.outcome for t in transactions] == [MessageOutcome.ACCEPTED] * 3
    assert server.messages == [b"message %d\r\n.dot\r\n" % i for i in range(3)]
    assert all(t._wire_content is None for t in transactions)


@pytest.mark.parametrize(
    ("keywords", "lmtp", "pipeline_content_up_to", "content"),
    [
        # DATA pipelined and answered 354: only the end of the content goes.
        (("PIPELINING", "8BITMIME"), False, 0, b""),
        (("PIPELINING", "8BITMIME"), True, 0, b""),
        # BDAT sent with the envelope: the content went before MAIL's reply came.
        (("PIPELINING", "CHUNKING"), False, 1000, b"message 0\r\n.dot\r\n"),
    ],
)
def test_a_message_whose_sender_was_refused_is_never_accepted(
    keywords: tuple[str, ...], lmtp: bool, pipeline_content_up_to: int, content: bytes
) -> None:
    # MAIL refused, but the RCPT and DATA (or BDAT) pipelined after it answered as if a
    # transaction were open, and the content's end answered 250. A refused MAIL opened no
    # transaction: the message is rejected and no recipient counts as delivered.
    server = FakeServer(keywords=keywords, lmtp=lmtp)
    server.mail = lambda _: b"550 5.7.1 sender refused\r\n"
    conn, runner, _ = session(server)
    transaction = conn.send_message(
        "a@example.org",
        ["b@example.org"],
        b"message 0\n.dot\n",
        start=False,
        pipeline_content_up_to=pipeline_content_up_to,
    )
    results = runner.run(send_transactions(conn, [transaction]))
    assert isinstance(results, list)
    [result] = results
    assert isinstance(result, TransactionResult)
    assert result.sender_reply is not None
    assert result.outcome is MessageOutcome.REJECTED
    assert result.sender_reply.code == 550
    assert result.recipients[0].accepted
    assert not result.recipients[0].delivered
    assert result.delivered_recipients == ()
    assert result.message_reply is not None
    assert result.message_reply.code == 250
    assert server.messages == [content]
    assert conn.commands_in_flight == 0


@pytest.mark.parametrize("refused", ["sender", "recipients"])
def test_content_let_go_with_the_envelope_but_held_for_room_is_never_sent_if_refused(
    refused: str,
) -> None:
    # The content may go with the envelope, but MAIL and two RCPTs fill the three places
    # in flight, so it waits. The sender (or every recipient) is then refused: none of the
    # content goes, the message is rejected, and the next one is sent. (With the sender
    # refused, the message once waited for ever for the reply to content never sent.)
    server, conn, runner, _ = batch(("PIPELINING", "CHUNKING"), 0, max_commands_in_flight=3)
    if refused == "sender":
        senders = iter([b"550 5.1.8 bad sender\r\n", b"250 2.1.0 ok\r\n"])
        server.mail = lambda _: next(senders)
    else:
        server.rcpt = lambda address: (
            b"550 5.1.1 no\r\n" if address.startswith("r") else b"250 2.1.5 ok\r\n"
        )
    transactions = [
        conn.send_message(
            "a@example.org",
            [f"{prefix}{j}@example.org" for j in range(2)],
            b"message %d\r\n" % i,
            start=False,
            pipeline_content_up_to=1000,
        )
        for i, prefix in enumerate(["r", "b"])
    ]
    results = runner.run(send_transactions(conn, transactions))
    assert isinstance(results, list)
    assert [r.outcome for r in results] == [MessageOutcome.REJECTED, MessageOutcome.ACCEPTED]
    assert server.messages == [b"message 1\r\n"]
    assert not any(command.startswith("BDAT") for command in server.commands[:4])
    assert conn.commands_in_flight == 0


def test_the_end_of_the_session_reaches_a_message_with_nothing_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every unfinished message learns that the session ended, even one with no command of
    # its own awaiting a reply. Here the first message is made to wait for a reply to
    # content it never sent (as one once did after a refused MAIL); when the server then
    # closes, it fails instead of leaving the batch waiting for ever.
    server, conn, runner, _ = batch(("PIPELINING", "CHUNKING"), 0, max_commands_in_flight=3)
    senders = iter([b"550 5.1.8 bad sender\r\n", b"421 4.3.2 closing\r\n"])
    server.mail = lambda _: next(senders)

    def waits_for_content_never_sent(self: MailTransaction) -> None:
        if not self._mail_refused:
            original(self)

    original = MailTransaction._after_recipients
    monkeypatch.setattr(MailTransaction, "_after_recipients", waits_for_content_never_sent)
    transactions = [
        conn.send_message(
            "a@example.org",
            ["b@example.org", "c@example.org"],
            b"message %d\r\n" % i,
            start=False,
            pipeline_content_up_to=1000,
        )
        for i in range(2)
    ]
    results = runner.run(send_transactions(conn, transactions))
    assert isinstance(results, list)
    assert [r.outcome for r in results] == [MessageOutcome.FAILED, MessageOutcome.FAILED]
    assert results[0].sender_reply is not None
    assert results[0].sender_reply.code == 550
    assert server.messages == []
    assert conn.state is State.CLOSED


def test_a_batch_reads_within_the_timeout_of_the_oldest_command_awaiting_a_reply() -> None:
    # RFC 5321 section 4.5.3.2: each read waits as long as the reply the engine waits for
    # first allows: MAIL's at first, then the end of each message's content.
    timeouts = Timeouts(mail=11, rcpt=12, data_initiation=13, data_termination=14)
    server = FakeServer(keywords=("PIPELINING", "8BITMIME"))
    conn, runner, _ = session(server, timeouts=timeouts)
    runner.requests.clear()
    send_batch(conn, runner, [b"one\r\n", b"two\r\n"])
    reads = [r for r in runner.requests if isinstance(r, Read)]
    assert [(read.timeout, read.fresh) for read in reads] == [(11, True), (14, True), (14, True)]


def test_a_refused_sender_with_an_accepted_recipient_sends_no_content() -> None:
    # MAIL refused, yet RCPT accepted (the RCPT was pipelined after MAIL): no transaction
    # was opened, so BDAT is never sent and the message is rejected, in a batch too
    # (where the message once waited for content it could never send).
    server, conn, runner, bodies = batch(("PIPELINING", "CHUNKING"), 2)
    senders = iter([b"550 5.1.8 bad sender\r\n", b"250 2.1.0 ok\r\n"])
    server.mail = lambda _: next(senders)
    results = send_batch(conn, runner, bodies)
    assert [r.outcome for r in results] == [MessageOutcome.REJECTED, MessageOutcome.ACCEPTED]
    assert results[0].sender_reply is not None
    assert results[0].sender_reply.code == 550
    assert results[0].recipients[0].accepted
    assert server.messages == [b"message 1\r\n.dot\r\n"]


@pytest.mark.parametrize("keywords", [("PIPELINING", "8BITMIME"), ("PIPELINING", "CHUNKING")])
def test_a_refused_sender_stops_an_envelope_longer_than_the_pipeline(
    keywords: tuple[str, ...],
) -> None:
    # Six recipients, three commands in flight at most: MAIL and two RCPTs go, MAIL is
    # refused, and the other four RCPTs (and DATA) are never sent; the message is rejected
    # once the two sent are answered, and the next message goes on.
    server, conn, runner, _ = batch(keywords, 0, max_commands_in_flight=3)
    senders = iter([b"550 5.1.8 bad sender\r\n", b"250 2.1.0 ok\r\n"])
    server.mail = lambda _: next(senders)
    server.rcpt = lambda _: b"503 5.5.1 need MAIL first\r\n"
    first = conn.send_message(
        "a@example.org", [f"r{i}@example.org" for i in range(6)], b"one\r\n", start=False
    )
    second = conn.send_message("a@example.org", ["x@example.org"], b"two\r\n", start=False)
    results = runner.run(send_transactions(conn, [first, second]))
    assert isinstance(results, list)
    assert [r.outcome for r in results] == [MessageOutcome.REJECTED, MessageOutcome.REJECTED]
    assert [r.reply is not None for r in results[0].recipients] == [True] * 2 + [False] * 4
    assert sum(c.startswith("RCPT TO:<r") for c in server.commands) == 2
    # No content went (with DATA, the second message's pipelined DATA got its 354 and
    # only the final dot followed, its recipient having been refused).
    assert set(server.messages) <= {b""}
    assert results[1].sender_reply is not None
    assert results[1].sender_reply.code == 250


def test_a_refused_sender_with_no_recipient_sent_yet_is_rejected_at_once() -> None:
    # One command in flight at most: MAIL goes alone, and its refusal ends the message.
    server, conn, runner, bodies = batch(("PIPELINING", "CHUNKING"), 2, max_commands_in_flight=1)
    senders = iter([b"550 5.1.8 bad sender\r\n", b"250 2.1.0 ok\r\n"])
    server.mail = lambda _: next(senders)
    results = send_batch(conn, runner, bodies)
    assert [r.outcome for r in results] == [MessageOutcome.REJECTED, MessageOutcome.ACCEPTED]
    assert results[0].recipients[0].reply is None
    assert [c for c in server.commands if c.startswith("RCPT")] == ["RCPT TO:<b1@example.org>"]


def test_a_batch_that_cannot_start_raises_instead_of_waiting() -> None:
    server = FakeServer(keywords=("PIPELINING",))
    conn, runner, _ = session(server, require_tls=True)
    with pytest.raises(LocalProtocolError, match="cannot start"):
        conn.send_message("a@example.org", ["b@example.org"], b"x")
    transaction = conn.send_message("a@example.org", ["b@example.org"], b"x", start=False)
    with pytest.raises(
        LocalProtocolError,
        match=r"^a mail transaction cannot start now: wait until can_start_transaction$",
    ):
        runner.run(send_transactions(conn, [transaction]))


def test_a_queued_transaction_starts_once_and_only_with_the_features_it_was_checked_for() -> None:
    server = FakeServer(keywords=("PIPELINING",))
    conn, runner, _ = session(server)
    transaction = conn.send_message("a@example.org", ["b@example.org"], b"x", start=False)
    assert not transaction.done
    assert not transaction.body_wanted
    runner.run(execute(conn, lambda: conn.ehlo("client.example")))
    with pytest.raises(
        LocalProtocolError,
        match=r"^the server's features changed since the message was checked$",
    ):
        transaction.start()
    transaction = conn.send_message("a@example.org", ["b@example.org"], b"x", start=False)
    results = runner.run(send_transactions(conn, [transaction]))
    assert isinstance(results, list)
    assert results[0].outcome is MessageOutcome.ACCEPTED
    with pytest.raises(LocalProtocolError, match=r"^the transaction was started already$"):
        transaction.start()
    # Started and not finished yet is "started" too.
    transaction = conn.send_message("a@example.org", ["b@example.org"], b"x", start=False)
    transaction.start()
    assert not transaction.done
    with pytest.raises(LocalProtocolError, match=r"^the transaction was started already$"):
        transaction.start()


def test_a_batch_waits_for_the_replies_to_earlier_commands() -> None:
    server = FakeServer(keywords=("PIPELINING",))
    conn, runner, _ = session(server)
    conn.noop()  # a command that must be answered before MAIL may follow it
    transaction = conn.send_message("a@example.org", ["b@example.org"], b"x", start=False)
    with pytest.raises(
        LocalProtocolError,
        match=r"^a mail transaction cannot start now: wait until can_start_transaction$",
    ):
        transaction.start()
    results = runner.run(send_transactions(conn, [transaction]))
    assert isinstance(results, list)
    assert results[0].outcome is MessageOutcome.ACCEPTED
    assert server.commands[-4:] == [
        "NOOP",
        "MAIL FROM:<a@example.org>",
        "RCPT TO:<b@example.org>",
        "DATA",
    ]


def test_a_batch_read_in_pieces_and_ending_with_a_refusal_leaves_the_session_clean() -> None:
    server = FakeServer(keywords=("8BITMIME",))
    server.rcpt = lambda address: (
        b"550 5.1.1 no such user\r\n" if address == "b1@example.org" else b"250 2.1.5 ok\r\n"
    )
    conn = ClientConnection()
    runner = Runner(server, trickle=True)
    runner.run(open_session(conn, "client.example", TlsPolicy.NONE))
    transactions = [
        conn.send_message("a@example.org", [f"b{i}@example.org"], b"x", start=False)
        for i in range(2)
    ]
    results = runner.run(send_transactions(conn, transactions))
    assert isinstance(results, list)
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED, MessageOutcome.REJECTED]
    # The refused last message left a transaction open on the server: its RSET was written
    # before the batch returned, and its reply is all that is still awaited.
    assert server.commands[-1] == "RSET"
    assert conn.commands_in_flight == 1
