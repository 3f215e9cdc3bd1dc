"""Tests for smtp_proto._envelope: each envelope extension is used only when the server
announced it, a message the server cannot take is refused before anything is sent, and no
argument can put a control character on the wire."""

from __future__ import annotations

import pickle
import re
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_proto import _envelope
from smtp_proto._commands import format_mail, format_rcpt
from smtp_proto._envelope import (
    Body,
    ServerCapabilityError,
    detect_body,
    encode_address,
    line_allowance,
    mail_parameters,
    rcpt_parameters,
    xtext_decode,
    xtext_encode,
)
from smtp_proto._events import EhloFeatures, Reply

# RFC 5321 section 4.5.3.1.4.
BASE_LINE_LIMIT = 512

# What an encoded ENVID or ORCPT value may contain: printable ASCII without SP and "=" (an
# esmtp-value, RFC 5321 section 4.1.2).
ESMTP_VALUE = re.compile(r"[!-<>-~]+")

XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")


def offering(*lines: str, esmtp: bool = True) -> EhloFeatures:
    """The features of a server whose EHLO reply had these extension lines."""
    extensions = {}
    for line in lines:
        keyword, *parameters = line.split()
        extensions[keyword] = tuple(parameters)
    return EhloFeatures(
        reply=Reply(code=250, lines=("mx", *lines)),
        esmtp=esmtp,
        server_name="mx",
        extensions=extensions,
    )


EVERYTHING = offering(
    "SIZE 1000", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8", "DSN", "REQUIRETLS"
)
NOTHING = offering()


def test_all_names_exist() -> None:
    assert sorted(_envelope.__all__) == [
        "Body",
        "ServerCapabilityError",
        "detect_body",
        "encode_address",
        "line_allowance",
        "mail_parameters",
        "rcpt_parameters",
        "xtext_decode",
        "xtext_encode",
    ]
    for name in _envelope.__all__:
        assert getattr(_envelope, name) is not None


# ---------------------------------------------------------------------------------------
# ServerCapabilityError


def test_server_capability_error_is_a_value_error() -> None:
    error = ServerCapabilityError("DSN")
    assert isinstance(error, ValueError)
    assert error.extension == "DSN"
    assert str(error) == error.message == "the server did not announce DSN"


def test_server_capability_error_keeps_its_message() -> None:
    error = ServerCapabilityError(extension="SIZE", message="too large")
    assert (error.extension, str(error)) == ("SIZE", "too large")


def test_server_capability_error_pickles() -> None:
    copy = pickle.loads(pickle.dumps(ServerCapabilityError("SIZE", "too large")))
    assert isinstance(copy, ServerCapabilityError)
    assert (copy.extension, copy.message, str(copy)) == ("SIZE", "too large", "too large")


# ---------------------------------------------------------------------------------------
# detect_body


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", Body.SEVEN_BIT),
        (b"Subject: hi\r\n\r\nhello\r\n", Body.SEVEN_BIT),
        (bytes(range(1, 128)), Body.SEVEN_BIT),
        ("Subject: café\r\n".encode(), Body.EIGHT_BIT_MIME),
        (b"\x80", Body.EIGHT_BIT_MIME),
        (b"\xff" * 10, Body.EIGHT_BIT_MIME),
        # NUL is not 7bit data (RFC 2045 section 2.7) even though it is ASCII.
        (b"a\x00b", Body.EIGHT_BIT_MIME),
        (b"\x00", Body.EIGHT_BIT_MIME),
    ],
)
def test_detect_body(data: bytes, expected: Body) -> None:
    assert detect_body(data) is expected


@given(st.binary())
def test_detect_body_agrees_with_a_byte_by_byte_reading(data: bytes) -> None:
    seven_bit = all(1 <= octet <= 127 for octet in data)
    assert detect_body(data) is (Body.SEVEN_BIT if seven_bit else Body.EIGHT_BIT_MIME)


def test_detect_body_never_claims_binary() -> None:
    assert detect_body(bytes(range(256)) * 4) is Body.EIGHT_BIT_MIME


def test_body_values_are_the_wire_keywords() -> None:
    assert [body.value for body in Body] == ["7BIT", "8BITMIME", "BINARYMIME"]


# ---------------------------------------------------------------------------------------
# xtext


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("", ""),
        ("QQ314159", "QQ314159"),
        ("user@example.com", "user@example.com"),
        ("a+b=c", "a+2Bb+3Dc"),
        ("two words", "two+20words"),
        ("!~", "!~"),
        ("\r\n\x00\x7f", "+0D+0A+00+7F"),
        ("é", "+C3+A9"),
        ("用户", "+E7+94+A8+E6+88+B7"),
        ("\U0001f4e7", "+F0+9F+93+A7"),
    ],
)
def test_xtext_examples(text: str, encoded: str) -> None:
    assert xtext_encode(text) == encoded
    assert xtext_decode(encoded) == text


def test_xtext_decode_accepts_an_encoded_xchar() -> None:
    # RFC 3461 section 4: an xchar "MAY instead be encoded as a hexchar".
    assert xtext_decode("+41+42C") == "ABC"


@pytest.mark.parametrize(
    "text",
    [
        "+2b",  # hexchar digits are upper case
        "+4",
        "+",
        "a+",
        "++41",
        "+G0",
        "a=b",
        "a b",
        "a\r\nb",
        "\x00",
        "é",
        "\x7f",
    ],
)
def test_xtext_decode_refuses_what_is_not_xtext(text: str) -> None:
    with pytest.raises(ValueError, match=r"^not xtext"):
        xtext_decode(text)


def test_xtext_decode_names_what_is_wrong_and_where() -> None:
    message = (
        "not xtext: ' ' at index 1 is neither an xchar nor a '+' followed by two upper-case "
        "hexadecimal digits"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        xtext_decode("a b")


@pytest.mark.parametrize("text", ["+C3", "+FF", "+C3+28", "+ED+A0+80"])
def test_xtext_decode_refuses_octets_that_are_not_utf8(text: str) -> None:
    with pytest.raises(ValueError, match=r"^the octets this xtext encodes are not UTF-8$"):
        xtext_decode(text)


def test_xtext_encode_refuses_a_lone_surrogate() -> None:
    with pytest.raises(ValueError, match=r"lone surrogate, U\+DC80, at index 1"):
        xtext_encode("a\udc80")


@pytest.mark.parametrize("function", [xtext_encode, xtext_decode])
def test_xtext_refuses_what_is_not_a_str(function: Any) -> None:
    with pytest.raises(TypeError, match=r"^text must be a str, not bytes$"):
        function(b"abc")


@given(st.text())
def test_xtext_round_trips_any_text(text: str) -> None:
    encoded = xtext_encode(text)
    assert XTEXT.fullmatch(encoded)
    # Only xchars and hexchars: printable ASCII, never SP, "=", CR, LF or another control.
    assert all("!" <= char <= "~" for char in encoded)
    assert "=" not in encoded
    assert xtext_decode(encoded) == text


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)))
def test_xtext_leaves_xchars_alone(text: str) -> None:
    expected = text.replace("+", "+2B").replace("=", "+3D")
    assert xtext_encode(text) == expected


# ---------------------------------------------------------------------------------------
# encode_address


@pytest.mark.parametrize("offered", [False, True])
@pytest.mark.parametrize(
    ("address", "encoded"),
    [
        ("", ""),
        ("user@example.com", "user@example.com"),
        ("postmaster", "postmaster"),
        ('"john doe"@example.com', '"john doe"@example.com'),
        # An ASCII local part never needs SMTPUTF8: the domain becomes A-labels.
        ("user@bücher.example", "user@xn--bcher-kva.example"),
        ("user@BÜCHER.example", "user@xn--bcher-kva.example"),
        ("user@例子.广告", "user@xn--fsqu00a.xn--4rr70v"),
        ("user@bücher.example.", "user@xn--bcher-kva.example."),
        # The domain is after the last "@"; the quoted local part is left as it is.
        ('"a@b"@bücher.example', '"a@b"@xn--bcher-kva.example'),
    ],
)
def test_encode_address_without_smtputf8(address: str, encoded: str, offered: bool) -> None:
    assert encode_address(address, smtputf8_offered=offered) == (encoded, False)


@pytest.mark.parametrize(
    "address",
    [
        "用户@例子.广告",
        "用户@example.com",
        "pelé@example.com",
        "用户",
        "用户@",
        '"用 户"@example.com',
    ],
)
def test_encode_address_with_a_non_ascii_local_part(address: str) -> None:
    # Left exactly as given, domain included: the server speaks UTF-8.
    assert encode_address(address, smtputf8_offered=True) == (address, True)
    with pytest.raises(ServerCapabilityError) as caught:
        encode_address(address, smtputf8_offered=False)
    assert caught.value.extension == "SMTPUTF8"
    assert str(caught.value) == (
        "the local part of the address is not ASCII and the server did not announce SMTPUTF8 "
        "(RFC 6531 section 3.2)"
    )


@pytest.mark.parametrize(
    "address",
    [
        "user@bü..example",  # an empty label
        "user@" + "ü" * 64 + ".example",  # a label longer than 63 octets
        "user@xn--ü.example",  # a non-ASCII label with the ACE prefix
    ],
)
def test_encode_address_refuses_a_domain_the_idna_codec_rejects(address: str) -> None:
    with pytest.raises(ValueError, match="no A-label form"):
        encode_address(address, smtputf8_offered=True)


def test_encode_address_refuses_a_non_ascii_address_literal() -> None:
    with pytest.raises(ValueError, match=r"^the address literal of the address is not ASCII$"):
        encode_address("user@[ü]", smtputf8_offered=True)


@pytest.mark.parametrize(
    "address", ["user@bü\r\n.example", "user@example.com\r\nRCPT TO:<x@y>", "a\x00@b", "a\udc80@b"]
)
def test_encode_address_refuses_controls_and_surrogates(address: str) -> None:
    with pytest.raises(ValueError, match=r"^address contains"):
        encode_address(address, smtputf8_offered=True)


def test_encode_address_refuses_what_is_not_a_str() -> None:
    with pytest.raises(TypeError):
        encode_address(b"user@example.com", smtputf8_offered=True)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# mail_parameters


def test_mail_parameters_default_to_none() -> None:
    assert mail_parameters(EVERYTHING, tls_active=True) == {}
    assert mail_parameters(NOTHING, tls_active=False) == {}


def test_mail_parameters_returns_a_new_dict_each_time() -> None:
    first = mail_parameters(EVERYTHING, tls_active=True, smtputf8=True)
    first["X"] = None
    assert mail_parameters(EVERYTHING, tls_active=True, smtputf8=True) == {"SMTPUTF8": None}


@pytest.mark.parametrize("size", [0, 1, 999, 1000])
def test_size_up_to_the_limit(size: int) -> None:
    assert mail_parameters(offering("SIZE 1000"), tls_active=False, size=size) == {
        "SIZE": str(size)
    }


@pytest.mark.parametrize("size", [1001, 10**19])
def test_size_over_the_limit(size: int) -> None:
    with pytest.raises(ServerCapabilityError, match="limit of 1000") as caught:
        mail_parameters(offering("SIZE 1000"), tls_active=False, size=size)
    assert caught.value.extension == "SIZE"


@pytest.mark.parametrize("line", ["SIZE", "SIZE 0", "SIZE unlimited"])
def test_size_without_a_limit(line: str) -> None:
    # RFC 1870 section 3: no value, or 0, means no fixed limit is announced.
    assert mail_parameters(offering(line), tls_active=False, size=10**19) == {"SIZE": str(10**19)}


def test_size_not_announced_sends_nothing_and_refuses_nothing() -> None:
    assert mail_parameters(offering("8BITMIME"), tls_active=False, size=10**19) == {}


def test_size_largest_with_twenty_digits() -> None:
    assert mail_parameters(offering("SIZE"), tls_active=False, size=10**20 - 1) == {
        "SIZE": "9" * 20
    }


@pytest.mark.parametrize(
    ("size", "error", "message"),
    [
        (-1, ValueError, "^size must not be negative$"),
        (10**20, ValueError, "20 digits"),
        (True, TypeError, "bool"),
        (10.0, TypeError, "float"),
        ("10", TypeError, "str"),
    ],
)
def test_size_malformed(size: Any, error: type[Exception], message: str) -> None:
    # Refused whatever the server: a malformed argument is the caller's bug.
    for features in (offering("SIZE"), NOTHING):
        with pytest.raises(error, match=message):
            mail_parameters(features, tls_active=False, size=size)


def test_body_seven_bit_sends_nothing() -> None:
    assert mail_parameters(NOTHING, tls_active=False, body=Body.SEVEN_BIT) == {}
    assert mail_parameters(EVERYTHING, tls_active=False, body=Body.SEVEN_BIT) == {}


def test_body_eight_bit() -> None:
    assert mail_parameters(offering("8BITMIME"), tls_active=False, body=Body.EIGHT_BIT_MIME) == {
        "BODY": "8BITMIME"
    }
    with pytest.raises(ServerCapabilityError) as caught:
        mail_parameters(
            offering("BINARYMIME", "CHUNKING"), tls_active=False, body=Body.EIGHT_BIT_MIME
        )
    assert caught.value.extension == "8BITMIME"


def test_body_binary() -> None:
    features = offering("BINARYMIME", "CHUNKING")
    assert mail_parameters(features, tls_active=False, body=Body.BINARY_MIME) == {
        "BODY": "BINARYMIME"
    }


@pytest.mark.parametrize(
    ("lines", "missing"),
    [
        (("8BITMIME", "CHUNKING"), "BINARYMIME"),
        # RFC 3030 section 3: binary content only goes with BDAT.
        (("8BITMIME", "BINARYMIME"), "CHUNKING"),
        ((), "BINARYMIME"),
    ],
)
def test_body_binary_refused(lines: tuple[str, ...], missing: str) -> None:
    with pytest.raises(ServerCapabilityError) as caught:
        mail_parameters(offering(*lines), tls_active=False, body=Body.BINARY_MIME)
    assert caught.value.extension == missing


def test_body_must_be_a_body() -> None:
    with pytest.raises(TypeError, match=r"^body must be a Body or None, not str$"):
        mail_parameters(EVERYTHING, tls_active=False, body="8BITMIME")  # type: ignore[arg-type]


def test_smtputf8() -> None:
    assert mail_parameters(offering("SMTPUTF8"), tls_active=False, smtputf8=True) == {
        "SMTPUTF8": None
    }
    with pytest.raises(ServerCapabilityError) as caught:
        mail_parameters(offering("8BITMIME"), tls_active=False, smtputf8=True)
    assert caught.value.extension == "SMTPUTF8"


@pytest.mark.parametrize(("ret", "sent"), [("FULL", "FULL"), ("hdrs", "HDRS"), ("Full", "FULL")])
def test_ret(ret: str, sent: str) -> None:
    assert mail_parameters(offering("DSN"), tls_active=False, ret=ret) == {"RET": sent}


@pytest.mark.parametrize("ret", ["", "NONE", "HEADERS", "FULL ", "HDR\u017f"])
def test_ret_malformed(ret: str) -> None:
    with pytest.raises(
        ValueError, match=r"^ret must be 'FULL' or 'HDRS' \(RFC 3461 section 4\.3\)$"
    ):
        mail_parameters(offering("DSN"), tls_active=False, ret=ret)


def test_ret_needs_dsn() -> None:
    with pytest.raises(ServerCapabilityError) as caught:
        mail_parameters(NOTHING, tls_active=False, ret="FULL")
    assert caught.value.extension == "DSN"
    with pytest.raises(TypeError, match="ret must be a str"):
        mail_parameters(offering("DSN"), tls_active=False, ret=b"FULL")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("envid", "sent"),
    [
        ("QQ314159", "QQ314159"),
        ("a+b=c d", "a+2Bb+3Dc+20d"),
        ("<id@example.com>", "<id@example.com>"),
    ],
)
def test_envid(envid: str, sent: str) -> None:
    assert mail_parameters(offering("DSN"), tls_active=False, envid=envid) == {"ENVID": sent}


def test_envid_length() -> None:
    # RFC 3461 sections 4.4 and 5.4: the ENVID parameter, "ENVID=" included, is at most 100
    # characters.
    features = offering("DSN")
    longest = mail_parameters(features, tls_active=False, envid="x" * 94)
    assert len("ENVID=" + (longest["ENVID"] or "")) == 100
    with pytest.raises(ValueError, match="101 characters, more than 100"):
        mail_parameters(features, tls_active=False, envid="x" * 95)


def test_envid_length_counts_the_encoding() -> None:
    # 32 "+" are 96 characters as xtext.
    with pytest.raises(ValueError, match="102 characters"):
        mail_parameters(offering("DSN"), tls_active=False, envid="+" * 32)
    assert mail_parameters(offering("DSN"), tls_active=False, envid="+" * 31) == {
        "ENVID": "+2B" * 31
    }


@pytest.mark.parametrize(
    ("envid", "message"),
    [
        ("", "must not be empty"),
        ("é", "must be ASCII"),
        ("a\r\nb", "contains a control character, U\\+000D"),
        ("a\nRCPT TO:<x@y>", "contains a control character, U\\+000A"),
        ("\x00", "contains a control character, U\\+0000"),
        ("a\tb", "contains a control character, U\\+0009"),
        ("\x7f", "contains a control character, U\\+007F"),
    ],
)
def test_envid_malformed(envid: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^envid {message}"):
        mail_parameters(offering("DSN"), tls_active=False, envid=envid)


def test_envid_needs_dsn() -> None:
    with pytest.raises(ServerCapabilityError) as caught:
        mail_parameters(offering("8BITMIME"), tls_active=False, envid="x")
    assert caught.value.extension == "DSN"
    with pytest.raises(TypeError, match="envid must be a str"):
        mail_parameters(offering("DSN"), tls_active=False, envid=1)  # type: ignore[arg-type]


@given(st.text(max_size=120))
def test_envid_never_reaches_the_wire_unencoded(envid: str) -> None:
    try:
        parameters = mail_parameters(offering("DSN"), tls_active=False, envid=envid)
    except ValueError:
        return
    value = parameters["ENVID"]
    assert value is not None
    assert ESMTP_VALUE.fullmatch(value)
    assert xtext_decode(value) == envid


def test_requiretls() -> None:
    assert mail_parameters(offering("REQUIRETLS"), tls_active=True, requiretls=True) == {
        "REQUIRETLS": None
    }


@pytest.mark.parametrize(
    ("lines", "tls_active", "message"),
    [
        ((), True, "did not announce REQUIRETLS"),
        ((), False, "did not announce REQUIRETLS"),
        (
            ("REQUIRETLS",),
            False,
            r"^REQUIRETLS needs a TLS connection \(RFC 8689 section 4\.2\.1\)$",
        ),
    ],
)
def test_requiretls_refused(lines: tuple[str, ...], tls_active: bool, message: str) -> None:
    with pytest.raises(ServerCapabilityError, match=message) as caught:
        mail_parameters(offering(*lines), tls_active=tls_active, requiretls=True)
    assert caught.value.extension == "REQUIRETLS"


def test_mail_parameters_order_and_extra() -> None:
    parameters = mail_parameters(
        EVERYTHING,
        tls_active=True,
        extra={"AUTH": "<>", "X-FLAG": None},
        requiretls=True,
        envid="id",
        ret="hdrs",
        smtputf8=True,
        body=Body.BINARY_MIME,
        size=10,
    )
    assert list(parameters.items()) == [
        ("SIZE", "10"),
        ("BODY", "BINARYMIME"),
        ("SMTPUTF8", None),
        ("RET", "HDRS"),
        ("ENVID", "id"),
        ("REQUIRETLS", None),
        ("AUTH", "<>"),
        ("X-FLAG", None),
    ]


def test_mail_parameters_after_helo_refuse_every_extension() -> None:
    helo = offering(esmtp=False)
    assert mail_parameters(helo, tls_active=True, size=10, body=Body.SEVEN_BIT) == {}
    for arguments in (
        {"body": Body.EIGHT_BIT_MIME},
        {"smtputf8": True},
        {"ret": "FULL"},
        {"envid": "x"},
        {"requiretls": True},
    ):
        with pytest.raises(ServerCapabilityError):
            mail_parameters(helo, tls_active=True, **arguments)


@pytest.mark.parametrize(
    "keyword", ["SIZE", "size", "Body", "SMTPUTF8", "ret", "ENVID", "RequireTLS"]
)
def test_mail_extra_refuses_a_keyword_an_argument_sets(keyword: str) -> None:
    # Refused even where the argument is unused: BODY in extra would skip the 8BITMIME check.
    with pytest.raises(ValueError, match=f"{keyword!r} is set by the"):
        mail_parameters(EVERYTHING, tls_active=True, extra={keyword: "x"})


def test_mail_extra_malformed() -> None:
    with pytest.raises(TypeError, match=r"^extra must be a mapping, not list$"):
        mail_parameters(EVERYTHING, tls_active=True, extra=[("X", "y")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^ESMTP parameter keyword must be a str, not int$"):
        mail_parameters(EVERYTHING, tls_active=True, extra={1: "y"})  # type: ignore[dict-item]


@pytest.mark.parametrize("value", ["a\r\nRCPT TO:<x@y>", "a\x00", "a b", "a=b"])
def test_mail_extra_values_are_left_to_the_command_builder(value: str) -> None:
    # Passed through unchanged here, and refused when the command line is built.
    parameters = mail_parameters(EVERYTHING, tls_active=True, extra={"X-HOSTILE": value})
    assert parameters == {"X-HOSTILE": value}
    with pytest.raises(ValueError, match="X-HOSTILE"):
        format_mail("a@b", parameters, max_line_length=BASE_LINE_LIMIT)


# ---------------------------------------------------------------------------------------
# rcpt_parameters


def test_rcpt_parameters_default_to_none() -> None:
    assert rcpt_parameters(EVERYTHING) == {}
    assert rcpt_parameters(NOTHING) == {}


@pytest.mark.parametrize(
    ("notify", "sent"),
    [
        (["NEVER"], "NEVER"),
        (("never",), "NEVER"),
        (["NEVER", "never"], "NEVER"),
        (["failure"], "FAILURE"),
        (["delay", "SUCCESS"], "SUCCESS,DELAY"),
        ({"DELAY", "FAILURE", "SUCCESS"}, "SUCCESS,FAILURE,DELAY"),
        (frozenset({"Failure", "Delay"}), "FAILURE,DELAY"),
        (["SUCCESS", "success"], "SUCCESS"),
    ],
)
def test_notify(notify: Collection[str], sent: str) -> None:
    assert rcpt_parameters(offering("DSN"), notify=notify) == {"NOTIFY": sent}


NOTIFY_EMPTY = "notify must hold NEVER or at least one of SUCCESS, FAILURE, DELAY"
NEVER_ALONE = "NEVER cannot be combined with other notify keywords"
NOTIFY_KEYWORDS = "notify keywords are NEVER, SUCCESS, FAILURE and DELAY (RFC 3461 section 4.1)"


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ([], NOTIFY_EMPTY),
        (["NEVER", "SUCCESS"], NEVER_ALONE),
        (["failure", "never"], NEVER_ALONE),
        (["SOMETIMES"], NOTIFY_KEYWORDS),
        (["SUCCESS,FAILURE"], NOTIFY_KEYWORDS),
        ([""], NOTIFY_KEYWORDS),
        (["SUCCE\u017f\u017f"], NOTIFY_KEYWORDS),
    ],
)
def test_notify_malformed(notify: Collection[str], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        rcpt_parameters(offering("DSN"), notify=notify)


@pytest.mark.parametrize(("notify", "message"), [("NEVER", "not str"), (5, "not int")])
def test_notify_must_be_a_collection(notify: Any, message: str) -> None:
    # A lone str is refused rather than read as the collection of its letters.
    with pytest.raises(TypeError, match=message):
        rcpt_parameters(offering("DSN"), notify=notify)


def test_notify_words_must_be_str() -> None:
    with pytest.raises(TypeError, match="each notify keyword must be a str"):
        rcpt_parameters(offering("DSN"), notify=[b"NEVER"])  # type: ignore[list-item]


def test_notify_needs_dsn() -> None:
    with pytest.raises(ServerCapabilityError) as caught:
        rcpt_parameters(offering("8BITMIME"), notify=["FAILURE"])
    assert caught.value.extension == "DSN"


@pytest.mark.parametrize(
    ("orcpt", "sent"),
    [
        ("user@example.com", "rfc822;user@example.com"),
        ("a+b=c@example.com", "rfc822;a+2Bb+3Dc@example.com"),
        ('"john doe"@example.com', 'rfc822;"john+20doe"@example.com'),
        ("user@xn--bcher-kva.example", "rfc822;user@xn--bcher-kva.example"),
        # RFC 6533 section 3: non-ASCII as utf-8-addr-xtext, 7-bit, with upper-case
        # HEXPOINTs without leading zeros.
        ("用户@例子.广告", "utf-8;\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.\\x{5E7F}\\x{544A}"),
        ("pelé@example.com", "utf-8;pel\\x{E9}@example.com"),
        ("user@bücher.example", "utf-8;user@b\\x{FC}cher.example"),
        ("\U0001f4e7@example.com", "utf-8;\\x{1F4E7}@example.com"),
        # SP, "+", "=" and "\" have 2-digit HEXPOINTs of their own; other xchars stay.
        ('"é +=\\"@x', 'utf-8;"\\x{E9}\\x{20}\\x{2B}\\x{3D}\\x{5C}"@x'),
        ("é!~[]{}@x", "utf-8;\\x{E9}!~[]{}@x"),
    ],
)
def test_orcpt(orcpt: str, sent: str) -> None:
    parameters = rcpt_parameters(offering("DSN"), orcpt=orcpt)
    assert parameters == {"ORCPT": sent}
    assert ESMTP_VALUE.fullmatch(sent)
    # Both forms are valid xtext, so a DSN-reading server can take them as such.
    assert XTEXT.fullmatch(sent)


def test_orcpt_length() -> None:
    # RFC 3461 section 4.2: "The entire ORCPT parameter MAY be up to 500 characters".
    features = offering("DSN")
    longest = rcpt_parameters(features, orcpt="x" * 487)
    assert len("ORCPT=" + (longest["ORCPT"] or "")) == 500
    with pytest.raises(ValueError, match="501 characters, more than 500"):
        rcpt_parameters(features, orcpt="x" * 488)
    # The limit is on the encoded value: 60 "用" are 60 * 8 + 6 = 486 characters.
    assert rcpt_parameters(features, orcpt="用" * 60)
    with pytest.raises(ValueError, match="more than 500"):
        rcpt_parameters(features, orcpt="用" * 62)


@pytest.mark.parametrize(
    ("orcpt", "message"),
    [
        ("", "must not be empty"),
        ("a\r\n@b", "contains a control character, U\\+000D"),
        ("a\x00@b", "contains a control character, U\\+0000"),
        ("用\r\n@b", "contains a control character, U\\+000D"),
        ("用\x85@b", "contains a control character, U\\+0085"),
        ("用\ud800@b", "contains a lone surrogate, U\\+D800"),
    ],
)
def test_orcpt_malformed(orcpt: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^orcpt {message}"):
        rcpt_parameters(offering("DSN"), orcpt=orcpt)


def test_orcpt_needs_dsn() -> None:
    with pytest.raises(ServerCapabilityError) as caught:
        rcpt_parameters(NOTHING, orcpt="a@b")
    assert caught.value.extension == "DSN"
    with pytest.raises(TypeError, match="orcpt must be a str"):
        rcpt_parameters(offering("DSN"), orcpt=5)  # type: ignore[arg-type]


@given(st.text(max_size=200))
def test_orcpt_never_reaches_the_wire_unencoded(orcpt: str) -> None:
    try:
        parameters = rcpt_parameters(offering("DSN"), orcpt=orcpt)
    except ValueError:
        return
    value = parameters["ORCPT"]
    assert value is not None
    assert ESMTP_VALUE.fullmatch(value)
    if orcpt.isascii():
        assert value == "rfc822;" + xtext_encode(orcpt)
    else:
        assert value.startswith("utf-8;")


def test_rcpt_parameters_order_and_extra() -> None:
    parameters = rcpt_parameters(
        EVERYTHING, extra={"X-A": "1", "X-B": None}, orcpt="a@b", notify=["FAILURE"]
    )
    assert list(parameters.items()) == [
        ("NOTIFY", "FAILURE"),
        ("ORCPT", "rfc822;a@b"),
        ("X-A", "1"),
        ("X-B", None),
    ]


@pytest.mark.parametrize("keyword", ["NOTIFY", "orcpt", "Notify"])
def test_rcpt_extra_refuses_a_keyword_an_argument_sets(keyword: str) -> None:
    with pytest.raises(ValueError, match=f"{keyword!r} is set by the"):
        rcpt_parameters(EVERYTHING, extra={keyword: "x"})


def test_rcpt_extra_may_carry_mail_keywords() -> None:
    # Only RCPT's own keywords are reserved here.
    assert rcpt_parameters(NOTHING, extra={"SIZE": "1"}) == {"SIZE": "1"}


# ---------------------------------------------------------------------------------------
# line_allowance


@pytest.mark.parametrize(
    ("parameters", "allowance"),
    [
        ({}, 0),
        ({"SIZE": "10"}, 26),  # RFC 1870 section 3
        ({"BODY": "BINARYMIME"}, 16),  # RFC 3030 section 3
        ({"BODY": "binarymime"}, 16),
        ({"BODY": "8BITMIME"}, 0),  # RFC 6152 states no increase
        ({"BODY": "7BIT"}, 0),
        ({"BODY": None}, 0),
        ({"SMTPUTF8": None}, 10),  # RFC 6531 section 3.1
        ({"RET": "FULL"}, 9),  # RFC 3461 section 5.4
        ({"ENVID": "x"}, 101),
        ({"NOTIFY": "NEVER"}, 29),
        ({"ORCPT": "rfc822;a@b"}, 501),
        ({"AUTH": "<>"}, 500),  # RFC 4954 section 3
        ({"REQUIRETLS": None}, 11),  # RFC 8689 section 2
        ({"size": "1", "requiretls": None}, 37),
        ({"X-UNKNOWN": "1", "MT-PRIORITY": "3"}, 0),
    ],
)
def test_line_allowance(parameters: Mapping[str, str | None], allowance: int) -> None:
    assert line_allowance(parameters) == allowance
    # Any mapping, not only a dict.
    assert line_allowance(MappingProxyType(dict(parameters))) == allowance


def test_line_allowance_of_everything() -> None:
    mail = mail_parameters(
        EVERYTHING,
        tls_active=True,
        size=1,
        body=Body.BINARY_MIME,
        smtputf8=True,
        ret="FULL",
        envid="x",
        requiretls=True,
        extra={"AUTH": "<>"},
    )
    assert line_allowance(mail) == 26 + 16 + 10 + 9 + 101 + 11 + 500
    # RFC 3461 section 5.4: "530 characters for the ORCPT and NOTIFY parameters".
    assert line_allowance(rcpt_parameters(EVERYTHING, notify=["NEVER"], orcpt="a@b")) == 530


def test_line_allowance_malformed() -> None:
    with pytest.raises(TypeError, match=r"^parameters must be a mapping, not list$"):
        line_allowance([("SIZE", "1")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^ESMTP parameter keyword must be a str, not NoneType$"):
        line_allowance({None: "1"})  # type: ignore[dict-item]


def test_the_longest_parameters_fit_in_the_allowance() -> None:
    # The largest path RFC 5321 section 4.5.3.1.3 allows, 256 octets with its "<" and ">",
    # and every parameter at its largest: the line fits the allowance the RFCs grant.
    path = "a" * 64 + "@" + "b" * 189
    unlimited = offering(
        "SIZE", "BINARYMIME", "CHUNKING", "SMTPUTF8", "DSN", "REQUIRETLS", "AUTH PLAIN"
    )
    mail = mail_parameters(
        unlimited,
        tls_active=True,
        size=10**20 - 1,
        body=Body.BINARY_MIME,
        smtputf8=True,
        ret="HDRS",
        envid="x" * 94,
        requiretls=True,
        # AUTH takes an xtext mailbox (RFC 4954); " AUTH=" and 494 characters are the 500
        # octets its section 3 grants.
        extra={"AUTH": "x" * 494},
    )
    line = format_mail(path, mail, max_line_length=BASE_LINE_LIMIT + line_allowance(mail))
    assert len(line) > BASE_LINE_LIMIT
    rcpt = rcpt_parameters(EVERYTHING, notify=["SUCCESS", "FAILURE", "DELAY"], orcpt="x" * 487)
    line = format_rcpt(path, rcpt, max_line_length=BASE_LINE_LIMIT + line_allowance(rcpt))
    assert len(line) > BASE_LINE_LIMIT


@given(address=st.text(st.characters(max_codepoint=0x7F)), offered=st.booleans())
def test_encode_address_of_any_ascii_text(address: str, offered: bool) -> None:
    # Printable ASCII goes out as it is; an ASCII control anywhere is refused.
    if any(c < " " or c == "\x7f" for c in address):
        with pytest.raises(ValueError, match=r"^address contains a control character"):
            encode_address(address, smtputf8_offered=offered)
    else:
        assert encode_address(address, smtputf8_offered=offered) == (address, False)
