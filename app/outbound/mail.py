"""Writing e-mails to owners into the outbox: reminders of rules that e-mail the owner, and
test e-mails (the daily digest is digest.py). Each e-mail is rendered once, here, in the
transaction of the change or the firing, with its links issued beside it: one action link
per step (bound to the step and to the owner it is sent to) and one unsubscribe link.

Without ``NEXTSTEP_SMTP_URL`` nothing is e-mailed: the API refuses to turn on what would
e-mail (``require_smtp``), and the worker writes no e-mail.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from app import tracing
from app.commitments.clock import Clock
from app.config import get_settings
from app.deadlines.wording import written_instant, written_length, zone_name
from app.errors import InvalidInput, NotFound
from app.links import public_base
from app.models import Commitment, Interview, Owner, UnsubscribeTopic
from app.models.outbound import EventType, Message, MessageChannel, MessageStatus, MessageType
from app.outbound.channels.email import render
from app.outbound.outbox import Change, waiting_clocks
from app.outbound.sending import Outgoing
from app.owners.links import issue_action_link, issue_unsubscribe_link
from app.owners.service import owner_time_zone

SMTP_SETTING = "NEXTSTEP_SMTP_URL"

_SUBJECTS = {
    EventType.due_soon: "Due soon",
    EventType.overdue: "Overdue",
    EventType.escalated: "Escalated to you",
}
_INTROS = {
    EventType.due_soon: "A step you owe is due soon.",
    EventType.overdue: "A step you owe is overdue.",
    EventType.escalated: "A step is overdue, and its reminders were escalated to you.",
}
_TEMPLATES = {MessageType.email_test: "test", MessageType.owner_digest: "digest"}
_TOPICS = {
    UnsubscribeTopic.reminders: "reminder e-mails",
    UnsubscribeTopic.digest: "the daily digest",
}


def smtp_configured() -> bool:
    return get_settings().smtp_url is not None


def require_smtp(what: str, loc: Sequence[str | int]) -> None:
    """A 422 naming the setting when ``what`` would e-mail and no SMTP server is set."""
    if not smtp_configured():
        raise InvalidInput(
            f"{what} sends e-mail, and {SMTP_SETTING} is not set: nothing can be e-mailed.",
            errors=[{"loc": list(loc), "msg": f"needs {SMTP_SETTING} to be set"}],
        )


def require_address(owner: Owner) -> str:
    if not owner.email:
        raise InvalidInput(
            f"Owner {owner.id!r} has no e-mail address.",
            errors=[{"loc": ["path", "owner_id"], "msg": "the owner has no e-mail address"}],
        )
    return owner.email


def directory_owner(session: Session, owner_id: str) -> Owner:
    owner = session.get(Owner, owner_id)
    if owner is None:
        raise NotFound(f"No owner with id {owner_id!r}.")
    return owner


def step_view(
    commitment: Commitment,
    interview: Interview,
    clock: Clock,
    zone: ZoneInfo,
    now: datetime,
    link: str,
    owner: str | None = None,
) -> dict[str, Any]:
    """One step as an e-mail shows it, its times written in ``zone``."""
    waiting_since, unanswered = clock
    return {
        "action": commitment.action,
        "candidate": interview.candidate_name or interview.candidate_external_id,
        "job": interview.job_title,
        "due": written_instant(commitment.due_at, zone),
        "late": written_length(now - commitment.due_at) if commitment.due_at <= now else None,
        "waiting": written_length(now - waiting_since) if waiting_since is not None else None,
        "unanswered": unanswered,
        "owner": owner,
        "link": link,
    }


def action_link(
    session: Session,
    commitment_id: uuid.UUID,
    owner_id: str,
    now: datetime,
    held_by: str | None = None,
) -> str:
    """An action link for ``owner_id``, answering while ``held_by`` (default: they) holds
    the step: an escalation lets its reader answer for the step's owner."""
    lifetime = timedelta(days=get_settings().action_link_days)
    return issue_action_link(session, commitment_id, owner_id, now, lifetime, held_by=held_by)


def write_email(
    session: Session,
    owner: Owner,
    type_: MessageType,
    subject: str,
    intro: str,
    sections: list[dict[str, Any]],
    topic: UnsubscribeTopic,
    now: datetime,
    zone: ZoneInfo,
    *,
    commitment_id: uuid.UUID | None = None,
    reminder_id: uuid.UUID | None = None,
) -> Message:
    """One e-mail to ``owner`` in the outbox, rendered now, due now, its times written in
    ``zone`` (the owner's: ``owner_time_zone``). Does not commit."""
    address = require_address(owner)
    settings = get_settings()
    message_id = uuid.uuid4()
    data = {
        "template": _TEMPLATES.get(type_, "reminder"),
        "message_id": str(message_id),
        "host": urlsplit(public_base()).hostname or "localhost",
        "from": settings.mail_from,
        "to": {"name": owner.name, "address": address},
        "subject": subject,
        "greeting": f"Hello {owner.name}," if owner.name else "Hello,",
        "intro": intro,
        "sections": sections,
        "zone": zone_name(zone),
        "topic": _TOPICS[topic],
        "footer": "Sent by nextstep.",
        "unsubscribe_url": issue_unsubscribe_link(session, owner.id, topic, now),
    }
    message = Message(
        id=message_id,
        endpoint_id=None,
        channel=MessageChannel.email.value,
        recipient=owner.id,
        type=type_.value,
        commitment_id=commitment_id,
        reminder_id=reminder_id,
        body=render(data, now),
        status=MessageStatus.pending.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        trace_context=tracing.message_traceparent(commitment_id),
    )
    session.add(message)
    return message


def email_reminders(
    session: Session, changes: Sequence[tuple[int, Change]], now: datetime
) -> set[int]:
    """The e-mails of firings whose rule e-mails the owner: to the step's owner, or for an
    escalation to its ``to`` person, when they are in the directory with an e-mail and
    ``email_reminders`` on. The positions of the changes e-mailed."""
    if not changes or not smtp_configured():
        return set()
    recipients = {n: _recipient(change) for n, change in changes}
    owners = {
        o.id: o
        for o in session.exec(select(Owner).where(col(Owner.id).in_(set(recipients.values()))))
    }
    wanted = [
        (n, change, owners[recipients[n]])
        for n, change in changes
        if recipients[n] in owners
        and owners[recipients[n]].email
        and owners[recipients[n]].email_reminders
    ]
    if not wanted:
        return set()
    session.flush()
    clocks = waiting_clocks(session, {c.interview.id for _n, c, _o in wanted}, now)
    zones = {o.id: owner_time_zone(session, o) for _n, _c, o in wanted}
    # Nothing is read from here on: the links and e-mails are flushed together at the end.
    with session.no_autoflush:
        for _n, change, owner in wanted:
            clock = clocks[change.interview.id]
            _write_reminder(session, change, owner, clock, zones[owner.id], now)
    return {n for n, _c, _o in wanted}


def _recipient(change: Change) -> str:
    escalate_to = change.reminder.escalate_to if change.reminder is not None else None
    if change.type is EventType.escalated and escalate_to:
        return str(escalate_to["id"])
    return change.commitment.owner_id


def _write_reminder(
    session: Session, change: Change, owner: Owner, clock: Clock, zone: ZoneInfo, now: datetime
) -> Message:
    step, interview = change.commitment, change.interview
    # An escalation names the step's owner: the reader is not them.
    step_owner = step.owner_name or step.owner_id if change.type is EventType.escalated else None
    link = action_link(session, step.id, owner.id, now, held_by=step.owner_id)
    view = step_view(step, interview, clock, zone, now, link, step_owner)
    subject = f"{_SUBJECTS[change.type]}: {view['action']} — {view['candidate']}"
    return write_email(
        session,
        owner,
        MessageType(change.type.value),
        subject,
        _INTROS[change.type],
        [{"title": "The step", "steps": [view]}],
        UnsubscribeTopic.reminders,
        now,
        zone,
        commitment_id=step.id,
        reminder_id=change.reminder.id if change.reminder is not None else None,
    )


def send_test_email(session: Session, owner_id: str, now: datetime) -> Message:
    """Queue an ``email.test`` e-mail to the owner (404 unknown; 422 without an address or
    without an SMTP server)."""
    owner = directory_owner(session, owner_id)
    require_address(owner)
    require_smtp("A test e-mail", ["path", "owner_id"])
    message = write_email(
        session,
        owner,
        MessageType.email_test,
        "nextstep: test e-mail",
        "This is a test e-mail from nextstep: e-mail to you works. Reminders and your "
        "daily digest come the same way.",
        [],
        UnsubscribeTopic.reminders,
        now,
        owner_time_zone(session, owner),
    )
    session.commit()
    return message


def email_outgoing(row: Any, attempt_id: uuid.UUID) -> Outgoing:
    """What sending a claimed e-mail needs (``row``: the claim's returned columns)."""
    return Outgoing(
        message_id=row.id,
        attempt_id=attempt_id,
        n=row.attempts,
        type=row.type,
        endpoint_id=None,
        kind=MessageChannel.email.value,
        url="",
        secrets=(),
        body=row.body,
        trace_context=row.trace_context,
        recipient=row.recipient,
    )
