"""Each client of the benchmark, sending a workload over one connection.

Every function sends ``count`` copies of ``body`` from :data:`bench.workloads.SENDER` to
``to`` on one connection to 127.0.0.1:``port``, stopping early (after at least one message)
once ``deadline`` (``time.monotonic()``) has passed, returns how many it sent, and raises if
any message is not accepted. Each client sends the way its API offers for many messages:
the peers one message per call; our clients with ``send_messages`` when the content is
given whole (pipelining from one message to the next), ``send_message`` when streamed.
The peers (aiosmtplib, smtpproto) are imported when used, so the test suite, which never
runs them, does not need them installed.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import importlib
import smtplib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bench.workloads import SENDER
from smtp_proto import MessageOutcome, TlsPolicy
from smtp_proto.transports import asyncio as proto_asyncio
from smtp_proto.transports import sync as proto_sync
from smtp_proto.transports import trio as proto_trio

__all__ = ["CLIENTS", "OUR_CLIENTS", "Job", "NotApplicable"]

# No reply may take longer than this: the benchmark must end even if a server hangs.
TIMEOUT = 120.0

# Our clients send whole messages with send_messages, which pipelines one message after
# another, in groups this large: the deadline is checked between groups. Each group ends
# with a round trip of its own (the next group's first envelope cannot go with the last
# content), so larger groups cost fewer; (d) sends all of its messages in one.
BATCH_SIZE = 200


class NotApplicable(Exception):
    """The client cannot run this workload; the message says why."""


@dataclass(frozen=True, kw_only=True)
class Job:
    port: int
    count: int
    to: list[str]
    #: The content, whole (workloads a to d).
    body: bytes | None = None
    #: Or a factory of its chunks, to stream (workload e).
    chunks: Callable[[], Iterable[bytes]] | None = None
    #: For our clients: send content up to this size with the envelope (CHUNKING).
    pipeline_content_up_to: int = 0
    #: When to stop sending (time.monotonic()), whatever the count.
    deadline: float = float("inf")

    def sends(self) -> Iterator[int]:
        """The loop of each client: the message numbers, until the count or the deadline."""
        for index in range(self.count):
            if index and time.monotonic() > self.deadline:
                return
            yield index

    def batches(self) -> Iterator[list[tuple[str, list[str], bytes]]]:
        """For our clients' send_messages: the messages in groups of BATCH_SIZE, until the
        count or the deadline (checked between groups)."""
        body = self.content()
        done = 0
        while done < self.count and not (done and time.monotonic() > self.deadline):
            size = min(BATCH_SIZE, self.count - done)
            yield [(SENDER, self.to, body)] * size
            done += size

    def content(self) -> bytes:
        if self.body is None:
            raise NotApplicable("this client takes whole messages only")
        return self.body


def _check(outcome: MessageOutcome) -> None:
    if outcome is not MessageOutcome.ACCEPTED:
        raise RuntimeError(f"message not accepted: {outcome}")


# -- the standard library and its drop-in -------------------------------------------------


def run_smtplib(job: Job) -> int:
    body = job.content()
    with smtplib.SMTP("127.0.0.1", job.port, timeout=TIMEOUT) as client:
        client.ehlo()
        sent = 0
        for _ in job.sends():
            refused = client.sendmail(SENDER, job.to, body)
            if refused:
                raise RuntimeError(f"refused: {refused}")
            sent += 1
    return sent


def run_dropin(job: Job) -> int:
    body = job.content()
    with proto_sync.SMTP("127.0.0.1", job.port, timeout=TIMEOUT) as client:
        client.ehlo()
        sent = 0
        for _ in job.sends():
            refused = client.sendmail(SENDER, job.to, body)
            if refused:
                raise RuntimeError(f"refused: {refused}")
            sent += 1
    return sent


# -- our clients ---------------------------------------------------------------------------


def _body_for_ours(job: Job) -> Any:
    # Whole content when given; otherwise a fresh iterator of the chunks, for each message.
    if job.body is not None:
        return job.body
    assert job.chunks is not None
    return job.chunks()


def run_sync(job: Job) -> int:
    with proto_sync.Client("127.0.0.1", job.port, tls=TlsPolicy.NONE) as client:
        if job.body is not None:
            sent = 0
            for batch in job.batches():
                results = client.send_messages(
                    batch, pipeline_content_up_to=job.pipeline_content_up_to
                )
                for result in results:
                    _check(result.outcome)
                sent += len(results)
            return sent
        sent = 0
        for _ in job.sends():
            result = client.send_message(
                SENDER,
                job.to,
                _body_for_ours(job),
                pipeline_content_up_to=job.pipeline_content_up_to,
            )
            _check(result.outcome)
            sent += 1
    return sent


async def _async_chunks(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _async_body(job: Job) -> Any:
    # Streamed content goes through the transport's own NeedBody path (an async iterator).
    if job.body is not None:
        return job.body
    assert job.chunks is not None
    return _async_chunks(job.chunks())


async def _send_async(client: proto_asyncio.Client | proto_trio.Client, job: Job) -> int:
    sent = 0
    if job.body is not None:
        for batch in job.batches():
            results = await client.send_messages(
                batch, pipeline_content_up_to=job.pipeline_content_up_to
            )
            for result in results:
                _check(result.outcome)
            sent += len(results)
        return sent
    for _ in job.sends():
        result = await client.send_message(
            SENDER,
            job.to,
            _async_body(job),
            pipeline_content_up_to=job.pipeline_content_up_to,
        )
        _check(result.outcome)
        sent += 1
    return sent


def run_asyncio(job: Job) -> int:
    async def main() -> int:
        async with proto_asyncio.Client("127.0.0.1", job.port, tls=TlsPolicy.NONE) as client:
            return await _send_async(client, job)

    return asyncio.run(main())


def run_trio(job: Job) -> int:
    async def main() -> int:
        async with proto_trio.Client("127.0.0.1", job.port, tls=TlsPolicy.NONE) as client:
            return await _send_async(client, job)

    return trio.run(main)


# -- the peers -----------------------------------------------------------------------------


def run_aiosmtplib(job: Job) -> int:
    aiosmtplib = importlib.import_module("aiosmtplib")
    body = job.content()

    async def main() -> int:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=job.port, start_tls=False, use_tls=False, timeout=TIMEOUT
        )
        async with client:
            sent = 0
            for _ in job.sends():
                refused, _reply = await client.sendmail(SENDER, job.to, body)
                if refused:
                    raise RuntimeError(f"refused: {refused}")
                sent += 1
        return sent

    return asyncio.run(main())


def run_smtpproto(job: Job) -> int:
    # smtpproto sends email.message.EmailMessage objects only (it serialises them itself),
    # so the content is parsed once, outside the loop; its serialisation is part of its cost.
    smtpproto_client = importlib.import_module("smtpproto.client")

    message = email.message_from_bytes(job.content(), policy=email.policy.default)

    async def main() -> int:
        client = smtpproto_client.AsyncSMTPClient(
            "127.0.0.1", job.port, timeout=TIMEOUT, domain="bench.local"
        )
        async with client.connect() as session:
            sent = 0
            for _ in job.sends():
                await session.send_message(message, sender=SENDER, recipients=job.to)
                sent += 1
        return sent

    return asyncio.run(main())


def run_smtp_source(job: Job) -> int:
    """Postfix's smtp-source (C): the same number of messages of about the same size (it
    writes its own headers), or the same content from a file, on one connection. It has no
    deadline of its own, only the subprocess's timeout (it is fast)."""
    body = job.content()
    command = ["smtp-source", "-d", "-s", "1", "-m", str(job.count), "-f", SENDER]
    command += ["-r", str(len(job.to)), "-t", job.to[0]] if len(job.to) > 1 else ["-t", job.to[0]]
    with tempfile.TemporaryDirectory() as directory:
        if len(body) > 64 * 1024:
            path = Path(directory) / "message"
            path.write_bytes(body)
            command += ["-F", str(path)]
        else:
            command += ["-l", str(len(body))]
        command.append(f"127.0.0.1:{job.port}")
        completed = subprocess.run(command, capture_output=True, timeout=TIMEOUT, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"smtp-source failed: {completed.stderr.decode(errors='replace')}")
    return job.count


CLIENTS: dict[str, Callable[[Job], int]] = {
    "smtplib": run_smtplib,
    "aiosmtplib": run_aiosmtplib,
    "smtpproto": run_smtpproto,
    "smtp-source (C)": run_smtp_source,
    "ours: SMTP drop-in": run_dropin,
    "ours: sync Client": run_sync,
    "ours: asyncio Client": run_asyncio,
    "ours: trio Client": run_trio,
}
OUR_CLIENTS = ("ours: sync Client", "ours: asyncio Client", "ours: trio Client")
