"""Response shapes shared by every domain: problems, health, pages."""

from typing import Any

from pydantic import BaseModel, Field

from app.errors import PROBLEM_JSON


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
