"""Secret URL tokens (status links, calendar feeds): 256 random bits, shown once in the URL
and stored only as their SHA-256, so that a copy of the database opens nothing."""

import hashlib
import re
import secrets
from typing import Any, Protocol, TypeVar

from sqlmodel import Session, select

TOKEN_BYTES = 32
# What secrets.token_urlsafe(TOKEN_BYTES) returns: anything else is not looked up.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    """Whether ``token`` could have been made here (a cheap check before any lookup)."""
    return _TOKEN_SHAPE.match(token) is not None


class _Tokened(Protocol):
    token_hash: str


T = TypeVar("T", bound=_Tokened)


def find_by_token(session: Session, model: type[T], token: str, *, lock: bool = False) -> T | None:
    """The row of ``model`` whose ``token_hash`` is the token's; None for a token that is
    malformed or unknown (alike: the caller answers both the same way)."""
    if not well_formed(token):
        return None
    column: Any = model.token_hash
    statement = select(model).where(column == hash_token(token))
    return session.exec(statement.with_for_update() if lock else statement).first()
