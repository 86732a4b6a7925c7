"""Every table of nextstep, its enums, and the metadata naming convention: importing this
package registers every table (what Alembic's env does), and every name is importable
from here (``from app.models import Interview, utcnow``).

Current state lives in ``interview`` and ``commitment``; their history lives in
``timeline_entry`` (every change, with the instant it took effect). The history is
the truth: after any change the subject's state is recomputed by replaying its
entries in effect order, which is what makes event application order-independent.
``commitment_version`` keeps one row per state a commitment was in, with
``valid_from``/``valid_to`` in effect time, so "what was overdue at T" is one
indexed query, the same one that answers "what is overdue now".

``base`` holds what tables are built with (a module adding tables of its own imports
those helpers from here), ``enums`` the string enums, and one module per group of tables.
"""

from app.models.access import ApiKey, IdempotencyRecord
from app.models.base import (
    _NULLABLE_JSON,
    UTCDateTime,
    _instant_column,
    _uuid_pk,
    enum_check,
    ordered_uuid,
    utcnow,
)
from app.models.deadlines import Calendar, DeadlinePolicy
from app.models.deliveries import Delivery
from app.models.enums import (
    Channel,
    CommitmentStatus,
    ContactChannel,
    ContactDirection,
    DeadlineBasis,
    DeliveryResult,
    InterviewStatus,
    OwedBy,
    OwnerRole,
    Scope,
    TimelineKind,
)
from app.models.interviews import (
    Commitment,
    CommitmentVersion,
    Contact,
    Interview,
    StatusLink,
    TimelineEntry,
)
from app.models.outbound import (
    DigestRun,
    Endpoint,
    EndpointKind,
    EventType,
    Message,
    MessageAttempt,
    MessageChannel,
    MessageStatus,
    MessageType,
    Reminder,
    ReminderRule,
    ReminderState,
)
from app.models.owners import (
    ActionLink,
    CalendarFeed,
    Owner,
    UnsubscribeLink,
    UnsubscribeTopic,
)

__all__ = [
    "_NULLABLE_JSON",
    "ActionLink",
    "ApiKey",
    "Calendar",
    "CalendarFeed",
    "Channel",
    "Commitment",
    "CommitmentStatus",
    "CommitmentVersion",
    "Contact",
    "ContactChannel",
    "ContactDirection",
    "DeadlineBasis",
    "DeadlinePolicy",
    "Delivery",
    "DeliveryResult",
    "DigestRun",
    "Endpoint",
    "EndpointKind",
    "EventType",
    "IdempotencyRecord",
    "Interview",
    "InterviewStatus",
    "Message",
    "MessageAttempt",
    "MessageChannel",
    "MessageStatus",
    "MessageType",
    "OwedBy",
    "Owner",
    "OwnerRole",
    "Reminder",
    "ReminderRule",
    "ReminderState",
    "Scope",
    "StatusLink",
    "TimelineEntry",
    "TimelineKind",
    "UTCDateTime",
    "UnsubscribeLink",
    "UnsubscribeTopic",
    "_instant_column",
    "_uuid_pk",
    "enum_check",
    "ordered_uuid",
    "utcnow",
]
