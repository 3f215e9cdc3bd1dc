"""Tests for smtp_proto._ehlo: the extensions read out of EHLO replies as real servers
write them, and no reply, however odd, makes the parser raise."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_proto import _ehlo
from smtp_proto._ehlo import parse_ehlo
from smtp_proto._events import EhloFeatures, Reply


def _reply(*lines: str, code: int = 250) -> Reply:
    # The raw octets do not matter to the parser; make them plausible anyway.
    raw = "".join(
        f"{code}{' ' if i == len(lines) - 1 else '-'}{line}\r\n" for i, line in enumerate(lines)
    ).encode("utf-8", "surrogatepass")
    return Reply(code=code, lines=lines, raw=raw)


def _ehlo_features(*lines: str) -> EhloFeatures:
    return parse_ehlo(_reply(*lines), esmtp=True)


def test_all_names_exist() -> None:
    assert _ehlo.__all__ == ["parse_ehlo"]


# ---------------------------------------------------------------------------------------
# Replies as real servers send them


def test_postfix_style() -> None:
    features = _ehlo_features(
        "mail.example.org",
        "PIPELINING",
        "SIZE 10240000",
        "VRFY",
        "ETRN",
        "STARTTLS",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
    )
    assert features.esmtp
    assert features.server_name == "mail.example.org"
    assert list(features.extensions) == [
        "PIPELINING",
        "SIZE",
        "VRFY",
        "ETRN",
        "STARTTLS",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
    ]
    assert features.extensions["SIZE"] == ("10240000",)
    assert features.extensions["VRFY"] == ()
    assert features.max_message_size == 10240000
    assert features.pipelining
    assert features.starttls
    assert features.enhanced_status_codes
    assert features.eight_bit_mime
    assert features.dsn
    assert features.smtputf8
    assert features.chunking
    assert not features.binary_mime
    assert not features.requiretls
    assert features.auth_mechanisms == frozenset()
    assert features.supports("etrn")
    assert not features.supports("AUTH")


def test_gmail_style() -> None:
    features = _ehlo_features(
        "smtp.gmail.com at your service, [192.0.2.7]",
        "SIZE 35882577",
        "8BITMIME",
        "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
        "ENHANCEDSTATUSCODES",
        "PIPELINING",
        "CHUNKING",
        "SMTPUTF8",
    )
    assert features.server_name == "smtp.gmail.com"
    assert features.max_message_size == 35882577
    assert features.extensions["AUTH"] == (
        "LOGIN",
        "PLAIN",
        "XOAUTH2",
        "PLAIN-CLIENTTOKEN",
        "OAUTHBEARER",
        "XOAUTH",
    )
    assert features.auth_mechanisms == frozenset(
        {"LOGIN", "PLAIN", "XOAUTH2", "PLAIN-CLIENTTOKEN", "OAUTHBEARER", "XOAUTH"}
    )
    assert features.pipelining
    assert features.chunking
    assert features.smtputf8
    assert features.eight_bit_mime
    assert features.enhanced_status_codes
    # Gmail's submission port announces STARTTLS only before TLS; this reply is after.
    assert not features.starttls


def test_gmail_style_before_tls() -> None:
    features = _ehlo_features("smtp.gmail.com at your service", "SIZE 35882577", "STARTTLS")
    assert features.starttls
    assert features.auth_mechanisms == frozenset()


def test_microsoft_style() -> None:
    features = _ehlo_features(
        "BN8PR01CA0001.outlook.office365.com Hello [192.0.2.9]",
        "SIZE 157286400",
        "PIPELINING",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "AUTH LOGIN XOAUTH2",
        "8BITMIME",
        "BINARYMIME",
        "CHUNKING",
        "SMTPUTF8",
        "XRDST",
        "XEXCH50",
    )
    assert features.server_name == "BN8PR01CA0001.outlook.office365.com"
    assert features.max_message_size == 157286400
    assert features.auth_mechanisms == frozenset({"LOGIN", "XOAUTH2"})
    assert features.binary_mime
    assert features.chunking
    assert features.dsn
    # Keywords the engine has no use for are kept, so a caller can look for them.
    assert features.extensions["XRDST"] == ()
    assert features.extensions["XEXCH50"] == ()
    assert features.supports("xexch50")
    assert not features.requiretls


def test_requiretls() -> None:
    features = _ehlo_features("mx.example", "STARTTLS", "REQUIRETLS")
    assert features.requiretls
    assert features.starttls


def test_lmtp_reply_is_read_the_same_way() -> None:
    # LHLO (RFC 2033 section 4.1) is answered exactly like EHLO.
    features = _ehlo_features("lmtp.example", "PIPELINING", "ENHANCEDSTATUSCODES")
    assert features.pipelining
    assert features.enhanced_status_codes


# ---------------------------------------------------------------------------------------
# SIZE, whose value the engine relies on (RFC 1870)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("SIZE 10240000", 10240000),
        ("SIZE 1", 1),
        ("SIZE", None),  # announced without a limit
        ("SIZE 0", None),  # RFC 1870 section 4: 0 means no fixed maximum
        ("SIZE 000", None),
        ("SIZE garbage", None),
        ("SIZE -5", None),
        ("SIZE 1e6", None),
        ("SIZE 10 20", None),
        ("SIZE ١٢٣", None),  # Arabic-Indic digits: isdigit() but not ASCII
        ("SIZE " + "9" * 30, None),  # too many digits to be a real limit
        ("SIZE " + "9" * 20, int("9" * 20)),
        ("SIZE " + "9" * 10_000, None),
        ("SIZE\t4096", 4096),
        ("SIZE   4096  ", 4096),
        ("size 4096", 4096),
    ],
)
def test_size(line: str, expected: int | None) -> None:
    features = _ehlo_features("mx.example", line)
    assert "SIZE" in features.extensions
    assert features.max_message_size == expected


def test_no_size() -> None:
    assert _ehlo_features("mx.example", "PIPELINING").max_message_size is None


# ---------------------------------------------------------------------------------------
# The lenient reading of keywords and lines


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # Lower- and mixed-case keywords are upper-cased; parameters are kept as sent.
        (
            ["pipelining", "Size 100", "auth login Plain"],
            {
                "PIPELINING": (),
                "SIZE": ("100",),
                "AUTH": ("login", "Plain"),
            },
        ),
        # Tabs and runs of spaces separate words too.
        (["SIZE\t100", "AUTH  LOGIN \t PLAIN  "], {"SIZE": ("100",), "AUTH": ("LOGIN", "PLAIN")}),
        # Leading blanks are not a keyword.
        (["  PIPELINING"], {"PIPELINING": ()}),
        # Blank lines are skipped.
        (["", " ", "\t", "DSN"], {"DSN": ()}),
        # The first occurrence of a repeated keyword wins.
        (["SIZE 100", "SIZE 200", "size 300"], {"SIZE": ("100",)}),
        (["X-A b", "x-a c"], {"X-A": ("b",)}),
        # Keywords may start with a digit and hold hyphens (RFC 5321 section 4.1.1.1).
        (["8BITMIME", "X-LINK2STATE", "0-"], {"8BITMIME": (), "X-LINK2STATE": (), "0-": ()}),
        # Malformed keywords are skipped, the rest of the reply still counts.
        (
            [
                "-PIPELINING",
                "SIZE=100",
                "X_UNDERSCORE",
                "ÜNICODE",
                "\u212aELVIN",  # the Kelvin sign is not a K
                "SMTP\udcffUTF8",  # a non-UTF-8 octet, kept as a surrogate by the reader
                "\udcff\udcfe",
                "=",
                "CHUNKING",
            ],
            {"CHUNKING": ()},
        ),
        # All digits is a valid keyword, odd as it looks.
        (["250 DSN"], {"250": ("DSN",)}),
        # Text that is not a separator on the wire stays inside the word.
        (["STARTTLS\u00a0X"], {}),
        (["SIZE 1\u00a02"], {"SIZE": ("1\u00a02",)}),
        # Parameters are kept even when odd; only the keyword is checked.
        (["XFOO a=b <c> \udcff"], {"XFOO": ("a=b", "<c>", "\udcff")}),
    ],
)
def test_keyword_lines(lines: list[str], expected: dict[str, tuple[str, ...]]) -> None:
    assert dict(_ehlo_features("mx.example", *lines).extensions) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["AUTH LOGIN PLAIN"], ("LOGIN", "PLAIN")),
        # The legacy form alone.
        (["AUTH=LOGIN PLAIN"], ("LOGIN", "PLAIN")),
        (["auth=login"], ("login",)),
        (["Auth=PLAIN"], ("PLAIN",)),
        # Both forms, as many servers send them: merged, each mechanism once, first seen first.
        (["AUTH PLAIN LOGIN", "AUTH=LOGIN PLAIN"], ("PLAIN", "LOGIN")),
        (["AUTH=LOGIN", "AUTH PLAIN LOGIN CRAM-MD5"], ("LOGIN", "PLAIN", "CRAM-MD5")),
        # Repeats differing only in case are the same mechanism; the first spelling stays.
        (["AUTH login", "AUTH LOGIN Plain", "AUTH=PLAIN"], ("login", "Plain")),
        # A legacy keyword with nothing glued to it.
        (["AUTH= LOGIN"], ("LOGIN",)),
        (["AUTH=X Y"], ("X", "Y")),  # a mechanism name may be one character long
        (["AUTH="], ()),
        (["AUTH"], ()),
        (["AUTH", "AUTH=XOAUTH2"], ("XOAUTH2",)),
        # "AUTH=" must be ASCII letters, not letters that only look like them.
        (["AUTH PLAIN", "\uff21\uff35\uff34\uff28=LOGIN"], ("PLAIN",)),
        # Within one line, a repeated mechanism counts once.
        (["AUTH PLAIN PLAIN plain"], ("PLAIN",)),
    ],
)
def test_auth_lines(lines: list[str], expected: tuple[str, ...]) -> None:
    features = _ehlo_features("mx.example", *lines)
    assert features.extensions["AUTH"] == expected
    assert features.auth_mechanisms == frozenset(m.upper() for m in expected)


def test_auth_keeps_the_place_of_its_first_line() -> None:
    features = _ehlo_features("mx.example", "SIZE 1", "AUTH=LOGIN", "DSN", "AUTH PLAIN")
    assert list(features.extensions) == ["SIZE", "AUTH", "DSN"]
    assert features.extensions["AUTH"] == ("LOGIN", "PLAIN")


def test_no_auth_line_means_no_auth() -> None:
    features = _ehlo_features("mx.example", "AUTHX LOGIN", "XAUTH=LOGIN")
    assert "AUTH" not in features.extensions
    assert features.extensions["AUTHX"] == ("LOGIN",)
    assert features.auth_mechanisms == frozenset()


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        ("mail.example.org", "mail.example.org"),
        ("mail.example.org Hello client.example [192.0.2.1]", "mail.example.org"),
        ("mail.example.org\tESMTP", "mail.example.org"),
        ("  mail.example.org", "mail.example.org"),
        ("[192.0.2.1] ready", "[192.0.2.1]"),
        ("mx.bücher.example", "mx.bücher.example"),
        ("mx\udcff.example greets", "mx\udcff.example"),
        ("", ""),
        ("   ", ""),
        ("\t \t", ""),
    ],
)
def test_server_name(first_line: str, expected: str) -> None:
    assert _ehlo_features(first_line).server_name == expected
    assert parse_ehlo(_reply(first_line), esmtp=False).server_name == expected


def test_first_line_is_never_a_keyword() -> None:
    features = _ehlo_features("PIPELINING SIZE 100")
    assert features.server_name == "PIPELINING"
    assert dict(features.extensions) == {}


def test_helo_reply_has_no_extensions() -> None:
    # After HELO, any further lines are text, even when they look like keywords.
    reply = _reply("mail.example.org Hello", "PIPELINING", "SIZE 100", "AUTH PLAIN")
    features = parse_ehlo(reply, esmtp=False)
    assert not features.esmtp
    assert features.server_name == "mail.example.org"
    assert dict(features.extensions) == {}
    assert not features.pipelining
    assert features.max_message_size is None
    assert features.auth_mechanisms == frozenset()


def test_reply_is_kept() -> None:
    reply = _reply("mx.example", "DSN")
    features = parse_ehlo(reply, esmtp=True)
    assert features.reply is reply
    assert features == EhloFeatures(
        reply=reply, esmtp=True, server_name="mx.example", extensions={"DSN": ()}
    )


# ---------------------------------------------------------------------------------------
# Properties

KEYWORD = re.compile(r"[A-Z0-9][A-Z0-9-]*")

# Lines as the reply reader can hand them over: any text, and any octets decoded with
# surrogateescape; biased towards the characters that separate and shape keyword lines.
reply_line = st.one_of(
    st.text(max_size=60),
    st.text(
        st.sampled_from([" ", "\t", "=", "-", "A", "a", "1", "\u212a", "\u0131"]), max_size=20
    ).map(lambda s: "AUTH" + s),
    st.text(st.sampled_from([" ", "\t", "=", "-", "S", "I", "Z", "E", "0", "9"]), max_size=30),
    st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
bounded = settings(max_examples=200, deadline=None)


@bounded
@given(
    lines=st.lists(reply_line, min_size=1, max_size=12),
    esmtp=st.booleans(),
    code=st.integers(200, 599),
)
def test_never_raises(lines: list[str], esmtp: bool, code: int) -> None:
    reply = Reply(code=code, lines=tuple(lines))
    features = parse_ehlo(reply, esmtp=esmtp)
    assert features.esmtp is esmtp
    assert features.reply is reply
    assert features.server_name in lines[0]
    assert " " not in features.server_name
    assert "\t" not in features.server_name
    if not esmtp:
        assert dict(features.extensions) == {}
    for keyword, parameters in features.extensions.items():
        assert KEYWORD.fullmatch(keyword)
        assert isinstance(parameters, tuple)
        assert all(p and " " not in p and "\t" not in p for p in parameters)
    # The properties built on the extensions must hold up too.
    size = features.max_message_size
    assert size is None or size > 0
    assert all(m == m.upper() for m in features.auth_mechanisms)


keywords = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda k: k.upper() != "AUTH"
)
parameter_words = st.lists(
    st.text(st.characters(exclude_characters=" \t"), min_size=1, max_size=10), max_size=4
)


@bounded
@given(announced=st.dictionaries(keywords, parameter_words, max_size=10))
def test_well_formed_reply_is_read_back(announced: dict[str, list[str]]) -> None:
    # Keywords differing only in case would collapse into one; keep the first, as the
    # parser does.
    expected: dict[str, tuple[str, ...]] = {}
    for keyword, parameters in announced.items():
        expected.setdefault(keyword.upper(), tuple(parameters))
    lines = [" ".join([k, *p]) for k, p in announced.items()]
    features = _ehlo_features("mx.example greets you", *lines)
    assert features.server_name == "mx.example"
    assert dict(features.extensions) == expected
    assert list(features.extensions) == list(expected)
