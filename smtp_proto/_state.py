"""The client's state machine, as data.

Two tables say everything about sequencing:

* :data:`SEND_TRANSITIONS` maps (state, command) to the state the session is in once the
  command is on the wire. A pair missing from it is a caller error.
* :data:`REPLY_TRANSITIONS` maps (command, reply class) to the event that reports the reply
  and the state change it causes. A pair missing from it is a server error: a 354 to MAIL, or a
  250 to DATA. Decisions go by the reply's class (its first digit), never by whitelisting
  exact codes, so any code RFC 5321 section 4.2.1 allows is understood.

With pipelining (RFC 2920) the client runs ahead of the server: the send table moves the
state when a command is written, and a reply moves it again only when the reply belongs to
the transaction still current and the state is one the table lists for it. A refused MAIL
therefore ends its own transaction, but never one the client has started since.

Everything else (421 from anywhere, the EHLO-to-HELO fallback, LMTP's one reply per recipient)
is handled in ``_connection.py`` and documented there.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TypeAlias

from ._ehlo import parse_ehlo
from ._events import (
    AuthFailed,
    AuthSucceeded,
    ChunkAccepted,
    Event,
    Greeting,
    MessageAccepted,
    MessageRejected,
    ReadyForData,
    RecipientAccepted,
    RecipientRefused,
    Reply,
    SenderAccepted,
    SenderRefused,
    StartTlsReady,
    fast_constructor,
)

__all__ = ["Command", "State"]


class State(enum.Enum):
    """Where the client's side of the session stands."""

    #: Connected; the server's greeting has not arrived.
    AWAIT_GREETING = "AWAIT_GREETING"
    #: The server refused service in its greeting (554): only QUIT makes sense.
    GREETING_REFUSED = "GREETING_REFUSED"
    #: Greeted (or after STARTTLS): EHLO, HELO or LHLO must come before any mail.
    GREETED = "GREETED"
    #: Hello done, no mail transaction open.
    READY = "READY"
    #: MAIL sent; no RCPT yet.
    MAIL = "MAIL"
    #: At least one RCPT sent.
    RCPT = "RCPT"
    #: DATA sent; waiting for 354.
    DATA_REQUESTED = "DATA_REQUESTED"
    #: 354 received: message content is being sent.
    DATA_BODY = "DATA_BODY"
    #: At least one BDAT chunk sent, not yet the last.
    BDAT = "BDAT"
    #: STARTTLS sent; waiting for its reply.
    STARTTLS_REQUESTED = "STARTTLS_REQUESTED"
    #: STARTTLS accepted: the transport must do the TLS handshake (next_event says PAUSED).
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    #: QUIT sent.
    QUIT_SENT = "QUIT_SENT"
    #: The session is over: after the reply to QUIT, a 421, or the peer closing.
    CLOSED = "CLOSED"
    #: A protocol error poisoned the connection.
    ERROR = "ERROR"

    # Members are singletons compared by identity, so identity hashing is correct, and it
    # runs in C: Enum's own __hash__ is Python code, and the transition tables are looked
    # up several times per command.
    __hash__ = object.__hash__


class Command(enum.Enum):
    """What a line (or block) the client sends is, as far as sequencing is concerned."""

    #: Not sent: the greeting is awaited as if it answered a command, which lets one queue
    #: match every reply, the first one included.
    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    LHLO = "LHLO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    #: The final "." of DATA content.
    END_OF_DATA = "end of data"
    #: A BDAT chunk that is not the last.
    BDAT = "BDAT"
    BDAT_LAST = "BDAT LAST"
    RSET = "RSET"
    NOOP = "NOOP"
    VRFY = "VRFY"
    EXPN = "EXPN"
    HELP = "HELP"
    QUIT = "QUIT"
    STARTTLS = "STARTTLS"
    #: AUTH and the exchange of challenges and responses it starts (RFC 4954).
    AUTH = "AUTH"
    #: Any other (extension) command, sent with ClientConnection.send_command().
    OTHER = "other"

    __hash__ = object.__hash__  # see State


class ReplyClass(enum.Enum):
    """The first digit of a reply code, which is what decisions are made on."""

    POSITIVE = 2
    INTERMEDIATE = 3
    NEGATIVE = 4  # 4xx and 5xx alike: both mean "this command failed"

    __hash__ = object.__hash__  # see State


#: A reply code's first digit -> its class; Reply guarantees a code from 200 to 599.
CLASS_OF_FIRST_DIGIT: Mapping[int, ReplyClass] = {
    2: ReplyClass.POSITIVE,
    3: ReplyClass.INTERMEDIATE,
    4: ReplyClass.NEGATIVE,
    5: ReplyClass.NEGATIVE,
}


S = State
C = Command

# Commands that may be sent whenever the session is not inside message content. RFC 5321
# section 4.1.4 allows NOOP, HELP, VRFY, EXPN and RSET at any point; extension commands are
# treated the same way, since the engine cannot know their semantics.
_ANYTIME = (C.NOOP, C.HELP, C.VRFY, C.EXPN, C.OTHER)

SEND_TRANSITIONS: Mapping[State, Mapping[Command, State]] = {
    S.AWAIT_GREETING: {},
    S.GREETING_REFUSED: {C.QUIT: S.QUIT_SENT},
    S.GREETED: {
        C.EHLO: S.GREETED,
        C.HELO: S.GREETED,
        C.LHLO: S.GREETED,
        C.RSET: S.GREETED,
        C.QUIT: S.QUIT_SENT,
        **dict.fromkeys(_ANYTIME, S.GREETED),
    },
    S.READY: {
        C.EHLO: S.READY,
        C.HELO: S.READY,
        C.LHLO: S.READY,
        C.MAIL: S.MAIL,
        C.RSET: S.READY,
        C.STARTTLS: S.STARTTLS_REQUESTED,
        C.AUTH: S.READY,
        C.QUIT: S.QUIT_SENT,
        **dict.fromkeys(_ANYTIME, S.READY),
    },
    S.MAIL: {
        C.RCPT: S.RCPT,
        C.RSET: S.READY,
        C.QUIT: S.QUIT_SENT,
        **dict.fromkeys(_ANYTIME, S.MAIL),
    },
    S.RCPT: {
        C.RCPT: S.RCPT,
        C.DATA: S.DATA_REQUESTED,
        C.BDAT: S.BDAT,
        C.BDAT_LAST: S.READY,
        C.RSET: S.READY,
        C.QUIT: S.QUIT_SENT,
        **dict.fromkeys(_ANYTIME, S.RCPT),
    },
    S.DATA_REQUESTED: {},
    # Inside DATA content every line is content: no command can be sent, only the end.
    S.DATA_BODY: {C.END_OF_DATA: S.READY},
    # RFC 3030 section 2: between chunks the client may abort with RSET (or QUIT).
    S.BDAT: {
        C.BDAT: S.BDAT,
        C.BDAT_LAST: S.READY,
        C.RSET: S.READY,
        C.QUIT: S.QUIT_SENT,
        C.NOOP: S.BDAT,
    },
    S.STARTTLS_REQUESTED: {},
    S.TLS_HANDSHAKE: {},
    S.QUIT_SENT: {},
    S.CLOSED: {},
    S.ERROR: {},
}

#: States after which no mail transaction can start again: the session ended, or is ending.
ENDED_STATES = frozenset({S.CLOSED, S.ERROR, S.QUIT_SENT})

#: States inside a mail transaction (RFC 5321 section 3.3).
TRANSACTION_STATES = frozenset({S.MAIL, S.RCPT, S.DATA_REQUESTED, S.DATA_BODY, S.BDAT})

#: RFC 2920 section 3.1: these may only be the last command of a pipelined group, because
#: what the client may send next depends on their reply. STARTTLS and AUTH (RFC 4954) are
#: added for the same reason; extension commands are treated as if they were such commands
#: because their effect is unknown.
GROUP_ENDERS = frozenset(
    {C.GREETING, C.EHLO, C.HELO, C.LHLO, C.DATA, C.NOOP, C.VRFY, C.EXPN, C.HELP, C.QUIT}
    | {C.STARTTLS, C.AUTH, C.OTHER}
)

#: Which :class:`Timeouts` field applies while each command's reply is awaited (RFC 5321
#: section 4.5.3.2).
TIMEOUT_FIELD: Mapping[Command, str] = {
    C.GREETING: "greeting",
    C.MAIL: "mail",
    C.RCPT: "rcpt",
    C.DATA: "data_initiation",
    C.BDAT: "data_block",
    C.END_OF_DATA: "data_termination",
    C.BDAT_LAST: "data_termination",
    **dict.fromkeys(
        (C.EHLO, C.HELO, C.LHLO, C.RSET, C.QUIT, C.STARTTLS, C.AUTH, *_ANYTIME), "other"
    ),
}

#: Builds the event for a reply, from the command's argument (sender, recipient) and the
#: reply itself.
EventBuilder: TypeAlias = Callable[[str, Reply], Event]


def _reply_itself(argument: str, reply: Reply) -> Event:
    return reply


def _greeting(argument: str, reply: Reply) -> Event:
    return Greeting(reply=reply)


# The events made per message are made without their dataclass __init__ (see
# fast_constructor). The two-field ones take (argument, reply) in that order, so their
# constructors are builders as they are.
_sender_accepted: EventBuilder = fast_constructor(SenderAccepted)


def _sender_refused(argument: str, reply: Reply) -> Event:
    return SenderRefused(sender=argument, reply=reply)


_recipient_accepted: EventBuilder = fast_constructor(RecipientAccepted)


_recipient_refused: EventBuilder = fast_constructor(RecipientRefused)


_new_ready_for_data = fast_constructor(ReadyForData)


def _ready_for_data(argument: str, reply: Reply) -> Event:
    return _new_ready_for_data(reply)


_new_chunk_accepted = fast_constructor(ChunkAccepted)


def _chunk_accepted(argument: str, reply: Reply) -> Event:
    return _new_chunk_accepted(reply)


_new_message_accepted = fast_constructor(MessageAccepted)


def _message_accepted(argument: str, reply: Reply) -> Event:
    return _new_message_accepted(reply, None)


def _message_rejected(argument: str, reply: Reply) -> Event:
    return MessageRejected(reply=reply)


def _auth_succeeded(argument: str, reply: Reply) -> Event:
    return AuthSucceeded(mechanism=argument, reply=reply)


def _auth_failed(argument: str, reply: Reply) -> Event:
    return AuthFailed(mechanism=argument, reply=reply)


def _starttls_ready(argument: str, reply: Reply) -> Event:
    return StartTlsReady(reply=reply)


def _ehlo_features(argument: str, reply: Reply) -> Event:
    return parse_ehlo(reply, esmtp=True)


def _helo_features(argument: str, reply: Reply) -> Event:
    return parse_ehlo(reply, esmtp=False)


P = ReplyClass.POSITIVE
I = ReplyClass.INTERMEDIATE  # noqa: E741 - reads as the table's column heading
N = ReplyClass.NEGATIVE
_HELLO_STATES = {S.GREETED: S.READY, S.READY: S.READY}

#: (command, reply class) -> (event builder, {state before: state after}). The state change
#: applies only if the reply answers the transaction that is still current.
REPLY_TRANSITIONS: Mapping[
    tuple[Command, ReplyClass], tuple[EventBuilder, Mapping[State, State]]
] = {
    (C.GREETING, P): (_greeting, {S.AWAIT_GREETING: S.GREETED}),
    (C.GREETING, N): (_greeting, {S.AWAIT_GREETING: S.GREETING_REFUSED}),
    (C.EHLO, P): (_ehlo_features, _HELLO_STATES),
    (C.EHLO, N): (_reply_itself, {}),
    (C.HELO, P): (_helo_features, _HELLO_STATES),
    (C.HELO, N): (_reply_itself, {}),
    (C.LHLO, P): (_ehlo_features, _HELLO_STATES),
    (C.LHLO, N): (_reply_itself, {}),
    (C.MAIL, P): (_sender_accepted, {}),
    # A refused MAIL ends the transaction unless DATA or BDAT was already pipelined, in
    # which case their own (negative) replies end it.
    (C.MAIL, N): (_sender_refused, {S.MAIL: S.READY, S.RCPT: S.READY}),
    (C.RCPT, P): (_recipient_accepted, {}),
    (C.RCPT, N): (_recipient_refused, {}),
    (C.DATA, I): (_ready_for_data, {S.DATA_REQUESTED: S.DATA_BODY}),
    (C.DATA, N): (_message_rejected, {S.DATA_REQUESTED: S.READY}),
    (C.BDAT, P): (_chunk_accepted, {}),
    # RFC 3030 section 2: after a failed chunk the client must not send further chunks.
    (C.BDAT, N): (_message_rejected, {S.BDAT: S.READY}),
    (C.BDAT_LAST, P): (_message_accepted, {}),
    (C.BDAT_LAST, N): (_message_rejected, {}),
    (C.END_OF_DATA, P): (_message_accepted, {}),
    (C.END_OF_DATA, N): (_message_rejected, {}),
    (C.RSET, P): (_reply_itself, {}),
    (C.RSET, N): (_reply_itself, {}),
    (C.STARTTLS, P): (_starttls_ready, {S.STARTTLS_REQUESTED: S.TLS_HANDSHAKE}),
    (C.STARTTLS, N): (_reply_itself, {S.STARTTLS_REQUESTED: S.READY}),
    # A 334 is answered by the mechanism, in the connection, and gives no event of its own.
    (C.AUTH, P): (_auth_succeeded, {}),
    (C.AUTH, I): (_reply_itself, {}),
    (C.AUTH, N): (_auth_failed, {}),
    (C.QUIT, P): (_reply_itself, {S.QUIT_SENT: S.CLOSED}),
    (C.QUIT, N): (_reply_itself, {S.QUIT_SENT: S.CLOSED}),
    **{(command, P): (_reply_itself, {}) for command in _ANYTIME},
    **{(command, N): (_reply_itself, {}) for command in _ANYTIME},
}

#: The same table as the connection reads it for every reply: command -> its transitions
#: indexed by the reply code's first digit (0 to 5; None where the reply is not a valid
#: answer), each with the reply's class. Made from REPLY_TRANSITIONS, so one lookup replaces
#: a class lookup, a key tuple and its hash.
TRANSITIONS_BY_DIGIT: Mapping[
    Command, tuple[tuple[EventBuilder, Mapping[State, State], ReplyClass] | None, ...]
] = {
    command: tuple(
        (*REPLY_TRANSITIONS[command, kind], kind)
        if (kind := CLASS_OF_FIRST_DIGIT.get(digit)) is not None
        and (command, kind) in REPLY_TRANSITIONS
        else None
        for digit in range(6)
    )
    for command in Command
}

#: Commands that belong to one mail transaction. Only their replies are checked against the
#: transaction still current before changing state; every other command ends a pipelined
#: group, so the state cannot have moved on while its reply was awaited.
TRANSACTION_COMMANDS = frozenset({C.MAIL, C.RCPT, C.DATA, C.END_OF_DATA, C.BDAT, C.BDAT_LAST})

#: Commands whose last reply ends a message: under LMTP each has one reply per recipient.
MESSAGE_END_COMMANDS = frozenset({C.END_OF_DATA, C.BDAT_LAST})
