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

import fuzz_batch
import fuzz_connection
import fuzz_data
import fuzz_ehlo_auth
import fuzz_replies
import make_corpus

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES: dict[str, ModuleType] = {
    "fuzz_batch": fuzz_batch,
    "fuzz_connection": fuzz_connection,
    "fuzz_data": fuzz_data,
    "fuzz_ehlo_auth": fuzz_ehlo_auth,
    "fuzz_replies": fuzz_replies,
}
SEEDS: dict[str, Callable[[], dict[str, bytes]]] = {
    "fuzz_batch": make_corpus.batch_seeds,
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
        fuzz_batch.check(data)


@pytest.mark.parametrize(
    ("seed", "error", "state", "outcomes"),
    [
        ("pipelined-data", None, State.READY, ["accepted"] * 4),
        ("chunking-content-with-envelope", None, State.READY, ["accepted"] * 4),
        ("lmtp-refused-recipient-and-delivery", None, State.READY, ["partially-accepted"] * 2),
        ("small-flight-long-envelopes", None, State.READY, ["accepted"] * 3),
        ("refused-recipients", None, State.READY, ["accepted", "rejected", "accepted"]),
        ("size-refused-before", None, State.READY, ["accepted"]),
        ("421-after-mail", None, State.CLOSED, ["failed", "failed"]),
        ("close-after-dot", None, State.CLOSED, ["delivery-unknown", "failed"]),
        ("refused-sender-then-354", None, State.READY, ["rejected"]),
        ("equal-replies-in-pieces", None, State.READY, ["accepted"]),
    ],
)
def test_batch_seed_reaches_its_target(
    seed: str, error: str | None, state: State, outcomes: list[str]
) -> None:
    end = fuzz_batch.play(fuzz_batch.parse(make_corpus.batch_seeds()[seed]))
    assert end.error == error
    assert end.state is state
    assert end.results is not None
    assert [r.outcome.value for r in end.results] == outcomes


def test_batch_parse_and_encode_agree() -> None:
    data = fuzz_batch.encode(fuzz_batch.LMTP | 1, [0x00, 0x67], [b"250 a\r\n", b"", b"354"])
    batch = fuzz_batch.parse(data)
    assert batch.options == fuzz_batch.LMTP | 1
    assert batch.messages == [
        fuzz_batch.Message(
            recipients=("bob@example.com",),
            body=fuzz_batch.BODIES[0],
            pipelined=False,
            chunk_size=fuzz_batch.CHUNK_SIZES[0],
        ),
        fuzz_batch.Message(
            recipients=fuzz_batch.RECIPIENTS,
            body=fuzz_batch.BODIES[1],
            pipelined=True,
            chunk_size=fuzz_batch.CHUNK_SIZES[1],
        ),
    ]
    assert batch.pieces == [b"250 a\r\n", b"", b"354"]


# -- each harness can fail --------------------------------------------------------------------

POSTFIX = make_corpus.connection_seeds()["postfix-session"]
BATCH = make_corpus.batch_seeds()["pipelined-data"]


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


def test_batch_harness_detects_a_short_way_that_takes_too_much(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Taking a run of equal replies past the message's own RCPTs answers the wrong
    # commands. Here four recipients and their content, in chunks of three octets, go with
    # the envelope, and the server answers every command with the same line.
    alike = fuzz_batch.encode(1, [0x23], [b"250 ok\r\n" * 40])
    fuzz_batch.check(alike)
    original = ReplyReader.repeats

    def repeats(self: ReplyReader, reply: smtp_proto.Reply, limit: int) -> int:
        return original(self, reply, limit + 1)

    monkeypatch.setattr(ReplyReader, "repeats", repeats)
    monkeypatch.setattr(
        smtp_proto.ClientConnection, "_take_repeated_reply", _without_the_check_of_commands
    )
    with pytest.raises(AssertionError):
        fuzz_batch.check(alike)


def _without_the_check_of_commands(
    self: smtp_proto.ClientConnection, reply: smtp_proto.Reply, transaction: object, limit: int
) -> int:
    found = self._reader.repeats(reply, limit)
    for _ in range(found):
        self._pending.popleft()
    self._reader.skip(reply, found)
    return found


def test_batch_harness_detects_a_batch_that_never_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    # Replies that never reach their messages, and a close never seen: the batch would
    # read for ever.
    closing = make_corpus.batch_seeds()["close-after-dot"]
    original = smtp_proto.ClientConnection.receive_data

    def receive_data(self: smtp_proto.ClientConnection, data: bytes) -> None:
        if data:
            original(self, data)

    monkeypatch.setattr(smtp_proto.MailTransaction, "_on_event", lambda self, event: None)
    monkeypatch.setattr(
        smtp_proto.MailTransaction, "_on_recipient_reply", lambda *args, **kwargs: None
    )
    monkeypatch.setattr(smtp_proto.ClientConnection, "receive_data", receive_data)
    with pytest.raises(AssertionError, match="did not end"):
        fuzz_batch.check(closing)


def test_batch_harness_detects_a_refused_sender_reported_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def on_message_reply(
        self: smtp_proto.MailTransaction, reply: smtp_proto.Reply, *, accepted: bool
    ) -> None:
        # Takes the server's last word for it, whatever MAIL's reply was.
        self._finish(
            smtp_proto.MessageOutcome.ACCEPTED if accepted else smtp_proto.MessageOutcome.REJECTED
        )

    monkeypatch.setattr(smtp_proto.MailTransaction, "_on_message_reply", on_message_reply)
    regression = FUZZ / "corpus" / "fuzz_batch" / "regression-refused-sender-reported-accepted"
    with pytest.raises(AssertionError, match=r"outcome=<MessageOutcome\.ACCEPTED"):
        fuzz_batch.check(regression.read_bytes())


def test_batch_harness_detects_a_local_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def start(self: object, *, session_ready: bool) -> None:
        raise LocalProtocolError("refused")

    monkeypatch.setattr(smtp_proto.MailTransaction, "_start", start)
    with pytest.raises(AssertionError, match="LocalProtocolError"):
        fuzz_batch.check(BATCH)
