"""AUTH through the connection: initial responses, challenges, failures and the TLS rule."""

from __future__ import annotations

import base64
from typing import ClassVar

import pytest
from transcript import Step, events_of, play, play_every_way

from smtp_proto import (
    AuthFailed,
    AuthSucceeded,
    ClientConnection,
    InsecureAuthenticationError,
    Limits,
    LocalProtocolError,
    Login,
    Mechanism,
    Plain,
    RemoteProtocolError,
    SaslError,
    ScramSha256,
    ServerCapabilityError,
    State,
    XOAuth2,
)

GREETING = b"220 mx.example.org ESMTP\r\n"
EHLO = (
    b"250-mx.example.org\r\n250-PIPELINING\r\n"
    b"250 AUTH PLAIN LOGIN SCRAM-SHA-256 XOAUTH2 X-CUSTOM\r\n"
)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def ready(**options: object) -> list[Step]:
    return [GREETING, lambda c: c.ehlo("client.example"), EHLO]


def test_plain_with_initial_response_over_tls() -> None:
    outcome = play_every_way(
        [*ready(), lambda c: c.auth(Plain("alice", "s3cret")), b"235 2.7.0 ok\r\n"], tls_active=True
    )
    assert outcome.sent.endswith(b"AUTH PLAIN " + b64(b"\0alice\0s3cret") + b"\r\n")
    event = outcome.events[-1]
    assert isinstance(event, AuthSucceeded)
    assert event.mechanism == "PLAIN"
    assert event.reply.raw == b"235 2.7.0 ok\r\n"
    assert outcome.connection.authenticated
    with pytest.raises(LocalProtocolError, match="already authenticated"):
        outcome.connection.auth(Plain("alice", "s3cret"))


def test_secrets_are_refused_in_plain_text() -> None:
    conn = play(ready()).connection
    with pytest.raises(InsecureAuthenticationError):
        conn.auth(Plain("alice", "s3cret"))
    assert conn.data_to_send() == b""
    assert conn.state is State.READY  # not poisoned: another mechanism may be tried
    conn.auth(ScramSha256("alice", "s3cret", nonce="abc"))  # sends no reusable secret
    assert conn.data_to_send().startswith(b"AUTH SCRAM-SHA-256 ")


@pytest.mark.parametrize("options", [{"peer_is_loopback": True}, {"tls_active": True}])
def test_secrets_are_allowed_on_loopback_or_tls(options: dict[str, bool]) -> None:
    conn = play(ready(), "whole", **options).connection
    conn.auth(Plain("alice", "s3cret"))
    assert conn.data_to_send().startswith(b"AUTH PLAIN ")


def test_secrets_in_plain_text_on_explicit_request() -> None:
    conn = play(ready()).connection
    conn.auth(Plain("alice", "s3cret"), allow_without_tls=True)
    assert conn.data_to_send().startswith(b"AUTH PLAIN ")


def test_login_answers_challenges() -> None:
    outcome = play_every_way(
        [
            *ready(),
            lambda c: c.auth(Login("alice", "s3cret")),
            b"334 " + b64(b"Username:") + b"\r\n",
            b"334 " + b64(b"Password:") + b"\r\n",
            b"235 ok\r\n",
        ],
        tls_active=True,
    )
    assert outcome.sent.endswith(
        b"AUTH LOGIN\r\n" + b64(b"alice") + b"\r\n" + b64(b"s3cret") + b"\r\n"
    )
    assert events_of(outcome)[-1] == "AuthSucceeded"


def test_failure_is_typed() -> None:
    for code in (b"535 5.7.8", b"534 5.7.9", b"538 5.7.11", b"454 4.7.0"):
        outcome = play(
            [*ready(), lambda c: c.auth(Plain("a", "b")), code + b" no\r\n"], tls_active=True
        )
        failed = outcome.events[-1]
        assert isinstance(failed, AuthFailed)
        assert failed.mechanism == "PLAIN"
        assert failed.reason is None
        assert failed.reply.code == int(code[:3])
        assert outcome.connection.authenticated is False
        assert outcome.connection.state is State.READY


def test_invalid_base64_is_cancelled_and_reported() -> None:
    outcome = play_every_way(
        [
            *ready(),
            lambda c: c.auth(Login("alice", "s3cret")),
            b"334 not*base64!\r\n",
            b"501 5.5.2 cancelled\r\n",
        ],
        tls_active=True,
    )
    assert outcome.sent.endswith(b"AUTH LOGIN\r\n*\r\n")
    failed = outcome.events[-1]
    assert isinstance(failed, AuthFailed)
    assert failed.reason == "the server's challenge is not valid base64"


def test_multiline_challenge_is_cancelled() -> None:
    outcome = play(
        [*ready(), lambda c: c.auth(Login("a", "b")), b"334-YQ==\r\n334 Yg==\r\n", b"501 no\r\n"],
        tls_active=True,
    )
    assert outcome.sent.endswith(b"*\r\n")


def test_endless_challenges_are_bounded() -> None:
    class Echo(Mechanism):
        name: ClassVar[str] = "X-CUSTOM"
        sends_secret: ClassVar[bool] = False

        def initial_response(self) -> bytes | None:
            return None

        def respond(self, challenge: bytes) -> bytes:
            return challenge

    challenge = b"334 " + b64(b"again") + b"\r\n"
    script: list[Step] = [*ready(), lambda c: c.auth(Echo())]
    script += [challenge] * 3 + [b"535 enough\r\n"]
    outcome = play_every_way(script, limits=Limits(max_auth_rounds=2))
    assert outcome.sent.endswith(b64(b"again") + b"\r\n" + b64(b"again") + b"\r\n*\r\n")
    failed = outcome.events[-1]
    assert isinstance(failed, AuthFailed)
    assert failed.reason == "too many challenges (Limits.max_auth_rounds)"


def test_a_challenge_after_cancelling_is_a_protocol_error() -> None:
    with pytest.raises(
        RemoteProtocolError, match=r"^the server sent a challenge after AUTH was cancelled$"
    ):
        play(
            [*ready(), lambda c: c.auth(Login("a", "b")), b"334 !!\r\n", b"334 YQ==\r\n"],
            tls_active=True,
        )


def test_a_mechanism_error_cancels() -> None:
    class Picky(Mechanism):
        name: ClassVar[str] = "X-CUSTOM"
        sends_secret: ClassVar[bool] = False

        def initial_response(self) -> bytes | None:
            return b""

        def respond(self, challenge: bytes) -> bytes:
            raise SaslError("unexpected challenge")

    outcome = play([*ready(), lambda c: c.auth(Picky()), b"334 YQ==\r\n", b"501 cancelled\r\n"])
    assert outcome.sent.endswith(b"AUTH X-CUSTOM =\r\n*\r\n")  # "=" is an empty initial response
    failed = outcome.events[-1]
    assert isinstance(failed, AuthFailed)
    assert failed.reason == "unexpected challenge"


def test_long_initial_response_waits_for_the_first_challenge() -> None:
    token = "t" * 600
    outcome = play(
        [*ready(), lambda c: c.auth(XOAuth2("alice", token)), b"334 \r\n", b"235 ok\r\n"],
        tls_active=True,
    )
    expected = b64(f"user=alice\x01auth=Bearer {token}\x01\x01".encode())
    assert b"AUTH XOAUTH2\r\n" + expected + b"\r\n" in outcome.sent
    assert events_of(outcome)[-1] == "AuthSucceeded"


def test_too_long_response_is_cancelled() -> None:
    outcome = play(
        [*ready(), lambda c: c.auth(XOAuth2("alice", "t" * 600)), b"334 \r\n", b"501 no\r\n"],
        tls_active=True,
        limits=Limits(max_auth_line_length=100),
    )
    assert outcome.sent.endswith(b"AUTH XOAUTH2\r\n*\r\n")
    failed = outcome.events[-1]
    assert isinstance(failed, AuthFailed)
    assert failed.reason == "the response is too long (Limits.max_auth_line_length)"


def test_a_response_exactly_at_the_line_limit_is_sent() -> None:
    token = "t" * 600
    response = b64(f"user=alice\x01auth=Bearer {token}\x01\x01".encode())
    outcome = play(
        [*ready(), lambda c: c.auth(XOAuth2("alice", token)), b"334 \r\n", b"235 ok\r\n"],
        tls_active=True,
        limits=Limits(max_auth_line_length=len(response)),
    )
    assert outcome.sent.endswith(b"AUTH XOAUTH2\r\n" + response + b"\r\n")
    assert events_of(outcome)[-1] == "AuthSucceeded"


def test_scram_end_to_end_and_a_server_that_cannot_prove_itself() -> None:
    # RFC 7677 section 3's exchange.
    server_first = (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    server_final = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

    def scram(c: ClientConnection) -> None:
        c.auth(ScramSha256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO"))

    outcome = play_every_way(
        [
            *ready(),
            scram,
            b"334 " + b64(server_first) + b"\r\n",
            b"334 " + b64(server_final) + b"\r\n",
            b"235 ok\r\n",
        ]
    )
    assert events_of(outcome)[-1] == "AuthSucceeded"
    assert outcome.sent.endswith(b"\r\n\r\n")  # the empty response after the verifier
    with pytest.raises(RemoteProtocolError, match="failed to authenticate itself"):
        play([*ready(), scram, b"334 " + b64(server_first) + b"\r\n", b"235 ok\r\n"])


def test_auth_needs_the_mechanism_announced() -> None:
    conn = play(ready(), tls_active=True).connection
    with pytest.raises(ServerCapabilityError):
        conn.auth(_named("CRAM-MD5"))
    assert conn.state is State.READY


def _named(name: str) -> Mechanism:
    class Named(Mechanism):
        sends_secret: ClassVar[bool] = False

        def initial_response(self) -> bytes | None:
            return None

        def respond(self, challenge: bytes) -> bytes:
            return b""

    Named.name = name
    return Named()


@pytest.mark.parametrize("name", ["lower", "SPACE NAME", "X" * 21, "AUTH\r\nRSET", ""])
def test_mechanism_names_are_checked(name: str) -> None:
    conn = play(ready()).connection
    with pytest.raises(ValueError, match="SASL mechanism name"):
        conn.auth(_named(name))
    assert conn.data_to_send() == b""


def test_auth_ends_a_pipelined_group() -> None:
    conn = play(ready(), tls_active=True).connection
    conn.auth(_named("X-CUSTOM"))
    with pytest.raises(LocalProtocolError, match="before the reply to AUTH"):
        conn.noop()


def test_secrets_never_appear_in_events_or_reprs() -> None:
    outcome = play(
        [*ready(), lambda c: c.auth(Plain("alice", "hunter2-secret")), b"535 5.7.8 bad\r\n"],
        tls_active=True,
    )
    assert "hunter2-secret" not in repr(outcome.events)
    assert "hunter2-secret" not in repr(Plain("alice", "hunter2-secret"))


def test_the_debug_log_never_holds_a_secret() -> None:
    conn = play(ready(), tls_active=True).connection
    conn.auth(Login("alice", "hunter2-secret"))
    data, log = conn.data_to_send_and_log()
    assert data == b"AUTH LOGIN\r\n"
    assert log == ("AUTH LOGIN",)
    conn.receive_data(b"334 " + b64(b"Username:") + b"\r\n334 " + b64(b"Password:") + b"\r\n")
    conn.next_event()
    data, log = conn.data_to_send_and_log()
    assert b64(b"hunter2-secret") in data
    assert log == ("[redacted]", "[redacted]")
    conn = play(ready(), tls_active=True).connection
    conn.auth(Plain("alice", "hunter2-secret"))
    data, log = conn.data_to_send_and_log()
    assert log == ("AUTH PLAIN [redacted]",)
    assert conn.data_to_send_and_log() == (b"", ())


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (b"PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256", "SCRAM-SHA-256"),
        (b"LOGIN PLAIN SCRAM-SHA-1", "SCRAM-SHA-1"),
        (b"LOGIN PLAIN CRAM-MD5", "CRAM-MD5"),
        (b"LOGIN PLAIN", "PLAIN"),
        (b"LOGIN", "LOGIN"),
    ],
)
def test_login_picks_the_strongest_common_mechanism(offered: bytes, chosen: str) -> None:
    ehlo = b"250-mx.example.org\r\n250 AUTH " + offered + b"\r\n"
    conn = play([GREETING, lambda c: c.ehlo("client.example"), ehlo], tls_active=True).connection
    assert conn.login("alice", "s3cret").name == chosen
    assert conn.data_to_send().startswith(b"AUTH " + chosen.encode())


def test_login_without_a_common_mechanism_or_without_tls() -> None:
    ehlo = b"250-mx.example.org\r\n250 AUTH GSSAPI\r\n"
    conn = play([GREETING, lambda c: c.ehlo("client.example"), ehlo], tls_active=True).connection
    with pytest.raises(
        ServerCapabilityError,
        match=r"^the server announced no password mechanism this client supports$",
    ) as caught:
        conn.login("alice", "s3cret")
    assert caught.value.extension == "AUTH"
    ehlo = b"250-mx.example.org\r\n250 AUTH PLAIN\r\n"
    conn = play([GREETING, lambda c: c.ehlo("client.example"), ehlo]).connection
    with pytest.raises(InsecureAuthenticationError):
        conn.login("alice", "s3cret")
    assert conn.data_to_send() == b""
    # As with auth(), plain text is allowed on explicit request.
    assert conn.login("alice", "s3cret", allow_without_tls=True).name == "PLAIN"
    assert conn.data_to_send().startswith(b"AUTH PLAIN ")


def test_login_before_ehlo_knows_no_mechanism() -> None:
    conn = ClientConnection(tls_active=True)
    with pytest.raises(ServerCapabilityError) as caught:
        conn.login("alice", "s3cret")
    assert caught.value.extension == "AUTH"


def test_success_after_a_cancelled_exchange_is_a_protocol_error() -> None:
    # RFC 4954 section 4: the server answers "*" with 501; a 235 would make the client
    # believe in a session it gave up on. Found by fuzz/fuzz_ehlo_auth.py.
    with pytest.raises(RemoteProtocolError, match="after the client cancelled"):
        play(
            [*ready(), lambda c: c.auth(Login("a", "b")), b"334 %%%\r\n", b"235 ok\r\n"],
            tls_active=True,
        )
