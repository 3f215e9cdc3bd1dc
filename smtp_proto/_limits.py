"""Named bounds on everything the engine buffers, counts or waits for.

Every number the engine enforces lives here, with its default and the RFC text that motivates
it. RFC 5321 section 4.5.3.1 gives *minimum* sizes an implementation must accept; it also
says implementations should avoid fixed limits where they can. A client that embeds mail in
other software must nevertheless stay bounded against a hostile server, so each default is
the RFC minimum where real servers respect it and a documented multiple where they do not.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Limits", "Timeouts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on what the engine accepts from the server and produces for it.

    Exceeding a receive-side limit raises :class:`RemoteProtocolError` as soon as the excess
    is seen, without buffering further. Exceeding a send-side limit raises
    :class:`LocalProtocolError` (or :class:`ValueError` for an over-long argument) before any
    byte is produced.
    """

    #: Longest reply line, in octets, including the reply code and CRLF. RFC 5321 section
    #: 4.5.3.1.5 sets 512; several large providers send longer human-readable text, so the
    #: default allows eight times that. This also bounds the bytes buffered without a CRLF.
    max_reply_line_length: int = 4096

    #: Most lines in one (multiline) reply. RFC 5321 sets no number; EHLO replies, the
    #: longest in practice, carry a few dozen keywords.
    max_reply_lines: int = 256

    #: Most octets in one reply, all its lines together (RFC 5321 section 4.2.1 leaves this
    #: open). Bounds the memory one reply can cost.
    max_reply_size: int = 64 * 1024

    #: Most received octets held before they are parsed. A transport feeds what it reads and
    #: then drains events, so this only needs to exceed one read plus a partial reply; it
    #: stops a server from growing the buffer without bound.
    max_receive_buffer: int = 1024 * 1024

    #: Most commands sent and still awaiting their reply. RFC 2920 section 3.1 lets a client
    #: send a whole transaction at once; RFC 5321 section 4.5.3.1.8 requires servers to
    #: buffer 100 recipients, so groups of that size are safe.
    max_commands_in_flight: int = 100

    #: Longest command line, in octets, including the verb and CRLF (RFC 5321 section
    #: 4.5.3.1.4). Counted in octets after UTF-8 encoding.
    max_command_line_length: int = 512

    #: Longest line of an AUTH exchange after the command itself, in octets without CRLF
    #: (RFC 4954 section 4 requires servers to accept 12288). The AUTH command line itself
    #: stays within ``max_command_line_length``: an initial response that would not fit is
    #: sent after the first 334 instead, as that section requires.
    max_auth_line_length: int = 12288

    #: Most 334 challenges one AUTH exchange may take. Real mechanisms need at most three
    #: (SCRAM); beyond this the client cancels with "*" rather than talk forever.
    max_auth_rounds: int = 10

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{field.name} must be a positive int, not {value!r}")
        if self.max_reply_line_length > self.max_reply_size:
            raise ValueError("max_reply_line_length cannot exceed max_reply_size")
        if self.max_reply_size > self.max_receive_buffer:
            raise ValueError("max_reply_size cannot exceed max_receive_buffer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """How long, in seconds, to wait for each kind of reply (RFC 5321 section 4.5.3.2).

    The engine never reads a clock. It publishes the value that applies to what it waits on
    (:attr:`ClientConnection.timeout`) and the transport turns it into a deadline for the
    whole reply.
    """

    #: Section 4.5.3.2.1, the initial 220 greeting: 5 minutes.
    greeting: float = 300.0
    #: Section 4.5.3.2.2, the reply to MAIL: 5 minutes.
    mail: float = 300.0
    #: Section 4.5.3.2.3, the reply to RCPT: 5 minutes.
    rcpt: float = 300.0
    #: Section 4.5.3.2.4, the 354 to DATA: 2 minutes.
    data_initiation: float = 120.0
    #: Section 4.5.3.2.5, sending each block of message data: 3 minutes. Also the wait for
    #: the reply to each BDAT chunk but the last, which answers a block of data.
    data_block: float = 180.0
    #: Section 4.5.3.2.6, the reply to the final dot or BDAT LAST: 10 minutes, since the
    #: server may deliver or scan the message before answering.
    data_termination: float = 600.0
    #: Every other command. RFC 5321 gives no figure; 5 minutes matches the others.
    other: float = 300.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if type(value) not in (int, float) or not value > 0:
                raise ValueError(f"{field.name} must be a positive number, not {value!r}")
