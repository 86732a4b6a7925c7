"""A delivery as received, what it maps to, and the columns it is stored with."""

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app import tracing
from app.errors import InvalidInput
from app.events.commands import Mapped, MappingError
from app.events.mapping import map_delivery
from app.models import DeliveryResult


@dataclass(frozen=True)
class Inbound:
    """One authenticated delivery, as received."""

    source: str
    kind: str
    delivery_key: str
    body: bytes
    headers: dict[str, str]
    received_at: datetime
    # The trace context of the request that brought it (app/tracing.py), when traced, taken
    # where it is built: whichever task stores it later (events/batching.py) joins that trace.
    trace: Any = field(default_factory=tracing.current_context, compare=False, repr=False)


@dataclass(frozen=True)
class Receipt:
    """What a delivery is answered: its id and status (applied, duplicate, …)."""

    delivery_id: uuid.UUID
    status: str


class InvalidDelivery(InvalidInput):
    """Signed, stored as rejected, and refused with 422."""


# What a delivery maps to, or why it cannot be mapped.
Mapping = tuple[Mapped, None] | tuple[None, str]


def map_inbound(inbound: Inbound) -> Mapping:
    try:
        return map_delivery(inbound.kind, inbound.body, inbound.received_at), None
    except MappingError as exc:
        return None, str(exc)[:2000]


# Never the signature: stored deliveries are shown to admins and are not re-verified.
_HEADERS_KEPT = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "content-type",
        "user-agent",
        "greenhouse-event-id",
        "x-request-id",
    }
)


def delivery_values(inbound: Inbound, mapping: Mapping) -> dict[str, Any]:
    """The columns a delivery is stored with, before it is applied: the one list of them
    (the bulk path adds its id and outcome and inserts these as they are)."""
    mapped, error = mapping
    return {
        "source": inbound.source,
        "delivery_key": inbound.delivery_key,
        "kind": inbound.kind,
        "event_type": mapped.event_type[:100] if mapped else None,
        "occurred_at": mapped.occurred_at if mapped else None,
        "body": inbound.body,
        "body_sha256": hashlib.sha256(inbound.body).hexdigest(),
        "headers": {k: v for k, v in inbound.headers.items() if k in _HEADERS_KEPT},
        "received_at": inbound.received_at,
        "result": (DeliveryResult.rejected if error else DeliveryResult.ignored).value,
        "error": error,
    }
