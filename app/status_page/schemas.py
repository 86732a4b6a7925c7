"""Status links as the API takes and shows them, and the status page as the candidate sees it."""

import uuid
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, Field

from app.fields import Instant, Timestamp
from app.schemas import Strict


class StatusLinkIn(Strict):
    expires_at: Timestamp | None = Field(
        default=None,
        description="When the link stops working: in the future, at most 180 days ahead. "
        "Default: 30 days from now.",
    )


class StatusLinkOut(BaseModel):
    id: uuid.UUID
    interview_id: uuid.UUID
    expires_at: Instant
    created_at: Instant
    revoked_at: Instant | None
    last_nudged_at: Instant | None = Field(description="The candidate's last nudge, if any.")


class StatusLinkCreated(StatusLinkOut):
    url: str = Field(
        description="The page to send to the candidate. Shown only in this answer: only a "
        "hash of its token is kept.",
        examples=["http://127.0.0.1:8000/s/0mT2b3h1cQyXw5yJ1b2k3l4m5n6o7p8q9r0s1t2u3v4"],
    )


class Nudge(StrEnum):
    """What became of a nudge."""

    recorded = "recorded"
    # The link was already nudged that day (UTC): nothing recorded.
    already = "already"


@dataclass(frozen=True)
class PromisedStep:
    """An open company-owed step as the candidate may see it."""

    sentence: str
    promised_at: str  # ISO 8601, for <time datetime>
    promised: str  # written out in the page's zone
    late: bool


@dataclass(frozen=True)
class StatusPage:
    """Everything the page shows, already worded; nothing else reaches the template."""

    stage: str | None
    steps: list[PromisedStep]
    waiting_since: str | None
    waiting_for: str | None
    chased: int
    completed_on: list[str]
    nudged_today_at: str | None
    time_zone: str  # as written: "UTC", "New York time"
