"""Deadline rules as values, parsed from and written back to the API's JSON shapes.

`{"business_days": 3, "at": "17:00"}`, `{"business_hours": 8}`,
`{"calendar_days": 2, "at": "same_time"}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from typing import Final, Literal

from app.deadlines.calendar import check_wall_time, format_wall_time, parse_wall_time

END_OF_DAY: Final = "end_of_day"
SAME_TIME: Final = "same_time"

BUSINESS_DAYS_MAX = 60
BUSINESS_HOURS_MAX = 720
CALENDAR_DAYS_MAX = 365

RULE_KINDS = ("business_days", "business_hours", "calendar_days")


def _check_count(kind: str, value: object, maximum: int) -> int:
    if type(value) is not int:
        raise ValueError(f"{kind} must be a whole number, not {value!r}")
    if not 1 <= value <= maximum:
        raise ValueError(f"{kind} must be between 1 and {maximum}, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class BusinessDays:
    """The N-th open day strictly after the start's local date, at `at` (or its closing time)."""

    days: int
    at: time | Literal["end_of_day"] = END_OF_DAY

    def __post_init__(self) -> None:
        _check_count("business_days", self.days, BUSINESS_DAYS_MAX)
        if self.at != END_OF_DAY:
            _check_at("business_days", self.at, END_OF_DAY)


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """H hours of open time counted from the start, or from the next opening."""

    hours: int

    def __post_init__(self) -> None:
        _check_count("business_hours", self.hours, BUSINESS_HOURS_MAX)


@dataclass(frozen=True, slots=True)
class CalendarDays:
    """N days later in the calendar's zone, at the same wall time or at `at`; closures ignored."""

    days: int
    at: time | Literal["same_time"] = SAME_TIME

    def __post_init__(self) -> None:
        _check_count("calendar_days", self.days, CALENDAR_DAYS_MAX)
        if self.at != SAME_TIME:
            _check_at("calendar_days", self.at, SAME_TIME)


Rule = BusinessDays | BusinessHours | CalendarDays


def _check_at(kind: str, at: object, keyword: str) -> None:
    if not isinstance(at, time):
        raise ValueError(f"{kind}: at is a time of day as HH:MM or {keyword!r}, not {at!r}")
    check_wall_time(at)


def _parse_at(kind: str, value: object, keyword: str) -> time | None:
    """None for the keyword (or no `at`), else the wall time."""
    if value is None or value == keyword:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{kind}: at is 'HH:MM' or {keyword!r}, not {value!r}")
    try:
        return parse_wall_time(value)
    except ValueError as error:
        raise ValueError(f"{kind}: at is 'HH:MM' or {keyword!r}; {error}") from None


def parse_rule(value: Mapping[str, object]) -> Rule:
    """A rule from its JSON: exactly one of business_days, business_hours, calendar_days, and `at`
    where the kind takes one."""
    kinds = [kind for kind in RULE_KINDS if kind in value]
    if len(kinds) != 1:
        given = f"got {', '.join(kinds)}" if kinds else "got none"
        raise ValueError(f"a rule has exactly one of {', '.join(RULE_KINDS)}; {given}")
    (kind,) = kinds
    allowed = {kind} if kind == "business_hours" else {kind, "at"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(f"a {kind} rule takes only {' and '.join(sorted(allowed))}, not {unknown}")
    if kind == "business_hours":
        return BusinessHours(_check_count(kind, value[kind], BUSINESS_HOURS_MAX))
    if kind == "business_days":
        count = _check_count(kind, value[kind], BUSINESS_DAYS_MAX)
        at = _parse_at(kind, value.get("at"), END_OF_DAY)
        return BusinessDays(count, END_OF_DAY if at is None else at)
    count = _check_count(kind, value[kind], CALENDAR_DAYS_MAX)
    at = _parse_at(kind, value.get("at"), SAME_TIME)
    return CalendarDays(count, SAME_TIME if at is None else at)


def rule_to_json(rule: Rule) -> dict[str, int | str]:
    """The rule's JSON, with `at` always written out (its default made explicit)."""
    match rule:
        case BusinessDays(days=days, at=at):
            return {"business_days": days, "at": _wall(at)}
        case BusinessHours(hours=hours):
            return {"business_hours": hours}
        case CalendarDays(days=days, at=at):
            return {"calendar_days": days, "at": _wall(at)}


def describe_rule(rule: Rule) -> str:
    """One readable line: "3 business days, at 17:00", "8 business hours"."""
    match rule:
        case BusinessDays(days=days, at=at):
            when = "at the close" if at == END_OF_DAY else f"at {_wall(at)}"
            return f"{_plural(days, 'business day')}, {when}"
        case BusinessHours(hours=hours):
            return _plural(hours, "business hour")
        case CalendarDays(days=days, at=at):
            when = "at the same time" if at == SAME_TIME else f"at {_wall(at)}"
            return f"{_plural(days, 'calendar day')}, {when}"


def _wall(at: time | str) -> str:
    return at if isinstance(at, str) else format_wall_time(at)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
