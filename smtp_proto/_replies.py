"""The reply reader: bytes from the server in, complete :class:`Reply` values out.

RFC 5321 section 4.2 gives the grammar this reader enforces, strictly:

    Reply-line = *( Reply-code "-" [ textstring ] CRLF )
                 Reply-code [ SP textstring ] CRLF
    Reply-code = %x32-35 %x30-35 %x30-39

Strictness is the point. Lines end only in CRLF: a bare CR or a bare LF is refused the moment
it is seen, because servers and clients that disagree about line ends are how SMTP smuggling
and response-injection attacks work. Every line of a multiline reply must repeat the code.

The buffer is linear. Received bytes are appended to one ``bytearray``; the reader remembers
how far it has already scanned for a line end, so feeding a long reply one byte at a time
costs time proportional to its length rather than to its length squared. Consumed lines are
deleted from the front, which CPython's ``bytearray`` does without moving the rest.
"""

from __future__ import annotations

import re

from ._errors import RemoteProtocolError
from ._events import EnhancedStatusCode, Reply
from ._limits import Limits

__all__: list[str] = []

# A whole reply line without its CRLF. The text may hold HT and any octet from SP upward
# except DEL; octets of 0x80 and above are allowed because RFC 6531 servers send UTF-8. The
# text after the separator may be empty ("250-" and "250 " occur in the wild and harm no one).
_REPLY_LINE = re.compile(rb"([2-5][0-5][0-9])(?:([ -])([^\x00-\x08\x0a-\x1f\x7f]*))?")

# RFC 3463 section 2: class "." subject "." detail, where subject and detail are 1 to 3
# digits, at the start of the text and followed by a space or the end of the line (RFC 2034
# section 4).
_ENHANCED_STATUS = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?=[ \t]|\Z)")


# Servers repeat themselves: "250 2.1.5 Ok" answers every recipient, "354 ..." every DATA.
# Each reader keeps the replies it parsed from single short lines, keyed by their raw
# octets, and returns the same immutable Reply when those octets come again, skipping the
# parse. Bounded in entries and in the length of a line kept (RFC 5321 section 4.5.3.1.5's
# 512 octets), so a server sending endless distinct replies costs at most this much memory.
_REPLY_CACHE_ENTRIES = 32
_REPLY_CACHE_LINE_LENGTH = 512


def parse_enhanced_status(code: int, text: str) -> EnhancedStatusCode | None:
    """The enhanced status code at the start of *text*, if any and if it agrees with *code*.

    A code whose class differs from the reply's (``250 5.1.1 ...``) is dropped rather than
    trusted: RFC 3463 section 2 requires the two to agree, and a caller deciding whether to
    retry should never be misled by the weaker of two contradicting signals.
    """
    match = _ENHANCED_STATUS.match(text)
    if match is None or int(match[1]) != code // 100:
        return None
    return EnhancedStatusCode(
        status_class=int(match[1]), subject=int(match[2]), detail=int(match[3])
    )


class ReplyReader:
    """Assembles server replies from received bytes, within the bounds of a :class:`Limits`."""

    __slots__ = (
        "_buffer",
        "_cache",
        "_code",
        "_limits",
        "_lines",
        "_max_line",
        "_raw",
        "_reply_size",
        "_scanned",
        "bytes_examined",
    )

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._max_line = limits.max_reply_line_length  # read for every line
        self._buffer = bytearray()
        # How much of the buffer's first (incomplete) line is known to hold no line end.
        self._scanned = 0
        # The reply being assembled: its code, decoded lines, raw lines and size so far.
        self._code: int | None = None
        self._lines: list[str] = []
        self._raw: list[bytes] = []
        self._reply_size = 0
        self._cache: dict[bytes, Reply] = {}
        #: Octets searched for line ends so far. It exists so that tests can prove the work
        #: done is linear in the input, by counting rather than by timing.
        self.bytes_examined = 0

    @property
    def buffered(self) -> int:
        """Received octets not yet returned as part of a reply."""
        return len(self._buffer)

    @property
    def in_reply(self) -> bool:
        """Whether part of a reply has been received and its end has not."""
        return bool(self._buffer) or self._code is not None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes, refusing to hold more than ``max_receive_buffer``."""
        if len(self._buffer) + len(data) > self._limits.max_receive_buffer:
            raise RemoteProtocolError(
                f"the server sent more than {self._limits.max_receive_buffer} octets "
                "without completing a reply (Limits.max_receive_buffer)"
            )
        self._buffer += data

    def clear(self) -> None:
        """Forget everything received, complete or not."""
        self._buffer.clear()
        self._scanned = 0
        self._reset_reply()

    def next_reply(self) -> Reply | None:
        """Return the next complete reply, or None if more bytes are needed."""
        buffer = self._buffer
        if self._scanned == len(buffer):
            # Nothing has come since the buffer was last searched (and checked) to its end:
            # the usual case once every reply received has been returned.
            return None
        while True:
            newline = buffer.find(b"\n", self._scanned)
            if newline < 0:
                self._check_partial_line()
                return None
            end = newline + 1
            self.bytes_examined += end - self._scanned
            if end > self._max_line:
                raise _line_too_long(self._limits)
            raw_line = bytes(buffer[:end])
            # A line seen before as a whole reply is that reply again: the same octets
            # passed every check below when they were first parsed.
            if self._code is None and (cached := self._cache.get(raw_line)) is not None:
                del buffer[:end]
                self._scanned = 0
                return cached
            self._check_line(raw_line)
            del buffer[:end]
            self._scanned = 0
            reply = self._add_line(raw_line)
            if reply is not None:
                return reply

    def repeats(self, reply: Reply, limit: int) -> int:
        """How many copies of *reply*, up to *limit*, the buffer starts with, if *reply* is
        one this reader keeps for its raw octets (see next_reply); else 0. Nothing is taken.

        Each copy is a whole line that next_reply would return as *reply* again: the same
        octets, which passed every check when they were first parsed, up to and including
        their first LF. Servers answer every recipient with the same line, and this lets a
        run of those answers be taken at once (see skip)."""
        line = reply.raw
        if self._cache.get(line) is not reply:
            return 0
        buffer = self._buffer
        size = len(line)
        # The usual case first: every reply awaited has come, and all alike. The last copy
        # is looked for before the copies are made to compare with at once, so that no more
        # is made than the buffer holds.
        if (
            limit > 0
            and buffer.startswith(line, (limit - 1) * size)
            and buffer.startswith(line * limit)
        ):
            return limit
        count = 0
        while count < limit and buffer.startswith(line, count * size):
            count += 1
        return count

    def skip(self, reply: Reply, count: int) -> None:
        """Take *count* copies of *reply* from the buffer, as counted by repeats."""
        end = count * len(reply.raw)
        del self._buffer[:end]
        self._scanned = 0
        self.bytes_examined += end

    def _check_partial_line(self) -> None:
        # The buffer holds no line end: check what there is of the line so far.
        buffer = self._buffer
        end = len(buffer)
        self.bytes_examined += end - self._scanned
        # A CR anywhere but in the last octet is followed by something other than LF.
        if buffer.find(b"\r", self._scanned, end - 1) >= 0:
            raise RemoteProtocolError("bare CR in a reply line")
        if end >= self._limits.max_reply_line_length:
            raise _line_too_long(self._limits)
        # A CR in the last octet is checked again once the next octet arrives.
        self._scanned = end - 1 if end and buffer[end - 1] == 0x0D else end

    def _check_line(self, raw_line: bytes) -> None:
        # A complete line, up to and including the first LF in the buffer, within the
        # length limit.
        if len(raw_line) < 2 or raw_line[-2] != 0x0D:
            raise RemoteProtocolError("bare LF in a reply line")
        if raw_line.find(b"\r", self._scanned, len(raw_line) - 2) >= 0:
            raise RemoteProtocolError("bare CR in a reply line")

    def _add_line(self, raw_line: bytes) -> Reply | None:
        match = _REPLY_LINE.fullmatch(raw_line, 0, len(raw_line) - 2)
        if match is None:
            raise RemoteProtocolError(f"malformed reply line {_excerpt(raw_line)}")
        code = int(match[1])
        if self._code is None:
            self._code = code
        elif code != self._code:
            raise RemoteProtocolError(
                f"reply code changed from {self._code} to {code} within a multiline reply"
            )
        self._reply_size += len(raw_line)
        if self._reply_size > self._limits.max_reply_size:
            raise RemoteProtocolError(
                f"reply longer than {self._limits.max_reply_size} octets (Limits.max_reply_size)"
            )
        if len(self._lines) >= self._limits.max_reply_lines:
            raise RemoteProtocolError(
                f"reply of more than {self._limits.max_reply_lines} lines (Limits.max_reply_lines)"
            )
        # surrogateescape keeps every octet: text that is not UTF-8 still round-trips.
        self._lines.append((match[3] or b"").decode("utf-8", "surrogateescape"))
        self._raw.append(raw_line)
        if match[2] == b"-":
            return None
        lines = tuple(self._lines)
        reply = Reply(
            code=code,
            lines=lines,
            enhanced_status=parse_enhanced_status(code, lines[0]),
            raw=b"".join(self._raw),
        )
        if len(self._raw) == 1 and len(raw_line) <= _REPLY_CACHE_LINE_LENGTH:
            if len(self._cache) >= _REPLY_CACHE_ENTRIES:
                self._cache.clear()
            self._cache[raw_line] = reply
        self._reset_reply()
        return reply

    def _reset_reply(self) -> None:
        self._code = None
        self._lines = []
        self._raw = []
        self._reply_size = 0


def _line_too_long(limits: Limits) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"reply line longer than {limits.max_reply_line_length} octets "
        "(Limits.max_reply_line_length)"
    )


def _excerpt(data: bytes) -> str:
    # Enough of the offending bytes to debug with, never an unbounded echo of hostile input.
    return repr(data[:60]) + ("..." if len(data) > 60 else "")
