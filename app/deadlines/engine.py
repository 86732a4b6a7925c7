"""Business time: open intervals of a calendar, and the due time a rule gives from a start.

Pure functions of a Calendar, an aware instant and a Rule; every instant they return is aware UTC.
Opening hours are local wall time, so an interval is turned into the UTC instants of its bounds
before anything is counted: across a DST change the real elapsed time within an interval counts.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple

from app.deadlines.calendar import Calendar
from app.deadlines.rules import BusinessDays, BusinessHours, Rule

HORIZON_YEARS = 10
# The search for an open day gives up after this many days without one, so that a calendar whose
# every day is closed fails clearly instead of looping.
HORIZON_DAYS = HORIZON_YEARS * 366
_HORIZON = timedelta(days=HORIZON_DAYS)
_LAST_ORDINAL = date.max.toordinal()
_ONE_DAY = timedelta(days=1)

Span = tuple[datetime, datetime]


class NoOpenTimeError(ValueError):
    """The calendar has no open time within the horizon: no rule counted on it can end."""


class SkippedDay(NamedTuple):
    """A day that would have been open but for a holiday ("holiday: <name>") or a closed date."""

    day: date
    why: str

    def to_json(self) -> dict[str, str]:
        return {"date": self.day.isoformat(), "why": self.why}


@dataclass(frozen=True, slots=True)
class Result:
    """A due time (aware, UTC) and the holidays and closed dates passed over to reach it."""

    due_at: datetime
    skipped: tuple[SkippedDay, ...] = ()


def _utc(instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (with a UTC offset)")
    return instant.astimezone(UTC)


def _days_with_hours(calendar: Calendar, first: date) -> Iterator[tuple[date, str | None]]:
    """Each day from `first` on that has hours, with why it is closed (None when it is open)."""
    if not any(calendar.hours):
        raise NoOpenTimeError("the calendar has no hours on any day of the week")
    ordinal = first.toordinal()
    last_open = ordinal - 1
    year, closures = first.year, calendar.closures_in(first.year)
    while True:
        if ordinal - last_open > HORIZON_DAYS:
            since = date.fromordinal(last_open + 1).isoformat()
            raise NoOpenTimeError(
                f"the calendar has no open day in the {HORIZON_YEARS} years from {since}"
            )
        if ordinal > _LAST_ORDINAL:
            raise NoOpenTimeError("the calendar has no open day before the year 10000")
        day = date.fromordinal(ordinal)
        if calendar.hours[day.weekday()]:
            if day.year != year:
                year, closures = day.year, calendar.closures_in(day.year)
            why = closures.get(day)
            if why is None:
                last_open = ordinal
            yield day, why
        ordinal += 1


def _day_spans(calendar: Calendar, day: date) -> list[Span]:
    """The day's intervals as UTC instants, whether or not the day is closed: sorted, merged.

    Within a DST gap, wall times move forward (see Calendar.local_instant), so two intervals can
    meet or even overlap as instants; they are merged, and one that vanishes in the gap is dropped.
    """
    spans = sorted(
        (
            calendar.local_instant(day, interval.start).astimezone(UTC),
            calendar.local_instant(day, interval.end).astimezone(UTC),
        )
        for interval in calendar.hours_on(day)
    )
    merged: list[Span] = []
    for start, end in spans:
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def open_intervals(calendar: Calendar, after: datetime) -> Iterator[Span]:
    """The calendar's open time from `after` on, as (start, end) UTC instants, in order.

    Intervals never overlap; they are merged within a day but not across midnight, so one can end
    where the next begins (a day open until 24:00 and the next from 00:00): open time with no end,
    such as a calendar open around the clock, still comes out one day at a time. When `after` is
    inside open hours, the first interval starts at `after`. Raises NoOpenTimeError after
    HORIZON_YEARS without an open day.
    """
    after = _utc(after, "after")
    if not any(calendar.hours):
        raise NoOpenTimeError("the calendar has no hours on any day of the week")
    # From the day before: with a DST gap at midnight, its 24:00 lies in the next local day.
    first = after.astimezone(calendar.zone).date() - timedelta(days=1)
    month = first.year * 12 + first.month - 1  # a running month number: divmod gives it back
    previous_end = after
    while True:
        spans = _open_spans_in(calendar, *divmod(month, 12))
        for start, end in spans[bisect_right(spans, after, key=_span_end) :]:
            # Clamped: a day's 24:00 that falls in a DST gap lands past the next day's 00:00.
            start = max(start, previous_end)
            if start >= end:
                continue
            if start - previous_end > _HORIZON:
                raise _no_open_day_since(calendar, previous_end)
            yield start, end
            previous_end = end
        month += 1
        since = previous_end.year * 12 + previous_end.month - 1
        if month - since > (HORIZON_YEARS + 1) * 12 or month // 12 > date.max.year:
            raise _no_open_day_since(calendar, previous_end)


def _span_end(span: Span) -> datetime:
    return span[1]


def _no_open_day_since(calendar: Calendar, instant: datetime) -> NoOpenTimeError:
    since = instant.astimezone(calendar.zone).date().isoformat()
    return NoOpenTimeError(
        f"the calendar has no open day in the {HORIZON_YEARS} years from {since}"
    )


@lru_cache(maxsize=1024)
def _open_spans_in(calendar: Calendar, year: int, month_index: int) -> tuple[Span, ...]:
    """The open time of the open days of one local month (0 is January), in order: built once
    per calendar and month, so that counting hundreds of business hours walks a few tuples."""
    spans: list[Span] = []
    closures = calendar.closures_in(year)
    day = date(year, month_index + 1, 1)
    while day.month == month_index + 1:
        if calendar.hours[day.weekday()] and day not in closures:
            spans.extend(_day_spans(calendar, day))
        if day == date.max:
            break
        day += _ONE_DAY
    return tuple(spans)


def is_open(calendar: Calendar, at: datetime) -> bool:
    """Whether `at` is inside the calendar's open hours (an interval's start is in, its end out)."""
    at = _utc(at, "at")
    local_day = at.astimezone(calendar.zone).date()
    for day in (local_day - timedelta(days=1), local_day):
        if calendar.is_open_day(day) and any(s <= at < e for s, e in _day_spans(calendar, day)):
            return True
    return False


def next_opening(calendar: Calendar, at: datetime) -> datetime:
    """`at` itself when the calendar is open then, else the start of its next open interval."""
    return next(open_intervals(calendar, at))[0]


def compute(calendar: Calendar, start: datetime, rule: Rule) -> Result:
    """The due time `rule` gives from `start` on `calendar`, and the closed days it passed over.

    business_days: the N-th open day strictly after the start's local date, at `at`, or at the end
    of that day's last interval. business_hours: H hours of open time from the start (from the next
    opening when the start is outside the hours); a count that ends exactly where an interval ends
    is due at that end, not at the next opening. calendar_days: N days later in the calendar's zone,
    at the same wall time or at `at`, closures ignored.

    A wall time that does not exist that day (a DST gap) moves forward by the length of the gap; a
    wall time that happens twice is its first occurrence. `skipped` lists the holidays and closed
    dates passed over, never the days that simply have no hours.
    """
    start = _utc(start, "start")
    match rule:
        case BusinessDays():
            return _business_days(calendar, start, rule)
        case BusinessHours():
            return _business_hours(calendar, start, rule)
        case _:
            local = start.astimezone(calendar.zone)
            day = local.date() + timedelta(days=rule.days)
            wall = rule.at if isinstance(rule.at, time) else local.time().replace(fold=0)
            return Result(datetime.combine(day, wall, tzinfo=calendar.zone).astimezone(UTC))


def _business_days(calendar: Calendar, start: datetime, rule: BusinessDays) -> Result:
    skipped: list[SkippedDay] = []
    counted = 0
    start_day = start.astimezone(calendar.zone).date()
    for day, why in _days_with_hours(calendar, start_day + timedelta(days=1)):
        if why is not None:
            skipped.append(SkippedDay(day, why))
            continue
        counted += 1
        if counted == rule.days:
            at = rule.at
            minutes = (
                at.hour * 60 + at.minute if isinstance(at, time) else calendar.hours_on(day)[-1].end
            )
            due = calendar.local_instant(day, minutes).astimezone(UTC)
            return Result(due, tuple(skipped))
    raise AssertionError("unreachable: _days_with_hours ends only by raising")


def _business_hours(calendar: Calendar, start: datetime, rule: BusinessHours) -> Result:
    remaining = timedelta(hours=rule.hours)
    for span_start, span_end in open_intervals(calendar, start):
        if span_end - span_start >= remaining:
            due = span_start + remaining
            return Result(due, _closures_between(calendar, start, due))
        remaining -= span_end - span_start
    raise AssertionError("unreachable: open_intervals ends only by raising")


def _closures_between(calendar: Calendar, start: datetime, due: datetime) -> tuple[SkippedDay, ...]:
    """The closed days whose hours, had they been open, would have counted between start and due."""
    # From the day before the start's: its hours can run past midnight in a DST gap.
    first = start.astimezone(calendar.zone).date() - timedelta(days=1)
    last = due.astimezone(calendar.zone).date()
    skipped: list[SkippedDay] = []
    for year in range(first.year, last.year + 1):
        for day, why in calendar.closures_in(year).items():
            if not first <= day <= last or not calendar.hours_on(day):
                continue
            if any(s < due and e > start for s, e in _day_spans(calendar, day)):
                skipped.append(SkippedDay(day, why))
    return tuple(skipped)
