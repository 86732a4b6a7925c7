"""Request and response models of endpoints, reminder rules, messages and reminders.

What the API accepts is checked here, so that a bad value is a 422 naming its field:
endpoint URLs (``check_url``) and reminder offsets (``parse_offset``).
"""

import uuid
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from app.deadlines.schemas import Position
from app.fields import Instant, Text200, Text300, Timestamp
from app.models import OwedBy, OwnerRole
from app.models.outbound import (
    REMINDER_TYPES,
    EndpointKind,
    EventType,
    MessageChannel,
    MessageStatus,
    MessageType,
    ReminderState,
)
from app.outbound.destination import check_url
from app.outbound.offsets import OFFSET_PATTERN, format_offset, parse_offset, stored_offset
from app.schemas import ListQuery, Owner, OwnerOut, Strict, not_nullable

# --- endpoints -----------------------------------------------------------------------------

# What the schema can say of a URL: http or https, an optional user, a host (a name or a
# bracketed IPv6 address), an optional port, then a path, query or fragment; no spaces or
# control characters. check_url says the rest (link-local and unspecified addresses).
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([^\x00-\x20\x7f/?#@]*@)?"
    r"([^\x00-\x20\x7f/?#@:\[\]]+|\[[0-9A-Fa-f:.]+\])"
    r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])?)?"
    r"([/?#][^\x00-\x20\x7f]*)?$"
)
EndpointUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        pattern=URL_PATTERN,
        examples=["https://hooks.example.com/nextstep"],
        description="http or https; link-local and unspecified addresses are refused.",
    ),
    AfterValidator(check_url),
]


def _unique_types(value: list[EventType]) -> list[EventType]:
    repeated = sorted({t.value for t in value if value.count(t) > 1})
    if repeated:
        raise ValueError(f"lists {', '.join(repeated)} more than once")
    return value


EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EventType), json_schema_extra={"uniqueItems": True}),
    AfterValidator(_unique_types),
]


class EndpointCreate(Strict):
    kind: EndpointKind = EndpointKind.webhook
    url: EndpointUrl
    description: Text300 | None = None
    event_types: EventTypes = Field(description="What it receives; endpoint.test may be listed.")
    enabled: StrictBool = True


class EndpointPatch(Strict):
    """The fields to change; `description: null` clears it. Enabling clears
    `disabled_reason`; disabling sets it."""

    url: EndpointUrl | None = Field(default=None, json_schema_extra=not_nullable)
    description: Text300 | None = None
    event_types: EventTypes | None = Field(default=None, json_schema_extra=not_nullable)
    enabled: StrictBool | None = Field(default=None, json_schema_extra=not_nullable)

    @model_validator(mode="after")
    def _no_nulls(self) -> "EndpointPatch":
        for name in ("url", "event_types", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class EndpointOut(BaseModel):
    id: uuid.UUID
    kind: EndpointKind
    url: str
    description: str | None
    event_types: list[EventType]
    enabled: bool
    disabled_reason: str | None
    version: int
    created_at: Instant
    updated_at: Instant


class EndpointCreated(EndpointOut):
    secret: str | None = Field(
        description="The webhook kind's signing secret (`whsec_…`), shown only in this answer; "
        "null for slack."
    )


class SecretOut(BaseModel):
    secret: str = Field(
        description="The new signing secret, shown only in this answer; the previous one "
        "keeps signing beside it for 24 hours."
    )


class MessageQueued(BaseModel):
    message_id: uuid.UUID


class DigestQueued(BaseModel):
    message_id: uuid.UUID | None = Field(description="Null: nothing to list, no e-mail.")


class RecoverIn(Strict):
    since: Timestamp = Field(description="Failed messages created at or after it are sent again.")


class Requeued(BaseModel):
    requeued: int


class EndpointQuery(ListQuery):
    pass


# --- reminder rules ------------------------------------------------------------------------


def _normal_offset(value: str) -> str:
    return format_offset(parse_offset(value))


Offset = Annotated[
    str,
    Field(
        max_length=64,
        examples=["-PT24H"],
        description="ISO 8601 duration from the step's due time, negative for before it "
        "(weeks, days, hours, minutes, seconds; not years or months); answered normalised.",
    ),
    AfterValidator(_normal_offset),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "pattern": OFFSET_PATTERN.pattern,
            "examples": ["-PT24H", "PT0S", "P1D"],
        }
    ),
]
ReminderType = Annotated[
    EventType,
    WithJsonSchema({"type": "string", "enum": [t.value for t in REMINDER_TYPES]}),
]


class StepIn(Strict):
    offset: Offset
    type: ReminderType
    to: Owner | None = Field(
        default=None, description="Who an escalation goes to; only for next_step.escalated."
    )

    @field_validator("type")
    @classmethod
    def _reminder_type(cls, value: EventType) -> EventType:
        if value not in REMINDER_TYPES:
            allowed = ", ".join(t.value for t in REMINDER_TYPES)
            raise ValueError(f"must be one of {allowed}")
        return value

    @model_validator(mode="after")
    def _to_for_escalations(self) -> "StepIn":
        if self.type == EventType.escalated and self.to is None:
            raise ValueError("next_step.escalated needs `to`: who the escalation goes to")
        if self.type != EventType.escalated and self.to is not None:
            raise ValueError("only next_step.escalated takes `to`")
        return self

    def to_json(self) -> dict[str, Any]:
        step: dict[str, Any] = {
            "offset": self.offset,
            "offset_seconds": int(stored_offset(self.offset).total_seconds()),
            "type": self.type.value,
        }
        if self.to is not None:
            step["to"] = self.to.model_dump(mode="json")
        return step


Steps = Annotated[list[StepIn], Field(min_length=1, max_length=10)]


class RuleMatch(Strict):
    """Which open steps the rule reminds about: each field given must equal (stage
    case-insensitively); owed_by defaults to company."""

    owed_by: OwedBy = OwedBy.company
    owner_role: OwnerRole | None = None
    source: Text200 | None = None
    stage: Text200 | None = None
    job_id: Text200 | None = None


EMAIL_OWNER = (
    "Each firing is also e-mailed to the step's owner (an escalation to its `to` person) when "
    "they are in the owner directory with an e-mail and `email_reminders` on. Turning it on "
    "needs NEXTSTEP_SMTP_URL (else 422)."
)


class RuleCreate(Strict):
    name: Text200
    position: Position = Field(default=0, description="Lower first.")
    enabled: StrictBool = True
    match: RuleMatch = Field(default_factory=RuleMatch)
    steps: Steps
    quiet_hours: StrictBool = Field(
        default=True,
        description="A firing outside the owner's calendar hours waits for the next opening.",
    )
    email_owner: StrictBool = Field(default=False, description=EMAIL_OWNER)


class RulePatch(Strict):
    name: Text200 | None = Field(default=None, json_schema_extra=not_nullable)
    position: Position | None = Field(default=None, json_schema_extra=not_nullable)
    enabled: StrictBool | None = Field(default=None, json_schema_extra=not_nullable)
    match: RuleMatch | None = Field(default=None, json_schema_extra=not_nullable)
    steps: Steps | None = Field(default=None, json_schema_extra=not_nullable)
    quiet_hours: StrictBool | None = Field(default=None, json_schema_extra=not_nullable)
    email_owner: StrictBool | None = Field(
        default=None, description=EMAIL_OWNER, json_schema_extra=not_nullable
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> "RulePatch":
        for name in ("name", "position", "enabled", "match", "steps", "quiet_hours", "email_owner"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class StepOut(BaseModel):
    offset: str = Field(examples=["-P1D"])
    offset_seconds: int = Field(examples=[-86400])
    type: EventType
    to: OwnerOut | None = None


class MatchOut(BaseModel):
    owed_by: OwedBy
    owner_role: OwnerRole | None = None
    source: str | None = None
    stage: str | None = None
    job_id: str | None = None


class RuleOut(BaseModel):
    id: uuid.UUID
    name: str
    position: int
    enabled: bool
    match: MatchOut
    steps: list[StepOut]
    quiet_hours: bool
    email_owner: bool
    version: int
    created_at: Instant
    updated_at: Instant


class RuleQuery(ListQuery):
    pass


# --- messages and reminders ----------------------------------------------------------------


class MessageOut(BaseModel):
    id: uuid.UUID = Field(
        description="The webhook-id (an e-mail's Message-ID), the same on every attempt."
    )
    endpoint_id: uuid.UUID | None = Field(description="Null for an e-mail.")
    channel: MessageChannel
    recipient: str | None = Field(description="The owner id an e-mail goes to; null otherwise.")
    type: MessageType
    commitment_id: uuid.UUID | None
    status: MessageStatus
    attempts: int
    next_attempt_at: Instant | None
    created_at: Instant


class AttemptOut(BaseModel):
    n: int
    at: Instant
    response_status: int | None
    error: str | None
    duration_ms: int


class MessageDetail(MessageOut):
    attempt_log: list[AttemptOut]
    payload: dict[str, Any] = Field(
        description="The body sent, byte for byte the same each time. For an e-mail, a "
        "summary instead: `headers` (From, To, Subject, Date, Message-ID, List-Unsubscribe) and "
        "`text` (its text/plain part), with the tokens of its action and unsubscribe links "
        "replaced by `[token hidden]`: they open the owner's steps, and are shown only in the "
        "e-mail."
    )


class MessageQuery(ListQuery):
    endpoint_id: uuid.UUID | None = None
    status: MessageStatus | None = None
    type: MessageType | None = None
    commitment_id: uuid.UUID | None = None
    channel: MessageChannel | None = None
    recipient: Text200 | None = Field(default=None, description="An owner id: its e-mails.")


class ReminderOut(BaseModel):
    rule_id: uuid.UUID
    type: EventType
    fire_at: Instant = Field(description="When it fires, after any quiet-hours wait.")
    state: ReminderState
    reason: str | None


class Reminders(BaseModel):
    items: list[ReminderOut]
