"""Secret URL tokens (status links, calendar feeds): 256 random bits, shown once in the URL
and stored only as their SHA-256, so that a copy of the database opens nothing."""

import hashlib
import re
import secrets

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
