"""The business-time engine: golden values, validation, and properties over random calendars."""

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.deadlines import (
    END_OF_DAY,
    SAME_TIME,
    WEEKDAYS,
    BusinessDays,
    BusinessHours,
    Calendar,
    CalendarDays,
    HolidaySource,
    Interval,
    NoOpenTimeError,
    Rule,
    SkippedDay,
    calendar_to_json,
    compute,
    describe_rule,
    holiday_names,
    is_open,
    next_opening,
    open_intervals,
    parse_calendar,
    parse_hours,
    parse_rule,
    rule_to_json,
)

WEEKDAYS_NINE_TO_FIVE = {day: [["09:00", "17:00"]] for day in WEEKDAYS[:5]}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def calendar(
    time_zone: str = "America/New_York",
    hours: Mapping[str, Sequence[Sequence[str]]] = WEEKDAYS_NINE_TO_FIVE,
    holidays: Mapping[str, str | None] | None = None,
    closed_dates: Sequence[str] = (),
) -> Calendar:
    return parse_calendar(
        {
            "time_zone": time_zone,
            "hours": hours,
            "holidays": holidays,
            "closed_dates": list(closed_dates),
        }
    )


NEW_YORK = calendar(holidays={"country": "US", "subdivision": None}, closed_dates=["2026-11-27"])
BERLIN = calendar("Europe/Berlin")
FRIDAY_BEFORE_THANKSGIVING = utc("2026-11-20T15:00:00Z")


# Golden values of the API design.


@pytest.mark.parametrize(
    ("rule", "due_at"),
    [
        ({"business_days": 3}, "2026-11-25T22:00:00Z"),
        ({"business_days": 4}, "2026-11-30T22:00:00Z"),
        ({"calendar_days": 3, "at": "same_time"}, "2026-11-23T15:00:00Z"),
        ({"business_hours": 8}, "2026-11-23T15:00:00Z"),
    ],
)
def test_golden_values_new_york(rule: dict[str, int | str], due_at: str) -> None:
    result = compute(NEW_YORK, FRIDAY_BEFORE_THANKSGIVING, parse_rule(rule))
    assert result.due_at == utc(due_at)
    assert result.due_at.tzinfo is UTC


def test_business_days_skips_thanksgiving_and_the_closed_date() -> None:
    result = compute(NEW_YORK, FRIDAY_BEFORE_THANKSGIVING, BusinessDays(4))
    assert result.skipped == (
        SkippedDay(date(2026, 11, 26), "holiday: Thanksgiving Day"),
        SkippedDay(date(2026, 11, 27), "closed"),
    )
    assert [day.to_json() for day in result.skipped] == [
        {"date": "2026-11-26", "why": "holiday: Thanksgiving Day"},
        {"date": "2026-11-27", "why": "closed"},
    ]


def test_skipped_leaves_out_days_that_merely_have_no_hours() -> None:
    result = compute(NEW_YORK, FRIDAY_BEFORE_THANKSGIVING, BusinessDays(3))
    assert result.skipped == ()


def test_holiday_name_is_the_holidays_package_name() -> None:
    names = holiday_names(HolidaySource("US"), 2026)
    assert names[date(2026, 11, 26)] == "Thanksgiving Day"


def test_golden_value_berlin_across_dst() -> None:
    result = compute(BERLIN, datetime.fromisoformat("2026-03-27T16:00:00+01:00"), BusinessHours(8))
    assert result.due_at == utc("2026-03-30T14:00:00Z")
    assert result.skipped == ()


def test_business_hours_lists_the_closures_it_passes_over() -> None:
    # Wednesday 10:00: 7 h that day, Thanksgiving and the closure, 8 h on Monday, 1 h on Tuesday.
    result = compute(NEW_YORK, utc("2026-11-25T15:00:00Z"), BusinessHours(16))
    assert result.due_at == utc("2026-12-01T15:00:00Z")
    assert [day.day for day in result.skipped] == [date(2026, 11, 26), date(2026, 11, 27)]


def test_calendar_days_ignore_closures() -> None:
    result = compute(NEW_YORK, utc("2026-11-25T15:00:00Z"), CalendarDays(2))
    assert result.due_at == utc("2026-11-27T15:00:00Z")
    assert result.skipped == ()


def test_business_days_at_a_given_time() -> None:
    rule = parse_rule({"business_days": 1, "at": "12:30"})
    assert compute(NEW_YORK, FRIDAY_BEFORE_THANKSGIVING, rule).due_at == utc("2026-11-23T17:30:00Z")


def test_calendar_days_at_a_given_time() -> None:
    rule = parse_rule({"calendar_days": 1, "at": "08:00"})
    assert compute(NEW_YORK, FRIDAY_BEFORE_THANKSGIVING, rule).due_at == utc("2026-11-21T13:00:00Z")


# Starts inside and outside the hours.


@pytest.mark.parametrize(
    ("start", "due_at"),
    [
        ("2026-11-16T10:00:00-05:00", "2026-11-16T12:00:00-05:00"),  # inside the hours
        ("2026-11-16T07:00:00-05:00", "2026-11-16T11:00:00-05:00"),  # before the opening
        ("2026-11-16T09:00:00-05:00", "2026-11-16T11:00:00-05:00"),  # at the opening
        ("2026-11-16T17:00:00-05:00", "2026-11-17T11:00:00-05:00"),  # at the closing
        ("2026-11-20T18:00:00-05:00", "2026-11-23T11:00:00-05:00"),  # Friday evening
        ("2026-11-22T12:00:00-05:00", "2026-11-23T11:00:00-05:00"),  # Sunday
        ("2026-11-26T10:00:00-05:00", "2026-11-30T11:00:00-05:00"),  # on Thanksgiving
    ],
)
def test_business_hours_count_from_the_start_or_the_next_opening(start: str, due_at: str) -> None:
    assert compute(NEW_YORK, utc(start), BusinessHours(2)).due_at == utc(due_at)


def test_business_hours_ending_at_a_closing_are_due_at_the_closing() -> None:
    result = compute(NEW_YORK, utc("2026-11-16T09:00:00-05:00"), BusinessHours(8))
    assert result.due_at == utc("2026-11-16T17:00:00-05:00")


def test_a_start_on_a_holiday_lists_it_as_skipped() -> None:
    result = compute(NEW_YORK, utc("2026-11-26T08:00:00-05:00"), BusinessHours(1))
    assert result.due_at == utc("2026-11-30T10:00:00-05:00")
    assert [day.why for day in result.skipped] == ["holiday: Thanksgiving Day", "closed"]


def test_is_open_and_next_opening() -> None:
    assert is_open(NEW_YORK, utc("2026-11-20T09:00:00-05:00"))
    assert is_open(NEW_YORK, utc("2026-11-20T16:59:59-05:00"))
    assert not is_open(NEW_YORK, utc("2026-11-20T17:00:00-05:00"))
    assert not is_open(NEW_YORK, utc("2026-11-26T12:00:00-05:00"))  # Thanksgiving
    inside = utc("2026-11-20T12:00:00-05:00")
    assert next_opening(NEW_YORK, inside) == inside
    evening = utc("2026-11-25T18:00:00-05:00")
    assert next_opening(NEW_YORK, evening) == utc("2026-11-30T09:00:00-05:00")


# Several intervals a day, and 24:00.

SPLIT_DAY = calendar(hours={day: [["13:00", "17:00"], ["09:00", "12:00"]] for day in WEEKDAYS[:5]})


def test_several_intervals_a_day() -> None:
    monday = utc("2026-11-16T10:00:00-05:00")
    assert compute(SPLIT_DAY, monday, BusinessHours(4)).due_at == utc("2026-11-16T15:00:00-05:00")
    assert compute(SPLIT_DAY, monday, BusinessDays(1)).due_at == utc("2026-11-17T17:00:00-05:00")
    assert not is_open(SPLIT_DAY, utc("2026-11-16T12:30:00-05:00"))
    lunch = utc("2026-11-16T12:30:00-05:00")
    assert next_opening(SPLIT_DAY, lunch) == utc("2026-11-16T13:00:00-05:00")
    spans = open_intervals(SPLIT_DAY, monday)
    assert next(spans) == (monday, utc("2026-11-16T12:00:00-05:00"))
    assert next(spans) == (utc("2026-11-16T13:00:00-05:00"), utc("2026-11-16T17:00:00-05:00"))


def test_hours_are_kept_in_order_whatever_order_they_were_given_in() -> None:
    assert SPLIT_DAY.hours[0] == (Interval(9 * 60, 12 * 60), Interval(13 * 60, 17 * 60))


NIGHT_SHIFT = calendar(hours={"mon": [["18:00", "24:00"]], "tue": [["00:00", "06:00"]]})


def test_an_interval_ending_at_midnight_runs_on_into_the_next_days_first() -> None:
    monday_evening = utc("2026-11-16T18:00:00-05:00")
    midnight = utc("2026-11-17T00:00:00-05:00")
    spans = open_intervals(NIGHT_SHIFT, monday_evening)
    assert next(spans) == (monday_evening, midnight)
    assert next(spans) == (midnight, utc("2026-11-17T06:00:00-05:00"))
    assert is_open(NIGHT_SHIFT, midnight)
    due = compute(NIGHT_SHIFT, monday_evening, BusinessHours(8)).due_at
    assert due == utc("2026-11-17T02:00:00-05:00")


def test_a_calendar_open_around_the_clock_comes_out_a_day_at_a_time() -> None:
    always = calendar(hours={day: [["00:00", "24:00"]] for day in WEEKDAYS})
    start = utc("2026-11-16T12:00:00-05:00")
    assert next_opening(always, start) == start
    spans = open_intervals(always, start)
    assert next(spans) == (start, utc("2026-11-17T00:00:00-05:00"))
    assert compute(always, start, BusinessHours(720)).due_at == start + timedelta(hours=720)


def test_end_of_day_at_24_00_is_the_next_midnight() -> None:
    result = compute(NIGHT_SHIFT, utc("2026-11-15T12:00:00-05:00"), BusinessDays(1))
    assert result.due_at == utc("2026-11-17T00:00:00-05:00")


def test_business_hours_count_real_time_across_a_fall_back_night() -> None:
    around_the_clock = calendar(hours={"sun": [["00:00", "24:00"]]})
    sunday = utc("2026-11-01T00:00:00-04:00")  # New York falls back at 02:00 that night
    assert compute(around_the_clock, sunday, BusinessHours(24)).due_at == utc(
        "2026-11-01T23:00:00-05:00"
    )
    assert compute(around_the_clock, sunday, BusinessHours(25)).due_at == utc(
        "2026-11-02T00:00:00-05:00"
    )


def test_a_wall_time_in_a_dst_gap_moves_forward_by_the_gap() -> None:
    every_day = calendar(hours={day: [["01:00", "05:00"]] for day in WEEKDAYS})
    # New York springs forward on 2026-03-08 at 02:00: 02:30 does not exist, 03:30 EDT is used.
    rule = BusinessDays(1, at=time(2, 30))
    due = compute(every_day, utc("2026-03-07T12:00:00-05:00"), rule).due_at
    assert due == utc("2026-03-08T03:30:00-04:00")


def test_calendar_days_keep_the_wall_time_across_dst() -> None:
    saturday = utc("2026-03-07T10:00:00-05:00")
    due = compute(NEW_YORK, saturday, CalendarDays(1)).due_at
    assert due == utc("2026-03-08T10:00:00-04:00")


# A calendar that is never open.


def test_a_calendar_without_hours_fails_clearly() -> None:
    never = calendar(hours={})
    with pytest.raises(NoOpenTimeError, match="no hours"):
        compute(never, FRIDAY_BEFORE_THANKSGIVING, BusinessDays(1))
    with pytest.raises(NoOpenTimeError):
        compute(never, FRIDAY_BEFORE_THANKSGIVING, BusinessHours(1))
    with pytest.raises(NoOpenTimeError):
        next_opening(never, FRIDAY_BEFORE_THANKSGIVING)
    assert not is_open(never, FRIDAY_BEFORE_THANKSGIVING)
    assert compute(never, FRIDAY_BEFORE_THANKSGIVING, CalendarDays(1)).due_at == utc(
        "2026-11-21T15:00:00Z"
    )


def test_a_calendar_closed_for_more_than_the_horizon_fails_clearly() -> None:
    mondays = [date(2026, 11, 16) + timedelta(weeks=week) for week in range(52 * 11)]
    closed = calendar(
        hours={"mon": [["09:00", "17:00"]]}, closed_dates=[d.isoformat() for d in mondays]
    )
    with pytest.raises(NoOpenTimeError, match="no open day in the 10 years"):
        compute(closed, FRIDAY_BEFORE_THANKSGIVING, BusinessDays(1))
    with pytest.raises(NoOpenTimeError, match="no open day in the 10 years"):
        compute(closed, FRIDAY_BEFORE_THANKSGIVING, BusinessHours(1))


def test_the_last_open_interval_before_a_long_closure_still_counts() -> None:
    mondays = [date(2026, 11, 23) + timedelta(weeks=week) for week in range(52 * 11)]
    closed = calendar(
        hours={"mon": [["09:00", "17:00"]]}, closed_dates=[d.isoformat() for d in mondays]
    )
    due = compute(closed, FRIDAY_BEFORE_THANKSGIVING - timedelta(days=5), BusinessHours(8)).due_at
    assert due == utc("2026-11-16T17:00:00-05:00")


# Validation.


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "not an IANA time zone"),
        ({"time_zone": "localtime"}, "not an IANA time zone"),
        ({"hours": {"mon": [["25:00", "26:00"]]}}, "not a time of day"),
        ({"hours": {"mon": [["9:00", "17:00"]]}}, "not a time of day as HH:MM"),
        ({"hours": {"mon": [["09:60", "17:00"]]}}, "not a time of day"),
        ({"hours": {"mon": [["09:00", "24:01"]]}}, "not a time of day"),
        ({"hours": {"mon": [["24:00", "24:00"]]}}, "not a time of day"),
        ({"hours": {"mon": [["17:00", "09:00"]]}}, "empty"),
        ({"hours": {"mon": [["09:00", "09:00"]]}}, "empty"),
        ({"hours": {"mon": [["09:00", "12:00"], ["11:00", "14:00"]]}}, "overlap"),
        ({"hours": {"mon": [["09:00"]]}}, "pair"),
        ({"hours": {"monday": [["09:00", "17:00"]]}}, "unknown day"),
        ({"holidays": {"country": "XX", "subdivision": None}}, "no public holidays"),
        ({"holidays": {"country": "US", "subdivision": "ZZ"}}, "no public holidays"),
        ({"closed_dates": ["2026-02-30"]}, "not a date"),
        ({"closed_dates": ["27/11/2026"]}, "not a date"),
    ],
)
def test_invalid_calendars_are_refused_clearly(fields: dict[str, object], message: str) -> None:
    value: dict[str, object] = {"time_zone": "America/New_York", "hours": WEEKDAYS_NINE_TO_FIVE}
    with pytest.raises(ValueError, match=message):
        parse_calendar(value | fields)


def test_touching_intervals_are_allowed() -> None:
    hours = parse_hours({"mon": [["09:00", "12:00"], ["12:00", "17:00"]]})
    assert len(hours[0]) == 2


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"business_days": 0}, "between 1 and 60"),
        ({"business_days": 61}, "between 1 and 60"),
        ({"business_hours": 0}, "between 1 and 720"),
        ({"business_hours": 721}, "between 1 and 720"),
        ({"calendar_days": 0}, "between 1 and 365"),
        ({"calendar_days": 366}, "between 1 and 365"),
        ({"business_days": True}, "whole number"),
        ({"business_days": 3.0}, "whole number"),
        ({"business_days": "3"}, "whole number"),
        ({}, "exactly one of .*got none"),
        ({"at": "17:00"}, "exactly one of .*got none"),
        ({"business_days": 1, "calendar_days": 1}, "got business_days, calendar_days"),
        ({"business_hours": 8, "at": "17:00"}, "takes only business_hours"),
        ({"business_days": 1, "at": "25:00"}, "not a time of day"),
        ({"business_days": 1, "at": "same_time"}, "not a time of day"),
        ({"calendar_days": 1, "at": "end_of_day"}, "not a time of day"),
        ({"business_days": 1, "at": 17}, "at is 'HH:MM'"),
        ({"business_days": 1, "extra": 1}, "takes only"),
    ],
)
def test_invalid_rules_are_refused_clearly(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rule(rule)


def test_rules_built_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match="between 1 and 60"):
        BusinessDays(61)
    with pytest.raises(ValueError, match="whole minutes"):
        CalendarDays(1, at=time(9, 0, 30))


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        compute(NEW_YORK, datetime(2026, 11, 20, 10), BusinessDays(1))


@pytest.mark.parametrize(
    ("rule", "as_json", "description"),
    [
        (BusinessDays(3), {"business_days": 3, "at": END_OF_DAY}, "3 business days, at the close"),
        (
            BusinessDays(1, time(17)),
            {"business_days": 1, "at": "17:00"},
            "1 business day, at 17:00",
        ),
        (BusinessHours(8), {"business_hours": 8}, "8 business hours"),
        (
            CalendarDays(2),
            {"calendar_days": 2, "at": SAME_TIME},
            "2 calendar days, at the same time",
        ),
        (
            CalendarDays(1, time(9, 5)),
            {"calendar_days": 1, "at": "09:05"},
            "1 calendar day, at 09:05",
        ),
    ],
)
def test_rules_round_trip_through_json(
    rule: Rule, as_json: dict[str, int | str], description: str
) -> None:
    assert rule_to_json(rule) == as_json
    assert parse_rule(as_json) == rule
    assert describe_rule(rule) == description


def test_business_days_default_to_the_end_of_the_day() -> None:
    assert parse_rule({"business_days": 2}) == BusinessDays(2, END_OF_DAY)
    assert parse_rule({"calendar_days": 2}) == CalendarDays(2, SAME_TIME)


def test_calendars_round_trip_through_json() -> None:
    as_json = calendar_to_json(NEW_YORK)
    assert as_json["closed_dates"] == ["2026-11-27"]
    assert as_json["holidays"] == {"country": "US", "subdivision": None}
    assert parse_calendar(as_json) == NEW_YORK
    night = calendar_to_json(NIGHT_SHIFT)
    assert night["hours"] == {
        "mon": [["18:00", "24:00"]],
        "tue": [["00:00", "06:00"]],
        **{day: [] for day in WEEKDAYS[2:]},
    }


# Properties over random zones, calendars, starts and rules.

ZONES = sorted(available_timezones() - {"localtime", "posixrules"})
HALF_HOURS = list(range(0, 24 * 60 + 1, 30))
FIRST_DAY, LAST_DAY = date(2019, 1, 1), date(2031, 12, 31)
# The engine is pure and quick: the profile's whole count (tests/conftest.py).
PROPERTIES = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def day_hours(draw: st.DrawFn) -> list[list[str]]:
    bounds = sorted(draw(st.sets(st.sampled_from(HALF_HOURS), max_size=6)))
    pairs = list(zip(bounds[::2], bounds[1::2], strict=False))
    return [[f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}"] for a, b in pairs]


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    hours = {day: draw(day_hours()) for day in WEEKDAYS}
    assume(any(hours.values()))
    source = draw(
        st.sampled_from([None, {"country": "US", "subdivision": None}, {"country": "DE"}])
    )
    closed = draw(st.lists(st.dates(FIRST_DAY, LAST_DAY), max_size=20))
    return calendar(draw(st.sampled_from(ZONES)), hours, source, [d.isoformat() for d in closed])


any_instant = st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC))
# Half the starts fall in the months where most zones change their clocks.
dst_season = st.builds(
    lambda year, month, day, minute: (
        datetime(year, month, day, tzinfo=UTC) + timedelta(minutes=minute)
    ),
    st.integers(2020, 2030),
    st.sampled_from([3, 4, 9, 10, 11]),
    st.integers(1, 28),
    st.integers(0, 24 * 60 - 1),
)
starts = st.one_of(any_instant.map(lambda instant: instant.replace(microsecond=0)), dst_season)
wall_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


def local_day(calendar: Calendar, instant: datetime) -> date:
    return instant.astimezone(calendar.zone).date()


def exists(zone: ZoneInfo, day: date, wall: time) -> bool:
    """Whether a wall time happens on that day (it is not in a DST gap)."""
    instant = datetime.combine(day, wall, tzinfo=zone)
    back = instant.astimezone(UTC).astimezone(zone)
    return (back.date(), back.time()) == (day, wall)


@PROPERTIES
@given(calendars(), starts, st.integers(1, 60), st.one_of(st.just(END_OF_DAY), wall_times))
def test_business_days_land_on_the_nth_open_day(
    cal: Calendar, start: datetime, days: int, at: time | str
) -> None:
    rule = BusinessDays(days, END_OF_DAY if isinstance(at, str) else at)
    result = compute(cal, start, rule)
    # An oracle that walks the days one by one.
    day, counted = local_day(cal, start), 0
    while counted < days:
        day += timedelta(days=1)
        counted += cal.is_open_day(day)
    minutes = at.hour * 60 + at.minute if isinstance(at, time) else cal.hours_on(day)[-1].end
    assert result.due_at == cal.local_instant(day, minutes).astimezone(UTC)
    assert result.due_at > start
    assert cal.is_open_day(day)
    if isinstance(rule.at, time) and exists(cal.zone, day, rule.at):
        assert local_day(cal, result.due_at) == day
    assert all(cal.hours_on(s.day) and not cal.is_open_day(s.day) for s in result.skipped)
    assert all(local_day(cal, start) < s.day < day for s in result.skipped)


@PROPERTIES
@given(calendars(), starts, st.integers(1, 120))
def test_business_hours_end_inside_open_hours(cal: Calendar, start: datetime, hours: int) -> None:
    result = compute(cal, start, BusinessHours(hours))
    due = result.due_at
    assert due > start
    assert is_open(cal, due) or is_open(cal, due - timedelta(microseconds=1))
    # The open time counted between start and due is exactly the rule's.
    counted = timedelta()
    for span_start, span_end in open_intervals(cal, start):
        if span_start >= due:
            break
        counted += min(span_end, due) - span_start
    assert counted == timedelta(hours=hours)
    assert all(cal.hours_on(s.day) and not cal.is_open_day(s.day) for s in result.skipped)


@PROPERTIES
@given(calendars(), starts, st.integers(1, 60), st.integers(1, 60))
def test_business_hours_are_monotonic_in_the_hours(
    cal: Calendar, start: datetime, a: int, b: int
) -> None:
    fewer, more = sorted((a, b))
    assert compute(cal, start, BusinessHours(fewer)).due_at <= (
        compute(cal, start, BusinessHours(more)).due_at
    )


@PROPERTIES
@given(calendars(), starts, st.integers(0, 14 * 24 * 3600), st.integers(1, 60))
def test_business_hours_are_monotonic_in_the_start(
    cal: Calendar, start: datetime, later_by: int, hours: int
) -> None:
    later = start + timedelta(seconds=later_by)
    assert compute(cal, start, BusinessHours(hours)).due_at <= (
        compute(cal, later, BusinessHours(hours)).due_at
    )


@PROPERTIES
@given(calendars(), starts, st.integers(1, 40), st.integers(1, 40))
def test_business_hours_add_up(cal: Calendar, start: datetime, a: int, b: int) -> None:
    after_a = compute(cal, start, BusinessHours(a)).due_at
    assert compute(cal, start, BusinessHours(a + b)).due_at == (
        compute(cal, after_a, BusinessHours(b)).due_at
    )


@PROPERTIES
@given(st.sampled_from(ZONES), starts, st.integers(1, 365))
def test_calendar_days_keep_the_local_wall_time(zone_name: str, start: datetime, days: int) -> None:
    cal = calendar(zone_name)
    local = start.astimezone(cal.zone)
    target = local.date() + timedelta(days=days)
    assume(exists(cal.zone, target, local.time()))
    due = compute(cal, start, CalendarDays(days, SAME_TIME)).due_at.astimezone(cal.zone)
    assert (due.date(), due.time()) == (target, local.time())


@PROPERTIES
@given(calendars(), starts)
def test_open_intervals_are_ordered_disjoint_and_agree_with_is_open(
    cal: Calendar, start: datetime
) -> None:
    spans = open_intervals(cal, start)
    previous_end = start
    for _ in range(10):
        span_start, span_end = next(spans)
        assert previous_end <= span_start < span_end
        assert is_open(cal, span_start)
        assert is_open(cal, span_end - timedelta(microseconds=1))
        assert is_open(cal, span_end) == (next_opening(cal, span_end) == span_end)
        if previous_end < span_start:
            assert not is_open(cal, previous_end) or previous_end == start
            assert next_opening(cal, previous_end) == span_start
        previous_end = span_end


def open_time_day_by_day(
    cal: Calendar, after: datetime, count: int
) -> list[tuple[datetime, datetime]]:
    """The slow path the engine's month cache must equal: each day's intervals, one by one."""
    found: list[tuple[datetime, datetime]] = []
    previous_end = after
    day = local_day(cal, after) - timedelta(days=1)
    while len(found) < count:
        if cal.is_open_day(day):
            day_spans: list[tuple[datetime, datetime]] = []
            for interval in cal.hours_on(day):
                start = cal.local_instant(day, interval.start).astimezone(UTC)
                end = cal.local_instant(day, interval.end).astimezone(UTC)
                if start >= end:
                    continue
                if day_spans and start <= day_spans[-1][1]:
                    day_spans[-1] = (day_spans[-1][0], max(day_spans[-1][1], end))
                else:
                    day_spans.append((start, end))
            for start, end in day_spans:
                start = max(start, previous_end)
                if start < end:
                    found.append((start, end))
                    previous_end = end
        day += timedelta(days=1)
    return found[:count]


@PROPERTIES
@given(calendars(), starts)
def test_open_intervals_equal_the_day_by_day_walk(cal: Calendar, start: datetime) -> None:
    spans = open_intervals(cal, start)
    assert [next(spans) for _ in range(40)] == open_time_day_by_day(cal, start, 40)


def test_calendars_built_in_code_are_checked_too() -> None:
    nine_to_five = (Interval(9 * 60, 17 * 60),)
    with pytest.raises(ValueError, match="a week has 7 days"):
        Calendar("Europe/Paris", (nine_to_five,) * 6)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in order"):
        Calendar("Europe/Paris", ((Interval(13 * 60, 14 * 60), Interval(9 * 60, 12 * 60)),) * 7)
    with pytest.raises(ValueError, match="overlap"):
        Calendar("Europe/Paris", ((Interval(9 * 60, 14 * 60), Interval(13 * 60, 17 * 60)),) * 7)
    with pytest.raises(ValueError, match="not an IANA time zone"):
        Calendar("CET+1", (nine_to_five,) * 7)


@PROPERTIES
@given(calendars(), starts)
def test_next_opening_is_the_instant_itself_exactly_when_open(cal: Calendar, at: datetime) -> None:
    # Reminders wait out quiet hours with next_opening alone (app/outbound/reminders.py).
    opening = next_opening(cal, at)
    assert (opening == at) == is_open(cal, at)
    assert opening >= at
    assert is_open(cal, opening)
