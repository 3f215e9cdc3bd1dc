# Tests assert a property, act, then assert it again; mypy's narrowing of the first
# assertion would call the second one unreachable.
# mypy: disable-error-code="unreachable"
"""Whole sessions between the engine and a scripted in-memory server.

Every script is played three ways (each server step whole, byte by byte, and merged with a
partial reply trailing) and must give the same events and the same bytes on the wire.
"""

from __future__ import annotations

import pytest
from transcript import Outcome, Step, drain, events_of, play, play_every_way

from smtp_proto import (
    NEED_DATA,
    PAUSED,
    ChunkAccepted,
    ClientConnection,
    ConnectionClosed,
    DeliveryStatus,
    EhloFeatures,
    Greeting,
    Limits,
    LocalProtocolError,
    MessageAccepted,
    MessageRejected,
    RecipientAccepted,
    RecipientRefused,
    RemoteProtocolError,
    Reply,
    SenderAccepted,
    SenderRefused,
    ServiceClosing,
    State,
    Timeouts,
)

GREETING = b"220 mx.example.org ESMTP ready\r\n"
EHLO_FULL = (
    b"250-mx.example.org hello\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-STARTTLS\r\n"
    b"250-SIZE 1000000\r\n250 8BITMIME\r\n"
)
EHLO_BASIC = b"250-mx.example.org hello\r\n250 8BITMIME\r\n"
OK = b"250 2.0.0 ok\r\n"
GO = b"354 go ahead\r\n"
BYE = b"221 2.0.0 bye\r\n"
CLOSE = b""


def greeted(ehlo_reply: bytes = EHLO_FULL) -> list[Step]:
    return [GREETING, lambda c: c.ehlo("client.example"), ehlo_reply]


def test_a_plain_session_one_command_at_a_time() -> None:
    script: list[Step] = [
        *greeted(EHLO_BASIC),
        lambda c: c.mail("alice@example.org"),
        OK,
        lambda c: c.rcpt("bob@example.net"),
        OK,
        lambda c: c.rcpt("nobody@example.net"),
        b"550 5.1.1 no such user\r\n",
        lambda c: c.rcpt("carol@example.net"),
        b"451 4.3.0 try later\r\n",
        lambda c: c.data(),
        GO,
        lambda c: c.send_data(b"Subject: hi\n\n.hidden\nbye"),
        lambda c: c.end_data(),
        b"250 2.0.0 queued as ABC\r\n",
        lambda c: c.quit(),
        BYE,
        CLOSE,
    ]
    outcome = play_every_way(script)
    assert events_of(outcome) == [
        "Greeting",
        "EhloFeatures",
        "SenderAccepted",
        "RecipientAccepted",
        "RecipientRefused",
        "RecipientRefused",
        "ReadyForData",
        "MessageAccepted",
        "Reply",
        "ConnectionClosed",
    ]
    assert outcome.sent == (
        b"EHLO client.example\r\n"
        b"MAIL FROM:<alice@example.org>\r\n"
        b"RCPT TO:<bob@example.net>\r\n"
        b"RCPT TO:<nobody@example.net>\r\n"
        b"RCPT TO:<carol@example.net>\r\n"
        b"DATA\r\n"
        b"Subject: hi\r\n\r\n..hidden\r\nbye\r\n.\r\n"
        b"QUIT\r\n"
    )
    greeting, features, *_ = outcome.events
    assert isinstance(greeting, Greeting)
    assert greeting.accepted
    assert isinstance(features, EhloFeatures)
    assert features.esmtp
    assert features.server_name == "mx.example.org"
    refused = outcome.events[4]
    assert isinstance(refused, RecipientRefused)
    assert refused.recipient == "nobody@example.net"
    assert refused.reply.is_permanent
    assert str(refused.reply.enhanced_status) == "5.1.1"
    transient = outcome.events[5]
    assert isinstance(transient, RecipientRefused)
    assert transient.reply.is_transient
    assert outcome.events[-1] == ConnectionClosed(delivery=DeliveryStatus.NO_TRANSACTION)
    assert outcome.connection.state is State.CLOSED


def test_every_code_of_a_class_counts_as_that_class() -> None:
    # The class is the first digit, whatever follows: x00 and x01 included.
    script: list[Step] = [
        *greeted(EHLO_BASIC),
        lambda c: c.noop(),
        b"200 ok\r\n",
        lambda c: c.mail("alice@example.org"),
        b"201 ok\r\n",
        lambda c: c.rcpt("bob@example.net"),
        b"400 not now\r\n",
        lambda c: c.rcpt("carol@example.net"),
        b"203 ok\r\n",
        lambda c: c.data(),
        b"300 go ahead\r\n",
        lambda c: c.end_data(),
        b"401 not now\r\n",
    ]
    outcome = play_every_way(script)
    assert events_of(outcome) == [
        "Greeting",
        "EhloFeatures",
        "Reply",
        "SenderAccepted",
        "RecipientRefused",
        "RecipientAccepted",
        "ReadyForData",
        "MessageRejected",
    ]


def test_without_pipelining_only_one_command_is_in_flight() -> None:
    outcome = play([*greeted(EHLO_BASIC), lambda c: c.mail("a@example.org")])
    conn = outcome.connection
    assert not conn.pipelining
    assert conn.commands_in_flight == 1
    with pytest.raises(
        LocalProtocolError,
        match=r"^RCPT cannot be sent before the reply to MAIL \(the server does not offer "
        r"PIPELINING\)$",
    ):
        conn.rcpt("b@example.org")
    assert conn.data_to_send() == b""
    assert conn.state is State.ERROR


def test_before_the_greeting_nothing_can_be_sent() -> None:
    conn = ClientConnection()
    assert conn.state is State.AWAIT_GREETING
    with pytest.raises(LocalProtocolError, match="EHLO cannot be sent in state AWAIT_GREETING"):
        conn.ehlo("client.example")
    assert conn.data_to_send() == b""


def test_a_pipelined_transaction_goes_out_in_one_write() -> None:
    def envelope(c: ClientConnection) -> None:
        c.mail("alice@example.org", {"BODY": "8BITMIME"})
        c.rcpt("bob@example.net")
        c.rcpt("nobody@example.net")
        c.rcpt("carol@example.net")
        c.data()

    def second_transaction(c: ClientConnection) -> None:
        c.send_data(b"hello\r\n")
        c.end_data()
        # RFC 2920: the next transaction may travel with the end of this one.
        c.mail("alice@example.org")
        c.rcpt("dave@example.net")
        c.data()

    script: list[Step] = [
        *greeted(),
        envelope,
        OK + OK + b"550 5.1.1 unknown\r\n" + OK + GO,
        second_transaction,
        b"250 2.0.0 first queued\r\n" + OK + OK + GO,
        lambda c: c.send_data(b"second"),
        lambda c: c.end_data(),
        b"250 2.0.0 second queued\r\n",
    ]
    outcome = play_every_way(script)
    assert events_of(outcome) == [
        "Greeting",
        "EhloFeatures",
        "SenderAccepted",
        "RecipientAccepted",
        "RecipientRefused",
        "RecipientAccepted",
        "ReadyForData",
        "MessageAccepted",
        "SenderAccepted",
        "RecipientAccepted",
        "ReadyForData",
        "MessageAccepted",
    ]
    assert outcome.sent == (
        b"EHLO client.example\r\n"
        b"MAIL FROM:<alice@example.org> BODY=8BITMIME\r\n"
        b"RCPT TO:<bob@example.net>\r\n"
        b"RCPT TO:<nobody@example.net>\r\n"
        b"RCPT TO:<carol@example.net>\r\n"
        b"DATA\r\n"
        b"hello\r\n.\r\n"
        b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<dave@example.net>\r\nDATA\r\n"
        b"second\r\n.\r\n"
    )
    recipients = [e.recipient for e in outcome.events if isinstance(e, RecipientAccepted)]
    assert recipients == ["bob@example.net", "carol@example.net", "dave@example.net"]


def test_the_envelope_is_written_before_any_reply_arrives() -> None:
    outcome = play([*greeted()])
    conn = outcome.connection
    conn.mail("a@example.org")
    conn.rcpt("b@example.org")
    conn.rcpt("c@example.org")
    conn.data()
    assert conn.data_to_send().count(b"\r\n") == 4
    assert conn.commands_in_flight == 4
    # DATA ends a pipelined group: nothing may follow it before its reply.
    with pytest.raises(LocalProtocolError, match="cannot be sent in state DATA_REQUESTED"):
        conn.noop()


@pytest.mark.parametrize(
    "ender", ["ehlo", "noop", "vrfy", "starttls_sent", "help", "expn", "other"]
)
def test_group_ending_commands_stop_the_pipeline(ender: str) -> None:
    conn = play([*greeted()]).connection
    if ender == "ehlo":
        conn.ehlo("again.example")
    elif ender == "noop":
        conn.noop()
    elif ender == "vrfy":
        conn.vrfy("alice")
    elif ender == "expn":
        conn.expn("staff")
    elif ender == "help":
        conn.help()
    elif ender == "other":
        conn.send_command("ETRN", "example.org")
    else:
        conn.starttls()
    # STARTTLS also moves the state, to one where nothing may be sent until its reply.
    awaited = {"ehlo": "EHLO", "starttls_sent": None, "other": "other"}.get(ender, ender.upper())
    with pytest.raises(LocalProtocolError) as caught:
        conn.rset()
    assert str(caught.value) == (
        f"RSET cannot be sent before the reply to {awaited}"
        if awaited is not None
        else "RSET cannot be sent in state STARTTLS_REQUESTED"
    )


def test_rset_may_be_pipelined() -> None:
    outcome = play_every_way(
        [
            *greeted(),
            lambda c: (c.mail("a@example.org"), c.rcpt("b@example.org"), c.rset(), c.noop()),
            OK + OK + OK + OK,
        ]
    )
    assert events_of(outcome)[2:] == ["SenderAccepted", "RecipientAccepted", "Reply", "Reply"]
    assert outcome.connection.state is State.READY


def test_commands_in_flight_are_bounded() -> None:
    conn = play([*greeted()], limits=Limits(max_commands_in_flight=3)).connection
    conn.mail("a@example.org")
    conn.rcpt("b@example.org")
    conn.rcpt("c@example.org")
    assert conn.data_to_send().count(b"\r\n") == 3
    with pytest.raises(
        LocalProtocolError,
        match=r"^3 commands already await replies \(Limits.max_commands_in_flight\)$",
    ):
        conn.rcpt("d@example.org")
    assert conn.data_to_send() == b""  # nothing more is written after the error


def test_mail_and_rcpt_lines_may_grow_by_their_parameters_allowance() -> None:
    # RFC 1870 section 3: SIZE adds 26 octets to the 512 of a command line.
    conn = play([*greeted()]).connection
    sender = "a" * 495 + "@example.org"
    conn.mail(sender, {"SIZE": "100"})  # 530 octets, within 512 + 26
    assert conn.data_to_send() == f"MAIL FROM:<{sender}> SIZE=100\r\n".encode()
    conn = play([*greeted()]).connection
    with pytest.raises(ValueError, match=r"^MAIL command line is 530 octets, longer than"):
        conn.mail(sender, {"XSIZE": "10"})  # an unknown keyword widens nothing


def test_refused_sender_with_pipelined_envelope() -> None:
    def envelope(c: ClientConnection) -> None:
        c.mail("spammer@example.org")
        c.rcpt("bob@example.net")
        c.data()

    outcome = play_every_way(
        [
            *greeted(),
            envelope,
            b"550 5.7.1 go away\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n",
        ]
    )
    assert events_of(outcome)[2:] == ["SenderRefused", "RecipientRefused", "MessageRejected"]
    refused = outcome.events[2]
    assert isinstance(refused, SenderRefused)
    assert refused.sender == "spammer@example.org"
    assert outcome.connection.state is State.READY


def test_refused_sender_ends_the_transaction() -> None:
    outcome = play([*greeted(), lambda c: c.mail("x@example.org"), b"451 4.7.1 later\r\n"])
    conn = outcome.connection
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="RCPT cannot be sent in state READY"):
        conn.rcpt("b@example.org")


def test_a_refused_sender_never_ends_a_later_transaction() -> None:
    # The first transaction is pipelined whole with BDAT LAST, and the second starts before
    # any reply: the refusal of the first MAIL must leave the second's state alone.
    def two_transactions(c: ClientConnection) -> None:
        c.mail("a@example.org")
        c.rcpt("b@example.org")
        c.bdat(b"first\r\n", last=True)
        c.mail("a@example.org")
        c.rcpt("c@example.org")

    outcome = play([*greeted(), two_transactions, b"550 no\r\n503 no\r\n503 no\r\n" + OK + OK])
    assert events_of(outcome)[2:] == [
        "SenderRefused",
        "RecipientRefused",
        "MessageRejected",
        "SenderAccepted",
        "RecipientAccepted",
    ]
    assert outcome.connection.state is State.RCPT


def test_all_recipients_refused_then_data_refused() -> None:
    outcome = play_every_way(
        [
            *greeted(EHLO_BASIC),
            lambda c: c.mail("a@example.org"),
            OK,
            lambda c: c.rcpt("x@example.org"),
            b"550 no\r\n",
            lambda c: c.data(),
            b"554 5.5.1 no valid recipients\r\n",
        ]
    )
    assert events_of(outcome)[-2:] == ["RecipientRefused", "MessageRejected"]
    assert outcome.connection.state is State.READY


def test_message_rejected_after_the_final_dot() -> None:
    outcome = play_every_way(
        [
            *greeted(EHLO_BASIC),
            lambda c: c.mail("a@example.org"),
            OK,
            lambda c: c.rcpt("b@example.org"),
            OK,
            lambda c: c.data(),
            GO,
            lambda c: c.end_data(),
            b"554 5.7.1 spam\r\n",
        ]
    )
    rejected = outcome.events[-1]
    assert isinstance(rejected, MessageRejected)
    assert rejected.reply.code == 554
    assert rejected.recipient is None
    assert outcome.sent.endswith(b"DATA\r\n.\r\n")  # an empty message is just the dot
    assert outcome.connection.state is State.READY


# -- BDAT ---------------------------------------------------------------------------------


def test_bdat_chunks_are_exact_and_pipelined() -> None:
    def message(c: ClientConnection) -> None:
        c.mail("a@example.org", {"BODY": "BINARYMIME"})
        c.rcpt("b@example.org")
        c.bdat(b".dots\n\rand\x00binary\r\n.\r\n")
        c.bdat(b"more", last=False)
        c.bdat(b"", last=True)

    outcome = play_every_way([*greeted(), message, OK + OK + OK + OK + b"250 2.0.0 done\r\n"])
    assert events_of(outcome)[2:] == [
        "SenderAccepted",
        "RecipientAccepted",
        "ChunkAccepted",
        "ChunkAccepted",
        "MessageAccepted",
    ]
    assert outcome.sent.endswith(
        b"BDAT 22\r\n.dots\n\rand\x00binary\r\n.\r\nBDAT 4\r\nmoreBDAT 0 LAST\r\n"
    )
    assert outcome.connection.state is State.READY


def test_after_a_failed_chunk_nothing_more_is_sent() -> None:
    outcome = play(
        [
            *greeted(),
            lambda c: (c.mail("a@example.org"), c.rcpt("b@example.org"), c.bdat(b"one")),
            OK + OK + b"552 5.3.4 too big\r\n",
        ]
    )
    conn = outcome.connection
    assert events_of(outcome)[-1] == "MessageRejected"
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="BDAT cannot be sent in state READY"):
        conn.bdat(b"two")


def test_pipelined_chunks_after_a_failed_one_are_reported_as_plain_replies() -> None:
    def message(c: ClientConnection) -> None:
        c.mail("a@example.org")
        c.rcpt("b@example.org")
        c.bdat(b"one")
        c.bdat(b"two")
        c.bdat(b"three", last=True)

    outcome = play_every_way(
        [*greeted(), message, OK + OK + b"552 5.3.4 too big\r\n503 5.5.1 no\r\n503 5.5.1 no\r\n"]
    )
    assert events_of(outcome)[2:] == [
        "SenderAccepted",
        "RecipientAccepted",
        "MessageRejected",
        "Reply",
        "Reply",
    ]


def test_bdat_needs_chunking() -> None:
    conn = play([*greeted(EHLO_BASIC), lambda c: c.mail("a@example.org"), OK]).connection
    conn.rcpt("b@example.org")
    with pytest.raises(LocalProtocolError, match="CHUNKING"):
        conn.bdat(b"x", last=True)


def test_bdat_refuses_text() -> None:
    conn = play([*greeted(), lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"))]).connection
    with pytest.raises(TypeError, match="bytes"):
        conn.bdat("text", last=True)  # type: ignore[arg-type]
    conn.bdat(memoryview(b"abc"), last=True)
    assert conn.data_to_send().endswith(b"BDAT 3 LAST\r\nabc")


# -- message content ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "wire"),
    [
        ([b"a\n.\nb"], b"a\r\n..\r\nb\r\n.\r\n"),  # bare-LF smuggling
        ([b"a\r.\rb"], b"a\r\n..\r\nb\r\n.\r\n"),  # bare-CR smuggling
        ([b"a\r", b"\n.", b"\r\nb"], b"a\r\n..\r\nb\r\n.\r\n"),  # split across chunks
        ([b".\r\n"], b"..\r\n.\r\n"),
        ([b"x\r\n"], b"x\r\n.\r\n"),
    ],
)
def test_content_can_never_end_the_data_early(chunks: list[bytes], wire: bytes) -> None:
    def send(c: ClientConnection) -> None:
        for chunk in chunks:
            c.send_data(chunk)
        c.end_data()

    outcome = play(
        [
            *greeted(),
            lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.data()),
            OK + OK + GO,
            send,
        ]
    )
    assert outcome.sent.endswith(b"DATA\r\n" + wire)


def test_nul_in_content_is_refused_and_nothing_is_sent() -> None:
    conn = play(
        [
            *greeted(),
            lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.data()),
            OK + OK + GO,
        ]
    ).connection
    with pytest.raises(ValueError, match="NUL"):
        conn.send_data(b"bad\x00byte")
    assert conn.data_to_send() == b""
    assert conn.state is State.DATA_BODY  # an argument error does not poison


def test_content_outside_data_is_a_local_error() -> None:
    conn = play([*greeted()]).connection
    with pytest.raises(LocalProtocolError, match="no message content"):
        conn.send_data(b"x")


def test_end_of_data_outside_data_is_a_local_error() -> None:
    conn = play([*greeted()]).connection
    with pytest.raises(LocalProtocolError, match="no message content"):
        conn.end_data()


# -- EHLO and HELO ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502])
def test_ehlo_refused_as_unknown_falls_back_to_helo(code: int) -> None:
    outcome = play_every_way(
        [GREETING, lambda c: c.ehlo("client.example"), b"%d unknown command\r\n" % code, OK]
    )
    assert outcome.sent == b"EHLO client.example\r\nHELO client.example\r\n"
    assert events_of(outcome) == ["Greeting", "EhloFeatures"]
    features = outcome.events[1]
    assert isinstance(features, EhloFeatures)
    assert not features.esmtp
    assert dict(features.extensions) == {}
    assert outcome.connection.state is State.READY


def test_no_helo_fallback_when_tls_is_required() -> None:
    outcome = play_every_way(
        [GREETING, lambda c: c.ehlo("client.example"), b"502 unknown\r\n"], require_tls=True
    )
    assert outcome.sent == b"EHLO client.example\r\n"
    assert events_of(outcome) == ["Greeting", "Reply"]
    assert outcome.connection.state is State.GREETED


def test_ehlo_refused_otherwise_is_reported() -> None:
    outcome = play_every_way([GREETING, lambda c: c.ehlo("client.example"), b"550 go away\r\n"])
    assert outcome.sent == b"EHLO client.example\r\n"
    assert events_of(outcome) == ["Greeting", "Reply"]
    conn = outcome.connection
    with pytest.raises(LocalProtocolError, match="MAIL cannot be sent in state GREETED"):
        conn.mail("a@example.org")


def test_helo_explicitly() -> None:
    outcome = play_every_way([GREETING, lambda c: c.helo("client.example"), OK])
    assert outcome.sent == b"HELO client.example\r\n"
    features = outcome.events[-1]
    assert isinstance(features, EhloFeatures)
    assert not features.esmtp
    assert not outcome.connection.pipelining


def test_helo_refused() -> None:
    outcome = play_every_way([GREETING, lambda c: c.helo("client.example"), b"501 bad\r\n"])
    assert events_of(outcome) == ["Greeting", "Reply"]


def test_ehlo_again_replaces_what_was_learned() -> None:
    outcome = play([*greeted(), lambda c: c.ehlo("client.example"), EHLO_BASIC])
    conn = outcome.connection
    assert conn.features is not None
    assert not conn.features.pipelining


def test_greeting_refused_leaves_only_quit() -> None:
    outcome = play_every_way([b"554 5.3.2 no service\r\n"])
    greeting = outcome.events[0]
    assert isinstance(greeting, Greeting)
    assert not greeting.accepted
    conn = outcome.connection
    assert conn.state is State.GREETING_REFUSED
    with pytest.raises(LocalProtocolError):
        conn.ehlo("client.example")
    conn = play([b"554 no\r\n", lambda c: c.quit(), BYE, CLOSE]).connection
    assert conn.state is State.CLOSED


# -- STARTTLS ------------------------------------------------------------------------------


def test_starttls_pauses_and_forgets_everything() -> None:
    outcome = play_every_way([*greeted(), lambda c: c.starttls(), b"220 2.0.0 go ahead\r\n"])
    conn = outcome.connection
    assert events_of(outcome)[-2:] == ["StartTlsReady", "PAUSED"]
    assert conn.state is State.TLS_HANDSHAKE
    assert conn.next_event() is PAUSED
    assert not conn.tls_active
    conn.tls_established()
    assert conn.tls_active
    assert conn.features is None
    assert conn.state is State.GREETED
    # Nothing learned before TLS survives: a new EHLO is needed before any mail.
    with pytest.raises(LocalProtocolError, match="MAIL cannot be sent in state GREETED"):
        conn.mail("a@example.org")


def test_starttls_then_a_new_ehlo() -> None:
    outcome = play_every_way(
        [
            *greeted(),
            lambda c: c.starttls(),
            b"220 ready\r\n",
            lambda c: (c.tls_established(), c.ehlo("client.example")),
            b"250-mx.example.org\r\n250 AUTH PLAIN\r\n",
        ]
    )
    conn = outcome.connection
    assert conn.features is not None
    assert conn.features.auth_mechanisms == frozenset({"PLAIN"})
    assert not conn.features.starttls
    with pytest.raises(LocalProtocolError, match="already active"):
        conn.starttls()


def test_bytes_with_the_starttls_reply_are_an_injection() -> None:
    conn = play([*greeted(), lambda c: c.starttls()]).connection
    conn.receive_data(b"220 ready\r\n250 injected\r\n")
    with pytest.raises(
        RemoteProtocolError,
        match=r"^the server sent bytes after its reply to STARTTLS, before the TLS handshake "
        r"\(possible injection\)$",
    ):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="unusable"):
        conn.next_event()
    with pytest.raises(LocalProtocolError, match="unusable"):
        conn.tls_established()


def test_even_one_byte_after_the_starttls_reply_is_an_injection() -> None:
    conn = play([*greeted(), lambda c: c.starttls()]).connection
    conn.receive_data(b"220 ready\r\nX")
    with pytest.raises(RemoteProtocolError, match="injection"):
        conn.next_event()


def test_no_command_during_the_handshake() -> None:
    conn = play([*greeted(), lambda c: c.starttls(), b"220 ready\r\n"]).connection
    with pytest.raises(LocalProtocolError, match="state TLS_HANDSHAKE"):
        conn.noop()
    assert conn.data_to_send() == b""


def test_bytes_during_the_handshake_are_an_injection() -> None:
    conn = play([*greeted(), lambda c: c.starttls(), b"220 ready\r\n"]).connection
    with pytest.raises(RemoteProtocolError, match="injection"):
        conn.receive_data(b"250 injected\r\n")
    assert conn.state is State.ERROR


def test_starttls_refused() -> None:
    outcome = play_every_way(
        [*greeted(), lambda c: c.starttls(), b"454 4.7.0 TLS not available\r\n"]
    )
    assert events_of(outcome)[-1] == "Reply"
    assert outcome.connection.state is State.READY
    assert not outcome.connection.tls_active


def test_starttls_needs_the_extension() -> None:
    conn = play([*greeted(EHLO_BASIC)]).connection
    with pytest.raises(LocalProtocolError, match="did not announce STARTTLS"):
        conn.starttls()


def test_tls_established_only_after_starttls() -> None:
    conn = play([*greeted()]).connection
    with pytest.raises(LocalProtocolError, match="no TLS handshake"):
        conn.tls_established()


def test_close_during_the_handshake() -> None:
    outcome = play([*greeted(), lambda c: c.starttls(), b"220 ready\r\n", CLOSE])
    assert outcome.events[-1] == ConnectionClosed(delivery=DeliveryStatus.NO_TRANSACTION)


def test_require_tls_refuses_mail_in_plain_text() -> None:
    conn = play([*greeted()], require_tls=True).connection
    with pytest.raises(
        LocalProtocolError, match=r"^TLS is required before a mail transaction can start$"
    ):
        conn.mail("a@example.org")
    conn = play([*greeted()], require_tls=True, tls_active=True).connection
    conn.mail("a@example.org")
    assert conn.data_to_send() == b"MAIL FROM:<a@example.org>\r\n"


# -- 421 and closing ---------------------------------------------------------------------------


def _service_closing_at(stage: int) -> Outcome:
    steps: list[Step] = [
        GREETING,
        lambda c: c.ehlo("client.example"),
        EHLO_BASIC,
        lambda c: c.mail("a@example.org"),
        OK,
        lambda c: c.rcpt("b@example.org"),
        OK,
        lambda c: c.data(),
        GO,
        lambda c: (c.send_data(b"body"), c.end_data()),
    ]
    # Replace the stage-th server step by a 421, and stop the script there.
    server_steps = [i for i, step in enumerate(steps) if isinstance(step, bytes)]
    cut = server_steps[stage] if stage < len(server_steps) else len(steps)
    script = [*steps[:cut], b"421 4.3.2 closing\r\n", CLOSE]
    return play_every_way(script)


@pytest.mark.parametrize(
    ("stage", "delivery"),
    [
        (0, DeliveryStatus.NO_TRANSACTION),  # instead of the greeting
        (1, DeliveryStatus.NO_TRANSACTION),  # in reply to EHLO
        (2, DeliveryStatus.FAILED),  # to MAIL
        (3, DeliveryStatus.FAILED),  # to RCPT
        (4, DeliveryStatus.FAILED),  # to DATA
        (5, DeliveryStatus.FAILED),  # to the final dot: a refusal, not an unknown
    ],
)
def test_421_at_every_stage(stage: int, delivery: DeliveryStatus) -> None:
    outcome = _service_closing_at(stage)
    closing, closed = outcome.events[-2:]
    assert isinstance(closing, ServiceClosing)
    assert closing.reply.code == 421
    assert closed == ConnectionClosed(delivery=delivery)
    assert outcome.connection.state is State.CLOSED


def test_unsolicited_421_while_idle_and_while_sending_content() -> None:
    outcome = play_every_way([*greeted(), b"421 idle too long\r\n", CLOSE])
    assert events_of(outcome)[-2:] == ["ServiceClosing", "ConnectionClosed"]
    outcome = play_every_way(
        [
            *greeted(),
            lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.data()),
            OK + OK + GO,
            lambda c: c.send_data(b"part"),
            b"421 timeout\r\n",
            CLOSE,
        ]
    )
    assert outcome.events[-1] == ConnectionClosed(delivery=DeliveryStatus.FAILED)
    with pytest.raises(LocalProtocolError):
        outcome.connection.send_data(b"more")


def test_nothing_can_be_sent_after_421() -> None:
    conn = play([*greeted(), b"421 bye\r\n"]).connection
    with pytest.raises(LocalProtocolError, match="state CLOSED"):
        conn.quit()


@pytest.mark.parametrize(
    ("script_end", "delivery"),
    [
        ([], DeliveryStatus.NO_TRANSACTION),
        ([lambda c: c.mail("a@example.org")], DeliveryStatus.FAILED),
        ([lambda c: c.mail("a@example.org"), OK], DeliveryStatus.FAILED),
        (
            [lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.data()), OK + OK + GO],
            DeliveryStatus.FAILED,
        ),
        (
            [
                lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.data()),
                OK + OK + GO,
                lambda c: c.end_data(),
            ],
            DeliveryStatus.UNKNOWN,
        ),
        (
            [
                lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.bdat(b"x", last=True)),
                OK + OK,
            ],
            DeliveryStatus.UNKNOWN,
        ),
        (
            [
                lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.bdat(b"x", last=True)),
                OK + OK + OK,
            ],
            DeliveryStatus.NO_TRANSACTION,
        ),
        ([lambda c: c.quit(), BYE], DeliveryStatus.NO_TRANSACTION),
        # Commands outside a transaction still awaiting replies lose no message.
        ([lambda c: c.noop()], DeliveryStatus.NO_TRANSACTION),
    ],
)
def test_connection_loss_reports_the_delivery_status(
    script_end: list[Step], delivery: DeliveryStatus
) -> None:
    outcome = play_every_way([*greeted(), *script_end, CLOSE])
    assert outcome.events[-1] == ConnectionClosed(delivery=delivery)


def test_a_reply_cut_off_by_the_close_is_dropped() -> None:
    outcome = play_every_way([*greeted(), lambda c: c.noop(), b"250-partial\r\n250", CLOSE])
    assert events_of(outcome)[-1] == "ConnectionClosed"


def test_connection_closed_repeats_and_nothing_more_can_be_fed() -> None:
    conn = play([GREETING, CLOSE]).connection
    closed = conn.next_event()
    assert isinstance(closed, ConnectionClosed)
    assert conn.next_event() == closed
    with pytest.raises(LocalProtocolError, match="after the end of the stream"):
        conn.receive_data(b"250 late\r\n")


# -- the server breaking the protocol -----------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        [b"250 unsolicited but not a greeting? fine\r\n", b"250 nothing outstanding\r\n"],
        [*greeted(), b"250 nothing outstanding\r\n"],
        [*greeted(), lambda c: c.mail("a@example.org"), b"354 nonsense\r\n"],
        [
            *greeted(),
            lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.data()),
            OK + OK + OK,
        ],
        [*greeted(), lambda c: c.noop(), b"354 nonsense\r\n"],
        [b"220 ok\n"],
        [b"220 ok\r\n", lambda c: c.ehlo("client.example"), b"250-a\r\n251 b\r\n"],
    ],
)
def test_server_protocol_errors_poison_the_connection(script: list[Step]) -> None:
    with pytest.raises(RemoteProtocolError):
        play(script)
    with pytest.raises(RemoteProtocolError):
        play(script, "bytewise")


def test_after_a_remote_error_every_call_fails() -> None:
    conn = ClientConnection()
    conn.receive_data(b"220 hi\r\n250 extra\r\n")
    assert isinstance(conn.next_event(), Greeting)
    with pytest.raises(RemoteProtocolError, match="to no command"):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="unusable after an earlier RemoteProtocolError"):
        conn.receive_data(b"x")
    with pytest.raises(LocalProtocolError, match="unusable after an earlier RemoteProtocolError"):
        conn.ehlo("client.example")
    assert conn.data_to_send() == b""


def test_oversized_input_is_refused_without_buffering() -> None:
    conn = ClientConnection(
        limits=Limits(max_reply_line_length=64, max_reply_size=64, max_receive_buffer=128)
    )
    conn.receive_data(b"x" * 100)
    with pytest.raises(RemoteProtocolError, match="max_receive_buffer"):
        conn.receive_data(b"x" * 29)


# -- caller input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.mail("a@example.org>\r\nRCPT TO:<victim@example.org"),
        lambda c: c.mail("a@example.org", {"SIZE": "1\r\nRSET"}),
        lambda c: c.vrfy("alice\nQUIT"),
        lambda c: c.ehlo("client\x00example"),
        lambda c: c.send_command("XCLIENT", "NAME=a\rQUIT"),
        lambda c: c.mail("a" * 600 + "@example.org"),
        lambda c: c.help(""),
    ],
)
def test_bad_caller_input_produces_nothing_and_does_not_poison(call: Step) -> None:
    conn = play([*greeted()]).connection
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the input
        call(conn)  # type: ignore[operator]
    assert conn.data_to_send() == b""
    assert conn.state is State.READY
    conn.noop()
    assert conn.data_to_send() == b"NOOP\r\n"


@pytest.mark.parametrize("verb", ["MAIL", "data", "StartTLS", "QUIT", "AUTH", "ehlo", "BDAT"])
def test_send_command_refuses_verbs_that_change_state(verb: str) -> None:
    conn = play([*greeted()]).connection
    with pytest.raises(ValueError, match="method"):
        conn.send_command(verb)
    assert conn.data_to_send() == b""


def test_other_commands() -> None:
    outcome = play_every_way(
        [
            *greeted(),
            lambda c: c.vrfy("alice"),
            b"252 2.1.5 cannot verify\r\n",
            lambda c: c.expn("staff"),
            b"502 5.5.1 no\r\n",
            lambda c: c.help("MAIL"),
            b"214-help\r\n214 end\r\n",
            lambda c: c.help(),
            b"214 help\r\n",
            lambda c: c.send_command("ETRN", "example.org"),
            b"250 queued\r\n",
            lambda c: c.noop(),
            OK,
            lambda c: c.rset(),
            OK,
        ]
    )
    assert outcome.sent.endswith(
        b"VRFY alice\r\nEXPN staff\r\nHELP MAIL\r\nHELP\r\nETRN example.org\r\nNOOP\r\nRSET\r\n"
    )
    replies = outcome.events[2:]
    assert all(isinstance(reply, Reply) for reply in replies)
    assert [r.code for r in replies if isinstance(r, Reply)] == [252, 502, 214, 214, 250, 250, 250]


# -- LMTP ----------------------------------------------------------------------------------------


def test_lmtp_reports_each_recipient() -> None:
    def envelope(c: ClientConnection) -> None:
        c.mail("a@example.org")
        c.rcpt("one@example.org")
        c.rcpt("unknown@example.org")
        c.rcpt("two@example.org")
        c.rcpt("three@example.org")
        c.data()

    outcome = play_every_way(
        [
            GREETING,
            lambda c: c.lhlo("client.example"),
            b"250-lmtp.example.org\r\n250 PIPELINING\r\n",
            envelope,
            OK + OK + b"550 5.1.1 unknown\r\n" + OK + OK + GO,
            lambda c: (c.send_data(b"hi\r\n"), c.end_data()),
            b"250 2.0.0 one ok\r\n452 4.2.2 two is over quota\r\n250 2.0.0 three ok\r\n",
        ],
        lmtp=True,
    )
    assert outcome.sent.startswith(b"LHLO client.example\r\n")
    results = [
        (type(e).__name__, e.recipient, e.reply.code)
        for e in outcome.events
        if isinstance(e, (MessageAccepted, MessageRejected))
    ]
    assert results == [
        ("MessageAccepted", "one@example.org", 250),
        ("MessageRejected", "two@example.org", 452),
        ("MessageAccepted", "three@example.org", 250),
    ]
    assert outcome.connection.commands_in_flight == 0


def test_lmtp_with_bdat() -> None:
    def message(c: ClientConnection) -> None:
        c.mail("a@example.org")
        c.rcpt("one@example.org")
        c.rcpt("two@example.org")
        c.bdat(b"hi\r\n", last=True)

    outcome = play_every_way(
        [
            GREETING,
            lambda c: c.lhlo("client.example"),
            b"250-lmtp.example.org\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
            message,
            OK + OK + OK + OK + b"550 no\r\n",
        ],
        lmtp=True,
    )
    assert events_of(outcome)[-2:] == ["MessageAccepted", "MessageRejected"]


def test_lmtp_with_no_recipient_gets_a_single_reply() -> None:
    outcome = play_every_way(
        [
            GREETING,
            lambda c: c.lhlo("client.example"),
            b"250-lmtp.example.org\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
            lambda c: (c.mail("a@b.example"), c.rcpt("x@b.example"), c.bdat(b"x", last=True)),
            OK + b"550 no\r\n" + b"554 no valid recipients\r\n",
            lambda c: c.noop(),
            OK,
        ],
        lmtp=True,
    )
    assert events_of(outcome)[-3:] == ["RecipientRefused", "MessageRejected", "Reply"]
    rejected = outcome.events[-2]
    assert isinstance(rejected, MessageRejected)
    assert rejected.recipient is None


def test_lmtp_greets_with_lhlo_only() -> None:
    conn = play([GREETING], lmtp=True).connection
    with pytest.raises(LocalProtocolError, match="LHLO"):
        conn.ehlo("client.example")
    conn = play([GREETING], lmtp=True).connection
    with pytest.raises(LocalProtocolError, match="LHLO"):
        conn.helo("client.example")
    conn = play([GREETING]).connection
    with pytest.raises(LocalProtocolError, match="only for LMTP"):
        conn.lhlo("client.example")
    assert conn.lmtp is False


# -- time -----------------------------------------------------------------------------------------


def test_the_published_timeout_follows_what_is_awaited() -> None:
    timeouts = Timeouts(
        greeting=1, mail=2, rcpt=3, data_initiation=4, data_block=5, data_termination=6, other=7
    )
    conn = ClientConnection(timeouts=timeouts)
    assert conn.timeouts is timeouts
    assert conn.limits == Limits()
    assert conn.timeout == 1
    conn.receive_data(GREETING)
    drain(conn, Outcome(conn))
    assert conn.timeout is None
    conn.ehlo("client.example")
    assert conn.timeout == 7
    conn.receive_data(EHLO_FULL)
    drain(conn, Outcome(conn))
    conn.mail("a@example.org")
    assert conn.timeout == 2
    conn.rcpt("b@example.org")
    assert conn.timeout == 2  # the oldest outstanding reply is MAIL's
    conn.receive_data(OK)
    drain(conn, Outcome(conn))
    assert conn.timeout == 3
    conn.data()
    conn.receive_data(OK)
    drain(conn, Outcome(conn))
    assert conn.timeout == 4
    conn.receive_data(GO)
    drain(conn, Outcome(conn))
    assert conn.timeout == 5
    conn.end_data()
    assert conn.timeout == 6


def test_need_data_until_a_reply_is_complete() -> None:
    conn = ClientConnection()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"220-first line\r\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"220 second\r\n")
    greeting = conn.next_event()
    assert isinstance(greeting, Greeting)
    assert greeting.reply.lines == ("first line", "second")


def test_events_carry_what_they_answer() -> None:
    outcome = play_every_way(
        [
            *greeted(),
            lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.bdat(b"x")),
            OK + OK + OK,
        ]
    )
    sender, recipient, chunk = outcome.events[2:]
    assert sender == SenderAccepted(sender="a@b.example", reply=sender.reply)  # type: ignore[union-attr]
    assert isinstance(recipient, RecipientAccepted)
    assert recipient.recipient == "c@d.example"
    assert isinstance(chunk, ChunkAccepted)
    assert chunk.reply.code == 250


def test_the_debug_log_summarises_content() -> None:
    conn = play([*greeted(), lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"))]).connection
    conn.bdat(b"secret message", last=False)
    data, log = conn.data_to_send_and_log()
    assert data == b"BDAT 14\r\nsecret message"
    assert log == ("BDAT 14", "[14 octets of message content]")
    conn = play(
        [
            *greeted(),
            lambda c: (c.mail("a@b.example"), c.rcpt("c@d.example"), c.data()),
            OK + OK + GO,
        ]
    ).connection
    conn.send_data(b"secret")
    conn.end_data()
    data, log = conn.data_to_send_and_log()
    # The end is logged as the dot alone, even where it completes the last line.
    assert data == b"secret\r\n.\r\n"
    assert log == ("[6 octets of message content]", ".")


def test_the_debug_log_has_a_line_per_command_of_a_pipelined_envelope() -> None:
    # The recipients go out in one step; the log keeps one entry per line, after those
    # already waiting (the NOOP's and MAIL's).
    conn = play([*greeted()]).connection
    conn.noop()
    conn.receive_data(OK)
    assert conn.next_event() is not NEED_DATA
    conn.send_message("a@b.example", ["c@d.example", "e@f.example"], b"x")
    data, log = conn.data_to_send_and_log()
    assert data.count(b"\r\n") == 4
    assert log == (
        "NOOP",
        "MAIL FROM:<a@b.example> SIZE=1",
        "RCPT TO:<c@d.example>",
        "RCPT TO:<e@f.example>",
    )


def test_non_ascii_addresses_need_smtputf8() -> None:
    conn = play([*greeted()]).connection
    with pytest.raises(ValueError, match="SMTPUTF8"):
        conn.mail("b\u00fcb@example.net")
    assert conn.data_to_send() == b""
    conn.mail("alice@example.org")
    with pytest.raises(ValueError, match="SMTPUTF8"):
        conn.rcpt("b\u00fcb@example.net")
    assert conn.data_to_send() == b"MAIL FROM:<alice@example.org>\r\n"
    conn.rset()
    conn.mail("b\u00fcb@example.net", {"SMTPUTF8": None})
    conn.rcpt("j\u00f6rg@example.net")
    assert "j\u00f6rg".encode() in conn.data_to_send()
