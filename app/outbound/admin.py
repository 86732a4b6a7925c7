"""Use cases of outbound delivery's administration: endpoints, reminder rules, messages.

Each write ends in one commit (or, inside an idempotent create, one flush: see
idempotency.create_once). The messages and reminders a change causes are written by the
outbox in the same transaction as the change.
"""

import base64
import json
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import tuple_, update
from sqlmodel import Session, col, select

from app.db import get_or_not_found, keyset_page, save_changes
from app.errors import Conflict
from app.models import Commitment
from app.models.outbound import (
    Endpoint,
    EndpointKind,
    EventType,
    Message,
    MessageAttempt,
    MessageChannel,
    MessageStatus,
    MessageType,
    Reminder,
    ReminderRule,
)
from app.outbound import mail, outbox, payloads, reminders
from app.outbound.channels import channel_of
from app.outbound.channels import email as email_channel
from app.outbound.schemas import (
    AttemptOut,
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointPatch,
    MessageDetail,
    MessageOut,
    MessageQuery,
    ReminderOut,
    RuleCreate,
    RuleOut,
    RulePatch,
)
from app.pagination import aware_instant, keyset
from app.versions import check_if_match

SECRET_PREFIX = "whsec_"
# How long a rotated-out secret keeps signing beside the new one.
PREVIOUS_SECRET_LIFETIME = timedelta(hours=24)
DISABLED_BY_ADMIN = "disabled by an admin"


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


# --- endpoints -----------------------------------------------------------------------------


def endpoint_out(row: Endpoint) -> EndpointOut:
    return EndpointOut(
        id=row.id,
        kind=EndpointKind(row.kind),
        url=row.url,
        description=row.description,
        event_types=[EventType(t) for t in row.event_types],
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def endpoint_created(row: Endpoint) -> EndpointCreated:
    """The answer to a create, the only one that shows the secret."""
    return EndpointCreated(**endpoint_out(row).model_dump(), secret=row.secret)


def get_endpoint(session: Session, endpoint_id: uuid.UUID, *, lock: bool = False) -> Endpoint:
    return get_or_not_found(session, Endpoint, endpoint_id, "endpoint", lock=lock)


def create_endpoint(session: Session, data: EndpointCreate, now: datetime) -> Endpoint:
    """A new endpoint; the webhook kind gets a signing secret, slack none (it is not signed).
    Flushed, not committed: the request commits it (with its Idempotency-Key, if sent)."""
    row = Endpoint(
        kind=data.kind.value,
        url=data.url,
        description=data.description,
        event_types=[t.value for t in data.event_types],
        enabled=data.enabled,
        disabled_reason=None if data.enabled else DISABLED_BY_ADMIN,
        secret=new_secret() if channel_of(data.kind).signed else None,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def list_endpoints(
    session: Session, limit: int, after: list[str] | None
) -> tuple[list[EndpointOut], list[str] | None]:
    """Endpoints, oldest first; the page and the key to continue after."""
    keys = (col(Endpoint.created_at), col(Endpoint.id))
    rows, cursor = keyset_page(session, Endpoint, keys, (aware_instant, uuid.UUID), after, limit)
    return [endpoint_out(r) for r in rows], cursor


def update_endpoint(
    session: Session, endpoint_id: uuid.UUID, patch: EndpointPatch, if_match: str, now: datetime
) -> Endpoint:
    """Change an endpoint, guarded by its ETag. Enabling clears disabled_reason (a 410 or an
    admin's); disabling records that an admin did it."""
    row = get_endpoint(session, endpoint_id, lock=True)
    check_if_match(row, if_match, "endpoint")
    sent = patch.model_fields_set
    values: dict[str, Any] = {}
    if "url" in sent:
        values["url"] = patch.url
    if "description" in sent:
        values["description"] = patch.description
    if "event_types" in sent and patch.event_types is not None:
        values["event_types"] = [t.value for t in patch.event_types]
    if "enabled" in sent:
        values["enabled"] = patch.enabled
        if patch.enabled:
            values["disabled_reason"] = None
        elif row.enabled:
            values["disabled_reason"] = DISABLED_BY_ADMIN
    return save_changes(session, row, values, now)


def delete_endpoint(
    session: Session, endpoint_id: uuid.UUID, if_match: str | None, now: datetime
) -> None:
    """Delete an endpoint: its pending messages are cancelled; its messages stay listed."""
    row = get_endpoint(session, endpoint_id, lock=True)
    check_if_match(row, if_match, "endpoint")
    outbox.end_pending(session, row.id, MessageStatus.cancelled, now)
    session.delete(row)
    session.commit()


def rotate_secret(session: Session, endpoint_id: uuid.UUID, now: datetime) -> str:
    """A new signing secret; the current one keeps signing beside it for 24 hours (a secret
    rotated out before then is dropped)."""
    row = get_endpoint(session, endpoint_id, lock=True)
    if not channel_of(row.kind).signed or row.secret is None:
        raise Conflict(f"A {row.kind} endpoint is not signed: it has no secret to rotate.")
    secret = new_secret()
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + PREVIOUS_SECRET_LIFETIME
    row.secret = secret
    row.updated_at = now
    session.add(row)
    session.commit()
    return secret


def send_test(session: Session, endpoint_id: uuid.UUID, now: datetime) -> Message:
    """Queue an endpoint.test message, whatever the endpoint's event_types say."""
    row = get_endpoint(session, endpoint_id, lock=True)
    if not row.enabled:
        raise Conflict(
            f"The endpoint is disabled ({row.disabled_reason or 'no reason given'}); "
            "enable it first."
        )
    message = outbox.enqueue(session, row, EventType.endpoint_test, payloads.test_data(row), now)
    session.commit()
    return message


def recover(session: Session, endpoint_id: uuid.UUID, since: datetime, now: datetime) -> int:
    """Queue the endpoint's failed messages created at or after ``since`` again: same id and
    body, their attempts and attempt log kept; the count of them."""
    get_endpoint(session, endpoint_id, lock=True)
    result = session.exec(
        update(Message)
        .where(
            col(Message.endpoint_id) == endpoint_id,
            col(Message.status) == MessageStatus.failed,
            col(Message.created_at) >= since,
        )
        .values(status=MessageStatus.pending, next_attempt_at=now, updated_at=now)
    )
    session.commit()
    return int(result.rowcount)


# --- reminder rules ------------------------------------------------------------------------


def rule_out(row: ReminderRule) -> RuleOut:
    return RuleOut.model_validate(
        {
            "id": row.id,
            "name": row.name,
            "position": row.position,
            "enabled": row.enabled,
            "match": row.match,
            "steps": row.steps,
            "quiet_hours": row.quiet_hours,
            "email_owner": row.email_owner,
            "version": row.version,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


def get_rule(session: Session, rule_id: uuid.UUID, *, lock: bool = False) -> ReminderRule:
    return get_or_not_found(session, ReminderRule, rule_id, "reminder rule", lock=lock)


def create_rule(session: Session, data: RuleCreate, now: datetime) -> ReminderRule:
    """A new rule; the worker schedules it for the open steps that exist
    (reminders.rule_changed). Flushed, not committed: the request commits it (with its
    Idempotency-Key, if sent)."""
    if data.email_owner:
        mail.require_smtp("email_owner", ["body", "email_owner"])
    row = ReminderRule(
        name=data.name,
        position=data.position,
        enabled=data.enabled,
        match=data.match.model_dump(mode="json", exclude_none=True),
        steps=[step.to_json() for step in data.steps],
        quiet_hours=data.quiet_hours,
        email_owner=data.email_owner,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    reminders.rule_changed(session, row, now)
    return row


def list_rules(
    session: Session, limit: int, after: list[str] | None
) -> tuple[list[RuleOut], list[str] | None]:
    """Rules by position, then id."""
    keys = (col(ReminderRule.position), col(ReminderRule.id))
    rows, cursor = keyset_page(session, ReminderRule, keys, (int, uuid.UUID), after, limit)
    return [rule_out(r) for r in rows], cursor


def update_rule(
    session: Session, rule_id: uuid.UUID, patch: RulePatch, if_match: str, now: datetime
) -> ReminderRule:
    """Change a rule, guarded by its ETag: its scheduled reminders are skipped ("rule
    changed") and the open steps it matches now are scheduled anew, by the worker."""
    row = get_rule(session, rule_id, lock=True)
    check_if_match(row, if_match, "reminder rule")
    sent = patch.model_fields_set
    values: dict[str, Any] = {}
    for name in ("name", "position", "enabled", "quiet_hours", "email_owner"):
        if name in sent:
            values[name] = getattr(patch, name)
    if patch.email_owner:
        mail.require_smtp("email_owner", ["body", "email_owner"])
    if "match" in sent and patch.match is not None:
        values["match"] = patch.match.model_dump(mode="json", exclude_none=True)
    if "steps" in sent and patch.steps is not None:
        values["steps"] = [step.to_json() for step in patch.steps]
    return save_changes(
        session, row, values, now, lambda: reminders.rule_changed(session, row, now)
    )


def delete_rule(session: Session, rule_id: uuid.UUID, if_match: str | None, now: datetime) -> None:
    """Delete a rule: its scheduled reminders are skipped ("rule deleted"); those it sent
    stay in the commitments' reminder lists."""
    row = get_rule(session, rule_id, lock=True)
    check_if_match(row, if_match, "reminder rule")
    reminders.rule_removed(session, row.id, now)
    session.delete(row)
    session.commit()


# --- messages ------------------------------------------------------------------------------


def message_out(row: Message) -> MessageOut:
    return MessageOut(
        id=row.id,
        endpoint_id=row.endpoint_id,
        channel=MessageChannel(row.channel),
        recipient=row.recipient,
        type=MessageType(row.type),
        commitment_id=row.commitment_id,
        status=MessageStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
    )


def get_message(session: Session, message_id: uuid.UUID, *, lock: bool = False) -> Message:
    return get_or_not_found(session, Message, message_id, "message", lock=lock)


def message_detail(session: Session, message_id: uuid.UUID) -> MessageDetail:
    """One message with its attempt log and the body it sends."""
    row = get_message(session, message_id)
    attempts = session.exec(
        select(MessageAttempt)
        .where(col(MessageAttempt.message_id) == row.id)
        .order_by(col(MessageAttempt.n), col(MessageAttempt.at), col(MessageAttempt.id))
    ).all()
    return MessageDetail(
        **message_out(row).model_dump(),
        attempt_log=[
            AttemptOut(
                n=a.n,
                at=a.at,
                response_status=a.response_status,
                error=a.error,
                duration_ms=a.duration_ms,
            )
            for a in attempts
        ],
        payload=_payload(row),
    )


def _payload(row: Message) -> dict[str, Any]:
    """What the API shows of a message's body: the JSON sent, or an e-mail's summary (its
    links' tokens hidden)."""
    if row.channel == MessageChannel.email:
        return email_channel.summary(row.body)
    payload: dict[str, Any] = json.loads(row.body)
    return payload


def list_messages(
    session: Session, query: MessageQuery, after: list[str] | None
) -> tuple[list[MessageOut], list[str] | None]:
    """Messages, newest first, filtered by endpoint, status, type and commitment."""
    keys = (col(Message.created_at), col(Message.id))
    statement = select(Message)
    if query.endpoint_id is not None:
        statement = statement.where(col(Message.endpoint_id) == query.endpoint_id)
    if query.status is not None:
        statement = statement.where(col(Message.status) == query.status.value)
    if query.type is not None:
        statement = statement.where(col(Message.type) == query.type.value)
    if query.commitment_id is not None:
        statement = statement.where(col(Message.commitment_id) == query.commitment_id)
    if query.channel is not None:
        statement = statement.where(col(Message.channel) == query.channel.value)
    if query.recipient is not None:
        statement = statement.where(col(Message.recipient) == query.recipient)
    mark = keyset(after, aware_instant, uuid.UUID)
    if mark is not None:
        statement = statement.where(tuple_(*keys) < tuple_(*mark))
    statement = statement.order_by(*(key.desc() for key in keys)).limit(query.limit + 1)
    rows = list(session.exec(statement).all())
    if len(rows) <= query.limit:
        return [message_out(r) for r in rows], None
    rows = rows[: query.limit]
    cursor = [rows[-1].created_at.isoformat(), str(rows[-1].id)]
    return [message_out(r) for r in rows], cursor


def resend(session: Session, message_id: uuid.UUID, now: datetime) -> Message:
    """Queue a message again, now: the same id and body (an e-mail: the same bytes and
    Message-ID); its attempts and log are kept."""
    row = get_message(session, message_id, lock=True)
    if row.endpoint_id is not None and session.get(Endpoint, row.endpoint_id) is None:
        raise Conflict("The message's endpoint was deleted: there is nowhere to send it.")
    row.status = MessageStatus.pending
    row.next_attempt_at = now
    row.updated_at = now
    session.add(row)
    session.commit()
    return row


# --- a commitment's reminders --------------------------------------------------------------


def commitment_reminders(session: Session, commitment_id: uuid.UUID) -> list[ReminderOut]:
    """The reminders scheduled for a commitment and what became of them, by when they fire."""
    get_or_not_found(session, Commitment, commitment_id, "commitment")
    rows = session.exec(
        select(Reminder)
        .where(col(Reminder.commitment_id) == commitment_id)
        .order_by(
            col(Reminder.fire_at), col(Reminder.step), col(Reminder.rule_id), col(Reminder.id)
        )
    ).all()
    return [
        ReminderOut.model_validate(
            {
                "rule_id": r.rule_id,
                "type": r.type,
                "fire_at": r.fire_at,
                "state": r.state,
                "reason": r.reason,
            }
        )
        for r in rows
    ]
