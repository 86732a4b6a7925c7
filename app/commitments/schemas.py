"""Request and response models of interviews, commitments, contacts and the timeline."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from app.models import (
    Channel,
    CommitmentStatus,
    ContactDirection,
    InterviewStatus,
    OwedBy,
    OwnerRole,
)

T = TypeVar("T")


def _utc_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Every instant in a response is UTC with a Z.
Instant = Annotated[datetime, PlainSerializer(_utc_z, return_type=str, when_used="json")]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text300 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]
Action = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(max_length=5000)]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
]


def iso_duration(delta: timedelta) -> str:
    """ISO 8601 duration of a non-negative timedelta: P1DT2H3M4S."""
    total = int(delta.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time_part = "".join(
        f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n
    )
    if not days and not time_part:
        return "PT0S"
    return f"P{f'{days}D' if days else ''}{f'T{time_part}' if time_part else ''}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Owner(Strict):
    id: Text200
    name: Text300 | None = None
    role: OwnerRole


class Candidate(Strict):
    external_id: Text200
    name: Text300 | None = None
    email: Email | None = None


class Job(Strict):
    external_id: Text200 | None = None
    title: Text300 | None = None


class Interviewer(Strict):
    external_id: Text200 | None = None
    name: Text300 | None = None
    email: Email | None = None


class NextStepIn(Strict):
    """A next step as agreed: what, who owns it, by when."""

    external_id: Text200 | None = None
    action: Action
    owner: Owner
    owed_by: OwedBy | None = None
    channel: Channel | None = None
    due_at: AwareDatetime
    promised_by: AwareDatetime | None = None
    agreed_at: AwareDatetime | None = Field(
        default=None, description="When it was agreed; defaults to the moment of the call."
    )


class InterviewFields(Strict):
    candidate: Candidate
    job: Job = Field(default_factory=Job)
    stage: Text300 | None = None
    status: InterviewStatus = InterviewStatus.scheduled
    interviewers: list[Interviewer] = Field(default_factory=list, max_length=100)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> "InterviewFields":
        if self.starts_at and self.ends_at and self.ends_at < self.starts_at:
            raise ValueError("ends_at is earlier than starts_at")
        return self


class InterviewCreate(InterviewFields):
    source: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")] = "api"
    external_id: Text200 | None = None
    next_steps: list[NextStepIn] = Field(default_factory=list, max_length=50)


class InterviewUpsert(InterviewFields):
    next_steps: list[NextStepIn] = Field(default_factory=list, max_length=50)


class CommitmentPatch(Strict):
    action: Action | None = None
    owner: Owner | None = None
    owed_by: OwedBy | None = None
    channel: Channel | None = None
    due_at: AwareDatetime | None = None
    promised_by: AwareDatetime | None = None
    reason: LongText | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "CommitmentPatch":
        if not (self.model_fields_set - {"reason"}):
            raise ValueError(
                "nothing to change: send action, owner, owed_by, channel, due_at or promised_by"
            )
        for name in ("action", "owner", "owed_by", "due_at"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class CompleteIn(Strict):
    outcome: LongText | None = None
    completed_at: AwareDatetime | None = None


class ReasonIn(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class ContactIn(Strict):
    direction: ContactDirection
    channel: Channel
    at: AwareDatetime | None = None
    note: LongText | None = None


class OwnerOut(BaseModel):
    id: str
    name: str | None
    role: OwnerRole


class CommitmentOut(BaseModel):
    id: uuid.UUID
    interview_id: uuid.UUID
    source: str | None
    external_id: str | None
    action: str
    owner: OwnerOut
    owed_by: OwedBy
    channel: Channel | None
    agreed_at: Instant
    due_at: Instant
    promised_by: Instant | None
    status: CommitmentStatus
    outcome: str | None
    reason: str | None
    completed_at: Instant | None
    cancelled_at: Instant | None
    is_overdue: bool
    overdue_by: str | None = Field(description="ISO 8601 duration, e.g. P1DT2H")
    overdue_seconds: int | None
    version: int
    created_at: Instant
    updated_at: Instant


class CandidateOut(BaseModel):
    external_id: str
    name: str | None
    email: str | None


class JobOut(BaseModel):
    external_id: str | None
    title: str | None


class InterviewerOut(BaseModel):
    external_id: str | None = None
    name: str | None = None
    email: str | None = None


class InterviewOut(BaseModel):
    id: uuid.UUID
    source: str
    external_id: str | None
    candidate: CandidateOut
    job: JobOut
    stage: str | None
    status: InterviewStatus
    interviewers: list[InterviewerOut]
    starts_at: Instant | None
    ends_at: Instant | None
    completed_at: Instant | None
    waiting_since: Instant | None
    unanswered_contacts: int
    version: int
    created_at: Instant
    updated_at: Instant


class InterviewDetail(InterviewOut):
    commitments: list[CommitmentOut]


class OverdueItem(CommitmentOut):
    candidate: CandidateOut
    job: JobOut
    waiting_since: Instant | None
    unanswered_contacts: int


class ContactOut(BaseModel):
    id: uuid.UUID
    interview_id: uuid.UUID
    direction: ContactDirection
    channel: Channel
    at: Instant
    note: str | None
    actor: str
    created_at: Instant


class FieldChange(BaseModel):
    before: Any
    after: Any


class TimelineEntryOut(BaseModel):
    id: uuid.UUID
    interview_id: uuid.UUID
    commitment_id: uuid.UUID | None
    kind: str = Field(
        description="interview_recorded, interview_updated, agreed, updated, reassigned, "
        "deadline_moved, completed, cancelled, reopened or contact"
    )
    effective_at: Instant
    recorded_at: Instant
    actor: str
    reason: str | None
    changes: dict[str, FieldChange]
    delivery_id: uuid.UUID | None


class SummaryItem(BaseModel):
    group: str | None
    count: int
    oldest_due_at: Instant
    overdue_seconds_total: int


class Summary(BaseModel):
    items: list[SummaryItem]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


Limit = Annotated[int, Field(ge=1, le=500, description="Page size, at most 500.")]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Limit = 50
    cursor: str | None = Field(
        default=None, description="Opaque; carries the query's other parameters."
    )


class InterviewQuery(ListQuery):
    candidate_id: str | None = None
    job_id: str | None = None
    status: InterviewStatus | None = None
    source: str | None = None
    ended_after: AwareDatetime | None = None
    ended_before: AwareDatetime | None = None


class CommitmentQuery(ListQuery):
    status: CommitmentStatus | None = None
    overdue: bool | None = None
    owner_id: str | None = None
    owner_role: OwnerRole | None = None
    owed_by: OwedBy | None = None
    due_before: AwareDatetime | None = None
    due_after: AwareDatetime | None = None
    candidate_id: str | None = None
    job_id: str | None = None
    source: str | None = None
    sort: Literal["due_at", "-due_at"] = "due_at"
    as_of: AwareDatetime | None = Field(
        default=None, description="The instant is_overdue is computed at; default now."
    )


class OverdueFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: AwareDatetime | None = Field(default=None, description="Default: now.")
    owner_id: str | None = None
    owner_role: OwnerRole | None = None
    owed_by: OwedBy = OwedBy.company
    min_overdue: timedelta | None = Field(
        default=None, description="ISO 8601 duration, e.g. P1D", ge=timedelta(0)
    )
    broken_promise: bool = Field(
        default=False,
        description="List open steps whose promised_by has passed, even if due_at has not.",
    )


class OverdueQuery(OverdueFilters):
    limit: Limit = 50
    cursor: str | None = None


class SummaryQuery(OverdueFilters):
    group_by: Literal["owner", "owner_role", "job"] = "owner"


class MissingNextStepQuery(ListQuery):
    ended_before: AwareDatetime | None = Field(default=None, description="Default: now - 24 h.")
    source: str | None = None


class TimelineQuery(ListQuery):
    pass
