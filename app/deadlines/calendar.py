"""Calendars as values: a time zone, opening hours per weekday, public holidays, closed dates.

Everything here is pure: no database, no HTTP. The parse functions take the JSON shapes of the
API (`{"mon": [["09:00", "17:00"]]}`, `{"country": "US", "subdivision": null}`) and raise ValueError
with a message a client can act on, so that request schemas can call them from their validators.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from types import MappingProxyType
from zoneinfo import ZoneInfo, available_timezones

import holidays

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60

_HH_MM = re.compile(r"(\d\d):(\d\d)")
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
# Names that zoneinfo can load on some machines but that are not IANA zones.
_NOT_ZONES = frozenset({"localtime", "posixrules"})


def parse_wall_time(text: str) -> time:
    """ "HH:MM", 00:00 to 23:59, as a time of day."""
    return _minute_time(_parse_minutes(text, allow_midnight_end=False))


def format_wall_time(value: time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def check_wall_time(value: time) -> time:
    """A time of day a rule can carry: whole minutes, and no zone (the calendar's applies)."""
    if value.tzinfo is not None or value.second or value.microsecond:
        raise ValueError(f"{value.isoformat()} is not a wall time in whole minutes (HH:MM)")
    return value


def _parse_minutes(text: object, *, allow_midnight_end: bool) -> int:
    match = _HH_MM.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    hour, minute = int(match[1]), int(match[2])
    if allow_midnight_end and (hour, minute) == (24, 0):
        return MINUTES_PER_DAY
    if hour > 23 or minute > 59:
        limit = "24:00" if allow_midnight_end else "23:59"
        raise ValueError(f"{text!r} is not a time of day: HH:MM runs from 00:00 to {limit}")
    return hour * 60 + minute


def _format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minute_time(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


_WALL_TIMES = tuple(_minute_time(minutes) for minutes in range(MINUTES_PER_DAY))
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Interval:
    """Opening hours within one local day, in minutes after midnight; `end` 1440 is "24:00"."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= MINUTES_PER_DAY or not 0 <= self.end <= MINUTES_PER_DAY:
            raise ValueError("an interval's bounds run from 00:00 to 24:00")
        if self.start >= self.end:
            raise ValueError(
                f"interval {self.to_json()} is empty: its start must come before its end"
            )

    @classmethod
    def parse(cls, start: str, end: str) -> Interval:
        return cls(
            _parse_minutes(start, allow_midnight_end=False),
            _parse_minutes(end, allow_midnight_end=True),
        )

    def to_json(self) -> list[str]:
        return [_format_minutes(self.start), _format_minutes(self.end)]


DayHours = tuple[Interval, ...]
WeekHours = tuple[DayHours, DayHours, DayHours, DayHours, DayHours, DayHours, DayHours]
NO_HOURS: WeekHours = ((), (), (), (), (), (), ())


def check_day_hours(day: str, intervals: Iterable[Interval]) -> DayHours:
    """One day's intervals, sorted; touching intervals are allowed, overlapping ones are not."""
    ordered = tuple(sorted(intervals, key=lambda interval: interval.start))
    for before, after in pairwise(ordered):
        if after.start < before.end:
            raise ValueError(f"{day}: intervals {before.to_json()} and {after.to_json()} overlap")
    return ordered


def parse_hours(value: Mapping[str, Sequence[Sequence[str]]]) -> WeekHours:
    """`{"mon": [["09:00", "17:00"]], ...}` as hours per weekday, Monday first.

    A missing day has no hours. Each interval is `[start, end]`; "24:00" may end one.
    """
    unknown = sorted(set(value) - set(WEEKDAYS))
    if unknown:
        raise ValueError(f"unknown day {', '.join(map(repr, unknown))}: days are {WEEKDAYS}")
    days: list[DayHours] = []
    for day in WEEKDAYS:
        intervals: list[Interval] = []
        for pair in value.get(day, ()):
            if isinstance(pair, str) or len(pair) != 2:
                raise ValueError(f"{day}: an interval is a pair [start, end], not {pair!r}")
            try:
                intervals.append(Interval.parse(pair[0], pair[1]))
            except ValueError as error:
                raise ValueError(f"{day}: {error}") from None
        days.append(check_day_hours(day, intervals))
    return _week(days)


def hours_to_json(hours: WeekHours) -> dict[str, list[list[str]]]:
    return {
        day: [interval.to_json() for interval in intervals]
        for day, intervals in zip(WEEKDAYS, hours, strict=True)
    }


def _week(days: Sequence[DayHours]) -> WeekHours:
    if len(days) != 7:
        raise ValueError(f"a week has 7 days of hours, not {len(days)}")
    return (days[0], days[1], days[2], days[3], days[4], days[5], days[6])


@lru_cache(maxsize=1)
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def check_time_zone(name: str) -> ZoneInfo:
    """The zone an IANA name ("America/New_York") stands for; anything else is a ValueError."""
    if not isinstance(name, str) or name not in _iana_zones():
        raise ValueError(f"{name!r} is not an IANA time zone name such as 'America/New_York'")
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class HolidaySource:
    """The public holidays of a country (and subdivision) as the `holidays` package lists them."""

    country: str
    subdivision: str | None = None

    def __post_init__(self) -> None:
        try:
            _check_holidays_known(self.country, self.subdivision)
        except NotImplementedError as error:
            raise ValueError(f"no public holidays known for {self.to_json()}: {error}") from None

    def to_json(self) -> dict[str, str | None]:
        return {"country": self.country, "subdivision": self.subdivision}


@lru_cache(maxsize=256)
def _check_holidays_known(country: str, subdivision: str | None) -> None:
    """Raises NotImplementedError for an unknown country or subdivision; cached when known, since
    building the package's holiday object costs about 0.2 ms."""
    holidays.country_holidays(country, subdiv=subdivision, years=())


def parse_holiday_source(value: Mapping[str, str | None] | None) -> HolidaySource | None:
    """`{"country": "US", "subdivision": null}`, or null for none."""
    if value is None:
        return None
    unknown = sorted(set(value) - {"country", "subdivision"})
    if unknown:
        raise ValueError(f"holidays take country and subdivision, not {', '.join(unknown)}")
    country, subdivision = value.get("country"), value.get("subdivision")
    if not isinstance(country, str) or not (subdivision is None or isinstance(subdivision, str)):
        raise ValueError("holidays need a country code and an optional subdivision code")
    return HolidaySource(country, subdivision)


@lru_cache(maxsize=512)
def holiday_names(source: HolidaySource, year: int) -> Mapping[date, str]:
    """The source's holidays in one year, by date: built once per (country, subdivision, year)."""
    # An observed day can fall in the year before the holiday (New Year's Day on a Saturday is
    # observed on 31 December): ask for the neighbours too and keep this year's dates.
    found = holidays.country_holidays(
        source.country, subdiv=source.subdivision, years=range(year - 1, year + 2)
    )
    return MappingProxyType({day: name for day, name in found.items() if day.year == year})


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return check_time_zone(name)


@dataclass(frozen=True, slots=True)
class Calendar:
    """When a team works: hours per weekday in local wall time, less holidays and closed dates."""

    time_zone: str
    hours: WeekHours
    holidays: HolidaySource | None = None
    closed_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        _zone(self.time_zone)
        if not isinstance(self.hours, tuple):
            raise ValueError("hours are a tuple of 7 days (see parse_hours)")
        for day, intervals in zip(WEEKDAYS, _week(self.hours), strict=True):
            if not isinstance(intervals, tuple) or not all(
                isinstance(interval, Interval) for interval in intervals
            ):
                raise ValueError(f"{day}: hours are a tuple of Interval")
            if check_day_hours(day, intervals) != intervals:
                raise ValueError(f"{day}: intervals must be given in order")
        if not isinstance(self.closed_dates, frozenset) or any(
            type(day) is not date for day in self.closed_dates
        ):
            raise ValueError("closed dates are a frozenset of dates")

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.time_zone)

    def hours_on(self, day: date) -> DayHours:
        return self.hours[day.weekday()]

    def closures_in(self, year: int) -> Mapping[date, str]:
        """Why each closed day of a year is closed ("holiday: <name>" or "closed"), in date order.

        Hours do not matter here: a holiday on a Sunday is listed whether or not Sunday has hours.
        """
        return _closures_in(self, year)

    def closure(self, day: date) -> str | None:
        """Why a day is closed although it may have hours, else None."""
        return _closures_in(self, day.year).get(day)

    def is_open_day(self, day: date) -> bool:
        return bool(self.hours_on(day)) and self.closure(day) is None

    def local_instant(self, day: date, minutes: int) -> datetime:
        """The instant of a local wall time on a day, as an aware local datetime.

        1440 is the next day's midnight. A wall time that does not exist (the gap of a DST change)
        is taken with the offset in force before the gap (zoneinfo's fold=0), which lands it as far
        after the gap as it was into it: 02:30 on a spring-forward night in New York is 03:30 EDT.
        A wall time that happens twice is its first occurrence.
        """
        if minutes == MINUTES_PER_DAY:
            return datetime.combine(day + _ONE_DAY, _WALL_TIMES[0], tzinfo=self.zone)
        return datetime.combine(day, _WALL_TIMES[minutes], tzinfo=self.zone)


@lru_cache(maxsize=1024)
def _closures_in(calendar: Calendar, year: int) -> Mapping[date, str]:
    found = {day: "closed" for day in calendar.closed_dates if day.year == year}
    if calendar.holidays is not None:
        # A holiday that is also a closed date is reported as the holiday.
        names = holiday_names(calendar.holidays, year)
        found.update((day, f"holiday: {name}") for day, name in names.items())
    return MappingProxyType(dict(sorted(found.items())))


def parse_closed_dates(value: Iterable[str | date]) -> frozenset[date]:
    """["2026-11-27", ...] as a set of dates."""
    found: set[date] = set()
    for item in value:
        if type(item) is date:
            found.add(item)
            continue
        try:
            if not (isinstance(item, str) and _ISO_DATE.fullmatch(item)):
                raise ValueError
            found.add(date.fromisoformat(item))
        except ValueError:
            raise ValueError(f"{item!r} is not a date as YYYY-MM-DD") from None
    return frozenset(found)


def parse_calendar(value: Mapping[str, object]) -> Calendar:
    """A calendar from the API's JSON fields `time_zone`, `hours`, `holidays`, `closed_dates`.

    Other fields (name, id, version, …) are the caller's business and are ignored here.
    """
    time_zone = value.get("time_zone")
    if not isinstance(time_zone, str):
        raise ValueError("a calendar needs a time_zone")
    hours = value.get("hours")
    if not isinstance(hours, Mapping):
        raise ValueError("a calendar needs hours, e.g. {'mon': [['09:00', '17:00']]}")
    source = value.get("holidays")
    if source is not None and not isinstance(source, Mapping):
        raise ValueError("holidays are {'country': ..., 'subdivision': ...} or null")
    closed = value.get("closed_dates", ())
    if isinstance(closed, str | bytes) or not isinstance(closed, Iterable):
        raise ValueError("closed_dates is a list of dates")
    return Calendar(
        time_zone=time_zone,
        hours=parse_hours(hours),
        holidays=parse_holiday_source(source),
        closed_dates=parse_closed_dates(closed),
    )


def calendar_to_json(calendar: Calendar) -> dict[str, object]:
    return {
        "time_zone": calendar.time_zone,
        "hours": hours_to_json(calendar.hours),
        "holidays": calendar.holidays.to_json() if calendar.holidays else None,
        "closed_dates": [day.isoformat() for day in sorted(calendar.closed_dates)],
    }
