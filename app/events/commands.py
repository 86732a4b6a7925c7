"""What an inbound event asks nextstep to do, independent of who sent it.

Canonical events and vendor webhooks are both mapped (by pure functions) to a
list of these commands; one applier carries them out. Every command names its
subjects by the sender's ids (``source`` + ``external_id``) and carries the
instant it happened (``occurred_at``), which decides the order of effects.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class UpsertInterview:
    """Create the interview, or change the fields given (absent keys stay as they are).

    ``fields`` keys: candidate_external_id, candidate_name, candidate_email,
    job_external_id, job_title, stage, status (scheduled|completed|cancelled),
    interviewers (list of {external_id, name, email}), default_owners
    ({"recruiter": {id, name, email}, "coordinator": {...}}), starts_at, ends_at.
    """

    external_id: str
    fields: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class AgreeStep:
    """A next step agreed for an interview. ``values`` as for the API's NextStepIn."""

    interview_external_id: str
    step_external_id: str
    values: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class UpdateStep:
    step_external_id: str
    values: dict[str, Any]
    reason: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class CompleteStep:
    step_external_id: str
    outcome: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class CancelStep:
    step_external_id: str
    reason: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class RecordContact:
    interview_external_id: str
    direction: str
    channel: str
    note: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class CancelInterview:
    """The interview was cancelled or deleted: it and its open steps are cancelled."""

    external_id: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class SetCandidateStage:
    """The candidate moved to ``stage``: recorded on each of their interviews from this source."""

    candidate_external_id: str
    stage: str
    occurred_at: datetime


@dataclass(frozen=True)
class CloseCandidate:
    """The candidate was rejected, archived or hired: open company-owed steps are cancelled."""

    candidate_external_id: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class NamePeople:
    """People the event names outside an interview (an application's hiring team), for the
    owner directory: ``people`` as ``{"id", "name", "email"}``."""

    people: list[dict[str, Any]]
    occurred_at: datetime


Command = (
    UpsertInterview
    | AgreeStep
    | UpdateStep
    | CompleteStep
    | CancelStep
    | RecordContact
    | CancelInterview
    | SetCandidateStage
    | CloseCandidate
    | NamePeople
)


@dataclass(frozen=True)
class Mapped:
    """The result of mapping one delivery: its type, when it happened, and what to do.

    ``commands`` empty means the event is of no interest (answered ``ignored``).
    """

    event_type: str
    occurred_at: datetime | None
    commands: list[Command] = field(default_factory=list)


class MappingError(ValueError):
    """The payload is not a valid event of its kind; the message says what is wrong."""
