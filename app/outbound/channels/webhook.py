"""Webhook endpoints: the Standard Webhooks body and headers.

``webhook-id`` is the message id, the same on every attempt; ``webhook-timestamp`` is the
attempt's; ``webhook-signature`` holds one signature per secret in use, so a receiver that
knows either the new or the previous secret during a rotation accepts it.
"""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from app.models.outbound import EndpointKind, EventType


def _z(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def webhook_body(type_: EventType, data: dict[str, Any], now: datetime) -> str:
    """The Standard Webhooks body: sent byte for byte the same on every attempt."""
    body = {"type": type_.value, "timestamp": _z(now), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


class _Webhook:
    kind = EndpointKind.webhook.value
    signed = True

    def body(self, type_: EventType, data: dict[str, Any], now: datetime) -> str:
        return webhook_body(type_, data, now)

    def headers(
        self, message_id: str, body: str, secrets: Sequence[str], at: datetime
    ) -> dict[str, str]:
        signatures = " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signatures,
        }


WEBHOOK = _Webhook()
