"""HTTP for interviews, commitments, contacts, timelines and overdue queries."""

import hashlib
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from app.auth import ReadKey, WriteKey, read
from app.commitments import overdue, queries, rows, service, timeline
from app.commitments.schemas import (
    CommitmentOut,
    CommitmentPatch,
    CommitmentQuery,
    CompleteIn,
    ContactIn,
    ContactOut,
    InterviewCreate,
    InterviewDetail,
    InterviewOut,
    InterviewQuery,
    InterviewUpsert,
    ListQuery,
    MissingNextStepQuery,
    NextStepIn,
    OverdueItem,
    OverdueQuery,
    Page,
    ReasonIn,
    SourceName,
    Summary,
    SummaryQuery,
    Text200,
    TimelineEntryOut,
    TimelineQuery,
)
from app.csvstream import CSV_CONTENT, CSV_PAGE, csv_response, wants_csv
from app.db import WriteSessionDep, read_session
from app.http import (
    IF_MATCH_REQUIRED,
    LOCATION,
    READ_ERRORS,
    AcceptHeader,
    IdempotencyKey,
    IfMatch,
    etag_header,
    idempotent_create,
    json_response,
    page_response,
    require_if_match,
    resource_response,
)
from app.models import Commitment, utcnow
from app.pagination import decode_cursor, invalid_cursor
from app.routing import JsonRoute
from app.schemas import problems

router = APIRouter(prefix="/v1", tags=["commitments"], route_class=JsonRoute)

Q = TypeVar("Q", bound=ListQuery)

ETAG = etag_header("Send it back as If-Match to change the step.")
INTERVIEW_ETAG = etag_header("A strong validator of this answer.")
_BODY_ID = "$response.body#/id"


def _links(parameter: str, *operation_ids: str, if_match: bool = False) -> dict[str, Any]:
    """OpenAPI links: the calls a client can make next with the id (and ETag) of this answer."""
    parameters = {parameter: _BODY_ID}
    links: dict[str, Any] = {
        operation_id: {"operationId": operation_id, "parameters": parameters}
        for operation_id in operation_ids
    }
    if if_match:
        links["updateCommitment"] = {
            "operationId": "updateCommitment",
            "parameters": {**parameters, "header.If-Match": "$response.header.ETag"},
        }
    return links


INTERVIEW_LINKS = _links(
    "interview_id", "getInterview", "getInterviewTimeline", "createCommitment", "addContact"
)
OPEN_COMMITMENT_LINKS = _links(
    "commitment_id",
    "getCommitment",
    "completeCommitment",
    "cancelCommitment",
    if_match=True,
)
CLOSED_COMMITMENT_LINKS = _links("commitment_id", "getCommitment", "reopenCommitment")


def _resolve(query: Q) -> tuple[Q, list[str] | None]:
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


def _stream(model: type[BaseModel], query: Q, fetch: Fetch[Q], filename: str) -> Response:
    full = query.model_copy(update={"limit": CSV_PAGE, "cursor": None})

    def fetch_page(cursor: str | None) -> tuple[list[Any], str | None]:
        after = decode_cursor(cursor, set(type(query).model_fields)).after if cursor else None
        with read_session() as session:
            return fetch(session, full, after)

    return csv_response(model, fetch_page, filename)


def _listing(
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
        resolved, after = _resolve(query)
        fetch = fetch_at(resolved)
        if wants_csv(accept):
            return _stream(model, resolved, fetch, filename)
        return page_response(*fetch(session, resolved, after))

    return answer


def _commitment_response(commitment: Commitment, status_code: int = 200) -> Response:
    return resource_response(
        rows.commitment_out(commitment, utcnow()),
        service.etag(commitment),
        f"/v1/commitments/{commitment.id}",
        status_code,
    )


@router.post(
    "/interviews",
    operation_id="createInterview",
    status_code=201,
    response_model=InterviewDetail,
    responses={
        201: {"headers": LOCATION, "links": INTERVIEW_LINKS},
        **problems(401, 403, 409, 422),
    },
)
def create_interview(
    session: WriteSessionDep,
    caller: WriteKey,
    body: InterviewCreate,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Record an interview, optionally with the next steps agreed at its end."""

    def create(commit: bool) -> Response:
        now = utcnow()
        interview = service.create_interview(session, body, caller.actor, now, commit=commit)
        detail = queries.interview_detail(session, interview.id, now)
        return json_response(detail, 201, {"Location": f"/v1/interviews/{interview.id}"})

    return idempotent_create(
        session, caller, idempotency_key, "POST /v1/interviews " + body.model_dump_json(), create
    )


@router.put(
    "/interviews/{source}/{external_id}",
    operation_id="upsertInterview",
    response_model=InterviewDetail,
    responses={
        200: {"links": INTERVIEW_LINKS},
        201: {"model": InterviewDetail, "headers": LOCATION, "links": INTERVIEW_LINKS},
        **problems(401, 403, 422),
    },
)
def upsert_interview(
    session: WriteSessionDep,
    caller: WriteKey,
    source: SourceName,
    external_id: Text200,
    body: InterviewUpsert,
) -> Response:
    """Create or update an interview by its source's id. Repeating it changes nothing."""
    now = utcnow()
    interview, created = service.upsert_interview(
        session, source, external_id, body, caller.actor, now
    )
    detail = queries.interview_detail(session, interview.id, now)
    headers = {"Location": f"/v1/interviews/{interview.id}"} if created else None
    return json_response(detail, 201 if created else 200, headers)


@router.get(
    "/interviews",
    operation_id="listInterviews",
    response_model=Page[InterviewOut],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_interviews(
    access: ReadKey,
    query: Annotated[InterviewQuery, Query()],
    accept: AcceptHeader = None,
) -> Response:
    """Interviews, oldest recorded first."""

    def fetch_at(_resolved: InterviewQuery) -> Fetch[InterviewQuery]:
        now = utcnow()
        return lambda s, q, a: queries.list_interviews(s, q, a, now)

    return await read(access, _listing(query, accept, InterviewOut, "interviews", fetch_at))


@router.get(
    "/interviews/missing-next-step",
    operation_id="listInterviewsMissingNextStep",
    response_model=Page[InterviewOut],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def missing_next_step(
    access: ReadKey,
    query: Annotated[MissingNextStepQuery, Query()],
    accept: AcceptHeader = None,
) -> Response:
    """Completed interviews that ended (default: over 24 h ago) without any next step."""

    def fetch_at(resolved: MissingNextStepQuery) -> Fetch[MissingNextStepQuery]:
        ended_before = resolved.ended_before or utcnow() - timedelta(hours=24)
        return lambda s, q, a: queries.missing_next_step(s, q, ended_before, a)

    answer = _listing(query, accept, InterviewOut, "missing-next-step", fetch_at)
    return await read(access, answer)


@router.get(
    "/interviews/{interview_id}",
    operation_id="getInterview",
    responses={200: {"headers": INTERVIEW_ETAG}, **problems(401, 403, 404, 422)},
)
async def get_interview(
    access: ReadKey, interview_id: uuid.UUID, response: Response
) -> InterviewDetail:
    """The interview with its commitments and waiting clock."""
    detail = await read(access, lambda s: queries.interview_detail(s, interview_id, utcnow()))
    # Strong: a digest of the representation, which changes with any field of the interview
    # or its steps, the computed ones (overdue_by, waiting_since) included.
    digest = hashlib.sha256(detail.model_dump_json().encode()).hexdigest()[:32]
    response.headers["ETag"] = f'"{digest}"'
    return detail


@router.get(
    "/interviews/{interview_id}/timeline",
    operation_id="getInterviewTimeline",
    response_model=Page[TimelineEntryOut],
    responses={**CSV_CONTENT, **problems(401, 403, 404, 422)},
)
async def get_timeline(
    access: ReadKey,
    interview_id: uuid.UUID,
    query: Annotated[TimelineQuery, Query()],
    accept: AcceptHeader = None,
) -> Response:
    """Everything that happened to the interview and its steps, in the order it took effect."""

    def answer(session: Session) -> Response:
        resolved, after = _resolve(query)
        if wants_csv(accept):
            timeline.timeline(session, interview_id, 1, None)  # 404 before the stream starts
            return _stream(
                TimelineEntryOut,
                resolved,
                lambda s, q, a: timeline.timeline(s, interview_id, q.limit, a),
                "timeline",
            )
        return page_response(*timeline.timeline(session, interview_id, resolved.limit, after))

    return await read(access, answer)


@router.post(
    "/interviews/{interview_id}/contacts",
    operation_id="addContact",
    status_code=201,
    response_model=ContactOut,
    responses=problems(401, 403, 404, 409, 422),
)
def add_contact(
    session: WriteSessionDep,
    caller: WriteKey,
    interview_id: uuid.UUID,
    body: ContactIn,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Record that the candidate reached out (inbound) or was reached (outbound)."""

    def create(commit: bool) -> Response:
        contact = service.add_contact(
            session, interview_id, body, caller.actor, utcnow(), commit=commit
        )
        return json_response(queries.contact_out(contact), 201)

    return idempotent_create(
        session,
        caller,
        idempotency_key,
        f"POST contacts {interview_id} {body.model_dump_json()}",
        create,
    )


@router.post(
    "/interviews/{interview_id}/commitments",
    operation_id="createCommitment",
    status_code=201,
    response_model=CommitmentOut,
    responses={
        201: {"headers": {**LOCATION, **ETAG}, "links": OPEN_COMMITMENT_LINKS},
        **problems(401, 403, 404, 409, 422),
    },
)
def create_commitment(
    session: WriteSessionDep,
    caller: WriteKey,
    interview_id: uuid.UUID,
    body: NextStepIn,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Agree a next step: what, who owns it, by when."""

    def create(commit: bool) -> Response:
        commitment = service.create_commitment(
            session, interview_id, body, caller.actor, utcnow(), commit=commit
        )
        return _commitment_response(commitment, 201)

    return idempotent_create(
        session,
        caller,
        idempotency_key,
        f"POST commitments {interview_id} {body.model_dump_json()}",
        create,
    )


@router.get(
    "/commitments",
    operation_id="listCommitments",
    response_model=Page[CommitmentOut],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_commitments(
    access: ReadKey,
    query: Annotated[CommitmentQuery, Query()],
    accept: AcceptHeader = None,
) -> Response:
    """Commitments by due time, with every filter."""

    def fetch_at(resolved: CommitmentQuery) -> Fetch[CommitmentQuery]:
        as_of = resolved.as_of or utcnow()
        return lambda s, q, a: queries.list_commitments(s, q, a, as_of)

    return await read(access, _listing(query, accept, CommitmentOut, "commitments", fetch_at))


@router.get(
    "/commitments/overdue",
    operation_id="listOverdueCommitments",
    response_model=Page[OverdueItem],
    responses={**CSV_CONTENT, **READ_ERRORS},
)
async def list_overdue(
    access: ReadKey,
    query: Annotated[OverdueQuery, Query()],
    accept: AcceptHeader = None,
) -> Response:
    """Open steps past due at `as_of` (default now), most overdue first, as they stood then."""

    def fetch_at(resolved: OverdueQuery) -> Fetch[OverdueQuery]:
        as_of = resolved.as_of or utcnow()
        return lambda s, q, a: overdue.overdue_items(s, q, a, as_of)

    return await read(access, _listing(query, accept, OverdueItem, "overdue", fetch_at))


@router.get(
    "/commitments/overdue/summary",
    operation_id="summarizeOverdueCommitments",
    responses=READ_ERRORS,
)
async def overdue_summary(access: ReadKey, query: Annotated[SummaryQuery, Query()]) -> Summary:
    """Overdue steps grouped by owner, role or job: count, oldest due time, total lateness."""
    items = await read(access, lambda s: overdue.overdue_summary(s, query, query.as_of or utcnow()))
    return Summary(items=items)


# These templates also match the literal /commitments/overdue: the validation error handler
# answers PATCH there with a 405 (the literal path has no PATCH), not a 422 for the id.
@router.get(
    "/commitments/{commitment_id}",
    operation_id="getCommitment",
    response_model=CommitmentOut,
    responses={
        200: {"headers": ETAG, "links": OPEN_COMMITMENT_LINKS},
        **problems(401, 403, 404, 422),
    },
)
async def get_commitment(access: ReadKey, commitment_id: uuid.UUID) -> Response:
    """One commitment, with its ETag for a later PATCH."""
    return _commitment_response(
        await read(access, lambda s: service.get_commitment(s, commitment_id))
    )


@router.patch(
    "/commitments/{commitment_id}",
    operation_id="updateCommitment",
    response_model=CommitmentOut,
    openapi_extra=IF_MATCH_REQUIRED,
    responses={
        200: {"headers": ETAG, "links": OPEN_COMMITMENT_LINKS},
        **problems(401, 403, 404, 409, 412, 422, 428),
    },
)
def update_commitment(
    session: WriteSessionDep,
    caller: WriteKey,
    commitment_id: uuid.UUID,
    body: CommitmentPatch,
    if_match: IfMatch = None,
) -> Response:
    """Reassign, move the deadline or reword an open step. Needs If-Match."""
    if if_match is None:
        service.get_commitment(session, commitment_id)  # 404 first for an unknown id
    tag = require_if_match(if_match, "/v1/commitments/{id}")
    commitment = service.update_commitment(
        session, commitment_id, body, tag, caller.actor, utcnow()
    )
    return _commitment_response(commitment)


@router.post(
    "/commitments/{commitment_id}/complete",
    operation_id="completeCommitment",
    response_model=CommitmentOut,
    responses={
        200: {"headers": ETAG, "links": CLOSED_COMMITMENT_LINKS},
        **problems(401, 403, 404, 409, 422),
    },
)
def complete_commitment(
    session: WriteSessionDep,
    caller: WriteKey,
    commitment_id: uuid.UUID,
    body: CompleteIn | None = None,
) -> Response:
    """Mark the step done, with its outcome."""
    body = body or CompleteIn()
    commitment = service.complete_commitment(
        session, commitment_id, body.outcome, body.completed_at, caller.actor, utcnow()
    )
    return _commitment_response(commitment)


@router.post(
    "/commitments/{commitment_id}/cancel",
    operation_id="cancelCommitment",
    response_model=CommitmentOut,
    responses={
        200: {"headers": ETAG, "links": CLOSED_COMMITMENT_LINKS},
        **problems(401, 403, 404, 409, 422),
    },
)
def cancel_commitment(
    session: WriteSessionDep, caller: WriteKey, commitment_id: uuid.UUID, body: ReasonIn
) -> Response:
    """Cancel the step, saying why."""
    commitment = service.cancel_commitment(
        session, commitment_id, body.reason, caller.actor, utcnow()
    )
    return _commitment_response(commitment)


@router.post(
    "/commitments/{commitment_id}/reopen",
    operation_id="reopenCommitment",
    response_model=CommitmentOut,
    responses={
        200: {"headers": ETAG, "links": OPEN_COMMITMENT_LINKS},
        **problems(401, 403, 404, 409, 422),
    },
)
def reopen_commitment(
    session: WriteSessionDep, caller: WriteKey, commitment_id: uuid.UUID, body: ReasonIn
) -> Response:
    """Open a done or cancelled step again, saying why."""
    commitment = service.reopen_commitment(
        session, commitment_id, body.reason, caller.actor, utcnow()
    )
    return _commitment_response(commitment)
