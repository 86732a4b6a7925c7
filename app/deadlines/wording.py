"""How times and dates are written for people: in a named zone ("17:00 New York time"),
lengths of time in their largest unit. Pure functions, English only; the status page, the
e-mails and the action pages word times alike."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Etc/Zulu", "Universal", "Zulu"})


def zone_name(zone: ZoneInfo) -> str:
    """The zone as a reader knows it: "UTC", or the city of its IANA name plus "time"
    (America/New_York: "New York time")."""
    if zone.key in _UTC_NAMES:
        return "UTC"
    return zone.key.rsplit("/", 1)[-1].replace("_", " ") + " time"


def written_date(moment: datetime, zone: ZoneInfo) -> str:
    """The day of ``moment`` in ``zone``: "Wednesday 25 November 2026"."""
    local = moment.astimezone(zone)
    return f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"


def written_time(moment: datetime, zone: ZoneInfo) -> str:
    """The wall time of ``moment`` in ``zone``, named: "17:00 New York time"."""
    return f"{moment.astimezone(zone):%H:%M} {zone_name(zone)}"


def written_instant(moment: datetime, zone: ZoneInfo) -> str:
    """``moment`` written out in ``zone``: "Wednesday 25 November 2026, 17:00 New York time"."""
    return f"{written_date(moment, zone)}, {written_time(moment, zone)}"


def written_length(length: timedelta) -> str:
    """A wait in the largest whole unit: "3 days", "1 hour", "less than an hour"."""
    if length >= timedelta(days=1):
        return _plural(length.days, "day")
    hours = int(length.total_seconds() // 3600)
    return _plural(hours, "hour") if hours >= 1 else "less than an hour"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
