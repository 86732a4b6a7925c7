"""One-click unsubscribe (RFC 8058): an e-mail's link turns off the owner's reminder e-mails
or their digest, whichever the e-mail was. Opening the page changes nothing; a POST, the
button's or a mail client's, turns it off, and again changes nothing more."""

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from app.db import save_changes
from app.models import Owner, UnsubscribeTopic
from app.owners.links import find_unsubscribe_link
from app.owners.service import lock_owner

# The owner's setting each topic turns off.
SETTING = {UnsubscribeTopic.reminders: "email_reminders", UnsubscribeTopic.digest: "digest_enabled"}


@dataclass(frozen=True)
class Subscription:
    topic: UnsubscribeTopic
    on: bool


def _opened(session: Session, token: str) -> tuple[Owner, UnsubscribeTopic] | None:
    link = find_unsubscribe_link(session, token)
    owner = session.get(Owner, link.owner_id) if link is not None else None
    if link is None or owner is None:
        return None
    return owner, UnsubscribeTopic(link.topic)


def subscription(session: Session, token: str) -> Subscription | None:
    """What the link would turn off, and whether it is still on; None for an unknown token."""
    opened = _opened(session, token)
    if opened is None:
        return None
    owner, topic = opened
    return Subscription(topic, bool(getattr(owner, SETTING[topic])))


def unsubscribe(session: Session, token: str, now: datetime) -> Subscription | None:
    """Turn the link's topic off for its owner (a change of the owner: its version moves on)
    and commit; already off, nothing is written. None for an unknown token."""
    link = find_unsubscribe_link(session, token)
    if link is None:
        session.rollback()
        return None
    lock_owner(session, link.owner_id)
    opened = _opened(session, token)
    if opened is None:
        session.rollback()
        return None
    owner, topic = opened
    save_changes(session, owner, {SETTING[topic]: False}, now)
    return Subscription(topic, on=False)
