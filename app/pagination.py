"""Opaque keyset cursors that carry the query they belong to."""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

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
        data = json.loads(raw)
        after, params = data["a"], data["p"]
        if not isinstance(after, list) or not isinstance(params, dict):
            raise TypeError
        if not all(isinstance(v, str) for v in after) or not set(params) <= expected:
            raise TypeError
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not a cursor this endpoint issued.",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
        ) from None
    return Cursor(after=after, params=params)
