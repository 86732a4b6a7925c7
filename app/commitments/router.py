"""HTTP for interviews, commitments, contacts, timelines and overdue queries."""

import hashlib
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from app.auth import ReadKey, WriteKey, read
from app.commitments import answers, overdue, queries, rows, service, timeline
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
    MissingNextStepQuery,
    NextStepIn,
    OverdueItem,
    OverdueQuery,
    ReasonIn,
    SourceName,
    Summary,
    SummaryQuery,
    TimelineEntryOut,
    TimelineQuery,
)
from app.csvstream import CSV_CONTENT, wants_csv
from app.db import WriteSessionDep
from app.fields import Text200
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
    page_response,
    require_if_match,
    resource,
)
from app.models import Commitment, utcnow
from app.routing import JsonRoute
from app.schemas import Page, problems

router = APIRouter(prefix="/v1", tags=["commitments"], route_class=JsonRoute)

# Content negotiation: the document lists text/csv among the 200 answer's media types.

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


def _commitment(
    response: Response, commitment: Commitment, status_code: int | None = None
) -> CommitmentOut:
    return resource(
        response,
        rows.commitment_out(commitment, utcnow()),
        etag(commitment),
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
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> InterviewDetail | Response:
    """Record an interview, optionally with the next steps agreed at its end."""

    def create() -> InterviewDetail:
        now = utcnow()
        interview = service.create_interview(session, body, caller.actor, now)
        detail = queries.interview_detail(session, interview.id, now)
        return resource(response, detail, None, f"/v1/interviews/{interview.id}", 201)

    fingerprint = "POST /v1/interviews " + body.model_dump_json()
    return idempotent(session, caller, idempotency_key, fingerprint, response, create)


@router.put(
    "/interviews/{source}/{external_id}",
    operation_id="upsertInterview",
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
    response: Response,
) -> InterviewDetail:
    """Create or update an interview by its source's id. Repeating it changes nothing."""
    now = utcnow()
    interview, created = service.upsert_interview(
        session, source, external_id, body, caller.actor, now
    )
    detail = queries.interview_detail(session, interview.id, now)
    location = f"/v1/interviews/{interview.id}"
    return resource(response, detail, None, location, 201 if created else 200)


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
    fetch_at = answers.at_as_of(queries.list_interviews)
    return await read(access, answers.listing(query, accept, InterviewOut, "interviews", fetch_at))


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

    def fetch_at(resolved: MissingNextStepQuery) -> answers.Fetch[MissingNextStepQuery]:
        ended_before = resolved.ended_before or utcnow() - timedelta(hours=24)
        return lambda s, q, a: queries.missing_next_step(s, q, ended_before, a)

    answer = answers.listing(query, accept, InterviewOut, "missing-next-step", fetch_at)
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
        resolved, after = answers.resolve(query)
        if wants_csv(accept):
            timeline.timeline(session, interview_id, 1, None)  # 404 before the stream starts
            return answers.stream(
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
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ContactOut | Response:
    """Record that the candidate reached out (inbound) or was reached (outbound)."""

    def create() -> ContactOut:
        contact = service.add_contact(session, interview_id, body, caller.actor, utcnow())
        return queries.contact_out(contact)

    fingerprint = f"POST contacts {interview_id} {body.model_dump_json()}"
    return idempotent(session, caller, idempotency_key, fingerprint, response, create)


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
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CommitmentOut | Response:
    """Agree a next step: what, who owns it, by when."""

    def create() -> CommitmentOut:
        commitment = service.create_commitment(session, interview_id, body, caller.actor, utcnow())
        return _commitment(response, commitment, 201)

    fingerprint = f"POST commitments {interview_id} {body.model_dump_json()}"
    return idempotent(session, caller, idempotency_key, fingerprint, response, create)


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
    """Commitments by due time, with every filter, as they stood at `as_of` (default now)."""
    fetch_at = answers.at_as_of(queries.list_commitments)
    return await read(
        access, answers.listing(query, accept, CommitmentOut, "commitments", fetch_at)
    )


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
    fetch_at = answers.at_as_of(overdue.overdue_items)
    return await read(access, answers.listing(query, accept, OverdueItem, "overdue", fetch_at))


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
    responses={
        200: {"headers": ETAG, "links": OPEN_COMMITMENT_LINKS},
        **problems(401, 403, 404, 422),
    },
)
async def get_commitment(
    access: ReadKey, commitment_id: uuid.UUID, response: Response
) -> CommitmentOut:
    """One commitment, with its ETag for a later PATCH."""
    commitment = await read(access, lambda s: service.get_commitment(s, commitment_id))
    return _commitment(response, commitment)


@router.patch(
    "/commitments/{commitment_id}",
    operation_id="updateCommitment",
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
    response: Response,
    if_match: IfMatch = None,
) -> CommitmentOut:
    """Reassign, move the deadline or reword an open step. Needs If-Match."""
    tag = require_if_match(
        if_match, "/v1/commitments/{id}", lambda: service.get_commitment(session, commitment_id)
    )
    commitment = service.update_commitment(
        session, commitment_id, body, tag, caller.actor, utcnow()
    )
    return _commitment(response, commitment)


@router.post(
    "/commitments/{commitment_id}/complete",
    operation_id="completeCommitment",
    responses={
        200: {"headers": ETAG, "links": CLOSED_COMMITMENT_LINKS},
        **problems(401, 403, 404, 409, 422),
    },
)
def complete_commitment(
    session: WriteSessionDep,
    caller: WriteKey,
    commitment_id: uuid.UUID,
    response: Response,
    body: CompleteIn | None = None,
) -> CommitmentOut:
    """Mark the step done, with its outcome."""
    body = body or CompleteIn()
    commitment = service.complete_commitment(
        session, commitment_id, body.outcome, body.completed_at, caller.actor, utcnow()
    )
    return _commitment(response, commitment)


@router.post(
    "/commitments/{commitment_id}/cancel",
    operation_id="cancelCommitment",
    responses={
        200: {"headers": ETAG, "links": CLOSED_COMMITMENT_LINKS},
        **problems(401, 403, 404, 409, 422),
    },
)
def cancel_commitment(
    session: WriteSessionDep,
    caller: WriteKey,
    commitment_id: uuid.UUID,
    body: ReasonIn,
    response: Response,
) -> CommitmentOut:
    """Cancel the step, saying why."""
    commitment = service.cancel_commitment(
        session, commitment_id, body.reason, caller.actor, utcnow()
    )
    return _commitment(response, commitment)


@router.post(
    "/commitments/{commitment_id}/reopen",
    operation_id="reopenCommitment",
    responses={
        200: {"headers": ETAG, "links": OPEN_COMMITMENT_LINKS},
        **problems(401, 403, 404, 409, 422),
    },
)
def reopen_commitment(
    session: WriteSessionDep,
    caller: WriteKey,
    commitment_id: uuid.UUID,
    body: ReasonIn,
    response: Response,
) -> CommitmentOut:
    """Open a done or cancelled step again, saying why."""
    commitment = service.reopen_commitment(
        session, commitment_id, body.reason, caller.actor, utcnow()
    )
    return _commitment(response, commitment)
