"""The action page's three forms as a browser sends them (text fields only), checked field
by field into the change they ask for. Pure: the caller supplies the owner's zone, the
clock and the owners a step may be handed to.

A field that fails is named with what is wrong, so that the page can say it beside the
field and fill the form again with what was typed.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from app.fields import LongText, Reason, Text200


class Op(StrEnum):
    """What the owner answers: done, needs more time, hand over."""

    complete = "complete"
    redate = "redate"
    reassign = "reassign"


# The fields each form sends, besides ``op``.
FIELDS = {
    Op.complete: ("outcome",),
    Op.redate: ("due_at", "reason"),
    Op.reassign: ("owner_id", "reason"),
}

# What an HTML datetime-local input sends: a wall time without a zone, seconds optional.
_LOCAL_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$")

_OUTCOME: TypeAdapter[str | None] = TypeAdapter(LongText | None)
_REASON: TypeAdapter[str] = TypeAdapter(Reason)
_OWNER_ID: TypeAdapter[str] = TypeAdapter(Text200)


@dataclass(frozen=True)
class Done:
    outcome: str | None


@dataclass(frozen=True)
class MoreTime:
    due_at: datetime
    reason: str


@dataclass(frozen=True)
class HandOver:
    owner_id: str
    reason: str


Change = Done | MoreTime | HandOver


@dataclass(frozen=True)
class Refusal:
    """The fields that are wrong (name → what is wrong) and every field as it was typed."""

    op: Op | None
    errors: dict[str, str]
    typed: dict[str, str]


class _Wrong(ValueError):
    pass


def _checked(adapter: TypeAdapter[Any], value: str | None) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise _Wrong(_said(exc.errors()[0]["msg"])) from None


def _said(message: str) -> str:
    # pydantic's "Value error, must not be blank" reads better without its prefix.
    return message.removeprefix("Value error, ")


def _reason(value: str) -> str:
    if not value.strip():
        raise _Wrong("is required: say why, for the step's history")
    text: str = _checked(_REASON, value)
    return text


def local_due(value: str, zone: ZoneInfo, now: datetime) -> datetime:
    """A datetime-local value read in ``zone``: the instant, later than ``now``."""
    if not value.strip():
        raise _Wrong("is required: the new date and time")
    if not _LOCAL_TIME.match(value):
        raise _Wrong("must be a date and time, YYYY-MM-DDTHH:MM")
    try:
        wall = datetime.fromisoformat(value)
    except ValueError:
        raise _Wrong("is not a date and time that exists") from None
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        # A wall time the clocks skip when they go forward names no instant.
        raise _Wrong("does not exist in that time zone: the clocks change then")
    if instant <= now:
        raise _Wrong("must be later than now")
    return instant


def read_change(
    fields: Mapping[str, str],
    zone: ZoneInfo,
    now: datetime,
    may_take: Callable[[str], str | None],
) -> Change | Refusal:
    """The change a form asks for, or what is wrong with it. ``may_take(owner_id)`` says why
    that owner cannot take the step over (None: they can)."""
    try:
        op = Op(fields.get("op", ""))
    except ValueError:
        typed = {name: value for name, value in fields.items() if name != "op"}
        return Refusal(None, {"op": "must be complete, redate or reassign"}, typed)
    typed = {name: fields.get(name, "") for name in FIELDS[op]}
    errors: dict[str, str] = {}

    def field(name: str, read: Callable[[str], Any]) -> Any:
        try:
            return read(typed[name])
        except _Wrong as exc:
            errors[name] = str(exc)
            return None

    change: Change
    if op is Op.complete:
        outcome = field("outcome", lambda v: _checked(_OUTCOME, v.strip() or None))
        change = Done(outcome)
    elif op is Op.redate:
        due_at = field("due_at", lambda v: local_due(v, zone, now))
        change = MoreTime(due_at, field("reason", _reason))
    else:
        owner_id = field("owner_id", lambda v: _taker(v, may_take))
        change = HandOver(owner_id, field("reason", _reason))
    return Refusal(op, errors, typed) if errors else change


def _taker(value: str, may_take: Callable[[str], str | None]) -> str:
    if not value.strip():
        raise _Wrong("is required: choose who takes the step over")
    owner_id: str = _checked(_OWNER_ID, value)
    why_not = may_take(owner_id)
    if why_not is not None:
        raise _Wrong(why_not)
    return owner_id
