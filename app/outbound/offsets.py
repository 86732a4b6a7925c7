"""A reminder step's offset from the due time: parsed from a request, normalised, read back."""

import re
from datetime import timedelta

from pydantic import TypeAdapter

from app.fields import iso_duration

# ISO 8601 durations with an optional sign: weeks, days, hours, minutes, seconds. Years and
# months have no fixed length, so a reminder could not say when it fires. The digits of each
# part are bounded, so that every offset the pattern admits is one the service takes (at
# most 99 weeks, 999 days, 9,999 hours, 99,999 minutes and 999,999 seconds together).
OFFSET_PATTERN = re.compile(
    r"^([-+]?)P(?=[0-9]|T[0-9])(?:([0-9]{1,2})W)?(?:([0-9]{1,3})D)?"
    r"(?:T(?=[0-9])(?:([0-9]{1,4})H)?(?:([0-9]{1,5})M)?(?:([0-9]{1,6})S)?)?$"
)
_OFFSET_PARTS = ("weeks", "days", "hours", "minutes", "seconds")
_YEARS_OR_MONTHS = re.compile(r"^[-+]?P[^T]*[0-9](Y|M)")


def parse_offset(value: str) -> timedelta:
    """A step's offset: ``-PT24H``, ``PT0S``, ``P1D``."""
    if _YEARS_OR_MONTHS.match(value):
        raise ValueError("years and months have no fixed length; use weeks, days or hours")
    found = OFFSET_PATTERN.match(value)
    if found is None:
        raise ValueError("must be an ISO 8601 duration, optionally negative, e.g. -PT24H or P1D")
    sign, *numbers = found.groups()
    delta = timedelta(**{k: int(v) for k, v in zip(_OFFSET_PARTS, numbers, strict=True) if v})
    return -delta if sign == "-" else delta


_DURATION = TypeAdapter(timedelta)


def stored_offset(text: str) -> timedelta:
    """An offset as a rule stores it (``format_offset``'s form, whose days may run past what
    a request may write in one part)."""
    return _DURATION.validate_python(text)


def format_offset(delta: timedelta) -> str:
    """The normal form of an offset: ``-P1D``, ``PT0S``, ``P1DT2H``."""
    return ("-" if delta < timedelta(0) else "") + iso_duration(abs(delta))
