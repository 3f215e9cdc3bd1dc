"""The quick start's demo: one message through each of smtp-proto's three transports.

It starts an SMTP server (aiosmtpd) on 127.0.0.1 that offers STARTTLS with a certificate
made on the spot by trustme and requires AUTH, then sends the same message through the
blocking, the asyncio and the trio transport. Each client verifies the certificate,
upgrades with STARTTLS, logs in, and sends to three recipients, one of whom the server
refuses. The conversation is printed as it happens, with the password redacted by the
engine, followed by each recipient's outcome.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import socket
import ssl
import warnings
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import trio
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, Session

from smtp_proto import TlsPolicy, TransactionResult
from smtp_proto.transports import asyncio as asyncio_transport
from smtp_proto.transports import sync as sync_transport
from smtp_proto.transports import trio as trio_transport

USER, PASSWORD = "demo", "correct horse battery staple"
SENDER = "alice@example.org"
RECIPIENTS = ["bob@example.net", "nobody@example.net", "carol@example.net"]


class Handler:
    """Refuses one recipient and keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 <nobody@example.net>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(content)
        return f"250 2.0.0 queued as {len(self.messages):04X}"


def authenticate(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    login = getattr(auth_data, "login", b"")
    password = getattr(auth_data, "password", b"")
    return AuthResult(success=(login, password) == (USER.encode(), PASSWORD.encode()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def message(transport: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = f"Alice <{SENDER}>"
    mail["To"] = ", ".join(RECIPIENTS)
    mail["Subject"] = f"Hello through the {transport} transport"
    mail.set_content("Hi!\n.\nThe line above is a lone dot, sent safely.\n")
    return mail


def report(result: TransactionResult) -> None:
    print(f"   outcome: {result.outcome.value}")
    for recipient in result.recipients:
        reply = recipient.reply
        said = f"{reply.code} {reply.text}" if reply is not None else "no reply"
        verdict = "delivered" if recipient.delivered else "refused"
        print(f"   {recipient.address:<22} {verdict:<10} ({said})")


def show(line: str) -> None:
    print("   " + line)


def run_sync(port: int, context: ssl.SSLContext, debug: Callable[[str], None]) -> None:
    with sync_transport.Client(
        "localhost",
        port,
        tls=TlsPolicy.REQUIRED,
        ssl_context=context,
        username=USER,
        password=PASSWORD,
        debug=debug,
    ) as client:
        report(client.send_message(None, None, message("blocking")))


async def run_asyncio(port: int, context: ssl.SSLContext, debug: Callable[[str], None]) -> None:
    async with asyncio_transport.Client(
        "localhost",
        port,
        tls=TlsPolicy.REQUIRED,
        ssl_context=context,
        username=USER,
        password=PASSWORD,
        debug=debug,
    ) as client:
        report(await client.send_message(None, None, message("asyncio")))


async def run_trio(port: int, context: ssl.SSLContext, debug: Callable[[str], None]) -> None:
    async with trio_transport.Client(
        "localhost",
        port,
        tls=TlsPolicy.REQUIRED,
        ssl_context=context,
        username=USER,
        password=PASSWORD,
        debug=debug,
    ) as client:
        report(await client.send_message(None, None, message("trio")))


def main() -> None:
    # aiosmtpd warns about its own deprecated attribute while it authenticates.
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    handler = Handler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        server_hostname="localhost",
        tls_context=server_context,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        version = importlib.metadata.version("smtp-proto")
        print(f"smtp-proto {version}; an SMTP server is listening on 127.0.0.1:{port}")
        print("\n== the blocking transport (smtp_proto.transports.sync)")
        run_sync(port, client_context, show)
        print("\n== the asyncio transport (smtp_proto.transports.asyncio)")
        asyncio.run(run_asyncio(port, client_context, show))
        print("\n== the trio transport (smtp_proto.transports.trio)")
        trio.run(run_trio, port, client_context, show)
    finally:
        controller.stop()
    print(f"\nThe server received {len(handler.messages)} messages.")


if __name__ == "__main__":
    main()
