"""Request and response models of interviews, commitments, contacts and the timeline."""

import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.fields import (
    Action,
    CandidateNote,
    Duration,
    Email,
    Instant,
    IsoDuration,
    LongText,
    NulFreeText,
    Reason,
    Text200,
    Text300,
    Timestamp,
)
from app.models import (
    Channel,
    CommitmentStatus,
    ContactChannel,
    ContactDirection,
    InterviewStatus,
    OwedBy,
    OwnerRole,
    TimelineKind,
)
from app.schemas import ListQuery, Owner, OwnerOut, Strict, not_nullable

_CANDIDATE_NOTE = "What the candidate may read about the step on the status page."


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
    due_at: Timestamp | None = Field(
        default=None,
        description="By when. Left out, the first enabled deadline policy that matches the "
        "interview and the owner's role computes it from agreed_at (422 when none does).",
    )
    promised_by: Timestamp | None = None
    candidate_note: CandidateNote | None = Field(default=None, description=_CANDIDATE_NOTE)
    agreed_at: Timestamp | None = Field(
        default=None, description="When it was agreed; defaults to the moment of the call."
    )


class InterviewFields(Strict):
    candidate: Candidate
    job: Job = Field(default_factory=Job)
    stage: Text300 | None = None
    status: InterviewStatus = InterviewStatus.scheduled
    interviewers: list[Interviewer] = Field(default_factory=list, max_length=100)
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> "InterviewFields":
        if self.starts_at and self.ends_at and self.ends_at < self.starts_at:
            raise ValueError("ends_at is earlier than starts_at")
        return self


SourceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]


class InterviewCreate(InterviewFields):
    source: SourceName = "api"
    external_id: Text200 | None = None
    next_steps: list[NextStepIn] = Field(default_factory=list, max_length=50)


class InterviewUpsert(InterviewFields):
    next_steps: list[NextStepIn] = Field(default_factory=list, max_length=50)


_NOT_NULL = ("action", "owner", "owed_by", "due_at")


class CommitmentPatch(Strict):
    """The changes to an open step: send at least one of action, owner, owed_by, channel,
    due_at, promised_by or candidate_note (422 otherwise); reason alone changes nothing, it
    is kept in the timeline beside the change. action, owner, owed_by and due_at cannot be
    null; channel, promised_by and candidate_note can be cleared with null."""

    # One object of optional fields, so that generated clients get one typed class; "at
    # least one" is a rule the server checks, not a JSON Schema combinator.
    action: Action | None = Field(default=None, json_schema_extra=not_nullable)
    owner: Owner | None = Field(default=None, json_schema_extra=not_nullable)
    owed_by: OwedBy | None = Field(default=None, json_schema_extra=not_nullable)
    channel: Channel | None = None
    due_at: Timestamp | None = Field(default=None, json_schema_extra=not_nullable)
    promised_by: Timestamp | None = None
    candidate_note: CandidateNote | None = Field(
        default=None, description=_CANDIDATE_NOTE + " null clears it."
    )
    reason: LongText | None = Field(
        default=None, description="Why; kept in the timeline with the change."
    )

    @field_validator(*_NOT_NULL)
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> "CommitmentPatch":
        if not (self.model_fields_set - {"reason"}):
            raise ValueError(
                "nothing to change: send action, owner, owed_by, channel, due_at, promised_by "
                "or candidate_note"
            )
        return self


class CompleteIn(Strict):
    outcome: LongText | None = None
    completed_at: Timestamp | None = None


class ReasonIn(Strict):
    reason: Reason


class ContactIn(Strict):
    direction: ContactDirection
    channel: ContactChannel
    at: Timestamp | None = None
    note: LongText | None = None


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
    candidate_note: str | None
    status: CommitmentStatus
    outcome: str | None
    reason: str | None
    completed_at: Instant | None
    cancelled_at: Instant | None
    is_overdue: bool
    overdue_by: IsoDuration | None = Field(description="ISO 8601 duration, e.g. P1DT2H")
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
    channel: ContactChannel
    at: Instant
    note: str | None
    actor: str
    created_at: Instant


class FieldChange(BaseModel):
    before: Any
    after: Any


class TimelineEntryKind(StrEnum):
    """What a timeline entry tells: the stored kinds, with an update that only reassigns or
    only moves the deadline named as such."""

    interview_recorded = TimelineKind.interview_recorded.value
    interview_updated = TimelineKind.interview_updated.value
    agreed = TimelineKind.agreed.value
    updated = TimelineKind.updated.value
    reassigned = "reassigned"
    deadline_moved = "deadline_moved"
    completed = TimelineKind.completed.value
    cancelled = TimelineKind.cancelled.value
    reopened = TimelineKind.reopened.value
    contact = TimelineKind.contact.value


class TimelineEntryOut(BaseModel):
    id: uuid.UUID
    interview_id: uuid.UUID
    commitment_id: uuid.UUID | None
    kind: TimelineEntryKind
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


class InterviewQuery(ListQuery):
    candidate_id: NulFreeText | None = None
    job_id: NulFreeText | None = None
    status: InterviewStatus | None = None
    source: NulFreeText | None = None
    ended_after: Timestamp | None = None
    ended_before: Timestamp | None = None


class CommitmentQuery(ListQuery):
    status: CommitmentStatus | None = None
    overdue: bool | None = None
    owner_id: NulFreeText | None = None
    owner_role: OwnerRole | None = None
    owed_by: OwedBy | None = None
    due_before: Timestamp | None = None
    due_after: Timestamp | None = None
    candidate_id: NulFreeText | None = None
    job_id: NulFreeText | None = None
    source: NulFreeText | None = None
    sort: Literal["due_at", "-due_at"] = "due_at"
    as_of: Timestamp | None = Field(
        default=None,
        description=(
            "List the steps as they stood at this instant (their state then, is_overdue "
            "then; a step agreed later is not listed), as the overdue list does; default now."
        ),
    )


class OverdueFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: Timestamp | None = Field(
        default=None, description="The steps as they stood at this instant; default now."
    )
    owner_id: NulFreeText | None = None
    owner_role: OwnerRole | None = None
    owed_by: OwedBy = OwedBy.company
    # The pattern has no sign: a duration given is never negative.
    min_overdue: Duration | None = Field(default=None, description="ISO 8601 duration, e.g. P1D")
    broken_promise: bool = Field(
        default=False,
        description="List open steps whose promised_by has passed, even if due_at has not.",
    )


class OverdueQuery(ListQuery, OverdueFilters):
    """The overdue filters, paged like every other list."""


class SummaryQuery(OverdueFilters):
    group_by: Literal["owner", "owner_role", "job"] = "owner"


class MissingNextStepQuery(ListQuery):
    ended_before: Timestamp | None = Field(default=None, description="Default: now - 24 h.")
    source: NulFreeText | None = None


class TimelineQuery(ListQuery):
    pass
