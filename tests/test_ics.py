"""The RFC 5545 writer (app/calendar_feeds/ics.py) read back by the icalendar library's
parser: any text round-trips exactly, any instant in any zone comes back as the same
instant, and every physical line is at most 75 octets and whole UTF-8."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.calendar_feeds.ics import (
    CRLF,
    LINE_OCTETS,
    content_lines,
    escape_text,
    fold,
    unescaped_value,
    utc_stamp,
)

# Control characters cannot be written in a content line (RFC 5545 3.1), except TAB and the
# escaped newline; surrogates are not Unicode text. Everything else goes.
_TEXT = st.text(
    st.characters(
        blacklist_categories=["Cs"],
        blacklist_characters=[*(chr(c) for c in range(32) if c not in (9, 10)), "\x7f"],
    )
)


def _calendar(*properties: tuple[str, str]) -> bytes:
    lines = [
        ("BEGIN", "VCALENDAR"),
        ("VERSION", "2.0"),
        ("PRODID", "-//test//EN"),
        ("BEGIN", "VEVENT"),
        ("UID", "x@nextstep"),
        ("DTSTAMP", "20261207T210000Z"),
        *properties,
        ("END", "VEVENT"),
        ("END", "VCALENDAR"),
    ]
    return "".join(content_lines(lines)).encode()


def _event(document: bytes) -> icalendar.Component:
    events = icalendar.Calendar.from_ical(document).walk("VEVENT")
    assert len(events) == 1
    return events[0]


@settings(max_examples=300)
@given(_TEXT)
@example("Call back; then, e-mail\\ her\nTomorrow")
@example("é" * 80)
@example("a" * 74 + "€" + "😀" * 30)
def test_any_text_round_trips_through_the_icalendar_parser(text: str) -> None:
    document = _calendar(("SUMMARY", escape_text(text)), ("DESCRIPTION", escape_text(text)))
    event = _event(document)
    assert str(event["SUMMARY"]) == text
    assert str(event["DESCRIPTION"]) == text


@given(_TEXT.map(lambda t: "X" * 40 + t))
def test_every_line_is_at_most_75_octets_and_whole_utf8(text: str) -> None:
    document = _calendar(("SUMMARY", escape_text(text)))
    assert document.endswith(b"\r\n")
    for line in document[:-2].split(b"\r\n"):
        assert len(line) <= LINE_OCTETS
        line.decode()  # never cut inside a character
        assert b"\n" not in line
        assert b"\r" not in line


@given(st.datetimes(min_value=datetime(1970, 1, 2), timezones=st.timezones()))
@example(datetime(2016, 3, 13, 2, 0, tzinfo=ZoneInfo("America/Indiana/Indianapolis")))  # a gap
def test_an_instant_in_any_zone_comes_back_as_the_same_instant_in_utc(moment: datetime) -> None:
    event = _event(_calendar(("DTSTART", utc_stamp(moment))))
    parsed = event.decoded("DTSTART")
    assert parsed.utcoffset() == timedelta(0)
    # In UTC: Python never calls an imaginary or ambiguous local time equal to another zone's.
    assert parsed == moment.astimezone(UTC).replace(microsecond=0)
    assert utc_stamp(moment).endswith("Z")


def test_line_breaks_of_any_kind_become_escaped_newlines_and_controls_spaces() -> None:
    assert escape_text("a\r\nb\rc\nd") == "a\\nb\\nc\\nd"
    assert escape_text("tab\there\x00\x1b\x7f") == "tab\there   "


def test_a_short_line_is_not_folded_and_a_long_one_continues_with_a_space() -> None:
    assert fold("SUMMARY:short") == "SUMMARY:short" + CRLF
    folded = fold("SUMMARY:" + "a" * 100)
    first, second = folded.split(CRLF)[:2]
    assert len(first) == 75
    assert second == " " + "a" * (108 - 75)


@given(_TEXT.filter(lambda t: "\n" not in t))
def test_a_calendar_name_is_read_back_as_it_is_by_the_icalendar_parser(name: str) -> None:
    document = "".join(
        content_lines(
            [
                ("BEGIN", "VCALENDAR"),
                ("VERSION", "2.0"),
                ("PRODID", "-//test//EN"),
                ("X-WR-CALNAME", unescaped_value(name)),
                ("END", "VCALENDAR"),
            ]
        )
    ).encode()
    assert str(icalendar.Calendar.from_ical(document)["X-WR-CALNAME"]) == name
