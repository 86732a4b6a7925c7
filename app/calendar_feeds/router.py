"""HTTP for calendar feeds: the /v1 API that makes and revokes them, and the feed itself
(/ics/<token>.ics), which calendar clients fetch without a key."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from sqlmodel import Session

from app.auth import AdminKey, ReadKey, read
from app.calendar_feeds import service
from app.calendar_feeds.schemas import CalendarFeedCreated, CalendarFeedOut
from app.csvstream import CSV_CONTENT
from app.db import SessionDep, WriteSessionDep
from app.errors import problem
from app.http import AcceptHeader, Fetch, listing
from app.models import CalendarFeed, utcnow
from app.owners.schemas import OwnerIdPath
from app.routing import JsonRoute
from app.schemas import ListQuery, Page, problems

router = APIRouter(prefix="/v1", tags=["calendar feeds"], route_class=JsonRoute)
feeds = APIRouter(include_in_schema=False)

CALENDAR = "text/calendar; charset=utf-8"
# A subscribed calendar revalidates each time (cheap with the ETag); no shared cache keeps
# an owner's promises; the secret URL is not sent on as a Referer.
FEED_HEADERS = {
    "Cache-Control": "private, no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


def _feed_out(feed: CalendarFeed) -> CalendarFeedOut:
    return CalendarFeedOut.model_validate(feed, from_attributes=True)


@router.post(
    "/owners/{owner_id}/feeds",
    operation_id="createCalendarFeed",
    status_code=201,
    responses=problems(401, 403, 404, 422),
)
def create_calendar_feed(
    session: WriteSessionDep,
    caller: AdminKey,
    owner_id: OwnerIdPath,
    request: Request,
    response: Response,
) -> CalendarFeedCreated:
    """A private iCalendar feed of the owner's open steps, to subscribe to from their
    calendar. Its URL is in this answer only.

    No Idempotency-Key: a stored answer would keep the URL, which is kept nowhere else.
    """
    feed, token = service.create_feed(session, owner_id, caller.actor, utcnow())
    response.headers["Cache-Control"] = "no-store"
    url = service.feed_url(token, str(request.base_url))
    return CalendarFeedCreated(**_feed_out(feed).model_dump(), url=url)


def _feeds_of(owner_id: str) -> Fetch:
    def fetch(
        session: Session, limit: int, after: list[str] | None
    ) -> tuple[list[CalendarFeedOut], list[str] | None]:
        items, mark = service.list_feeds(session, owner_id, limit, after)
        return [_feed_out(f) for f in items], mark

    return fetch


@router.get(
    "/owners/{owner_id}/feeds",
    operation_id="listCalendarFeeds",
    response_model=Page[CalendarFeedOut],
    responses={**CSV_CONTENT, **problems(401, 403, 404, 422)},
)
async def list_calendar_feeds(
    access: ReadKey,
    owner_id: OwnerIdPath,
    query: Annotated[ListQuery, Query()],
    accept: AcceptHeader = None,
) -> Response:
    """The owner's feeds, oldest first, without their URLs."""
    fetch = _feeds_of(owner_id)
    answer = listing(query.limit, query.cursor, accept, CalendarFeedOut, "calendar-feeds", fetch)
    return await read(access, answer)


@router.delete(
    "/feeds/{feed_id}",
    operation_id="revokeCalendarFeed",
    status_code=204,
    response_class=Response,
    responses=problems(401, 403, 404, 422),
)
def revoke_calendar_feed(
    session: WriteSessionDep, _caller: AdminKey, feed_id: uuid.UUID
) -> Response:
    """Revoke a feed: its URL answers 404 from now on, and subscribed calendars stop
    updating (they keep what they last fetched until the subscription is removed)."""
    service.revoke_feed(session, feed_id)
    return Response(status_code=204)


def _matches(if_none_match: str, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110 13.1.2).
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


@feeds.get("/ics/{token}.ics")
def calendar_feed(
    session: SessionDep,
    token: str,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The owner's open steps as iCalendar events, for their calendar to subscribe to."""
    owner = service.feed_owner(session, token)
    if owner is None:
        # No instance: the path holds the token.
        return problem(404, "No such calendar feed.", "/ics", headers=FEED_HEADERS)
    document = service.feed_document(session, owner, utcnow())
    headers = {**FEED_HEADERS, "ETag": document.etag}
    if if_none_match is not None and _matches(if_none_match, document.etag):
        return Response(status_code=304, headers=headers)
    return Response(document.body, media_type=CALENDAR, headers=headers)
