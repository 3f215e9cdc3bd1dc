"""The same scenarios through all three transports: blocking, asyncio and trio.

Each scenario is written once, as a generator that yields the operations it wants (send a
message, NOOP, look at the EHLO features) and receives their results, or has their exception
thrown in at the ``yield``. The fixture ``run`` is one small adapter per transport: it opens
that transport's ``Client`` with the options given, plays the scenario against it and returns
the scenario's value, hiding whether that took a plain call, ``asyncio.run`` or ``trio.run``.
So every test below is one specification, checked three times.

The honest server is the private Postfix of ``postfix.py``: STARTTLS with a certificate from
a throwaway CA, PIPELINING, CHUNKING, SMTPUTF8, 8BITMIME, DSN and SIZE, a maildir to read
back, and a mail log to check what it thought of the client. The hostile ones are tiny
scripted servers on 127.0.0.1, each serving one connection in a thread and stopping by
itself.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeAlias, TypeVar

import pytest
import trio
import trustme

# The fixture "postfix": pytest finds it by name in this module's namespace.
from postfix import (  # noqa: F401
    DEFERRED_RECIPIENT,
    MAIL_DOMAIN,
    MESSAGE_SIZE_LIMIT,
    REFUSED_RECIPIENT,
    PostfixServer,
    postfix_server,
)

from smtp_proto import (
    EhloFeatures,
    MessageOutcome,
    Recipient,
    RemoteProtocolError,
    Reply,
    ServerCapabilityError,
    Timeouts,
    TlsPolicy,
    TransactionResult,
)

if TYPE_CHECKING:
    # mypy reads the repository, where the transports are the top-level `transports/` folder;
    # installed, they are smtp_proto.transports, through an import hook mypy cannot follow.
    import transports.asyncio as asyncio_transport
    import transports.sync as sync_transport
    import transports.trio as trio_transport
else:
    from smtp_proto.transports import asyncio as asyncio_transport
    from smtp_proto.transports import sync as sync_transport
    from smtp_proto.transports import trio as trio_transport

_T = TypeVar("_T")

SENDER = "sender@client.test"
ALICE = f"alice@{MAIL_DOMAIN}"
BOB = f"bob@{MAIL_DOMAIN}"
# An internationalised local part: only an SMTPUTF8 session can carry it.
UTF8_RECIPIENT = f"jos\N{LATIN SMALL LETTER E WITH ACUTE}@{MAIL_DOMAIN}"
USERNAME = "alice"
PASSWORD = "correct horse battery staple"

# Each reply from the local Postfix comes in milliseconds; these only stop a hang.
POSTFIX_TIMEOUTS = Timeouts(
    greeting=10,
    mail=10,
    rcpt=10,
    data_initiation=10,
    data_block=10,
    data_termination=10,
    other=10,
)
# How long a whole scenario may take on an event loop, on top of the timeouts above.
PATIENCE = 30.0
# The most operations one scenario may yield: scenarios are bounded loops too.
MAX_OPERATIONS = 100
# How long a scripted server waits for the client before giving up (and so stopping).
SERVER_PATIENCE = 5.0
# How long to wait for Postfix to write something into its log, and how often to look.
LOG_PATIENCE = 10.0
POLL_INTERVAL = 0.05


# -- scenarios: generators of operations ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Send:
    """Send one message; answered with the TransactionResult (or its exception)."""

    sender: str
    recipients: Sequence[str | Recipient]
    body: bytes
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SendMany:
    """Send a batch with send_messages; answered with the list of TransactionResult."""

    messages: Sequence[tuple[str, Sequence[str], bytes]]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Noop:
    """Send NOOP; answered with the Reply."""


@dataclasses.dataclass(frozen=True)
class Features:
    """Look at what the server announced in its last EHLO; answered with EhloFeatures."""


Operation: TypeAlias = "Send | SendMany | Noop | Features"
#: A scenario yields operations, is sent their results (or has their exceptions thrown in)
#: and returns whatever the test wants to check once the session is over.
Scenario: TypeAlias = Generator[Operation, object, _T]


def send(
    sender: str, recipients: Sequence[str | Recipient], body: bytes, **options: Any
) -> Scenario[TransactionResult]:
    result = yield Send(sender, recipients, body, options)
    assert isinstance(result, TransactionResult)
    return result


def send_many(
    messages: Sequence[tuple[str, Sequence[str], bytes]], **options: Any
) -> Scenario[list[TransactionResult]]:
    results = yield SendMany(messages, options)
    assert isinstance(results, list)
    return results


def noop() -> Scenario[Reply]:
    reply = yield Noop()
    assert isinstance(reply, Reply)
    return reply


def features() -> Scenario[EhloFeatures]:
    announced = yield Features()
    assert isinstance(announced, EhloFeatures)
    return announced


# -- the adapters: one scenario, three transports ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Finished(Generic[_T]):
    value: _T


def _advance(
    scenario: Scenario[_T], value: object, error: Exception | None
) -> Operation | _Finished[_T]:
    """The scenario's next operation, given the outcome of the last one; or its value."""
    try:
        if error is not None:
            return scenario.throw(error)
        return scenario.send(value)
    except StopIteration as stop:
        finished: _Finished[_T] = _Finished(stop.value)
        return finished


def _perform(client: sync_transport.Client, operation: Operation) -> object:
    if isinstance(operation, Send):
        return client.send_message(
            operation.sender, operation.recipients, operation.body, **operation.options
        )
    if isinstance(operation, SendMany):
        return client.send_messages(operation.messages, **operation.options)
    if isinstance(operation, Noop):
        return client.noop()
    return client.features


async def _perform_async(
    client: asyncio_transport.Client | trio_transport.Client, operation: Operation
) -> object:
    if isinstance(operation, Send):
        return await client.send_message(
            operation.sender, operation.recipients, operation.body, **operation.options
        )
    if isinstance(operation, SendMany):
        return await client.send_messages(operation.messages, **operation.options)
    if isinstance(operation, Noop):
        return await client.noop()
    return client.features


def run_sync(scenario: Callable[[], Scenario[_T]], /, host: str, port: int, **options: Any) -> _T:
    with sync_transport.Client(host, port, **options) as client:
        steps = scenario()
        value: object = None
        error: Exception | None = None
        for _ in range(MAX_OPERATIONS):
            step = _advance(steps, value, error)
            if isinstance(step, _Finished):
                return step.value
            value, error = None, None
            try:
                value = _perform(client, step)
            except Exception as exc:
                error = exc
    raise AssertionError(f"the scenario did not end within {MAX_OPERATIONS} operations")


async def _run_async(
    client: asyncio_transport.Client | trio_transport.Client,
    scenario: Callable[[], Scenario[_T]],
) -> _T:
    # The asyncio and trio clients share their API, so one loop serves both.
    async with client:
        steps = scenario()
        value: object = None
        error: Exception | None = None
        for _ in range(MAX_OPERATIONS):
            step = _advance(steps, value, error)
            if isinstance(step, _Finished):
                return step.value
            value, error = None, None
            try:
                value = await _perform_async(client, step)
            except Exception as exc:
                error = exc
    raise AssertionError(f"the scenario did not end within {MAX_OPERATIONS} operations")


def run_asyncio(
    scenario: Callable[[], Scenario[_T]], /, host: str, port: int, **options: Any
) -> _T:
    async def main() -> _T:
        client = asyncio_transport.Client(host, port, **options)
        return await asyncio.wait_for(_run_async(client, scenario), PATIENCE)

    return asyncio.run(main())


def run_trio(scenario: Callable[[], Scenario[_T]], /, host: str, port: int, **options: Any) -> _T:
    async def main() -> _T:
        with trio.fail_after(PATIENCE):
            return await _run_async(trio_transport.Client(host, port, **options), scenario)

    return trio.run(main)


class Run(Protocol):
    """Open a client of one transport with *options*, play *scenario* on it, close it, and
    return the scenario's value; exceptions (from connecting, or the scenario's own)
    propagate."""

    def __call__(
        self, scenario: Callable[[], Scenario[_T]], /, host: str, port: int, **options: Any
    ) -> _T: ...


RUNNERS: dict[str, Run] = {"sync": run_sync, "asyncio": run_asyncio, "trio": run_trio}


@pytest.fixture(params=list(RUNNERS))
def run(request: pytest.FixtureRequest) -> Run:
    runner: Run = RUNNERS[request.param]
    return runner


# -- Postfix: options, messages, the mail log -------------------------------------------------


def postfix_options(postfix: PostfixServer, **options: Any) -> dict[str, Any]:
    """A client's options for the private Postfix: STARTTLS required, the certificate
    verified against the test CA for the name "localhost"."""
    return {
        "host": "localhost",
        "port": postfix.port,
        "tls": TlsPolicy.REQUIRED,
        "ssl_context": postfix.client_context(),
        "local_hostname": "client.test",
        "timeouts": POSTFIX_TIMEOUTS,
        **options,
    }


def message(subject: str, body: str = "Hello.\r\n") -> bytes:
    return f"From: {SENDER}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\n{body}".encode()


def stored(sent: bytes) -> bytes:
    # Postfix stores lines with LF endings, after headers of its own (see messages()).
    return sent.replace(b"\r\n", b"\n")


def delivered_to(stored_message: bytes) -> str:
    # The recipient Postfix delivered this copy to: the Delivered-To header it put first.
    found = re.search(rb"^Delivered-To: (.*)$", stored_message, re.MULTILINE)
    assert found is not None, stored_message[:500]
    return found.group(1).decode()


def queue_id(result: TransactionResult) -> str:
    # Postfix answers the end of a message with "250 2.0.0 Ok: queued as 4ABCDEF".
    assert result.message_reply is not None
    found = re.search(r"queued as (\w+)", result.message_reply.text)
    assert found is not None, result.message_reply
    return found.group(1)


_CONNECT = re.compile(r" postfix-test/smtpd\[\d+\]: connect from ")
_DISCONNECT = re.compile(r" postfix-test/smtpd\[\d+\]: disconnect from .*$", re.MULTILINE)


def _sessions_over(log: str) -> bool:
    return len(_CONNECT.findall(log)) == len(_DISCONNECT.findall(log))


@dataclasses.dataclass
class MailLog:
    """The part of the Postfix log written since the test began."""

    postfix: PostfixServer
    start: int

    def text(self) -> str:
        return self.postfix.log()[self.start :]

    def wait_for(self, done: Callable[[str], bool], what: str) -> str:
        """The log since the test began, once *done* says it holds what is awaited. Postfix
        writes its log asynchronously, after the replies the client saw."""
        deadline = time.monotonic() + LOG_PATIENCE
        while True:
            text = self.text()
            if done(text):
                return text
            if time.monotonic() >= deadline:
                pytest.fail(f"Postfix never logged {what}; its log:\n{text}", pytrace=False)
            time.sleep(POLL_INTERVAL)

    def sessions(self) -> list[str]:
        """The "disconnect from" line of every session since the test began, once every
        session has ended (each line counts the commands the client sent)."""
        text = self.wait_for(
            lambda text: bool(_DISCONNECT.search(text)) and _sessions_over(text),
            "the end of the session",
        )
        return _DISCONNECT.findall(text)

    def wait_until_removed(self, queue_ids: Sequence[str]) -> None:
        """Wait until Postfix is done with these messages: every copy delivered."""
        self.wait_for(
            lambda text: all(f": {ident}: removed" in text for ident in queue_ids),
            f"the removal of {', '.join(queue_ids)} from the queue",
        )


@pytest.fixture
def mail_log(postfix: PostfixServer) -> Iterator[MailLog]:
    """An empty maildir, and the mail log from a moment when no session is open, so that
    what the log says from here on is this test's."""
    MailLog(postfix, 0).wait_for(_sessions_over, "the end of every earlier session")
    postfix.clear()
    yield MailLog(postfix, len(postfix.log()))
    postfix.clear()


# -- 1. STARTTLS with a verified certificate, and recipients answered one by one --------------


def test_mixed_recipients_over_verified_starttls(
    run: Run, postfix: PostfixServer, mail_log: MailLog
) -> None:
    content = message("mixed recipients")
    recipients = [ALICE, REFUSED_RECIPIENT, BOB, DEFERRED_RECIPIENT]

    def scenario() -> Scenario[tuple[EhloFeatures, TransactionResult]]:
        announced = yield from features()
        result = yield from send(SENDER, recipients, content)
        return announced, result

    announced, result = run(scenario, **postfix_options(postfix))

    # The features are those of the EHLO said inside TLS: STARTTLS is no longer offered.
    assert not announced.starttls
    assert announced.chunking
    assert announced.pipelining

    assert result.outcome is MessageOutcome.ACCEPTED
    assert result.sender_reply is not None
    assert result.sender_reply.code == 250
    assert result.message_reply is not None
    assert result.message_reply.code == 250
    alice, refused, bob, deferred = result.recipients
    assert [r.address for r in result.recipients] == recipients
    for accepted in (alice, bob):
        assert accepted.accepted
        assert accepted.delivered
        assert not accepted.transient
        assert accepted.reply is not None
        assert accepted.reply.code == 250
    assert not refused.accepted
    assert not refused.delivered
    assert refused.reply is not None
    assert refused.reply.code == 550
    assert not refused.transient
    assert not deferred.accepted
    assert not deferred.delivered
    assert deferred.reply is not None
    assert deferred.reply.code == 450
    assert deferred.transient
    assert result.accepted_recipients == (alice, bob)
    assert result.refused_recipients == (refused, deferred)

    # Once Postfix is done with the message, the maildir holds exactly one copy for each
    # accepted recipient and none for the others, received over TLS.
    mail_log.wait_until_removed([queue_id(result)])
    delivered = postfix.messages()
    assert sorted(delivered_to(copy) for copy in delivered) == [ALICE, BOB]
    for copy in delivered:
        assert copy.endswith(stored(content))
        assert b"with ESMTPS" in copy  # Postfix's Received: header, for ESMTP over TLS


# -- 2. PIPELINING and CHUNKING ---------------------------------------------------------------


def _transactions(debug: Sequence[str]) -> list[list[str]]:
    """The debug lines of each transaction, from its MAIL line up to the next MAIL."""
    starts = [i for i, line in enumerate(debug) if line.startswith("C: MAIL FROM:")]
    return [list(debug[a:b]) for a, b in zip(starts, [*starts[1:], len(debug)], strict=True)]


def _written_before_first_reply(lines: Sequence[str]) -> list[str]:
    # What the client wrote before the server's first reply to the transaction: the words
    # after "C:" up to the first "S:" line.
    first_reply = next(i for i, line in enumerate(lines) if line.startswith("S: "))
    assert all(line.startswith("C: ") for line in lines[:first_reply])
    return [line.split()[1] for line in lines[:first_reply]]


def test_envelope_is_pipelined_and_content_chunked(
    run: Run, postfix: PostfixServer, mail_log: MailLog
) -> None:
    first, second = message("waits for the envelope"), message("goes with the envelope")
    debug: list[str] = []

    def scenario() -> Scenario[list[TransactionResult]]:
        waited = yield from send(SENDER, [ALICE, BOB], first)
        # Small enough to go out with the envelope, before any reply (RFC 3030 allows it).
        eager = yield from send(SENDER, [ALICE, BOB], second, pipeline_content_up_to=4096)
        return [waited, eager]

    results = run(scenario, **postfix_options(postfix, debug=debug.append))
    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * 2

    assert not [line for line in debug if line.startswith("C: DATA")]
    first_lines, second_lines = _transactions(debug)
    # MAIL and both RCPTs were written before the first of their replies was read; the
    # content followed once the recipients had been accepted...
    assert _written_before_first_reply(first_lines) == ["MAIL", "RCPT", "RCPT"]
    assert [line.split()[:2] for line in first_lines[3:7]] == [
        ["S:", "250"],
        ["S:", "250"],
        ["S:", "250"],
        ["C:", "BDAT"],
    ]
    assert first_lines[6] == f"C: BDAT {len(first)} LAST"
    # ... or, when asked for, with the envelope.
    assert _written_before_first_reply(second_lines)[:4] == ["MAIL", "RCPT", "RCPT", "BDAT"]
    assert f"C: BDAT {len(second)} LAST" in second_lines

    # Postfix saw BDAT and no DATA, and nothing it calls improper pipelining.
    [session] = mail_log.sessions()
    assert " mail=2 rcpt=4 bdat=2 " in session
    assert " data=" not in session
    assert "improper command pipelining" not in mail_log.text()

    mail_log.wait_until_removed([queue_id(r) for r in results])
    delivered = postfix.messages()
    assert len(delivered) == 4
    for content in (first, second):
        copies = [copy for copy in delivered if copy.endswith(stored(content))]
        assert sorted(delivered_to(copy) for copy in copies) == [ALICE, BOB]


# -- 3. content that needs care ---------------------------------------------------------------


def test_dots_bare_line_feeds_8bit_and_utf8_addresses_arrive_intact(
    run: Run, postfix: PostfixServer, mail_log: MailLog
) -> None:
    content = (
        f"From: {SENDER}\r\n"
        f"To: {UTF8_RECIPIENT}\r\n"
        "Subject: caf\N{LATIN SMALL LETTER E WITH ACUTE} \N{HOT BEVERAGE}\r\n"
        "\r\n"
        ".a line that starts with a dot\r\n"
        "..two dots stay two\n"
        ".\n"
        "the line above is a lone dot, and these lines end in a bare LF\n"
        ".\r\n"
        "8-bit: \N{LATIN SMALL LETTER U WITH DIAERESIS}ber \u65e5\u672c\u8a9e\r\n"
        "..\r\n"
        "the end\r\n"
    ).encode()
    debug: list[str] = []

    result = run(
        functools.partial(send, SENDER, [UTF8_RECIPIENT], content),
        **postfix_options(postfix, debug=debug.append),
    )

    assert result.outcome is MessageOutcome.ACCEPTED
    [recipient] = result.recipients
    assert recipient.address == UTF8_RECIPIENT
    assert recipient.delivered
    [mail_line] = [line for line in debug if line.startswith("C: MAIL FROM:")]
    assert "SMTPUTF8" in mail_line.split()
    assert "BODY=8BITMIME" in mail_line.split()
    assert any(line.startswith(f"C: RCPT TO:<{UTF8_RECIPIENT}>") for line in debug)

    mail_log.wait_until_removed([queue_id(result)])
    [delivered] = postfix.messages()
    # Every line end became CRLF on the wire (stored as LF), and nothing else changed: no
    # dot was added or taken away, and every octet of UTF-8 is there.
    assert delivered.endswith(content.replace(b"\r\n", b"\n"))
    assert delivered_to(delivered) == UTF8_RECIPIENT
    assert b"with UTF8SMTPS" in delivered  # Postfix's Received: SMTPUTF8 over TLS


# -- 4. DSN parameters ------------------------------------------------------------------------


def test_dsn_parameters_are_honoured(run: Run, postfix: PostfixServer, mail_log: MailLog) -> None:
    # The sender is in the test domain, so Postfix's success notification lands in the
    # maildir too, and shows what it made of the parameters.
    sender = f"dsn-sender@{MAIL_DOMAIN}"
    original = f"alice.original@{MAIL_DOMAIN}"
    envid = "envelope+id=42"  # "+" and "=" must be xtext-encoded on the wire
    content = message("please confirm", "This body is not returned with RET=HDRS.\r\n")
    recipient = Recipient(
        address=ALICE, notify=frozenset({"SUCCESS", "FAILURE"}), original_recipient=original
    )
    debug: list[str] = []

    result = run(
        functools.partial(send, sender, [recipient], content, ret="HDRS", envid=envid),
        **postfix_options(postfix, debug=debug.append),
    )

    assert result.outcome is MessageOutcome.ACCEPTED
    assert result.sender_reply is not None
    assert result.sender_reply.code == 250
    [accepted] = result.recipients
    assert accepted.reply is not None
    assert accepted.reply.code == 250
    [mail_line] = [line for line in debug if line.startswith("C: MAIL FROM:")]
    assert "RET=HDRS" in mail_line.split()
    assert "ENVID=envelope+2Bid+3D42" in mail_line.split()
    [rcpt_line] = [line for line in debug if line.startswith("C: RCPT TO:")]
    [notify] = [word for word in rcpt_line.split() if word.startswith("NOTIFY=")]
    assert sorted(notify.removeprefix("NOTIFY=").split(",")) == ["FAILURE", "SUCCESS"]
    assert f"ORCPT=rfc822;{original}" in rcpt_line.split()

    # The message, and the notification of its delivery, built from the DSN parameters.
    delivered = postfix.wait_for_messages(2)
    [copy] = [m for m in delivered if delivered_to(m) == ALICE]
    assert copy.endswith(stored(content))
    [report] = [m for m in delivered if delivered_to(m) == sender]
    assert b"multipart/report; report-type=delivery-status" in report
    assert f"Original-Envelope-Id: {envid}\n".encode() in report
    assert f"Original-Recipient: rfc822;{original}\n".encode() in report
    assert f"Final-Recipient: rfc822; {ALICE}\n".encode() in report
    assert b"Action: delivered\n" in report
    assert b"text/rfc822-headers" in report  # RET=HDRS: the headers only
    assert b"Subject: please confirm\n" in report
    assert b"This body is not returned" not in report


# -- 5. a message larger than SIZE ------------------------------------------------------------


def test_oversize_message_is_refused_before_sending(
    run: Run, postfix: PostfixServer, mail_log: MailLog
) -> None:
    line = b"x" * 998 + b"\r\n"
    oversize = b"Subject: too big\r\n\r\n" + line * (MESSAGE_SIZE_LIMIT // len(line) + 1)
    small = message("fits")
    debug: list[str] = []

    def scenario() -> Scenario[tuple[ServerCapabilityError, Reply, TransactionResult]]:
        with pytest.raises(ServerCapabilityError) as refused:
            yield from send(SENDER, [ALICE], oversize)
        # The same client, on the same connection, goes on.
        reply = yield from noop()
        result = yield from send(SENDER, [ALICE], small)
        return refused.value, reply, result

    refused, reply, result = run(scenario, **postfix_options(postfix, debug=debug.append))

    assert refused.extension == "SIZE"
    assert reply.code == 250
    assert result.outcome is MessageOutcome.ACCEPTED
    # Nothing of the oversize message was sent: one MAIL, for the small one.
    assert [line for line in debug if line.startswith("C: MAIL")] == [
        f"C: MAIL FROM:<{SENDER}> SIZE={len(small)}"
    ]
    [session] = mail_log.sessions()
    assert " mail=1 rcpt=1 bdat=1 noop=1 " in session

    mail_log.wait_until_removed([queue_id(result)])
    [delivered] = postfix.messages()
    assert delivered.endswith(stored(small))


# -- 6. many messages on one connection -------------------------------------------------------


def test_many_messages_on_one_connection(
    run: Run, postfix: PostfixServer, mail_log: MailLog
) -> None:
    count = 20
    contents = [message(f"message {index}", f"Number {index}.\r\n") for index in range(count)]
    debug: list[str] = []

    def scenario() -> Scenario[list[TransactionResult]]:
        results = []
        for content in contents:
            results.append((yield from send(SENDER, [ALICE], content)))
        return results

    results = run(scenario, **postfix_options(postfix, debug=debug.append))

    assert [r.outcome for r in results] == [MessageOutcome.ACCEPTED] * count
    queue_ids = [queue_id(r) for r in results]
    assert len(set(queue_ids)) == count
    # One session: one greeting's worth of EHLO and STARTTLS.
    assert [line.split()[1] for line in debug if line.startswith(("C: EHLO", "C: STARTTLS"))] == [
        "EHLO",
        "STARTTLS",
        "EHLO",
    ]
    [session] = mail_log.sessions()
    assert f" mail={count} rcpt={count} bdat={count} " in session

    mail_log.wait_until_removed(queue_ids)
    delivered = postfix.messages()
    assert len(delivered) == count
    for content in contents:
        assert sum(copy.endswith(stored(content)) for copy in delivered) == 1


def test_a_batch_is_pipelined_across_messages(
    run: Run, postfix: PostfixServer, mail_log: MailLog
) -> None:
    count = 8
    batch = [
        (
            SENDER,
            [REFUSED_RECIPIENT] if index == 3 else [ALICE],
            message(f"batch {index}", f".Number {index}.\n"),
        )
        for index in range(count)
    ]
    debug: list[str] = []

    def scenario() -> Scenario[list[TransactionResult]]:
        return (yield from send_many(batch, pipeline_content_up_to=64 * 1024))

    results = run(scenario, **postfix_options(postfix, debug=debug.append))

    # The message to a refused recipient fails alone; the others are delivered.
    expected = [MessageOutcome.ACCEPTED] * count
    expected[3] = MessageOutcome.REJECTED
    assert [r.outcome for r in results] == expected
    refusal = results[3].recipients[0].reply
    assert refusal is not None
    assert refusal.code == 550
    # Whole messages (MAIL, RCPT, BDAT LAST with its content) went out back to back: the
    # second MAIL was written before any reply to the first.
    first_mail = next(i for i, line in enumerate(debug) if line.startswith("C: MAIL FROM:"))
    words = _written_before_first_reply(debug[first_mail:])
    commands = [word for word in words if not word.startswith("[")]  # not "[n octets ...]"
    assert commands[:6] == ["MAIL", "RCPT", "BDAT", "MAIL", "RCPT", "BDAT"]
    [session] = mail_log.sessions()
    # The refused message's content was pipelined too, and its BDAT refused.
    assert f" mail={count} rcpt={count - 1}/{count} bdat={count - 1}/{count} " in session

    accepted = [r for r in results if r.outcome is MessageOutcome.ACCEPTED]
    mail_log.wait_until_removed([queue_id(r) for r in accepted])
    delivered = postfix.messages()
    assert len(delivered) == count - 1
    for index, (_, _, content) in enumerate(batch):
        copies = sum(copy.endswith(stored(content)) for copy in delivered)
        assert copies == (0 if index == 3 else 1)


# -- 7. a certificate the client does not trust -----------------------------------------------


@pytest.mark.parametrize("trusted", ["system authorities", "another test CA"])
def test_untrusted_certificate_is_refused(
    run: Run, postfix: PostfixServer, mail_log: MailLog, trusted: str
) -> None:
    # Verification is on in both; only the authorities trusted differ.
    context = ssl.create_default_context()
    if trusted == "another test CA":
        trustme.CA().configure_trust(context)

    with pytest.raises(ssl.SSLCertVerificationError):
        run(
            functools.partial(send, SENDER, [ALICE], message("never sent")),
            **postfix_options(postfix, ssl_context=context),
        )

    # Postfix saw the handshake fail, and no command after STARTTLS.
    [session] = mail_log.sessions()
    assert " starttls=0/1 " in session
    assert " mail=" not in session
    assert postfix.messages() == []


# -- hostile servers --------------------------------------------------------------------------


class Peer:
    """The server's end of a scripted connection; everything read is recorded."""

    def __init__(self, conn: socket.socket, received: bytearray) -> None:
        self.conn = conn
        self.received = received
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def line(self) -> bytes:
        """The next line, CRLF included; b"" if the client closed first."""
        for _ in range(100):
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[: end + 2], self.buffer[end + 2 :]
                return line
            data = self.conn.recv(65536)
            if not data:
                return b""
            self.received += data
            self.buffer += data
        raise AssertionError("the client sent too much without a line end")

    def drain(self) -> None:
        """Read until the client closes the connection."""
        for _ in range(1000):
            try:
                data = self.conn.recv(65536)
            except ConnectionResetError:
                return
            if not data:
                return
            self.received += data
        raise AssertionError("the client sent too much")


class LoopbackServer:
    """A server on 127.0.0.1 for one connection, which *script* serves in a thread. It stops
    by itself: when the script ends, or when the client stays silent (or never connects)
    for SERVER_PATIENCE seconds."""

    def __init__(self, script: Callable[[Peer], None]) -> None:
        self.script = script
        self.received = bytearray()
        self.error: BaseException | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(SERVER_PATIENCE)
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(SERVER_PATIENCE)
                self.script(Peer(conn, self.received))
        except (OSError, AssertionError) as exc:
            self.error = exc
        finally:
            self.listener.close()

    def finish(self) -> bytes:
        """Wait for the server to stop; what it received. Fails if the script did."""
        self.thread.join(2 * SERVER_PATIENCE)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise AssertionError(f"the scripted server failed: {self.error!r}")
        return bytes(self.received)


@pytest.fixture
def loopback_server() -> Iterator[Callable[[Callable[[Peer], None]], LoopbackServer]]:
    servers: list[LoopbackServer] = []

    def start(script: Callable[[Peer], None]) -> LoopbackServer:
        server = LoopbackServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.thread.join(2 * SERVER_PATIENCE)


def greet_and_answer_ehlo(peer: Peer, *keywords: str) -> None:
    peer.send(b"220 hostile.test ESMTP\r\n")
    assert peer.line().startswith(b"EHLO ")
    lines = ["hostile.test", *keywords]
    peer.send(
        b"".join(
            f"250{'-' if i < len(lines) - 1 else ' '}{text}\r\n".encode()
            for i, text in enumerate(lines)
        )
    )


def hostile_options(port: int, **options: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "local_hostname": "client.test",
        "timeouts": Timeouts(greeting=2, mail=2, rcpt=2, other=2),
        **options,
    }


# -- 8. bytes injected after the reply to STARTTLS --------------------------------------------


def test_bytes_injected_after_starttls_are_refused_and_no_credential_leaves(
    run: Run, loopback_server: Callable[[Callable[[Peer], None]], LoopbackServer]
) -> None:
    def inject(peer: Peer) -> None:
        greet_and_answer_ehlo(peer, "STARTTLS", "AUTH PLAIN")
        assert peer.line() == b"STARTTLS\r\n"
        # A man in the middle appends a reply, in the same write, hoping the client takes it
        # for the server's first words inside TLS (CVE-2011-0411 and its kind).
        peer.send(b"220 go ahead\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n")
        peer.drain()

    server = loopback_server(inject)
    with pytest.raises(RemoteProtocolError, match="injection"):
        run(
            noop,
            **hostile_options(
                server.port,
                tls=TlsPolicy.REQUIRED,
                ssl_context=ssl.create_default_context(),
                username=USERNAME,
                password=PASSWORD,
            ),
        )

    received = server.finish()
    assert received.startswith(b"EHLO client.test\r\nSTARTTLS\r\n")
    assert b"AUTH" not in received.upper()
    for secret in (
        PASSWORD,
        base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode(),
        base64.b64encode(PASSWORD.encode()).decode(),
    ):
        assert secret.encode() not in received


# -- 9. a server that goes silent -------------------------------------------------------------


def silent_after_greeting(peer: Peer) -> None:
    peer.send(b"220 hostile.test ESMTP\r\n")
    peer.drain()


def silent_after_ehlo(peer: Peer) -> None:
    greet_and_answer_ehlo(peer, "PIPELINING")
    peer.drain()


@pytest.mark.parametrize("script", [silent_after_greeting, silent_after_ehlo])
def test_silent_server_times_out(
    run: Run,
    loopback_server: Callable[[Callable[[Peer], None]], LoopbackServer],
    script: Callable[[Peer], None],
) -> None:
    server = loopback_server(script)
    timeouts = Timeouts(greeting=5, mail=5, rcpt=5, other=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run(noop, **hostile_options(server.port, tls=TlsPolicy.NONE, timeouts=timeouts))
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3.0
    # The client closed the connection after the timeout: the server saw it end.
    assert server.finish().startswith(b"EHLO client.test\r\n")
