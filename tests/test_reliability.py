"""Real-process reliability: `nextstep serve` killed, cut off from its database, replicated.

Every test here starts the service as a separate process, exactly as it runs in
production, talks to it over HTTP on 127.0.0.1, and checks what a user would see and
what the database holds. Each test builds a fresh database of its own. Numbers are
logged under the ``nextstep.reliability`` logger (``--log-cli-level=INFO`` shows them).
"""

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, Literal

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ProgrammingError
from sqlmodel import Session

from app.auth import create_key
from app.migrate import alembic_config, upgrade
from app.models import Scope, utcnow
from tests.conftest import WEBHOOK_SECRETS, require_postgres_admin_url
from tests.signing import event_body, standard_headers

log = logging.getLogger("nextstep.reliability")
# One line per request would bury the figures this module logs.
logging.getLogger("httpx").setLevel(logging.WARNING)

SOURCE = "acme-ats"
SECRET = WEBHOOK_SECRETS[SOURCE][0]
PROBLEM = "application/problem+json"
DAY = timedelta(days=1)
HTTP_TIMEOUT = 10.0
pytestmark = pytest.mark.process


# --- databases ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_postgres_database(*, migrated: bool = True) -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped at the end."""
    admin_url = require_postgres_admin_url()
    name = f"nextstep_rel_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        try:
            if migrated:
                upgrade(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def database_engine(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTSTEP_")}
    env.update(
        NEXTSTEP_DATABASE_URL=database_url,
        NEXTSTEP_WEBHOOK_SECRETS=json.dumps(WEBHOOK_SECRETS),
        NEXTSTEP_LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"nextstep {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def create_admin_key(env: dict[str, str]) -> str:
    out = run_cli(env, "keys", "create", "--name", "reliability", "--scope", "admin")
    return out.strip().splitlines()[-1]


def stored_admin_key(url: str) -> str:
    """An admin key written straight into the database: a process fewer to start where the
    command itself is not what is tested (test_foundation.py tests `nextstep keys`)."""
    with database_engine(url) as engine, Session(engine) as session:
        _key, token = create_key(session, "reliability", [Scope.admin], utcnow())
    return token


class Server:
    """One `nextstep serve` process on 127.0.0.1, its output kept in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.env = env
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}: {self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        # Stopped before failing: a server left running (and its worker) would go on taking
        # messages from the database the next tests use.
        output = self.output()
        self.stop()
        pytest.fail(f"server did not answer /healthz within {timeout} s: {output}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no flush, nothing runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._close_log()

    def rss_bytes(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


# --- events ------------------------------------------------------------------------------


def completed_event(interview: str, ended: datetime) -> bytes:
    """A completed interview with one next step: one interview, one commitment."""
    return event_body(
        "interview.completed",
        ended,
        {
            "external_id": interview,
            "candidate": {"external_id": f"cand-{interview}", "name": "Casey Candidate"},
            "job": {"external_id": "job-9", "title": "Analyst"},
            "stage": "First interview",
            "ends_at": ended.isoformat(),
            "next_steps": [
                {
                    "external_id": f"step-{interview}",
                    "action": "Call the candidate to schedule the second interview",
                    "owner": {"id": "hr-1", "name": "Harriet", "role": "hr"},
                    "channel": "call",
                    "due_at": (ended + 3 * DAY).isoformat(),
                }
            ],
        },
    )


def post_event(
    client: httpx.Client, base_url: str, body: bytes, webhook_id: str, timeout: float = HTTP_TIMEOUT
) -> httpx.Response:
    return client.post(
        f"{base_url}/v1/events/{SOURCE}",
        content=body,
        headers=standard_headers(body, SECRET, webhook_id),
        timeout=timeout,
    )


# --- 1. kill -9 under load ---------------------------------------------------------------


@dataclass
class LoadResult:
    sent: int = 0
    acknowledged: dict[str, str] = field(default_factory=dict)  # webhook id -> delivery id
    bodies: dict[str, bytes] = field(default_factory=dict)
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0


def _client_loop(
    number: int, base_url: str, stop: threading.Event, result: LoadResult, ended: datetime
) -> None:
    sequence = 0
    with httpx.Client() as client:
        while not stop.is_set():
            sequence += 1
            webhook_id = f"kill-{number}-{sequence}"
            body = completed_event(webhook_id, ended)
            with result.lock:
                result.sent += 1
                result.bodies[webhook_id] = body
                result.in_flight += 1
            try:
                response = post_event(client, base_url, body, webhook_id, timeout=5)
            except httpx.HTTPError:
                response = None
            with result.lock:
                result.in_flight -= 1
                if response is not None and response.is_success:
                    result.acknowledged[webhook_id] = response.json()["delivery_id"]
                else:
                    result.failed += 1
            if response is None:
                time.sleep(0.02)  # the server is down: do not spin


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def kill_nine_under_load(
    database_url: str, tmp_path: Path, clients: int, acks_before_kill: int
) -> None:
    env = service_env(database_url)
    server = Server(env, tmp_path / "server.log")
    result = LoadResult()
    stop = threading.Event()
    ended = utcnow() - 5 * DAY
    threads = [
        threading.Thread(target=_client_loop, args=(n, server.url, stop, result, ended))
        for n in range(clients)
    ]
    try:
        server.start()
        started = time.monotonic()
        for thread in threads:
            thread.start()
        _wait_for(lambda: len(result.acknowledged) >= acks_before_kill, 60, "acknowledgements")
        with result.lock:
            in_flight_at_kill = result.in_flight
        server.kill()
        with result.lock:
            acked_before_restart = len(result.acknowledged)
        time.sleep(0.3)  # clients keep sending into a dead port
        server.start()
        restarted_at = len(result.acknowledged)
        _wait_for(lambda: len(result.acknowledged) >= restarted_at + 8 * clients, 60, "recovery")
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        elapsed = time.monotonic() - started

        # Every acknowledged event is there, with its whole effect (an interview and its step).
        with database_engine(database_url) as engine, engine.connect() as conn:
            stored = {
                row.delivery_key: (str(uuid.UUID(str(row.id))), row.result)
                for row in conn.execute(
                    text("SELECT id, delivery_key, result FROM delivery WHERE source = :s"),
                    {"s": SOURCE},
                )
            }
            interviews = set(
                conn.execute(
                    text("SELECT external_id FROM interview WHERE source = :s"), {"s": SOURCE}
                ).scalars()
            )
            commitments = conn.execute(text("SELECT count(*) FROM commitment")).scalar_one()
        missing = set(result.acknowledged) - set(stored)
        assert not missing, f"{len(missing)} acknowledged events were lost: {sorted(missing)[:5]}"
        for key, delivery_id in result.acknowledged.items():
            assert stored[key] == (delivery_id, "applied")
        # Atomic: a stored delivery always comes with its effects, also one cut off mid-flight.
        assert interviews == set(stored)
        assert commitments == len(stored)

        # The restarted service itself knows every acknowledged event: a redelivery is a duplicate.
        def redeliver(keys: list[str]) -> dict[str, tuple[int, str, str]]:
            answers: dict[str, tuple[int, str, str]] = {}
            with httpx.Client() as client:
                for key in keys:
                    response = post_event(client, server.url, result.bodies[key], key)
                    payload = response.json()
                    answers[key] = (response.status_code, payload["status"], payload["delivery_id"])
            return answers

        keys = sorted(result.acknowledged)
        with ThreadPoolExecutor(max_workers=clients) as pool:
            chunks = pool.map(redeliver, [keys[n::clients] for n in range(clients)])
            redelivered = {key: answer for chunk in chunks for key, answer in chunk.items()}
        assert redelivered == {
            key: (202, "duplicate", delivery_id) for key, delivery_id in result.acknowledged.items()
        }
        log.info(
            "kill -9 (%s): %d clients, %d events sent, %d acknowledged (%d before the kill), "
            "%d failed or refused, %d in flight at the kill, %d stored, 0 lost, %.1f s",
            make_url(database_url).get_backend_name(),
            clients,
            result.sent,
            len(result.acknowledged),
            acked_before_restart,
            result.failed,
            in_flight_at_kill,
            len(stored),
            elapsed,
        )
        assert in_flight_at_kill >= 1, "the kill did not happen mid-load"
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=15)
        server.kill()


# The full run is `make reliability`; the short one (fewer events before the kill) also runs
# in `make test`, on every push.
KILL_LOAD = [
    pytest.param(100, id="short"),
    pytest.param(400, id="full", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("acks_before_kill", KILL_LOAD)
def test_kill_9_under_load_loses_no_acknowledged_event_sqlite(
    tmp_path: Path, acks_before_kill: int
) -> None:
    url = f"sqlite:///{tmp_path / 'nextstep.db'}"
    upgrade(url)
    kill_nine_under_load(url, tmp_path, clients=8, acks_before_kill=acks_before_kill)


@pytest.mark.parametrize("acks_before_kill", KILL_LOAD)
@pytest.mark.postgresql
def test_kill_9_under_load_loses_no_acknowledged_event_postgresql(
    tmp_path: Path, acks_before_kill: int
) -> None:
    with fresh_postgres_database() as url:
        kill_nine_under_load(url, tmp_path, clients=8, acks_before_kill=acks_before_kill)


# --- 2. database outage (PostgreSQL behind a proxy we can cut) ---------------------------


OutageMode = Literal["refuse", "blackhole"]


class TcpProxy:
    """127.0.0.1:<port> → PostgreSQL, with a switch that stands in for the database stopping.

    ``outage("refuse")`` drops every open connection and stops listening: connecting
    is refused, as with a stopped server. ``outage("blackhole")`` drops every open
    connection and accepts new ones without ever answering, as with a hung host or a
    silent network. ``restore()`` forwards again.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.mode: OutageMode | Literal["forward"] = "forward"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def outage(self, mode: OutageMode) -> None:
        self._call(self._outage(mode))

    def restore(self) -> None:
        self._call(self._restore())

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._outage("refuse"))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()

    def _call(self, coroutine: Coroutine[object, object, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _outage(self, mode: OutageMode) -> None:
        self.mode = mode
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _restore(self) -> None:
        for writer in list(self._open):  # the connections held in the blackhole
            writer.transport.abort()
        self._open.clear()
        self.mode = "forward"
        if self._server is None:
            await self._listen()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        if self.mode != "forward":
            return  # held open, never answered
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        self._open.discard(writer)
        self._open.discard(up_writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@dataclass
class Probe:
    what: str
    status: int | None
    seconds: float
    headers: httpx.Headers | None
    body: object


def probe(what: str, request: Callable[[], httpx.Response]) -> Probe:
    started = time.monotonic()
    try:
        response = request()
    except httpx.HTTPError as exc:
        return Probe(what, None, time.monotonic() - started, None, repr(exc))
    body: object = response.json() if response.content else None
    return Probe(what, response.status_code, time.monotonic() - started, response.headers, body)


@dataclass
class Background:
    """Requests kept going through warm-up, outage and recovery, as real clients would."""

    probes: list[tuple[float, Probe]] = field(default_factory=list)  # (started at, probe)
    acknowledged: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _background_loop(
    number: int,
    stop: threading.Event,
    result: Background,
    send_event: Callable[[httpx.Client, str], httpx.Response],
    overdue: Callable[[httpx.Client], httpx.Response],
) -> None:
    sequence = 0
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        while not stop.is_set():
            sequence += 1
            name = f"bg-{number}-{sequence}"
            started = time.monotonic()
            if sequence % 5:
                got = probe("event", partial(send_event, client, name))
            else:
                got = probe("api", partial(overdue, client))
            with result.lock:
                result.probes.append((started, got))
                if got.what == "event" and got.status == 202:
                    result.acknowledged.append(name)
            time.sleep(0.02)


def check_unavailable(p: Probe) -> None:
    """What a client must get while the database is away: a quick, well-formed 503."""
    assert p.seconds <= 5, f"{p.what} took {p.seconds:.1f} s during the outage"
    assert p.status == 503, (p.what, p.status, p.body)
    assert p.headers is not None
    assert p.headers["content-type"] == PROBLEM
    assert int(p.headers["retry-after"]) > 0
    assert isinstance(p.body, dict)
    assert p.body["status"] == 503
    assert "Traceback" not in json.dumps(p.body)


def database_outage(tmp_path: Path, mode: OutageMode, outage_seconds: float) -> None:
    with fresh_postgres_database() as direct_url:
        parsed = make_url(direct_url)
        proxy = TcpProxy(parsed.port or 5432)
        proxy.start()
        proxied = parsed.set(port=proxy.port).render_as_string(hide_password=False)
        env = service_env(proxied)
        key = stored_admin_key(direct_url)
        auth = {"Authorization": f"Bearer {key}"}
        server = Server(env, tmp_path / "server.log")
        ended = utcnow() - 5 * DAY

        def send_event(client: httpx.Client, name: str) -> httpx.Response:
            return post_event(client, server.url, completed_event(name, ended), name)

        def overdue(client: httpx.Client) -> httpx.Response:
            return client.get(f"{server.url}/v1/commitments/overdue", headers=auth)

        def create_interview(client: httpx.Client) -> httpx.Response:
            body = {"candidate": {"external_id": f"api-{uuid.uuid4().hex}"}}
            return client.post(f"{server.url}/v1/interviews", json=body, headers=auth)

        def get(client: httpx.Client, path: str) -> httpx.Response:
            return client.get(f"{server.url}{path}")

        client = httpx.Client(timeout=HTTP_TIMEOUT)
        background = Background()
        stop = threading.Event()
        workers = [
            threading.Thread(
                target=_background_loop, args=(n, stop, background, send_event, overdue)
            )
            for n in range(4)
        ]
        try:
            with running(server):
                # Fill the pool with live connections, which the outage then kills.
                with ThreadPoolExecutor(max_workers=12) as pool:
                    warm = list(pool.map(lambda n: send_event(client, f"warm-{n}"), range(24)))
                    warm += list(pool.map(lambda _n: overdue(client), range(12)))
                assert all(r.is_success for r in warm), [r.status_code for r in warm]
                for worker in workers:
                    worker.start()
                time.sleep(0.5)

                proxy.outage(mode)
                outage_started = time.monotonic()
                # Bursts of concurrent requests: at the cut, then more than the pool holds
                # (10 + 10 overflow), then a few, while the background clients keep going.
                probes: list[Probe] = []
                for round_number, width in enumerate((4, 12, 2)):
                    requests: list[tuple[str, Callable[[], httpx.Response]]] = [
                        *(
                            ("event", partial(send_event, client, f"out-{round_number}-{n}"))
                            for n in range(width)
                        ),
                        *(("api", partial(overdue, client)) for _ in range(width)),
                        *(("api", partial(create_interview, client)) for _ in range(2)),
                        *(("readyz", partial(get, client, "/readyz")) for _ in range(2)),
                        *(("healthz", partial(get, client, "/healthz")) for _ in range(2)),
                    ]
                    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
                        probes += list(pool.map(lambda r: probe(*r), requests))
                time.sleep(max(0.0, outage_started + outage_seconds - time.monotonic()))
                for p in probes:
                    if p.what == "healthz":
                        assert p.seconds <= 5
                        assert p.status == 200
                    else:
                        check_unavailable(p)

                proxy.restore()
                restored = time.monotonic()
                recovered_after: float | None = None
                while time.monotonic() - restored < 20:
                    answers = [
                        probe("event", partial(send_event, client, "out-0-0")),
                        probe("api", partial(overdue, client)),
                    ]
                    if all(a.status is not None and 200 <= a.status < 300 for a in answers):
                        recovered_after = time.monotonic() - restored
                        break
                    time.sleep(0.2)
                assert recovered_after is not None, server.output()
                assert recovered_after <= 15
                time.sleep(0.5)  # the background clients see the recovery too
                stop.set()
                for worker in workers:
                    worker.join(timeout=30)

                # The event refused with 503 was not half-stored: now it applies.
                again = send_event(client, "out-1-0")
                assert again.status_code == 202
                assert again.json()["status"] == "applied"
                assert get(client, "/readyz").status_code == 200
                with ThreadPoolExecutor(max_workers=8) as pool:
                    after = list(pool.map(lambda n: send_event(client, f"after-{n}"), range(16)))
                    after += list(pool.map(lambda _n: overdue(client), range(8)))
                    after += list(pool.map(lambda _n: create_interview(client), range(4)))
                assert all(r.is_success for r in after), [r.status_code for r in after]

            # The clients that kept going saw a success or a clean 503, never a reset or a 500,
            # and every event acknowledged around the cut is stored.
            during = [p for at, p in background.probes if outage_started <= at < restored]
            for _at, p in background.probes:
                assert p.status in (200, 202, 503), (p.what, p.status, p.body, server.output())
                if p.status == 503:
                    check_unavailable(p)
            assert during, "no background request ran during the outage"
            with database_engine(direct_url) as engine, engine.connect() as conn:
                stored = set(conn.execute(text("SELECT delivery_key FROM delivery")).scalars())
            assert set(background.acknowledged) <= stored
            unavailable = [p for p in probes if p.what != "healthz"] + [
                p for p in during if p.status == 503
            ]
            log.info(
                "database outage (%s): %d requests answered 503 + Retry-After + problem+json, "
                "slowest %.2f s; /healthz 200 throughout; recovered %.2f s after the database "
                "returned; background clients: %d requests, %d events acknowledged, none lost",
                mode,
                len(unavailable),
                max(p.seconds for p in unavailable),
                recovered_after,
                len(background.probes),
                len(background.acknowledged),
            )
        finally:
            stop.set()
            for worker in workers:
                if worker.is_alive():
                    worker.join(timeout=30)
            client.close()
            server.kill()
            proxy.close()


# The short outage (the bursts, then the background clients for a moment more) runs in
# `make test`; the full one, eight seconds of clients sending into it, in `make reliability`.
OUTAGE = [
    pytest.param(0.0, id="short"),
    pytest.param(8.0, id="full", marks=pytest.mark.slow),
]


@pytest.mark.postgresql
@pytest.mark.parametrize("outage_seconds", OUTAGE)
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_database_outage_answers_503_fast_and_recovers(
    tmp_path: Path, mode: OutageMode, outage_seconds: float
) -> None:
    database_outage(tmp_path, mode, outage_seconds)


# --- 3. two replicas on one PostgreSQL ---------------------------------------------------


DDL_LOG = """
CREATE TABLE ddl_log (command text, object text);
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ddl_log SELECT command_tag, object_identity FROM pg_event_trigger_ddl_commands();
END $$;
CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl();
"""


def migrate_twice_at_once(url: str, env: dict[str, str]) -> None:
    """Two `nextstep migrate` at the same instant: both exit 0, the schema is built once."""
    try:
        with database_engine(url) as engine, engine.begin() as conn:
            conn.execute(text(DDL_LOG))  # records every CREATE the migrations run
        counting_ddl = True
    except ProgrammingError:  # an event trigger needs a superuser; the version check remains
        counting_ddl = False
    command = [sys.executable, "-m", "app", "migrate"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    for p, (_out, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err.decode(errors="replace")[-2000:]
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with database_engine(url) as engine, engine.connect() as conn:
        versions = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        created = (
            list(
                conn.execute(
                    text(
                        "SELECT object, count(*) FROM ddl_log WHERE command = 'CREATE TABLE' "
                        "GROUP BY object"
                    )
                )
            )
            if counting_ddl
            else []
        )
    assert versions == [head]
    if counting_ddl:
        assert created, "the migrations created no table"
        assert all(count == 1 for _table, count in created), created
    log.info(
        "two concurrent migrates: both exit 0, at head %s, %d tables created once each",
        head,
        len(created),
    )


@dataclass(frozen=True)
class Answer:
    replica: int
    status_code: int
    status: str
    delivery_id: str
    attempts: int
    seconds: float


def send_like_a_sender(
    url: str, key: str, body: bytes, attempts: int = 3
) -> tuple[int, str, str, int]:
    """POST a delivery; with no answer at all (a timeout), send it again as an ATS would.

    Any answer is final, a 503 included: concurrent copies must not make the service
    unavailable.
    """
    headers = standard_headers(body, SECRET, key)
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=30)
        except httpx.TransportError:
            if attempt == attempts:
                raise
            continue
        payload = response.json()
        return (
            response.status_code,
            str(payload.get("status", "")),
            str(payload.get("delivery_id", "")),
            attempt,
        )
    raise AssertionError("unreachable")


def deliver_copies_concurrently(
    replicas: list[Server], deliveries: list[tuple[str, bytes]], copies: int
) -> dict[str, list[Answer]]:
    """Every delivery ``copies`` times, the copies released together and split across replicas."""
    answers: dict[str, list[Answer]] = {key: [] for key, _body in deliveries}
    lock = threading.Lock()

    def send(key: str, body: bytes, copy: int, barrier: threading.Barrier) -> None:
        replica = copy % len(replicas)
        url = f"{replicas[replica].url}/v1/events/{SOURCE}"
        started = time.monotonic()
        try:
            barrier.wait(timeout=30)
            started = time.monotonic()
            status_code, status, delivery_id, attempts = send_like_a_sender(url, key, body)
        except (httpx.HTTPError, ValueError, threading.BrokenBarrierError) as exc:
            status_code, status, delivery_id, attempts = 0, repr(exc), "", 0
        answer = Answer(
            replica, status_code, status, delivery_id, attempts, time.monotonic() - started
        )
        with lock:
            answers[key].append(answer)

    threads = []
    for key, body in deliveries:
        barrier = threading.Barrier(copies)
        threads += [
            threading.Thread(target=send, args=(key, body, copy, barrier)) for copy in range(copies)
        ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a delivery hung"
    for key, got in answers.items():
        assert len(got) == copies, key
        assert {a.status_code for a in got} == {202}, (key, got)
        assert len({a.delivery_id for a in got}) == 1, got
        statuses = sorted(a.status for a in got)
        if all(a.attempts == 1 for a in got):
            assert statuses == ["applied"] + ["duplicate"] * (copies - 1), got
        else:
            # A copy that timed out and was sent again may have been the one applied.
            assert statuses.count("applied") <= 1, got
            assert set(statuses) <= {"applied", "duplicate"}, got
    return answers


def two_replicas(tmp_path: Path, interviews: int, copies: int) -> None:
    with fresh_postgres_database(migrated=False) as url:
        env = service_env(url, NEXTSTEP_DB_POOL_SIZE="5")
        started = time.monotonic()
        migrate_twice_at_once(url, env)
        replicas = [Server(env, tmp_path / f"replica-{n}.log") for n in range(2)]
        ended = utcnow() - 5 * DAY
        with running(*replicas):
            created = [(f"rep-{n}", completed_event(f"rep-{n}", ended)) for n in range(interviews)]
            first = deliver_copies_concurrently(replicas, created, copies)
            follow_ups: list[tuple[str, bytes]] = []
            for n in range(interviews):
                contacted = event_body(
                    "candidate.contacted",
                    ended + DAY,
                    {
                        "interview_external_id": f"rep-{n}",
                        "direction": "inbound",
                        "channel": "email",
                    },
                )
                updated = event_body(
                    "next_step.updated",
                    ended + DAY,
                    {
                        "external_id": f"step-rep-{n}",
                        "changes": {"due_at": (ended + 4 * DAY).isoformat()},
                        "reason": "The hiring manager is away",
                    },
                )
                follow_ups += [(f"contact-{n}", contacted), (f"update-{n}", updated)]
            second = deliver_copies_concurrently(replicas, follow_ups, copies)

            key = create_admin_key(env)
            overdue = httpx.get(
                f"{replicas[1].url}/v1/commitments/overdue?limit=500",
                headers={"Authorization": f"Bearer {key}"},
                timeout=HTTP_TIMEOUT,
            ).json()["items"]
        elapsed = time.monotonic() - started

        # Exactly one effect per delivery, whichever replica stored it.
        assert len(overdue) == interviews
        assert {(i["version"], i["unanswered_contacts"]) for i in overdue} == {(2, 1)}
        assert {i["due_at"] for i in overdue} == {
            (ended + 4 * DAY).isoformat().replace("+00:00", "Z")
        }
        with database_engine(url) as engine, engine.connect() as conn:
            deliveries = list(conn.execute(text("SELECT duplicates FROM delivery")).scalars())
            kinds = {
                str(kind): int(count)
                for kind, count in conn.execute(
                    text("SELECT kind, count(*) FROM timeline_entry GROUP BY kind")
                )
            }
            contacts = conn.execute(text("SELECT count(*) FROM contact")).scalar_one()
            versions = conn.execute(text("SELECT count(*) FROM commitment_version")).scalar_one()
        assert sorted(deliveries) == [copies - 1] * (3 * interviews)
        assert contacts == interviews
        assert versions == 2 * interviews
        assert kinds == {
            "interview_recorded": interviews,
            "agreed": interviews,
            "updated": interviews,
            "contact": interviews,
        }
        every = [a for got in (*first.values(), *second.values()) for a in got]
        seconds = sorted(a.seconds for a in every)
        applied_by = [
            sum(1 for a in every if a.status == "applied" and a.replica == r) for r in (0, 1)
        ]
        log.info(
            "two replicas: %d deliveries x %d concurrent copies split across 2 replicas, "
            "%d answered applied (replica 0: %d, replica 1: %d), the rest duplicate; one effect "
            "each; %d copies resent after no answer; latency median %.2f s, max %.2f s; "
            "%.1f s in all",
            3 * interviews,
            copies,
            sum(applied_by),
            applied_by[0],
            applied_by[1],
            sum(1 for a in every if a.attempts > 1),
            seconds[len(seconds) // 2],
            seconds[-1],
            elapsed,
        )


@pytest.mark.parametrize(
    "interviews",
    [pytest.param(4, id="short"), pytest.param(20, id="full", marks=pytest.mark.slow)],
)
@pytest.mark.postgresql
def test_two_replicas_apply_concurrent_duplicates_once(tmp_path: Path, interviews: int) -> None:
    two_replicas(tmp_path, interviews=interviews, copies=8)


# --- 5. pending deliveries raced against their subjects on two replicas ------------------


def step_completed_event(step: str, at: datetime) -> bytes:
    return event_body("next_step.completed", at, {"external_id": step, "outcome": "Called"})


def many_steps_event(interview: str, ended: datetime, steps: int) -> bytes:
    """A completed interview that agrees ``steps`` next steps: a long transaction to race."""
    body = json.loads(completed_event(interview, ended))
    template = body["data"]["next_steps"][0]
    body["data"]["next_steps"] = [
        {**template, "external_id": f"{interview}-step-{n}"} for n in range(steps)
    ]
    return json.dumps(body).encode()


def race_subjects_against_pending(tmp_path: Path, stories: int) -> None:
    """Replica A creates many steps (an ATS retry: two copies) while replica B is told, at
    about the same moment and ahead of other work in its transaction, that one of them is
    complete. Whatever the interleaving, nothing stays pending once its subject exists,
    without the sweep's help.
    """
    rng = random.Random(stories)
    started = time.monotonic()
    with fresh_postgres_database() as url:
        env = service_env(url, NEXTSTEP_DB_POOL_SIZE="8", NEXTSTEP_PENDING_SWEEP_SECONDS="0")
        replicas = [Server(env, tmp_path / f"replica-{n}.log") for n in range(2)]
        ended = utcnow() - 5 * DAY
        targets: list[str] = []
        with running(*replicas), httpx.Client() as client, contextlib.ExitStack() as stack:
            # Interviews that B's other work (contacts, applied one by one) is about.
            for n in range(8):
                body = completed_event(f"known-{n}", ended)
                assert post_event(client, replicas[1].url, body, f"known-{n}").status_code == 202

            # A client per sending thread: one shared by 32 threads has, on a busy machine,
            # read from a connection another thread had just closed (EBADF).
            own = threading.local()

            def send(
                replica: int, body: bytes, key: str, delay: float, gate: threading.Barrier
            ) -> int:
                if not hasattr(own, "client"):
                    own.client = stack.enter_context(httpx.Client())
                gate.wait(timeout=30)
                time.sleep(delay)
                return post_event(own.client, replicas[replica].url, body, key).status_code

            with ThreadPoolExecutor(max_workers=32) as pool:
                for start in range(0, stories, 4):
                    futures = []
                    for story in range(start, min(start + 4, stories)):
                        interview = f"race-{story}"
                        target = f"{interview}-step-{rng.randrange(16)}"
                        targets.append(target)
                        created = many_steps_event(interview, ended, 16)
                        later = ended + DAY
                        completed = step_completed_event(target, later)
                        lag = rng.uniform(0, 0.006)
                        sends = [
                            (0, created, f"created-{story}", lag),
                            (0, created, f"created-{story}", lag),
                            (1, completed, f"completed-{story}", 0.0),
                            *(
                                (1, contacted_event(f"known-{n}", later), f"z-{story}-{n}", 0.0)
                                for n in range(6)
                            ),
                        ]
                        gate = threading.Barrier(len(sends))
                        futures += [pool.submit(send, *s, gate) for s in sends]
                    assert {f.result(timeout=120) for f in futures} == {202}
        with database_engine(url) as engine, engine.connect() as conn:
            statuses = {
                row.external_id: row.status
                for row in conn.execute(
                    text("SELECT external_id, status FROM commitment WHERE external_id = ANY(:t)"),
                    {"t": targets},
                )
            }
            pending = conn.execute(
                text("SELECT delivery_key, subject FROM delivery WHERE result = 'pending'")
            ).all()
    log.info(
        "pending race: %d stories (16 steps created twice on one replica, one of them completed "
        "on the other at the same moment): %d deliveries left pending, %d of %d targets done; "
        "%.1f s",
        stories,
        len(pending),
        sum(1 for status in statuses.values() if status == "done"),
        len(targets),
        time.monotonic() - started,
    )
    assert pending == []
    assert statuses == dict.fromkeys(targets, "done")


def contacted_event(interview: str, at: datetime) -> bytes:
    return event_body(
        "candidate.contacted",
        at,
        {"interview_external_id": interview, "direction": "inbound", "channel": "email"},
    )


@pytest.mark.parametrize(
    "stories",
    [pytest.param(40, id="short"), pytest.param(400, id="full", marks=pytest.mark.slow)],
)
@pytest.mark.postgresql
def test_pending_delivery_is_applied_whichever_replica_creates_its_subject(
    tmp_path: Path, stories: int
) -> None:
    race_subjects_against_pending(tmp_path, stories)
