"""How the status page words what it shows: dates in a named zone, steps by role and channel,
lengths of time. Pure functions, English only."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from app.models import Channel, OwnerRole

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

# Who owes the step, as the candidate would say it; never a name or an id.
_SUBJECTS = {
    OwnerRole.recruiter: "Your recruiter",
    OwnerRole.coordinator: "Your interview coordinator",
    OwnerRole.hiring_manager: "The hiring manager",
    OwnerRole.interviewer: "Your interviewer",
    OwnerRole.hr: "Our HR team",
    OwnerRole.candidate: "We",
    OwnerRole.other: "Someone from our team",
}
_VERBS = {
    Channel.call: "will call you",
    Channel.email: "will email you",
    Channel.video: "will contact you for a video call",
    Channel.in_person: "will meet you in person",
    Channel.ats_message: "will message you through our application portal",
    Channel.sms: "will text you",
    Channel.other: "will get back to you",
}


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


def step_sentence(role: str, channel: str | None) -> str:
    """What the candidate can expect, from the owner's role and the channel:
    "Your recruiter will call you."."""
    subject = _SUBJECTS.get(OwnerRole(role), _SUBJECTS[OwnerRole.other])
    verb = _VERBS.get(Channel(channel), _VERBS[Channel.other]) if channel else None
    return f"{subject} {verb or _VERBS[Channel.other]}."


def written_length(length: timedelta) -> str:
    """A wait in the largest whole unit: "3 days", "1 hour", "less than an hour"."""
    if length >= timedelta(days=1):
        return _plural(length.days, "day")
    hours = int(length.total_seconds() // 3600)
    return _plural(hours, "hour") if hours >= 1 else "less than an hour"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
