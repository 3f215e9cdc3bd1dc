"""SASL mechanisms for SMTP AUTH (RFC 4954), each a small object: challenge in, response out.

A mechanism knows nothing of SMTP, sockets or base64. The connection asks it for an initial
response, hands it each 334 challenge already decoded from base64, and sends back the bytes
it returns, encoded again; when the server answers 235 it calls :meth:`Mechanism.success`.
A mechanism that cannot go on raises :class:`SaslError`, and the connection cancels the
exchange with ``*`` (RFC 4954 section 4).

The contract with the connection, which a custom mechanism may rely on:

- :meth:`~Mechanism.initial_response` is called exactly once at the start of every exchange,
  and starts it afresh: the same object may authenticate again later (after a reconnect, for
  instance), and an OAuth token callable is called again then.
- If the connection holds the initial response back because the AUTH line would be too long
  (RFC 4954 section 4), it sends those same bytes in answer to the server's first, empty,
  challenge, without calling :meth:`~Mechanism.respond`.
- Any challenge a mechanism did not expect is an error (:class:`SaslError`), never answered
  by guesswork, since an extra round is exactly what a server probing for secrets would ask.

Secrets (passwords, tokens, keys derived from them) live in private attributes and appear in
no ``repr``, ``str`` or error message. Arguments are checked when a mechanism is made: a
value that is not a ``str`` raises :class:`TypeError`, a value the mechanism cannot carry
raises :class:`ValueError`, so that nothing can fail half-way through an exchange.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, Final, Literal

__all__ = [
    "MAX_SCRAM_ITERATIONS",
    "CramMD5",
    "External",
    "Login",
    "Mechanism",
    "OAuthBearer",
    "Plain",
    "SaslError",
    "ScramSha1",
    "ScramSha256",
    "XOAuth2",
    "choose_mechanism",
    "password_mechanisms",
]

#: The highest SCRAM iteration count the client agrees to compute (RFC 5802 section 5.1,
#: ``i=``). The server chooses the count, so without a bound a hostile server could make the
#: client spend hours in PBKDF2. Real servers use 4096 (the RFC 7677 section 4 minimum) to a
#: few hundred thousand; ten million takes a few seconds and leaves room for growth.
MAX_SCRAM_ITERATIONS: Final = 10_000_000


class SaslError(Exception):
    """A mechanism cannot go on: a malformed or unexpected challenge, or a server that failed
    to prove itself (SCRAM). The engine answers ``*`` to cancel.

    The message never contains a secret; the engine passes it on as the reason the exchange
    failed.
    """


class Mechanism:
    """Base class of the SASL mechanisms, and of any mechanism a user plugs in.

    A subclass sets :attr:`name` and :attr:`sends_secret`, and overrides
    :meth:`initial_response` and :meth:`respond` as its exchange requires. The default
    sends no initial response and refuses every challenge.
    """

    __slots__ = ()

    #: The mechanism's upper-case name as registered with IANA (RFC 4422 section 3.1), such
    #: as ``"PLAIN"``; the AUTH command carries it.
    name: ClassVar[str]

    #: True if an eavesdropper on the exchange learns a reusable secret: a password or a
    #: bearer token. The connection refuses such a mechanism without TLS unless the caller
    #: allows it. The default is True so that a mechanism that forgets to say errs on the
    #: side of refusing plain text.
    sends_secret: ClassVar[bool] = True

    def initial_response(self) -> bytes | None:
        """Start an exchange and return what to send with the AUTH command.

        ``None`` sends no initial response, so the server starts with a challenge; ``b""``
        sends an empty one (RFC 4954 section 4 writes it as ``=``).
        """
        return None

    def respond(self, challenge: bytes) -> bytes:
        """Return the answer to the server's *challenge* (already decoded from base64).

        :raises SaslError: the challenge is malformed or not expected now.
        """
        raise SaslError(f"{self.name} expects no challenge")

    def success(self) -> None:
        """Called when the server accepts the authentication (235).

        :raises SaslError: the server has not proved what the mechanism requires of it.
        """

    def __repr__(self) -> str:
        # Only the class name: a subclass may hold secrets in attributes of its own.
        return f"{type(self).__name__}()"


# -- argument checks ----------------------------------------------------------------------


def _check_text(value: object, what: str, forbidden: str = "") -> str:
    """Return *value* if it is a ``str`` that UTF-8 can encode and holds none of *forbidden*.

    Messages name the argument but never show it, since it may be a password or token.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate, which a str can hold (after a surrogateescape decode) but UTF-8
        # cannot encode. Found now rather than in the middle of an exchange.
        raise ValueError(f"{what} contains a lone surrogate") from None
    for character in forbidden:
        if character in value:
            raise ValueError(f"{what} must not contain U+{ord(character):04X}")
    return value


def _check_token(value: object, what: str) -> bytes:
    """Return a bearer token as ASCII octets, or raise if it is not one."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    # RFC 6750 section 2.1 (b64token) and RFC 7628 section 3.1 (value): a token is visible
    # ASCII. The check is the looser VCHAR rather than b64token so that an odd but working
    # token still goes through; what matters is that no control character (the 0x01 that
    # separates the fields above all) and no space can reach the message.
    if _VISIBLE_ASCII.fullmatch(value) is None:
        raise ValueError(f"{what} is empty or contains a character other than visible ASCII")
    return value.encode("ascii")


# One or more visible ASCII characters (VCHAR, RFC 5234 appendix B.1).
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


# -- SASLprep (RFC 4013) ------------------------------------------------------------------

# RFC 4013 section 2.3: the tables of RFC 3454 appendix C whose characters SASLprep refuses.
# C.1.1 (the ASCII space) is allowed; C.1.2 is checked although the mapping step has already
# turned those characters into spaces, as the RFC lists it.
_PROHIBITED: Final[tuple[Callable[[str], bool], ...]] = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def _saslprep(value: str, what: str, *, secret: bool) -> str:
    """Prepare *value* with the SASLprep profile of stringprep (RFC 4013), as a query.

    RFC 5802 section 5.1 prepares the SCRAM user name as a query string, in which unassigned
    code points are allowed (RFC 4013 section 2.5, RFC 3454 section 7). The password
    (Normalize() of RFC 5802 section 2.2) is prepared the same way here: as a stored string
    it would refuse every character newer than Unicode 3.2, in emoji and recent scripts,
    which the server may well accept. The message for a refused *secret* says which rule
    failed but not which character, since that would tell part of the password.
    """

    def refuse(rule: str, index: int) -> ValueError:
        where = "" if secret else f": U+{ord(prepared[index]):04X} at index {index}"
        return ValueError(f"{what} is refused by SASLprep, {rule}{where}")

    # Section 2.1, mapping: non-ASCII spaces (table C.1.2) become SPACE, and the characters
    # "commonly mapped to nothing" (table B.1, such as SOFT HYPHEN) are removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(character) else character
        for character in value
        if not stringprep.in_table_b1(character)
    )
    # Section 2.2, normalization form KC. stringprep is defined over Unicode 3.2 (RFC 3454
    # section 1.2), so the normalization uses that version's data, as Python's stringprep
    # tables do, rather than the interpreter's current Unicode.
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    # Section 2.3, prohibited output.
    for index, character in enumerate(prepared):
        if any(in_table(character) for in_table in _PROHIBITED):
            raise refuse("a prohibited character (RFC 4013 section 2.3)", index)
    # Section 2.4, bidirectional characters, by RFC 3454 section 6: a string holding any
    # right-to-left character (table D.1) holds no left-to-right one (table D.2), and starts
    # and ends with a right-to-left character. This stops a string from displaying as
    # another one.
    right_to_left = [stringprep.in_table_d1(character) for character in prepared]
    if any(right_to_left):
        for index, character in enumerate(prepared):
            if stringprep.in_table_d2(character):
                raise refuse(
                    "left-to-right and right-to-left text mixed (RFC 3454 section 6)", index
                )
        if not right_to_left[0]:
            raise refuse("right-to-left text must start right-to-left (RFC 3454 section 6)", 0)
        if not right_to_left[-1]:
            last = len(prepared) - 1
            raise refuse("right-to-left text must end right-to-left (RFC 3454 section 6)", last)
    return prepared


# -- simple mechanisms --------------------------------------------------------------------


class Plain(Mechanism):
    """PLAIN (RFC 4616): the user name and password in one message.

    *authzid*, if given, asks to act as another identity (RFC 4616 section 2). The password
    crosses the wire as it is, so the connection allows PLAIN only under TLS by default.
    """

    __slots__ = ("_authzid", "_password", "_username")

    name = "PLAIN"
    sends_secret = True

    def __init__(self, username: str, password: str, *, authzid: str = "") -> None:
        # RFC 4616 section 2: NUL separates the three fields, so none of them may hold one.
        self._username = _check_text(username, "username", "\0")
        self._password = _check_text(password, "password", "\0").encode("utf-8")
        self._authzid = _check_text(authzid, "authzid", "\0")

    def initial_response(self) -> bytes:
        # RFC 4616 section 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. Sent as
        # the initial response, which every SMTP AUTH server accepts (RFC 4954 section 4).
        return b"\0".join(
            [self._authzid.encode("utf-8"), self._username.encode("utf-8"), self._password]
        )

    def __repr__(self) -> str:
        authzid = f", authzid={self._authzid!r}" if self._authzid else ""
        return f"Plain(username={self._username!r}{authzid})"


# LOGIN prompts, with case, spaces and any trailing ":" or NUL removed. The mechanism was
# never standardised (draft-murchison-sasl-login); servers send "Username:" and "Password:",
# and Microsoft's send "User Name\0" and "Password\0".
_LOGIN_USERNAME_PROMPTS = frozenset({"username", "user"})
_LOGIN_PASSWORD_PROMPTS = frozenset({"password"})


class Login(Mechanism):
    """LOGIN: the obsolete but widespread mechanism that sends the user name and password
    in answer to two prompts.

    The prompts are read when they are recognisable; a server with unusual ones gets the
    user name first and the password second, which is what every server expects.
    """

    __slots__ = ("_challenges", "_password", "_username")

    name = "LOGIN"
    sends_secret = True

    def __init__(self, username: str, password: str) -> None:
        self._username = _check_text(username, "username")
        self._password = _check_text(password, "password").encode("utf-8")
        self._challenges = 0

    def initial_response(self) -> None:
        # The server prompts for both fields. Some servers take the user name as an initial
        # response, but not all, so none is sent.
        self._challenges = 0

    def respond(self, challenge: bytes) -> bytes:
        self._challenges += 1
        if self._challenges > 2:
            raise SaslError("LOGIN expects two challenges, and the server sent a third")
        prompt = challenge.decode("ascii", "replace").rstrip("\0 :").replace(" ", "").lower()
        if prompt in _LOGIN_USERNAME_PROMPTS:
            return self._username.encode("utf-8")
        if prompt in _LOGIN_PASSWORD_PROMPTS:
            return self._password
        # An unrecognised prompt (a translated one, say): answer by position, as Python's
        # smtplib does.
        return self._username.encode("utf-8") if self._challenges == 1 else self._password

    def __repr__(self) -> str:
        return f"Login(username={self._username!r})"


class CramMD5(Mechanism):
    """CRAM-MD5 (RFC 2195): the server sends a challenge, the client answers with its user
    name and an HMAC-MD5 of the challenge keyed with the password.

    The password itself never crosses the wire, so ``sends_secret`` is False, but an
    eavesdropper can still try passwords against the exchange offline; prefer SCRAM.
    """

    __slots__ = ("_answered", "_password", "_username")

    name = "CRAM-MD5"
    sends_secret = False

    def __init__(self, username: str, password: str) -> None:
        self._username = _check_text(username, "username")
        self._password = _check_text(password, "password").encode("utf-8")
        self._answered = False

    def initial_response(self) -> None:
        # RFC 2195 section 2: the server speaks first, with its challenge.
        self._answered = False

    def respond(self, challenge: bytes) -> bytes:
        if self._answered:
            raise SaslError("CRAM-MD5 has one challenge, and the server sent another")
        # RFC 2195 section 2: the challenge is a message id such as "<1896.697170952@host>",
        # never empty. The answer to an empty one would be the same in every session.
        if not challenge:
            raise SaslError("the CRAM-MD5 challenge is empty")
        self._answered = True
        digest = hmac.new(self._password, challenge, "md5").hexdigest()
        return f"{self._username} {digest}".encode()

    def __repr__(self) -> str:
        return f"CramMD5(username={self._username!r})"


class External(Mechanism):
    """EXTERNAL (RFC 4422 appendix A): authentication already established outside SASL, such
    as by a TLS client certificate. *authzid*, if given, asks to act as another identity."""

    __slots__ = ("_answered", "_authzid")

    name = "EXTERNAL"
    sends_secret = False

    def __init__(self, authzid: str = "") -> None:
        # RFC 4422 appendix A.1: authz-id-string = 1*( UTF8-char-no-nul ).
        self._authzid = _check_text(authzid, "authzid", "\0")
        self._answered = False

    def initial_response(self) -> bytes:
        # RFC 4422 appendix A.1: the one message is the authzid, empty for "the identity the
        # external authentication established".
        self._answered = False
        return self._authzid.encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        # EXTERNAL has no challenge after its one message. An empty answer to a first
        # unexpected one lets the server give its verdict; a second means a server that
        # would go on forever.
        if self._answered:
            raise SaslError("EXTERNAL expects no further challenge")
        self._answered = True
        return b""

    def __repr__(self) -> str:
        authzid = f"authzid={self._authzid!r}" if self._authzid else ""
        return f"External({authzid})"


# -- OAuth 2.0 bearer tokens --------------------------------------------------------------

# The stages of an OAuth exchange: nothing sent yet, the token sent, and the server's error
# challenge answered (after which only its final reply may come).
_OAuthStage = Literal["idle", "sent", "answered"]


class _OAuth(Mechanism):
    # What XOAUTH2 and OAUTHBEARER share: the token goes in the initial response, and the
    # server may answer with one challenge, its error report.

    __slots__ = ("_stage", "_token", "_username")

    sends_secret = True

    # The answer to the error challenge, which asks the client to end the exchange.
    _acknowledgement: ClassVar[bytes]

    def __init__(self, username: str, token: str | Callable[[], str]) -> None:
        # NUL is never part of a name (RFC 5801 section 4, UTF8-char-safe), and 0x01
        # separates the fields of both messages.
        self._username = _check_text(username, "username", "\0\x01")
        if not callable(token):
            if not isinstance(token, str):
                raise TypeError(
                    f"token must be a str or a callable returning one, not {type(token).__name__}"
                )
            _check_token(token, "token")
        self._token = token
        self._stage: _OAuthStage = "idle"

    def _start(self) -> bytes:
        """Begin an exchange and return the token to send in it."""
        # A callable is called once per exchange, when it starts, so that it can hand out a
        # token refreshed since the last authentication.
        if isinstance(self._token, str):
            token = self._token.encode("ascii")
        else:
            token = _check_token(self._token(), "the token the callable returned")
        self._stage = "sent"
        return token

    def respond(self, challenge: bytes) -> bytes:
        # A challenge after the token is the server's error report, JSON saying why the token
        # was refused (RFC 7628 section 3.2.2). The client acknowledges it and the server
        # then fails the exchange, with 535 in SMTP. The JSON is not parsed, since nothing
        # in it changes the answer.
        if self._stage != "sent":
            raise SaslError(f"{self.name} expects at most one challenge, after the token")
        self._stage = "answered"
        return self._acknowledgement


class XOAuth2(_OAuth):
    """XOAUTH2, the OAuth 2.0 mechanism Google and Microsoft document, older than
    OAUTHBEARER (RFC 7628): a user name and a bearer token.

    *token* is the token, or a function called at the start of every exchange to get a
    fresh one (its exceptions propagate). A token is as good as a password while it lasts,
    so the connection allows XOAUTH2 only under TLS by default.
    """

    __slots__ = ()

    name = "XOAUTH2"

    # Google's documentation of the mechanism: the client answers the error challenge with
    # an empty response.
    _acknowledgement = b""

    def initial_response(self) -> bytes:
        # "user=" {username} ^A "auth=Bearer " {token} ^A ^A, as Google documents it.
        token = self._start()
        return b"user=" + self._username.encode("utf-8") + b"\x01auth=Bearer " + token + b"\x01\x01"

    def __repr__(self) -> str:
        return f"XOAuth2(username={self._username!r})"


class OAuthBearer(_OAuth):
    """OAUTHBEARER (RFC 7628): a user name and an OAuth 2.0 bearer token.

    *token* is the token, or a function called at the start of every exchange to get a
    fresh one (its exceptions propagate). *host* and *port*, the server the client believes
    it is talking to, are sent when given (RFC 7628 section 3.1), so that the server can
    refuse a token meant for another. An empty *username* sends no authorization identity.
    """

    __slots__ = ("_host", "_port")

    name = "OAUTHBEARER"

    # RFC 7628 section 3.2.3: the client answers the error challenge with a single kvsep.
    _acknowledgement = b"\x01"

    def __init__(
        self,
        username: str,
        token: str | Callable[[], str],
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(username, token)
        if host is not None:
            _check_text(host, "host")
            # RFC 7628 section 3.1: a value is visible ASCII and spaces; a host name (in
            # its A-label form) or an address literal needs no more, and never a 0x01.
            if _VISIBLE_ASCII.fullmatch(host) is None:
                raise ValueError("host is empty or contains a character other than visible ASCII")
        if port is not None:
            if isinstance(port, bool) or not isinstance(port, int):
                raise TypeError(f"port must be an int, not {type(port).__name__}")
            if not 0 < port < 65536:
                raise ValueError(f"port must be between 1 and 65535, not {port}")
        self._host = host
        self._port = port

    def initial_response(self) -> bytes:
        token = self._start()
        # RFC 7628 section 3.1: client-resp = gs2-header kvsep *kvpair kvsep. The GS2 header
        # (RFC 5801 section 4) is "n" (no channel binding), the authorization identity as
        # "a=" saslname, and an empty third field; saslname escapes "=" and "," (first "=",
        # so that the "=" of "=2C" is not escaped again).
        authzid = ""
        if self._username:
            authzid = "a=" + self._username.replace("=", "=3D").replace(",", "=2C")
        fields = [f"n,{authzid},"]
        if self._host is not None:
            fields.append(f"host={self._host}")
        if self._port is not None:
            fields.append(f"port={self._port}")
        return "\x01".join(fields).encode("utf-8") + b"\x01auth=Bearer " + token + b"\x01\x01"

    def __repr__(self) -> str:
        host = "" if self._host is None else f", host={self._host!r}"
        port = "" if self._port is None else f", port={self._port!r}"
        return f"OAuthBearer(username={self._username!r}{host}{port})"


# -- SCRAM (RFC 5802, RFC 7677) -----------------------------------------------------------

# RFC 5802 section 7: the GS2 header of a client without channel binding support ("n") and
# without an authorization identity. The client-final message repeats it, base64-encoded,
# as "c=biws", so that the server can check it was not altered on the way.
_GS2_HEADER: Final = b"n,,"
_CHANNEL_BINDING: Final = b"c=" + base64.b64encode(_GS2_HEADER)

# RFC 5802 section 7: attr-val = ALPHA "=" value, value = 1*value-char, where value-char is
# any UTF-8 character but NUL and ",". Messages are split at "," before this is matched.
_ATTRIBUTE = re.compile(r"([A-Za-z])=([^\x00]+)")
# RFC 5802 section 7: a nonce is made of "printable" characters, visible ASCII but ",".
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
# RFC 5802 section 7: base64 = *(4base64-char) [base64-1 / base64-2], always padded.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# RFC 5802 section 7: posit-number = %x31-39 *DIGIT. At most ten digits, so that int() is
# never handed a huge number; every count that long is far above the limit anyway.
_ITERATION_COUNT = re.compile(r"[1-9][0-9]{0,9}")

# How much of a server's "e=" error value a SaslError message quotes.
_EXCERPT_LENGTH = 64

# The stages of a SCRAM exchange. "failed" is entered on any error and never left, so that
# neither a further challenge nor the final 235 can be taken for success.
_ScramStage = Literal["idle", "first-sent", "final-sent", "verified", "failed"]


def _scram_attributes(message: bytes, what: str) -> list[tuple[str, str]]:
    """Split a SCRAM message into its (name, value) attributes, in order."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(f"the {what} is not UTF-8 (RFC 5802 section 7)") from None
    attributes: list[tuple[str, str]] = []
    for field in text.split(","):
        match = _ATTRIBUTE.fullmatch(field)
        if match is None:
            raise SaslError(f"the {what} holds a malformed attribute (RFC 5802 section 7)")
        attributes.append((match[1], match[2]))
    return attributes


class _Scram(Mechanism):
    # The SCRAM family (RFC 5802) without channel binding; a subclass names the hash.
    #
    # client-first:  n,,n=<user>,r=<client nonce>
    # server-first:  r=<client nonce + server nonce>,s=<salt>,i=<iteration count>
    # client-final:  c=biws,r=<nonce>,p=<proof>
    # server-final:  v=<server signature>          (or e=<error>)
    #
    # The proof shows the client knows the password without sending it; the server
    # signature shows the server knows it too, which is why success() refuses a 235 that
    # came without a verified signature.

    __slots__ = (
        "_client_first_bare",
        "_fixed_nonce",
        "_max_iterations",
        "_nonce",
        "_password",
        "_saslname",
        "_server_signature",
        "_stage",
        "_username",
    )

    sends_secret = False

    # The hashlib name of the hash function H of RFC 5802 section 2.2.
    _hash_name: ClassVar[str]

    def __init__(
        self,
        username: str,
        password: str,
        *,
        nonce: str | None = None,
        max_iterations: int = MAX_SCRAM_ITERATIONS,
    ) -> None:
        self._username = _check_text(username, "username")
        _check_text(password, "password")
        # RFC 5802 section 5.1: the user name is prepared with SASLprep and then escaped as
        # a saslname, "=" as "=3D" and "," as "=2C" (first "=", so that the "=" of "=2C"
        # is not escaped again). A name that prepares to nothing would be refused by the
        # server, as that section says, so it is refused here.
        prepared = _saslprep(username, "username", secret=False)
        if not prepared:
            raise ValueError("username is empty after SASLprep (RFC 5802 section 5.1)")
        self._saslname = prepared.replace("=", "=3D").replace(",", "=2C")
        # RFC 5802 section 2.2: Hi() takes Normalize(password), the password after SASLprep.
        self._password = _saslprep(password, "password", secret=True).encode("utf-8")
        if nonce is not None:
            _check_text(nonce, "nonce")
            if _NONCE.fullmatch(nonce) is None:
                raise ValueError("nonce is empty or contains a character other than visible ASCII")
        # Fixed only to reproduce test vectors; otherwise every exchange draws a new one.
        self._fixed_nonce = nonce
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
            raise TypeError(f"max_iterations must be an int, not {type(max_iterations).__name__}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, not {max_iterations}")
        self._max_iterations = max_iterations
        self._stage: _ScramStage = "idle"
        self._nonce = ""
        self._client_first_bare = b""
        self._server_signature = b""

    def initial_response(self) -> bytes:
        # RFC 5802 section 5.1: the nonce is fresh for each exchange and unpredictable;
        # token_urlsafe gives 192 random bits in characters that are all "printable".
        self._nonce = self._fixed_nonce or secrets.token_urlsafe(24)
        self._client_first_bare = f"n={self._saslname},r={self._nonce}".encode()
        self._server_signature = b""
        self._stage = "first-sent"
        return _GS2_HEADER + self._client_first_bare

    def respond(self, challenge: bytes) -> bytes:
        stage = self._stage
        # Pessimistic: whatever goes wrong below leaves the exchange failed for good.
        self._stage = "failed"
        if stage == "first-sent":
            response = self._client_final(challenge)
            self._stage = "final-sent"
            return response
        if stage == "final-sent":
            self._verify_server_final(challenge)
            self._stage = "verified"
            # SMTP has no room for data with the 235 (RFC 4954 section 4), so the server
            # sends its signature as a challenge and the client answers it empty.
            return b""
        raise SaslError(f"{self.name} expected no challenge now")

    def _client_final(self, server_first: bytes) -> bytes:
        attributes = _scram_attributes(server_first, "server-first-message")
        # RFC 5802 section 5.1: "m" announces a mandatory extension, which this client
        # cannot know, so the exchange must fail.
        if attributes[0][0] == "m":
            raise SaslError("the server requires a SCRAM extension (m=) this client lacks")
        # RFC 5802 section 7: server-first-message = [reserved-mext ","] nonce "," salt ","
        # iteration-count ["," extensions]; attributes come in this order only. Extensions
        # after them are ignored, as the RFC requires.
        if [name for name, _ in attributes[:3]] != ["r", "s", "i"]:
            raise SaslError("the server-first-message must begin with r=, s= and i=")
        nonce, salt, count = (value for _, value in attributes[:3])
        # RFC 5802 section 5.1: the server appends its own nonce to the client's. A nonce
        # that does not extend the client's belongs to another exchange (a replay), and one
        # with nothing added gives the server no freshness of its own.
        if _NONCE.fullmatch(nonce) is None:
            raise SaslError("the server's nonce contains a character that is not allowed")
        if not nonce.startswith(self._nonce):
            raise SaslError("the server's nonce does not begin with the client's")
        if len(nonce) == len(self._nonce):
            raise SaslError("the server added nothing to the client's nonce")
        if _BASE64.fullmatch(salt) is None:
            raise SaslError("the salt is not valid base64")
        if _ITERATION_COUNT.fullmatch(count) is None:
            raise SaslError("the iteration count is not a positive number of at most 10 digits")
        iterations = int(count)
        if iterations > self._max_iterations:
            raise SaslError(
                f"the server asks for {iterations} iterations, more than the limit of "
                f"{self._max_iterations} (MAX_SCRAM_ITERATIONS)"
            )
        # RFC 5802 section 3. Hi() is PBKDF2 with HMAC-H and the output size of H.
        hash_name = self._hash_name
        salted_password = hashlib.pbkdf2_hmac(
            hash_name, self._password, base64.b64decode(salt), iterations
        )
        client_key = hmac.digest(salted_password, b"Client Key", hash_name)
        stored_key = hashlib.new(hash_name, client_key).digest()
        without_proof = _CHANNEL_BINDING + b",r=" + nonce.encode("ascii")
        # AuthMessage holds the three messages as they were sent, byte for byte, so that
        # either side notices any change made on the way.
        auth_message = self._client_first_bare + b"," + server_first + b"," + without_proof
        client_signature = hmac.digest(stored_key, auth_message, hash_name)
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        server_key = hmac.digest(salted_password, b"Server Key", hash_name)
        # Only the expected server signature is kept: it proves nothing to anyone but this
        # client, whereas the salted password and the keys would let their holder log in.
        self._server_signature = hmac.digest(server_key, auth_message, hash_name)
        return without_proof + b",p=" + base64.b64encode(proof)

    def _verify_server_final(self, server_final: bytes) -> None:
        attributes = _scram_attributes(server_final, "server-final-message")
        # RFC 5802 section 7: server-final-message = (server-error / verifier)
        # ["," extensions].
        name, value = attributes[0]
        if name == "e":
            raise SaslError(f"the server reports a SCRAM error: {value[:_EXCERPT_LENGTH]!r}")
        if name != "v" or _BASE64.fullmatch(value) is None:
            raise SaslError("the server-final-message must begin with v= or e=")
        # RFC 5802 section 9: a server that cannot produce the signature does not know the
        # password; it may be an impostor that accepts anything. A constant-time comparison
        # tells it nothing about how close its guess came.
        if not hmac.compare_digest(base64.b64decode(value), self._server_signature):
            raise SaslError("the server's signature is wrong: it does not know the password")

    def success(self) -> None:
        if self._stage != "verified":
            raise SaslError("the server accepted without proving it knows the password")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(username={self._username!r})"


class ScramSha1(_Scram):
    """SCRAM-SHA-1 (RFC 5802), without channel binding.

    Both sides prove they know the password and neither sends it; an eavesdropper can still
    try passwords offline against the exchange, at the cost of the iteration count for each.
    *nonce* fixes the client nonce, for reproducing test vectors only. *max_iterations*
    bounds the work the server can demand (:data:`MAX_SCRAM_ITERATIONS`).

    :raises ValueError: SASLprep (RFC 4013) refuses the username or password.
    """

    __slots__ = ()

    name = "SCRAM-SHA-1"
    _hash_name = "sha1"


class ScramSha256(_Scram):
    """SCRAM-SHA-256 (RFC 7677), without channel binding: SCRAM-SHA-1 with SHA-256.

    *nonce* fixes the client nonce, for reproducing test vectors only. *max_iterations*
    bounds the work the server can demand (:data:`MAX_SCRAM_ITERATIONS`).

    :raises ValueError: SASLprep (RFC 4013) refuses the username or password.
    """

    __slots__ = ()

    name = "SCRAM-SHA-256"
    _hash_name = "sha256"


# -- choosing a mechanism -----------------------------------------------------------------


def password_mechanisms(username: str, password: str) -> list[Mechanism]:
    """Every password-based mechanism, strongest first: SCRAM-SHA-256, SCRAM-SHA-1,
    CRAM-MD5, PLAIN, LOGIN.

    The SCRAM mechanisms are left out when SASLprep refuses the username or password: the
    server prepares the password the same way when it is set (RFC 5802 section 2.2), so it
    cannot hold SCRAM keys for such a password.
    """
    mechanisms: list[Mechanism] = []
    for scram in (ScramSha256, ScramSha1):
        with contextlib.suppress(ValueError):
            mechanisms.append(scram(username, password))
    mechanisms += [
        CramMD5(username, password),
        Plain(username, password),
        Login(username, password),
    ]
    return mechanisms


def choose_mechanism(offered: Iterable[str], candidates: Sequence[Mechanism]) -> Mechanism | None:
    """The first of *candidates* whose name the server *offered*, or ``None``.

    The client's order decides, not the server's. Names compare without regard to case
    (RFC 4422 section 3.1 registers them in upper case, but servers are not always careful);
    only ASCII case is folded, so that no exotic name can fold into a registered one.
    """
    if isinstance(offered, str):
        # A str is an iterable of str: "PLAIN LOGIN" would offer "P", "L", ...
        raise TypeError("offered must be an iterable of names such as a list, not a str")
    names = {name.upper() for name in offered if name.isascii()}
    for candidate in candidates:
        if candidate.name.upper() in names:
            return candidate
    return None
