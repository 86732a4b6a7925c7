"""The canonical scenario of PRODUCT.md, end to end over HTTP.

Day 0 is placed four days ago, so that "day 4" is now.
"""

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.factories import (
    Headers,
    add_contact,
    etag,
    get_csv,
    iso,
    now,
    overdue,
    parse,
)

ACTION = "Call C to schedule second interview with the hiring manager"


def test_canonical_scenario(client: TestClient, write_headers: Headers) -> None:
    day0 = now() - timedelta(days=4)
    interview_end = day0

    # 1. The interview is recorded as completed, with its next step agreed at its end.
    response = client.post(
        "/v1/interviews",
        json={
            "source": "acme-ats",
            "external_id": "int-c-1",
            "candidate": {"external_id": "cand-c", "name": "C", "email": "c@example.com"},
            "job": {"external_id": "job-analyst", "title": "Analyst"},
            "stage": "First interview",
            "status": "completed",
            "interviewers": [{"external_id": "u-ivy", "name": "Ivy Interviewer"}],
            "starts_at": iso(interview_end - timedelta(hours=1)),
            "ends_at": iso(interview_end),
            "next_steps": [
                {
                    "external_id": "ns-1",
                    "action": ACTION,
                    "owner": {"id": "hr-1", "name": "Harriet HR", "role": "hr"},
                    "channel": "call",
                    "agreed_at": iso(interview_end),
                    "due_at": iso(day0 + timedelta(days=3)),
                }
            ],
        },
        headers=write_headers,
    )
    assert response.status_code == 201, response.text
    interview = response.json()
    interview_id = interview["id"]
    [step] = interview["commitments"]
    assert step["owner"]["role"] == "hr"
    assert step["owed_by"] == "company"

    # 2. Two days later C calls HR, then emails.
    day2 = day0 + timedelta(days=2)
    add_contact(client, write_headers, interview_id, "inbound", at=day2, channel="call")
    add_contact(
        client,
        write_headers,
        interview_id,
        "inbound",
        at=day2 + timedelta(hours=3),
        channel="email",
    )

    # 3. The interviewer reassigns the step from HR to the recruiter, with a reason.
    reason = "HR is swamped this week; the recruiter will call"
    reassigned = client.patch(
        f"/v1/commitments/{step['id']}",
        json={
            "owner": {"id": "rec-1", "name": "Rita Recruiter", "role": "recruiter"},
            "reason": reason,
        },
        headers={**write_headers, "If-Match": etag(client, write_headers, step["id"])},
    )
    assert reassigned.status_code == 200, reassigned.text

    # 4. On day 4 an internal tool asks what is overdue.
    day4 = now()
    [item] = overdue(client, write_headers)
    assert item["id"] == step["id"]
    assert item["action"] == ACTION
    assert item["overdue_by"].startswith("P1D")
    assert 86400 <= item["overdue_seconds"] < 86400 + 60
    assert item["owner"] == {"id": "rec-1", "name": "Rita Recruiter", "role": "recruiter"}
    assert item["waiting_since"] == iso(interview_end)
    assert item["unanswered_contacts"] == 2
    assert item["candidate"]["external_id"] == "cand-c"
    assert item["job"]["title"] == "Analyst"

    # 5. An ops script lists the same as CSV.
    header, rows = get_csv(client, write_headers, "/v1/commitments/overdue")
    assert header[0] == "id"
    [row] = rows
    assert row["id"] == step["id"]
    assert row["action"] == ACTION
    assert row["owner_id"] == "rec-1"
    assert row["owner_role"] == "recruiter"
    assert row["overdue_by"].startswith("P1D")
    assert row["waiting_since"] == iso(interview_end)
    assert row["unanswered_contacts"] == "2"

    # 6. The recruiter calls C, completes the step, and a new step is agreed.
    called = add_contact(client, write_headers, interview_id, "outbound", channel="call")
    completed = client.post(
        f"/v1/commitments/{step['id']}/complete",
        json={"outcome": "Second interview booked for Friday"},
        headers=write_headers,
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "done"
    friday = now() + timedelta(days=3)
    second = client.post(
        f"/v1/interviews/{interview_id}/commitments",
        json={
            "action": "Second interview on Friday",
            "owner": {"id": "hm-1", "name": "Hana Manager", "role": "hiring_manager"},
            "channel": "video",
            "due_at": iso(friday),
        },
        headers=write_headers,
    )
    assert second.status_code == 201, second.text
    detail = client.get(f"/v1/interviews/{interview_id}", headers=write_headers).json()
    assert detail["waiting_since"] == called["at"]  # the clock reset at the call
    assert detail["unanswered_contacts"] == 0
    assert [c["status"] for c in detail["commitments"]] == ["done", "open"]
    assert overdue(client, write_headers) == []

    # 7. "What was overdue as of day 4?" still answers with the step as it stood then.
    [then] = overdue(client, write_headers, as_of=day4)
    assert then["id"] == step["id"]
    assert then["status"] == "open"
    assert then["owner"]["id"] == "rec-1"
    assert then["overdue_by"].startswith("P1D")
    assert then["waiting_since"] == iso(interview_end)
    assert then["unanswered_contacts"] == 2

    # The timeline tells the whole story, in the order it happened.
    timeline = client.get(f"/v1/interviews/{interview_id}/timeline", headers=write_headers)
    entries = timeline.json()["items"]
    assert [e["kind"] for e in entries] == [
        "agreed",
        "contact",
        "contact",
        "interview_recorded",
        "reassigned",
        "contact",
        "completed",
        "agreed",
    ]
    agreed, inbound_call, inbound_email, _recorded, change, outbound, done, new_step = entries
    assert agreed["effective_at"] == iso(interview_end)
    assert agreed["changes"]["owner_id"] == {"before": None, "after": "hr-1"}
    assert inbound_call["effective_at"] == iso(day2)
    assert inbound_call["changes"]["direction"]["after"] == "inbound"
    assert inbound_email["changes"]["channel"]["after"] == "email"
    assert change["commitment_id"] == step["id"]
    assert change["reason"] == reason
    assert change["actor"] == "key:writer"
    assert change["changes"]["owner_id"] == {"before": "hr-1", "after": "rec-1"}
    assert change["changes"]["owner_name"] == {"before": "Harriet HR", "after": "Rita Recruiter"}
    assert change["changes"]["owner_role"] == {"before": "hr", "after": "recruiter"}
    assert outbound["changes"]["direction"]["after"] == "outbound"
    assert done["changes"]["outcome"]["after"] == "Second interview booked for Friday"
    assert new_step["commitment_id"] == second.json()["id"]
    assert {e["actor"] for e in entries} == {"key:writer"}
    assert parse(done["effective_at"]) > day4
