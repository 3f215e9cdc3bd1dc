"""Workload (e) for one client, in a process of its own: stream a large message from a
generator and report how much the process's peak resident memory grew.

``python -m bench.memory CLIENT PORT SIZE`` prints one JSON object: ``seconds`` and
``peak_growth`` (octets: the process's peak resident size at the end, less its resident
size just before the session, so an earlier, higher peak cannot hide the session's). A
process per client keeps one client's garbage from counting against another. The figures
are Linux's VmHWM and VmRSS: ``ru_maxrss`` is no use here, as Linux carries it over from
the forked parent across exec.
"""

from __future__ import annotations

import json
import sys
import time

from bench.clients import CLIENTS, Job
from bench.workloads import big_message_chunks, recipients


def _status(field: str) -> int:
    """A size from /proc/self/status, in octets."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # given in kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    name, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    run = CLIENTS[name]
    job = Job(port=port, count=1, to=recipients(1), chunks=lambda: big_message_chunks(size))
    # Warm up: the imports and the first connection allocate what every session needs.
    run(Job(port=port, count=1, to=recipients(1), body=b"Subject: warm\r\n\r\nup\r\n"))
    before = _status("VmRSS")
    started = time.perf_counter()
    run(job)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_growth": _status("VmHWM") - before}))


if __name__ == "__main__":
    main()
