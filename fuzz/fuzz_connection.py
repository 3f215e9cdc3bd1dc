"""Coverage-guided fuzzing of the whole client engine, with atheris.

    python fuzz/fuzz_connection.py [libFuzzer options, e.g. -max_total_time=60] [corpus dirs]

An input is a scripted session:

* octet 0 sets the connection's options (the ``LMTP`` ... ``CLOSE_AT_END`` bits below);
* octet 1 says how many client actions follow (at most ``MAX_ACTIONS``);
* each of the next octets names an action, ``ACTIONS[octet % len(ACTIONS)]``, and gives it a
  small argument, ``octet // len(ACTIONS)`` (which sender, how many recipients, which body);
* the rest is what the server sends, cut at NUL octets into segments. The first segment
  arrives before the first action, each further segment after the next action; an empty
  segment means two actions in a row.

The scripted client behaves like a correct caller: it takes an action only when the session
permits it, judged by the public state (``state``, ``can_start_transaction``, ``features``,
``pipelining``, ``commands_in_flight``, ``body_wanted``) and by its own record of the last
command it wrote; otherwise the action is skipped. With the ``TRUST_ENGINE`` option it
pipelines whatever the engine's own check allows instead. It pulls a MailTransaction's
content whenever ``body_wanted`` says so, as a transport does, and leaves the commands of a
MailTransaction to it.

Invariants checked on every input:

* ``receive_data()`` and ``next_event()`` return or raise RemoteProtocolError, nothing else;
  a client action never raises, except ValueError from a documented argument check, and
  then it writes nothing. A LocalProtocolError anywhere is a finding: the client only did
  what the session said it could;
* the session played with each segment fed whole and fed one octet at a time gives the same
  events, the same bytes written between the same events, the same error and the same end;
* the receive buffer never holds more than ``Limits.max_receive_buffer``;
* after a protocol error nothing is left to send and every later call raises;
* every loop is bounded: ``next_event()`` asks for data within ``MAX_EVENTS`` calls;
* a transaction whose outcome is DELIVERY_UNKNOWN comes with ``ConnectionClosed`` saying so.

Engine behaviours this harness found are listed in ``KNOWN_FINDINGS`` and tolerated, so that
fuzzing goes on past them; fuzz/README.md describes each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NoReturn

from _fuzzing import fuzz

from smtp_proto import (
    NEED_DATA,
    PAUSED,
    ClientConnection,
    Command,
    ConnectionClosed,
    CramMD5,
    DeliveryStatus,
    Event,
    External,
    Limits,
    LocalProtocolError,
    Login,
    MailTransaction,
    Mechanism,
    MessageOutcome,
    Plain,
    RemoteProtocolError,
    ScramSha256,
    Sentinel,
    ServiceClosing,
    StartTlsReady,
    State,
    TransactionResult,
    XOAuth2,
)

# Octet 0: the connection's options.
LMTP = 0x01
TLS_ACTIVE = 0x02
REQUIRE_TLS = 0x04
SMALL_LIMITS = 0x08
LOOPBACK = 0x10
CLOSE_AT_END = 0x20
# Pipeline whatever the engine's own check allows (its private _send_refusal), rather than
# only what the scripted client's conservative record of its last command allows: then a
# command the engine accepted must never lead to a LocalProtocolError later.
TRUST_ENGINE = 0x40

ACTIONS = (
    "hello",  # EHLO, or LHLO under LMTP
    "helo",
    "mail",
    "rcpt",  # 1 to 3 of them
    "data",
    "send_data",
    "end_data",
    "bdat",
    "bdat_last",
    "rset",
    "noop",
    "other",  # VRFY, EXPN, HELP or an extension command
    "starttls",
    "tls_established",
    "quit",
    "send_message",  # a MailTransaction
    "auth",
    "close",  # the server closes the connection
)
MAX_ACTIONS = 64
SEPARATOR = b"\x00"

# Small enough for the fuzzer to reach every limit with short inputs.
SMALL = Limits(
    max_reply_line_length=256,
    max_reply_lines=16,
    max_reply_size=1024,
    max_receive_buffer=4096,
    max_commands_in_flight=6,
    max_auth_rounds=3,
    max_auth_line_length=256,
)

# next_event() must ask for data within this many calls, whatever was received: every event
# consumes at least one reply line, and the inputs are far shorter than this.
MAX_EVENTS = 10_000
# A transaction's content is pulled at most this many times in a row.
MAX_PULLS = 10_000

SENDERS = ("alice@example.org", "", "j\u00f6ran@example.de")
RECIPIENTS = ("bob@example.com", "carol@example.net", "postmaster", "\u00fc@example.de")
MAIL_PARAMETERS: tuple[dict[str, str | None], ...] = (
    {},
    {"SIZE": "100"},
    {"BODY": "8BITMIME"},
    {"SMTPUTF8": None},
)
# Content for send_data() and bdat(): smuggling vectors, lone dots, 8-bit, and a NUL, which
# send_data() refuses with ValueError (bdat() sends exact octets, NUL included).
CHUNKS = (
    b"Subject: fuzz\r\n\r\nHello.\r\n",
    b"line\n.\nMAIL FROM:<smuggled@example>\r\n",
    b"\r.\r",
    b".",
    b"\r",
    b"\n",
    b"..\r\n",
    b"\xe9\xff 8-bit\r\n",
    b"nul\x00",
)
# Content for MailTransaction: bytes, or a list of chunks given as an iterable.
BODIES: tuple[bytes | tuple[bytes, ...], ...] = (
    b"Subject: hi\r\n\r\nHello.\r\n",
    b"",
    b"a\n.\nMAIL FROM:<evil@example>\r\n.\r\n",
    b".\r\n",
    (b"chunk one\r", b"\n.two", b"\r\n"),
    b"\xc3\xa9t\xc3\xa9\r\n",
)
CHUNK_SIZES = (1, 3, 7, 64)
MECHANISMS: tuple[Callable[[], Mechanism], ...] = (
    lambda: Plain("user", "pencil"),
    lambda: Login("user", "pencil"),
    lambda: CramMD5("user", "pencil"),
    lambda: ScramSha256("user", "pencil", nonce="fuzznonce", max_iterations=64),
    lambda: XOAuth2("user", "token"),
    External,
)

# Commands after which nothing may be pipelined (RFC 2920 section 3.1, with STARTTLS, AUTH
# and extension commands). "unknown" stands for whatever the engine or a MailTransaction
# wrote on its own: the scripted client then waits for every reply before sending more.
GROUP_ENDERS = frozenset(
    {"greeting", "EHLO", "HELO", "LHLO", "DATA", "NOOP", "OTHER", "QUIT", "STARTTLS", "AUTH"}
    | {"unknown"}
)
HELLO_STATES = frozenset({State.GREETED, State.READY})
ANYTIME_STATES = frozenset({State.GREETED, State.READY, State.MAIL, State.RCPT})

# Engine behaviours found by this harness and not yet fixed, which it tolerates so that
# fuzzing can go on past them: code that checks for a name here skips that one behaviour.
# Each is described in fuzz/README.md; remove the name and its check once the engine is
# fixed, and its regression input in the corpus must then pass. None is open now.
KNOWN_FINDINGS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Script:
    options: int
    actions: list[tuple[str, int]]
    segments: list[bytes]


def parse(data: bytes) -> Script:
    """Read an input as a scripted session (see the module documentation)."""
    options = data[0] if data else 0
    count = min(data[1] if len(data) > 1 else 0, MAX_ACTIONS)
    codes = data[2 : 2 + count]
    actions = [(ACTIONS[code % len(ACTIONS)], code // len(ACTIONS)) for code in codes]
    return Script(options, actions, data[2 + count :].split(SEPARATOR))


def encode(options: int, actions: Iterable[tuple[str, int]], segments: Iterable[bytes]) -> bytes:
    """The input that :func:`parse` reads as this session; for writing seed inputs."""
    codes = bytes(ACTIONS.index(name) + len(ACTIONS) * argument for name, argument in actions)
    assert len(codes) <= MAX_ACTIONS
    return bytes((options, len(codes))) + codes + SEPARATOR.join(segments)


@dataclass(frozen=True)
class Sent:
    """Bytes the client wrote, as one item of a trace."""

    data: bytes


@dataclass
class Trace:
    """Everything observable about one playing of a script."""

    items: list[Event | Sentinel | Sent] = field(default_factory=list)
    error: str | None = None
    state: State | None = None
    results: list[TransactionResult | None] = field(default_factory=list)
    authenticated: bool = False
    tls_active: bool = False


class _Stopped(Exception):
    """A RemoteProtocolError ended the session; it is recorded in the trace."""


def _raises(kind: type[Exception], call: Callable[[], object]) -> None:
    try:
        call()
    except kind:
        return
    raise AssertionError(f"expected {kind.__name__} from a poisoned connection")


class Player:
    """Plays one script against a fresh connection."""

    def __init__(self, script: Script, *, bytewise: bool) -> None:
        options = script.options
        self.script = script
        self.bytewise = bytewise
        self.lmtp = bool(options & LMTP)
        self.limits = SMALL if options & SMALL_LIMITS else Limits()
        self.conn = ClientConnection(
            lmtp=self.lmtp,
            tls_active=bool(options & TLS_ACTIVE),
            require_tls=bool(options & REQUIRE_TLS),
            peer_is_loopback=bool(options & LOOPBACK),
            limits=self.limits,
        )
        self.trace = Trace()
        # The last command the scripted client wrote, for its pipelining decisions.
        self.last = "greeting"
        # Whether the current transaction was started by mail() rather than send_message().
        self.manual = False
        self.transactions: list[MailTransaction] = []
        # Transactions whose content is pulled when wanted (not those abandoned by RSET).
        self.feeding: list[MailTransaction] = []
        self.end_of_stream = False

    # -- the scripted session ------------------------------------------------------------

    def play(self) -> Trace:
        script = self.script
        try:
            self.feed(script.segments[0])
            for index in range(max(len(script.actions), len(script.segments) - 1)):
                if index < len(script.actions):
                    name, argument = script.actions[index]
                    try:
                        self.act(name, argument)
                        self.pull_bodies()
                    except (AssertionError, _Stopped):
                        raise
                    except Exception as exc:
                        # LocalProtocolError included: the client did only what the session
                        # permitted, so any refusal is the engine's fault.
                        raise AssertionError(f"action {name}({argument}) raised {exc!r}") from exc
                if index + 1 < len(script.segments):
                    self.feed(script.segments[index + 1])
            if script.options & CLOSE_AT_END:
                self.close()
        except _Stopped:
            pass
        conn = self.conn
        trace = self.trace
        trace.state = conn.state
        trace.results = [t.result if t.done else None for t in self.transactions]
        trace.authenticated = conn.authenticated
        trace.tls_active = conn.tls_active
        closed = [item for item in trace.items if isinstance(item, ConnectionClosed)]
        for result in trace.results:
            if result is None:
                continue
            if result.outcome is MessageOutcome.DELIVERY_UNKNOWN:
                assert closed, result
                assert closed[-1].delivery is DeliveryStatus.UNKNOWN, result
            if result.outcome is MessageOutcome.ACCEPTED:
                assert result.accepted_recipients, result
        return trace

    def may_follow(self, command: Command) -> bool:
        """Whether *command* may be written now as far as pipelining goes (RFC 2920)."""
        conn = self.conn
        if self.script.options & TRUST_ENGINE:
            return conn._may_send(command)
        if conn.commands_in_flight == 0:
            return True
        return (
            conn.pipelining
            and self.last not in GROUP_ENDERS
            and conn.commands_in_flight < self.limits.max_commands_in_flight
        )

    def act(self, name: str, argument: int) -> None:
        conn = self.conn
        state = conn.state
        features = conn.features
        if name == "hello":
            if state in HELLO_STATES and self.may_follow(Command.EHLO):
                if self.lmtp:
                    conn.lhlo("client.example")
                    self.wrote("LHLO")
                else:
                    conn.ehlo("client.example")
                    self.wrote("EHLO")
        elif name == "helo":
            if not self.lmtp and state in HELLO_STATES and self.may_follow(Command.HELO):
                conn.helo("client.example")
                self.wrote("HELO")
        elif name == "mail":
            if conn.can_start_transaction:
                sender = SENDERS[argument % len(SENDERS)]
                parameters = MAIL_PARAMETERS[argument % len(MAIL_PARAMETERS)]
                if self.attempt(lambda: conn.mail(sender, parameters)):
                    self.manual = True
                    self.wrote("MAIL")
        elif name == "rcpt":
            for number in range(1 + argument % 3):
                if not (self.manual and conn.state in (State.MAIL, State.RCPT)):
                    break
                if not self.may_follow(Command.RCPT):
                    break
                recipient = RECIPIENTS[(argument + number) % len(RECIPIENTS)]
                if self.attempt(lambda: conn.rcpt(recipient)):  # noqa: B023 - called at once
                    self.wrote("RCPT")
        elif name == "data":
            if self.manual and state is State.RCPT and self.may_follow(Command.DATA):
                conn.data()
                self.wrote("DATA")
        elif name == "send_data":
            if self.manual and state is State.DATA_BODY:
                chunk = CHUNKS[argument % len(CHUNKS)]
                if b"\x00" in chunk:
                    self.refused(lambda: conn.send_data(chunk))
                else:
                    conn.send_data(chunk)
                    self.wrote(None)
        elif name == "end_data":
            if self.manual and state is State.DATA_BODY and self.may_follow(Command.END_OF_DATA):
                conn.end_data()
                self.wrote("END_OF_DATA")
        elif name in ("bdat", "bdat_last"):
            if (
                self.manual
                and state in (State.RCPT, State.BDAT)
                and features is not None
                and features.chunking
                and self.may_follow(Command.BDAT_LAST if name == "bdat_last" else Command.BDAT)
            ):
                conn.bdat(CHUNKS[argument % len(CHUNKS)], last=name == "bdat_last")
                self.wrote("BDAT")
        elif name == "rset":
            if state in ANYTIME_STATES | {State.BDAT} and self.may_follow(Command.RSET):
                conn.rset()
                # The caller abandons whatever transaction it had going.
                self.feeding.clear()
                self.manual = False
                self.wrote("RSET")
        elif name == "noop":
            if state in ANYTIME_STATES | {State.BDAT} and self.may_follow(Command.NOOP):
                conn.noop()
                self.wrote("NOOP")
        elif name == "other":
            if state in ANYTIME_STATES and self.may_follow(Command.OTHER):
                variant = argument % 4
                if variant == 0:
                    conn.vrfy("postmaster")
                elif variant == 1:
                    conn.expn("staff")
                elif variant == 2:
                    conn.help()
                else:
                    conn.send_command("XCLIENT", "NAME=client.example")
                self.wrote("OTHER")
        elif name == "starttls":
            if (
                state is State.READY
                and features is not None
                and features.starttls
                and not conn.tls_active
                and self.may_follow(Command.STARTTLS)
            ):
                conn.starttls()
                self.wrote("STARTTLS")
        elif name == "tls_established":
            if state is State.TLS_HANDSHAKE:
                conn.tls_established()
                self.wrote(None)
        elif name == "quit":
            if state in ANYTIME_STATES | {State.BDAT, State.GREETING_REFUSED} and (
                self.may_follow(Command.QUIT)
            ):
                conn.quit()
                self.wrote("QUIT")
        elif name == "send_message":
            if conn.can_start_transaction:
                self.send_message(argument)
        elif name == "auth":
            mechanism = MECHANISMS[argument % len(MECHANISMS)]()
            if (
                state is State.READY
                and features is not None
                and mechanism.name in features.auth_mechanisms
                and not conn.authenticated
                and self.may_follow(Command.AUTH)
            ):
                conn.auth(mechanism, allow_without_tls=True)
                self.wrote("AUTH")
        elif name == "close":
            self.close()

    def send_message(self, argument: int) -> None:
        body = BODIES[argument % len(BODIES)]
        sender = SENDERS[argument // len(BODIES) % len(SENDERS)]
        # 1 to 3 recipients; the non-ASCII one only with the highest arguments.
        count = 1 + argument % 3
        recipients = [RECIPIENTS[argument // 8 + i] for i in range(count)]

        def start() -> MailTransaction:
            return self.conn.send_message(
                sender,
                recipients,
                body if isinstance(body, bytes) else iter(body),
                chunk_size=CHUNK_SIZES[argument % len(CHUNK_SIZES)],
                pipeline_content_up_to=64 if argument & 4 else 0,
            )

        try:
            transaction = start()
        except ValueError:
            # A message the server cannot take (ServerCapabilityError) or an address it
            # cannot carry: refused before anything is written.
            assert self.conn.data_to_send() == b""
            return
        self.transactions.append(transaction)
        self.feeding = [transaction]
        self.manual = False
        self.wrote("unknown")

    def attempt(self, call: Callable[[], object]) -> bool:
        """Run *call*; False if it refused its arguments with ValueError (a non-ASCII
        address without SMTPUTF8, say), which must leave nothing written."""
        try:
            call()
        except ValueError:
            assert self.conn.data_to_send() == b""
            return False
        return True

    def refused(self, call: Callable[[], object]) -> None:
        """Run *call*, which must raise ValueError and write nothing."""
        _raises(ValueError, call)
        assert self.conn.data_to_send() == b""

    def pull_bodies(self) -> None:
        for transaction in self.feeding:
            for _ in range(MAX_PULLS):
                if not transaction.body_wanted:
                    break
                transaction.pull_body()
                self.wrote("unknown")
            else:
                raise AssertionError("a transaction wanted content for ever")

    def wrote(self, command: str | None) -> None:
        """Record what the client wrote; *command* is the last command it holds, if any."""
        data = self.conn.data_to_send()
        self.record(data)
        if command is not None:
            self.last = command
        elif data:
            self.last = "unknown"

    def record(self, data: bytes) -> None:
        if data:
            items = self.trace.items
            if items and isinstance(items[-1], Sent):
                items[-1] = Sent(items[-1].data + data)
            else:
                items.append(Sent(data))

    # -- the server's side -----------------------------------------------------------------

    def feed(self, segment: bytes) -> None:
        if self.end_of_stream or not segment:
            return
        pieces = [segment[i : i + 1] for i in range(len(segment))] if self.bytewise else [segment]
        for piece in pieces:
            try:
                self.conn.receive_data(piece)
            except RemoteProtocolError as exc:
                self.fail(exc)
            except Exception as exc:
                raise AssertionError(f"receive_data() raised {exc!r}") from exc
            assert self.conn._reader.buffered <= self.limits.max_receive_buffer
            self.drain()

    def close(self) -> None:
        if not self.end_of_stream:
            self.end_of_stream = True
            self.conn.receive_data(b"")
            self.drain()

    def drain(self) -> None:
        conn = self.conn
        for _ in range(MAX_EVENTS):
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self.fail(exc)
            except Exception as exc:
                raise AssertionError(f"next_event() raised {exc!r}") from exc
            # Anything written while events are pulled is the engine's or a transaction's
            # doing (the HELO fallback, an AUTH response, an RSET, the next RCPT).
            self.wrote(None)
            self.check_event(event)
            if event is not NEED_DATA:
                self.trace.items.append(event)
            self.pull_bodies()
            if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
                return
        raise AssertionError("next_event() never asked for data")

    def check_event(self, event: Event | Sentinel) -> None:
        conn = self.conn
        assert isinstance(event, (Event, Sentinel)), event
        timeout = conn.timeout
        assert timeout is None or timeout > 0
        if event is PAUSED:
            assert conn.state is State.TLS_HANDSHAKE
        if isinstance(event, (ConnectionClosed, ServiceClosing)):
            assert conn.state is State.CLOSED
            assert conn.commands_in_flight == 0
            assert timeout is None

    def fail(self, exc: RemoteProtocolError) -> NoReturn:
        conn = self.conn
        self.trace.error = str(exc)
        assert conn.state is State.ERROR
        leftover = conn.data_to_send()
        assert leftover == b"", f"{leftover!r} left to send after {exc!r}"
        # Poisoned for good: the receiving calls re-raise, every command refuses.
        _raises(RemoteProtocolError, conn.next_event)
        _raises(RemoteProtocolError, lambda: conn.receive_data(b"250 ok\r\n"))
        _raises(LocalProtocolError, conn.noop)
        _raises(LocalProtocolError, conn.quit)
        assert conn.data_to_send() == b""
        raise _Stopped


def _canonical(trace: Trace) -> Trace:
    """The trace with what may depend on how the octets were cut made alike."""
    if trace.error is None:
        return trace
    items = list(trace.items)
    # A line holding both a bare CR and a bare LF is refused for whichever is seen first,
    # which depends on where the read ends: only the kind of error is compared.
    error = "RemoteProtocolError"
    if "STARTTLS" in trace.error:
        # Plain-text bytes after the 220 to STARTTLS are refused either way, but at
        # different moments: in the same read as the 220, before StartTlsReady is
        # returned; in a later read, after it (and PAUSED). Both are the same refusal.
        while items and (items[-1] is PAUSED or isinstance(items[-1], StartTlsReady)):
            items.pop()
        error = "plain-text bytes after STARTTLS"
    # What the engine wrote by itself while reading (the HELO fallback, an AUTH response)
    # reaches the wire if the octets fed so far end there, and is dropped with the
    # poisoning if the offending octet came in the same read: nothing is written after a
    # protocol error. Writes just before the error are therefore not compared.
    while items and isinstance(items[-1], Sent):
        items.pop()
    return Trace(
        items=items,
        error=error,
        state=trace.state,
        results=trace.results,
        authenticated=trace.authenticated,
        tls_active=trace.tls_active,
    )


def play(data: bytes, *, bytewise: bool = False) -> Trace:
    return Player(parse(data), bytewise=bytewise).play()


def check(data: bytes) -> None:
    """Run every invariant on one input; raise AssertionError if one fails."""
    script = parse(data)
    whole = Player(script, bytewise=False).play()
    limits = SMALL if script.options & SMALL_LIMITS else Limits()
    # A segment fed whole may trip the buffer limit where the same octets fed one by one,
    # with each reply taken out as it completes, do not; below it both must agree exactly.
    longest = max(len(segment) for segment in script.segments)
    if longest + limits.max_reply_line_length <= limits.max_receive_buffer:
        bytewise = Player(script, bytewise=True).play()
        assert _canonical(bytewise) == _canonical(whole)


if __name__ == "__main__":  # pragma: no cover
    fuzz(check)
