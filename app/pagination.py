"""Opaque keyset cursors that carry the query they belong to."""

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app import jsonbody
from app.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended (``after``) and the query's other parameters."""

    after: list[str]
    params: dict[str, Any]


def encode_cursor(after: list[str], params: dict[str, Any]) -> str:
    raw = json.dumps({"a": after, "p": params}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str, expected: set[str]) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = jsonbody.loads(raw)
        after, params = data["a"], data["p"]
        if not isinstance(after, list) or not isinstance(params, dict):
            raise TypeError
        if not all(isinstance(v, str) for v in after) or not set(params) <= expected:
            raise TypeError
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise invalid_cursor() from None
    return Cursor(after=after, params=params)


def invalid_cursor() -> InvalidInput:
    return InvalidInput(
        "cursor is not a cursor this endpoint issued.",
        errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
    )


def aware_instant(value: str) -> datetime:
    """An instant a cursor carries, in UTC; one without a zone, or with no UTC form that
    Python can hold (9999-12-31T23:59:59-12:00), cannot have come from a cursor."""
    moment = datetime.fromisoformat(value)
    if moment.utcoffset() is None:
        raise ValueError("naive instant")
    return moment.astimezone(UTC)  # OverflowError beyond year 9999


def keyset(after: list[str] | None, *parsers: Callable[[str], Any]) -> tuple[Any, ...] | None:
    """The sort key where the previous page ended, parsed; None on the first page.

    The cursor is opaque but not signed: a value that does not parse is the
    client's error, not the server's.
    """
    if after is None:
        return None
    if len(after) != len(parsers):
        raise invalid_cursor()
    try:
        return tuple(parse(value) for parse, value in zip(parsers, after, strict=True))
    except (ValueError, TypeError, OverflowError):
        raise invalid_cursor() from None
