"""The blocking-socket transport: a drop-in for :mod:`smtplib`, and a modern blocking client.

Two APIs share one small loop, :meth:`_SocketDriver._run`, that carries out what the
engine's operations (:func:`smtp_proto.open_session`, :func:`smtp_proto.execute`,
:func:`smtp_proto.send_transaction`, ...) ask for: write these bytes, read a reply within
a deadline, do the TLS handshake, give the next chunk of the message. Every protocol
decision is the engine's; this module only moves bytes and translates results.

* :class:`SMTP`, :class:`SMTP_SSL` and :class:`LMTP` take the constructor arguments of
  :mod:`smtplib`'s classes, have their methods and return the same values, and raise the
  standard library's own exception classes (re-exported here), so that
  ``except smtplib.SMTPRecipientsRefused`` keeps working after
  ``import smtp_proto.transports.sync as smtplib``.
* :class:`Client` is the modern API: policy-driven TLS, results as values
  (:class:`smtp_proto.TransactionResult`), the engine's exceptions.

Where the drop-in deliberately differs from :mod:`smtplib`, it is safer, never looser:

* certificates are verified by default, for ``starttls()`` and :class:`SMTP_SSL` alike
  (:func:`ssl.create_default_context`), against the host name the caller gave;
* credentials are never sent in plain text to a server that is not on a loopback
  address: :class:`SMTPInsecureAuthenticationError` instead;
* command arguments holding CR, LF, NUL or other control characters are refused before
  anything is sent, and message content has every bare CR and LF turned into CRLF before
  dot-stuffing, so that no content can end the message early (SMTP smuggling);
* replies are parsed strictly (a bare LF, a malformed or over-long line is an
  :class:`SMTPProtocolError`, and the connection is closed);
* bytes the server sends after its ``220`` to STARTTLS and before the handshake are an
  attack, not a reply (the reply stream is read with ``recv``, never through a buffered
  file object, so nothing read before the handshake can survive it);
* a timeout applies to the whole of each reply and closes the connection, raising
  :class:`SMTPTimeoutError`, which is both a :class:`TimeoutError` and an
  :class:`SMTPServerDisconnected`;
* ``sendmail`` pipelines (RFC 2920) when the server offers it, and sends a message in one
  transaction whose failures are reported exactly as :mod:`smtplib` reports them;
* ``login`` uses the strongest mechanism both sides support (SCRAM first) and does not
  retry weaker ones after a failure, which would hand the password to a server that just
  failed a stronger exchange.

Raw access is kept where it can go through the engine: ``putcmd``/``docmd`` map the verbs
the engine knows (MAIL, RCPT, DATA, RSET, NOOP, VRFY, EXPN, HELP, EHLO, HELO, LHLO, QUIT,
STARTTLS, AUTH) onto its methods and send any other verb as an extension command; ``send``
accepts one complete command line. Bytes that would bypass the engine's state machine are
refused.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import email.utils
import os
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from smtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from smtp_proto import (
    DEFAULT_CHUNK_SIZE,
    Body,
    ClientConnection,
    ConnectionLost,
    CramMD5,
    EhloFeatures,
    Event,
    External,
    InsecureAuthenticationError,
    IORequest,
    Limits,
    LocalProtocolError,
    Mechanism,
    MessageOutcome,
    NeedBody,
    Plain,
    ProtocolError,
    Read,
    Recipient,
    RemoteProtocolError,
    Reply,
    SaslError,
    ScramSha1,
    ScramSha256,
    ServerCapabilityError,
    SMTPClientError,
    StartTls,
    StartTlsReady,
    State,
    Timeouts,
    TlsPolicy,
    TransactionResult,
    Write,
    authenticate,
    encode_address,
    execute,
    mail_parameters,
    message_envelope,
    message_needs_smtputf8,
    open_session,
    rcpt_parameters,
    send_transaction,
    send_transactions,
    serialize_message,
    settle,
    xtext_decode,
)

from ._pool import (
    CAN_QUIT_STATES,
    BatchMessage,
    LoggingConnection,
    ReceivedLog,
    hello_name,
    is_loopback,
    login_mechanism,
    make_settings,
    new_connection,
    prepare_batch,
)

if TYPE_CHECKING:
    from email.message import Message

__all__ = [
    "CRLF",
    "LMTP",
    "LMTP_PORT",
    "OLDSTYLE_AUTH",
    "SMTP",
    "SMTP_PORT",
    "SMTP_SSL",
    "SMTP_SSL_PORT",
    "Client",
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPInsecureAuthenticationError",
    "SMTPLocalProtocolError",
    "SMTPNotSupportedError",
    "SMTPProtocolError",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SMTPTimeoutError",
    "bCRLF",
    "quoteaddr",
    "quotedata",
]

# -- smtplib's module constants -----------------------------------------------------------

SMTP_PORT: Final = 25
SMTP_SSL_PORT: Final = 465
#: smtplib's default LMTP port (no port is registered for LMTP over TCP).
LMTP_PORT: Final = 2003
CRLF: Final = "\r\n"
bCRLF: Final = b"\r\n"
#: smtplib's bound on a reply line, kept for code that reads it. The engine's own bound,
#: :attr:`smtp_proto.Limits.max_reply_line_length`, is the one enforced, and is smaller.
_MAXLINE: Final = 8192
#: The legacy ``AUTH=`` line of EHLO replies, as smtplib exposes it. The engine reads such
#: lines itself; the pattern is kept for code that uses it.
OLDSTYLE_AUTH: Final = re.compile(r"auth=(.*)", re.IGNORECASE)

# socket's "use the default timeout" marker, which smtplib's signatures take as their
# default; looked up rather than named because typeshed does not declare it.
_DEFAULT_TIMEOUT: Any = vars(socket)["_GLOBAL_DEFAULT_TIMEOUT"]

# How many octets one recv() asks for: a whole EHLO reply or several pipelined replies.
_RECEIVE_SIZE: Final = 65536

_T = TypeVar("_T")


# -- exceptions beyond smtplib's ----------------------------------------------------------


class SMTPProtocolError(SMTPResponseException, SMTPServerDisconnected):
    """The server broke the protocol (a malformed or over-long reply, bytes injected after
    STARTTLS, a reply to no command). The connection has been closed. ``smtp_code`` is -1,
    smtplib's code for a reply it cannot read, and ``smtp_error`` says what was wrong."""


class SMTPTimeoutError(SMTPServerDisconnected, TimeoutError):
    """No complete reply arrived in time (or a write could not finish); the connection has
    been closed. Both a :class:`TimeoutError` and an :class:`SMTPServerDisconnected`."""


class SMTPInsecureAuthenticationError(SMTPException):
    """Credentials would cross the network in plain text: the server is not on a loopback
    address and TLS is not active. Call ``starttls()`` first (or use :class:`SMTP_SSL`).
    Nothing was sent; the connection is still usable."""


class SMTPLocalProtocolError(SMTPException):
    """The call is not allowed at this point of the session (a command out of sequence,
    a second AUTH); the engine refuses to go on and the connection has been closed."""


# -- smtplib's helper functions -----------------------------------------------------------


def quoteaddr(addrstring: str) -> str:
    """Return *addrstring* as an RFC 5321 path in angle brackets, as smtplib does: the
    address part of anything :func:`email.utils.parseaddr` understands, or the text itself
    when it cannot be parsed."""
    name, address = email.utils.parseaddr(addrstring)
    if (name, address) == ("", ""):
        return addrstring if addrstring.strip().startswith("<") else f"<{addrstring}>"
    return f"<{address}>"


def _addr_only(addrstring: str) -> str:
    # The bare address of a VRFY or EXPN argument, as smtplib sends it.
    name, address = email.utils.parseaddr(addrstring)
    return addrstring if (name, address) == ("", "") else address


def _envelope_address(addrstring: str) -> str:
    # A sender or recipient as the engine takes it, without angle brackets: what smtplib
    # would have put between them. "<>" is the null reverse-path, "".
    name, address = email.utils.parseaddr(addrstring)
    if (name, address) != ("", ""):
        return address
    stripped = addrstring.strip()
    if stripped.startswith("<") and stripped.endswith(">"):
        return stripped[1:-1]
    return addrstring


# Any line end: CRLF, or a lone CR or LF.
_LINE_END = re.compile(r"\r\n|\r|\n")
# A period at the start of a line.
_LEADING_PERIOD = re.compile(r"^\.", re.MULTILINE)
_LEADING_PERIOD_BYTES = re.compile(rb"^\.", re.MULTILINE)


def quotedata(data: str) -> str:
    """Turn every line end of *data* into CRLF and double each period that starts a line.

    Kept for compatibility; the engine does this itself (and more strictly) for everything
    it sends.
    """
    return _LEADING_PERIOD.sub("..", _LINE_END.sub(CRLF, data))


def _quote_periods(bindata: bytes) -> bytes:
    # smtplib's helper: double each period that starts a line, leaving line ends alone.
    return _LEADING_PERIOD_BYTES.sub(b"..", bindata)


def _fix_eols(data: str) -> str:
    # smtplib's helper: every line end becomes CRLF.
    return _LINE_END.sub(CRLF, data)


def _refuse_line_breaks(line: str) -> None:
    # smtplib refuses a command that holds a line break with this message; the engine would
    # refuse it too, but callers (and CPython's tests) look for smtplib's wording.
    if "\r" in line or "\n" in line:
        shown = line.replace("\n", "\\n").replace("\r", "\\r")
        raise ValueError(f"command and arguments contain prohibited newline characters: {shown}")


def _reply_text(reply: Reply) -> bytes:
    """A reply's text as smtplib returns it: the lines after their codes, each stripped of
    surrounding blanks, joined with newlines."""
    return b"\n".join(line.encode("utf-8", "surrogateescape").strip(b" \t") for line in reply.lines)


def _reply_of(event: Event) -> Reply:
    # Every event execute() can return carries the reply that caused it.
    if isinstance(event, Reply):
        return event
    reply = getattr(event, "reply", None)
    if not isinstance(reply, Reply):  # pragma: no cover - the engine guarantees one
        raise TypeError(f"{type(event).__name__} carries no reply")
    return reply


def _peer_is_loopback(sock: socket.socket) -> bool:
    """Whether *sock* is connected to this machine (a loopback address or a Unix socket),
    where credentials never cross a network."""
    if getattr(socket, "AF_UNIX", None) is not None and sock.family == socket.AF_UNIX:
        return True
    return is_loopback(_peer_address(sock))


def _peer_address(sock: socket.socket) -> object:
    # What the socket is connected to (None if it cannot tell).
    try:
        return sock.getpeername()
    except OSError:
        return None


def _default_local_hostname() -> str:
    """The name to greet with, chosen as smtplib chooses it: the FQDN, or failing that an
    address literal (RFC 5321 section 4.1.4)."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    address = "127.0.0.1"
    with contextlib.suppress(OSError):
        address = socket.gethostbyname(socket.gethostname())
    return f"[{address}]"


def _minimum(first: float | None, second: float | None) -> float | None:
    # The tighter of two timeouts, where None means "no limit".
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


# Whether a socket is a file descriptor that os.write takes (not so on Windows).
_DIRECT_WRITES = os.name == "posix"


def _timeout_message(limit: float | None, *, writing: bool) -> str:
    # What ran out: a write the server took nothing of, or the wait for a reply.
    if writing:
        return f"the server took no data for {limit} seconds"
    return f"no complete reply from the server within {limit} seconds"


def _flush(conn: ClientConnection) -> Generator[IORequest, bytes | None, None]:
    """Write whatever the engine has queued (a command just called)."""
    data = conn.data_to_send()
    if data:
        yield Write(data)


# -- the loop both APIs run ---------------------------------------------------------------


class _SocketDriver:
    """The socket, the engine, and the loop that runs an engine operation against them."""

    sock: socket.socket | None = None
    _conn: ClientConnection | None = None
    #: The host name the caller gave, which the server's certificate must match.
    _tls_host: str = ""
    #: An upper bound on every wait, on top of the engine's own timeouts (None: none).
    _io_cap: float | None = None

    def _run(self, operation: Generator[IORequest, bytes | None, _T]) -> _T:
        """Carry out what *operation* asks for until it returns, and return its value.

        Any exception closes the connection: after a failed read or write, a timeout or a
        protocol error nobody knows what the server has seen.
        """
        value: bytes | None = None
        deadline: float | None = None
        try:
            while True:
                try:
                    request = operation.send(value)
                except StopIteration as stop:
                    result: _T = stop.value
                    return result
                value = None
                sock = self._socket()
                # Socket failures become this API's exceptions. (Written out at each call:
                # a context manager per call is a measurable share of a small message's cost.)
                if isinstance(request, Write):
                    limit = self._write_timeout()
                    data = request.data
                    try:
                        # What the socket's buffer takes at once goes without the timeout
                        # change and the poll that sendall makes first (system calls on the
                        # path from a reply to the next write); only the rest waits, within
                        # the limit. A socket left blocking (no timeout) could wait past
                        # the limit, TLS must go through its socket, and only on POSIX is a
                        # socket a file descriptor: those go the long way.
                        if (
                            _DIRECT_WRITES
                            and type(sock) is socket.socket
                            and sock.gettimeout() is not None
                        ):
                            try:
                                sent = os.write(sock.fileno(), data)
                            except BlockingIOError:
                                sent = 0
                            if sent < len(data):
                                sock.settimeout(limit)
                                sock.sendall(memoryview(data)[sent:])
                        else:
                            sock.settimeout(limit)
                            sock.sendall(data)
                    except TimeoutError:
                        raise self._timed_out(limit, writing=True) from None
                    except OSError as exc:
                        raise self._broken(exc) from exc
                elif isinstance(request, Read):
                    now = time.monotonic()
                    limit = _minimum(request.timeout, self._io_cap)
                    if request.fresh or deadline is None:
                        # RFC 5321 section 4.5.3.2 times the whole reply, not each read.
                        deadline = None if limit is None else now + limit
                    remaining = None if deadline is None else deadline - now
                    if remaining is not None and remaining <= 0:
                        raise self._timed_out(limit)
                    try:
                        sock.settimeout(remaining)
                        value = sock.recv(_RECEIVE_SIZE)
                    except TimeoutError:
                        raise self._timed_out(limit) from None
                    except OSError as exc:
                        raise self._broken(exc) from exc
                    self._on_read(value)
                elif isinstance(request, StartTls):
                    self._handshake()
                elif isinstance(request, NeedBody):
                    # Content given to a transaction is pulled by the transaction itself
                    # (iterables included); nothing here streams it from outside.
                    raise RuntimeError("the engine asked for content that was not streamed")
        except BaseException:
            self._abort()
            raise

    def _handshake(self, timeout: float | None = None) -> None:
        """Do the TLS handshake on the connected socket, verifying the server's certificate
        against the host the caller gave, within *timeout* (by default the engine's timeout
        for a command). Handshake failures, such as :class:`ssl.SSLCertVerificationError`,
        are raised as they are."""
        sock = self._socket()
        if timeout is None and self._conn is not None:
            timeout = self._conn.timeouts.other
        try:
            sock.settimeout(_minimum(timeout, self._io_cap))
            self.sock = self._tls_context().wrap_socket(sock, server_hostname=self._tls_host)
        except BaseException:
            self._abort()
            raise

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise self._not_connected()
        return self.sock

    def _write_timeout(self) -> float | None:
        # RFC 5321 section 4.5.3.2.5 bounds each write of message data; the same bound
        # serves every write.
        conn = self._conn
        return _minimum(conn.timeouts.data_block if conn is not None else None, self._io_cap)

    def _abort(self) -> None:
        """Close the connection without a word: it cannot be used any further."""
        sock, self.sock = self.sock, None
        self._conn = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # Hooks for the two APIs.

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context()

    def _on_read(self, data: bytes) -> None:
        """Called with each read."""

    def _timed_out(self, limit: float | None, *, writing: bool = False) -> Exception:
        return TimeoutError(_timeout_message(limit, writing=writing))

    def _broken(self, error: OSError) -> Exception:
        return ConnectionLost(f"the connection failed: {error}")

    def _not_connected(self) -> Exception:
        return ConnectionLost("not connected")


# -- smtplib's options, as engine arguments -------------------------------------------------


def _keyword_values(options: Iterable[str]) -> dict[str, str | None]:
    # ["SIZE=10", "SMTPUTF8"] -> {"SIZE": "10", "SMTPUTF8": None}
    parsed: dict[str, str | None] = {}
    for option in options:
        keyword, equals, value = option.partition("=")
        parsed[keyword] = value if equals else None
    return parsed


@dataclass
class _MailOptions:
    """smtplib's MAIL options (``["BODY=8BITMIME", "SMTPUTF8"]``) sorted into the
    arguments the engine takes for them; the rest go through as they are."""

    size: int | None = None
    body_type: Body | None = None
    smtputf8: bool | None = None
    ret: str | None = None
    envid: str | None = None
    requiretls: bool = False
    extra: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, options: Iterable[str]) -> _MailOptions:
        result = cls()
        for keyword, value in _keyword_values(options).items():
            name = keyword.upper()
            if name == "SIZE" and value is not None and value.isdigit() and len(value) <= 20:
                result.size = int(value)
            elif name == "BODY" and value is not None:
                result.body_type = Body(value.upper())
            elif name == "SMTPUTF8" and value is None:
                result.smtputf8 = True
            elif name == "RET":
                result.ret = value
            elif name == "ENVID" and value is not None:
                result.envid = xtext_decode(value)
            elif name == "REQUIRETLS" and value is None:
                result.requiretls = True
            else:
                result.extra[keyword] = value
        return result


@dataclass
class _RcptOptions:
    """smtplib's RCPT options sorted into the engine's DSN arguments and the rest."""

    notify: frozenset[str] | None = None
    original_recipient: str | None = None
    extra: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, options: Iterable[str]) -> _RcptOptions:
        result = cls()
        for keyword, value in _keyword_values(options).items():
            name = keyword.upper()
            if name == "NOTIFY" and value is not None:
                result.notify = frozenset(value.split(","))
            elif name == "ORCPT" and value is not None:
                kind, _, address = value.partition(";")
                if kind.lower() != "rfc822":
                    raise ValueError("ORCPT is supported with the rfc822 address type only")
                result.original_recipient = xtext_decode(address)
            else:
                result.extra[keyword] = value
        return result

    def recipient(self, address: str) -> Recipient:
        return Recipient(
            address=address,
            notify=self.notify,
            original_recipient=self.original_recipient,
            parameters=self.extra,
        )


# SASL mechanisms that never expose a reusable secret, by name, as the engine's own
# mechanisms declare it: an authobject for one of them may run without TLS.
_SAFE_MECHANISMS: Final = frozenset(
    m.name for m in (CramMD5, ScramSha1, ScramSha256, External) if not m.sends_secret
)


def _mechanism(
    mechanism_name: str,
    start: Callable[[], bytes | None],
    answer: Callable[[bytes], bytes] | None,
) -> Mechanism:
    """An engine SASL mechanism made of two callables: *start* gives the initial response
    (or None), *answer* the response to each challenge (None: challenges are refused)."""

    class _Adapted(Mechanism):
        __slots__ = ()
        name = mechanism_name
        sends_secret = mechanism_name not in _SAFE_MECHANISMS

        def initial_response(self) -> bytes | None:
            return start()

        def respond(self, challenge: bytes) -> bytes:
            if answer is None:
                raise SaslError("a raw AUTH command cannot answer challenges; use auth()")
            return answer(challenge)

    return _Adapted()


# -- the smtplib drop-in ------------------------------------------------------------------


class SMTP(_SocketDriver):
    """A connection to an SMTP server, with the interface of :class:`smtplib.SMTP`.

    The arguments are smtplib's. With *host*, :meth:`connect` is called at once, and a
    greeting other than 220 raises :class:`SMTPConnectError`. *timeout* bounds each
    whole reply (not each read) on top of the RFC 5321 timeouts the engine applies.

    Attributes as in smtplib: :attr:`sock` (``None`` when not connected), :attr:`file`
    (always ``None``: replies are read with ``recv``, never through a buffered file),
    :attr:`helo_resp`, :attr:`ehlo_resp`, :attr:`does_esmtp`, :attr:`esmtp_features`
    (lower-case keyword to its parameters), :attr:`local_hostname`, :attr:`timeout`,
    :attr:`source_address`.
    """

    debuglevel = 0
    file: None = None
    helo_resp: bytes | None = None
    ehlo_msg = "ehlo"
    ehlo_resp: bytes | None = None
    does_esmtp = False
    default_port = SMTP_PORT
    #: Whether this is an LMTP session (set by :class:`LMTP`).
    _lmtp = False
    #: Whether the connection is encrypted from the start (set by :class:`SMTP_SSL`).
    _implicit_tls = False

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        self._tls_host = host
        self.timeout = timeout
        self.esmtp_features: dict[str, str] = {}
        self.command_encoding = "ascii"
        self.source_address = source_address
        self._auth_challenge_count = 0
        self._socket_timeout: float | None = None
        self._starttls_context: ssl.SSLContext | None = None
        self.user = ""
        self.password = ""
        if host:
            code, message = self.connect(host, port)
            if code != 220:
                self.close()
                raise SMTPConnectError(code, message)
        self.local_hostname = (
            local_hostname if local_hostname is not None else _default_local_hostname()
        )

    def __enter__(self) -> SMTP:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            code, message = self.docmd("QUIT")
            if code != 221:
                raise SMTPResponseException(code, message)
        except SMTPServerDisconnected:
            pass
        finally:
            self.close()

    def set_debuglevel(self, debuglevel: int) -> None:
        """Print the conversation to stderr: 1 for messages, 2 adds timestamps. What is
        sent is shown as the engine describes it: AUTH credentials as ``[redacted]`` and
        message content as its size."""
        self.debuglevel = debuglevel

    def _print_debug(self, *args: object) -> None:
        if self.debuglevel > 1:
            print(datetime.datetime.now().time(), *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    # -- connecting --

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        if self.debuglevel > 0:
            self._print_debug("connect: to", (host, port), self.source_address)
        return _without_delay(socket.create_connection((host, port), timeout, self.source_address))

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None
    ) -> tuple[int, bytes]:
        """Connect to *host* on *port* (``"host:port"`` is understood too) and return the
        greeting's code and text."""
        if source_address:
            self.source_address = source_address
        if not port and host.find(":") == host.rfind(":"):
            name, colon, number = host.rpartition(":")
            if colon:
                try:
                    port = int(number)
                except ValueError:
                    raise OSError("nonnumeric port") from None
                host = name
        if not port:
            port = self.default_port
        sys.audit("smtplib.connect", self, host, port)
        self.close()
        self._tls_host = host
        self._attach(self._get_socket(host, port, self.timeout))
        return self._greeting()

    def _attach(self, sock: socket.socket) -> None:
        # A new session on a connected socket: a fresh engine, nothing learned yet.
        self.sock = sock
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self._socket_timeout = sock.gettimeout()
        self._io_cap = self._socket_timeout
        self._conn = LoggingConnection(
            self._debug_sent,
            lmtp=self._lmtp,
            tls_active=self._implicit_tls,
            require_tls=False,
            peer_is_loopback=_peer_is_loopback(sock),
            limits=Limits(),
            timeouts=Timeouts(),
        )

    def _greeting(self) -> tuple[int, bytes]:
        try:
            code, message = self.getreply()
        except SMTPProtocolError as exc:
            raise SMTPConnectError(-1, exc.smtp_error) from exc
        if self.debuglevel > 0:
            self._print_debug("connect:", repr(message))
        return code, message

    def close(self) -> None:
        """Close the connection (without QUIT)."""
        self.file = None
        self._abort()

    # -- running the engine --

    def _engine(self) -> ClientConnection:
        if self.sock is None or self._conn is None:
            raise SMTPServerDisconnected("please run connect() first")
        return self._conn

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn the engine's exceptions into smtplib's (or this module's subclasses)."""
        try:
            yield
        except ServerCapabilityError as exc:
            raise SMTPNotSupportedError(str(exc)) from exc
        except InsecureAuthenticationError as exc:
            raise SMTPInsecureAuthenticationError(str(exc)) from exc
        except RemoteProtocolError as exc:
            self.close()
            raise SMTPProtocolError(-1, exc.message) from exc
        except LocalProtocolError as exc:
            self.close()
            raise SMTPLocalProtocolError(exc.message) from exc
        except ConnectionLost as exc:
            self.close()
            raise SMTPServerDisconnected("Connection unexpectedly closed") from exc
        finally:
            # The session may have ended (QUIT, a 421): then the socket goes too.
            conn = self._conn
            if conn is not None and conn.state in (State.CLOSED, State.ERROR):
                self.close()
            elif self.sock is not None:
                # Leave the socket with the timeout the caller configured, as smtplib does.
                with contextlib.suppress(OSError):
                    self.sock.settimeout(self._socket_timeout)

    def _send_command(self, command: Callable[[], object]) -> None:
        """Wait for any replies still due, then send *command* (a call of an engine
        method). Nothing is sent if the engine refuses the call."""
        conn = self._engine()
        with self._translated():
            self._run(settle(conn))
            command()
            self._run(_flush(conn))

    def _next_reply(self) -> tuple[int, bytes, Event | None]:
        """Read the next reply; a 421 (the server is closing) comes back as a reply, with
        no event, and closes the connection."""
        conn = self._engine()
        with self._translated():
            try:
                event = self._run(execute(conn))
            except ConnectionLost as lost:
                if lost.reply is None:
                    raise
                return lost.reply.code, _reply_text(lost.reply), None
            if isinstance(event, StartTlsReady):
                self._upgrade(conn)
            reply = _reply_of(event)
            return reply.code, _reply_text(reply), event

    def _exchange(self, command: Callable[[], object]) -> tuple[int, bytes, Event | None]:
        self._send_command(command)
        return self._next_reply()

    def _upgrade(self, conn: ClientConnection) -> None:
        # The server said 220 to STARTTLS: hand over to TLS, and forget what was learned
        # in plain text (RFC 3207 section 4.2).
        self._handshake()
        conn.tls_established()
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False

    def _tls_context(self) -> ssl.SSLContext:
        if self._starttls_context is not None:
            return self._starttls_context
        return ssl.create_default_context()

    def _debug_sent(self, line: str) -> None:
        # Each line the engine sends, as it describes it (credentials redacted).
        if self.debuglevel > 0:
            self._print_debug("send:", repr(line.removeprefix("C: ")))

    def _on_read(self, data: bytes) -> None:
        if self.debuglevel > 0:
            self._print_debug("reply:", repr(data))

    def _timed_out(self, limit: float | None, *, writing: bool = False) -> Exception:
        return SMTPTimeoutError(_timeout_message(limit, writing=writing))

    def _broken(self, error: OSError) -> Exception:
        return SMTPServerDisconnected(f"Connection unexpectedly closed: {error}")

    def _not_connected(self) -> Exception:
        return SMTPServerDisconnected("please run connect() first")

    # -- raw commands --

    def send(self, s: str | bytes) -> None:
        """Send one complete command line (ending in CRLF), as :meth:`putcmd` would.

        Anything else is refused: raw bytes would bypass the engine, which must see every
        command to match replies to them (and to keep injection out).
        """
        self._engine()
        text = s.decode("utf-8") if isinstance(s, bytes) else s
        line = text.removesuffix(CRLF)
        if line == text or "\r" in line or "\n" in line:
            raise SMTPNotSupportedError(
                "send() takes one command line ending in CRLF; use the command methods"
            )
        self.putcmd(line)

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Send a command. The verbs the engine knows go through its methods; any other is
        sent as an extension command. Read its reply with :meth:`getreply`."""
        line = cmd if args == "" else f"{cmd} {args}"
        _refuse_line_breaks(line)
        self._send_command(self._command_for(line))

    def _command_for(self, line: str) -> Callable[[], object]:
        """The engine call that sends the command *line*."""
        conn = self._engine()
        verb, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        name = verb.upper()
        if name in ("EHLO", "HELO", "LHLO"):
            greet = {"EHLO": conn.ehlo, "HELO": conn.helo, "LHLO": conn.lhlo}[name]
            return lambda: greet(rest)
        if name in ("MAIL", "RCPT"):
            prefix = "FROM:" if name == "MAIL" else "TO:"
            match = re.fullmatch(re.escape(prefix) + r"\s*<([^>]*)>(.*)", rest, re.IGNORECASE)
            if match is None:
                raise ValueError(f"{name} takes {prefix}<address> and optional parameters")
            address = match[1]
            parameters = _keyword_values(match[2].split())
            if name == "MAIL":
                return lambda: conn.mail(address, parameters)
            return lambda: conn.rcpt(address, parameters)
        plain = {
            "DATA": conn.data,
            "RSET": conn.rset,
            "NOOP": conn.noop,
            "QUIT": conn.quit,
            "STARTTLS": conn.starttls,
        }
        if name in plain:
            if rest:
                raise ValueError(f"{name} is sent without arguments")
            return plain[name]
        if name == "VRFY":
            return lambda: conn.vrfy(rest)
        if name == "EXPN":
            return lambda: conn.expn(rest)
        if name == "HELP":
            return lambda: conn.help(rest or None)
        if name == "AUTH":
            mechanism, _, initial = rest.partition(" ")
            return lambda: conn.auth(self._preset_mechanism(mechanism, initial.strip()))
        return lambda: conn.send_command(verb, *rest.split())

    def getreply(self) -> tuple[int, bytes]:
        """Read the next reply: its code and its text (the lines joined with newlines)."""
        code, message, _ = self._next_reply()
        if self.debuglevel > 0:
            self._print_debug(f"reply: retcode ({code}); Msg: {message!a}")
        return code, message

    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        """Send a command and return its reply."""
        self.putcmd(cmd, args)
        return self.getreply()

    # -- SMTP commands --

    def helo(self, name: str = "") -> tuple[int, bytes]:
        """Send HELO; returns the reply, also kept in :attr:`helo_resp`."""
        domain = name or self.local_hostname
        _refuse_line_breaks(f"helo {domain}")
        conn = self._engine()
        if conn.lmtp:
            raise SMTPNotSupportedError("an LMTP session greets with LHLO, not HELO")
        code, message, _ = self._exchange(lambda: conn.helo(domain))
        self.helo_resp = message
        return code, message

    def ehlo(self, name: str = "") -> tuple[int, bytes]:
        """Send EHLO (LHLO for LMTP) and record the extensions the server announces. A
        server that does not know EHLO gets HELO instead (RFC 5321 section 4.1.4)."""
        self.esmtp_features = {}
        domain = name or self.local_hostname
        _refuse_line_breaks(f"{self.ehlo_msg} {domain}")
        conn = self._engine()
        greet = conn.lhlo if conn.lmtp else conn.ehlo
        code, message, event = self._exchange(lambda: greet(domain))
        if isinstance(event, EhloFeatures) and not event.esmtp:
            self.helo_resp = message  # the engine fell back to HELO
            return code, message
        self.ehlo_resp = message
        if isinstance(event, EhloFeatures):
            self.does_esmtp = True
            self.esmtp_features = {
                keyword.lower(): " ".join(parameters)
                for keyword, parameters in event.extensions.items()
            }
        return code, message

    def has_extn(self, opt: str) -> bool:
        """Whether the server announced the extension *opt* (in any case)."""
        return opt.lower() in self.esmtp_features

    def help(self, args: str = "") -> bytes:
        """Send HELP and return the text of the reply."""
        conn = self._engine()
        return self._exchange(lambda: conn.help(args or None))[1]

    def rset(self) -> tuple[int, bytes]:
        """Send RSET, abandoning any mail transaction."""
        self.command_encoding = "ascii"
        return self._exchange(self._engine().rset)[:2]

    def noop(self) -> tuple[int, bytes]:
        """Send NOOP."""
        return self._exchange(self._engine().noop)[:2]

    def verify(self, address: str) -> tuple[int, bytes]:
        """Send VRFY for *address*."""
        target = _addr_only(address)
        _refuse_line_breaks(f"vrfy {target}")
        conn = self._engine()
        return self._exchange(lambda: conn.vrfy(target))[:2]

    vrfy = verify

    def expn(self, address: str) -> tuple[int, bytes]:
        """Send EXPN for *address*."""
        target = _addr_only(address)
        _refuse_line_breaks(f"expn {target}")
        conn = self._engine()
        return self._exchange(lambda: conn.expn(target))[:2]

    def ehlo_or_helo_if_needed(self) -> None:
        """Say EHLO (or HELO) unless this session already did; :class:`SMTPHeloError` if
        the server refuses both."""
        if self.helo_resp is not None or self.ehlo_resp is not None:
            return
        code, message = self.ehlo()
        if 200 <= code <= 299:
            return
        if not self._lmtp:
            code, message = self.helo()
            if 200 <= code <= 299:
                return
        raise SMTPHeloError(code, message)

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """Send MAIL FROM with *options* (such as ``["BODY=8BITMIME", "SMTPUTF8"]``),
        which the engine checks against what the server announced."""
        optionlist = "".join(f" {option}" for option in options)
        _refuse_line_breaks(f"mail from:{quoteaddr(sender)}{optionlist}")
        conn = self._engine()
        features = conn.features
        address = _envelope_address(sender)
        parameters: dict[str, str | None] = {}
        with self._translated():
            if features is not None:
                address, needs_utf8 = encode_address(address, smtputf8_offered=features.smtputf8)
                if features.esmtp:
                    chosen = _MailOptions.parse(options)
                    parameters = mail_parameters(
                        features,
                        tls_active=conn.tls_active,
                        size=chosen.size,
                        body=chosen.body_type,
                        smtputf8=bool(chosen.smtputf8) or needs_utf8,
                        ret=chosen.ret,
                        envid=chosen.envid,
                        requiretls=chosen.requiretls,
                        extra=chosen.extra,
                    )
                    if "SMTPUTF8" in parameters:
                        self.command_encoding = "utf-8"
        return self._exchange(lambda: conn.mail(address, parameters))[:2]

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """Send RCPT TO with *options* (such as ``["NOTIFY=FAILURE"]``)."""
        optionlist = "".join(f" {option}" for option in options)
        _refuse_line_breaks(f"rcpt to:{quoteaddr(recip)}{optionlist}")
        conn = self._engine()
        features = conn.features
        address = _envelope_address(recip)
        parameters: dict[str, str | None] = {}
        with self._translated():
            if features is not None:
                address = encode_address(address, smtputf8_offered=features.smtputf8)[0]
                if features.esmtp:
                    chosen = _RcptOptions.parse(options)
                    parameters = rcpt_parameters(
                        features,
                        notify=chosen.notify,
                        orcpt=chosen.original_recipient,
                        extra=chosen.extra,
                    )
        return self._exchange(lambda: conn.rcpt(address, parameters))[:2]

    def data(self, msg: str | bytes) -> tuple[int, bytes]:
        """Send DATA and then *msg*; returns the reply to the end of the message.

        Line ends are made CRLF and leading periods doubled (a ``str`` must be ASCII).
        :class:`SMTPDataError` if the server does not answer DATA with 354.
        """
        content = msg.encode("ascii") if isinstance(msg, str) else msg
        conn = self._engine()
        code, reply = self._exchange(conn.data)[:2]
        if self.debuglevel > 0:
            self._print_debug("data:", (code, reply))
        if code != 354:
            raise SMTPDataError(code, reply)

        def send_content() -> None:
            try:
                conn.send_data(content)
            except BaseException:
                # Ending the data now would deliver a truncated message; dropping the
                # connection delivers nothing.
                self.close()
                raise
            conn.end_data()

        self._send_command(send_content)
        code, message = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("data:", (code, message))
        return code, message

    def quit(self) -> tuple[int, bytes]:
        """Send QUIT and close the connection; a later :meth:`connect` starts afresh."""
        result = self.docmd("quit")
        self.ehlo_resp = self.helo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.close()
        return result

    # -- authentication --

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """Authenticate with the strongest password mechanism both sides support
        (SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN).

        Raises :class:`SMTPNotSupportedError` if the server offers no AUTH (or no mechanism
        this client supports), :class:`SMTPInsecureAuthenticationError` if the password
        would cross a network in plain text, :class:`SMTPAuthenticationError` if the
        server refuses. *initial_response_ok* is accepted for compatibility; the engine
        sends an initial response wherever RFC 4954 allows one.
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("auth"):
            raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        self.user, self.password = user, password
        conn = self._engine()
        self._refuse_second_auth(conn)
        return self._finish_auth(lambda: conn.login(user, password))

    def auth(
        self,
        mechanism: str,
        authobject: Callable[..., str | None],
        *,
        initial_response_ok: bool = True,
    ) -> tuple[int, bytes]:
        """Authenticate with *mechanism*, answering the server's challenges with
        *authobject*, as smtplib does: ``authobject()`` gives the initial response (or
        None for none), ``authobject(challenge)`` the answer to each challenge, as a str.
        The engine does the base64 and bounds the number of challenges."""
        self.ehlo_or_helo_if_needed()
        conn = self._engine()
        self._refuse_second_auth(conn)
        adapter = self._callback_mechanism(mechanism.upper(), authobject, initial_response_ok)
        return self._finish_auth(lambda: conn.auth(adapter))

    def _refuse_second_auth(self, conn: ClientConnection) -> None:
        if conn.authenticated:
            raise SMTPException("already authenticated (RFC 4954 allows one AUTH per session)")

    def _finish_auth(self, command: Callable[[], object]) -> tuple[int, bytes]:
        code, message, _ = self._exchange(command)
        # 503: the server says the session is already authenticated, which smtplib counts
        # as success.
        if code in (235, 503):
            return code, message
        raise SMTPAuthenticationError(code, message)

    def _callback_mechanism(
        self, name: str, authobject: Callable[..., str | None], initial_response_ok: bool
    ) -> Mechanism:
        """An engine mechanism that answers with smtplib's *authobject*, keeping
        ``_auth_challenge_count`` as smtplib does (``auth_login`` reads it)."""

        def start() -> bytes | None:
            answer = authobject() if initial_response_ok else None
            self._auth_challenge_count = 0 if answer is None else 1
            return None if answer is None else answer.encode("utf-8")

        def respond(challenge: bytes) -> bytes:
            self._auth_challenge_count += 1
            return (authobject(challenge) or "").encode("utf-8")

        return _mechanism(name, start, respond)

    @staticmethod
    def _preset_mechanism(name: str, initial: str) -> Mechanism:
        """The mechanism behind a raw ``AUTH <name> [initial-response]`` command: it sends
        the given (base64) initial response and cannot answer a challenge."""
        response = None
        if initial:
            # RFC 4954 section 4: "=" is an empty initial response.
            response = b"" if initial == "=" else base64.b64decode(initial, validate=True)
        return _mechanism(name.upper(), lambda: response, None)

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        """smtplib's authobject for CRAM-MD5; needs :attr:`user` and :attr:`password`."""
        if challenge is None:
            return None
        mechanism = CramMD5(self.user, self.password)
        mechanism.initial_response()
        return mechanism.respond(challenge).decode("utf-8")

    def auth_plain(self, challenge: bytes | None = None) -> str:
        """smtplib's authobject for PLAIN; needs :attr:`user` and :attr:`password`."""
        return Plain(self.user, self.password).initial_response().decode("utf-8")

    def auth_login(self, challenge: bytes | None = None) -> str:
        """smtplib's authobject for LOGIN: the user name first, then the password."""
        if challenge is None or self._auth_challenge_count < 2:
            return self.user
        return self.password

    # -- TLS --

    def starttls(self, *, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        """Upgrade the connection with STARTTLS (RFC 3207).

        The server's certificate is verified against the host given to the constructor
        or :meth:`connect`, with *context* or :func:`ssl.create_default_context`. After
        it, say EHLO again (:meth:`ehlo_or_helo_if_needed` does it for you).
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        self._starttls_context = context
        try:
            code, reply = self.docmd("STARTTLS")
        finally:
            self._starttls_context = None
        if code != 220:
            raise SMTPResponseException(code, reply)
        return code, reply

    # -- sending mail --

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: str | bytes,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Send *msg* from *from_addr* to *to_addrs* in one mail transaction, pipelined
        when the server offers PIPELINING.

        Returns the recipients the server refused, each with its code and text (under LMTP
        also those whose delivery failed). Raises :class:`SMTPRecipientsRefused` if no
        recipient was accepted, :class:`SMTPSenderRefused` if the sender was refused,
        :class:`SMTPDataError` if the message was, :class:`SMTPNotSupportedError` if it
        needs an extension the server lacks.
        """
        self.ehlo_or_helo_if_needed()
        conn = self._engine()
        content = msg.encode("ascii") if isinstance(msg, str) else msg
        addresses = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        esmtp = self.does_esmtp
        options = _MailOptions.parse(mail_options if esmtp else ())
        per_recipient = _RcptOptions.parse(rcpt_options if esmtp else ())
        with self._translated():
            self._run(settle(conn))
            transaction = conn.send_message(
                _envelope_address(from_addr),
                [per_recipient.recipient(_envelope_address(a)) for a in addresses],
                content,
                size=options.size,
                body_type=options.body_type,
                smtputf8=options.smtputf8,
                ret=options.ret,
                envid=options.envid,
                requiretls=options.requiretls,
                mail_options=options.extra,
            )
            result = self._run(send_transaction(conn, transaction))
        return _sendmail_outcome(result, from_addr, addresses)

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Send an :mod:`email` message, taking the envelope from its headers as smtplib
        does (``Bcc`` and ``Resent-Bcc`` are used, never sent), then :meth:`sendmail`.

        SMTPUTF8 and ``BODY=8BITMIME`` are asked for when an address or a header needs
        them; :class:`SMTPNotSupportedError` if the server does not offer SMTPUTF8 then.
        """
        self.ehlo_or_helo_if_needed()
        sender, recipients = message_envelope(
            msg, from_addr, [to_addrs] if isinstance(to_addrs, str) else to_addrs
        )
        international = message_needs_smtputf8(msg, sender, recipients)
        if international:
            if not self.has_extn("smtputf8"):
                raise SMTPNotSupportedError(
                    "One or more source or delivery addresses require internationalized "
                    "email support, but the server does not advertise the required SMTPUTF8 "
                    "capability"
                )
            mail_options = (*mail_options, "SMTPUTF8", "BODY=8BITMIME")
        content = serialize_message(msg, smtputf8=international)
        return self.sendmail(sender, recipients, content, mail_options, rcpt_options)


def _sendmail_outcome(
    result: TransactionResult, from_addr: str, addresses: Sequence[str]
) -> dict[str, tuple[int, bytes]]:
    """smtplib's answer to a transaction's result: the refused recipients, or the
    exception smtplib raises for the same outcome."""
    final = result.message_reply
    sender = result.sender_reply
    if sender is None or not sender.is_positive:
        reply = sender if sender is not None else final
        if reply is None:
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        raise SMTPSenderRefused(reply.code, _reply_text(reply), from_addr)
    refused: dict[str, tuple[int, bytes]] = {}
    unanswered = []
    for address, recipient in zip(addresses, result.recipients, strict=True):
        if recipient.reply is None:
            unanswered.append(address)
        elif not recipient.accepted:
            refused[address] = (recipient.reply.code, _reply_text(recipient.reply))
    if unanswered:
        # The connection ended among the recipients; a 421 answered the first of those
        # still waiting, as replies come in order.
        if final is None:
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        refused[unanswered[0]] = (final.code, _reply_text(final))
        raise SMTPRecipientsRefused(refused)
    if not result.accepted_recipients:
        raise SMTPRecipientsRefused(refused)
    if result.outcome is MessageOutcome.ACCEPTED:
        return refused
    if result.outcome is MessageOutcome.PARTIALLY_ACCEPTED:
        # LMTP: the message was delivered to some accepted recipients only.
        for address, recipient in zip(addresses, result.recipients, strict=True):
            reply = recipient.message_reply
            if recipient.accepted and reply is not None and not reply.is_positive:
                refused[address] = (reply.code, _reply_text(reply))
        return refused
    if result.outcome is MessageOutcome.DELIVERY_UNKNOWN or final is None:
        raise SMTPServerDisconnected(
            "Connection unexpectedly closed; the message may or may not have been delivered"
        )
    raise SMTPDataError(final.code, _reply_text(final))


class SMTP_SSL(SMTP):
    """:class:`SMTP` over implicit TLS (RFC 8314, port 465). The certificate is verified
    with *context*, or :func:`ssl.create_default_context` by default."""

    default_port = SMTP_SSL_PORT
    _implicit_tls = True

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        *,
        timeout: float | None = _DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.context = context if context is not None else ssl.create_default_context()
        super().__init__(host, port, local_hostname, timeout, source_address)

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        if self.debuglevel > 0:
            self._print_debug("connect:", (host, port))
        sock = super()._get_socket(host, port, timeout)
        try:
            return self.context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise


class LMTP(SMTP):
    """An LMTP session (RFC 2033), over TCP or, when *host* is an absolute path, a Unix
    socket. :meth:`sendmail` reports the outcome for each recipient."""

    ehlo_msg = "lhlo"
    _lmtp = True

    def __init__(
        self,
        host: str = "",
        port: int = LMTP_PORT,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(
            host,
            port,
            local_hostname=local_hostname,
            source_address=source_address,
            timeout=timeout,
        )

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None
    ) -> tuple[int, bytes]:
        """Connect to the LMTP server, on a Unix socket when *host* starts with ``/``."""
        if not host.startswith("/"):
            return super().connect(host, port, source_address=source_address)
        if self.timeout is not None and not self.timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(self.timeout)
            sock.connect(host)
        except OSError:
            if self.debuglevel > 0:
                self._print_debug("connect fail:", host)
            sock.close()
            raise
        self._tls_host = ""
        self._attach(sock)
        return self._greeting()


# -- the modern blocking client -----------------------------------------------------------


class Client(_SocketDriver):
    """One blocking SMTP (or LMTP) session with the engine's policies and results::

        def send(message, host="mail.example.com", port=587, context=None):
            with Client(host, port, ssl_context=context, username="me", password="...") as client:
                return client.send_message("me@example.com", ["you@example.org"], message)

    Making a client connects, reads the greeting, says EHLO (LHLO for LMTP), applies the
    TLS policy and, when credentials or a mechanism were given, authenticates; leaving the
    ``with`` block sends QUIT (if the session allows it) and closes the connection. The
    options are those of the asyncio and trio transports' clients, checked by the same
    code:

    :param host: the server's name or address; TLS certificates are checked against it.
    :param port: 465 when *tls* is :attr:`TlsPolicy.IMPLICIT`, otherwise 25.
    :param tls: :attr:`~smtp_proto.TlsPolicy.REQUIRED` (the default: STARTTLS, and
        :class:`smtp_proto.TlsUnavailable` if the server does not offer it),
        :attr:`~smtp_proto.TlsPolicy.IMPLICIT`, :attr:`~smtp_proto.TlsPolicy.OPPORTUNISTIC`
        or :attr:`~smtp_proto.TlsPolicy.NONE`.
    :param ssl_context: the TLS configuration; by default :func:`ssl.create_default_context`,
        which verifies certificates and host names.
    :param local_hostname: the name to greet with; by default an address literal of the
        client's own address, such as ``[192.0.2.1]``.
    :param timeouts: how long each whole reply may take (:class:`smtp_proto.Timeouts`). The
        greeting's timeout also bounds connecting and the implicit TLS handshake, the
        timeout of "other" commands the STARTTLS handshake.
    :param limits: bounds on what the engine buffers (:class:`smtp_proto.Limits`).
    :param lmtp: speak LMTP (RFC 2033); each recipient then gets its own outcome.
    :param username: with *password*, log in by the strongest password mechanism both
        sides support.
    :param password: the password for *username*.
    :param mechanism: log in with this SASL mechanism instead (such as
        :class:`smtp_proto.XOAuth2`).
    :param allow_auth_without_tls: allow mechanisms that expose a secret on a connection
        without TLS (they are always allowed on a loopback address).
    :param sock: an already connected socket (through a SOCKS proxy, or a Unix socket) to
        use instead of connecting; the client owns it from then on and closes it.
    :param debug: called with one line for each line sent (``"C: ..."``, credentials
        redacted and message content as its size) and received (``"S: ..."``).

    Failures raise the engine's exceptions: :class:`smtp_proto.SMTPClientError` and its
    subclasses (:class:`smtp_proto.ConnectionLost` for a closed or failed connection),
    :class:`smtp_proto.RemoteProtocolError` when the server breaks the protocol,
    :class:`ValueError` for an argument refused before anything is sent, the built-in
    :class:`TimeoutError` when a reply is late, :class:`ssl.SSLError` when the TLS
    handshake fails. A refused message is a result, not an exception. Every failure but
    a refused argument closes the connection; a later call raises ``ConnectionLost``.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        tls: TlsPolicy = TlsPolicy.REQUIRED,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        lmtp: bool = False,
        username: str | None = None,
        password: str | None = None,
        mechanism: Mechanism | None = None,
        allow_auth_without_tls: bool = False,
        sock: socket.socket | None = None,
        debug: Callable[[str], None] | None = None,
    ) -> None:
        settings = make_settings(
            host,
            port,
            tls=tls,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
            timeouts=timeouts,
            limits=limits,
            lmtp=lmtp,
            username=username,
            password=password,
            mechanism=mechanism,
            allow_auth_without_tls=allow_auth_without_tls,
            debug=debug,
        )
        self._settings = settings
        self._tls_host = settings.host
        self._received_log = (
            ReceivedLog(settings.debug, settings.limits.max_reply_line_length)
            if settings.debug is not None
            else None
        )
        if sock is None:
            sock = socket.create_connection(
                (settings.host, settings.port), settings.timeouts.greeting
            )
        self.sock = _without_delay(sock)
        try:
            implicit = settings.tls is TlsPolicy.IMPLICIT
            if implicit:
                self._handshake(settings.timeouts.greeting)
            connected = self._socket()
            conn = new_connection(settings, tls_active=implicit, peer=_peer_address(connected))
            self._conn = conn
            hello = hello_name(settings.local_hostname, connected.getsockname())
            self._run(open_session(conn, hello, settings.tls))
            chosen = login_mechanism(settings, self.features)
            if chosen is not None:
                self._run(
                    authenticate(conn, chosen, allow_without_tls=settings.allow_auth_without_tls)
                )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        conn = self._conn
        try:
            if self.sock is not None and conn is not None and conn.state in CAN_QUIT_STATES:
                # Best effort: the connection is closed below all the same.
                with contextlib.suppress(SMTPClientError, ProtocolError, OSError):
                    self.quit()
        finally:
            self.close()

    @property
    def features(self) -> EhloFeatures:
        """What the server announced in its last EHLO (over TLS when TLS is in use)."""
        features = self._engine().features
        if features is None:
            raise ConnectionLost("the session has no EHLO reply")
        return features

    @property
    def tls_active(self) -> bool:
        """Whether the connection is encrypted."""
        return self._engine().tls_active

    def send_message(
        self,
        sender: str | None,
        recipients: Sequence[str | Recipient] | None,
        body: bytes | bytearray | memoryview | Message | Iterable[bytes],
        *,
        size: int | None = None,
        body_type: Body | None = None,
        smtputf8: bool | None = None,
        ret: str | None = None,
        envid: str | None = None,
        requiretls: bool = False,
        mail_options: Mapping[str, str | None] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        pipeline_content_up_to: int = 0,
    ) -> TransactionResult:
        """Send one message and return what became of it, for each recipient too.

        *body* is the message: bytes, an :class:`email.message.Message` (sender and
        recipients may then be None, to take them from its headers, as
        ``smtplib.send_message`` does), or an iterable of byte chunks, read as the content
        is sent. The keyword arguments are those of
        :meth:`smtp_proto.ClientConnection.send_message`.

        Refused recipients do not raise: see :attr:`TransactionResult.recipients`. A message
        the server cannot take raises :class:`smtp_proto.ServerCapabilityError` before
        anything is sent.
        """
        conn = self._engine()
        if not conn.can_start_transaction:
            # The replies still awaited (an RSET after a failed message, say) come first.
            self._run(settle(conn))
        transaction = self._engine_call(
            lambda: conn.send_message(
                sender,
                recipients,
                body,
                size=size,
                body_type=body_type,
                smtputf8=smtputf8,
                ret=ret,
                envid=envid,
                requiretls=requiretls,
                mail_options=mail_options,
                chunk_size=chunk_size,
                pipeline_content_up_to=pipeline_content_up_to,
            )
        )
        result = self._run(send_transaction(conn, transaction))
        if conn.state is State.CLOSED:
            self.close()
        return result

    def send_messages(
        self,
        messages: Iterable[BatchMessage],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        pipeline_content_up_to: int = 0,
    ) -> list[TransactionResult]:
        """Send several messages, pipelined one after another, and return what became of
        each, in order.

        Each of *messages* is ``(sender, recipients, body)`` as :meth:`send_message` takes
        them. Every message is checked before the first is sent. With PIPELINING each
        message costs about one round trip instead of two or more; with CHUNKING as well and
        *pipeline_content_up_to* at least the messages' size, several whole messages go in
        one write (see :func:`smtp_proto.send_transactions`). Messages that need their own
        extension parameters (DSN, SIZE, ...) go through :meth:`send_message`. If the
        session ends part way, the messages not yet started get the outcome ``FAILED``.
        """
        conn = self._engine()
        if not conn.can_start_transaction:
            self._run(settle(conn))
        transactions = prepare_batch(conn, messages, chunk_size, pipeline_content_up_to)
        results = self._run(send_transactions(conn, transactions))
        if conn.state is State.CLOSED:
            self.close()
        return results

    def noop(self) -> Reply:
        """Send NOOP and return the reply."""
        return self._simple(lambda conn: conn.noop())

    def rset(self) -> Reply:
        """Send RSET and return the reply."""
        return self._simple(lambda conn: conn.rset())

    def vrfy(self, address: str) -> Reply:
        """Send VRFY and return the reply."""
        return self._simple(lambda conn: conn.vrfy(address))

    def expn(self, mailing_list: str) -> Reply:
        """Send EXPN and return the reply."""
        return self._simple(lambda conn: conn.expn(mailing_list))

    def help(self, topic: str | None = None) -> Reply:
        """Send HELP (about *topic*) and return the reply."""
        return self._simple(lambda conn: conn.help(topic))

    def command(self, verb: str, *arguments: str) -> Reply:
        """Send an extension command the engine has no method for (such as ETRN) and return
        the reply. Commands that change the session's state are refused with ValueError."""
        return self._simple(lambda conn: conn.send_command(verb, *arguments))

    def quit(self) -> None:
        """Send QUIT, wait for the reply and close the connection. Leaving the ``with``
        block does this too."""
        try:
            self._simple(lambda conn: conn.quit())
        except ConnectionLost:
            pass  # closed without a reply: the session is over all the same
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection without QUIT."""
        self._abort()

    # -- running the engine --

    def _engine(self) -> ClientConnection:
        if self.sock is None or self._conn is None:
            raise ConnectionLost("the connection is closed")
        return self._conn

    def _engine_call(self, call: Callable[[], _T]) -> _T:
        # A command refused for its arguments leaves the session usable; a protocol error
        # (a command out of sequence) poisons the engine, and the connection goes with it.
        try:
            return call()
        except ProtocolError:
            self.close()
            raise

    def _simple(self, command: Callable[[ClientConnection], None]) -> Reply:
        # A command whose answer is a plain Reply.
        conn = self._engine()
        self._run(settle(conn))
        self._engine_call(lambda: command(conn))
        event = self._run(execute(conn))
        if conn.state is State.CLOSED:
            self.close()
        return _reply_of(event)

    def _tls_context(self) -> ssl.SSLContext:
        return self._settings.tls_context()

    def _on_read(self, data: bytes) -> None:
        if self._received_log is not None:
            self._received_log.feed(data)


def _without_delay(sock: socket.socket) -> socket.socket:
    """Turn off Nagle's algorithm: commands are small writes whose replies are awaited, and
    waiting for the previous write's acknowledgement before sending the next (the final dot
    after the content, say) costs a delayed-ACK pause of tens of milliseconds per message.
    Sockets that have no such option (Unix sockets, test doubles) are left as they are."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
