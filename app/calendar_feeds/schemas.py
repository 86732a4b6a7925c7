"""Calendar feeds as the API shows them."""

import uuid

from pydantic import BaseModel, Field

from app.fields import Instant


class CalendarFeedOut(BaseModel):
    id: uuid.UUID
    owner_id: str
    created_at: Instant


class CalendarFeedCreated(CalendarFeedOut):
    url: str = Field(
        description="The address to subscribe to from a calendar (Google Calendar: From URL; "
        "Outlook: Subscribe from web). Shown only in this answer: only a hash of its token "
        "is kept.",
        examples=["http://127.0.0.1:8000/ics/0mT2b3h1cQyXw5yJ1b2k3l4m5n6o7p8q9r0s1t2u3v4.ics"],
    )
