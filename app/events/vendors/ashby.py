"""Ashby webhook deliveries mapped to commands.

A delivery is ``{"action": ..., "data": {...}, "webhookActionId": ...}`` (Ashby's
developer documentation, "Common Payload Data" and the webhook payload reference).

External ids:

- interview: ``interviewSchedule.id``. An Ashby schedule groups the events of one
  sitting (a panel, an onsite); it is one interview here, from the earliest event start
  to the latest event end.
- candidate: ``interviewSchedule.candidateId``, or ``application.candidate.id`` for the
  application events.
- interviewers: ``interviewEvents[].interviewers[].id``.
- the hiring team of an application (``candidateStageChange``, ``candidateHire``):
  ``hiringTeam[].userId``, named for the owner directory only.

Ashby documents ``candidateId`` on ``interviewScheduleUpdate`` only, and says every
``interviewScheduleCreate`` also triggers an update. A create without a candidate is
therefore left to that update (an interview cannot be recorded without its candidate),
while an update without one is rejected.

Ashby has no rejection webhook: archiving an application is a stage change into its
archived stage (``application.status == "Archived"``), so that stage change also closes
the candidate, with the archive reason.

``occurred_at``: the payload's ``updatedAt`` when present, otherwise the time the
delivery was received.
"""

import hashlib
from datetime import datetime
from typing import Any

from app import jsonbody
from app.events.commands import (
    CloseCandidate,
    Command,
    Mapped,
    MappingError,
    NamePeople,
    SetCandidateStage,
    UpsertInterview,
)
from app.events.vendors import _payload as p

# Waiting on the candidate or on availability is still "to be scheduled", which is
# Greenhouse's scheduled too. OnHold and Unknown say nothing, so they leave the status alone.
_STATUS: dict[str, str | None] = {
    "NeedsScheduling": "scheduled",
    "WaitingOnCandidateBooking": "scheduled",
    "WaitingOnCandidateAvailability": "scheduled",
    "CandidateAvailabilitySubmitted": "scheduled",
    "Scheduled": "scheduled",
    "WaitingOnFeedback": "completed",
    "Complete": "completed",
    "Cancelled": "cancelled",
    "OnHold": None,
    "Unknown": None,
}


def map_event(payload: dict[str, Any], received_at: datetime) -> Mapped:
    """Map one Ashby delivery; ``MappingError`` if it is not a valid one."""
    received_at = p.aware_utc(received_at)
    body = p.root(payload, "body")
    action = p.req_str(body, "action", "body")
    data = p.req_dict(body, "data", "body")
    p.opt_str(body, "webhookActionId", "body")
    if action in ("interviewScheduleCreate", "interviewScheduleUpdate"):
        return _interview_schedule(action, data, received_at)
    if action == "candidateStageChange":
        return _stage_change(action, data, received_at)
    if action == "candidateHire":
        return _hire(action, data, received_at)
    return Mapped(event_type=action, occurred_at=None)


def _interview_schedule(action: str, data: dict[str, Any], received_at: datetime) -> Mapped:
    path = "body.data.interviewSchedule"
    schedule = p.req_dict(data, "interviewSchedule", "body.data")
    schedule_id = p.req_id(schedule, "id", path)
    status = _status(schedule, path)
    occurred_at = (
        p.opt_iso_datetime(schedule, "updatedAt", path)
        or p.opt_iso_datetime(schedule, "createdAt", path)
        or received_at
    )
    candidate_id = p.opt_id(schedule, "candidateId", path)
    if candidate_id is None:
        if action == "interviewScheduleCreate":
            return Mapped(event_type=action, occurred_at=occurred_at)
        raise MappingError(f"{path}.candidateId: missing")

    fields: dict[str, Any] = {"candidate_external_id": candidate_id}
    if status is not None:
        fields["status"] = status
    starts: list[datetime] = []
    ends: list[datetime] = []
    interviewers: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(p.opt_list(schedule, "interviewEvents", path)):
        event_path = f"{path}.interviewEvents[{index}]"
        event = p.item_dict(raw, event_path)
        start = p.opt_iso_datetime(event, "startTime", event_path)
        end = p.opt_iso_datetime(event, "endTime", event_path)
        if start is not None:
            starts.append(start)
        if end is not None:
            ends.append(end)
        for person_index, person_raw in enumerate(p.opt_list(event, "interviewers", event_path)):
            person_path = f"{event_path}.interviewers[{person_index}]"
            person = p.item_dict(person_raw, person_path)
            person_id = p.req_id(person, "id", person_path)
            interviewers.setdefault(person_id, _interviewer(person_id, person, person_path))
    if starts:
        fields["starts_at"] = min(starts)
    if ends:
        fields["ends_at"] = max(ends)
    if interviewers:
        fields["interviewers"] = list(interviewers.values())
    command = UpsertInterview(external_id=schedule_id, fields=fields, occurred_at=occurred_at)
    return Mapped(event_type=action, occurred_at=occurred_at, commands=[command])


def _stage_change(action: str, data: dict[str, Any], received_at: datetime) -> Mapped:
    path = "body.data.application"
    application = p.req_dict(data, "application", "body.data")
    occurred_at = p.opt_iso_datetime(application, "updatedAt", path) or received_at
    candidate_id = p.candidate_id(application, path)
    stage = p.req_dict(application, "currentInterviewStage", path)
    commands: list[Command] = [
        SetCandidateStage(
            candidate_external_id=candidate_id,
            stage=p.req_str(stage, "title", f"{path}.currentInterviewStage"),
            occurred_at=occurred_at,
        )
    ]
    people = _hiring_team(application, path)
    if people:
        commands.append(NamePeople(people=people, occurred_at=occurred_at))
    if p.opt_str(application, "status", path) == "Archived":
        reason = "archived"
        archive_reason = p.opt_dict(application, "archiveReason", path)
        if archive_reason is not None:
            text = p.opt_str(archive_reason, "text", f"{path}.archiveReason")
            if text is not None:
                reason = f"archived: {text}"
        commands.append(
            CloseCandidate(
                candidate_external_id=candidate_id, reason=reason, occurred_at=occurred_at
            )
        )
    return Mapped(event_type=action, occurred_at=occurred_at, commands=commands)


def _hire(action: str, data: dict[str, Any], received_at: datetime) -> Mapped:
    path = "body.data.application"
    application = p.req_dict(data, "application", "body.data")
    occurred_at = p.opt_iso_datetime(application, "updatedAt", path) or received_at
    commands: list[Command] = [
        CloseCandidate(
            candidate_external_id=p.candidate_id(application, path),
            reason="hired",
            occurred_at=occurred_at,
        )
    ]
    people = _hiring_team(application, path)
    if people:
        commands.append(NamePeople(people=people, occurred_at=occurred_at))
    return Mapped(event_type=action, occurred_at=occurred_at, commands=commands)


def _hiring_team(application: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The application's hiring team (recruiter, coordinator, hiring manager…) as people:
    ``userId``, names and e-mail."""
    people = []
    for index, raw in enumerate(p.opt_list(application, "hiringTeam", path)):
        member_path = f"{path}.hiringTeam[{index}]"
        member = p.item_dict(raw, member_path)
        user_id = p.opt_id(member, "userId", member_path)
        if user_id is None:
            continue
        parts = [
            p.opt_str(member, "firstName", member_path),
            p.opt_str(member, "lastName", member_path),
        ]
        name = " ".join(part.strip() for part in parts if part and part.strip())
        people.append(
            {"id": user_id, "name": name or None, "email": p.opt_str(member, "email", member_path)}
        )
    return people


def _status(schedule: dict[str, Any], path: str) -> str | None:
    status = p.req_str(schedule, "status", path)
    if status not in _STATUS:
        # Rejected (and kept for replay) rather than guessed: a new status needs a decision.
        raise MappingError(f"{path}.status: unknown Ashby interview schedule status {status!r}")
    return _STATUS[status]


def _interviewer(person_id: str, person: dict[str, Any], path: str) -> dict[str, Any]:
    parts = [p.opt_str(person, "firstName", path), p.opt_str(person, "lastName", path)]
    name = " ".join(part.strip() for part in parts if part and part.strip())
    return {
        "external_id": person_id,
        "name": name or None,
        "email": p.opt_str(person, "email", path),
    }


def delivery_key(body: bytes) -> str:
    """Ashby names each delivery by its action and webhookActionId; else the body's hash."""
    try:
        payload = jsonbody.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        action, action_id = payload.get("action"), payload.get("webhookActionId")
        if isinstance(action, str) and isinstance(action_id, str | int) and action_id != "":
            key = f"{action}:{action_id}"[:300]
            if "\x00" not in key:  # a text column cannot hold it; the hash names it instead
                return key
    return "sha256:" + hashlib.sha256(body).hexdigest()
