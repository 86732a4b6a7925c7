"""Benchmark of GET /v1/reports/responsiveness over HTTP, on PostgreSQL and SQLite.

1. Seeds the overdue benchmark's data (seed_commitments.py: one year of interviews,
   two steps each, 5 % overdue, 20 % open and due later, the rest done, 200 company
   owners): 1M commitments into a fresh PostgreSQL database, 100k into a fresh SQLite
   file.
2. Serves each with `nextstep serve --workers 1`, checks the report's total against a
   plain count of the seeded rows, and measures the report grouped by owner over the
   whole year and over the default 30 days: one client, `--requests` requests after a
   warm-up, the server's resident memory sampled throughout.

Usage: `make bench-report`, or `.venv/bin/python bench/report.py [--quick] [--requests N]`.
Everything runs on 127.0.0.1; databases, files and servers are removed at the end,
also after an error or Ctrl-C.

Seeding a million steps takes minutes on a shared machine: to compare two versions of the
code on the same data, name databases of your own with `--reuse-postgres URL` and
`--reuse-sqlite URL` and fix the seeding instant with `--now INSTANT`. An empty one is
seeded at that instant, one that holds steps is measured as it is (both are migrated to the
code's head first, and kept).
"""

import argparse
import asyncio
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg
import seed_commitments as seed
from overdue import (
    Budget,
    Databases,
    Load,
    RssSampler,
    Seeded,
    _drive,
    _stop_on_sigterm,
    check_seed_rows,
    create_read_key,
    human,
    load,
    machine,
    rss_mb,
    serve_nextstep,
    wait_for_quiet,
)

from app.migrate import upgrade

# The targets of issue 25, p50 in ms: a million steps on PostgreSQL, 100k on SQLite.
TARGETS_MS = {
    ("postgresql", "30 days"): 500.0,
    ("postgresql", "one year"): 1500.0,
    ("sqlite", "30 days"): 100.0,
}
PATH = "/v1/reports/responsiveness"


@dataclass
class Measured:
    database: str
    size: int
    window: str
    due: int
    groups: int
    load: Load
    baseline_mb: float
    peak_mb: float

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.baseline_mb


def expected_due(url: str, start: datetime, end: datetime) -> int:
    """Company-owed steps due in the window, counted from the seeded rows (no step of the
    seed was ever reassigned or re-dated, so the current rows are the judged state)."""
    query = (
        "SELECT count(*) FROM commitment "
        "WHERE owed_by = 'company' AND due_at >= {0} AND due_at < {0}"
    )
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            row = conn.execute(
                query.format("?"),
                (seed.sqlite_instant(_naive(start)), seed.sqlite_instant(_naive(end))),
            ).fetchone()
    else:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:
            row = pg.execute(query.format("%s"), (start, end)).fetchone()
    return int(row[0]) if row else 0


def count_steps(url: str) -> int:
    query = "SELECT count(*) FROM commitment"
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            row = conn.execute(query).fetchone()
    else:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:
            row = pg.execute(query).fetchone()
    return int(row[0]) if row else 0


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def explain(url: str, path_query: dict[str, str]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the report's statement on PostgreSQL, for the record,
    in the settings of the report's own transaction."""
    from sqlmodel import Session

    from app.db import build_engine
    from app.reports import service
    from app.reports.schemas import GroupBy

    engine = build_engine(url)
    try:
        with Session(engine) as session:
            end = datetime.fromisoformat(path_query["to"])
            window = service.Window(datetime.fromisoformat(path_query["from"]), end, end)
            statement, params = service.counted_query(window, GroupBy.owner, "company")
            compiled = statement.compile(engine)
            conn = session.connection()
            service.plan_for_all_rows(conn)
            rows = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), {**compiled.params, **params}
            ).all()
            return [str(r[0]) for r in rows]
    finally:
        engine.dispose()


@contextmanager
def seeded_database(
    databases: Databases, database: str, size: int, now: datetime, reuse: str | None
) -> Iterator[str]:
    """A database holding ``size`` steps seeded at ``now``: a fresh one, removed at the
    end, or ``reuse``, brought to the code's head and seeded only if it holds none."""
    fresh: AbstractContextManager[str]
    if reuse is None:
        label = f"report_{database[:2]}_{human(size).lower()}"
        fresh = databases.postgres(label) if database == "postgresql" else databases.sqlite(label)
    else:
        upgrade(reuse)
        fresh = nullcontext(reuse)
    with fresh as url:
        if reuse is None or count_steps(url) == 0:
            seeded: Seeded = load(url, seed.Mix.standard(size), now, seed_number=size)
            print(f"seeded {seeded.expected.rows:,} rows in {seeded.seconds:.1f} s")
        yield url


def run_case(
    databases: Databases,
    database: str,
    size: int,
    now: datetime,
    requests: int,
    logs: Path,
    reuse: str | None = None,
) -> list[Measured]:
    label = f"report_{database[:2]}_{human(size).lower()}"
    results: list[Measured] = []
    print(f"\n== {database}, {size:,} commitments")
    with seeded_database(databases, database, size, now, reuse) as url:
        headers = {"Authorization": f"Bearer {create_read_key(url)}"}
        windows = {
            "one year": (now - timedelta(days=365), now),
            "30 days": (now - timedelta(days=30), now),
        }
        with serve_nextstep(url, logs / f"server-{label}.log") as server:
            timeout = httpx.Timeout(120)
            for name, (start, end) in windows.items():
                query = {"from": start.isoformat(), "to": end.isoformat(), "group_by": "owner"}
                path = f"{PATH}?{urlencode(query)}"
                with httpx.Client(
                    base_url=server.base_url, headers=headers, timeout=timeout, trust_env=False
                ) as client:
                    response = client.get(path)
                    response.raise_for_status()
                    body = response.json()
                due = expected_due(url, start, end)
                if body["total"]["due"] != due:
                    raise SystemExit(
                        f"{name}: the report counts {body['total']['due']}, seeded {due}"
                    )
                print(
                    f"{name}: {due:,} steps due, {len(body['items'])} owners, "
                    f"on-time rate {body['total']['on_time_rate']}"
                )
                wait_for_quiet()
                baseline = rss_mb(server.pid)
                sampler = RssSampler(server.pid)
                sampler.start()
                try:
                    asyncio.run(_drive(server.base_url, path, headers, 2, 1))
                    latencies, seconds = asyncio.run(
                        _drive(server.base_url, path, headers, requests, 1)
                    )
                finally:
                    samples = sampler.stop()
                measured = Measured(
                    database,
                    size,
                    name,
                    due,
                    len(body["items"]),
                    Load(latencies, seconds, 0.0, 0.0),
                    baseline,
                    max([baseline, *samples]),
                )
                print(
                    f"  p50 {measured.load.p50:.0f} ms, p99 {measured.load.p99:.0f} ms; server RSS "
                    f"{baseline:.0f} MB before, peak {measured.peak_mb:.0f} MB"
                )
                results.append(measured)
                if database == "postgresql":
                    for line in explain(url, query):
                        print("    " + line)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k on PostgreSQL, 10k on SQLite")
    parser.add_argument("--requests", type=int, default=20, help="measured requests per case")
    parser.add_argument("--skip-seed-check", action="store_true", help="trust the seed")
    parser.add_argument("--reuse-postgres", metavar="URL", help="a PostgreSQL database to keep")
    parser.add_argument("--reuse-sqlite", metavar="URL", help="a SQLite database to keep")
    parser.add_argument(
        "--now", type=datetime.fromisoformat, help="the seeding instant of reused databases"
    )
    args = parser.parse_args()
    reuse = {"postgresql": args.reuse_postgres, "sqlite": args.reuse_sqlite}
    if any(reuse.values()) and args.now is None:
        parser.error("--now is needed with --reuse-postgres or --reuse-sqlite")
    if not 3 <= args.requests <= 1000:
        parser.error("--requests must be 3..1000")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    budget = Budget()
    now = args.now or datetime.now(UTC)
    cases = [("postgresql", 100_000 if args.quick else 1_000_000)]
    cases.append(("sqlite", 10_000 if args.quick else 100_000))
    print(f"bench/report.py {' '.join(sys.argv[1:])} at {now:%Y-%m-%d %H:%M} UTC")
    for name, value in machine().items():
        print(f"{name}: {value}")
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="nextstep-bench-") as directory:
        databases = Databases(Path(directory))
        try:
            if not args.skip_seed_check:
                check_seed_rows(now, databases)
            for database, size in cases:
                budget.check(f"{database} {size}")
                started = time.monotonic()
                results += run_case(
                    databases,
                    database,
                    size,
                    now,
                    args.requests,
                    Path(directory),
                    reuse[database],
                )
                print(f"  ({time.monotonic() - started:.0f} s for the case)")
        finally:
            databases.close()
    print("\n## Results\n")
    print(
        f"GET {PATH}?group_by=owner, {args.requests} requests from one client after 2 "
        "warm-up requests; 1 uvicorn worker.\n"
    )
    print(
        "| database | commitments | window | steps due | owners | p50 ms | p99 ms "
        "| RSS before MB | RSS peak MB | target p50 |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        target = TARGETS_MS.get((r.database, r.window))
        verdict = (
            "-"
            if target is None
            else f"< {target:.0f} ms: {'met' if r.load.p50 < target else 'MISSED'}"
        )
        print(
            f"| {r.database} | {r.size:,} | {r.window} | {r.due:,} | {r.groups} | "
            f"{r.load.p50:.0f} | {r.load.p99:.0f} | {r.baseline_mb:.0f} | {r.peak_mb:.0f} | "
            f"{verdict} |"
        )
    print(f"\ntotal time {budget.spent / 60:.1f} min")


if __name__ == "__main__":
    main()
