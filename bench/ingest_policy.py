"""Event ingestion with a deadline policy active against none, in the same run.

For each database (a SQLite file, a fresh PostgreSQL database) the script starts
`nextstep serve --workers 1`, and sends signed canonical `interview.completed` events over
16 keep-alive connections (bench/ingest.py's client): half of them with one next step
(due_at given), half with none. Three measured phases on the same server and database,
each after its own warm-up:

1. no policy;
2. a calendar (America/New_York, Mon-Fri 09:00-17:00, US holidays) and a policy matching
   the events' stage, with a due_rule and a default_step: every interview completed
   without a step gets the policy's step, due 3 business days later;
3. no policy again (the policy disabled), to show the drift of the machine between phases.

It prints requests/s, p50/p99 and server CPU per request of each phase, and the ratio of the
policy phase to the mean of the two others (target: within 10 %). It then checks the
stored data: every acknowledged delivery applied, one interview each, one commitment per
event with a step, and one policy step per stepless event of the policy phase only.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ingest
from sqlalchemy import create_engine, text
from standardwebhooks.webhooks import Webhook

from app.migrate import upgrade

BIN = Path(sys.executable).parent
TARGET = 0.10
HOURS = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def event_body(tag: str, index: int, ended: datetime) -> bytes:
    """Even indexes carry a next step with its due_at; odd ones carry none."""
    body = json.loads(ingest.event_body(tag, index, ended))
    if index % 2:
        body["data"]["next_steps"] = []
    return json.dumps(body).encode()


def signed_requests(secret: str, tag: str, count: int) -> list[bytes]:
    webhook = Webhook(secret)
    now = datetime.now(UTC)
    ended = now - timedelta(days=1)
    requests = []
    for index in range(count):
        body = event_body(tag, index, ended)
        webhook_id = f"msg_{tag}_{index}"
        signature = webhook.sign(webhook_id, now, body.decode())
        head = (
            f"POST /v1/events/{ingest.SOURCE} HTTP/1.1\r\n"
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


def set_policy(url: str, enabled: bool) -> None:
    """The calendar and the policy, written as the API writes them (created once)."""
    engine = create_engine(url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            exists = conn.execute(text("SELECT count(*) FROM deadline_policy")).scalar_one()
            if exists:
                conn.execute(text("UPDATE deadline_policy SET enabled = :e"), {"e": enabled})
                return
            calendar_id = uuid.uuid4()
            conn.execute(
                text(
                    "INSERT INTO calendar (id, name, time_zone, hours, holidays, closed_dates,"
                    " is_default, version, created_at, updated_at) VALUES (:id, 'New York',"
                    " 'America/New_York', :hours, :holidays, '[]', true, 1, :now, :now)"
                ),
                {
                    "id": calendar_id,
                    "hours": json.dumps(HOURS),
                    "holidays": json.dumps({"country": "US", "subdivision": None}),
                    "now": now,
                },
            )
            step = {
                "action": "Tell the candidate the decision",
                "owner": {"id": "hm-1", "name": "Hana", "role": "hiring_manager"},
                "channel": "email",
                "rule": {"business_days": 3, "at": "17:00"},
            }
            conn.execute(
                text(
                    "INSERT INTO deadline_policy (id, name, position, enabled, match, calendar_id,"
                    " due_rule, default_step, version, created_at, updated_at) VALUES (:id,"
                    " 'First interview', 1, :enabled, :match, :calendar, :rule, :step, 1, :now,"
                    " :now)"
                ),
                {
                    "id": uuid.uuid4(),
                    "enabled": enabled,
                    "match": json.dumps({"stage": "First interview"}),
                    "calendar": calendar_id,
                    "rule": json.dumps({"business_days": 3, "at": "end_of_day"}),
                    "step": json.dumps(step),
                    "now": now,
                },
            )
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


def phase(port: int, pid: int, secret: str, plan: ingest.Plan) -> ingest.Outcome:
    """A warm-up and a measured load; returns the measured outcome."""
    warmup = ingest.load(port, signed_requests(secret, f"w{uuid.uuid4().hex[:8]}", plan.warmup), 60)
    requests = signed_requests(secret, f"m{uuid.uuid4().hex[:8]}", plan.events)
    started = ingest.cpu_seconds(pid)
    measured = ingest.load(port, requests, plan.seconds)
    measured.cpu = ingest.cpu_seconds(pid) - started
    measured.statuses.update({status: n for status, n in warmup.statuses.items() if status >= 300})
    return measured


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
    results: dict[str, ingest.Outcome] = {}
    stepless: dict[str, int] = {}
    log = workdir / f"server-{label}.log"
    with ingest.running(command, env, port, "/readyz", log) as process:
        for name, policy in (("none", None), ("policy", True), ("none again", False)):
            if policy is not None:
                set_policy(url, policy)
            before = counts(url)
            outcome = phase(port, process.pid, secret, plan)
            after = counts(url)
            results[name] = outcome
            stepless[name] = (
                after["interviews"] - before["interviews"] - (after["steps"] - before["steps"])
            )
            made = after["policy_steps"] - before["policy_steps"]
            expected = stepless[name] if name == "policy" else 0
            if made != expected:
                problems.append(f"{name}: {made} policy steps made, {expected} expected")
            if outcome.non_2xx:
                problems.append(f"{name}: non-2xx answers {dict(outcome.statuses)}")
    final = counts(url)
    if not final["deliveries"] == final["applied"] == final["interviews"]:
        problems.append(f"stored: {final}")
    print(
        f"  {'phase':11} {'sent':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
        f" {'cpu us/req':>10}"
    )
    for name, outcome in results.items():
        print(
            f"  {name:11} {outcome.sent:7d} {outcome.rps:9.1f} {outcome.percentile(0.5):8.1f}"
            f" {outcome.percentile(0.99):8.1f} {outcome.non_2xx:8d}"
            f" {outcome.cpu_per_request_us:10.0f}"
        )
    base_rps = (results["none"].rps + results["none again"].rps) / 2
    base_cpu = (results["none"].cpu_per_request_us + results["none again"].cpu_per_request_us) / 2
    rps_ratio = results["policy"].rps / base_rps if base_rps else 0.0
    cpu_ratio = results["policy"].cpu_per_request_us / base_cpu if base_cpu else 0.0
    verdict = "within" if rps_ratio >= 1 - TARGET else "OUTSIDE"
    print(
        f"  policy/none: req/s {rps_ratio:.2f}, CPU per request {cpu_ratio:.2f} "
        f"({verdict} the {TARGET:.0%} target); stored {final}"
    )
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
