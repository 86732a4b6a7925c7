"""The project's exceptions, and the one handler that turns every error into problem+json."""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.config import get_settings

log = logging.getLogger("nextstep.errors")

PROBLEM_JSON = "application/problem+json"
_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


class AppError(Exception):
    """An error a client can act on. Subclasses fix the status and title."""

    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class NotFound(AppError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(AppError):
    status, title, slug = 409, "Conflict", "conflict"


class InvalidInput(AppError):
    status, title, slug = 422, "Invalid input", "validation-error"


class Unauthorized(AppError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(AppError):
    status, title, slug = 403, "Forbidden", "forbidden"


class PreconditionRequired(AppError):
    status, title, slug = 428, "Precondition required", "precondition-required"


class PreconditionFailed(AppError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class ServiceUnavailable(AppError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"


# The problem types named apart from their status phrase, whoever answers with that status.
_SLUGS = {413: "payload-too-large", 500: "internal-error"}


def problem_document(
    status: int,
    detail: str,
    instance: str,
    *,
    title: str | None = None,
    slug: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An RFC 9457 problem document; the type defaults from the status."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    slug = slug or _SLUGS.get(status) or phrase.lower().replace(" ", "-")
    return {
        "type": f"https://nextstep.dev/problems/{slug}",
        "title": title or phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }


def problem(
    status: int,
    detail: str,
    instance: str,
    *,
    title: str | None = None,
    slug: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_document(status, detail, instance, title=title, slug=slug, **extra)
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def _instance(request: Request) -> str:
    return request.url.path


def _loc(loc: tuple[int | str, ...] | list[int | str]) -> list[int | str]:
    return list(loc)


def _merge_optional_unions(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One error per mistake, located at the field sent, for fields typed ``X | None``.

    When pydantic validates such a field as a real union (not as a nullable ``X``) it reports
    the value against each member: ``[..., 'owner', 'Owner', 'role']`` plus ``[..., 'owner',
    'none'] Input should be None``. The None member's error says nothing to a client that sent
    an object, and the member's tag is no field of the document: both are dropped.
    """
    unions: dict[tuple[int | str, ...], set[int | str]] = {}
    for error in errors:
        loc = tuple(error["loc"])
        if error.get("type") == "none_required" and loc and loc[-1] == "none":
            unions.setdefault(loc[:-1], set())
    for error in errors:
        loc = tuple(error["loc"])
        for prefix, tags in unions.items():
            if _under(loc, prefix):
                tags.add(loc[len(prefix)])
    # Only a union of one type and None: with two types, each member's error is a clue.
    optional = [prefix for prefix, tags in unions.items() if len(tags - {"none"}) == 1]
    merged: list[dict[str, Any]] = []
    for error in errors:
        loc = tuple(error["loc"])
        prefixes = [prefix for prefix in optional if _under(loc, prefix)]
        if not prefixes:
            merged.append(dict(error))
            continue
        prefix = max(prefixes, key=len)
        if loc[len(prefix)] != "none":
            merged.append({**error, "loc": (*prefix, *loc[len(prefix) + 1 :])})
    return merged


def _under(loc: tuple[int | str, ...], prefix: tuple[int | str, ...]) -> bool:
    return len(loc) > len(prefix) and loc[: len(prefix)] == prefix


def _allowed_methods(request: Request) -> set[str]:
    """The methods of the path's most specific template in the OpenAPI document.

    Templates overlap (`/v1/commitments/{commitment_id}` also matches
    `/v1/commitments/overdue`): the one with the most literal segments is the resource meant.
    """
    segments = request.url.path.split("/")
    best, methods = -1, set[str]()
    for template, operations in request.app.openapi().get("paths", {}).items():
        parts = template.split("/")
        if len(parts) != len(segments):
            continue
        pairs = zip(parts, segments, strict=True)
        if not all(part == segment or part.startswith("{") for part, segment in pairs):
            continue
        literal = sum(1 for part in parts if part and not part.startswith("{"))
        declared = {method.upper() for method in operations if method in _HTTP_METHODS}
        if literal > best:
            best, methods = literal, declared
        elif literal == best:
            methods |= declared
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def _allow_header(methods: set[str]) -> str:
    return ", ".join(sorted(methods))


def database_unavailable(request: Request) -> JSONResponse:
    return problem(
        503,
        "The database is unavailable; retry later.",
        _instance(request),
        slug="database-unavailable",
        title="Database unavailable",
        headers={"Retry-After": str(get_settings().retry_after_seconds)},
    )


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that mean the database cannot be reached, not that a query is wrong."""
    if isinstance(exc, PoolTimeoutError):
        return True
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _message(error: Any) -> str:
    """A validation error's message; for a body that is not JSON, also why."""
    if error.get("type") == "json_invalid" and error.get("ctx", {}).get("error"):
        return f"{error['msg']}: {error['ctx']['error']}"
    return str(error["msg"])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem(
            exc.status,
            exc.detail,
            _instance(request),
            title=exc.title,
            slug=exc.slug,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        allowed = _allowed_methods(request)
        if allowed and request.method not in allowed:
            # PATCH /v1/commitments/overdue reaches the {commitment_id} route and fails its
            # id; but the resource meant is the literal path, which has no PATCH.
            return problem(
                405,
                f"Method {request.method} is not allowed on {request.url.path}.",
                _instance(request),
                headers={"Allow": _allow_header(allowed)},
            )
        errors = [
            {"loc": _loc(e["loc"]), "msg": _message(e)}
            for e in _merge_optional_unions(exc.errors())
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem(
            422,
            summary or "The request is not valid.",
            _instance(request),
            title="Invalid input",
            slug="validation-error",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No resource at {request.url.path}."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            detail = f"Method {request.method} is not allowed on {request.url.path}."
            allowed = _allowed_methods(request)
            headers["Allow"] = _allow_header(allowed) if allowed else headers.get("Allow", "")
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # The framework's answer to a body that is not UTF-8: malformed JSON like any other.
            return problem(
                422,
                "The body is not valid JSON: it is not UTF-8.",
                _instance(request),
                title="Invalid input",
                slug="validation-error",
                errors=[{"loc": ["body"], "msg": "JSON decode error"}],
            )
        return problem(exc.status_code, detail, _instance(request), headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if is_connection_error(exc):
            log.warning("database unavailable: %s", type(exc.orig or exc).__name__)
            return database_unavailable(request)
        # Anything else is unexpected: the one catch-all (observability.py) logs it with
        # the request id and answers a plain 500.
        raise exc

    @app.exception_handler(PoolTimeoutError)
    async def _pool_timeout(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        log.warning("database pool exhausted or unreachable")
        return database_unavailable(request)
