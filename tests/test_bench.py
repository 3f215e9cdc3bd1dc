"""The benchmark's own servers (bench/sink.py, bench/proxy.py) on loopback, driven by the
sync client: messages are counted, content is validated, and the proxy really delays.

Nothing is installed and no peer is run: the benchmark proper is `bash bench/run.sh`.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_proto import MessageOutcome, TlsPolicy
from smtp_proto.transports.sync import SMTP, Client

# The benchmark is a folder of the repository, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench.clients import CLIENTS, Job, NotApplicable
from bench.engine import engine_cpu_per_message
from bench.proxy import DelayProxy
from bench.sink import SinkServer, canonical_digest
from bench.workloads import big_message, small_message

SENDER = "bench@example.com"


class Loop:
    """An event loop in a thread of its own, for the servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: object, timeout: float = 10.0) -> object:
        assert asyncio.iscoroutine(coroutine)
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def sink(loop: Loop) -> Iterator[tuple[SinkServer, int]]:
    server = SinkServer()
    port = loop.run(server.start())
    assert isinstance(port, int)
    try:
        yield server, port
    finally:
        loop.run(server.stop())


def _settled(server: SinkServer, messages: int) -> None:
    # The sink counts a message when it has read it; the client may be ahead by a reply.
    deadline = time.monotonic() + 5
    while server.stats.messages < messages and time.monotonic() < deadline:
        time.sleep(0.01)


def test_sink_counts_and_validates_bdat(sink: tuple[SinkServer, int]) -> None:
    server, port = sink
    body = small_message()
    with Client("127.0.0.1", port, tls=TlsPolicy.NONE) as client:
        assert client.features.chunking
        assert client.features.pipelining
        for _ in range(20):
            result = client.send_message(
                SENDER, ["a@example.net"], body, pipeline_content_up_to=len(body)
            )
            assert result.outcome is MessageOutcome.ACCEPTED
    _settled(server, 20)
    stats = server.stats
    assert stats.messages == stats.bdat_messages == 20
    assert stats.digests == {canonical_digest(body): 20}
    assert stats.errors == []
    assert stats.bare_lf == 0
    # The envelope, BDAT and the content came in one read.
    assert stats.max_commands_per_read >= 3
    assert stats.pipelined_reads >= 20


def test_sink_unstuffs_and_flags_bare_lf(sink: tuple[SinkServer, int]) -> None:
    server, port = sink
    # Dots at line starts and bare LFs, split over several reads.
    body = big_message(256 * 1024)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(SENDER, ["a@example.net", "b@example.net"], body)
    with SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(SENDER, ["a@example.net"], body)
    _settled(server, 2)
    stats = server.stats
    assert stats.messages == 2
    assert stats.data_messages == 1  # smtplib
    assert stats.bdat_messages == 1  # the drop-in, which uses CHUNKING when offered
    assert stats.recipients == 3
    # smtplib sends bytes as they are, bare LFs included; the drop-in normalises them. Both
    # arrive intact once un-stuffed and normalised.
    assert stats.bare_lf == body.count(b"\n") - body.count(b"\r\n")
    assert stats.digests == {canonical_digest(body): 2}
    assert stats.errors == []


def test_sink_detects_wrong_content(sink: tuple[SinkServer, int]) -> None:
    server, port = sink
    # A client that forgets to dot-stuff loses the dot: the digest shows it.
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as connection,
        connection.makefile("rb") as reader,
    ):
        reader.readline()
        connection.sendall(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        replies = [reader.readline() for _ in range(6 + 3)]
        assert replies[-1].startswith(b"354")
        connection.sendall(b"Subject: x\r\n\r\n.hidden\r\n.\r\nQUIT\r\n")
        assert reader.readline().startswith(b"250")
    _settled(server, 1)
    sent = hashlib.sha256(b"Subject: x\r\n\r\nhidden\r\n").hexdigest()
    assert server.stats.digests == {sent: 1}
    assert canonical_digest(b"Subject: x\r\n\r\n.hidden\r\n") not in server.stats.digests
    # EHLO, MAIL, RCPT and DATA were written at once.
    assert server.stats.max_commands_per_read == 4


def test_proxy_delays_each_direction(loop: Loop, sink: tuple[SinkServer, int]) -> None:
    server, port = sink
    proxy = DelayProxy(port, 0.02)
    proxy_port = loop.run(proxy.start())
    assert isinstance(proxy_port, int)
    body = small_message()
    try:
        with Client("127.0.0.1", proxy_port, tls=TlsPolicy.NONE) as client:
            started = time.monotonic()
            for _ in range(5):
                result = client.send_message(
                    SENDER, ["a@example.net"], body, pipeline_content_up_to=len(body)
                )
                assert result.outcome is MessageOutcome.ACCEPTED
            elapsed = time.monotonic() - started
    finally:
        loop.run(proxy.stop())
    _settled(server, 5)
    assert server.stats.messages == 5
    assert server.stats.digests == {canonical_digest(body): 5}
    assert proxy.connections == 1
    # Each message is one round trip of 2 x 20 ms (whole-message pipelining).
    assert elapsed >= 5 * 0.04 * 0.9
    assert elapsed < 5


@pytest.mark.parametrize("chunking", [False, True])
def test_the_engine_benchmark_sends_every_message(chunking: bool) -> None:
    # It raises unless every message, in batches and a partial last batch, is accepted.
    assert engine_cpu_per_message(73, chunking=chunking, recipient_count=3) > 0


def test_clients_of_a_workload_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each client runs once per round, so that every median comes from the same stretches
    # of time; a client that cannot run the case drops out, and one that fails is reported.
    calls: list[str] = []

    def client(name: str, sent: int) -> object:
        def run(job: Job) -> int:
            calls.append(name)
            if name == "n/a":
                raise NotApplicable("not this case")
            if name == "breaks" and calls.count(name) == 2:
                raise RuntimeError("lost the connection")
            return sent

        return run

    fakes = {"smtplib": 10, "ours": 10, "n/a": 10, "breaks": 10}
    for name, sent in fakes.items():
        monkeypatch.setitem(CLIENTS, name, client(name, sent))
    case = harness.Case(
        workload="a",
        server="sink",
        port=0,
        sink_port=None,
        job=Job(port=0, count=10, to=["r@example.com"], body=b"x\r\n"),
        unit="msg/s",
        expected_digest="",
        clients=tuple(fakes),
    )
    rows = harness.run_cases([case], repeats=3, budget=5.0, log=lambda _: None)
    rounds = [["smtplib", "ours", "n/a", "breaks"], ["smtplib", "ours", "breaks"]]
    assert calls == [*rounds[0], *rounds[1], "smtplib", "ours"]
    by_client = {row.client: row for row in rows}
    assert len(by_client["smtplib"].rates) == len(by_client["ours"].rates) == 3
    assert by_client["smtplib"].ratio == 1.0
    assert by_client["ours"].ratio is not None
    assert by_client["n/a"].note == "n/a: not this case"
    assert by_client["n/a"].rate is None
    assert by_client["breaks"].note == "failed: RuntimeError: lost the connection"
    assert by_client["breaks"].rate is None
    assert by_client["smtplib"].validated == "not checked"
