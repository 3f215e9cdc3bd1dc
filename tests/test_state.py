"""Every (state, command) and every (command, reply class) pair of the state machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pytest

from smtp_proto import (
    NEED_DATA,
    PAUSED,
    ClientConnection,
    Command,
    EhloFeatures,
    Event,
    LocalProtocolError,
    Mechanism,
    MessageAccepted,
    ReadyForData,
    RecipientAccepted,
    RecipientRefused,
    RemoteProtocolError,
    Reply,
    SenderAccepted,
    State,
)
from smtp_proto._state import (
    GROUP_ENDERS,
    REPLY_TRANSITIONS,
    SEND_TRANSITIONS,
    TIMEOUT_FIELD,
    TRANSACTION_STATES,
    TRANSITIONS_BY_DIGIT,
    ReplyClass,
)

EHLO = (
    b"250-mx.example.org\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-AUTH X-TEST\r\n250 STARTTLS\r\n"
)
OK = b"250 ok\r\n"


class Echo(Mechanism):
    """A mechanism that exposes no secret: it answers each challenge with itself."""

    name: ClassVar[str] = "X-TEST"
    sends_secret: ClassVar[bool] = False

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        return challenge


def feed(conn: ClientConnection, data: bytes) -> list[Event]:
    conn.receive_data(data)
    events: list[Event] = []
    for _ in range(100):
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        assert isinstance(event, Event), event
        events.append(event)
    raise AssertionError("next_event() never asked for data")


def ready(*, lmtp: bool = False) -> ClientConnection:
    conn = ClientConnection(lmtp=lmtp)
    feed(conn, b"220 hi\r\n")
    (conn.lhlo if lmtp else conn.ehlo)("client.example")
    feed(conn, EHLO)
    conn.data_to_send()
    return conn


def poison(conn: ClientConnection) -> None:
    with pytest.raises(LocalProtocolError):
        conn.end_data()


def reach(state: State, *, lmtp: bool = False) -> ClientConnection:
    """A connection in *state*, with the server's features above."""
    if state is State.AWAIT_GREETING:
        return ClientConnection(lmtp=lmtp)
    if state is State.GREETING_REFUSED:
        conn = ClientConnection(lmtp=lmtp)
        feed(conn, b"554 no\r\n")
        return conn
    if state is State.GREETED:
        conn = ClientConnection(lmtp=lmtp)
        feed(conn, b"220 hi\r\n")
        return conn
    conn = ready(lmtp=lmtp)
    steps: dict[State, list[Callable[[], object]]] = {
        State.READY: [],
        State.MAIL: [lambda: conn.mail("a@b.example"), lambda: feed(conn, OK)],
        State.RCPT: [
            lambda: conn.mail("a@b.example"),
            lambda: conn.rcpt("c@d.example"),
            lambda: feed(conn, OK + OK),
        ],
        State.BDAT: [
            lambda: conn.mail("a@b.example"),
            lambda: conn.rcpt("c@d.example"),
            lambda: conn.bdat(b"x"),
            lambda: feed(conn, OK + OK + OK),
        ],
        State.DATA_REQUESTED: [
            lambda: conn.mail("a@b.example"),
            lambda: conn.rcpt("c@d.example"),
            conn.data,
        ],
        State.DATA_BODY: [
            lambda: conn.mail("a@b.example"),
            lambda: conn.rcpt("c@d.example"),
            conn.data,
            lambda: feed(conn, OK + OK + b"354 go\r\n"),
        ],
        State.STARTTLS_REQUESTED: [conn.starttls],
        State.TLS_HANDSHAKE: [conn.starttls, lambda: feed(conn, b"220 go\r\n")],
        State.QUIT_SENT: [conn.quit],
        State.CLOSED: [conn.quit, lambda: feed(conn, b"221 bye\r\n")],
        State.ERROR: [lambda: poison(conn)],
    }
    for step in steps[state]:
        step()
    conn.data_to_send()
    assert conn.state is state
    return conn


SENDERS: dict[Command, Callable[[ClientConnection], object]] = {
    Command.EHLO: lambda c: c.ehlo("client.example"),
    Command.HELO: lambda c: c.helo("client.example"),
    Command.LHLO: lambda c: c.lhlo("client.example"),
    Command.MAIL: lambda c: c.mail("a@b.example"),
    Command.RCPT: lambda c: c.rcpt("c@d.example"),
    Command.DATA: lambda c: c.data(),
    Command.END_OF_DATA: lambda c: c.end_data(),
    Command.BDAT: lambda c: c.bdat(b"chunk"),
    Command.BDAT_LAST: lambda c: c.bdat(b"chunk", last=True),
    Command.RSET: lambda c: c.rset(),
    Command.NOOP: lambda c: c.noop(),
    Command.VRFY: lambda c: c.vrfy("alice"),
    Command.EXPN: lambda c: c.expn("staff"),
    Command.HELP: lambda c: c.help(),
    Command.QUIT: lambda c: c.quit(),
    Command.STARTTLS: lambda c: c.starttls(),
    Command.OTHER: lambda c: c.send_command("ETRN", "example.org"),
    Command.AUTH: lambda c: c.auth(Echo()),
}


def test_every_command_has_a_sender_and_a_timeout() -> None:
    assert set(SENDERS) == set(Command) - {Command.GREETING}
    assert set(TIMEOUT_FIELD) == set(Command)
    assert set(SEND_TRANSITIONS) == set(State)


@pytest.mark.parametrize("command", list(SENDERS))
@pytest.mark.parametrize("state", list(State))
def test_every_state_and_command(state: State, command: Command) -> None:
    conn = reach(state, lmtp=command is Command.LHLO)
    expected = SEND_TRANSITIONS[state].get(command)
    if expected is None:
        with pytest.raises(LocalProtocolError):
            SENDERS[command](conn)
        assert conn.data_to_send() == b""
        assert conn.state is State.ERROR
        return
    before = conn.commands_in_flight
    SENDERS[command](conn)
    assert conn.data_to_send()
    assert conn.state is expected
    if command is not Command.END_OF_DATA or not conn.lmtp:
        assert conn.commands_in_flight == before + 1


# The specification of replies: the event each (command, reply class) gives, or None where
# the reply is a server error.
P, M, N = ReplyClass.POSITIVE, ReplyClass.INTERMEDIATE, ReplyClass.NEGATIVE
EXPECTED_EVENT: dict[tuple[Command, ReplyClass], str | None] = {
    (Command.GREETING, P): "Greeting",
    (Command.GREETING, M): None,
    (Command.GREETING, N): "Greeting",
    (Command.EHLO, P): "EhloFeatures",
    (Command.HELO, P): "EhloFeatures",
    (Command.LHLO, P): "EhloFeatures",
    (Command.MAIL, P): "SenderAccepted",
    (Command.MAIL, N): "SenderRefused",
    (Command.RCPT, P): "RecipientAccepted",
    (Command.RCPT, N): "RecipientRefused",
    (Command.DATA, P): None,
    (Command.DATA, M): "ReadyForData",
    (Command.DATA, N): "MessageRejected",
    (Command.END_OF_DATA, P): "MessageAccepted",
    (Command.END_OF_DATA, N): "MessageRejected",
    (Command.BDAT, P): "ChunkAccepted",
    (Command.BDAT, N): "MessageRejected",
    (Command.BDAT_LAST, P): "MessageAccepted",
    (Command.BDAT_LAST, N): "MessageRejected",
    (Command.STARTTLS, P): "StartTlsReady",
    (Command.AUTH, P): "AuthSucceeded",
    (Command.AUTH, N): "AuthFailed",
}


def with_pending(command: Command) -> ClientConnection:
    """A connection whose oldest outstanding command is *command*."""
    if command is Command.GREETING:
        return ClientConnection()
    setup = {
        Command.RCPT: State.MAIL,
        Command.DATA: State.RCPT,
        Command.BDAT: State.RCPT,
        Command.BDAT_LAST: State.RCPT,
        Command.END_OF_DATA: State.DATA_BODY,
    }.get(command, State.READY)
    conn = reach(setup, lmtp=command is Command.LHLO)
    SENDERS[command](conn)
    conn.data_to_send()
    return conn


REPLY_FOR = {P: b"250 yes\r\n", M: b"354 more\r\n", N: b"554 no\r\n"}


@pytest.mark.parametrize("kind", list(ReplyClass))
@pytest.mark.parametrize("command", list(Command))
def test_every_command_and_reply_class(command: Command, kind: ReplyClass) -> None:
    conn = with_pending(command)
    before = conn.state
    default = "Reply" if kind is not M else None
    expected = EXPECTED_EVENT.get((command, kind), default)
    if (command, kind) == (Command.AUTH, M):
        # A 334 is answered by the mechanism; the exchange goes on, with no event.
        assert feed(conn, REPLY_FOR[kind]) == []
        assert conn.data_to_send() == b"more\r\n"  # "more" decodes and re-encodes to itself
        assert conn.commands_in_flight == 1
        return
    if expected is None:
        assert (command, kind) not in REPLY_TRANSITIONS
        with pytest.raises(RemoteProtocolError, match="not a valid answer"):
            feed(conn, REPLY_FOR[kind])
        assert conn.state is State.ERROR
        return
    [event] = feed(conn, REPLY_FOR[kind])
    assert type(event).__name__ == expected
    # Every event carries the reply it comes from (a Reply event is that reply).
    reply = event if isinstance(event, Reply) else getattr(event, "reply", None)
    assert isinstance(reply, Reply)
    assert reply.raw == REPLY_FOR[kind]
    if isinstance(event, EhloFeatures):
        assert event.esmtp is (command is not Command.HELO)
    changes = REPLY_TRANSITIONS[command, kind][1]
    assert conn.state is changes.get(before, before)
    assert conn.commands_in_flight == 0


def test_group_enders_are_exactly_the_commands_rfc_2920_names() -> None:
    # RFC 2920 section 3.1 names EHLO, DATA, VRFY, EXPN, TURN, QUIT and NOOP; HELO, LHLO,
    # STARTTLS, AUTH and unknown extension commands are added because what follows them depends
    # on their outcome. MAIL, RCPT, RSET, BDAT and the end of data may be followed.
    followable = {
        Command.MAIL,
        Command.RCPT,
        Command.RSET,
        Command.BDAT,
        Command.BDAT_LAST,
        Command.END_OF_DATA,
    }
    assert set(Command) - GROUP_ENDERS == followable


def test_transitions_by_digit_are_the_reply_table() -> None:
    classes = {2: ReplyClass.POSITIVE, 3: ReplyClass.INTERMEDIATE}
    classes |= {4: ReplyClass.NEGATIVE, 5: ReplyClass.NEGATIVE}
    assert set(TRANSITIONS_BY_DIGIT) == set(Command)
    for command, row in TRANSITIONS_BY_DIGIT.items():
        assert len(row) == 6
        assert row[:2] == (None, None)
        for digit in range(2, 6):
            kind = classes[digit]
            expected = REPLY_TRANSITIONS.get((command, kind))
            assert row[digit] == (None if expected is None else (*expected, kind))


def test_a_recipients_reply_changes_no_state() -> None:
    # A batch takes recipients' replies the short way, without the table
    # (ClientConnection._take_replies): it relies on what the table says of them here.
    assert (Command.RCPT, ReplyClass.INTERMEDIATE) not in REPLY_TRANSITIONS
    reply = Reply(code=250, lines=("ok",))
    for kind, event in (
        (ReplyClass.POSITIVE, RecipientAccepted),
        (ReplyClass.NEGATIVE, RecipientRefused),
    ):
        build, state_changes = REPLY_TRANSITIONS[Command.RCPT, kind]
        assert state_changes == {}
        assert type(build("b@example.org", reply)) is event


def test_the_replies_a_batch_takes_the_short_way_change_nothing_but_their_transaction() -> None:
    # ClientConnection._take_replies hands a recipient's reply, and a sender's, DATA's and
    # the content's positive ones, straight to their transaction: the session must learn
    # nothing else from them, neither a state (but the 354's, which it takes from this
    # table) nor anything _record keeps (outside LMTP, where the accepted recipients are
    # kept for the replies to the content).
    reply = Reply(code=250, lines=("ok",))
    build, state_changes = REPLY_TRANSITIONS[Command.MAIL, ReplyClass.POSITIVE]
    assert state_changes == {}
    event = build("a@example.org", reply)
    assert type(event) is SenderAccepted
    build, state_changes = REPLY_TRANSITIONS[Command.END_OF_DATA, ReplyClass.POSITIVE]
    assert state_changes == {}
    assert type(build("", reply)) is MessageAccepted
    assert MessageAccepted not in ClientConnection()._recorded_events
    go_ahead = Reply(code=354, lines=("go ahead",))
    build, state_changes = REPLY_TRANSITIONS[Command.DATA, ReplyClass.INTERMEDIATE]
    assert state_changes == {State.DATA_REQUESTED: State.DATA_BODY}
    assert type(build("", go_ahead)) is ReadyForData
    assert ReadyForData not in ClientConnection()._recorded_events
    # DATA has no entry for a 2xx, which the table refuses: only a 3xx starts the content.
    assert {kind for command, kind in REPLY_TRANSITIONS if command is Command.DATA} == {
        ReplyClass.INTERMEDIATE,
        ReplyClass.NEGATIVE,
    }
    for kind in (ReplyClass.POSITIVE, ReplyClass.NEGATIVE):
        build, _ = REPLY_TRANSITIONS[Command.RCPT, kind]
        assert type(build("b@example.org", reply)) not in ClientConnection()._recorded_events
    assert SenderAccepted not in ClientConnection()._recorded_events
    assert RecipientAccepted in ClientConnection(lmtp=True)._recorded_events


def test_a_rcpt_leads_where_more_rcpts_may_follow_and_stay() -> None:
    # A pipelined envelope sends its recipients in one step, checking the state once: that
    # holds only if every RCPT after the first is allowed and leaves the state as it was.
    for state, commands in SEND_TRANSITIONS.items():
        if Command.RCPT in commands:
            after = commands[Command.RCPT]
            assert SEND_TRANSITIONS[after][Command.RCPT] is after, state
            assert Command.RCPT not in GROUP_ENDERS
            # Within the transaction, so setting it keeps the transaction's bookkeeping.
            assert after in TRANSACTION_STATES, state


def test_a_whole_envelope_from_ready_stays_within_the_transaction() -> None:
    # A pipelined transaction whose envelope fits in flight sends MAIL, its RCPTs and DATA
    # in one step, with no state check between them: from READY each must be allowed after
    # the one before, none but DATA may end a group, and every state must belong to the
    # transaction.
    after_mail = SEND_TRANSITIONS[State.READY][Command.MAIL]
    after_rcpt = SEND_TRANSITIONS[after_mail][Command.RCPT]
    assert Command.DATA in SEND_TRANSITIONS[after_rcpt]
    assert Command.MAIL not in GROUP_ENDERS
    assert Command.RCPT not in GROUP_ENDERS
    after_data = SEND_TRANSITIONS[after_rcpt][Command.DATA]
    assert {after_mail, after_rcpt, after_data} <= TRANSACTION_STATES


@pytest.mark.parametrize("command", list(Command))
def test_421_answers_every_command(command: Command) -> None:
    # RFC 5321 section 3.8: 421 may come in reply to any command, and ends the session.
    conn = with_pending(command)
    [event] = feed(conn, b"421 4.3.2 shutting down\r\n")
    assert type(event).__name__ == "ServiceClosing"
    assert conn.state is State.CLOSED
    assert conn.commands_in_flight == 0
    assert conn.timeout is None
    conn.receive_data(b"")
    assert type(conn.next_event()).__name__ == "ConnectionClosed"
