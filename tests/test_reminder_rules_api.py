"""Reminder rules over HTTP, and a commitment's reminders."""

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import db
from app.models.outbound import Reminder
from app.outbound import worker
from tests.factories import (
    PROBLEM,
    Headers,
    Json,
    create_commitment,
    create_interview,
    create_step,
    days,
    now,
)

LADDER: Json = {
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


def create_rule(client: TestClient, headers: Headers, **overrides: Any) -> Json:
    response = client.post("/v1/reminder-rules", json={**LADDER, **overrides}, headers=headers)
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def schedule_changed_rules() -> None:
    """What the worker does after a rule is created or changed: every batch, until done."""
    while worker.schedule_rules(limit=2):
        pass


def reminders(client: TestClient, headers: Headers, commitment_id: str) -> list[Json]:
    response = client.get(f"/v1/commitments/{commitment_id}/reminders", headers=headers)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


def test_a_rule_is_stored_with_its_offsets_normalised(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    response = client.post("/v1/reminder-rules", json=LADDER, headers=admin_headers)
    assert response.status_code == 201, response.text
    rule = response.json()
    assert response.headers["location"] == f"/v1/reminder-rules/{rule['id']}"
    assert rule["steps"] == [
        {"offset": "-P1D", "offset_seconds": -86400, "type": "next_step.due_soon", "to": None},
        {"offset": "PT0S", "offset_seconds": 0, "type": "next_step.overdue", "to": None},
        {
            "offset": "P1D",
            "offset_seconds": 86400,
            "type": "next_step.escalated",
            "to": {"id": "lead-1", "name": "Lee Lead", "role": "recruiter"},
        },
    ]
    assert (rule["position"], rule["enabled"], rule["quiet_hours"], rule["version"]) == (
        0,
        True,
        True,
        1,
    )
    assert rule["match"] == {
        "owed_by": "company",
        "owner_role": None,
        "source": None,
        "stage": None,
        "job_id": None,
    }
    one = client.get(f"/v1/reminder-rules/{rule['id']}", headers=read_headers)
    assert one.json() == rule
    assert one.headers["etag"] == response.headers["etag"]


@pytest.mark.parametrize(
    ("offset", "normal", "seconds"),
    [
        ("-PT36H", "-P1DT12H", -129600),
        ("PT90M", "PT1H30M", 5400),
        ("P1W", "P7D", 604800),
        ("-PT0S", "PT0S", 0),
        ("+P2D", "P2D", 172800),
        ("P1DT30S", "P1DT30S", 86430),
        # Every part at its widest: the normal form counts more days than one part may hold.
        ("P40W912D", "P1192D", 102988800),
        ("-P99W999DT9999H99999M999999S", "-P2189DT15H25M39S", -189185139),
    ],
)
def test_offsets_are_read_as_iso_8601_durations(
    client: TestClient, admin_headers: Headers, offset: str, normal: str, seconds: int
) -> None:
    rule = create_rule(
        client, admin_headers, steps=[{"offset": offset, "type": "next_step.overdue"}]
    )
    assert rule["steps"][0]["offset"] == normal
    assert rule["steps"][0]["offset_seconds"] == seconds


ESCALATE = {"offset": "P1D", "type": "next_step.escalated", "to": {"id": "a", "role": "hr"}}
BAD_RULES = [
    ({"steps": [{"offset": "P1D", "type": "next_step.escalated"}]}, ["body", "steps", 0]),
    (
        {
            "steps": [
                {"offset": "P1D", "type": "next_step.overdue", "to": {"id": "a", "role": "hr"}}
            ]
        },
        ["body", "steps", 0],
    ),
    (
        {"steps": [{**ESCALATE, "to": {"id": "a", "role": "boss"}}]},
        ["body", "steps", 0, "to", "role"],
    ),
    ({"steps": [{**ESCALATE, "to": {"role": "hr"}}]}, ["body", "steps", 0, "to", "id"]),
    ({"steps": [{"offset": "P1Y", "type": "next_step.overdue"}]}, ["body", "steps", 0, "offset"]),
    ({"steps": [{"offset": "-P1M", "type": "next_step.overdue"}]}, ["body", "steps", 0, "offset"]),
    ({"steps": [{"offset": "1 day", "type": "next_step.overdue"}]}, ["body", "steps", 0, "offset"]),
    ({"steps": [{"offset": "PT", "type": "next_step.overdue"}]}, ["body", "steps", 0, "offset"]),
    ({"steps": [{"offset": "P1.5D", "type": "next_step.overdue"}]}, ["body", "steps", 0, "offset"]),
    (
        {"steps": [{"offset": "P1000D", "type": "next_step.overdue"}]},
        ["body", "steps", 0, "offset"],
    ),
    ({"steps": [{"offset": 3600, "type": "next_step.overdue"}]}, ["body", "steps", 0, "offset"]),
    ({"steps": [{"type": "next_step.overdue"}]}, ["body", "steps", 0, "offset"]),
    ({"steps": [{"offset": "P1D", "type": "next_step.agreed"}]}, ["body", "steps", 0, "type"]),
    ({"steps": [{"offset": "P1D", "type": "endpoint.test"}]}, ["body", "steps", 0, "type"]),
    ({"steps": [{"offset": "P1D", "type": "reminder"}]}, ["body", "steps", 0, "type"]),
    ({"steps": []}, ["body", "steps"]),
    ({"steps": [{"offset": "PT0S", "type": "next_step.overdue"}] * 11}, ["body", "steps"]),
    ({"name": " "}, ["body", "name"]),
    ({"position": -1}, ["body", "position"]),
    ({"match": {"owed_by": "nobody"}}, ["body", "match", "owed_by"]),
    ({"match": {"owner_role": "boss"}}, ["body", "match", "owner_role"]),
    ({"match": {"team": "x"}}, ["body", "match", "team"]),
    ({"quiet_hours": "no"}, ["body", "quiet_hours"]),
]


@pytest.mark.parametrize(("change", "loc"), BAD_RULES)
@pytest.mark.one_database("the request is validated before any query")
def test_a_bad_rule_is_a_422_naming_the_field(
    client: TestClient, admin_headers: Headers, change: Json, loc: list[Any]
) -> None:
    response = client.post("/v1/reminder-rules", json={**LADDER, **change}, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    locs = [error["loc"] for error in response.json()["errors"]]
    assert any(found[: len(loc)] == loc for found in locs), locs


@pytest.mark.one_database("the key and scope are checked before any query")
def test_writing_rules_needs_admin(
    client: TestClient, read_headers: Headers, write_headers: Headers, admin_headers: Headers
) -> None:
    assert client.post("/v1/reminder-rules", json=LADDER).status_code == 401
    for headers in (read_headers, write_headers):
        assert client.post("/v1/reminder-rules", json=LADDER, headers=headers).status_code == 403
    rule = create_rule(client, admin_headers)
    url = f"/v1/reminder-rules/{rule['id']}"
    for headers in (read_headers, write_headers):
        patch = client.patch(url, json={"enabled": False}, headers={**headers, "If-Match": "*"})
        assert patch.status_code == 403
        assert client.delete(url, headers=headers).status_code == 403
    assert client.get(url, headers=read_headers).json()["version"] == 1
    assert client.get("/v1/reminder-rules", headers=read_headers).status_code == 200
    assert client.get("/v1/reminder-rules").status_code == 401


def test_rules_list_by_position_then_id(client: TestClient, admin_headers: Headers) -> None:
    late = create_rule(client, admin_headers, name="late", position=5)
    ties = sorted(
        (create_rule(client, admin_headers, name=f"tie {i}", position=1) for i in range(2)),
        key=lambda r: uuid.UUID(r["id"]),
    )
    first = create_rule(client, admin_headers, name="first")
    expected = [first["id"], ties[0]["id"], ties[1]["id"], late["id"]]
    items = client.get("/v1/reminder-rules", headers=admin_headers).json()["items"]
    assert [r["id"] for r in items] == expected
    page = client.get("/v1/reminder-rules?limit=3", headers=admin_headers).json()
    rest = client.get(
        f"/v1/reminder-rules?cursor={page['next_cursor']}", headers=admin_headers
    ).json()
    assert [r["id"] for r in page["items"] + rest["items"]] == expected
    response = client.get("/v1/reminder-rules", headers={**admin_headers, "Accept": "text/csv"})
    assert response.text.startswith("id,name,position,enabled,match_owed_by")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["id"] for row in rows] == expected
    assert rows[0]["match_owed_by"] == "company"


def test_patch_a_rule_needs_a_fresh_if_match(client: TestClient, admin_headers: Headers) -> None:
    rule = create_rule(client, admin_headers)
    url = f"/v1/reminder-rules/{rule['id']}"
    missing = client.patch(url, json={"enabled": False}, headers=admin_headers)
    assert missing.status_code == 428
    assert missing.headers["content-type"] == PROBLEM
    etag = client.get(url, headers=admin_headers).headers["etag"]
    change = {
        "name": "Overdue only",
        "position": 3,
        "match": {"owner_role": "hr", "stage": "First interview"},
        "steps": [{"offset": "PT2H", "type": "next_step.overdue"}],
        "quiet_hours": False,
    }
    changed = client.patch(url, json=change, headers={**admin_headers, "If-Match": etag})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["position"], body["quiet_hours"], body["version"]) == (
        "Overdue only",
        3,
        False,
        2,
    )
    assert body["match"]["owed_by"] == "company"
    assert body["match"]["owner_role"] == "hr"
    assert body["steps"] == [
        {"offset": "PT2H", "offset_seconds": 7200, "type": "next_step.overdue", "to": None}
    ]
    stale = client.patch(url, json={"enabled": False}, headers={**admin_headers, "If-Match": etag})
    assert stale.status_code == 412
    same = client.patch(
        url, json={"quiet_hours": False}, headers={**admin_headers, "If-Match": "*"}
    )
    assert same.json()["version"] == 2  # nothing changed, no new version
    bad = client.patch(
        url,
        json={"steps": [{"offset": "P1D", "type": "next_step.escalated"}]},
        headers={**admin_headers, "If-Match": "*"},
    )
    assert bad.status_code == 422
    unknown = client.patch(
        f"/v1/reminder-rules/{uuid.uuid4()}", json={"enabled": False}, headers=admin_headers
    )
    assert unknown.status_code == 404


def test_delete_a_rule(client: TestClient, admin_headers: Headers) -> None:
    rule = create_rule(client, admin_headers)
    url = f"/v1/reminder-rules/{rule['id']}"
    assert client.delete(url, headers={**admin_headers, "If-Match": '"old"'}).status_code == 412
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 204
    assert client.get(url, headers=admin_headers).status_code == 404
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 404


def test_creating_a_rule_is_idempotent(client: TestClient, admin_headers: Headers) -> None:
    keyed = {**admin_headers, "Idempotency-Key": "rule-1"}
    first = client.post("/v1/reminder-rules", json=LADDER, headers=keyed)
    again = client.post("/v1/reminder-rules", json=LADDER, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(client.get("/v1/reminder-rules", headers=admin_headers).json()["items"]) == 1
    other = client.post("/v1/reminder-rules", json={**LADDER, "name": "other"}, headers=keyed)
    assert other.status_code == 422


# --- a commitment's reminders --------------------------------------------------------------


def test_a_rule_schedules_reminders_for_open_steps_and_settles_them_when_changed(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    due = (now() + days(5)).replace(microsecond=0)
    step = create_step(client, admin_headers, due_at=due)
    assert reminders(client, read_headers, step["id"]) == []
    rule = create_rule(client, admin_headers, quiet_hours=False)
    # The answer did not wait: the worker schedules the open steps that exist.
    assert reminders(client, read_headers, step["id"]) == []
    schedule_changed_rules()
    scheduled = reminders(client, read_headers, step["id"])
    assert [(r["type"], r["state"], r["reason"]) for r in scheduled] == [
        ("next_step.due_soon", "scheduled", None),
        ("next_step.overdue", "scheduled", None),
        ("next_step.escalated", "scheduled", None),
    ]
    assert {r["rule_id"] for r in scheduled} == {rule["id"]}
    fire_at = [datetime.fromisoformat(r["fire_at"].replace("Z", "+00:00")) for r in scheduled]
    assert fire_at == [due - days(1), due, due + days(1)]

    url = f"/v1/reminder-rules/{rule['id']}"
    client.patch(
        url,
        json={"steps": [{"offset": "PT0S", "type": "next_step.overdue"}]},
        headers={**admin_headers, "If-Match": "*"},
    )
    schedule_changed_rules()
    after_change = reminders(client, read_headers, step["id"])
    assert sorted((r["state"], r["reason"]) for r in after_change) == [
        ("scheduled", None),
        ("skipped", "rule changed"),
        ("skipped", "rule changed"),
        ("skipped", "rule changed"),
    ]
    client.delete(url, headers={**admin_headers, "If-Match": "*"})
    after_delete = reminders(client, read_headers, step["id"])
    assert [r["state"] for r in after_delete] == ["skipped"] * 4
    assert sorted(r["reason"] for r in after_delete)[-1] == "rule deleted"


def test_a_rule_for_candidate_owed_steps_leaves_company_steps_alone(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    step = create_step(client, admin_headers, due_at=now() + days(5))
    create_rule(client, admin_headers, match={"owed_by": "candidate"})
    schedule_changed_rules()
    assert reminders(client, read_headers, step["id"]) == []


# Each filter of a rule's match, with what a step it takes has and one it leaves alone (one
# field apart from it).
MATCH_FILTERS = [
    pytest.param(
        {"owner_role": "recruiter"}, {"role": "recruiter"}, {"role": "hr"}, id="owner_role"
    ),
    pytest.param({"source": "acme-ats"}, {"source": "acme-ats"}, {"source": "api"}, id="source"),
    pytest.param({"stage": "onsite"}, {"stage": "Onsite"}, {"stage": "Phone screen"}, id="stage"),
    pytest.param(
        {"job_id": "job-sre"}, {"job_id": "job-sre"}, {"job_id": "job-analyst"}, id="job_id"
    ),
]


def _step_with(client: TestClient, headers: Headers, candidate: str, fields: Json) -> str:
    """A step due in five days whose interview (or owner's role) has ``fields``."""
    on_interview = {name: value for name, value in fields.items() if name != "role"}
    interview = create_interview(client, headers, candidate_id=candidate, **on_interview)
    step = create_commitment(
        client, headers, interview["id"], due_at=now() + days(5), role=fields.get("role", "hr")
    )
    return str(step["id"])


@pytest.mark.parametrize(("match", "taken", "left"), MATCH_FILTERS)
def test_a_rule_reminds_only_about_the_steps_its_match_takes(
    client: TestClient,
    admin_headers: Headers,
    read_headers: Headers,
    match: Json,
    taken: Json,
    left: Json,
) -> None:
    # A rule meets a step two ways: the step is agreed after the rule, or the rule is made
    # after the step. Both must apply the match.
    before = create_rule(client, admin_headers, match=match, quiet_hours=False)
    steps = {
        "taken": _step_with(client, admin_headers, "cand-taken", taken),
        "left": _step_with(client, admin_headers, "cand-left", left),
    }
    after = create_rule(client, admin_headers, name="Made later", match=match, quiet_hours=False)
    schedule_changed_rules()

    def rules_reminding(step: str) -> set[str]:
        return {r["rule_id"] for r in reminders(client, read_headers, step)}

    assert rules_reminding(steps["taken"]) == {before["id"], after["id"]}
    assert rules_reminding(steps["left"]) == set()
    assert len(reminders(client, read_headers, steps["taken"])) == 2 * len(LADDER["steps"])


def test_reminders_are_ordered_by_when_they_fire_then_step(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    step = create_step(client, admin_headers, due_at=now() + days(5))
    rule_id = uuid.uuid4()
    base = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with db.new_session(write=True) as session:
        for index, (offset, type_, state, reason) in enumerate(
            [
                (timedelta(hours=2), "next_step.escalated", "scheduled", None),
                (timedelta(0), "next_step.overdue", "sent", None),
                (timedelta(0), "next_step.due_soon", "skipped", "collapsed"),
            ]
        ):
            session.add(
                Reminder(
                    commitment_id=uuid.UUID(step["id"]),
                    rule_id=rule_id,
                    rule_version=1,
                    step=2 - index,
                    type=type_,
                    due_at=base,
                    owner_id="hr-1",
                    fire_at=base + offset,
                    state=state,
                    reason=reason,
                    created_at=base,
                )
            )
        session.commit()
    assert reminders(client, read_headers, step["id"]) == [
        {
            "rule_id": str(rule_id),
            "type": "next_step.due_soon",
            "fire_at": "2026-11-20T12:00:00Z",
            "state": "skipped",
            "reason": "collapsed",
        },
        {
            "rule_id": str(rule_id),
            "type": "next_step.overdue",
            "fire_at": "2026-11-20T12:00:00Z",
            "state": "sent",
            "reason": None,
        },
        {
            "rule_id": str(rule_id),
            "type": "next_step.escalated",
            "fire_at": "2026-11-20T14:00:00Z",
            "state": "scheduled",
            "reason": None,
        },
    ]


def test_reminders_of_an_unknown_commitment_are_a_404(
    client: TestClient, read_headers: Headers
) -> None:
    response = client.get(f"/v1/commitments/{uuid.uuid4()}/reminders", headers=read_headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert client.get(f"/v1/commitments/{uuid.uuid4()}/reminders").status_code == 401


def test_a_rule_answers_at_once_and_the_worker_schedules_existing_steps_in_batches(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    due = (now() + days(5)).replace(microsecond=0)
    steps = [
        create_step(client, admin_headers, due_at=due, candidate_id=f"c-{n}") for n in range(5)
    ]
    rule = create_rule(client, admin_headers, quiet_hours=False)
    assert all(reminders(client, read_headers, s["id"]) == [] for s in steps)

    assert worker.schedule_rules(limit=2) == 2  # one batch: two steps
    done = [s for s in steps if reminders(client, read_headers, s["id"])]
    assert len(done) == 2
    # Meanwhile a new step and a re-dated one are scheduled by their own writes.
    late = create_step(client, admin_headers, due_at=due, candidate_id="c-late")
    waiting = next(s for s in steps if s not in done)
    redated = due + days(1)
    tag = client.get(f"/v1/commitments/{waiting['id']}", headers=admin_headers).headers["etag"]
    patched = client.patch(
        f"/v1/commitments/{waiting['id']}",
        json={"due_at": redated.isoformat()},
        headers={**admin_headers, "If-Match": tag},
    )
    assert patched.status_code == 200, patched.text

    schedule_changed_rules()
    for step in [*steps, late]:
        items = reminders(client, read_headers, step["id"])
        # Each step once, three reminders of this rule's version: none twice.
        assert [(r["rule_id"], r["state"]) for r in items] == [(rule["id"], "scheduled")] * 3
    fire_at = [r["fire_at"] for r in reminders(client, read_headers, waiting["id"])]
    assert fire_at[1] == redated.isoformat().replace("+00:00", "Z")
    assert worker.schedule_rules() == 0
