"""The two exceptions the engine raises when the protocol is broken.

The split follows h11: whoever broke the rules decides the type. A peer that sends something
RFC 5321 forbids causes a :class:`RemoteProtocolError`; a caller that asks for something the
protocol or the session's state does not allow causes a :class:`LocalProtocolError`. Either
one poisons the connection: the engine refuses every later call, because after a protocol
error nobody can know what the other side believes the state to be.

Arguments that are simply malformed (an address containing CR LF, an over-long line) raise
:class:`ValueError` instead, before a single byte is produced, and leave the connection usable.

Any other exception escaping the engine is a bug.
"""

from __future__ import annotations

__all__ = [
    "InsecureAuthenticationError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]


class ProtocolError(Exception):
    """Base class of both protocol errors; never raised itself."""

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError instead")
        super().__init__(message)
        self.message = message


class LocalProtocolError(ProtocolError):
    """The caller broke the protocol: a command out of sequence, data when none is expected."""


class RemoteProtocolError(ProtocolError):
    """The server broke the protocol: a malformed reply, a bare LF, bytes after STARTTLS."""


class InsecureAuthenticationError(ValueError):
    """A mechanism that would expose a password or token was asked for on a connection
    without TLS. Allowed only on loopback or when the caller opts in explicitly; nothing is
    sent and the connection stays usable."""
