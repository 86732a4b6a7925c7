"""Event ingestion: signed `interview.completed` events against the real server and a bare app.

For each database (a SQLite file, a fresh PostgreSQL database) the script migrates the
database, starts `nextstep serve --workers 1` on it, and sends signed canonical events
(`interview.completed` with one next step each; unique webhook, interview and step ids)
over 16 keep-alive connections, after a warm-up: 4000 events or 30 s, whichever ends
first (`--quick`: 600 events or 10 s). In the same run it sends the same kind of load to
`bench/bare_ingest_app.py`, which only verifies the signature and parses the body: the
ceiling for this machine, client and server stack. It prints requests/s, p50/p99 latency,
non-2xx answers, the server process's CPU time per request (from /proc/<pid>/stat, the
steadier figure when other work shares the machine) and the ratio server/bare.

After each run against the real server it stops the server and checks that every
acknowledged delivery was stored and applied: the stored deliveries are exactly the
acknowledged ones, with one interview and one commitment each. Any non-2xx answer or
lost acknowledgement makes the exit status 1.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams with the requests
rendered (and signed) up front, so that its own CPU cost stays far below the server's on
a small machine: a heavier client would cap the bare app and flatter the ratio.

    .venv/bin/python bench/ingest.py [--quick] [--databases sqlite,postgresql]
        [--events N] [--seconds S] [--postgres-url URL]
        [--profile DIR [--profile-format flamegraph|speedscope|raw]]

`--profile` records the real server with py-spy (`.venv/bin/pip install py-spy`) during
the measured load. The PostgreSQL URL defaults to NEXTSTEP_BENCH_POSTGRES_URL, then
NEXTSTEP_TEST_POSTGRES_URL, then postgresql://postgres@127.0.0.1:5432/postgres; the script
creates and drops its own database (nextstep_bench_ingest_*) there. Only 127.0.0.1 is used.
Servers, databases and files are removed at the end, also after an error, Ctrl-C or SIGTERM.
"""

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from standardwebhooks.webhooks import Webhook

from app.migrate import upgrade

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SOURCE = "bench"
CONCURRENCY = 16
TARGET_RATIO = 0.4
READY_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Outcome:
    """What one load phase saw."""

    sent: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    delivery_ids: set[str] = field(default_factory=set)
    cpu: float = 0.0  # CPU seconds the server process spent during the load

    @property
    def cpu_per_request_us(self) -> float:
        return self.cpu / self.sent * 1e6 if self.sent else 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def non_2xx(self) -> int:
        return self.sent - self.ok

    @property
    def rps(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def merge(self, other: "Outcome") -> None:
        self.statuses.update(other.statuses)
        self.answers.update(other.answers)
        self.delivery_ids |= other.delivery_ids


# --- events -------------------------------------------------------------------------------


def event_body(tag: str, index: int, ended: datetime) -> bytes:
    interview = f"bench-{tag}-{index}"
    return json.dumps(
        {
            "type": "interview.completed",
            "occurred_at": ended.isoformat(),
            "data": {
                "external_id": interview,
                "candidate": {
                    "external_id": f"cand-{tag}-{index}",
                    "name": "Casey Candidate",
                    "email": "casey@example.com",
                },
                "job": {"external_id": "job-9", "title": "Analyst"},
                "stage": "First interview",
                "interviewers": [{"external_id": "iv-7", "name": "Ines Interviewer"}],
                "starts_at": (ended - timedelta(hours=1)).isoformat(),
                "ends_at": ended.isoformat(),
                "next_steps": [
                    {
                        "external_id": f"{interview}-step",
                        "action": "Call Casey to schedule the second interview",
                        "owner": {"id": "hr-1", "name": "Harriet", "role": "hr"},
                        "channel": "call",
                        "due_at": (ended + timedelta(days=3)).isoformat(),
                    }
                ],
            },
        }
    ).encode()


def signed_requests(
    secret: str,
    tag: str,
    count: int,
    body_of: Callable[[str, int, datetime], bytes] = event_body,
) -> list[bytes]:
    """Whole HTTP/1.1 requests, signed now (valid for the 5-minute tolerance), with the
    bodies ``body_of(tag, index, ended)`` makes."""
    webhook = Webhook(secret)
    now = datetime.now(UTC)
    ended = now - timedelta(days=1)
    requests = []
    for index in range(count):
        body = body_of(tag, index, ended)
        webhook_id = f"msg_{tag}_{index}"
        signature = webhook.sign(webhook_id, now, body.decode())
        head = (
            f"POST /v1/events/{SOURCE} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"webhook-id: {webhook_id}\r\n"
            f"webhook-timestamp: {int(now.timestamp())}\r\n"
            f"webhook-signature: {signature}\r\n"
            "\r\n"
        )
        requests.append(head.encode() + body)
    return requests


# --- the client ---------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server closes the connection after it."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(p[:-2] for p in parts)
    else:
        body = await reader.read()
    return status, body, headers.get("connection", "").lower() == "close"


async def run_load(port: int, requests: list[bytes], seconds: float) -> Outcome:
    """Sends ``requests`` over CONCURRENCY connections until done or ``seconds`` have passed."""
    outcome = Outcome()
    position = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        nonlocal position
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while position < len(requests) and time.perf_counter() < deadline:
                request = requests[position]
                position += 1
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                sent_at = time.perf_counter()
                outcome.sent += 1
                try:
                    writer.write(request)
                    status, body, close = await asyncio.wait_for(
                        read_response(reader), REQUEST_TIMEOUT_S
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    outcome.statuses[0] += 1  # no answer at all
                    writer.close()
                    reader = writer = None
                    continue
                outcome.latencies.append(time.perf_counter() - sent_at)
                outcome.statuses[status] += 1
                if 200 <= status < 300:
                    answer = json.loads(body)
                    outcome.answers[answer["status"]] += 1
                    outcome.delivery_ids.add(answer["delivery_id"])
                if close:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    outcome.elapsed = time.perf_counter() - started
    return outcome


def load(port: int, requests: list[bytes], seconds: float) -> Outcome:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_load(port, requests, seconds))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_load(port, requests, seconds))


# --- processes and databases --------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], port: int, ready_path: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Starts a server, waits until ``ready_path`` answers 200, and stops it afterwards."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=env, cwd=HERE, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited at start:\n{tail(log)}")
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1.0)
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} not ready after {READY_TIMEOUT_S}s")
                time.sleep(0.1)
            yield process
        finally:
            stop(process)


@contextlib.contextmanager
def profiling(pid: int, out: Path | None, form: str) -> Iterator[None]:
    """Records the server with py-spy while the block runs, when asked to."""
    if out is None:
        yield
        return
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if py_spy is None:
        print("  (py-spy not installed: .venv/bin/pip install py-spy; not profiling)")
        yield
        return
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--nonblocking",
            "--gil",
            "-f",
            form,
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait(timeout=5)
        print(f"  profile: {out}")


@contextlib.contextmanager
def sqlite_database(workdir: Path) -> Iterator[str]:
    yield f"sqlite:///{workdir / 'ingest.db'}"


@contextlib.contextmanager
def postgresql_database(admin_url: str) -> Iterator[str]:
    url = make_url(admin_url).set(drivername="postgresql+psycopg")
    if url.host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the PostgreSQL URL must point at 127.0.0.1, not {url.host!r}")
    name = f"nextstep_bench_ingest_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def stored(url: str) -> tuple[set[str], int, int, int]:
    """Applied delivery ids, all deliveries, interviews and commitments in the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            applied = {
                str(uuid.UUID(str(row[0])))
                for row in conn.execute(text("SELECT id FROM delivery WHERE result = 'applied'"))
            }
            counts = [
                int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in ("delivery", "interview", "commitment")
            ]
    finally:
        engine.dispose()
    return applied, counts[0], counts[1], counts[2]


# --- phases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    events: int
    warmup: int
    seconds: float
    workers: int
    profile_dir: Path | None
    profile_format: str = "flamegraph"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), 0.0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    process: subprocess.Popen[bytes], port: int, secret: str, plan: Plan, profile: Path | None
) -> tuple[Outcome, Outcome]:
    """A warm-up, then the measured load; each signed just before it is sent."""
    warmup = load(port, signed_requests(secret, f"w{uuid.uuid4().hex[:8]}", plan.warmup), 60)
    requests = signed_requests(secret, f"m{uuid.uuid4().hex[:8]}", plan.events)
    with profiling(process.pid, profile, plan.profile_format):
        started = cpu_seconds(process.pid)
        measured = load(port, requests, plan.seconds)
        measured.cpu = cpu_seconds(process.pid) - started
    return warmup, measured


def bench_bare(env: dict[str, str], secret: str, plan: Plan, workdir: Path) -> Outcome:
    port = free_port()
    command = [
        sys.executable,
        str(HERE / "bare_ingest_app.py"),
        "--port",
        str(port),
        "--workers",
        str(plan.workers),
    ]
    with running(command, env, port, "/openapi.json", workdir / "bare.log") as process:
        _warmup, measured = measure(process, port, secret, plan, None)
    return measured


def bench_server(
    label: str, url: str, env: dict[str, str], secret: str, plan: Plan, workdir: Path
) -> tuple[Outcome, list[str]]:
    """The measured load on the real server, and what the stored data says about it."""
    upgrade(url)
    port = free_port()
    env = {**env, "NEXTSTEP_DATABASE_URL": url}
    command = [
        str(BIN / "nextstep"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(plan.workers),
    ]
    log = workdir / f"server-{label}.log"
    suffix = {"flamegraph": "svg", "speedscope": "json", "raw": "txt"}[plan.profile_format]
    profile = plan.profile_dir / f"ingest-{label}.{suffix}" if plan.profile_dir else None
    with running(command, env, port, "/readyz", log) as process:
        warmup, measured = measure(process, port, secret, plan, profile)
    problems = check_stored(url, warmup, measured)
    if measured.non_2xx or warmup.non_2xx:
        problems.append(f"server log tail:\n{tail(log)}")
    return measured, problems


def check_stored(url: str, warmup: Outcome, measured: Outcome) -> list[str]:
    """Every acknowledged delivery is stored and applied, with nothing else besides."""
    both = Outcome()
    both.merge(warmup)
    both.merge(measured)
    acknowledged = warmup.ok + measured.ok
    applied, deliveries, interviews, commitments = stored(url)
    problems = []
    if set(both.answers) - {"applied"}:
        problems.append(f"answers other than applied: {dict(both.answers)}")
    if applied != both.delivery_ids:
        lost = len(both.delivery_ids - applied)
        extra = len(applied - both.delivery_ids)
        problems.append(f"{lost} acknowledged deliveries not applied, {extra} unacknowledged")
    if not deliveries == interviews == commitments == acknowledged:
        problems.append(
            f"{acknowledged} acknowledged, but {deliveries} deliveries, {interviews} interviews "
            f"and {commitments} commitments stored"
        )
    print(
        f"  stored: {deliveries} deliveries, {interviews} interviews, {commitments} commitments;"
        f" {acknowledged} acknowledged (warm-up included) -> {'ok' if not problems else 'FAIL'}"
    )
    return problems


def row(label: str, outcome: Outcome) -> str:
    return (
        f"  {label:8} {outcome.sent:7d} {outcome.rps:9.1f} {outcome.percentile(0.5):8.1f}"
        f" {outcome.percentile(0.99):8.1f} {outcome.non_2xx:8d} {outcome.cpu_per_request_us:9.0f}"
    )


def run_database(
    label: str, url: str, secret: str, plan: Plan, workdir: Path
) -> tuple[float, list[str]]:
    env = {
        **os.environ,
        "NEXTSTEP_WEBHOOK_SECRETS": json.dumps({SOURCE: [secret]}),
        "NEXTSTEP_LOG_LEVEL": "INFO",
    }
    env.pop("NEXTSTEP_DATABASE_URL", None)
    bare = bench_bare(env, secret, plan, workdir)
    server, problems = bench_server(label, url, env, secret, plan, workdir)
    ratio = server.rps / bare.rps if bare.rps else 0.0
    print(
        f"  {'app':8} {'sent':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
        f" {'cpu us/req':>9}"
    )
    print(row("bare", bare))
    print(row("server", server))
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print(f"  ratio server/bare: {ratio:.2f} ({verdict} the target of {TARGET_RATIO})")
    if server.cpu and bare.cpu:
        # Less sensitive than req/s to other work on the machine.
        cpu_ratio = bare.cpu_per_request_us / server.cpu_per_request_us
        print(f"  server process CPU per request, bare/server: {cpu_ratio:.2f}")
    print(f"  load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if bare.non_2xx or server.non_2xx:
        problems.append(
            f"non-2xx answers: bare {dict(bare.statuses)}, server {dict(server.statuses)}"
        )
    return ratio, problems


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (600 events, 10 s)")
    parser.add_argument("--events", type=int, help="events per measured run (default 4000)")
    parser.add_argument("--seconds", type=float, help="cap per measured run (default 30)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEXTSTEP_BENCH_POSTGRES_URL")
        or os.environ.get("NEXTSTEP_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL,
    )
    parser.add_argument("--profile", type=Path, help="record the server with py-spy into DIR")
    parser.add_argument(
        "--profile-format", choices=["flamegraph", "speedscope", "raw"], default="flamegraph"
    )
    args = parser.parse_args()
    plan = Plan(
        events=args.events or (600 if args.quick else 4000),
        warmup=100 if args.quick else 300,
        seconds=args.seconds or (10.0 if args.quick else 30.0),
        workers=args.workers,
        profile_dir=args.profile.resolve() if args.profile else None,
        profile_format=args.profile_format,
    )
    if plan.profile_dir:
        plan.profile_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)  # so that the finally blocks run
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    print(
        f"ingest: {plan.events} signed interview.completed events (1 next step each), "
        f"{CONCURRENCY} connections, {plan.workers} worker(s), warm-up {plan.warmup}"
    )
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nextstep-bench-ingest-") as tmp:
        workdir = Path(tmp)
        for label in [d.strip() for d in args.databases.split(",") if d.strip()]:
            print(f"{label}:")
            try:
                if label == "sqlite":
                    database = sqlite_database(workdir)
                elif label == "postgresql":
                    database = postgresql_database(args.postgres_url)
                else:
                    raise ValueError(f"unknown database {label!r}")
                with database as url:
                    _ratio, problems = run_database(label, url, secret, plan, workdir)
            except Exception as exc:
                problems = [f"{type(exc).__name__}: {exc}"]
            failures += [f"{label}: {p}" for p in problems]
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
