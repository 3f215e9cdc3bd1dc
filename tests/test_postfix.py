"""The private Postfix of ``postfix.py`` behaves as the transports' tests need it to.

These tests pin down the server, not the client: what it announces, what it delivers and
what it refuses, checked with the standard library's smtplib, which is known to work. One
test drives the engine itself over a plain socket, as the simplest possible transport would.
When the transports exist, their tests run against the same fixture.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator

import pytest

# The fixture "postfix": pytest finds it by name in this module's namespace.
from postfix import (  # noqa: F401
    DEFERRED_RECIPIENT,
    MAIL_DOMAIN,
    MESSAGE_SIZE_LIMIT,
    REFUSED_RECIPIENT,
    PostfixServer,
    postfix_server,
)

from smtp_proto import (
    NEED_DATA,
    PAUSED,
    ChunkAccepted,
    ClientConnection,
    ConnectionClosed,
    EhloFeatures,
    Event,
    Greeting,
    MessageAccepted,
    RecipientAccepted,
    Reply,
    SenderAccepted,
    StartTlsReady,
)

SENDER = "sender@client.test"
RECIPIENT = f"alice@{MAIL_DOMAIN}"
# How long any single read may take; a healthy local Postfix answers in milliseconds.
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def empty_maildir(postfix: PostfixServer) -> Iterator[None]:
    # Each test counts only the messages it sent.
    postfix.clear()
    yield
    postfix.clear()


def stored(sent: bytes) -> bytes:
    # Postfix stores lines with LF endings, after headers of its own (see messages()).
    return sent.replace(b"\r\n", b"\n")


def test_ehlo_announces_what_the_transports_use(postfix: PostfixServer) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, timeout=TIMEOUT) as client:
        code, _ = client.ehlo("client.test")
        assert code == 250
        for keyword in ("pipelining", "chunking", "smtputf8", "8bitmime", "dsn", "starttls"):
            assert client.has_extn(keyword), keyword
        assert client.esmtp_features["size"] == str(MESSAGE_SIZE_LIMIT)

        client.starttls(context=postfix.client_context())
        client.ehlo("client.test")
        # Everything but STARTTLS itself is still offered inside TLS.
        assert not client.has_extn("starttls")
        for keyword in ("pipelining", "chunking", "smtputf8", "8bitmime", "dsn", "size"):
            assert client.has_extn(keyword), keyword


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_message_over_starttls_is_delivered(postfix: PostfixServer, host: str) -> None:
    # The server certificate names both; smtplib verifies against the name it connected to.
    recipient = f"jos\N{LATIN SMALL LETTER E WITH ACUTE}@{MAIL_DOMAIN}"
    message = (
        f"From: {SENDER}\r\n"
        f"To: {recipient}\r\n"
        "Subject: =?utf-8?q?caf=C3=A9?=\r\n"
        "\r\n"
        "8-bit content: caf\N{LATIN SMALL LETTER E WITH ACUTE}\r\n"
        ".a line that starts with a dot\r\n"
    ).encode()
    with smtplib.SMTP(host, postfix.port, timeout=TIMEOUT) as client:
        client.starttls(context=postfix.client_context())
        refused = client.sendmail(
            SENDER, [recipient], message, mail_options=["SMTPUTF8", "BODY=8BITMIME"]
        )
        assert refused == {}
    [delivered] = postfix.wait_for_messages(1)
    assert delivered.endswith(stored(message))
    assert f"Delivered-To: {recipient}\n".encode() in delivered
    assert b"with UTF8SMTPS" in delivered  # Postfix's Received: SMTPUTF8 over TLS


def test_server_certificate_is_only_trusted_through_the_test_ca(postfix: PostfixServer) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=ssl.create_default_context())


def test_recipients_are_refused_permanently_and_temporarily(postfix: PostfixServer) -> None:
    message = f"From: {SENDER}\r\nSubject: refusals\r\n\r\nbody\r\n".encode()
    with smtplib.SMTP(postfix.host, postfix.port, timeout=TIMEOUT) as client:
        refused = client.sendmail(
            SENDER, [REFUSED_RECIPIENT, RECIPIENT, DEFERRED_RECIPIENT], message
        )
    assert refused.keys() == {REFUSED_RECIPIENT, DEFERRED_RECIPIENT}
    assert refused[REFUSED_RECIPIENT][0] == 550
    assert refused[REFUSED_RECIPIENT][1].startswith(b"5.1.1 ")
    assert refused[DEFERRED_RECIPIENT][0] == 450
    assert refused[DEFERRED_RECIPIENT][1].startswith(b"4.2.0 ")
    # The accepted recipient alone gets the message.
    [delivered] = postfix.wait_for_messages(1)
    assert f"Delivered-To: {RECIPIENT}\n".encode() in delivered
    assert REFUSED_RECIPIENT.encode() not in delivered


def test_oversize_messages_are_refused(postfix: PostfixServer) -> None:
    line = b"x" * 998 + b"\r\n"
    oversize = b"Subject: too big\r\n\r\n" + line * (MESSAGE_SIZE_LIMIT // len(line) + 1)
    with smtplib.SMTP(postfix.host, postfix.port, timeout=TIMEOUT) as client:
        # Declared: smtplib sends SIZE= with MAIL, and the server refuses at once.
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:
            client.sendmail(SENDER, [RECIPIENT], oversize)
        assert declared.value.smtp_code == 552
        client.rset()

        # Undeclared: the server reads the whole content and then refuses it.
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(RECIPIENT)[0] == 250
        code, text = client.data(oversize)
        assert (code, text[:6]) == (552, b"5.3.4 ")

        # The session goes on: a small message still gets through, and it alone arrives.
        small = b"Subject: small\r\n\r\nfits\r\n"
        assert client.sendmail(SENDER, [RECIPIENT], small) == {}
    [delivered] = postfix.wait_for_messages(1)
    assert delivered.endswith(stored(small))


def converse(sock: socket.socket, connection: ClientConnection) -> list[Event]:
    # The smallest transport: write, pull events, read, until the engine waits on nothing
    # or hands over for the TLS handshake.
    events: list[Event] = []
    while True:
        sock.sendall(connection.data_to_send())
        event = connection.next_event()
        if event is PAUSED:
            return events
        if event is NEED_DATA:
            if not connection.commands_in_flight:
                return events
            connection.receive_data(sock.recv(65536))
            continue
        events.append(event)
        if isinstance(event, ConnectionClosed):
            return events


def test_engine_sends_a_pipelined_chunked_message_over_starttls(postfix: PostfixServer) -> None:
    content = (
        b"From: sender@client.test\r\n"
        b"Subject: chunked\r\n"
        b"\r\n"
        b"A lone dot follows, and BDAT needs no dot-stuffing:\r\n"
        b".\r\n"
        b"..two dots stay two\r\n"
        b"8-bit: caf\xc3\xa9\r\n"
    )
    connection = ClientConnection(peer_is_loopback=True)
    with socket.create_connection((postfix.host, postfix.port), timeout=TIMEOUT) as plain:
        [greeting] = converse(plain, connection)
        assert isinstance(greeting, Greeting)
        connection.ehlo("client.test")
        [features] = converse(plain, connection)
        assert isinstance(features, EhloFeatures)
        assert features.starttls

        connection.starttls()
        assert [type(event) for event in converse(plain, connection)] == [StartTlsReady]
        sock = postfix.client_context().wrap_socket(plain, server_hostname="localhost")
    with sock:
        connection.tls_established()
        connection.ehlo("client.test")
        [features] = converse(sock, connection)
        assert isinstance(features, EhloFeatures)
        assert features.pipelining
        assert features.chunking
        assert features.max_message_size == MESSAGE_SIZE_LIMIT

        # The whole transaction, in two chunks split mid-line, goes out in one write.
        connection.mail(SENDER)
        connection.rcpt(RECIPIENT)
        connection.bdat(content[:50])
        connection.bdat(content[50:], last=True)
        outgoing = connection.data_to_send()
        assert outgoing.startswith(b"MAIL FROM:")
        assert outgoing.endswith(content[50:])
        sock.sendall(outgoing)
        events = converse(sock, connection)
        assert [type(event) for event in events] == [
            SenderAccepted,
            RecipientAccepted,
            ChunkAccepted,
            MessageAccepted,
        ]

        connection.quit()
        [goodbye] = converse(sock, connection)
        assert isinstance(goodbye, Reply)
        assert goodbye.code == 221

    [delivered] = postfix.wait_for_messages(1)
    assert delivered.endswith(stored(content))
    # Postfix noticed nothing wrong with how the engine pipelined.
    assert "improper command pipelining" not in postfix.log()
