"""Outbound delivery: 10,000 reminders falling due at once, sent to a local receiver.

For each setup (SQLite with one `nextstep serve`; PostgreSQL with one, then two) the
script migrates a fresh database, writes an endpoint (subscribed to next_step.overdue),
a rule with one step at the due time, and N open steps whose reminders all fall due at
the same instant a few seconds ahead; it starts the servers (each runs the worker), and
waits until the receiver has every message. The receiver runs in this process on
127.0.0.1, verifies every signature, and notes when each webhook-id arrived. It prints
the time from the firing instant to the last delivery, messages per second over that
time, the p50/p99 lag of arrivals behind `fire_at`, duplicates (a webhook-id received
twice) against the retries the database recorded, and, afterwards, the lag of one lone
reminder. The baselines, measured in the same run: the same number of signed posts sent to
the same receiver from a process of their own, at the worker's concurrency, with no
database: once through the worker's own ``send`` and client (httpx over its aiohttp
transport, the address vetted at each attempt), once from a bare aiohttp session.

Fairness (setup ``fair``, PostgreSQL, one process): the same burst to two endpoints, a
fast one beside another fast one, then beside one that answers each message in 5 s; the
fast endpoint's messages/s in both, and their ratio.

Then ingestion (bench/ingest.py's load, same sitting): signed events into a server with
no endpoint, then into one with an endpoint subscribed to every state change (its
worker sending them to the receiver meanwhile), and the ratio of the two.

    .venv/bin/python bench/outbound.py [--reminders N] [--setups sqlite,pg1,pg2,fair]
        [--no-ingest] [--postgres-url URL]

Targets: >= 1,500 messages/s with one process on PostgreSQL and >= 0.25 of the bare aiohttp
baseline, no duplicate without a recorded retry, the lag of a lone reminder under 2 s, the
fast endpoint beside a slow one >= 0.90 of alone, ingestion with a subscribed endpoint
>= 0.85 of none.
"""

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
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

import aiohttp
import ingest
from sqlalchemy import create_engine, insert, select, text
from sqlmodel import SQLModel
from standardwebhooks.webhooks import Webhook

from app.config import get_settings
from app.migrate import upgrade
from app.models.outbound import EventType
from app.outbound.sending import Outgoing, new_client, send, signed_headers

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SETTLE_SECONDS = 6.0
DEADLINE_SECONDS = 300.0


@dataclass
class Received:
    """What the receiver saw: arrival instants by webhook-id, and bad signatures."""

    arrivals: dict[str, list[float]] = field(default_factory=dict)
    bad: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


class Receiver:
    """A minimal HTTP/1.1 keep-alive server on asyncio, in a thread of its own, answering
    each request at once or after ``delay`` seconds."""

    def __init__(self, secret: str, delay: float = 0.0) -> None:
        self.secret = secret
        self.delay = delay
        self.webhook = Webhook(secret)
        self.received = Received()
        self.port = ingest.free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        )
        self.ready.set()
        with contextlib.suppress(RuntimeError):
            self.loop.run_until_complete(server.serve_forever())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self._note(headers, body)
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _note(self, headers: dict[str, str], body: bytes) -> None:
        at = time.time()
        try:
            self.webhook.verify(body, headers, json_parse=False)
        except Exception:
            with self.received.lock:
                self.received.bad += 1
            return
        with self.received.lock:
            self.received.arrivals.setdefault(headers["webhook-id"], []).append(at)

    def start(self) -> "Receiver":
        self.thread.start()
        self.ready.wait(10)
        return self

    def reset(self) -> None:
        with self.received.lock:
            self.received = Received()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def seed(url: str, receiver: Receiver, secret: str, count: int, fire_at: datetime) -> None:
    """An endpoint, a rule, and ``count`` open steps whose reminders fire at ``fire_at``."""
    upgrade(url)
    tables = SQLModel.metadata.tables
    now = datetime.now(UTC)
    engine = create_engine(url)
    endpoint_id, rule_id = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            insert(tables["endpoint"]),
            [
                {
                    "id": endpoint_id,
                    "kind": "webhook",
                    "url": f"http://127.0.0.1:{receiver.port}/hooks",
                    "description": None,
                    "event_types": [EventType.overdue.value],
                    "enabled": True,
                    "disabled_reason": None,
                    "secret": secret,
                    "previous_secret": None,
                    "previous_secret_expires_at": None,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        conn.execute(
            insert(tables["reminder_rule"]),
            [
                {
                    "id": rule_id,
                    "name": "overdue",
                    "position": 0,
                    "enabled": True,
                    "match": {},
                    "steps": [{"offset": "PT0S", "type": EventType.overdue.value}],
                    "quiet_hours": False,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        for start in range(0, count, 2000):
            interviews, steps, reminders = [], [], []
            for _ in range(start, min(count, start + 2000)):
                interview_id, step_id = uuid.uuid4(), uuid.uuid4()
                interviews.append(
                    {
                        "id": interview_id,
                        "source": "bench",
                        "external_id": str(interview_id),
                        "candidate_external_id": f"c-{interview_id.hex[:8]}",
                        "candidate_name": "Ada Candidate",
                        "candidate_email": None,
                        "job_external_id": "job-1",
                        "job_title": "Engineer",
                        "stage": "onsite",
                        "status": "completed",
                        "interviewers": [],
                        "default_owners": {},
                        "starts_at": None,
                        "ends_at": now - timedelta(days=2),
                        "completed_at": now - timedelta(days=2),
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                steps.append(
                    {
                        "id": step_id,
                        "interview_id": interview_id,
                        "source": None,
                        "external_id": None,
                        "action": "Tell the candidate the decision",
                        "owner_id": "hm-1",
                        "owner_name": "Hana Manager",
                        "owner_role": "hiring_manager",
                        "owed_by": "company",
                        "channel": None,
                        "agreed_at": now - timedelta(days=2),
                        "due_at": fire_at,
                        "promised_by": None,
                        "candidate_note": None,
                        "status": "open",
                        "outcome": None,
                        "reason": None,
                        "completed_at": None,
                        "cancelled_at": None,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                reminders.append(
                    {
                        "id": uuid.uuid4(),
                        "commitment_id": step_id,
                        "rule_id": rule_id,
                        "rule_version": 1,
                        "step": 0,
                        "type": EventType.overdue.value,
                        "escalate_to": None,
                        "due_at": fire_at,
                        "owner_id": "hm-1",
                        "fire_at": fire_at,
                        "state": "scheduled",
                        "reason": None,
                        "created_at": now,
                        "settled_at": None,
                    }
                )
            conn.execute(insert(tables["interview"]), interviews)
            conn.execute(insert(tables["commitment"]), steps)
            conn.execute(insert(tables["reminder"]), reminders)
    engine.dispose()


def recorded_retries(url: str) -> tuple[int, int, Counter[str]]:
    """Messages, those with more than one attempt, and messages by status."""
    engine = create_engine(url)
    with engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM message")).scalar_one()
        retried = conn.execute(text("SELECT count(*) FROM message WHERE attempts > 1")).scalar_one()
        by_status = conn.execute(text("SELECT status, count(*) FROM message GROUP BY status"))
        statuses: Counter[str] = Counter({row[0]: row[1] for row in by_status})
    engine.dispose()
    return total, retried, statuses


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@contextlib.contextmanager
def servers(url: str, count: int, workdir: Path, label: str) -> Iterator[None]:
    env = {**os.environ, "NEXTSTEP_DATABASE_URL": url, "NEXTSTEP_WORKER": "true"}
    env["NEXTSTEP_LOG_LEVEL"] = "WARNING"
    with contextlib.ExitStack() as stack:
        for index in range(count):
            port = ingest.free_port()
            command = [str(BIN / "nextstep"), "serve", "--host", "127.0.0.1", "--port", str(port)]
            log = workdir / f"outbound-{label}-{index}.log"
            stack.enter_context(ingest.running(command, env, port, "/readyz", log))
        yield


def wait_for(receiver: Receiver, count: int, deadline: float) -> None:
    while receiver.received.count() < count and time.monotonic() < deadline:
        time.sleep(0.05)


def bench_setup(
    label: str, url: str, processes: int, count: int, workdir: Path
) -> tuple[float, list[str]]:
    """The burst and then a lone reminder on one database; (messages/s, problems)."""
    secret = new_secret()
    receiver = Receiver(secret).start()
    fire_at = datetime.now(UTC) + timedelta(seconds=SETTLE_SECONDS + 4 * processes)
    seed(url, receiver, secret, count, fire_at)
    problems = []
    with servers(url, processes, workdir, label):
        wait_for(receiver, count, time.monotonic() + DEADLINE_SECONDS)
        received = receiver.received
        arrivals = [times[0] for times in received.arrivals.values()]
        lags = [at - fire_at.timestamp() for at in arrivals]
        last = max(lags) if lags else float("nan")
        rate = len(arrivals) / last if lags and last > 0 else 0.0
        twice = sum(1 for times in received.arrivals.values() if len(times) > 1)
        _total, retried, statuses = recorded_retries(url)
        print(
            f"  {label:6} processes={processes} delivered={len(arrivals)}/{count} "
            f"to last: {last:6.2f} s  {rate:7.1f} msg/s  lag p50 {percentile(lags, 0.5):.2f} s "
            f"p99 {percentile(lags, 0.99):.2f} s  twice={twice} retried={retried} "
            f"bad signatures={received.bad}  statuses={dict(statuses)}"
        )
        if len(arrivals) < count:
            problems.append(f"{label}: {count - len(arrivals)} messages never arrived")
        if twice > retried:
            problems.append(f"{label}: {twice} duplicates but only {retried} recorded retries")
        # One lone reminder, fired a few seconds from now on the running servers.
        receiver.reset()
        lone_at = datetime.now(UTC) + timedelta(seconds=3)
        seed_lone(url, secret, lone_at)
        wait_for(receiver, 1, time.monotonic() + 30)
        lone = [times[0] - lone_at.timestamp() for times in receiver.received.arrivals.values()]
        print(f"  {label:6} lone reminder lag: {lone[0]:.2f} s" if lone else "  lone: never")
        if not lone:
            problems.append(f"{label}: the lone reminder never arrived")
    receiver.loop.call_soon_threadsafe(receiver.loop.stop)
    return rate, problems


def seed_lone(url: str, secret: str, fire_at: datetime) -> None:
    """One more step and reminder for the rule and endpoint already there."""
    engine = create_engine(url)
    tables = SQLModel.metadata.tables
    steps, rules = tables["commitment"], tables["reminder_rule"]
    with engine.begin() as conn:
        rule_id = conn.execute(select(rules.c.id)).scalar_one()
        row = conn.execute(select(steps).limit(1)).mappings().one()
        step_id = uuid.uuid4()
        now = datetime.now(UTC)
        values = {**row, "id": step_id, "due_at": fire_at, "created_at": now, "updated_at": now}
        conn.execute(insert(tables["commitment"]), [values])
        conn.execute(
            insert(tables["reminder"]),
            [
                {
                    "id": uuid.uuid4(),
                    "commitment_id": step_id,
                    "rule_id": rule_id,
                    "rule_version": 1,
                    "step": 0,
                    "type": EventType.overdue.value,
                    "escalate_to": None,
                    "due_at": fire_at,
                    "owner_id": values["owner_id"],
                    "fire_at": fire_at,
                    "state": "scheduled",
                    "reason": None,
                    "created_at": now,
                    "settled_at": None,
                }
            ],
        )
    engine.dispose()


def signed_batch(port: int, secret: str, count: int) -> list[Outgoing]:
    body = json.dumps({"type": "next_step.overdue", "data": {"x": "y" * 1500}})
    return [
        Outgoing(
            message_id=uuid.uuid4(),
            attempt_id=uuid.uuid4(),
            n=1,
            type="next_step.overdue",
            endpoint_id=uuid.uuid4(),
            kind="webhook",
            url=f"http://127.0.0.1:{port}/hooks",
            secrets=(secret,),
            body=body,
        )
        for _ in range(count)
    ]


def post_signed(port: int, secret: str, count: int, client: str) -> float:
    """Post ``count`` signed messages at the worker's concurrency; seconds. ``client``:
    "worker", the worker's own ``send`` and client; "aiohttp", a bare aiohttp session
    posting the same bodies with the same signed headers (no httpx, no address vetting)."""
    batch = signed_batch(port, secret, count)
    concurrency = get_settings().worker_concurrency

    async def post_all() -> float:
        gate = asyncio.Semaphore(concurrency)
        async with contextlib.AsyncExitStack() as stack:
            if client == "worker":
                http = await stack.enter_async_context(new_client())

                async def one(outgoing: Outgoing) -> None:
                    async with gate:
                        await send(http, outgoing)

            else:
                session = await stack.enter_async_context(aiohttp.ClientSession())

                async def one(outgoing: Outgoing) -> None:
                    async with gate:
                        headers = signed_headers(outgoing, datetime.now(UTC))
                        data = outgoing.body.encode()
                        async with session.post(outgoing.url, data=data, headers=headers) as r:
                            await r.read()

            started = time.perf_counter()
            await asyncio.gather(*(one(o) for o in batch))
            return time.perf_counter() - started

    return asyncio.run(post_all())


def bench_baseline(count: int, client: str) -> float:
    """Signed posts to the receiver from a process of their own, as the worker's are, at
    the worker's concurrency, no database: ``client`` as ``post_signed`` says."""
    secret = new_secret()
    receiver = Receiver(secret).start()
    command = [sys.executable, __file__, "--post-signed", str(receiver.port), secret, str(count)]
    command += ["--client", client]
    elapsed = float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    rate = receiver.received.count() / elapsed
    print(
        f"  baseline ({client}): {receiver.received.count()} signed posts in {elapsed:.2f} s:"
        f" {rate:.1f}/s"
    )
    receiver.loop.call_soon_threadsafe(receiver.loop.stop)
    return rate


def add_endpoint(url: str, receiver: Receiver, kinds: list[EventType], description: str) -> None:
    """One more webhook endpoint to ``receiver``, taking ``kinds``."""
    upgrade(url)
    now = datetime.now(UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(SQLModel.metadata.tables["endpoint"]),
            [
                {
                    "id": uuid.uuid4(),
                    "kind": "webhook",
                    "url": f"http://127.0.0.1:{receiver.port}/hooks",
                    "description": description,
                    "event_types": [k.value for k in kinds],
                    "enabled": True,
                    "disabled_reason": None,
                    "secret": receiver.secret,
                    "previous_secret": None,
                    "previous_secret_expires_at": None,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
    engine.dispose()


def subscribe_all(url: str, receiver: Receiver) -> None:
    kinds = [EventType.agreed, EventType.updated, EventType.completed, EventType.cancelled]
    add_endpoint(url, receiver, kinds, "every state change")


def bench_fairness(admin_url: str, count: int, workdir: Path) -> tuple[float, list[str]]:
    """The burst of ``count`` reminders to two endpoints (each reminder a message to each):
    a fast one beside another fast one, then beside one that answers each message in
    5 s. The database's work is the same in both; what differs is the second
    endpoint's answers. The first endpoint's messages/s in both, and their ratio (one
    PostgreSQL process)."""
    rates: dict[str, float] = {}
    problems: list[str] = []
    for variant, delay in (("beside a fast endpoint", 0.0), ("beside a slow endpoint", 5.0)):
        secret = new_secret()
        fast = Receiver(secret).start()
        other = Receiver(secret, delay=delay).start()
        fire_at = datetime.now(UTC) + timedelta(seconds=SETTLE_SECONDS + 4)
        with ingest.postgresql_database(admin_url) as url:
            seed(url, fast, secret, count, fire_at)
            add_endpoint(url, other, [EventType.overdue], variant)
            with servers(url, 1, workdir, f"fair-{len(rates)}"):
                wait_for(fast, count, time.monotonic() + DEADLINE_SECONDS)
                arrivals = [times[0] for times in fast.received.arrivals.values()]
                last = max(arrivals) - fire_at.timestamp() if arrivals else float("nan")
                rates[variant] = len(arrivals) / last if arrivals and last > 0 else 0.0
                print(
                    f"  fairness: fast endpoint {variant:22} {len(arrivals)}/{count} in"
                    f" {last:6.2f} s: {rates[variant]:7.1f} msg/s; the other received"
                    f" {other.received.count()} meanwhile"
                )
            if len(arrivals) < count:
                problems.append(f"fairness {variant}: {count - len(arrivals)} never arrived")
        # The receivers are left running (daemon threads): stopping a loop with answers
        # still asleep or connections open would only print their tasks' complaints.
    slow, fast_rate = rates["beside a slow endpoint"], rates["beside a fast endpoint"]
    ratio = slow / fast_rate if fast_rate else 0.0
    print(f"  fairness: beside slow / beside fast = {ratio:.2f} (target >= 0.90)")
    return ratio, problems


def bench_ingest(label: str, admin_url: str, workdir: Path) -> tuple[float, list[str]]:
    """Ingestion into a server with no endpoint, then with one taking every state change."""
    secret = new_secret()
    receiver = Receiver(new_secret()).start()
    plan = ingest.Plan(warmup=300, events=3000, seconds=20.0, workers=1, profile_dir=None)
    env = {
        **os.environ,
        "NEXTSTEP_WEBHOOK_SECRETS": json.dumps({ingest.SOURCE: [secret]}),
        "NEXTSTEP_LOG_LEVEL": "WARNING",
    }
    figures: dict[str, float] = {}
    problems: list[str] = []
    for variant in ("none", "subscribed"):
        with database(label, admin_url, workdir, variant) as url:
            if variant == "subscribed":
                subscribe_all(url, receiver)
            outcome, found = ingest.bench_server(
                f"{label}-{variant}", url, env, secret, plan, workdir
            )
            figures[variant] = outcome.rps
            problems += found
            print(f"  ingest {label:10} endpoint={variant:10} {outcome.rps:8.1f} req/s")
    ratio = figures["subscribed"] / figures["none"] if figures["none"] else 0.0
    print(f"  ingest {label}: subscribed/none = {ratio:.2f} (target >= 0.85)")
    print(f"  messages received while ingesting: {receiver.received.count()}")
    return ratio, problems


@contextlib.contextmanager
def database(label: str, admin_url: str, workdir: Path, variant: str) -> Iterator[str]:
    if label == "sqlite":
        yield f"sqlite:///{workdir / f'outbound-{variant}.db'}"
        return
    with ingest.postgresql_database(admin_url) as url:
        yield url


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--setups", default="sqlite,pg1,pg2,fair")
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEXTSTEP_BENCH_POSTGRES_URL")
        or os.environ.get("NEXTSTEP_TEST_POSTGRES_URL")
        or ingest.DEFAULT_POSTGRES_URL,
    )
    parser.add_argument(
        "--post-signed", nargs=3, metavar=("PORT", "SECRET", "N"), help=argparse.SUPPRESS
    )
    parser.add_argument("--client", default="worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.post_signed:
        port, secret, count = args.post_signed
        print(post_signed(int(port), secret, int(count), args.client))
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nextstep-bench-outbound-") as tmp:
        workdir = Path(tmp)
        print(f"outbound: {args.reminders} reminders due at once; {os.cpu_count()} CPUs")
        bare = 0.0
        if args.setups:
            bench_baseline(args.reminders, "worker")
            bare = bench_baseline(args.reminders, "aiohttp")
        for setup in filter(None, args.setups.split(",")):
            if setup == "fair":
                _ratio, found = bench_fairness(args.postgres_url, args.reminders, workdir)
                problems += found
                continue
            processes = int(setup[2:]) if setup.startswith("pg") else 1
            kind = "postgresql" if setup.startswith("pg") else "sqlite"
            with database(kind, args.postgres_url, workdir, setup) as url:
                rate, found = bench_setup(setup, url, processes, args.reminders, workdir)
            problems += found
            ratio = rate / bare if bare else 0.0
            print(f"  {setup}: {rate:.1f} msg/s, {ratio:.2f} of bare aiohttp (target >= 0.25)")
            if processes == 1 and kind == "postgresql" and rate < 1500:
                print(f"  {setup}: {rate:.1f} msg/s is BELOW the target of 1,500")
        if not args.no_ingest:
            for kind in ("sqlite", "postgresql"):
                _ratio, found = bench_ingest(kind, args.postgres_url, workdir)
                problems += found
        print(f"  load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
