"""Benchmark of GET /v1/commitments/overdue over HTTP, on PostgreSQL and SQLite.

1. Seeds 10k, 100k and 1M commitments into fresh PostgreSQL databases, and 10k and
   100k into fresh SQLite files (bulk rows proven identical to the service's, see
   seed_commitments.py), and checks the API's overdue count and first page against
   the seed.
2. Serves each with `nextstep serve --workers 1` and measures the first page
   (limit=100) from a few concurrent clients; serves bench/bare_app.py the same way
   as the ceiling for throughput.
3. Streams 100k overdue rows as CSV and samples the server's resident memory.

Usage: `make bench-overdue`, or `.venv/bin/python bench/overdue.py [--quick]`.
Everything runs on 127.0.0.1; databases, files and servers are removed at the end,
also after an error or Ctrl-C.
"""

import argparse
import asyncio
import math
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psycopg
import seed_commitments as seed
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlmodel import Session

from app.commitments import overdue as overdue_reads
from app.commitments.schemas import OverdueQuery
from app.db import build_engine
from app.migrate import upgrade

HOST = "127.0.0.1"
ADMIN_URL = os.environ.get(
    "NEXTSTEP_BENCH_POSTGRES_URL", f"postgresql://postgres@{HOST}:5432/postgres"
)
BIN = Path(sys.executable).parent
BENCH = Path(__file__).resolve().parent
PAGE = 100
OVERDUE_PATH = f"/v1/commitments/overdue?limit={PAGE}"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# No stage may take longer than this; the whole run normally takes a few minutes.
HARD_LIMIT_SECONDS = 40 * 60
TARGET_SIZE_RATIO = 1.5
TARGET_BARE_SHARE = 0.5
TARGET_CSV_GROWTH_MB = 50.0


class BenchError(RuntimeError):
    pass


@dataclass
class Budget:
    """Stops the run when it has gone on far longer than it should."""

    started: float = field(default_factory=time.monotonic)

    def check(self, stage: str) -> None:
        spent = time.monotonic() - self.started
        if spent > HARD_LIMIT_SECONDS:
            raise BenchError(f"gave up before {stage}: {spent:.0f} s spent")

    @property
    def spent(self) -> float:
        return time.monotonic() - self.started


# ---------------------------------------------------------------- machine and processes


def machine() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory_kb = int(meminfo.readline().split()[1])
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        buffers = conn.execute("SHOW shared_buffers").fetchone()
    return {
        "cpu": f"{os.cpu_count()} cores, {model}",
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": f"{row[0] if row else '?'} (shared_buffers {buffers[0] if buffers else '?'})",
        "sqlite": sqlite3.sqlite_version,
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def server_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTSTEP_")}
    env["NEXTSTEP_DATABASE_URL"] = database_url
    return env


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


@contextmanager
def serve(argv: list[str], env: dict[str, str], log: Path, ready_path: str) -> Iterator[Server]:
    """Start a server on a free port, wait until ``ready_path`` answers 200, stop it afterwards."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*argv, "--host", HOST, "--port", str(port), "--workers", "1"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://{HOST}:{port}", log)
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=2) as client:
            while True:
                if process.poll() is not None:
                    raise BenchError(
                        f"server exited with {process.returncode}:\n{server.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError(f"server not ready after 60 s:\n{server.log_tail()}")
                try:
                    if client.get(ready_path).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def serve_nextstep(database_url: str, log: Path) -> Any:
    return serve([str(BIN / "nextstep"), "serve"], server_env(database_url), log, "/readyz")


def serve_bare(log: Path) -> Any:
    argv = [sys.executable, str(BENCH / "bare_app.py")]
    return serve(argv, server_env("sqlite:///unused.db"), log, "/bare")


def create_read_key(database_url: str) -> str:
    done = subprocess.run(
        [str(BIN / "nextstep"), "keys", "create", "--name", "bench", "--scope", "read"],
        env=server_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"nextstep keys create failed: {done.stderr}")
    return done.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------- databases


class Databases:
    """Fresh PostgreSQL databases and SQLite files, all removed on exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.created: list[str] = []
        url = make_url(ADMIN_URL)
        if url.host not in (HOST, "localhost"):
            raise BenchError(f"the benchmark only talks to {HOST}, not {url.host}")

    def postgres_url(self, name: str) -> str:
        url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    @contextmanager
    def postgres(self, label: str) -> Iterator[str]:
        name = f"nextstep_bench_overdue_{label}_{os.getpid()}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        try:
            url = self.postgres_url(name)
            upgrade(url)
            yield url
        finally:
            self.drop(name)

    def drop(self, name: str) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.remove(name)

    @contextmanager
    def sqlite(self, label: str) -> Iterator[str]:
        path = self.directory / f"{label}.db"
        try:
            url = f"sqlite:///{path}"
            upgrade(url)
            yield url
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        for name in list(self.created):
            self.drop(name)


def load(url: str, mix: seed.Mix, now: datetime, seed_number: int) -> "Seeded":
    expected = seed.Expected()
    phases: dict[str, float] = {}
    started = time.perf_counter()
    if url.startswith("sqlite"):
        items = seed.generate(mix, now, seed_number, expected)
        rows = seed.batches(items, seed.sqlite_instant, expected)
        seed.load_sqlite(url.removeprefix("sqlite:///"), rows, phases)
    else:
        items = seed.generate(mix, now, seed_number, expected)
        rows = seed.batches(items, seed.postgres_instant, expected)
        seed.load_postgres(url.replace("postgresql+psycopg://", "postgresql://"), rows, phases)
    return Seeded(expected, time.perf_counter() - started, phases)


@dataclass
class Seeded:
    expected: seed.Expected
    seconds: float
    phases: dict[str, float]


def check_seed_rows(now: datetime, databases: Databases) -> None:
    """Bulk rows == service rows, on both databases, before anything is measured."""
    with databases.sqlite("check_service") as via, databases.sqlite("check_bulk") as bulk:
        compared = seed.check_against_service(now, seed.load_sqlite, via, bulk)
    with databases.postgres("check_service") as via, databases.postgres("check_bulk") as bulk:
        compared += seed.check_against_service(now, seed.load_postgres, via, bulk)
    print(f"seed check: {compared} bulk rows identical to the service's (SQLite and PostgreSQL)")


# ---------------------------------------------------------------- measuring


@dataclass
class Load:
    latencies: list[float]
    seconds: float
    server_cpu_seconds: float
    host_busy: float

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99(self) -> float:
        return self.percentile(0.99)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu_seconds / len(self.latencies) * 1000


async def _drive(
    base_url: str, path: str, headers: dict[str, str], total: int, concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = total
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=30, trust_env=False, limits=limits
    ) as client:

        async def one_client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise BenchError(f"GET {path}: {response.status_code} {response.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def measure(
    server: Server, path: str, headers: dict[str, str], requests: int, concurrency: int
) -> tuple[Load, Load]:
    """(concurrent load, one client at a time), after a warm-up."""
    wait_for_quiet()
    asyncio.run(_drive(server.base_url, path, headers, max(30, concurrency * 10), concurrency))
    cpu_before, host_before = process_cpu_seconds(server.pid), host_cpu()
    latencies, seconds = asyncio.run(_drive(server.base_url, path, headers, requests, concurrency))
    cpu_after, host_after = process_cpu_seconds(server.pid), host_cpu()
    busy = (host_after[0] - host_before[0]) / max(1, host_after[1] - host_before[1])
    concurrent = Load(latencies, seconds, cpu_after - cpu_before, busy)
    serial_latencies, serial_seconds = asyncio.run(
        _drive(server.base_url, path, headers, max(50, requests // 6), 1)
    )
    serial = Load(serial_latencies, serial_seconds, 0.0, 0.0)
    return concurrent, serial


def verify_api(server: Server, headers: dict[str, str], expected: seed.Expected) -> None:
    """The API must count and list exactly the overdue steps that were seeded."""
    with httpx.Client(
        base_url=server.base_url, headers=headers, timeout=120, trust_env=False
    ) as client:
        summary_path = "/v1/commitments/overdue/summary"
        for owed_by, count in (
            ("company", len(expected.overdue)),
            ("candidate", expected.overdue_candidate),
        ):
            answer = client.get(summary_path, params={"group_by": "owner", "owed_by": owed_by})
            answer.raise_for_status()
            found = sum(item["count"] for item in answer.json()["items"])
            if found != count:
                raise BenchError(f"{owed_by}-owed overdue: API says {found}, seeded {count}")
        page = client.get(OVERDUE_PATH)
        page.raise_for_status()
        items = page.json()["items"]
        if [item["id"] for item in items] != expected.first_page(PAGE):
            raise BenchError("the first overdue page is not the seeded most-overdue steps")
        if not all(item["is_overdue"] for item in items):
            raise BenchError("an item of the overdue page is not overdue")


@dataclass
class Statement:
    described: str
    ms: float
    plan: list[str]


@dataclass
class QueryProfile:
    in_process_ms: float
    statements: list[Statement]

    @property
    def sql_ms(self) -> float:
        return sum(s.ms for s in self.statements)


def _describe(statement: str) -> str:
    """e.g. "FROM commitment_version ... GROUP BY": enough to tell the endpoint's queries apart."""
    match = re.search(r"\bFROM\s+(\w+)", statement)
    grouped = " ... GROUP BY" if "GROUP BY" in statement.upper() else ""
    return f"FROM {match.group(1) if match else '?'}{grouped}"


def profile_query(url: str, repeats: int = 15) -> QueryProfile:
    """What list_overdue takes in-process, and each SELECT it sends: time alone and plan."""
    engine = build_engine(url)
    captured: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        captured.append((args[2], args[3]))  # statement, parameters, as sent to the driver

    event.listen(engine, "before_cursor_execute", capture)
    try:
        query = OverdueQuery(limit=PAGE)
        spent: list[float] = []
        for _ in range(repeats):
            captured.clear()
            with Session(engine) as session:
                as_of = datetime.now(UTC)
                started = time.perf_counter()
                overdue_reads.list_overdue(session, query, None, as_of)
                spent.append(time.perf_counter() - started)
        # SQLite's BEGIN goes through the same hook; only the SELECTs are the endpoint's.
        selects = [(s, p) for s, p in captured if s.lstrip().upper().startswith("SELECT")]
        event.remove(engine, "before_cursor_execute", capture)
        statements: list[Statement] = []
        with engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            for statement, parameters in selects:
                alone: list[float] = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    cursor.execute(statement, parameters)
                    cursor.fetchall()
                    alone.append(time.perf_counter() - started)
                if engine.dialect.name == "postgresql":
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                    plan = [row[0] for row in cursor.fetchall()]
                else:
                    cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                    plan = [row[3] for row in cursor.fetchall()]
                described = _describe(statement)
                statements.append(Statement(described, statistics.median(alone) * 1000, plan))
            cursor.close()
    finally:
        engine.dispose()
    return QueryProfile(statistics.median(spent) * 1000, statements)


def wait_for_quiet(threshold: float = 0.25, patience: float = 20) -> float:
    """Wait (at most ``patience`` s) for a second in which the machine is mostly idle.

    Other work on the machine skews every figure; the busy share is reported with them.
    """
    deadline = time.monotonic() + patience
    while True:
        before = host_cpu()
        time.sleep(1)
        after = host_cpu()
        busy = (after[0] - before[0]) / max(1, after[1] - before[1])
        if busy < threshold or time.monotonic() > deadline:
            return busy


class RssSampler(threading.Thread):
    """Reads a process's VmRSS every ``interval`` seconds until stopped (or ``limit`` seconds)."""

    def __init__(self, pid: int, interval: float = 0.02, limit: float = 900) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval, self.limit = pid, interval, limit
        self.samples: list[float] = []
        self.finished = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.finished.is_set() and time.monotonic() < deadline:
            try:
                self.samples.append(rss_mb(self.pid))
            except (OSError, BenchError):
                return
            self.finished.wait(self.interval)

    def stop(self) -> list[float]:
        self.finished.set()
        self.join(timeout=5)
        return self.samples


@dataclass
class Stream:
    rows: int
    megabytes: float
    seconds: float
    first_byte_seconds: float
    baseline_mb: float
    peak_mb: float
    end_mb: float
    samples: int

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.baseline_mb


def stream_csv(server: Server, headers: dict[str, str], expected_rows: int) -> Stream:
    """Read the whole CSV of overdue steps while sampling the server's memory."""
    timeout = httpx.Timeout(60, read=120)
    with httpx.Client(
        base_url=server.base_url, headers=headers, timeout=timeout, trust_env=False
    ) as client:
        for _ in range(5):  # the JSON path warmed up, so the baseline is the server's steady state
            client.get(OVERDUE_PATH).raise_for_status()
        baseline = rss_mb(server.pid)
        sampler = RssSampler(server.pid)
        sampler.start()
        lines = size = 0
        first_byte = 0.0
        header = b""
        deadline = time.monotonic() + 900
        started = time.perf_counter()
        try:
            with client.stream(
                "GET", "/v1/commitments/overdue", headers={"Accept": "text/csv"}
            ) as response:
                if response.status_code != 200:
                    raise BenchError(f"CSV: {response.status_code} {response.read()[:300]!r}")
                for chunk in response.iter_bytes():
                    if not size:
                        first_byte = time.perf_counter() - started
                        header = chunk[:40]
                    lines += chunk.count(b"\n")
                    size += len(chunk)
                    if time.monotonic() > deadline:
                        raise BenchError("the CSV stream took more than 15 minutes")
            seconds = time.perf_counter() - started
        finally:
            samples = sampler.stop()
    end = rss_mb(server.pid)
    if not header.startswith(b"id,"):
        raise BenchError(f"the CSV does not start with its id column: {header!r}")
    if lines - 1 != expected_rows:
        raise BenchError(f"CSV has {lines - 1} rows, {expected_rows} overdue steps were seeded")
    return Stream(
        rows=lines - 1,
        megabytes=size / 1024 / 1024,
        seconds=seconds,
        first_byte_seconds=first_byte,
        baseline_mb=baseline,
        peak_mb=max([baseline, *samples]),
        end_mb=end,
        samples=len(samples),
    )


# ---------------------------------------------------------------- the run


@dataclass
class Case:
    database: str
    size: int
    seeded: Seeded
    load: Load
    serial: Load
    profile: QueryProfile

    @property
    def label(self) -> str:
        return f"{self.database} {human(self.size)}"


def human(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def run_case(
    databases: Databases,
    database: str,
    size: int,
    now: datetime,
    args: argparse.Namespace,
    logs: Path,
) -> Case:
    label = f"{database[:2]}_{human(size).lower()}"
    fresh = databases.postgres(label) if database == "postgresql" else databases.sqlite(label)
    with fresh as url:
        print(f"\n== {database}, {size:,} commitments")
        seeded = load(url, seed.Mix.standard(size), now, seed_number=size)
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in seeded.phases.items())
        print(
            f"seeded {seeded.expected.rows:,} rows in {seeded.seconds:.1f} s ({phases}); "
            f"{len(seeded.expected.overdue):,} company-owed overdue"
        )
        key = create_read_key(url)
        headers = {"Authorization": f"Bearer {key}"}
        with serve_nextstep(url, logs / f"server-{label}.log") as server:
            verify_api(server, headers, seeded.expected)
            print("API agrees with the seed (overdue counts and first page)")
            concurrent, serial = measure(
                server, OVERDUE_PATH, headers, args.requests, args.concurrency
            )
        profile = profile_query(url)
    case = Case(database, size, seeded, concurrent, serial, profile)
    print(
        f"p50 {concurrent.p50:.1f} ms, p99 {concurrent.p99:.1f} ms, {concurrent.rps:.0f} req/s "
        f"({args.concurrency} clients, machine {concurrent.host_busy:.0%} busy); one client: "
        f"p50 {serial.p50:.1f} ms; list_overdue in-process {profile.in_process_ms:.1f} ms"
    )
    for statement in profile.statements:
        print(f"SELECT ... {statement.described}: {statement.ms:.2f} ms alone; plan:")
        print("    " + "\n    ".join(statement.plan))
    return case


def run_bare(args: argparse.Namespace, logs: Path) -> tuple[Load, Load]:
    with serve_bare(logs / "bare.log") as server:
        return measure(server, "/bare", {}, args.requests, args.concurrency)


def run_stream(databases: Databases, overdue: int, now: datetime, logs: Path) -> Stream:
    mix = seed.Mix(overdue, 500, 2000, 50, 2500, 75)
    with databases.postgres("csv") as url:
        print(f"\n== CSV stream: PostgreSQL with {overdue:,} company-owed overdue steps")
        seeded = load(url, mix, now, seed_number=42)
        print(f"seeded {seeded.expected.rows:,} rows in {seeded.seconds:.1f} s")
        headers = {"Authorization": f"Bearer {create_read_key(url)}"}
        with serve_nextstep(url, logs / "server-csv.log") as server:
            verify_api(server, headers, seeded.expected)
            return stream_csv(server, headers, len(seeded.expected.overdue))


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def report(
    cases: list[Case], bare: list[tuple[Load, Load]], stream: Stream, args: argparse.Namespace
) -> None:
    bare_rps = statistics.mean(b[0].rps for b in bare)
    print("\n## Results\n")
    print(
        f"First page (limit={PAGE}) of GET /v1/commitments/overdue, {args.requests} requests "
        f"from {args.concurrency} concurrent clients after a warm-up; 1 uvicorn worker.\n"
    )
    print(
        "| database | commitments | seed s | p50 ms | p99 ms | req/s | vs bare | "
        "server CPU ms/req | 1 client p50 ms | list_overdue ms | its SQL ms | machine busy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in cases:
        print(
            f"| {c.database} | {c.size:,} | {c.seeded.seconds:.1f} | {c.load.p50:.1f} | "
            f"{c.load.p99:.1f} | {c.load.rps:.0f} | {c.load.rps / bare_rps:.2f} | "
            f"{c.load.cpu_ms:.1f} | {c.serial.p50:.1f} | {c.profile.in_process_ms:.1f} | "
            f"{c.profile.sql_ms:.1f} | {c.load.host_busy:.0%} |"
        )
    for n, (b, serial) in enumerate(bare, 1):
        print(
            f"| bare FastAPI (run {n}) | - | - | {b.p50:.1f} | {b.p99:.1f} | {b.rps:.0f} | 1 | "
            f"{b.cpu_ms:.2f} | {serial.p50:.1f} | - | - | {b.host_busy:.0%} |"
        )
    print("\n### Targets\n")
    by = {(c.database, c.size): c for c in cases}
    small, large = by.get(("postgresql", 10_000)), by.get(("postgresql", 1_000_000))
    if small and large:
        for name in ("p50", "p99"):
            ratio = getattr(large.load, name) / getattr(small.load, name)
            print(
                f"- PostgreSQL {name} latency 1M / 10k = {ratio:.2f} "
                f"(target <= {TARGET_SIZE_RATIO}): {verdict(ratio <= TARGET_SIZE_RATIO)}"
            )
    else:
        print("- latency 1M / 10k: not measured (--quick)")
    sqlite_small, sqlite_large = by.get(("sqlite", 10_000)), by.get(("sqlite", 100_000))
    if sqlite_small and sqlite_large:
        ratio = sqlite_large.load.p50 / sqlite_small.load.p50
        print(f"- SQLite p50 latency 100k / 10k = {ratio:.2f} (for information)")
    bare_cpu = statistics.mean(b[0].cpu_ms for b in bare)
    for c in cases:
        share = c.load.rps / bare_rps
        print(
            f"- {c.label}: overdue req/s / bare req/s = {share:.2f} "
            f"(target >= {TARGET_BARE_SHARE}): {verdict(share >= TARGET_BARE_SHARE)}; "
            f"by server CPU per request {bare_cpu / c.load.cpu_ms:.3f}"
        )
    print(
        f"- CSV: {stream.rows:,} rows ({stream.megabytes:.1f} MB) in {stream.seconds:.1f} s "
        f"({stream.rows / stream.seconds:,.0f} rows/s, first byte after "
        f"{stream.first_byte_seconds * 1000:.0f} ms); server RSS baseline "
        f"{stream.baseline_mb:.1f} MB, peak {stream.peak_mb:.1f} MB, growth "
        f"{stream.growth_mb:.1f} MB (target <= {TARGET_CSV_GROWTH_MB:.0f} MB): "
        f"{verdict(stream.growth_mb <= TARGET_CSV_GROWTH_MB)}; {stream.end_mb:.1f} MB after, "
        f"{stream.samples} samples"
    )


def _stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every finally: servers stopped, databases dropped.
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k commitments only (smoke run)")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per case")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent clients")
    args = parser.parse_args()
    if not 1 <= args.concurrency <= 64 or not 10 <= args.requests <= 100_000:
        parser.error("--concurrency must be 1..64 and --requests 10..100000")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    budget = Budget()
    now = datetime.now(UTC)
    sizes = [10_000] if args.quick else [10_000, 100_000, 1_000_000]
    sqlite_sizes = [10_000] if args.quick else [10_000, 100_000]
    csv_overdue = 10_000 if args.quick else 100_000
    print(f"bench/overdue.py {' '.join(sys.argv[1:])} at {now:%Y-%m-%d %H:%M} UTC")
    for name, value in machine().items():
        print(f"{name}: {value}")
    with tempfile.TemporaryDirectory(prefix="nextstep-bench-") as directory:
        logs = Path(directory)
        databases = Databases(logs)
        try:
            check_seed_rows(now, databases)
            bare = [run_bare(args, logs)]
            cases: list[Case] = []
            for database, size in [("postgresql", s) for s in sizes] + [
                ("sqlite", s) for s in sqlite_sizes
            ]:
                budget.check(f"{database} {size}")
                cases.append(run_case(databases, database, size, now, args, logs))
            budget.check("the second bare run")
            bare.append(run_bare(args, logs))
            budget.check("the CSV stream")
            stream = run_stream(databases, csv_overdue, now, logs)
        finally:
            databases.close()
    report(cases, bare, stream, args)
    print(f"\ntotal time {budget.spent / 60:.1f} min")


if __name__ == "__main__":
    main()
