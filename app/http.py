"""HTTP plumbing the routers share: header aliases, their OpenAPI documentation, and answers."""

import hashlib
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Header, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic_core import to_json
from sqlmodel import Session

from app.auth import Caller
from app.errors import PreconditionRequired
from app.idempotency import StoredResponse, create_once
from app.models import utcnow
from app.schemas import problems

# Content negotiation: the document lists text/csv among a list's 200 media types.
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]
# Read as optional so that a missing If-Match is a 428, not a 422; documented as required.
IfMatch = Annotated[str | None, Header(include_in_schema=False)]
IdempotencyKey = Annotated[
    str | None, Header(max_length=300, description="Replays the stored response when repeated.")
]
IF_MATCH_REQUIRED = {
    "parameters": [
        {
            "name": "If-Match",
            "in": "header",
            "required": True,
            "description": "The ETag from the last GET; 428 without it, 412 when stale.",
            "schema": {"type": "string"},
        }
    ]
}
READ_ERRORS = problems(401, 403, 422)
STRING_SCHEMA = {"schema": {"type": "string"}}
LOCATION = {"Location": {"description": "Where the new resource lives.", **STRING_SCHEMA}}


def etag_header(description: str) -> dict[str, Any]:
    return {"ETag": {"description": description, **STRING_SCHEMA}}


def require_if_match(if_match: str | None, what: str) -> str:
    """The If-Match a change needs: without one, 428."""
    if if_match is None:
        raise PreconditionRequired(f"Send If-Match with the ETag from GET {what}.")
    return if_match


def json_response(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(model.model_dump(mode="json"), status_code=status_code, headers=headers)


def resource_response(
    model: BaseModel, etag: str, location: str, status_code: int = 200
) -> Response:
    """One resource with its ETag; a 201 also says where it lives."""
    headers = {"ETag": etag}
    if status_code == 201:
        headers["Location"] = location
    return json_response(model, status_code, headers)


def page_response(items: Sequence[Any], cursor: str | None) -> Response:
    """A page, serialised in one pass (`response_model` stays, for the OpenAPI document).

    The items are models or dicts already shaped like them, so FastAPI need not validate
    them again.
    """
    body = to_json({"items": items, "next_cursor": cursor})
    return Response(body, media_type="application/json")


def idempotent_create(
    session: Session,
    caller: Caller,
    key: str | None,
    fingerprint: str,
    create: Callable[[bool], Response],
) -> Response:
    """``create(commit)`` once per Idempotency-Key: the key, the resource and the answer
    commit together (see idempotency.create_once)."""
    if key is None:
        return create(True)

    def create_uncommitted() -> StoredResponse:
        response = create(False)
        headers = {k: v for k, v in response.headers.items() if k in ("location", "etag")}
        return StoredResponse(response.status_code, bytes(response.body), headers)

    digest = hashlib.sha256(fingerprint.encode()).hexdigest()
    answer, replayed = create_once(
        session, caller.key_id, key, digest, utcnow(), create_uncommitted
    )
    headers = {**answer.headers, "Idempotent-Replayed": "true"} if replayed else answer.headers
    return Response(answer.body, answer.status_code, headers, "application/json")
