"""HTTP for inbound events (canonical and vendor webhooks) and stored deliveries."""

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlmodel import Session

from app import jsonbody
from app.auth import AdminKey
from app.config import get_settings
from app.csvstream import CSV_CONTENT, CSV_PAGE, csv_response, wants_csv
from app.db import SessionDep, WriteSessionDep, read_session
from app.errors import InvalidInput, NotFound, Unauthorized
from app.events import batching
from app.events.deliveries import list_deliveries as stored_deliveries
from app.events.deliveries import replay
from app.events.inbound import Inbound, InvalidDelivery
from app.events.schemas import Accepted, CanonicalEvent, DeliveryOut
from app.events.signatures import (
    ASHBY_HEADERS,
    GREENHOUSE_HEADERS,
    STANDARD_HEADERS,
    SignatureError,
    lever_signature,
    single_headers,
    verify_ashby,
    verify_greenhouse,
    verify_lever,
    verify_standard,
)
from app.events.vendors import ashby
from app.fields import NulFreeText, Timestamp
from app.http import AcceptHeader
from app.models import Delivery, DeliveryResult, utcnow
from app.observability import metrics_of
from app.openapi import component_schemas
from app.pagination import aware_instant, decode_cursor, encode_cursor, invalid_cursor
from app.schemas import PROBLEM_RESPONSES, Page, problems

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger("nextstep.events")

EVENT_ERRORS = {
    **problems(400, 401, 404, 409, 413, 422, 503),
    401: {**PROBLEM_RESPONSES[401], "description": "The signature is missing, wrong or stale"},
    404: {**PROBLEM_RESPONSES[404], "description": "No such source is configured"},
}


EVENT_SCHEMAS = component_schemas({"CanonicalEvent": CanonicalEvent})


def _header(name: str, description: str, *, required: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


STANDARD_WEBHOOK_HEADERS = [
    _header("webhook-id", "The delivery's id, unique per source; a repeat is a duplicate."),
    _header("webhook-timestamp", "Unix seconds when it was signed; ±5 minutes are accepted."),
    _header(
        "webhook-signature",
        "`v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{raw body}>`; several, space-separated, "
        "during a secret rotation.",
    ),
]


def _signed_body(schema: dict[str, Any], headers: list[dict[str, Any]]) -> dict[str, Any]:
    """The body and headers of a signed endpoint, for OpenAPI only: the route reads the raw
    bytes, which the signature covers, and parses them after the check."""
    return {
        "parameters": headers,
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
    }


# Lever signs token + triggeredAt, carried in the body beside the event.
LEVER_BODY = {
    "type": "object",
    "description": "A Lever webhook payload; `signature` is the hex HMAC-SHA256 of "
    "`token + triggeredAt`. A repeated token is a duplicate delivery.",
    "properties": {
        "event": {"type": "string"},
        "triggeredAt": {"type": "integer", "description": "Epoch milliseconds."},
        "token": {"type": "string", "maxLength": 256},
        "signature": {"type": "string"},
        "data": {"type": "object"},
    },
    "required": ["token", "triggeredAt", "signature"],
}


def _secrets(source: str) -> list[str]:
    secrets = get_settings().webhook_secrets.get(source)
    if not secrets:
        raise NotFound(f"No source named {source!r} is configured.")
    return secrets


def _authenticate(request: Request, source: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except jsonbody.TooDeep as exc:
        raise InvalidInput(f"The body is not valid JSON: {exc.msg}.") from None
    except SignatureError as exc:
        metrics_of(request.app).deliveries.auth_failures.labels(source).inc()
        log.warning("delivery refused for source %s: %s", source, exc)
        raise Unauthorized(f"Signature check failed: {exc}") from None


def _headers(source: str, request: Request, signed: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = _authenticate(
        request, source, lambda: single_headers(request.headers.items(), signed)
    )
    return headers


async def _ingest(request: Request, inbound: Inbound) -> Accepted:
    """Store and apply the delivery; the answer's status is the route's (202, or 200)."""
    metrics = metrics_of(request.app).deliveries
    started = time.perf_counter()
    try:
        # Stored in a transaction shared with the deliveries that arrive meanwhile, in its
        # own session: see batching.py.
        receipt = await batching.store(inbound)
    except InvalidDelivery:
        metrics.received.labels(inbound.source, DeliveryResult.rejected.value).inc()
        raise
    metrics.apply_latency.labels(inbound.source).observe(time.perf_counter() - started)
    metrics.received.labels(inbound.source, receipt.status).inc()
    return Accepted(delivery_id=receipt.delivery_id, status=receipt.status)


@router.post(
    "/events/{source}",
    operation_id="receiveEvent",
    status_code=202,
    responses=EVENT_ERRORS,
    openapi_extra=_signed_body(
        {"$ref": "#/components/schemas/CanonicalEvent"}, STANDARD_WEBHOOK_HEADERS
    ),
)
async def receive_event(source: str, request: Request) -> Accepted:
    """A canonical event, signed per Standard Webhooks with one of the source's secrets."""
    secrets = _secrets(source)
    body = await request.body()
    headers = _headers(source, request, STANDARD_HEADERS)
    tolerance = timedelta(seconds=get_settings().webhook_tolerance_seconds)
    webhook_id = _authenticate(
        request,
        source,
        lambda: verify_standard(body, headers, secrets, utcnow(), tolerance),
    )
    inbound = Inbound(source, "canonical", webhook_id, body, headers, utcnow())
    return await _ingest(request, inbound)


@router.post(
    "/webhooks/greenhouse",
    operation_id="receiveGreenhouseWebhook",
    status_code=200,
    responses=EVENT_ERRORS,
    openapi_extra=_signed_body(
        {"type": "object", "description": "A Greenhouse web hook payload."},
        [
            _header("Signature", "`sha256 <hex HMAC-SHA256 of the raw body>`."),
            _header(
                "Greenhouse-Event-ID",
                "Names the delivery for dedupe; without it the body's hash does.",
                required=False,
            ),
        ],
    ),
)
async def receive_greenhouse(request: Request) -> Accepted:
    """Greenhouse web hooks (`Signature: sha256 <hex>`). Greenhouse counts only 200 as success."""
    secrets = _secrets("greenhouse")
    body = await request.body()
    headers = _headers("greenhouse", request, GREENHOUSE_HEADERS)
    _authenticate(request, "greenhouse", lambda: verify_greenhouse(body, headers, secrets))
    key = headers.get("greenhouse-event-id") or "sha256:" + hashlib.sha256(body).hexdigest()
    inbound = Inbound("greenhouse", "greenhouse", key[:300], body, headers, utcnow())
    return await _ingest(request, inbound)


@router.post(
    "/webhooks/lever",
    operation_id="receiveLeverWebhook",
    status_code=202,
    responses=EVENT_ERRORS,
    openapi_extra=_signed_body(LEVER_BODY, []),
)
async def receive_lever(request: Request) -> Accepted:
    """Lever webhooks: `token`, `triggeredAt` and `signature` in the body."""
    secrets = _secrets("lever")
    body = await request.body()
    headers = _headers("lever", request, ())
    max_age = timedelta(hours=get_settings().lever_max_age_hours)
    token, _sent_at = _authenticate(
        request, "lever", lambda: verify_lever(body, secrets, utcnow(), max_age)
    )
    inbound = Inbound("lever", "lever", token, body, headers, utcnow())
    return await _ingest(request, inbound)


@router.post(
    "/webhooks/ashby",
    operation_id="receiveAshbyWebhook",
    status_code=202,
    responses=EVENT_ERRORS,
    openapi_extra=_signed_body(
        {"type": "object", "description": "An Ashby webhook payload."},
        [_header("Ashby-Signature", "`sha256=<hex HMAC-SHA256 of the raw body>`.")],
    ),
)
async def receive_ashby(request: Request) -> Accepted:
    """Ashby webhooks (`Ashby-Signature: sha256=<hex>`)."""
    secrets = _secrets("ashby")
    body = await request.body()
    headers = _headers("ashby", request, ASHBY_HEADERS)
    _authenticate(request, "ashby", lambda: verify_ashby(body, headers, secrets))
    inbound = Inbound("ashby", "ashby", ashby.delivery_key(body), body, headers, utcnow())
    return await _ingest(request, inbound)


def _shown_body(delivery: Delivery) -> str:
    text = delivery.body.decode("utf-8", errors="backslashreplace")
    if delivery.kind == "lever":
        # Lever puts its signature in the body; what admins read carries no signature material.
        signature = lever_signature(delivery.body)
        if signature:
            text = text.replace(signature, "[redacted]")
    return text


def delivery_out(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        source=delivery.source,
        kind=delivery.kind,
        delivery_key=delivery.delivery_key,
        event_type=delivery.event_type,
        occurred_at=delivery.occurred_at,
        received_at=delivery.received_at,
        result=delivery.result,
        error=delivery.error,
        subject=delivery.subject,
        applied_at=delivery.applied_at,
        duplicates=delivery.duplicates,
        headers=delivery.headers,
        body=_shown_body(delivery),
    )


_DELIVERY_PARAMS = {"source", "result", "received_after"}


def _optional_text(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise TypeError("not text")
    return value


@router.get(
    "/deliveries",
    operation_id="listDeliveries",
    response_model=Page[DeliveryOut],
    responses={**CSV_CONTENT, **problems(401, 403, 422)},
)
def list_deliveries(
    session: SessionDep,
    _caller: AdminKey,
    source: NulFreeText | None = None,
    result: DeliveryResult | None = None,
    received_after: Annotated[Timestamp | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(min_length=1)] = None,
    accept: AcceptHeader = None,
) -> Response:
    """Stored raw deliveries with their result and error, oldest first."""
    after = None
    if cursor is not None:
        decoded = decode_cursor(cursor, _DELIVERY_PARAMS)
        after = decoded.after
        params = decoded.params
        try:
            source = _optional_text(params.get("source"))
            result = DeliveryResult(params["result"]) if params.get("result") else None
            stored_after = _optional_text(params.get("received_after"))
            received_after = aware_instant(stored_after) if stored_after else None
        except (ValueError, TypeError, OverflowError):
            raise invalid_cursor() from None
    if received_after is not None and received_after.tzinfo is None:
        raise InvalidInput("received_after needs an offset, e.g. 2026-11-20T15:00:00Z")

    def page(
        session: Session, limit: int, after: list[str] | None
    ) -> tuple[list[DeliveryOut], str | None]:
        rows, last = stored_deliveries(session, source, result, received_after, limit, after)
        params = {
            "source": source,
            "result": result,
            "received_after": received_after.isoformat() if received_after else None,
        }
        return [delivery_out(d) for d in rows], encode_cursor(last, params) if last else None

    if wants_csv(accept):

        def fetch_page(cursor: str | None) -> tuple[list[DeliveryOut], str | None]:
            after = (
                decode_cursor(cursor, {"source", "result", "received_after"}).after
                if cursor
                else None
            )
            with read_session() as csv_session:
                return page(csv_session, CSV_PAGE, after)

        return csv_response(DeliveryOut, fetch_page, "deliveries")
    items, next_cursor = page(session, limit, after)
    body = Page(items=items, next_cursor=next_cursor).model_dump_json()
    return Response(body, media_type="application/json")


@router.post(
    "/deliveries/{delivery_id}/replay",
    operation_id="replayDelivery",
    responses=problems(401, 403, 404, 422),
)
def replay_delivery(
    session: WriteSessionDep, _caller: AdminKey, delivery_id: uuid.UUID
) -> DeliveryOut:
    """Apply a stored delivery again, e.g. after a mapping fix. Idempotent."""
    return delivery_out(replay(session, delivery_id, utcnow()))
