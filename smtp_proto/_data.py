"""Writers that turn message content into the octets sent after DATA or in BDAT chunks.

SMTP ends a DATA body with a line holding a single dot (RFC 5321 section 4.5.2), so the
client must make sure no line of the content can be mistaken for that terminator: it
doubles the dot at the start of every line ("dot-stuffing") and the server removes it.

Dot-stuffing only works if client and server agree on what a line is. RFC 5321 section 2.3.8
says a line ends with CRLF and nothing else, but servers differ in what they do with a bare
CR or a bare LF: some treat it as a line break, some pass it through. That disagreement is
what "SMTP smuggling" exploits: content holding ``\\n.\\n`` or ``\\r\\n.\\r`` ends the message
for one server and not for another, and whatever follows is read as fresh commands. The
writers here therefore turn every bare CR, bare LF and CRLF into exactly CRLF *before*
stuffing, so the bytes they produce have a single reading for every server.

Content arrives in chunks of any size, and a line break (CR then LF) or the start of a line
may straddle two chunks. The writers keep a couple of booleans between chunks and never the
content itself, and they treat each chunk with bulk ``bytes`` operations, so the cost of a
chunk is proportional to its length whatever came before.

NUL is refused outright: RFC 5322 allows it nowhere in a message and servers differ in
whether they drop it, keep it or reject the message, and content that reaches some recipients
altered is worse than content the caller learns it cannot send.
"""

from __future__ import annotations

__all__ = ["DataWriter", "LineEndingNormalizer"]

_ENDED_MESSAGE = "the data has ended"


def _as_bytes(chunk: object) -> bytes:
    """Return ``chunk`` as immutable bytes, copying it once if it is another bytes-like type."""
    # A typed parameter on the public methods documents the API; taking `object` here lets the
    # check for a wrong type stay reachable for callers who do not run a type checker.
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, (bytearray, memoryview)):
        # Copying also protects against the caller mutating a buffer while we look at it.
        return bytes(chunk)
    raise TypeError(f"message content must be bytes-like, not {type(chunk).__name__}")


class LineEndingNormalizer:
    """Rewrites every bare CR, bare LF and CRLF in streamed content as exactly CRLF.

    Use it for BDAT (RFC 3030): chunk contents are sent as exact octets with no dot-stuffing,
    but a message that is not BINARYMIME must still be in canonical CRLF form, and the
    smuggling argument in this module's docstring applies to the server's later relaying of
    it. The result of :meth:`feed` is what to send; its length is the BDAT octet count.
    """

    __slots__ = ("_ended", "_pending_cr")

    def __init__(self) -> None:
        # The previous chunk ended with a CR, which was already sent as CRLF; if the next
        # chunk starts with LF, that LF belongs to the same line break and must be dropped.
        # Sending the CR at once (rather than holding it back) means no byte is ever delayed.
        self._pending_cr = False
        self._ended = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes:
        """Return the canonical form of ``chunk``, which may be empty.

        Raises :class:`ValueError` for content holding NUL, leaving the state as it was, and
        after :meth:`end`; raises :class:`TypeError` for anything not bytes-like.
        """
        if self._ended:
            raise ValueError(_ENDED_MESSAGE)
        # Exact bytes, nearly always, go without the call.
        data = chunk if type(chunk) is bytes else _as_bytes(chunk)
        # Checked before anything changes, so the caller may fix the content and carry on.
        if b"\x00" in data:
            raise ValueError("message content must not contain NUL (0x00)")
        if self._pending_cr and data[:1] == b"\n":
            data = data[1:]
            self._pending_cr = False
        if not data:
            # An empty chunk resolves nothing: a pending CR may still meet its LF later.
            return b""
        # The first byte is not the LF of a pending CR here, so that CR is settled either way.
        self._pending_cr = data[-1:] == b"\r"
        # Three linear passes: fold CRLF and bare CR into LF, then widen every LF to CRLF.
        # Doing CRLF first keeps it a single break rather than becoming two.
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")

    def end(self) -> bytes:
        """End the stream; returns ``b""`` since a trailing CR was already sent as CRLF.

        Unlike DATA, BDAT has no terminator and does not require the content to end with a
        line break, so none is added. Raises :class:`ValueError` if called twice.
        """
        if self._ended:
            raise ValueError(_ENDED_MESSAGE)
        self._ended = True
        return b""


class DataWriter:
    """Turns message content, fed in chunks of any size, into the octets of a DATA body.

    Line endings are made canonical as by :class:`LineEndingNormalizer`, every line starting
    with a dot gets a second one, and :meth:`end` adds the ``.`` CRLF terminator. Nothing the
    caller feeds can produce that terminator earlier.
    """

    __slots__ = ("_at_line_start", "_lines")

    def __init__(self) -> None:
        # The normalizer also carries the type, NUL and "ended" checks, so both writers
        # refuse the same input in the same way.
        self._lines = LineEndingNormalizer()
        # True when the last byte sent ended a line, or nothing was sent yet: the next byte
        # starts a line, so a dot there needs stuffing even though it begins a new chunk.
        self._at_line_start = True

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes:
        """Return the wire octets for ``chunk``, which may be empty.

        Raises :class:`ValueError` for content holding NUL, leaving the state as it was, and
        after :meth:`end`; raises :class:`TypeError` for anything not bytes-like.
        """
        data = self._lines.feed(chunk)
        if not data:
            return b""
        # Line endings are all CRLF now, so "CRLF ." finds every dot that starts a line inside
        # the chunk. Two matches can never overlap, so the one pass also stuffs runs of lines
        # that hold only a dot. The chunk's first byte has no CRLF before it here; the flag
        # below says whether it starts a line.
        data = data.replace(b"\r\n.", b"\r\n..")
        if self._at_line_start and data[:1] == b".":
            data = b"." + data
        self._at_line_start = data[-1:] == b"\n"
        return data

    def end(self) -> bytes:
        """Return the octets that close the body: CRLF if the last line is open, then ``.`` CRLF.

        With no content at all this is just ``.`` CRLF, an empty message. Raises
        :class:`ValueError` if called twice.
        """
        self._lines.end()
        if self._at_line_start:
            return b".\r\n"
        return b"\r\n.\r\n"
