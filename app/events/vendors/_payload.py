"""Typed reads from a vendor's JSON, shared by the mapping modules.

Every reader takes the parent object, the key and the parent's dotted path, and raises
``MappingError`` naming the full path when the value is missing or of the wrong type,
so a rejected delivery says exactly which field was wrong. ``None`` (JSON null) counts
as absent for the optional readers: vendors send null and omit keys interchangeably.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from app.events.commands import MappingError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _wrong(path: str, expected: str, value: Any) -> MappingError:
    return MappingError(f"{path}: expected {expected}, got {_kind(value)}")


def root(payload: Any, name: str) -> dict[str, Any]:
    """The delivery body itself, which must be a JSON object."""
    if not isinstance(payload, dict):
        raise _wrong(name, "an object", payload)
    return payload


def _required(parent: dict[str, Any], key: str, path: str) -> Any:
    value = parent.get(key)
    if value is None:
        raise MappingError(f"{path}.{key}: missing")
    return value


def req_dict(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = _required(parent, key, path)
    if not isinstance(value, dict):
        raise _wrong(f"{path}.{key}", "an object", value)
    return value


def opt_dict(parent: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong(f"{path}.{key}", "an object", value)
    return value


def req_list(parent: dict[str, Any], key: str, path: str) -> list[Any]:
    value = _required(parent, key, path)
    if not isinstance(value, list):
        raise _wrong(f"{path}.{key}", "an array", value)
    return value


def opt_list(parent: dict[str, Any], key: str, path: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong(f"{path}.{key}", "an array", value)
    return value


def item_dict(value: Any, path: str) -> dict[str, Any]:
    """An element of an array that must be an object."""
    if not isinstance(value, dict):
        raise _wrong(path, "an object", value)
    return value


def req_str(parent: dict[str, Any], key: str, path: str) -> str:
    value = _required(parent, key, path)
    if not isinstance(value, str):
        raise _wrong(f"{path}.{key}", "a string", value)
    if not value.strip():
        raise MappingError(f"{path}.{key}: empty")
    return value


def opt_str(parent: dict[str, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong(f"{path}.{key}", "a string", value)
    return value or None


def _as_id(value: Any, path: str) -> str:
    # Greenhouse ids are JSON integers, Lever's and Ashby's are strings; commands carry
    # them as strings either way.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise _wrong(path, "an id (integer or non-empty string)", value)


def req_id(parent: dict[str, Any], key: str, path: str) -> str:
    return _as_id(_required(parent, key, path), f"{path}.{key}")


def opt_id(parent: dict[str, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is None:
        return None
    return _as_id(value, f"{path}.{key}")


def candidate_id(application: dict[str, Any], path: str) -> str:
    """The id of an application's ``candidate`` (Greenhouse and Ashby nest it alike)."""
    candidate = req_dict(application, "candidate", path)
    return req_id(candidate, "id", f"{path}.candidate")


def opt_int(parent: dict[str, Any], key: str, path: str) -> int | None:
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(f"{path}.{key}", "an integer", value)
    return value


def opt_iso_datetime(parent: dict[str, Any], key: str, path: str) -> datetime | None:
    """An ISO 8601 instant, in UTC; one without an offset is taken to be UTC already."""
    value = opt_str(parent, key, path)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise MappingError(f"{path}.{key}: not an ISO 8601 date-time: {value!r}") from None


def epoch_millis(value: int, path: str) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise MappingError(f"{path}: epoch milliseconds out of range: {value}") from None


def opt_epoch_millis(parent: dict[str, Any], key: str, path: str) -> datetime | None:
    value = opt_int(parent, key, path)
    if value is None:
        return None
    return epoch_millis(value, f"{path}.{key}")


def aware_utc(received_at: datetime) -> datetime:
    """``received_at`` comes from the caller's clock; a naive one is a bug there, not here."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return received_at.astimezone(UTC)
