"""E-mail as a channel of the outbox: 5,000 reminder e-mails to a local SMTP sink, from one
process.

The sink (bench/smtp_sink.py) runs as a process of its own and notes each Message-ID it
accepts. On a fresh database (SQLite, and PostgreSQL with --postgres-url) the script writes
a rule that e-mails the owner, an owner with an address, and N open steps whose reminders
are all due; then, in this process, it runs the worker's passes (app.outbound.worker) until
every e-mail has succeeded. It prints:

- written/s: reminders fired into rendered e-mails in the outbox (action and unsubscribe
  links issued, the whole RFC 5322 text rendered), passes of firing alone;
- sent/s: the worker's passes sending them (claim, SMTP, record), from the first pass to
  the last e-mail succeeded;
- duplicates: a Message-ID the sink got twice, against the e-mails whose attempts the
  database recorded more than once (none may be sent twice without a recorded retry).

Baseline, in the same run: the same number of e-mails, rendered once beforehand, sent to the
same sink through the same mailer and concurrency (8) with no database at all: the ceiling
of client and sink on this machine; the worker's rate is given as a ratio of it.

    .venv/bin/python bench/email_outbox.py [--emails N] [--postgres-url URL]

Target: >= 300 e-mails/s sent from one process; none twice without a recorded retry.

(Named email_outbox.py, not email.py: a script's folder comes first on sys.path, and a
bench/email.py would stand in for the standard library's ``email`` package.)
"""

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ingest
import outbound
from sqlalchemy import create_engine, insert, text
from sqlmodel import SQLModel

from app import config, db
from app.outbound import worker
from app.outbound.channels.email import render
from app.outbound.mailer import mail_once
from app.outbound.sending import new_client

HERE = Path(__file__).resolve().parent
CONCURRENCY = 8


@contextlib.contextmanager
def sink(workdir: Path) -> Iterator[tuple[str, Path]]:
    port = ingest.free_port()
    path = workdir / "sink.txt"
    path.write_bytes(b"")
    process = subprocess.Popen([sys.executable, str(HERE / "smtp_sink.py"), str(port), str(path)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.1)
        yield f"smtp://127.0.0.1:{port}", path
    finally:
        process.terminate()
        process.wait(10)


def arrivals(path: Path) -> Counter[str]:
    return Counter(line for line in path.read_text().splitlines() if line)


def wait_arrivals(path: Path, count: int, timeout: float = 30) -> Counter[str]:
    deadline = time.monotonic() + timeout
    seen = arrivals(path)
    while sum(seen.values()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = arrivals(path)
    return seen


def use(url: str, smtp_url: str) -> None:
    os.environ.update(
        NEXTSTEP_DATABASE_URL=url,
        NEXTSTEP_SMTP_URL=smtp_url,
        NEXTSTEP_PUBLIC_URL="https://nextstep.example.com",
        NEXTSTEP_LOG_LEVEL="WARNING",
    )
    config.get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_write_engine.cache_clear()
    db.get_read_engine.cache_clear()


def seed(url: str, count: int) -> None:
    """bench/outbound.py's steps (owner hm-1, reminders due now), e-mailed to their owner
    instead of posted to an endpoint."""
    fire_at = datetime.now(UTC) - timedelta(seconds=1)
    nowhere = outbound.Receiver.__new__(outbound.Receiver)
    nowhere.port = 9  # its endpoint is deleted below: nothing is posted
    outbound.seed(url, nowhere, "whsec_x", count, fire_at)
    now = datetime.now(UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM endpoint"))
        conn.execute(text("UPDATE reminder_rule SET email_owner = :on"), {"on": True})
        conn.execute(
            insert(SQLModel.metadata.tables["owner"]),
            [
                {
                    "id": "hm-1",
                    "name": "Hana Manager",
                    "email": "hana@example.com",
                    "calendar_id": None,
                    "email_reminders": True,
                    "digest_enabled": False,
                    "digest_at": "07:00",
                    "learned_from": "api",
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
    engine.dispose()


def bench_worker(label: str, url: str, smtp_url: str, sink_file: Path, count: int) -> float:
    """Fire, then send; prints the figures; the sending rate."""
    use(url, smtp_url)
    seed(url, count)
    settings = config.get_settings()
    started = time.perf_counter()
    fired = 0
    while True:
        done = worker.fire_due(datetime.now(UTC), settings.worker_batch)
        fired += done
        if done < settings.worker_batch:
            break
    written = time.perf_counter() - started

    async def send_all() -> int:
        sent = 0
        async with new_client() as client:
            while True:
                done = await worker.run_once(client)
                sent += done.sent
                if not done.sent:
                    return sent

    before = sum(arrivals(sink_file).values())
    started = time.perf_counter()
    attempts = asyncio.run(send_all())
    sending = time.perf_counter() - started
    seen = wait_arrivals(sink_file, before + count)
    total, retried, statuses = outbound.recorded_retries(url)
    twice = sum(1 for n in seen.values() if n > 1)
    print(
        f"{label}: {fired} reminders fired into {total} e-mails in {written:.2f} s "
        f"({total / written:.0f} written/s); {attempts} attempts sent in {sending:.2f} s "
        f"({total / sending:.0f} sent/s); statuses {dict(statuses)}; sink got "
        f"{sum(seen.values()) - before}; Message-IDs twice: {twice}, e-mails retried: {retried}"
    )
    return total / sending


def bench_baseline(smtp_url: str, sink_file: Path, count: int) -> float:
    """The same e-mails, rendered beforehand, through the mailer alone: no database."""
    now = datetime.now(UTC)
    bodies = [
        render(
            {
                "template": "reminder",
                "message_id": str(uuid.uuid4()),
                "host": "nextstep.example.com",
                "from": "nextstep <nextstep@example.com>",
                "to": {"name": "Hana Manager", "address": "hana@example.com"},
                "subject": "Overdue: Tell the candidate the decision — Ada Candidate",
                "greeting": "Hello Hana Manager,",
                "intro": "A step you owe is overdue.",
                "sections": [],
                "zone": "UTC",
                "topic": "reminder e-mails",
                "footer": "Sent by nextstep.",
                "unsubscribe_url": "https://nextstep.example.com/u/x",
            },
            now,
        )
        for _ in range(count)
    ]
    os.environ["NEXTSTEP_SMTP_URL"] = smtp_url
    config.get_settings.cache_clear()

    async def send_all() -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(body: str) -> None:
            async with gate:
                reply = await mail_once(body)
                assert reply.succeeded, reply

        await asyncio.gather(*(one(b) for b in bodies))

    before = sum(arrivals(sink_file).values())
    started = time.perf_counter()
    asyncio.run(send_all())
    elapsed = time.perf_counter() - started
    wait_arrivals(sink_file, before + count)
    rate = count / elapsed
    print(f"baseline: {count} e-mails through the mailer alone in {elapsed:.2f} s ({rate:.0f}/s)")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=5000)
    parser.add_argument("--postgres-url", default=os.environ.get("NEXTSTEP_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sink(Path(tmp)) as (smtp_url, sink_file):
        workdir = Path(tmp)
        ceiling = bench_baseline(smtp_url, sink_file, args.emails)
        rates = {}
        setups = ["sqlite"] + (["postgresql"] if args.postgres_url else [])
        for label in setups:
            with outbound.database(label, args.postgres_url or "", workdir, "email") as url:
                rates[label] = bench_worker(label, url, smtp_url, sink_file, args.emails)
        for label, rate in rates.items():
            verdict = "meets" if rate >= 300 else "MISSES"
            print(
                f"{label}: {rate:.0f} e-mails/s, {rate / ceiling:.2f} of the baseline; "
                f"{verdict} the 300/s target"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
