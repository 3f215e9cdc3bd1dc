"""The ESMTP envelope extensions: which MAIL and RCPT parameters a message needs, and whether
the server can take the message at all.

A client may use a service extension only after the server offered it in its EHLO reply
("The client MUST NOT transmit parameters other than those associated with a service
extension offered by the server", RFC 5321 section 4.1.1.3). Breaking that rule costs more
than a refused command: a server that never offered 8BITMIME may strip the eighth bit of every
octet, one that never offered SMTPUTF8 may mangle a non-ASCII address, and a message over the
announced SIZE is refused only after all of it has been sent. The functions here therefore
decide *before* anything is sent. Each one either returns what to put on the wire (addresses,
and the parameter mappings that ``format_mail`` and ``format_rcpt`` take) or raises:

- :class:`ServerCapabilityError` when the message needs something the server did not
  announce;
- :class:`ValueError` for a malformed argument, :class:`TypeError` for one of the wrong type.

No call touches any connection, which stays usable: the caller may give up on this message,
convert it (to 7-bit MIME, to an ASCII address) or try another server.

The two values made of caller text, ENVID and ORCPT, are always sent encoded (xtext, RFC 3461
section 4, and RFC 6533's form of it), so nothing the caller passes there can reach the wire
as a space, an "=", CR, LF or any other control character. The ``extra`` parameters a caller
adds are passed through unchanged and checked, like every parameter, when the command line is
built.

Everything here is a pure function of its arguments, with no state and no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping
from types import MappingProxyType

from ._commands import check_text
from ._events import EhloFeatures

__all__ = [
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


class ServerCapabilityError(ValueError):
    """The message needs something the server did not announce (SMTPUTF8, 8BITMIME,
    BINARYMIME, DSN, REQUIRETLS, CHUNKING) or is larger than its SIZE limit.

    Raised before any command is sent; the connection stays usable. It is a
    :class:`ValueError` because, like a malformed argument, it means "this call cannot be
    made as asked", and callers that already catch one need not learn a new base class.
    """

    def __init__(self, extension: str, message: str | None = None) -> None:
        if message is None:
            message = f"the server did not announce {extension}"
        super().__init__(message)
        #: The EHLO keyword of the missing extension; ``"SIZE"`` for a message that is too
        #: large.
        self.extension = extension
        self.message = message

    def __reduce__(self) -> tuple[type[ServerCapabilityError], tuple[str, str]]:
        # The default pickling calls the class with ``self.args``, the message alone, which
        # would come back as the extension: rebuild from both fields instead.
        return (type(self), (self.extension, self.message))


class Body(enum.Enum):
    """The kind of content a message has, as the BODY parameter of MAIL declares it."""

    #: ASCII only, no NUL: what plain RFC 5321 SMTP carries, so any server takes it and no
    #: BODY parameter is sent.
    SEVEN_BIT = "7BIT"
    #: Octets above 127 in CRLF-separated lines: needs 8BITMIME (RFC 6152).
    EIGHT_BIT_MIME = "8BITMIME"
    #: Arbitrary octets, bare CR and LF and NUL included: needs BINARYMIME and, since such
    #: content can only be sent with BDAT, CHUNKING (RFC 3030 section 3).
    BINARY_MIME = "BINARYMIME"


def detect_body(data: bytes) -> Body:
    """The smallest :class:`Body` that can carry *data*: :attr:`Body.SEVEN_BIT` for ASCII
    without NUL, :attr:`Body.EIGHT_BIT_MIME` otherwise.

    :attr:`Body.BINARY_MIME` is never guessed: it also requires the message to be canonical
    MIME (RFC 3030 section 3) and to be sent with BDAT, which only the caller can vouch for.
    """
    # Two scans done in C (bytes.isascii and the "in" search), never a Python loop over the
    # octets: messages can be tens of megabytes.
    # RFC 2045 section 2.7: 7bit data has no octet above 127 and no NUL. NUL is not allowed in
    # 8bit data either (section 2.8), so strictly it makes content binary; it is reported as
    # 8BITMIME, the most this function claims, so that it is at least never called 7-bit.
    # Line length (998 octets, RFC 5321 section 4.5.3.1.6) is not looked at: the DATA writer
    # is the place that sees lines.
    if data.isascii() and b"\x00" not in data:
        return Body.SEVEN_BIT
    return Body.EIGHT_BIT_MIME


# ---------------------------------------------------------------------------------------
# xtext (RFC 3461 section 4)

# xchar = any ASCII CHAR between "!" (33) and "~" (126) inclusive, except "+" and "=". A run of
# anything else is replaced as a whole, so text without such characters costs one scan.
_NOT_XCHAR = re.compile(r"[^!-*,-<>-~]+")

# Where a string stops being xtext: a character outside "!".."~", an "=", or a "+" that does
# not start a hexchar ("+" and two *upper-case* hexadecimal digits, as the ABNF says). A
# search for the first such place has no nested repetition, so it stays linear on any input.
_NOT_XTEXT = re.compile(r"[^!-~]|=|\+(?![0-9A-F]{2})")

_HEXCHAR = re.compile(rb"\+([0-9A-F]{2})")

# Python strings may hold lone surrogates (after a "surrogateescape" decode), which have no
# UTF-8 form and so no xtext form either.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _hexchars(match: re.Match[str]) -> str:
    # "é" is the octets C3 A9, so it becomes "+C3+A9": hex() with a separator writes every
    # octet of the run without a Python-level loop.
    return "+" + match.group().encode("utf-8").hex("+").upper()


def xtext_encode(text: str) -> str:
    """Encode *text* as xtext (RFC 3461 section 4).

    Every character outside ``"!"`` (33) to ``"~"`` (126), and ``"+"`` and ``"="``, becomes
    ``"+"`` and two upper-case hexadecimal digits for each octet of its UTF-8 form, so the
    result is printable ASCII with no space, no ``"="`` and no control character.

    >>> xtext_encode("a+b=c d\\r\\n")
    'a+2Bb+3Dc+20d+0D+0A'

    :raises TypeError: *text* is not a ``str``.
    :raises ValueError: *text* holds a lone surrogate, which has no UTF-8 form.
    """
    _require_str(text, "text")
    found = _SURROGATE.search(text)
    if found is not None:
        raise ValueError(
            f"text contains a lone surrogate, U+{ord(found.group()):04X}, at index "
            f"{found.start()}: it has no UTF-8 form"
        )
    return _NOT_XCHAR.sub(_hexchars, text)


def xtext_decode(text: str) -> str:
    """Decode xtext (RFC 3461 section 4), the inverse of :func:`xtext_encode`.

    The octets the hexchars stand for must form UTF-8, which is what RFC 3461 asks of a
    value before encoding (US-ASCII, a subset) and what RFC 6533 uses beyond ASCII.

    :raises TypeError: *text* is not a ``str``.
    :raises ValueError: *text* holds a character that is not an xchar, or a ``"+"`` not
        followed by two upper-case hexadecimal digits, or its octets are not UTF-8.
    """
    _require_str(text, "text")
    found = _NOT_XTEXT.search(text)
    if found is not None:
        raise ValueError(
            f"not xtext: {found.group()!r} at index {found.start()} is neither an xchar nor "
            "a '+' followed by two upper-case hexadecimal digits"
        )
    # Only "!".."~" is left, so the ASCII encoding cannot fail.
    octets = _HEXCHAR.sub(lambda match: bytes((int(match.group(1), 16),)), text.encode("ascii"))
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the octets this xtext encodes are not UTF-8") from None


# ---------------------------------------------------------------------------------------
# Addresses (RFC 6531)


def encode_address(address: str, *, smtputf8_offered: bool) -> tuple[str, bool]:
    """The *address* as it goes on the wire, and whether the transaction needs SMTPUTF8.

    - An all-ASCII address is returned as it is, and needs nothing.
    - An ASCII local part with a non-ASCII domain gets its domain converted to A-labels with
      the standard library's IDNA codec, and needs nothing, even where SMTPUTF8 is offered:
      RFC 6531 section 3.2 does not count an A-label domain as internationalised, so the
      message stays deliverable through servers without SMTPUTF8.
    - A non-ASCII local part has no ASCII form: it is returned as given (domain included) with
      ``True`` if the server offered SMTPUTF8, and refused otherwise (RFC 6531 section 3.2:
      without SMTPUTF8 the client "MUST NOT transmit an internationalized email address").

    The local part is everything before the *last* ``"@"``, so a quoted local part holding an
    ``"@"`` stays whole; quoted local parts are never altered. An address without ``"@"``
    (``"postmaster"``) is all local part, and ``""``, the null reverse-path, is returned as is.

    :raises ServerCapabilityError: the local part is not ASCII and SMTPUTF8 is not offered
        (``extension="SMTPUTF8"``).
    :raises ValueError: the address holds a control character or a lone surrogate, or its
        domain cannot be converted to A-labels.
    :raises TypeError: *address* is not a ``str``.
    """
    # All-ASCII and printable (so without a control, which check_text would refuse): sent
    # as it is.
    if type(address) is str and address.isascii() and address.isprintable():
        return address, False
    # Refuse controls here rather than leave them to the command builder: the IDNA codec
    # would carry a CR LF straight into an "A-label". What passes is not all ASCII, since
    # ASCII without controls is printable.
    check_text(address, "address")
    local_part, at, domain = address.rpartition("@")
    if not at:
        # rpartition puts the whole string last when there is no "@".
        local_part, domain = domain, ""
    if not local_part.isascii():
        if not smtputf8_offered:
            raise ServerCapabilityError(
                "SMTPUTF8",
                "the local part of the address is not ASCII and the server did not announce "
                "SMTPUTF8 (RFC 6531 section 3.2)",
            )
        return address, True
    # Only the domain is non-ASCII from here on.
    if domain.startswith("["):
        # An address literal (RFC 5321 section 4.1.3) is ASCII by definition; the IDNA codec
        # would happily turn "[ü]" into "xn--[]-xka".
        raise ValueError("the address literal of the address is not ASCII")
    try:
        # The stdlib codec implements IDNA 2003 (RFC 3490), label by label, which is what
        # "xn--" domains in the wild mostly are; the engine has no dependencies, so IDNA 2008
        # (RFC 5891) is left to callers who need it: they can pass the A-label themselves.
        a_labels = domain.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise ValueError(f"the domain of the address has no A-label form: {error}") from None
    return f"{local_part}@{a_labels}", False


# ---------------------------------------------------------------------------------------
# MAIL and RCPT parameters

# RFC 1870 section 3: size-value ::= 1*20DIGIT.
_MAX_SIZE_DIGITS = 20

# RFC 3461 section 5.4 gives each DSN parameter's length *including* its keyword and "=":
# RET is 8 characters, exactly "RET=HDRS", and NOTIFY 28, exactly
# "NOTIFY=SUCCESS,FAILURE,DELAY". So "The ENVID parameter MAY be up to 100 characters"
# (section 4.4) and "The entire ORCPT parameter MAY be up to 500 characters" (section 4.2)
# count "ENVID=" and "ORCPT=" and the xtext, after encoding: that is what goes on the wire.
_MAX_ENVID_PARAMETER = 100
_MAX_ORCPT_PARAMETER = 500

# RFC 3461 section 4.3: RET takes FULL or HDRS, in any case.
_RET_VALUES = frozenset({"FULL", "HDRS"})

# RFC 3461 section 4.1: NOTIFY is "NEVER" alone or a list of these, written here in this order.
_NOTIFY_ORDER = ("SUCCESS", "FAILURE", "DELAY")

# The keywords each function sets from its own arguments, and the argument that sets each.
# The same keyword in ``extra`` would either be sent twice or bypass the checks above.
_MAIL_KEYWORDS = MappingProxyType(
    {
        "SIZE": "size",
        "BODY": "body",
        "SMTPUTF8": "smtputf8",
        "RET": "ret",
        "ENVID": "envid",
        "REQUIRETLS": "requiretls",
    }
)
_RCPT_KEYWORDS = MappingProxyType({"NOTIFY": "notify", "ORCPT": "orcpt"})


def _require(features: EhloFeatures, keyword: str) -> None:
    if not features.supports(keyword):
        raise ServerCapabilityError(keyword)


def _printable_ascii(value: str, what: str) -> str:
    """*value* if it is non-empty printable ASCII, SP included: what RFC 3461 sections 4.2
    and 4.4 require of ORCPT and ENVID before they are encoded."""
    if not value.isascii():
        raise ValueError(f"{what} must be ASCII (RFC 3461)")
    # check_text refuses the C0 controls and DEL, the rest of ASCII's unprintables, naming
    # the character without echoing the value.
    check_text(value, what)
    if not value:
        # RFC 3461: ENVID and ORCPT "MUST have an associated esmtp-value".
        raise ValueError(f"{what} must not be empty")
    return value


def _add_extra(
    parameters: dict[str, str | None],
    extra: Mapping[str, str | None] | None,
    reserved: Mapping[str, str],
) -> dict[str, str | None]:
    if extra is None:
        return parameters
    if not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a mapping, not {type(extra).__name__}")
    for keyword in extra:
        # ESMTP keywords are case-insensitive (RFC 5321 section 2.4): "size" is SIZE.
        argument = reserved.get(_require_str(keyword, "ESMTP parameter keyword").upper())
        if argument is not None:
            raise ValueError(
                f"ESMTP parameter {keyword!r} is set by the {argument!r} argument, not by extra"
            )
    # Values are left to the command builder, which checks every parameter it writes.
    parameters.update(extra)
    return parameters


def mail_parameters(
    features: EhloFeatures,
    *,
    tls_active: bool,
    size: int | None = None,
    body: Body | None = None,
    smtputf8: bool = False,
    ret: str | None = None,
    envid: str | None = None,
    requiretls: bool = False,
    extra: Mapping[str, str | None] | None = None,
) -> dict[str, str | None]:
    """The ESMTP parameters of ``MAIL FROM`` for a message, given what the server announced
    in *features*.

    :param tls_active: whether the connection is protected by TLS (needed for REQUIRETLS).
    :param size: the message size in octets, if known in advance (RFC 1870). ``SIZE=`` is
        sent if the server announced SIZE, and nothing otherwise (it is only an estimate to
        help the server); a size over the server's announced limit is refused.
    :param body: the content, as :func:`detect_body` tells. :attr:`Body.SEVEN_BIT` sends no
        parameter; :attr:`Body.EIGHT_BIT_MIME` sends ``BODY=8BITMIME`` and needs 8BITMIME
        (RFC 6152); :attr:`Body.BINARY_MIME` sends ``BODY=BINARYMIME`` and needs BINARYMIME
        and CHUNKING (RFC 3030 section 3: binary content can only go with BDAT).
    :param smtputf8: send ``SMTPUTF8``, as :func:`encode_address` says, or because the
        message header is internationalised (RFC 6531); needs SMTPUTF8.
    :param ret: ``"FULL"`` or ``"HDRS"``, in any case: how much of the message a failure
        DSN returns (RFC 3461 section 4.3); needs DSN.
    :param envid: an envelope identifier that DSNs will quote (RFC 3461 section 4.4):
        printable ASCII, sent as xtext, at most 100 characters for ``ENVID=`` and the encoded
        value together (section 5.4 sets parameter sizes that include the keyword); needs DSN.
    :param requiretls: send ``REQUIRETLS`` (RFC 8689); needs REQUIRETLS announced over an
        active TLS connection.
    :param extra: further parameters, sent after these in their own order. A keyword that
        one of the arguments above sets (in any case) is refused.
    :return: a new dict, in the order SIZE, BODY, SMTPUTF8, RET, ENVID, REQUIRETLS, then
        *extra*; a value of ``None`` is a keyword without value.
    :raises ServerCapabilityError: the server lacks an extension the message needs, or
        announced a SIZE smaller than *size* (``extension="SIZE"``).
    :raises ValueError: a malformed argument.
    :raises TypeError: an argument of the wrong type.
    """
    parameters: dict[str, str | None] = {}

    if size is not None:
        # bool is an int subclass, and True is not a size.
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if size < 0:
            raise ValueError("size must not be negative")
        if size >= 10**_MAX_SIZE_DIGITS:
            raise ValueError(f"size must have at most {_MAX_SIZE_DIGITS} digits (RFC 1870)")
        # SIZE is only a declaration that lets the server refuse early (RFC 1870 section 4):
        # where it was not announced, nothing is sent and nothing is refused.
        if features.supports("SIZE"):
            limit = features.max_message_size
            if limit is not None and size > limit:
                raise ServerCapabilityError(
                    "SIZE",
                    f"the message is {size} octets, larger than the server's limit of "
                    f"{limit} (RFC 1870 section 4)",
                )
            parameters["SIZE"] = str(size)

    if body is not None:
        if not isinstance(body, Body):
            raise TypeError(f"body must be a Body or None, not {type(body).__name__}")
        if body is Body.EIGHT_BIT_MIME:
            # RFC 6152 section 3: a client must not send any octet above 127 to a server
            # that did not announce 8BITMIME.
            _require(features, "8BITMIME")
            parameters["BODY"] = body.value
        elif body is Body.BINARY_MIME:
            _require(features, "BINARYMIME")
            # RFC 3030 section 3: "BINARYMIME cannot be used with the DATA command".
            _require(features, "CHUNKING")
            parameters["BODY"] = body.value
        # Body.SEVEN_BIT sends nothing: no BODY parameter means 7BIT, and leaving it out works
        # with every server, even one without 8BITMIME.

    if smtputf8:
        _require(features, "SMTPUTF8")
        parameters["SMTPUTF8"] = None

    if ret is not None:
        _require_str(ret, "ret")
        # isascii() first: str.upper() maps some non-ASCII letters to ASCII (U+017F, the
        # long s, to "S"), and "HDR\u017f" is not a keyword.
        folded = ret.upper() if ret.isascii() else ""
        if folded not in _RET_VALUES:
            raise ValueError("ret must be 'FULL' or 'HDRS' (RFC 3461 section 4.3)")
        _require(features, "DSN")
        parameters["RET"] = folded

    if envid is not None:
        encoded = xtext_encode(_printable_ascii(_require_str(envid, "envid"), "envid"))
        if len("ENVID=") + len(encoded) > _MAX_ENVID_PARAMETER:
            raise ValueError(
                f"the ENVID parameter would be {len('ENVID=') + len(encoded)} characters, "
                f"more than {_MAX_ENVID_PARAMETER} (RFC 3461 sections 4.4 and 5.4)"
            )
        _require(features, "DSN")
        parameters["ENVID"] = encoded

    if requiretls:
        _require(features, "REQUIRETLS")
        if not tls_active:
            # RFC 8689 section 4.2.1: the message goes only over a TLS session whose EHLO,
            # sent after the handshake, announced REQUIRETLS.
            raise ServerCapabilityError(
                "REQUIRETLS", "REQUIRETLS needs a TLS connection (RFC 8689 section 4.2.1)"
            )
        parameters["REQUIRETLS"] = None

    return _add_extra(parameters, extra, _MAIL_KEYWORDS)


def _notify_value(notify: Collection[str]) -> str:
    # A str is itself a collection of str: "NEVER" would become N, E, V, E, R.
    if isinstance(notify, str) or not isinstance(notify, Collection):
        raise TypeError(
            f"notify must be a collection of str such as ('NEVER',), not {type(notify).__name__}"
        )
    words: set[str] = set()
    for word in notify:
        _require_str(word, "each notify keyword")
        # RFC 3461 section 4.1 note b: any case. isascii() first, as for RET.
        folded = word.upper() if word.isascii() else ""
        if folded != "NEVER" and folded not in _NOTIFY_ORDER:
            raise ValueError(
                "notify keywords are NEVER, SUCCESS, FAILURE and DELAY (RFC 3461 section 4.1)"
            )
        words.add(folded)
    if not words:
        raise ValueError("notify must hold NEVER or at least one of SUCCESS, FAILURE, DELAY")
    if "NEVER" in words:
        if len(words) > 1:
            # RFC 3461 section 4.1 note a: "the NEVER keyword MUST appear by itself".
            raise ValueError("NEVER cannot be combined with other notify keywords")
        return "NEVER"
    return ",".join(word for word in _NOTIFY_ORDER if word in words)


# RFC 6533 section 3, utf-8-addr-xtext: QCHAR is printable ASCII but "\", "+" and "=" (SP is
# not printable here); everything else is an EmbeddedUnicodeChar, "\x{" HEXPOINT "}".
_NOT_QCHAR = re.compile(r"[^!-*,-<>-\[\]-~]")


def _embedded_unicode_char(match: re.Match[str]) -> str:
    # HEXPOINT is upper-case hexadecimal without leading zeros: "20" for SP, "5C" for "\",
    # "E9" for "é", "1F4E7" for an emoji. The ABNF's 2-digit forms list exactly the ASCII
    # characters that can occur here once controls are refused, and its 4-digit forms skip
    # the surrogates, which check_text refused too.
    return f"\\x{{{ord(match.group()):X}}}"


def _orcpt_value(orcpt: str) -> str:
    _require_str(orcpt, "orcpt")
    if orcpt.isascii():
        # RFC 3461 section 4.2: addr-type "rfc822", and the address as xtext.
        return "rfc822;" + xtext_encode(_printable_ascii(orcpt, "orcpt"))
    # RFC 6533 section 3: addr-type "utf-8", and the address as utf-8-addr-xtext, the form
    # that is "Safe for use in the ORCPT [RFC3461] parameter even when SMTPUTF8 SMTP
    # extension is not advertised". It is 7-bit and made of xchars only, so it is also valid
    # xtext and needs no further encoding. Controls have no place in an address (and C0 ones
    # have no HEXPOINT at all), so they are refused rather than escaped.
    check_text(orcpt, "orcpt")
    return "utf-8;" + _NOT_QCHAR.sub(_embedded_unicode_char, orcpt)


def rcpt_parameters(
    features: EhloFeatures,
    *,
    notify: Collection[str] | None = None,
    orcpt: str | None = None,
    extra: Mapping[str, str | None] | None = None,
) -> dict[str, str | None]:
    """The ESMTP parameters of ``RCPT TO`` for one recipient, given what the server announced
    in *features*.

    :param notify: when to send a DSN (RFC 3461 section 4.1): ``{"NEVER"}``, or a non-empty
        subset of ``SUCCESS``, ``FAILURE`` and ``DELAY``, in any case. Sent upper-case, in
        that order, comma-separated; needs DSN.
    :param orcpt: the original recipient address (RFC 3461 section 4.2), sent as
        ``rfc822;`` and its xtext when ASCII (where it must be printable), or as ``utf-8;``
        and its RFC 6533 utf-8-addr-xtext form otherwise. ``ORCPT=`` and the value together
        are at most 500 characters; needs DSN.
    :param extra: further parameters, sent after these in their own order. NOTIFY and ORCPT
        (in any case) are refused here.
    :return: a new dict, in the order NOTIFY, ORCPT, then *extra*.
    :raises ServerCapabilityError: the server did not announce DSN.
    :raises ValueError: a malformed argument.
    :raises TypeError: an argument of the wrong type.
    """
    parameters: dict[str, str | None] = {}
    if notify is not None:
        value = _notify_value(notify)
        _require(features, "DSN")
        parameters["NOTIFY"] = value
    if orcpt is not None:
        value = _orcpt_value(orcpt)
        if len("ORCPT=") + len(value) > _MAX_ORCPT_PARAMETER:
            raise ValueError(
                f"the ORCPT parameter would be {len('ORCPT=') + len(value)} characters, more "
                f"than {_MAX_ORCPT_PARAMETER} (RFC 3461 section 4.2)"
            )
        _require(features, "DSN")
        parameters["ORCPT"] = value
    return _add_extra(parameters, extra, _RCPT_KEYWORDS)


# ---------------------------------------------------------------------------------------
# Command line length

# How many octets each parameter adds to the 512-octet command line of RFC 5321 section
# 4.5.3.1.4 ("SMTP extensions may be used to increase this limit"), as each extension states
# it. Every figure counts the SP before the parameter, as the RFCs' own arithmetic does
# (" SIZE=" and 20 digits are 26).
_LINE_ALLOWANCE = MappingProxyType(
    {
        # RFC 1870 section 3 item 5: "increased by 26 characters by the possible addition of
        # the SIZE keyword and value".
        "SIZE": 26,
        # RFC 6531 section 3.1 item 5: "increased by 10 characters to accommodate the
        # possible addition of the SMTPUTF8 parameter".
        "SMTPUTF8": 10,
        # RFC 3461 states no MAIL increase, but section 5.4 requires servers to accept "a
        # command-line large enough for ... any combination of ESMTP parameters", with RET
        # up to 8 characters and ENVID up to 100, keyword included; with the SP, 9 and 101.
        "RET": 9,
        "ENVID": 101,
        # RFC 3461 section 5.4 likewise: NOTIFY 28 and ORCPT 500 characters, plus an SP each;
        # together the "530 characters for the ORCPT and NOTIFY parameters of the RCPT command"
        # that section names. (Its "at least 1036 characters" total is not 512 + 530; the
        # per-parameter figures are used, as the ones that add up.)
        "NOTIFY": 29,
        "ORCPT": 501,
        # RFC 4954 section 3 item 5: the AUTH parameter of MAIL "extends the maximum line
        # length of the MAIL FROM command by 500 characters".
        "AUTH": 500,
        # RFC 8689 section 2 item 5: "increased by 11 octets by the possible addition of a
        # space and the REQUIRETLS keyword".
        "REQUIRETLS": 11,
    }
)

# RFC 3030 section 3 item 8: "increased by 16 characters by the possible addition of the
# BODY=BINARYMIME keyword and value". RFC 6152 section 2, which defines BODY=8BITMIME (and
# BODY=7BIT), states no increase, so BODY with any other value adds 0.
_BINARYMIME_ALLOWANCE = 16


def line_allowance(parameters: Mapping[str, str | None]) -> int:
    """The octets that the extensions behind *parameters* add to the 512-octet command line
    limit of RFC 5321 section 4.5.3.1.4.

    Pass the result of :func:`mail_parameters` or :func:`rcpt_parameters` (or any mapping of
    the same shape); add 512 and use the sum as the ``max_line_length`` of the command. Each
    known keyword counts what its RFC states (SIZE 26, BODY=BINARYMIME 16, SMTPUTF8 10,
    REQUIRETLS 11, AUTH 500, and from RFC 3461's parameter sizes RET 9, ENVID 101, NOTIFY 29,
    ORCPT 501); BODY=8BITMIME and unknown keywords count 0. Only parameters of extensions the
    server announced belong in the mapping: a server owes the extra room only for those.

    :raises TypeError: *parameters* is not a mapping, or a keyword is not a ``str``.
    """
    # The exact-type test first: isinstance against an ABC is slow, and this runs per command.
    if type(parameters) is not dict and not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a mapping, not {type(parameters).__name__}")
    total = 0
    for keyword, value in parameters.items():
        folded = _require_str(keyword, "ESMTP parameter keyword").upper()
        if folded == "BODY":
            if isinstance(value, str) and value.upper() == Body.BINARY_MIME.value:
                total += _BINARYMIME_ALLOWANCE
        else:
            total += _LINE_ALLOWANCE.get(folded, 0)
    return total
