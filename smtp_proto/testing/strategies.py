"""Hypothesis strategies for what an SMTP client sends and receives.

Use them to test code built on smtp-proto (a transport, a mail queue, a retry policy) with
the whole range of what servers may say and what callers may ask for, not only the cases a
test author thought of. Each strategy's output is checked against the engine by this
package's own tests: valid replies, EHLO replies, addresses, parameters and bodies are
accepted by :class:`smtp_proto.ClientConnection`, hostile replies are refused with
:class:`smtp_proto.RemoteProtocolError`.

This module needs Hypothesis (``pip install smtp-proto[testing]``). A test decorated with
``given`` runs once for each value the strategy draws (a hundred by default):

>>> import smtp_proto
>>> from hypothesis import given
>>> from smtp_proto.testing import strategies
>>> @given(strategies.replies(status_classes=(2, 4, 5)))
... def test_greetings_are_read_whole(reply: bytes) -> None:
...     conn = smtp_proto.ClientConnection()
...     conn.receive_data(reply)
...     assert conn.next_event().reply.raw == reply
>>> test_greetings_are_read_whole()

The examples of the strategies below build on these imports.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from hypothesis import strategies as st

from smtp_proto import Limits

__all__ = [
    "HOSTILE_KINDS",
    "addresses",
    "ehlo_responses",
    "esmtp_parameters",
    "hostile_replies",
    "message_bodies",
    "replies",
]

# Reply text (RFC 5321 section 4.2, textstring, widened to UTF-8 by RFC 6531): HT and
# every printable character. Surrogates are left out since they have no UTF-8 form, and the
# C1 controls since some software takes U+0085 for a line break.
_REPLY_TEXT = st.text(
    st.characters(min_codepoint=0x20, exclude_characters="\x7f", exclude_categories=("Cs", "Cc"))
    | st.just("\t"),
    max_size=40,
)

# RFC 5321 section 4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"); RFC 5321
# section 4.1.2: esmtp-keyword has the same form.
_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_KEYWORD = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_ALPHANUMERIC),
    st.text(_ALPHANUMERIC + "-", max_size=11),
)

# esmtp-value = 1*(%d33-60 / %d62-126): printable ASCII without SP and "=".
_ESMTP_VALUE = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="="),
    min_size=1,
    max_size=20,
)

# Keywords the engine knows, with parameters of the form each RFC gives.
_KNOWN_KEYWORDS = st.sampled_from(
    [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "REQUIRETLS",
        "SIZE",
        "SIZE 0",
        "SIZE 10485760",
        "AUTH PLAIN LOGIN",
        "AUTH SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 XOAUTH2 OAUTHBEARER EXTERNAL",
        "AUTH=LOGIN PLAIN",
    ]
)

# RFC 5322 section 3.2.3: atext, the characters of a dot-atom local part.
_ATEXT = _ALPHANUMERIC + "!#$%&'*+/=?^_`{|}~-"
# Letters from several scripts that the standard library's IDNA 2003 codec converts to
# A-labels, for internationalised local parts and domains.
_UNICODE_LETTERS = "äöüéèçñøåæłžšğαβγδεжзиклмнпр中文日本語例한국"
# Right-to-left letters, for local parts only: IDNA refuses a label that mixes directions.
_RTL_LETTERS = "דהוזאבعربي"


_LABEL = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", max_size=10),
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
)


def _with_line_ends(code: int, texts: list[str]) -> bytes:
    # Lines of one reply: "code-text" CRLF for all but the last, "code text" CRLF last; a
    # last line without text may be the bare code (RFC 5321 section 4.2).
    lines = [f"{code}-{text}\r\n" for text in texts[:-1]]
    last = texts[-1]
    lines.append(f"{code} {last}\r\n" if last else f"{code}\r\n")
    return "".join(lines).encode("utf-8")


@st.composite
def _reply(
    draw: st.DrawFn, status_classes: Collection[int], max_lines: int, exclude: Collection[int]
) -> bytes:
    status_class = draw(st.sampled_from(sorted(status_classes)))
    # Reply-code = %x32-35 %x30-35 %x30-39.
    code = draw(
        st.integers(0, 59)
        .map(lambda rest: status_class * 100 + rest)
        .filter(lambda code: code not in exclude)
    )
    texts = draw(st.lists(_REPLY_TEXT, min_size=1, max_size=max_lines))
    if status_class != 3 and draw(st.booleans()):
        # An enhanced status code of the same class (RFC 3463), as most servers send.
        enhanced = f"{status_class}.{draw(st.integers(0, 999))}.{draw(st.integers(0, 999))}"
        texts[0] = f"{enhanced} {texts[0]}".rstrip(" ")
    return _with_line_ends(code, texts)


def replies(
    *, status_classes: Collection[int] = (2, 3, 4, 5), max_lines: int = 4
) -> st.SearchStrategy[bytes]:
    """Valid server replies (RFC 5321 section 4.2), single or multiline, each as the bytes
    the server sends, CRLFs included: any code of the given classes, text of printable
    ASCII and UTF-8 (RFC 6531), HT, or nothing, sometimes with an enhanced status code:

    >>> @given(strategies.replies(status_classes=(4, 5)))
    ... def test_refusals_are_reported(reply: bytes) -> None:
    ...     conn = smtp_proto.ClientConnection()
    ...     conn.receive_data(reply)
    ...     assert conn.next_event().reply.is_negative
    >>> test_refusals_are_reported()
    """
    if not status_classes or not set(status_classes) <= {2, 3, 4, 5} or max_lines < 1:
        raise ValueError("status_classes must be some of 2, 3, 4 and 5, and max_lines >= 1")
    return _reply(status_classes, max_lines, ())


#: The kinds of :func:`hostile_replies`, each a way a server can break RFC 5321 section 4.2.
HOSTILE_KINDS = (
    "bare-lf",
    "bare-cr",
    "bad-code",
    "mixed-codes",
    "control",
    "too-long",
    "unsolicited",
)


@st.composite
def _hostile_reply(draw: st.DrawFn, kinds: Collection[str]) -> bytes:
    # A valid reply to spoil, never a 421: that may come unprompted, and it ends the
    # session, after which the engine reads nothing more.
    valid = draw(_reply((2, 4, 5), 3, (421,)))
    kind = draw(st.sampled_from(sorted(kinds)))
    if kind == "bare-lf":
        # A bare LF in place of one CRLF (the smuggling and injection vector).
        lines = valid.split(b"\r\n")[:-1]
        index = draw(st.integers(0, len(lines) - 1))
        return b"".join(line + (b"\n" if i == index else b"\r\n") for i, line in enumerate(lines))
    if kind == "bare-cr":
        position = draw(st.integers(3, valid.index(b"\r\n")))
        return (
            valid[:position] + b"\r" + draw(st.sampled_from([b"x", b" ", b"\r"])) + valid[position:]
        )
    if kind == "bad-code":
        # Not %x32-35 %x30-35 %x30-39: a first digit outside 2-5, a second above 5, a
        # missing digit, or no number at all.
        code = draw(st.sampled_from([b"199", b"600", b"260", b"25", b"2x0", b"abc", b""]))
        return code + valid[3:]
    if kind == "mixed-codes":
        # A multiline reply whose code changes from one line to the next.
        other = draw(st.integers(200, 559).filter(lambda c: c % 100 < 60 and c != int(valid[:3])))
        return valid[:3] + b"-first line\r\n" + str(other).encode() + b" second line\r\n"
    if kind == "control":
        control = draw(st.sampled_from([*range(0x09), *range(0x0B, 0x0D), 0x1B, 0x7F]))
        return valid[:4] + bytes([control]) + valid[4:]
    if kind == "too-long":
        # One line longer than the engine's default bound (Limits.max_reply_line_length).
        length = Limits().max_reply_line_length + draw(st.integers(0, 100))
        return valid[:4] + b"x" * length + b"\r\n"
    # A reply nobody asked for, right after a valid one.
    return valid + draw(_reply((2, 4, 5), 2, (421,)))


def hostile_replies(*, kinds: Collection[str] = HOSTILE_KINDS) -> st.SearchStrategy[bytes]:
    """Bytes a server must never send as the answer to one command, such as NOOP, of the
    given :data:`HOSTILE_KINDS`: a bare LF (``"bare-lf"``) or a bare CR (``"bare-cr"``), a
    malformed code (``"bad-code"``), a code that changes within a multiline reply
    (``"mixed-codes"``), a control character (``"control"``), a line over the default
    :class:`~smtp_proto.Limits` (``"too-long"``), or a second reply nobody asked for
    (``"unsolicited"``). The engine answers each with
    :class:`~smtp_proto.RemoteProtocolError`:

    >>> @given(strategies.hostile_replies(kinds=["bare-lf", "bare-cr"]))
    ... def test_garbage_is_refused(data: bytes) -> None:
    ...     conn = smtp_proto.ClientConnection()
    ...     conn.receive_data(data)
    ...     try:
    ...         conn.next_event()
    ...     except smtp_proto.RemoteProtocolError:
    ...         pass
    ...     else:
    ...         raise AssertionError(f"{data!r} was taken for a reply")
    >>> test_garbage_is_refused()
    """
    unknown = set(kinds) - set(HOSTILE_KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be some of {HOSTILE_KINDS}, not {sorted(kinds)!r}")
    return _hostile_reply(kinds)


@st.composite
def _ehlo_response(draw: st.DrawFn) -> bytes:
    hostname = ".".join(draw(st.lists(_LABEL, min_size=1, max_size=3)))
    unknown = st.builds(
        lambda keyword, parameters: " ".join([keyword.upper(), *parameters]),
        _KEYWORD,
        st.lists(_ESMTP_VALUE, max_size=3),
    )
    keywords = draw(st.lists(_KNOWN_KEYWORDS | unknown, max_size=12))
    greeting = draw(_REPLY_TEXT)
    texts = [f"{hostname} {greeting}".rstrip(" "), *keywords]
    return _with_line_ends(250, texts)


def ehlo_responses() -> st.SearchStrategy[bytes]:
    """Positive replies to EHLO (RFC 5321 section 4.1.1.1): the server's name and a text on
    the first line, then keywords the engine knows (PIPELINING, SIZE, AUTH, ... with
    parameters) and unknown ones, each on its own line:

    >>> @given(strategies.ehlo_responses())
    ... def test_capabilities(reply: bytes) -> None:
    ...     conn = smtp_proto.ClientConnection()
    ...     conn.receive_data(b"220 mx.example.org ESMTP\\r\\n")
    ...     conn.next_event()
    ...     conn.ehlo("client.example")
    ...     conn.receive_data(reply)
    ...     assert isinstance(conn.next_event(), smtp_proto.EhloFeatures)
    >>> test_capabilities()
    """
    return _ehlo_response()


@st.composite
def _address(draw: st.DrawFn, internationalized: bool) -> str:
    # RFC 5321 section 4.5.3.1.1: a local part is at most 64 octets; a UTF-8 letter here
    # takes up to 3, so internationalised local parts are kept to 17 characters.
    atom = st.text(_ATEXT, min_size=1, max_size=10)
    atoms = 3
    if internationalized:
        atom = st.text(_ATEXT + _UNICODE_LETTERS + _RTL_LETTERS, min_size=1, max_size=8)
        atoms = 2
    local_part = ".".join(draw(st.lists(atom, min_size=1, max_size=atoms)))
    if draw(st.booleans()):
        # A quoted local part, where spaces and specials may appear (RFC 5321 section 4.1.2).
        quoted = st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\<>'),
            min_size=1,
            max_size=15,
        )
        local_part = f'"{draw(quoted)}"'
    labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
    if internationalized and draw(st.booleans()):
        labels.append(draw(st.text(_UNICODE_LETTERS, min_size=1, max_size=8)))
    domain = ".".join([*labels, draw(st.sampled_from(["example", "com", "org", "test"]))])
    if draw(st.integers(0, 9)) == 0:
        # An address literal (RFC 5321 section 4.1.3).
        domain = f"[192.0.2.{draw(st.integers(0, 255))}]"
    return f"{local_part}@{domain}"


def addresses(internationalized: bool = False) -> st.SearchStrategy[str]:
    """Mailbox addresses (RFC 5321 section 4.1.2): dot-atom or quoted local parts, domains or
    address literals. With *internationalized*, local parts may hold UTF-8 (RFC 6531,
    needing SMTPUTF8) and domains non-ASCII labels (sent as A-labels):

    >>> @given(strategies.addresses(internationalized=True))
    ... def test_any_recipient(address: str) -> None:
    ...     wire, needs_smtputf8 = smtp_proto.encode_address(address, smtputf8_offered=True)
    ...     assert wire.isascii() or needs_smtputf8
    >>> test_any_recipient()
    """
    return _address(internationalized)


def esmtp_parameters() -> st.SearchStrategy[Mapping[str, str | None]]:
    """MAIL or RCPT parameters (RFC 5321 section 4.1.2, esmtp-param) as
    :meth:`smtp_proto.ClientConnection.mail` and ``rcpt`` take them: keywords distinct
    without regard to case, values of printable ASCII or None for a keyword alone:

    >>> @given(strategies.esmtp_parameters())
    ... def test_parameters(parameters: dict[str, str | None]) -> None:
    ...     conn = smtp_proto.ClientConnection()
    ...     conn.receive_data(b"220 mx.example.org ESMTP\\r\\n")
    ...     conn.next_event()
    ...     conn.ehlo("client.example")
    ...     conn.receive_data(b"250 mx.example.org\\r\\n")
    ...     conn.next_event()
    ...     conn.mail("me@example.com", parameters)
    ...     command = conn.data_to_send().splitlines()[-1]  # after the EHLO
    ...     assert len(command.split()) == 2 + len(parameters)
    >>> test_parameters()
    """
    return st.lists(
        st.tuples(_KEYWORD, st.none() | _ESMTP_VALUE),
        max_size=4,
        unique_by=lambda parameter: parameter[0].upper(),
    ).map(dict)


@st.composite
def _message_body(draw: st.DrawFn, eight_bit: bool) -> bytes:
    # Line content: printable ASCII and HT, a leading dot now and then; octets above 127
    # when asked. No NUL (the engine refuses it) and no CR or LF, which are the line ends.
    octets = [0x09, *range(0x20, 0x7F), *(range(0x80, 0x100) if eight_bit else ())]
    line = st.lists(st.sampled_from(octets), max_size=30).map(bytes)
    line = st.tuples(st.sampled_from([b"", b".", b".."]), line).map(b"".join)
    ending = st.sampled_from([b"\r\n", b"\n", b"\r"])
    lines = draw(st.lists(st.tuples(line, ending), max_size=12))
    last = draw(line)
    return b"".join(text + end for text, end in lines) + last


def message_bodies(*, eight_bit: bool = False) -> st.SearchStrategy[bytes]:
    """Message content as callers pass it: lines ending in CRLF, bare LF or bare CR, mixed,
    lines that start with dots or hold only one, with or without a final line end; octets
    above 127 with *eight_bit*. Never NUL. Here each is sent to a
    :class:`~smtp_proto.testing.FakeServer`:

    >>> from hypothesis import settings
    >>> from smtp_proto.testing import FakeServer, serve_loopback
    >>> from smtp_proto.transports.sync import Client
    >>> fake = FakeServer()
    >>> @settings(deadline=None)  # time spent on sockets depends on the machine's load
    ... @given(strategies.message_bodies(eight_bit=True))
    ... def test_send(body: bytes) -> None:
    ...     with Client(host, port, tls=smtp_proto.TlsPolicy.NONE) as client:
    ...         client.send_message("me@example.com", ["you@example.org"], body)
    ...     # Whatever its line ends, every line arrives as it was given.
    ...     assert fake.messages[-1].content.splitlines() == body.splitlines()
    >>> with serve_loopback(fake) as (host, port):  # one server for every example
    ...     test_send()
    """
    return _message_body(eight_bit)
