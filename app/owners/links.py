"""The links an e-mail gives its owner: an action link per step (answer it from a page) and
a one-click unsubscribe link per e-mail.

Each is a token of 256 random bits that appears only in the e-mail: the table keeps its
SHA-256. Issued in the transaction that writes the e-mail; the caller commits.
"""

import uuid
from datetime import datetime, timedelta

from sqlmodel import Session

from app.links import public_link
from app.models import ActionLink, UnsubscribeLink, UnsubscribeTopic
from app.tokens import find_by_token, hash_token, new_token


def issue_action_link(
    session: Session,
    commitment_id: uuid.UUID,
    owner_id: str,
    now: datetime,
    lifetime: timedelta,
    request_base: str | None = None,
    held_by: str | None = None,
) -> str:
    """A new action link for ``owner_id`` to answer one step while ``held_by`` (default: the
    same owner; an escalation's: the step's owner) still holds it; its URL (the only copy)."""
    token = new_token()
    session.add(
        ActionLink(
            token_hash=hash_token(token),
            commitment_id=commitment_id,
            owner_id=owner_id,
            held_by=held_by or owner_id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return action_link_url(token, request_base)


def action_link_url(token: str, request_base: str | None = None) -> str:
    return public_link(f"/a/{token}", request_base)


def active_action_link(
    session: Session, token: str, now: datetime, *, lock: bool = False
) -> ActionLink | None:
    """The action link a token opens; None when it is unknown or expired (alike)."""
    link = find_by_token(session, ActionLink, token, lock=lock)
    if link is None or link.expires_at <= now:
        return None
    return link


def issue_unsubscribe_link(
    session: Session,
    owner_id: str,
    topic: UnsubscribeTopic,
    now: datetime,
    request_base: str | None = None,
) -> str:
    """A new one-click unsubscribe link for one e-mail to ``owner_id``; its URL."""
    token = new_token()
    session.add(
        UnsubscribeLink(
            token_hash=hash_token(token), owner_id=owner_id, topic=topic.value, created_at=now
        )
    )
    return public_link(f"/u/{token}", request_base)


def find_unsubscribe_link(session: Session, token: str) -> UnsubscribeLink | None:
    """The unsubscribe link a token opens; None when it is unknown."""
    return find_by_token(session, UnsubscribeLink, token)
