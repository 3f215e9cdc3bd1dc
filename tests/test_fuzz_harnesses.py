"""The fuzz harnesses' invariants hold on their corpus, and each harness can fail.

Every file under ``fuzz/corpus/<harness>/`` is run through the harness's ``check()``: the seed
inputs (``seed-*``, written by ``fuzz/make_corpus.py``) and every input that once found a bug
(``regression-*``). Neither needs atheris. A harness whose invariants could never fail would
prove nothing, so each is also run against a deliberately broken engine part.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import smtp_proto
from smtp_proto import LocalProtocolError, State, _ehlo
from smtp_proto._data import DataWriter, LineEndingNormalizer
from smtp_proto._replies import ReplyReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))

import fuzz_connection
import fuzz_data
import fuzz_ehlo_auth
import fuzz_replies
import make_corpus

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES: dict[str, ModuleType] = {
    "fuzz_connection": fuzz_connection,
    "fuzz_data": fuzz_data,
    "fuzz_ehlo_auth": fuzz_ehlo_auth,
    "fuzz_replies": fuzz_replies,
}
SEEDS: dict[str, Callable[[], dict[str, bytes]]] = {
    "fuzz_connection": make_corpus.connection_seeds,
    "fuzz_data": make_corpus.data_seeds,
    "fuzz_ehlo_auth": make_corpus.ehlo_auth_seeds,
    "fuzz_replies": make_corpus.replies_seeds,
}

CORPUS = [
    pytest.param(name, path, id=f"{name}/{path.name}")
    for name in HARNESSES
    for path in sorted((FUZZ / "corpus" / name).iterdir())
]


@pytest.mark.parametrize(("harness", "path"), CORPUS)
def test_corpus_input_passes(harness: str, path: Path) -> None:
    HARNESSES[harness].check(path.read_bytes())


@pytest.mark.parametrize("harness", sorted(SEEDS))
def test_seed_files_are_what_make_corpus_writes(harness: str) -> None:
    directory = FUZZ / "corpus" / harness
    on_disk = {p.name: p.read_bytes() for p in directory.glob("seed-*")}
    assert on_disk == {f"seed-{name}": data for name, data in SEEDS[harness]().items()}


def test_every_harness_has_seeds() -> None:
    for name in HARNESSES:
        assert list((FUZZ / "corpus" / name).glob("seed-*")), name


# -- findings ------------------------------------------------------------------------------


def test_every_finding_is_fixed() -> None:
    # A harness may tolerate an engine finding (KNOWN_FINDINGS) so that fuzzing goes on
    # past it while it is open. Every finding so far is fixed: their inputs stay in the
    # corpus as regression-* files, which must pass like every other input.
    for module in (fuzz_connection, fuzz_ehlo_auth):
        assert frozenset() == module.KNOWN_FINDINGS, module.__name__
    regressions = [
        path.name for name in HARNESSES for path in (FUZZ / "corpus" / name).glob("regression-*")
    ]
    assert len(regressions) >= 5


# -- the seeds reach what they were written for -----------------------------------------------


@pytest.mark.parametrize(
    ("seed", "error", "state", "outcomes"),
    [
        ("postfix-session", None, State.CLOSED, []),
        ("close-after-final-dot", None, State.CLOSED, ["delivery-unknown"]),
        ("exim-bdat-transaction", None, State.CLOSED, ["accepted"]),
        ("gmail-starttls-xoauth2", None, State.CLOSED, ["accepted"]),
        ("lmtp-per-recipient", None, State.CLOSED, ["partially-accepted"]),
        ("smuggling-transaction", None, State.READY, ["accepted", "accepted"]),
        ("starttls-injection-same-read", "STARTTLS", State.ERROR, []),
        ("starttls-injection-next-read", "STARTTLS", State.ERROR, []),
        ("small-limits-long-line", "max_reply_line_length", State.ERROR, []),
    ],
)
def test_connection_seed_reaches_its_target(
    seed: str, error: str | None, state: State, outcomes: list[str]
) -> None:
    trace = fuzz_connection.play(make_corpus.connection_seeds()[seed])
    if error is None:
        assert trace.error is None
    else:
        assert trace.error is not None
        assert error in trace.error
    assert trace.state is state
    assert [r.outcome.value for r in trace.results if r is not None] == outcomes


def test_connection_parse_and_encode_agree() -> None:
    actions = [("hello", 0), ("send_message", 13), ("close", 0)]
    data = fuzz_connection.encode(fuzz_connection.LMTP, actions, [b"220 a\r\n", b"", b"250 b"])
    script = fuzz_connection.parse(data)
    assert script.options == fuzz_connection.LMTP
    assert script.actions == actions
    assert script.segments == [b"220 a\r\n", b"", b"250 b"]


def test_short_inputs_are_sessions_too() -> None:
    for data in (b"", b"\x00", b"\x3f", b"\x00\xff", b"\x20\x01\x11"):
        fuzz_connection.check(data)
        fuzz_data.check(data)
        fuzz_ehlo_auth.check(data)


# -- each harness can fail --------------------------------------------------------------------

POSTFIX = make_corpus.connection_seeds()["postfix-session"]


def test_connection_harness_detects_an_unbounded_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    def feed(self: ReplyReader, data: bytes) -> None:
        self._buffer += data  # no limit

    monkeypatch.setattr(ReplyReader, "feed", feed)
    big = fuzz_connection.encode(fuzz_connection.SMALL_LIMITS, [], [b"2" * 5000])
    with pytest.raises(AssertionError):
        fuzz_connection.check(big)


def test_connection_harness_detects_an_exception_other_than_remote_protocol_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = ReplyReader._add_line

    def add_line(self: ReplyReader, raw_line: bytes) -> smtp_proto.Reply | None:
        if raw_line.startswith(b"354"):
            raise ValueError("a parser bug")
        return original(self, raw_line)

    monkeypatch.setattr(ReplyReader, "_add_line", add_line)
    with pytest.raises(AssertionError, match="ValueError"):
        fuzz_connection.check(POSTFIX)


def test_connection_harness_detects_a_chunking_dependent_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = ReplyReader.feed

    def feed(self: ReplyReader, data: bytes) -> None:
        # Loses a CR that ends a read: only feeding in pieces shows it.
        original(self, data[:-1] if len(data) == 1 and data == b"\r" else data)

    monkeypatch.setattr(ReplyReader, "feed", feed)
    with pytest.raises(AssertionError):
        fuzz_connection.check(POSTFIX)


def test_connection_harness_detects_a_local_protocol_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The scripted client only sends RCPT when the session permits it; an engine that
    # refuses it anyway is caught.
    def rcpt(self: smtp_proto.ClientConnection, *args: object, **kwargs: object) -> None:
        raise LocalProtocolError("refused")

    monkeypatch.setattr(smtp_proto.ClientConnection, "rcpt", rcpt)
    with pytest.raises(AssertionError, match="LocalProtocolError"):
        fuzz_connection.check(POSTFIX)


def test_connection_harness_detects_bytes_written_after_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fuzz_connection, "KNOWN_FINDINGS", frozenset())
    original = smtp_proto.ClientConnection.next_event

    def next_event(self: smtp_proto.ClientConnection) -> object:
        try:
            return original(self)
        except smtp_proto.RemoteProtocolError:
            self._write(b"QUIT\r\n")
            raise

    monkeypatch.setattr(smtp_proto.ClientConnection, "next_event", next_event)
    injected = make_corpus.connection_seeds()["small-limits-long-line"]
    with pytest.raises(AssertionError, match="left to send"):
        fuzz_connection.check(injected)


def test_data_harness_detects_a_missed_bare_lf(monkeypatch: pytest.MonkeyPatch) -> None:
    def feed(self: LineEndingNormalizer, chunk: bytes) -> bytes:
        if b"\x00" in bytes(chunk):
            raise ValueError("NUL")
        return bytes(chunk).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # bare CR kept

    monkeypatch.setattr(LineEndingNormalizer, "feed", feed)
    with pytest.raises(AssertionError):
        fuzz_data.check(fuzz_data.encode(0, b"a\r.\rb"))


def test_data_harness_detects_stuffing_lost_at_a_chunk_boundary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = DataWriter.feed

    def feed(self: DataWriter, chunk: bytes) -> bytes:
        self._at_line_start = False  # forgets that the previous chunk ended a line
        return original(self, chunk)

    monkeypatch.setattr(DataWriter, "feed", feed)
    with pytest.raises(AssertionError):
        fuzz_data.check(fuzz_data.encode(0, b"a\r\n.\r\nb", [96]))


def test_data_harness_detects_a_writer_taking_nul(monkeypatch: pytest.MonkeyPatch) -> None:
    def feed(self: LineEndingNormalizer, chunk: bytes) -> bytes:
        return bytes(chunk)

    monkeypatch.setattr(LineEndingNormalizer, "feed", feed)
    with pytest.raises(AssertionError, match="NUL"):
        fuzz_data.check(fuzz_data.encode(0, b"a\x00b"))


def test_ehlo_harness_detects_a_lost_keyword(monkeypatch: pytest.MonkeyPatch) -> None:
    original = _ehlo.parse_ehlo

    def parse_ehlo(reply: smtp_proto.Reply, *, esmtp: bool) -> smtp_proto.EhloFeatures:
        features = original(reply, esmtp=esmtp)
        extensions = dict(features.extensions)
        extensions.pop("PIPELINING", None)
        return smtp_proto.EhloFeatures(
            reply=reply, esmtp=esmtp, server_name=features.server_name, extensions=extensions
        )

    monkeypatch.setattr(fuzz_ehlo_auth, "parse_ehlo", parse_ehlo)
    with pytest.raises(AssertionError):
        fuzz_ehlo_auth.check(make_corpus.ehlo_auth_seeds()["ehlo-postfix"])


def test_sasl_harness_detects_a_wrong_cram_md5_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp_proto.CramMD5, "respond", lambda self, challenge: b"user 00")
    with pytest.raises(AssertionError):
        fuzz_ehlo_auth.check(make_corpus.ehlo_auth_seeds()["sasl-cram-md5"])


def test_sasl_harness_detects_a_secret_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def respond(self: smtp_proto.Login, challenge: bytes) -> bytes:
        raise smtp_proto.SaslError(f"bad prompt for {fuzz_ehlo_auth.PASSWORD}")

    monkeypatch.setattr(smtp_proto.Login, "respond", respond)
    with pytest.raises(AssertionError):
        fuzz_ehlo_auth.check(make_corpus.ehlo_auth_seeds()["sasl-login-prompts"])


def test_sasl_harness_detects_scram_accepting_any_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(smtp_proto.ScramSha1, "_verify_server_final", lambda self, final: None)
    with pytest.raises(AssertionError):
        fuzz_ehlo_auth.check(make_corpus.ehlo_auth_seeds()["sasl-scram-corrupt"])


def test_auth_harness_detects_answers_after_cancelling(monkeypatch: pytest.MonkeyPatch) -> None:
    def cancel(self: smtp_proto.ClientConnection, exchange: object, reason: str) -> None:
        self._write(b"*\r\n")
        self._write(b"dXNlcg==\r\n")

    monkeypatch.setattr(smtp_proto.ClientConnection, "_cancel_auth", cancel)
    with pytest.raises(AssertionError):
        fuzz_ehlo_auth.check(make_corpus.ehlo_auth_seeds()["auth-not-base64"])
