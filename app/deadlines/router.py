"""HTTP for calendars, deadline policies and a commitment's deadline."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.auth import AdminKey, ReadKey, read
from app.csvstream import CSV_CONTENT
from app.db import WriteSessionDep
from app.deadlines import policy_admin, service
from app.deadlines.schemas import (
    CalendarCreate,
    CalendarOut,
    CalendarPatch,
    CalendarQuery,
    ComputeIn,
    ComputeOut,
    DeadlineOut,
    PolicyCreate,
    PolicyOut,
    PolicyPatch,
    PolicyQuery,
)
from app.http import (
    IF_MATCH_REQUIRED,
    LOCATION,
    READ_ERRORS,
    AcceptHeader,
    IdempotencyKey,
    IfMatch,
    etag,
    etag_header,
    idempotent,
    listing,
    require_if_match,
    resource,
)
from app.models import Calendar, DeadlinePolicy, utcnow
from app.routing import JsonRoute
from app.schemas import Page, problems

router = APIRouter(prefix="/v1", tags=["deadlines"], route_class=JsonRoute)

ETAG = etag_header("Send it back as If-Match to change it.")


def _calendar(response: Response, row: Calendar, status_code: int | None = None) -> CalendarOut:
    location = f"/v1/calendars/{row.id}"
    return resource(response, service.calendar_out(row), etag(row), location, status_code)


def _policy(response: Response, row: DeadlinePolicy, status_code: int | None = None) -> PolicyOut:
    location = f"/v1/deadline-policies/{row.id}"
    return resource(response, policy_admin.policy_out(row), etag(row), location, status_code)


# --- calendars -----------------------------------------------------------------------------


@router.post(
    "/calendars",
    operation_id="createCalendar",
    status_code=201,
    response_model=CalendarOut,
    responses={201: {"headers": {**LOCATION, **ETAG}}, **problems(401, 403, 409, 422)},
)
def create_calendar(
    session: WriteSessionDep,
    caller: AdminKey,
    body: CalendarCreate,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CalendarOut | Response:
    """A calendar: time zone, hours per weekday, public holidays, closed dates. The first
    calendar, or one sent with `is_default: true`, is the default."""

    def create() -> CalendarOut:
        row = service.create_calendar(session, body, utcnow())
        return _calendar(response, row, 201)

    fingerprint = "POST /v1/calendars " + body.model_dump_json()
    return idempotent(session, caller, idempotency_key, fingerprint, response, create)


@router.get(
    "/calendars",
    operation_id="listCalendars",
    response_model=Page[CalendarOut],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_calendars(
    access: ReadKey, query: Annotated[CalendarQuery, Query()], accept: AcceptHeader = None
) -> Response:
    """Calendars, oldest first."""
    answer = listing(
        query.limit, query.cursor, accept, CalendarOut, "calendars", service.list_calendars
    )
    return await read(access, answer)


@router.get(
    "/calendars/{calendar_id}",
    operation_id="getCalendar",
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 422)},
)
async def get_calendar(access: ReadKey, calendar_id: uuid.UUID, response: Response) -> CalendarOut:
    """One calendar, with its ETag for a later PATCH."""
    return _calendar(response, await read(access, lambda s: service.get_calendar(s, calendar_id)))


@router.patch(
    "/calendars/{calendar_id}",
    operation_id="updateCalendar",
    openapi_extra=IF_MATCH_REQUIRED,
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 409, 412, 422, 428)},
)
def update_calendar(
    session: WriteSessionDep,
    _caller: AdminKey,
    calendar_id: uuid.UUID,
    body: CalendarPatch,
    response: Response,
    if_match: IfMatch = None,
) -> CalendarOut:
    """Change a calendar (its version goes up). Due times computed before keep theirs."""
    tag = require_if_match(
        if_match, "/v1/calendars/{id}", lambda: service.get_calendar(session, calendar_id)
    )
    calendar = service.update_calendar(session, calendar_id, body, tag, utcnow())
    return _calendar(response, calendar)


@router.delete(
    "/calendars/{calendar_id}",
    operation_id="deleteCalendar",
    status_code=204,
    openapi_extra=IF_MATCH_REQUIRED,
    responses=problems(401, 403, 404, 409, 412, 422, 428),
)
def delete_calendar(
    session: WriteSessionDep,
    _caller: AdminKey,
    calendar_id: uuid.UUID,
    if_match: IfMatch = None,
) -> Response:
    """Delete a calendar that no policy or owner uses (the default only when it is the last)."""
    tag = require_if_match(
        if_match, "/v1/calendars/{id}", lambda: service.get_calendar(session, calendar_id)
    )
    service.delete_calendar(session, calendar_id, tag, utcnow())
    return Response(status_code=204)


@router.post(
    "/calendars/{calendar_id}/compute",
    operation_id="computeDeadline",
    responses=problems(401, 403, 404, 422),
)
async def compute(access: ReadKey, calendar_id: uuid.UUID, body: ComputeIn) -> ComputeOut:
    """The due time a rule gives from `start` on this calendar, and the holidays and
    closed dates it passed over: what a policy would compute."""
    return await read(
        access, lambda s: service.compute_on_calendar(s, calendar_id, body.start, body.rule)
    )


# --- deadline policies ---------------------------------------------------------------------


@router.post(
    "/deadline-policies",
    operation_id="createDeadlinePolicy",
    status_code=201,
    response_model=PolicyOut,
    responses={201: {"headers": {**LOCATION, **ETAG}}, **problems(401, 403, 409, 422)},
)
def create_policy(
    session: WriteSessionDep,
    caller: AdminKey,
    body: PolicyCreate,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> PolicyOut | Response:
    """A policy: due times for steps agreed without one (`due_rule`) and a default step for
    interviews completed without one (`default_step`)."""

    def create() -> PolicyOut:
        row = policy_admin.create_policy(session, body, utcnow())
        return _policy(response, row, 201)

    fingerprint = "POST /v1/deadline-policies " + body.model_dump_json()
    return idempotent(session, caller, idempotency_key, fingerprint, response, create)


@router.get(
    "/deadline-policies",
    operation_id="listDeadlinePolicies",
    response_model=Page[PolicyOut],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_policies(
    access: ReadKey, query: Annotated[PolicyQuery, Query()], accept: AcceptHeader = None
) -> Response:
    """Policies in the order they apply (position, lower first)."""
    answer = listing(
        query.limit,
        query.cursor,
        accept,
        PolicyOut,
        "deadline-policies",
        policy_admin.list_policies,
    )
    return await read(access, answer)


@router.get(
    "/deadline-policies/{policy_id}",
    operation_id="getDeadlinePolicy",
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 422)},
)
async def get_policy(access: ReadKey, policy_id: uuid.UUID, response: Response) -> PolicyOut:
    """One policy, with its ETag for a later PATCH."""
    return _policy(response, await read(access, lambda s: policy_admin.get_policy(s, policy_id)))


@router.patch(
    "/deadline-policies/{policy_id}",
    operation_id="updateDeadlinePolicy",
    openapi_extra=IF_MATCH_REQUIRED,
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 412, 422, 428)},
)
def update_policy(
    session: WriteSessionDep,
    _caller: AdminKey,
    policy_id: uuid.UUID,
    body: PolicyPatch,
    response: Response,
    if_match: IfMatch = None,
) -> PolicyOut:
    """Change a policy. Due times and steps it made before stay as they are."""
    tag = require_if_match(
        if_match, "/v1/deadline-policies/{id}", lambda: policy_admin.get_policy(session, policy_id)
    )
    return _policy(response, policy_admin.update_policy(session, policy_id, body, tag, utcnow()))


@router.delete(
    "/deadline-policies/{policy_id}",
    operation_id="deleteDeadlinePolicy",
    status_code=204,
    openapi_extra=IF_MATCH_REQUIRED,
    responses=problems(401, 403, 404, 412, 422, 428),
)
def delete_policy(
    session: WriteSessionDep,
    _caller: AdminKey,
    policy_id: uuid.UUID,
    if_match: IfMatch = None,
) -> Response:
    """Delete a policy; the steps and due times it made stay."""
    tag = require_if_match(
        if_match, "/v1/deadline-policies/{id}", lambda: policy_admin.get_policy(session, policy_id)
    )
    policy_admin.delete_policy(session, policy_id, tag)
    return Response(status_code=204)


# --- a commitment's deadline ---------------------------------------------------------------


@router.get(
    "/commitments/{commitment_id}/deadline",
    operation_id="getCommitmentDeadline",
    responses=problems(401, 403, 404, 422),
)
async def get_deadline(access: ReadKey, commitment_id: uuid.UUID) -> DeadlineOut:
    """How the step's due time was made: explicitly, or by which policy, rule and calendar
    (its version and zone then), counted from when, and which closed days it passed over."""
    return await read(access, lambda s: service.deadline_of(s, commitment_id))
