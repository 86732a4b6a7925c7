"""Signs deliveries the way each sender does, with real secrets."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook


def standard_headers(
    body: bytes, secret: str, webhook_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    try:
        signature = Webhook(secret).sign(
            webhook_id, datetime.fromtimestamp(timestamp, UTC), body.decode()
        )
    except UnicodeDecodeError:
        # The library signs text; a sender of other bytes signs them as they are.
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        signature = "v1," + base64.b64encode(digest).decode()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def event_body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"type": event_type, "occurred_at": occurred_at.isoformat(), "data": data}
    ).encode()


def greenhouse_headers(body: bytes, secret: str, event_id: str | None = None) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Signature": f"sha256 {digest}", "content-type": "application/json"}
    if event_id:
        headers["Greenhouse-Event-ID"] = event_id
    return headers


def ashby_headers(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Ashby-Signature": f"sha256={digest}", "content-type": "application/json"}


def lever_sign(
    payload: dict[str, Any],
    secret: str,
    triggered_at_ms: int | None = None,
    token: str | None = None,
) -> bytes:
    """Re-stamps and re-signs a Lever payload (Lever signs token + triggeredAt)."""
    payload = dict(payload)
    payload["triggeredAt"] = triggered_at_ms or int(time.time() * 1000)
    payload["token"] = token or payload.get("token") or uuid.uuid4().hex
    message = f"{payload['token']}{payload['triggeredAt']}".encode()
    payload["signature"] = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return json.dumps(payload).encode()
