"""The owner directory: the people (and teams) that steps name by owner id."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from app.models.base import _instant_column, _uuid_pk, enum_check

# Owner ids sort byte by byte on PostgreSQL too (its default collation may sort "hr-team"
# after "hrs"), so that a list is in the same order on both databases.
OWNER_ID_TYPE = String(200).with_variant(String(200, collation="C"), "postgresql")
API = "api"


class Owner(SQLModel, table=True):
    """One owner, by the id the steps carry: who they are, how to reach them, the calendar
    they work by, and where the record came from.

    ``learned_from`` is ``"api"`` once the record was written over the API, else the source
    whose events it was learned from; ``learned_at`` and ``learned_key`` name the event
    whose data it holds (its ``occurred_at`` and tiebreak), so that an older event delivered
    later does not overwrite a newer one's.
    """

    __tablename__ = "owner"
    __table_args__ = (Index("ix_owner_calendar_id", "calendar_id"),)

    id: str = Field(sa_type=OWNER_ID_TYPE, primary_key=True)
    name: str | None = Field(default=None, sa_type=String(300))
    email: str | None = Field(default=None, sa_type=String(254))
    calendar_id: uuid.UUID | None = Field(default=None, sa_column_args=[ForeignKey("calendar.id")])
    email_reminders: bool = Field(default=True, sa_type=Boolean)
    digest_enabled: bool = Field(default=False, sa_type=Boolean)
    digest_at: str = Field(default="07:00", sa_type=String(5))
    learned_from: str = Field(sa_type=String(200))
    learned_at: datetime | None = _instant_column(nullable=True)
    learned_key: str | None = Field(default=None, sa_type=String(300))
    version: int = 1
    created_at: datetime = _instant_column()
    updated_at: datetime = _instant_column()


class CalendarFeed(SQLModel, table=True):
    """A private iCalendar feed of one owner's steps, subscribed to from their calendar.

    Only the SHA-256 of its token is stored: the URL is shown once, when it is created.
    Deleting the owner deletes its feeds.
    """

    __tablename__ = "calendar_feed"
    __table_args__ = (Index("ix_calendar_feed_owner_id", "owner_id", "created_at"),)

    id: uuid.UUID = _uuid_pk()
    owner_id: str = Field(
        sa_type=OWNER_ID_TYPE, sa_column_args=[ForeignKey("owner.id", ondelete="CASCADE")]
    )
    token_hash: str = Field(sa_type=String(64), unique=True)
    created_at: datetime = _instant_column()
    actor: str = Field(sa_type=String(300))


class ActionLink(SQLModel, table=True):
    """A link in an e-mail that lets the owner it was sent to answer one step (done, more
    time, hand over) from a page, without an API key.

    Bound to the step and to that owner, and to who held the step when it was sent
    (``held_by``: the owner, or the step's owner when the e-mail was an escalation to
    someone else): once the step is no longer open or has left ``held_by``, the page says
    so and takes no answer. Only the SHA-256 of its token is stored;
    it expires (``NEXTSTEP_ACTION_LINK_DAYS``), and goes with its owner.
    """

    __tablename__ = "action_link"
    __table_args__ = (Index("ix_action_link_owner_id", "owner_id"),)

    id: uuid.UUID = _uuid_pk()
    token_hash: str = Field(sa_type=String(64), unique=True)
    commitment_id: uuid.UUID = Field(sa_column_args=[ForeignKey("commitment.id")])
    owner_id: str = Field(
        sa_type=OWNER_ID_TYPE, sa_column_args=[ForeignKey("owner.id", ondelete="CASCADE")]
    )
    held_by: str = Field(sa_type=OWNER_ID_TYPE)
    created_at: datetime = _instant_column()
    expires_at: datetime = _instant_column()


class UnsubscribeTopic(StrEnum):
    """What an e-mail's unsubscribe link turns off: reminder e-mails, or the digest."""

    reminders = "reminders"
    digest = "digest"


class UnsubscribeLink(SQLModel, table=True):
    """The RFC 8058 one-click unsubscribe link of one e-mail: it turns off the owner's
    reminder e-mails or their digest, whichever the e-mail was. Only the SHA-256 of its token
    is stored; it does not expire (an old e-mail must still unsubscribe), and goes with its
    owner."""

    __tablename__ = "unsubscribe_link"
    __table_args__ = (
        enum_check("topic", UnsubscribeTopic),
        Index("ix_unsubscribe_link_owner_id", "owner_id"),
    )

    id: uuid.UUID = _uuid_pk()
    token_hash: str = Field(sa_type=String(64), unique=True)
    owner_id: str = Field(
        sa_type=OWNER_ID_TYPE, sa_column_args=[ForeignKey("owner.id", ondelete="CASCADE")]
    )
    topic: str = Field(sa_type=String(20))
    created_at: datetime = _instant_column()
