"""Maps a canonical event (API.md, "Events from ATS and tools") to commands. Pure."""

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app import jsonbody
from app.commitments.values import step_values
from app.events.commands import (
    AgreeStep,
    CancelInterview,
    CancelStep,
    Command,
    CompleteStep,
    Mapped,
    MappingError,
    RecordContact,
    UpdateStep,
    UpsertInterview,
)
from app.events.schemas import (
    KNOWN_TYPES,
    ContactedData,
    Envelope,
    InterviewData,
    StepAgreedData,
    StepCancelledData,
    StepCompletedData,
    StepUpdatedData,
)
from app.models import InterviewStatus

M = TypeVar("M", bound=BaseModel)


def _validation_message(exc: ValidationError, prefix: str) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def _parse(model: type[M], data: object, prefix: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MappingError(_validation_message(exc, prefix)) from None


def _interview(envelope: Envelope, status: InterviewStatus) -> list[Command]:
    data = _parse(InterviewData, envelope.data, "data")
    fields: dict[str, Any] = {"status": status.value}
    if data.candidate is not None:
        fields.update(
            candidate_external_id=data.candidate.external_id,
            candidate_name=data.candidate.name,
            candidate_email=data.candidate.email,
        )
    if data.job is not None:
        fields.update(job_external_id=data.job.external_id, job_title=data.job.title)
    if data.stage is not None:
        fields["stage"] = data.stage
    if data.interviewers is not None:
        fields["interviewers"] = [i.model_dump(mode="json") for i in data.interviewers]
    for name in ("starts_at", "ends_at"):
        if getattr(data, name) is not None:
            fields[name] = getattr(data, name)
    commands: list[Command] = [UpsertInterview(data.external_id, fields, envelope.occurred_at)]
    if status is InterviewStatus.cancelled:
        commands = [
            *commands,
            CancelInterview(data.external_id, "interview cancelled", envelope.occurred_at),
        ]
    for index, step in enumerate(data.next_steps):
        # A step needs an id of its own so that later events can name it.
        step_id = step.external_id or f"{data.external_id}#{index + 1}"
        commands.append(
            AgreeStep(data.external_id, step_id, step_values(step), envelope.occurred_at)
        )
    return commands


def _agreed(envelope: Envelope) -> list[Command]:
    data = _parse(StepAgreedData, envelope.data, "data")
    if data.next_step.external_id is None:
        raise MappingError("data.next_step.external_id: required, so that later events can name it")
    return [
        AgreeStep(
            data.interview_external_id,
            data.next_step.external_id,
            step_values(data.next_step),
            envelope.occurred_at,
        )
    ]


def _updated(envelope: Envelope) -> list[Command]:
    data = _parse(StepUpdatedData, envelope.data, "data")
    changes = data.changes
    values: dict[str, Any] = {}
    for name in ("action", "due_at", "promised_by", "candidate_note"):
        if name in changes.model_fields_set:
            values[name] = getattr(changes, name)
    for name in ("owed_by", "channel"):
        if name in changes.model_fields_set:
            value = getattr(changes, name)
            values[name] = value.value if value is not None else None
    if changes.owner is not None:
        values.update(
            owner_id=changes.owner.id,
            owner_name=changes.owner.name,
            owner_role=changes.owner.role.value,
        )
    for required in ("action", "due_at", "owed_by"):
        if required in values and values[required] is None:
            raise MappingError(f"data.changes.{required}: cannot be null")
    if not values:
        raise MappingError("data.changes: names nothing to change")
    return [UpdateStep(data.external_id, values, data.reason, envelope.occurred_at)]


def _completed(envelope: Envelope) -> list[Command]:
    data = _parse(StepCompletedData, envelope.data, "data")
    return [CompleteStep(data.external_id, data.outcome, envelope.occurred_at)]


def _cancelled(envelope: Envelope) -> list[Command]:
    data = _parse(StepCancelledData, envelope.data, "data")
    return [CancelStep(data.external_id, data.reason, envelope.occurred_at)]


def _contacted(envelope: Envelope) -> list[Command]:
    data = _parse(ContactedData, envelope.data, "data")
    return [
        RecordContact(
            data.interview_external_id,
            data.direction.value,
            data.channel.value,
            data.note,
            envelope.occurred_at,
        )
    ]


_MAPPERS: dict[str, Callable[[Envelope], list[Command]]] = {
    "interview.scheduled": lambda e: _interview(e, InterviewStatus.scheduled),
    "interview.completed": lambda e: _interview(e, InterviewStatus.completed),
    "interview.cancelled": lambda e: _interview(e, InterviewStatus.cancelled),
    "next_step.agreed": _agreed,
    "next_step.updated": _updated,
    "next_step.completed": _completed,
    "next_step.cancelled": _cancelled,
    "candidate.contacted": _contacted,
}
assert set(_MAPPERS) == KNOWN_TYPES


def map_event(body: bytes) -> Mapped:
    """The commands a canonical event body asks for; an unknown type asks for none."""
    try:
        payload = jsonbody.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MappingError(f"body is not JSON: {exc}") from None
    envelope = _parse(Envelope, payload, "")
    mapper = _MAPPERS.get(envelope.type)
    commands = mapper(envelope) if mapper else []
    return Mapped(envelope.type, envelope.occurred_at, commands)
