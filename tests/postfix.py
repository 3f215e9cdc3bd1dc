"""A private Postfix on loopback: a real SMTP server for the transports' tests.

A test module uses it by importing the fixture, which pytest then finds by its name::

    from postfix import postfix_server  # noqa: F401  (the fixture "postfix")

    def test_something(postfix: PostfixServer) -> None:
        with smtplib.SMTP(postfix.host, postfix.port) as client: ...

The session-scoped fixture ``postfix`` starts one Postfix instance with a configuration
directory, queue, log and mail store of its own inside a pytest temporary directory. Nothing
of the machine's own Postfix is used or touched, and the instance listens on 127.0.0.1 only.
It offers PIPELINING, SIZE, 8BITMIME, DSN, SMTPUTF8, CHUNKING, ENHANCEDSTATUSCODES and
STARTTLS, with a server certificate for "localhost" and "127.0.0.1" issued at test time by a
throwaway CA that clients trust through :meth:`PostfixServer.client_context`.

Mail for any address of :data:`MAIL_DOMAIN` is accepted and delivered into one maildir, which
:meth:`PostfixServer.wait_for_messages` reads back, except for :data:`REFUSED_RECIPIENT`
(``550``) and :data:`DEFERRED_RECIPIENT` (``450``). Mail for any other domain is accepted
from loopback but never leaves the machine: the "error" transport bounces it.

Postfix's ``postfix start`` is reserved for the superuser. Where it cannot run (not installed,
or not root) the tests that use the fixture are skipped, except on CI (``CI`` set), where a
skipped real-server test would hide a broken setup, so they fail.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import trustme

__all__ = [
    "DEFERRED_RECIPIENT",
    "MAIL_DOMAIN",
    "MESSAGE_SIZE_LIMIT",
    "REFUSED_RECIPIENT",
    "PostfixServer",
    "postfix_server",
]

#: The domain whose mail the instance delivers into its maildir.
MAIL_DOMAIN = "example.test"
#: Refused at RCPT with a permanent error.
REFUSED_RECIPIENT = f"refused@{MAIL_DOMAIN}"
#: Refused at RCPT with a temporary error.
DEFERRED_RECIPIENT = f"later@{MAIL_DOMAIN}"
#: The SIZE the server announces and enforces, in octets: small, so that tests can exceed it.
MESSAGE_SIZE_LIMIT = 1024 * 1024

# How long `postfix start` and `postfix stop` may take, and how long to wait for the first
# greeting after start. Generous: a loaded CI machine is slow, and a healthy start takes
# well under a second.
_COMMAND_TIMEOUT = 60.0
_GREETING_TIMEOUT = 15.0
# How many free ports to try, should another process take the one picked before Postfix
# binds it.
_START_ATTEMPTS = 3
# How often wait_for_messages() looks at the maildir.
_POLL_INTERVAL = 0.1
# How much of the end of the mail log goes into an error message.
_LOG_TAIL_LINES = 40


@dataclasses.dataclass(frozen=True, kw_only=True)
class PostfixServer:
    """A running private Postfix instance, as the fixture ``postfix`` returns it."""

    #: Where it listens.
    host: str
    port: int
    #: The CA that issued the server's certificate; trust it to verify the server.
    ca: trustme.CA
    #: The instance's directory: configuration, queue, log and mail store.
    directory: Path

    @property
    def maildir(self) -> Path:
        """The maildir every message for :data:`MAIL_DOMAIN` is delivered into."""
        return self.directory / "mail" / "inbox"

    @property
    def log_file(self) -> Path:
        return self.directory / "log" / "maillog"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that verifies the server against the test CA (the server's
        certificate names "localhost" and "127.0.0.1")."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        return context

    def log(self) -> str:
        """The instance's mail log so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def messages(self) -> list[bytes]:
        """The messages delivered so far, oldest first, exactly as stored.

        Postfix stores lines ending in LF and puts its own ``Return-Path``, ``Delivered-To``
        and ``Received`` headers before the message the client sent, which follows
        unchanged (the instance adds no missing header), so a test compares with
        ``stored.endswith(sent.replace(b"\\r\\n", b"\\n"))``.
        """
        files: list[Path] = []
        # Postfix writes each message into tmp/ and renames it into new/, so a file seen
        # in new/ is complete. cur/ is where a mail reader would move it; none does here.
        for folder in ("new", "cur"):
            try:
                files.extend((self.maildir / folder).iterdir())
            except FileNotFoundError:
                continue
        files.sort(key=lambda path: (path.stat().st_mtime_ns, path.name))
        return [path.read_bytes() for path in files]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """Wait until at least *count* messages have been delivered and return them all,
        oldest first; fail the test, showing the mail log, if they do not arrive within
        *timeout* seconds. Delivery is asynchronous: the server's 250 means "queued"."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages()
            if len(messages) >= count:
                return messages
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"{len(messages)} of {count} messages delivered after {timeout} s; "
                    f"end of the Postfix log:\n{self.log_tail()}",
                    pytrace=False,
                )
            time.sleep(_POLL_INTERVAL)

    def clear(self) -> None:
        """Delete every delivered message, so the next test counts from zero."""
        for folder in ("new", "cur"):
            try:
                entries = list((self.maildir / folder).iterdir())
            except FileNotFoundError:
                continue
            for entry in entries:
                entry.unlink(missing_ok=True)


def _unavailable(reason: str) -> NoReturn:
    # Without Postfix the tests cannot run. Locally that is a skip; on CI it is a failure,
    # since a skip there would let a broken setup pass unnoticed.
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Postfix tests, but {reason}", pytrace=False)
    pytest.skip(f"no private Postfix: {reason}")


def _find_program(name: str) -> str:
    # Postfix's commands live in an sbin directory, which is not on every user's PATH.
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/usr/local/sbin"])
    program = shutil.which(name, path=search)
    if program is None:
        _unavailable(f"the {name!r} command is not installed (apt-get install postfix)")
    return program


def _default(postconf: str, parameter: str) -> str:
    # The compiled-in default of a parameter; `postconf -d` needs no main.cf.
    result = subprocess.run(
        [postconf, "-dh", parameter],
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
        check=True,
    )
    return result.stdout.strip()


def _free_port() -> int:
    # Ask the kernel for a free port. Another process could take it before Postfix binds
    # it; the fixture then sees "Address already in use" in the log and tries again.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _let_postfix_traverse(directory: Path, basetemp: Path) -> None:
    # Postfix's daemons drop root for the mail owner, which must reach the queue and the
    # mail store inside *directory*. pytest makes its temporary folders private (mode 0700),
    # so grant search permission (x, not read) to others on pytest's own folders: the
    # session's base folder and what is below it, and the per-user "pytest-of-NAME" folder
    # above it; pytest takes that permission away again on its next run. Any other folder
    # on the way is not ours to open up.
    for folder in (directory, *directory.parents):
        mode = folder.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        pytests_own = (
            folder == basetemp
            or basetemp in folder.parents
            or (folder == basetemp.parent and folder.name.startswith("pytest-of-"))
        )
        if not pytests_own:
            raise RuntimeError(
                f"the Postfix user cannot reach {directory}: {folder} is not searchable "
                "by others; choose another --basetemp"
            )
        folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _master_cf(prototype: str, port: int) -> str:
    # Rewrite the package's master.cf: the public "smtp inet" service becomes one on the
    # loopback port, and no service runs chrooted. A chroot jail would be the instance's
    # queue directory, which lacks the copies of /etc files (resolver, services, zone info)
    # that a distribution's start script puts there.
    lines = []
    for line in prototype.splitlines():
        fields = line.split()
        # Service lines start in column one; indented lines continue the one before.
        if line[:1].isspace() or line.startswith("#") or len(fields) < 8:
            lines.append(line)
        elif fields[:2] == ["smtp", "inet"]:
            lines.append(f"127.0.0.1:{port} inet n - n - - smtpd")
        else:
            fields[4] = "n"
            lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"


def _main_cf(directory: Path, owner: pwd.struct_passwd) -> str:
    conf = directory / "conf"
    settings = {
        # Today's defaults, without the backwards-compatibility warnings.
        "compatibility_level": "3.6",
        # Everything of the instance stays in its directory.
        "queue_directory": directory / "queue",
        "data_directory": directory / "data",
        # No syslog on a test machine: without a log file every error would be silent.
        "maillog_file": directory / "log" / "maillog",
        "maillog_file_prefixes": directory,
        "syslog_name": "postfix-test",
        # Loopback only, and no name service: nothing leaves the machine.
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "myhostname": "localhost",
        "mydomain": "localdomain",
        "myorigin": "$myhostname",
        "mydestination": "",
        "relayhost": "",
        "relay_domains": "",
        "smtp_dns_support_level": "disabled",
        "smtp_host_lookup": "native",
        "lmtp_host_lookup": "native",
        "smtpd_peername_lookup": "no",
        "append_dot_mydomain": "no",
        "biff": "no",
        "alias_maps": "",
        "alias_database": "",
        # Mail that is not for the test domain bounces instead of being sent anywhere.
        "default_transport": "error:this test server delivers no mail outside its domain",
        "relay_transport": "error:this test server delivers no mail outside its domain",
        "local_transport": "error:this test server has no local mailboxes",
        # Every address of the test domain goes into one maildir (the trailing "/" of the
        # lookup result means maildir), written as the "postfix" user.
        "virtual_mailbox_domains": MAIL_DOMAIN,
        "virtual_mailbox_base": directory / "mail",
        "virtual_mailbox_maps": "static:inbox/",
        "virtual_uid_maps": f"static:{owner.pw_uid}",
        "virtual_gid_maps": f"static:{owner.pw_gid}",
        # The refusals the tests ask for, then the usual relay rule.
        "smtpd_recipient_restrictions": (
            f"check_recipient_access texthash:{conf / 'recipient_access'}, "
            "permit_mynetworks, reject_unauth_destination"
        ),
        # Deliver what the client sent: cleanup adds no missing Date, Message-ID or From and
        # rewrites no header address, which it would do for a client on an inet interface.
        "local_header_rewrite_clients": "",
        "always_add_missing_headers": "no",
        # The extensions under test (most are on by default; stated so a reader sees them).
        "message_size_limit": MESSAGE_SIZE_LIMIT,
        "smtputf8_enable": "yes",
        "smtpd_discard_ehlo_keywords": "",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": conf / "cert.pem",
        "smtpd_tls_key_file": conf / "key.pem",
        "smtpd_tls_loglevel": "1",
        "smtpd_helo_required": "no",
        # Tests make errors on purpose; do not slow down or drop a client for them.
        "smtpd_error_sleep_time": "0s",
        "smtpd_soft_error_limit": "1000",
        "smtpd_hard_error_limit": "1000",
        "smtpd_junk_command_limit": "1000",
    }
    return "".join(f"{name} = {value}\n" for name, value in settings.items())


def _postfix(postfix: str, conf: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [postfix, "-c", str(conf), command],
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )


def _wait_for_greeting(server: PostfixServer) -> None:
    # `postfix start` returns once the master process is up; make sure smtpd answers.
    deadline = time.monotonic() + _GREETING_TIMEOUT
    while True:
        try:
            with socket.create_connection((server.host, server.port), timeout=5) as probe:
                greeting = probe.recv(512)
                probe.sendall(b"QUIT\r\n")
            if greeting.startswith(b"220"):
                return
            problem = f"unexpected greeting {greeting!r}"
        except OSError as exc:
            problem = str(exc)
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"Postfix on port {server.port} did not greet ({problem}); "
                f"end of its log:\n{server.log_tail()}"
            )
        time.sleep(_POLL_INTERVAL)


@pytest.fixture(scope="session", name="postfix")
def postfix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixServer]:
    """Start the private Postfix instance for the session and stop it at the end."""
    postfix = _find_program("postfix")
    postconf = _find_program("postconf")
    if os.geteuid() != 0:
        _unavailable("starting Postfix requires root")
    owner = pwd.getpwnam(_default(postconf, "mail_owner"))

    directory = tmp_path_factory.mktemp("postfix")
    _let_postfix_traverse(directory, tmp_path_factory.getbasetemp())
    conf = directory / "conf"
    for folder in ("conf", "queue", "log"):
        (directory / folder).mkdir()
    # Postfix's daemons write here as the mail owner ("open lock file ... Permission
    # denied" otherwise); virtual(8) makes the maildir in the mail store as that user.
    for folder in ("data", "mail"):
        (directory / folder).mkdir(mode=0o700)
        os.chown(directory / folder, owner.pw_uid, owner.pw_gid)

    ca = trustme.CA()
    certificate = ca.issue_cert("localhost", "127.0.0.1")
    certificate.cert_chain_pems[0].write_to_path(conf / "cert.pem")
    for blob in certificate.cert_chain_pems[1:]:
        blob.write_to_path(conf / "cert.pem", append=True)
    certificate.private_key_pem.write_to_path(conf / "key.pem")
    (conf / "key.pem").chmod(0o600)

    (conf / "recipient_access").write_text(
        f"{REFUSED_RECIPIENT} 550 5.1.1 This recipient is refused by the test server\n"
        f"{DEFERRED_RECIPIENT} 450 4.2.0 This recipient is deferred by the test server\n"
    )
    # The pristine master.cf the package installs as a prototype; the machine's own
    # master.cf, which an administrator may have changed, only if there is none.
    prototypes = [
        Path(_default(postconf, "meta_directory")) / "master.cf.proto",
        Path(_default(postconf, "config_directory")) / "master.cf",
    ]
    prototype = next((path for path in prototypes if path.is_file()), None)
    if prototype is None:
        _unavailable(f"Postfix has no master.cf to start from (looked for {prototypes})")

    (conf / "main.cf").write_text(_main_cf(directory, owner))
    try:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            (conf / "master.cf").write_text(_master_cf(prototype.read_text(), port))
            server = PostfixServer(host="127.0.0.1", port=port, ca=ca, directory=directory)
            logged_before = len(server.log())
            started = _postfix(postfix, conf, "start")
            if started.returncode == 0:
                break
            # Another process took the free port before Postfix bound it: pick another.
            port_taken = "Address already in use" in server.log()[logged_before:]
            if port_taken and attempt < _START_ATTEMPTS:
                continue
            raise RuntimeError(
                f"postfix start failed with status {started.returncode}:\n"
                f"{started.stdout}{started.stderr}\nend of its log:\n{server.log_tail()}"
            )
        _wait_for_greeting(server)
        yield server
    finally:
        # Runs however the session ends, failed tests included. A start that failed may
        # have left a master running, so stop in any case; "not running" is fine.
        _postfix(postfix, conf, "stop")
