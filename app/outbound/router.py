"""HTTP for endpoints, reminder rules, messages and a commitment's reminders."""

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
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
    IdempotencyKey,
    IfMatch,
    etag,
    etag_header,
    idempotent,
    listing,
    page_response,
    require_if_match,
    resource,
)
from app.models import utcnow
from app.models.outbound import Endpoint, ReminderRule
from app.outbound import admin
from app.outbound.schemas import (
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointPatch,
    EndpointQuery,
    MessageDetail,
    MessageOut,
    MessageQuery,
    MessageQueued,
    RecoverIn,
    Reminders,
    Requeued,
    RuleCreate,
    RuleOut,
    RulePatch,
    RuleQuery,
    SecretOut,
)
from app.pagination import decode_cursor, encode_cursor, invalid_cursor
from app.routing import JsonRoute
from app.schemas import Page, problems

router = APIRouter(prefix="/v1", tags=["outbound"], route_class=JsonRoute)

ETAG = etag_header("Send it back as If-Match to change it.")


def _endpoint(response: Response, row: Endpoint) -> EndpointOut:
    return resource(response, admin.endpoint_out(row), etag(row))


def _rule(response: Response, row: ReminderRule, status_code: int | None = None) -> RuleOut:
    location = f"/v1/reminder-rules/{row.id}"
    return resource(response, admin.rule_out(row), etag(row), location, status_code)


# --- endpoints -----------------------------------------------------------------------------


@router.post(
    "/endpoints",
    operation_id="createEndpoint",
    status_code=201,
    response_model=EndpointCreated,
    responses={201: {"headers": {**LOCATION, **ETAG}}, **problems(401, 403, 409, 422)},
)
def create_endpoint(
    session: WriteSessionDep,
    caller: AdminKey,
    body: EndpointCreate,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> EndpointCreated | Response:
    """An endpoint that receives messages. The webhook kind's signing `secret` is in this
    answer only (store it now); a slack endpoint is not signed."""

    def create() -> EndpointCreated:
        row = admin.create_endpoint(session, body, utcnow())
        created = admin.endpoint_created(row)
        return resource(response, created, etag(row), f"/v1/endpoints/{row.id}", 201)

    fingerprint = "POST /v1/endpoints " + body.model_dump_json()
    return idempotent(session, caller, idempotency_key, fingerprint, response, create)


@router.get(
    "/endpoints",
    operation_id="listEndpoints",
    response_model=Page[EndpointOut],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_endpoints(
    access: ReadKey, query: Annotated[EndpointQuery, Query()], accept: AcceptHeader = None
) -> Response:
    """Endpoints, oldest first (never their secrets)."""
    answer = listing(
        query.limit, query.cursor, accept, EndpointOut, "endpoints", admin.list_endpoints
    )
    return await read(access, answer)


@router.get(
    "/endpoints/{endpoint_id}",
    operation_id="getEndpoint",
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 422)},
)
async def get_endpoint(access: ReadKey, endpoint_id: uuid.UUID, response: Response) -> EndpointOut:
    """One endpoint (never its secret), with its ETag for a later PATCH."""
    return _endpoint(response, await read(access, lambda s: admin.get_endpoint(s, endpoint_id)))


@router.patch(
    "/endpoints/{endpoint_id}",
    operation_id="updateEndpoint",
    openapi_extra=IF_MATCH_REQUIRED,
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 412, 422, 428)},
)
def update_endpoint(
    session: WriteSessionDep,
    _caller: AdminKey,
    endpoint_id: uuid.UUID,
    body: EndpointPatch,
    response: Response,
    if_match: IfMatch = None,
) -> EndpointOut:
    """Change an endpoint's url, description, event_types or enabled (its version goes up).
    Enabling it again clears `disabled_reason`."""
    tag = require_if_match(
        if_match, "/v1/endpoints/{id}", lambda: admin.get_endpoint(session, endpoint_id)
    )
    return _endpoint(response, admin.update_endpoint(session, endpoint_id, body, tag, utcnow()))


@router.delete(
    "/endpoints/{endpoint_id}",
    operation_id="deleteEndpoint",
    status_code=204,
    openapi_extra=IF_MATCH_REQUIRED,
    responses=problems(401, 403, 404, 412, 422, 428),
)
def delete_endpoint(
    session: WriteSessionDep,
    _caller: AdminKey,
    endpoint_id: uuid.UUID,
    if_match: IfMatch = None,
) -> Response:
    """Delete an endpoint: its pending messages are cancelled; its messages stay listed."""
    tag = require_if_match(
        if_match, "/v1/endpoints/{id}", lambda: admin.get_endpoint(session, endpoint_id)
    )
    admin.delete_endpoint(session, endpoint_id, tag, utcnow())
    return Response(status_code=204)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    operation_id="rotateEndpointSecret",
    responses=problems(401, 403, 404, 409, 422),
)
def rotate_secret(session: WriteSessionDep, _caller: AdminKey, endpoint_id: uuid.UUID) -> SecretOut:
    """A new signing secret, in this answer only. Messages are signed with both the new and
    the previous secret for 24 hours, so that the receiver can switch in its own time."""
    return SecretOut(secret=admin.rotate_secret(session, endpoint_id, utcnow()))


@router.post(
    "/endpoints/{endpoint_id}/test",
    operation_id="testEndpoint",
    status_code=202,
    responses=problems(401, 403, 404, 409, 422),
)
def send_test_message(
    session: WriteSessionDep, _caller: AdminKey, endpoint_id: uuid.UUID
) -> MessageQueued:
    """Queue an `endpoint.test` message, whatever the endpoint's event_types say; it is
    listed in the messages (409 while the endpoint is disabled)."""
    return MessageQueued(message_id=admin.send_test(session, endpoint_id, utcnow()).id)


@router.post(
    "/endpoints/{endpoint_id}/recover",
    operation_id="recoverEndpoint",
    responses=problems(401, 403, 404, 422),
)
def recover_endpoint(
    session: WriteSessionDep, _caller: AdminKey, endpoint_id: uuid.UUID, body: RecoverIn
) -> Requeued:
    """Send the endpoint's failed messages created since `since` again: the same ids and
    bodies, their attempt logs kept."""
    return Requeued(requeued=admin.recover(session, endpoint_id, body.since, utcnow()))


# --- reminder rules ------------------------------------------------------------------------


@router.post(
    "/reminder-rules",
    operation_id="createReminderRule",
    status_code=201,
    response_model=RuleOut,
    responses={201: {"headers": {**LOCATION, **ETAG}}, **problems(401, 403, 409, 422)},
)
def create_rule(
    session: WriteSessionDep,
    caller: AdminKey,
    body: RuleCreate,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RuleOut | Response:
    """A ladder of reminders: each step fires at the due time of a matching open step plus
    its offset. The answer does not wait for the open steps that exist: the worker schedules
    them in batches, and their reminders lists show them shortly."""

    def create() -> RuleOut:
        return _rule(response, admin.create_rule(session, body, utcnow()), 201)

    fingerprint = "POST /v1/reminder-rules " + body.model_dump_json()
    return idempotent(session, caller, idempotency_key, fingerprint, response, create)


@router.get(
    "/reminder-rules",
    operation_id="listReminderRules",
    response_model=Page[RuleOut],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_rules(
    access: ReadKey, query: Annotated[RuleQuery, Query()], accept: AcceptHeader = None
) -> Response:
    """Reminder rules by position, then id."""
    answer = listing(query.limit, query.cursor, accept, RuleOut, "reminder-rules", admin.list_rules)
    return await read(access, answer)


@router.get(
    "/reminder-rules/{rule_id}",
    operation_id="getReminderRule",
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 422)},
)
async def get_rule(access: ReadKey, rule_id: uuid.UUID, response: Response) -> RuleOut:
    """One reminder rule, with its ETag for a later PATCH."""
    return _rule(response, await read(access, lambda s: admin.get_rule(s, rule_id)))


@router.patch(
    "/reminder-rules/{rule_id}",
    operation_id="updateReminderRule",
    openapi_extra=IF_MATCH_REQUIRED,
    responses={200: {"headers": ETAG}, **problems(401, 403, 404, 412, 422, 428)},
)
def update_rule(
    session: WriteSessionDep,
    _caller: AdminKey,
    rule_id: uuid.UUID,
    body: RulePatch,
    response: Response,
    if_match: IfMatch = None,
) -> RuleOut:
    """Change a rule (its version goes up): its reminders still to fire are skipped ("rule
    changed") and scheduled again as the rule now says, by the worker, shortly after the
    answer."""
    tag = require_if_match(
        if_match, "/v1/reminder-rules/{id}", lambda: admin.get_rule(session, rule_id)
    )
    return _rule(response, admin.update_rule(session, rule_id, body, tag, utcnow()))


@router.delete(
    "/reminder-rules/{rule_id}",
    operation_id="deleteReminderRule",
    status_code=204,
    openapi_extra=IF_MATCH_REQUIRED,
    responses=problems(401, 403, 404, 412, 422, 428),
)
def delete_rule(
    session: WriteSessionDep,
    _caller: AdminKey,
    rule_id: uuid.UUID,
    if_match: IfMatch = None,
) -> Response:
    """Delete a rule: its reminders still to fire are skipped ("rule deleted")."""
    tag = require_if_match(
        if_match, "/v1/reminder-rules/{id}", lambda: admin.get_rule(session, rule_id)
    )
    admin.delete_rule(session, rule_id, tag, utcnow())
    return Response(status_code=204)


# --- messages ------------------------------------------------------------------------------


def _messagelisting(query: MessageQuery, accept: str | None) -> Callable[[Session], Response]:
    """A page of messages (a cursor carries the filters), or with ``Accept: text/csv``
    every matching message."""
    names = set(MessageQuery.model_fields)
    after: list[str] | None = None
    if query.cursor is not None:
        cursor = decode_cursor(query.cursor, names)
        try:
            query = MessageQuery.model_validate({**cursor.params, "limit": query.limit})
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
                items, key = admin.list_messages(session, full, start)
            return items, next_cursor(key)

        return lambda _session: csv_response(MessageOut, fetch_page, "messages")

    def page(session: Session) -> Response:
        items, key = admin.list_messages(session, query, after)
        return page_response(items, next_cursor(key))

    return page


@router.get(
    "/messages",
    operation_id="listMessages",
    response_model=Page[MessageOut],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_messages(
    access: ReadKey, query: Annotated[MessageQuery, Query()], accept: AcceptHeader = None
) -> Response:
    """Messages to endpoints, newest first."""
    return await read(access, _messagelisting(query, accept))


@router.get(
    "/messages/{message_id}",
    operation_id="getMessage",
    responses=problems(401, 403, 404, 422),
)
async def get_message(access: ReadKey, message_id: uuid.UUID) -> MessageDetail:
    """One message, its body and every attempt to send it."""
    return await read(access, lambda s: admin.message_detail(s, message_id))


@router.post(
    "/messages/{message_id}/resend",
    operation_id="resendMessage",
    status_code=202,
    responses=problems(401, 403, 404, 409, 422),
)
def resend_message(
    session: WriteSessionDep, _caller: AdminKey, message_id: uuid.UUID
) -> MessageOut:
    """Queue the same message (id and body) again, to be sent now; 409 when its endpoint
    was deleted."""
    return admin.message_out(admin.resend(session, message_id, utcnow()))


# --- a commitment's reminders --------------------------------------------------------------


@router.get(
    "/commitments/{commitment_id}/reminders",
    operation_id="getCommitmentReminders",
    responses=problems(401, 403, 404, 422),
)
async def get_reminders(access: ReadKey, commitment_id: uuid.UUID) -> Reminders:
    """The reminders of a commitment, by when they fire: scheduled, sent, or skipped with
    the reason."""
    items = await read(access, lambda s: admin.commitment_reminders(s, commitment_id))
    return Reminders(items=items)
