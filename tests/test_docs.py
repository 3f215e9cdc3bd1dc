"""The documentation: it builds, its examples run, and what it shows works.

- Sphinx builds the HTML with warnings as errors, and every public name of ``smtp_proto``
  has its entry in the reference.
- The doctest builder runs every engine example in the pages (they need no network).
- The selectors transport of "Writing your own transport" sends real mail to aiosmtpd on
  127.0.0.1: plain, pipelined, with a refused recipient, and with STARTTLS and AUTH.
- The transports' quick starts (the only code blocks of the pages, since they need a server)
  run against aiosmtpd on 127.0.0.1 with STARTTLS and AUTH: what reaches the server and what
  they print are checked, with a refused recipient, a refused login and a refused message.
- The reference's docstrings show code only as doctests (which the doctest builder runs),
  except the examples of the transports' ``Client`` and ``Pool`` classes: those need a
  server, so they are taken from the docstrings and run against aiosmtpd as above.
- The README says how to build the documentation, and its links into ``docs/`` resolve.

The Sphinx builds need the ``docs`` extra (Sphinx and furo) and are skipped without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import inspect
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
from smtp_proto.transports import asyncio as asyncio_transport
from smtp_proto.transports import sync as sync_transport
from smtp_proto.transports import trio as trio_transport

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


def test_every_code_block_runs() -> None:
    """Pages show code without running it only in the quick starts, and the reference only
    in the docstring examples of the transports' classes; both run below."""
    blocks = [block for page in sorted(DOCS.glob("*.rst")) for block in code_blocks(page)]
    assert [(block.page, block.language) for block in blocks] == [
        (TRANSPORTS_PAGE, "python")
    ] * len(TRANSPORTS)
    assert sorted(quick_starts()) == sorted(TRANSPORTS)

    # Any other literal block in a docstring of the reference is code that nothing runs:
    # it belongs in a doctest.
    unexecuted = {
        name: code
        for name, documented in reference_objects()
        if (code := literal_blocks(documented.__doc__))
        and not any(documented is example for example in DOCSTRING_EXAMPLES)
    }
    assert not unexecuted, unexecuted
    # Each example that runs is still the one block of its docstring.
    for documented in DOCSTRING_EXAMPLES:
        assert len(literal_blocks(documented.__doc__)) == 1, documented


@pytest.fixture
def submission_server(
    smtpd: Start, certificates: tuple[ssl.SSLContext, ssl.SSLContext]
) -> Callable[..., tuple[int, Mailbox]]:
    """aiosmtpd as the quick starts expect it: STARTTLS with a certificate the client context
    trusts, then AUTH, both required before MAIL; it refuses carol."""
    server_context, _ = certificates

    def start(password: str = PASSWORD, login: str = LOGIN, **options: Any) -> tuple[int, Mailbox]:
        controller, mailbox = smtpd(
            refused=(REFUSED_RECIPIENT,),
            tls_context=server_context,
            require_starttls=True,
            authenticator=accept_login(login, password),
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


# -- the examples in the reference's docstrings ---------------------------------------------

# The modules that the reference documents with autodoc (testing.rst, transports.rst, and
# the pages that document smtp_proto's names one by one).
REFERENCE_MODULES = [
    "smtp_proto",
    "smtp_proto.testing",
    "smtp_proto.testing.strategies",
    "smtp_proto.transports.sync",
    "smtp_proto.transports.asyncio",
    "smtp_proto.transports.trio",
]

# The docstrings whose literal block runs here rather than as a doctest, since it needs a
# server: each block defines the function named, which sends with the class documented.
DOCSTRING_EXAMPLES: dict[Any, str] = {
    sync_transport.Client: "send",
    asyncio_transport.Client: "send",
    asyncio_transport.Pool: "send_all",
    trio_transport.Client: "send",
    trio_transport.Pool: "send_all",
}
CLIENTS = {
    "sync": sync_transport.Client,
    "asyncio": asyncio_transport.Client,
    "trio": trio_transport.Client,
}
POOLS = {"asyncio": asyncio_transport.Pool, "trio": trio_transport.Pool}

# The examples log in as "me" with the password "...", and send from me to you.
EXAMPLE_LOGIN, EXAMPLE_PASSWORD = "me", "..."
EXAMPLE_SENDER, EXAMPLE_RECIPIENT = "me@example.com", "you@example.org"

# What starts a literal block in reStructuredText: a paragraph that ends with "::" (but not
# a directive without arguments, such as ".. note::"), or one of the code directives.
LITERAL_BLOCK_MARKER = re.compile(r"(?!\.\. ).*::|\.\. (?:code-block|code|sourcecode)::.*")


def indentation(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_blocks(docstring: str | None) -> list[str]:
    """The code of each literal block in *docstring*: the lines after its marker that are
    indented further than the marker (or blank), dedented."""
    lines = inspect.cleandoc(docstring or "").splitlines()
    blocks = []
    for index, marker in enumerate(lines):
        if not LITERAL_BLOCK_MARKER.fullmatch(marker.strip()):
            continue
        body = []
        for line in lines[index + 1 :]:
            if line.strip() and indentation(line) <= indentation(marker):
                break
            body.append(line)
        code = textwrap.dedent("\n".join(body)).strip("\n")
        if code:
            blocks.append(code + "\n")
    return blocks


def documented_members(cls: type) -> Iterator[tuple[str, Any]]:
    """The public methods and properties of *cls*, those of its bases from this project
    included (the reference sends readers to them)."""
    for base in cls.__mro__:
        if not base.__module__.startswith("smtp_proto"):
            continue
        for name, member in vars(base).items():
            # A staticmethod or classmethod holds its function, and the function its docstring.
            function = getattr(member, "__func__", member)
            if not name.startswith("_") and (
                inspect.isroutine(function) or isinstance(function, property)
            ):
                yield name, function


def reference_objects() -> Iterator[tuple[str, Any]]:
    """Each module of the reference and every public class, function, method and property
    it holds that comes from this project, each once, by the first name it was found under.

    This is more than the reference shows (it also holds what the modules import from
    smtp_proto, and the methods of private base classes), so that no docstring it does show
    can be missed."""
    seen: set[int] = set()
    for module_name in REFERENCE_MODULES:
        module = importlib.import_module(module_name)
        found: list[tuple[str, Any]] = [(module_name, module)]
        for name, value in vars(module).items():
            from_project = str(getattr(value, "__module__", "")).startswith("smtp_proto")
            if name.startswith("_") or not from_project:
                continue
            if inspect.isfunction(value):
                found.append((f"{module_name}.{name}", value))
            elif inspect.isclass(value):
                found.append((f"{module_name}.{name}", value))
                found += [
                    (f"{module_name}.{name}.{member_name}", member)
                    for member_name, member in documented_members(value)
                ]
        for name, value in found:
            if id(value) not in seen:
                seen.add(id(value))
                yield name, value


def docstring_example(documented: Any) -> Callable[..., Any]:
    """The function that the literal block of *documented*'s docstring defines, run from the
    docstring's text with the names a reader of its module would have imported."""
    (code,) = literal_blocks(documented.__doc__)
    module = sys.modules[documented.__module__]
    namespace: dict[str, Any] = {name: getattr(module, name) for name in module.__all__}
    namespace.update(__name__=f"{module.__name__}_example", asyncio=asyncio, trio=trio)
    # Padded to its line in the module, so that a traceback points into the docstring.
    source_lines, first_line = inspect.getsourcelines(documented)
    start = next(
        offset
        for offset, line in enumerate(source_lines)
        if line.strip() == code.splitlines()[0].strip()
    )
    source = "\n" * (first_line - 1 + start) + code
    filename = inspect.getsourcefile(documented) or module.__name__
    exec(compile(source, filename, "exec"), namespace)
    function: Callable[..., Any] = namespace[DOCSTRING_EXAMPLES[documented]]
    return function


def run_example(documented: Any, *arguments: Any) -> Any:
    """Call the example of *documented* with *arguments*, on the event loop of its module
    and bounded in time; return what it returns."""
    example = docstring_example(documented)
    if documented.__module__ == sync_transport.__name__:
        # Default Timeouts, as a reader would have: QUICK_START_TIMEOUT bounds the test.
        return example(*arguments)
    if documented.__module__ == asyncio_transport.__name__:

        async def bounded_asyncio() -> Any:
            return await asyncio.wait_for(example(*arguments), PATIENCE)

        return asyncio.run(bounded_asyncio())

    async def bounded_trio() -> Any:
        with trio.fail_after(PATIENCE):
            return await example(*arguments)

    return trio.run(bounded_trio)


def test_docstring_examples_are_found() -> None:
    """Every docstring example is run by a test below, and the guard of
    test_every_code_block_runs recognises every form of literal block and every member."""
    assert set(CLIENTS.values()) | set(POOLS.values()) == set(DOCSTRING_EXAMPLES)
    # The marker's forms, and what is not one: a directive, a doctest.
    docstring = """Summary.

    Code::

        first()

    And more code:

    ::

        second()
            indented()

    .. note::

        Not code.

    .. code-block:: python

        third()

    >>> fourth()
    """
    assert literal_blocks(docstring) == ["first()\n", "second()\n    indented()\n", "third()\n"]
    # The walk reaches methods of classes, not only the classes.
    names = {name for name, _ in reference_objects()}
    assert "smtp_proto.testing.FakeServer.stall_after" in names
    assert "smtp_proto.transports.sync.Client.send_message" in names


@ignore_aiosmtpd_login_data
@pytest.mark.timeout(QUICK_START_TIMEOUT)
@pytest.mark.parametrize("transport", sorted(CLIENTS))
def test_client_example_sends_over_starttls_with_auth(
    transport: str,
    submission_server: Callable[..., tuple[int, Mailbox]],
    certificates: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    port, mailbox = submission_server(login=EXAMPLE_LOGIN, password=EXAMPLE_PASSWORD)
    result = run_example(CLIENTS[transport], MESSAGE, "127.0.0.1", port, certificates[1])
    assert result.outcome is smtp_proto.MessageOutcome.ACCEPTED
    assert [(r.address, r.delivered) for r in result.recipients] == [(EXAMPLE_RECIPIENT, True)]
    # The server takes MAIL only after STARTTLS and AUTH: the message went through both.
    assert mailbox.messages == [(EXAMPLE_SENDER, [EXAMPLE_RECIPIENT], MESSAGE)]


@ignore_aiosmtpd_login_data
@pytest.mark.timeout(QUICK_START_TIMEOUT)
@pytest.mark.parametrize("transport", sorted(POOLS))
def test_pool_example_sends_every_message(
    transport: str,
    submission_server: Callable[..., tuple[int, Mailbox]],
    certificates: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    port, mailbox = submission_server(login=EXAMPLE_LOGIN, password=EXAMPLE_PASSWORD)
    messages = [
        (EXAMPLE_SENDER, [EXAMPLE_RECIPIENT], MESSAGE + f"Message {number}.\r\n".encode())
        for number in range(3)
    ]
    results = run_example(POOLS[transport], messages, "127.0.0.1", port, certificates[1])
    if transport == "asyncio":
        # The asyncio example returns what asyncio.gather collects; the trio one nothing.
        assert [result.outcome for result in results] == [smtp_proto.MessageOutcome.ACCEPTED] * 3
    # The messages go at once, on several connections, so they arrive in any order.
    assert sorted(mailbox.messages) == sorted(messages)
