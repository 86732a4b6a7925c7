"""Request and response models of calendars, deadline policies and deadlines.

The request models call the engine's own parse functions in their validators, so that what
the API accepts is exactly what the engine can compute with, and a bad value is a 422 that
names the field (``["body", "hours", "mon"]``, ``["body", "rule", "business_days"]``).
"""

import uuid
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from app.deadlines import (
    WEEKDAYS,
    Interval,
    Rule,
    check_time_zone,
    parse_closed_dates,
    parse_holiday_source,
    parse_rule,
    rule_to_json,
)
from app.deadlines.calendar import check_day_hours
from app.fields import Action, Instant, Text200, Timestamp
from app.models import Channel, DeadlineBasis, OwnerRole
from app.schemas import ListQuery, Owner, Strict, not_nullable

WALL_TIME = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _whole_number(value: object) -> object:
    # What JSON Schema's "integer" means: 3 and 3.0, never "3" or true.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


WholeNumber = BeforeValidator(_whole_number)
BusinessDaysCount = Annotated[int, Ge(1), Le(60), WholeNumber]
BusinessHoursCount = Annotated[int, Ge(1), Le(720), WholeNumber]
CalendarDaysCount = Annotated[int, Ge(1), Le(365), WholeNumber]
Position = Annotated[int, Ge(0), Le(1_000_000), WholeNumber]


def _zone(value: str) -> str:
    check_time_zone(value)
    return value


def _date(value: str) -> str:
    (day,) = parse_closed_dates([value])
    return day.isoformat()


TimeZone = Annotated[
    str,
    Field(max_length=64, examples=["America/New_York"], description="An IANA time zone name."),
    AfterValidator(_zone),
]
WallTime = Annotated[str, Field(pattern=WALL_TIME, examples=["09:00"])]
# [start, end] in local wall time; "24:00" may end a day.
WallInterval = Annotated[
    list[WallTime], Field(min_length=2, max_length=2, examples=[["09:00", "17:00"]])
]
DayHours = Annotated[list[WallInterval], Field(default_factory=list, max_length=24)]
ClosedDate = Annotated[str, Field(pattern=ISO_DATE, examples=["2026-11-27"]), AfterValidator(_date)]


class HoursIn(Strict):
    """Open hours per weekday; a day left out has none."""

    mon: DayHours
    tue: DayHours
    wed: DayHours
    thu: DayHours
    fri: DayHours
    sat: DayHours
    sun: DayHours

    @field_validator(*WEEKDAYS)
    @classmethod
    def _intervals(cls, value: list[list[str]], info: Any) -> list[list[str]]:
        intervals = [Interval.parse(start, end) for start, end in value]
        return [interval.to_json() for interval in check_day_hours(info.field_name, intervals)]


class HolidaysIn(Strict):
    country: Annotated[str, Field(min_length=2, max_length=3, examples=["US"])]
    subdivision: Annotated[str, Field(min_length=1, max_length=10)] | None = None

    @model_validator(mode="after")
    def _known(self) -> "HolidaysIn":
        parse_holiday_source({"country": self.country, "subdivision": self.subdivision})
        return self


class RuleIn(Strict):
    """Exactly one of business_days, business_hours, calendar_days; `at` for the day counts."""

    business_days: Annotated[int, Field(ge=1, le=60), BeforeValidator(_whole_number)] | None = None
    business_hours: Annotated[int, Field(ge=1, le=720), BeforeValidator(_whole_number)] | None = (
        None
    )
    calendar_days: Annotated[int, Field(ge=1, le=365), BeforeValidator(_whole_number)] | None = None
    at: (
        Annotated[
            str,
            Field(
                pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|end_of_day|same_time)$",
                description="HH:MM, or end_of_day (business_days) / same_time (calendar_days).",
            ),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _one_kind(self) -> "RuleIn":
        parse_rule(self.model_dump(exclude_none=True))
        return self

    def rule(self) -> Rule:
        return parse_rule(self.model_dump(exclude_none=True))

    def to_json(self) -> dict[str, int | str]:
        return rule_to_json(self.rule())


class CalendarCreate(Strict):
    name: Text200
    time_zone: TimeZone
    hours: HoursIn
    holidays: HolidaysIn | None = None
    closed_dates: list[ClosedDate] = Field(default_factory=list, max_length=1000)
    is_default: StrictBool = False


class CalendarPatch(Strict):
    """The fields to change; `holidays: null` removes them. `is_default: true` makes it the
    default (the previous default stops being it)."""

    name: Text200 | None = Field(default=None, json_schema_extra=not_nullable)
    time_zone: TimeZone | None = Field(default=None, json_schema_extra=not_nullable)
    hours: HoursIn | None = Field(default=None, json_schema_extra=not_nullable)
    holidays: HolidaysIn | None = None
    closed_dates: list[ClosedDate] | None = Field(
        default=None, max_length=1000, json_schema_extra=not_nullable
    )
    is_default: StrictBool | None = Field(default=None, json_schema_extra=not_nullable)

    @model_validator(mode="after")
    def _no_nulls(self) -> "CalendarPatch":
        for name in ("name", "time_zone", "hours", "closed_dates", "is_default"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class CalendarOut(BaseModel):
    id: uuid.UUID
    name: str
    time_zone: str
    hours: dict[str, list[list[str]]]
    holidays: dict[str, str | None] | None
    closed_dates: list[str]
    is_default: bool
    version: int
    created_at: Instant
    updated_at: Instant


class CalendarRef(BaseModel):
    id: uuid.UUID
    version: int
    time_zone: str


class SkippedOut(BaseModel):
    date: str = Field(examples=["2026-11-26"])
    why: str = Field(examples=["holiday: Thanksgiving Day"])


class ComputeIn(Strict):
    start: Timestamp
    rule: RuleIn


class ComputeOut(BaseModel):
    due_at: Instant
    rule: dict[str, int | str]
    calendar: CalendarRef
    skipped: list[SkippedOut]


class PolicyMatch(Strict):
    """Each field given must equal the interview's (stage case-insensitively) or the step's
    owner role; an empty match matches everything."""

    source: Text200 | None = None
    stage: Text200 | None = None
    job_id: Text200 | None = None
    owner_role: OwnerRole | None = None


class OwnerFromRole(Strict):
    """The person the interview's source named in ``from`` (owner id ``<source>:<their id>``,
    role ``from``), else ``fallback``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Literal["recruiter", "coordinator"] = Field(alias="from")
    fallback: Owner


class DefaultStepIn(Strict):
    action: Action
    owner: Owner | OwnerFromRole
    channel: Channel | None = None
    rule: RuleIn


class PolicyCreate(Strict):
    name: Text200
    position: Position | None = Field(
        default=None, description="Lower first; default: after the last."
    )
    enabled: StrictBool = True
    match: PolicyMatch = Field(default_factory=PolicyMatch)
    calendar_id: uuid.UUID | None = Field(default=None, description="null: the default calendar")
    due_rule: RuleIn | None = None
    default_step: DefaultStepIn | None = None

    @model_validator(mode="after")
    def _does_something(self) -> "PolicyCreate":
        if self.due_rule is None and self.default_step is None:
            raise ValueError("a policy needs a due_rule, a default_step or both")
        return self


class PolicyPatch(Strict):
    name: Text200 | None = Field(default=None, json_schema_extra=not_nullable)
    position: Position | None = Field(default=None, json_schema_extra=not_nullable)
    enabled: StrictBool | None = Field(default=None, json_schema_extra=not_nullable)
    match: PolicyMatch | None = Field(default=None, json_schema_extra=not_nullable)
    calendar_id: uuid.UUID | None = None
    due_rule: RuleIn | None = None
    default_step: DefaultStepIn | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> "PolicyPatch":
        for name in ("name", "position", "enabled", "match"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class DefaultStepOut(BaseModel):
    action: str
    owner: Owner | OwnerFromRole
    channel: Channel | None
    rule: dict[str, int | str]


class PolicyOut(BaseModel):
    id: uuid.UUID
    name: str
    position: int
    enabled: bool
    match: PolicyMatch
    calendar_id: uuid.UUID | None
    due_rule: dict[str, int | str] | None
    default_step: DefaultStepOut | None
    version: int
    created_at: Instant
    updated_at: Instant


class CalendarQuery(ListQuery):
    pass


class PolicyQuery(ListQuery):
    pass


class DeadlineOut(BaseModel):
    """How a commitment's due time was made, as it was then."""

    basis: DeadlineBasis
    policy_id: uuid.UUID | None
    rule: dict[str, int | str] | None
    calendar: CalendarRef | None
    start: Instant | None = Field(description="The instant counted from: the step's agreed_at.")
    due_at: Instant
    skipped: list[SkippedOut]


def rule_json(rule: RuleIn | None) -> dict[str, int | str] | None:
    return None if rule is None else rule.to_json()
