"""Use cases of deadline policies: create, change, delete and list them (which one applies
is policies.py; what they do on the write paths, steps.py). Each write ends in one commit."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.db import get_or_not_found, keyset_page, save_changes
from app.deadlines.schemas import DefaultStepIn, PolicyCreate, PolicyOut, PolicyPatch
from app.deadlines.service import known_calendar, lock_calendars
from app.errors import InvalidInput
from app.models import DeadlinePolicy
from app.pagination import aware_instant
from app.versions import check_if_match


def _default_step_json(step: DefaultStepIn | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {
        "action": step.action,
        "owner": step.owner.model_dump(mode="json", by_alias=True),
        "channel": step.channel.value if step.channel else None,
        "rule": step.rule.to_json(),
    }


def policy_out(row: DeadlinePolicy) -> PolicyOut:
    return PolicyOut.model_validate(
        {
            "id": row.id,
            "name": row.name,
            "position": row.position,
            "enabled": row.enabled,
            "match": row.match,
            "calendar_id": row.calendar_id,
            "due_rule": row.due_rule,
            "default_step": row.default_step,
            "version": row.version,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


def get_policy(session: Session, policy_id: uuid.UUID, *, lock: bool = False) -> DeadlinePolicy:
    return get_or_not_found(session, DeadlinePolicy, policy_id, "deadline policy", lock=lock)


def create_policy(session: Session, data: PolicyCreate, now: datetime) -> DeadlinePolicy:
    """A new policy; without a position it goes after the last one. Flushed, not committed:
    the request commits it (with its Idempotency-Key, if sent)."""
    lock_calendars(session)
    if data.calendar_id is not None:
        known_calendar(session, data.calendar_id, ["body", "calendar_id"])
    position = data.position
    if position is None:
        last = session.exec(select(func.max(col(DeadlinePolicy.position)))).one()
        position = 0 if last is None else int(last) + 1
    row = DeadlinePolicy(
        name=data.name,
        position=position,
        enabled=data.enabled,
        match=data.match.model_dump(mode="json", exclude_none=True),
        calendar_id=data.calendar_id,
        due_rule=data.due_rule.to_json() if data.due_rule else None,
        default_step=_default_step_json(data.default_step),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def update_policy(
    session: Session, policy_id: uuid.UUID, patch: PolicyPatch, if_match: str, now: datetime
) -> DeadlinePolicy:
    """Change a policy, guarded by its ETag. Due times it computed before stay as they are."""
    lock_calendars(session)
    row = get_policy(session, policy_id, lock=True)
    check_if_match(row, if_match, "deadline policy")
    sent = patch.model_fields_set
    values: dict[str, Any] = {}
    for name in ("name", "position", "enabled"):
        if name in sent:
            values[name] = getattr(patch, name)
    if "match" in sent and patch.match is not None:
        values["match"] = patch.match.model_dump(mode="json", exclude_none=True)
    if "calendar_id" in sent:
        if patch.calendar_id is not None:
            known_calendar(session, patch.calendar_id, ["body", "calendar_id"])
        values["calendar_id"] = patch.calendar_id
    if "due_rule" in sent:
        values["due_rule"] = patch.due_rule.to_json() if patch.due_rule else None
    if "default_step" in sent:
        values["default_step"] = _default_step_json(patch.default_step)
    after_due = values.get("due_rule", row.due_rule)
    after_step = values.get("default_step", row.default_step)
    if after_due is None and after_step is None:
        raise InvalidInput(
            "A policy needs a due_rule, a default_step or both.",
            errors=[{"loc": ["body"], "msg": "a policy needs a due_rule, a default_step or both"}],
        )
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    return save_changes(session, row, changed, now)


def delete_policy(session: Session, policy_id: uuid.UUID, if_match: str | None) -> None:
    """Delete a policy; the steps and due times it made stay."""
    row = get_policy(session, policy_id, lock=True)
    check_if_match(row, if_match, "deadline policy")
    session.delete(row)
    session.commit()


def list_policies(
    session: Session, limit: int, after: list[str] | None
) -> tuple[list[PolicyOut], list[str] | None]:
    """Policies in the order they apply: by position, then creation, then id."""
    keys = (col(DeadlinePolicy.position), col(DeadlinePolicy.created_at), col(DeadlinePolicy.id))
    parsers = (int, aware_instant, uuid.UUID)
    rows, cursor = keyset_page(session, DeadlinePolicy, keys, parsers, after, limit)
    return [policy_out(r) for r in rows], cursor
