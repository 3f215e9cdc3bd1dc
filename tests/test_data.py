"""Tests for the DATA writer and the BDAT line-ending normalizer.

The properties tested here are security properties (see the docstring of ``_data``): every
line break leaves as CRLF, every line starting with a dot is stuffed, and no content can end
the message early. The Hypothesis tests check the writers against references written
independently and as plainly as possible, rather than against a copy of the same technique.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_proto import _data
from smtp_proto._data import DataWriter, LineEndingNormalizer

Chunk = bytes | bytearray | memoryview


def write(chunks: Iterable[Chunk]) -> bytes:
    """Everything a fresh DataWriter produces for ``chunks``, terminator included."""
    writer = DataWriter()
    return b"".join(writer.feed(chunk) for chunk in chunks) + writer.end()


def normalize(chunks: Iterable[Chunk]) -> bytes:
    """Everything a fresh LineEndingNormalizer produces for ``chunks``."""
    normalizer = LineEndingNormalizer()
    return b"".join(normalizer.feed(chunk) for chunk in chunks) + normalizer.end()


def byte_by_byte(content: bytes) -> list[bytes]:
    return [content[i : i + 1] for i in range(len(content))]


def end_of_data_offset(wire: bytes) -> int:
    """Where a receiver following RFC 5321 section 4.5.2 sees the body end: the offset of the
    "." of the first line holding only a dot, or -1 if there is none."""
    if wire.startswith(b".\r\n"):
        return 0
    found = wire.find(b"\r\n.\r\n")
    return -1 if found < 0 else found + 2


def assert_ends_only_at_terminator(wire: bytes) -> None:
    assert wire.endswith(b".\r\n")
    assert end_of_data_offset(wire) == len(wire) - 3


# -- References, deliberately simple and independent of the module under test ----------------

LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def reference_canonical(content: bytes) -> bytes:
    """Every CRLF, bare CR and bare LF as CRLF; the regex tries CRLF first."""
    return LINE_BREAK.sub(b"\r\n", content)


def reference_body(content: bytes) -> bytes:
    """The canonical content as a DATA body carries it: closed by CRLF unless empty."""
    canonical = reference_canonical(content)
    if canonical and not canonical.endswith(b"\r\n"):
        canonical += b"\r\n"
    return canonical


def reference_unstuff(wire: bytes) -> bytes:
    """Read a DATA body line by line as a receiver does and return the content it carries."""
    lines = wire.split(b"\r\n")
    # The wire ends with CRLF, so the split leaves an empty last element after the ".".
    assert lines[-1] == b""
    assert lines[-2] == b"."
    content = []
    for line in lines[:-2]:
        assert b"\r" not in line
        assert b"\n" not in line
        assert line != b"."  # would end the message early
        if line.startswith(b"."):
            # A stuffed line always starts with two dots; one alone means a dot was missed.
            assert line.startswith(b"..")
            line = line[1:]
        content.append(line + b"\r\n")
    return b"".join(content)


# -- Line endings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"a\nb\n"], b"a\r\nb\r\n.\r\n", id="bare-lf"),
        pytest.param([b"a\rb\r"], b"a\r\nb\r\n.\r\n", id="bare-cr"),
        pytest.param([b"a\r\nb\r\n"], b"a\r\nb\r\n.\r\n", id="crlf-kept"),
        pytest.param([b"a\n\rb"], b"a\r\n\r\nb\r\n.\r\n", id="lf-cr-is-two-breaks"),
        pytest.param([b"a\r\r\nb"], b"a\r\n\r\nb\r\n.\r\n", id="cr-crlf-is-two-breaks"),
        pytest.param([b"a\r", b"\nb"], b"a\r\nb\r\n.\r\n", id="crlf-split-across-chunks"),
        pytest.param([b"a\r", b"\n", b"\nb"], b"a\r\n\r\nb\r\n.\r\n", id="split-crlf-then-lf"),
        pytest.param([b"a\r", b"", b"\nb"], b"a\r\nb\r\n.\r\n", id="empty-chunk-keeps-cr"),
        pytest.param([b"a\r", b"b"], b"a\r\nb\r\n.\r\n", id="cr-at-end-then-other"),
        pytest.param([b"a\r", b"\rb"], b"a\r\n\r\nb\r\n.\r\n", id="cr-at-end-then-cr"),
        pytest.param([b"a\n", b"\nb"], b"a\r\n\r\nb\r\n.\r\n", id="lf-at-end-then-lf"),
    ],
)
def test_line_endings_become_crlf(chunks: list[bytes], expected: bytes) -> None:
    assert write(chunks) == expected


def test_trailing_cr_is_sent_at_once() -> None:
    # Holding the CR back until the next chunk would delay bytes the caller has handed over.
    writer = DataWriter()
    assert writer.feed(b"a\r") == b"a\r\n"
    assert writer.feed(b"\n") == b""
    assert writer.feed(b"\n") == b"\r\n"


# -- Dot-stuffing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b".a"], b"..a\r\n.\r\n", id="first-line"),
        pytest.param([b"a\r\n.b\r\n"], b"a\r\n..b\r\n.\r\n", id="later-line"),
        pytest.param([b"a\n.b"], b"a\r\n..b\r\n.\r\n", id="after-bare-lf"),
        pytest.param([b"a\r.b"], b"a\r\n..b\r\n.\r\n", id="after-bare-cr"),
        pytest.param([b"a\r\n", b".b"], b"a\r\n..b\r\n.\r\n", id="after-chunk-boundary"),
        pytest.param([b"a\r", b".b"], b"a\r\n..b\r\n.\r\n", id="after-cr-at-boundary"),
        pytest.param([b"a\r", b"\n.b"], b"a\r\n..b\r\n.\r\n", id="after-split-crlf"),
        pytest.param([b"a\r", b"\n", b".b"], b"a\r\n..b\r\n.\r\n", id="after-split-crlf-alone"),
        pytest.param([b"a", b".b"], b"a.b\r\n.\r\n", id="mid-line-dot-kept"),
        pytest.param([b"a.\r\n"], b"a.\r\n.\r\n", id="dot-at-line-end-kept"),
        pytest.param([b"..\r\n"], b"...\r\n.\r\n", id="two-dots"),
        pytest.param([b".\r\n.\r\n.\r\n"], b"..\r\n..\r\n..\r\n.\r\n", id="run-of-dot-lines"),
        pytest.param([b"\n\n.\n\n"], b"\r\n\r\n..\r\n\r\n.\r\n", id="dot-between-blanks"),
        pytest.param([b".", b".", b"\r\n"], b"...\r\n.\r\n", id="dots-in-separate-chunks"),
    ],
)
def test_dot_stuffing(chunks: list[bytes], expected: bytes) -> None:
    assert write(chunks) == expected


# -- end() -------------------------------------------------------------------------------------


def test_end_without_content_is_an_empty_message() -> None:
    assert write([]) == b".\r\n"


def test_end_after_only_empty_chunks() -> None:
    assert write([b"", b""]) == b".\r\n"


def test_end_after_content_ending_in_crlf_adds_only_the_dot() -> None:
    writer = DataWriter()
    assert writer.feed(b"hello\r\n") == b"hello\r\n"
    assert writer.end() == b".\r\n"


def test_end_closes_an_open_last_line() -> None:
    writer = DataWriter()
    assert writer.feed(b"hello") == b"hello"
    assert writer.end() == b"\r\n.\r\n"


def test_end_after_trailing_cr_adds_only_the_dot() -> None:
    # The CR was already sent as CRLF, so the line is closed.
    assert write([b"hello\r"]) == b"hello\r\n.\r\n"


def test_end_after_content_of_only_a_line_break() -> None:
    assert write([b"\n"]) == b"\r\n.\r\n"


@pytest.mark.parametrize("factory", [DataWriter, LineEndingNormalizer])
def test_use_after_end_is_refused(factory: type[DataWriter | LineEndingNormalizer]) -> None:
    writer = factory()
    writer.feed(b"a")
    writer.end()
    with pytest.raises(ValueError, match="the data has ended"):
        writer.feed(b"b")
    with pytest.raises(ValueError, match="the data has ended"):
        writer.end()
    # Even an empty chunk: the caller is confused, and saying so helps.
    with pytest.raises(ValueError, match="the data has ended"):
        writer.feed(b"")


# -- NUL and input types -------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [b"\x00", b"a\x00", b"\x00\n", b"\r\nx\x00y\r\n"])
def test_nul_is_refused_and_state_kept(chunk: bytes) -> None:
    writer = DataWriter()
    assert writer.feed(b"a\r") == b"a\r\n"
    with pytest.raises(ValueError, match="NUL"):
        writer.feed(chunk)
    # The pending CR and the line-start state survive: this LF still completes the CRLF and
    # the dot after it still starts a line.
    assert writer.feed(b"\n.b") == b"..b"
    assert writer.end() == b"\r\n.\r\n"


def test_nul_is_refused_by_the_normalizer_and_state_kept() -> None:
    normalizer = LineEndingNormalizer()
    assert normalizer.feed(b"a\r") == b"a\r\n"
    with pytest.raises(ValueError, match=r"^message content must not contain NUL \(0x00\)$"):
        normalizer.feed(b"\nb\x00")
    assert normalizer.feed(b"\nb") == b"b"
    assert normalizer.end() == b""


def test_nul_at_start_is_refused_before_anything_is_produced() -> None:
    writer = DataWriter()
    with pytest.raises(ValueError, match="NUL"):
        writer.feed(b".\x00")
    assert writer.feed(b".a") == b"..a"


class _BytesSubclass(bytes):
    """Bytes by inheritance, not exactly: taken the way bytes are."""


@pytest.mark.parametrize(
    "chunk",
    [
        pytest.param(bytearray(b".a\nb\r"), id="bytearray"),
        pytest.param(memoryview(b".a\nb\r"), id="memoryview"),
        pytest.param(memoryview(b"xx.a\nb\rxx")[2:-2], id="memoryview-slice"),
        pytest.param(_BytesSubclass(b".a\nb\r"), id="bytes-subclass"),
    ],
)
def test_bytes_like_input_is_accepted(chunk: Chunk) -> None:
    writer = DataWriter()
    output = writer.feed(chunk)
    assert type(output) is bytes
    assert output == b"..a\r\nb\r\n"
    assert normalize([chunk]) == b".a\r\nb\r\n"


def test_bytearray_changed_after_feed_does_not_change_output() -> None:
    chunk = bytearray(b"abc")
    writer = DataWriter()
    output = writer.feed(chunk)
    chunk[0:1] = b"."
    assert output == b"abc"


@pytest.mark.parametrize("chunk", ["text", 42, None, [46, 10]])
@pytest.mark.parametrize("factory", [DataWriter, LineEndingNormalizer])
def test_non_bytes_input_is_refused(
    factory: type[DataWriter | LineEndingNormalizer], chunk: object
) -> None:
    writer = factory()
    message = f"^message content must be bytes-like, not {type(chunk).__name__}$"
    with pytest.raises(TypeError, match=message):
        writer.feed(chunk)  # type: ignore[arg-type]
    # Nothing changed: the writer is still at the start of the first line.
    assert writer.feed(b".") == (b".." if factory is DataWriter else b".")


# -- The normalizer on its own -------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([], b"", id="empty"),
        pytest.param([b".a\n.b"], b".a\r\n.b", id="no-stuffing-no-final-crlf"),
        pytest.param([b"a\r"], b"a\r\n", id="trailing-cr"),
        pytest.param([b"a\r", b"\nb"], b"a\r\nb", id="split-crlf"),
        pytest.param([b"a\r", b"", b"\n"], b"a\r\n", id="split-crlf-with-empty-chunk"),
        pytest.param([b"\r\n.\r\n"], b"\r\n.\r\n", id="crlf-dot-crlf-kept-as-is"),
        pytest.param([b"\n.\r\r"], b"\r\n.\r\n\r\n", id="mixed"),
    ],
)
def test_normalizer(chunks: list[bytes], expected: bytes) -> None:
    assert normalize(chunks) == expected


# -- SMTP smuggling ------------------------------------------------------------------------

SMUGGLING_VECTORS = [
    b"a\n.\nb",
    b"a\r.\rb",
    b"a\r\n.\nb",
    b"a\n.\r\nb",
    b"a\r\n.\rb",
    b"a\r.\r\nb",
    b"a\r\n.\r\nb",
    b"\r\n.\r\n",
    b".\r\n",
    b".\n",
    b".\r",
    b"\n.\n",
    b"\r.\r",
    b"a\r\n.\r\nMAIL FROM:<x@example.com>\r\n",
    b"a\n.\r\nRCPT TO:<y@example.com>\n",
    b"a\r\n.\r\r\n",
]


@pytest.mark.parametrize("content", SMUGGLING_VECTORS)
def test_smuggling_vectors_cannot_end_the_data(content: bytes) -> None:
    whole = write([content])
    assert_ends_only_at_terminator(whole)
    assert write(byte_by_byte(content)) == whole
    assert reference_unstuff(whole) == reference_body(content)


@pytest.mark.parametrize("content", SMUGGLING_VECTORS)
def test_smuggling_vectors_split_anywhere(content: bytes) -> None:
    # Every way of cutting the content in two, so the dangerous sequence straddles a chunk.
    whole = write([content])
    for cut in range(len(content) + 1):
        assert write([content[:cut], content[cut:]]) == whole


# -- Properties ------------------------------------------------------------------------------

# Random binary finds the unexpected; the alphabet of line breaks and dots makes the cases
# that matter (dots at line starts, CR and LF in every order) common instead of rare.
interesting = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"\r\n.\r\n", b"\n.\n"]),
    max_size=30,
).map(b"".join)
contents = st.one_of(
    st.binary(max_size=200).map(lambda raw: raw.replace(b"\x00", b"")), interesting
)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Content without NUL, and the same content cut at arbitrary points (empty pieces too)."""
    content = draw(contents)
    cuts = sorted(draw(st.lists(st.integers(0, len(content)), max_size=12)))
    bounds = [0, *cuts, len(content)]
    return content, [content[start:stop] for start, stop in pairwise(bounds)]


def assert_all_lines_crlf(wire: bytes) -> None:
    # Removing every CRLF must leave no CR or LF at all: no bare line break survives.
    stripped = wire.replace(b"\r\n", b"")
    assert b"\r" not in stripped
    assert b"\n" not in stripped


@settings(max_examples=200, deadline=None)
@given(chunked())
def test_data_writer_properties(case: tuple[bytes, list[bytes]]) -> None:
    content, chunks = case
    wire = write(chunks)
    assert wire == write([content])
    assert reference_unstuff(wire) == reference_body(content)
    assert_ends_only_at_terminator(wire)
    assert_all_lines_crlf(wire)


@settings(max_examples=200, deadline=None)
@given(chunked())
def test_data_writer_byte_by_byte(case: tuple[bytes, list[bytes]]) -> None:
    content, _ = case
    assert write(byte_by_byte(content)) == write([content])


@settings(max_examples=200, deadline=None)
@given(chunked())
def test_normalizer_properties(case: tuple[bytes, list[bytes]]) -> None:
    content, chunks = case
    canonical = normalize(chunks)
    assert canonical == normalize([content])
    assert canonical == reference_canonical(content)
    assert_all_lines_crlf(canonical)


@settings(max_examples=200, deadline=None)
@given(chunked())
def test_each_feed_returns_only_that_chunks_bytes(case: tuple[bytes, list[bytes]]) -> None:
    # Output is produced as input arrives: after any prefix of the chunks, what has been sent
    # is a prefix of the final wire form, never something later taken back.
    content, chunks = case
    final = write([content])
    writer = DataWriter()
    sent = b""
    for chunk in chunks:
        sent += writer.feed(chunk)
        assert final.startswith(sent)


# -- Module surface --------------------------------------------------------------------------


def test_public_names() -> None:
    assert sorted(_data.__all__) == ["DataWriter", "LineEndingNormalizer"]


def test_writers_have_no_instance_dict() -> None:
    assert not hasattr(DataWriter(), "__dict__")
    assert not hasattr(LineEndingNormalizer(), "__dict__")


def test_reference_unstuff_rejects_an_early_terminator() -> None:
    # The reference must itself be able to fail, or the properties above prove nothing.
    with pytest.raises(AssertionError):
        reference_unstuff(b"a\r\n.\r\nb\r\n.\r\n")
    with pytest.raises(AssertionError):
        reference_unstuff(b".a\r\n.\r\n")
