"""A loopback TCP proxy that delays each direction's data, to imitate a network round trip.

Every block read from one side is written to the other *delay* seconds after it arrived, in
order, so with 5 ms each way a client sees a 10 ms round trip while the bandwidth stays that
of loopback. Pipelining shows up exactly as on a real network: commands sent together cost
one round trip, commands sent one by one cost one each.

Run it in-process with :class:`DelayProxy` (the test does), or as a process of its own,
``python -m bench.proxy --target-port 2525 --delay 0.005 --lifetime 600``, which prints the
port it listens on. It binds 127.0.0.1 only and exits by itself after ``--lifetime``
seconds, or when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from bench._lifetime import wait_for_end

__all__ = ["DelayProxy"]

_READ_SIZE = 256 * 1024


class DelayProxy:
    """Listens on 127.0.0.1 and forwards each connection to 127.0.0.1:*target_port*."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            client_writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(
                self._forward(client_reader, server_writer),
                self._forward(server_reader, client_writer),
            )
        finally:
            self._tasks.discard(task)
            for writer in (client_writer, server_writer):
                writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy *reader* to *writer*, each block *delay* seconds after it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, block = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not block:
                    with contextlib.suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                writer.write(block)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                try:
                    block = await reader.read(_READ_SIZE)
                except OSError:
                    block = b""
                queue.put_nowait((loop.time() + self.delay, block))
                if not block:
                    break
            await delivering
        except (OSError, asyncio.CancelledError):
            delivering.cancel()
            raise


async def _serve(target_port: int, delay: float, lifetime: float) -> None:
    proxy = DelayProxy(target_port, delay)
    print(await proxy.start(), flush=True)
    await wait_for_end(lifetime)
    await proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.005)
    parser.add_argument("--lifetime", type=float, default=600.0)
    arguments = parser.parse_args()
    asyncio.run(_serve(arguments.target_port, arguments.delay, arguments.lifetime))


if __name__ == "__main__":
    main()
