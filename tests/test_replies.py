"""The reply reader, fed whole, byte by byte and with trailing data."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_proto import EnhancedStatusCode, Limits, RemoteProtocolError, Reply, _replies
from smtp_proto._replies import ReplyReader, parse_enhanced_status


def read_all(
    data: bytes, splits: list[int] | None = None, limits: Limits | None = None
) -> list[Reply]:
    """Feed *data* in pieces (cut at *splits*, or whole) and collect every reply."""
    reader = ReplyReader(limits or Limits())
    replies: list[Reply] = []
    cuts = [0, *sorted(set(splits or [])), len(data)]
    for start, end in itertools.pairwise(cuts):
        reader.feed(data[start:end])
        while (reply := reader.next_reply()) is not None:
            replies.append(reply)
    return replies


def every_way(data: bytes, limits: Limits | None = None) -> list[Reply]:
    """Read *data* whole and byte by byte, demand the same replies, return them."""
    whole = read_all(data, limits=limits)
    assert read_all(data, list(range(1, len(data))), limits) == whole
    return whole


GOOD = [
    (b"220 mail.example.org ESMTP\r\n", 220, ("mail.example.org ESMTP",)),
    (b"250\r\n", 250, ("",)),
    (b"250 \r\n", 250, ("",)),
    (b"250-\r\n250 last\r\n", 250, ("", "last")),
    (
        b"250-mail.example.org\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
        250,
        ("mail.example.org", "PIPELINING", "CHUNKING"),
    ),
    (b"554 5.7.1 no\tthanks\r\n", 554, ("5.7.1 no\tthanks",)),
    (b"421 4.3.2 shutting down\r\n", 421, ("4.3.2 shutting down",)),
    (b"354 go ahead\r\n", 354, ("go ahead",)),
    (b"250 ok \xc3\xa9t\xc3\xa9\r\n", 250, ("ok \u00e9t\u00e9",)),
]


@pytest.mark.parametrize(("data", "code", "lines"), GOOD)
def test_valid_replies(data: bytes, code: int, lines: tuple[str, ...]) -> None:
    [reply] = every_way(data)
    assert reply.code == code
    assert reply.lines == lines
    assert reply.raw == data


def test_trailing_data_is_kept_for_the_next_reply() -> None:
    data = b"250 first\r\n251 second\r\n25"
    reader = ReplyReader(Limits())
    reader.feed(data)
    assert reader.next_reply() == Reply(code=250, lines=("first",), raw=b"250 first\r\n")
    assert reader.next_reply() == Reply(code=251, lines=("second",), raw=b"251 second\r\n")
    assert reader.next_reply() is None
    assert reader.buffered == 2
    assert reader.in_reply
    reader.feed(b"2 third\r\n")
    third = reader.next_reply()
    assert third is not None
    assert third.code == 252
    assert not reader.in_reply


def test_many_replies_every_way() -> None:
    data = b"".join(item[0] for item in GOOD)
    assert [(r.code, r.lines) for r in every_way(data)] == [(c, lines) for _, c, lines in GOOD]


def test_text_that_is_not_utf8_is_kept_without_loss() -> None:
    [reply] = every_way(b"250 caf\xe9 \xff\xfe\r\n")
    assert reply.lines == ("caf\udce9 \udcff\udcfe",)
    assert reply.lines[0].encode("utf-8", "surrogateescape") == b"caf\xe9 \xff\xfe"


def test_enhanced_status_codes() -> None:
    [reply] = every_way(b"550-5.1.1 no such user\r\n550 5.1.1 really\r\n")
    assert reply.enhanced_status == EnhancedStatusCode(status_class=5, subject=1, detail=1)
    assert str(reply.enhanced_status) == "5.1.1"
    [reply] = every_way(b"250 2.0.0\r\n")
    assert reply.enhanced_status == EnhancedStatusCode(status_class=2, subject=0, detail=0)
    [reply] = every_way(b"452 4.5.3 too many recipients\r\n")
    assert str(reply.enhanced_status) == "4.5.3"
    [reply] = every_way(b"501 5.5.4 syntax error in parameters\r\n")
    assert str(reply.enhanced_status) == "5.5.4"


@pytest.mark.parametrize(
    "text",
    [
        "5.1.1 class disagrees with a 250",  # RFC 3463: the classes must agree
        "2.1.1000 four digits",
        "2.1 too short",
        "2.0.0x glued to text",
        "3.0.0 no such class",
        "ok 2.0.0 not at the start",
        "",
    ],
)
def test_enhanced_status_code_dropped(text: str) -> None:
    assert parse_enhanced_status(250, text) is None


BARE_LF = "bare LF in a reply line"
BARE_CR = "bare CR in a reply line"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"250 ok\n", BARE_LF),
        (b"\n", BARE_LF),
        (b"250 o\rk\r\n", BARE_CR),
        (b"250 ok\r\r\n", BARE_CR),
        (b"\r250 ok\r\n", BARE_CR),
        (b"250-a\r\n250 b\n", BARE_LF),
        (b"199 too low\r\n", "malformed"),
        (b"600 too high\r\n", "malformed"),
        (b"260 second digit above 5\r\n", "malformed"),
        (b"2500 four digits\r\n", "malformed"),
        (b"25 two digits\r\n", "malformed"),
        (b"\r\n", "malformed"),
        (b"abc\r\n", "malformed"),
        (b"250x\r\n", "malformed"),
        (b" 250 leading space\r\n", "malformed"),
        (b"250 nul \x00 inside\r\n", "malformed"),
        (b"250 escape \x1b[31m\r\n", "malformed"),
        (b"250 delete \x7f\r\n", "malformed"),
        (b"250-a\r\n251 b\r\n", "reply code changed from 250 to 251 within a multiline reply"),
    ],
)
def test_malformed_replies(data: bytes, message: str) -> None:
    # Each error names its reason; a malformed line is quoted (whole, when it is short).
    if message == "malformed":
        message = f"malformed reply line {data!r}"
    exact = f"^{re.escape(message)}$"
    with pytest.raises(RemoteProtocolError, match=exact):
        read_all(data)
    with pytest.raises(RemoteProtocolError, match=exact):
        read_all(data, list(range(1, len(data))))


def test_a_long_malformed_line_is_quoted_only_in_part() -> None:
    # The first 60 octets are enough to debug with; hostile input is never echoed whole.
    line = b"x" * 58 + b"\r\n"
    with pytest.raises(RemoteProtocolError) as info:
        read_all(line)
    assert str(info.value) == f"malformed reply line {line!r}"
    line = b"x" * 59 + b"\r\n"
    with pytest.raises(RemoteProtocolError) as info:
        read_all(line)
    assert str(info.value) == f"malformed reply line {line[:60]!r}..."


def test_bare_cr_is_refused_as_soon_as_the_next_octet_arrives() -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"250 ok\r")
    assert reader.next_reply() is None  # the LF may still come
    reader.feed(b"x")
    with pytest.raises(RemoteProtocolError, match=f"^{BARE_CR}$"):
        reader.next_reply()


def test_a_cr_that_starts_the_buffer_is_refused_at_once() -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"\r2")
    with pytest.raises(RemoteProtocolError, match=f"^{BARE_CR}$"):
        reader.next_reply()


def test_bare_lf_is_refused_before_the_reply_completes() -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"250-first\n")
    with pytest.raises(RemoteProtocolError, match=f"^{BARE_LF}$"):
        reader.next_reply()


def test_a_line_end_right_after_a_reply_is_still_checked() -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"250 ok\r\n\n250 ok\r\n")
    assert reader.next_reply() is not None
    with pytest.raises(RemoteProtocolError, match=f"^{BARE_LF}$"):
        reader.next_reply()


@pytest.mark.parametrize("after", [b"\n", b"\r250 ok\r\n"])
def test_a_bad_line_end_right_after_a_known_reply(after: bytes) -> None:
    # The second "250 ok" is the reader's known reply, taken without its checks; the
    # checks of the line after it must still start at its first octet.
    reader = ReplyReader(Limits())
    reader.feed(b"250 ok\r\n250 ok\r\n" + after)
    assert reader.next_reply() is reader.next_reply()
    with pytest.raises(RemoteProtocolError, match=f"^({BARE_LF}|{BARE_CR})$"):
        reader.next_reply()


LIMITS = Limits(
    max_reply_line_length=16, max_reply_lines=3, max_reply_size=40, max_receive_buffer=64
)


def test_reply_line_length_limit() -> None:
    at_limit = b"250 " + b"x" * 10 + b"\r\n"
    assert len(at_limit) == 16
    [reply] = every_way(at_limit, LIMITS)
    assert reply.lines == ("x" * 10,)
    with pytest.raises(
        RemoteProtocolError,
        match=r"^reply line longer than 16 octets \(Limits\.max_reply_line_length\)$",
    ):
        read_all(b"250 " + b"x" * 11 + b"\r\n", limits=LIMITS)


def test_reply_line_limit_is_enforced_before_the_line_ends() -> None:
    reader = ReplyReader(LIMITS)
    reader.feed(b"250 " + b"x" * 11)
    assert reader.next_reply() is None
    reader.feed(b"x")  # 16 octets and no line end: the line cannot fit any more
    with pytest.raises(
        RemoteProtocolError,
        match=r"^reply line longer than 16 octets \(Limits\.max_reply_line_length\)$",
    ):
        reader.next_reply()


def test_lines_per_reply_limit() -> None:
    [reply] = every_way(b"250-a\r\n250-b\r\n250 c\r\n", LIMITS)
    assert reply.lines == ("a", "b", "c")
    with pytest.raises(RemoteProtocolError, match="max_reply_lines"):
        read_all(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n", limits=LIMITS)


def test_reply_size_limit() -> None:
    limits = Limits(
        max_reply_line_length=16, max_reply_lines=10, max_reply_size=40, max_receive_buffer=64
    )
    line = b"250-" + b"x" * 10 + b"\r\n"
    with pytest.raises(RemoteProtocolError, match="max_reply_size"):
        read_all(line * 3, limits=limits)
    [reply] = every_way(line + line + b"250 " + b"x" * 2 + b"\r\n", limits)
    assert len(reply.raw) == 40
    # The count starts again with each reply.
    first, second = read_all(reply.raw * 2, [40, 41], limits)
    assert first == second == reply


def test_receive_buffer_limit_refuses_before_buffering() -> None:
    reader = ReplyReader(LIMITS)
    reader.feed(b"x" * 64)
    with pytest.raises(RemoteProtocolError) as info:
        reader.feed(b"y")
    assert str(info.value) == (
        "the server sent more than 64 octets without completing a reply (Limits.max_receive_buffer)"
    )
    assert reader.buffered == 64


def test_clear_forgets_everything() -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"250-partial\r\n250 x")
    assert reader.next_reply() is None
    reader.clear()
    assert not reader.in_reply
    reader.feed(b"220 fresh\r\n")
    reply = reader.next_reply()
    assert reply is not None
    assert reply.lines == ("fresh",)


def test_clear_forgets_how_far_the_buffer_was_scanned() -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"250 x")
    assert reader.next_reply() is None
    reader.clear()
    reader.feed(b"\n")
    with pytest.raises(RemoteProtocolError, match=f"^{BARE_LF}$"):
        reader.next_reply()


def test_work_is_linear_when_fed_byte_by_byte() -> None:
    # A maximal reply, fed one octet at a time: the reader must examine each octet a bounded
    # number of times. A reader that rescans its buffer on every feed would examine about
    # size**2 / 2 octets (some 10**9 here) and fail this by orders of magnitude.
    line = b"250-" + b"x" * 4000 + b"\r\n"
    data = line * 15 + b"250 end\r\n"
    reader = ReplyReader(Limits())
    replies = []
    for index in range(len(data)):
        reader.feed(data[index : index + 1])
        if (reply := reader.next_reply()) is not None:
            replies.append(reply)
    assert len(replies) == 1
    assert replies[0].raw == data
    # Every octet is examined once, except that a CR at the end of what has arrived is
    # looked at again with the octet after it: once per line here.
    assert reader.bytes_examined == len(data) + 16
    # Fed whole, nothing is examined twice.
    reader = ReplyReader(Limits())
    reader.feed(data)
    assert reader.next_reply() == replies[0]
    assert reader.bytes_examined == len(data)


# -- properties ---------------------------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=["Cs"], blacklist_characters="\r\n\x7f", min_codepoint=0x20
    )
    | st.just("\t"),
    max_size=40,
)


@st.composite
def replies(draw: st.DrawFn) -> tuple[int, list[str], bytes]:
    code = draw(st.integers(2, 5)) * 100 + draw(st.integers(0, 5)) * 10 + draw(st.integers(0, 9))
    lines = draw(st.lists(TEXT, min_size=1, max_size=5))
    last = len(lines) - 1
    raw = b"".join(
        b"%d%s%s\r\n" % (code, b" " if i == last else b"-", text.encode())
        for i, text in enumerate(lines)
    )
    return code, lines, raw


@given(replies(), st.lists(st.integers(0, 400), max_size=10))
def test_any_valid_reply_parses_the_same_however_split(
    reply: tuple[int, list[str], bytes], splits: list[int]
) -> None:
    code, lines, raw = reply
    [parsed] = read_all(raw, [s for s in splits if s < len(raw)])
    assert parsed.code == code
    assert parsed.lines == tuple(lines)
    assert parsed.raw == raw


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_give_replies_or_remote_protocol_error(
    data: bytes, splits: list[int]
) -> None:
    # Whatever arrives, the reader returns replies or raises RemoteProtocolError, and never
    # anything else; every reply it returns is exactly octets it was given.
    try:
        got = read_all(data, [s for s in splits if s < len(data)])
    except RemoteProtocolError:
        return
    assert b"".join(reply.raw for reply in got) == data[: sum(len(r.raw) for r in got)]


def test_a_repeated_reply_is_parsed_once_and_equals_a_fresh_parse() -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"250 2.1.5 ok\r\n250 2.1.5 ok\r\n251 2.1.5 ok\r\n")
    first, second, third = reader.next_reply(), reader.next_reply(), reader.next_reply()
    # The second is the very object the first parse made; the third differs by one octet
    # and so is parsed on its own.
    assert second is first
    assert first == read_all(b"250 2.1.5 ok\r\n")[0]
    assert third is not None
    assert third.code == 251
    assert third.lines == ("2.1.5 ok",)
    assert reader.next_reply() is None


def test_a_repeated_line_inside_a_multiline_reply_is_not_taken_for_a_whole_reply() -> None:
    # "250 last" was seen as a reply of its own; as the last line of a multiline reply it
    # must still end that reply, with every line in it.
    replies = every_way(b"250 last\r\n250-first\r\n250 last\r\n250 last\r\n")
    assert [r.lines for r in replies] == [("last",), ("first", "last"), ("last",)]
    assert replies[1].raw == b"250-first\r\n250 last\r\n"


def test_the_reply_cache_is_bounded() -> None:
    reader = ReplyReader(Limits())
    distinct = _replies._REPLY_CACHE_ENTRIES * 3 + 1
    for index in range(distinct):
        reader.feed(b"250 reply %d\r\n" % index)
        reply = reader.next_reply()
        assert reply is not None
        assert reply.lines == (f"reply {index}",)
        assert len(reader._cache) <= _replies._REPLY_CACHE_ENTRIES
    # Long lines and multiline replies are never kept.
    reader._cache.clear()
    long_line = b"250 " + b"x" * _replies._REPLY_CACHE_LINE_LENGTH + b"\r\n"
    reader.feed(long_line + long_line + b"250-a\r\n250 b\r\n")
    assert reader.next_reply() == reader.next_reply()
    assert reader.next_reply() is not None
    assert reader._cache == {}


def test_repeats_counts_whole_copies_of_a_known_reply_at_the_front() -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"250 2.1.5 ok\r\n" * 4 + b"250 2.1.5 ok\r")
    reply = reader.next_reply()
    assert reply is not None
    held = reader.buffered
    # Three whole copies follow; the fourth has not ended yet. Counting takes nothing.
    assert reader.repeats(reply, 10) == 3
    assert reader.repeats(reply, 3) == 3
    assert reader.repeats(reply, 2) == 2
    assert reader.repeats(reply, 0) == 0
    assert reader.buffered == held
    examined = reader.bytes_examined
    reader.skip(reply, 2)
    assert reader.buffered == held - 2 * len(reply.raw)
    assert reader.bytes_examined == examined + 2 * len(reply.raw)
    # What is left is read as before: one copy, then the one still arriving.
    assert reader.next_reply() is reply
    assert reader.next_reply() is None
    reader.feed(b"\n251 next\r\n")
    assert reader.next_reply() is reply
    following = reader.next_reply()
    assert following is not None
    assert following.code == 251


def test_repeats_makes_no_more_than_the_buffer_holds() -> None:
    # However many replies are awaited, counting looks only at what has come: a limit far
    # beyond the buffer costs nothing (the copies are not made to compare with).
    reader = ReplyReader(Limits())
    reader.feed(b"250 ok\r\n" * 3 + b"550 no\r\n" + b"250 ok\r\n" * 3)
    reply = reader.next_reply()
    assert reply is not None
    assert reader.repeats(reply, 10**12) == 2
    reader.skip(reply, 2)
    assert reader.repeats(reply, 10**12) == 0  # "550 no" comes first
    refusal = reader.next_reply()
    assert refusal is not None
    assert refusal.code == 550
    assert reader.repeats(reply, 10**12) == 3
    assert reader.repeats(reply, 3) == 3
    assert reader.repeats(reply, 1) == 1


@pytest.mark.parametrize(
    "after",
    [
        b"251 2.1.5 ok\r\n250 2.1.5 ok\r\n",  # another reply first
        b"250 2.1.5 ok \r\n",  # one octet more
        b"250-2.1.5 ok\r\n250 2.1.5 ok\r\n",  # the start of a multiline reply
        b"250 2.1.5 ok\n",  # a bare LF, which next_reply refuses
        b"250 2.1.5 o",  # not all here
    ],
)
def test_repeats_needs_the_very_octets_at_the_very_front(after: bytes) -> None:
    reader = ReplyReader(Limits())
    reader.feed(b"250 2.1.5 ok\r\n" + after)
    reply = reader.next_reply()
    assert reply is not None
    assert reader.repeats(reply, 5) == 0


def test_repeats_is_zero_for_a_reply_the_reader_does_not_keep() -> None:
    # A multiline reply, a line too long to keep, a reply forgotten since, and an equal
    # reply that another reader made are not known replies: nothing is counted.
    long_line = b"250 " + b"x" * _replies._REPLY_CACHE_LINE_LENGTH + b"\r\n"
    for data in (b"250-a\r\n250 b\r\n", long_line):
        reader = ReplyReader(Limits())
        reader.feed(data * 3)
        reply = reader.next_reply()
        assert reply is not None
        assert reader.repeats(reply, 5) == 0
    reader = ReplyReader(Limits())
    reader.feed(b"250 ok\r\n" * 3)
    reply = reader.next_reply()
    assert reply is not None
    reader._cache.clear()
    assert reader.repeats(reply, 5) == 0
    [twin] = read_all(b"250 ok\r\n")
    assert twin == reply
    assert twin is not reply
    again = reader.next_reply()  # parsed afresh, and kept in its place
    assert again == reply
    assert again is not reply
    assert reader.repeats(again, 5) == 1
    assert reader.repeats(reply, 5) == 0
    assert reader.repeats(twin, 5) == 0


@pytest.mark.parametrize(("after", "message"), [(b"\n", "bare LF"), (b"\r250 ok\r\n", "bare CR")])
def test_a_bad_line_end_right_after_a_skipped_run(after: bytes, message: str) -> None:
    # Skipping a run leaves the next octet to be checked like any other.
    reader = ReplyReader(Limits())
    reader.feed(b"250 ok\r\n" * 3 + after)
    reply = reader.next_reply()
    assert reply is not None
    reader.skip(reply, reader.repeats(reply, 5))
    with pytest.raises(RemoteProtocolError, match=f"^{message} in a reply line$"):
        reader.next_reply()


LINES = [b"250 2.1.5 ok\r\n", b"550 5.1.1 no\r\n", b"250-a\r\n250 b\r\n", b"250 2.1.5 ok \r\n"]


@given(
    st.lists(st.sampled_from(LINES), max_size=30),
    st.lists(st.integers(0, 400), max_size=10),
    st.lists(st.integers(0, 8), min_size=1, max_size=10),
)
def test_taking_repeats_gives_what_next_reply_gives(
    items: list[bytes], splits: list[int], limits: list[int]
) -> None:
    # However the octets arrive, counting and skipping copies of each reply just read
    # yields the same replies, and leaves the same octets, as reading them one by one.
    data = b"".join(items)
    cuts = [0, *sorted({s for s in splits if s < len(data)}), len(data)]
    one_by_one = read_all(data, cuts[1:-1])
    reader = ReplyReader(Limits())
    taken: list[Reply] = []
    wanted = itertools.cycle(limits)
    for start, end in itertools.pairwise(cuts):
        reader.feed(data[start:end])
        while (reply := reader.next_reply()) is not None:
            count = reader.repeats(reply, next(wanted))
            reader.skip(reply, count)
            taken += [reply] * (count + 1)
    assert taken == one_by_one
    assert reader.buffered == 0
    assert b"".join(reply.raw for reply in taken) == data
