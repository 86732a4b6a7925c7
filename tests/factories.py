"""Plain helpers: request bodies, and resources created through the HTTP API."""

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from app import db
from app.models import UnsubscribeTopic
from app.owners.links import issue_action_link, issue_unsubscribe_link

PROBLEM = "application/problem+json"
Headers = dict[str, str]
Json = dict[str, Any]


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """An instant as the API answers it: UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def days(n: float) -> timedelta:
    return timedelta(days=n)


def step_body(
    *,
    due_at: datetime,
    action: str = "Call the candidate to schedule the second interview",
    owner_id: str = "hr-1",
    owner_name: str | None = "Harriet HR",
    role: str = "hr",
    **extra: Any,
) -> Json:
    """A next step as POST /v1/interviews/{id}/commitments takes it."""
    owner: Json = {"id": owner_id, "role": role}
    if owner_name is not None:
        owner["name"] = owner_name
    body: Json = {"action": action, "owner": owner, "due_at": iso(due_at)}
    for key, value in extra.items():
        body[key] = iso(value) if isinstance(value, datetime) else value
    return body


def interview_body(
    *,
    candidate_id: str = "cand-1",
    candidate_name: str | None = "Casey Candidate",
    job_id: str | None = "job-analyst",
    job_title: str | None = "Analyst",
    stage: str | None = "First interview",
    status: str = "completed",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    next_steps: list[Json] | None = None,
    **extra: Any,
) -> Json:
    """An interview as POST /v1/interviews (or, without source/external_id, PUT) takes it."""
    body: Json = {
        "candidate": {"external_id": candidate_id, "name": candidate_name},
        "job": {"external_id": job_id, "title": job_title},
        "stage": stage,
        "status": status,
    }
    if starts_at is not None:
        body["starts_at"] = iso(starts_at)
    if ends_at is not None:
        body["ends_at"] = iso(ends_at)
    if next_steps is not None:
        body["next_steps"] = next_steps
    body.update(extra)
    return body


def create_interview(client: TestClient, headers: Headers, **fields: Any) -> Json:
    response = client.post("/v1/interviews", json=interview_body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_commitment(
    client: TestClient, headers: Headers, interview_id: str, **fields: Any
) -> Json:
    fields.setdefault("due_at", now() + days(3))
    response = client.post(
        f"/v1/interviews/{interview_id}/commitments", json=step_body(**fields), headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def create_step(client: TestClient, headers: Headers, *, due_at: datetime, **fields: Any) -> Json:
    """A fresh interview (own candidate) with one commitment; returns the commitment."""
    candidate = fields.pop("candidate_id", "cand-step")
    job = fields.pop("job_id", "job-analyst")
    interview = create_interview(client, headers, candidate_id=candidate, job_id=job)
    return create_commitment(client, headers, interview["id"], due_at=due_at, **fields)


def add_contact(
    client: TestClient,
    headers: Headers,
    interview_id: str,
    direction: str,
    *,
    at: datetime | None = None,
    channel: str = "call",
    note: str | None = None,
) -> Json:
    body: Json = {"direction": direction, "channel": channel}
    if at is not None:
        body["at"] = iso(at)
    if note is not None:
        body["note"] = note
    response = client.post(f"/v1/interviews/{interview_id}/contacts", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def etag(client: TestClient, headers: Headers, commitment_id: str) -> str:
    response = client.get(f"/v1/commitments/{commitment_id}", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.headers["etag"])


def patch_commitment(client: TestClient, headers: Headers, commitment_id: str, body: Json) -> Json:
    """PATCH with the current ETag; asserts success."""
    response = client.patch(
        f"/v1/commitments/{commitment_id}",
        json=body,
        headers={**headers, "If-Match": etag(client, headers, commitment_id)},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def complete(client: TestClient, headers: Headers, commitment_id: str, **body: Any) -> Json:
    payload = {k: iso(v) if isinstance(v, datetime) else v for k, v in body.items()}
    response = client.post(
        f"/v1/commitments/{commitment_id}/complete", json=payload, headers=headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def overdue(client: TestClient, headers: Headers, **params: Any) -> list[Json]:
    """Every item of GET /v1/commitments/overdue (one page, the largest)."""
    query = {k: iso(v) if isinstance(v, datetime) else v for k, v in params.items()}
    query.setdefault("limit", 500)
    response = client.get("/v1/commitments/overdue", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def all_pages(client: TestClient, headers: Headers, path: str, **params: Any) -> list[list[Json]]:
    """Every page of a list endpoint, following next_cursor (the cursor alone after page 1)."""
    pages: list[list[Json]] = []
    query: dict[str, Any] = dict(params)
    while True:
        response = client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        if body["next_cursor"] is None:
            return pages
        query = {"cursor": body["next_cursor"], "limit": params.get("limit", 50)}


def get_csv(
    client: TestClient, headers: Headers, path: str, **params: Any
) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a list endpoint asked for text/csv."""
    query = {k: iso(v) if isinstance(v, datetime) else v for k, v in params.items()}
    response = client.get(path, params=query, headers={**headers, "Accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(response.text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def assert_problem(response: Any, status: int, *, field: str | None = None) -> Json:
    """A problem+json answer with ``status``; with ``field``, an error whose loc names it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: Json = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status
    if field is not None:
        locs = [[str(p) for p in e["loc"]] for e in body.get("errors", [])]
        assert any(_names(field.split("."), loc) for loc in locs), locs
    return body


def _names(field: list[str], loc: list[str]) -> bool:
    """Whether ``loc`` names ``field``: its parts in order (a union may add its member's name)."""
    remaining = iter(loc)
    return all(part in remaining for part in field)


def action_link(
    commitment_id: str,
    owner_id: str,
    *,
    issued_at: datetime | None = None,
    lifetime: timedelta = timedelta(days=14),
    held_by: str | None = None,
) -> str:
    """The path (``/a/<token>``) of an action link for ``owner_id`` to answer a step, minted
    as an e-mail mints it (an escalation's: ``held_by`` the step's owner)."""
    with db.new_session(write=True) as session:
        url = issue_action_link(
            session,
            uuid.UUID(commitment_id),
            owner_id,
            issued_at or now(),
            lifetime,
            held_by=held_by,
        )
        session.commit()
    return urlsplit(url).path


def unsubscribe_link(owner_id: str, topic: UnsubscribeTopic) -> str:
    """The path (``/u/<token>``) of an e-mail's one-click unsubscribe link."""
    with db.new_session(write=True) as session:
        url = issue_unsubscribe_link(session, owner_id, topic, now())
        session.commit()
    return urlsplit(url).path
