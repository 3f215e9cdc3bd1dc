"""Tests for smtp_proto._commands: every command line is well formed and nothing the caller
passes can add a line of its own."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from smtp_proto import _commands
from smtp_proto._commands import (
    check_text,
    format_command,
    format_hello,
    format_mail,
    format_plain_rcpts,
    format_rcpt,
)

LIMIT = 512

# Every character the engine calls a control: C0, DEL and C1.
CONTROL_CHARACTERS = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]


def test_all_names_exist() -> None:
    assert sorted(_commands.__all__) == [
        "check_text",
        "format_command",
        "format_hello",
        "format_mail",
        "format_plain_rcpts",
        "format_rcpt",
    ]
    for name in _commands.__all__:
        assert callable(getattr(_commands, name))


# ---------------------------------------------------------------------------------------
# Well-formed commands


@pytest.mark.parametrize(
    ("verb", "domain", "expected"),
    [
        ("EHLO", "client.example", b"EHLO client.example\r\n"),
        ("HELO", "client.example", b"HELO client.example\r\n"),
        ("LHLO", "client.example", b"LHLO client.example\r\n"),
        ("EHLO", "[192.0.2.1]", b"EHLO [192.0.2.1]\r\n"),
        ("EHLO", "[IPv6:2001:db8::1]", b"EHLO [IPv6:2001:db8::1]\r\n"),
        ("EHLO", "bücher.example", "EHLO bücher.example\r\n".encode()),
        ("EHLO", "x", b"EHLO x\r\n"),
    ],
)
def test_format_hello(verb: str, domain: str, expected: bytes) -> None:
    assert format_hello(verb, domain, max_line_length=LIMIT) == expected


@pytest.mark.parametrize(
    ("sender", "parameters", "expected"),
    [
        ("a@b", {}, b"MAIL FROM:<a@b>\r\n"),
        ("", {}, b"MAIL FROM:<>\r\n"),
        ("a@b", {"SIZE": "10", "SMTPUTF8": None}, b"MAIL FROM:<a@b> SIZE=10 SMTPUTF8\r\n"),
        # The mapping's order is the order on the wire.
        ("a@b", {"SMTPUTF8": None, "SIZE": "10"}, b"MAIL FROM:<a@b> SMTPUTF8 SIZE=10\r\n"),
        ("", {"BODY": "8BITMIME"}, b"MAIL FROM:<> BODY=8BITMIME\r\n"),
        ('"john doe"@example.com', {}, b'MAIL FROM:<"john doe"@example.com>\r\n'),
        ('"a\\"b"@example.com', {}, b'MAIL FROM:<"a\\"b"@example.com>\r\n'),
        ('"a\\ b"@example.com', {}, b'MAIL FROM:<"a\\ b"@example.com>\r\n'),
        ("user@[192.0.2.1]", {}, b"MAIL FROM:<user@[192.0.2.1]>\r\n"),
        ("用户@例子.广告", {"SMTPUTF8": None}, "MAIL FROM:<用户@例子.广告> SMTPUTF8\r\n".encode()),
        # Source routes are obsolete but still valid syntax (RFC 5321 section 4.1.2).
        ("@relay.example:a@b", {}, b"MAIL FROM:<@relay.example:a@b>\r\n"),
        # RFC 3461 ENVID is xtext; RFC 4954 AUTH=<> uses angle brackets, both legal values.
        ("a@b", {"ENVID": "QQ+2B314", "AUTH": "<>"}, b"MAIL FROM:<a@b> ENVID=QQ+2B314 AUTH=<>\r\n"),
        ("a@b", {"X-FOO": "~!<>"}, b"MAIL FROM:<a@b> X-FOO=~!<>\r\n"),
        ("a@b", {"x-lower": "v"}, b"MAIL FROM:<a@b> x-lower=v\r\n"),
        ("a@b", {"9X": "ü"}, "MAIL FROM:<a@b> 9X=ü\r\n".encode()),
        # U+00A0 is UTF8-non-ascii, a permitted value character, though not in a domain.
        ("a@b", {"X": "1\u00a0"}, "MAIL FROM:<a@b> X=1\u00a0\r\n".encode()),
    ],
)
def test_format_mail(sender: str, parameters: Mapping[str, str | None], expected: bytes) -> None:
    assert format_mail(sender, parameters, max_line_length=LIMIT) == expected


@pytest.mark.parametrize(
    ("recipient", "parameters", "expected"),
    [
        ("a@b", {}, b"RCPT TO:<a@b>\r\n"),
        ("Postmaster", {}, b"RCPT TO:<Postmaster>\r\n"),
        (
            "a@b",
            {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;a@b"},
            b"RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b\r\n",
        ),
        ('"john doe"@example.com', {}, b'RCPT TO:<"john doe"@example.com>\r\n'),
        ("jörg@müller.example", {}, "RCPT TO:<jörg@müller.example>\r\n".encode()),
    ],
)
def test_format_rcpt(recipient: str, parameters: Mapping[str, str | None], expected: bytes) -> None:
    assert format_rcpt(recipient, parameters, max_line_length=LIMIT) == expected


@pytest.mark.parametrize(
    ("verb", "arguments", "expected"),
    [
        ("NOOP", [], b"NOOP\r\n"),
        ("QUIT", (), b"QUIT\r\n"),
        ("VRFY", ["alice"], b"VRFY alice\r\n"),
        ("HELP", ["topic text"], b"HELP topic text\r\n"),
        ("XCLIENT", ["NAME=x", "ADDR=1.2.3.4"], b"XCLIENT NAME=x ADDR=1.2.3.4\r\n"),
        ("BDAT", ("1000", "LAST"), b"BDAT 1000 LAST\r\n"),
        ("AUTH", ["PLAIN", "AGFsaWNlAHNlY3JldA=="], b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        # Case is kept as the caller wrote it; verbs are case-insensitive (RFC 5321 2.4).
        ("noop", [], b"noop\r\n"),
        ("X-Custom2", ["ü"], "X-Custom2 ü\r\n".encode()),
    ],
)
def test_format_command(verb: str, arguments: Sequence[str], expected: bytes) -> None:
    assert format_command(verb, arguments, max_line_length=LIMIT) == expected


def test_check_text_returns_its_argument() -> None:
    value = "plain text, with spaces and ünïcode"
    assert check_text(value, "value") is value
    assert check_text("", "value") == ""


# ---------------------------------------------------------------------------------------
# Malformed arguments


@pytest.mark.parametrize(
    ("verb", "domain"),
    [
        ("ehlo", "client.example"),  # the three verbs are matched exactly
        ("MAIL", "client.example"),
        ("", "client.example"),
        ("EHLO ", "client.example"),
        ("EHLO", ""),
        ("EHLO", "client example"),
        ("EHLO", " client.example"),
        ("EHLO", "client.example "),
        ("EHLO", "client\u00a0example"),  # no-break space: whitespace too
        ("EHLO", "client\u3000example"),
        ("EHLO", "client\u2028example"),  # line separator
    ],
)
def test_format_hello_refuses(verb: str, domain: str) -> None:
    with pytest.raises(ValueError, match=r"^(verb|domain) "):
        format_hello(verb, domain, max_line_length=LIMIT)


# Addresses that must be refused as sender and as recipient. The first ones are the
# injections this module exists to stop.
BAD_ADDRESSES = [
    "a@b> SIZE=1",
    "a@b>\r\nRCPT TO:<c",
    "a@b>\nRCPT TO:<c",
    "<a@b>",
    "a@b>",
    "<a@b",
    "a b@c",
    "a@b c",
    "a@b ",
    " a@b",
    '"a b"c@d',  # the quoted part must be the whole local part
    '"a b"',  # ... and be followed by a domain
    '"a b"@c d',  # a space after the quoted local part
    '"a b',  # unterminated quote
    '"a<b"@c',  # no angle bracket even inside quotes
    '"a>b"@c',
    '"a b\\"@c',  # the closing quote is escaped, so the quote never ends
    'x"a b"@c',  # not leading
]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_format_mail_refuses_address(address: str) -> None:
    with pytest.raises(ValueError, match="sender"):
        format_mail(address, {}, max_line_length=LIMIT)


@pytest.mark.parametrize("address", [*BAD_ADDRESSES, ""])
def test_format_rcpt_refuses_address(address: str) -> None:
    with pytest.raises(ValueError, match="recipient"):
        format_rcpt(address, {}, max_line_length=LIMIT)


def test_empty_recipient_message() -> None:
    with pytest.raises(ValueError, match=r"^recipient must not be empty$"):
        format_rcpt("", {}, max_line_length=LIMIT)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"": "1"}, "keyword"),
        ({"-SIZE": "1"}, "keyword"),
        ({"SI ZE": "1"}, "keyword"),
        ({"SIZE=1": None}, "keyword"),
        ({"SIZE_1": None}, "keyword"),
        ({"SÍZE": "1"}, "keyword"),
        ({"\u212a": None}, "keyword"),  # Kelvin sign, which case-folds to "k"
        ({"SIZE": ""}, "value"),
        ({"SIZE": "1 2"}, "value"),
        ({"SIZE": "1=2"}, "value"),
        ({"SIZE": "1", "size": "2"}, "twice"),
        ({"BODY": "8BITMIME", "Body": None}, "twice"),
    ],
)
def test_parameters_refused(parameters: Mapping[str, str | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_mail("a@b", parameters, max_line_length=LIMIT)
    with pytest.raises(ValueError, match=message):
        format_rcpt("a@b", parameters, max_line_length=LIMIT)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"-SIZE": "1"}, "ESMTP parameter keyword '-SIZE' is malformed"),
        (
            {"SIZE": "1 2"},
            (
                "value of ESMTP parameter 'SIZE' is empty or contains a space, '=' or a "
                "control character"
            ),
        ),
        ({"SIZE": "1", "size": "2"}, "ESMTP parameter 'size' is given twice"),
    ],
)
def test_parameter_messages_name_the_parameter(
    parameters: Mapping[str, str | None], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        format_mail("a@b", parameters, max_line_length=LIMIT)


@pytest.mark.parametrize(
    ("verb", "arguments", "message"),
    [
        ("", [], "verb"),
        ("1NOOP", [], "verb"),
        ("-X", [], "verb"),
        ("NO OP", [], "verb"),
        ("NOOP ", [], "verb"),
        ("NO_OP", [], "verb"),
        ("NOÖP", [], "verb"),
        ("VRFY", [""], r"arguments\[0\]"),
        ("VRFY", ["a", ""], r"arguments\[1\]"),
    ],
)
def test_format_command_refuses(verb: str, arguments: Sequence[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_command(verb, arguments, max_line_length=LIMIT)


# Each way of putting a caller-supplied string into a command, so that every argument
# position of every function is tried with every hostile character: how to place it, a
# value valid there (so only what is added to it is wrong), and the name that the error
# message must give.
Placement = Callable[[str], object]
PLACEMENTS: dict[str, tuple[Placement, str, str]] = {
    "hello verb": (
        lambda s: format_hello(s, "client.example", max_line_length=LIMIT),
        "EHLO",
        "verb",
    ),
    "hello domain": (
        lambda s: format_hello("EHLO", s, max_line_length=LIMIT),
        "client.example",
        "domain",
    ),
    "mail sender": (lambda s: format_mail(s, {}, max_line_length=LIMIT), "a@b", "sender"),
    "mail keyword": (
        lambda s: format_mail("a@b", {s: "1"}, max_line_length=LIMIT),
        "SIZE",
        "ESMTP parameter keyword",
    ),
    "mail value": (
        lambda s: format_mail("a@b", {"SIZE": s}, max_line_length=LIMIT),
        "10",
        "value of ESMTP parameter 'SIZE'",
    ),
    "rcpt recipient": (lambda s: format_rcpt(s, {}, max_line_length=LIMIT), "a@b", "recipient"),
    "rcpt keyword": (
        lambda s: format_rcpt("a@b", {s: None}, max_line_length=LIMIT),
        "NOTIFY",
        "ESMTP parameter keyword",
    ),
    "rcpt value": (
        lambda s: format_rcpt("a@b", {"NOTIFY": s}, max_line_length=LIMIT),
        "NEVER",
        "value of ESMTP parameter 'NOTIFY'",
    ),
    "command verb": (lambda s: format_command(s, [], max_line_length=LIMIT), "NOOP", "verb"),
    "command first argument": (
        lambda s: format_command("VRFY", [s], max_line_length=LIMIT),
        "alice",
        r"arguments\[0\]",
    ),
    "command later argument": (
        lambda s: format_command("XCLIENT", ["NAME=x", s], max_line_length=LIMIT),
        "ADDR=192.0.2.1",
        r"arguments\[1\]",
    ),
    "check_text": (lambda s: check_text(s, "the value"), "text", "the value"),
}


@pytest.mark.parametrize("position", list(PLACEMENTS))
def test_base_values_are_valid(position: str) -> None:
    place, base, _ = PLACEMENTS[position]
    place(base)


def _variants(base: str, character: str) -> list[str]:
    middle = len(base) // 2
    return [
        character + base,
        base[:middle] + character + base[middle:],
        base + character,
        base + character + base,  # as if smuggling a second command
        character,
    ]


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("position", list(PLACEMENTS))
def test_control_character_refused_everywhere(position: str, character: str) -> None:
    place, base, name = PLACEMENTS[position]
    for value in _variants(base, character):
        with pytest.raises(ValueError, match=f"^{name} ") as caught:
            place(value)
        # Exactly ValueError: a UnicodeEncodeError would mean the check came too late.
        assert type(caught.value) is ValueError


# Written with chr(): some tools cannot hold a lone surrogate in their own source model.
SURROGATES = [chr(0xD800), chr(0xDCFF), chr(0xDFFF)]


@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("position", list(PLACEMENTS))
def test_lone_surrogate_refused_everywhere(position: str, surrogate: str) -> None:
    place, base, name = PLACEMENTS[position]
    for value in _variants(base, surrogate):
        with pytest.raises(ValueError, match=f"^{name} ") as caught:
            place(value)
        assert type(caught.value) is ValueError


def test_check_text_message_names_character_and_index() -> None:
    with pytest.raises(
        ValueError, match=r"^sender contains a control character, U\+000D, at index 3$"
    ):
        check_text("a@b\r\nRCPT TO:<c>", "sender")
    with pytest.raises(ValueError, match=r"^x contains a control character, U\+0085, at index 0$"):
        check_text("\x85", "x")
    with pytest.raises(ValueError, match=r"^x contains a lone surrogate, U\+DCFF, at index 1$"):
        check_text("a\udcff", "x")


# ---------------------------------------------------------------------------------------
# Wrong types


@pytest.mark.parametrize(
    ("position", "wrong"),
    [
        (position, wrong)
        for position in PLACEMENTS
        for wrong in [None, b"a@b", 1, ("a@b",)]
        # None is how a parameter without a value is written.
        if not (wrong is None and position.endswith(" value"))
    ],
)
def test_non_str_refused_everywhere(position: str, wrong: Any) -> None:
    place, _, name = PLACEMENTS[position]
    # A parameter's value may also be None, and its message says so.
    message = f"^{name} must be a str( or None)?, not {type(wrong).__name__}$"
    with pytest.raises(TypeError, match=message):
        place(wrong)


# Containers of the wrong kind. A str is the dangerous one: it is a Sequence[str] to the
# type checker, so only the runtime check stops "VRFY a l i c e".
WRONG_PARAMETERS: list[Any] = [[("SIZE", "1")], None, "SIZE=1"]
WRONG_ARGUMENTS: list[Any] = ["alice", b"alice", {"alice"}, (a for a in ["alice"]), None]


@pytest.mark.parametrize("parameters", WRONG_PARAMETERS, ids=repr)
def test_parameters_must_be_a_mapping(parameters: Any) -> None:
    message = f"^parameters must be a mapping, not {type(parameters).__name__}$"
    with pytest.raises(TypeError, match=message):
        format_mail("a@b", parameters, max_line_length=LIMIT)
    with pytest.raises(TypeError, match=message):
        format_rcpt("a@b", parameters, max_line_length=LIMIT)


@pytest.mark.parametrize("arguments", WRONG_ARGUMENTS, ids=lambda a: type(a).__name__)
def test_arguments_must_be_a_sequence(arguments: Any) -> None:
    message = (
        f"^arguments must be a sequence of str such as a list, not {type(arguments).__name__}$"
    )
    with pytest.raises(TypeError, match=message):
        format_command("VRFY", arguments, max_line_length=LIMIT)


# ---------------------------------------------------------------------------------------
# Error messages: they name the argument and never quote much of it


@pytest.mark.parametrize("position", list(PLACEMENTS))
def test_long_bad_value_is_not_echoed(position: str) -> None:
    place, _, name = PLACEMENTS[position]
    hostile = "A" * 5000 + " <>\r\n" + "B" * 5000
    with pytest.raises(ValueError, match=f"^{name} ") as caught:
        place(hostile)
    message = str(caught.value)
    assert len(message) < 200
    assert "A" * 51 not in message
    assert "B" not in message


# repr() turns each of these into several characters; the quotation must stay short anyway.
ESCAPED = ["\x7f" * 100, chr(0xDCFF) * 100, "\U000e0001" * 100 + "\x00"]


@pytest.mark.parametrize("hostile", ESCAPED, ids=["DEL", "surrogate", "tag"])
@pytest.mark.parametrize("position", list(PLACEMENTS))
def test_escaped_quotation_is_short(position: str, hostile: str) -> None:
    place, _, name = PLACEMENTS[position]
    with pytest.raises(ValueError, match=f"^{name} ") as caught:
        place(hostile)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("verb", "quoted"),
    [
        # A quotation of up to 40 characters is shown whole...
        ("V" * 37 + "!", "'" + "V" * 37 + "!'"),
        # ... a longer one is cut there and says so, whether the value is long or only its
        # escaped form is.
        ("V" * 38 + "!", "'" + "V" * 38 + "!..."),
        ("\u200b" * 7, "'" + "\\u200b" * 6 + "\\u2..."),
    ],
)
def test_quotations_are_cut_at_40_characters(verb: str, quoted: str) -> None:
    message = f"verb {quoted} is not a letter followed by letters, digits or '-'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        format_command(verb, [], max_line_length=LIMIT)


@pytest.mark.parametrize(
    "parameters",
    [
        {"K" * 5000: None, "k" * 5000: None},  # a valid but huge keyword, twice
        {"K" * 5000: ""},
        {"K" * 5000: 1},
    ],
    ids=["twice", "empty value", "int value"],
)
def test_long_keyword_is_not_echoed(parameters: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        format_mail("a@b", parameters, max_line_length=LIMIT)
    assert len(str(caught.value)) < 200


def test_secret_values_are_never_echoed() -> None:
    secret = "c2VjcmV0LXBhc3N3b3Jk"
    with pytest.raises(ValueError, match=r"^arguments\[1\] ") as caught:
        format_command("AUTH", ["PLAIN", secret + "\r\n"], max_line_length=LIMIT)
    assert secret not in str(caught.value)
    with pytest.raises(ValueError, match=r"^value of ESMTP parameter 'AUTH' ") as caught:
        format_mail("a@b", {"AUTH": secret + " x"}, max_line_length=LIMIT)
    assert secret not in str(caught.value)


# ---------------------------------------------------------------------------------------
# The command line limit, counted in octets including CRLF


LengthCase = Callable[[int], bytes]
LENGTH_CASES: dict[str, tuple[LengthCase, bytes]] = {
    "hello": (
        lambda n: format_hello("EHLO", "client.example", max_line_length=n),
        b"EHLO client.example\r\n",
    ),
    "mail": (
        lambda n: format_mail("a@b", {"SIZE": "10", "SMTPUTF8": None}, max_line_length=n),
        b"MAIL FROM:<a@b> SIZE=10 SMTPUTF8\r\n",
    ),
    "rcpt": (
        lambda n: format_rcpt("a@b", {"NOTIFY": "NEVER"}, max_line_length=n),
        b"RCPT TO:<a@b> NOTIFY=NEVER\r\n",
    ),
    "command": (lambda n: format_command("NOOP", [], max_line_length=n), b"NOOP\r\n"),
    # Multi-byte UTF-8: the limit is in octets, not characters.
    "hello utf-8": (
        lambda n: format_hello("EHLO", "例子.广告", max_line_length=n),
        "EHLO 例子.广告\r\n".encode(),
    ),
    "mail utf-8": (
        lambda n: format_mail("€€€€€€€€€€@b", {"SMTPUTF8": None}, max_line_length=n),
        "MAIL FROM:<€€€€€€€€€€@b> SMTPUTF8\r\n".encode(),
    ),
    "rcpt utf-8": (
        lambda n: format_rcpt("\U0001f4e7@b", {}, max_line_length=n),
        "RCPT TO:<\U0001f4e7@b>\r\n".encode(),
    ),
    "command utf-8": (
        lambda n: format_command("HELP", ["ü" * 20], max_line_length=n),
        ("HELP " + "ü" * 20 + "\r\n").encode(),
    ),
}


@pytest.mark.parametrize("case", list(LENGTH_CASES))
def test_line_exactly_at_limit(case: str) -> None:
    build, expected = LENGTH_CASES[case]
    assert build(len(expected)) == expected


@pytest.mark.parametrize("case", list(LENGTH_CASES))
def test_line_one_past_limit(case: str) -> None:
    build, expected = LENGTH_CASES[case]
    verb = expected.split()[0].decode()
    message = (
        f"{verb} command line is {len(expected)} octets, longer than the limit of "
        f"{len(expected) - 1} (RFC 5321 section 4.5.3.1.4)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build(len(expected) - 1)


def test_octets_not_characters_are_counted() -> None:
    # 10 characters but 30 octets: a limit that counted characters would let this through.
    line = "RCPT TO:<€€€€€€€€€€@b>\r\n"
    assert len(line) < len(line.encode())
    with pytest.raises(ValueError, match="octets"):
        format_rcpt("€€€€€€€€€€@b", {}, max_line_length=len(line))


def test_default_limit_with_long_address() -> None:
    # RFC 5321 section 4.5.3.1.3: a path may be 256 octets; that still fits in 512.
    address = "a" * 64 + "@" + "b" * 189
    assert len(format_rcpt(address, {}, max_line_length=LIMIT)) <= LIMIT
    with pytest.raises(ValueError, match="limit of 512"):
        format_rcpt("a" * 600 + "@b", {}, max_line_length=LIMIT)


# ---------------------------------------------------------------------------------------
# Properties: whatever the caller passes, nothing but one line reaches the wire

# Plain text biased towards the characters that matter here, plus every code point
# (surrogates included) now and then.
INTERESTING = [*'\r\n\x00\t \x7f\x85\u2028<>="\\@:[]-', chr(0xDCFF)]
hostile_text = st.text(
    st.sampled_from(INTERESTING)
    | st.characters(codec="ascii")
    | st.characters(exclude_categories=()),
    max_size=40,
)
parameter_maps = st.dictionaries(
    st.sampled_from(["SIZE", "BODY", "size", "X-1"]) | hostile_text,
    st.none() | hostile_text,
    max_size=4,
)
bounded = settings(max_examples=200, deadline=None)


def _assert_single_line(line: bytes) -> None:
    assert line.endswith(b"\r\n")
    body = line[:-2]
    assert not any(octet < 0x20 or octet == 0x7F for octet in body)
    # Decoding must succeed and yield no C1 control either.
    assert not any(0x80 <= ord(c) <= 0x9F for c in body.decode("utf-8"))


def _run(call: Callable[[], bytes]) -> bytes | None:
    """The line *call* builds, or None when it refuses its arguments as it should."""
    try:
        line = call()
    except (ValueError, TypeError) as error:
        refusal = error
    else:
        # Shown by --hypothesis-show-statistics: the properties must see both outcomes.
        event("accepted")
        return line
    event(f"refused with {type(refusal).__name__}")
    # Nothing more specific (UnicodeEncodeError) and no long quotation of the input.
    assert type(refusal) in (ValueError, TypeError)
    assert len(str(refusal)) < 200
    return None


@bounded
@given(verb=st.sampled_from(["EHLO", "HELO", "LHLO"]) | hostile_text, domain=hostile_text)
def test_property_hello(verb: str, domain: str) -> None:
    line = _run(lambda: format_hello(verb, domain, max_line_length=LIMIT))
    if line is not None:
        _assert_single_line(line)
        assert line.decode().split(" ") == [verb, domain + "\r\n"]


@bounded
@given(sender=hostile_text, parameters=parameter_maps)
def test_property_mail(sender: str, parameters: dict[str, str | None]) -> None:
    line = _run(lambda: format_mail(sender, parameters, max_line_length=LIMIT))
    if line is not None:
        _assert_single_line(line)
        text = line.decode()
        # The address ends where the caller's address ends: nothing escaped the brackets.
        assert text.startswith(f"MAIL FROM:<{sender}>")
        assert text.index(">") == len("MAIL FROM:<") + len(sender)


@bounded
@given(recipient=hostile_text, parameters=parameter_maps)
def test_property_rcpt(recipient: str, parameters: dict[str, str | None]) -> None:
    line = _run(lambda: format_rcpt(recipient, parameters, max_line_length=LIMIT))
    if line is not None:
        _assert_single_line(line)
        text = line.decode()
        assert text.index(">") == len("RCPT TO:<") + len(recipient)
        # One SP-separated word per parameter after the path.
        assert len(text[text.index(">") + 1 :].split(" ")) == len(parameters) + 1


@bounded
@given(
    verb=st.sampled_from(["NOOP", "VRFY", "HELP", "X-Custom"]) | hostile_text,
    arguments=st.lists(hostile_text, max_size=4),
    max_line_length=st.integers(min_value=1, max_value=600),
)
def test_property_command(verb: str, arguments: list[str], max_line_length: int) -> None:
    line = _run(lambda: format_command(verb, arguments, max_line_length=max_line_length))
    if line is not None:
        _assert_single_line(line)
        assert len(line) <= max_line_length
        assert line.decode() == " ".join([verb, *arguments]) + "\r\n"


@bounded
@given(value=st.one_of(hostile_text, st.binary(max_size=20), st.none(), st.integers()))
def test_property_check_text(value: Any) -> None:
    try:
        assert check_text(value, "value") is value
    except TypeError:
        assert not isinstance(value, str)
    except ValueError:
        assert isinstance(value, str)
    else:
        _assert_single_line(value.encode() + b"\r\n")


# ---------------------------------------------------------------------------------------
# The shortcut for a plain recipient without parameters builds what the general path builds


def _outcome(call: Callable[[], bytes]) -> tuple[str, object]:
    try:
        return ("line", call())
    except (TypeError, ValueError) as exc:
        return (type(exc).__name__, str(exc))


# Plain addresses, every character that would make one not plain, and lengths around the
# limit, so both sides of every test in the shortcut are reached.
_ADDRESS_CHARACTERS = st.sampled_from(
    [*"aZ09.@!#;=?~-_", " ", '"', "<", ">", "\\", "\r", "\n", "\x00", "\x7f", "é", "\ud800"]
)


@settings(max_examples=500)
@given(
    address=st.one_of(
        st.text(_ADDRESS_CHARACTERS, max_size=30),
        st.text(max_size=30),
        st.integers(400, 520).map(lambda n: "a" * n + "@b"),
    ),
    limit=st.sampled_from([512, 40, 13, 12]),
)
def test_plain_recipient_shortcut_matches_the_general_path(address: str, limit: int) -> None:
    # A mapping that is not a dict takes the general path, with the same (empty) parameters.
    general = _outcome(lambda: format_rcpt(address, MappingProxyType({}), max_line_length=limit))
    shortcut = _outcome(lambda: format_rcpt(address, {}, max_line_length=limit))
    event("plain" if _commands._PLAIN_ADDRESS.fullmatch(address) else "not plain")
    event(general[0])
    assert shortcut == general


def test_plain_recipient_shortcut_keeps_the_length_check() -> None:
    # 9 + 3 + 3 octets: "RCPT TO:<" "a@b" ">\r\n" is 15.
    assert format_rcpt("a@b", {}, max_line_length=15) == b"RCPT TO:<a@b>\r\n"
    with pytest.raises(ValueError, match=r"^RCPT command line is 15 octets, longer than"):
        format_rcpt("a@b", {}, max_line_length=14)


def _general_rcpt(address: str, limit: int) -> tuple[str, object]:
    return _outcome(lambda: format_rcpt(address, MappingProxyType({}), max_line_length=limit))


@settings(max_examples=500)
@given(
    addresses=st.lists(
        st.one_of(
            st.text(_ADDRESS_CHARACTERS, max_size=12),
            st.text(max_size=12),
            st.integers(490, 520).map(lambda n: "a" * n + "@b"),
        ),
        min_size=1,
        max_size=6,
    ),
    limit=st.sampled_from([512, 40, 16, 15, 14]),
)
def test_plain_recipients_at_once_match_one_by_one(addresses: list[str], limit: int) -> None:
    # The lines are those format_rcpt's general path builds, and None comes exactly when
    # some address is not plain or some line is too long: the caller then formats them one
    # by one, which refuses what must be refused.
    together = format_plain_rcpts(addresses, max_line_length=limit)
    one_by_one = [_general_rcpt(address, limit) for address in addresses]
    all_plain = all(_commands._PLAIN_ADDRESS.fullmatch(a) for a in addresses)
    event("together" if together is not None else "one by one")
    if together is None:
        assert not all_plain or any(kind != "line" for kind, _ in one_by_one)
    else:
        assert all_plain
        assert [("line", line) for line in together] == one_by_one


def test_plain_recipients_at_once_take_only_str() -> None:
    class Address(str):
        pass

    assert format_plain_rcpts([Address("a@b")], max_line_length=LIMIT) is None
    assert format_plain_rcpts(["a@b", Address("c@d")], max_line_length=LIMIT) is None
    assert format_plain_rcpts([b"a@b"], max_line_length=LIMIT) is None
    assert format_plain_rcpts([], max_line_length=LIMIT) is None
    # LF joins the addresses for the check, so one holding its own must still be refused.
    assert format_plain_rcpts(["a@b\nRCPT TO:<c@d"], max_line_length=LIMIT) is None
    assert format_plain_rcpts(["a@b", "\n"], max_line_length=LIMIT) is None
    assert format_plain_rcpts(["a@b", "c@d"], max_line_length=LIMIT) == [
        b"RCPT TO:<a@b>\r\n",
        b"RCPT TO:<c@d>\r\n",
    ]
