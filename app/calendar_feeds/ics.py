"""The few lines of RFC 5545 a subscribed feed needs: content lines, TEXT escaping, folding.

Pure functions, no I/O. A general iCalendar library builds an object per property and
validates as it goes; a feed of 10,000 events is written here in a single pass over strings
(bench/feed.py has both figures). tests/test_ics.py proves this writer against the
``icalendar`` library's parser for any text.
"""

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

CRLF = "\r\n"
# Control characters a content line may not hold (RFC 5545 3.1, CONTROL); TAB is allowed.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
# RFC 5545 3.1: "Lines of text SHOULD NOT be longer than 75 octets, excluding the line break."
LINE_OCTETS = 75


def escape_text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and newline escaped.

    A bare CR (or a CRLF) is a line break too; control characters other than TAB are not
    allowed in a content line, so each becomes a space rather than break the feed.
    """
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return _CONTROL.sub(" ", value.replace("\n", "\\n"))


def unescaped_value(value: str) -> str:
    """The value of a non-standard property such as ``X-WR-CALNAME``, written as it is.

    RFC 5545 makes such values TEXT by default, but parsers (icalendar, ical.js) and
    calendar clients read them raw, so an escaped comma would show its backslash. Only
    what a content line cannot hold changes: line breaks and controls become spaces.
    """
    return _CONTROL.sub(" ", value.replace("\r\n", " ").replace("\r", " "))


def fold(line: str) -> str:
    """One content line folded into lines of at most 75 octets (the continuation's leading
    space counts), never inside a UTF-8 sequence, each ended by CRLF."""
    data = line.encode()
    if len(data) <= LINE_OCTETS:
        return line + CRLF
    parts: list[str] = []
    start, limit = 0, LINE_OCTETS
    while len(data) - start > limit:
        end = start + limit
        # Step back to the first byte of a character: continuation bytes are 10xxxxxx.
        while data[end] & 0xC0 == 0x80:
            end -= 1
        parts.append(data[start:end].decode())
        start, limit = end, LINE_OCTETS - 1
    parts.append(data[start:].decode())
    return (CRLF + " ").join(parts) + CRLF


def utc_stamp(moment: datetime) -> str:
    """A DATE-TIME in UTC form (``19970714T173000Z``): no zone for a client to guess."""
    m = moment.astimezone(UTC)
    return f"{m.year:04d}{m.month:02d}{m.day:02d}T{m.hour:02d}{m.minute:02d}{m.second:02d}Z"


def content_lines(properties: Iterable[tuple[str, str]]) -> Iterator[str]:
    """``NAME:value`` lines, folded; values are written as given (escape TEXT first)."""
    for name, value in properties:
        yield fold(f"{name}:{value}")
