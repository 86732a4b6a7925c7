"""Vendor payloads mapped to commands: pure functions, so no database here.

Payloads (``tests/fixtures``) are the vendors' published examples where there are any, or built
from their published schemas; each vendor's README there says which is which.
"""

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.events.commands import (
    AgreeStep,
    CancelInterview,
    CloseCandidate,
    Mapped,
    MappingError,
    NamePeople,
    SetCandidateStage,
    UpsertInterview,
)
from app.events.vendors import ashby, greenhouse, lever

FIXTURES = Path(__file__).parent / "fixtures"
RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

MapEvent = Callable[[dict[str, Any], datetime], Mapped]
VENDORS: dict[str, MapEvent] = {
    "greenhouse": greenhouse.map_event,
    "lever": lever.map_event,
    "ashby": ashby.map_event,
}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def fixture(vendor: str, name: str) -> dict[str, Any]:
    return load(FIXTURES / vendor / f"{name}.json")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def greenhouse_stage_change() -> dict[str, Any]:
    return fixture("greenhouse", "candidate_stage_change")


def lever_stage_change() -> dict[str, Any]:
    return fixture("lever", "candidateStageChange")


# Greenhouse


def test_greenhouse_stage_change_records_stage_and_one_interview_per_step() -> None:
    mapped = greenhouse.map_event(greenhouse_stage_change(), RECEIVED)

    at = utc("2015-02-09T16:38:36Z")
    owner = {"id": "3128", "name": "Alicia Flopple", "email": "alicia.flopple.3128@example.com"}
    assert mapped == Mapped(
        event_type="candidate_stage_change",
        occurred_at=at,
        commands=[
            SetCandidateStage(candidate_external_id="265772", stage="Assessment", occurred_at=at),
            UpsertInterview(
                external_id="265277:113101",
                fields={
                    "candidate_external_id": "265772",
                    "candidate_name": "Giuseppe Hurley",
                    "candidate_email": "giuseppe.hurley@example.com",
                    "job_external_id": "3485",
                    "job_title": "Designer",
                    "stage": "Assessment",
                    "status": "scheduled",
                    "interviewers": [{"external_id": "2622", "name": "Carl Buddha", "email": None}],
                    "default_owners": {"recruiter": owner, "coordinator": owner},
                },
                occurred_at=at,
            ),
        ],
    )


@pytest.mark.parametrize(
    ("greenhouse_status", "status"),
    [
        ("to_be_scheduled", "scheduled"),
        ("scheduled", "scheduled"),
        ("awaiting_feedback", "completed"),
        ("collect_feedback", "completed"),
        ("complete", "completed"),
        ("skipped", "cancelled"),
        ("to_be_sent", "scheduled"),
        ("sent", "scheduled"),
        ("received", "completed"),
    ],
)
def test_greenhouse_interview_status_maps_to_nextstep_status(
    greenhouse_status: str, status: str
) -> None:
    payload = greenhouse_stage_change()
    payload["payload"]["application"]["current_stage"]["interviews"][0]["status"] = (
        greenhouse_status
    )

    upsert = greenhouse.map_event(payload, RECEIVED).commands[1]

    assert isinstance(upsert, UpsertInterview)
    assert upsert.fields["status"] == status


def test_greenhouse_unknown_interview_status_is_rejected() -> None:
    payload = greenhouse_stage_change()
    payload["payload"]["application"]["current_stage"]["interviews"][0]["status"] = "postponed"

    with pytest.raises(MappingError, match=r"interviews\[0\]\.status.*'postponed'"):
        greenhouse.map_event(payload, RECEIVED)


def test_greenhouse_same_step_on_two_applications_is_two_interviews() -> None:
    first = greenhouse_stage_change()
    second = greenhouse_stage_change()
    second["payload"]["application"]["id"] = 999001

    ids = {
        command.external_id
        for payload in (first, second)
        for command in greenhouse.map_event(payload, RECEIVED).commands
        if isinstance(command, UpsertInterview)
    }

    assert ids == {"265277:113101", "999001:113101"}


def test_greenhouse_stage_change_without_owners_email_job_or_activity_time() -> None:
    payload = greenhouse_stage_change()
    application = payload["payload"]["application"]
    application["candidate"].update(recruiter=None, coordinator=None, email_addresses=[])
    application["jobs"] = []
    del application["last_activity_at"]

    upsert = greenhouse.map_event(payload, RECEIVED).commands[1]

    assert isinstance(upsert, UpsertInterview)
    assert upsert.occurred_at == RECEIVED
    for absent in ("default_owners", "candidate_email", "job_external_id", "job_title"):
        assert absent not in upsert.fields


def test_greenhouse_rejection_closes_the_candidate_with_the_reason() -> None:
    mapped = greenhouse.map_event(fixture("greenhouse", "reject_candidate"), RECEIVED)

    at = utc("2015-02-11T15:50:41Z")
    assert mapped == Mapped(
        event_type="reject_candidate",
        occurred_at=at,
        commands=[
            CloseCandidate(
                candidate_external_id="265788", reason="rejected: Too Junior", occurred_at=at
            )
        ],
    )


def test_greenhouse_rejection_without_a_reason() -> None:
    payload = fixture("greenhouse", "reject_candidate")
    payload["payload"]["application"]["rejection_reason"] = None

    [command] = greenhouse.map_event(payload, RECEIVED).commands

    assert command == CloseCandidate(
        candidate_external_id="265788", reason="rejected", occurred_at=utc("2015-02-11T15:50:41Z")
    )


def test_greenhouse_unrejection_puts_the_candidate_back_in_the_stage() -> None:
    mapped = greenhouse.map_event(fixture("greenhouse", "unreject_candidate"), RECEIVED)

    at = utc("2015-02-11T15:50:41Z")
    assert mapped == Mapped(
        event_type="unreject_candidate",
        occurred_at=at,
        commands=[SetCandidateStage(candidate_external_id="265788", stage="Offer", occurred_at=at)],
    )


def test_greenhouse_hire_closes_the_candidate_when_the_offer_was_accepted() -> None:
    mapped = greenhouse.map_event(fixture("greenhouse", "hire_candidate"), RECEIVED)

    at = utc("2014-11-20T22:49:14Z")
    assert mapped == Mapped(
        event_type="hire_candidate",
        occurred_at=at,
        commands=[CloseCandidate(candidate_external_id="35897443", reason="hired", occurred_at=at)],
    )


def test_greenhouse_interview_deleted_cancels_by_scheduled_interview_id() -> None:
    mapped = greenhouse.map_event(fixture("greenhouse", "interview_deleted"), RECEIVED)

    assert mapped == Mapped(
        event_type="interview_deleted",
        occurred_at=RECEIVED,
        commands=[
            CancelInterview(
                external_id="31087450", reason="deleted in Greenhouse", occurred_at=RECEIVED
            )
        ],
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "new_prospect_application", "payload": {"application": {"id": 979554}}},
        {"action": "application_updated", "payload": {}},
        {"action": "offer_created", "payload": {"id": 12345}},
        {"action": "ping", "payload": {"web_hook_id": 1}},
    ],
)
def test_greenhouse_other_actions_are_ignored(payload: dict[str, Any]) -> None:
    mapped = greenhouse.map_event(payload, RECEIVED)

    assert mapped.event_type == payload["action"]
    assert mapped.commands == []


def _greenhouse_broken(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    payload = greenhouse_stage_change()
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"payload": {}}, r"body\.action: missing"),
        ({"action": 7, "payload": {}}, r"body\.action: expected a string, got a number"),
        ({"action": "candidate_stage_change"}, r"body\.payload: missing"),
        ({"action": "x", "payload": []}, r"body\.payload: expected an object, got an array"),
        (
            _greenhouse_broken(lambda b: b["payload"].pop("application")),
            r"body\.payload\.application: missing",
        ),
        (
            _greenhouse_broken(lambda b: b["payload"]["application"]["candidate"].pop("id")),
            r"body\.payload\.application\.candidate\.id: missing",
        ),
        (
            _greenhouse_broken(lambda b: b["payload"]["application"].update(id=True)),
            r"body\.payload\.application\.id: expected an id",
        ),
        (
            _greenhouse_broken(
                lambda b: b["payload"]["application"]["current_stage"].update(interviews={})
            ),
            r"current_stage\.interviews: expected an array, got an object",
        ),
        (
            _greenhouse_broken(
                lambda b: b["payload"]["application"]["current_stage"].update(interviews=[3])
            ),
            r"current_stage\.interviews\[0\]: expected an object, got a number",
        ),
        (
            _greenhouse_broken(
                lambda b: b["payload"]["application"].update(last_activity_at="last tuesday")
            ),
            r"last_activity_at: not an ISO 8601 date-time",
        ),
        (
            {"action": "interview_deleted", "payload": {"interview": {"id": "  "}}},
            r"body\.payload\.interview\.id: expected an id",
        ),
        (
            {"action": "reject_candidate", "payload": {"application": {"candidate": {}}}},
            r"body\.payload\.application\.candidate\.id: missing",
        ),
    ],
)
def test_greenhouse_malformed_payload_is_rejected(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        greenhouse.map_event(payload, RECEIVED)


# Lever


def test_lever_published_stage_change_sets_the_stage_id() -> None:
    mapped = lever.map_event(lever_stage_change(), RECEIVED)

    at = utc("2015-05-12T18:12:10.072Z")
    assert mapped == Mapped(
        event_type="candidateStageChange",
        occurred_at=at,
        commands=[
            SetCandidateStage(
                candidate_external_id="daeaa038-cddb-4d69-9b8c-74b6c23be3f3",
                stage="7c2690d8-6308-4ed9-ae2a-cbfe7db26593",
                occurred_at=at,
            )
        ],
    )


def test_lever_candidate_falls_back_to_the_opportunity_id() -> None:
    payload = lever_stage_change()
    del payload["data"]["candidateId"]

    [command] = lever.map_event(payload, RECEIVED).commands

    assert isinstance(command, SetCandidateStage)
    assert command.candidate_external_id == "3410c8b9-5c31-4bab-b7e9-9f710206d647"


def test_lever_interview_created_is_a_scheduled_interview() -> None:
    mapped = lever.map_event(fixture("lever", "interviewCreated"), RECEIVED)

    at = utc("2026-11-16T09:15:02Z")
    assert mapped == Mapped(
        event_type="interviewCreated",
        occurred_at=at,
        commands=[
            UpsertInterview(
                external_id="7f6c2a1e-4b3d-4e8f-9a0b-c1d2e3f4a5b6",
                fields={
                    "candidate_external_id": "daeaa038-cddb-4d69-9b8c-74b6c23be3f3",
                    "status": "scheduled",
                },
                occurred_at=at,
            )
        ],
    )


def test_lever_interview_updated_takes_its_time_from_date_and_duration() -> None:
    payload = fixture("lever", "interviewCreated")
    payload["event"] = "interviewUpdated"
    payload["data"].update(date=1795186800000, duration=45)

    [command] = lever.map_event(payload, RECEIVED).commands

    assert isinstance(command, UpsertInterview)
    assert command.fields["starts_at"] == utc("2026-11-20T15:00:00Z")
    assert command.fields["ends_at"] == utc("2026-11-20T15:45:00Z")


def test_lever_interview_deleted_cancels_it() -> None:
    mapped = lever.map_event(fixture("lever", "interviewDeleted"), RECEIVED)

    at = utc("2026-11-18T13:40:11Z")
    assert mapped.commands == [
        CancelInterview(
            external_id="7f6c2a1e-4b3d-4e8f-9a0b-c1d2e3f4a5b6",
            reason="deleted in Lever",
            occurred_at=at,
        )
    ]


def test_lever_hire_closes_the_candidate() -> None:
    mapped = lever.map_event(fixture("lever", "candidateHired"), RECEIVED)

    assert mapped.commands == [
        CloseCandidate(
            candidate_external_id="daeaa038-cddb-4d69-9b8c-74b6c23be3f3",
            reason="hired",
            occurred_at=utc("2026-12-01T11:45:00Z"),
        )
    ]


def test_lever_archiving_closes_the_candidate_with_the_reason_id() -> None:
    mapped = lever.map_event(fixture("lever", "candidateArchiveChange"), RECEIVED)

    assert mapped.commands == [
        CloseCandidate(
            candidate_external_id="daeaa038-cddb-4d69-9b8c-74b6c23be3f3",
            reason="archived: 63dd55b2-a99f-4e7b-985f-22c7bf80ab42",
            occurred_at=utc("2026-11-24T16:20:05Z"),
        )
    ]


def test_lever_unarchiving_is_ignored() -> None:
    mapped = lever.map_event(fixture("lever", "candidateArchiveChange-unarchived"), RECEIVED)

    assert mapped.event_type == "candidateArchiveChange"
    assert mapped.commands == []


@pytest.mark.parametrize("event", ["applicationCreated", "candidateDeleted", "contactUpdated"])
def test_lever_other_events_are_ignored(event: str) -> None:
    payload = lever_stage_change()
    payload["event"] = event

    mapped = lever.map_event(payload, RECEIVED)

    assert mapped == Mapped(event_type=event, occurred_at=utc("2015-05-12T18:12:10.072Z"))


def _lever_broken(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    payload = lever_stage_change()
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (_lever_broken(lambda b: b.pop("triggeredAt")), r"body\.triggeredAt: missing"),
        (
            _lever_broken(lambda b: b.update(triggeredAt="1431454330072")),
            r"body\.triggeredAt: expected an integer, got a string",
        ),
        (
            _lever_broken(lambda b: b.update(triggeredAt=10**20)),
            r"body\.triggeredAt: epoch milliseconds out of range",
        ),
        (_lever_broken(lambda b: b.pop("event")), r"body\.event: missing"),
        (_lever_broken(lambda b: b.update(data=[])), r"body\.data: expected an object"),
        (
            _lever_broken(lambda b: b["data"].pop("toStageId")),
            r"body\.data\.toStageId: missing",
        ),
        (
            _lever_broken(lambda b: [b["data"].pop(k) for k in ("candidateId", "opportunityId")]),
            r"body\.data: missing both candidateId and opportunityId",
        ),
        (
            _lever_broken(lambda b: b.update(event="interviewCreated")),
            r"body\.data\.interviewId: missing",
        ),
        (
            _lever_broken(
                lambda b: b.update(event="candidateArchiveChange", data={"toArchived": 1})
            ),
            r"body\.data\.toArchived: expected an object, got a number",
        ),
    ],
)
def test_lever_malformed_payload_is_rejected(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        lever.map_event(payload, RECEIVED)


# Ashby


def test_ashby_schedule_update_spans_its_events() -> None:
    mapped = ashby.map_event(fixture("ashby", "interviewScheduleUpdate"), RECEIVED)

    at = utc("2026-11-16T09:15:02.503Z")
    assert mapped == Mapped(
        event_type="interviewScheduleUpdate",
        occurred_at=at,
        commands=[
            UpsertInterview(
                external_id="9d34f544-c150-4d70-91c4-e8b0b4a72846",
                fields={
                    "candidate_external_id": "f9e52a51-a075-4116-a7b8-484deba69004",
                    "status": "scheduled",
                    "starts_at": utc("2026-11-20T14:00:00Z"),
                    "ends_at": utc("2026-11-20T16:00:00Z"),
                    "interviewers": [
                        {
                            "external_id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                            "name": "Ines Interviewer",
                            "email": "ines.interviewer@example.com",
                        },
                        {
                            "external_id": "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e",
                            "name": "Sam Shadow",
                            "email": "sam.shadow@example.com",
                        },
                    ],
                },
                occurred_at=at,
            )
        ],
    )


@pytest.mark.parametrize(
    ("ashby_status", "status"),
    [
        ("Scheduled", "scheduled"),
        ("WaitingOnFeedback", "completed"),
        ("Complete", "completed"),
        ("Cancelled", "cancelled"),
        ("NeedsScheduling", "scheduled"),
        ("WaitingOnCandidateBooking", "scheduled"),
        ("WaitingOnCandidateAvailability", "scheduled"),
        ("CandidateAvailabilitySubmitted", "scheduled"),
        ("OnHold", None),
        ("Unknown", None),
    ],
)
def test_ashby_schedule_status_maps_to_nextstep_status(
    ashby_status: str, status: str | None
) -> None:
    payload = fixture("ashby", "interviewScheduleUpdate")
    payload["data"]["interviewSchedule"]["status"] = ashby_status

    [command] = ashby.map_event(payload, RECEIVED).commands

    assert isinstance(command, UpsertInterview)
    assert command.fields.get("status") == status


def test_ashby_unknown_schedule_status_is_rejected() -> None:
    payload = fixture("ashby", "interviewScheduleUpdate")
    payload["data"]["interviewSchedule"]["status"] = "Postponed"

    with pytest.raises(MappingError, match=r"interviewSchedule\.status.*'Postponed'"):
        ashby.map_event(payload, RECEIVED)


def test_ashby_schedule_create_without_candidate_waits_for_the_update() -> None:
    mapped = ashby.map_event(fixture("ashby", "interviewScheduleCreate"), RECEIVED)

    assert mapped == Mapped(
        event_type="interviewScheduleCreate", occurred_at=utc("2026-11-16T09:12:44.120Z")
    )


def test_ashby_schedule_create_with_candidate_and_no_events_yet() -> None:
    payload = fixture("ashby", "interviewScheduleCreate")
    payload["data"]["interviewSchedule"]["candidateId"] = "f9e52a51-a075-4116-a7b8-484deba69004"

    [command] = ashby.map_event(payload, RECEIVED).commands

    assert command == UpsertInterview(
        external_id="9d34f544-c150-4d70-91c4-e8b0b4a72846",
        fields={
            "candidate_external_id": "f9e52a51-a075-4116-a7b8-484deba69004",
            "status": "scheduled",
        },
        occurred_at=utc("2026-11-16T09:12:44.120Z"),
    )


def test_ashby_stage_change_sets_the_stage_title() -> None:
    mapped = ashby.map_event(fixture("ashby", "candidateStageChange"), RECEIVED)

    at = utc("2026-11-21T10:04:31.877Z")
    assert mapped == Mapped(
        event_type="candidateStageChange",
        occurred_at=at,
        commands=[
            SetCandidateStage(
                candidate_external_id="f9e52a51-a075-4116-a7b8-484deba69004",
                stage="Onsite",
                occurred_at=at,
            ),
            # Its hiring team, for the owner directory.
            NamePeople(
                people=[
                    {
                        "id": "caea4d97-331d-46b1-a8e3-6b821c2214ef",
                        "name": "Rita Recruiter",
                        "email": "rita.recruiter@example.com",
                    }
                ],
                occurred_at=at,
            ),
        ],
    )


def test_ashby_archiving_stage_change_also_closes_the_candidate() -> None:
    mapped = ashby.map_event(fixture("ashby", "candidateStageChange-archived"), RECEIVED)

    at = utc("2026-11-24T16:20:05.112Z")
    candidate = "f9e52a51-a075-4116-a7b8-484deba69004"
    assert mapped.commands == [
        SetCandidateStage(candidate_external_id=candidate, stage="Archived", occurred_at=at),
        NamePeople(
            people=[
                {
                    "id": "caea4d97-331d-46b1-a8e3-6b821c2214ef",
                    "name": "Rita Recruiter",
                    "email": "rita.recruiter@example.com",
                }
            ],
            occurred_at=at,
        ),
        CloseCandidate(
            candidate_external_id=candidate, reason="archived: Position filled", occurred_at=at
        ),
    ]


def test_ashby_hire_closes_the_candidate() -> None:
    mapped = ashby.map_event(fixture("ashby", "candidateHire"), RECEIVED)

    at = utc("2026-12-01T11:45:00Z")
    assert mapped == Mapped(
        event_type="candidateHire",
        occurred_at=at,
        commands=[
            CloseCandidate(
                candidate_external_id="f9e52a51-a075-4116-a7b8-484deba69004",
                reason="hired",
                occurred_at=at,
            ),
            NamePeople(
                people=[
                    {
                        "id": "caea4d97-331d-46b1-a8e3-6b821c2214ef",
                        "name": "Rita Recruiter",
                        "email": "rita.recruiter@example.com",
                    }
                ],
                occurred_at=at,
            ),
        ],
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "ping", "data": {"webhookActionType": "ping"}},
        {"webhookActionId": "x", "action": "applicationUpdate", "data": {"application": {}}},
        {"action": "jobCreate", "data": {}},
    ],
)
def test_ashby_other_actions_are_ignored(payload: dict[str, Any]) -> None:
    mapped = ashby.map_event(payload, RECEIVED)

    assert mapped == Mapped(event_type=payload["action"], occurred_at=None)


def _ashby_broken(name: str, change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    payload = fixture("ashby", name)
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data": {}}, r"body\.action: missing"),
        ({"action": "ping"}, r"body\.data: missing"),
        ({"action": "ping", "data": "ping"}, r"body\.data: expected an object, got a string"),
        (
            {"action": "ping", "data": {}, "webhookActionId": 5},
            r"body\.webhookActionId: expected a string",
        ),
        (
            _ashby_broken(
                "interviewScheduleUpdate",
                lambda b: b["data"]["interviewSchedule"].pop("candidateId"),
            ),
            r"interviewSchedule\.candidateId: missing",
        ),
        (
            _ashby_broken(
                "interviewScheduleUpdate", lambda b: b["data"]["interviewSchedule"].pop("status")
            ),
            r"interviewSchedule\.status: missing",
        ),
        (
            _ashby_broken(
                "interviewScheduleUpdate",
                lambda b: b["data"]["interviewSchedule"]["interviewEvents"][1].update(
                    startTime=1795186800000
                ),
            ),
            r"interviewEvents\[1\]\.startTime: expected a string, got a number",
        ),
        (
            _ashby_broken(
                "candidateStageChange",
                lambda b: b["data"]["application"].pop("currentInterviewStage"),
            ),
            r"body\.data\.application\.currentInterviewStage: missing",
        ),
        (
            _ashby_broken("candidateHire", lambda b: b["data"]["application"].pop("candidate")),
            r"body\.data\.application\.candidate: missing",
        ),
    ],
)
def test_ashby_malformed_payload_is_rejected(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        ashby.map_event(payload, RECEIVED)


# Every vendor


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@pytest.mark.parametrize("body", [[], "candidate_stage_change", None, 42, [{"action": "x"}]])
def test_a_body_that_is_not_an_object_is_rejected(vendor: str, body: Any) -> None:
    with pytest.raises(MappingError, match=r"body: expected an object"):
        VENDORS[vendor](body, RECEIVED)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_received_at_must_be_timezone_aware(vendor: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        VENDORS[vendor]({}, datetime(2026, 11, 25, 12, 0))


def _all_fixtures() -> dict[str, list[dict[str, Any]]]:
    return {
        vendor: [load(path) for path in sorted((FIXTURES / vendor).glob("*.json"))]
        for vendor in VENDORS
    }


FIXTURE_PAYLOADS = _all_fixtures()


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for child in value.values() for key in _keys(child)}
    if isinstance(value, list):
        return {key for child in value for key in _keys(child)}
    return set()


# Real key names make the generated objects reach past the first missing-key check.
KNOWN_KEYS = sorted(_keys(FIXTURE_PAYLOADS))
KNOWN_VALUES = sorted(
    {
        "candidate_stage_change",
        "unreject_candidate",
        "reject_candidate",
        "hire_candidate",
        "interview_deleted",
        "interviewCreated",
        "interviewUpdated",
        "interviewDeleted",
        "candidateStageChange",
        "candidateHired",
        "candidateArchiveChange",
        "interviewScheduleCreate",
        "interviewScheduleUpdate",
        "candidateHire",
        "Scheduled",
        "Archived",
        "to_be_scheduled",
        "2015-02-09T16:38:36Z",
    }
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(KNOWN_VALUES)
)
json_keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=5)
    ),
    max_leaves=25,
)


def _assert_well_formed(mapped: Mapped) -> None:
    assert isinstance(mapped, Mapped)
    assert mapped.occurred_at is None or mapped.occurred_at.utcoffset() is not None
    for command in mapped.commands:
        assert not isinstance(command, AgreeStep)
        assert command.occurred_at.tzinfo is UTC
        if isinstance(command, UpsertInterview):
            for key in ("starts_at", "ends_at"):
                if key in command.fields:
                    assert command.fields[key].tzinfo is UTC


def _map_or_reject(vendor: str, payload: Any) -> None:
    try:
        mapped = VENDORS[vendor](payload, RECEIVED)
    except MappingError:
        return
    _assert_well_formed(mapped)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@given(payload=json_values)
def test_arbitrary_json_maps_or_raises_mapping_error(vendor: str, payload: Any) -> None:
    _map_or_reject(vendor, payload)


ENVELOPES: dict[str, Callable[[Any, Any], dict[str, Any]]] = {
    "greenhouse": lambda kind, inner: {"action": kind, "payload": inner},
    "lever": lambda kind, inner: {"triggeredAt": 1431454330072, "event": kind, "data": inner},
    "ashby": lambda kind, inner: {"action": kind, "data": inner},
}


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@given(kind=st.sampled_from(KNOWN_VALUES), inner=json_values)
def test_arbitrary_json_in_a_known_envelope_maps_or_raises_mapping_error(
    vendor: str, kind: str, inner: Any
) -> None:
    _map_or_reject(vendor, ENVELOPES[vendor](kind, inner))


def _mutated(data: st.DataObject, value: Any) -> Any:
    """The value with random parts dropped or replaced by arbitrary JSON."""
    if data.draw(st.integers(0, 15)) == 0:
        return data.draw(json_values)
    if isinstance(value, dict):
        return {
            key: _mutated(data, child)
            for key, child in value.items()
            if data.draw(st.integers(0, 20)) != 0
        }
    if isinstance(value, list):
        return [_mutated(data, child) for child in value]
    return value


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_damaged_real_payloads_map_or_raise_mapping_error(vendor: str, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(FIXTURE_PAYLOADS[vendor]))
    _map_or_reject(vendor, _mutated(data, copy.deepcopy(original)))


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_no_vendor_payload_agrees_a_next_step(vendor: str) -> None:
    for payload in FIXTURE_PAYLOADS[vendor]:
        _assert_well_formed(VENDORS[vendor](payload, RECEIVED))
