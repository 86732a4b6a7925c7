"""Request models in the flat shape of the tables and of the timeline's values. Pure.

The REST use cases and the event mappers both speak in these values, so that a next
step agreed over HTTP and one agreed by an event are recorded alike.
"""

from typing import Any

from app.commitments.schemas import CommitmentPatch, InterviewFields, NextStepIn


def interview_values(data: InterviewFields) -> dict[str, Any]:
    """The interview's fields in the flat shape of the interview table."""
    return {
        "candidate_external_id": data.candidate.external_id,
        "candidate_name": data.candidate.name,
        "candidate_email": data.candidate.email,
        "job_external_id": data.job.external_id,
        "job_title": data.job.title,
        "stage": data.stage,
        "status": data.status.value,
        "interviewers": [i.model_dump(mode="json") for i in data.interviewers],
        "starts_at": data.starts_at,
        "ends_at": data.ends_at,
    }


def step_values(step: NextStepIn) -> dict[str, Any]:
    return {
        "action": step.action,
        "owner_id": step.owner.id,
        "owner_name": step.owner.name,
        "owner_role": step.owner.role.value,
        "owed_by": step.owed_by.value if step.owed_by else None,
        "channel": step.channel.value if step.channel else None,
        "due_at": step.due_at,
        "promised_by": step.promised_by,
        "candidate_note": step.candidate_note,
    }


def patch_values(patch: CommitmentPatch) -> dict[str, Any]:
    values: dict[str, Any] = {}
    sent = patch.model_fields_set
    if "action" in sent:
        values["action"] = patch.action
    if "owner" in sent and patch.owner is not None:
        values.update(
            owner_id=patch.owner.id, owner_name=patch.owner.name, owner_role=patch.owner.role.value
        )
    for name in ("owed_by", "channel"):
        if name in sent:
            value = getattr(patch, name)
            values[name] = value.value if value is not None else None
    for name in ("due_at", "promised_by", "candidate_note"):
        if name in sent:
            values[name] = getattr(patch, name)
    return values
