"""From an :class:`email.message.Message` to an envelope and the octets of its DATA.

Users moving from :mod:`smtplib` hand the library the same message objects they used to pass
to ``smtplib.SMTP.send_message``, and expect the same mail to go out: the same MAIL FROM, the
same RCPT TOs, the same bytes. So the three functions here follow ``send_message`` rule for
rule (CPython's ``Lib/smtplib.py``), and the tests compare their results with what smtplib
really does. They split its work in three because a sans-I/O engine has no server to ask in
the middle: :func:`message_envelope` reads the envelope from the headers,
:func:`message_needs_smtputf8` says whether the session must use SMTPUTF8 (RFC 6531), and
:func:`serialize_message` produces the bytes once the caller knows whether it may.

Where smtplib would send something broken, these functions raise or do the sensible thing
instead, and say so:

- A message with no usable sender (no Sender or From header, or one without an address) is a
  :class:`ValueError`. smtplib would send ``MAIL FROM:<None>`` or the null reverse-path ``<>``
  of a bounce, which silently loses every bounce. An explicit ``sender=""`` is still allowed.
- Empty addresses that :func:`email.utils.getaddresses` reports for groups and unparseable
  entries (``To: undisclosed-recipients:;``) are dropped from the recipients, rather than
  sent as a ``RCPT TO:<>`` that every server refuses.
- :func:`message_needs_smtputf8` answers True wherever smtplib does, and also when the
  message's own headers cannot be written correctly in ASCII (see there).
- A message with the legacy ``compat32`` policy is serialised as that policy always writes
  it even when SMTPUTF8 is asked for: the policy has no UTF-8 mode, and smtplib fails with a
  :class:`TypeError` when it tries to switch one on.
- The caller's message is never changed, nested parts included (smtplib's serialisation can
  add a MIME boundary to a nested part of the caller's message).

Nothing from the :mod:`email` package is imported at module level: ``email.utils``, which
``email.message`` and ``email.generator`` import, imports :mod:`socket`, and importing the
engine must not load any I/O module.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from email.message import Message
    from email.policy import Policy

__all__ = ["message_envelope", "message_needs_smtputf8", "serialize_message"]

# Headers that name recipients who must not see each other (RFC 5322 section 3.6.3 and
# 3.6.6). They are used for the envelope but never sent; smtplib removes both whether or not
# the message is a resent one, and so do we.
_BLIND_HEADERS = ("Bcc", "Resent-Bcc")
_BLIND_HEADER_NAMES = frozenset(name.lower() for name in _BLIND_HEADERS)

# The header fields that hold addresses and are sent (RFC 5322 sections 3.6.2, 3.6.3 and
# 3.6.6): the ones whose non-ASCII addresses only SMTPUTF8 can carry intact.
_ADDRESS_HEADERS = (
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
)


def message_envelope(
    message: Message, sender: str | None = None, recipients: Sequence[str] | None = None
) -> tuple[str, list[str]]:
    """The sender and recipients that ``smtplib.SMTP.send_message`` would use.

    A message resent by someone carries a block of ``Resent-`` headers (RFC 5322 section
    3.6.6), counted by its mandatory ``Resent-Date``. With exactly one block the envelope
    comes from ``Resent-Sender`` (or ``Resent-From``) and ``Resent-To``, ``Resent-Bcc`` and
    ``Resent-Cc``; with none, from ``Sender`` (or ``From``) and ``To``, ``Bcc`` and ``Cc``.
    More than one block is a :class:`ValueError`, even with *sender* and *recipients* both
    given, as in smtplib: nothing says which block is the latest.

    Addresses are extracted with :func:`email.utils.getaddresses`; the sender is the first
    address of its header, and the recipients keep smtplib's order (To, Bcc, Cc) and any
    duplicates. Empty addresses are dropped. An explicit *sender* or *recipients* replaces
    what the headers say (a single ``str`` as *recipients* is one recipient, as smtplib's
    ``sendmail`` has it), and ``sender=""`` asks for the null reverse-path.

    Raises :class:`ValueError` if no sender is given and the headers yield none, or if there
    are no recipients.
    """
    prefix = _header_prefix(message)
    if sender is None:
        sender = _sender_from_headers(message, prefix)
    if recipients is None:
        found = _recipients_from_headers(message, prefix)
    elif isinstance(recipients, str):
        # A str is a Sequence[str] of its characters; list() would make every letter a
        # recipient.
        found = [recipients]
    else:
        found = list(recipients)
    if not found:
        raise ValueError("the message has no recipients")
    return sender, found


def message_needs_smtputf8(message: Message, sender: str, recipients: Sequence[str]) -> bool:
    """Whether *message* must be sent with SMTPUTF8 (RFC 6531) to this envelope.

    smtplib's rule, kept exactly so that its users get the same session: SMTPUTF8 is needed
    when any envelope address is not ASCII. smtplib then also asks for ``BODY=8BITMIME``.

    Beyond smtplib, it is also needed when the headers that :func:`serialize_message` writes
    cannot go out correctly in ASCII: when an address header (From, Sender, Reply-To, To, Cc
    or their Resent- forms) holds a non-ASCII address, which the policy would turn into an
    encoded-word that RFC 2047 section 5 forbids inside an address; and when the message's
    policy, without its UTF-8 mode, would write a header of any part with non-ASCII octets
    (a policy with ``utf8=True`` already, or raw 8-bit bytes kept from a parsed message) or
    could not write it at all. Non-ASCII text the policy encodes as RFC 2047 encoded-words,
    such as a display name or a subject, does not need SMTPUTF8.
    """
    if not sender.isascii() or not all(address.isascii() for address in recipients):
        return True
    return _addresses_need_utf8(message) or _headers_need_utf8(message)


def serialize_message(message: Message, *, smtputf8: bool) -> bytes:
    r"""The octets of *message* to send, as ``smtplib.SMTP.send_message`` produces them.

    Lines end in CRLF, and the ``Bcc`` and ``Resent-Bcc`` headers are left out. The caller's
    message is not changed: the work is done on a copy.

    The bytes come from :class:`email.generator.BytesGenerator` with the message's policy and
    ``linesep="\r\n"``. With *smtputf8* the policy is cloned with ``utf8=True``, so that
    headers are written in UTF-8 rather than as encoded-words; a policy without that setting
    (``compat32``) is used as it is. Like smtplib, the generator is given no policy when
    *smtputf8* is false, and then it puts ``>`` before body lines that start with ``From``
    (its mbox default), whatever the policy's ``mangle_from_`` says.
    """
    # Lazy, like every import from the email package here (see the module docstring).
    from email.generator import BytesGenerator  # noqa: PLC0415 - email.utils imports socket
    from email.policy import EmailPolicy  # noqa: PLC0415 - email.utils imports socket

    duplicate = _copy_parts(message)
    for name in _BLIND_HEADERS:
        del duplicate[name]
    output = io.BytesIO()
    # Only EmailPolicy and its subclasses have a UTF-8 mode.
    if smtputf8 and isinstance(message.policy, EmailPolicy):
        generator = BytesGenerator(output, policy=message.policy.clone(utf8=True))
    else:
        generator = BytesGenerator(output)
    generator.flatten(duplicate, linesep="\r\n")
    return output.getvalue()


def _getaddresses(values: Sequence[str]) -> list[tuple[str, str]]:
    """:func:`email.utils.getaddresses`, imported only when it is first needed."""
    from email.utils import getaddresses  # noqa: PLC0415 - email.utils imports socket

    return getaddresses(values)


def _header_prefix(message: Message) -> str:
    """``"Resent-"`` if the message carries one block of Resent- headers, else ``""``."""
    # RFC 5322 section 3.6.6 makes Resent-Date mandatory in each block, so counting it counts
    # the blocks.
    dates = message.get_all("Resent-Date")
    if dates is None:
        return ""
    if len(dates) == 1:
        return "Resent-"
    raise ValueError("the message has more than one block of Resent- headers")


def _sender_from_headers(message: Message, prefix: str) -> str:
    # RFC 5322 section 3.6.2: Sender names who actually sent the message when that is not
    # the author in From. A Sender header without an address is an error, not a reason to
    # fall back to From: smtplib would not fall back either.
    name = prefix + "Sender" if prefix + "Sender" in message else prefix + "From"
    value = message[name]
    if value is None:
        raise ValueError(f"the message has no {name} header to take the sender from")
    # Older versions of getaddresses() return no pair at all for an empty header.
    addresses = _getaddresses([value])
    if not addresses or not addresses[0][1]:
        raise ValueError(f"the {name} header of the message holds no address")
    return addresses[0][1]


def _recipients_from_headers(message: Message, prefix: str) -> list[str]:
    # message[name] is the first header of that name, as in smtplib; RFC 5322 section 3.6
    # allows each of these once anyway.
    values = [
        value for name in ("To", "Bcc", "Cc") if (value := message[prefix + name]) is not None
    ]
    return [address for _, address in _getaddresses(values) if address]


def _addresses_need_utf8(message: Message) -> bool:
    """Whether an address header that gets sent holds a non-ASCII address."""
    # One header at a time: getaddresses() refuses a whole batch if one value is malformed.
    return any(
        not address.isascii()
        for name in _ADDRESS_HEADERS
        for value in message.get_all(name, [])
        for _, address in _getaddresses([str(value)])
    )


def _headers_need_utf8(message: Message) -> bool:
    """Whether the policy, in its current mode, writes some header with non-ASCII octets."""
    # The generator writes every part with the top-level message's policy, and writes the
    # stored header values (raw_items), not the parsed objects that items() returns.
    policy = message.policy
    for part in message.walk():
        for name, value in part.raw_items():
            if part is message and name.lower() in _BLIND_HEADER_NAMES:
                continue
            if _writes_non_ascii(policy, name, value):
                return True
    return False


def _writes_non_ascii(policy: Policy, name: str, value: str) -> bool:
    try:
        folded = policy.fold_binary(name, value)
    except UnicodeEncodeError:
        # The policy cannot write this header in ASCII at all (before Python 3.13 the
        # default policy fails so on a raw non-ASCII value from a parsed str); in UTF-8
        # mode it can.
        return True
    return not folded.isascii()


def _copy_parts(message: Message) -> Message:
    """A copy of *message* whose headers can be changed without touching the original.

    Shallow copies share the header list, but every change made here or by the generator
    (``del``, ``set_boundary``) builds a new list rather than editing the shared one. The
    generator adds a missing MIME boundary to each multipart part it writes, so every part is
    copied, not only the top one. The payloads themselves are shared, never copied.
    """
    duplicate = copy.copy(message)
    if message.is_multipart():
        # A multipart payload is a list of messages, which get_payload() cannot promise in its
        # type.
        parts = cast("list[Message]", message.get_payload())
        duplicate.set_payload([_copy_parts(part) for part in parts])
    return duplicate
