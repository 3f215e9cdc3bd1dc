"""Coverage-guided fuzzing of batches of messages (send_transactions), with atheris.

    python fuzz/fuzz_batch.py [libFuzzer options, e.g. -max_total_time=60] [corpus dirs]

An input is a batch and everything the server says after its EHLO reply:

* octet 0 sets the server and the connection (the ``FEATURES`` index in its two low bits,
  then the ``LMTP``, ``SMALL_FLIGHT`` and ``SMALL_SIZE`` bits below);
* octet 1 says how many messages the batch has (1 to ``MAX_MESSAGES``);
* each of the next octets describes one message: ``octet % 4 + 1`` recipients, its content
  ``BODIES[octet // 4 % len(BODIES)]``, whether its content may go with its envelope
  (``octet & 0x20``) and its chunk size ``CHUNK_SIZES[octet // 64 % len(CHUNK_SIZES)]``;
* the rest is what the server sends, cut at NUL octets into what successive reads return.
  An empty piece, or the end of the input, is the server closing the connection.

The harness plays the greeting and the EHLO (or LHLO) reply itself, so that every input
reaches the batch. The messages are checked with ``send_message(start=False)`` and sent with
``send_transactions``, as every transport's ``send_messages`` does.

Invariants checked on every input:

* ``send_transactions`` returns one result per message or raises RemoteProtocolError, and
  nothing else: it decides by itself what to send, so a LocalProtocolError is a finding;
* it ends within ``MAX_REQUESTS`` I/O requests, the server's closing included;
* after a RemoteProtocolError the connection is in ERROR with nothing left to send;
* every result has one entry per recipient in their order; a message accepted, wholly or
  in part, has an accepted recipient; a message whose sender was refused was not accepted;
* the batch whose replies all go through ``next_event``, without the batch's short way for
  recipients (``ClientConnection._take_replies``), ends alike: the same results (or error),
  the same octets written, the same state.

All of this with the server's pieces read whole and read one octet at a time. The two
readings are not compared with each other: the server's octets here do not depend on what
the client wrote, so when replies arrive rightly changes what the client writes meanwhile
and which command a later reply answers. (``tests/test_client.py`` compares them against a
server that answers what it receives.)
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass

from _fuzzing import fuzz

from smtp_proto import (
    NEED_DATA,
    ClientConnection,
    IORequest,
    Limits,
    MailTransaction,
    MessageOutcome,
    Read,
    RemoteProtocolError,
    ServerCapabilityError,
    State,
    TransactionResult,
    Write,
)
from smtp_proto import send_transactions as send_batch

# Octet 0: the EHLO reply's extensions (two bits), then the connection's options.
FEATURES = (
    (b"PIPELINING", b"8BITMIME"),
    (b"PIPELINING", b"CHUNKING"),
    (b"8BITMIME",),
    (b"CHUNKING",),
)
LMTP = 0x04
SMALL_FLIGHT = 0x08  # Limits.max_commands_in_flight of 4: long envelopes wait for room
SMALL_SIZE = 0x10  # the server announces SIZE 40: longer messages are refused unsent

MAX_MESSAGES = 8
# Every request either writes what replies made the engine send or reads at least one octet
# of an input far shorter than this.
MAX_REQUESTS = 20_000

RECIPIENTS = ("bob@example.com", "carol@example.net", "dave@example.org", "erin@example.com")
BODIES: tuple[bytes | tuple[bytes, ...], ...] = (
    b"Subject: hi\r\n\r\nHello.\r\n",
    b"",
    b"a\n.\nMAIL FROM:<evil@example>\r\n.\r\n",
    (b"chunk one\r", b"\n.two", b"\r\n"),
    b".\r\n" * 30,
    b"\xc3\xa9t\xc3\xa9\n",
)
CHUNK_SIZES = (3, 64, 8192)
SEPARATOR = b"\x00"

GREETING = b"220 mx.example.org ESMTP\r\n"


@dataclass(frozen=True)
class Message:
    recipients: tuple[str, ...]
    body: bytes | tuple[bytes, ...]
    pipelined: bool
    chunk_size: int


@dataclass(frozen=True)
class Batch:
    options: int
    messages: list[Message]
    pieces: list[bytes]


def parse(data: bytes) -> Batch:
    """Read an input as a batch (see the module documentation)."""
    options = data[0] if data else 0
    count = 1 + (data[1] if len(data) > 1 else 0) % MAX_MESSAGES
    messages = [
        Message(
            recipients=RECIPIENTS[: octet % 4 + 1],
            body=BODIES[octet // 4 % len(BODIES)],
            pipelined=bool(octet & 0x20),
            chunk_size=CHUNK_SIZES[octet // 64 % len(CHUNK_SIZES)],
        )
        for octet in data[2 : 2 + count]
    ]
    return Batch(options, messages, data[2 + count :].split(SEPARATOR))


def encode(options: int, messages: list[int], pieces: list[bytes]) -> bytes:
    """The input that :func:`parse` reads as this batch (messages given as their octets)."""
    assert 1 <= len(messages) <= MAX_MESSAGES
    return bytes((options, len(messages) - 1, *messages)) + SEPARATOR.join(pieces)


def ehlo_reply(options: int) -> bytes:
    keywords = list(FEATURES[options % len(FEATURES)])
    if options & SMALL_SIZE:
        keywords.append(b"SIZE 40")
    lines = [b"mx.example.org", *keywords]
    return b"".join(
        b"250%s%s\r\n" % (b" " if i == len(lines) - 1 else b"-", line)
        for i, line in enumerate(lines)
    )


class Wire:
    """The server's side: each read gets the next piece, whole or one octet at a time."""

    def __init__(self, pieces: list[bytes], *, bytewise: bool) -> None:
        self.pieces: Iterator[bytes] = iter(pieces)
        self.bytewise = bytewise
        self.held = b""
        self.closed = False

    def read(self) -> bytes:
        if not self.held and not self.closed:
            self.held = next(self.pieces, b"")
            self.closed = not self.held
        size = 1 if self.bytewise else len(self.held)
        data, self.held = self.held[:size], self.held[size:]
        return data


class EveryReplyThroughNextEvent(ClientConnection):
    """A connection that takes a batch's replies through next_event alone."""

    def _take_replies(self) -> bool:
        ended = (State.CLOSED, State.ERROR, State.QUIT_SENT, State.TLS_HANDSHAKE)
        taken = False
        while self.state not in ended and self.next_event() is not NEED_DATA:
            taken = True
        return taken


@dataclass(frozen=True)
class End:
    """Everything observable about one playing of a batch."""

    results: tuple[TransactionResult, ...] | None
    error: str | None
    written: bytes
    state: State
    #: For each read: its timeout, and whether it starts a reply (the timeout restarts).
    reads: tuple[tuple[float | None, bool], ...] = ()


def drive(
    operation: Generator[IORequest, bytes | None, object],
    wire: Wire,
    reads: list[tuple[float | None, bool]],
) -> tuple[bytes, object]:
    """Carry out *operation*'s requests against *wire*, noting each read in *reads*;
    return the octets it wrote and what it returned."""
    written = bytearray()
    value: bytes | None = None
    for _ in range(MAX_REQUESTS):
        try:
            request = operation.send(value)
        except StopIteration as stop:
            return bytes(written), stop.value
        value = None
        if isinstance(request, Write):
            written += request.data
        elif isinstance(request, Read):
            reads.append((request.timeout, request.fresh))
            value = wire.read()
        else:
            raise AssertionError(f"a batch without TLS or streamed content asked for {request!r}")
    raise AssertionError(f"the operation did not end within {MAX_REQUESTS} requests")


def prepare(
    batch: Batch, kind: type[ClientConnection] = ClientConnection
) -> tuple[ClientConnection, list[MailTransaction]]:
    """A session opened by the harness's greeting and EHLO reply, and the batch's messages
    checked with ``send_message(start=False)`` (those the server cannot take left out)."""
    options = batch.options
    conn = kind(
        lmtp=bool(options & LMTP),
        limits=Limits(max_commands_in_flight=4) if options & SMALL_FLIGHT else Limits(),
    )
    conn.receive_data(GREETING)
    conn.next_event()
    if conn.lmtp:
        conn.lhlo("client.example")
    else:
        conn.ehlo("client.example")
    conn.data_to_send()
    conn.receive_data(ehlo_reply(options))
    conn.next_event()
    assert conn.state is State.READY
    transactions = []
    for message in batch.messages:
        try:
            transactions.append(
                conn.send_message(
                    "alice@example.org",
                    list(message.recipients),
                    message.body if isinstance(message.body, bytes) else iter(message.body),
                    chunk_size=message.chunk_size,
                    pipeline_content_up_to=1000 if message.pipelined else 0,
                    start=False,
                )
            )
        except ServerCapabilityError:
            # Longer than the SIZE announced, or 8-bit without 8BITMIME: refused at once,
            # and nothing of it is sent.
            assert conn.data_to_send() == b""
    return conn, transactions


def play(batch: Batch, *, bytewise: bool = False, short_way: bool = True) -> End:
    """Open a session, check the batch's messages and send those the server can take."""
    conn, transactions = prepare(
        batch, ClientConnection if short_way else EveryReplyThroughNextEvent
    )
    wire = Wire(batch.pieces, bytewise=bytewise)
    reads: list[tuple[float | None, bool]] = []
    try:
        written, results = drive(send_batch(conn, transactions), wire, reads)
    except RemoteProtocolError as exc:
        assert conn.state is State.ERROR, conn.state
        assert conn.data_to_send() == b""
        # Which of two faults in one line is seen first depends on where a read ends: the
        # kind of error is compared, not its words.
        return End(results=None, error=type(exc).__name__, written=b"", state=conn.state)
    except Exception as exc:
        raise AssertionError(f"send_transactions raised {exc!r}") from exc
    assert isinstance(results, list)
    assert len(results) == len(transactions)
    for transaction, result in zip(transactions, results, strict=True):
        assert isinstance(result, TransactionResult)
        assert result is transaction.result
        check_result(result, transaction._addresses)
    return End(
        results=tuple(results),
        error=None,
        written=written,
        state=conn.state,
        reads=tuple(reads),
    )


def check_result(result: TransactionResult, addresses: list[str]) -> None:
    assert [r.address for r in result.recipients] == addresses, result
    if result.outcome in (MessageOutcome.ACCEPTED, MessageOutcome.PARTIALLY_ACCEPTED):
        assert result.accepted_recipients, result
        assert result.sender_reply is not None, result
        assert result.sender_reply.is_positive, result
    if result.sender_reply is not None and not result.sender_reply.is_positive:
        assert result.outcome is not MessageOutcome.ACCEPTED, result


def check(data: bytes) -> None:
    """Run every invariant on one input; raise AssertionError if one fails."""
    batch = parse(data)
    for bytewise in (False, True):
        # Each reading on its own: the server's octets do not depend on what the client
        # wrote, so when replies arrive decides what the client writes before it reads the
        # next (another chunk when a reply makes room, say), and that decides which command
        # the next reply is counted against. The two readings may rightly end apart; what
        # each takes in at once must end as next_event alone would.
        end = play(batch, bytewise=bytewise)
        assert play(batch, bytewise=bytewise, short_way=False) == end


if __name__ == "__main__":  # pragma: no cover
    fuzz(check)
