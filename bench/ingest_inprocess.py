"""Ingestion without HTTP: the CPU time `ingest_batch` spends per event, in this process.

The HTTP benchmarks (ingest.py, floor.py) swing by tens of percent when other work shares
the machine; the CPU time this process spends storing the same events in the same batches
moves far less, and shows what a change to the storing itself is worth. Signed-less
`interview.completed` events (ingest.py's bodies, one next step each) are stored through
`app.events.ingest.ingest_batch` in batches of `--batch`, after 200 as a warm-up, on a
SQLite file and on a fresh PostgreSQL database (NEXTSTEP_TEST_POSTGRES_URL or --postgres;
the database is dropped at the end). PostgreSQL's own CPU time is not in the figure.
With `--endpoints N`, N enabled webhook endpoints take every change first, so that each
event also writes N outbox messages (nothing sends them here: this is the write alone).

    .venv/bin/python bench/ingest_inprocess.py [--events 3000] [--batch 16]
        [--databases sqlite,postgresql] [--endpoints 0]
"""

import argparse
import gc
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import ingest as http_bench
import psycopg

from app import config, db
from app.events import ingest as service
from app.events.inbound import Inbound, Receipt
from app.main import GC_THRESHOLDS
from app.migrate import upgrade
from app.models.outbound import Endpoint, EndpointKind, EventType
from app.outbound import outbox

WARMUP = 200


def use(url: str) -> None:
    os.environ["NEXTSTEP_DATABASE_URL"] = url
    config.get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_write_engine.cache_clear()
    db.get_read_engine.cache_clear()


def store(events: list[Inbound], batch: int, now: datetime) -> None:
    for start in range(0, len(events), batch):
        with db.new_session(write=True) as session:
            answers = service.ingest_batch(session, events[start : start + batch], now)
        for answer in answers:
            if not isinstance(answer, Receipt) or answer.status != "applied":
                raise RuntimeError(f"an event was not applied: {answer!r}")


def subscribe(count: int) -> None:
    """``count`` enabled webhook endpoints that take every event type."""
    now = datetime.now(UTC)
    with db.new_session(write=True) as session:
        for n in range(count):
            session.add(
                Endpoint(
                    kind=EndpointKind.webhook.value,
                    url=f"http://127.0.0.1:9/bench-{n}",
                    event_types=[t.value for t in EventType],
                    secret="whsec_" + "A" * 43 + "=",
                    created_at=now,
                    updated_at=now,
                )
            )
        session.commit()


def measure(label: str, url: str, count: int, batch: int, endpoints: int) -> None:
    use(url)
    upgrade(url)
    subscribe(endpoints)
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:6]
    events = [
        Inbound(
            http_bench.SOURCE,
            "canonical",
            f"{tag}-{n}",
            http_bench.event_body(tag, n, now - timedelta(days=1)),
            {},
            now,
        )
        for n in range(WARMUP + count)
    ]
    store(events[:WARMUP], batch, now)
    started, cpu = time.perf_counter(), time.process_time()
    store(events[WARMUP:], batch, now)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"{label}: {count} events in batches of {batch}, {endpoints} endpoints: "
        f"{cpu / count * 1e6:.0f} µs of this process's CPU per event "
        f"({wall / count * 1e6:.0f} µs wall clock)"
    )
    db.get_engine().dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--endpoints", type=int, default=0)
    parser.add_argument("--postgres", default=os.environ.get("NEXTSTEP_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    outbox.install()  # as the server does at start-up
    gc.set_threshold(*GC_THRESHOLDS)  # as the app sets it
    labels = [label.strip() for label in args.databases.split(",")]
    if "sqlite" in labels:
        with tempfile.TemporaryDirectory() as workdir:
            measure(
                "sqlite", f"sqlite:///{workdir}/bench.db", args.events, args.batch, args.endpoints
            )
    if "postgresql" in labels and args.postgres:
        admin_url = args.postgres.replace("postgresql+psycopg://", "postgresql://")
        name = f"nextstep_bench_inprocess_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            base = args.postgres.rsplit("/", 1)[0]
            url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://")
            measure("postgresql", url, args.events, args.batch, args.endpoints)
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
