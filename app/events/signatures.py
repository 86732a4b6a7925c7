"""Signature checks for the canonical endpoint (Standard Webhooks) and each vendor's scheme.

Every function raises SignatureError for anything that does not verify (a malformed
header must be a 401, never a 500); the one exception is a Lever body nested too deep
to read its signature from (``jsonbody.TooDeep``), which is malformed input: 422.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache

from standardwebhooks.webhooks import Webhook

from app import jsonbody


class SignatureError(Exception):
    """The delivery is not authentic, or too old; the message is safe to show."""


STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
GREENHOUSE_HEADERS = ("signature", "greenhouse-event-id")
ASHBY_HEADERS = ("ashby-signature",)


def single_headers(items: Iterable[tuple[str, str]], signed: tuple[str, ...]) -> dict[str, str]:
    """Headers by lower-case name; one that the signature check reads may come only once."""
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in headers and key in signed:
            raise SignatureError(f"{key} is sent more than once")
        headers[key] = value
    return headers


@cache  # one per configured secret: every delivery tries them all
def _standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret, as the library reads it (``whsec_`` +
    base64); a secret that is not base64 is used as text."""
    try:
        return Webhook(secret)._whsecret
    except Exception:
        return secret.encode()


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
    # The plain decimal spelling only: int() would also take " 17", "+17", "017" or "1_7",
    # and the signature covers the instant, not the spelling that was sent.
    if not (
        timestamp.isascii()
        and timestamp.isdigit()
        and len(timestamp) <= 12
        and str(int(timestamp)) == timestamp
    ):
        raise SignatureError("webhook-timestamp is not a Unix time in seconds")
    try:
        sent_at = datetime.fromtimestamp(int(timestamp), now.tzinfo)
    except (ValueError, OverflowError, OSError):
        raise SignatureError("webhook-timestamp is not a Unix time in seconds") from None
    if abs(now - sent_at) > tolerance:
        raise SignatureError("webhook-timestamp is outside the accepted window")
    given = _standard_signatures(signature)
    if not given:
        raise SignatureError("webhook-signature must be 'v1,<base64>'")
    # Over the raw bytes: the library's sign() and verify() take text, and a body that is
    # not UTF-8 is still signed; whether it is valid is the mapping's question (a 422).
    # The comparison is strict, where the library's verify() would skip characters that
    # are not base64 and apply a tolerance of its own.
    message = f"{webhook_id}.{timestamp}.".encode() + body
    for secret in secrets:
        expected = hmac.new(_standard_key(secret), message, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, sig) for sig in given):
            return webhook_id
    raise SignatureError("no signature matches")


def _standard_signatures(header: str) -> list[bytes]:
    """The v1 signatures of a webhook-signature header (space-separated, strict base64)."""
    signatures = []
    for part in header.split(" "):
        version, comma, encoded = part.partition(",")
        if version != "v1" or not comma:
            continue
        try:
            signatures.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return signatures


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _matches_any(secrets: list[str], message: bytes, given: str) -> bool:
    given = given.strip().lower()
    if not given.isascii():  # compare_digest raises TypeError for other text
        return False
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


def lever_signature(body: bytes) -> str | None:
    """The signature a Lever body carries, if it is one."""
    try:
        payload = jsonbody.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    signature = payload.get("signature") if isinstance(payload, dict) else None
    return signature if isinstance(signature, str) else None


def verify_lever(
    body: bytes, secrets: list[str], now: datetime, max_age: timedelta
) -> tuple[str, datetime]:
    """Lever signs ``token + triggeredAt`` (not the data); returns the token and the instant."""
    try:
        payload = jsonbody.loads(body)
    except jsonbody.TooDeep:
        raise  # malformed rather than unsigned: the caller refuses it with 422
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
