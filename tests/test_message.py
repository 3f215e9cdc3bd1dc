"""Tests of smtp_proto._message: messages to envelopes and bytes, as smtplib does it.

The reference is CPython's own ``smtplib.SMTP.send_message``, run on an unconnected client
whose ``sendmail`` records what it is given and whose EHLO and extension checks are stubbed
(the stub server offers SMTPUTF8), so no network is touched. For every message the library's
envelope, its SMTPUTF8 decision and its bytes must equal what smtplib passed to ``sendmail``.
The deliberate deviations, where smtplib would send something broken, are tested on their own
and show what smtplib does instead.
"""

from __future__ import annotations

import email
import email.policy
import os
import smtplib
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import Protocol

import pytest

from smtp_proto._message import message_envelope, message_needs_smtputf8, serialize_message

Headers = Sequence[tuple[str, str]]

RESENT_DATE = "Mon, 04 May 2026 10:00:00 +0000"


@dataclass(frozen=True)
class Sent:
    """What smtplib.SMTP.send_message passed on to sendmail."""

    sender: str
    recipients: list[str]
    data: bytes
    mail_options: tuple[str, ...]


class SendWithSmtplib(Protocol):
    def __call__(
        self, message: Message, sender: str | None = None, recipients: Sequence[str] | None = None
    ) -> Sent: ...


@pytest.fixture
def smtplib_send(monkeypatch: pytest.MonkeyPatch) -> SendWithSmtplib:
    """Run smtplib's send_message on a client that records instead of sending."""

    def send(
        message: Message, sender: str | None = None, recipients: Sequence[str] | None = None
    ) -> Sent:
        # An explicit local_hostname keeps the constructor from asking DNS for our name; with
        # no host it connects to nothing.
        client = smtplib.SMTP(local_hostname="client.example")
        sent: list[Sent] = []

        def sendmail(
            from_addr: str,
            to_addrs: str | Sequence[str],
            msg: bytes,
            mail_options: Sequence[str] = (),
            rcpt_options: Sequence[str] = (),
        ) -> dict[str, tuple[int, bytes]]:
            # The real sendmail makes a lone str a list of one, so the recorder does too.
            recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
            sent.append(Sent(from_addr, recipients, msg, tuple(mail_options)))
            return {}

        monkeypatch.setattr(client, "sendmail", sendmail)
        monkeypatch.setattr(client, "ehlo_or_helo_if_needed", lambda: None)
        monkeypatch.setattr(client, "has_extn", lambda name: name.lower() == "smtputf8")
        client.send_message(message, sender, recipients)
        (result,) = sent
        return result

    return send


def make_message(
    headers: Headers, body: str = "Hello.\n", policy: EmailPolicy[EmailMessage] | None = None
) -> EmailMessage:
    message = EmailMessage(policy=policy or email.policy.default)
    for name, value in headers:
        message[name] = value
    message.set_content(body)
    return message


def assert_same_as_smtplib(
    send: SendWithSmtplib,
    message: Message,
    sender: str | None = None,
    recipients: Sequence[str] | None = None,
) -> Sent:
    """Check envelope, SMTPUTF8 decision and bytes against smtplib, and return its result."""
    expected = send(message, sender, recipients)
    envelope = message_envelope(message, sender, recipients)
    assert envelope == (expected.sender, expected.recipients)
    smtputf8 = message_needs_smtputf8(message, *envelope)
    assert smtputf8 == ("SMTPUTF8" in expected.mail_options)
    assert serialize_message(message, smtputf8=smtputf8) == expected.data
    return expected


def header_names(data: bytes) -> list[bytes]:
    """The names of the top-level headers in serialised message *data*."""
    head = data.partition(b"\r\n\r\n")[0]
    return [line.partition(b":")[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]


# --- The envelope, as smtplib takes it from the headers ------------------------------------


def test_from_to_cc_and_bcc(smtplib_send: SendWithSmtplib) -> None:
    message = make_message(
        [
            ("From", "Ann <ann@example.com>"),
            ("To", "Bob <bob@example.com>, carl@example.com"),
            ("Cc", "dora@example.org, bob@example.com"),
            ("Bcc", "Eve <eve@example.net>"),
            ("Subject", "Hello"),
        ]
    )
    sent = assert_same_as_smtplib(smtplib_send, message)
    # smtplib's order is To, Bcc, Cc, and a duplicate stays.
    assert sent.recipients == [
        "bob@example.com",
        "carl@example.com",
        "eve@example.net",
        "dora@example.org",
        "bob@example.com",
    ]
    assert sent.sender == "ann@example.com"


def test_sender_header_is_preferred_to_from(smtplib_send: SendWithSmtplib) -> None:
    message = make_message(
        [
            ("From", "Ann <ann@example.com>, Bob <bob@example.com>"),
            ("Sender", "Secretary <secretary@example.com>"),
            ("To", "carl@example.com"),
        ]
    )
    sent = assert_same_as_smtplib(smtplib_send, message)
    assert sent.sender == "secretary@example.com"


def test_first_from_address_is_the_sender(smtplib_send: SendWithSmtplib) -> None:
    message = make_message([("From", "ann@example.com, bob@example.com"), ("To", "c@example.com")])
    assert assert_same_as_smtplib(smtplib_send, message).sender == "ann@example.com"


RESENT_HEADERS: Headers = [
    ("From", "ann@example.com"),
    ("To", "bob@example.com"),
    ("Bcc", "secret@example.com"),
    ("Resent-Date", RESENT_DATE),
    ("Resent-From", "bob@example.com"),
    ("Resent-To", "carl@example.org"),
    ("Resent-Cc", "dora@example.org"),
    ("Resent-Bcc", "resent-secret@example.org"),
]


def test_one_resent_block_gives_the_envelope(smtplib_send: SendWithSmtplib) -> None:
    message = make_message(RESENT_HEADERS)
    sent = assert_same_as_smtplib(smtplib_send, message)
    assert sent.sender == "bob@example.com"
    assert sent.recipients == ["carl@example.org", "resent-secret@example.org", "dora@example.org"]
    # Both kinds of blind copy are removed, whichever block the envelope came from.
    assert b"Bcc" not in sent.data
    assert b"secret@example" not in sent.data


def test_resent_sender_is_preferred_to_resent_from(smtplib_send: SendWithSmtplib) -> None:
    message = make_message([*RESENT_HEADERS, ("Resent-Sender", "relay@example.net")])
    assert assert_same_as_smtplib(smtplib_send, message).sender == "relay@example.net"


@pytest.mark.parametrize(
    ("sender", "recipients"),
    [(None, None), ("ann@example.com", None), ("ann@example.com", ["bob@example.com"])],
)
def test_two_resent_blocks_are_refused(
    smtplib_send: SendWithSmtplib, sender: str | None, recipients: list[str] | None
) -> None:
    # smtplib counts the blocks before it looks at its arguments, so an explicit envelope does
    # not help; neither does it here.
    message = make_message(
        [*RESENT_HEADERS, ("Resent-Date", RESENT_DATE), ("Resent-From", "carl@example.org")]
    )
    with pytest.raises(ValueError, match="more than one"):
        smtplib_send(message, sender, recipients)
    with pytest.raises(
        ValueError, match=r"^the message has more than one block of Resent- headers$"
    ):
        message_envelope(message, sender, recipients)


# --- Explicit sender and recipients --------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "recipients"),
    [
        ("other@example.com", None),
        (None, ["x@example.com", "y@example.com"]),
        ("other@example.com", ("x@example.com",)),
        # The null reverse-path of a bounce (RFC 5321 section 4.5.5) may be asked for.
        ("", ["x@example.com"]),
        # As in smtplib's sendmail, a single str is a single recipient.
        (None, "x@example.com"),
    ],
)
def test_explicit_envelope_overrides_the_headers(
    smtplib_send: SendWithSmtplib, sender: str | None, recipients: Sequence[str] | None
) -> None:
    message = make_message(
        [("From", "ann@example.com"), ("To", "bob@example.com"), ("Bcc", "eve@example.com")]
    )
    sent = assert_same_as_smtplib(smtplib_send, message, sender, recipients)
    # The Bcc header goes even when the envelope does not come from the headers.
    assert b"Bcc" not in sent.data


def test_explicit_empty_recipients_are_refused() -> None:
    message = make_message([("From", "ann@example.com"), ("To", "bob@example.com")])
    with pytest.raises(ValueError, match="no recipients"):
        message_envelope(message, recipients=[])


# --- Messages without a usable envelope ----------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ([("To", "bob@example.com")], "no From header"),
        ([("From", "undisclosed:;"), ("To", "bob@example.com")], "From header .* no address"),
        # A Sender header without an address does not fall back to From.
        (
            [("From", "ann@example.com"), ("Sender", "nobody:;"), ("To", "bob@example.com")],
            "Sender header .* no address",
        ),
        # A resent message takes its sender from the Resent- block only.
        (
            [("From", "ann@example.com"), ("Resent-Date", RESENT_DATE), ("Resent-To", "b@x.org")],
            "no Resent-From header",
        ),
    ],
)
def test_no_usable_sender(headers: Headers, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        message_envelope(make_message(headers))


def test_no_sender_header_differs_from_smtplib(smtplib_send: SendWithSmtplib) -> None:
    # smtplib would send MAIL FROM:<None>, from str(None); a ValueError is more useful.
    message = make_message([("To", "bob@example.com")])
    assert smtplib_send(message).sender == "None"
    with pytest.raises(ValueError, match="no From header"):
        message_envelope(message)
    # An explicit sender is all the message lacked.
    assert message_envelope(message, "ann@example.com") == ("ann@example.com", ["bob@example.com"])


@pytest.mark.parametrize(
    "headers",
    [
        [("From", "ann@example.com")],
        [("From", "ann@example.com"), ("To", "undisclosed-recipients:;")],
        # Headers of the original message do not count once the message is resent.
        [
            ("From", "ann@example.com"),
            ("To", "bob@example.com"),
            ("Resent-Date", RESENT_DATE),
            ("Resent-From", "carl@example.org"),
        ],
    ],
)
def test_no_recipients(headers: Headers) -> None:
    with pytest.raises(ValueError, match=r"^the message has no recipients$"):
        message_envelope(make_message(headers))


def test_empty_addresses_are_dropped(smtplib_send: SendWithSmtplib) -> None:
    message = make_message(
        [
            ("From", "ann@example.com"),
            ("To", "undisclosed-recipients:;"),
            ("Bcc", "bob@example.com"),
        ]
    )
    # smtplib passes the empty address of the group on, for a RCPT TO:<> that fails.
    sent = smtplib_send(message)
    assert "" in sent.recipients
    envelope = message_envelope(message)
    assert envelope == (sent.sender, [address for address in sent.recipients if address])
    assert serialize_message(message, smtputf8=message_needs_smtputf8(message, *envelope)) == (
        sent.data
    )


# --- SMTPUTF8 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("From", "ann@example.com"), ("To", "Jörg <jörg@exämple.com>")],
        [("From", "Jörg <jörg@example.com>"), ("To", "bob@example.com")],
        [("From", "ann@example.com"), ("To", "bob@example.com"), ("Bcc", "jörg@example.com")],
        [("From", "ann@example.com"), ("To", "bob@example.com"), ("Cc", "bob@bücher.example")],
    ],
)
def test_non_ascii_addresses_need_smtputf8(smtplib_send: SendWithSmtplib, headers: Headers) -> None:
    message = make_message([*headers, ("Subject", "Grüße")])
    sent = assert_same_as_smtplib(smtplib_send, message)
    assert "SMTPUTF8" in sent.mail_options
    # In UTF-8 mode the headers are written as UTF-8, not as encoded-words.
    assert "Subject: Grüße".encode() in sent.data


@pytest.mark.parametrize(
    ("sender", "recipients"), [("jörg@example.com", None), (None, ["bob@bücher.example"])]
)
def test_explicit_non_ascii_address_needs_smtputf8(
    smtplib_send: SendWithSmtplib, sender: str | None, recipients: list[str] | None
) -> None:
    message = make_message([("From", "ann@example.com"), ("To", "bob@example.com")])
    assert (
        "SMTPUTF8" in assert_same_as_smtplib(smtplib_send, message, sender, recipients).mail_options
    )


def test_non_ascii_display_names_do_not_need_smtputf8(smtplib_send: SendWithSmtplib) -> None:
    message = make_message(
        [
            ("From", "Jörg Müller <joerg@example.com>"),
            ("To", "Zoë <zoe@example.com>"),
            ("Subject", "Grüße aus Köln"),
        ],
        body="Grüße!\n",
    )
    sent = assert_same_as_smtplib(smtplib_send, message)
    assert "SMTPUTF8" not in sent.mail_options
    # RFC 2047 encoded-words carry the non-ASCII text in ASCII.
    assert sent.data.partition(b"\r\n\r\n")[0].isascii()


@pytest.mark.parametrize(
    "headers",
    [
        # Addresses that are sent but are not in the envelope: smtplib would write them as
        # encoded-words, which RFC 2047 section 5 does not allow inside an address.
        [("From", "ann@example.com"), ("To", "bob@example.com"), ("Reply-To", "jörg@example.com")],
        [("From", "jörg@example.com"), ("Sender", "ann@example.com"), ("To", "bob@example.com")],
    ],
)
def test_non_ascii_address_in_other_headers_needs_smtputf8(
    smtplib_send: SendWithSmtplib, headers: Headers
) -> None:
    message = make_message(headers)
    envelope = message_envelope(message)
    assert envelope == (smtplib_send(message).sender, ["bob@example.com"])
    assert message_needs_smtputf8(message, *envelope)
    assert "jörg@example.com".encode() in serialize_message(message, smtputf8=True)


@pytest.mark.parametrize("name", ["Bcc", "Resent-Bcc"])
def test_non_ascii_blind_copy_is_not_sent(name: str) -> None:
    # The header is removed, so with an ASCII envelope nothing needs UTF-8.
    message = make_message(
        [("From", "ann@example.com"), ("To", "bob@example.com"), (name, "jörg@example.com")]
    )
    assert not message_needs_smtputf8(message, "ann@example.com", ["bob@example.com"])


@pytest.mark.parametrize(
    ("headers", "needs_smtputf8"),
    [
        # Written in UTF-8 by this policy, but never written at all.
        ([("Bcc", "jörg@example.com")], False),
        # A header after the blind copy is still looked at.
        ([("Bcc", "jörg@example.com"), ("Subject", "Grüße")], True),
    ],
)
def test_blind_copy_headers_do_not_count_but_the_rest_do(
    headers: Headers, needs_smtputf8: bool
) -> None:
    message = make_message(
        [("From", "ann@example.com"), ("To", "bob@example.com"), *headers],
        policy=email.policy.SMTPUTF8,
    )
    assert message_needs_smtputf8(message, "ann@example.com", ["bob@example.com"]) is needs_smtputf8


def test_utf8_policy_writes_utf8_headers(smtplib_send: SendWithSmtplib) -> None:
    # A message whose policy is already in UTF-8 mode has UTF-8 headers whatever the session
    # says, so it needs SMTPUTF8; smtplib, going by the addresses alone, sends it without.
    message = make_message(
        [("From", "ann@example.com"), ("To", "bob@example.com"), ("Subject", "Grüße")],
        policy=email.policy.SMTPUTF8,
    )
    sent = smtplib_send(message)
    assert sent.mail_options == ()
    assert "Subject: Grüße".encode() in sent.data
    assert message_needs_smtputf8(message, sent.sender, sent.recipients)
    assert serialize_message(message, smtputf8=False) == sent.data


@pytest.mark.parametrize(
    ("policy", "needs_smtputf8"), [(email.policy.default, False), (email.policy.SMTPUTF8, True)]
)
def test_headers_of_nested_parts_count(
    policy: EmailPolicy[EmailMessage], needs_smtputf8: bool
) -> None:
    message = make_message([("From", "ann@example.com"), ("To", "bob@example.com")], policy=policy)
    message.add_attachment(
        b"data", maintype="application", subtype="octet-stream", filename="ä.bin"
    )
    # The default policy writes the file name as RFC 2231 ASCII; the UTF-8 one as it is.
    assert message_needs_smtputf8(message, "ann@example.com", ["bob@example.com"]) is needs_smtputf8


def test_raw_8bit_header_of_a_parsed_message_needs_smtputf8() -> None:
    # compat32 writes undecodable bytes of a parsed message back as they came.
    message = email.message_from_bytes(
        b"From: ann@example.com\nTo: bob@example.com\nSubject: Gr\xc3\xbc\xc3\x9fe\n\nHello.\n"
    )
    assert message_needs_smtputf8(message, "ann@example.com", ["bob@example.com"])
    assert b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n" in serialize_message(message, smtputf8=True)


class VerbatimPolicy(EmailPolicy):
    """Writes stored header values as they are, as Python before 3.13 did with the default
    policy for values parsed from a str, and fails on non-ASCII outside UTF-8 mode."""

    def fold_binary(self, name: str, value: str) -> bytes:
        return f"{name}: {value}{self.linesep}".encode("utf-8" if self.utf8 else "ascii")


def test_header_the_policy_cannot_write_in_ascii_needs_smtputf8() -> None:
    message = email.message_from_string(
        "From: ann@example.com\nTo: bob@example.com\nSubject: Grüße\n\nHello.\n",
        policy=VerbatimPolicy(),
    )
    assert message_needs_smtputf8(message, "ann@example.com", ["bob@example.com"])
    with pytest.raises(UnicodeEncodeError):
        serialize_message(message, smtputf8=False)
    assert "Subject: Grüße\r\n".encode() in serialize_message(message, smtputf8=True)


def test_parsed_non_ascii_header_can_always_be_sent() -> None:
    # Whether Python's default policy can encode such a value depends on its version (3.13 can);
    # either way the answer of message_needs_smtputf8 must lead to bytes that can be sent.
    message = email.message_from_string(
        "From: ann@example.com\nTo: bob@example.com\nSubject: Grüße\n\nHello.\n",
        policy=email.policy.default,
    )
    smtputf8 = message_needs_smtputf8(message, "ann@example.com", ["bob@example.com"])
    data = serialize_message(message, smtputf8=smtputf8)
    assert smtputf8 or data.isascii()


def test_ascii_message_does_not_need_smtputf8() -> None:
    message = make_message([("From", "ann@example.com"), ("To", "bob@example.com")])
    message.add_attachment(
        b"data", maintype="application", subtype="octet-stream", filename="a.bin"
    )
    assert not message_needs_smtputf8(message, "ann@example.com", ["bob@example.com"])


# --- The bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [email.policy.default, email.policy.SMTP, email.policy.strict])
def test_lines_end_in_crlf(
    smtplib_send: SendWithSmtplib, policy: EmailPolicy[EmailMessage]
) -> None:
    message = make_message(
        [("From", "ann@example.com"), ("To", "bob@example.com"), ("Subject", "Lines")],
        body="one\ntwo\r\nthree\n",
        policy=policy,
    )
    data = assert_same_as_smtplib(smtplib_send, message).data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")


def test_blind_copy_headers_are_removed(smtplib_send: SendWithSmtplib) -> None:
    # Resent-Bcc goes too, even in a message that is not a resent one.
    message = make_message(
        [
            ("From", "ann@example.com"),
            ("To", "bob@example.com"),
            ("Bcc", "eve@example.com"),
            ("Resent-Bcc", "mallory@example.com"),
            ("Resent-Bcc", "trent@example.com"),
        ]
    )
    data = assert_same_as_smtplib(smtplib_send, message).data
    assert header_names(data) == [
        b"From",
        b"To",
        b"Content-Type",
        b"Content-Transfer-Encoding",
        b"MIME-Version",
    ]


@pytest.mark.parametrize("recipient", ["bob@example.com", "jörg@example.com"])
def test_from_lines_of_the_body_as_smtplib_writes_them(
    smtplib_send: SendWithSmtplib, recipient: str
) -> None:
    # smtplib gives the generator no policy outside UTF-8 mode, and the generator then
    # mangles "From " at the start of a body line for mbox; in UTF-8 mode it follows the
    # policy, which does not.
    message = make_message(
        [("From", "ann@example.com"), ("To", recipient)], body="From the start.\n"
    )
    data = assert_same_as_smtplib(smtplib_send, message).data
    assert (b"\r\n>From the start." in data) is recipient.isascii()


def test_multipart_message(smtplib_send: SendWithSmtplib) -> None:
    message = make_message(
        [("From", "ann@example.com"), ("To", "bob@example.com"), ("Bcc", "eve@example.com")]
    )
    message.add_alternative("<p>Hello.</p>\n", subtype="html")
    message.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream")
    # Without boundaries the generator would pick random ones, different for each run.
    for number, part in enumerate(part for part in message.walk() if part.is_multipart()):
        part.set_boundary(f"boundary-{number}")
    assert_same_as_smtplib(smtplib_send, message)


def test_the_callers_message_is_not_changed() -> None:
    message = make_message(
        [
            ("From", "ann@example.com"),
            ("To", "bob@example.com"),
            ("Bcc", "eve@example.com"),
            ("Resent-Bcc", "mallory@example.com"),
        ]
    )
    message.add_alternative("<p>Hello.</p>\n", subtype="html")
    message.add_attachment(b"data", maintype="application", subtype="octet-stream")
    headers = [(part, list(part.raw_items())) for part in message.walk()]
    for smtputf8 in (False, True):
        data = serialize_message(message, smtputf8=smtputf8)
        assert b"Bcc" not in data
        assert data.count(b"boundary=") == 2
    # Blind copies are still there, and no part, nested or not, gained a boundary.
    assert [(part, list(part.raw_items())) for part in message.walk()] == headers
    assert message["Bcc"] == "eve@example.com"
    assert message["Resent-Bcc"] == "mallory@example.com"
    assert [part.get_boundary() for part in message.walk() if part.is_multipart()] == [None, None]


# --- The legacy Message class and its compat32 policy --------------------------------------


def make_legacy_message(headers: Headers) -> Message:
    message = Message()
    for name, value in headers:
        message[name] = value
    message.set_payload("Hello.\n")
    return message


def test_legacy_message(smtplib_send: SendWithSmtplib) -> None:
    message = make_legacy_message(
        [
            ("From", "Ann <ann@example.com>"),
            ("Sender", "secretary@example.com"),
            ("To", "bob@example.com, carl@example.com"),
            ("Cc", "dora@example.com"),
            ("Bcc", "eve@example.com"),
            ("Subject", "Grüße"),
        ]
    )
    sent = assert_same_as_smtplib(smtplib_send, message)
    assert sent.sender == "secretary@example.com"
    assert sent.recipients == [
        "bob@example.com",
        "carl@example.com",
        "eve@example.com",
        "dora@example.com",
    ]
    assert b"Bcc" not in sent.data
    assert message["Bcc"] == "eve@example.com"


def test_legacy_message_resent(smtplib_send: SendWithSmtplib) -> None:
    assert_same_as_smtplib(smtplib_send, make_legacy_message(RESENT_HEADERS))


def test_legacy_message_with_non_ascii_recipient(smtplib_send: SendWithSmtplib) -> None:
    # compat32 has no UTF-8 mode: smtplib fails trying to switch it on, while the message,
    # whose headers are ASCII, can be sent as compat32 writes it.
    message = make_legacy_message([("From", "ann@example.com"), ("To", "bob@example.com")])
    with pytest.raises(TypeError):
        smtplib_send(message, recipients=["jörg@example.com"])
    envelope = message_envelope(message, recipients=["jörg@example.com"])
    assert message_needs_smtputf8(message, *envelope)
    assert serialize_message(message, smtputf8=True) == serialize_message(message, smtputf8=False)
    assert serialize_message(message, smtputf8=True) == smtplib_send(message).data


# --- Imports -------------------------------------------------------------------------------


def test_importing_the_module_loads_no_email_generator_or_socket() -> None:
    code = (
        "import sys\n"
        "import smtp_proto._message\n"
        "names = ('email.generator', 'email.utils', 'socket')\n"
        "print(' '.join(name for name in names if name in sys.modules))\n"
    )
    # Coverage's subprocess hooks would import modules of their own before the code runs.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("COV_CORE_", "COVERAGE_"))
    }
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
