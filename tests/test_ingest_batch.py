"""Deliveries stored together (service.ingest_batch) end as if stored one by one."""

import random
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app import db
from app.errors import Conflict
from app.events import bulk
from app.events import ingest as service
from app.events.inbound import Inbound, InvalidDelivery, Receipt
from app.models.outbound import Endpoint, EndpointKind, EventType
from tests.conftest import WEBHOOK_SECRETS, empty_tables
from tests.outbound_helpers import new_secret
from tests.signing import event_body, standard_headers
from tests.test_event_order import STORY, _state

T0 = datetime.fromisoformat("2026-11-02T15:00:00+00:00")
H = timedelta(hours=1)
NOW = datetime.fromisoformat("2026-11-20T09:30:00+00:00")
TABLES = (
    "delivery",
    "interview",
    "commitment",
    "timeline_entry",
    "commitment_version",
    "owner",
)


def _inbound(key: str, body: bytes, source: str = "acme-ats") -> Inbound:
    headers = {"webhook-id": key, "content-type": "application/json", "x-secret": "dropped"}
    return Inbound(source, "canonical", key, body, headers, NOW - H)


def _interview(index: int, steps: int) -> bytes:
    """A completed interview with ``steps`` next steps, with as many optional fields as
    possible (and instants in more than one zone)."""
    ended = (T0 + index * H).astimezone(timezone(timedelta(hours=2)))
    next_steps: list[dict[str, Any]] = [
        {
            "external_id": f"i{index}-s{n}",
            "action": f"Step {n} of interview {index}",
            "owner": {"id": f"owner-{n}", "name": "Olga", "role": ["hr", "candidate"][n % 2]},
            "channel": ["call", "email"][n % 2],
            "due_at": (ended + (24 + n) * H).isoformat(),
            **({"promised_by": (ended + 48 * H).isoformat()} if n else {}),
            **({"owed_by": "company"} if n == 2 else {}),
        }
        for n in range(steps)
    ]
    data: dict[str, Any] = {
        "external_id": f"int-{index}",
        "candidate": {"external_id": f"cand-{index}", "name": "Casey", "email": "c@example.com"},
        "next_steps": next_steps,
    }
    if index % 2:
        data.update(
            job={"external_id": "job-9", "title": "Analyst"},
            stage="Onsite",
            # Owners learned from them: one named by several interviews (the newest wins),
            # one without an e-mail (not learned).
            interviewers=[
                {"external_id": "iv-1", "name": f"Ines {index}", "email": "ines@example.com"},
                {"external_id": f"iv-{index}", "name": "Ivo"},
            ],
            starts_at=(ended - H).isoformat(),
            ends_at=ended.isoformat(),
        )
    return event_body("interview.completed", ended, data)


def _rows() -> dict[str, list[dict[str, Any]]]:
    """Every stored row, with generated ids replaced by what they stand for."""
    with db.get_engine().connect() as conn:
        tables = {
            table: [dict(row._mapping) for row in conn.execute(text(f"SELECT * FROM {table}"))]
            for table in TABLES
        }
    names: dict[Any, str] = {}
    for row in tables["delivery"]:
        names[row["id"]] = f"delivery {row['delivery_key']}"
    for table in ("interview", "commitment"):
        for row in tables[table]:
            names[row["id"]] = f"{table} {row['external_id']}"
    result: dict[str, list[dict[str, Any]]] = {}
    for table, rows in tables.items():
        named = [
            {
                column: names.get(value, value) if column.endswith("id") else value
                for column, value in row.items()
                if not (column == "id" and table in ("timeline_entry", "commitment_version"))
                # An owner's version counts the changes it saw, which depends on the order
                # its events arrived in; what it holds does not.
                and not (table == "owner" and column in ("version", "updated_at"))
            }
            for row in rows
        ]
        result[table] = sorted(named, key=repr)
    return result


def _one_by_one(inbounds: list[Inbound]) -> list[str]:
    statuses = []
    for inbound in inbounds:
        with db.new_session(write=True) as session:
            try:
                statuses.append(service.ingest(session, inbound, NOW)[1])
            except (Conflict, InvalidDelivery) as exc:
                statuses.append(type(exc).__name__)
    return statuses


def _together(inbounds: list[Inbound]) -> list[str]:
    with db.new_session(write=True) as session:
        answers = service.ingest_batch(session, inbounds, NOW)
    return [a.status if isinstance(a, Receipt) else type(a).__name__ for a in answers]


def test_new_interviews_in_a_batch_are_stored_as_one_by_one(database_url: str) -> None:
    inbounds = [_inbound(f"msg-{i}", _interview(i, i % 4)) for i in range(8)]
    assert _one_by_one(inbounds) == ["applied"] * 8
    expected = _rows()
    empty_tables(database_url)
    assert _together(inbounds) == ["applied"] * 8
    assert _rows() == expected


def test_a_batch_answers_each_delivery_as_one_by_one(database_url: str) -> None:
    update = event_body(
        "next_step.updated",
        T0 + 30 * H,
        {"external_id": "i1-s0", "changes": {"action": "Call back"}},
    )
    waiting = event_body("next_step.completed", T0 + 40 * H, {"external_id": "i9-s0"})
    inbounds = [
        _inbound("waits", waiting),
        _inbound("new-1", _interview(1, 1)),
        _inbound("new-2", _interview(2, 2)),
        _inbound("new-2", _interview(2, 2)),  # the same delivery twice
        _inbound("new-3", _interview(3, 0)),
        _inbound("new-3", _interview(4, 1)),  # a known id with another body
        _inbound("update", update),
        _inbound("invalid", event_body("interview.completed", T0, {"external_id": ""})),
        _inbound("ignored", event_body("offer.extended", T0, {})),
        _inbound("same-interview", _interview(1, 0)),
        _inbound("releases", _interview(9, 1)),
    ]
    statuses = _one_by_one(inbounds)
    expected = _rows()
    assert statuses == [
        "pending",
        "applied",
        "applied",
        "duplicate",
        "applied",
        "Conflict",
        "applied",
        "InvalidDelivery",
        "ignored",
        "applied",
        "applied",
    ]
    empty_tables(database_url)
    # New interviews are stored first: the step that "waits" one by one exists by its turn.
    assert _together(inbounds) == ["applied", *statuses[1:]]
    assert _rows() == expected


@pytest.mark.parametrize("seed", range(6))
def test_the_story_in_batches_ends_as_told(database_url: str, seed: int) -> None:
    empty_tables(database_url)
    for key, body in STORY:
        with db.new_session(write=True) as session:
            service.ingest(session, _inbound(key, body), NOW)
    expected = _state()
    empty_tables(database_url)
    rng = random.Random(seed)
    deliveries = list(STORY) + rng.sample(STORY, 4)
    rng.shuffle(deliveries)
    while deliveries:
        size = rng.randint(1, 6)
        batch, deliveries = deliveries[:size], deliveries[size:]
        answers = _together([_inbound(key, body) for key, body in batch])
        assert set(answers) <= {"applied", "pending", "duplicate"}
    assert _state() == expected


def test_a_failed_batch_is_stored_one_by_one(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> dict[int, Receipt]:
        raise RuntimeError("a bug in the shared path")

    monkeypatch.setattr(bulk, "store_new_interviews", broken)
    inbounds = [_inbound("a", _interview(1, 1)), _inbound("a", _interview(2, 1))]
    assert _together(inbounds) == ["applied", "Conflict"]
    assert len(_rows()["commitment"]) == 1


def test_concurrent_batches_store_each_delivery_once(database_url: str) -> None:
    inbounds = [_inbound(f"msg-{i}", _interview(i, 1)) for i in range(10)]
    answers: list[list[str]] = []
    errors: list[BaseException] = []

    def deliver(seed: int) -> None:
        try:
            batch = list(inbounds)
            random.Random(seed).shuffle(batch)
            answers.append(_together(batch))
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    statuses = sorted(status for batch in answers for status in batch)
    assert statuses == ["applied"] * 10 + ["duplicate"] * 70
    rows = _rows()
    assert len(rows["interview"]) == len(rows["commitment"]) == len(rows["delivery"]) == 10
    assert sum(row["duplicates"] for row in rows["delivery"]) == 70


def test_an_unreachable_database_is_every_deliverys_error(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    calls = 0

    def down(*_args: object) -> None:
        nonlocal calls
        calls += 1
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(bulk, "new_interviews", down)
    monkeypatch.setattr(service, "ingest", down)
    inbounds = [_inbound(str(uuid.uuid4()), _interview(i, 1)) for i in range(5)]
    with db.new_session(write=True) as session:
        answers = service.ingest_batch(session, inbounds, NOW)
    assert len(answers) == len(inbounds)
    assert all(isinstance(a, OperationalError) for a in answers)
    assert calls == 1


def test_concurrent_posts_each_get_their_own_answer(client: TestClient) -> None:
    secret = WEBHOOK_SECRETS["acme-ats"][0]
    posts = [(f"new-{i}", _interview(i, 1)) for i in range(16)]
    posts += [("copy", _interview(20, 1))] * 4
    posts += [("reused", _interview(21, 1)), ("reused", _interview(22, 1))]
    posts += [(f"invalid-{i}", event_body("interview.completed", T0, {})) for i in range(2)]
    answers: list[tuple[str, int, str | None]] = []

    def post(key: str, body: bytes) -> None:
        response = client.post(
            "/v1/events/acme-ats", content=body, headers=standard_headers(body, secret, key)
        )
        status = response.json()["status"] if response.status_code == 202 else None
        answers.append((key, response.status_code, status))

    threads = [threading.Thread(target=post, args=post_args) for post_args in posts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    by_key: dict[str, list[tuple[int, str | None]]] = {}
    for key, status, answer in answers:
        by_key.setdefault(key, []).append((status, answer))
    assert all(by_key[f"new-{i}"] == [(202, "applied")] for i in range(16))
    assert sorted(by_key["copy"]) == [(202, "applied")] + [(202, "duplicate")] * 3
    assert sorted(status for status, _ in by_key["reused"]) == [202, 409]
    assert all(by_key[f"invalid-{i}"] == [(422, None)] for i in range(2))
    rows = _rows()
    assert len(rows["interview"]) == len(rows["commitment"]) == 18
    assert len(rows["delivery"]) == 20


def _subscribe() -> None:
    """A webhook endpoint and a Slack one that take new steps, and one that does not."""
    with db.new_session(write=True) as session:
        for kind, types in (
            (EndpointKind.webhook, [EventType.agreed]),
            (EndpointKind.slack, [EventType.agreed, EventType.completed]),
            (EndpointKind.webhook, [EventType.completed]),
        ):
            session.add(
                Endpoint(
                    kind=kind.value,
                    url=f"https://example.com/{kind.value}",
                    event_types=[t.value for t in types],
                    secret=new_secret() if kind == EndpointKind.webhook else None,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
        session.commit()


# The ids of interviews and steps differ from one run to the next.
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def _messages() -> list[dict[str, Any]]:
    """Every message, its generated ids replaced (its step named by external id)."""
    with db.get_engine().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.*, e.url AS endpoint_url, c.external_id AS step FROM message m"
                " JOIN endpoint e ON e.id = m.endpoint_id"
                " JOIN commitment c ON c.id = m.commitment_id"
            )
        )
        found = [dict(row._mapping) for row in rows]
    for row in found:
        for column in ("id", "endpoint_id", "commitment_id"):
            del row[column]
        row["body"] = _UUID.sub("<id>", row["body"])
    return sorted(found, key=repr)


def test_a_batch_writes_the_messages_one_by_one_would(database_url: str) -> None:
    inbounds = [_inbound(f"msg-{i}", _interview(i, i % 4)) for i in range(8)]
    _subscribe()
    assert _one_by_one(inbounds) == ["applied"] * 8
    expected = _messages()
    assert len(expected) == 2 * 12  # every step, to the two endpoints that take agreed
    empty_tables(database_url)
    _subscribe()
    assert _together(inbounds) == ["applied"] * 8
    assert _messages() == expected
