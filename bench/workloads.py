"""The messages the benchmark sends, built the same way every run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

__all__ = [
    "SENDER",
    "big_message",
    "big_message_chunks",
    "canonical_digest_of_chunks",
    "recipients",
    "small_message",
]

SENDER = "bench@example.com"


def recipients(count: int) -> list[str]:
    return [f"rcpt{index}@example.net" for index in range(count)]


def small_message(size: int = 1024) -> bytes:
    """A message of exactly *size* octets, CRLF line endings, no line starting with '.'."""
    head = b"From: bench@example.com\r\nTo: rcpt0@example.net\r\nSubject: benchmark\r\n\r\n"
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = head
    while len(body) + len(line) <= size - 2:
        body += line
    body += b"x" * (size - 2 - len(body)) + b"\r\n"
    assert len(body) == size
    return body


_HEADER = b"From: bench@example.com\r\nTo: rcpt0@example.net\r\nSubject: large benchmark\r\n\r\n"


def _block() -> bytes:
    """64 KiB of lines: a quarter start with '.', and line endings alternate between CRLF
    and a bare LF (so normalising and dot-stuffing both have work to do). Every line ends
    with a line ending, so blocks can be repeated."""
    lines = []
    for index in range(1300):
        text = b"%05d lorem ipsum dolor sit amet consectetur" % index
        if index % 4 == 0:
            text = b"." + text
        lines.append(text + (b"\n" if index % 2 else b"\r\n"))
    block = b"".join(lines)
    # Pad the last line so the block is exactly 64 KiB.
    missing = 64 * 1024 - len(block)
    assert missing >= 0
    return block[:-2] + b"y" * missing + b"\r\n"


BLOCK = _block()


def big_message_chunks(size: int) -> Iterator[bytes]:
    """A message of about *size* octets (a header, then 64 KiB blocks), as chunks."""
    yield _HEADER
    for _ in range(max(1, size // len(BLOCK))):
        yield BLOCK


def big_message(size: int) -> bytes:
    return b"".join(big_message_chunks(size))


def _canonical(block: bytes) -> bytes:
    return block.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def canonical_digest_of_chunks(chunks: Iterator[bytes]) -> str:
    """:func:`bench.sink.canonical_digest` of the concatenation of *chunks*, each of which
    ends with a line ending, without holding them all."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(_canonical(chunk))
    return digest.hexdigest()
