"""Shapes shared by every domain: problems, health, pages, list queries, strict requests."""

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from app.errors import PROBLEM_JSON
from app.fields import Text200, Text300
from app.models import OwnerRole

T = TypeVar("T")


class ValidationIssue(BaseModel):
    loc: list[int | str]
    msg: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(examples=["https://nextstep.dev/problems/not-found"])
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ValidationIssue] | None = None


class Health(BaseModel):
    status: str


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("Bad request"),
    401: _problem("Missing, unknown or revoked API key"),
    403: _problem("The API key lacks the scope"),
    404: _problem("Not found"),
    405: _problem("Method not allowed"),
    409: _problem("Conflict with the current state"),
    412: _problem("If-Match does not match the current ETag"),
    413: _problem("Request body too large"),
    415: _problem("Compressed request bodies are not supported"),
    422: _problem("Invalid input"),
    428: _problem("If-Match is required"),
    503: _problem("Database unavailable; retry after Retry-After seconds"),
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The problem responses a route declares, for OpenAPI."""
    return {code: PROBLEM_RESPONSES[code] for code in codes}


# Request and response pieces every domain shares.
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Owner(Strict):
    id: Text200
    name: Text300 | None = None
    role: OwnerRole


class OwnerOut(BaseModel):
    id: str
    name: str | None
    role: OwnerRole


def not_nullable(schema: dict[str, Any]) -> None:
    """The schema of an optional field that may be left out but not sent as null."""
    schema.pop("default", None)
    members = [member for member in schema.pop("anyOf", []) if member != {"type": "null"}]
    if len(members) == 1:
        schema.update(members[0])
    elif members:
        schema["anyOf"] = members


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


Limit = Annotated[int, Field(ge=1, le=500, description="Page size, at most 500.")]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Limit = 50
    cursor: str | None = Field(
        default=None, min_length=1, description="Opaque; carries the query's other parameters."
    )
