"""JSON bodies, parsed with one nesting limit that every request body passes through.

Deep nesting is refused before it can exhaust the parser's or a validator's recursion:
REST bodies through ``app.routing.JsonRoute``, event and webhook bodies where they are mapped.
"""

import json
import re
from typing import Any

# No body the API takes nests deeper than a handful of levels; this leaves room to spare.
MAX_DEPTH = 64

# A JSON string (skipped whole, so that brackets inside it do not count) or a bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class TooDeep(json.JSONDecodeError):
    """A body nested deeper than MAX_DEPTH; a JSONDecodeError, so that FastAPI answers 422."""

    def __init__(self, doc: str, pos: int) -> None:
        super().__init__(f"nested deeper than {MAX_DEPTH} levels", doc, pos)


def _too_deep_at(body: bytes) -> int | None:
    """Where the body first opens its (MAX_DEPTH + 1)-th level, or None."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:  # cannot be deeper: the usual case
        return None
    depth = 0
    for token in _TOKENS.finditer(body):
        char = body[token.start()]
        if char in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return token.start()
        elif char in b"]}":
            depth -= 1
    return None


def loads(body: bytes) -> Any:
    """``json.loads`` that raises TooDeep (a ValueError) for nesting over MAX_DEPTH."""
    position = _too_deep_at(body)
    if position is not None:
        raise TooDeep("", position)
    return json.loads(body)
