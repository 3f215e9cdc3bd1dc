"""Tests of smtp_proto.testing: the strategies against the engine, the FakeServer in memory
(byte transcripts, and driven by ClientConnection), and on loopback through the sync,
asyncio and trio clients."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import Mapping

import pytest
import trio
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

import smtp_proto
import smtp_proto.testing
from smtp_proto import (
    NEED_DATA,
    PAUSED,
    ClientConnection,
    EhloFeatures,
    Event,
    MailTransaction,
    MessageOutcome,
    RemoteProtocolError,
    Timeouts,
    TlsPolicy,
)
from smtp_proto.testing import MESSAGE, FakeServer, ReceivedMessage, serve_loopback, strategies
from smtp_proto.transports import asyncio as asyncio_transport
from smtp_proto.transports import sync as sync_transport
from smtp_proto.transports import trio as trio_transport

# Short enough for a fast suite, long enough for a loaded machine to greet in time.
SMALL_TIMEOUTS = Timeouts(
    greeting=5.0,
    mail=0.3,
    rcpt=0.3,
    data_initiation=0.3,
    data_block=0.3,
    data_termination=0.3,
    other=5.0,
)


def codes(replies: bytes) -> list[int]:
    """The code of each complete reply in *replies* (a multiline reply counts once)."""
    lines = replies.split(b"\r\n")[:-1]
    return [int(line[:3]) for line in lines if line[3:4] != b"-"]


def has_closed(fake: FakeServer) -> bool:
    return fake.closed


def pump(
    conn: ClientConnection,
    fake: FakeServer,
    events: list[Event],
    transaction: MailTransaction | None = None,
) -> None:
    """Run client and fake server until neither has anything more to say; a server that
    closed is seen by the client as the end of the stream."""
    carried = b""
    for _ in range(10_000):
        if transaction is not None and transaction.body_wanted:
            transaction.pull_body()
            continue
        out = carried + conn.data_to_send()
        if out and not fake.closed:
            replies = fake.receive(out)
            if replies:
                conn.receive_data(replies)
            if has_closed(fake):  # a function call, so mypy does not assume it unchanged
                conn.receive_data(b"")
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            # Pulling events may itself have written (an RSET, say).
            carried = conn.data_to_send()
            if not out and not carried:
                return
            continue
        assert isinstance(event, Event)
        events.append(event)
        if isinstance(event, smtp_proto.ConnectionClosed):
            return
    raise AssertionError("the conversation never settled")


def greeted(fake: FakeServer) -> tuple[ClientConnection, list[Event]]:
    """A ClientConnection past the greeting and EHLO (LHLO) with *fake*."""
    conn = ClientConnection(lmtp=fake.lmtp)
    events: list[Event] = []
    conn.receive_data(fake.connect())
    pump(conn, fake, events)
    (conn.lhlo if fake.lmtp else conn.ehlo)("client.example")
    pump(conn, fake, events)
    return conn, events


def send(
    fake: FakeServer, sender: str, recipients: list[str], body: bytes
) -> smtp_proto.TransactionResult:
    conn, events = greeted(fake)
    transaction = conn.send_message(sender, recipients, body)
    pump(conn, fake, events, transaction)
    assert transaction.done
    return transaction.result


# Fewer examples than the project's profile: each one runs a whole session, and the file
# must stay quick.
few_examples = settings(max_examples=30)

# -- the strategies, against the engine ----------------------------------------------------


def pull(conn: ClientConnection, count: int) -> None:
    """Pull *count* events, whatever they are."""
    for _ in range(count):
        conn.next_event()


def noop_sent() -> ClientConnection:
    """A connection that sent NOOP and awaits its reply."""
    conn, _ = greeted(FakeServer())
    conn.noop()
    conn.data_to_send()
    return conn


@few_examples
@given(strategies.replies(status_classes=(2, 4, 5)))
def test_replies_are_accepted_as_any_answer(reply: bytes) -> None:
    conn = noop_sent()
    conn.receive_data(reply)
    event = conn.next_event()
    assert isinstance(event, (smtp_proto.Reply, smtp_proto.ServiceClosing))
    received = event if isinstance(event, smtp_proto.Reply) else event.reply
    assert received.raw == reply
    assert conn.next_event() is NEED_DATA


@few_examples
@given(strategies.replies(status_classes=(3,), max_lines=2))
def test_intermediate_replies_are_accepted_after_data(reply: bytes) -> None:
    conn, _ = greeted(FakeServer())
    conn.mail("a@example.com")
    conn.rcpt("b@example.com")
    conn.data()
    conn.data_to_send()
    conn.receive_data(b"250 ok\r\n250 ok\r\n" + reply)
    events = [conn.next_event() for _ in range(3)]
    assert isinstance(events[2], smtp_proto.ReadyForData)
    assert events[2].reply.raw == reply


@pytest.mark.parametrize("kind", strategies.HOSTILE_KINDS)
@few_examples
@given(data=st.data())
def test_hostile_replies_are_refused(kind: str, data: st.DataObject) -> None:
    hostile = data.draw(strategies.hostile_replies(kinds=[kind]))
    conn = noop_sent()
    conn.receive_data(hostile)
    with pytest.raises(RemoteProtocolError):
        pull(conn, 5)


@few_examples
@given(strategies.hostile_replies())
def test_hostile_replies_of_all_kinds_are_refused(data: bytes) -> None:
    conn = noop_sent()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        pull(conn, 5)


@few_examples
@given(strategies.ehlo_responses())
def test_ehlo_responses_are_understood(reply: bytes) -> None:
    conn = ClientConnection()
    conn.receive_data(b"220 ready\r\n")
    conn.next_event()
    conn.ehlo("client.example")
    conn.receive_data(reply)
    features = conn.next_event()
    assert isinstance(features, EhloFeatures)
    for line in reply.split(b"\r\n")[1:-1]:
        keyword = line[4:].split(b" ")[0].decode().upper()
        assert features.supports(keyword.partition("=")[0])


def within_rfc_lengths(address: str) -> bool:
    """RFC 5321 section 4.5.3.1: a local part of at most 64 octets, a domain of 255."""
    local_part, _, domain = address.rpartition("@")
    return len(local_part.encode()) <= 64 and len(domain.encode("idna")) <= 255


@few_examples
@given(strategies.addresses(), strategies.addresses())
def test_ascii_addresses_are_sent_as_they_are(sender: str, recipient: str) -> None:
    assert within_rfc_lengths(sender)
    assert smtp_proto.encode_address(sender, smtputf8_offered=False) == (sender, False)
    fake = FakeServer()
    result = send(fake, sender, [recipient], b"Hi\r\n")
    assert result.outcome is MessageOutcome.ACCEPTED
    assert fake.messages == [
        ReceivedMessage(sender=sender, recipients=(recipient,), content=b"Hi\r\n")
    ]


@few_examples
@given(strategies.addresses(internationalized=True))
def test_internationalized_addresses_are_accepted(address: str) -> None:
    assert within_rfc_lengths(address)
    wire, _ = smtp_proto.encode_address(address, smtputf8_offered=True)
    fake = FakeServer()
    result = send(fake, address, [address], b"Hi\r\n")
    assert result.outcome is MessageOutcome.ACCEPTED
    assert fake.messages[0].recipients == (wire,)


@few_examples
@given(strategies.esmtp_parameters(), strategies.esmtp_parameters())
def test_esmtp_parameters_are_accepted(
    mail: Mapping[str, str | None], rcpt: Mapping[str, str | None]
) -> None:
    conn, _ = greeted(FakeServer())
    conn.mail("a@example.com", mail)
    conn.rcpt("b@example.com", rcpt)
    lines = conn.data_to_send().decode().split("\r\n")
    for line, parameters in ((lines[0], mail), (lines[1], rcpt)):
        words = line.split(" ")[2:]
        assert words == [k if v is None else f"{k}={v}" for k, v in parameters.items()]


@pytest.mark.parametrize("kinds", [[], ["bare-lf", "crlf"]])
def test_hostile_kinds_are_checked(kinds: list[str]) -> None:
    with pytest.raises(ValueError, match="kinds"):
        strategies.hostile_replies(kinds=kinds)


@pytest.mark.parametrize(("status_classes", "max_lines"), [((), 1), ((1, 2), 1), ((2,), 0)])
def test_reply_options_are_checked(status_classes: tuple[int, ...], max_lines: int) -> None:
    with pytest.raises(ValueError, match="status_classes"):
        strategies.replies(status_classes=status_classes, max_lines=max_lines)


def canonical(body: bytes) -> bytes:
    """What a server receives for *body*: every line end CRLF, and a final one."""
    lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return lines if lines.endswith(b"\r\n") or not lines else lines + b"\r\n"


@few_examples
@given(strategies.message_bodies(eight_bit=True), st.booleans())
def test_message_bodies_arrive_intact(body: bytes, chunking: bool) -> None:
    keywords = ("PIPELINING", "8BITMIME", "CHUNKING") if chunking else ("8BITMIME",)
    fake = FakeServer(keywords=keywords)
    result = send(fake, "a@example.com", ["b@example.com"], body)
    assert result.outcome is MessageOutcome.ACCEPTED
    if not chunking:
        assert fake.messages[0].content == canonical(body)
    assert canonical(fake.messages[0].content) == canonical(body)


@few_examples
@given(strategies.message_bodies())
def test_message_bodies_are_seven_bit_unless_asked(body: bytes) -> None:
    assert b"\x00" not in body
    assert smtp_proto.detect_body(body) is smtp_proto.Body.SEVEN_BIT


# -- the FakeServer, byte by byte ----------------------------------------------------------

SESSION = [
    (b"MAIL FROM:<a@b>\r\n", [503]),
    (b"EHLO c\r\n", [250]),
    (b"HELO c\r\n", [250]),
    (b"LHLO c\r\n", [500]),
    (b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nXYZZY\r\nSTARTTLS\r\n", [250, 250, 252, 214, 502, 502]),
    (b"RCPT TO:<a@b>\r\nDATA\r\n", [503, 503]),
    (b"MAIL FROM:<s@b> SIZE=10\r\nMAIL FROM:<s@b>\r\nDATA\r\n", [250, 503, 554]),
    (b"RCPT TO:<no@b>\r\nRCPT TO:<yes@b>\r\nDATA\r\n", [550, 250, 354]),
    (b"..a\r\nb\r\n.\r\n", [250]),
    (b"MAIL FROM:<s@b>\r\nRCPT TO:<yes@b>\r\nDATA\r\n.\r\n", [250, 250, 354, 250]),
    (b"MAIL FROM:<>\r\nRCPT TO:<yes@b>\r\nBDAT 5\r\nhelloBDAT 2 LAST\r\n!\n", [250] * 4),
    (b"BDAT x\r\n", [501]),
    (b"QUIT\r\n", [221]),
    (b"NOOP\r\n", []),
]


def test_a_session_in_bytes() -> None:
    fake = FakeServer()
    fake.refuse_recipient("no@b")
    assert fake.connect() == b"220 fake.example ESMTP\r\n"
    for data, expected in SESSION:
        assert codes(fake.receive(data)) == expected, data
    assert fake.closed
    assert fake.messages == [
        ReceivedMessage(sender="s@b", recipients=("yes@b",), content=b".a\r\nb\r\n"),
        ReceivedMessage(sender="s@b", recipients=("yes@b",), content=b""),
        ReceivedMessage(sender="", recipients=("yes@b",), content=b"hello!\n"),
    ]
    assert fake.commands[:3] == ["MAIL FROM:<a@b>", "EHLO c", "HELO c"]


def test_a_session_one_byte_at_a_time() -> None:
    whole = FakeServer()
    whole.refuse_recipient("no@b")
    whole.connect()
    expected = b"".join(whole.receive(data) for data, _ in SESSION)
    split = FakeServer()
    split.refuse_recipient("no@b")
    split.connect()
    transcript = b"".join(data for data, _ in SESSION)
    assert b"".join(split.receive(transcript[i : i + 1]) for i in range(len(transcript))) == (
        expected
    )
    assert split.messages == whole.messages
    assert split.commands == whole.commands


def test_chunks_after_a_failed_chunk_fail() -> None:
    fake = FakeServer()
    fake.refuse_recipient("no@b")
    fake.connect()
    replies = fake.receive(
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<no@b>\r\nBDAT 2\r\nabBDAT 1\r\ncBDAT 1 LAST\r\nd"
    )
    assert codes(replies) == [250, 250, 550, 503, 503, 503]
    assert fake.messages == []


def test_a_refused_greeting_allows_only_quit() -> None:
    fake = FakeServer(greeting=b"554 5.3.2 no service\r\n")
    assert fake.connect() == b"554 5.3.2 no service\r\n"
    assert codes(fake.receive(b"EHLO c\r\nMAIL FROM:<a@b>\r\nQUIT\r\n")) == [503, 503, 221]


def test_lmtp_answers_per_recipient() -> None:
    fake = FakeServer(lmtp=True, hostname="lmtp.example", keywords=["PIPELINING"])
    fake.refuse_delivery("full@b", code=452, text="4.2.2 over quota")
    fake.connect()
    assert fake.receive(b"LHLO c\r\n") == b"250-lmtp.example\r\n250 PIPELINING\r\n"
    assert codes(fake.receive(b"EHLO c\r\nHELO c\r\n")) == [500, 500]
    replies = fake.receive(b"MAIL FROM:<a@b>\r\nRCPT TO:<x@b>\r\nRCPT TO:<full@b>\r\nDATA\r\n")
    assert codes(replies) == [250, 250, 250, 354]
    assert codes(fake.receive(b"hi\r\n.\r\n")) == [250, 452]
    assert fake.messages[0].recipients == ("x@b", "full@b")


def test_lmtp_with_the_client() -> None:
    fake = FakeServer(lmtp=True)
    fake.refuse_delivery("full@example.com")
    conn, _ = greeted(fake)
    events: list[Event] = []
    transaction = conn.send_message("a@example.com", ["x@example.com", "full@example.com"], b"x")
    pump(conn, fake, events, transaction)
    assert transaction.result.outcome is MessageOutcome.PARTIALLY_ACCEPTED
    assert [r.delivered for r in transaction.result.recipients] == [True, False]


def test_starttls_in_memory() -> None:
    fake = FakeServer(keywords=["STARTTLS", "PIPELINING"])
    fake.connect()
    assert b"250-STARTTLS" in fake.receive(b"EHLO c\r\n")
    # Bytes pipelined behind STARTTLS are plain text an attacker may have injected: dropped.
    assert fake.receive(b"STARTTLS\r\nNOOP\r\n") == b"220 2.0.0 ready to start TLS\r\n"
    assert fake.tls_pending
    assert fake.commands[-1] == "STARTTLS"
    assert codes(fake.receive(b"MAIL FROM:<a@b>\r\n")) == [503]
    assert (fake.tls_active, fake.tls_pending) == (True, False)
    assert fake.receive(b"EHLO c\r\n") == b"250-fake.example\r\n250 PIPELINING\r\n"
    assert codes(fake.receive(b"STARTTLS\r\n")) == [503]


def test_starttls_with_the_client() -> None:
    fake = FakeServer(keywords=["STARTTLS"])
    conn, events = greeted(fake)
    conn.starttls()
    pump(conn, fake, events)
    assert isinstance(events[-1], smtp_proto.StartTlsReady)
    conn.tls_established()
    conn.ehlo("client.example")
    pump(conn, fake, events)
    assert conn.features is not None
    assert not conn.features.starttls


def test_scripted_replies_have_their_effect() -> None:
    fake = FakeServer()
    fake.reply_to("rcpt", b"251 2.1.5 will forward\r\n")
    fake.reply_to(MESSAGE, b"554 5.7.1 looks like spam\r\n")
    fake.reply_to("BDAT", b"452 4.3.1 no room\r\n")
    fake.connect()
    replies = fake.receive(b"EHLO c\r\nMAIL FROM:a@b\r\nRCPT TO:<x@b>\r\nDATA\r\n.\r\n")
    assert codes(replies) == [250, 250, 251, 354, 554]
    assert fake.messages == [ReceivedMessage(sender="", recipients=("x@b",), content=b"")]
    assert codes(fake.receive(b"MAIL FROM:<a@b>\r\nRCPT TO:<x@b>\r\nBDAT 1\r\nx")) == [
        250,
        251,
        452,
    ]


def test_refused_senders() -> None:
    fake = FakeServer()
    fake.refuse_sender("bad@b")
    fake.connect()
    assert codes(fake.receive(b"EHLO c\r\nMAIL FROM:<bad@b>\r\nMAIL FROM:<ok@b>\r\n")) == [
        250,
        550,
        250,
    ]
    fake.refuse_sender(code=451, text="4.3.0 later")
    fake.connect()
    assert fake.receive(b"EHLO c\r\nMAIL FROM:<ok@b>\r\n").endswith(b"451 4.3.0 later\r\n")


def test_a_421_reply_closes() -> None:
    fake = FakeServer()
    fake.reply_to("NOOP", b"421 4.4.2 idle too long\r\n")
    fake.connect()
    assert codes(fake.receive(b"EHLO c\r\nNOOP\r\nNOOP\r\n")) == [250, 421]
    assert fake.closed


@pytest.mark.parametrize(
    ("command", "reply", "expected"),
    [("MAIL", None, [250]), ("RCPT", b"421 4.3.0 bye\r\n", [250, 250, 421])],
)
def test_close_after(command: str, reply: bytes | None, expected: list[int]) -> None:
    fake = FakeServer()
    if reply is None:
        fake.close_after(command, reply=None)
    else:
        fake.close_after(command)
    fake.connect()
    assert codes(fake.receive(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@b>\r\nQUIT\r\n")) == (
        expected
    )
    assert fake.closed
    assert fake.receive(b"NOOP\r\n") == b""


def test_close_after_with_the_client() -> None:
    fake = FakeServer()
    fake.close_after("RCPT")
    result = send(fake, "a@example.com", ["x@example.com"], b"x")
    assert result.outcome is MessageOutcome.FAILED
    assert result.message_reply is not None
    assert result.message_reply.code == 421


def test_refusals_with_the_client() -> None:
    fake = FakeServer()
    fake.refuse_recipient("nobody@example.com", code=450, text="4.2.1 busy")
    result = send(fake, "a@example.com", ["nobody@example.com", "x@example.com"], b"Hi")
    assert result.outcome is MessageOutcome.ACCEPTED
    assert [r.accepted for r in result.recipients] == [False, True]
    assert result.recipients[0].transient
    # CHUNKING is announced, so BDAT carried the content exactly.
    assert fake.messages[0].content == b"Hi"


def test_stall_after() -> None:
    fake = FakeServer()
    fake.stall_after("RCPT")
    conn, events = greeted(fake)
    transaction = conn.send_message("a@example.com", ["x@example.com"], b"x")
    pump(conn, fake, events, transaction)
    assert fake.stalled
    assert not transaction.done
    # The client waits for the reply to RCPT: the transport must time out.
    assert conn.timeout == conn.timeouts.rcpt
    assert fake.receive(b".\r\nQUIT\r\n") == b""


# -- on loopback ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def refusing_fake() -> FakeServer:
    fake = FakeServer()
    fake.refuse_recipient("nobody@example.com")
    return fake


def check_refusal(fake: FakeServer, result: smtp_proto.TransactionResult) -> None:
    assert [r.accepted for r in result.recipients] == [False, True]
    assert result.outcome is MessageOutcome.ACCEPTED
    assert fake.messages[0].recipients == ("x@example.com",)
    # CHUNKING is announced, so BDAT carried the content exactly.
    assert fake.messages[0].content == b"Hi"


RECIPIENTS = ["nobody@example.com", "x@example.com"]


def test_sync_client_refusal() -> None:
    fake = refusing_fake()
    with (
        serve_loopback(fake) as (host, port),
        sync_transport.Client(host, port, tls=TlsPolicy.NONE) as client,
    ):
        result = client.send_message("a@example.com", RECIPIENTS, b"Hi")
    check_refusal(fake, result)
    assert fake.commands[-1] == "QUIT"


def test_sync_client_stall() -> None:
    fake = FakeServer()
    fake.stall_after("MAIL")
    with serve_loopback(fake) as (host, port):
        client = sync_transport.Client(host, port, tls=TlsPolicy.NONE, timeouts=SMALL_TIMEOUTS)
        with client, pytest.raises(TimeoutError):
            client.send_message("a@example.com", ["x@example.com"], b"Hi")
    assert fake.stalled


def test_asyncio_client_refusal_and_stall() -> None:
    fake = refusing_fake()

    async def main(host: str, port: int) -> smtp_proto.TransactionResult:
        async with asyncio_transport.Client(host, port, tls=TlsPolicy.NONE) as client:
            return await client.send_message("a@example.com", RECIPIENTS, b"Hi")  # type: ignore[no-any-return]

    with serve_loopback(fake) as address:
        check_refusal(fake, asyncio.run(main(*address)))

    stalling = FakeServer()
    stalling.stall_after("RCPT")

    async def stall(host: str, port: int) -> None:
        async with asyncio_transport.Client(
            host, port, tls=TlsPolicy.NONE, timeouts=SMALL_TIMEOUTS
        ) as client:
            await client.send_message("a@example.com", ["x@example.com"], b"Hi")

    with serve_loopback(stalling) as address, pytest.raises(TimeoutError):
        asyncio.run(stall(*address))


def test_trio_client_refusal_and_stall() -> None:
    fake = refusing_fake()

    async def main(host: str, port: int) -> smtp_proto.TransactionResult:
        async with trio_transport.Client(host, port, tls=TlsPolicy.NONE) as client:
            return await client.send_message("a@example.com", RECIPIENTS, b"Hi")  # type: ignore[no-any-return]

    with serve_loopback(fake) as address:
        check_refusal(fake, trio.run(main, *address))

    stalling = FakeServer()
    stalling.stall_after(MESSAGE)

    async def stall(host: str, port: int) -> None:
        async with trio_transport.Client(
            host, port, tls=TlsPolicy.NONE, timeouts=SMALL_TIMEOUTS
        ) as client:
            await client.send_message("a@example.com", ["x@example.com"], b"Hi")

    with serve_loopback(stalling) as address, pytest.raises(TimeoutError):
        trio.run(stall, *address)


def test_implicit_tls(certificates: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server, client = certificates
    fake = FakeServer()
    with serve_loopback(fake, ssl_context=server, implicit_tls=True) as (host, port):
        # A client that does not trust the certificate fails; the server keeps listening.
        with pytest.raises(ssl.SSLError):
            sync_transport.Client(host, port, tls=TlsPolicy.IMPLICIT)
        with sync_transport.Client(
            host, port, tls=TlsPolicy.IMPLICIT, ssl_context=client
        ) as session:
            assert session.tls_active
            session.noop()
    assert fake.commands[-2:] == ["NOOP", "QUIT"]


def test_starttls(certificates: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server, client = certificates
    fake = FakeServer(keywords=["STARTTLS", "PIPELINING"])
    with (
        serve_loopback(fake, ssl_context=server) as (host, port),
        sync_transport.Client(host, port, ssl_context=client) as session,
    ):
        assert session.tls_active
        result = session.send_message("a@example.com", ["x@example.com"], b"Hi")
    assert result.outcome is MessageOutcome.ACCEPTED
    assert fake.tls_active
    assert fake.commands[:3] == ["EHLO [127.0.0.1]", "STARTTLS", "EHLO [127.0.0.1]"]


def test_starttls_without_a_context_closes() -> None:
    fake = FakeServer(keywords=["STARTTLS"])
    with serve_loopback(fake) as (host, port), pytest.raises((OSError, smtp_proto.ConnectionLost)):
        sync_transport.Client(host, port)


def test_broken_handshakes_close_the_connection(
    certificates: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, _ = certificates
    fake = FakeServer(keywords=["STARTTLS"])
    with serve_loopback(fake, ssl_context=server) as address:
        with socket.create_connection(address, timeout=5) as sock:
            sock.recv(100)
            sock.sendall(b"STARTTLS\r\n")
            assert sock.recv(100).startswith(b"220")
            sock.sendall(b"not a TLS handshake\r\n")
            assert closed_by_peer(sock)
        # The next connection is served.
        with socket.create_connection(address, timeout=5) as sock:
            assert sock.recv(100).startswith(b"220")


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer closes *sock* (after perhaps a TLS alert) within a few reads."""
    for _ in range(10):
        try:
            if not sock.recv(1000):
                return True
        except ConnectionResetError:
            return True
    return False


def test_a_connection_open_at_exit_is_closed() -> None:
    with serve_loopback(FakeServer()) as address:
        sock = socket.create_connection(address, timeout=5)
        assert sock.recv(100).startswith(b"220")
    with sock:
        assert closed_by_peer(sock)


def test_implicit_tls_needs_a_context() -> None:
    with pytest.raises(ValueError, match="ssl_context"):
        serve_loopback(FakeServer(), implicit_tls=True).__enter__()


# -- the package ---------------------------------------------------------------------------


def test_the_package_needs_no_hypothesis() -> None:
    # Only the strategies module needs Hypothesis; the fake server works without it, and
    # the engine never imports this package at all.
    code = (
        "import sys, smtp_proto; assert 'smtp_proto.testing' not in sys.modules; "
        "import smtp_proto.testing; assert 'hypothesis' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_all_is_complete() -> None:
    for module in (smtp_proto.testing, strategies):
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and getattr(value, "__module__", module.__name__).startswith(module.__name__)
            and not isinstance(value, type(smtp_proto))
        }
        assert public <= set(module.__all__), module
        assert all(hasattr(module, name) for name in module.__all__)


@pytest.mark.parametrize(("reply", "expected"), [(b"235 2.7.0 ok", True), (b"535 5.7.8 no", False)])
def test_scripted_auth(reply: bytes, expected: bool) -> None:
    fake = FakeServer(keywords=["AUTH PLAIN"])
    fake.reply_to("AUTH", reply + b"\r\n")
    conn, events = greeted(fake)
    conn.login("user", "secret", allow_without_tls=True)
    pump(conn, fake, events)
    assert isinstance(events[-1], smtp_proto.AuthSucceeded if expected else smtp_proto.AuthFailed)
    assert conn.authenticated is expected
    assert fake.commands[-1].startswith("AUTH PLAIN ")
