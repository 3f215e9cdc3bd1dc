"""Which of CPython's own smtplib tests the drop-in fails, and why.

``tests/test_cpython_smtplib.py`` runs ``test.test_smtplib`` from the running interpreter's
standard library against ``smtp_proto.transports.sync`` and requires the failing tests to be
exactly the ones listed here. Each entry is a deliberate difference from smtplib, named so
that a reader can judge it; a test that starts passing must be removed from the table, and a
new failure fails the suite.

Test ids are ``Class.method`` as in ``test.test_smtplib``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXPECTED_FAILURES", "NOT_IN_EVERY_VERSION"]

#: Test id -> why the drop-in behaves differently from smtplib there.
EXPECTED_FAILURES: Final[dict[str, str]] = {
    "DebuggingServerTests.testEXPNNotImplemented": (
        "stricter command grammar: the test sends a bare 'EXPN', and RFC 5321 section "
        "4.1.1.7 requires an argument (expn = 'EXPN' SP String CRLF); the engine refuses "
        "to produce the malformed command, with ValueError"
    ),
    "DefaultArgumentsTests.testSendMessage": (
        "refused before sending: the test's message has a From but no To, Cc or Bcc, and "
        "the engine's message_envelope() raises ValueError for a message without "
        "recipients, where smtplib would go on to a transaction that cannot succeed"
    ),
    "DefaultArgumentsTests.testSendMessageWithMailOptions": (
        "refused before sending: the same recipient-less message as testSendMessage"
    ),
    "SMTPSimTests.testAUTH_BUGGY": (
        "AUTH runaway defence: after Limits.max_auth_rounds challenges the engine cancels "
        "the exchange with '*' as RFC 4954 section 4 prescribes (smtplib gives up with a "
        "bare exception and leaves the server mid-exchange); the test server answers the "
        "cancellation with yet another challenge, which the engine refuses as a protocol "
        "violation (SMTPProtocolError, also an SMTPException, with another message)"
    ),
    "SMTPSimTests.test__rest_from_mail_cmd": (
        "no needless RSET: after a refused MAIL no transaction is open, so the engine sends "
        "no RSET; smtplib's RSET is what finds out that the test server hung up, and the "
        "test asserts that the socket was closed by then. The close is noticed at the next "
        "command instead"
    ),
    "SMTPSimTests.test_lowercase_mail_from_rcpt_to": (
        "wire format: commands are written in upper case ('MAIL FROM:<John> SIZE=14', as in "
        "RFC 5321's examples); the test pins smtplib's lower-case 'mail from:' bytes. Verbs "
        "and keywords are case-insensitive (RFC 5321 section 2.4)"
    ),
    "SMTPSimTests.test_send_unicode_without_SMTPUTF8": (
        "checked before sending: a non-ASCII local part without SMTPUTF8 is refused with "
        "SMTPNotSupportedError before any command goes out (RFC 6531 section 3.2), where "
        "smtplib raises UnicodeEncodeError halfway through the transaction"
    ),
}

#: Tests of the table that older CPython versions do not have (added in 3.13, and maybe
#: backported to later patch releases of older ones). Every other entry must exist.
NOT_IN_EVERY_VERSION: Final = frozenset({"SMTPSimTests.test_lowercase_mail_from_rcpt_to"})
