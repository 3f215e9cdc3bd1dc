"""The benchmark's own SMTP sink: announces PIPELINING and CHUNKING, answers at once, and
checks what it receives.

Unlike Postfix's smtp-sink it understands BDAT, and it keeps statistics a benchmark can trust:
for each message the SHA-256 of its content after un-stuffing (DATA) with every line ending
made CRLF, the number of bare LFs that arrived (a client that normalises sends none), and,
for each read, how many commands it held (more than one means the client pipelined).

It is fast enough not to be the bottleneck: DATA content is processed a block at a time with
``bytes`` methods, never a line at a time in Python, and nothing but the digest is kept, so
a message of any size takes constant memory.

Run it in-process with :class:`SinkServer` (the test does), or as a process of its own,
``python -m bench.sink --port 0 --lifetime 600``, which prints the port it listens on and
answers the extra commands ``XSTATS`` (the statistics as JSON in a 250 reply) and
``XRESET``. It binds 127.0.0.1 only and exits by itself after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from dataclasses import asdict, dataclass, field

from bench._lifetime import wait_for_end

__all__ = ["SinkServer", "SinkStats", "canonical_digest"]

EHLO_REPLY = (
    b"250-bench-sink\r\n"
    b"250-PIPELINING\r\n"
    b"250-CHUNKING\r\n"
    b"250-8BITMIME\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250 SIZE\r\n"
)
# A command line longer than this is a client bug (RFC 5321 section 4.5.3.1.4 allows 512
# octets; extensions may add a little).
MAX_COMMAND_LINE = 4096


def canonical_digest(content: bytes) -> str:
    """The digest the sink reports for *content* sent correctly: the SHA-256 of the content
    with every line ending made CRLF (and a final CRLF added, as DATA needs one)."""
    text = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    return hashlib.sha256(text).hexdigest()


@dataclass
class SinkStats:
    """What the sink saw, over every session since the last reset."""

    sessions: int = 0
    messages: int = 0
    data_messages: int = 0
    bdat_messages: int = 0
    bdat_chunks: int = 0
    recipients: int = 0
    content_bytes: int = 0
    bare_lf: int = 0
    reads: int = 0
    max_commands_per_read: int = 0
    #: Reads that held more than one command (or a command and the message content).
    pipelined_reads: int = 0
    #: How many messages had each digest.
    digests: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class _DataReader:
    """Reads DATA content up to the final dot, un-stuffing and hashing it a block at a time."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self.bare_lf = 0
        self._pending = b""  # a line not yet complete
        self._tail = b"\r\n"  # the last two octets processed: the message starts a line

    def feed(self, data: bytes) -> bytes | None:
        """Take *data*; return what follows the final dot once it came, else None."""
        buffer = self._pending + data if self._pending else data
        end = buffer.rfind(b"\n")
        if end < 0:
            self._pending = buffer
            return None
        complete, self._pending = buffer[: end + 1], buffer[end + 1 :]
        # Look for CRLF "." CRLF where the CRLF may be the end of the previous block.
        found = (self._tail + complete).find(b"\r\n.\r\n")
        if found >= 0:
            self._process(complete[:found])
            return complete[found + 3 :] + self._pending
        self._process(complete)
        self._tail = complete[-2:] if len(complete) >= 2 else self._tail[-1:] + complete
        return None

    def _process(self, block: bytes) -> None:
        # *block* starts at the start of a line and ends with a line ending.
        if not block:
            return
        self.bare_lf += block.count(b"\n") - block.count(b"\r\n")
        text = block.replace(b"\r\n", b"\n")
        if text.startswith(b"."):
            text = text[1:]
        text = text.replace(b"\n.", b"\n").replace(b"\n", b"\r\n")
        self.size += len(text)
        self.hash.update(text)


class _Session(asyncio.Protocol):
    def __init__(self, server: SinkServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._data: _DataReader | None = None
        # BDAT: octets of the current chunk still to come, and the message so far.
        self._in_chunk = False
        self._chunk_left = 0
        self._chunk_last = False
        self._bdat_hash: hashlib._Hash | None = None
        self._bdat_size = 0
        self._bdat_bare_lf = 0
        self._bdat_last_cr = False
        self._recipients = 0
        self._control = False

    @property
    def stats(self) -> SinkStats:
        return self._server.stats

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(b"220 bench-sink ESMTP\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._control:
            self.stats.sessions += 1

    def data_received(self, data: bytes) -> None:
        replies: list[bytes] = []
        commands = 0
        data = self._buffer + data if self._buffer else data
        self._buffer = b""
        while data:
            if self._data is not None:
                rest = self._data.feed(data)
                if rest is None:
                    break
                self._finish_data(replies)
                data = rest
                commands += 1
                continue
            if self._in_chunk:
                data = self._take_chunk(data, replies)
                continue
            end = data.find(b"\r\n")
            if end < 0:
                if len(data) > MAX_COMMAND_LINE:
                    self._error("command line too long")
                    replies.append(b"500 5.5.0 line too long\r\n")
                    data = b""
                self._buffer = data
                break
            line, data = data[:end], data[end + 2 :]
            commands += 1
            replies.append(self._command(line))
            self._empty_chunk(replies)
        stats = self.stats
        if not self._control:
            stats.reads += 1
            stats.max_commands_per_read = max(stats.max_commands_per_read, commands)
            if commands > 1:
                stats.pipelined_reads += 1
        if replies and self._transport is not None:
            self._transport.write(b"".join(r for r in replies if r))
            if self._closing:
                self._transport.close()

    _closing = False

    def _error(self, text: str) -> None:
        errors = self.stats.errors
        if len(errors) < 20:
            errors.append(text)

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"MAIL":
            self._recipients = 0
            return b"250 2.1.0 ok\r\n"
        if verb == b"RCPT":
            self._recipients += 1
            self.stats.recipients += 1
            return b"250 2.1.5 ok\r\n"
        if verb == b"DATA":
            self._data = _DataReader()
            return b"354 go ahead\r\n"
        if verb == b"BDAT":
            return self._start_chunk(line)
        if verb in (b"EHLO", b"LHLO"):
            return EHLO_REPLY
        if verb == b"HELO":
            return b"250 bench-sink\r\n"
        if verb in (b"RSET", b"NOOP"):
            return b"250 2.0.0 ok\r\n"
        if verb == b"QUIT":
            self._closing = True
            return b"221 2.0.0 bye\r\n"
        if line.upper() == b"XSTATS":
            self._control = True
            return b"250 " + self._server.stats.as_json().encode() + b"\r\n"
        if line.upper() == b"XRESET":
            self._control = True
            self._server.stats = SinkStats()
            return b"250 2.0.0 reset\r\n"
        self._error(f"unknown command {line[:40]!r}")
        return b"502 5.5.1 unknown command\r\n"

    def _start_chunk(self, line: bytes) -> bytes:
        words = line.split()
        if len(words) not in (2, 3) or not words[1].isdigit() or len(words[1]) > 12:
            self._error(f"bad BDAT {line[:40]!r}")
            return b"501 5.5.4 bad BDAT\r\n"
        if len(words) == 3 and words[2].upper() != b"LAST":
            self._error(f"bad BDAT {line[:40]!r}")
            return b"501 5.5.4 bad BDAT\r\n"
        if self._bdat_hash is None:
            self._bdat_hash = hashlib.sha256()
            self._bdat_size = 0
            self._bdat_bare_lf = 0
            self._bdat_last_cr = False
        self._in_chunk = True
        self._chunk_left = int(words[1])
        self._chunk_last = len(words) == 3
        self.stats.bdat_chunks += 1
        # The reply to BDAT comes after its octets; "" is a placeholder not written.
        return b""

    def _take_chunk(self, data: bytes, replies: list[bytes]) -> bytes:
        piece, rest = data[: self._chunk_left], data[self._chunk_left :]
        self._chunk_left -= len(piece)
        assert self._bdat_hash is not None
        self._bdat_hash.update(piece)
        self._bdat_size += len(piece)
        crlf = piece.count(b"\r\n") + (1 if self._bdat_last_cr and piece[:1] == b"\n" else 0)
        self._bdat_bare_lf += piece.count(b"\n") - crlf
        self._bdat_last_cr = piece[-1:] == b"\r"
        if self._chunk_left == 0:
            self._end_chunk(replies)
        return rest

    def _empty_chunk(self, replies: list[bytes]) -> None:
        # "BDAT 0 LAST" (or an empty chunk) ends at once, with no octets to wait for.
        if self._in_chunk and self._chunk_left == 0:
            self._end_chunk(replies)

    def _end_chunk(self, replies: list[bytes]) -> None:
        self._in_chunk = False
        if self._chunk_last:
            self._finish_bdat(replies)
        else:
            replies.append(b"250 2.0.0 chunk ok\r\n")

    def _finish_bdat(self, replies: list[bytes]) -> None:
        assert self._bdat_hash is not None
        stats = self.stats
        stats.bdat_messages += 1
        stats.bare_lf += self._bdat_bare_lf
        self._count(self._bdat_hash.hexdigest(), self._bdat_size)
        self._bdat_hash = None
        self._chunk_last = False
        replies.append(b"250 2.0.0 message accepted\r\n")

    def _finish_data(self, replies: list[bytes]) -> None:
        assert self._data is not None
        stats = self.stats
        stats.data_messages += 1
        stats.bare_lf += self._data.bare_lf
        self._count(self._data.hash.hexdigest(), self._data.size)
        self._data = None
        replies.append(b"250 2.0.0 message accepted\r\n")

    def _count(self, digest: str, size: int) -> None:
        stats = self.stats
        stats.messages += 1
        stats.content_bytes += size
        stats.digests[digest] = stats.digests.get(digest, 0) + 1
        if self._recipients == 0:
            self._error("a message without recipients")


class SinkServer:
    """The sink, listening on 127.0.0.1 in the running event loop."""

    def __init__(self) -> None:
        self.stats = SinkStats()
        self._server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Session(self), "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


async def _serve(port: int, lifetime: float) -> None:
    server = SinkServer()
    bound = await server.start(port)
    print(bound, flush=True)
    await wait_for_end(lifetime)
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=600.0)
    arguments = parser.parse_args()
    asyncio.run(_serve(arguments.port, arguments.lifetime))


if __name__ == "__main__":
    main()
