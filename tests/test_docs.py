"""The documentation: it builds, its examples run, and what it shows works.

- Sphinx builds the HTML with warnings as errors, and every public name of ``smtp_proto``
  has its entry in the reference.
- The doctest builder runs every engine example in the pages (they need no network).
- The selectors transport of "Writing your own transport" sends real mail to aiosmtpd on
  127.0.0.1: plain, pipelined, with a refused recipient, and with STARTTLS and AUTH.
- Examples that need a server (the transports' pages) are shown as code blocks; they must
  at least compile.
- The README says how to build the documentation, and its links into ``docs/`` resolve.

The Sphinx builds need the ``docs`` extra (Sphinx and furo) and are skipped without it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import re
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

import smtp_proto

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "examples" / "selectors_transport.py"

# A whole build takes seconds; this bounds a hung one well inside pytest's own timeout.
BUILD_TIMEOUT = 100


# -- the Sphinx builds ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def doctrees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment shared by the builds of this module, so the pages are read once."""
    pytest.importorskip("sphinx", reason="the docs extra (Sphinx) is not installed")
    pytest.importorskip("furo", reason="the docs extra (furo) is not installed")
    return tmp_path_factory.mktemp("doctrees")


def sphinx_build(builder: str, output: Path, doctrees: Path) -> subprocess.CompletedProcess[str]:
    # Run from the output folder, so that only the installed package can be imported (the
    # repository root on sys.path would shadow smtp_proto.transports).
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", builder]
    return subprocess.run(
        [*command, "-d", str(doctrees), str(DOCS), str(output)],
        cwd=output.parent,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )


def test_html_builds_without_warnings(doctrees: Path, tmp_path: Path) -> None:
    output = tmp_path / "html"
    result = sphinx_build("html", output, doctrees)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every public name has its own entry in the reference: nothing in __all__ is left out.
    html = "".join(page.read_text("utf-8") for page in output.glob("*.html"))
    missing = [name for name in smtp_proto.__all__ if f'id="smtp_proto.{name}"' not in html]
    assert not missing, f"undocumented public names: {missing}"
    # The generated tables are there, with the rows they are generated from.
    limits = (output / "limits.html").read_text("utf-8")
    for name in ("max_reply_line_length", "max_auth_rounds", "data_termination"):
        assert name in limits
    states = (output / "state-machine.html").read_text("utf-8")
    for state in smtp_proto.State:
        assert state.name in states


def test_doctests_pass(doctrees: Path, tmp_path: Path) -> None:
    output = tmp_path / "doctest"
    result = sphinx_build("doctest", output, doctrees)
    report = (output / "output.txt").read_text("utf-8") if output.exists() else ""
    assert result.returncode == 0, report + result.stdout + result.stderr
    totals = re.search(r"(\d+) tests\n\s+0 failures in tests", report)
    assert totals is not None, report
    # The pages hold well over a hundred examples; a build that collected none ran nothing.
    assert int(totals[1]) > 100, report


def test_code_blocks_compile() -> None:
    """Examples shown without running (they need a server) are at least valid Python."""
    block = re.compile(r"^\.\. code-block:: python\n((?:\n|   .*\n)+)", re.MULTILINE)
    found = 0
    for page in sorted(DOCS.glob("*.rst")):
        for match in block.finditer(page.read_text("utf-8")):
            source = "\n".join(line[3:] for line in match[1].splitlines())
            compile(source, f"{page.name}:code-block", "exec")
            found += 1
    assert found


# -- the README -----------------------------------------------------------------------------


def test_readme_links_to_the_docs() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "## Documentation" in readme
    assert "docs/build.sh" in readme
    # Every path into docs/ that the README names exists (the build's output excepted).
    paths = set(re.findall(r"docs/[\w./-]*\w", readme))
    assert paths
    missing = [
        path for path in paths if not path.startswith("docs/_build/") and not (ROOT / path).exists()
    ]
    assert not missing, missing


# -- the selectors transport of "Writing your own transport" ---------------------------------


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("selectors_transport", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it receives and refuses "nobody@" recipients."""

    pipelining: bool = False
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

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
            # aiosmtpd reads pipelined commands fine but does not announce it.
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
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return "250 2.0.0 queued"


def check_password(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    assert isinstance(auth_data, LoginPassword)
    ok = (auth_data.login, auth_data.password) == (b"alice", b"s3cret")
    # handled=False: aiosmtpd answers a failure with 535 itself.
    return AuthResult(success=ok, handled=False)


class LoopbackController(Controller):
    """aiosmtpd on 127.0.0.1 and a port the system picks, learnt before the self-check."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


Start = Callable[..., tuple[LoopbackController, Mailbox]]


@pytest.fixture
def smtpd() -> Iterator[Start]:
    running: list[LoopbackController] = []

    def start(*, pipelining: bool = False, **options: Any) -> tuple[LoopbackController, Mailbox]:
        mailbox = Mailbox(pipelining=pipelining)
        controller = LoopbackController(mailbox, hostname="127.0.0.1", port=0, **options)
        controller.start()
        running.append(controller)
        return controller, mailbox

    yield start
    for controller in running:
        controller.stop()


@pytest.fixture(scope="module")
def certificates() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return server, client


MESSAGE = b"Subject: from the docs\r\n\r\nA line.\r\n.A line that starts with a dot.\r\n"


@pytest.mark.parametrize("pipelining", [False, True])
def test_example_sends_with_a_refused_recipient(smtpd: Start, pipelining: bool) -> None:
    example = load_example()
    controller, mailbox = smtpd(pipelining=pipelining)
    result = example.send_message(
        "127.0.0.1",
        controller.port,
        "alice@example.org",
        ["bob@example.net", "nobody@example.net", "carol@example.net"],
        MESSAGE,
        tls=smtp_proto.TlsPolicy.NONE,
    )
    assert result.outcome is smtp_proto.MessageOutcome.ACCEPTED
    assert [(r.address, r.delivered) for r in result.recipients] == [
        ("bob@example.net", True),
        ("nobody@example.net", False),
        ("carol@example.net", True),
    ]
    assert result.recipients[1].reply.code == 550
    # Dot-stuffing was undone by the server: it holds exactly what was sent.
    assert mailbox.messages == [
        ("alice@example.org", ["bob@example.net", "carol@example.net"], MESSAGE)
    ]


def test_example_refuses_plain_text_when_tls_is_required(smtpd: Start) -> None:
    example = load_example()
    controller, mailbox = smtpd()
    with pytest.raises(smtp_proto.TlsUnavailable):
        example.send_message(
            "127.0.0.1", controller.port, "alice@example.org", ["bob@example.net"], MESSAGE
        )
    assert not mailbox.messages


# aiosmtpd itself still sets a deprecated attribute after every successful AUTH.
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning")
def test_example_starttls_and_auth(
    smtpd: Start, certificates: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    example = load_example()
    server_context, client_context = certificates
    controller, mailbox = smtpd(
        tls_context=server_context, require_starttls=True, authenticator=check_password
    )
    result = example.send_message(
        "127.0.0.1",
        controller.port,
        "alice@example.org",
        ["bob@example.net"],
        MESSAGE,
        tls=smtp_proto.TlsPolicy.REQUIRED,
        ssl_context=client_context,
        username="alice",
        password="s3cret",
    )
    assert result.outcome is smtp_proto.MessageOutcome.ACCEPTED
    assert len(mailbox.messages) == 1

    with pytest.raises(smtp_proto.AuthenticationFailed):
        example.send_message(
            "127.0.0.1",
            controller.port,
            "alice@example.org",
            ["bob@example.net"],
            MESSAGE,
            ssl_context=client_context,
            username="alice",
            password="wrong",
        )
    assert len(mailbox.messages) == 1


def test_example_checks_the_certificate(smtpd: Start) -> None:
    """A certificate the client does not trust ends the session at the handshake."""
    example = load_example()
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    controller, mailbox = smtpd(tls_context=server_context)
    with pytest.raises(ssl.SSLCertVerificationError):
        example.send_message(
            "127.0.0.1", controller.port, "alice@example.org", ["bob@example.net"], MESSAGE
        )
    assert not mailbox.messages


def test_example_command_line(smtpd: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_example()
    controller, mailbox = smtpd()

    arguments = ["--tls", "none", "127.0.0.1", str(controller.port), "alice@example.org"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(MESSAGE)))
    assert example.main([*arguments, "bob@example.net"]) == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(MESSAGE)))
    assert example.main([*arguments, "nobody@example.net"]) == 1
    assert len(mailbox.messages) == 1
