"""Request and response models of interviews, commitments, contacts and the timeline."""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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

T = TypeVar("T")


def _utc_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Every instant in a response is UTC with a Z. The serializer returns text, which alone would
# make the schema a bare string: the format is stated so that clients parse a datetime.
Instant = Annotated[
    datetime,
    PlainSerializer(_utc_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
# A length of time in a response: ISO 8601 text, e.g. P1DT2H (iso_duration writes it).
IsoDuration = Annotated[
    str, WithJsonSchema({"type": "string", "format": "duration", "examples": ["P1DT2H"]})
]

# The OpenAPI document must say exactly what the server accepts, so the patterns spell out
# whitespace (what str.isspace() and str.strip() mean) instead of `\s`, which JSON Schema
# validators, Rust and Python each read differently; lengths count the text as sent.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# PostgreSQL text cannot hold NUL, so no text the API takes may contain one (on SQLite either).
NUL_FREE = r"^[^\x00]*$"
NOT_BLANK = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"


@dataclass(frozen=True)
class _Documented:
    """Puts a pattern in the JSON Schema; the validator beside it enforces it, in words."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


def _nul_free(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _stripped(value: str) -> str:
    return _nul_free(value).strip()


def _not_blank(value: str) -> str:
    value = _stripped(value)
    if not value:
        raise ValueError("must not be blank")
    return value


NotBlank = (_Documented(NOT_BLANK), AfterValidator(_not_blank))
Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200), *NotBlank]
Text300 = Annotated[
    str, StringConstraints(max_length=300), _Documented(NUL_FREE), AfterValidator(_stripped)
]
Action = Annotated[str, StringConstraints(min_length=1, max_length=500), *NotBlank]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=5000), *NotBlank]
CandidateNote = Annotated[str, StringConstraints(min_length=1, max_length=280), *NotBlank]
_CANDIDATE_NOTE = "What the candidate may read about the step on the status page."
# Filters and path segments: any text, NUL aside.
NulFreeText = Annotated[str, _Documented(NUL_FREE), AfterValidator(_nul_free)]
LongText = Annotated[NulFreeText, StringConstraints(max_length=5000)]
Email = Annotated[
    str, StringConstraints(max_length=320, pattern=rf"^[^@\x00{_SPACE}]+@[^@\x00{_SPACE}]+$")
]

# Instants in requests are RFC 3339 text with an offset (`format: date-time`); pydantic alone
# would also take Unix numbers and other ISO 8601 spellings that the schema does not allow.
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
# RFC 3339 durations (`format: duration`), e.g. P1D, PT36H, P1W.
_DURATION = re.compile(
    r"^P(?:[0-9]+W|(?=[0-9]|T[0-9])(?:[0-9]+Y)?(?:[0-9]+M)?(?:[0-9]+D)?"
    r"(?:T(?=[0-9])(?:[0-9]+H)?(?:[0-9]+M)?(?:[0-9]+S)?)?)$"
)


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.match(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-20T15:00:00+01:00")


def _duration(value: object) -> object:
    if isinstance(value, timedelta) or (isinstance(value, str) and _DURATION.match(value)):
        return value
    raise ValueError("must be an ISO 8601 duration, e.g. P1D or PT36H")


def _utc(value: datetime) -> datetime:
    # 0001-01-01T00:00:00+01:00 is valid RFC 3339 but has no UTC form that Python can hold.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_utc)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]


def iso_duration(delta: timedelta) -> str:
    """ISO 8601 duration of a non-negative timedelta: P1DT2H3M4S."""
    total = int(delta.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    # Spelled out: it runs for every item of an overdue page. RFC 3339's grammar (the
    # schema's `format: duration`) has no hours followed directly by seconds: PT1H0M4S.
    time_part = (
        (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes or (hours and seconds) else "")
        + (f"{seconds}S" if seconds else "")
    )
    if time_part:
        return f"P{days}DT{time_part}" if days else f"PT{time_part}"
    return f"P{days}D" if days else "PT0S"


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


def not_nullable(schema: dict[str, Any]) -> None:
    """The schema of an optional field that may be left out but not sent as null."""
    schema.pop("default", None)
    members = [member for member in schema.pop("anyOf", []) if member != {"type": "null"}]
    if len(members) == 1:
        schema.update(members[0])
    elif members:
        schema["anyOf"] = members


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


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


Limit = Annotated[int, Field(ge=1, le=500, description="Page size, at most 500.")]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Limit = 50
    cursor: str | None = Field(
        default=None, min_length=1, description="Opaque; carries the query's other parameters."
    )


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
        default=None, description="The instant is_overdue is computed at; default now."
    )


class OverdueFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: Timestamp | None = Field(default=None, description="Default: now.")
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
