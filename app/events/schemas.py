"""The canonical event format, and the answers of the event and delivery endpoints."""

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.commitments.schemas import Candidate, Interviewer, Job, NextStepIn
from app.fields import (
    Action,
    CandidateNote,
    Instant,
    LongText,
    NulFreeText,
    Text200,
    Text300,
    Timestamp,
)
from app.models import Channel, ContactChannel, ContactDirection, DeliveryResult, OwedBy
from app.schemas import Owner

KNOWN_TYPES = frozenset(
    {
        "interview.scheduled",
        "interview.completed",
        "interview.cancelled",
        "next_step.agreed",
        "next_step.updated",
        "next_step.completed",
        "next_step.cancelled",
        "candidate.contacted",
    }
)


class Loose(BaseModel):
    # Senders add fields of their own; they are kept in the raw delivery, not refused.
    model_config = ConfigDict(extra="ignore")


class Envelope(Loose):
    type: Annotated[NulFreeText, Field(min_length=1, max_length=100)]
    occurred_at: Timestamp
    data: dict[str, object]


class InterviewData(Loose):
    external_id: Text200
    candidate: Candidate | None = None
    job: Job | None = None
    stage: Text300 | None = None
    interviewers: list[Interviewer] | None = Field(default=None, max_length=100)
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    next_steps: list[NextStepIn] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _ends_after_start(self) -> "InterviewData":
        # As REST refuses it: an interview cannot end before it starts.
        if self.starts_at and self.ends_at and self.ends_at < self.starts_at:
            raise ValueError("ends_at is earlier than starts_at")
        return self


class StepAgreedData(Loose):
    interview_external_id: Text200
    next_step: NextStepIn


class StepChanges(Loose):
    action: Action | None = None
    owner: Owner | None = None
    owed_by: OwedBy | None = None
    channel: Channel | None = None
    due_at: Timestamp | None = None
    promised_by: Timestamp | None = None
    candidate_note: CandidateNote | None = None


class StepUpdatedData(Loose):
    external_id: Text200
    changes: StepChanges
    reason: LongText | None = None


class StepCompletedData(Loose):
    external_id: Text200
    outcome: LongText | None = None


class StepCancelledData(Loose):
    external_id: Text200
    reason: LongText | None = None


class ContactedData(Loose):
    interview_external_id: Text200
    direction: ContactDirection
    channel: ContactChannel
    note: LongText | None = None


class _Event(Loose):
    occurred_at: Timestamp = Field(description="When it happened; decides the order of effects.")


class InterviewScheduledEvent(_Event):
    """interview.scheduled: the interview as the sender knows it."""

    type: Literal["interview.scheduled"]
    data: InterviewData


class InterviewCompletedEvent(_Event):
    """interview.completed: the interview, and the next steps agreed at its end if any."""

    type: Literal["interview.completed"]
    data: InterviewData


class InterviewCancelledEvent(_Event):
    """interview.cancelled: the interview and its open steps are cancelled."""

    type: Literal["interview.cancelled"]
    data: InterviewData


class NextStepAgreedEvent(_Event):
    """next_step.agreed: a step for the interview; its external_id names it in later events."""

    type: Literal["next_step.agreed"]
    data: StepAgreedData


class NextStepUpdatedEvent(_Event):
    """next_step.updated: the fields given in changes (at least one)."""

    type: Literal["next_step.updated"]
    data: StepUpdatedData


class NextStepCompletedEvent(_Event):
    """next_step.completed: done at occurred_at."""

    type: Literal["next_step.completed"]
    data: StepCompletedData


class NextStepCancelledEvent(_Event):
    """next_step.cancelled."""

    type: Literal["next_step.cancelled"]
    data: StepCancelledData


class CandidateContactedEvent(_Event):
    """candidate.contacted: the candidate reached out (inbound) or was reached (outbound)."""

    type: Literal["candidate.contacted"]
    data: ContactedData


# What POST /v1/events/{source} documents. The route reads the raw bytes (the signature covers
# them) and canonical.py parses them; an unknown type is accepted and ignored, not refused.
CanonicalEvent = Annotated[
    InterviewScheduledEvent
    | InterviewCompletedEvent
    | InterviewCancelledEvent
    | NextStepAgreedEvent
    | NextStepUpdatedEvent
    | NextStepCompletedEvent
    | NextStepCancelledEvent
    | CandidateContactedEvent,
    Field(
        discriminator="type",
        description="A canonical event: its type, when it happened, and the data of that "
        "type. A type not listed here is still accepted, recorded and answered 202 ignored.",
    ),
]


class Accepted(BaseModel):
    delivery_id: uuid.UUID
    status: Literal["applied", "duplicate", "ignored", "pending"]


class DeliveryOut(BaseModel):
    id: uuid.UUID
    source: str
    kind: str = Field(description="canonical, greenhouse, lever or ashby")
    delivery_key: str
    event_type: str | None
    occurred_at: Instant | None
    received_at: Instant
    result: DeliveryResult
    error: str | None
    subject: str | None = Field(description="What a pending delivery waits for.")
    applied_at: Instant | None
    duplicates: int
    headers: dict[str, str]
    body: str = Field(description="The raw body as received (UTF-8; undecodable bytes escaped).")
