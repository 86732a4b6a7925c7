"""Event ingestion with a deadline policy active against none, in the same run.

For each database (a SQLite file, a fresh PostgreSQL database) the script starts
`nextstep serve --workers 1`, and sends signed canonical `interview.completed` events over
16 keep-alive connections (bench/ingest.py's client). Six measured phases on the same
server and database, each after its own warm-up, in two mixes:

- every event with one next step (due_at given), the usual traffic: no policy, then a
  calendar (America/New_York, Mon-Fri 09:00-17:00, US holidays) and a policy matching the
  events' stage with a due_rule and a default_step, then no policy again (disabled);
- half the events with no step: the same three phases. With the policy, each of those
  interviews gets the policy's step (one more commitment, its history and its version,
  and a due time computed on the calendar): work the phases without do not do.

The policy phase of each mix is compared with the mean of the two phases around it (the
drift of a shared machine shows there): requests/s and server CPU per request (target:
within 10 %). It then checks the stored data: every acknowledged delivery applied, one
interview each, one policy step per stepless interview of a policy phase and none else.

    .venv/bin/python bench/ingest_policy.py [--quick] [--databases sqlite,postgresql]
        [--events N] [--seconds S] [--postgres-url URL]
"""

import argparse
import base64
import json
import os
import secrets
import signal
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import ingest
from sqlalchemy import create_engine, text
from sqlmodel import Session, select

from app.migrate import upgrade
from app.models import Calendar, DeadlinePolicy

BIN = Path(sys.executable).parent
TARGET = 0.10
HOURS = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def event_body(tag: str, index: int, ended: datetime, stepless: bool) -> bytes:
    """With ``stepless``, odd indexes carry no next step; the others one, with its due_at."""
    body = json.loads(ingest.event_body(tag, index, ended))
    if stepless and index % 2:
        body["data"]["next_steps"] = []
    return json.dumps(body).encode()


def signed_requests(secret: str, tag: str, count: int, stepless: bool) -> list[bytes]:
    return ingest.signed_requests(
        secret, tag, count, lambda tag, index, ended: event_body(tag, index, ended, stepless)
    )


def set_policy(url: str, enabled: bool) -> None:
    """The calendar and the policy, written as the API writes them (created once)."""
    engine = create_engine(url)
    now = datetime.now(UTC)
    try:
        with Session(engine) as session:
            policy = session.exec(select(DeadlinePolicy)).first()
            if policy is not None:
                policy.enabled = enabled
                session.add(policy)
                session.commit()
                return
            calendar = Calendar(
                name="New York",
                time_zone="America/New_York",
                hours=HOURS,
                holidays={"country": "US", "subdivision": None},
                is_default=True,
                created_at=now,
                updated_at=now,
            )
            session.add(calendar)
            session.flush()
            session.add(
                DeadlinePolicy(
                    name="First interview",
                    position=1,
                    enabled=enabled,
                    match={"stage": "First interview"},
                    calendar_id=calendar.id,
                    due_rule={"business_days": 3, "at": "end_of_day"},
                    default_step={
                        "action": "Tell the candidate the decision",
                        "owner": {"id": "hm-1", "name": "Hana", "role": "hiring_manager"},
                        "channel": "email",
                        "rule": {"business_days": 3, "at": "17:00"},
                    },
                    created_at=now,
                    updated_at=now,
                )
            )
            session.commit()
    finally:
        engine.dispose()


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    queries = {
        "deliveries": "SELECT count(*) FROM delivery",
        "applied": "SELECT count(*) FROM delivery WHERE result = 'applied'",
        "interviews": "SELECT count(*) FROM interview",
        "steps": "SELECT count(*) FROM commitment WHERE source <> 'policy'",
        "policy_steps": "SELECT count(*) FROM commitment WHERE source = 'policy'",
    }
    try:
        with engine.connect() as conn:
            return {name: int(conn.execute(text(q)).scalar_one()) for name, q in queries.items()}
    finally:
        engine.dispose()


def phase(port: int, pid: int, secret: str, plan: ingest.Plan, stepless: bool) -> ingest.Outcome:
    """A warm-up and a measured load; returns the measured outcome."""
    warmup_requests = signed_requests(secret, f"w{uuid.uuid4().hex[:8]}", plan.warmup, stepless)
    warmup = ingest.load(port, warmup_requests, 60)
    requests = signed_requests(secret, f"m{uuid.uuid4().hex[:8]}", plan.events, stepless)
    started = ingest.cpu_seconds(pid)
    measured = ingest.load(port, requests, plan.seconds)
    measured.cpu = ingest.cpu_seconds(pid) - started
    measured.statuses.update({status: n for status, n in warmup.statuses.items() if status >= 300})
    return measured


# (name, policy enabled, half the events without a step); the policy phases sit between two
# phases without, so that the machine's drift shows and is averaged out.
PHASES = (
    ("none", False, False),
    ("policy", True, False),
    ("none", False, False),
    ("none, half stepless", False, True),
    ("policy, half stepless", True, True),
    ("none, half stepless", False, True),
)


def run_database(label: str, url: str, secret: str, plan: ingest.Plan, workdir: Path) -> list[str]:
    upgrade(url)
    port = ingest.free_port()
    env = {
        **os.environ,
        "NEXTSTEP_WEBHOOK_SECRETS": json.dumps({ingest.SOURCE: [secret]}),
        "NEXTSTEP_LOG_LEVEL": "WARNING",
        "NEXTSTEP_DATABASE_URL": url,
    }
    command = [str(BIN / "nextstep"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    problems: list[str] = []
    results: list[tuple[str, ingest.Outcome]] = []
    log = workdir / f"server-{label}.log"
    with ingest.running(command, env, port, "/readyz", log) as process:
        for name, enabled, stepless in PHASES:
            set_policy(url, enabled)
            before = counts(url)
            outcome = phase(port, process.pid, secret, plan, stepless)
            after = counts(url)
            results.append((name, outcome))
            without_step = (after["interviews"] - before["interviews"]) - (
                after["steps"] - before["steps"]
            )
            made = after["policy_steps"] - before["policy_steps"]
            expected = without_step if enabled else 0
            if made != expected:
                problems.append(f"{name}: {made} policy steps made, {expected} expected")
            if outcome.non_2xx:
                problems.append(f"{name}: non-2xx answers {dict(outcome.statuses)}")
    final = counts(url)
    if not final["deliveries"] == final["applied"] == final["interviews"]:
        problems.append(f"stored: {final}")
    print(
        f"  {'phase':22} {'sent':>6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}"
        f" {'cpu us/req':>10}"
    )
    for name, outcome in results:
        print(
            f"  {name:22} {outcome.sent:6d} {outcome.rps:8.1f} {outcome.percentile(0.5):7.1f}"
            f" {outcome.percentile(0.99):7.1f} {outcome.non_2xx:7d}"
            f" {outcome.cpu_per_request_us:10.0f}"
        )
    for mix, first in (("events with a step", 0), ("half the events without a step", 3)):
        ahead, policy, behind = (results[first + n][1] for n in range(3))
        base_rps = (ahead.rps + behind.rps) / 2
        base_cpu = (ahead.cpu_per_request_us + behind.cpu_per_request_us) / 2
        rps_ratio = policy.rps / base_rps if base_rps else 0.0
        cpu_ratio = policy.cpu_per_request_us / base_cpu if base_cpu else 0.0
        verdict = "within" if rps_ratio >= 1 - TARGET else "OUTSIDE"
        print(
            f"  {mix}: policy/none req/s {rps_ratio:.2f}, CPU per request {cpu_ratio:.2f} "
            f"({verdict} the {TARGET:.0%} target)"
        )
    print(f"  stored: {final}")
    print(f"  load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return problems


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (600 events, 10 s)")
    parser.add_argument("--events", type=int, help="events per measured phase (default 3000)")
    parser.add_argument("--seconds", type=float, help="cap per measured phase (default 20)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEXTSTEP_BENCH_POSTGRES_URL")
        or os.environ.get("NEXTSTEP_TEST_POSTGRES_URL")
        or ingest.DEFAULT_POSTGRES_URL,
    )
    args = parser.parse_args()
    plan = ingest.Plan(
        events=args.events or (600 if args.quick else 3000),
        warmup=100 if args.quick else 300,
        seconds=args.seconds or (10.0 if args.quick else 20.0),
        workers=1,
        profile_dir=None,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    print(
        f"ingest with a deadline policy: {plan.events} interview.completed events per phase "
        f"(half with a step, half without), {ingest.CONCURRENCY} connections, 1 worker"
    )
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nextstep-bench-policy-") as tmp:
        workdir = Path(tmp)
        for label in [d.strip() for d in args.databases.split(",") if d.strip()]:
            print(f"{label}:")
            try:
                if label == "sqlite":
                    database = ingest.sqlite_database(workdir)
                elif label == "postgresql":
                    database = ingest.postgresql_database(args.postgres_url)
                else:
                    raise ValueError(f"unknown database {label!r}")
                with database as url:
                    problems = run_database(label, url, secret, plan, workdir)
            except Exception as exc:
                problems = [f"{type(exc).__name__}: {exc}"]
            failures += [f"{label}: {p}" for p in problems]
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
