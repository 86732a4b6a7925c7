"""The sweep applies pending deliveries whose subject exists; /metrics shows how old the
oldest pending one is."""

import re

from fastapi.testclient import TestClient

from app.events.sweep import sweep_once
from app.models import utcnow
from tests.signing import event_body
from tests.test_events import DAY, completed, post


def _oldest_pending_age(client: TestClient) -> float:
    text = client.get("/metrics").text
    match = re.search(r"^nextstep_delivery_pending_oldest_age_seconds (\S+)$", text, re.M)
    assert match, "the metric is missing"
    return float(match.group(1))


def test_sweep_applies_a_pending_delivery_whose_interview_was_created_another_way(
    client: TestClient, write_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    ended = utcnow() - 2 * DAY
    contact = event_body(
        "candidate.contacted",
        ended + DAY,
        {"interview_external_id": "int-9", "direction": "inbound", "channel": "call"},
    )
    assert post(client, contact).json()["status"] == "pending"
    assert _oldest_pending_age(client) >= 0.0
    # Recorded over REST under the same source and id: the event now has its subject.
    created = client.put(
        "/v1/interviews/acme-ats/int-9",
        json={
            "candidate": {"external_id": "cand-9"},
            "status": "completed",
            "ends_at": ended.isoformat(),
            "next_steps": [
                {
                    "action": "Call back",
                    "owner": {"id": "hr-1", "role": "hr"},
                    "due_at": (ended + 3 * DAY).isoformat(),
                }
            ],
        },
        headers=write_headers,
    )
    assert created.status_code == 201, created.text

    assert sweep_once() == 1

    interview = client.get(f"/v1/interviews/{created.json()['id']}", headers=admin_headers).json()
    assert interview["unanswered_contacts"] == 1
    deliveries = client.get("/v1/deliveries", headers=admin_headers).json()
    assert [d["result"] for d in deliveries["items"]] == ["applied"]
    assert _oldest_pending_age(client) == 0.0
    assert sweep_once() == 0


def test_sweep_leaves_a_delivery_whose_subject_is_still_missing(client: TestClient) -> None:
    assert post(client, completed(utcnow(), step="s-1")).json()["status"] == "applied"
    waiting = event_body("next_step.completed", utcnow(), {"external_id": "not-yet"})
    assert post(client, waiting).json()["status"] == "pending"
    assert sweep_once() == 0
    assert _oldest_pending_age(client) > 0.0
