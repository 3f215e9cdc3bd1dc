"""Coverage-guided fuzzing of the reply reader, with atheris.

    python fuzz/fuzz_replies.py [libFuzzer options, e.g. -max_total_time=60 corpus_dir]

Invariants checked on every input:

* the reader returns replies or raises RemoteProtocolError, and nothing else;
* feeding the bytes whole, one byte at a time, or cut at points derived from the input gives
  the same replies and the same outcome;
* every reply's raw bytes are exactly the input octets it was made from, in order;
* no more than the configured limits is ever buffered.
"""

from __future__ import annotations

import itertools

from _fuzzing import fuzz

from smtp_proto import Limits, RemoteProtocolError, Reply
from smtp_proto._replies import ReplyReader

LIMITS = Limits(
    max_reply_line_length=128, max_reply_lines=8, max_reply_size=512, max_receive_buffer=1024
)


def read(data: bytes, cuts: list[int]) -> tuple[list[Reply], str | None]:
    reader = ReplyReader(LIMITS)
    replies: list[Reply] = []
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    try:
        for start, end in itertools.pairwise(bounds):
            reader.feed(data[start:end])
            assert reader.buffered <= LIMITS.max_receive_buffer
            while (reply := reader.next_reply()) is not None:
                replies.append(reply)
    except RemoteProtocolError:
        return replies, "RemoteProtocolError"
    return replies, None


def check(data: bytes) -> None:
    """Run every invariant on one input; raise AssertionError if one fails."""
    whole = read(data, [])
    # The buffer limit is checked per feed, so splitting may only move where it trips;
    # below it, every way of feeding must agree exactly.
    if len(data) <= LIMITS.max_receive_buffer:
        assert read(data, list(range(1, len(data)))) == whole
        assert read(data, [b * 7 % (len(data) or 1) for b in data[:16]]) == whole
    replies, _ = whole
    consumed = b"".join(reply.raw for reply in replies)
    assert data.startswith(consumed)


if __name__ == "__main__":  # pragma: no cover
    fuzz(check)
