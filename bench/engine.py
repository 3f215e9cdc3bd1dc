"""The engine alone: :class:`smtp_proto.ClientConnection` and the engine's own
:func:`smtp_proto.send_transactions` against an in-memory fake server, no sockets, CPU time
per message (``time.process_time``).

This is what every transport runs for ``send_messages``: messages checked first, then
pipelined one after another. The fake server is as cheap as it can be: it knows what the
engine sends, so it counts the envelopes (MAIL) and message ends in each write and answers
each with canned replies. Its own cost is included in the figure, which is therefore an
upper bound on the engine's.
"""

from __future__ import annotations

import time

from bench.workloads import SENDER, recipients, small_message
from smtp_proto import (
    NEED_DATA,
    ClientConnection,
    MessageOutcome,
    Read,
    Write,
    send_transactions,
)

__all__ = ["engine_cpu_per_message"]

_GREETING = b"220 fake ESMTP\r\n"
_EHLO = b"250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
_EHLO_CHUNKING = b"250-fake\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"
# Messages handed to send_transactions at a time, as the benchmark's clients do.
_BATCH = 200


def engine_cpu_per_message(
    count: int, *, chunking: bool = False, recipient_count: int = 1
) -> float:
    """CPU seconds per message for *count* messages of 1 KiB (the workload (a) message)."""
    body = small_message()
    to = recipients(recipient_count)
    envelope_ok = b"250 2.1.0 ok\r\n" + b"250 2.1.5 ok\r\n" * recipient_count
    # DATA: each envelope is answered up to the 354, each final dot with 250. BDAT: the
    # content travels with the envelope, so each MAIL gets every reply of its message.
    per_envelope = envelope_ok + (b"250 2.0.0 accepted\r\n" if chunking else b"354 go ahead\r\n")
    per_message_end = b"" if chunking else b"250 2.0.0 accepted\r\n"
    conn = ClientConnection()
    conn.receive_data(_GREETING)
    conn.next_event()
    conn.ehlo("bench.local")
    conn.data_to_send()
    conn.receive_data(_EHLO_CHUNKING if chunking else _EHLO)
    if conn.next_event() is NEED_DATA:
        raise RuntimeError("the fake server's EHLO reply was not taken")
    started = time.process_time()
    sent = 0
    while sent < count:
        transactions = [
            conn.send_message(
                SENDER,
                to,
                body,
                start=False,
                pipeline_content_up_to=len(body) + 1 if chunking else 0,
            )
            for _ in range(min(_BATCH, count - sent))
        ]
        operation = send_transactions(conn, transactions)
        replies = b""
        value: bytes | None = None
        for _ in range(100 * _BATCH):  # bounded: a fake-server bug must not hang
            try:
                request = operation.send(value)
            except StopIteration as stop:
                results = stop.value
                break
            value = None
            if type(request) is Write:
                data = request.data
                replies += data.count(b"\r\n.\r\n") * per_message_end
                replies += data.count(b"MAIL FROM:") * per_envelope
            elif type(request) is Read:
                if not replies:
                    raise RuntimeError("the fake server did not answer")
                value, replies = replies, b""
        else:
            raise RuntimeError("the batch never finished")
        for result in results:
            if result.outcome is not MessageOutcome.ACCEPTED:
                raise RuntimeError(f"not accepted: {result}")
        sent += len(results)
    return (time.process_time() - started) / count
