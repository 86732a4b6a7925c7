"""HTTP for the owner directory and the calendar each owner works by."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import ValidationError
from sqlmodel import Session

from app.auth import AdminKey, ReadKey, read
from app.csvstream import CSV_CONTENT, CSV_PAGE, csv_response, wants_csv
from app.db import WriteSessionDep, read_session
from app.http import (
    IF_MATCH_REQUIRED,
    LOCATION,
    READ_ERRORS,
    AcceptHeader,
    IfMatch,
    etag_header,
    page_response,
    require_if_match,
    resource,
)
from app.models import Owner, utcnow
from app.owners import service
from app.owners.schemas import (
    DirectoryOwner,
    OwnerCalendarIn,
    OwnerCalendarOut,
    OwnerIdPath,
    OwnerIn,
    OwnerPatch,
    OwnerQuery,
)
from app.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.routing import JsonRoute
from app.schemas import Page, problems

router = APIRouter(prefix="/v1", tags=["owners"], route_class=JsonRoute)

OptionalIfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="The ETag from the last GET; 412 when stale."),
]
ETAG = etag_header("Send it back as If-Match to change it.")


def _owner(response: Response, row: Owner, status_code: int | None = None) -> DirectoryOwner:
    location = f"/v1/owners/{row.id}"
    return resource(response, service.owner_out(row), service.etag(row), location, status_code)


@router.put(
    "/owners/{owner_id}",
    operation_id="putOwner",
    responses={
        200: {"description": "Replaced", "headers": ETAG},
        201: {"description": "Created", "headers": {**LOCATION, **ETAG}},
        **problems(401, 403, 412, 422),
    },
)
def put_owner(
    session: WriteSessionDep,
    _caller: AdminKey,
    owner_id: OwnerIdPath,
    body: OwnerIn,
    response: Response,
    if_match: OptionalIfMatch = None,
) -> DirectoryOwner:
    """Create the owner (201) or replace all of it (200; a field left out takes its default,
    the version goes up). From then on events from the ATS never change it."""
    row, created = service.put_owner(session, owner_id, body, if_match, utcnow())
    return _owner(response, row, 201 if created else 200)


def _owner_listing(query: OwnerQuery, accept: str | None) -> Callable[[Session], Response]:
    """A page of owners (a cursor carries the filters), or with ``Accept: text/csv`` every
    matching owner."""
    names = set(OwnerQuery.model_fields)
    after: list[str] | None = None
    if query.cursor is not None:
        cursor = decode_cursor(query.cursor, names)
        try:
            query = OwnerQuery.model_validate({**cursor.params, "limit": query.limit})
        except ValidationError:
            raise invalid_cursor() from None
        after = cursor.after
    params = query.model_dump(mode="json", exclude={"cursor"}, exclude_none=True)

    def next_cursor(key: list[str] | None) -> str | None:
        return encode_cursor(key, params) if key else None

    if wants_csv(accept):
        full = query.model_copy(update={"limit": CSV_PAGE, "cursor": None})

        def fetch_page(token: str | None) -> tuple[list[Any], str | None]:
            start = decode_cursor(token, names).after if token else None
            with read_session() as session:
                items, key = service.list_owners(session, full, start)
            return items, next_cursor(key)

        return lambda _session: csv_response(DirectoryOwner, fetch_page, "owners")

    def page(session: Session) -> Response:
        items, key = service.list_owners(session, query, after)
        return page_response(items, next_cursor(key))

    return page


@router.get(
    "/owners",
    operation_id="listOwners",
    response_model=Page[DirectoryOwner],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_owners(
    access: ReadKey, query: Annotated[OwnerQuery, Query()], accept: AcceptHeader = None
) -> Response:
    """Owners by id."""
    return await read(access, _owner_listing(query, accept))


@router.get(
    "/owners/{owner_id}",
    operation_id="getOwner",
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 422)},
)
async def get_owner(access: ReadKey, owner_id: OwnerIdPath, response: Response) -> DirectoryOwner:
    """One owner, with its ETag for a later PATCH."""
    return _owner(response, await read(access, lambda s: service.get_owner(s, owner_id)))


@router.patch(
    "/owners/{owner_id}",
    operation_id="updateOwner",
    openapi_extra=IF_MATCH_REQUIRED,
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 412, 422, 428)},
)
def update_owner(
    session: WriteSessionDep,
    _caller: AdminKey,
    owner_id: OwnerIdPath,
    body: OwnerPatch,
    response: Response,
    if_match: IfMatch = None,
) -> DirectoryOwner:
    """Change some of the owner's fields. From then on events from the ATS never change it."""
    tag = require_if_match(
        if_match, "/v1/owners/{owner_id}", lambda: service.get_owner(session, owner_id)
    )
    return _owner(response, service.update_owner(session, owner_id, body, tag, utcnow()))


@router.delete(
    "/owners/{owner_id}",
    operation_id="deleteOwner",
    status_code=204,
    responses=problems(401, 403, 404, 412, 422),
)
def delete_owner(
    session: WriteSessionDep,
    _caller: AdminKey,
    owner_id: OwnerIdPath,
    if_match: OptionalIfMatch = None,
) -> Response:
    """Remove the owner from the directory; steps keep the owner id they carry."""
    service.delete_owner(session, owner_id, if_match)
    return Response(status_code=204)


# --- the calendar an owner works by --------------------------------------------------------


@router.put(
    "/owners/{owner_id}/calendar",
    operation_id="setOwnerCalendar",
    responses=problems(401, 403, 422),
)
def set_owner_calendar(
    session: WriteSessionDep, _caller: AdminKey, owner_id: OwnerIdPath, body: OwnerCalendarIn
) -> OwnerCalendarOut:
    """The calendar an owner works by: their steps' due times are counted on it. The same
    setting as the owner's `calendar_id`; an owner not in the directory yet is added."""
    return service.set_owner_calendar(session, owner_id, body.calendar_id, utcnow())


@router.get(
    "/owners/{owner_id}/calendar",
    operation_id="getOwnerCalendar",
    responses=problems(401, 403, 404, 422),
)
async def get_owner_calendar(access: ReadKey, owner_id: OwnerIdPath) -> OwnerCalendarOut:
    """The calendar an owner works by; 404 when they have none of their own."""
    return await read(access, lambda s: service.get_owner_calendar(s, owner_id))


@router.delete(
    "/owners/{owner_id}/calendar",
    operation_id="deleteOwnerCalendar",
    status_code=204,
    responses=problems(401, 403, 404, 422),
)
def delete_owner_calendar(
    session: WriteSessionDep, _caller: AdminKey, owner_id: OwnerIdPath
) -> Response:
    """The owner works by the policy's or the default calendar again."""
    service.delete_owner_calendar(session, owner_id, utcnow())
    return Response(status_code=204)
