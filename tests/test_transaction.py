# The tests assert a property, act, then assert it again; mypy's narrowing of the first
# assertion would call the second one unreachable.
# mypy: disable-error-code="unreachable"
"""The one-call mail transaction, against an in-memory server."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from peer import FakeServer, connect, pump

from smtp_proto import (
    NEED_DATA,
    Body,
    ClientConnection,
    Event,
    Limits,
    LocalProtocolError,
    MailTransaction,
    MessageOutcome,
    Recipient,
    ServerCapabilityError,
)

NO_PIPELINING = ("CHUNKING", "8BITMIME", "SIZE 1000000", "DSN")
DATA_ONLY = ("PIPELINING", "8BITMIME", "SIZE 1000000", "DSN")


def refuse(*addresses: str, code: bytes = b"550 5.1.1") -> Callable[[str], bytes]:
    def answer(address: str) -> bytes:
        return code + b" no\r\n" if address in addresses else b"250 2.1.5 ok\r\n"

    return answer


def send(
    server: FakeServer, *args: object, **kwargs: object
) -> tuple[MailTransaction, ClientConnection, list[Event]]:
    conn, events = connect(server)
    tx = conn.send_message(*args, **kwargs)  # type: ignore[arg-type]
    pump(conn, server, events, tx)
    assert tx.done
    return tx, conn, events


@pytest.mark.parametrize("keywords", [DATA_ONLY, ("8BITMIME", "SIZE 1000000")])
def test_data_with_one_refused_recipient(keywords: tuple[str, ...]) -> None:
    server = FakeServer(keywords=keywords, rcpt=refuse("nobody@example.net"))
    tx, conn, _ = send(
        server,
        "alice@example.org",
        ["bob@example.net", "nobody@example.net", "carol@example.net"],
        b"Subject: hi\n\n.dot\nbody",
    )
    result = tx.result
    assert result.outcome is MessageOutcome.ACCEPTED
    assert [r.address for r in result.accepted_recipients] == [
        "bob@example.net",
        "carol@example.net",
    ]
    [refused] = result.refused_recipients
    assert refused.address == "nobody@example.net"
    assert refused.reply is not None
    assert refused.reply.code == 550
    assert refused.message_reply is None  # the message's reply is not this recipient's
    assert not refused.transient
    assert [r.address for r in result.delivered_recipients] == [
        "bob@example.net",
        "carol@example.net",
    ]
    assert server.messages == [b"Subject: hi\r\n\r\n.dot\r\nbody\r\n"]
    assert server.commands[1] == "MAIL FROM:<alice@example.org> SIZE=25"
    assert server.commands[-1] == "DATA"
    if "PIPELINING" in keywords:
        assert server.writes == 3  # EHLO; the envelope with DATA; the content
    else:
        assert server.writes == 7
    assert conn.can_start_transaction


def test_bdat_waits_for_the_recipients_then_chunks() -> None:
    server = FakeServer()
    tx, _, _ = send(
        server, "a@example.org", ["b@example.org"], b"line one\nline two\r\n", chunk_size=7
    )
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.messages == [b"line one\r\nline two\r\n"]
    bdats = [c for c in server.commands if c.startswith("BDAT")]
    assert bdats[-1].endswith("LAST")
    assert len(bdats) == 3
    assert "DATA" not in server.commands
    assert server.writes == 3  # EHLO; MAIL and RCPT; the chunks, pipelined


def test_one_of_two_recipients_refused_gets_no_message_reply() -> None:
    server = FakeServer(rcpt=refuse("nobody@example.net"))
    tx, _, _ = send(server, "a@example.org", ["nobody@example.net", "b@example.net"], b"hi\r\n")
    refused, accepted = tx.result.recipients
    assert refused.message_reply is None
    assert accepted.message_reply is not None
    assert accepted.message_reply.code == 250


def test_content_waits_for_the_recipients_by_default() -> None:
    # Even a one-octet message is not pipelined with the envelope unless asked for.
    server = FakeServer()
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], b"x")
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.writes == 3  # EHLO; MAIL and RCPT; BDAT
    server = FakeServer()
    conn, events = connect(server)
    tx = MailTransaction(conn, "a@example.org", ["b@example.org"], b"x")
    pump(conn, server, events, tx)
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.writes == 3
    assert server.commands[1:] == [
        "MAIL FROM:<a@example.org> SIZE=1",
        "RCPT TO:<b@example.org>",
        "BDAT 1 LAST",
    ]


def test_small_content_may_travel_with_the_envelope() -> None:
    server = FakeServer()
    tx, _, _ = send(
        server, "a@example.org", ["b@example.org"], b"hi\r\n", pipeline_content_up_to=4096
    )
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.writes == 2  # EHLO; everything else in one write
    assert server.commands[-1] == "BDAT 4 LAST"


def test_binary_content_goes_out_exactly() -> None:
    server = FakeServer(keywords=("PIPELINING", "CHUNKING", "BINARYMIME", "8BITMIME"))
    content = b"\x00\x01\r\n.\n\xff"
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], content, body_type=Body.BINARY_MIME)
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.messages == [content]
    assert server.commands[1] == "MAIL FROM:<a@example.org> BODY=BINARYMIME"
    # Binary content is sent as it is, so its declared size is its length: the bare LF
    # counts once.
    server = FakeServer(keywords=("PIPELINING", "CHUNKING", "BINARYMIME", "SIZE 100"))
    send(server, "a@example.org", ["b@example.org"], content, body_type=Body.BINARY_MIME)
    assert server.commands[1] == "MAIL FROM:<a@example.org> SIZE=7 BODY=BINARYMIME"


@pytest.mark.parametrize("keywords", [DATA_ONLY, NO_PIPELINING, ("PIPELINING", "CHUNKING")])
def test_every_recipient_refused_sends_no_content(keywords: tuple[str, ...]) -> None:
    server = FakeServer(
        keywords=keywords,
        rcpt=refuse("x@example.org", "y@example.org"),
        data=lambda: b"554 5.5.1 no valid recipients\r\n",
    )
    tx, conn, _ = send(
        server, "a@example.org", ["x@example.org", "y@example.org"], b"secret content"
    )
    result = tx.result
    assert result.outcome is MessageOutcome.REJECTED
    assert result.accepted_recipients == ()
    assert server.messages == []
    assert not any(c.startswith("BDAT") for c in server.commands)
    # The server accepted MAIL, so its transaction is cleared for the next message.
    assert server.commands[-1] == "RSET"
    assert conn.can_start_transaction


def test_pipelined_data_accepted_without_recipients_gets_only_the_dot() -> None:
    server = FakeServer(keywords=DATA_ONLY, rcpt=refuse("x@example.org"))
    server.message = lambda _: b"554 5.5.1 no recipients\r\n"
    tx, _, _ = send(server, "a@example.org", ["x@example.org"], b"secret content")
    assert tx.result.outcome is MessageOutcome.REJECTED
    assert server.messages == [b""]


@pytest.mark.parametrize("keywords", [DATA_ONLY, NO_PIPELINING])
def test_refused_sender(keywords: tuple[str, ...]) -> None:
    server = FakeServer(keywords=keywords, mail=lambda _: b"550 5.7.1 not you\r\n")
    server.rcpt = lambda _: b"503 5.5.1 need MAIL\r\n"
    server.data = lambda: b"503 5.5.1 need RCPT\r\n"
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], b"x")
    result = tx.result
    assert result.outcome is MessageOutcome.REJECTED
    assert result.sender_reply is not None
    assert result.sender_reply.code == 550
    assert "RSET" not in server.commands  # the server holds no transaction
    if keywords is NO_PIPELINING:
        assert result.recipients[0].reply is None
        assert server.commands[-1].startswith("MAIL")


def test_refused_data_resets() -> None:
    server = FakeServer(keywords=DATA_ONLY, data=lambda: b"451 4.3.0 later\r\n")
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], b"x")
    result = tx.result
    assert result.outcome is MessageOutcome.REJECTED
    assert result.message_reply is not None
    assert result.message_reply.is_transient
    assert result.recipients[0].transient
    assert server.commands[-1] == "RSET"


def test_refused_chunk_stops_the_content_and_resets() -> None:
    server = FakeServer(keywords=("CHUNKING",), bdat=lambda _: b"552 5.3.4 too big\r\n")
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], b"0123456789", chunk_size=3)
    assert tx.result.outcome is MessageOutcome.REJECTED
    assert [c for c in server.commands if c.startswith("BDAT")] == ["BDAT 3"]
    assert server.commands[-1] == "RSET"


def test_a_refused_chunk_before_the_last_resets_even_when_all_were_sent() -> None:
    # Four chunks go out together; the server refuses the third. The refusal answers that
    # chunk, not the end of the message, so the server may still hold the transaction.
    answers = iter([b"250 2.0.0 ok\r\n", b"250 2.0.0 ok\r\n", b"552 5.3.4 too big\r\n"])
    server = FakeServer(bdat=lambda _: next(answers))
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], b"0123456789", chunk_size=3)
    assert tx.result.outcome is MessageOutcome.REJECTED
    assert tx.result.message_reply is not None
    assert tx.result.message_reply.code == 552
    assert [c for c in server.commands if c.startswith("BDAT")] == [
        "BDAT 3",
        "BDAT 3",
        "BDAT 3",
        "BDAT 1 LAST",
    ]
    assert server.commands[-1] == "RSET"


def test_a_failure_never_resets_a_later_transaction() -> None:
    # The first message's first chunk is refused after the second message has been pipelined
    # behind it: an RSET now would destroy the second transaction, not the first.
    answers = iter([b"552 5.3.4 too big\r\n"])
    server = FakeServer(bdat=lambda _: next(answers, b"250 2.0.0 chunk ok\r\n"))
    conn, events = connect(server)
    first = conn.send_message(
        "a@example.org", ["b@example.org"], b"0123456789", chunk_size=4, pipeline_content_up_to=64
    )
    assert conn.can_start_transaction
    second = conn.send_message("a@example.org", ["c@example.org"], b"x", pipeline_content_up_to=64)
    pump(conn, server, events)
    assert first.result.outcome is MessageOutcome.REJECTED
    assert second.result.outcome is MessageOutcome.ACCEPTED
    assert "RSET" not in server.commands


def test_content_rejected_at_the_end() -> None:
    server = FakeServer(message=lambda _: b"554 5.7.1 spam\r\n")
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], b"buy now")
    result = tx.result
    assert result.outcome is MessageOutcome.REJECTED
    assert result.recipients[0].accepted
    assert not result.recipients[0].delivered
    assert "RSET" not in server.commands


def test_lmtp_mixed_results() -> None:
    def per_recipient(text: str) -> bytes:
        return (
            b"452 4.2.2 over quota\r\n" if text.startswith("two@") else b"250 2.0.0 delivered\r\n"
        )

    server = FakeServer(lmtp=True, keywords=DATA_ONLY, message=per_recipient)
    tx, _, _ = send(
        server,
        "a@example.org",
        ["one@example.org", "two@example.org", "three@example.org"],
        b"hi\r\n",
    )
    result = tx.result
    assert result.outcome is MessageOutcome.PARTIALLY_ACCEPTED
    assert [r.delivered for r in result.recipients] == [True, False, True]
    assert result.recipients[1].transient
    # The transaction's message reply is the first of the per-recipient ones.
    assert result.message_reply is not None
    assert result.message_reply.code == 250
    assert [r.message_reply.code for r in result.recipients if r.message_reply] == [250, 452, 250]


@pytest.mark.parametrize("keywords", [DATA_ONLY, ("PIPELINING", "CHUNKING")])
@pytest.mark.parametrize(
    ("code", "outcome"), [(b"250", MessageOutcome.ACCEPTED), (b"550", MessageOutcome.REJECTED)]
)
def test_lmtp_all_alike(keywords: tuple[str, ...], code: bytes, outcome: MessageOutcome) -> None:
    server = FakeServer(lmtp=True, keywords=keywords, message=lambda _: code + b" x\r\n")
    tx, _, _ = send(server, "a@example.org", ["one@example.org", "two@example.org"], b"hi\r\n")
    assert tx.result.outcome is outcome
    assert len(tx.result.delivered_recipients) == (2 if outcome is MessageOutcome.ACCEPTED else 0)


# -- failures of the connection ------------------------------------------------------------------


def test_421_fails_the_transaction() -> None:
    server = FakeServer(rcpt=lambda _: b"421 4.3.2 going down\r\n")
    tx, _conn, events = send(server, "a@example.org", ["b@example.org"], b"x")
    assert tx.result.outcome is MessageOutcome.FAILED
    assert tx.result.message_reply is not None
    assert tx.result.message_reply.code == 421
    assert type(events[-1]).__name__ == "ServiceClosing"


@pytest.mark.parametrize(
    ("cut_after", "outcome"),
    [("RCPT", MessageOutcome.FAILED), ("end", MessageOutcome.DELIVERY_UNKNOWN)],
)
def test_connection_lost(cut_after: str, outcome: MessageOutcome) -> None:
    server = FakeServer(keywords=DATA_ONLY)
    conn, _events = connect(server)
    tx = conn.send_message("a@example.org", ["b@example.org"], b"hello")
    out = conn.data_to_send()
    if cut_after == "end":
        conn.receive_data(server.receive(out))
        for _ in range(10):
            if tx.body_wanted:
                tx.pull_body()
            elif conn.next_event() is not None and conn.state.name == "READY":
                break
        assert conn.data_to_send().endswith(b".\r\n")
    conn.receive_data(b"")
    for _ in range(10):
        if tx.done:
            break
        conn.next_event()
    assert tx.result.outcome is outcome


# -- extensions ------------------------------------------------------------------------------------


def test_size_is_declared_and_enforced() -> None:
    server = FakeServer(keywords=("PIPELINING", "SIZE 100"))
    send(server, "a@example.org", ["b@example.org"], b"a\nb\n")
    assert server.commands[1] == "MAIL FROM:<a@example.org> SIZE=6"  # bare LFs counted as CRLF
    send(server, "a@example.org", ["b@example.org"], b"a\r\nb\rc\nd")
    # Each bare CR and bare LF grows into a CRLF; a CRLF stays as it is.
    assert server.commands[-3] == "MAIL FROM:<a@example.org> SIZE=10"
    send(server, "a@example.org", ["b@example.org"], b"x", size=50)
    assert server.commands[-3] == "MAIL FROM:<a@example.org> SIZE=50"
    conn, _ = connect(server)
    with pytest.raises(ServerCapabilityError) as info:
        conn.send_message("a@example.org", ["b@example.org"], b"x" * 101)
    assert info.value.extension == "SIZE"
    assert conn.data_to_send() == b""
    assert conn.can_start_transaction


def test_eight_bit_content() -> None:
    server = FakeServer(keywords=DATA_ONLY)
    send(server, "a@example.org", ["b@example.org"], "caf\u00e9".encode())
    assert server.commands[1].endswith("BODY=8BITMIME")
    server = FakeServer(keywords=("PIPELINING",))
    conn, _ = connect(server)
    with pytest.raises(ServerCapabilityError):
        conn.send_message("a@example.org", ["b@example.org"], "caf\u00e9".encode())
    assert conn.data_to_send() == b""


def test_eight_bit_chunk_to_a_seven_bit_server_stops_the_message() -> None:
    server = FakeServer(keywords=("PIPELINING",))
    conn, events = connect(server)
    tx = conn.send_message("a@example.org", ["b@example.org"], [b"ascii\r\n", b"caf\xc3\xa9\r\n"])
    with pytest.raises(
        LocalProtocolError, match=r"^8-bit content, but the server does not offer 8BITMIME$"
    ):
        pump(conn, server, events, tx)
    # Half the message is on the wire and DATA cannot be taken back: the connection is done.
    assert conn.state.name == "ERROR"
    with pytest.raises(LocalProtocolError, match="unusable"):
        conn.noop()


def test_internationalised_addresses() -> None:
    server = FakeServer(keywords=("PIPELINING", "SMTPUTF8", "8BITMIME"))
    send(server, "a@b\u00fccher.example", ["\u7528\u6237@example.com"], b"x")
    assert server.commands[1] == "MAIL FROM:<a@xn--bcher-kva.example> SMTPUTF8"
    assert server.commands[2] == "RCPT TO:<\u7528\u6237@example.com>"
    send(server, "j\u00f6rg@example.org", ["b@example.org"], b"x")
    assert server.commands[-3] == "MAIL FROM:<j\u00f6rg@example.org> SMTPUTF8"
    server = FakeServer(keywords=("PIPELINING",))
    conn, _ = connect(server)
    with pytest.raises(ServerCapabilityError) as info:
        conn.send_message("a@example.org", ["\u7528\u6237@example.com"], b"x")
    assert info.value.extension == "SMTPUTF8"


def test_dsn_per_recipient() -> None:
    server = FakeServer()
    send(
        server,
        "a@example.org",
        [
            Recipient(
                address="b@example.org",
                notify=frozenset({"SUCCESS", "FAILURE"}),
                original_recipient="b+x@example.org",
            ),
            "c@example.org",
        ],
        b"x",
        ret="HDRS",
        envid="id 1",
    )
    assert server.commands[1] == "MAIL FROM:<a@example.org> SIZE=1 RET=HDRS ENVID=id+201"
    assert (
        server.commands[2]
        == "RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.org"
    )
    assert server.commands[3] == "RCPT TO:<c@example.org>"
    server = FakeServer(keywords=("PIPELINING",))
    conn, _ = connect(server)
    with pytest.raises(ServerCapabilityError):
        conn.send_message("a@example.org", ["b@example.org"], b"x", ret="FULL")


def test_further_mail_and_rcpt_parameters() -> None:
    server = FakeServer()
    send(
        server,
        "a@example.org",
        [Recipient(address="b@example.org", parameters={"X-FLAG": "1"})],
        b"x",
        mail_options={"X-OPTION": None},
    )
    assert server.commands[1] == "MAIL FROM:<a@example.org> SIZE=1 X-OPTION"
    assert server.commands[2] == "RCPT TO:<b@example.org> X-FLAG=1"


def test_requiretls_over_tls() -> None:
    server = FakeServer(keywords=("PIPELINING", "REQUIRETLS"))
    conn, events = connect(server, tls_active=True)
    tx = conn.send_message("a@example.org", ["b@example.org"], b"x", requiretls=True)
    pump(conn, server, events, tx)
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.commands[1] == "MAIL FROM:<a@example.org> REQUIRETLS"


def test_the_largest_envelope_with_dsn_fits() -> None:
    # A path of 256 octets (RFC 5321 section 4.5.3.1.3) and an ENVID parameter of 100
    # characters (RFC 3461 section 4.4) make a MAIL line longer than 512 octets less the
    # allowance of its parameters, but within 512 plus that allowance.
    sender = "a" * 64 + "@" + "b" * 189
    envid = "e" * 94
    server = FakeServer()
    tx, _, _ = send(server, sender, ["c@example.org"], b"x", ret="FULL", envid=envid)
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.commands[1] == f"MAIL FROM:<{sender}> SIZE=1 RET=FULL ENVID={envid}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recipients": ["ok@example.org", "bad@example.org>\r\nRCPT TO:<victim@example.org"]},
        # Otherwise plain addresses, with a line end of their own.
        {"recipients": ["ok@example.org", "bad@example.org\nRSET"]},
        {"recipients": ["bad@example.org\r\nRSET", "ok@example.org"]},
        {"recipients": [Recipient(address="b@example.org", parameters={"X": "1\r\nRSET"})]},
        {"recipients": ["b@example.org"], "mail_options": {"X-EVIL": "a b"}},
        {"recipients": ["b@example.org"], "envid": "id\r\nRSET"},
        {"recipients": [Recipient(address="b@example.org", original_recipient="x\r\ny")]},
        {"recipients": []},
        {"recipients": ["b@example.org"], "chunk_size": 0},
    ],
)
def test_bad_input_sends_nothing(kwargs: dict[str, object]) -> None:
    server = FakeServer()
    conn, _ = connect(server)
    try:
        tx = conn.send_message("a@example.org", body=b"x", **kwargs)  # type: ignore[arg-type]
    except ValueError:
        assert conn.data_to_send() == b""
        assert conn.can_start_transaction
        return
    # Values that are xtext-encoded cannot inject: the encoding made them harmless.
    wire = conn.data_to_send()
    assert wire.count(b"\r\n") == wire.count(b"\r") == wire.count(b"\n")
    assert not tx.done


def test_email_message() -> None:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.org>"
    message["To"] = "bob@example.net, Carol <carol@example.net>"
    message["Bcc"] = "secret@example.net"
    message["Subject"] = "hello"
    message.set_content("Hi.\n.\nBye.\n")
    server = FakeServer()
    tx, _, _ = send(server, None, None, message)
    assert [r.address for r in tx.result.recipients] == [
        "bob@example.net",
        "carol@example.net",
        "secret@example.net",
    ]
    assert server.commands[1].startswith("MAIL FROM:<alice@example.org>")
    [content] = server.messages
    assert b"Bcc" not in content
    assert b"\r\n.\r\n" in content  # a lone dot line, carried intact by BDAT
    assert message["Bcc"] == "secret@example.net"


def test_streamed_content() -> None:
    server = FakeServer(keywords=DATA_ONLY)
    conn, events = connect(server)
    tx = conn.send_message("a@example.org", ["b@example.org"])
    assert not tx.body_wanted
    with pytest.raises(LocalProtocolError, match="not finished"):
        tx.result  # noqa: B018
    pump(conn, server, events)
    assert tx.body_wanted
    tx.feed_body(b"part one\n")
    tx.feed_body(b".part two")
    tx.end_body()
    with pytest.raises(
        LocalProtocolError, match=r"^no message content is wanted now \(see body_wanted\)$"
    ):
        tx.feed_body(b"late")
    pump(conn, server, events, tx)
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.messages == [b"part one\r\n.part two\r\n"]
    # Content not seen in advance is declared 8-bit where the server allows it.
    assert server.commands[1] == "MAIL FROM:<a@example.org> BODY=8BITMIME"


def test_iterable_content_and_back_to_back_transactions() -> None:
    server = FakeServer()
    conn, events = connect(server)
    first = conn.send_message(
        "a@example.org", ["b@example.org"], iter([b"one\r\n", b"", b"two\r\n"])
    )
    pump(conn, server, events, first)
    assert conn.can_start_transaction
    second = conn.send_message("a@example.org", ["c@example.org"], b"three\r\n")
    pump(conn, server, events, second)
    assert first.result.outcome is second.result.outcome is MessageOutcome.ACCEPTED
    assert server.messages == [b"one\r\ntwo\r\n", b"three\r\n"]


def test_a_transaction_needs_a_ready_session() -> None:
    conn = ClientConnection()
    with pytest.raises(
        LocalProtocolError, match=r"^send EHLO \(or LHLO\) before a mail transaction$"
    ):
        conn.send_message("a@example.org", ["b@example.org"], b"x")
    server = FakeServer(keywords=("8BITMIME",))
    conn, _ = connect(server)
    conn.noop()
    with pytest.raises(
        LocalProtocolError,
        match=r"^a mail transaction cannot start now: wait until can_start_transaction$",
    ):
        conn.send_message("a@example.org", ["b@example.org"], b"x")


def test_text_is_not_content() -> None:
    conn, _ = connect(FakeServer())
    with pytest.raises(TypeError, match=r"^message content must be bytes, not str$"):
        conn.send_message("a@example.org", ["b@example.org"], "text")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"^a sender is needed \(or an email message to take it from\)$"
    ):
        conn.send_message(None, ["b@example.org"], b"x")
    with pytest.raises(ValueError, match=r"^at least one recipient is needed$"):
        conn.send_message("a@example.org", [], b"x")


@pytest.mark.parametrize("chunk_size", [0, -1, 1.5, "1"])
def test_chunk_size_is_a_positive_int(chunk_size: object) -> None:
    conn, _ = connect(FakeServer())
    with pytest.raises(ValueError, match=r"^chunk_size must be a positive int$"):
        conn.send_message("a@example.org", ["b@example.org"], b"x", chunk_size=chunk_size)  # type: ignore[arg-type]
    assert conn.data_to_send() == b""


def test_content_in_any_bytes_like_form() -> None:
    server = FakeServer()
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], bytearray(b"one\r\n"))
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    tx, _, _ = send(server, "a@example.org", ["b@example.org"], memoryview(b"two\r\n"))
    assert server.messages == [b"one\r\n", b"two\r\n"]


def test_email_message_with_an_explicit_envelope() -> None:
    message = EmailMessage()
    message["From"] = "alice@example.org"
    message["To"] = "bob@example.net"
    message.set_content("Hi.\n")
    server = FakeServer(keywords=("PIPELINING", "SMTPUTF8", "8BITMIME", "DSN"))
    recipient = Recipient(address="carol@example.net", notify=frozenset({"NEVER"}))
    tx, _, _ = send(server, "bounce@example.org", [recipient], message, smtputf8=True)
    assert [r.address for r in tx.result.recipients] == ["carol@example.net"]
    assert server.commands[1] == "MAIL FROM:<bounce@example.org> SMTPUTF8"
    assert server.commands[2] == "RCPT TO:<carol@example.net> NOTIFY=NEVER"


@pytest.mark.parametrize(
    "recipient", ["bob@example.net", Recipient(address="bob@example.net")], ids=["str", "Recipient"]
)
def test_explicit_recipients_decide_smtputf8_not_the_headers(recipient: str | Recipient) -> None:
    # The Bcc header is never sent, and its recipient is not among those given: nothing in
    # what is sent needs SMTPUTF8.
    message = EmailMessage()
    message["From"] = "alice@example.org"
    message["To"] = "bob@example.net"
    message["Bcc"] = "j\u00f6rg@example.net"
    message.set_content("Hi.\n")
    server = FakeServer(keywords=("PIPELINING", "SMTPUTF8", "8BITMIME"))
    tx, _, _ = send(server, None, [recipient], message)
    assert [r.address for r in tx.result.recipients] == ["bob@example.net"]
    assert server.commands[1] == "MAIL FROM:<alice@example.org>"


def test_a_message_whose_headers_need_smtputf8() -> None:
    # Only a header holds a non-ASCII address: the message still needs SMTPUTF8, and the
    # header goes as UTF-8.
    message = EmailMessage()
    message["From"] = "alice@example.org"
    message["To"] = "bob@example.net"
    message["Reply-To"] = "j\u00f6rg@example.net"
    message.set_content("Hi.\n")
    server = FakeServer(keywords=("PIPELINING", "SMTPUTF8", "8BITMIME"))
    tx, _, _ = send(server, None, None, message)
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.commands[1] == "MAIL FROM:<alice@example.org> BODY=8BITMIME SMTPUTF8"
    [content] = server.messages
    assert "Reply-To: j\u00f6rg@example.net".encode() in content


def test_pull_body_needs_content_and_end_body_needs_the_moment() -> None:
    server = FakeServer(keywords=DATA_ONLY)
    conn, events = connect(server)
    tx = conn.send_message("a@example.org", ["b@example.org"])
    with pytest.raises(
        LocalProtocolError, match=r"^no message content is wanted now \(see body_wanted\)$"
    ):
        tx.end_body()
    pump(conn, server, events)
    with pytest.raises(
        LocalProtocolError, match=r"^no content was given: use feed_body\(\) and end_body\(\)$"
    ):
        tx.pull_body()


def test_the_end_of_the_content_goes_with_its_last_piece() -> None:
    server = FakeServer(keywords=DATA_ONLY)
    conn, events = connect(server)
    tx = conn.send_message("a@example.org", ["b@example.org"], b"hello")
    pump(conn, server, events)
    assert tx.body_wanted
    tx.pull_body()
    assert not tx.body_wanted
    assert conn.data_to_send() == b"hello\r\n.\r\n"


def test_pipelined_content_for_recipients_all_refused() -> None:
    server = FakeServer(
        rcpt=refuse("x@example.org"), message=lambda _: b"554 5.5.1 no recipients\r\n"
    )
    tx, _, _ = send(
        server, "a@example.org", ["x@example.org"], b"hi\r\n", pipeline_content_up_to=100
    )
    assert tx.result.outcome is MessageOutcome.REJECTED
    assert server.commands[-1] == "BDAT 4 LAST"
    assert "RSET" not in server.commands  # BDAT LAST ended the server's transaction


def test_events_after_the_outcome_change_nothing() -> None:
    # The first of three pipelined chunks is refused; then the server vanishes, leaving the
    # other chunks unanswered.
    server = FakeServer()

    def first_refused_then_gone(_: int) -> bytes:
        server._closed = True
        return b"552 5.3.4 too big\r\n"

    server.bdat = first_refused_then_gone
    tx, conn, _events = send(
        server, "a@example.org", ["b@example.org"], b"0123456789", chunk_size=4
    )
    assert tx.result.outcome is MessageOutcome.REJECTED
    assert conn.commands_in_flight == 3  # the second chunk, the last one, and the RSET
    conn.receive_data(b"")
    assert type(conn.next_event()).__name__ == "ConnectionClosed"
    assert tx.result.outcome is MessageOutcome.REJECTED
    assert tx.result.message_reply is not None
    assert tx.result.message_reply.code == 552


def test_whole_transactions_pipelined_in_one_write() -> None:
    # With CHUNKING and PIPELINING, small messages and their envelopes all travel together:
    # the next MAIL may follow BDAT LAST without waiting (RFC 2920, RFC 3030).
    server = FakeServer(rcpt=refuse("x@example.org"))
    conn, events = connect(server)
    transactions = []
    for index in range(3):
        assert conn.can_start_transaction
        transactions.append(
            conn.send_message(
                "a@example.org",
                ["b@example.org", "x@example.org"],
                b"message %d\r\n" % index,
                pipeline_content_up_to=1024,
            )
        )
    writes_before = server.writes
    pump(conn, server, events)
    assert server.writes == writes_before + 1
    assert [tx.result.outcome for tx in transactions] == [MessageOutcome.ACCEPTED] * 3
    assert all(len(tx.result.refused_recipients) == 1 for tx in transactions)
    assert server.messages == [b"message 0\r\n", b"message 1\r\n", b"message 2\r\n"]


@pytest.mark.parametrize("keywords", [DATA_ONLY, NO_PIPELINING])
def test_a_transaction_keeps_its_fields_in_slots(keywords: tuple[str, ...]) -> None:
    # Some forty fields, more than an instance dict shares keys for: slots keep making and
    # reading one cheap. Every field the transaction sets must be among them, whatever
    # course it takes (here a streamed body, a refused recipient, and the end).
    server = FakeServer(keywords=keywords)
    server.rcpt = refuse("c@example.org")
    tx, _, _ = send(server, "a@example.org", ["b@example.org", "c@example.org"], [b"hi\r\n"])
    assert not hasattr(tx, "__dict__")
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    with pytest.raises(AttributeError):
        tx.unknown = 1  # type: ignore[attr-defined]


# -- content put in wire form while DATA's 354 is awaited ----------------------------------


def _awaiting_354(
    server: FakeServer, body: object, **kwargs: object
) -> tuple[MailTransaction, ClientConnection, bytes]:
    # A transaction whose envelope and DATA have gone; returns the server's replies, not
    # yet given to the connection.
    conn, _ = connect(server)
    tx = conn.send_message("a@example.org", ["b@example.org"], body, **kwargs)  # type: ignore[arg-type]
    replies = server.receive(conn.data_to_send())
    return tx, conn, replies


def _content_sent(
    content: bytes, chunk_size: int, *, early: bool
) -> tuple[list[tuple[bytes, tuple[str, ...]]], str | None]:
    # What the content goes out as (each pull_body's octets and log entries), with or
    # without the transaction having made it ready before the 354 came.
    tx, conn, replies = _awaiting_354(
        FakeServer(keywords=DATA_ONLY), content, chunk_size=chunk_size
    )
    if early:
        tx._prepare_content()
        made = tx._wire_content is not None
        assert made == (len(content) <= chunk_size and b"\x00" not in content)
    conn.receive_data(replies)
    while conn.next_event() is not NEED_DATA:
        pass
    sent = []
    try:
        for _ in range(len(content) + 2):  # bounded: a piece a call, then the end
            if not tx.body_wanted:
                break
            tx.pull_body()
            sent.append(conn.data_to_send_and_log())
    except ValueError as exc:
        return sent, str(exc)
    assert not tx.body_wanted
    return sent, None


@example(content=b"", chunk_size=1)
@example(content=b".\n.\r\n\r.x\r", chunk_size=64)
@example(content=b"a\x00b", chunk_size=64)
@example(content=b"a\nb\n", chunk_size=2)
@settings(max_examples=300, deadline=None)
@given(
    content=st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"ab", b"\x00"])).map(b"".join),
    chunk_size=st.integers(1, 40),
)
def test_content_made_ready_early_goes_out_as_it_would_have(
    content: bytes, chunk_size: int
) -> None:
    # The same octets, log entries and refusals, whether or not the work was done while
    # the 354 was awaited.
    assert _content_sent(content, chunk_size, early=True) == _content_sent(
        content, chunk_size, early=False
    )


@pytest.mark.parametrize(
    ("keywords", "body", "kwargs"),
    [
        (DATA_ONLY, [b"streamed\r\n"], {}),  # not in hand
        (DATA_ONLY, b"x" * 11, {"chunk_size": 10}),  # more than one piece
        (("8BITMIME",), b"not pipelined\r\n", {}),  # DATA not sent yet
        (("PIPELINING", "CHUNKING"), b"chunked\r\n", {}),  # no DATA at all
    ],
)
def test_content_is_made_ready_early_only_when_whole_and_awaiting_its_354(
    keywords: tuple[str, ...], body: object, kwargs: dict[str, object]
) -> None:
    tx, _, _ = _awaiting_354(FakeServer(keywords=keywords), body, **kwargs)
    tx._prepare_content()
    assert tx._wire_content is None


def test_content_made_ready_early_is_made_once_and_only_before_the_354() -> None:
    tx, conn, replies = _awaiting_354(FakeServer(keywords=DATA_ONLY), b"hi\n")
    tx._prepare_content()
    made = tx._wire_content
    assert made == (b"hi\r\n", b".\r\n")
    tx._prepare_content()
    assert tx._wire_content is made
    conn.receive_data(replies)
    while conn.next_event() is not NEED_DATA:
        pass
    assert tx.body_wanted
    # The 354 came first here: nothing is made now, the content goes the ordinary way.
    tx2, conn2, replies2 = _awaiting_354(FakeServer(keywords=DATA_ONLY), b"hi\n")
    conn2.receive_data(replies2)
    while conn2.next_event() is not NEED_DATA:
        pass
    tx2._prepare_content()
    assert tx2._wire_content is None
    tx.pull_body()
    tx2.pull_body()
    assert conn.data_to_send() == conn2.data_to_send() == b"hi\r\n.\r\n"


def test_eight_bit_content_for_a_seven_bit_server_is_not_made_ready_early() -> None:
    # Declared 7-bit but holding 8-bit octets: sending it would break a promise to the
    # server, which the ordinary path stops, poisoning the connection, when it is sent.
    tx, conn, replies = _awaiting_354(
        FakeServer(keywords=("PIPELINING",)), b"caf\xc3\xa9\r\n", body_type=Body.SEVEN_BIT
    )
    tx._prepare_content()
    assert tx._wire_content is None
    conn.receive_data(replies)
    while conn.next_event() is not NEED_DATA:
        pass
    with pytest.raises(LocalProtocolError, match=r"^8-bit content, but the server"):
        tx.pull_body()
    assert conn.state.name == "ERROR"


def test_content_made_ready_early_is_dropped_when_the_message_ends_without_it() -> None:
    server = FakeServer(keywords=DATA_ONLY, data=lambda: b"554 5.3.0 no thanks\r\n")
    tx, conn, replies = _awaiting_354(server, b"hi\n")
    tx._prepare_content()
    assert tx._wire_content is not None
    conn.receive_data(replies)
    while conn.next_event() is not NEED_DATA:
        pass
    assert tx.result.outcome is MessageOutcome.REJECTED
    assert tx._wire_content is None


def test_content_made_ready_early_cannot_follow_content_ended_by_hand() -> None:
    # The caller ended the content on the connection itself: the transaction's pull_body
    # is refused as it would be without the early work.
    messages = []
    for early in (True, False):
        tx, conn, replies = _awaiting_354(FakeServer(keywords=DATA_ONLY), b"hi\n")
        if early:
            tx._prepare_content()
        conn.receive_data(replies)
        while conn.next_event() is not NEED_DATA:
            pass
        conn.end_data()
        with pytest.raises(LocalProtocolError) as info:
            tx.pull_body()
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("no message content can be sent in state")


# -- a whole envelope in one step ---------------------------------------------------------


def _started(
    keywords: tuple[str, ...],
    recipients: list[str | Recipient],
    *,
    whole: bool,
    monkeypatch: pytest.MonkeyPatch,
    in_flight: int = 0,
) -> tuple[ClientConnection, MailTransaction]:
    # A transaction started after *in_flight* RSETs, its envelope sent in one step or, with
    # that step refused, the long way.
    server = FakeServer(keywords=keywords)
    conn, _ = connect(server)
    for _ in range(in_flight):
        conn.rset()
    conn.data_to_send()
    tx = conn.send_message("s\u00e9nder@example.org", recipients, b"hi\r\n", start=False)
    with monkeypatch.context() as patch:
        if not whole:
            patch.setattr(ClientConnection, "_send_whole_envelope", lambda self, owner: False)
        tx.start()
    return conn, tx


@pytest.mark.parametrize("in_flight", [0, 2])
@pytest.mark.parametrize(
    "recipients",
    [
        ["b@example.org"],
        ["b@example.org", "c@example.org", "d@example.org"],
        [
            "b@example.org",
            Recipient(address="j\u00f6rg@example.org", notify=frozenset({"FAILURE"})),
        ],
    ],
)
@pytest.mark.parametrize(
    "keywords",
    [
        ("PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "SIZE 1000"),
        ("PIPELINING", "CHUNKING", "SMTPUTF8", "DSN"),
    ],
)
def test_a_whole_envelope_in_one_step_is_what_the_long_way_sends(
    keywords: tuple[str, ...],
    recipients: list[str | Recipient],
    in_flight: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same lines and log entries, the same commands awaiting replies (each RCPT and DATA
    # with the MAIL's transaction), the same state, and the same course for the transaction.
    def seen(conn: ClientConnection, tx: MailTransaction) -> tuple[object, ...]:
        mail_entry = conn._pending[in_flight]
        owned = conn._transaction
        assert owned is not None
        assert owned is conn._last_transaction
        assert owned.owner is tx
        return (
            conn.data_to_send_and_log(),
            [(command, argument) for command, argument, _ in conn._pending],
            [entry[2] is mail_entry[2] for entry in list(conn._pending)[in_flight:]],
            conn.state,
            owned.utf8,
            list(conn._open_owners) == [tx],
            (tx._rcpt_sent, tx._envelope_pending, tx._data_sent),
        )

    whole = seen(
        *_started(keywords, recipients, whole=True, monkeypatch=monkeypatch, in_flight=in_flight)
    )
    long_way = seen(
        *_started(keywords, recipients, whole=False, monkeypatch=monkeypatch, in_flight=in_flight)
    )
    assert whole == long_way
    assert whole[2] == [True] * (len(recipients) + (2 if "CHUNKING" not in keywords else 1))


def test_an_envelope_that_does_not_fit_goes_the_long_way() -> None:
    # Room for MAIL and one RCPT: the rest follows as replies make room.
    server = FakeServer(keywords=DATA_ONLY)
    conn, events = connect(server, limits=Limits(max_commands_in_flight=2))
    tx = conn.send_message("a@example.org", ["b@example.org", "c@example.org"], b"hi\r\n")
    assert conn.data_to_send() == b"MAIL FROM:<a@example.org> SIZE=4\r\nRCPT TO:<b@example.org>\r\n"
    server.receive(b"MAIL FROM:<a@example.org> SIZE=4\r\nRCPT TO:<b@example.org>\r\n")
    conn.receive_data(b"250 ok\r\n250 ok\r\n")
    pump(conn, server, events, tx)
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.messages == [b"hi\r\n"]
