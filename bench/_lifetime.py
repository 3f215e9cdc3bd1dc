"""How the benchmark's servers end by themselves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys


async def wait_for_end(lifetime: float) -> None:
    """Return after *lifetime* seconds, or sooner when stdin reaches its end (the process
    that started this one closed the pipe, or died)."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data and not ended.done():
            ended.set_result(None)

    watching = False
    with contextlib.suppress(OSError, ValueError, PermissionError):
        loop.add_reader(fd, readable)
        watching = True
    try:
        await asyncio.wait_for(ended, lifetime)
    except TimeoutError:
        pass
    finally:
        if watching:
            loop.remove_reader(fd)
