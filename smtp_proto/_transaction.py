"""One mail transaction, from MAIL to the server's verdict, in as few round trips as allowed.

:class:`MailTransaction` sits on top of a :class:`ClientConnection` and sends the commands
of one message itself: MAIL, a RCPT for each recipient, then DATA or BDAT. It decides
everything a careful client decides, so that every transport gets it for free:

* which extensions the message needs (SIZE, BODY, SMTPUTF8, DSN, REQUIRETLS), refusing before
  the first byte a message the server cannot take;
* DATA or BDAT (BDAT whenever CHUNKING is offered), pipelined when PIPELINING is;
* what one refused recipient means (nothing: the rest go on) and what all of them refused
  means (no content is sent; if DATA was pipelined and still got 354, only the final dot);
* what a failure leaves behind: an RSET whenever the server may still hold a transaction,
  so the connection is ready for the next message.

The connection routes the events of the transaction's commands to it; the transport keeps
running its usual loop, and feeds message content whenever :attr:`MailTransaction.body_wanted`
says so (:meth:`~MailTransaction.pull_body` when the content was given to the transaction,
:meth:`~MailTransaction.feed_body` and :meth:`~MailTransaction.end_body` when the transport
streams it itself, for example from an async iterator).
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeGuard, cast, final

from ._commands import format_mail, format_plain_rcpts, format_rcpt
from ._data import DataWriter, LineEndingNormalizer
from ._envelope import (
    Body,
    detect_body,
    encode_address,
    line_allowance,
    mail_parameters,
    rcpt_parameters,
)
from ._errors import LocalProtocolError
from ._events import (
    ChunkAccepted,
    ConnectionClosed,
    EhloFeatures,
    Event,
    MessageAccepted,
    MessageRejected,
    ReadyForData,
    RecipientAccepted,
    RecipientRefused,
    Reply,
    SenderAccepted,
    SenderRefused,
    ServiceClosing,
    fast_constructor,
)
from ._message import message_envelope, message_needs_smtputf8, serialize_message
from ._state import Command

if TYPE_CHECKING:
    from email.message import Message

    from ._connection import ClientConnection

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MailTransaction",
    "MessageOutcome",
    "Recipient",
    "RecipientResult",
    "TransactionResult",
]

#: Octets of message content sent per DATA write or BDAT chunk when the whole message was
#: given at once. Large enough that per-chunk overhead vanishes, small enough that memory
#: stays bounded.
DEFAULT_CHUNK_SIZE = 1024 * 1024


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    """A recipient with its own RCPT parameters.

    A plain ``str`` is accepted wherever a Recipient is, for a recipient without parameters.
    """

    address: str
    #: DSN NOTIFY (RFC 3461): "NEVER", or some of "SUCCESS", "FAILURE", "DELAY".
    notify: frozenset[str] | None = None
    #: DSN ORCPT (RFC 3461): the original recipient address.
    original_recipient: str | None = None
    #: Further RCPT parameters, checked against RFC 5321's esmtp-param grammar.
    parameters: Mapping[str, str | None] = field(default_factory=dict)


class MessageOutcome(enum.Enum):
    """What became of the message."""

    #: The server took responsibility for the message, for every recipient it accepted.
    ACCEPTED = "accepted"
    #: LMTP only: delivered to some accepted recipients and refused for others.
    PARTIALLY_ACCEPTED = "partially-accepted"
    #: A reply refused it: the sender, every recipient, DATA, a chunk, or the content.
    REJECTED = "rejected"
    #: The connection ended (a 421, or a close) before the end of the content was sent or
    #: answered with a refusal: not delivered; safe to retry.
    FAILED = "failed"
    #: The end of the content was sent but no reply came: the server may have taken the
    #: message, so a retry may deliver it twice (RFC 5321 section 6.1).
    DELIVERY_UNKNOWN = "delivery-unknown"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientResult:
    """What the server said about one recipient."""

    #: The address as the caller gave it (before any A-label conversion).
    address: str
    #: The reply to its RCPT, or None if none came (the sender was refused without
    #: pipelining, or the connection ended first).
    reply: Reply | None = None
    #: The reply that decided the message's fate for this recipient: under LMTP its own
    #: reply after the content, under SMTP the message's reply, shared by all.
    message_reply: Reply | None = None

    @property
    def accepted(self) -> bool:
        """Whether the server accepted the recipient (RCPT got 2xx)."""
        return self.reply is not None and self.reply.is_positive

    @property
    def delivered(self) -> bool:
        """Whether the server took the message for this recipient."""
        return self.accepted and self.message_reply is not None and self.message_reply.is_positive

    @property
    def transient(self) -> bool:
        """Whether a failure for this recipient is temporary (a 4xx), worth retrying."""
        decisive = self.message_reply if self.accepted else self.reply
        return decisive is not None and decisive.is_transient


# Made once per recipient of every message: (address, reply, message_reply).
_new_recipient_result = fast_constructor(RecipientResult)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionResult:
    """The fate of a message and of each of its recipients."""

    outcome: MessageOutcome
    #: The reply to MAIL, or None if none came.
    sender_reply: Reply | None
    #: One result per recipient, in the order given.
    recipients: tuple[RecipientResult, ...]
    #: The reply that decided the outcome, when one did: to DATA, to a chunk, to the end of
    #: the content (under LMTP, the first of the per-recipient replies), or the 421.
    message_reply: Reply | None = None

    @property
    def accepted_recipients(self) -> tuple[RecipientResult, ...]:
        """The recipients the server accepted at RCPT."""
        return tuple(r for r in self.recipients if r.accepted)

    @property
    def refused_recipients(self) -> tuple[RecipientResult, ...]:
        """The recipients the server refused at RCPT (or never answered)."""
        return tuple(r for r in self.recipients if not r.accepted)

    @property
    def delivered_recipients(self) -> tuple[RecipientResult, ...]:
        """The recipients for whom the server took the message."""
        return tuple(r for r in self.recipients if r.delivered)


# Made once per message: (outcome, sender_reply, recipients, message_reply).
_new_transaction_result = fast_constructor(TransactionResult)


def _is_email_message(body: object) -> TypeGuard[Message]:
    # email.message is imported only by programs that build messages; checking through
    # sys.modules keeps the engine from importing the email package (and socket with it).
    module = sys.modules.get("email.message")
    return module is not None and isinstance(body, module.Message)


class MailTransaction:
    """Send one message. Made by :meth:`ClientConnection.send_message`, which documents the
    arguments; see the module documentation for how a transport drives it."""

    # Slots, not an instance dict: a transaction keeps some forty fields, more than an
    # instance dict shares keys for, and is made and read for every message.
    __slots__ = (
        "_accepted_count",
        "_addresses",
        "_binary",
        "_body_type",
        "_chunk_size",
        "_chunks_accepted",
        "_chunks_sent",
        "_connection",
        "_content_ended",
        "_content_started",
        "_data",
        "_data_sent",
        "_envelope_commands",
        "_envelope_pending",
        "_features",
        "_held_chunk",
        "_lmtp_replies",
        "_mail_line",
        "_mail_parameters",
        "_mail_refused",
        "_message_replies",
        "_message_reply",
        "_normalizer",
        "_offset",
        "_outcome",
        "_pipeline_content_up_to",
        "_pipelining",
        "_rcpt_answered",
        "_rcpt_lines",
        "_rcpt_sent",
        "_recipient_replies",
        "_recipients",
        "_result",
        "_sender_reply",
        "_source",
        "_started",
        "_use_bdat",
        "_utf8",
        "_wire_content",
        "_wire_recipients",
        "_wire_sender",
    )

    def __init__(
        self,
        connection: ClientConnection,
        sender: str | None,
        recipients: Sequence[str | Recipient] | None,
        body: bytes | bytearray | memoryview | Message | Iterable[bytes] | None = None,
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
        start: bool = True,
    ) -> None:
        # The connection's own fields, not its properties: this runs for every message.
        features = connection._features
        if features is None:
            raise LocalProtocolError("send EHLO (or LHLO) before a mail transaction")
        if start and not connection.can_start_transaction:
            raise LocalProtocolError(
                "a mail transaction cannot start now: wait until can_start_transaction"
            )
        if type(chunk_size) is not int or chunk_size < 1:
            raise ValueError("chunk_size must be a positive int")
        self._connection = connection
        self._chunk_size = chunk_size

        # -- the content, and what it tells about the envelope --
        data: bytes | None = None
        self._source: Iterator[bytes | bytearray | memoryview] | None = None
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, (bytearray, memoryview)):
            data = bytes(body)
        elif _is_email_message(body):
            message = body
            sender, recipient_addresses = message_envelope(
                message, sender, None if recipients is None else [_address(r) for r in recipients]
            )
            if recipients is None:
                recipients = recipient_addresses
            if smtputf8 is None:
                smtputf8 = message_needs_smtputf8(message, sender, recipient_addresses)
            data = serialize_message(message, smtputf8=smtputf8)
        elif body is not None:
            if isinstance(cast(object, body), str):
                raise TypeError("message content must be bytes, not str")
            self._source = iter(cast("Iterable[bytes]", body))
        if sender is None:
            raise ValueError("a sender is needed (or an email message to take it from)")
        if not recipients:
            raise ValueError("at least one recipient is needed")
        # Plain addresses stay str: making a Recipient of each would cost more than the
        # rest of the envelope.
        self._recipients = list(recipients)

        use_bdat = features.chunking
        if body_type is None:
            if data is not None:
                body_type = detect_body(data)
            elif features.eight_bit_mime:
                # Content not seen yet: declaring 8BITMIME costs nothing and lets 8-bit
                # content through; without the extension each chunk is checked instead.
                body_type = Body.EIGHT_BIT_MIME
            else:
                body_type = Body.SEVEN_BIT
        self._body_type = body_type
        self._binary = body_type is Body.BINARY_MIME
        if data is not None and size is None and features.supports("SIZE"):
            # Only declared where announced (mail_parameters), so only counted there.
            size = _wire_size(data, binary=self._binary)

        # -- the envelope, checked whole before anything is sent --
        wire_sender, sender_needs_utf8 = encode_address(sender, smtputf8_offered=features.smtputf8)
        needs_utf8 = sender_needs_utf8 or bool(smtputf8)
        limit = connection._limits.max_command_line_length
        # Most recipients are plain addresses, which go on the wire as they are and need
        # nothing: such a list is checked and formatted at once.
        plain_lines = format_plain_rcpts(self._recipients, max_line_length=limit)
        if plain_lines is not None:
            # The addresses as given, which are also what goes on the wire.
            self._addresses = wire_recipients = cast("list[str]", self._recipients)
        else:
            self._addresses = [_address(recipient) for recipient in self._recipients]
            wire_recipients = []
            for address in self._addresses:
                wire, recipient_needs_utf8 = encode_address(
                    address, smtputf8_offered=features.smtputf8
                )
                wire_recipients.append(wire)
                needs_utf8 = needs_utf8 or recipient_needs_utf8
        parameters = mail_parameters(
            features,
            tls_active=connection._tls_active,
            size=size,
            body=body_type,
            smtputf8=needs_utf8,
            ret=ret,
            envid=envid,
            requiretls=requiretls,
            extra=mail_options,
        )
        # Every line is formatted (and so checked) before the first is sent: a bad
        # recipient must not leave half a transaction on the wire.
        mail_line = format_mail(
            wire_sender, parameters, max_line_length=limit + line_allowance(parameters)
        )
        rcpt_lines = plain_lines or self._format_rcpts(wire_recipients, features, limit)
        self._wire_recipients = wire_recipients
        self._rcpt_lines = rcpt_lines
        self._use_bdat = use_bdat
        self._pipelining = connection._pipelining

        # -- the course of the transaction --
        self._sender_reply: Reply | None = None
        self._mail_refused = False  # MAIL answered with a refusal: no transaction opened
        self._recipient_replies: list[Reply | None] = [None] * len(self._recipients)
        self._message_replies: list[Reply | None] = [None] * len(self._recipients)
        self._rcpt_sent = 0
        self._rcpt_answered = 0
        self._accepted_count = 0  # RCPTs answered with 2xx
        self._message_reply: Reply | None = None
        self._outcome: MessageOutcome | None = None
        self._result: TransactionResult | None = None
        self._content_started = False  # DATA's 354 came, or BDAT may flow
        self._content_ended = False  # the final dot or BDAT LAST is sent
        self._held_chunk = b""  # BDAT: the chunk kept back to go out with LAST
        # BDAT chunks other than the last, sent and accepted: once they match, a refusal
        # answers the end of the message, not a chunk.
        self._chunks_sent = 0
        self._chunks_accepted = 0
        self._lmtp_replies = 0
        self._normalizer = None if self._binary or not use_bdat else LineEndingNormalizer()
        self._data = data
        self._offset = 0
        # The content and its end in wire form, made while DATA's 354 was awaited.
        self._wire_content: tuple[bytes, bytes] | None = None
        # With PIPELINING, until every RCPT (and DATA, unless BDAT follows) is sent.
        self._envelope_pending = self._pipelining
        self._data_sent = False  # DATA pipelined after the RCPTs

        # -- what start() sends --
        self._features = features
        self._wire_sender = wire_sender
        self._mail_parameters = parameters
        # mail_parameters writes SMTPUTF8 itself, in capitals, and refuses it among the
        # caller's own parameters, so looking it up says whether MAIL carries it.
        self._utf8 = "SMTPUTF8" in parameters
        self._mail_line = mail_line
        self._pipeline_content_up_to = pipeline_content_up_to
        # MAIL, each RCPT, and DATA or the first BDAT.
        self._envelope_commands = len(self._recipients) + 2
        self._started = False
        if start:
            self._start(session_ready=True)  # asked at the top

    def _format_rcpts(
        self, wire_recipients: list[str], features: EhloFeatures, limit: int
    ) -> list[bytes]:
        # Each RCPT line of recipients that are not all plain addresses.
        lines = []
        for recipient, wire in zip(self._recipients, wire_recipients, strict=True):
            if isinstance(recipient, Recipient):
                parameters = rcpt_parameters(
                    features,
                    notify=recipient.notify,
                    orcpt=recipient.original_recipient,
                    extra=recipient.parameters,
                )
                line = format_rcpt(
                    wire, parameters, max_line_length=limit + line_allowance(parameters)
                )
            else:
                # No parameters, so no extension widens the line.
                line = format_rcpt(wire, {}, max_line_length=limit)
            lines.append(line)
        return lines

    def start(self) -> None:
        """Send the transaction's first commands. Only for a transaction made with
        ``start=False`` (see :meth:`ClientConnection.send_message`), once
        :attr:`ClientConnection.can_start_transaction` is true."""
        self._start(session_ready=self._connection.can_start_transaction)

    def _start(self, *, session_ready: bool) -> None:
        # send_transactions, which has just asked can_start_transaction, says so itself.
        connection = self._connection
        if self._started or self._outcome is not None:
            raise LocalProtocolError("the transaction was started already")
        if connection._features is not self._features:
            # A new EHLO (after STARTTLS, say) may have taken away what the checks relied on.
            raise LocalProtocolError("the server's features changed since the message was checked")
        if not session_ready:
            raise LocalProtocolError(
                "a mail transaction cannot start now: wait until can_start_transaction"
            )
        self._started = True
        if not self._pipelining:
            connection._begin_transaction(
                self, self._wire_sender, self._mail_parameters, self._mail_line, self._utf8
            )
            return
        if connection._send_whole_envelope(self):
            # Every RCPT went, and DATA too unless BDAT follows, as _send_envelope sends.
            self._rcpt_sent = len(self._recipients)
            self._envelope_pending = False
            self._data_sent = not self._use_bdat
        else:
            # Too long to go whole now: what fits goes, the rest as replies make room.
            connection._begin_transaction(
                self, self._wire_sender, self._mail_parameters, self._mail_line, self._utf8
            )
            self._send_envelope()
        if (
            self._use_bdat
            and self._rcpt_sent == len(self._recipients)
            and self._data is not None
            and len(self._data) <= self._pipeline_content_up_to
        ):
            # A small message costs less to send than a round trip to wait for.
            self._content_started = True
            while self.body_wanted:
                self.pull_body()

    # -- what the transport looks at --------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the outcome is known (later replies, such as an RSET's, may still come)."""
        return self._outcome is not None

    @property
    def result(self) -> TransactionResult:
        """The outcome; only once :attr:`done`."""
        if self._result is not None:
            return self._result
        if self._outcome is None:
            raise LocalProtocolError("the transaction is not finished yet")
        # Made once: nothing changes after the outcome (see _on_event).
        self._result = _new_transaction_result(
            self._outcome,
            self._sender_reply,
            # The three lists were made as long as each other, one entry per recipient.
            tuple(
                map(
                    _new_recipient_result,
                    self._addresses,
                    self._recipient_replies,
                    self._message_replies,
                )
            ),
            self._message_reply,
        )
        return self._result

    @property
    def body_wanted(self) -> bool:
        """Whether message content should be supplied now, with :meth:`pull_body` or
        :meth:`feed_body` / :meth:`end_body`."""
        if not self._content_started or self._content_ended or self._outcome is not None:
            return False
        if not self._use_bdat:
            return True
        # BDAT: one more chunk may go if the connection lets another command go now.
        return self._connection._may_send(Command.BDAT)

    # -- message content ------------------------------------------------------------------

    def pull_body(self) -> None:
        """Send the next piece of the content given to the transaction (or end it)."""
        prepared = self._wire_content
        if prepared is not None and self._content_started:
            # Made by _prepare_content from the same octets, as feed_body would make them.
            self._wire_content = None
            self._offset = len(self._data or b"")  # set whenever content was prepared
            self._content_ended = True
            self._connection._send_prepared_data(*prepared)
            return
        if self._data is not None:
            piece = self._data[self._offset : self._offset + self._chunk_size]
            self._offset += len(piece)
            if piece:
                self.feed_body(piece)
                # The end goes with the last piece when it may, saving a write.
                if self._offset < len(self._data) or not self.body_wanted:
                    return
            self.end_body()
            return
        if self._source is None:
            raise LocalProtocolError("no content was given: use feed_body() and end_body()")
        chunk = next(self._source, None)
        if chunk is None:
            self.end_body()
        else:
            self.feed_body(chunk)

    def feed_body(self, chunk: bytes | bytearray | memoryview) -> None:
        """Send a chunk of the message content, of any size."""
        if not self.body_wanted:
            raise LocalProtocolError("no message content is wanted now (see body_wanted)")
        if self._body_type is Body.SEVEN_BIT and not bytes(chunk).isascii():
            # The server was promised 7-bit content and cannot take 8-bit: part of the
            # message is on the wire, so stopping the connection is all that is left
            # (RFC 6152 section 3).
            self._connection._abandon("8-bit content, but the server does not offer 8BITMIME")
        if not self._use_bdat:
            self._connection.send_data(chunk)
            return
        normalized = bytes(chunk) if self._normalizer is None else self._normalizer.feed(chunk)
        if not normalized:
            return
        # Each chunk is held back until the next arrives, so the last one can carry LAST.
        if self._held_chunk:
            self._connection.bdat(self._held_chunk)
            self._chunks_sent += 1
        self._held_chunk = normalized

    def _prepare_content(self) -> None:
        # DATA is on its way and its 354 awaited: content in one piece is put in its wire
        # form now, while the server works, rather than after the reply, when the server
        # would wait for it. Only the work moves: what is sent, and when, is as pull_body
        # would send it. Content the writer refuses, or that would poison the connection
        # (8-bit for a 7-bit server), is left to the ordinary path to refuse when sent.
        data = self._data
        if (
            data is None
            or not self._data_sent
            or self._content_started
            or self._wire_content is not None
            or len(data) > self._chunk_size
            or (self._body_type is Body.SEVEN_BIT and not data.isascii())
        ):
            return
        writer = DataWriter()
        try:
            content = writer.feed(data)
        except ValueError:
            return
        self._wire_content = (content, writer.end())

    def end_body(self) -> None:
        """End the message content."""
        if not self.body_wanted:
            raise LocalProtocolError("no message content is wanted now (see body_wanted)")
        self._content_ended = True
        if self._use_bdat:
            self._connection.bdat(self._held_chunk, last=True)
            self._held_chunk = b""
        else:
            self._connection.end_data()

    # -- replies, routed here by the connection --------------------------------------------

    def _on_event(self, event: Event) -> None:
        if self._outcome is not None:
            return  # replies still in flight after the outcome (pipelined chunks) change nothing
        # The most frequent first: a reply per recipient. Every event class is final, so
        # comparing exact types says what isinstance says, more cheaply.
        if type(event) is RecipientAccepted or type(event) is RecipientRefused:
            self._on_recipient_reply(event.reply, accepted=type(event) is RecipientAccepted)
        elif type(event) is SenderAccepted:
            self._on_sender_accepted(event.reply)
        elif type(event) is SenderRefused:
            self._sender_reply = event.reply
            self._mail_refused = True
            if not self._pipelining:
                self._finish(MessageOutcome.REJECTED)
                return
            # The session has no transaction now, so the rest of a long envelope is not
            # sent: the replies to the RCPTs already sent are all that can come.
            self._envelope_pending = False
            if self._rcpt_answered == self._rcpt_sent:
                self._after_recipients()
        elif type(event) is ReadyForData:
            self._on_ready_for_data()
        elif type(event) is ChunkAccepted:
            self._chunks_accepted += 1
        elif type(event) is MessageAccepted:
            self._on_message_reply(event.reply, accepted=True)
        elif type(event) is MessageRejected:
            self._on_message_reply(event.reply, accepted=False)
        elif type(event) is ServiceClosing:
            self._message_reply = event.reply
            self._finish(MessageOutcome.FAILED)
        elif type(event) is ConnectionClosed:  # pragma: no branch - the last kind routed
            self._finish(
                MessageOutcome.DELIVERY_UNKNOWN if self._content_ended else MessageOutcome.FAILED
            )

    def _on_sender_accepted(self, reply: Reply) -> None:
        # MAIL's positive reply, from _on_event or straight from the connection (see
        # ClientConnection._take_replies), before the outcome is known.
        self._sender_reply = reply
        if not self._pipelining:
            self._send_next_rcpt()
        elif self._envelope_pending:
            # What did not fit in flight with MAIL goes now that its reply made room.
            self._send_envelope()

    def _on_ready_for_data(self) -> None:
        # DATA's 354, from _on_event or straight from the connection (see
        # ClientConnection._take_replies), before the outcome is known.
        self._content_started = True
        if not self._may_deliver():
            # RFC 2920 section 3.1: DATA was pipelined and accepted although no recipient
            # was (or MAIL was refused, which opened no transaction): send no content, only
            # the end of it.
            self._content_ended = True
            self._connection.end_data()

    def _on_recipient_reply(self, reply: Reply, *, accepted: bool, count: int = 1) -> None:
        # The reply to a RCPT, or to *count* RCPTs in a row that had the same reply, from
        # _on_event or straight from the connection (see ClientConnection._take_replies).
        # Never after the outcome: the recipients are answered before anything that
        # decides it. Taking several at once ends as taking them one by one would: only
        # the last can be the final recipient's or the last one sent, and the RCPTs (or
        # DATA) the envelope still has to send go out in the same order, as room allows.
        answered = self._rcpt_answered
        if count == 1:
            self._recipient_replies[answered] = reply
        else:
            self._recipient_replies[answered : answered + count] = [reply] * count
        self._rcpt_answered = answered = answered + count
        if accepted:
            self._accepted_count += count
        if self._envelope_pending:
            self._send_envelope()
        if answered == len(self._recipient_replies) or (
            answered == self._rcpt_sent and self._mail_refused
        ):
            self._after_recipients()
        elif not self._pipelining:
            self._send_next_rcpt()

    def _after_recipients(self) -> None:
        # A refused MAIL (the RCPTs were pipelined after it) opened no transaction, so no
        # content is offered for it, whatever the server said to the recipients; content
        # or a DATA already pipelined is answered by the server, and that reply decides.
        # (Content let go with the envelope may not have gone yet, for want of room in
        # flight: then none of it goes.)
        if not self._may_deliver():
            if self._use_bdat and (self._chunks_sent or self._content_ended):
                return  # content was pipelined already; its reply decides
            if self._data_sent:
                return  # DATA is pipelined; its reply (or the dot's) decides
            self._reset_if_needed()
            self._finish(MessageOutcome.REJECTED)
            return
        if self._use_bdat:
            self._content_started = True
        elif not self._pipelining:
            self._connection.data()

    def _on_message_reply(self, reply: Reply, *, accepted: bool) -> None:
        # A refused MAIL opened no transaction, whatever the server answered to what was
        # pipelined after it: the message is refused, and no recipient is recorded as
        # delivered, even if the server then says it took the content.
        if not self._content_ended or self._chunks_accepted < self._chunks_sent:
            # DATA or a chunk was refused, not the end of the message: the content stops
            # here, and the server may still hold the transaction.
            self._record_message_reply(reply)
            self._reset_if_needed()
            self._finish(MessageOutcome.REJECTED)
            return
        if self._connection._lmtp and self._accepted_count:
            accepted_indexes = [
                i for i, r in enumerate(self._recipient_replies) if r is not None and r.is_positive
            ]
            if not self._mail_refused:
                self._message_replies[accepted_indexes[self._lmtp_replies]] = reply
            if self._message_reply is None:
                self._message_reply = reply
            self._lmtp_replies += 1
            if self._lmtp_replies < len(accepted_indexes):
                return
            delivered = sum(
                1 for i in accepted_indexes if (r := self._message_replies[i]) and r.is_positive
            )
            if delivered == len(accepted_indexes):
                self._finish(MessageOutcome.ACCEPTED)
            elif delivered:
                self._finish(MessageOutcome.PARTIALLY_ACCEPTED)
            else:
                self._finish(MessageOutcome.REJECTED)
            return
        if self._mail_refused:
            self._message_reply = reply
        else:
            self._record_message_reply(reply)
        if accepted and self._may_deliver():
            self._finish(MessageOutcome.ACCEPTED)
        else:
            self._finish(MessageOutcome.REJECTED)

    # -- helpers ---------------------------------------------------------------------------

    def _send_envelope(self) -> None:
        # With PIPELINING, as much of the envelope as the connection lets go now: every
        # RCPT, then DATA, within Limits.max_commands_in_flight; the rest follows as
        # replies make room. (BDAT goes with the content, not here.)
        connection = self._connection
        index = self._rcpt_sent = connection._send_rcpts(
            self._wire_recipients, self._rcpt_lines, self._rcpt_sent
        )
        if index < len(self._recipients):
            return
        if self._use_bdat:
            self._envelope_pending = False
        elif connection._send_if_allowed(Command.DATA, b"DATA\r\n"):
            self._envelope_pending = False
            self._data_sent = True

    def _send_next_rcpt(self) -> None:
        index = self._rcpt_sent
        self._connection._send_rcpt(self._wire_recipients[index], self._rcpt_lines[index])
        self._rcpt_sent += 1

    def _record_message_reply(self, reply: Reply) -> None:
        # Under SMTP one reply decides the message for every accepted recipient.
        self._message_reply = reply
        if self._accepted_count == len(self._recipients):
            self._message_replies = [reply] * self._accepted_count
            return
        for index, rcpt_reply in enumerate(self._recipient_replies):
            if rcpt_reply is not None and rcpt_reply.is_positive:
                self._message_replies[index] = reply

    def _may_deliver(self) -> bool:
        # A recipient accepted within a transaction the server opened: a refused MAIL
        # opened none, whatever it then answered to the RCPTs pipelined after it.
        return self._accepted_count > 0 and not self._mail_refused

    def _reset_if_needed(self) -> None:
        # The server still holds a transaction if it accepted MAIL and the transaction did
        # not end with the content. RSET clears it, unless a later transaction has begun
        # on the connection, which an RSET would destroy instead.
        if (
            self._sender_reply is not None
            and self._sender_reply.is_positive
            and self._connection._owns_current_transaction(self)
        ):
            self._connection._reset_soon()

    def _never_started(self) -> None:
        # The session ended before this transaction could start: nothing of it was sent.
        self._finish(MessageOutcome.FAILED)

    def _finish(self, outcome: MessageOutcome) -> None:
        self._outcome = outcome
        self._data = None
        self._source = None
        self._wire_content = None


def _address(recipient: str | Recipient) -> str:
    # Runs for every recipient of every message: the exact type test first is the cheap one.
    if type(recipient) is str or not isinstance(recipient, Recipient):
        return recipient
    return recipient.address


def _wire_size(data: bytes, *, binary: bool) -> int:
    """The size the content will have on the wire, for SIZE (RFC 1870 section 3: the
    message's octets with CRLF line ends, not counting dot-stuffing or the final dot)."""
    if binary:
        return len(data)
    pairs = data.count(b"\r\n")
    # Every bare CR and every bare LF grows into a CRLF.
    return len(data) + (data.count(b"\r") - pairs) + (data.count(b"\n") - pairs)
