"""Write the seed corpus of every harness: ``python fuzz/make_corpus.py``.

The seeds are real conversations in each harness's input format: Postfix, Exim, Gmail and
Microsoft EHLO replies, a pipelined transaction, STARTTLS with injected bytes, SMTP
smuggling vectors, 8-bit and non-UTF-8 replies, multiline replies, LMTP. Files named
``seed-*`` are rewritten by this script; files named ``regression-*`` are inputs that once
found a bug, kept by hand, and never touched here.
"""

from __future__ import annotations

import base64
from pathlib import Path

import fuzz_batch as batch
import fuzz_connection as connection
import fuzz_data as data
import fuzz_ehlo_auth as ehlo_auth

from smtp_proto import Read, Write, send_transactions
from smtp_proto.testing import FakeServer

CORPUS = Path(__file__).resolve().parent / "corpus"

GREETING_POSTFIX = b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n"
EHLO_POSTFIX = (
    b"250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
    b"250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
    b"250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
)
GREETING_EXIM = b"220 mx.example.net ESMTP Exim 4.96 Mon, 01 Jan 2024 00:00:00 +0000\r\n"
EHLO_EXIM = (
    b"250-mx.example.net Hello client.example [192.0.2.1]\r\n250-SIZE 52428800\r\n"
    b"250-8BITMIME\r\n250-PIPELINING\r\n250-PIPE_CONNECT\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n"
    b"250-CHUNKING\r\n250-STARTTLS\r\n250-PRDR\r\n250 HELP\r\n"
)
GREETING_GMAIL = (
    b"220 smtp.gmail.com ESMTP a1-20020a170902b58100b001d4a1c5e4b6sm1234567plx.1 - gsmtp\r\n"
)
EHLO_GMAIL = (
    b"250-smtp.gmail.com at your service, [192.0.2.1]\r\n250-SIZE 35882577\r\n"
    b"250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n"
    b"250-CHUNKING\r\n250 SMTPUTF8\r\n"
)
EHLO_GMAIL_TLS = (
    b"250-smtp.gmail.com at your service, [192.0.2.1]\r\n250-SIZE 35882577\r\n"
    b"250-8BITMIME\r\n250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n"
)
GREETING_MICROSOFT = (
    b"220 BN8PR12CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready at "
    b"Mon, 1 Jan 2024 00:00:00 +0000\r\n"
)
EHLO_MICROSOFT = (
    b"250-BN8PR12CA0001.outlook.office365.com Hello [192.0.2.1]\r\n250-SIZE 157286400\r\n"
    b"250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n"
    b"250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n"
)
EHLO_MICROSOFT_TLS = (
    b"250-BN8PR12CA0001.outlook.office365.com Hello [192.0.2.1]\r\n250-SIZE 157286400\r\n"
    b"250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-AUTH LOGIN XOAUTH2\r\n"
    b"250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n"
)
EHLO_SMALL = (
    b"250-mx.example.org\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n"
    b"250 8BITMIME\r\n"
)
LHLO_DOVECOT = (
    b"250-dovecot.example.org\r\n250-8BITMIME\r\n250-CHUNKING\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
)

OK = b"250 2.0.0 Ok\r\n"


def b64(text: bytes) -> bytes:
    return base64.b64encode(text)


def connection_seeds() -> dict[str, bytes]:
    c = connection
    encode = c.encode
    return {
        "postfix-session": encode(
            c.CLOSE_AT_END,
            [
                ("hello", 0),
                ("mail", 0),
                ("rcpt", 1),
                ("data", 0),
                ("send_data", 0),
                ("end_data", 0),
                ("quit", 0),
            ],
            [
                GREETING_POSTFIX,
                EHLO_POSTFIX,
                b"250 2.1.0 Ok\r\n",
                b"250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n",
                b"354 End data with <CR><LF>.<CR><LF>\r\n",
                b"",
                b"250 2.0.0 Ok: queued as 4Q1xYz2kLmz9sWp\r\n",
                b"221 2.0.0 Bye\r\n",
            ],
        ),
        "pipelined-session": encode(
            c.CLOSE_AT_END,
            [
                ("hello", 0),
                ("mail", 1),
                ("rcpt", 2),
                ("data", 0),
                ("send_data", 1),
                ("end_data", 0),
                ("quit", 0),
            ],
            [
                GREETING_POSTFIX,
                EHLO_POSTFIX,
                b"",
                b"",
                (
                    b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                    b"550 5.1.1 <carol@example.net>: Recipient address rejected: User unknown\r\n"
                    b"250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
                ),
                b"",
                b"250 2.0.0 Ok: queued\r\n",
                b"221 2.0.0 Bye\r\n",
            ],
        ),
        "exim-bdat-transaction": encode(
            0,
            [("hello", 0), ("send_message", 0), ("quit", 0)],
            [
                GREETING_EXIM,
                EHLO_EXIM,
                b"250 OK\r\n250 Accepted\r\n"
                + b"250 1 byte chunk received\r\n" * 19
                + b"250- OK id=1rKxyz-000ABC-12\r\n250 ok\r\n",
                b"221 mx.example.net closing connection\r\n",
            ],
        ),
        "gmail-starttls-xoauth2": encode(
            c.CLOSE_AT_END,
            [
                ("hello", 0),
                ("starttls", 0),
                ("tls_established", 0),
                ("hello", 0),
                ("auth", 4),
                ("send_message", 3),
                ("quit", 0),
            ],
            [
                GREETING_GMAIL,
                EHLO_GMAIL,
                b"220 2.0.0 Ready to start TLS\r\n",
                b"",
                EHLO_GMAIL_TLS,
                b"235 2.7.0 Accepted\r\n",
                b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.0.0 OK  1700000000 gsmtp\r\n",
                b"221 2.0.0 closing connection\r\n",
            ],
        ),
        "microsoft-login": encode(
            c.CLOSE_AT_END,
            [
                ("hello", 0),
                ("starttls", 0),
                ("tls_established", 0),
                ("hello", 0),
                ("auth", 1),
                ("quit", 0),
            ],
            [
                GREETING_MICROSOFT,
                EHLO_MICROSOFT,
                b"220 2.0.0 SMTP server ready\r\n",
                b"",
                EHLO_MICROSOFT_TLS,
                b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n",
                b"221 2.0.0 Service closing transmission channel\r\n",
            ],
        ),
        "starttls-injection-same-read": encode(
            0,
            [("hello", 0), ("starttls", 0), ("tls_established", 0), ("hello", 0)],
            [
                GREETING_POSTFIX,
                EHLO_POSTFIX,
                b"220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 AUTH PLAIN\r\n",
            ],
        ),
        "starttls-injection-next-read": encode(
            0,
            [("hello", 0), ("starttls", 0)],
            [GREETING_POSTFIX, EHLO_POSTFIX, b"220 2.0.0 Ready\r\n", b"250 injected\r\n"],
        ),
        "smuggling-data": encode(
            c.CLOSE_AT_END,
            [
                ("hello", 0),
                ("mail", 0),
                ("rcpt", 0),
                ("data", 0),
                ("send_data", 1),
                ("send_data", 2),
                ("send_data", 3),
                ("send_data", 8),
                ("end_data", 0),
            ],
            [
                GREETING_POSTFIX,
                EHLO_POSTFIX,
                b"250 2.1.0 Ok\r\n",
                b"250 2.1.5 Ok\r\n",
                b"354 go\r\n",
                b"",
                b"",
                b"",
                b"",
            ],
        ),
        "smuggling-transaction": encode(
            0,
            [("hello", 0), ("send_message", 2), ("send_message", 3)],
            [
                GREETING_EXIM,
                EHLO_EXIM.replace(b"250-CHUNKING\r\n", b""),
                b"250 OK\r\n" + b"250 Accepted\r\n" * 3 + b"354 Enter message\r\n250 OK id=1\r\n",
                b"250 OK\r\n250 Accepted\r\n354 Enter message\r\n250 OK id=2\r\n",
            ],
        ),
        "eight-bit-replies": encode(
            c.CLOSE_AT_END,
            [("hello", 0), ("mail", 2), ("rcpt", 3), ("quit", 0)],
            [
                b"220 m\xc3\xa9l.example.org ESMTP \xff\xfe not UTF-8\r\n",
                b"250-m\xc3\xa9l.example.org salut\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n",
                b"250 2.1.0 exp\xe9diteur ok\r\n",
                b"550 5.1.1 <\xc3\xbc@example.de>: destinataire inconnu \x80\r\n",
                b"221 2.0.0 au revoir\r\n",
            ],
        ),
        "multiline-and-helo-fallback": encode(
            0,
            [("hello", 0), ("noop", 0), ("other", 2), ("other", 3), ("quit", 0)],
            [
                b"220-mx.example.org ESMTP\r\n220-no spam please\r\n220 welcome\r\n",
                b"502 5.5.2 Error: command not recognized\r\n250 mx.example.org\r\n",
                b"250-first\r\n250-second\r\n250 2.0.0 last\r\n",
                b"214-Commands:\r\n214-HELO MAIL RCPT DATA\r\n214 End of HELP info\r\n",
                b"502 5.5.1 XCLIENT not available\r\n",
                b"221 bye\r\n",
            ],
        ),
        "lmtp-per-recipient": encode(
            c.LMTP | c.CLOSE_AT_END,
            [("hello", 0), ("send_message", 1), ("quit", 0)],
            [
                b"220 dovecot.example.org Dovecot ready.\r\n",
                LHLO_DOVECOT,
                (
                    b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n"
                    b"250 2.0.0 <bob@example.com> Saved\r\n"
                    b"552 5.2.2 <carol@example.net> Quota exceeded\r\n"
                ),
                b"221 2.0.0 Bye\r\n",
            ],
        ),
        "service-closing-421": encode(
            0,
            [("hello", 0), ("mail", 0), ("rcpt", 0)],
            [
                GREETING_POSTFIX,
                EHLO_POSTFIX,
                b"250 2.1.0 Ok\r\n",
                b"421 4.4.2 mail.example.org Error: timeout exceeded\r\n",
            ],
        ),
        "close-after-final-dot": encode(
            0,
            [("hello", 0), ("send_message", 0), ("close", 0)],
            [
                GREETING_POSTFIX,
                EHLO_POSTFIX.replace(b"250 CHUNKING", b"250 HELP"),
                b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
            ],
        ),
        "small-limits-long-line": encode(
            c.SMALL_LIMITS,
            [("hello", 0)],
            [GREETING_POSTFIX, b"250-" + b"x" * 300 + b"\r\n250 ok\r\n"],
        ),
        "auth-scram": encode(
            c.TLS_ACTIVE,
            [("hello", 0), ("auth", 3)],
            [
                GREETING_POSTFIX,
                EHLO_SMALL,
                b"334 " + b64(b"r=fuzznonce3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=16") + b"\r\n",
                b"535 5.7.8 Authentication credentials invalid\r\n",
            ],
        ),
        "greeting-refused": encode(
            c.CLOSE_AT_END,
            [("quit", 0)],
            [b"554 5.3.2 mx.example.org No SMTP service here\r\n", b"221 bye\r\n"],
        ),
    }


def data_seeds() -> dict[str, bytes]:
    encode = data.encode
    message = b"From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n.\r\n..\r\nbye"
    return {
        "message": encode(0, message, [40, 128, 200]),
        "lf-dot-lf": encode(0, b"a\n.\nMAIL FROM:<evil@example>\n", [3]),
        "cr-dot-cr": encode(1, b"a\r.\rRCPT TO:<evil@example>\r", [2, 3]),
        "crlf-dot-lf": encode(2, b"a\r\n.\nb\r\n", [85]),
        "lf-dot-crlf": encode(data.USE_BDAT, b"a\n.\r\nb", [128]),
        "split-crlf": encode(0x30, b"line\r\n.\r\nnext", [64, 70, 80, 90]),
        "leading-dots": encode(data.USE_BDAT | 0x10, b"..\r\n.\r\n...\n.", []),
        "eight-bit": encode(0x50, "Subject: \u00e9t\u00e9\r\n\r\n\u00fc\r\n".encode(), [100]),
        "non-utf8": encode(data.USE_BDAT | 0x20, b"\xff\xfe\r\n\x80.\r\n", [50]),
        "nul": encode(1, b"before\r\nnul\x00here\r\nafter\r\n", [60, 120]),
        "empty": encode(0, b""),
        "lone-cr-end": encode(0x04, b"text\r", []),
        "bare-dot": encode(0, b".", []),
    }


def ehlo_auth_seeds() -> dict[str, bytes]:
    m = ehlo_auth

    def ehlo(reply: bytes) -> bytes:
        lines = [line[4:] for line in reply.split(b"\r\n") if line]
        return bytes((m.EHLO, 0)) + b"\n".join(lines)

    def sasl(index: int, options: int, challenges: list[bytes]) -> bytes:
        return bytes((m.SASL, index | options)) + b"\n".join(challenges)

    def auth(index: int, options: int, lines: list[bytes]) -> bytes:
        return bytes((m.AUTH, index | options)) + b"\n".join(lines)

    server_first = b"r=fuzznonce3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=16"
    return {
        "ehlo-postfix": ehlo(EHLO_POSTFIX),
        "ehlo-exim": ehlo(EHLO_EXIM),
        "ehlo-gmail": ehlo(EHLO_GMAIL_TLS),
        "ehlo-microsoft": ehlo(EHLO_MICROSOFT_TLS),
        "ehlo-legacy-auth": bytes((m.EHLO, 0))
        + b"mx.example.org\nAUTH=LOGIN PLAIN\nauth login cram-md5\nSIZE\nSIZE 0\n8bitmime\n"
        b"-bad\n\xc3\xa9\tx\nX-EXPS=LOGIN GSSAPI",
        "ehlo-helo": bytes((m.EHLO, 1)) + b"mx.example.org greets you\nPIPELINING",
        "sasl-login-microsoft": sasl(1, 0, [b"User Name\x00", b"Password\x00"]),
        "sasl-login-prompts": sasl(1, 0, [b"Username:", b"Password:", b"Password:"]),
        "sasl-cram-md5": sasl(2, 0, [b"<1896.697170952@postoffice.example.net>"]),
        "sasl-xoauth2-error": sasl(
            4, 0, [b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}']
        ),
        "sasl-oauthbearer": sasl(5, m.TOKEN_CALLABLE, [b'{"status":"invalid_token"}']),
        "sasl-external": sasl(3, 0, [b""]),
        "sasl-scram-arbitrary": sasl(7, 0, [server_first, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="]),
        "sasl-scram-extension": sasl(6, 0, [server_first + b",x=ext", b"e=invalid-proof"]),
        "sasl-scram-mext": sasl(7, 0, [b"m=ext," + server_first]),
        "sasl-scram-valid": sasl(7, m.VALID_SCRAM_SERVER, [b"3rfcNHYJY1ZVvWVs7j", b"salt!"]),
        "sasl-scram-corrupt": sasl(
            6, m.VALID_SCRAM_SERVER | m.CORRUPT_SIGNATURE, [b"srv", b"pepper", b"extra"]
        ),
        "auth-login-microsoft": auth(
            1, 0, [b"334 VXNlcm5hbWU6", b"334 UGFzc3dvcmQ6", b"235 2.7.0 Authentication successful"]
        ),
        "auth-plain-refused": auth(0, 0, [b"535 5.7.8 Error: authentication failed"]),
        "auth-plain-deferred": auth(0, m.SHORT_COMMAND_LINE, [b"", b"235 2.7.0 ok"]),
        "auth-xoauth2-error": auth(
            4,
            0,
            [
                b'={"status":"401","schemes":"bearer"}',
                b"535 5.7.8 Username and Password not accepted",
            ],
        ),
        "auth-cram-md5": auth(2, 0, [b"=<1896.697170952@postoffice.example.net>", b"235 ok"]),
        "auth-scram": auth(7, m.CLOSE_AT_END, [b"=" + server_first, b"=v=bad", b"535 no"]),
        "auth-not-base64": auth(1, 0, [b"not base64!", b"501 5.5.2 cancelled"]),
        "auth-too-many-rounds": auth(3, m.SHORT_AUTH_LINE, [b""] * 6 + [b"501 too many"]),
        "auth-421": auth(1, 0, [b"421 4.7.0 Try again later"]),
    }


def replies_seeds() -> dict[str, bytes]:
    return {
        "postfix": GREETING_POSTFIX + EHLO_POSTFIX + b"250 2.1.0 Ok\r\n354 End data\r\n",
        "exim": GREETING_EXIM + EHLO_EXIM,
        "gmail": GREETING_GMAIL + EHLO_GMAIL + b"220 2.0.0 Ready to start TLS\r\n",
        "microsoft": GREETING_MICROSOFT + EHLO_MICROSOFT,
        "multiline-code-change": b"250-a\r\n251 b\r\n",
        "bare-lf": b"250 ok\n",
        "bare-cr": b"250 a\rb\r\n",
        "eight-bit": b"250 \xc3\xa9t\xc3\xa9 \xff\xfe\r\n",
        "enhanced": b"550 5.1.1 unknown\r\n451 4.3.0 later\r\n250 5.1.1 mismatch\r\n",
        "long-line": b"250 " + b"x" * 200 + b"\r\n",
        "many-lines": b"250-x\r\n" * 9 + b"250 x\r\n",
        "empty-text": b"250-\r\n250 \r\n250\r\n",
    }


def recorded(options: int, messages: list[int], server: FakeServer | None = None) -> bytes:
    """A batch input holding what the in-memory FakeServer (announcing what the harness's
    EHLO reply announces, unless *server* is given) answers to the batch, read by read."""
    features = [keyword.decode() for keyword in batch.FEATURES[options % len(batch.FEATURES)]]
    if options & batch.SMALL_SIZE:
        features.append("SIZE 40")
    if server is None:
        server = FakeServer(keywords=features, lmtp=bool(options & batch.LMTP))
    server.receive(b"LHLO client.example\r\n" if options & batch.LMTP else b"EHLO x\r\n")
    conn, transactions = batch.prepare(batch.parse(batch.encode(options, messages, [])))
    operation = send_transactions(conn, transactions)
    pieces: list[bytes] = []
    unread = b""
    value: bytes | None = None
    for _ in range(batch.MAX_REQUESTS):
        try:
            request = operation.send(value)
        except StopIteration:
            return batch.encode(options, messages, pieces)
        value = None
        if isinstance(request, Write):
            unread += server.receive(request.data)
        else:
            assert isinstance(request, Read)
            pieces.append(unread)
            value, unread = unread, b""
    raise AssertionError("the batch did not end")


def refusing(options: int, *, recipient: str = "", message: str = "") -> FakeServer:
    keywords = [keyword.decode() for keyword in batch.FEATURES[options % len(batch.FEATURES)]]
    server = FakeServer(keywords=keywords, lmtp=bool(options & batch.LMTP))
    if recipient:
        server.refuse_recipient(recipient, code=550, text="5.1.1 no such user")
    if message:
        server.refuse_delivery(message, code=452, text="4.2.2 mailbox full")
    return server


def batch_seeds() -> dict[str, bytes]:
    pipelining, chunking, plain = 0, 1, 2
    lmtp, small = batch.LMTP, batch.SMALL_FLIGHT
    # A message's octet: recipients - 1, then content (times 4), content with the envelope
    # (0x20), chunk size (times 64).
    return {
        "pipelined-data": recorded(pipelining, [0x00, 0x01, 0x02, 0x03]),
        "chunking-content-with-envelope": recorded(chunking, [0x21, 0x22, 0x23, 0x20]),
        "chunking-in-chunks": recorded(chunking, [0x0C, 0x41, 0x10]),
        "no-pipelining": recorded(plain, [0x01, 0x0D]),
        "lmtp-refused-recipient-and-delivery": recorded(
            pipelining | lmtp,
            [0x02, 0x03],
            refusing(pipelining | lmtp, recipient="carol@example.net", message="dave@example.org"),
        ),
        "small-flight-long-envelopes": recorded(pipelining | small, [0x03, 0x03, 0x02]),
        "chunking-small-flight": recorded(chunking | small, [0x23, 0x23, 0x03]),
        "refused-recipients": recorded(
            chunking, [0x01, 0x00, 0x21], refusing(chunking, recipient="bob@example.com")
        ),
        "size-refused-before": recorded(pipelining | batch.SMALL_SIZE, [0x10, 0x00]),
        "421-after-mail": batch.encode(pipelining, [0x00, 0x00], [b"421 4.3.2 shutting down\r\n"]),
        "close-after-dot": batch.encode(
            pipelining, [0x00, 0x00], [b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n", b""]
        ),
        "refused-sender-then-354": batch.encode(
            pipelining,
            [0x00],
            [b"550 5.7.1 no\r\n250 2.1.5 ok\r\n354 go\r\n", b"250 2.0.0 queued\r\n"],
        ),
        "equal-replies-in-pieces": batch.encode(
            pipelining,
            [0x03],
            [
                b"250 ok\r\n250 ok\r\n250 o",
                b"k\r\n250 ok\r",
                b"\n250 ok\r\n354 go\r\n",
                b"250 ok\r\n",
            ],
        ),
    }


def main() -> None:
    seeds = {
        "fuzz_batch": batch_seeds(),
        "fuzz_connection": connection_seeds(),
        "fuzz_data": data_seeds(),
        "fuzz_ehlo_auth": ehlo_auth_seeds(),
        "fuzz_replies": replies_seeds(),
    }
    for harness, inputs in seeds.items():
        directory = CORPUS / harness
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("seed-*"):
            old.unlink()
        for name, content in inputs.items():
            (directory / f"seed-{name}").write_bytes(content)


if __name__ == "__main__":
    main()
