"""Greenhouse webhook deliveries mapped to commands.

A delivery is ``{"action": ..., "payload": {...}}`` (Greenhouse's webhook documentation,
source repository grnhse/greenhouse-api-docs, ``source/includes/webhooks/``).

External ids:

- candidate: the Greenhouse candidate id (``application.candidate.id``) as a string.
- interview: ``"<application id>:<interview id>"``. The interviews listed under
  ``application.current_stage.interviews[]`` are the steps of the job's interview plan,
  and the same step id appears on every application to that job, so the application id
  is what makes it one candidate's interview.
- ``interview_deleted`` carries nothing but ``payload.interview.id``, which is the id of
  a *scheduled* interview (Greenhouse fires it "when a scheduled interview is cancelled
  or the interview is deleted directly"). It has no application id, so it cannot be
  turned into the key above; the command uses the bare scheduled-interview id, which
  only matches an interview recorded under that same id.

``occurred_at``: the application's own instant when the payload has one
(``rejected_at`` for a rejection, ``offer.resolved_at`` for a hire, else
``last_activity_at``), otherwise the time the delivery was received.
"""

from datetime import datetime
from typing import Any

from app.events.commands import (
    CancelInterview,
    CloseCandidate,
    Command,
    Mapped,
    MappingError,
    SetCandidateStage,
    UpsertInterview,
)
from app.events.vendors import _payload as p

# Greenhouse also documents to_be_sent / sent / received: the states of a take-home
# test, which is a step of the plan like any interview.
_STATUS = {
    "to_be_scheduled": "scheduled",
    "scheduled": "scheduled",
    "to_be_sent": "scheduled",
    "sent": "scheduled",
    "awaiting_feedback": "completed",
    "collect_feedback": "completed",
    "complete": "completed",
    "received": "completed",
    "skipped": "cancelled",
}


def map_event(payload: dict[str, Any], received_at: datetime) -> Mapped:
    """Map one Greenhouse delivery; ``MappingError`` if it is not a valid one."""
    received_at = p.aware_utc(received_at)
    body = p.root(payload, "body")
    action = p.req_str(body, "action", "body")
    inner = p.req_dict(body, "payload", "body")
    if action in ("candidate_stage_change", "unreject_candidate"):
        return _stage_change(action, inner, received_at)
    if action == "reject_candidate":
        return _reject(action, inner, received_at)
    if action == "hire_candidate":
        return _hire(action, inner, received_at)
    if action == "interview_deleted":
        return _interview_deleted(action, inner, received_at)
    return Mapped(event_type=action, occurred_at=None)


def _stage_change(action: str, inner: dict[str, Any], received_at: datetime) -> Mapped:
    """The candidate's stage, then one interview per step of that stage.

    An unrejection carries the same application, so it is recorded the same way: the
    candidate is back in that stage.
    """
    path = "body.payload.application"
    application = p.req_dict(inner, "application", "body.payload")
    application_id = p.req_id(application, "id", path)
    occurred_at = p.opt_iso_datetime(application, "last_activity_at", path) or received_at
    candidate_id = p.candidate_id(application, path)
    stage_path = f"{path}.current_stage"
    stage = p.req_dict(application, "current_stage", path)
    stage_name = p.req_str(stage, "name", stage_path)

    shared: dict[str, Any] = {
        "candidate_external_id": candidate_id,
        "stage": stage_name,
        **_candidate_fields(p.req_dict(application, "candidate", path), f"{path}.candidate"),
        **_job_fields(application, path),
    }
    commands: list[Command] = [
        SetCandidateStage(
            candidate_external_id=candidate_id, stage=stage_name, occurred_at=occurred_at
        )
    ]
    for index, raw in enumerate(p.req_list(stage, "interviews", stage_path)):
        item_path = f"{stage_path}.interviews[{index}]"
        interview = p.item_dict(raw, item_path)
        interview_id = p.req_id(interview, "id", item_path)
        commands.append(
            UpsertInterview(
                external_id=f"{application_id}:{interview_id}",
                fields={
                    **shared,
                    "status": _status(interview, item_path),
                    "interviewers": _interviewers(interview, item_path),
                },
                occurred_at=occurred_at,
            )
        )
    return Mapped(event_type=action, occurred_at=occurred_at, commands=commands)


def _reject(action: str, inner: dict[str, Any], received_at: datetime) -> Mapped:
    path = "body.payload.application"
    application = p.req_dict(inner, "application", "body.payload")
    occurred_at = (
        p.opt_iso_datetime(application, "rejected_at", path)
        or p.opt_iso_datetime(application, "last_activity_at", path)
        or received_at
    )
    reason = "rejected"
    rejection = p.opt_dict(application, "rejection_reason", path)
    if rejection is not None:
        name = p.opt_str(rejection, "name", f"{path}.rejection_reason")
        if name is not None:
            reason = f"rejected: {name}"
    command = CloseCandidate(
        candidate_external_id=p.candidate_id(application, path),
        reason=reason,
        occurred_at=occurred_at,
    )
    return Mapped(event_type=action, occurred_at=occurred_at, commands=[command])


def _hire(action: str, inner: dict[str, Any], received_at: datetime) -> Mapped:
    path = "body.payload.application"
    application = p.req_dict(inner, "application", "body.payload")
    offer = p.opt_dict(application, "offer", path)
    # The hire is the offer's acceptance: resolved_at is when it happened.
    accepted_at = p.opt_iso_datetime(offer, "resolved_at", f"{path}.offer") if offer else None
    occurred_at = (
        accepted_at or p.opt_iso_datetime(application, "last_activity_at", path) or received_at
    )
    command = CloseCandidate(
        candidate_external_id=p.candidate_id(application, path),
        reason="hired",
        occurred_at=occurred_at,
    )
    return Mapped(event_type=action, occurred_at=occurred_at, commands=[command])


def _interview_deleted(action: str, inner: dict[str, Any], received_at: datetime) -> Mapped:
    interview = p.req_dict(inner, "interview", "body.payload")
    command = CancelInterview(
        external_id=p.req_id(interview, "id", "body.payload.interview"),
        reason="deleted in Greenhouse",
        occurred_at=received_at,
    )
    return Mapped(event_type=action, occurred_at=received_at, commands=[command])


def _candidate_fields(candidate: dict[str, Any], path: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    parts = [
        p.opt_str(candidate, "first_name", path),
        p.opt_str(candidate, "last_name", path),
    ]
    name = " ".join(part.strip() for part in parts if part and part.strip())
    if name:
        fields["candidate_name"] = name
    emails = p.opt_list(candidate, "email_addresses", path)
    if emails:
        first = p.item_dict(emails[0], f"{path}.email_addresses[0]")
        email = p.opt_str(first, "value", f"{path}.email_addresses[0]")
        if email is not None:
            fields["candidate_email"] = email
    owners: dict[str, Any] = {}
    for role in ("recruiter", "coordinator"):
        user = p.opt_dict(candidate, role, path)
        if user is not None:
            user_path = f"{path}.{role}"
            owners[role] = {
                "id": p.req_id(user, "id", user_path),
                "name": p.opt_str(user, "name", user_path),
                "email": p.opt_str(user, "email", user_path),
            }
    if owners:
        fields["default_owners"] = owners
    return fields


def _job_fields(application: dict[str, Any], path: str) -> dict[str, Any]:
    # A candidate has exactly one job; a prospect may have none.
    jobs = p.opt_list(application, "jobs", path)
    if not jobs:
        return {}
    job = p.item_dict(jobs[0], f"{path}.jobs[0]")
    fields: dict[str, Any] = {"job_external_id": p.req_id(job, "id", f"{path}.jobs[0]")}
    title = p.opt_str(job, "name", f"{path}.jobs[0]")
    if title is not None:
        fields["job_title"] = title
    return fields


def _status(interview: dict[str, Any], path: str) -> str:
    status = p.req_str(interview, "status", path)
    try:
        return _STATUS[status]
    except KeyError:
        # Rejected (and kept for replay) rather than guessed: a new status needs a decision.
        raise MappingError(
            f"{path}.status: unknown Greenhouse interview status {status!r}"
        ) from None


def _interviewers(interview: dict[str, Any], path: str) -> list[dict[str, Any]]:
    interviewers = []
    for index, raw in enumerate(p.opt_list(interview, "interviewers", path)):
        item_path = f"{path}.interviewers[{index}]"
        person = p.item_dict(raw, item_path)
        interviewers.append(
            {
                "external_id": p.req_id(person, "id", item_path),
                "name": p.opt_str(person, "display_name", item_path),
                "email": p.opt_str(person, "email", item_path),
            }
        )
    return interviewers
