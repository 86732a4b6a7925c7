"""Soak test: a steady mix of event ingest and overdue queries against `nextstep serve`.

Starts the service as its own process on a fresh database (PostgreSQL by default,
``--sqlite`` for a file), sends requests at a fixed rate for ``--seconds`` (80% signed
events, 20% ``GET /v1/commitments/overdue``), samples the server's resident memory every
second, and prints the figures. Exits 1 when the RSS at the end is more than
``--max-growth`` percent above the RSS after the warm-up, or when any request failed
(a non-2xx answer, no answer, or an error in the server's log).

    .venv/bin/python bench/soak.py                      # 5 minutes on PostgreSQL
    .venv/bin/python bench/soak.py --seconds 60 --sqlite
"""

import argparse
import base64
import contextlib
import json
import os
import queue
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from standardwebhooks.webhooks import Webhook

from app.migrate import upgrade

SOURCE = "soak-ats"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DAY = timedelta(days=1)


@contextlib.contextmanager
def fresh_database(args: argparse.Namespace, workdir: Path) -> Iterator[str]:
    """A migrated database of the soak's own, removed afterwards."""
    if args.sqlite:
        url = f"sqlite:///{workdir / 'soak.db'}"
        upgrade(url)
        yield url
        return
    admin_url = make_url(args.postgres_url).set(drivername="postgresql+psycopg")
    name = f"nextstep_soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = admin_url.set(database=name).render_as_string(hide_password=False)
            upgrade(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def server(env: dict[str, str], port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"server exited with {process.returncode}: see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"server did not start within 30 s: see {log_path}")
                time.sleep(0.1)
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def create_key(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", "keys", "create", "--name", "soak", "--scope", "read"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


class Traffic:
    """The requests of the soak, in a fixed pattern: four events, then one overdue query.

    Events: a new completed interview with a next step (half of them), then a contact, a
    deadline change and a completion about interviews recorded before, so that the
    ingest, pending and update paths all run. The steps fall due in the past or the near
    future, so that the overdue list is never empty and keeps changing.
    """

    def __init__(self) -> None:
        self._sequence = 0
        self._interviews: list[str] = []
        self._lock = threading.Lock()
        self._signer = Webhook(SECRET)

    def next_request(self) -> tuple[str, str, bytes | None, dict[str, str]]:
        with self._lock:
            self._sequence += 1
            n = self._sequence
            if n % 5 == 0:
                return "overdue", "/v1/commitments/overdue?limit=50", None, {}
            now = datetime.now(UTC)
            kind = n % 10
            if kind in (1, 3, 6, 8) or len(self._interviews) < 10:
                interview = f"i-{n}"
                self._interviews.append(interview)
                del self._interviews[:-1000]
                body = self._event(
                    "interview.completed",
                    now - 4 * DAY,
                    {
                        "external_id": interview,
                        "candidate": {"external_id": f"c-{n}", "name": "Casey Candidate"},
                        "job": {"external_id": f"job-{n % 7}", "title": "Analyst"},
                        "stage": "First interview",
                        "ends_at": (now - 4 * DAY).isoformat(),
                        "next_steps": [
                            {
                                "external_id": f"s-{interview}",
                                "action": "Call the candidate to schedule the second interview",
                                "owner": {"id": f"hr-{n % 5}", "role": "hr"},
                                "channel": "call",
                                "due_at": (now - 4 * DAY + (n % 6) * DAY).isoformat(),
                            }
                        ],
                    },
                )
            else:
                interview = self._interviews[-1 - (n * 7919) % min(len(self._interviews), 500)]
                if kind in (2, 7):
                    body = self._event(
                        "candidate.contacted",
                        now,
                        {
                            "interview_external_id": interview,
                            "direction": "inbound",
                            "channel": "email",
                        },
                    )
                elif kind == 4:
                    body = self._event(
                        "next_step.updated",
                        now,
                        {
                            "external_id": f"s-{interview}",
                            "changes": {"due_at": (now + DAY).isoformat()},
                            "reason": "Moved by the soak test",
                        },
                    )
                else:
                    body = self._event(
                        "next_step.completed",
                        now,
                        {"external_id": f"s-{interview}", "outcome": "Done"},
                    )
            webhook_id = f"msg_{uuid.uuid4().hex}"
            timestamp = int(time.time())
            signature = self._signer.sign(
                webhook_id, datetime.fromtimestamp(timestamp, UTC), body.decode()
            )
            headers = {
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature,
                "content-type": "application/json",
            }
            return "event", f"/v1/events/{SOURCE}", body, headers

    @staticmethod
    def _event(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
        return json.dumps(
            {"type": event_type, "occurred_at": occurred_at.isoformat(), "data": data}
        ).encode()


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"event": [], "overdue": []})
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    late: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def worker(
    base_url: str,
    key: str,
    jobs: "queue.Queue[tuple[str, str, bytes | None, dict[str, str]] | None]",
    results: Results,
) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while (job := jobs.get()) is not None:
            kind, path, body, headers = job
            started = time.perf_counter()
            try:
                if body is None:
                    response = client.get(path, headers={"Authorization": f"Bearer {key}"})
                else:
                    response = client.post(path, content=body, headers=headers)
            except httpx.HTTPError as exc:
                with results.lock:
                    results.errors.append(f"{kind}: {exc!r}")
                continue
            elapsed = time.perf_counter() - started
            with results.lock:
                results.latencies[kind].append(elapsed)
                if response.is_success:
                    status = response.json().get("status", "ok") if kind == "event" else "ok"
                    results.statuses[f"{kind} {response.status_code} {status}"] += 1
                else:
                    results.statuses[f"{kind} {response.status_code}"] += 1
                    results.errors.append(f"{kind}: {response.status_code} {response.text[:200]}")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="nextstep-soak-") as tmp:
        workdir = Path(tmp)
        with fresh_database(args, workdir) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTSTEP_")}
            env.update(
                NEXTSTEP_DATABASE_URL=url,
                NEXTSTEP_WEBHOOK_SECRETS=json.dumps({SOURCE: [SECRET]}),
                NEXTSTEP_LOG_LEVEL="WARNING",
            )
            key = create_key(env)
            port = free_port()
            log_path = workdir / "server.log"
            with server(env, port, log_path) as process:
                figures = soak(args, f"http://127.0.0.1:{port}", key, process.pid)
            server_errors = [
                line
                for line in log_path.read_text(errors="replace").splitlines()
                if '"level": "ERROR"' in line or "Traceback" in line
            ]
    return report(args, figures, server_errors, make_url(url).get_backend_name())


@dataclass
class Figures:
    results: Results
    samples: list[tuple[float, int]]  # (seconds since start, RSS bytes)
    warmed_rss: int
    final_rss: int
    elapsed: float
    sent: int


def soak(args: argparse.Namespace, base_url: str, key: str, pid: int) -> Figures:
    results = Results()
    traffic = Traffic()
    jobs: queue.Queue[tuple[str, str, bytes | None, dict[str, str]] | None] = queue.Queue()
    workers = [
        threading.Thread(target=worker, args=(base_url, key, jobs, results), daemon=True)
        for _ in range(args.clients)
    ]
    for thread in workers:
        thread.start()
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    next_sample = started
    warmed_rss = 0
    interval = 1 / args.rate
    sent = 0
    last_print = started
    try:
        while (now := time.monotonic()) - started < args.seconds:
            due = started + sent * interval
            if now >= next_sample:
                samples.append((now - started, rss_bytes(pid)))
                next_sample += 1
                if not warmed_rss and now - started >= args.warmup:
                    warmed_rss = samples[-1][1]
            if now - last_print >= 30:
                last_print = now
                print(
                    f"  {now - started:5.0f} s  sent {sent:6d}  rss {mib(samples[-1][1])}  "
                    f"errors {len(results.errors)}",
                    flush=True,
                )
            if now < due:
                time.sleep(min(due - now, 0.01))
                continue
            if now - due > 1:
                results.late += 1  # the load generator itself fell behind
            jobs.put(traffic.next_request())
            sent += 1
    finally:
        for _ in workers:
            jobs.put(None)
        for thread in workers:
            thread.join(timeout=60)
    elapsed = time.monotonic() - started
    final_rss = rss_bytes(pid)
    samples.append((elapsed, final_rss))
    return Figures(results, samples, warmed_rss or samples[0][1], final_rss, elapsed, sent)


def report(
    args: argparse.Namespace, figures: Figures, server_errors: list[str], backend: str
) -> int:
    results = figures.results
    peak = max(rss for _t, rss in figures.samples)
    growth = 100 * (figures.final_rss - figures.warmed_rss) / figures.warmed_rss
    answered = sum(len(v) for v in results.latencies.values())
    print(f"soak: {backend}, {figures.elapsed:.0f} s at {args.rate:g} requests/s target")
    print(
        f"  requests: {figures.sent} sent, {answered} answered "
        f"({answered / figures.elapsed:.1f}/s), "
        f"{len(results.latencies['event'])} events, {len(results.latencies['overdue'])} overdue"
    )
    for name, count in sorted(results.statuses.items()):
        print(f"    {name}: {count}")
    for kind, values in results.latencies.items():
        print(
            f"  latency {kind:8s}: median {1000 * statistics.median(values or [0]):.1f} ms, "
            f"p99 {1000 * percentile(values, 0.99):.1f} ms, max {1000 * max(values or [0]):.1f} ms"
        )
    print(
        f"  server RSS: {mib(figures.warmed_rss)} after the {args.warmup:g} s warm-up, "
        f"{mib(figures.final_rss)} at the end ({growth:+.1f}%), peak {mib(peak)}"
    )
    by_minute = {int(t) // 60: (t, rss) for t, rss in figures.samples if int(t) % 60 == 0}
    checkpoints = sorted({*by_minute.values(), figures.samples[-1]})
    print("  RSS over time: " + ", ".join(f"{t:.0f} s {mib(r)}" for t, r in checkpoints))
    if results.late:
        print(f"  the load generator fell behind by > 1 s on {results.late} requests")
    errors = results.errors + server_errors
    print(f"  errors: {len(errors)}")
    for line in errors[:10]:
        print(f"    {line[:300]}")
    failed = False
    if growth > args.max_growth:
        print(f"FAIL: RSS grew {growth:.1f}% (limit {args.max_growth:g}%)")
        failed = True
    if errors:
        print("FAIL: requests failed or the server logged errors")
        failed = True
    if not failed:
        print(f"OK: RSS growth {growth:+.1f}% <= {args.max_growth:g}%, no errors")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=300, help="length of the run (300)")
    parser.add_argument("--rate", type=float, default=40, help="requests per second (40)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections (8)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds before the RSS baseline (60 or a fifth)",
    )
    parser.add_argument("--max-growth", type=float, default=10, help="allowed RSS growth, %% (10)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEXTSTEP_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="server to create the soak database on (NEXTSTEP_TEST_POSTGRES_URL)",
    )
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = min(60.0, args.seconds / 5)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
