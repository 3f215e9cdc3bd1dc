"""The benchmark: ``python -m bench.harness [--quick] [--repeats N]`` (``bash bench/run.sh``
sets up its environment first).

It starts, on 127.0.0.1 only, Postfix's ``smtp-sink`` (PIPELINING, no CHUNKING), the
benchmark's own CHUNKING sink (:mod:`bench.sink`, which validates what it receives) and,
for workload (d), delaying proxies (:mod:`bench.proxy`) in front of each; runs every client
on every workload ``repeats`` times, the clients of a workload taking turns; prints a table
of medians with each rate as a ratio to ``smtplib`` in the same run; and writes it all to
``bench/results.md``. Every server is a process of its own (so it does not compete with the
client for the interpreter), ends when this process closes its stdin or after a lifetime,
and is stopped here by its pid.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.clients import CLIENTS, OUR_CLIENTS, Job, NotApplicable
from bench.engine import engine_cpu_per_message
from bench.sink import canonical_digest
from bench.workloads import (
    big_message,
    big_message_chunks,
    canonical_digest_of_chunks,
    recipients,
    small_message,
)

HERE = Path(__file__).resolve().parent
# Servers end by themselves after this long even if this process dies without a word.
SERVER_LIFETIME = 900
MIB = 1024 * 1024


@dataclass(frozen=True)
class Scale:
    messages: int  # workload (a)
    multi_messages: int  # workload (b)
    big_size: int  # workload (c)
    delayed_messages: int  # workload (d)
    stream_size: int  # workload (e)
    engine_messages: int
    #: Seconds a client may spend on one run: a slow one stops early, after at least one
    #: message, and its rate is that of the messages it sent (the table says so).
    budget: float
    #: Servers workload (e) runs against (a process per client, each a whole stream).
    stream_servers: tuple[str, ...]


QUICK = Scale(200, 50, 8 * MIB, 50, 64 * MIB, 1000, 1.0, ("own sink",))
FULL = Scale(2000, 500, 32 * MIB, 200, 1024 * MIB, 20000, 3.5, ("own sink",))


# -- servers -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Servers:
    """The server processes, started on entering and stopped (by pid) on leaving."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in self._processes:
            with contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()
            with contextlib.suppress(OSError):
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def _python(self, module: str, *arguments: str) -> int:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments, "--lifetime", str(SERVER_LIFETIME)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=HERE.parent,
        )
        self._processes.append(process)
        assert process.stdout is not None
        port = int(process.stdout.readline())
        _wait_listening(port)
        return port

    def own_sink(self) -> int:
        return self._python("bench.sink", "--port", "0")

    def proxy(self, target_port: int, delay: float) -> int:
        return self._python("bench.proxy", "--target-port", str(target_port), "--delay", str(delay))

    def smtp_sink(self) -> int:
        port = _free_port()
        # -u: the user to run as (it refuses to run as root); the last argument is the
        # listen backlog. `timeout` makes sure it ends by itself.
        command = ["timeout", str(SERVER_LIFETIME), "smtp-sink", "-u", "nobody"]
        command += [f"127.0.0.1:{port}", "1000"]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self._processes.append(process)
        _wait_listening(port)
        return port


def _sink_command(port: int, command: bytes) -> bytes:
    """Send one of the own sink's control commands and return its reply's text."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as connection,
        connection.makefile("rb") as reader,
    ):
        reader.readline()  # the greeting
        connection.sendall(command + b"\r\n")
        reply = reader.readline()
        connection.sendall(b"QUIT\r\n")
        reader.readline()
    if not reply.startswith(b"250 "):
        raise RuntimeError(f"the sink refused {command!r}: {reply!r}")
    return reply[4:].strip()


def sink_stats(port: int) -> dict[str, object]:
    stats: dict[str, object] = json.loads(_sink_command(port, b"XSTATS"))
    return stats


def sink_reset(port: int) -> None:
    _sink_command(port, b"XRESET")


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    server: str
    client: str
    unit: str
    rates: list[float] = field(default_factory=list)
    cpu_per_message: list[float] = field(default_factory=list)
    note: str = ""
    pipelined: str = ""
    validated: str = ""
    ratio: float | None = None

    @property
    def rate(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None


#: How our clients are named in the rows where they pipeline whole messages.
WHOLE_MESSAGES = ", content pipelined"


@dataclass(frozen=True)
class Case:
    workload: str
    server: str
    port: int
    #: The port of the own sink to query for validation (None: smtp-sink, not checked).
    sink_port: int | None
    job: Job
    unit: str  # "msg/s" or "MiB/s"
    expected_digest: str
    clients: tuple[str, ...]
    #: Added to each client's name in the table, for a case that runs our clients with
    #: other options than the case of the same workload and server before it.
    variant: str = ""


@dataclass
class Tally:
    """One client's runs of one case, gathered run by run."""

    case: Case
    client: str
    row: Row
    problems: list[str] = field(default_factory=list)
    pipelined: list[bool] = field(default_factory=list)
    bare_lf: int = 0
    fewest: int = 0
    #: No further runs: the client cannot run this case, or a run failed.
    stopped: bool = False


def run_once(tally: Tally, budget: float) -> None:
    """Run *tally*'s client once on its case and add what it measured."""
    case, client, row = tally.case, tally.client, tally.row
    job = case.job
    size = len(job.body) if job.body is not None else 0
    if case.sink_port is not None:
        sink_reset(case.sink_port)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        sent = CLIENTS[client](dataclasses.replace(job, deadline=time.monotonic() + budget))
    except NotApplicable as reason:
        row.note = f"n/a: {reason}"
        tally.stopped = True
        return
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    amount = sent if case.unit == "msg/s" else sent * size / MIB
    row.rates.append(amount / elapsed)
    row.cpu_per_message.append(cpu / sent)
    tally.fewest = min(tally.fewest, sent)
    if case.sink_port is not None:
        stats = sink_stats(case.sink_port)
        digests = stats["digests"]
        assert isinstance(digests, dict)
        if stats["messages"] != sent:
            tally.problems.append(f"{stats['messages']} of {sent} messages arrived")
        elif client == "smtp-source (C)":
            pass  # it writes content of its own: only the count can be checked
        elif digests != {case.expected_digest: sent}:
            tally.problems.append("content differs")
        if stats["errors"]:
            tally.problems.append(str(stats["errors"]))
        max_commands = stats["max_commands_per_read"]
        assert isinstance(max_commands, int)
        tally.pipelined.append(max_commands > 1)
        bare = stats["bare_lf"]
        assert isinstance(bare, int)
        tally.bare_lf += bare


def finish(tally: Tally, budget: float, log: Callable[[str], None]) -> Row:
    """The row of *tally*'s client, once its runs are over."""
    case, client, row = tally.case, tally.client, tally.row
    if not row.rates:
        return row  # not applicable, or failed at its first run: the note says which
    if tally.fewest < case.job.count:
        row.note = f"time-capped: {tally.fewest} of {case.job.count} messages in {budget:g} s"
    if case.sink_port is None:
        row.validated = "not checked"
    else:
        problems = tally.problems
        row.validated = "; ".join(sorted(set(problems))) if problems else "ok"
        if not problems and client == "smtp-source (C)":
            row.validated = "count ok (its own content)"
        if tally.bare_lf:
            row.validated += f" ({tally.bare_lf // len(row.rates)} bare LF sent)"
        row.pipelined = "yes" if all(tally.pipelined) else "no"
    log(
        f"  {case.workload:<4} {case.server:<16} {client:<22} "
        f"{row.rate:10.1f} {case.unit}  {row.validated} {row.note}"
    )
    return row


def run_cases(
    cases: list[Case], repeats: int, budget: float, log: Callable[[str], None]
) -> list[Row]:
    rows = []
    # smtplib's rate per workload and server: a variant case has no smtplib run of its own.
    baselines: dict[tuple[str, str], float | None] = {}
    for case in cases:
        tallies = [
            Tally(
                case,
                client,
                Row(case.workload, case.server, client + case.variant, case.unit),
                fewest=case.job.count,
            )
            for client in case.clients
        ]
        # The clients take turns, one run each per round, rather than each running all its
        # repeats in a row: on a shared machine whose speed drifts, every client's median
        # then comes from the same stretches of time, and the ratios between them hold.
        for _ in range(repeats):
            for tally in tallies:
                if tally.stopped:
                    continue
                try:
                    run_once(tally, budget)
                except Exception as exc:  # a failing client is a result too
                    tally.row.note = f"failed: {type(exc).__name__}: {str(exc)[:120]}"
                    tally.row.rates.clear()
                    tally.stopped = True
                    log(
                        f"  {case.workload:<4} {case.server:<16} {tally.client:<22} "
                        f"{tally.row.note}"
                    )
        case_rows = [finish(tally, budget, log) for tally in tallies]
        key = (case.workload, case.server)
        for row in case_rows:
            if row.client == "smtplib":
                baselines[key] = row.rate
        baseline = baselines.get(key)
        for row in case_rows:
            if baseline and row.rate is not None:
                row.ratio = row.rate / baseline
        rows.extend(case_rows)
    return rows


# -- workload (e): memory, a process per client ---------------------------------------------


@dataclass
class MemoryRow:
    server: str
    client: str
    seconds: float = 0.0
    peak_growth: int = 0
    validated: str = ""
    note: str = ""


def measure_memory(
    server: str, port: int, sink_port: int | None, *, client: str, size: int, expected: str
) -> MemoryRow:
    row = MemoryRow(server, client)
    if sink_port is not None:
        sink_reset(sink_port)
    completed = subprocess.run(
        [sys.executable, "-m", "bench.memory", client, str(port), str(size)],
        capture_output=True,
        timeout=600,
        cwd=HERE.parent,
        check=False,
    )
    if completed.returncode != 0:
        row.note = "failed: " + completed.stderr.decode(errors="replace").strip()[-200:]
        return row
    result = json.loads(completed.stdout)
    row.seconds = result["seconds"]
    row.peak_growth = result["peak_growth"]
    if sink_port is None:
        row.validated = "not checked"
    else:
        stats = sink_stats(sink_port)
        ok = stats["messages"] == 2 and expected in stats["digests"]  # type: ignore[operator]
        row.validated = "ok" if ok else f"content differs: {stats['digests']}"
    return row


# -- the report ----------------------------------------------------------------------------


def _machine() -> str:
    memory = ""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB memory"
    return f"{os.cpu_count()} CPUs{memory}, {platform.machine()}, {platform.system()}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _postfix_version() -> str:
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        completed = subprocess.run(
            [postconf, "-d", "mail_version"], capture_output=True, timeout=10, check=False
        )
        return completed.stdout.decode().split("=")[-1].strip() or "unknown"
    return "unknown"


def _format_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.1f}"


def table(rows: list[Row]) -> list[str]:
    lines = [
        (
            "| workload | server | client | median | ratio to smtplib | CPU µs/msg "
            "| pipelined | checked by sink |"
        ),
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        rate = f"{_format_rate(row.rate)} {row.unit}" if row.rate is not None else row.note
        if row.rate is not None and row.note:
            rate += f" ({row.note})"
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        cpu = (
            f"{statistics.median(row.cpu_per_message) * 1e6:,.0f}"
            if row.cpu_per_message and row.unit == "msg/s"
            else "-"
        )
        lines.append(
            f"| {row.workload} | {row.server} | {row.client} | {rate} | {ratio} | {cpu} "
            f"| {row.pipelined or '-'} | {row.validated or '-'} |"
        )
    return lines


def _ratio(rows: list[Row], workload: str, server: str, client: str, baseline: str) -> float | None:
    found = {r.client: r.rate for r in rows if r.workload == workload and r.server == server}
    rate, base = found.get(client), found.get(baseline)
    if rate is None or not base:
        return None
    return rate / base


def targets(
    rows: list[Row], memory_rows: list[MemoryRow], engine_cpu: float, smtplib_cpu: float | None
) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(label: str, value: float | None, goal: float, unit: str = "x") -> None:
        if value is None:
            lines.append(f"| {label} | not measured | no |")
            return
        met = "met" if value >= goal else "NOT met"
        lines.append(f"| {label} | {value:.2f}{unit} | {met} |")

    for server, variant in (("smtp-sink", ""), ("own sink", ""), ("own sink", WHOLE_MESSAGES)):
        add(
            f"(a) {server}: sync Client{variant} >= 3.5x smtplib",
            _ratio(rows, "a", server, f"ours: sync Client{variant}", "smtplib"),
            3.5,
        )
        add(
            f"(a) {server}: asyncio Client{variant} >= 4x aiosmtplib",
            _ratio(rows, "a", server, f"ours: asyncio Client{variant}", "aiosmtplib"),
            4.0,
        )
        add(
            f"(a) {server}: trio Client{variant} >= 3x smtplib",
            _ratio(rows, "a", server, f"ours: trio Client{variant}", "smtplib"),
            3.0,
        )
        best_b = max(
            (v for c in OUR_CLIENTS if (v := _ratio(rows, "b", server, c + variant, "smtplib"))),
            default=None,
        )
        add(f"(b) {server}: best of ours{variant} >= 15x smtplib", best_b, 15.0)
    for server in ("smtp-sink", "own sink"):
        for client in OUR_CLIENTS:
            add(
                f"(c) {server}: {client} >= 1.5x smtplib MiB/s",
                _ratio(rows, "c", server, client, "smtplib"),
                1.5,
            )
            add(
                f"(c) {server}: {client} >= smtp-source MiB/s",
                _ratio(rows, "c", server, client, "smtp-source (C)"),
                1.0,
            )
    for client in OUR_CLIENTS:
        add(
            f"(d) smtp-sink (PIPELINING): {client} >= 3.8x smtplib",
            _ratio(rows, "d", "smtp-sink+10ms", client, "smtplib"),
            3.8,
        )
        add(
            f"(d) own sink (CHUNKING): {client} >= 15x smtplib",
            _ratio(rows, "d", "own sink+10ms", client, "smtplib"),
            15.0,
        )
    for memory_row in memory_rows:
        label = f"(e) {memory_row.server}: {memory_row.client} peak growth < 32 MiB"
        if memory_row.note:
            lines.append(f"| {label} | {memory_row.note} | no |")
        else:
            growth = memory_row.peak_growth / MIB
            lines.append(f"| {label} | {growth:.1f} MiB | {'met' if growth < 32 else 'NOT met'} |")
    if smtplib_cpu:
        share = engine_cpu / smtplib_cpu
        lines.append(
            f"| engine CPU/message <= 1/5 of smtplib's | {engine_cpu * 1e6:.0f} µs vs "
            f"{smtplib_cpu * 1e6:.0f} µs = 1/{1 / share:.1f} | "
            f"{'met' if share <= 0.2 else 'NOT met'} |"
        )
    return lines


# -- main ----------------------------------------------------------------------------------


def build_cases(scale: Scale, ports: dict[str, int], sink: int, sink_delayed: int) -> list[Case]:
    small = small_message()
    big = big_message(scale.big_size)
    small_digest = canonical_digest(small)
    big_digest = canonical_digest(big)
    everyone = tuple(CLIENTS)
    cases = []
    for server, port, sink_port in (
        ("smtp-sink", ports["smtp-sink"], None),
        ("own sink", ports["own sink"], sink),
    ):
        cases.append(
            Case(
                "a", server, port, sink_port,
                Job(port=port, count=scale.messages, to=recipients(1), body=small),
                "msg/s", small_digest, everyone,
            )
        )  # fmt: skip
        cases.append(
            Case(
                "b", server, port, sink_port,
                Job(port=port, count=scale.multi_messages, to=recipients(20), body=small),
                "msg/s", small_digest, everyone,
            )
        )  # fmt: skip
        if sink_port is not None:
            # With CHUNKING, content may travel with its envelope: the same messages again,
            # each going out whole in one write, several per round trip.
            for workload, job in (("a", cases[-2].job), ("b", cases[-1].job)):
                cases.append(
                    Case(
                        workload, server, port, sink_port,
                        dataclasses.replace(job, pipeline_content_up_to=len(small) + 1024),
                        "msg/s", small_digest, OUR_CLIENTS, WHOLE_MESSAGES,
                    )
                )  # fmt: skip
        cases.append(
            Case(
                "c", server, port, sink_port,
                Job(port=port, count=1, to=recipients(1), body=big),
                "MiB/s", big_digest, everyone,
            )
        )  # fmt: skip
    delayed = ports["smtp-sink+10ms"]
    cases.append(
        Case(
            "d", "smtp-sink+10ms", delayed, None,
            Job(port=delayed, count=scale.delayed_messages, to=recipients(1), body=small),
            "msg/s", small_digest, everyone,
        )
    )  # fmt: skip
    delayed = ports["own sink+10ms"]
    cases.append(
        Case(
            "d", "own sink+10ms", delayed, sink_delayed,
            Job(
                port=delayed, count=scale.delayed_messages, to=recipients(1), body=small,
                pipeline_content_up_to=len(small) + 1024,
            ),
            "msg/s", small_digest, ("smtplib", "ours: SMTP drop-in", *OUR_CLIENTS),
        )
    )  # fmt: skip
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description="smtp-proto's benchmark")
    parser.add_argument("--quick", action="store_true", help="a smaller run, for CI")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement")
    parser.add_argument(
        "--only", default="abcde", help="the workloads to run, as letters (default abcde)"
    )
    parser.add_argument("--output", default=str(HERE / "results.md"))
    arguments = parser.parse_args()
    scale = QUICK if arguments.quick else FULL
    repeats = max(1, arguments.repeats)
    began = time.monotonic()

    def log(line: str) -> None:
        print(line, flush=True)

    with Servers() as servers:
        ports = {"smtp-sink": servers.smtp_sink(), "own sink": servers.own_sink()}
        sink_delayed = servers.own_sink()  # its own, so (d) is counted apart
        ports["smtp-sink+10ms"] = servers.proxy(ports["smtp-sink"], 0.005)
        ports["own sink+10ms"] = servers.proxy(sink_delayed, 0.005)
        log(f"servers: {ports}")
        cases = [
            c for c in build_cases(scale, ports, ports["own sink"], sink_delayed)
            if c.workload in arguments.only
        ]  # fmt: skip
        rows = run_cases(cases, repeats, scale.budget, log)

        log("engine microbenchmark")
        engine_cpu = statistics.median(
            engine_cpu_per_message(scale.engine_messages) for _ in range(repeats)
        )
        engine_cpu_chunking = statistics.median(
            engine_cpu_per_message(scale.engine_messages, chunking=True) for _ in range(repeats)
        )
        smtplib_rows = [
            r for r in rows if r.workload == "a" and r.server == "smtp-sink"
            and r.client == "smtplib" and r.cpu_per_message
        ]  # fmt: skip
        smtplib_cpu = statistics.median(smtplib_rows[0].cpu_per_message) if smtplib_rows else None

        memory_rows: list[MemoryRow] = []
        if "e" in arguments.only:
            log(f"workload (e): {scale.stream_size // MIB} MiB streamed, a process per client")
            expected = canonical_digest_of_chunks(big_message_chunks(scale.stream_size))
            for server, port, sink_port in (
                ("own sink", ports["own sink"], ports["own sink"]),
                ("smtp-sink", ports["smtp-sink"], None),
            ):
                if server not in scale.stream_servers:
                    continue
                for client in OUR_CLIENTS:
                    memory_row = measure_memory(
                        server,
                        port,
                        sink_port,
                        client=client,
                        size=scale.stream_size,
                        expected=expected,
                    )
                    memory_rows.append(memory_row)
                    log(
                        f"  e    {server:<16} {client:<22} "
                        f"{memory_row.peak_growth / MIB:8.1f} MiB growth "
                        f"{memory_row.seconds:6.2f} s {memory_row.validated}{memory_row.note}"
                    )

    elapsed = time.monotonic() - began
    report = [
        f"# smtp-proto benchmark ({'quick' if arguments.quick else 'full'} run)",
        "",
        "Generated by `bash bench/run.sh"
        + (" --quick" if arguments.quick else "")
        + "`; do not edit by hand.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        (
            f"- smtp-proto {_version('smtp-proto')}, aiosmtplib {_version('aiosmtplib')}, "
            f"smtpproto {_version('smtpproto')}, trio {_version('trio')}, "
            f"Postfix (smtp-sink, smtp-source) {_postfix_version()}"
        ),
        f"- machine: {_machine()}",
        (
            f"- medians of {repeats} runs, the clients of each workload taking turns; "
            f"the benchmark took {elapsed:.0f} s"
        ),
        (
            f"- sizes: (a) {scale.messages} messages of 1 KiB, 1 recipient; "
            f"(b) {scale.multi_messages} messages with 20 recipients; "
            f"(c) one message of {scale.big_size // MIB} MiB, a quarter of its lines starting "
            f"with '.', half its line endings bare LF; (d) {scale.delayed_messages} messages as "
            f"(a) through a proxy adding 5 ms each way; (e) {scale.stream_size // MIB} MiB "
            f"streamed from a generator"
        ),
        "",
        (
            "Every client uses one connection and sends its messages one after the other. "
            "smtp-sink announces PIPELINING but not CHUNKING; the own sink announces both, so "
            "our clients use BDAT there and DATA with smtp-sink. For (d) on the own sink, and "
            f"in the rows '{WHOLE_MESSAGES[2:]}' of (a) and (b), our clients pass "
            "`pipeline_content_up_to`, so each message goes out whole in one write, several "
            "messages per round trip. smtp-source writes its own headers (same payload size) "
            "and, for (c), sends the same file with `-F`. CPU µs/msg is the client process's "
            "CPU time per message."
        ),
        (
            "The own sink checks every message: the count, and the SHA-256 of the content after "
            "un-stuffing with every line ending made CRLF; 'bare LF sent' means the client did "
            "not normalise line endings (smtplib sends bytes as given). 'pipelined' means some "
            "read held more than one command."
        ),
        "",
        "## Throughput",
        "",
        *table(rows),
        "",
        "## Engine alone (no sockets)",
        "",
        (
            f"- ClientConnection with send_transactions (what send_messages runs) against an "
            f"in-memory server, 1 KiB messages: "
            f"{engine_cpu * 1e6:.0f} µs CPU per message with PIPELINING and DATA, "
            f"{engine_cpu_chunking * 1e6:.0f} µs with CHUNKING and whole-message pipelining "
            f"({scale.engine_messages} messages, median of {repeats})"
        ),
        "- smtplib in (a) against smtp-sink: "
        + (f"{smtplib_cpu * 1e6:.0f} µs CPU per message" if smtplib_cpu else "not measured"),
        "",
        "## Memory, workload (e)",
        "",
        "| server | client | peak RSS growth | seconds | checked by sink |",
        "|---|---|---:|---:|---|",
        *(
            f"| {m.server} | {m.client} | {m.peak_growth / MIB:.1f} MiB | {m.seconds:.2f} | "
            f"{m.note or m.validated} |"
            for m in memory_rows
        ),
        "",
        "## Targets",
        "",
        *targets(rows, memory_rows, engine_cpu, smtplib_cpu),
        "",
    ]
    text = "\n".join(report)
    Path(arguments.output).write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
