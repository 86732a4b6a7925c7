"""Plain helpers for the outbound tests: a real webhook receiver on 127.0.0.1, endpoints and
reminder rules written as rows (their HTTP API comes separately), and one worker pass on an
injected clock."""

import asyncio
import base64
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlmodel import col, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app import db
from app.config import Settings, get_settings
from app.models import utcnow
from app.models.outbound import (
    Endpoint,
    EventType,
    Message,
    MessageAttempt,
    Reminder,
    ReminderRule,
)
from app.outbound import worker
from app.outbound.metrics import AttemptMetrics
from app.outbound.sending import new_client, wall_clock

CHANGE_TYPES = [
    EventType.agreed.value,
    EventType.updated.value,
    EventType.completed.value,
    EventType.cancelled.value,
]
REMINDER_TYPES = [
    EventType.due_soon.value,
    EventType.overdue.value,
    EventType.escalated.value,
]
LADDER: list[dict[str, Any]] = [
    {"offset": "-PT24H", "type": "next_step.due_soon"},
    {"offset": "PT0S", "type": "next_step.overdue"},
    {
        "offset": "P1D",
        "type": "next_step.escalated",
        "to": {"id": "boss-1", "name": "Bea Boss", "role": "hiring_manager"},
    },
]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


# --- the receiver ------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one request: a status and headers, after ``delay`` seconds;
    or (``close``) by closing the connection without a word."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    close: bool = False


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    verified_by: tuple[str, ...]  # the receiver's secrets that verify the signature
    received_at: float

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP server in a thread of the test process that records every POST and checks
    its signature with ``standardwebhooks`` against each secret it knows."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.deliveries: list[Delivery] = []
        self._scripts: dict[str, deque[Answer]] = {}
        self._defaults: dict[str, Answer] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                answer = receiver._record(self.path, dict(self.headers.items()), body)
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.close:
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # A worker opens dozens of connections at once; the default backlog of 5
            # overflows and resets some of them.
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a sender that went away mid-answer (a killed process)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def answer(self, path: str, *answers: Answer) -> None:
        """Answer the next requests to ``path`` so, in order; then the default."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(answers)

    def default(self, path: str, answer: Answer) -> None:
        with self._lock:
            self._defaults[path] = answer

    def at(self, path: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        lowered = {k.lower(): v for k, v in headers.items()}
        verified = []
        # Only what is signed is checked (not, say, the spans a traced service exports).
        for secret in self.secrets if "webhook-signature" in lowered else []:
            try:
                Webhook(secret).verify(body, lowered)
            except WebhookVerificationError:
                continue
            verified.append(secret)
        with self._lock:
            self.deliveries.append(Delivery(path, lowered, body, tuple(verified), time.time()))
            script = self._scripts.get(path)
            if script:
                return script.popleft()
            return self._defaults.get(path, Answer())

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- rows --------------------------------------------------------------------------------


def make_endpoint(
    url: str,
    event_types: Sequence[str],
    *,
    kind: str = "webhook",
    enabled: bool = True,
    secret: str | None = None,
    previous_secret: str | None = None,
    previous_secret_expires_at: datetime | None = None,
    receiver: Receiver | None = None,
) -> Endpoint:
    """An endpoint row; a webhook endpoint gets a fresh secret, which ``receiver`` learns."""
    if kind == "webhook" and secret is None:
        secret = new_secret()
    if receiver is not None and secret is not None:
        receiver.secrets.append(secret)
    now = utcnow()
    endpoint = Endpoint(
        kind=kind,
        url=url,
        event_types=list(event_types),
        enabled=enabled,
        secret=secret,
        previous_secret=previous_secret,
        previous_secret_expires_at=previous_secret_expires_at,
        created_at=now,
        updated_at=now,
    )
    with db.new_session(write=True) as session:
        session.add(endpoint)
        session.commit()
    return endpoint


def make_rule(
    steps: Sequence[dict[str, Any]] = tuple(LADDER),
    *,
    match: dict[str, str] | None = None,
    quiet_hours: bool = True,
    name: str = "ladder",
) -> ReminderRule:
    now = utcnow()
    rule = ReminderRule(
        name=name,
        match=match or {},
        steps=list(steps),
        quiet_hours=quiet_hours,
        created_at=now,
        updated_at=now,
    )
    with db.new_session(write=True) as session:
        session.add(rule)
        session.commit()
    return rule


def messages(commitment_id: str | uuid.UUID | None = None) -> list[Message]:
    with db.new_session() as session:
        statement = select(Message).order_by(col(Message.created_at), col(Message.id))
        if commitment_id is not None:
            statement = statement.where(col(Message.commitment_id) == uuid.UUID(str(commitment_id)))
        return list(session.exec(statement).all())


def message(message_id: str | uuid.UUID) -> Message:
    with db.new_session() as session:
        found = session.get(Message, uuid.UUID(str(message_id)))
        assert found is not None
        return found


def attempts(message_id: str | uuid.UUID) -> list[MessageAttempt]:
    with db.new_session() as session:
        statement = (
            select(MessageAttempt)
            .where(col(MessageAttempt.message_id) == uuid.UUID(str(message_id)))
            .order_by(col(MessageAttempt.n))
        )
        return list(session.exec(statement).all())


def reminders(commitment_id: str | uuid.UUID) -> list[Reminder]:
    with db.new_session() as session:
        statement = (
            select(Reminder)
            .where(col(Reminder.commitment_id) == uuid.UUID(str(commitment_id)))
            .order_by(col(Reminder.fire_at), col(Reminder.step), col(Reminder.created_at))
        )
        return list(session.exec(statement).all())


def endpoint(endpoint_id: uuid.UUID) -> Endpoint:
    with db.new_session() as session:
        found = session.get(Endpoint, endpoint_id)
        assert found is not None
        return found


# --- the worker --------------------------------------------------------------------------


def worker_settings(**overrides: Any) -> Settings:
    return get_settings().model_copy(update=overrides)


def run_pass(
    at: datetime,
    settings: Settings | None = None,
    metrics: AttemptMetrics | None = None,
    signed_at: Callable[[], datetime] = wall_clock,
) -> worker.Pass:
    """One worker pass as the clock reads ``at`` (counting its attempts in ``metrics``),
    its messages signed at ``signed_at()``."""

    async def once() -> worker.Pass:
        async with new_client() as client:
            return await worker.run_once(client, lambda: at, settings, metrics, signed_at)

    return asyncio.run(once())


def passes_until_idle(at: datetime, settings: Settings | None = None) -> Iterator[worker.Pass]:
    """Passes at ``at`` until one finds nothing to fire and nothing to send."""
    for _ in range(50):
        done = run_pass(at, settings)
        yield done
        if not done.fired and not done.sent:
            return
    raise AssertionError("the worker still had work after 50 passes")


def drain(at: datetime, settings: Settings | None = None) -> int:
    """Run passes at ``at`` until idle; how many messages were sent."""
    return sum(p.sent for p in passes_until_idle(at, settings))
