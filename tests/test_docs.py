"""The documentation: it builds, its examples run, and what it shows works.

- Sphinx builds the HTML with warnings as errors, and every public name of ``smtp_proto``
  has its entry in the reference.
- The doctest builder runs every engine example in the pages (they need no network).
- The selectors transport of "Writing your own transport" sends real mail to aiosmtpd on
  127.0.0.1: plain, pipelined, with a refused recipient, and with STARTTLS and AUTH.
- The transports' quick starts (the only code blocks, since they need a server) run against
  aiosmtpd on 127.0.0.1 with STARTTLS and AUTH: what reaches the server and what they print
  are checked, with a refused recipient, a refused login and a refused message.
- The README says how to build the documentation, and its links into ``docs/`` resolve.

The Sphinx builds need the ``docs`` extra (Sphinx and furo) and are skipped without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import re
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
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
    """An aiosmtpd handler that keeps what it accepts, refuses the recipients that start
    with one of *refused*, and answers the content with *content_reply*."""

    pipelining: bool = False
    refused: tuple[str, ...] = ("nobody@",)
    content_reply: str = "250 2.0.0 queued"
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
        if address.startswith(self.refused):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.content_reply.startswith("2"):
            content = envelope.original_content or b""
            self.messages.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return self.content_reply


Authenticator = Callable[[SMTPServer, Session, Envelope, str, Any], AuthResult]


def accept_login(login: str, password: str) -> Authenticator:
    """An aiosmtpd authenticator that accepts this one login and password."""

    def check(
        server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = (auth_data.login, auth_data.password) == (login.encode(), password.encode())
        # handled=False: aiosmtpd answers a failure with 535 itself.
        return AuthResult(success=ok, handled=False)

    return check


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

    def start(
        *,
        pipelining: bool = False,
        refused: tuple[str, ...] = ("nobody@",),
        content_reply: str = "250 2.0.0 queued",
        **options: Any,
    ) -> tuple[LoopbackController, Mailbox]:
        mailbox = Mailbox(pipelining=pipelining, refused=refused, content_reply=content_reply)
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
ignore_aiosmtpd_login_data = pytest.mark.filterwarnings(
    "ignore:Session.login_data is deprecated:DeprecationWarning"
)


@ignore_aiosmtpd_login_data
def test_example_starttls_and_auth(
    smtpd: Start, certificates: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    example = load_example()
    server_context, client_context = certificates
    controller, mailbox = smtpd(
        tls_context=server_context,
        require_starttls=True,
        authenticator=accept_login("alice", "s3cret"),
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


# -- the quick starts of "Transports" -------------------------------------------------------

TRANSPORTS_PAGE = DOCS / "transports.rst"
# The directives that show code without running it; any of them outside the quick starts
# would be an example that nothing checks.
CODE_BLOCK = re.compile(
    r"^\.\. (?:code-block|code|sourcecode)::(.*)\n((?:[ \t]*\n|   .*\n)+)", re.MULTILINE
)
# The quick starts log in with these and send from alice to bob and carol.
LOGIN, PASSWORD = "alice", "correct horse battery staple"
SENDER, RECIPIENT, REFUSED_RECIPIENT = "alice@example.org", "bob@example.net", "carol@example.net"
# One quick start for each transport, named as in smtp_proto.transports.
TRANSPORTS = ["sync", "asyncio", "trio"]
# How long one quick start may take on an event loop. The blocking one keeps the default
# Timeouts of minutes, as a reader would, so QUICK_START_TIMEOUT (pytest-timeout) bounds it.
PATIENCE = 30.0
QUICK_START_TIMEOUT = 60


@dataclass(frozen=True)
class CodeBlock:
    page: Path
    line: int  # of the block's first line of code in the page, counted from 1
    language: str
    code: str


def code_blocks(page: Path) -> list[CodeBlock]:
    text = page.read_text("utf-8")
    blocks = []
    for match in CODE_BLOCK.finditer(text):
        lines = match[2].splitlines(keepends=True)
        # Skip the blank lines after the directive, counting them to keep the line number
        # right. (Directive options are not expected: one would not compile, and so fail.)
        skipped = next(index for index, line in enumerate(lines) if line.strip())
        first_line = text.count("\n", 0, match.start(2)) + 1 + skipped
        code = textwrap.dedent("".join(lines[skipped:]))
        blocks.append(CodeBlock(page, first_line, match[1].strip(), code))
    return blocks


def quick_starts() -> dict[str, Callable[..., Any]]:
    """Each quick start's ``send``, by the transport it imports, run from the page's text."""
    functions: dict[str, Callable[..., Any]] = {}
    for block in code_blocks(TRANSPORTS_PAGE):
        transport = re.search(r"^from smtp_proto\.transports\.(\w+) import", block.code, re.M)
        assert transport is not None, block
        # Padded to its line in the page, so that a traceback points into the .rst.
        source = "\n" * (block.line - 1) + block.code
        namespace: dict[str, Any] = {"__name__": f"quick_start_{transport[1]}"}
        exec(compile(source, str(block.page.relative_to(ROOT)), "exec"), namespace)
        functions[transport[1]] = namespace["send"]
    return functions


def run_quick_start(transport: str, host: str, port: int, context: ssl.SSLContext) -> list[str]:
    """Send MESSAGE with the quick start of *transport*; return the lines it printed."""
    send = quick_starts()[transport]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        if transport == "sync":
            send(MESSAGE, host, port, context)
        elif transport == "asyncio":

            async def bounded_asyncio() -> None:
                await asyncio.wait_for(send(MESSAGE, host, port, context), PATIENCE)

            asyncio.run(bounded_asyncio())
        else:

            async def bounded_trio() -> None:
                with trio.fail_after(PATIENCE):
                    await send(MESSAGE, host, port, context)

            trio.run(bounded_trio)
    return output.getvalue().splitlines()


def test_every_code_block_is_a_quick_start_that_runs() -> None:
    """Pages show code without running it only in the quick starts, which run below."""
    blocks = [block for page in sorted(DOCS.glob("*.rst")) for block in code_blocks(page)]
    assert [(block.page, block.language) for block in blocks] == [
        (TRANSPORTS_PAGE, "python")
    ] * len(TRANSPORTS)
    assert sorted(quick_starts()) == sorted(TRANSPORTS)


@pytest.fixture
def submission_server(
    smtpd: Start, certificates: tuple[ssl.SSLContext, ssl.SSLContext]
) -> Callable[..., tuple[int, Mailbox]]:
    """aiosmtpd as the quick starts expect it: STARTTLS with a certificate the client context
    trusts, then AUTH, both required before MAIL; it refuses carol."""
    server_context, _ = certificates

    def start(password: str = PASSWORD, **options: Any) -> tuple[int, Mailbox]:
        controller, mailbox = smtpd(
            refused=(REFUSED_RECIPIENT,),
            tls_context=server_context,
            require_starttls=True,
            authenticator=accept_login(LOGIN, password),
            auth_required=True,
            **options,
        )
        return controller.port, mailbox

    return start


def assert_printed(printed: list[str], patterns: list[str]) -> None:
    assert len(printed) == len(patterns), printed
    for line, pattern in zip(printed, patterns, strict=True):
        assert re.fullmatch(pattern, line), printed


BOB, CAROL = re.escape(RECIPIENT), re.escape(REFUSED_RECIPIENT)


@ignore_aiosmtpd_login_data
@pytest.mark.timeout(QUICK_START_TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_quick_start_sends_over_starttls_with_auth(
    transport: str,
    submission_server: Callable[..., tuple[int, Mailbox]],
    certificates: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    port, mailbox = submission_server()
    printed = run_quick_start(transport, "127.0.0.1", port, certificates[1])
    # The server takes MAIL only after STARTTLS and AUTH: the message went through both.
    assert mailbox.messages == [(SENDER, [RECIPIENT], MESSAGE)]
    if transport == "sync":
        # The blocking quick start reports only what went wrong.
        assert_printed(printed, [rf"{CAROL} refused: Reply\(code=550, .* permanent"])
    else:
        assert_printed(printed, [rf"{BOB} delivered", rf"{CAROL} Reply\(code=550, .*"])


@pytest.mark.timeout(QUICK_START_TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_quick_start_reports_a_refused_login(
    transport: str,
    submission_server: Callable[..., tuple[int, Mailbox]],
    certificates: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    port, mailbox = submission_server(password="not the quick start's password")
    printed = run_quick_start(transport, "127.0.0.1", port, certificates[1])
    assert not mailbox.messages
    assert_printed(printed, [r"session failed: .*\b535\b.* Reply\(code=535, .*"])
    # The password never appears in what the example prints.
    assert PASSWORD not in printed[0]


@ignore_aiosmtpd_login_data
@pytest.mark.timeout(QUICK_START_TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_quick_start_reports_a_refused_message(
    transport: str,
    submission_server: Callable[..., tuple[int, Mailbox]],
    certificates: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """A 451 to the content: bob gets that reply (he may retry later), carol her 550."""
    port, mailbox = submission_server(content_reply="451 4.3.0 try again later")
    printed = run_quick_start(transport, "127.0.0.1", port, certificates[1])
    assert not mailbox.messages
    if transport == "sync":
        assert_printed(
            printed,
            [
                r"message not accepted: rejected Reply\(code=451, .*",
                rf"{BOB} refused: Reply\(code=451, .* try again later",
                rf"{CAROL} refused: Reply\(code=550, .* permanent",
            ],
        )
    else:
        assert_printed(printed, [rf"{BOB} Reply\(code=451, .*", rf"{CAROL} Reply\(code=550, .*"])
