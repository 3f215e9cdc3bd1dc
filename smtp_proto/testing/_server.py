"""A scriptable fake SMTP/LMTP server, in memory and without I/O.

:class:`FakeServer` is the server half of a conversation, written the way the engine is: it
takes the bytes a client wrote and returns the bytes a server would answer, and never opens
a socket or reads a clock. Tests drive it directly (feeding it what a
:class:`~smtp_proto.ClientConnection` produces) or put it on a loopback socket with
:func:`~smtp_proto.testing.serve_loopback` to test a whole transport.

It is deliberately a *fake*, not a mail server: it parses what it needs to answer
correctly (command lines, DATA content up to the final dot, BDAT chunks by their size),
records what it received, and answers from rules the test sets: refuse this sender or
that recipient, answer a command with given bytes, close the connection or go silent
after a command.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["MESSAGE", "FakeServer", "ReceivedMessage"]

#: The pseudo-command the rules use for the end of a message's content: the final dot after
#: DATA, or the last BDAT chunk. ``reply_to(MESSAGE, ...)`` sets the reply to the content.
MESSAGE = "MESSAGE"

# The reply sent with a close: RFC 5321 section 3.8, "421 <domain> Service not available,
# closing transmission channel".
_CLOSING = b"421 4.3.2 service shutting down, closing transmission channel\r\n"

# "BDAT" SP chunk-size [ SP "LAST" ] (RFC 3030 section 2); the size is bounded in digits
# before int() sees it, as the engine bounds every number it reads.
_BDAT_ARGUMENT = re.compile(r"([0-9]{1,18})( +LAST)? *", re.IGNORECASE)

# The address between "<" and ">" of MAIL FROM and RCPT TO.
_PATH = re.compile(r"[A-Za-z]+ *: *<([^>]*)>")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMessage:
    """One message as the fake server received it.

    :param sender: the reverse path of MAIL FROM (``""`` for the null sender).
    :param recipients: the recipients it accepted, in RCPT order.
    :param content: the content as the client meant it: dot-stuffing undone and the final
        ``.`` CRLF removed for DATA, the chunks joined for BDAT.
    """

    sender: str
    recipients: tuple[str, ...]
    content: bytes


def _reply(code: int, text: str) -> bytes:
    # One single-line reply. Text with line breaks would make the reply something else.
    return f"{code} {text}\r\n".encode()


class FakeServer:
    """A scriptable, in-memory SMTP (or LMTP) server: bytes in, reply bytes out.

    Use it to test how your code handles a refused sender or recipient, a ``421``, a
    server that stops answering (for timeouts) or a refused STARTTLS. Here it answers a
    :class:`~smtp_proto.ClientConnection` in memory:

    >>> import smtp_proto
    >>> from smtp_proto.testing import FakeServer
    >>> fake = FakeServer()
    >>> fake.refuse_recipient("nobody@example.com")
    >>> conn = smtp_proto.ClientConnection()
    >>> conn.receive_data(fake.connect())  # the 220 greeting
    >>> conn.next_event()
    Greeting(reply=Reply(code=220, lines=('fake.example ESMTP',), enhanced_status=None))
    >>> conn.ehlo("client.example")
    >>> conn.receive_data(fake.receive(conn.data_to_send()))
    >>> conn.next_event()  # doctest: +ELLIPSIS
    EhloFeatures(reply=Reply(code=250, lines=('fake.example', 'PIPELINING', ...
    >>> conn.mail("me@example.com")
    >>> conn.rcpt("nobody@example.com")  # pipelined: both commands go at once
    >>> conn.receive_data(fake.receive(conn.data_to_send()))
    >>> conn.next_event()  # doctest: +ELLIPSIS
    SenderAccepted(sender='me@example.com', ...)
    >>> conn.next_event()  # doctest: +ELLIPSIS
    RecipientRefused(recipient='nobody@example.com', reply=Reply(code=550, ...))

    Each call to :meth:`receive` takes whatever the client wrote (any split, pipelined
    commands included) and returns every reply it calls for, concatenated.

    :param hostname: the server's name, in the greeting and the first line of EHLO.
    :param keywords: the EHLO keywords announced, with their parameters
        (``"SIZE 1000000"``). Announce ``"STARTTLS"`` to accept STARTTLS.
    :param greeting: the greeting's bytes; ``b"554 no service\\r\\n"`` tests a refusal.
    :param lmtp: speak LMTP (RFC 2033): LHLO instead of EHLO, and one reply per accepted
        recipient after each message.

    Unless a rule says otherwise it answers as a plain server would: EHLO (LHLO) with the
    keywords, HELO; MAIL, RCPT, DATA and BDAT with the sequence checked (``503`` out of
    order, ``554`` for DATA without an accepted recipient); RSET and NOOP ``250``, VRFY
    ``252``, HELP ``214``, QUIT ``221``; STARTTLS ``220`` when announced; anything else,
    AUTH included, ``502``. Script a one-step AUTH (a mechanism with an initial response,
    such as PLAIN) with ``reply_to("AUTH", b"235 2.7.0 ok\\r\\n")`` or ``b"535 ..."``.

    The rules (:meth:`refuse_sender`, :meth:`refuse_recipient`, :meth:`refuse_delivery`,
    :meth:`reply_to`, :meth:`close_after`, :meth:`stall_after`) name commands by their verb
    (``"MAIL"``, ``"RCPT"``, ``"DATA"``, ...) or :data:`MESSAGE` for the end of a message's
    content. What was received is in :attr:`commands` and :attr:`messages`. One object
    serves one session at a time; :meth:`connect` starts the next.
    """

    # The state of the current session, set by _reset_session.
    _buffer: bytearray
    _scanned: int
    _refusing_service: bool
    _greeted: bool
    _in_data: bool
    _in_chunk: bool
    _chunk_remaining: int
    _chunk_last: bool
    _closed: bool
    _stalled: bool
    _tls_pending: bool
    _tls_active: bool
    _sender: str | None
    _recipients: list[str]
    _content: bytearray
    _chunk_failed: bool

    def __init__(
        self,
        *,
        hostname: str = "fake.example",
        keywords: Iterable[str] = (
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
            "CHUNKING",
            "SIZE 10485760",
            "ENHANCEDSTATUSCODES",
            "DSN",
        ),
        greeting: bytes | None = None,
        lmtp: bool = False,
    ) -> None:
        self.hostname = hostname
        self.keywords = tuple(keywords)
        self.greeting = greeting if greeting is not None else _reply(220, f"{hostname} ESMTP")
        self.lmtp = lmtp
        #: Every command line received, decoded as UTF-8, in order, over every session.
        self.commands: list[str] = []
        #: Every message whose content arrived within a transaction, in order, whatever the
        #: reply to it (see :meth:`refuse_delivery` and :meth:`reply_to` for refusing one).
        self.messages: list[ReceivedMessage] = []
        self._refused_senders: dict[str | None, bytes] = {}
        self._refused_recipients: dict[str, bytes] = {}
        self._refused_deliveries: dict[str, bytes] = {}
        self._replies: dict[str, bytes] = {}
        self._close_after: dict[str, bytes] = {}
        self._stall_after: set[str] = set()
        self._reset_session()

    # -- rules ---------------------------------------------------------------------------

    def refuse_sender(
        self, address: str | None = None, *, code: int = 550, text: str = "5.7.1 sender refused"
    ) -> None:
        """Refuse ``MAIL FROM:<address>`` with *code* (any sender when *address* is None).

        For example:

        >>> fake = FakeServer()
        >>> fake.refuse_sender(code=451, text="4.3.0 try again later")
        >>> fake.receive(b"HELO client.example\\r\\nMAIL FROM:<me@example.com>\\r\\n")
        b'250 fake.example\\r\\n451 4.3.0 try again later\\r\\n'
        """
        self._refused_senders[address] = _reply(code, text)

    def refuse_recipient(
        self, address: str, *, code: int = 550, text: str = "5.1.1 no such user"
    ) -> None:
        """Refuse ``RCPT TO:<address>`` with *code*; other recipients are accepted.

        For example:

        >>> fake = FakeServer()
        >>> fake.refuse_recipient("nobody@example.com", code=450, text="4.2.1 mailbox busy")
        >>> fake.receive(b"HELO client.example\\r\\nMAIL FROM:<me@example.com>\\r\\n")
        b'250 fake.example\\r\\n250 2.1.0 sender ok\\r\\n'
        >>> fake.receive(b"RCPT TO:<you@example.com>\\r\\nRCPT TO:<nobody@example.com>\\r\\n")
        b'250 2.1.5 recipient ok\\r\\n450 4.2.1 mailbox busy\\r\\n'
        """
        self._refused_recipients[address] = _reply(code, text)

    def refuse_delivery(
        self, address: str, *, code: int = 550, text: str = "5.2.2 mailbox full"
    ) -> None:
        """LMTP: accept *address* at RCPT but refuse the message for it after the content.

        For example:

        >>> fake = FakeServer(lmtp=True, keywords=["PIPELINING"])
        >>> fake.refuse_delivery("full@example.com", code=452, text="4.2.2 over quota")
        >>> fake.receive(b"LHLO client.example\\r\\nMAIL FROM:<me@example.com>\\r\\n")
        b'250-fake.example\\r\\n250 PIPELINING\\r\\n250 2.1.0 sender ok\\r\\n'
        >>> fake.receive(b"RCPT TO:<you@example.com>\\r\\nRCPT TO:<full@example.com>\\r\\n")
        b'250 2.1.5 recipient ok\\r\\n250 2.1.5 recipient ok\\r\\n'
        >>> fake.receive(b"DATA\\r\\n")
        b'354 start mail input; end with <CRLF>.<CRLF>\\r\\n'
        >>> fake.receive(b"Hello\\r\\n.\\r\\n")  # one reply for each recipient
        b'250 2.1.5 delivered to you@example.com\\r\\n452 4.2.2 over quota\\r\\n'
        """
        self._refused_deliveries[address] = _reply(code, text)

    def reply_to(self, command: str, reply: bytes) -> None:
        """Answer every *command* with *reply*, exactly these bytes, instead of the usual
        reply. The bytes are not checked, so hostile replies can be tested too; a positive
        reply still has its effect (a ``250`` to RCPT accepts the recipient). Here the
        message's content is refused:

        >>> from smtp_proto.testing import MESSAGE
        >>> fake = FakeServer()
        >>> fake.reply_to(MESSAGE, b"554 5.7.1 message refused as spam\\r\\n")
        >>> fake.receive(b"HELO client.example\\r\\nMAIL FROM:<me@example.com>\\r\\n")
        b'250 fake.example\\r\\n250 2.1.0 sender ok\\r\\n'
        >>> fake.receive(b"RCPT TO:<you@example.com>\\r\\nDATA\\r\\n")
        b'250 2.1.5 recipient ok\\r\\n354 start mail input; end with <CRLF>.<CRLF>\\r\\n'
        >>> fake.receive(b"Buy now!\\r\\n.\\r\\n")
        b'554 5.7.1 message refused as spam\\r\\n'
        """
        self._replies[command.upper()] = reply

    def close_after(self, command: str, *, reply: bytes | None = _CLOSING) -> None:
        """When *command* arrives, answer it with *reply* (by default a ``421``) and close
        the connection; with *reply* None, close without a word (after :data:`MESSAGE`, that
        leaves the client not knowing whether its message was accepted):

        >>> fake = FakeServer()
        >>> fake.close_after("RCPT")
        >>> fake.receive(b"HELO client.example\\r\\nMAIL FROM:<me@example.com>\\r\\n")
        b'250 fake.example\\r\\n250 2.1.0 sender ok\\r\\n'
        >>> fake.receive(b"RCPT TO:<you@example.com>\\r\\n")
        b'421 4.3.2 service shutting down, closing transmission channel\\r\\n'
        >>> fake.closed
        True
        """
        self._close_after[command.upper()] = reply or b""

    def stall_after(self, command: str) -> None:
        """When *command* arrives, stop answering: nothing more is ever sent, so the client
        must time out. On loopback the connection stays open until the client closes it:

        >>> fake = FakeServer()
        >>> fake.stall_after("DATA")
        >>> fake.receive(b"HELO client.example\\r\\nMAIL FROM:<me@example.com>\\r\\n")
        b'250 fake.example\\r\\n250 2.1.0 sender ok\\r\\n'
        >>> fake.receive(b"RCPT TO:<you@example.com>\\r\\nDATA\\r\\n")  # no reply to DATA
        b'250 2.1.5 recipient ok\\r\\n'
        >>> fake.stalled
        True
        """
        self._stall_after.add(command.upper())

    # -- the session ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the server has ended the session (after QUIT, a ``421`` or a close rule):
        it answers nothing more, and on loopback the connection is closed."""
        return self._closed

    @property
    def stalled(self) -> bool:
        """Whether a :meth:`stall_after` rule has fired in this session."""
        return self._stalled

    @property
    def tls_pending(self) -> bool:
        """Whether STARTTLS was just accepted: the TLS handshake comes next. In memory the
        handshake is imagined (the next bytes are taken as what TLS decrypted); on loopback
        the socket is wrapped first."""
        return self._tls_pending

    @property
    def tls_active(self) -> bool:
        """Whether the session went through STARTTLS."""
        return self._tls_active

    def connect(self) -> bytes:
        """Start a new session, as when a client connects, and return the greeting.

        Rules and records are kept; the state of the previous session is forgotten.
        """
        self._reset_session()
        # RFC 5321 section 3.1: after a 554 greeting the server waits for QUIT, and answers
        # anything else with 503.
        self._refusing_service = not self.greeting.startswith(b"220")
        return self.greeting

    def receive(self, data: bytes) -> bytes:
        """Take bytes the client wrote; return every reply they call for (``b""`` if none).

        Bytes received after the session ended, or after a stall, are ignored.
        """
        if self._tls_pending:
            # The handshake happened (on loopback) or is imagined (in memory): from here on
            # the session starts again, as RFC 3207 section 4.2 requires.
            self._tls_pending = False
            self._tls_active = True
        self._buffer += data
        replies = b""
        while not (self._closed or self._stalled or self._tls_pending):
            if self._in_data:
                if not self._read_data():
                    break
                replies += self._end_of_message()
            elif self._in_chunk:
                if not self._read_chunk():
                    break
                replies += self._answer_chunk()
            else:
                taken = self._take_until(b"\r\n")
                if taken is None:
                    break
                line = taken.decode("utf-8", "surrogateescape")
                self.commands.append(line)
                replies += self._answer(line)
        if self._closed or self._stalled or self._tls_pending:
            # RFC 3207 section 5: plain-text bytes that came with STARTTLS are not carried
            # into the TLS session; nor is anything sent to a server that stopped listening.
            self._buffer.clear()
            self._scanned = 0
        return replies

    # -- internals ---------------------------------------------------------------------

    def _reset_session(self) -> None:
        # Received bytes not yet understood, and how far they are known to hold no end of
        # what is awaited (a CRLF, or the final dot), so no search starts over.
        self._buffer = bytearray()
        self._scanned = 0
        self._refusing_service = False
        self._greeted = False
        self._in_data = False
        self._in_chunk = False
        self._chunk_remaining = 0
        self._chunk_last = False
        self._closed = False
        self._stalled = False
        self._tls_pending = False
        self._tls_active = False
        self._reset_transaction()

    def _reset_transaction(self) -> None:
        self._sender = None
        self._recipients = []
        self._content = bytearray()
        self._chunk_failed = False

    def _answer(self, line: str) -> bytes:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if verb == "BDAT":
            # The chunk comes first and the reply after it, so the rules apply then.
            return self._start_chunk(argument)
        return self._apply_rules(verb, argument, lambda: self._default_reply(verb, argument))

    def _apply_rules(self, verb: str, argument: str, default: Callable[[], bytes]) -> bytes:
        # The rules in order of strength: going silent, closing, a scripted reply, then the
        # usual reply (which applies the refusal rules).
        if verb in self._stall_after:
            self._stalled = True
            return b""
        closing = self._close_after.get(verb)
        if closing is not None:
            self._closed = True
            return closing
        scripted = self._replies.get(verb)
        reply = default() if scripted is None else scripted
        self._after_reply(verb, argument, reply)
        return reply

    def _default_reply(self, verb: str, argument: str) -> bytes:
        if verb == "QUIT":
            self._closed = True
            return _reply(221, "2.0.0 bye")
        if self._refusing_service:
            return _reply(503, "5.5.1 no service here, only QUIT")
        hellos = ("LHLO",) if self.lmtp else ("EHLO", "HELO")
        if verb in hellos:
            return self._hello_reply(verb)
        if verb in ("EHLO", "HELO", "LHLO"):
            return _reply(500, f"5.5.1 say {hellos[0]}")
        if verb in ("RSET", "NOOP"):
            return _reply(250, "2.0.0 ok")
        if verb == "VRFY":
            return _reply(252, "2.1.5 cannot verify, but will try")
        if verb == "HELP":
            return _reply(214, "2.0.0 this is a fake server")
        if verb == "STARTTLS":
            return self._starttls_reply()
        if verb in ("MAIL", "RCPT", "DATA"):
            return self._transaction_reply(verb, argument)
        return _reply(502, "5.5.1 command not implemented")

    def _hello_reply(self, verb: str) -> bytes:
        lines = [self.hostname]
        if verb != "HELO":
            # RFC 3207 section 4.2: STARTTLS is not announced once TLS is active.
            lines += [k for k in self.keywords if not (self._tls_active and k == "STARTTLS")]
        last = len(lines) - 1
        return b"".join(
            f"250{' ' if i == last else '-'}{text}\r\n".encode() for i, text in enumerate(lines)
        )

    def _starttls_reply(self) -> bytes:
        if "STARTTLS" not in self.keywords:
            return _reply(502, "5.5.1 STARTTLS not offered")
        if self._tls_active:
            return _reply(503, "5.5.1 TLS already active")
        return _reply(220, "2.0.0 ready to start TLS")

    def _transaction_reply(self, verb: str, argument: str) -> bytes:
        if not self._greeted:
            return _reply(503, "5.5.1 say hello first")
        address = _address(argument)
        if verb == "MAIL":
            if self._sender is not None:
                return _reply(503, "5.5.1 nested MAIL command")
            refusal = self._refused_senders.get(address, self._refused_senders.get(None))
            return refusal or _reply(250, "2.1.0 sender ok")
        if self._sender is None:
            return _reply(503, "5.5.1 need MAIL first")
        if verb == "RCPT":
            return self._refused_recipients.get(address) or _reply(250, "2.1.5 recipient ok")
        if not self._recipients:
            return _reply(554, "5.5.1 no valid recipients")
        return _reply(354, "start mail input; end with <CRLF>.<CRLF>")

    def _after_reply(self, verb: str, argument: str, reply: bytes) -> None:
        # What a reply does to the session, judged by its class as a client would, so that
        # a scripted reply has the effect its code says.
        positive = reply[:1] == b"2"
        if reply[:3] == b"421":
            self._closed = True
        elif verb in ("EHLO", "HELO", "LHLO", "RSET") and positive:
            self._greeted = self._greeted or verb != "RSET"
            self._reset_transaction()
        elif verb == "MAIL" and positive:
            self._reset_transaction()
            self._sender = _address(argument)
        elif verb == "RCPT" and positive:
            self._recipients.append(_address(argument))
        elif verb == "DATA" and reply[:1] == b"3":
            self._in_data = True
            # A CRLF in front lets an empty message, a lone ".\r\n", end like any other.
            self._buffer[:0] = b"\r\n"
            self._scanned = 0
        elif verb == "STARTTLS" and positive:
            # RFC 3207 section 4.2: the session starts again after the handshake.
            self._tls_pending = True
            self._greeted = False
            self._reset_transaction()

    def _read_data(self) -> bool:
        # Takes the content up to the final dot, if it has all arrived, and undoes
        # dot-stuffing (RFC 5321 section 4.5.2).
        taken = self._take_until(b"\r\n.\r\n")
        if taken is None:
            return False
        # What was taken is the CRLF put in front, then the content without its last CRLF.
        lines = (taken[2:] + b"\r\n" if taken else b"").split(b"\r\n")
        self._content = bytearray(
            b"\r\n".join(line[1:] if line[:1] == b"." else line for line in lines)
        )
        self._in_data = False
        return True

    def _take_until(self, end: bytes) -> bytes | None:
        # The bytes before *end*, taken from the buffer with it; None if *end* has not
        # arrived. The search resumes where the last one stopped, so content that arrives
        # in many pieces costs time in proportion to its length.
        index = self._buffer.find(end, self._scanned)
        if index < 0:
            self._scanned = max(0, len(self._buffer) - len(end) + 1)
            return None
        taken = bytes(self._buffer[:index])
        del self._buffer[: index + len(end)]
        self._scanned = 0
        return taken

    def _start_chunk(self, argument: str) -> bytes:
        match = _BDAT_ARGUMENT.fullmatch(argument)
        if match is None:
            return _reply(501, "5.5.4 syntax: BDAT size [LAST]")
        self._in_chunk = True
        self._chunk_remaining = int(match[1])
        self._chunk_last = match[2] is not None
        return b""

    def _read_chunk(self) -> bool:
        # Takes a BDAT chunk once all its octets have arrived (RFC 3030 section 2).
        if len(self._buffer) < self._chunk_remaining:
            return False
        self._content += self._buffer[: self._chunk_remaining]
        del self._buffer[: self._chunk_remaining]
        self._in_chunk = False
        return True

    def _answer_chunk(self) -> bytes:
        if self._chunk_last:
            return self._end_of_message()
        return self._apply_rules("BDAT", "", self._default_chunk_reply)

    def _default_chunk_reply(self) -> bytes:
        # RFC 3030 section 2: once a chunk failed, the following ones fail too.
        if not self._recipients or self._chunk_failed:
            self._chunk_failed = True
            return _reply(503, "5.5.1 no transaction for this chunk")
        return _reply(250, "2.0.0 chunk received")

    def _end_of_message(self) -> bytes:
        if self._recipients and not self._chunk_failed:
            self.messages.append(
                ReceivedMessage(
                    sender=self._sender or "",
                    recipients=tuple(self._recipients),
                    content=bytes(self._content),
                )
            )
        reply = self._apply_rules(MESSAGE, "", self._message_reply)
        self._reset_transaction()
        return reply

    def _message_reply(self) -> bytes:
        if not self._recipients or self._chunk_failed:
            return _reply(503, "5.5.1 no transaction for this content")
        if not self.lmtp:
            return _reply(250, "2.0.0 message queued")
        # RFC 2033 section 4.2: one reply per accepted recipient, in RCPT order.
        return b"".join(
            self._refused_deliveries.get(r) or _reply(250, f"2.1.5 delivered to {r}")
            for r in self._recipients
        )


def _address(argument: str) -> str:
    # The path of "FROM:<a@b> SIZE=1" or "TO:<a@b>"; "" if there is none.
    path = _PATH.match(argument)
    return path[1] if path is not None else ""
