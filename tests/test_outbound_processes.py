"""The outbound worker in real `nextstep serve` processes sharing one PostgreSQL database:
two racing over the same messages send each once; one killed mid-send loses nothing.

PostgreSQL only: several processes share the work there (``FOR UPDATE SKIP LOCKED``).
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import select

from app import db
from app.main import create_app
from app.models import Scope, utcnow
from app.models.outbound import Endpoint, MessageStatus, Reminder, ReminderState
from app.outbound.worker import INTERRUPTED
from tests.conftest import empty_tables, make_key, reset_caches, use_database
from tests.factories import iso
from tests.outbound_helpers import Answer, Receiver, attempts, make_endpoint, make_rule, messages
from tests.test_reliability import Server, running, service_env

Headers = dict[str, str]
pytestmark = [pytest.mark.process, pytest.mark.postgresql]


@pytest.fixture
def postgres_url(postgresql_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    use_database(monkeypatch, postgresql_database)
    empty_tables(postgresql_database)
    yield postgresql_database
    reset_caches()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


def _agree_many(url: str, count: int, due_in: timedelta) -> None:
    """``count`` steps, 50 to an interview, agreed through the API (no worker in here)."""
    headers = {"Authorization": f"Bearer {make_key(Scope.admin)}"}
    due = iso(utcnow() + due_in)
    with TestClient(create_app()) as client:
        for first in range(0, count, 50):
            steps = [
                {"action": f"Call {n}", "owner": {"id": "hr-1", "role": "hr"}, "due_at": due}
                for n in range(first, min(first + 50, count))
            ]
            body = {
                "source": "acme-ats",
                "external_id": f"iv-{first}",
                "candidate": {"external_id": f"cand-{first}", "name": "Casey"},
                "job": {"external_id": "job-1", "title": "Analyst"},
                "stage": "Onsite",
                "status": "completed",
                "next_steps": steps,
            }
            response = client.post("/v1/interviews", json=body, headers=headers)
            assert response.status_code == 201, response.text


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"within {timeout} s: {what}")


def _all_succeeded(expected: int) -> Callable[[], bool]:
    def check() -> bool:
        rows = messages()
        return len(rows) == expected and all(m.status == MessageStatus.succeeded for m in rows)

    return check


def _attempts_made(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    pattern = r'^nextstep_outbound_attempts_total\{kind="webhook",outcome="succeeded"\} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _serve_env(url: str, **extra: str) -> dict[str, str]:
    # The worker beside each server at the servers' own priority: these tests wait for its
    # messages on a machine other tests keep busy, and measure no ingestion beside it.
    return service_env(
        url,
        NEXTSTEP_WORKER="true",
        NEXTSTEP_WORKER_NICENESS="0",
        NEXTSTEP_WORKER_POLL_SECONDS="0.1",
        NEXTSTEP_PENDING_SWEEP_SECONDS="0",
        **extra,
    )


@contextlib.contextmanager
def running_together(*servers: Server) -> Iterator[None]:
    """Start the servers at the same time (each takes seconds to import the app)."""
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(Server.start, servers))
        yield
    finally:
        for server in servers:
            server.stop()


def test_two_processes_racing_send_every_message_once(
    postgres_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    hook = make_endpoint(receiver.url(), ["next_step.agreed", "next_step.overdue"])
    receiver.secrets.append(hook.secret or "")
    receiver.default("/hook", Answer(204, delay=0.002))
    make_rule([{"offset": "PT0S", "type": "next_step.overdue"}], quiet_hours=False)
    _agree_many(postgres_url, 200, due_in=timedelta(days=1))
    # Held back until both processes are up: the endpoint off, the reminders not yet due.
    with db.new_session(write=True) as session:
        session.exec(update(Endpoint).values(enabled=False))
        session.commit()
    env = _serve_env(postgres_url, NEXTSTEP_WORKER_BATCH="20", NEXTSTEP_WORKER_CONCURRENCY="8")
    first, second = Server(env, tmp_path / "a.log"), Server(env, tmp_path / "b.log")

    with running_together(first, second):
        with db.new_session(write=True) as session:
            session.exec(update(Endpoint).values(enabled=True))
            session.exec(update(Reminder).values(fire_at=utcnow()))
            session.commit()
        _wait(_all_succeeded(400), 25, "400 messages succeeded")
        made = (_attempts_made(first), _attempts_made(second))

    sent = {str(m.id): m for m in messages()}
    assert Counter(m.type for m in sent.values()) == {
        "next_step.agreed": 200,
        "next_step.overdue": 200,
    }
    delivered = Counter(d.webhook_id for d in receiver.deliveries)
    assert set(delivered) == set(sent)
    # A message reaches the receiver twice only if it was really attempted twice.
    assert {i: n for i, n in delivered.items() if n > 1} == {
        i: len(attempts(i)) for i in sent if len(attempts(i)) > 1
    }
    assert all(d.verified_by for d in receiver.deliveries)
    assert all(made), f"each process sent some: {made}"
    assert sum(made) == len(receiver.deliveries)
    with db.new_session() as session:
        states = Counter(r.state for r in session.exec(select(Reminder)).all())
    assert states == {ReminderState.sent: 200}


def test_a_process_killed_mid_send_leaves_its_messages_to_be_sent_again(
    postgres_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    hook = make_endpoint(receiver.url(), ["next_step.agreed"])
    receiver.secrets.append(hook.secret or "")
    receiver.default("/hook", Answer(204, delay=60))  # held open: the attempts in flight
    _agree_many(postgres_url, 20, due_in=timedelta(days=1))
    env = _serve_env(
        postgres_url,
        NEXTSTEP_WORKER_LEASE_SECONDS="15",
        NEXTSTEP_WORKER_CONCURRENCY="32",
        NEXTSTEP_WORKER_ENDPOINT_CONCURRENCY="32",
    )
    doomed = Server(env, tmp_path / "doomed.log")

    doomed.start()
    try:
        _wait(lambda: len(receiver.deliveries) == 20, 15, "20 attempts in flight")
    finally:
        doomed.kill()
    killed_at = time.time()
    receiver.default("/hook", Answer(204))
    with running(Server(env, tmp_path / "after.log")):
        _wait(_all_succeeded(20), 30, "20 messages succeeded after the lease")

    for sent in messages():
        log = attempts(sent.id)
        assert (sent.attempts, len(log)) == (2, 2)
        assert (log[0].n, log[0].response_status, log[0].error) == (1, None, INTERRUPTED)
        assert (log[1].n, log[1].response_status, log[1].error) == (2, 204, None)
        first, again = [d for d in receiver.deliveries if d.webhook_id == str(sent.id)]
        assert first.body == again.body
        assert again.verified_by
        # Not before the lease of the first attempt ran out.
        assert again.received_at - first.received_at >= 14
        assert again.received_at > killed_at
    assert len(receiver.deliveries) == 40


def test_the_worker_alone_stops_on_sigterm_mid_send(
    postgres_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    """`nextstep worker` stopped while attempts are in flight: it exits promptly, records
    what was answered, and leaves the rest to their lease (their attempts say so)."""
    hook = make_endpoint(receiver.url(), ["next_step.agreed"])
    receiver.secrets.append(hook.secret or "")
    receiver.answer("/hook", *[Answer(204)] * 5)
    receiver.default("/hook", Answer(204, delay=60))  # held open: in flight at the signal
    _agree_many(postgres_url, 15, due_in=timedelta(days=1))
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"],
            env=_serve_env(postgres_url, NEXTSTEP_WORKER_CONCURRENCY="32"),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait(lambda: len(receiver.deliveries) == 15, 30, "15 attempts made")
            _wait(lambda: _succeeded() == 5, 10, "the 5 answered recorded")
            # Twice, as `nextstep serve` stopping does: it terminates its worker, and its
            # own end signals it again (app/serving.py).
            worker.send_signal(signal.SIGTERM)
            time.sleep(0.05)
            worker.send_signal(signal.SIGTERM)
            returncode = worker.wait(timeout=15)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    assert returncode == 0, log_path.read_text(errors="replace")[-3000:]
    rows = messages()
    assert Counter(m.status for m in rows) == {
        MessageStatus.succeeded: 5,
        MessageStatus.pending: 10,
    }
    for held in (m for m in rows if m.status == MessageStatus.pending):
        assert [(a.n, a.response_status, a.error) for a in attempts(held.id)] == [
            (1, None, INTERRUPTED)
        ]
        assert held.next_attempt_at is not None
        assert held.next_attempt_at > utcnow()


def _succeeded() -> int:
    return sum(m.status == MessageStatus.succeeded for m in messages())


def test_a_server_stopped_by_sigterm_stops_its_worker_and_cleans_up(
    postgres_url: str, tmp_path: Path
) -> None:
    server = Server(_serve_env(postgres_url), tmp_path / "server.log")
    server.start()
    assert server.process is not None
    (worker_pid,) = _children(server.process.pid)
    environ = Path(f"/proc/{worker_pid}/environ").read_bytes().split(b"\0")
    (metrics_dir,) = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"PROMETHEUS_")]
    assert Path(metrics_dir).is_dir()

    server.process.send_signal(signal.SIGTERM)

    assert server.process.wait(timeout=20) == 0, server.output()
    assert not Path(f"/proc/{worker_pid}").exists()
    assert not Path(metrics_dir).exists()


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def test_a_worker_that_dies_is_started_again(
    postgres_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    hook = make_endpoint(receiver.url(), ["next_step.agreed"])
    receiver.secrets.append(hook.secret or "")
    server = Server(_serve_env(postgres_url), tmp_path / "server.log")
    with running(server):
        assert server.process is not None
        pid = server.process.pid
        (first,) = _children(pid)
        os.kill(first, signal.SIGKILL)
        _wait(lambda: _children(pid) not in ([], [first]), 15, "a new worker")
        _agree_many(postgres_url, 5, due_in=timedelta(days=1))
        _wait(_all_succeeded(5), 20, "5 messages succeeded")
        assert "the outbound worker exited (-9); starting another" in server.output()
    assert len(receiver.deliveries) == 5
