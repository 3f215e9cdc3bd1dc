"""Tests for smtp_proto._sasl: the SASL mechanisms reproduce their RFCs' examples byte for
byte, refuse every malformed or unexpected challenge with SaslError, and never show a secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_proto import _sasl
from smtp_proto._sasl import (
    MAX_SCRAM_ITERATIONS,
    CramMD5,
    External,
    Login,
    Mechanism,
    OAuthBearer,
    Plain,
    SaslError,
    ScramSha1,
    ScramSha256,
    XOAuth2,
    choose_mechanism,
    password_mechanisms,
)

# A secret distinctive enough that finding it anywhere means it leaked.
SECRET = "Hunter2-s3cr3t-\u00e9\u00df"
# The same, usable as a bearer token (visible ASCII only).
TOKEN = "ya29.Hunter2-s3cr3t-t0ken"


def test_all_names_exist() -> None:
    assert set(_sasl.__all__) == {
        "MAX_SCRAM_ITERATIONS",
        "CramMD5",
        "External",
        "Login",
        "Mechanism",
        "OAuthBearer",
        "Plain",
        "SaslError",
        "ScramSha1",
        "ScramSha256",
        "XOAuth2",
        "choose_mechanism",
        "password_mechanisms",
    }
    for name in _sasl.__all__:
        assert hasattr(_sasl, name)


@pytest.mark.parametrize(
    ("mechanism", "name", "sends_secret"),
    [
        (Plain("u", "p"), "PLAIN", True),
        (Login("u", "p"), "LOGIN", True),
        (CramMD5("u", "p"), "CRAM-MD5", False),
        (XOAuth2("u", "t"), "XOAUTH2", True),
        (OAuthBearer("u", "t"), "OAUTHBEARER", True),
        (External(), "EXTERNAL", False),
        (ScramSha1("u", "p"), "SCRAM-SHA-1", False),
        (ScramSha256("u", "p"), "SCRAM-SHA-256", False),
    ],
)
def test_names_and_secrecy(mechanism: Mechanism, name: str, sends_secret: bool) -> None:
    assert mechanism.name == name
    assert mechanism.sends_secret is sends_secret


# ---------------------------------------------------------------------------------------
# The base class, as a user's own mechanism sees it


class Custom(Mechanism):
    __slots__ = ("_secret",)
    name = "X-CUSTOM"

    def __init__(self, secret: str) -> None:
        self._secret = secret


def test_base_class_defaults() -> None:
    mechanism = Custom(SECRET)
    assert mechanism.initial_response() is None
    with pytest.raises(SaslError, match="X-CUSTOM expects no challenge"):
        mechanism.respond(b"")
    mechanism.success()  # does nothing
    # Fails safe: a mechanism that does not say is taken to expose a secret.
    assert mechanism.sends_secret is True
    assert repr(mechanism) == "Custom()"
    assert not hasattr(mechanism, "__dict__")


# ---------------------------------------------------------------------------------------
# PLAIN (RFC 4616)


def test_plain_rfc4616_examples() -> None:
    # RFC 4616 section 4: without and with an authorization identity.
    assert Plain("tim", "tanstaaftanstaaf").initial_response() == b"\0tim\0tanstaaftanstaaf"
    plain = Plain("Kurt", "xipj3plmq", authzid="Ursel")
    assert plain.initial_response() == b"Ursel\0Kurt\0xipj3plmq"
    assert repr(plain) == "Plain(username='Kurt', authzid='Ursel')"


def test_plain_utf8() -> None:
    assert Plain("j\u00fcrgen", "p\u00e4ss").initial_response() == (b"\0j\xc3\xbcrgen\0p\xc3\xa4ss")


@pytest.mark.parametrize("field", ["username", "password", "authzid"])
def test_plain_refuses_nul(field: str) -> None:
    arguments = {"username": "u", "password": "p", "authzid": "a", field: "x\0y"}
    with pytest.raises(ValueError, match=f"{field} must not contain U\\+0000"):
        Plain(arguments["username"], arguments["password"], authzid=arguments["authzid"])


def test_plain_has_one_message() -> None:
    plain = Plain("u", "p")
    plain.initial_response()
    with pytest.raises(SaslError, match="PLAIN expects no challenge"):
        plain.respond(b"")


# ---------------------------------------------------------------------------------------
# LOGIN


@pytest.mark.parametrize(
    ("user_prompt", "password_prompt"),
    [
        (b"Username:", b"Password:"),
        (b"User Name\0", b"Password\0"),  # Microsoft's servers
        (b"username", b"password"),
        (b"USERNAME: ", b"PASSWORD : "),
        (b"User:", b"Password::"),
        # Unrecognised prompts are answered by position.
        (b"Benutzername:", b"Passwort:"),
        (b"", b""),
        (b"\xff\xfe", b"\x80"),
    ],
)
def test_login_prompts(user_prompt: bytes, password_prompt: bytes) -> None:
    login: Mechanism = Login("alice", "pencil")
    assert login.initial_response() is None
    assert login.respond(user_prompt) == b"alice"
    assert login.respond(password_prompt) == b"pencil"
    with pytest.raises(
        SaslError, match=r"^LOGIN expects two challenges, and the server sent a third$"
    ):
        login.respond(b"Password:")


def test_login_answers_recognised_prompts_in_any_order() -> None:
    login = Login("alice", "p\u00e4ss")
    assert login.respond(b"Password:") == b"p\xc3\xa4ss"
    assert login.respond(b"Username:") == b"alice"
    # Spaces inside a prompt do not matter either.
    login = Login("alice", "pencil")
    assert login.respond(b"Pass word:") == b"pencil"
    assert login.respond(b"User Name:") == b"alice"


def test_login_starts_afresh_with_each_exchange() -> None:
    login = Login("alice", "pencil")
    login.initial_response()
    login.respond(b"?")
    login.respond(b"?")
    login.initial_response()
    assert login.respond(b"?") == b"alice"


# ---------------------------------------------------------------------------------------
# CRAM-MD5 (RFC 2195)


def test_cram_md5_rfc2195_example() -> None:
    cram: Mechanism = CramMD5("tim", "tanstaaftanstaaf")
    assert cram.initial_response() is None
    response = cram.respond(b"<1896.697170952@postoffice.reston.mci.net>")
    assert response == b"tim b913a602c7eda7a495b4e6e7334d3890"
    with pytest.raises(
        SaslError, match=r"^CRAM-MD5 has one challenge, and the server sent another$"
    ):
        cram.respond(b"<1896.697170952@postoffice.reston.mci.net>")
    # A new exchange answers again.
    assert cram.initial_response() is None
    assert cram.respond(b"<1896.697170952@postoffice.reston.mci.net>") == response


def test_cram_md5_refuses_an_empty_challenge() -> None:
    with pytest.raises(SaslError, match=r"^the CRAM-MD5 challenge is empty$"):
        CramMD5("tim", "tanstaaftanstaaf").respond(b"")


# ---------------------------------------------------------------------------------------
# XOAUTH2


def test_xoauth2_message() -> None:
    xoauth2 = XOAuth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    response = xoauth2.initial_response()
    assert response == (
        b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
        b"\x01\x01"
    )
    # The example of Google's XOAUTH2 documentation, as the connection would encode it.
    assert base64.b64encode(response) == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNr"
        b"QmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )


def test_xoauth2_error_challenge() -> None:
    xoauth2 = XOAuth2("u@example.com", "token")
    with pytest.raises(SaslError, match="at most one challenge"):
        xoauth2.respond(b"{}")  # nothing was sent yet
    xoauth2.initial_response()
    assert xoauth2.respond(b'{"status":"401","schemes":"bearer","scope":"mail"}') == b""
    with pytest.raises(SaslError, match="XOAUTH2 expects at most one challenge"):
        xoauth2.respond(b"{}")


# ---------------------------------------------------------------------------------------
# OAUTHBEARER (RFC 7628)


def test_oauthbearer_rfc7628_example() -> None:
    # RFC 7628 section 4.1, the initial client response of the successful IMAP exchange.
    bearer = OAuthBearer(
        "user@example.com",
        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        host="server.example.com",
        port=143,
    )
    response = bearer.initial_response()
    assert response == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    assert base64.b64encode(response) == (
        b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVh"
        b"cmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
    )
    assert (
        repr(bearer)
        == "OAuthBearer(username='user@example.com', host='server.example.com', port=143)"
    )


@pytest.mark.parametrize(
    ("username", "host", "port", "expected"),
    [
        ("u@example.com", None, None, b"n,a=u@example.com,\x01auth=Bearer t\x01\x01"),
        ("u", "mx.example", None, b"n,a=u,\x01host=mx.example\x01auth=Bearer t\x01\x01"),
        ("u", None, 587, b"n,a=u,\x01port=587\x01auth=Bearer t\x01\x01"),
        # RFC 5801 section 4: saslname escapes "," as "=2C" and "=" as "=3D".
        ("a,b=c", None, None, b"n,a=a=2Cb=3Dc,\x01auth=Bearer t\x01\x01"),
        ("=2C", None, None, b"n,a==3D2C,\x01auth=Bearer t\x01\x01"),
        # No user name, no authorization identity.
        ("", None, None, b"n,,\x01auth=Bearer t\x01\x01"),
    ],
)
def test_oauthbearer_messages(
    username: str, host: str | None, port: int | None, expected: bytes
) -> None:
    assert OAuthBearer(username, "t", host=host, port=port).initial_response() == expected


def test_oauthbearer_error_challenge() -> None:
    bearer = OAuthBearer("u", "t")
    bearer.initial_response()
    # RFC 7628 section 3.2.3: the client answers the error with a single kvsep.
    assert bearer.respond(b'{"status":"invalid_token"}') == b"\x01"
    with pytest.raises(SaslError, match="OAUTHBEARER expects at most one challenge"):
        bearer.respond(b"{}")
    # A new exchange may take its own error challenge.
    bearer.initial_response()
    assert bearer.respond(b"{}") == b"\x01"


@pytest.mark.parametrize(
    ("host", "port", "error", "message"),
    [
        ("", None, ValueError, "^host is empty or contains a character other than visible ASCII$"),
        ("mx example", None, ValueError, "visible ASCII"),
        ("mx\x01", None, ValueError, "visible ASCII"),
        ("b\u00fccher.example", None, ValueError, "visible ASCII"),
        (b"mx", None, TypeError, "host must be a str"),
        (None, 0, ValueError, "between 1 and 65535"),
        (None, 65536, ValueError, "between 1 and 65535"),
        (None, True, TypeError, "port must be an int, not bool"),
        (None, "25", TypeError, "port must be an int, not str"),
    ],
)
def test_oauthbearer_refuses_bad_host_or_port(
    host: object, port: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        OAuthBearer("u", "t", host=host, port=port)  # type: ignore[arg-type]


@pytest.mark.parametrize("port", [1, 65535])
def test_oauthbearer_port_bounds_are_inclusive(port: int) -> None:
    bearer = OAuthBearer("u", "t", port=port)
    assert bearer.initial_response() == f"n,a=u,\x01port={port}\x01auth=Bearer t\x01\x01".encode()


def test_oauthbearer_repr_shows_host_and_port_only_when_given() -> None:
    assert repr(OAuthBearer("alice", "t")) == "OAuthBearer(username='alice')"
    assert (
        repr(OAuthBearer("alice", "t", host="mx.example", port=587))
        == "OAuthBearer(username='alice', host='mx.example', port=587)"
    )


# ---------------------------------------------------------------------------------------
# What XOAUTH2 and OAUTHBEARER share: tokens and their callables

OAUTH_CLASSES = [XOAuth2, OAuthBearer]


@pytest.mark.parametrize("cls", OAUTH_CLASSES)
def test_token_callable_is_called_once_per_exchange(cls: type[XOAuth2 | OAuthBearer]) -> None:
    tokens = iter(["first", "second"])
    calls: list[str] = []

    def token() -> str:
        calls.append("call")
        return next(tokens)

    mechanism = cls("u", token)
    assert calls == []  # not at construction: the token is fetched when it is needed
    first = mechanism.initial_response()
    assert calls == ["call"]
    assert first.endswith(b"auth=Bearer first\x01\x01")
    mechanism.respond(b"{}")
    assert calls == ["call"]
    # The next exchange, after a reconnect say, gets the refreshed token.
    assert mechanism.initial_response().endswith(b"auth=Bearer second\x01\x01")
    assert calls == ["call", "call"]


@pytest.mark.parametrize("cls", OAUTH_CLASSES)
@pytest.mark.parametrize("token", ["", "two words", "a\x01b", "tok\r\n", "t\u00f6ken"])
def test_tokens_must_be_visible_ascii(cls: type[XOAuth2 | OAuthBearer], token: str) -> None:
    with pytest.raises(ValueError, match="token is empty or contains") as caught:
        cls("u", token)
    assert token not in str(caught.value) or not token
    mechanism = cls("u", lambda: token)
    with pytest.raises(ValueError, match="the token the callable returned is empty"):
        mechanism.initial_response()


@pytest.mark.parametrize("cls", OAUTH_CLASSES)
def test_token_types(cls: type[XOAuth2 | OAuthBearer]) -> None:
    with pytest.raises(
        TypeError, match=r"^token must be a str or a callable returning one, not bytes$"
    ):
        cls("u", b"token")  # type: ignore[arg-type]
    mechanism = cls("u", lambda: b"token")  # type: ignore[arg-type,return-value]
    with pytest.raises(
        TypeError, match=r"^the token the callable returned must be a str, not bytes$"
    ):
        mechanism.initial_response()


@pytest.mark.parametrize("cls", OAUTH_CLASSES)
@pytest.mark.parametrize("username", ["a\x01b", "a\0b"])
def test_oauth_username_refuses_separators(cls: type[XOAuth2 | OAuthBearer], username: str) -> None:
    with pytest.raises(ValueError, match="username must not contain"):
        cls(username, "t")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Plain("XAVIER", "p", authzid="XENIA"),
        lambda: External("XENIA"),
        lambda: XOAuth2("XAVIER", "t"),
        lambda: OAuthBearer("XAVIER", "t"),
    ],
)
def test_only_the_separators_are_refused_in_names(make: Callable[[], Mechanism]) -> None:
    assert b"X" in (make().initial_response() or b"")


# ---------------------------------------------------------------------------------------
# EXTERNAL (RFC 4422 appendix A)


def test_external() -> None:
    external = External()
    assert external.initial_response() == b""
    assert repr(external) == "External()"
    # One unexpected challenge gets an empty answer, a second ends the exchange.
    assert external.respond(b"") == b""
    with pytest.raises(SaslError, match=r"^EXTERNAL expects no further challenge$"):
        external.respond(b"")
    external = External("postmaster@example.com")
    assert external.initial_response() == b"postmaster@example.com"
    assert repr(external) == "External(authzid='postmaster@example.com')"
    with pytest.raises(ValueError, match="authzid must not contain U\\+0000"):
        External("a\0b")


def test_external_starts_afresh_with_each_exchange() -> None:
    external = External()
    external.initial_response()
    external.respond(b"")
    external.initial_response()
    assert external.respond(b"") == b""


# ---------------------------------------------------------------------------------------
# SASLprep (RFC 4013)


@pytest.mark.parametrize(
    ("value", "prepared"),
    [
        # RFC 4013 section 3, examples 1 to 5.
        ("I\u00adX", "IX"),  # SOFT HYPHEN mapped to nothing
        ("user", "user"),
        ("USER", "USER"),  # case preserved
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # NFKC
        # Non-ASCII spaces become SPACE; ASCII space stays.
        ("a\u00a0b\u3000c d", "a b c d"),
        # OGHAM SPACE MARK, which NFKC alone would leave as it is.
        ("a\u1680b", "a b"),
        # Right-to-left text on its own, digits inside, is fine.
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628"),
        # An unassigned code point (in Unicode 3.2) is allowed in a query.
        ("pass\U0001f600", "pass\U0001f600"),
        ("", ""),
    ],
)
def test_saslprep(value: str, prepared: str) -> None:
    assert _sasl._saslprep(value, "username", secret=False) == prepared


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # RFC 4013 section 3, examples 6 and 7.
        ("\x07", "prohibited character .* U\\+0007 at index 0"),
        ("\u0627\x31", "must end right-to-left .* U\\+0031 at index 1"),
        ("1\u0627", "must start right-to-left .* U\\+0031 at index 0"),
        ("\u0627a\u0627", "mixed .* U\\+0061 at index 1"),
        ("a\0b", "prohibited character .* U\\+0000 at index 1"),
        ("\ue000", "prohibited"),  # private use, C.3
        ("\ufdd0", "prohibited"),  # non-character, C.4
        ("a\u200eb", "prohibited"),  # LEFT-TO-RIGHT MARK, C.8
        ("\U000e0001", "prohibited"),  # LANGUAGE TAG, C.9
        ("\u2ff0", "prohibited"),  # ideographic description, C.7
        ("\ufff9", "prohibited"),  # inappropriate for plain text, C.6
        ("\x85", "prohibited"),  # NEXT LINE, C.2.2
    ],
)
def test_saslprep_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"username is refused by SASLprep, .*{message}"):
        _sasl._saslprep(value, "username", secret=False)


@pytest.mark.parametrize("value", ["x\x07y", "\u0627x\u0627", "x\u0627", "\u0627x"])
def test_saslprep_does_not_say_which_character_of_a_secret(value: str) -> None:
    with pytest.raises(ValueError, match=r"^password is refused by SASLprep, [^:]*\)$"):
        _sasl._saslprep(value, "password", secret=True)


@pytest.mark.parametrize(
    ("value", "rule", "where"),
    [
        ("\x07", "a prohibited character (RFC 4013 section 2.3)", "U+0007 at index 0"),
        (
            "\u0627\x31",
            "right-to-left text must end right-to-left (RFC 3454 section 6)",
            "U+0031 at index 1",
        ),
        (
            "1\u0627",
            "right-to-left text must start right-to-left (RFC 3454 section 6)",
            "U+0031 at index 0",
        ),
        (
            "\u0627a\u0627",
            "left-to-right and right-to-left text mixed (RFC 3454 section 6)",
            "U+0061 at index 1",
        ),
    ],
)
def test_saslprep_messages(value: str, rule: str, where: str) -> None:
    message = f"username is refused by SASLprep, {rule}: {where}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        _sasl._saslprep(value, "username", secret=False)
    message = f"password is refused by SASLprep, {rule}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        _sasl._saslprep(value, "password", secret=True)


# ---------------------------------------------------------------------------------------
# SCRAM (RFC 5802, RFC 7677)

SCRAM_CLASSES = [ScramSha1, ScramSha256]

# RFC 5802 section 5, SCRAM-SHA-1.
SHA1_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
SHA1_SERVER_FIRST = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
SHA1_CLIENT_FINAL = (
    b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
)
SHA1_SERVER_FINAL = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

# RFC 7677 section 3, SCRAM-SHA-256.
SHA256_NONCE = "rOprNGfwEbeRWgbNEkqO"
SHA256_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
SHA256_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SHA256_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_sha1_rfc5802_example() -> None:
    scram = ScramSha1("user", "pencil", nonce=SHA1_NONCE)
    assert scram.initial_response() == b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
    assert scram.respond(SHA1_SERVER_FIRST) == SHA1_CLIENT_FINAL
    assert scram.respond(SHA1_SERVER_FINAL) == b""
    scram.success()


def test_scram_sha256_rfc7677_example() -> None:
    scram = ScramSha256("user", "pencil", nonce=SHA256_NONCE)
    assert scram.initial_response() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert scram.respond(SHA256_SERVER_FIRST) == SHA256_CLIENT_FINAL
    assert scram.respond(SHA256_SERVER_FINAL) == b""
    scram.success()


def test_scram_prepares_the_password() -> None:
    # SOFT HYPHEN is mapped to nothing, so this is "pencil" to the server.
    scram = ScramSha256("user", "pen\u00adcil", nonce=SHA256_NONCE)
    scram.initial_response()
    assert scram.respond(SHA256_SERVER_FIRST) == SHA256_CLIENT_FINAL


def test_scram_can_authenticate_again() -> None:
    scram = ScramSha1("user", "pencil", nonce=SHA1_NONCE)
    for _ in range(2):
        scram.initial_response()
        assert scram.respond(SHA1_SERVER_FIRST) == SHA1_CLIENT_FINAL
        scram.respond(SHA1_SERVER_FINAL)
        scram.success()


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        # RFC 5802 section 5.1: "=" and "," are escaped, after SASLprep.
        ("a=b,c", b"n,,n=a=3Db=2Cc,r=nonce"),
        ("=2C", b"n,,n==3D2C,r=nonce"),
        ("I\u00adX", b"n,,n=IX,r=nonce"),
        ("j\u00fcrgen", b"n,,n=j\xc3\xbcrgen,r=nonce"),
    ],
)
def test_scram_username(username: str, expected: bytes) -> None:
    assert ScramSha256(username, "p", nonce="nonce").initial_response() == expected


@pytest.mark.parametrize("cls", SCRAM_CLASSES)
def test_scram_draws_a_fresh_nonce_for_each_exchange(cls: type[ScramSha1 | ScramSha256]) -> None:
    scram = cls("user", "pencil")
    nonces = set()
    for _ in range(3):
        first = scram.initial_response()
        # 192 random bits, in 32 printable characters.
        match = re.fullmatch(rb"n,,n=user,r=([\x21-\x2b\x2d-\x7e]{32})", first)
        assert match is not None
        nonces.add(match[1])
    assert len(nonces) == 3


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (
            {"username": ""},
            ValueError,
            r"^username is empty after SASLprep \(RFC 5802 section 5\.1\)$",
        ),
        ({"username": "\u00ad"}, ValueError, "username is empty after SASLprep"),
        (
            {"username": "a\x07"},
            ValueError,
            (
                r"^username is refused by SASLprep, a prohibited character "
                r"\(RFC 4013 section 2\.3\): U\+0007 at index 1$"
            ),
        ),
        # The password's offending character is not shown.
        (
            {"password": "a\x07"},
            ValueError,
            r"^password is refused by SASLprep, a prohibited character \(RFC 4013 section 2\.3\)$",
        ),
        ({"nonce": ""}, ValueError, "nonce is empty"),
        ({"nonce": "a,b"}, ValueError, "nonce is empty or contains"),
        (
            {"nonce": "a b"},
            ValueError,
            "^nonce is empty or contains a character other than visible ASCII$",
        ),
        ({"nonce": 5}, TypeError, "^nonce must be a str, not int$"),
        ({"max_iterations": 0}, ValueError, "max_iterations must be at least 1"),
        ({"max_iterations": True}, TypeError, "max_iterations must be an int"),
        ({"max_iterations": 1.5}, TypeError, "^max_iterations must be an int, not float$"),
        ({"username": 5}, TypeError, "^username must be a str, not int$"),
        ({"password": 5}, TypeError, "^password must be a str, not int$"),
    ],
)
@pytest.mark.parametrize("cls", SCRAM_CLASSES)
def test_scram_refuses_bad_arguments(
    cls: type[ScramSha1 | ScramSha256],
    arguments: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    full: dict[str, object] = {"username": "user", "password": "pencil", **arguments}
    with pytest.raises(error, match=message):
        cls(**full)  # type: ignore[arg-type]


def sha1_scram(**arguments: int) -> ScramSha1:
    """A SCRAM-SHA-1 mechanism of the RFC 5802 example that has sent its first message."""
    scram = ScramSha1("user", "pencil", nonce=SHA1_NONCE, **arguments)
    scram.initial_response()
    return scram


@pytest.mark.parametrize(
    ("server_first", "message"),
    [
        (b"", "malformed attribute"),
        (b"\xff", "not UTF-8"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096,", "malformed attribute"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=40\x0096", "malformed attribute"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=,i=4096", "malformed attribute"),
        (b"rr=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096", "malformed attribute"),
        # A mandatory extension this client cannot know (RFC 5802 section 5.1).
        (b"m=ext,r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096", "m="),
        # Missing or misordered attributes.
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92", "must begin with r=, s= and i="),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,i=4096", "must begin with r=, s= and i="),
        (b"s=QSXCR+Q6sek8bf92,i=4096", "must begin with r=, s= and i="),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,i=4096,s=QSXCR+Q6sek8bf92", "must begin with r="),
        (b"s=QSXCR+Q6sek8bf92,r=fyko+d2lbbFgONRv9qkxdawLxyz,i=4096", "must begin with r="),
        # The nonce.
        (b"r=AAAA+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096", "does not begin with"),
        (b"r=xyzfyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096", "does not begin with"),
        (b"r=fyko+d2lbbFgONRv9qkxd,s=QSXCR+Q6sek8bf92,i=4096", "does not begin with"),
        (b"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096", "added nothing"),
        (b"r=fyko+d2lbbFgONRv9qkxdawL x,s=QSXCR+Q6sek8bf92,i=4096", "nonce contains"),
        ("r=fyko+d2lbbFgONRv9qkxdawL\u00e9,s=QSXCR+Q6sek8bf92,i=4096".encode(), "nonce contains"),
        # The salt.
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf9,i=4096", "salt is not valid base64"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf9!,i=4096", "salt"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXC=+Q6sek8bf92,i=4096", "salt"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR-Q6sek8bf92,i=4096", "salt"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92==,i=4096", "salt"),
        # The iteration count.
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=0", "iteration count is not"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=04096", "iteration count"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=-1", "iteration count"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096a", "iteration count"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i= 4096", "iteration count"),
        ("r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=\u0664".encode(), "iteration"),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=12345678901", "iteration count"),
        (
            b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=9999999999",
            "asks for 9999999999 iterations, more than the limit of 10000000",
        ),
        (
            b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=10000001",
            "more than the limit",
        ),
    ],
)
def test_scram_refuses_bad_server_first(server_first: bytes, message: str) -> None:
    scram = sha1_scram()
    with pytest.raises(SaslError, match=re.escape(message)):
        scram.respond(server_first)
    # The exchange is over: no later challenge or 235 can revive it.
    with pytest.raises(SaslError, match="expected no challenge"):
        scram.respond(SHA1_SERVER_FIRST)
    with pytest.raises(SaslError, match="without proving"):
        scram.success()


@pytest.mark.parametrize(
    ("server_first", "message"),
    [
        (b"\xff", "the server-first-message is not UTF-8 (RFC 5802 section 7)"),
        (
            b"m=ext,r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096",
            "the server requires a SCRAM extension (m=) this client lacks",
        ),
        (
            b"r=fyko+d2lbbFgONRv9qkxdawLxyz,i=4096",
            "the server-first-message must begin with r=, s= and i=",
        ),
        (
            b"r=AAAA+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=4096",
            "the server's nonce does not begin with the client's",
        ),
        (
            b"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",
            "the server added nothing to the client's nonce",
        ),
        (
            b"r=fyko+d2lbbFgONRv9qkxdawL x,s=QSXCR+Q6sek8bf92,i=4096",
            "the server's nonce contains a character that is not allowed",
        ),
        (b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf9,i=4096", "the salt is not valid base64"),
        (
            b"r=fyko+d2lbbFgONRv9qkxdawLxyz,s=QSXCR+Q6sek8bf92,i=0",
            "the iteration count is not a positive number of at most 10 digits",
        ),
    ],
)
def test_scram_server_first_messages(server_first: bytes, message: str) -> None:
    with pytest.raises(SaslError) as caught:
        sha1_scram().respond(server_first)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("server_final", "message"),
    [
        (b"\xc3", "the server-final-message is not UTF-8 (RFC 5802 section 7)"),
        (b"x=rmF9pqV8S7suAoZWja4dJRkFsKQ=", "the server-final-message must begin with v= or e="),
        (
            b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "the server's signature is wrong: it does not know the password",
        ),
    ],
)
def test_scram_server_final_messages(server_final: bytes, message: str) -> None:
    scram = sha1_scram()
    scram.respond(SHA1_SERVER_FIRST)
    with pytest.raises(SaslError) as caught:
        scram.respond(server_final)
    assert str(caught.value) == message


def test_scram_iteration_limit_is_a_constructor_argument() -> None:
    assert MAX_SCRAM_ITERATIONS == 10_000_000
    # The smallest limit is one iteration.
    assert ScramSha1("user", "pencil", max_iterations=1).initial_response().startswith(b"n,,")
    scram = sha1_scram(max_iterations=4095)
    with pytest.raises(SaslError, match="4096 iterations, more than the limit of 4095"):
        scram.respond(SHA1_SERVER_FIRST)
    scram = sha1_scram(max_iterations=4096)
    assert scram.respond(SHA1_SERVER_FIRST) == SHA1_CLIENT_FINAL


def test_scram_ignores_extensions_it_does_not_know() -> None:
    # RFC 5802 section 7: unknown attributes after the known ones are ignored (but they are
    # part of AuthMessage, so the proof changes).
    scram = sha1_scram()
    response = scram.respond(SHA1_SERVER_FIRST + b",x=extension,y==")
    assert response.startswith(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=")
    assert response != SHA1_CLIENT_FINAL


def test_scram_salt_without_padding_bits() -> None:
    # Salts of every padding length decode.
    for salt in (b"QQ==", b"QUI=", b"QUJD"):
        scram = sha1_scram()
        scram.respond(b"r=fyko+d2lbbFgONRv9qkxdawLx,s=" + salt + b",i=1")


@pytest.mark.parametrize(
    ("server_final", "message"),
    [
        (b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "signature is wrong"),
        (b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ", "must begin with v= or e="),
        (b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=AAAA", "must begin with v= or e="),
        (b"v=cm1GOXBxVjhTN3N1QW9aV2phNGRKUmtGc0tRPQ==", "signature is wrong"),
        (b"v=", "malformed attribute"),
        (b"", "malformed attribute"),
        (b"\xc3", "not UTF-8"),
        (b"x=rmF9pqV8S7suAoZWja4dJRkFsKQ=", "must begin with v= or e="),
        (b"r=rmF9pqV8S7suAoZWja4dJRkFsKQ=", "must begin with v= or e="),
        (b"e=invalid-proof", "the server reports a SCRAM error: 'invalid-proof'"),
        (b"e=other-error,x=1", "the server reports a SCRAM error: 'other-error'"),
        (b"e=" + b"x" * 500, "SCRAM error: '" + "x" * 64 + "'"),
        # The signature of the SHA-256 example does not prove anything in a SHA-1 exchange.
        (SHA256_SERVER_FINAL, "signature is wrong"),
    ],
)
def test_scram_refuses_bad_server_final(server_final: bytes, message: str) -> None:
    scram = sha1_scram()
    scram.respond(SHA1_SERVER_FIRST)
    with pytest.raises(SaslError, match=re.escape(message)):
        scram.respond(server_final)
    with pytest.raises(SaslError, match="without proving"):
        scram.success()
    with pytest.raises(SaslError, match="expected no challenge"):
        scram.respond(SHA1_SERVER_FINAL)


def test_scram_server_final_may_carry_extensions() -> None:
    scram = sha1_scram()
    scram.respond(SHA1_SERVER_FIRST)
    assert scram.respond(SHA1_SERVER_FINAL + b",x=extension") == b""
    scram.success()


def test_scram_success_without_verification() -> None:
    scram = ScramSha1("user", "pencil", nonce=SHA1_NONCE)
    with pytest.raises(
        SaslError, match=r"^the server accepted without proving it knows the password$"
    ):
        scram.success()  # before anything
    scram.initial_response()
    with pytest.raises(SaslError, match="without proving"):
        scram.success()  # a 235 straight after AUTH
    scram.respond(SHA1_SERVER_FIRST)
    with pytest.raises(SaslError, match="without proving"):
        scram.success()  # a 235 in place of the server-final message


def test_scram_extra_rounds() -> None:
    scram = ScramSha1("user", "pencil", nonce=SHA1_NONCE)
    with pytest.raises(SaslError, match="SCRAM-SHA-1 expected no challenge now"):
        scram.respond(SHA1_SERVER_FIRST)  # before its first message
    scram.initial_response()
    scram.respond(SHA1_SERVER_FIRST)
    scram.respond(SHA1_SERVER_FINAL)
    with pytest.raises(SaslError, match="expected no challenge now"):
        scram.respond(b"")
    # An extra round after the signature is suspect: the 235 that follows is not trusted.
    with pytest.raises(SaslError, match="without proving"):
        scram.success()


def test_scram_new_exchange_forgets_the_old_signature() -> None:
    scram = sha1_scram()
    scram.respond(SHA1_SERVER_FIRST)
    scram.respond(SHA1_SERVER_FINAL)
    scram.initial_response()
    with pytest.raises(SaslError, match="without proving"):
        scram.success()


def scram_server(
    *,
    mechanism: ScramSha1 | ScramSha256,
    hash_name: str,
    username: str,
    password: str,
    salt: bytes,
    iterations: int,
    server_nonce: str,
) -> None:
    """Run one exchange against an independent SCRAM server written from RFC 5802 section 3,
    which checks the client's proof and sends its own signature."""
    first = mechanism.initial_response()
    match = re.fullmatch(rb"n,,(n=([^,]*),r=([^,]+))", first)
    assert match is not None
    client_first_bare, saslname, client_nonce = match[1], match[2], match[3]
    prepared_username = _sasl._saslprep(username, "username", secret=False)
    assert saslname.decode() == prepared_username.replace("=", "=3D").replace(",", "=2C")
    nonce = client_nonce + server_nonce.encode()
    server_first = b"r=%s,s=%s,i=%d" % (nonce, base64.b64encode(salt), iterations)

    final = mechanism.respond(server_first)
    match = re.fullmatch(rb"(c=biws,r=([^,]+)),p=([A-Za-z0-9+/=]+)", final)
    assert match is not None
    without_proof, echoed_nonce, proof = match[1], match[2], base64.b64decode(match[3])
    assert echoed_nonce == nonce

    prepared = _sasl._saslprep(password, "password", secret=True).encode()
    salted = hashlib.pbkdf2_hmac(hash_name, prepared, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    auth_message = b",".join([client_first_bare, server_first, without_proof])
    client_signature = hmac.digest(stored_key, auth_message, hash_name)
    recovered_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.new(hash_name, recovered_key).digest() == stored_key

    server_key = hmac.digest(salted, b"Server Key", hash_name)
    signature = hmac.digest(server_key, auth_message, hash_name)
    assert mechanism.respond(b"v=" + base64.b64encode(signature)) == b""
    mechanism.success()


# Characters SASLprep keeps: letters, digits, punctuation, "=" and "," among them.
PREPARABLE_TEXT = st.text(
    st.characters(categories=["L", "N", "P", "S", "Zs"], exclude_characters="\u0000"),
    min_size=1,
    max_size=12,
)


def preparable(value: str) -> bool:
    try:
        return _sasl._saslprep(value, "username", secret=False) != ""
    except ValueError:
        return False


@given(
    cls_and_hash=st.sampled_from([(ScramSha1, "sha1"), (ScramSha256, "sha256")]),
    username=PREPARABLE_TEXT.filter(preparable),
    password=PREPARABLE_TEXT.filter(preparable),
    salt=st.binary(min_size=1, max_size=20),
    iterations=st.integers(1, 50),
    server_nonce=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
        min_size=1,
        max_size=20,
    ),
)
def test_scram_against_a_server(
    *,
    cls_and_hash: tuple[type[ScramSha1 | ScramSha256], str],
    username: str,
    password: str,
    salt: bytes,
    iterations: int,
    server_nonce: str,
) -> None:
    cls, hash_name = cls_and_hash
    scram_server(
        mechanism=cls(username, password),
        hash_name=hash_name,
        username=username,
        password=password,
        salt=salt,
        iterations=iterations,
        server_nonce=server_nonce,
    )


# ---------------------------------------------------------------------------------------
# Every mechanism: hostile challenges give bytes or SaslError, nothing else

MECHANISM_FACTORIES: dict[str, Callable[[], Mechanism]] = {
    "PLAIN": lambda: Plain("u", "p"),
    "LOGIN": lambda: Login("u", "p"),
    "CRAM-MD5": lambda: CramMD5("u", "p"),
    "XOAUTH2": lambda: XOAuth2("u", "t"),
    "OAUTHBEARER": lambda: OAuthBearer("u", "t"),
    "EXTERNAL": External,
    "SCRAM-SHA-1": lambda: ScramSha1("u", "p", nonce="abc", max_iterations=64),
    "SCRAM-SHA-256": lambda: ScramSha256("u", "p", nonce="abc", max_iterations=64),
}

# Server-first messages that are nearly right for the nonce "abc", to reach deep into the
# SCRAM parser as well as its first check.
NEAR_SERVER_FIRST = st.builds(
    lambda nonce, salt, count, extra: f"r={nonce},s={salt},i={count}{extra}".encode(),
    st.sampled_from(["abc", "abcd", "ab", "xabc", "abc,d", "abc\u00e9"]),
    st.sampled_from(["QSXCR+Q6sek8bf92", "", "QQ==", "QQ=", "!!!!"]),
    st.sampled_from(["1", "0", "64", "65", "01", "x", "12345678901"]),
    st.sampled_from(["", ",x=y", ",", ",m=1", ",xx"]),
)

CHALLENGES = st.lists(
    st.one_of(st.binary(max_size=40), NEAR_SERVER_FIRST, st.sampled_from([b"", b"v=QQ=="])),
    max_size=5,
)


@given(name=st.sampled_from(sorted(MECHANISM_FACTORIES)), challenges=CHALLENGES)
def test_any_challenges_give_bytes_or_sasl_error(name: str, challenges: list[bytes]) -> None:
    mechanism = MECHANISM_FACTORIES[name]()
    mechanism.initial_response()
    for challenge in challenges:
        with contextlib.suppress(SaslError):
            assert isinstance(mechanism.respond(challenge), bytes)
    with contextlib.suppress(SaslError):
        mechanism.success()


@pytest.mark.parametrize("name", sorted(MECHANISM_FACTORIES))
def test_every_mechanism_ends_extra_rounds(name: str) -> None:
    # No mechanism answers challenges for ever: within four rounds each refuses one.
    mechanism = MECHANISM_FACTORIES[name]()
    mechanism.initial_response()
    with pytest.raises(SaslError):  # noqa: PT012 - the rounds before are part of the setup
        for _ in range(4):
            mechanism.respond(b"Password:")


# ---------------------------------------------------------------------------------------
# Secrets never show


def exchanged(mechanism: Mechanism) -> list[str]:
    """Take *mechanism* through an exchange as far as it goes; return the error messages."""
    errors: list[str] = []
    mechanism.initial_response()
    for challenge in (b"<1.2@example>", b"Password:", b"v=QQ==", b"{}"):
        try:
            mechanism.respond(challenge)
        except SaslError as error:
            errors.append(str(error))
    try:
        mechanism.success()
    except SaslError as error:
        errors.append(str(error))
    return errors


SECRET_HOLDERS: list[Callable[[], Mechanism]] = [
    lambda: Plain("alice", SECRET),
    lambda: Plain("alice", SECRET, authzid="bob"),
    lambda: Login("alice", SECRET),
    lambda: CramMD5("alice", SECRET),
    lambda: XOAuth2("alice", TOKEN),
    lambda: XOAuth2("alice", lambda: TOKEN),
    lambda: OAuthBearer("alice", TOKEN, host="mx.example", port=587),
    lambda: OAuthBearer("alice", lambda: TOKEN),
    lambda: ScramSha1("alice", SECRET),
    lambda: ScramSha256("alice", SECRET),
]


@pytest.mark.parametrize("factory", SECRET_HOLDERS)
def test_repr_never_shows_a_secret(factory: Callable[[], Mechanism]) -> None:
    mechanism = factory()
    before = [repr(mechanism), str(mechanism)]
    errors = exchanged(mechanism)
    assert errors  # every exchange above ends in an error of some kind
    for text in [*before, *errors, repr(mechanism), str(mechanism)]:
        assert SECRET not in text
        assert TOKEN not in text
        assert "Hunter2" not in text
    for text in [*before, repr(mechanism), str(mechanism)]:
        assert text.startswith(f"{type(mechanism).__name__}(username='alice'")


def test_repr_of_scram_after_a_full_exchange() -> None:
    scram = ScramSha256("user", "pencil", nonce=SHA256_NONCE)
    scram.initial_response()
    scram.respond(SHA256_SERVER_FIRST)
    scram.respond(SHA256_SERVER_FINAL)
    assert repr(scram) == "ScramSha256(username='user')"
    assert "pencil" not in repr(scram)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Plain("alice", SECRET + "\0"),
        lambda: Plain("alice", SECRET + "\ud800"),
        lambda: Login("alice", SECRET + "\udcff"),
        lambda: ScramSha256("alice", SECRET + "\x07"),
        lambda: ScramSha1("alice", "\u0627" + SECRET),
        lambda: XOAuth2("alice", TOKEN + " "),
        lambda: OAuthBearer("alice", TOKEN + "\x01"),
    ],
)
def test_argument_errors_never_show_a_secret(make: Callable[[], Mechanism]) -> None:
    with pytest.raises(ValueError, match=r"password|token") as caught:
        make()
    assert "Hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda value: Plain(value, "p"),
        lambda value: Plain("u", value),
        lambda value: Plain("u", "p", authzid=value),
        lambda value: Login(value, "p"),
        lambda value: Login("u", value),
        lambda value: CramMD5(value, "p"),
        lambda value: CramMD5("u", value),
        lambda value: XOAuth2(value, "t"),
        lambda value: OAuthBearer(value, "t"),
        External,
        lambda value: ScramSha1(value, "p"),
        lambda value: ScramSha1("u", value),
        lambda value: ScramSha256(value, "p"),
        lambda value: ScramSha256("u", value),
        lambda value: password_mechanisms(value, "p"),
        lambda value: password_mechanisms("u", value),
    ],
)
@pytest.mark.parametrize("value", [b"bytes", None, 5])
def test_text_arguments_must_be_str(make: Callable[[object], object], value: object) -> None:
    # The message names the argument and the type it got.
    with pytest.raises(
        TypeError, match=f"^(username|password|authzid) must be a str, not {type(value).__name__}$"
    ):
        make(value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Plain("a\ud800", "p"),
        lambda: CramMD5("u", "\udcff"),
        lambda: External("\ud800"),
        lambda: ScramSha256("\ud800", "p"),
    ],
)
def test_lone_surrogates_are_refused_at_once(make: Callable[[], Mechanism]) -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        make()


# ---------------------------------------------------------------------------------------
# Choosing a mechanism


def test_password_mechanisms_strongest_first() -> None:
    mechanisms = password_mechanisms("alice", "pencil")
    assert [m.name for m in mechanisms] == [
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
    ]
    assert all(repr(m).endswith("(username='alice')") for m in mechanisms)


def test_password_mechanisms_leave_out_scram_for_unpreparable_passwords() -> None:
    # SASLprep refuses BEL, so no SCRAM verifier can exist for this password.
    mechanisms = password_mechanisms("alice", "pen\x07cil")
    assert [m.name for m in mechanisms] == ["CRAM-MD5", "PLAIN", "LOGIN"]
    with pytest.raises(ValueError, match="password must not contain U\\+0000"):
        password_mechanisms("alice", "pen\0cil")


def test_choose_mechanism_follows_the_clients_order() -> None:
    candidates = password_mechanisms("alice", "pencil")
    chosen = choose_mechanism(["LOGIN", "PLAIN", "SCRAM-SHA-1"], candidates)
    assert chosen is candidates[1]
    assert choose_mechanism(["LOGIN", "PLAIN"], candidates) is candidates[3]
    assert choose_mechanism(["GSSAPI", "NTLM"], candidates) is None
    assert choose_mechanism([], candidates) is None
    assert choose_mechanism(["PLAIN"], []) is None


def test_choose_mechanism_ignores_case() -> None:
    candidates = password_mechanisms("alice", "pencil")
    assert choose_mechanism(["login", "cram-md5"], candidates) is candidates[2]
    assert choose_mechanism(iter(["Scram-Sha-256"]), candidates) is candidates[0]
    # Only ASCII case folds: a dotless i does not make "PLAIN".
    assert choose_mechanism(["pla\u0131n"], candidates) is None


def test_choose_mechanism_refuses_a_str() -> None:
    with pytest.raises(
        TypeError, match=r"^offered must be an iterable of names such as a list, not a str$"
    ):
        choose_mechanism("PLAIN LOGIN", password_mechanisms("alice", "pencil"))
