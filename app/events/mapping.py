"""What a stored delivery asks for: its kind's mapper, and the checks every delivery passes."""

from collections.abc import Callable
from datetime import datetime, timedelta

from app import jsonbody
from app.config import get_settings
from app.events import canonical
from app.events.commands import Mapped, MappingError
from app.events.vendors import ashby, greenhouse, lever

Mapper = Callable[[bytes, datetime], Mapped]


def _vendor(map_payload: Callable[[dict[str, object], datetime], Mapped]) -> Mapper:
    def mapper(body: bytes, received_at: datetime) -> Mapped:
        try:
            payload = jsonbody.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MappingError(f"body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise MappingError("body is not a JSON object")
        if _has_nul(payload):
            # PostgreSQL text cannot hold NUL, and no vendor field needs one.
            raise MappingError("body has a NUL character in a string")
        return map_payload(payload, received_at)

    return mapper


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


MAPPERS: dict[str, Mapper] = {
    "canonical": lambda body, _received_at: canonical.map_event(body),
    "greenhouse": _vendor(greenhouse.map_event),
    "lever": _vendor(lever.map_event),
    "ashby": _vendor(ashby.map_event),
}


def map_delivery(kind: str, body: bytes, received_at: datetime) -> Mapped:
    """What a delivery asks for; MappingError if it cannot be applied as it stands.

    An event may not claim to have happened later than it was received (plus the
    signature's tolerance for clock skew): a step agreed in the future would count as
    open and late in one list and not yet exist in another.
    """
    mapped = MAPPERS[kind](body, received_at)
    latest = received_at + timedelta(seconds=get_settings().webhook_tolerance_seconds)
    occurred_at = max((command.occurred_at for command in mapped.commands), default=None)
    if occurred_at is not None and occurred_at > latest:
        raise MappingError(
            f"occurred_at {occurred_at.isoformat()} is later than the moment the event was "
            f"received ({received_at.isoformat()}): an event cannot come from the future"
        )
    return mapped
