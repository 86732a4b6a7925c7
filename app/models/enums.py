"""The enums of the tables' string columns (each kept in range by a CHECK constraint)."""

from enum import StrEnum


class InterviewStatus(StrEnum):
    scheduled = "scheduled"
    completed = "completed"
    cancelled = "cancelled"


class CommitmentStatus(StrEnum):
    open = "open"
    done = "done"
    cancelled = "cancelled"


class OwnerRole(StrEnum):
    recruiter = "recruiter"
    coordinator = "coordinator"
    hiring_manager = "hiring_manager"
    interviewer = "interviewer"
    hr = "hr"
    candidate = "candidate"
    other = "other"


class OwedBy(StrEnum):
    company = "company"
    candidate = "candidate"


class Channel(StrEnum):
    call = "call"
    email = "email"
    video = "video"
    in_person = "in_person"
    ats_message = "ats_message"
    sms = "sms"
    other = "other"


class ContactChannel(StrEnum):
    """How a contact happened: the channels of a step, and ``web``, the candidate's nudge
    from the status page (a contact only: no step is promised "by web")."""

    call = "call"
    email = "email"
    video = "video"
    in_person = "in_person"
    ats_message = "ats_message"
    sms = "sms"
    other = "other"
    web = "web"


class ContactDirection(StrEnum):
    inbound = "inbound"
    outbound = "outbound"


class DeliveryResult(StrEnum):
    applied = "applied"
    duplicate = "duplicate"
    ignored = "ignored"
    pending = "pending"
    rejected = "rejected"


class Scope(StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


class DeadlineBasis(StrEnum):
    explicit = "explicit"
    policy = "policy"


class TimelineKind(StrEnum):
    interview_recorded = "interview_recorded"
    interview_updated = "interview_updated"
    agreed = "agreed"
    updated = "updated"
    completed = "completed"
    cancelled = "cancelled"
    reopened = "reopened"
    contact = "contact"
