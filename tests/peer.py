"""An in-memory SMTP/LMTP server that answers what the engine writes, for transaction tests.

It parses the client's bytes the way a server would (command lines, DATA content up to the
final dot with dot-stuffing undone, BDAT chunks by their announced size), records what it
received, and answers from a policy the test sets. It checks pipelining rules a real
server depends on: without PIPELINING it refuses to see a command before it has answered
the previous one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from smtp_proto import NEED_DATA, PAUSED, ClientConnection, Event, MailTransaction

Answer = Callable[[str], bytes]


def _ok(_: str) -> bytes:
    return b"250 2.0.0 ok\r\n"


@dataclass
class FakeServer:
    keywords: tuple[str, ...] = ("PIPELINING", "CHUNKING", "8BITMIME", "SIZE 1000000", "DSN")
    lmtp: bool = False
    mail: Answer = _ok
    rcpt: Answer = _ok
    data: Callable[[], bytes] = lambda: b"354 go ahead\r\n"
    #: The reply to the end of a message: given the content (under LMTP, called once per
    #: accepted recipient with "recipient\ncontent").
    message: Answer = lambda _: b"250 2.0.0 queued\r\n"
    bdat: Callable[[int], bytes] = lambda _: b"250 2.0.0 chunk ok\r\n"
    auth: Answer = lambda _: b"235 2.7.0 ok\r\n"
    #: Whether STARTTLS was accepted (the "handshake" is imagined: bytes stay as they are).
    tls: bool = False
    #: Every command line received, in order.
    commands: list[str] = field(default_factory=list)
    #: Every message's content as the server understood it.
    messages: list[bytes] = field(default_factory=list)
    #: How many separate writes brought commands (a pipelining measure).
    writes: int = 0
    _buffer: bytes = b""
    _in_data: bool = False
    _content: bytes = b""
    _accepted: list[str] = field(default_factory=list)
    _closed: bool = False

    def greeting(self) -> bytes:
        return b"220 fake.example ESMTP\r\n"

    def receive(self, data: bytes) -> bytes:
        """Take what the client wrote; return the replies."""
        if data and not self._closed:
            self.writes += 1
        self._buffer += data
        replies = b""
        commands_before = len(self.commands)
        while True:
            if self._closed:
                return replies  # a server that said 421 has closed the connection
            if len(self.commands) - commands_before > 1 and "PIPELINING" not in self.keywords:
                raise AssertionError("the client pipelined without PIPELINING")
            if self._in_data:
                end = self._buffer.find(b"\r\n.\r\n")
                start_dot = self._buffer.startswith(b".\r\n")
                if start_dot and not self._content:
                    body, self._buffer = b"", self._buffer[3:]
                elif end < 0:
                    return replies
                else:
                    body, self._buffer = self._buffer[: end + 2], self._buffer[end + 5 :]
                lines = body.split(b"\r\n")
                self._content += b"\r\n".join(
                    line[1:] if line.startswith(b".") else line for line in lines
                )
                self._in_data = False
                replies += self._end_of_message()
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return replies
            line = self._buffer[:end].decode("utf-8")
            self._buffer = self._buffer[end + 2 :]
            self.commands.append(line)
            replies += self._answer(line)
            if b"421 " in replies:
                self._closed = True
                return replies

    def _answer(self, line: str) -> bytes:
        verb, _, rest = line.partition(" ")
        verb = verb.upper()
        if verb in ("EHLO", "LHLO"):
            keywords = [k for k in self.keywords if not (self.tls and k == "STARTTLS")]
            lines = ["fake.example", *keywords]
            return b"".join(
                f"250{'-' if i < len(lines) - 1 else ' '}{text}\r\n".encode()
                for i, text in enumerate(lines)
            )
        if verb == "MAIL":
            self._accepted = []
            self._content = b""
            return self.mail(rest)
        if verb == "RCPT":
            address = rest.partition("<")[2].partition(">")[0]
            reply = self.rcpt(address)
            if reply.startswith(b"2"):
                self._accepted.append(address)
            return reply
        if verb == "DATA":
            reply = self.data()
            self._in_data = reply.startswith(b"354")
            return reply
        if verb == "BDAT":
            words = rest.split()
            size = int(words[0])
            chunk, self._buffer = self._buffer[:size], self._buffer[size:]
            self._content += chunk
            if len(words) > 1:
                return self._end_of_message()
            return self.bdat(size)
        if verb == "STARTTLS":
            if "STARTTLS" not in self.keywords or self.tls:
                return b"502 5.5.1 no\r\n"
            self.tls = True
            return b"220 2.0.0 go ahead\r\n"
        if verb == "AUTH":
            return self.auth(rest)
        if verb in ("RSET", "NOOP"):
            return b"250 2.0.0 ok\r\n"
        if verb == "QUIT":
            return b"221 2.0.0 bye\r\n"
        return b"502 5.5.1 unknown command\r\n"

    def _end_of_message(self) -> bytes:
        self.messages.append(self._content)
        if self.lmtp and self._accepted:
            return b"".join(self.message(f"{a}\n{self._content!r}") for a in self._accepted)
        return self.message(self._content.decode("utf-8", "replace"))


def connect(server: FakeServer, **options: object) -> tuple[ClientConnection, list[Event]]:
    """A connection greeted and past EHLO (or LHLO) with *server*."""
    conn = ClientConnection(lmtp=server.lmtp, **options)  # type: ignore[arg-type]
    events: list[Event] = []
    conn.receive_data(server.greeting())
    pump(conn, server, events)
    (conn.lhlo if server.lmtp else conn.ehlo)("client.example")
    pump(conn, server, events)
    return conn, events


def pump(
    conn: ClientConnection,
    server: FakeServer,
    events: list[Event],
    transaction: MailTransaction | None = None,
) -> None:
    """Run client and server until neither has anything more to say."""
    carried = b""
    for _ in range(100_000):
        if transaction is not None and transaction.body_wanted:
            transaction.pull_body()
            continue
        out = carried + conn.data_to_send()
        if out:
            replies = server.receive(out)
            if replies:
                conn.receive_data(replies)
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            # Pulling events may itself have written (an RSET, the HELO fallback).
            carried = conn.data_to_send()
            if not out and not carried:
                return
            continue
        assert isinstance(event, Event)
        events.append(event)
    raise AssertionError("the conversation never settled")  # pragma: no cover
