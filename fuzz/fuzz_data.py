"""Coverage-guided fuzzing of the message content writers, with atheris.

    python fuzz/fuzz_data.py [libFuzzer options, e.g. -max_total_time=60] [corpus dirs]

An input is message content and a way of cutting it into chunks:

* octet 0 holds options: how chunks are passed (``bytes``, ``bytearray``, ``memoryview``),
  whether a MailTransaction sends the content with DATA or with BDAT, and its chunk size;
* octet 1 says how many cut points follow (at most 15), each one octet scaled to the
  content's length;
* the rest is the content.

Invariants checked on every input, for the DATA writer (DataWriter) and the BDAT normaliser
(LineEndingNormalizer) alike:

* a chunk holding NUL raises ValueError, returns nothing and leaves the writer as it was;
  every other chunk is taken;
* read back by a strict reference server written here (lines end in CRLF only, "." CRLF
  alone ends the content, one leading dot removed), the DATA octets give exactly the content
  taken with every bare CR, bare LF and CRLF made CRLF, plus a final CRLF if it lacked one;
  the BDAT octets are exactly that content without the final CRLF added;
* no bare CR or LF reaches the wire, and "." CRLF alone on a line comes only at the end: no
  reading of line ends, however lax, finds an earlier end of the content;
* cutting the content differently (whole, the input's cuts, one octet at a time) changes
  nothing in the octets produced;
* a MailTransaction sending the content (when it holds no NUL) over DATA or BDAT, with any
  chunk size, delivers exactly that content to the reference server, announces its SIZE
  correctly and is accepted.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

from _fuzzing import fuzz

from smtp_proto import (
    NEED_DATA,
    ClientConnection,
    MessageOutcome,
)
from smtp_proto._data import DataWriter, LineEndingNormalizer

# Octet 0: how chunks are passed (the low two bits), DATA or BDAT, and the chunk size of the
# MailTransaction (the high four bits, plus one).
CHUNK_TYPE_MASK = 0x03
USE_BDAT = 0x04
MAX_CUTS = 15

Chunk = bytes | bytearray | memoryview
Writer = DataWriter | LineEndingNormalizer

MAX_ROUNDS = 100_000


def parse(data: bytes) -> tuple[int, bytes, list[int]]:
    """The options, the content and the cut points an input stands for."""
    options = data[0] if data else 0
    count = (data[1] if len(data) > 1 else 0) % (MAX_CUTS + 1)
    scaled = data[2 : 2 + count]
    content = data[2 + count :]
    cuts = sorted({octet * len(content) // 255 for octet in scaled})
    return options, content, cuts


def encode(options: int, content: bytes, cuts: list[int] | None = None) -> bytes:
    """An input for :func:`parse`; *cuts* are already scaled to 0..255."""
    scaled = bytes(cuts or [])
    assert len(scaled) <= MAX_CUTS
    return bytes((options, len(scaled))) + scaled + content


def split(content: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(content)]
    return [content[start:end] for start, end in itertools.pairwise(bounds)]


# -- the reference, written independently of the engine --------------------------------------


def reference_canonical(content: bytes) -> bytes:
    """*content* with every CRLF, bare CR and bare LF written as CRLF, one octet at a time."""
    out = bytearray()
    index = 0
    while index < len(content):
        octet = content[index]
        if octet == 0x0D:
            out += b"\r\n"
            index += 2 if content[index + 1 : index + 2] == b"\n" else 1
        elif octet == 0x0A:
            out += b"\r\n"
            index += 1
        else:
            out.append(octet)
            index += 1
    return bytes(out)


def reference_data_body(content: bytes) -> bytes:
    """What a server must read out of the DATA octets for *content*."""
    canonical = reference_canonical(content)
    if canonical and not canonical.endswith(b"\r\n"):
        canonical += b"\r\n"
    return canonical


def reference_unstuff(wire: bytes) -> bytes:
    """Read DATA octets as the strictest server would; fail on anything a lax one could
    read differently."""
    lines: list[bytes] = []
    position = 0
    while True:
        end = wire.find(b"\r\n", position)
        assert end >= 0, "the content does not end with CRLF . CRLF"
        line = wire[position:end]
        assert b"\r" not in line, "a bare CR reached the wire"
        assert b"\n" not in line, "a bare LF reached the wire"
        position = end + 2
        if line == b".":
            assert position == len(wire), "a line holding only a dot before the end"
            return b"".join(line + b"\r\n" for line in lines)
        # A leading dot was doubled by the client; a single one would be a stuffing error,
        # which the comparison with the content then shows.
        lines.append(line[1:] if line.startswith(b".") else line)


# -- the writers ------------------------------------------------------------------------------


def as_type(chunk: bytes, options: int) -> Chunk:
    kind = options & CHUNK_TYPE_MASK
    if kind == 1:
        return bytearray(chunk)
    if kind == 2:
        return memoryview(chunk)
    return chunk


def write(make: Callable[[], Writer], chunks: list[bytes], options: int) -> tuple[bytes, bytes]:
    """Feed *chunks* to a new writer; return the octets produced and the content taken."""
    writer = make()
    out = b""
    taken = b""
    for chunk in chunks:
        if b"\x00" in chunk:
            try:
                writer.feed(as_type(chunk, options))
            except ValueError:
                continue
            raise AssertionError("a chunk holding NUL was taken")
        out += writer.feed(as_type(chunk, options))
        taken += chunk
    ending = writer.end()
    if isinstance(writer, LineEndingNormalizer):
        assert ending == b""
    out += ending
    # Ended for good.
    calls: list[Callable[[], bytes]] = [lambda: writer.feed(b"x"), writer.end]
    for call in calls:
        try:
            call()
        except ValueError:
            continue
        raise AssertionError("a writer took more after its end")
    return out, taken


def check_writers(options: int, content: bytes, cuts: list[int]) -> None:
    chunks = split(content, cuts)
    wire, taken = write(DataWriter, chunks, options)
    assert reference_unstuff(wire) == reference_data_body(taken)
    # Cut differently, the same content gives the same octets.
    assert write(DataWriter, [taken], options) == (wire, taken)
    bytewise = [taken[i : i + 1] for i in range(len(taken))]
    assert write(DataWriter, bytewise, options) == (wire, taken)

    canonical, taken_too = write(LineEndingNormalizer, chunks, options)
    assert taken_too == taken
    assert canonical == reference_canonical(taken)
    assert write(LineEndingNormalizer, [taken], options) == (canonical, taken)
    assert write(LineEndingNormalizer, bytewise, options) == (canonical, taken)


# -- through a MailTransaction, to a reference server --------------------------------------------

_BDAT = re.compile(rb"BDAT ([0-9]+)( LAST)?")
_SIZE = re.compile(rb" SIZE=([0-9]+)")


class ReferenceServer:
    """Reads what the client writes as a server would, and answers every command."""

    def __init__(self) -> None:
        self.buffer = b""
        self.in_data = False
        self.content = b""
        self.messages: list[bytes] = []
        self.commands: list[bytes] = []

    def receive(self, data: bytes) -> bytes:
        self.buffer += data
        replies = b""
        while True:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):
                    end = 0
                else:
                    end = self.buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        return replies
                    end += 2
                self.messages.append(reference_unstuff(self.buffer[: end + 3]))
                self.buffer = self.buffer[end + 3 :]
                self.in_data = False
                replies += b"250 2.0.0 queued\r\n"
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return replies
            line = self.buffer[:end]
            bdat = _BDAT.fullmatch(line)
            if bdat is not None:
                size = int(bdat[1])
                if len(self.buffer) < end + 2 + size:
                    return replies
                self.content += self.buffer[end + 2 : end + 2 + size]
                self.buffer = self.buffer[end + 2 + size :]
                if bdat[2]:
                    self.messages.append(self.content)
                    self.content = b""
                replies += b"250 2.0.0 ok\r\n"
                self.commands.append(line)
                continue
            self.buffer = self.buffer[end + 2 :]
            self.commands.append(line)
            if line == b"DATA":
                self.in_data = True
                replies += b"354 go ahead\r\n"
            else:
                replies += b"250 2.0.0 ok\r\n"


def check_transaction(options: int, content: bytes) -> None:
    use_bdat = bool(options & USE_BDAT)
    chunk_size = 1 + (options >> 4)
    keywords = b"250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000000\r\n"
    if use_bdat:
        keywords += b"250-CHUNKING\r\n"
    conn = ClientConnection()
    conn.receive_data(b"220 mx.example.org ESMTP\r\n")
    conn.next_event()
    conn.ehlo("client.example")
    conn.receive_data(b"250-mx.example.org\r\n" + keywords + b"250 HELP\r\n")
    conn.next_event()
    conn.data_to_send()  # the EHLO, answered above
    server = ReferenceServer()
    transaction = conn.send_message(
        "alice@example.org", ["bob@example.com"], content, chunk_size=chunk_size
    )
    for _ in range(MAX_ROUNDS):
        while transaction.body_wanted:
            transaction.pull_body()
        replies = server.receive(conn.data_to_send())
        if replies:
            conn.receive_data(replies)
        while conn.next_event() is not NEED_DATA:
            pass
        if transaction.done and not conn.commands_in_flight:
            break
    else:
        raise AssertionError("the transaction never ended")
    assert transaction.result.outcome is MessageOutcome.ACCEPTED
    canonical = reference_canonical(content)
    if use_bdat:
        assert server.messages == [canonical]
        assert all(c.startswith(b"BDAT") for c in server.commands[2:]), server.commands
    else:
        assert server.messages == [reference_data_body(content)]
    # RFC 1870 section 3: SIZE counts the content with CRLF line ends.
    size = _SIZE.search(server.commands[0])
    assert size is not None
    assert int(size[1]) == len(canonical)


def check(data: bytes) -> None:
    """Run every invariant on one input; raise AssertionError if one fails."""
    options, content, cuts = parse(data)
    check_writers(options, content, cuts)
    if b"\x00" not in content:
        check_transaction(options, content)


if __name__ == "__main__":  # pragma: no cover
    fuzz(check)
