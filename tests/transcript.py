"""An in-memory peer: play a scripted server against the engine, in every way of feeding.

A script is a list of steps. ``bytes`` are what the server sends (``b""`` closes the
connection); a callable is what the client does, given the connection. Playing a script
collects every event the engine produced and every byte it wrote.

:func:`play_every_way` plays a script three times and demands the same events and the same
bytes each time: each server step fed whole, fed one byte at a time, and adjacent server
steps fed together with a partial next reply trailing after the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from smtp_proto import NEED_DATA, PAUSED, ClientConnection, ConnectionClosed, Event, Sentinel, State

Step = bytes | Callable[[ClientConnection], object]
Mode = Literal["whole", "bytewise", "trailing"]


@dataclass
class Outcome:
    connection: ClientConnection
    events: list[Event | Sentinel] = field(default_factory=list)
    sent: bytes = b""


def drain(conn: ClientConnection, outcome: Outcome) -> None:
    """Pull events until the engine needs data or pauses, flushing its outbox as it goes."""
    for _ in range(10_000):
        event = conn.next_event()
        outcome.sent += conn.data_to_send()
        if event is NEED_DATA:
            return
        outcome.events.append(event)
        # PAUSED and ConnectionClosed repeat until something changes: stop at the first.
        if event is PAUSED or isinstance(event, ConnectionClosed):
            return
    raise AssertionError("next_event() never asked for data")  # pragma: no cover


def _feeds(script: list[Step], mode: Mode) -> list[Step]:
    if mode != "trailing":
        return script
    merged: list[Step] = []
    for step in script:
        if (
            isinstance(step, bytes)
            and step
            and merged
            and isinstance(merged[-1], bytes)
            and merged[-1]
        ):
            merged[-1] += step
        else:
            merged.append(step)
    return merged


def play(script: list[Step], mode: Mode = "whole", **options: object) -> Outcome:
    conn = ClientConnection(**options)  # type: ignore[arg-type]
    outcome = Outcome(conn)
    for step in _feeds(script, mode):
        if isinstance(step, bytes):
            pieces = [step[i : i + 1] for i in range(len(step))] if mode == "bytewise" else [step]
            for piece in pieces or [b""]:
                conn.receive_data(piece)
                drain(conn, outcome)
        else:
            step(conn)
            outcome.sent += conn.data_to_send()
            drain(conn, outcome)
    if mode == "trailing" and conn.state not in (State.TLS_HANDSHAKE, State.CLOSED):
        # The start of a reply that has not finished arriving changes nothing.
        conn.receive_data(b"2")
        assert conn.next_event() is NEED_DATA
    return outcome


def play_every_way(script: list[Step], **options: object) -> Outcome:
    whole = play(script, "whole", **options)
    modes: tuple[Mode, ...] = ("bytewise", "trailing")
    for mode in modes:
        other = play(script, mode, **options)
        assert other.events == whole.events, mode
        assert other.sent == whole.sent, mode
    return whole


def events_of(outcome: Outcome) -> list[str]:
    """The events' class names, for compact assertions about a session's course."""
    return [
        type(event).__name__ if isinstance(event, Event) else repr(event)
        for event in outcome.events
    ]
