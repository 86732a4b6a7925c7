"""Versioned rows: the ETag that names a row's version, and the If-Match check a change of
it passes (optimistic concurrency, the same for every resource that has a version)."""

import uuid
from typing import Protocol

from app.errors import PreconditionFailed


class Versioned(Protocol):
    """A row whose version counts its changes: its ETag says which version it is."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def version(self) -> int: ...


def etag(row: Versioned) -> str:
    return f'"{row.id.hex}-{row.version}"'


def check_if_match(row: Versioned, if_match: str | None, what: str) -> None:
    """If-Match compares strongly (RFC 9110, 13.1.1); ``*`` matches any version. Routes
    require one (``require_if_match``) for PATCH and DELETE alike; None skips the check,
    for callers that are not HTTP requests."""
    if if_match is None:
        return
    tags = {t.strip() for t in if_match.split(",")}
    if "*" not in tags and etag(row) not in tags:
        raise PreconditionFailed(
            f"The {what} has changed (current ETag {etag(row)}); GET it and retry."
        )
