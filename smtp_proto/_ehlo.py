"""Reading the service extensions out of a positive EHLO, LHLO or HELO reply.

The reply has already been read and bounded by the reply reader; what is left is to tell
which words are keywords. RFC 5321 section 4.1.1.1 gives the shape: the first line starts
with the server's name, and every further line is one ehlo-keyword followed by its
parameters. Servers stray from it in old and harmless ways (lower-case keywords, the legacy
``AUTH=LOGIN`` line, stray blank or garbled lines), so this parser is lenient: a line it
cannot read is skipped, never an error, because refusing a whole session over one odd line
would stop mail the server is perfectly able to take. It must not raise for any reply at
all, whatever octets the server sent.
"""

from __future__ import annotations

import re

from ._events import EhloFeatures, Reply

__all__ = ["parse_ehlo"]

# RFC 5321 section 4.1.1.1: the parts of an EHLO line are separated by SP; TAB is accepted
# too, since some servers pad with it. Other Unicode whitespace is left alone, as it is not
# a separator on the wire.
_WORD = re.compile(r"[^ \t]+")

# RFC 5321 section 4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"). The
# classes are spelled out so that only ASCII matches (no IGNORECASE, under which a Kelvin
# sign would pass for a "k").
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")

# Before RFC 4954 was final, some servers (and clients that only understood the draft)
# used "AUTH=LOGIN PLAIN"; servers still send it next to the proper AUTH line for those old
# clients. Its mechanisms are the same list, so it is read as AUTH.
_LEGACY_AUTH = re.compile(r"[Aa][Uu][Tt][Hh]=")


def parse_ehlo(reply: Reply, *, esmtp: bool) -> EhloFeatures:
    """Turn a positive reply to EHLO or LHLO (*esmtp* true) or HELO (*esmtp* false) into
    :class:`EhloFeatures`.

    Keywords are upper-cased and their parameters kept as sent. When a keyword appears
    twice its first line wins, except AUTH, whose mechanisms from every AUTH and legacy
    ``AUTH=`` line are merged, in first-seen order and without case-insensitive repeats.
    Lines that do not start with a valid keyword are ignored.
    """
    first = _WORD.search(reply.lines[0])
    server_name = first.group() if first is not None else ""
    extensions: dict[str, tuple[str, ...]] = {}
    if esmtp:
        # A HELO reply has no extension lines by definition (RFC 5321 section 4.1.1.1);
        # whatever a server writes after its first line there is only text.
        auth_mechanisms: list[str] = []
        auth_seen: set[str] = set()
        for line in reply.lines[1:]:
            words = _WORD.findall(line)
            if not words:
                continue
            keyword, parameters = words[0], words[1:]
            if _LEGACY_AUTH.match(keyword):
                # "AUTH=LOGIN PLAIN": the first mechanism is glued to the keyword.
                parameters = [keyword[5:], *parameters] if len(keyword) > 5 else parameters
                keyword = "AUTH"
            elif _KEYWORD.fullmatch(keyword) is None:
                continue
            keyword = keyword.upper()
            if keyword == "AUTH":
                # Reserve AUTH's place in announcement order; its value is filled in below.
                extensions.setdefault("AUTH", ())
                for mechanism in parameters:
                    # SASL mechanism names are upper case by registration (RFC 4422 section
                    # 3.1), so a case-insensitive repeat is the same mechanism.
                    folded = mechanism.upper()
                    if folded not in auth_seen:
                        auth_seen.add(folded)
                        auth_mechanisms.append(mechanism)
            elif keyword not in extensions:
                extensions[keyword] = tuple(parameters)
        if "AUTH" in extensions:
            extensions["AUTH"] = tuple(auth_mechanisms)
    return EhloFeatures(reply=reply, esmtp=esmtp, server_name=server_name, extensions=extensions)
