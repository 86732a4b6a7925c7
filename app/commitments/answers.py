"""How the commitments routes answer: a list's page or its CSV from one query (its cursor
resolved, computed at one instant), and a create once per Idempotency-Key."""

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import Response
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from app.csvstream import CSV_PAGE, csv_response, wants_csv
from app.db import read_session
from app.http import page_response
from app.models import utcnow
from app.pagination import decode_cursor, invalid_cursor
from app.schemas import ListQuery

Q = TypeVar("Q", bound=ListQuery)
M = TypeVar("M", bound=BaseModel)


def resolve(query: Q) -> tuple[Q, list[str] | None]:
    """The query a cursor carries (a new limit still applies), and where it left off."""
    if query.cursor is None:
        return query, None
    cursor = decode_cursor(query.cursor, set(type(query).model_fields))
    try:
        resolved = type(query).model_validate({**cursor.params, "limit": query.limit})
    except ValidationError:
        raise invalid_cursor() from None
    return resolved, cursor.after


# A list's rows: (session, query, where the last page left off) -> (items, next cursor).
Fetch = Callable[[Session, Q, list[str] | None], tuple[list[Any], str | None]]


# A list computed at one instant: (session, query, where the last page left off, instant).
ListAt = Callable[[Session, Q, list[str] | None, datetime], tuple[list[Any], str | None]]


def at_as_of(list_at: ListAt[Q]) -> Callable[[Q], Fetch[Q]]:
    """The fetch of a list computed at the query's ``as_of``, else now."""

    def fetch_at(resolved: Q) -> Fetch[Q]:
        as_of = getattr(resolved, "as_of", None) or utcnow()
        return lambda s, q, a: list_at(s, q, a, as_of)

    return fetch_at


def stream(model: type[BaseModel], query: Q, fetch: Fetch[Q], filename: str) -> Response:
    full = query.model_copy(update={"limit": CSV_PAGE, "cursor": None})

    def fetch_page(cursor: str | None) -> tuple[list[Any], str | None]:
        after = decode_cursor(cursor, set(type(query).model_fields)).after if cursor else None
        with read_session() as session:
            return fetch(session, full, after)

    return csv_response(model, fetch_page, filename)


def listing(
    query: Q,
    accept: str | None,
    model: type[BaseModel],
    filename: str,
    fetch_at: Callable[[Q], Fetch[Q]],
) -> Callable[[Session], Response]:
    """A list route's answer: the page the query (or its cursor) asks for, or every row as CSV.

    ``fetch_at`` gets the resolved query and returns its fetch, bound to the one instant
    the whole answer is computed at (the query's ``as_of``, or now).
    """

    def answer(session: Session) -> Response:
        resolved, after = resolve(query)
        fetch = fetch_at(resolved)
        if wants_csv(accept):
            return stream(model, resolved, fetch, filename)
        return page_response(*fetch(session, resolved, after))

    return answer
