"""Floor benchmark: the real server against the least any implementation must do.

`overdue.py` and `ingest.py` compare the real server with bare FastAPI apps that touch no
database, and set targets on that ratio. Some of the gap is the database work itself,
which no implementation can skip. This script measures, in the same run and with the same
clients, a third app between the two: bench/floor_apps.py, which does only that work on
this stack (FastAPI and uvicorn with one worker, raw psycopg or sqlite3, no SQLAlchemy,
middleware or validation). Its ratio to the bare app is the highest any implementation
can reach on this machine, the yardstick for the real server's ratio.

For each database (a SQLite file, a fresh PostgreSQL database):

- overdue: 10,000 commitments seeded as overdue.py seeds them; bench/bare_app.py, the
  floor's GET /floor/overdue (checked to answer the seeded first page) and the real
  server's GET /v1/commitments/overdue?limit=100, each measured with overdue.py's httpx
  client: 4 concurrent clients, 300 requests after a warm-up (`--quick`: 150).
- ingest: one real event ingested in-process gives the rows the service writes for it;
  the floor writes those rows per event with fresh ids. bench/bare_ingest_app.py, the
  floor and the real server, each measured with ingest.py's client: 16 connections,
  4000 signed events or 30 s (`--quick`: 600 or 10 s). The stored deliveries of the floor
  and of the server must be exactly the acknowledged ones.

It ends with a table per part and database: req/s, p50/p99 latency, the server process's
CPU time per request, and req/s as a share of the bare app's.

    .venv/bin/python bench/floor.py [--part overdue,ingest] [--databases sqlite,postgresql]
        [--quick]

PostgreSQL as for overdue.py (NEXTSTEP_BENCH_POSTGRES_URL, 127.0.0.1 only). Servers,
databases and files are removed at the end, also after an error, Ctrl-C or SIGTERM. Exit
status 1 if an app answered anything but 2xx or lost an acknowledged event.
"""

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import floor_apps
import httpx
import ingest
import overdue
import seed_commitments as seed
from sqlalchemy import text

from app.config import get_settings
from app.db import get_engine, get_read_engine, get_write_engine, new_session
from app.events import ingest as service
from app.events.inbound import Inbound
from app.migrate import upgrade
from app.outbound import outbox

SIZE = 10_000
FLOOR_OVERDUE_PATH = "/floor/overdue"
FLOOR_APP = str(overdue.BENCH / "floor_apps.py")
CONCURRENCY = 4  # overdue.py's default


@dataclass(frozen=True)
class Figures:
    """One app under load: what the table shows."""

    app: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # the server process's CPU time per request

    @classmethod
    def of_load(cls, app: str, load: overdue.Load) -> "Figures":
        return cls(app, load.rps, load.p50, load.p99, load.cpu_ms)

    @classmethod
    def of_outcome(cls, app: str, outcome: ingest.Outcome) -> "Figures":
        return cls(
            app,
            outcome.rps,
            outcome.percentile(0.5),
            outcome.percentile(0.99),
            outcome.cpu_per_request_us / 1000,
        )

    def announce(self) -> "Figures":
        """Prints the figures as soon as they are known (the tables come at the end)."""
        print(f"  {self.app}: {self.rps:.0f} req/s, p50 {self.p50_ms:.1f} ms")
        return self


@dataclass
class Table:
    title: str
    rows: list[Figures]

    def render(self) -> str:
        bare = self.rows[0].rps
        lines = [
            f"### {self.title}\n",
            "| app | req/s | p50 ms | p99 ms | server CPU ms/req | vs bare |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.app} | {r.rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.cpu_ms:.2f} | "
            f"{r.rps / bare:.2f} |"
            for r in self.rows
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------- overdue


def check_floor_page(server: overdue.Server, headers: dict[str, str], first: list[str]) -> None:
    """The floor checks the key and answers the seeded first page, or its figures mean nothing."""
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        refused = client.get(FLOOR_OVERDUE_PATH, headers={"Authorization": "Bearer nope"})
        if refused.status_code != 401:
            raise overdue.BenchError(f"the floor answered {refused.status_code} to a wrong key")
        page = client.get(FLOOR_OVERDUE_PATH, headers=headers)
        page.raise_for_status()
    if [str(uuid.UUID(item["id"])) for item in page.json()["items"]] != first:
        raise overdue.BenchError("the floor's overdue page is not the seeded first page")


def measure_overdue(
    app: str, server: overdue.Server, path: str, headers: dict[str, str], requests: int
) -> Figures:
    concurrent, _one_client = overdue.measure(server, path, headers, requests, CONCURRENCY)
    return Figures.of_load(app, concurrent).announce()


def run_overdue(database: str, databases: overdue.Databases, requests: int, logs: Path) -> Table:
    fresh = databases.postgres("floor") if database == "postgresql" else databases.sqlite("floor")
    with fresh as url:
        seeded = overdue.load(url, seed.Mix.standard(SIZE), datetime.now(UTC), seed_number=SIZE)
        print(f"seeded {SIZE:,} commitments in {seeded.seconds:.1f} s")
        headers = {"Authorization": f"Bearer {overdue.create_read_key(url)}"}
        with overdue.serve_bare(logs / "bare.log") as server:
            bare = measure_overdue("bare", server, "/bare", {}, requests)
        argv = [sys.executable, FLOOR_APP]
        env = overdue.server_env(url)
        with overdue.serve(argv, env, logs / f"floor-{database}.log", "/openapi.json") as server:
            check_floor_page(server, headers, seeded.expected.first_page(overdue.PAGE))
            floor = measure_overdue("floor", server, FLOOR_OVERDUE_PATH, headers, requests)
        with overdue.serve_nextstep(url, logs / f"server-{database}.log") as server:
            overdue.verify_api(server, headers, seeded.expected)
            real = measure_overdue(
                "nextstep serve", server, overdue.OVERDUE_PATH, headers, requests
            )
    return Table(
        f"overdue, {database}: {SIZE:,} commitments, {requests} requests, "
        f"{CONCURRENCY} concurrent clients",
        [bare, floor, real],
    )


# ---------------------------------------------------------------- ingest


@contextlib.contextmanager
def app_database(url: str) -> Iterator[None]:
    """The service, in this process, on ``url``: its settings and engines are cached."""
    previous = os.environ.get("NEXTSTEP_DATABASE_URL")
    caches = (get_settings, get_engine, get_write_engine, get_read_engine)
    os.environ["NEXTSTEP_DATABASE_URL"] = url
    for cached in caches:
        cached.cache_clear()
    try:
        yield
    finally:
        get_engine().dispose()
        if previous is None:
            del os.environ["NEXTSTEP_DATABASE_URL"]
        else:
            os.environ["NEXTSTEP_DATABASE_URL"] = previous
        for cached in caches:
            cached.cache_clear()


def driver_value(value: Any) -> Any:
    """A stored value as JSON the driver takes back (PostgreSQL casts the text)."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return None  # the body: each event brings its own
    return value


def template_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """The rows the service writes for one event, ingested in-process and removed again."""
    now = datetime.now(UTC)
    body = ingest.event_body("template", 0, now - timedelta(days=1))
    inbound = Inbound(ingest.SOURCE, "canonical", "template-0", body, {}, now)
    outbox.install()  # as the server does at start-up: the outbox hears of the new steps
    with app_database(url):
        with new_session(write=True) as session:
            [receipt] = service.ingest_batch(session, [inbound], now)
        if isinstance(receipt, Exception) or receipt.status != "applied":
            raise RuntimeError(f"the template event was not applied: {receipt!r}")
        with get_engine().begin() as conn:
            rows = {
                table: [
                    {name: driver_value(value) for name, value in row._mapping.items()}
                    for row in conn.execute(text(f"SELECT * FROM {table}"))
                ]
                for table in floor_apps.TABLES
            }
            for table in reversed(floor_apps.TABLES):
                conn.execute(text(f"DELETE FROM {table}"))
    for version in rows["commitment_version"]:
        del version["id"]  # an identity column: the database numbers the floor's rows
    return rows


def bench_floor(
    label: str, url: str, env: dict[str, str], secret: str, plan: ingest.Plan, workdir: Path
) -> tuple[ingest.Outcome, list[str]]:
    """The measured load on the floor, and what the stored data says about it."""
    upgrade(url)
    templates = workdir / f"templates-{label}.json"
    templates.write_text(json.dumps(template_rows(url)))
    env = {**env, "NEXTSTEP_DATABASE_URL": url, floor_apps.TEMPLATES_VARIABLE: str(templates)}
    port = ingest.free_port()
    command = [sys.executable, FLOOR_APP, "--port", str(port)]
    log = workdir / f"floor-{label}.log"
    with ingest.running(command, env, port, "/openapi.json", log) as process:
        warmup, measured = ingest.measure(process, port, secret, plan, None)
    problems = ingest.check_stored(url, warmup, measured)
    if measured.non_2xx or warmup.non_2xx:
        problems.append(f"floor: {dict(measured.statuses)}; log tail:\n{ingest.tail(log)}")
    return measured, problems


def ingest_database(database: str, directory: Path) -> contextlib.AbstractContextManager[str]:
    if database == "postgresql":
        return ingest.postgresql_database(overdue.ADMIN_URL)
    directory.mkdir()
    return ingest.sqlite_database(directory)


def run_ingest(database: str, plan: ingest.Plan, workdir: Path) -> tuple[Table, list[str]]:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    env = {
        **os.environ,
        "NEXTSTEP_WEBHOOK_SECRETS": json.dumps({ingest.SOURCE: [secret]}),
        "NEXTSTEP_LOG_LEVEL": "INFO",
    }
    env.pop("NEXTSTEP_DATABASE_URL", None)
    bare = ingest.bench_bare(env, secret, plan, workdir)
    rows = [Figures.of_outcome("bare", bare).announce()]
    with ingest_database(database, workdir / f"floor-{database}") as url:
        floor, problems = bench_floor(database, url, env, secret, plan, workdir)
    rows.append(Figures.of_outcome("floor", floor).announce())
    with ingest_database(database, workdir / f"server-{database}") as url:
        real, more = ingest.bench_server(database, url, env, secret, plan, workdir)
    rows.append(Figures.of_outcome("nextstep serve", real).announce())
    if bare.non_2xx:
        problems.append(f"bare: {dict(bare.statuses)}")
    table = Table(
        f"ingest, {database}: {plan.events} events or {plan.seconds:.0f} s, "
        f"{ingest.CONCURRENCY} connections",
        rows,
    )
    return table, [f"ingest, {database}: {p}" for p in problems + more]


# ---------------------------------------------------------------- the run


def _stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every finally: servers stopped, databases dropped.
    raise SystemExit(128 + signum)


def choices(value: str, known: tuple[str, ...]) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    if not chosen or set(chosen) - set(known):
        raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(known)}")
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--part",
        type=lambda v: choices(v, ("overdue", "ingest")),
        default=["overdue", "ingest"],
    )
    parser.add_argument(
        "--databases",
        type=lambda v: choices(v, ("sqlite", "postgresql")),
        default=["sqlite", "postgresql"],
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    requests = 150 if args.quick else 300
    plan = ingest.Plan(
        events=600 if args.quick else 4000,
        warmup=100 if args.quick else 300,
        seconds=10.0 if args.quick else 30.0,
        workers=1,
        profile_dir=None,
    )
    print(
        f"bench/floor.py {' '.join(sys.argv[1:])} at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    tables: list[Table] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nextstep-bench-floor-") as directory:
        workdir = Path(directory)
        databases = overdue.Databases(workdir)
        try:
            for part in args.part:
                for database in args.databases:
                    print(f"\n== {part}, {database}")
                    if part == "overdue":
                        tables.append(run_overdue(database, databases, requests, workdir))
                    else:
                        table, problems = run_ingest(database, plan, workdir)
                        tables.append(table)
                        failures += problems
        finally:
            databases.close()
    print("\n## Results\n")
    print("\n\n".join(table.render() for table in tables))
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
