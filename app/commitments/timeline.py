"""The timeline of an interview: every change in effect order, with before and after."""

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from app.commitments.history import effect_order, replay_commitment, replay_interview
from app.commitments.ledger import as_change
from app.commitments.rows import page_of
from app.commitments.schemas import (
    FieldChange,
    TimelineEntryOut,
)
from app.commitments.service import get_interview
from app.models import (
    TimelineEntry,
    TimelineKind,
)
from app.pagination import aware_instant, keyset

OWNER_FIELDS = frozenset({"owner_id", "owner_name", "owner_role", "owed_by"})


def _entry_kind(
    entry: TimelineEntry, diff: dict[str, tuple[Any, Any]], first_interview_entry: uuid.UUID | None
) -> str:
    if entry.kind in (TimelineKind.interview_recorded, TimelineKind.interview_updated):
        # Which event recorded the interview depends on effect time, not on arrival.
        recorded = entry.id == first_interview_entry
        return TimelineKind.interview_recorded if recorded else TimelineKind.interview_updated
    if entry.kind != TimelineKind.updated or not diff:
        return entry.kind
    keys = set(diff)
    if "owner_id" in keys and keys <= OWNER_FIELDS:
        return "reassigned"
    if keys <= {"due_at", "promised_by"} and "due_at" in keys:
        return "deadline_moved"
    return "updated"


def _jsonable(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def timeline(
    session: Session, interview_id: uuid.UUID, limit: int, after: list[str] | None
) -> tuple[list[TimelineEntryOut], str | None]:
    """The interview's history in effect order, each change with before and after."""
    get_interview(session, interview_id)
    entries = list(
        session.exec(select(TimelineEntry).where(TimelineEntry.interview_id == interview_id)).all()
    )
    diffs: dict[uuid.UUID, dict[str, tuple[Any, Any]]] = {}
    subjects: dict[uuid.UUID | None, list[TimelineEntry]] = defaultdict(list)
    first_interview_entry: uuid.UUID | None = None
    for entry in entries:
        if entry.kind != TimelineKind.contact:
            subjects[entry.commitment_id].append(entry)
        else:
            diffs[entry.id] = {k: (None, v) for k, v in entry.changes.items() if v is not None}
    for commitment_id, group in subjects.items():
        ordered = _in_effect_order(group)
        states: Iterable[Any] = (
            replay_commitment([as_change(e) for e in ordered])
            if commitment_id
            else replay_interview([as_change(e) for e in ordered])
        )
        for entry, state in zip(ordered, states, strict=True):
            diffs[entry.id] = state.diff
        if commitment_id is None and ordered:
            first_interview_entry = ordered[0].id
    entries.sort(key=lambda e: (e.effective_at, e.recorded_at, e.id))
    mark = keyset(after, aware_instant, aware_instant, uuid.UUID)
    if mark is not None:
        entries = [e for e in entries if (e.effective_at, e.recorded_at, e.id) > mark]
    page, cursor = page_of(
        entries, limit, lambda e: (e.effective_at.isoformat(), e.recorded_at.isoformat(), e.id), {}
    )
    return [
        TimelineEntryOut(
            id=e.id,
            interview_id=e.interview_id,
            commitment_id=e.commitment_id,
            kind=_entry_kind(e, diffs[e.id], first_interview_entry),
            effective_at=e.effective_at,
            recorded_at=e.recorded_at,
            actor=e.actor,
            reason=e.reason,
            changes={
                k: FieldChange(before=_jsonable(b), after=_jsonable(a))
                for k, (b, a) in diffs[e.id].items()
            },
            delivery_id=e.delivery_id,
        )
        for e in page
    ], cursor


def _in_effect_order(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    keyed = [(as_change(e), e) for e in entries]
    position = {id(c): e for c, e in keyed}
    return [position[id(c)] for c in effect_order([c for c, _ in keyed])]
