"""The blocking transport against real servers: aiosmtpd on 127.0.0.1, with TLS from a
throwaway CA (trustme), and small scripted servers for what no honest server does.

Every server binds 127.0.0.1 on a free port, and stops by itself: aiosmtpd when its fixture
ends, a scripted server when its script ends or its socket times out.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP as LMTPServer
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from smtp_proto import (
    ConnectionLost,
    MessageOutcome,
    RemoteProtocolError,
    Timeouts,
    TlsPolicy,
    TlsUnavailable,
)

if TYPE_CHECKING:
    # mypy cannot follow the editable install's mapping of transports/ to
    # smtp_proto.transports, so it checks the module under its folder's name.
    from transports import sync
else:
    from smtp_proto.transports import sync

USER = "alice"
PASSWORD = "s3cret-Passw0rd"
# Every form of the password that could leak into a debug log: as it is, and inside the
# base64 of AUTH PLAIN and AUTH LOGIN.
PASSWORD_FORMS = (
    PASSWORD,
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    base64.b64encode(PASSWORD.encode()).decode(),
)
# How long a scripted server waits for the client before giving up (and so stopping).
SCRIPT_TIMEOUT = 5.0

# -- aiosmtpd -----------------------------------------------------------------------------


@dataclass
class Delivered:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]


@dataclass
class Recorder:
    """An aiosmtpd handler that records what it receives. Recipients whose local part is
    "nobody" are refused; *pipelining* adds PIPELINING to the EHLO reply; *data_reply* is
    what the end of the data is answered with."""

    pipelining: bool = False
    data_reply: str = "250 2.0.0 OK"
    messages: list[Delivered] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.startswith("nobody"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(
            Delivered(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                content=content,
                mail_options=list(envelope.mail_options),
            )
        )
        return self.data_reply

    def authenticate(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append(mechanism)
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)


class LocalController(Controller):
    """aiosmtpd's controller on an ephemeral port: it learns the port the system chose
    before it connects to itself to check that the server is up."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class LocalLMTPController(UnixSocketController):
    """aiosmtpd speaking LMTP on a Unix socket."""

    def factory(self) -> SMTPServer:
        return LMTPServer(self.handler, **self.SMTP_kwargs)


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and the contexts it makes."""

    ca: trustme.CA
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="session")
def tls() -> TlsFiles:
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost", "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return TlsFiles(ca=ca, server=server, client=client)


ServerFactory = Callable[..., tuple[LocalController, Recorder]]


@pytest.fixture
def smtpd() -> Iterator[ServerFactory]:
    """Start aiosmtpd servers on 127.0.0.1 with a :class:`Recorder`; stopped at the end.

    Keyword arguments go to aiosmtpd (``tls_context``, ``ssl_context``, ...), except
    ``pipelining`` and ``data_reply``, which go to the recorder, and ``auth``, which
    installs the recorder as authenticator.
    """
    running: list[LocalController] = []

    def start(
        *,
        pipelining: bool = False,
        data_reply: str = "250 2.0.0 OK",
        auth: bool = False,
        **options: Any,
    ) -> tuple[LocalController, Recorder]:
        recorder = Recorder(pipelining=pipelining, data_reply=data_reply)
        if auth:
            options["authenticator"] = recorder.authenticate
        controller = LocalController(
            recorder, hostname="127.0.0.1", port=0, server_hostname="mx.test", **options
        )
        controller.start()
        running.append(controller)
        return controller, recorder

    yield start
    for controller in running:
        controller.stop()


# -- scripted servers -----------------------------------------------------------------------


class Wire:
    """The server's end of a scripted conversation: reads lines, records all it reads."""

    def __init__(self, conn: socket.socket, record: bytearray) -> None:
        self.conn = conn
        self.record = record
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def until(self, marker: bytes) -> bytes:
        """Read up to and including *marker*; b"" if the client closed first."""
        for _ in range(1000):
            end = self.buffer.find(marker)
            if end >= 0:
                found, self.buffer = (
                    self.buffer[: end + len(marker)],
                    self.buffer[end + len(marker) :],
                )
                return found
            data = self.conn.recv(65536)
            if not data:
                return b""
            self.record += data
            self.buffer += data
        raise AssertionError("the client sent too much")

    def line(self) -> bytes:
        return self.until(b"\r\n")

    def drain(self) -> None:
        """Read until the client closes (or the socket times out)."""
        for _ in range(1000):
            data = self.conn.recv(65536)
            if not data:
                return
            self.record += data


class ScriptedServer:
    """A server for one connection on 127.0.0.1 that plays *script* in a thread and stops
    by itself when the script ends or the client goes quiet for SCRIPT_TIMEOUT seconds."""

    def __init__(self, script: Callable[[Wire], None]) -> None:
        self.script = script
        self.received = bytearray()
        self.error: BaseException | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(SCRIPT_TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(SCRIPT_TIMEOUT)
                self.script(Wire(conn, self.received))
        except (OSError, AssertionError) as exc:
            self.error = exc
        finally:
            self.listener.close()

    def join(self) -> None:
        self.thread.join(timeout=2 * SCRIPT_TIMEOUT)
        assert not self.thread.is_alive()


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[Wire], None]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Callable[[Wire], None]) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.join()


def greet_and_ehlo(wire: Wire, *keywords: str) -> None:
    """Greet, then answer one EHLO with *keywords*."""
    wire.send(b"220 scripted.test ESMTP\r\n")
    assert wire.line().startswith(b"EHLO ")
    lines = ["scripted.test", *keywords]
    wire.send(
        b"".join(
            f"250{'-' if i < len(lines) - 1 else ' '}{text}\r\n".encode()
            for i, text in enumerate(lines)
        )
    )


def open_smtp(port: int, host: str = "localhost", **options: Any) -> sync.SMTP:
    return sync.SMTP(host, port, local_hostname="client.test", timeout=10, **options)


# -- the smtplib drop-in: sending ---------------------------------------------------------


def test_exceptions_are_the_standard_librarys() -> None:
    import smtplib  # noqa: PLC0415 - the real one, to compare with

    for name in (
        "SMTPException",
        "SMTPServerDisconnected",
        "SMTPResponseException",
        "SMTPSenderRefused",
        "SMTPRecipientsRefused",
        "SMTPDataError",
        "SMTPConnectError",
        "SMTPHeloError",
        "SMTPAuthenticationError",
        "SMTPNotSupportedError",
    ):
        assert getattr(sync, name) is getattr(smtplib, name)
    assert issubclass(sync.SMTPTimeoutError, TimeoutError)
    assert issubclass(sync.SMTPTimeoutError, smtplib.SMTPServerDisconnected)
    assert issubclass(sync.SMTPProtocolError, smtplib.SMTPResponseException)
    assert set(sync.__all__) <= set(dir(sync))


@pytest.mark.parametrize("pipelining", [False, True])
def test_sendmail_returns_the_refused_recipients(smtpd: ServerFactory, pipelining: bool) -> None:
    controller, recorder = smtpd(pipelining=pipelining)
    with open_smtp(controller.port) as smtp:
        refused = smtp.sendmail(
            "Sender <sender@example.test>",
            ["one@example.test", "nobody@example.test", "two@example.test"],
            "Subject: hello\n\nHi.\n.leading dot\n",
        )
        assert smtp.has_extn("pipelining") is pipelining
    assert refused == {"nobody@example.test": (550, b"5.1.1 no such user")}
    (message,) = recorder.messages
    assert message.mail_from == "sender@example.test"
    assert message.rcpt_tos == ["one@example.test", "two@example.test"]
    assert message.content == b"Subject: hello\r\n\r\nHi.\r\n.leading dot\r\n"


def test_sendmail_raises_only_when_every_recipient_is_refused(smtpd: ServerFactory) -> None:
    controller, recorder = smtpd(pipelining=True)
    with open_smtp(controller.port) as smtp:
        with pytest.raises(sync.SMTPRecipientsRefused) as refused:
            smtp.sendmail("a@example.test", ["nobody@example.test", "nobody2@x.test"], b"x\r\n")
        assert refused.value.recipients == {
            "nobody@example.test": (550, b"5.1.1 no such user"),
            "nobody2@x.test": (550, b"5.1.1 no such user"),
        }
        # The session is still usable: the transaction was reset.
        assert smtp.noop()[0] == 250
        assert smtp.sendmail("a@example.test", "b@example.test", b"second\r\n") == {}
    assert [m.content for m in recorder.messages] == [b"second\r\n"]


def test_refused_message_raises_data_error(smtpd: ServerFactory) -> None:
    controller, _ = smtpd(data_reply="554 5.6.0 no thanks")
    with open_smtp(controller.port) as smtp:
        with pytest.raises(sync.SMTPDataError) as error:
            smtp.sendmail("a@example.test", ["b@example.test"], b"x\r\n")
        assert (error.value.smtp_code, error.value.smtp_error) == (554, b"5.6.0 no thanks")
        assert smtp.noop()[0] == 250


def test_pipelining_sends_the_envelope_in_one_go(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer],
) -> None:
    # This server answers nothing until it has MAIL, both RCPTs and DATA: a client that
    # waited for a reply between them would time out.
    def script(wire: Wire) -> None:
        greet_and_ehlo(wire, "PIPELINING", "8BITMIME")
        envelope = [wire.line() for _ in range(4)]
        assert envelope == [
            b"MAIL FROM:<a@example.test>\r\n",
            b"RCPT TO:<b@example.test>\r\n",
            b"RCPT TO:<c@example.test>\r\n",
            b"DATA\r\n",
        ]
        wire.send(b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n354 go ahead\r\n")
        assert wire.until(b"\r\n.\r\n") == b"Hello\r\n.\r\n"
        wire.send(b"250 2.0.0 queued\r\n")
        assert wire.line() == b"QUIT\r\n"
        wire.send(b"221 bye\r\n")

    server = scripted(script)
    with sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=3) as smtp:
        refused = smtp.sendmail("a@example.test", ["b@example.test", "c@example.test"], "Hello")
    server.join()
    assert server.error is None
    assert refused == {"c@example.test": (550, b"5.1.1 unknown")}


def test_send_message_uses_the_headers_and_never_sends_bcc(smtpd: ServerFactory) -> None:
    controller, recorder = smtpd()
    message = EmailMessage()
    message["From"] = "Sender <sender@example.test>"
    message["To"] = "To <to@example.test>"
    message["Bcc"] = "hidden@example.test"
    message["Subject"] = "greetings"
    message.set_content("Hello.\n")
    with open_smtp(controller.port) as smtp:
        assert smtp.send_message(message) == {}
    (delivered,) = recorder.messages
    assert delivered.mail_from == "sender@example.test"
    assert delivered.rcpt_tos == ["to@example.test", "hidden@example.test"]
    assert b"hidden" not in delivered.content
    assert b"Bcc" not in delivered.content
    assert b"Subject: greetings\r\n" in delivered.content
    assert message["Bcc"] == "hidden@example.test"  # the caller's message is unchanged


def test_send_message_with_a_non_ascii_address_uses_smtputf8(smtpd: ServerFactory) -> None:
    controller, recorder = smtpd()
    message = EmailMessage()
    message["From"] = "jörg@example.test"
    message["To"] = "to@example.test"
    message.set_content("Grüße\n")
    with open_smtp(controller.port) as smtp:
        assert smtp.send_message(message) == {}
    (delivered,) = recorder.messages
    assert delivered.mail_from == "jörg@example.test"
    assert "SMTPUTF8" in delivered.mail_options
    assert "From: jörg@example.test".encode() in delivered.content


def test_low_level_commands(smtpd: ServerFactory) -> None:
    controller, recorder = smtpd()
    with sync.SMTP(f"127.0.0.1:{controller.port}", local_hostname="client.test") as smtp:
        assert smtp.noop()[0] == 250
    smtp = sync.SMTP(local_hostname="client.test", timeout=10)
    assert smtp.sock is None
    code, greeting = smtp.connect(f"127.0.0.1:{controller.port}")
    assert code == 220
    assert b"mx.test" in greeting
    assert smtp.ehlo()[0] == 250
    assert smtp.does_esmtp
    assert smtp.has_extn("SIZE")
    assert smtp.ehlo_resp is not None
    assert smtp.noop() == (250, b"OK")
    assert smtp.verify("Someone <someone@example.test>")[0] == 252
    assert smtp.expn("list")[0] == 502
    assert smtp.help().startswith(b"Supported commands")
    assert smtp.mail("a@example.test") == (250, b"OK")
    assert smtp.rcpt("b@example.test") == (250, b"2.1.5 OK")
    assert smtp.data("low\nlevel") == (250, b"2.0.0 OK")
    assert smtp.rset() == (250, b"OK")
    # Raw commands go through the engine: a known verb by its method, others as they are.
    assert smtp.docmd("NOOP") == (250, b"OK")
    assert smtp.docmd("XFOO", "bar")[0] == 500
    smtp.send("NOOP\r\n")
    assert smtp.getreply() == (250, b"OK")
    with pytest.raises(sync.SMTPNotSupportedError):
        smtp.send(b"NOOP")  # not a whole command line
    with pytest.raises(ValueError, match="prohibited newline characters"):
        smtp.putcmd("NOOP\r\nRSET")
    with pytest.raises(ValueError, match="prohibited newline characters"):
        smtp.mail("a@example.test", ["X-OPTION\r\nRCPT TO:<evil@example.test>"])
    assert smtp.quit() == (221, b"Bye")
    assert smtp.sock is None
    with pytest.raises(sync.SMTPServerDisconnected):
        smtp.noop()
    assert [m.content for m in recorder.messages] == [b"low\r\nlevel\r\n"]


# -- TLS ------------------------------------------------------------------------------------


def test_starttls_verifies_the_certificate_then_login(smtpd: ServerFactory, tls: TlsFiles) -> None:
    controller, recorder = smtpd(tls_context=tls.server, auth=True)
    with open_smtp(controller.port) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")  # aiosmtpd offers AUTH only over TLS
        assert smtp.starttls(context=tls.client)[0] == 220
        assert isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.esmtp_features == {}  # forgotten, as RFC 3207 requires
        assert smtp.login(USER, PASSWORD)[0] == 235
        assert smtp.sendmail("a@example.test", ["b@example.test"], b"over TLS\r\n") == {}
    assert recorder.logins == ["PLAIN"]
    assert [m.content for m in recorder.messages] == [b"over TLS\r\n"]


def test_starttls_refuses_an_untrusted_certificate(smtpd: ServerFactory, tls: TlsFiles) -> None:
    controller, _ = smtpd(tls_context=tls.server)
    smtp = open_smtp(controller.port)
    with pytest.raises(ssl.SSLCertVerificationError):
        smtp.starttls()  # the default context trusts the system's CAs, not the test CA
    assert smtp.sock is None


def test_starttls_checks_the_host_name(smtpd: ServerFactory, tls: TlsFiles) -> None:
    # A certificate from the trusted CA, but for another name.
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.ca.issue_cert("elsewhere.test").configure_cert(server_context)
    controller, _ = smtpd(tls_context=server_context)
    smtp = open_smtp(controller.port, host="localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        smtp.starttls(context=tls.client)
    assert smtp.sock is None


def test_login_failure(smtpd: ServerFactory, tls: TlsFiles) -> None:
    controller, _ = smtpd(tls_context=tls.server, auth=True)
    with open_smtp(controller.port) as smtp:
        smtp.starttls(context=tls.client)
        with pytest.raises(sync.SMTPAuthenticationError) as error:
            smtp.login(USER, "wrong")
        assert error.value.smtp_code == 535
        assert smtp.noop()[0] == 250


def test_smtp_ssl(smtpd: ServerFactory, tls: TlsFiles) -> None:
    # aiosmtpd counts only STARTTLS as TLS for AUTH; the connection is encrypted all the same.
    controller, recorder = smtpd(ssl_context=tls.server, auth=True, auth_require_tls=False)
    with sync.SMTP_SSL(
        "localhost", controller.port, local_hostname="client.test", context=tls.client, timeout=10
    ) as smtp:
        assert isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.login(USER, PASSWORD)[0] == 235
        assert smtp.sendmail("a@example.test", "b@example.test", b"implicit\r\n") == {}
    assert [m.content for m in recorder.messages] == [b"implicit\r\n"]
    with pytest.raises(ssl.SSLCertVerificationError):
        sync.SMTP_SSL("localhost", controller.port, timeout=10)


# -- credentials ----------------------------------------------------------------------------


def test_login_without_tls_is_allowed_on_loopback(smtpd: ServerFactory) -> None:
    controller, recorder = smtpd(auth=True, auth_require_tls=False)
    with open_smtp(controller.port, host="127.0.0.1") as smtp:
        assert smtp.login(USER, PASSWORD)[0] == 235
    assert recorder.logins == ["PLAIN"]


def test_login_without_tls_is_refused_off_loopback(
    smtpd: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, recorder = smtpd(auth=True, auth_require_tls=False)
    # The transport asks whether the peer is on loopback; pretend it is across a network.
    monkeypatch.setattr(sync, "_peer_is_loopback", lambda sock: False)
    with open_smtp(controller.port, host="127.0.0.1") as smtp:
        with pytest.raises(sync.SMTPInsecureAuthenticationError, match="TLS"):
            smtp.login(USER, PASSWORD)
        with pytest.raises(sync.SMTPInsecureAuthenticationError):
            smtp.auth("PLAIN", smtp.auth_plain)
        assert smtp.noop()[0] == 250  # nothing was sent; the session goes on
    assert recorder.logins == []


def test_debug_output_never_shows_the_password(
    smtpd: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    controller, recorder = smtpd(auth=True, auth_require_tls=False)
    with open_smtp(controller.port, host="127.0.0.1") as smtp:
        smtp.set_debuglevel(2)
        smtp.login(USER, PASSWORD)
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: private\r\n\r\nbody\r\n")
    err = capsys.readouterr().err
    assert "send: 'AUTH PLAIN [redacted]'" in err
    assert "send: 'MAIL FROM:<a@example.test> SIZE=" in err
    assert "octets of message content]" in err
    assert "private" not in err
    for form in PASSWORD_FORMS:
        assert form not in err
    assert recorder.logins == ["PLAIN"]


def test_auth_with_an_authobject(smtpd: ServerFactory) -> None:
    controller, recorder = smtpd(auth=True, auth_require_tls=False)
    with open_smtp(controller.port, host="127.0.0.1") as smtp:
        smtp.user, smtp.password = USER, PASSWORD
        assert smtp.auth("login", smtp.auth_login, initial_response_ok=False)[0] == 235
    with open_smtp(controller.port, host="127.0.0.1") as smtp:
        smtp.ehlo()
        # A raw AUTH command with its initial response goes through the engine too.
        initial = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
        assert smtp.docmd("AUTH", f"PLAIN {initial}")[0] == 235
    assert recorder.logins == ["LOGIN", "PLAIN"]


# -- hostile and broken servers -------------------------------------------------------------


@pytest.mark.parametrize("same_packet", [True, False])
def test_bytes_injected_after_starttls_never_reach_the_session(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer], same_packet: bool
) -> None:
    # A man in the middle appends a reply to the 220 of STARTTLS, hoping the client takes
    # it for the first reply of the TLS session (CVE-2011-0411 and its kind).
    injected = b"250-injected\r\n250 AUTH PLAIN\r\n"

    def script(wire: Wire) -> None:
        greet_and_ehlo(wire, "STARTTLS", "AUTH PLAIN")
        assert wire.line() == b"STARTTLS\r\n"
        if same_packet:
            wire.send(b"220 go ahead\r\n" + injected)
        else:
            wire.send(b"220 go ahead\r\n")
            # Inject only once the client has started its handshake (a TLS record).
            assert wire.conn.recv(1) == b"\x16"
            wire.send(injected)
        wire.drain()

    server = scripted(script)
    smtp = open_smtp(server.port, host="127.0.0.1")
    expected = sync.SMTPProtocolError if same_packet else ssl.SSLError
    with pytest.raises(expected):
        smtp.starttls(context=ssl.create_default_context())
    assert smtp.sock is None
    with pytest.raises(sync.SMTPServerDisconnected):
        smtp.login(USER, PASSWORD)
    server.join()
    assert b"AUTH" not in server.received


def test_modern_client_refuses_injection_and_keeps_the_password(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer], tls: TlsFiles
) -> None:
    def script(wire: Wire) -> None:
        greet_and_ehlo(wire, "STARTTLS", "AUTH PLAIN")
        assert wire.line() == b"STARTTLS\r\n"
        wire.send(b"220 go ahead\r\n250 AUTH PLAIN\r\n")
        wire.drain()

    server = scripted(script)
    with pytest.raises(RemoteProtocolError, match="injection"):
        sync.Client(
            "127.0.0.1",
            server.port,
            ssl_context=tls.client,
            username=USER,
            password=PASSWORD,
            timeouts=Timeouts(greeting=3, other=3),
        )
    server.join()
    assert b"AUTH" not in server.received


def test_silent_server_times_out(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer],
) -> None:
    server = scripted(lambda wire: wire.drain())
    started = time.monotonic()
    with pytest.raises(TimeoutError) as error:
        sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=0.5)
    assert time.monotonic() - started < 3
    assert isinstance(error.value, sync.SMTPServerDisconnected)  # smtplib's except clauses
    server.join()


def test_timeout_during_a_command_closes_the_connection(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer],
) -> None:
    def script(wire: Wire) -> None:
        greet_and_ehlo(wire)
        assert wire.line() == b"NOOP\r\n"
        wire.send(b"250 partial")  # and never the end of the line
        wire.drain()

    server = scripted(script)
    smtp = sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=0.5)
    smtp.ehlo()
    started = time.monotonic()
    with pytest.raises(sync.SMTPTimeoutError):
        smtp.noop()
    assert time.monotonic() - started < 3
    assert smtp.sock is None
    server.join()


def test_malformed_reply_is_a_protocol_error(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer],
) -> None:
    def script(wire: Wire) -> None:
        greet_and_ehlo(wire)
        assert wire.line() == b"NOOP\r\n"
        wire.send(b"250 ok\n")  # a bare LF
        wire.drain()

    server = scripted(script)
    smtp = sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=3)
    smtp.ehlo()
    with pytest.raises(sync.SMTPProtocolError, match="bare LF") as error:
        smtp.noop()
    assert error.value.smtp_code == -1
    assert smtp.sock is None
    server.join()


def test_malformed_greeting_is_a_connect_error(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer],
) -> None:
    def script(wire: Wire) -> None:
        wire.send(b"220-only a first line\r\n999 oops\r\n")
        wire.drain()

    server = scripted(script)
    with pytest.raises(sync.SMTPConnectError):
        sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=3)
    server.join()


# -- LMTP -----------------------------------------------------------------------------------


def test_lmtp_over_a_unix_socket_reports_each_recipient(tmp_path: Path) -> None:
    recorder = Recorder(data_reply="250 2.0.0 delivered\r\n452 4.2.2 mailbox full")
    path = tmp_path / "lmtp.sock"
    controller = LocalLMTPController(recorder, unix_socket=path)
    controller.start()
    try:
        with sync.LMTP(str(path), local_hostname="client.test", timeout=10) as lmtp:
            assert lmtp.ehlo()[0] == 250
            refused = lmtp.sendmail(
                "a@example.test", ["b@example.test", "c@example.test"], b"Hi\r\n"
            )
        assert refused == {"c@example.test": (452, b"4.2.2 mailbox full")}
    finally:
        controller.stop()


# -- the modern client ----------------------------------------------------------------------


def test_client_end_to_end(smtpd: ServerFactory, tls: TlsFiles) -> None:
    controller, recorder = smtpd(tls_context=tls.server, auth=True, pipelining=True)
    lines: list[str] = []
    with sync.Client(
        "localhost",
        controller.port,
        ssl_context=tls.client,
        username=USER,
        password=PASSWORD,
        local_hostname="client.test",
        debug=lines.append,
    ) as client:
        assert client.tls_active
        assert client.features.pipelining
        assert "PLAIN" in client.features.auth_mechanisms
        result = client.send_message(
            "a@example.test", ["b@example.test", "nobody@example.test"], b"Modern\r\n"
        )
        assert result.outcome is MessageOutcome.ACCEPTED
        assert [r.address for r in result.refused_recipients] == ["nobody@example.test"]
        assert client.noop().code == 250
        assert client.rset().code == 250
        assert client.vrfy("b@example.test").code == 252
        assert client.expn("list").code == 502
        assert client.help().code == 250
        assert client.command("XFOO").code == 500
    assert recorder.logins == ["PLAIN"]
    assert [m.content for m in recorder.messages] == [b"Modern\r\n"]
    assert "C: AUTH PLAIN [redacted]" in lines
    assert not any(form in line for line in lines for form in PASSWORD_FORMS)
    with pytest.raises(ConnectionLost):
        client.noop()


def test_client_requires_starttls_by_default(smtpd: ServerFactory) -> None:
    controller, _ = smtpd()
    with pytest.raises(TlsUnavailable):
        sync.Client("localhost", controller.port, local_hostname="client.test")


def test_client_implicit_tls_and_an_email_message(smtpd: ServerFactory, tls: TlsFiles) -> None:
    controller, recorder = smtpd(ssl_context=tls.server)
    message = EmailMessage()
    message["From"] = "a@example.test"
    message["To"] = "b@example.test"
    message["Bcc"] = "c@example.test"
    message.set_content("Hello\n")
    with sync.Client(
        "localhost", controller.port, tls=TlsPolicy.IMPLICIT, ssl_context=tls.client
    ) as client:
        result = client.send_message(None, None, message)
    assert result.outcome is MessageOutcome.ACCEPTED
    (delivered,) = recorder.messages
    assert delivered.rcpt_tos == ["b@example.test", "c@example.test"]
    assert b"Bcc" not in delivered.content


def test_client_on_a_socket_it_was_given(smtpd: ServerFactory) -> None:
    controller, recorder = smtpd()
    sock = socket.create_connection(("127.0.0.1", controller.port), timeout=10)
    with sync.Client("127.0.0.1", tls=TlsPolicy.NONE, sock=sock) as client:
        result = client.send_message("a@example.test", ["b@example.test"], [b"chunk 1, ", b"2\r\n"])
    assert result.outcome is MessageOutcome.ACCEPTED
    assert [m.content for m in recorder.messages] == [b"chunk 1, 2\r\n"]
    assert sock.fileno() == -1  # the client owned it and closed it


@pytest.mark.parametrize("direct", [True, False])
def test_plain_writes_with_and_without_direct_writes(
    smtpd: ServerFactory, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    # A plain socket's writes go to the kernel at once where a socket is a file descriptor
    # (POSIX), and through sendall elsewhere: the messages arrive the same either way.
    monkeypatch.setattr(sync, "_DIRECT_WRITES", direct)
    controller, recorder = smtpd()
    contents = [b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(3)]
    with sync.Client("127.0.0.1", controller.port, tls=TlsPolicy.NONE) as client:
        results = client.send_messages(
            [("a@example.test", ["b@example.test"], content) for content in contents]
        )
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 3
    assert [m.content for m in recorder.messages] == contents


def test_content_goes_out_whole_through_a_small_send_buffer(smtpd: ServerFactory) -> None:
    # A send buffer far smaller than each write: writes are taken in part, or not at all
    # while the buffer is full, and the rest waits for room. The content arrives whole.
    controller, recorder = smtpd()
    sock = socket.create_connection(("127.0.0.1", controller.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    content = b"".join(b"line %06d of a message of forty thousand\r\n" % i for i in range(40_000))
    with sync.Client("127.0.0.1", tls=TlsPolicy.NONE, sock=sock) as client:
        result = client.send_message("a@example.test", ["b@example.test"], content)
    assert result.outcome is MessageOutcome.ACCEPTED
    assert [m.content for m in recorder.messages] == [content]


def test_a_connection_reset_while_writing_is_a_lost_connection(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer],
) -> None:
    # The server takes the first octet of the content and closes with the rest unread,
    # which resets the connection: the writes that follow fail, and say so.
    def script(wire: Wire) -> None:
        greet_and_ehlo(wire, "PIPELINING")
        wire.until(b"DATA\r\n")
        wire.send(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        wire.conn.recv(1)

    server = scripted(script)
    content = (b"x" * 78 + b"\r\n") * (400 * 1024)  # 32 MiB, more than buffers hold
    client = sync.Client("127.0.0.1", server.port, tls=TlsPolicy.NONE)
    with pytest.raises(ConnectionLost, match=r"^the connection failed: "):
        client.send_message("a@example.org", ["b@example.org"], content)
    assert client.sock is None
    server.join()


def test_client_refuses_an_untrusted_certificate(smtpd: ServerFactory, tls: TlsFiles) -> None:
    controller, _ = smtpd(tls_context=tls.server)
    with pytest.raises(ssl.SSLCertVerificationError):
        sync.Client("localhost", controller.port)


@pytest.mark.parametrize("modern", [True, False])
def test_server_that_stops_reading_makes_a_write_time_out(
    scripted: Callable[[Callable[[Wire], None]], ScriptedServer], modern: bool
) -> None:
    # The server takes the envelope and says 354, then reads nothing more: once the socket
    # buffers are full the content's write waits, and its own limit ends it.
    release = threading.Event()

    def script(wire: Wire) -> None:
        greet_and_ehlo(wire, "PIPELINING")
        wire.until(b"DATA\r\n")
        wire.send(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        release.wait(SCRIPT_TIMEOUT)

    server = scripted(script)
    content = (b"x" * 78 + b"\r\n") * (400 * 1024)  # 32 MiB, more than buffers hold
    message = r"^the server took no data for 0.3 seconds$"
    started = time.monotonic()
    try:
        if modern:
            timeouts = Timeouts(data_block=0.3)
            client = sync.Client("127.0.0.1", server.port, tls=TlsPolicy.NONE, timeouts=timeouts)
            with pytest.raises(TimeoutError, match=message):
                client.send_message("a@example.org", ["b@example.org"], content)
            assert client.sock is None  # closed: nothing more can be sent on it
        else:
            smtp = sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=0.3)
            smtp.ehlo()
            with pytest.raises(sync.SMTPTimeoutError, match=message):
                smtp.sendmail("a@example.org", ["b@example.org"], content)
            assert smtp.sock is None
        assert time.monotonic() - started < 5
    finally:
        release.set()
    server.join()


def test_client_times_out(scripted: Callable[[Callable[[Wire], None]], ScriptedServer]) -> None:
    server = scripted(lambda wire: wire.drain())
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sync.Client("127.0.0.1", server.port, tls=TlsPolicy.NONE, timeouts=Timeouts(greeting=0.5))
    assert time.monotonic() - started < 3
    server.join()
