"""How the status page words what it shows: dates in a named zone, steps by role and channel,
lengths of time. Pure functions, English only."""

from app.deadlines.wording import (
    written_date,
    written_instant,
    written_length,
    written_time,
    zone_name,
)
from app.models import Channel, OwnerRole

__all__ = [
    "step_sentence",
    "written_date",
    "written_instant",
    "written_length",
    "written_time",
    "zone_name",
]

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


def step_sentence(role: str, channel: str | None) -> str:
    """What the candidate can expect, from the owner's role and the channel:
    "Your recruiter will call you."."""
    subject = _SUBJECTS.get(OwnerRole(role), _SUBJECTS[OwnerRole.other])
    verb = _VERBS.get(Channel(channel), _VERBS[Channel.other]) if channel else None
    return f"{subject} {verb or _VERBS[Channel.other]}."
