"""Validation and encoding of the command lines the client sends.

SMTP is a line protocol: the server splits what it reads at CRLF, and words at SP. Any caller
text that reaches the wire unchecked can therefore end a command early and start another one
(a sender of ``"a@b>\\r\\nRCPT TO:<c"`` smuggles a recipient in). Every command line the engine
produces is built here, and every piece of caller text is checked before a single byte is
made, so that injection is impossible by construction rather than by care at each call site.

Each ``format_*`` function returns the whole line, CRLF included, as UTF-8 octets, or raises
:class:`ValueError` (a malformed argument) or :class:`TypeError` (an argument that is not a
``str``). Whether non-ASCII text may be sent at all (SMTPUTF8, RFC 6531) is a question of the
session's state and is decided by the caller of these functions, not here.

Checks are regular-expression matches over the whole argument, never Python loops over its
characters, so the cost of a long hostile argument stays small. Error messages name the
argument and show at most a short excerpt of it; values that may carry secrets (the arguments
of a generic command, such as an AUTH initial response, and ESMTP parameter values) are never
echoed at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import cast

__all__ = [
    "check_text",
    "format_command",
    "format_hello",
    "format_mail",
    "format_plain_rcpts",
    "format_rcpt",
]

# C0 controls (CR, LF and NUL among them), DEL and the C1 controls (NEL, U+0085, is a line
# break to some software). Lone surrogates, which Python strings can hold (for example after
# a ``surrogateescape`` decode) but UTF-8 cannot encode, are refused by the same scan so that
# encoding a checked string can never fail.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

# RFC 5321 section 4.1.1.1: the domain of EHLO/HELO (and LHLO, RFC 2033 section 4.1) is a
# single word, a domain name or an address literal such as "[IPv6:2001:db8::1]". Any kind of
# whitespace would split it into two words.
_HELLO_DOMAIN = re.compile(r"\S+")

_HELLO_VERBS = frozenset({"EHLO", "HELO", "LHLO"})

# A sender or recipient goes between "<" and ">" (RFC 5321 section 4.1.2, Path), so neither
# may appear inside it, and the server splits the command at SP, so no space either. The one
# place RFC 5321 lets a space appear is a quoted local part (Quoted-string, with
# quoted-pairSMTP escapes), as in '"john doe"@example.com'. Full address syntax is not
# checked: that is the server's business, and refusing odd but harmless addresses here would
# only stop mail that the server might accept.
_ADDRESS = re.compile(r'(?:"(?:[^"\\<>]|\\[^<>])*"@)?[^ <>]*')

# An address that every check above accepts as it is: printable ASCII without SP, '"',
# '<' or '>'. Most addresses are such, and skip the separate checks (the others take them).
_PLAIN_ADDRESS = re.compile(r"[!#-;=?-~]+")
# Plain addresses joined by LF: one match checks a whole list (once the LFs are counted).
_PLAIN_ADDRESSES = re.compile(r"[!#-;=?-~]+(?:\n[!#-;=?-~]+)*")

# "RCPT TO:<" and ">" CRLF around the address.
_RCPT_FRAME_LENGTH = 12

# RFC 5321 section 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")

# RFC 5321 section 4.1.2: esmtp-value = 1*(%d33-60 / %d62-126), any printable ASCII but "=";
# RFC 6531 section 3.3 adds UTF8-non-ascii. Controls and surrogates are left out of the
# non-ASCII range too (the ASCII range already excludes SP, so the value is one word).
_ESMTP_VALUE = re.compile("[\x21-\x3c\x3e-\x7e\u00a0-\ud7ff\ue000-\U0010ffff]+")

# RFC 5321 section 4.1.1 writes verbs as letters; extension verbs (RFC 5321 section 4.1.5,
# "X" commands, XCLIENT and the like) may add digits and hyphens after the first letter.
# Case is left as given: verbs are case-insensitive (section 2.4), so there is no need to
# rewrite what the caller chose.
_VERB = re.compile(r"[A-Za-z][A-Za-z0-9-]*")

# How much of a bad argument an error message may show.
_EXCERPT_LENGTH = 40


def _excerpt(value: str) -> str:
    """A short, printable quotation of *value* for an error message."""
    # repr() escapes anything unprintable, and may make each character up to ten long
    # ("\U0001f4e7"), so the bound applies to the quotation, not to the characters quoted.
    shown = repr(value[:_EXCERPT_LENGTH])
    if len(value) > _EXCERPT_LENGTH or len(shown) > _EXCERPT_LENGTH:
        return shown[:_EXCERPT_LENGTH] + "..."
    return shown


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def check_text(value: object, what: str) -> str:
    """Return *value* if it holds no character that must never reach the wire.

    Refuses C0 controls (U+0000 to U+001F, which include CR, LF, NUL and TAB), DEL (U+007F),
    C1 controls (U+0080 to U+009F) and lone surrogates, naming the argument as *what*. The
    message gives the offending character and its index, never the value itself, so it is
    safe for text that may be secret.

    :raises TypeError: *value* is not a ``str``.
    :raises ValueError: *value* holds such a character.
    """
    text = _require_str(value, what)
    found = _FORBIDDEN.search(text)
    if found is not None:
        kind = "a lone surrogate" if found.group() >= "\ud800" else "a control character"
        raise ValueError(
            f"{what} contains {kind}, U+{ord(found.group()):04X}, at index {found.start()}"
        )
    return text


def _finish(line: str, verb: str, max_line_length: int) -> bytes:
    """Encode *line* with its CRLF and enforce the command line limit.

    RFC 5321 section 4.5.3.1.4 counts the line in octets, CRLF included, so the check comes
    after encoding: one non-ASCII character may be up to four octets.
    """
    encoded = line.encode("utf-8") + b"\r\n"
    if len(encoded) > max_line_length:
        raise ValueError(
            f"{verb} command line is {len(encoded)} octets, longer than the limit of "
            f"{max_line_length} (RFC 5321 section 4.5.3.1.4)"
        )
    return encoded


def _check_address(value: object, what: str) -> str:
    address = check_text(value, what)
    if _ADDRESS.fullmatch(address) is None:
        raise ValueError(
            f"{what} {_excerpt(address)} contains '<', '>' or a space outside a quoted local part"
        )
    return address


def _format_parameters(parameters: Mapping[str, str | None]) -> str:
    """The ESMTP parameters of MAIL or RCPT (RFC 5321 section 4.1.2, Mail-parameters and
    Rcpt-parameters), each preceded by its SP, in the mapping's order."""
    # The exact-type test first: isinstance against an ABC is slow, and this runs per command.
    if type(parameters) is not dict and not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a mapping, not {type(parameters).__name__}")
    if not parameters:
        return ""
    words: list[str] = []
    seen: set[str] = set()
    for keyword, value in parameters.items():
        _require_str(keyword, "ESMTP parameter keyword")
        if _ESMTP_KEYWORD.fullmatch(keyword) is None:
            raise ValueError(f"ESMTP parameter keyword {_excerpt(keyword)} is malformed")
        # Keywords are case-insensitive; "SIZE" and "size" in one mapping would send the
        # parameter twice, which servers refuse or resolve unpredictably.
        folded = keyword.upper()
        if folded in seen:
            raise ValueError(f"ESMTP parameter {_excerpt(keyword)} is given twice")
        seen.add(folded)
        if value is None:
            words.append(" " + keyword)
            continue
        if not isinstance(value, str):
            raise TypeError(
                f"value of ESMTP parameter {_excerpt(keyword)} must be a str or None, "
                f"not {type(value).__name__}"
            )
        if _ESMTP_VALUE.fullmatch(value) is None:
            raise ValueError(
                f"value of ESMTP parameter {_excerpt(keyword)} is empty or contains a "
                "space, '=' or a control character"
            )
        words.append(f" {keyword}={value}")
    return "".join(words)


def format_hello(verb: str, domain: str, *, max_line_length: int) -> bytes:
    """Build ``EHLO``, ``HELO`` or ``LHLO`` with the client's *domain*.

    >>> format_hello("EHLO", "client.example", max_line_length=512)
    b'EHLO client.example\\r\\n'
    """
    _require_str(verb, "verb")
    if verb not in _HELLO_VERBS:
        raise ValueError(f"verb must be 'EHLO', 'HELO' or 'LHLO', not {_excerpt(verb)}")
    check_text(domain, "domain")
    if _HELLO_DOMAIN.fullmatch(domain) is None:
        raise ValueError(f"domain {_excerpt(domain)} is empty or contains whitespace")
    return _finish(f"{verb} {domain}", verb, max_line_length)


def format_mail(
    sender: str, parameters: Mapping[str, str | None], *, max_line_length: int
) -> bytes:
    """Build ``MAIL FROM:<sender>`` with its ESMTP parameters.

    An empty *sender* is the null reverse-path of bounces (RFC 5321 section 4.5.5). A
    parameter whose value is ``None`` is sent as its keyword alone.

    >>> format_mail("a@b", {"SIZE": "10", "SMTPUTF8": None}, max_line_length=512)
    b'MAIL FROM:<a@b> SIZE=10 SMTPUTF8\\r\\n'
    """
    address = _check_address(sender, "sender")
    return _finish(
        f"MAIL FROM:<{address}>{_format_parameters(parameters)}", "MAIL", max_line_length
    )


def format_rcpt(
    recipient: str, parameters: Mapping[str, str | None], *, max_line_length: int
) -> bytes:
    """Build ``RCPT TO:<recipient>`` with its ESMTP parameters.

    Unlike the sender, a recipient is never empty (RFC 5321 section 4.1.1.3, Forward-path).

    >>> format_rcpt("a@b", {}, max_line_length=512)
    b'RCPT TO:<a@b>\\r\\n'
    """
    # The common case, a plain address without parameters, built at once: the same line
    # the general path builds (the tests compare the two on arbitrary input).
    if (
        type(recipient) is str
        and type(parameters) is dict
        and not parameters
        and _PLAIN_ADDRESS.fullmatch(recipient) is not None
    ):
        line = b"RCPT TO:<" + recipient.encode("ascii") + b">\r\n"
        if len(line) <= max_line_length:
            return line
    address = _check_address(recipient, "recipient")
    if not address:
        raise ValueError("recipient must not be empty")
    return _finish(f"RCPT TO:<{address}>{_format_parameters(parameters)}", "RCPT", max_line_length)


def format_plain_rcpts(recipients: Sequence[object], *, max_line_length: int) -> list[bytes] | None:
    """The RCPT lines, without parameters, of *recipients* if every one is a plain address
    (printable ASCII, no SP, '"', '<' or '>') whose line fits; None otherwise, and the
    caller formats them one by one with :func:`format_rcpt`, which builds the same lines
    (the tests compare the two) and says what is wrong.

    A message to many recipients is checked with one match over them all.

    >>> format_plain_rcpts(["a@b", "c@d"], max_line_length=512)
    [b'RCPT TO:<a@b>\\r\\n', b'RCPT TO:<c@d>\\r\\n']
    """
    if set(map(type, recipients)) != {str}:
        return None
    addresses = cast("Sequence[str]", recipients)
    joined = "\n".join(addresses)
    # As many LFs as were put in between: an address holding one of its own is not plain.
    if joined.count("\n") != len(addresses) - 1 or _PLAIN_ADDRESSES.fullmatch(joined) is None:
        return None
    # ASCII: as many octets as characters.
    if max(map(len, addresses)) + _RCPT_FRAME_LENGTH > max_line_length:
        return None
    # Framed all at once; the lines hold no CR or LF but their own CRLF, so splitting at
    # line ends gives back one line per address.
    lines = "RCPT TO:<" + ">\r\nRCPT TO:<".join(addresses) + ">\r\n"
    return lines.encode().splitlines(keepends=True)


def format_command(verb: str, arguments: Sequence[str], *, max_line_length: int) -> bytes:
    """Build any other command: *verb* followed by its *arguments*, separated by SP.

    An argument may contain spaces (the topic of HELP, for instance) but no control
    character. The arguments are never quoted in error messages, since some (an AUTH initial
    response) are credentials.

    >>> format_command("XCLIENT", ["NAME=x", "ADDR=192.0.2.1"], max_line_length=512)
    b'XCLIENT NAME=x ADDR=192.0.2.1\\r\\n'
    """
    _require_str(verb, "verb")
    if _VERB.fullmatch(verb) is None:
        raise ValueError(
            f"verb {_excerpt(verb)} is not a letter followed by letters, digits or '-'"
        )
    # A str is itself a sequence of str: "VRFY", "alice" would silently become "a l i c e".
    if isinstance(arguments, (str, bytes)) or not isinstance(arguments, Sequence):
        raise TypeError(
            f"arguments must be a sequence of str such as a list, not {type(arguments).__name__}"
        )
    words = [verb]
    for index, argument in enumerate(arguments):
        what = f"arguments[{index}]"
        check_text(argument, what)
        if not argument:
            raise ValueError(f"{what} must not be empty")
        words.append(argument)
    return _finish(" ".join(words), verb, max_line_length)
