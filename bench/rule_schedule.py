"""A reminder rule created over 100,000 open steps: the answer, then the worker's scheduling.

Creating or changing a rule answers at once; the worker schedules it for the open steps
that exist, in batches of ``worker.RULE_SCHEDULE_BATCH`` (one transaction each), until
``GET /v1/commitments/{id}/reminders`` shows them all. This seeds the steps
(seed_commitments.py: open company-owed steps due 1 to 30 days ahead, on 500 owners),
creates a default New York calendar and the README's three-step ladder with quiet hours,
and times the create and the scheduling on SQLite and, with NEXTSTEP_TEST_POSTGRES_URL (or
--postgres URL), on PostgreSQL: wall clock, and this process's CPU time (the steadier figure
on a shared machine; PostgreSQL's own is not in it). Target: all steps scheduled in < 30 s.

    make bench-rule-schedule            # or: .venv/bin/python bench/rule_schedule.py --steps 100000
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime

import psycopg
import seed_commitments as seed
from sqlalchemy import func
from sqlmodel import select

from app import config, db
from app.migrate import upgrade
from app.models import Calendar
from app.models.outbound import Reminder
from app.outbound import admin, worker
from app.outbound.schemas import RuleCreate

LADDER = {
    "name": "Company-owed steps",
    "steps": [
        {"offset": "-PT24H", "type": "next_step.due_soon"},
        {"offset": "PT0S", "type": "next_step.overdue"},
        {
            "offset": "P1D",
            "type": "next_step.escalated",
            "to": {"id": "lead-1", "name": "Lee Lead", "role": "recruiter"},
        },
    ],
}
WEEKDAYS = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def use(url: str) -> None:
    os.environ["NEXTSTEP_DATABASE_URL"] = url
    config.get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_write_engine.cache_clear()
    db.get_read_engine.cache_clear()


def seed_steps(url: str, steps: int, now: datetime) -> None:
    mix = seed.Mix(0, 0, steps, 0, 0, 0)
    expected = seed.Expected()
    if url.startswith("sqlite"):
        rows = seed.batches(seed.generate(mix, now, 7, expected), seed.sqlite_instant, expected)
        seed.load_sqlite(url.removeprefix("sqlite:///"), rows)
    else:
        rows = seed.batches(seed.generate(mix, now, 7, expected), seed.postgres_instant, expected)
        seed.load_postgres(url.replace("postgresql+psycopg://", "postgresql://"), rows)
    with db.new_session(write=True) as session:
        session.add(
            Calendar(
                name="New York",
                time_zone="America/New_York",
                hours=WEEKDAYS,
                holidays={"country": "US", "subdivision": None},
                is_default=True,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()


def measure(label: str, url: str, steps: int) -> tuple[float, float, int, int]:
    use(url)
    upgrade(url)
    now = datetime.now(UTC)
    seed_steps(url, steps, now)
    started = time.perf_counter()
    with db.new_session(write=True) as session:
        admin.create_rule(session, RuleCreate.model_validate(LADDER), now)
        session.commit()
    answered = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    batches = 0
    while worker.schedule_rules():
        batches += 1
    scheduled, cpu = time.perf_counter() - started, time.process_time() - cpu
    with db.new_session() as session:
        reminders = session.exec(select(func.count()).select_from(Reminder)).one()
    print(
        f"{label}: {steps} open steps; create answered in {answered * 1000:.0f} ms; "
        f"scheduled in {scheduled:.1f} s, {cpu:.1f} s of this process's CPU "
        f"({batches} batches of {worker.RULE_SCHEDULE_BATCH}); "
        f"{reminders} reminders"
    )
    db.get_engine().dispose()
    return answered, scheduled, batches, reminders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("NEXTSTEP_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as workdir:
        _a, took, _b, count = measure("sqlite", f"sqlite:///{workdir}/bench.db", args.steps)
        failed |= took >= 30 or count != 3 * args.steps
    if args.postgres:
        admin_url = args.postgres.replace("postgresql+psycopg://", "postgresql://")
        name = f"nextstep_bench_rules_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            base = args.postgres.rsplit("/", 1)[0]
            url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://")
            _a, took, _b, count = measure("postgresql", url, args.steps)
            failed |= took >= 30 or count != 3 * args.steps
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
