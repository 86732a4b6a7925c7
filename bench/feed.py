"""Benchmark of a calendar feed, GET /ics/<token>.ics, on PostgreSQL and SQLite.

1. Writer, in process: the feed's own RFC 5545 writer (app/calendar_feeds/ics.py) against
   the ``icalendar`` library building and serialising the same events, for 1,000 and
   10,000 events (p50 of repeated runs).
2. Seeds one database of each kind with the overdue benchmark's row renderer
   (seed_commitments.py, proved against the service there): an owner with 1,000 open
   company-owed steps, another with 10,000, each also with 5 % as many steps completed in
   the last 30 days (shown cancelled) and as many owed by the candidate (not shown), and
   20,000 steps of 200 other owners around them.
3. Makes the owners and their feeds with the CLI (`nextstep owners set`, `nextstep owners
   feed`), serves the database with `nextstep serve --workers 1` beside the bare app
   (bench/bare_app.py) in the same run, checks each feed holds the expected events (read
   by the icalendar parser), and measures one client at a time after a warm-up: p50 and
   p99 of the feed of 1,000 and of 10,000 steps, and of the bare endpoint.

Usage: `make bench-feed`, or `.venv/bin/python bench/feed.py [--requests N]
[--databases sqlite,postgresql]`. Everything runs on 127.0.0.1; databases, files and
servers are removed at the end, also after an error or Ctrl-C.
"""

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import icalendar
import seed_commitments as seed
from overdue import (
    BIN,
    BenchError,
    Databases,
    Load,
    _drive,
    _stop_on_sigterm,
    machine,
    serve_bare,
    serve_nextstep,
    server_env,
    wait_for_quiet,
)

from app.calendar_feeds import service as feeds

TARGET_P50_MS = 100.0
SIZES = (1_000, 10_000)
OTHER_STEPS = 20_000
OTHER_OWNERS = 200


def _owner(size: int) -> str:
    return f"bench-feed-{size}"


# ---------------------------------------------------------------- the writer, in process


def _rows(count: int, now: datetime) -> list[Any]:
    return [
        SimpleNamespace(
            id=uuid.uuid4(),
            action=f"Call the candidate about the offer, step {n}; then e-mail",
            channel="email",
            due_at=now + timedelta(hours=n % 500 - 50),
            version=1 + n % 3,
            updated_at=now - timedelta(days=1),
            candidate_name=f"Candidate Müller {n}",
            candidate_external_id=f"cand-{n}",
            job_title="Analyst",
            job_external_id="job-analyst",
            ends_at=now - timedelta(days=2),
            completed_at=None,
            _mapping={
                "first_open": now - timedelta(days=2),
                "last_outbound": None,
                "unanswered": 0,
            },
        )
        for n in range(count)
    ]


def _with_library(rows: list[Any], now: datetime) -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("version", "2.0")
    calendar.add("prodid", feeds.PRODID)
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", "Rita Recruiter")
    for row in rows:
        event = icalendar.Event()
        event.add("uid", f"{row.id}@nextstep")
        event.add("sequence", row.version)
        event.add("dtstamp", row.updated_at)
        event.add("dtstart", row.due_at)
        event.add("duration", timedelta(minutes=15))
        due = "Overdue" if row.due_at < now else "Due"
        event.add("summary", f"{due}: {row.action} — {row.candidate_name}")
        event.add("description", f"Candidate: {row.candidate_name}\nJob: {row.job_title}")
        event.add("status", "CONFIRMED")
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def _own_writer(rows: list[Any], now: datetime) -> bytes:
    return "".join(feeds._document("Rita Recruiter", rows, [], now)).encode()


def time_writers(repeats: int) -> list[tuple[int, float, float]]:
    """(events, p50 ms of the own writer, p50 ms of the library) per size."""
    now = datetime.now(UTC)
    results = []
    for size in SIZES:
        rows = _rows(size, now)
        timings: dict[str, list[float]] = {"own": [], "library": []}
        for _ in range(repeats if size <= 1000 else max(3, repeats // 5)):
            for name, write in (("own", _own_writer), ("library", _with_library)):
                started = time.perf_counter()
                document = write(rows, now)
                timings[name].append(time.perf_counter() - started)
            assert len(icalendar.Calendar.from_ical(document).walk("VEVENT")) == size
        results.append(
            (
                size,
                statistics.median(timings["own"]) * 1000,
                statistics.median(timings["library"]) * 1000,
            )
        )
    return results


# ---------------------------------------------------------------- the seed


def _specs(now: datetime) -> Iterator[tuple[seed.InterviewSpec, seed.Ids]]:
    """One step per interview: each feed event is its own candidate."""
    naive = now.astimezone(UTC).replace(tzinfo=None)
    number = 0

    def one(owner: str, role: str, due: datetime, done: datetime | None = None) -> Any:
        nonlocal number
        number += 1
        at = naive - timedelta(days=40, minutes=number % 1000)
        candidate = f"cand-{number:07d}"
        if role == "candidate":
            owner = candidate
        step = seed.Step(
            action="Call the candidate to schedule the second interview",
            owner_id=owner,
            owner_name=None if role == "candidate" else f"Owner {owner}",
            owner_role=role,
            channel="email",
            due_at=due,
            promised_by=None,
            done_at=done,
            outcome="Called" if done else None,
        )
        spec = seed.InterviewSpec(
            at=at,
            candidate_external_id=candidate,
            candidate_name=f"Candidate {number}",
            candidate_email=None,
            job_external_id="job-analyst",
            job_title="Analyst",
            stage="First interview",
            interviewers=(),
            starts_at=at - timedelta(hours=1),
            ends_at=at,
            steps=(step,),
        )

        def hex_id() -> str:
            return uuid.uuid4().hex

        ids = seed.Ids(
            interview=hex_id(),
            recorded_entry=hex_id(),
            recorded_tiebreak=hex_id(),
            commitments=(hex_id(),),
            agreed_entries=(hex_id(),),
            completed_entries=(hex_id() if done else None,),
        )
        return spec, ids

    for size in SIZES:
        owner = _owner(size)
        for n in range(size):
            yield one(owner, "recruiter", naive + timedelta(hours=n % 720 - 100))
        for n in range(size // 20):
            yield one(owner, "recruiter", naive + timedelta(days=1), naive - timedelta(days=n % 29))
            yield one(owner, "candidate", naive + timedelta(days=1))
    for n in range(OTHER_STEPS):
        yield one(f"owner-{n % OTHER_OWNERS:03d}", "recruiter", naive + timedelta(hours=n % 700))


def load(url: str, now: datetime) -> None:
    expected = seed.Expected()
    if url.startswith("sqlite"):
        chunks = seed.batches(_specs(now), seed.sqlite_instant, expected)
        seed.load_sqlite(url.removeprefix("sqlite:///"), chunks)
    else:
        chunks = seed.batches(_specs(now), seed.postgres_instant, expected)
        seed.load_postgres(seed._conninfo(url), chunks)


def _cli(url: str, *argv: str) -> str:
    done = subprocess.run(
        [str(BIN / "nextstep"), *argv],
        env=server_env(url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"nextstep {' '.join(argv)} failed: {done.stderr}")
    return done.stdout


def make_feeds(url: str) -> dict[int, str]:
    """The path of each owner's feed, made with the CLI."""
    paths = {}
    for size in SIZES:
        _cli(url, "owners", "set", _owner(size), "--name", f"Bench owner {size}")
        printed = _cli(url, "owners", "feed", _owner(size)).splitlines()[-1]
        paths[size] = printed[printed.index("/ics/") :]
    return paths


# ---------------------------------------------------------------- measuring


def measure(base_url: str, path: str, requests: int) -> Load:
    wait_for_quiet()
    asyncio.run(_drive(base_url, path, {}, 10, 1))
    latencies, seconds = asyncio.run(_drive(base_url, path, {}, requests, 1))
    return Load(latencies, seconds, 0.0, 0.0)


def check_feed(base_url: str, path: str, size: int) -> None:
    body = httpx.get(base_url + path, trust_env=False, timeout=60).content
    events = icalendar.Calendar.from_ical(body).walk("VEVENT")
    confirmed = [e for e in events if str(e["STATUS"]) == "CONFIRMED"]
    cancelled = [e for e in events if str(e["STATUS"]) == "CANCELLED"]
    if (len(confirmed), len(cancelled)) != (size, size // 20):
        raise BenchError(
            f"feed of {size}: {len(confirmed)} open and {len(cancelled)} cancelled events"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="per 1,000-step measurement")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    print("machine:", machine())
    print("\nwriter, in process (p50 over repeated runs):")
    for size, own, library in time_writers(repeats=25):
        print(f"  {size:>6} events: own writer {own:7.1f} ms, icalendar {library:7.1f} ms")

    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="nextstep-bench-feed-") as directory:
        databases = Databases(Path(directory))
        logs = Path(directory)
        try:
            with serve_bare(logs / "bare.log") as bare:
                for kind in args.databases.split(","):
                    database = databases.sqlite if kind == "sqlite" else databases.postgres
                    with database("feed") as url:
                        started = time.perf_counter()
                        load(url, now)
                        paths = make_feeds(url)
                        print(f"\n{kind}: seeded in {time.perf_counter() - started:.1f} s")
                        with serve_nextstep(url, logs / f"{kind}.log") as server:
                            bare_load = measure(bare.base_url, "/bare", args.requests)
                            print(
                                f"  bare endpoint   p50 {bare_load.p50:7.2f} ms  "
                                f"p99 {bare_load.p99:7.2f} ms"
                            )
                            for size in SIZES:
                                check_feed(server.base_url, paths[size], size)
                                count = args.requests if size <= 1000 else args.requests // 4
                                feed = measure(server.base_url, paths[size], count)
                                verdict = ""
                                if size == 1000:
                                    ok = feed.p50 < TARGET_P50_MS
                                    verdict = f"  (target p50 < {TARGET_P50_MS:.0f} ms: "
                                    verdict += "met)" if ok else "NOT met)"
                                print(
                                    f"  feed of {size:>6} p50 {feed.p50:7.2f} ms  "
                                    f"p99 {feed.p99:7.2f} ms  ({count} requests){verdict}"
                                )
        finally:
            databases.close()


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        print(f"bench/feed.py: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
