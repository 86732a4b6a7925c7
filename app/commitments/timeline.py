"""The timeline of an interview: every change in effect order, with before and after.

A page is read by keyset on the stored order (effective_at, recorded_at, id). What each
entry changed (its before and after, and for an interview whether it recorded or updated
it) is not stored: it comes from replaying the entry's subject. Only the subjects on the
page are replayed, and only up to the page's last instant, with their agreements: every
change that takes effect before an entry of the page is then in hand, and nothing later.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, false, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from app.commitments.history import effect_order, replay_commitment, replay_interview
from app.commitments.ledger import as_change
from app.commitments.rows import LIMIT, AnyRow, after_mark, fetch_rows, mark_params, page_of
from app.commitments.schemas import FieldChange, TimelineEntryOut
from app.commitments.service import get_interview
from app.models import TimelineEntry, TimelineKind, UTCDateTime
from app.pagination import aware_instant, keyset

OWNER_FIELDS = frozenset({"owner_id", "owner_name", "owner_role", "owed_by"})
INTERVIEW_KINDS = (TimelineKind.interview_recorded, TimelineKind.interview_updated)
Diff = dict[str, tuple[Any, Any]]

_ENTRY = TimelineEntry
_ENTRY_COLUMNS = tuple(
    col(getattr(_ENTRY, name))
    for name in (
        "id",
        "interview_id",
        "commitment_id",
        "kind",
        "effective_at",
        "tiebreak",
        "recorded_at",
        "actor",
        "reason",
        "changes",
        "delivery_id",
    )
)
_PAGE_KEYS = (col(_ENTRY.effective_at), col(_ENTRY.recorded_at), col(_ENTRY.id))


@cache
def _page_statement(after: bool) -> Select[Any]:
    statement = sa_select(*_ENTRY_COLUMNS).where(
        col(_ENTRY.interview_id) == bindparam("interview_id")
    )
    if after:
        statement = statement.where(after_mark(_PAGE_KEYS))
    return statement.order_by(*_PAGE_KEYS).limit(LIMIT)


def _history_statement(commitments: bool, interview: bool) -> Select[Any]:
    """The entries the page's subjects replay: the named commitments' (``commitment_ids``)
    and, with ``interview``, the interview's own, up to ``until``, agreements at any time
    (a commitment's history starts with its earliest agreement)."""
    subjects = []
    if commitments:
        subjects.append(col(_ENTRY.commitment_id).in_(bindparam("commitment_ids", expanding=True)))
    if interview:
        subjects.append(col(_ENTRY.kind).in_(INTERVIEW_KINDS))
    return sa_select(*_ENTRY_COLUMNS).where(
        col(_ENTRY.interview_id) == bindparam("interview_id"),
        or_(*subjects) if subjects else false(),
        or_(
            col(_ENTRY.effective_at) <= bindparam("until", type_=UTCDateTime),
            col(_ENTRY.kind) == TimelineKind.agreed,
        ),
    )


def _entry_kind(entry: AnyRow, diff: Diff, first_interview_entry: uuid.UUID | None) -> str:
    if entry.kind in INTERVIEW_KINDS:
        # Which event recorded the interview depends on effect time, not on arrival.
        recorded = entry.id == first_interview_entry
        return TimelineKind.interview_recorded if recorded else TimelineKind.interview_updated
    if entry.kind != TimelineKind.updated or not diff:
        return str(entry.kind)
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
    """A page of the interview's history in effect order, each change with before and after."""
    get_interview(session, interview_id)
    mark = keyset(after, aware_instant, aware_instant, uuid.UUID)
    params = {"interview_id": interview_id, "limit": limit + 1, **mark_params(mark)}
    rows = fetch_rows(session, _page_statement(mark is not None), params)
    page, cursor = page_of(
        rows, limit, lambda e: (e.effective_at.isoformat(), e.recorded_at.isoformat(), e.id), {}
    )
    diffs, first_interview_entry = _diffs(session, interview_id, page)
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


def _diffs(
    session: Session, interview_id: uuid.UUID, page: Sequence[AnyRow]
) -> tuple[dict[uuid.UUID, Diff], uuid.UUID | None]:
    """What each entry of the page changed, and the entry that recorded the interview (when
    the page holds interview entries), from a replay of the page's subjects only."""
    diffs: dict[uuid.UUID, Diff] = {}
    for entry in page:
        if entry.kind == TimelineKind.contact:
            diffs[entry.id] = {k: (None, v) for k, v in entry.changes.items() if v is not None}
    replayed = [e for e in page if e.kind != TimelineKind.contact]
    if not replayed:
        return diffs, None
    commitment_ids = sorted({e.commitment_id for e in replayed if e.commitment_id is not None})
    interview = any(e.commitment_id is None for e in replayed)
    statement = _history_statement(bool(commitment_ids), interview)
    params: dict[str, Any] = {"interview_id": interview_id, "until": page[-1].effective_at}
    if commitment_ids:
        params["commitment_ids"] = commitment_ids
    subjects: dict[uuid.UUID | None, list[AnyRow]] = defaultdict(list)
    for entry in fetch_rows(session, statement, params):
        subjects[entry.commitment_id].append(entry)
    first_interview_entry: uuid.UUID | None = None
    for commitment_id, group in subjects.items():
        ordered = _in_effect_order(group)
        states: Iterable[Any] = (
            replay_commitment([as_change(e._mapping) for e in ordered])
            if commitment_id
            else replay_interview([as_change(e._mapping) for e in ordered])
        )
        for entry, state in zip(ordered, states, strict=True):
            diffs[entry.id] = state.diff
        if commitment_id is None:
            first_interview_entry = ordered[0].id
    return diffs, first_interview_entry


def _in_effect_order(entries: list[AnyRow]) -> list[AnyRow]:
    keyed = [(as_change(e._mapping), e) for e in entries]
    position = {id(c): e for c, e in keyed}
    return [position[id(c)] for c in effect_order([c for c, _ in keyed])]
