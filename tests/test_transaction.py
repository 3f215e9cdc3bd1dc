# The tests assert a property, act, then assert it again; mypy's narrowing of the first
# assertion would call the second one unreachable.
# mypy: disable-error-code="unreachable"
"""The one-call mail transaction, against an in-memory server."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

import pytest
from peer import FakeServer, connect, pump

from smtp_proto import (
    Body,
    ClientConnection,
    Event,
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
    with pytest.raises(LocalProtocolError, match="8BITMIME"):
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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recipients": ["ok@example.org", "bad@example.org>\r\nRCPT TO:<victim@example.org"]},
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
    with pytest.raises(LocalProtocolError, match="no message content is wanted"):
        tx.feed_body(b"late")
    pump(conn, server, events, tx)
    assert tx.result.outcome is MessageOutcome.ACCEPTED
    assert server.messages == [b"part one\r\n.part two\r\n"]


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
    with pytest.raises(LocalProtocolError, match="EHLO"):
        conn.send_message("a@example.org", ["b@example.org"], b"x")
    server = FakeServer(keywords=("8BITMIME",))
    conn, _ = connect(server)
    conn.noop()
    with pytest.raises(LocalProtocolError, match="can_start_transaction"):
        conn.send_message("a@example.org", ["b@example.org"], b"x")


def test_text_is_not_content() -> None:
    conn, _ = connect(FakeServer())
    with pytest.raises(TypeError):
        conn.send_message("a@example.org", ["b@example.org"], "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sender"):
        conn.send_message(None, ["b@example.org"], b"x")


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


def test_pull_body_needs_content_and_end_body_needs_the_moment() -> None:
    server = FakeServer(keywords=DATA_ONLY)
    conn, events = connect(server)
    tx = conn.send_message("a@example.org", ["b@example.org"])
    with pytest.raises(LocalProtocolError, match="no message content is wanted"):
        tx.end_body()
    pump(conn, server, events)
    with pytest.raises(LocalProtocolError, match="use feed_body"):
        tx.pull_body()


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
