"""candidate_note: what the candidate may read about a step, through REST and events."""

from datetime import timedelta

from fastapi.testclient import TestClient

from app.models import utcnow
from tests.factories import (
    Headers,
    assert_problem,
    create_commitment,
    create_interview,
    etag,
    patch_commitment,
)
from tests.signing import event_body, standard_headers
from tests.test_events import SECRET

DAY = timedelta(days=1)


def _post_event(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/v1/events/acme-ats", content=body, headers=standard_headers(body, SECRET)
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "applied", response.text


def test_a_note_is_agreed_changed_and_cleared_over_rest(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    step = create_commitment(
        client, write_headers, interview["id"], candidate_note="  We will call you on Friday. "
    )
    assert step["candidate_note"] == "We will call you on Friday."
    changed = patch_commitment(
        client, write_headers, step["id"], {"candidate_note": "Expect our call on Monday."}
    )
    assert changed["candidate_note"] == "Expect our call on Monday."
    assert changed["due_at"] == step["due_at"]
    cleared = patch_commitment(client, write_headers, step["id"], {"candidate_note": None})
    assert cleared["candidate_note"] is None
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["commitments"][0]["candidate_note"] is None
    timeline = client.get(
        f"/v1/interviews/{interview['id']}/timeline", headers=write_headers
    ).json()["items"]
    notes = [e["changes"]["candidate_note"] for e in timeline if "candidate_note" in e["changes"]]
    assert notes == [
        {"before": None, "after": "We will call you on Friday."},
        {"before": "We will call you on Friday.", "after": "Expect our call on Monday."},
        {"before": "Expect our call on Monday.", "after": None},
    ]


def test_a_note_longer_than_280_characters_or_blank_is_refused(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    for note in ("x" * 281, "   "):
        body = {
            "action": "Call",
            "owner": {"id": "hr-1", "role": "hr"},
            "due_at": (utcnow() + DAY).isoformat(),
            "candidate_note": note,
        }
        response = client.post(
            f"/v1/interviews/{interview['id']}/commitments", json=body, headers=write_headers
        )
        assert_problem(response, 422, field="candidate_note")
    step = create_commitment(client, write_headers, interview["id"], candidate_note="x" * 280)
    response = client.patch(
        f"/v1/commitments/{step['id']}",
        json={"candidate_note": "y" * 281},
        headers={**write_headers, "If-Match": etag(client, write_headers, step["id"])},
    )
    assert_problem(response, 422, field="candidate_note")


def test_events_carry_the_note_when_agreed_and_updated(
    client: TestClient, read_headers: Headers
) -> None:
    ended = utcnow() - 3 * DAY
    interview = {
        "external_id": "int-note",
        "candidate": {"external_id": "cand-note"},
        "stage": "First interview",
        "ends_at": ended.isoformat(),
    }
    _post_event(client, event_body("interview.completed", ended, interview))
    agreed = {
        "interview_external_id": "int-note",
        "next_step": {
            "external_id": "step-note",
            "action": "Call the candidate",
            "owner": {"id": "rec-1", "role": "recruiter"},
            "due_at": (ended + 2 * DAY).isoformat(),
            "candidate_note": "Your recruiter will call you about the second round.",
        },
    }
    _post_event(client, event_body("next_step.agreed", ended, agreed))
    (step,) = client.get("/v1/commitments", headers=read_headers).json()["items"]
    assert step["candidate_note"] == "Your recruiter will call you about the second round."
    # An older update of the note does not overwrite a newer one, whatever the arrival order.
    newer = {"external_id": "step-note", "changes": {"candidate_note": "Newer note."}}
    older = {"external_id": "step-note", "changes": {"candidate_note": "Older note."}}
    _post_event(client, event_body("next_step.updated", ended + 2 * DAY, newer))
    _post_event(client, event_body("next_step.updated", ended + DAY, older))
    (step,) = client.get("/v1/commitments", headers=read_headers).json()["items"]
    assert step["candidate_note"] == "Newer note."
    cleared = {"external_id": "step-note", "changes": {"candidate_note": None}}
    _post_event(client, event_body("next_step.updated", ended + 2.5 * DAY, cleared))
    (step,) = client.get("/v1/commitments", headers=read_headers).json()["items"]
    assert step["candidate_note"] is None
