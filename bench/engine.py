"""The engine alone: :class:`smtp_proto.ClientConnection` and ``send_message`` against an
in-memory fake server, no sockets, CPU time per message (``time.process_time``).

The fake server is as cheap as it can be: it knows the engine pipelines, so it answers a
write that ends with ``DATA`` (or with a BDAT chunk) with the replies to the whole
envelope at once, and one that ends with the final dot with "250". Its own cost is
included in the figure, which is therefore an upper bound on the engine's.
"""

from __future__ import annotations

import time

from bench.workloads import SENDER, recipients, small_message
from smtp_proto import NEED_DATA, ClientConnection, MessageOutcome

__all__ = ["engine_cpu_per_message"]

_GREETING = b"220 fake ESMTP\r\n"
_EHLO = b"250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
_EHLO_CHUNKING = b"250-fake\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"


def engine_cpu_per_message(
    count: int, *, chunking: bool = False, recipient_count: int = 1
) -> float:
    """CPU seconds per message for *count* messages of 1 KiB (the workload (a) message)."""
    body = small_message()
    to = recipients(recipient_count)
    envelope_ok = b"250 2.1.0 ok\r\n" + b"250 2.1.5 ok\r\n" * recipient_count
    conn = ClientConnection()
    conn.receive_data(_GREETING)
    conn.next_event()
    conn.ehlo("bench.local")
    conn.data_to_send()
    conn.receive_data(_EHLO_CHUNKING if chunking else _EHLO)
    conn.next_event()
    started = time.process_time()
    for _ in range(count):
        transaction = conn.send_message(
            SENDER, to, body, pipeline_content_up_to=len(body) + 1 if chunking else 0
        )
        tail = b""
        while not transaction.done:
            sent = conn.data_to_send()
            if sent:
                # The final dot may come in a write of its own.
                sent = tail + sent[-6:]
                tail = sent[-5:]
                if sent.endswith(b"DATA\r\n"):
                    conn.receive_data(envelope_ok + b"354 go ahead\r\n")
                elif sent.endswith(b"\r\n.\r\n"):
                    conn.receive_data(b"250 2.0.0 accepted\r\n")
                elif chunking:
                    conn.receive_data(envelope_ok + b"250 2.0.0 accepted\r\n")
            if transaction.body_wanted:
                transaction.pull_body()
                continue
            stuck = not transaction.done and not transaction.body_wanted
            if conn.next_event() is NEED_DATA and not conn.data_to_send() and stuck:
                # Nothing sent and nothing to read: a fake-server bug, not a hang.
                raise RuntimeError("the fake server did not answer")
        if transaction.result.outcome is not MessageOutcome.ACCEPTED:
            raise RuntimeError(f"not accepted: {transaction.result}")
    return (time.process_time() - started) / count
