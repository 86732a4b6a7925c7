"""Signature checks for the canonical endpoint (Standard Webhooks) and each vendor's scheme.

Every function raises SignatureError, and nothing else, for anything that does not
verify: a malformed header must be a 401, never a 500.
"""

import hashlib
import hmac
import json
from datetime import datetime, timedelta

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class SignatureError(Exception):
    """The delivery is not authentic, or too old; the message is safe to show."""


def _standard_webhook(secret: str) -> Webhook:
    try:
        return Webhook(secret)
    except Exception:
        # Not base64 (with or without whsec_): use the text itself as the key.
        return Webhook(secret.encode())


def verify_standard(
    body: bytes,
    headers: dict[str, str],
    secrets: list[str],
    now: datetime,
    tolerance: timedelta,
) -> str:
    """Checks a Standard Webhooks signature with any of ``secrets``; returns the webhook-id."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if not (webhook_id and timestamp and signature):
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature are required")
    if len(webhook_id) > 256:
        raise SignatureError("webhook-id is longer than 256 characters")
    try:
        sent_at = datetime.fromtimestamp(int(timestamp), now.tzinfo)
    except (ValueError, OverflowError, OSError):
        raise SignatureError("webhook-timestamp is not a Unix time in seconds") from None
    if abs(now - sent_at) > tolerance:
        raise SignatureError("webhook-timestamp is outside the accepted window")
    if "," not in signature:
        raise SignatureError("webhook-signature must be 'v1,<base64>'")
    for secret in secrets:
        try:
            _standard_webhook(secret).verify(body, headers, json_parse=False)
            return webhook_id
        except (WebhookVerificationError, ValueError, TypeError, UnicodeDecodeError):
            # The library raises bare ValueErrors for some malformed signatures.
            continue
    raise SignatureError("no signature matches")


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _matches_any(secrets: list[str], message: bytes, given: str) -> bool:
    given = given.strip().lower()
    return any(hmac.compare_digest(_hex_hmac(s, message), given) for s in secrets)


def verify_greenhouse(body: bytes, headers: dict[str, str], secrets: list[str]) -> None:
    """``Signature: sha256 <hex>``, HMAC-SHA256 of the raw body."""
    scheme, _, digest = headers.get("signature", "").strip().partition(" ")
    if scheme.lower() != "sha256" or not digest:
        raise SignatureError("Signature header must be 'sha256 <hex digest>'")
    if not _matches_any(secrets, body, digest):
        raise SignatureError("no signature matches")


def verify_ashby(body: bytes, headers: dict[str, str], secrets: list[str]) -> None:
    """``Ashby-Signature: sha256=<hex>``, HMAC-SHA256 of the raw body."""
    scheme, _, digest = headers.get("ashby-signature", "").strip().partition("=")
    if scheme.lower() != "sha256" or not digest:
        raise SignatureError("Ashby-Signature header must be 'sha256=<hex digest>'")
    if not _matches_any(secrets, body, digest):
        raise SignatureError("no signature matches")


def verify_lever(
    body: bytes, secrets: list[str], now: datetime, max_age: timedelta
) -> tuple[str, datetime]:
    """Lever signs ``token + triggeredAt`` (not the data); returns the token and the instant."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("body is not JSON, so it carries no signature") from None
    if not isinstance(payload, dict):
        raise SignatureError("body carries no signature")
    token, triggered, signature = (
        payload.get("token"),
        payload.get("triggeredAt"),
        payload.get("signature"),
    )
    if not isinstance(token, str) or not token or not isinstance(signature, str):
        raise SignatureError("token and signature are required in the body")
    if isinstance(triggered, bool) or not isinstance(triggered, int):
        raise SignatureError("triggeredAt must be epoch milliseconds")
    if len(token) > 256:
        raise SignatureError("token is longer than 256 characters")
    if not _matches_any(secrets, f"{token}{triggered}".encode(), signature):
        raise SignatureError("no signature matches")
    try:
        sent_at = datetime.fromtimestamp(triggered / 1000, now.tzinfo)
    except (ValueError, OverflowError, OSError):
        raise SignatureError("triggeredAt is out of range") from None
    if now - sent_at > max_age:
        raise SignatureError(f"triggeredAt is older than {max_age}")
    if sent_at - now > timedelta(minutes=5):
        raise SignatureError("triggeredAt is in the future")
    return token, sent_at
