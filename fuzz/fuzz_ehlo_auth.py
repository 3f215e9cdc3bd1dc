"""Coverage-guided fuzzing of EHLO parsing, the SASL mechanisms and the AUTH exchange.

    python fuzz/fuzz_ehlo_auth.py [libFuzzer options, e.g. -max_total_time=60] [corpus dirs]

Octet 0 chooses the target (its value modulo 3), octet 1 holds the target's options, and the
rest is the target's input, cut into lines at LF:

``EHLO`` (0)
    The lines are an EHLO reply's text. ``parse_ehlo`` must never raise, and must find the
    same extensions, in the same order, as a reference parser written here from RFC 5321
    section 4.1.1.1 and the engine's documented leniencies. The same lines sent by a server
    through a connection give that result or RemoteProtocolError.

``SASL`` (1)
    The lines are server challenges for one mechanism (option bits 0-2). ``respond()``
    returns bytes or raises SaslError, ``success()`` returns or raises SaslError, and nothing
    else; no error message holds a secret; no mechanism answers more rounds than it has;
    every answer is checked against the mechanism's RFC, SCRAM's proof included, recomputed
    here. With option bit 3 the harness plays a correct SCRAM server (taking its nonce, salt
    and iteration count from the input), so the exchange reaches the server's signature;
    bit 4 corrupts that signature, which must then be refused.

``AUTH`` (2)
    A connection runs AUTH with one mechanism and the lines are what the server answers: a
    line starting with a digit is sent as it is, one starting with ``=`` as a 334 with the
    rest base64-encoded, any other as a 334 with the line as its text. Only AuthSucceeded
    or AuthFailed (or ServiceClosing, ConnectionClosed) come out, at most once, or
    RemoteProtocolError; every line the client writes is base64 or ``*``, within the
    limits, nothing after ``*``; no secret reaches an event, an error or the debug log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

from _fuzzing import fuzz

from smtp_proto import (
    NEED_DATA,
    AuthFailed,
    AuthSucceeded,
    ClientConnection,
    ConnectionClosed,
    CramMD5,
    EhloFeatures,
    External,
    Limits,
    Login,
    Mechanism,
    OAuthBearer,
    Plain,
    RemoteProtocolError,
    Reply,
    SaslError,
    ScramSha1,
    ScramSha256,
    ServiceClosing,
    XOAuth2,
)
from smtp_proto._ehlo import parse_ehlo

EHLO, SASL, AUTH = 0, 1, 2

# SASL options.
VALID_SCRAM_SERVER = 0x08
CORRUPT_SIGNATURE = 0x10
TOKEN_CALLABLE = 0x20
# AUTH options.
SHORT_COMMAND_LINE = 0x08
CLOSE_AT_END = 0x10
SHORT_AUTH_LINE = 0x20

USERNAME = "user"
PASSWORD = "pencil-Secret-42"
TOKEN = "ya29.Secret-token"
CLIENT_NONCE = "fuzznonce"
MAX_ITERATIONS = 64


def _token() -> str:
    return TOKEN


def mechanism(index: int, options: int = 0) -> Mechanism:
    """One of every mechanism, with fixed credentials (and a fixed SCRAM nonce)."""
    token: str | Callable[[], str] = _token if options & TOKEN_CALLABLE else TOKEN
    factories: tuple[Callable[[], Mechanism], ...] = (
        lambda: Plain(USERNAME, PASSWORD),
        lambda: Login(USERNAME, PASSWORD),
        lambda: CramMD5(USERNAME, PASSWORD),
        External,
        lambda: XOAuth2(USERNAME, token),
        lambda: OAuthBearer(USERNAME, token, host="mx.example.org", port=587),
        lambda: ScramSha1(USERNAME, PASSWORD, nonce=CLIENT_NONCE, max_iterations=MAX_ITERATIONS),
        lambda: ScramSha256(USERNAME, PASSWORD, nonce=CLIENT_NONCE, max_iterations=MAX_ITERATIONS),
    )
    return factories[index % len(factories)]()


# How many challenges each mechanism may answer in one exchange.
MAX_ANSWERS = {
    "PLAIN": 0,
    "LOGIN": 2,
    "CRAM-MD5": 1,
    "EXTERNAL": 1,
    "XOAUTH2": 1,
    "OAUTHBEARER": 1,
    "SCRAM-SHA-1": 2,
    "SCRAM-SHA-256": 2,
}
SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
SECRETS = (PASSWORD, TOKEN)

# Engine behaviours found by this harness and not yet fixed, which it tolerates so that
# fuzzing can go on past them: code that checks for a name here skips that one behaviour.
# Each is described in fuzz/README.md; remove the name and its check once the engine is
# fixed, and its regression input in the corpus must then pass. None is open now.
KNOWN_FINDINGS: frozenset[str] = frozenset()


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text
        assert base64.b64encode(secret.encode()).decode() not in text, text


# -- EHLO -----------------------------------------------------------------------------------


def reference_extensions(lines: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """The extensions an EHLO reply announces, read without the engine's code: the first
    word of each line after the first is a keyword if it is (ALPHA / DIGIT) *(ALPHA / DIGIT
    / "-") in ASCII, or the legacy "AUTH=" form; the first line for a keyword wins, except
    that every AUTH line's mechanisms are merged without case-insensitive repeats."""
    extensions: dict[str, tuple[str, ...]] = {}
    mechanisms: list[str] = []
    seen: set[str] = set()
    for line in lines[1:]:
        words = [word for word in line.replace("\t", " ").split(" ") if word]
        if not words:
            continue
        keyword, parameters = words[0], words[1:]
        if keyword[:5].isascii() and keyword[:5].lower() == "auth=":
            parameters = ([keyword[5:]] if keyword[5:] else []) + parameters
            keyword = "AUTH"
        elif not (
            keyword.isascii()
            and keyword[0].isalnum()
            and all(c.isalnum() or c == "-" for c in keyword)
        ):
            continue
        keyword = keyword.upper()
        if keyword == "AUTH":
            extensions.setdefault("AUTH", ())
            for name in parameters:
                if name.upper() not in seen:
                    seen.add(name.upper())
                    mechanisms.append(name)
        elif keyword not in extensions:
            extensions[keyword] = tuple(parameters)
    if "AUTH" in extensions:
        extensions["AUTH"] = tuple(mechanisms)
    return list(extensions.items())


def check_features(features: EhloFeatures, lines: tuple[str, ...], *, esmtp: bool) -> None:
    words = lines[0].replace("\t", " ").split(" ")
    assert features.server_name == next((word for word in words if word), "")
    assert features.esmtp is esmtp
    expected = reference_extensions(lines) if esmtp else []
    assert list(features.extensions.items()) == expected
    for keyword in features.extensions:
        assert features.supports(keyword)
    # Every derived property answers, whatever was announced.
    size = features.max_message_size
    assert size is None or size > 0
    assert all(isinstance(name, str) for name in features.auth_mechanisms)
    for flag in (
        features.pipelining,
        features.chunking,
        features.starttls,
        features.smtputf8,
        features.eight_bit_mime,
        features.binary_mime,
        features.dsn,
        features.enhanced_status_codes,
        features.requiretls,
    ):
        assert isinstance(flag, bool)


def check_ehlo(options: int, payload: bytes) -> None:
    raw_lines = [line.removesuffix(b"\r") for line in payload.split(b"\n")]
    lines = tuple(line.decode("utf-8", "surrogateescape") for line in raw_lines)
    reply = Reply(code=250, lines=lines)
    for esmtp in (True, False):
        check_features(parse_ehlo(reply, esmtp=esmtp), lines, esmtp=esmtp)

    # The same text from a server, through a connection (and the reply reader).
    esmtp = not options & 1
    conn = ClientConnection()
    conn.receive_data(b"220 mx.example.org ESMTP\r\n")
    conn.next_event()
    (conn.ehlo if esmtp else conn.helo)("client.example")
    separators = [b"-"] * (len(raw_lines) - 1) + [b" "]
    conn.receive_data(
        b"".join(
            b"250" + sep + line + b"\r\n" for sep, line in zip(separators, raw_lines, strict=True)
        )
    )
    try:
        event = conn.next_event()
    except RemoteProtocolError:
        return
    assert isinstance(event, EhloFeatures), event
    check_features(event, lines, esmtp=esmtp)
    assert conn.features == event


# -- SASL mechanisms ------------------------------------------------------------------------


def scram_keys(name: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """The client key and server key of RFC 5802 section 3, for PASSWORD."""
    hash_name = SCRAM_HASHES[name]
    salted = hashlib.pbkdf2_hmac(hash_name, PASSWORD.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    return client_key, server_key


def check_client_final(
    name: str, client_first: bytes, server_first: bytes, client_final: bytes
) -> bytes:
    """Check a SCRAM client-final message as the server would; return the server signature.

    *server_first* must be one the client accepted, so it starts with r=, s= and i=."""
    hash_name = SCRAM_HASHES[name]
    attributes = dict(field.split(b"=", 1) for field in server_first.split(b",")[:3])
    nonce = attributes[b"r"]
    salt = base64.b64decode(attributes[b"s"])
    iterations = int(attributes[b"i"])
    assert 1 <= iterations <= MAX_ITERATIONS
    assert nonce.startswith(CLIENT_NONCE.encode())
    assert len(nonce) > len(CLIENT_NONCE)
    match = re.fullmatch(rb"(c=biws,r=([^,]*)),p=([A-Za-z0-9+/=]+)", client_final)
    assert match is not None, client_final
    assert match[2] == nonce
    client_key, server_key = scram_keys(name, salt, iterations)
    stored_key = hashlib.new(hash_name, client_key).digest()
    auth_message = client_first.removeprefix(b"n,,") + b"," + server_first + b"," + match[1]
    signature = hmac.new(stored_key, auth_message, hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    assert base64.b64decode(match[3]) == proof, "the SCRAM proof is wrong"
    return hmac.new(server_key, auth_message, hash_name).digest()


class Exchange:
    """One mechanism taken through challenges, counting and checking its answers."""

    def __init__(self, mechanism: Mechanism) -> None:
        self.mechanism = mechanism
        self.name = mechanism.name
        initial = mechanism.initial_response()
        self.initial = initial if initial is not None else b""
        self.answers = 0
        self.failed = False
        self.server_first = b""

    def respond(self, challenge: bytes) -> bytes | None:
        """The answer, or None if the mechanism refused the challenge with SaslError."""
        try:
            answer = self.mechanism.respond(challenge)
        except SaslError as exc:
            assert_no_secret(str(exc))
            self.failed = True
            return None
        assert isinstance(answer, bytes)
        # A SCRAM exchange that failed once stays failed.
        assert not (self.failed and self.name in SCRAM_HASHES), "SCRAM answered after failing"
        self.answers += 1
        assert self.answers <= MAX_ANSWERS[self.name], f"{self.name} answered too often"
        self.check_answer(challenge, answer)
        return answer

    def check_answer(self, challenge: bytes, answer: bytes) -> None:
        name = self.name
        if name == "LOGIN":
            assert answer in (USERNAME.encode(), PASSWORD.encode())
        elif name == "CRAM-MD5":
            digest = hmac.new(PASSWORD.encode(), challenge, "md5").hexdigest()
            assert answer == f"{USERNAME} {digest}".encode()
        elif name in ("EXTERNAL", "XOAUTH2"):
            assert answer == b""
        elif name == "OAUTHBEARER":
            assert answer == b"\x01"
        elif self.answers == 1:  # SCRAM's client-final
            self.server_first = challenge
            check_client_final(name, self.initial, challenge, answer)
        else:  # SCRAM's answer to a verified server-final
            assert answer == b""

    def success(self) -> bool:
        try:
            self.mechanism.success()
        except SaslError as exc:
            assert_no_secret(str(exc))
            return False
        return True


def check_sasl(options: int, payload: bytes) -> None:
    exchange = Exchange(mechanism(options, options))
    challenges = payload.split(b"\n")
    name = exchange.name
    if name in SCRAM_HASHES and options & VALID_SCRAM_SERVER:
        check_scram_server(exchange, options, challenges)
        return
    for challenge in challenges:
        exchange.respond(challenge)
    succeeded = exchange.success()
    if name in SCRAM_HASHES:
        # Only a server that knows the password can produce the signature it must send.
        assert not succeeded, "SCRAM succeeded without the server's signature"
    else:
        assert succeeded


def check_scram_server(exchange: Exchange, options: int, challenges: list[bytes]) -> None:
    """Play a correct SCRAM server, with its nonce, salt and iteration count from the
    input; then any further challenges must be refused."""
    nonce_part = bytes(c for c in challenges[0] if 0x21 <= c <= 0x7E and c != ord(",")) or b"s"
    # A salt is never empty: "s=" with nothing after it is malformed (RFC 5802 section 7).
    salt = challenges[1] if len(challenges) > 1 and challenges[1] else b"salt"
    iterations = 1 + sum(challenges[0]) % MAX_ITERATIONS
    server_first = b"r=%s%s,s=%s,i=%d" % (
        CLIENT_NONCE.encode(),
        nonce_part,
        base64.b64encode(salt),
        iterations,
    )
    client_final = exchange.respond(server_first)
    assert client_final is not None, "a correct server-first was refused"
    signature = bytearray(
        check_client_final(exchange.name, exchange.initial, server_first, client_final)
    )
    if options & CORRUPT_SIGNATURE:
        signature[-1] ^= 1
    verified = exchange.respond(b"v=" + base64.b64encode(bytes(signature))) is not None
    assert verified is not bool(options & CORRUPT_SIGNATURE)
    assert exchange.success() is verified
    for challenge in challenges[2:]:
        assert exchange.respond(challenge) is None, "SCRAM answered after the server-final"


# -- the AUTH exchange through a connection --------------------------------------------------

ANNOUNCED = b"PLAIN LOGIN CRAM-MD5 EXTERNAL XOAUTH2 OAUTHBEARER SCRAM-SHA-1 SCRAM-SHA-256"
_BASE64_LINE = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def server_line(line: bytes) -> bytes:
    if line[:1].isdigit():
        return line + b"\r\n"
    if line[:1] == b"=":
        return b"334 " + base64.b64encode(line[1:]) + b"\r\n"
    return b"334 " + line + b"\r\n"


def check_auth(options: int, payload: bytes) -> None:
    limits = Limits(
        max_command_line_length=40 if options & SHORT_COMMAND_LINE else 512,
        max_auth_line_length=64 if options & SHORT_AUTH_LINE else 12288,
        max_auth_rounds=4,
    )
    conn = ClientConnection(tls_active=True, limits=limits)
    conn.receive_data(b"220 mx.example.org ESMTP\r\n")
    conn.next_event()
    conn.ehlo("client.example")
    conn.receive_data(b"250-mx.example.org\r\n250 AUTH " + ANNOUNCED + b"\r\n")
    conn.next_event()
    conn.data_to_send()
    chosen = mechanism(options, options)
    expected_initial = mechanism(options, options).initial_response()
    conn.auth(chosen)
    auth_line, log = conn.data_to_send_and_log()
    for entry in log:
        assert_no_secret(entry)
    assert auth_line.startswith(b"AUTH " + chosen.name.encode())
    deferred = expected_initial is not None and auth_line == b"AUTH %s\r\n" % chosen.name.encode()

    written: list[bytes] = []
    outcomes: list[AuthSucceeded | AuthFailed] = []
    lines = payload.split(b"\n")
    try:
        for line in lines:
            conn.receive_data(server_line(line))
            while (event := conn.next_event()) is not NEED_DATA:
                assert isinstance(
                    event, (AuthSucceeded, AuthFailed, ServiceClosing, ConnectionClosed)
                ), event
                if isinstance(event, (AuthSucceeded, AuthFailed)):
                    outcomes.append(event)
                if isinstance(event, ConnectionClosed):
                    break
            data, log = conn.data_to_send_and_log()
            for entry in log:
                assert_no_secret(entry)
            written += data.splitlines(keepends=True)
        if options & CLOSE_AT_END:
            conn.receive_data(b"")
            assert isinstance(conn.next_event(), ConnectionClosed)
    except RemoteProtocolError as exc:
        assert_no_secret(str(exc))

    assert len(outcomes) <= 1, outcomes
    cancelled = b"*\r\n" in written
    for index, line in enumerate(written):
        assert line.endswith(b"\r\n")
        if line == b"*\r\n":
            assert index == len(written) - 1, "the client wrote after cancelling"
            continue
        assert _BASE64_LINE.fullmatch(line[:-2]) is not None, line
        assert len(line) - 2 <= limits.max_auth_line_length
    assert len(written) <= limits.max_auth_rounds + 1
    if deferred and written:
        # The initial response held back from the AUTH line answers the first challenge.
        assert expected_initial is not None
        assert written[0] == base64.b64encode(expected_initial) + b"\r\n" or (
            written[0] == b"*\r\n"
        )
    if outcomes:
        outcome = outcomes[0]
        assert outcome.mechanism == chosen.name
        if isinstance(outcome, AuthSucceeded):
            assert conn.authenticated
            # RFC 4954 section 4: a server must answer "*" with 501, never with success.
            assert not cancelled, "AUTH succeeded after the client cancelled it"
            assert chosen.name not in SCRAM_HASHES, "SCRAM succeeded without a signature"
        else:
            assert not conn.authenticated
            assert (outcome.reason is not None) is cancelled
            if outcome.reason is not None:
                assert_no_secret(outcome.reason)


def check(data: bytes) -> None:
    """Run every invariant on one input; raise AssertionError if one fails."""
    if len(data) < 2:
        return
    target, options, payload = data[0] % 3, data[1], data[2:]
    if target == EHLO:
        check_ehlo(options, payload)
    elif target == SASL:
        check_sasl(options, payload)
    else:
        check_auth(options, payload)


if __name__ == "__main__":  # pragma: no cover
    fuzz(check)
