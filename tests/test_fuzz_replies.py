"""The fuzz harness's invariants hold on hand-picked inputs, and the harness can fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smtp_proto import Reply

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))

import fuzz_replies

SEEDS = [
    b"",
    b"220 mx.example.org ESMTP\r\n",
    b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n250 ok\r\n354 go\r\n",
    b"250 ok\n",
    b"250 a\rb\r\n",
    b"250-a\r\n251 b\r\n",
    b"250 " + b"x" * 200 + b"\r\n",
    b"250-x\r\n" * 9 + b"250 x\r\n",
    b"2" * 2000,
    b"250 \xff\xfe not utf-8\r\n",
    b"220 ok\r\n\x00",
]


@pytest.mark.parametrize("seed", SEEDS)
def test_invariants_hold(seed: bytes) -> None:
    fuzz_replies.check(seed)


def test_the_harness_detects_a_broken_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    # A reader that loses the raw bytes of replies must be caught by the invariants.
    original = fuzz_replies.read

    def lossy(data: bytes, cuts: list[int]) -> tuple[list[Reply], str | None]:
        replies, error = original(data, cuts)
        return [Reply(code=r.code, lines=r.lines, raw=b"x") for r in replies], error

    monkeypatch.setattr(fuzz_replies, "read", lossy)
    with pytest.raises(AssertionError):
        fuzz_replies.check(b"250 ok\r\n")
