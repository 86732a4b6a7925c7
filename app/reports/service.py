"""The responsiveness report: how the steps due in a window were kept, per group.

The rules, in the words of the endpoint's description:

- A step is in the report when its due time, as it stood at the judging instant
  ``min(to, now)``, lies in ``[from, to)``. A step not yet agreed at that instant is not.
- It is judged by its state at that instant: done at or before its due time is *kept*,
  done after it *late*; still open and past due is *open late* (also when it was completed
  after the judging instant); cancelled by then is *cancelled*.
- It belongs to the owner who held it when it fell due: the version of the step valid at
  its due time (the first version when it was agreed after that, the judged one when it
  is not yet due). A step reassigned after its due time is counted against the earlier
  owner. ``owed_by`` is read from the same version.
- Lateness (late and open late steps): completion, or the judging instant, minus the due
  time. Wait (kept, late and open late steps): completion, or the judging instant, minus
  the agreement.

The window's steps are read from two partial covering indexes (``_steps``). PostgreSQL
counts them itself and sends one row per group with the values around each percentile's
position (``_aggregate``); on SQLite one row of figures per step (instants as integer
microseconds) is streamed in chunks and counted here (``tally``). Both take the rules
from the same places and give the same numbers, as the property tests check against a
reference computed from the raw versions.
"""

from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    null,
    or_,
    tuple_,
    union_all,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from app.db import get_engine
from app.errors import InvalidInput
from app.models import CommitmentStatus, CommitmentVersion, Interview, UTCDateTime
from app.reports.percentiles import MICROS, percentile_seconds, seconds_around
from app.reports.schemas import GroupBy, ReportRow, ResponsivenessReport

DEFAULT_WINDOW = timedelta(days=30)
# Five years, leap days included.
MAX_WINDOW = timedelta(days=5 * 365 + 2)
CHUNK = 10_000
P50, P90 = Fraction(1, 2), Fraction(9, 10)


@dataclass(frozen=True)
class Window:
    """Steps due in ``[start, end)``, judged at ``judged_at`` = min(end, now)."""

    start: datetime
    end: datetime
    judged_at: datetime


def _refuse(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name} {message}.", errors=[{"loc": ["query", name], "msg": message}])


def report_window(start: datetime | None, end: datetime | None, now: datetime) -> Window:
    """The window a request asks for, its defaults filled in; 422 when it is empty,
    reversed or longer than five years."""
    end = end or now
    if start is None:
        try:
            start = end - DEFAULT_WINDOW
        except OverflowError:
            raise _refuse("to", "leaves no room for the default 30-day window") from None
    if start >= end:
        raise _refuse("from", "must be earlier than to")
    if end - start > MAX_WINDOW:
        raise _refuse("from", f"must be at most {MAX_WINDOW.days} days (five years) before to")
    return Window(start, end, min(end, now))


# ---------------------------------------------------------------- the query


def _micros(column: Any, dialect: str) -> ColumnElement[int]:
    """An instant as integer microseconds since the epoch, exact on both databases."""
    if dialect == "sqlite":
        # UTCDateTime's text: 'YYYY-MM-DD HH:MM:SS.ffffff', always 26 characters.
        seconds = cast(func.strftime("%s", column), BigInteger)
        return seconds * MICROS + cast(func.substr(column, 21, 6), BigInteger)
    return cast(func.extract("epoch", column) * MICROS, BigInteger)


def _valid_at(v: Any, instant: Any) -> ColumnElement[bool]:
    return and_(
        col(v.valid_from) <= instant, or_(col(v.valid_to).is_(None), col(v.valid_to) > instant)
    )


def _at_due_time(v: Any, held_at: Any, column: str) -> Any:
    """``column`` of the version valid at ``held_at``: the judged version's own when its
    owner already held the step then (most steps: no reassignment between the due time
    and the judging instant), else looked up, for those steps only (a CASE evaluates its
    subquery only for the rows that take that branch)."""
    o = aliased(CommitmentVersion, name="o")
    earlier = (
        sa_select(getattr(o, column))
        .where(col(o.commitment_id) == col(v.commitment_id), _valid_at(o, held_at))
        .scalar_subquery()
    )
    return case((col(v.owner_since) > held_at, earlier), else_=getattr(v, column))


@cache
def _steps(group_by: GroupBy) -> CompoundSelect[Any]:
    """The steps of the report owed by ``owed_by`` (a parameter) when they fell due, one
    row each: their group (the owner or role who held it then, or the interview's), their
    status when judged, and their due, completion and agreement instants.

    The version valid at the judging instant is either the current one (``valid_to``
    null), found by due time, or a closed one that closed after that instant, found by
    closing time (for a window that ends now, none). Each branch has a partial index that
    holds every column it reads (PostgreSQL: index-only scans, migration 0012), so that
    neither reads the other's versions.
    """
    return union_all(_branch(group_by, current=True), _branch(group_by, current=False))


def _branch(group_by: GroupBy, current: bool) -> Select[Any]:
    judged = bindparam("judged", type_=UTCDateTime)
    v = aliased(CommitmentVersion, name="v")  # the step as it stood when judged
    i = aliased(Interview, name="i")
    # When it fell due (the judging instant if it has not yet), or when it was agreed if
    # that came later: the instant whose owner is blamed.
    fell_due = case((col(v.due_at) < judged, col(v.due_at)), else_=judged)
    held_at = case((fell_due < col(v.agreed_at), col(v.agreed_at)), else_=fell_due)
    by_owner = {GroupBy.owner: "owner_id", GroupBy.owner_role: "owner_role"}.get(group_by)
    group: Any = {
        GroupBy.job: col(i.job_external_id),
        GroupBy.stage: col(i.stage),
        GroupBy.source: col(i.source),
    }.get(group_by, null())
    if by_owner is not None:
        group = _at_due_time(v, held_at, by_owner)
    valid_to = col(v.valid_to)
    valid = [valid_to.is_(None)] if current else [valid_to.is_not(None), valid_to > judged]
    statement: Select[Any] = sa_select(
        group.label("grp"),
        col(v.status).label("status"),
        col(v.due_at).label("due_at"),
        col(v.completed_at).label("completed_at"),
        col(v.agreed_at).label("agreed_at"),
    ).where(
        *valid,
        col(v.valid_from) <= judged,
        col(v.due_at) >= bindparam("start", type_=UTCDateTime),
        col(v.due_at) < bindparam("end", type_=UTCDateTime),
        _at_due_time(v, held_at, "owed_by") == bindparam("owed_by"),
    )
    if by_owner is None:  # grouped by the interview's job, stage or source
        statement = statement.select_from(v).join(i, col(i.id) == v.interview_id)
    return statement


@cache
def _statement(group_by: GroupBy, dialect: str) -> Select[Any]:
    """The rows ``tally`` counts: the steps, their instants in microseconds."""
    step = _steps(group_by).subquery("step")
    return sa_select(
        step.c.grp,
        step.c.status,
        _micros(step.c.due_at, dialect),
        _micros(step.c.completed_at, dialect),
        _micros(step.c.agreed_at, dialect),
    )


# ---------------------------------------------------------------- counted by PostgreSQL

_KINDS = ("kept", "late", "open_late", "cancelled")


def _micros_between(later: Any, earlier: Any) -> Any:
    return cast(func.extract("epoch", later - earlier) * MICROS, BigInteger)


def _around(values: Any, count: Any, fraction: Fraction) -> tuple[Any, Any]:
    # The rank below the position, fraction * (count - 1) rounded down, in integers;
    # PostgreSQL's arrays count from 1.
    below = (fraction.numerator * (count - 1)) // fraction.denominator
    return values[below + 1], values[below + 2]


@cache
def _aggregate(group_by: GroupBy) -> Select[Any]:
    """The report counted in PostgreSQL: one row per group and one for the total (``total``
    true), with the counts and, for lateness and wait, how many there are and the values
    around the 50th and 90th percentiles (microseconds).

    Over a year of a million steps, streaming every step to the application cost more
    than the rest of the report; here each group's durations are sorted where they lie
    (an ordered array_agg) and only the values at the ranks the percentiles need leave
    PostgreSQL. The steps are ``_steps``; the rules are ``tally``'s.
    """
    step = _steps(group_by).subquery("step")
    judged = bindparam("judged", type_=UTCDateTime)
    due, completed, agreed = step.c.due_at, step.c.completed_at, step.c.agreed_at
    done = and_(step.c.status == CommitmentStatus.done.value, completed.is_not(None))
    cancelled = step.c.status == CommitmentStatus.cancelled.value
    # tally's rules; each figure spelled out, so that no CASE is evaluated twice a row.
    kind = case(
        (and_(done, completed <= due), "kept"),
        (done, "late"),
        (cancelled, "cancelled"),
        (due < judged, "open_late"),
    )
    # Durations in integer microseconds (exact: EXTRACT gives numeric): they sort in a
    # third less time than intervals.
    lateness = case(
        (done, case((completed > due, _micros_between(completed, due)))),
        (cancelled, null()),
        (due < judged, _micros_between(judged, due)),
    )
    wait = case(
        (done, _micros_between(completed, agreed)),
        (cancelled, null()),
        (due < judged, _micros_between(judged, agreed)),
    )
    judged_steps = sa_select(
        step.c.grp, kind.label("kind"), lateness.label("lateness"), wait.label("wait")
    ).subquery("judged")
    j = judged_steps.c
    durations: dict[str, Any] = {}
    for name in ("lateness", "wait"):
        value = j[name]
        durations[f"{name}_n"] = func.count(value)
        durations[f"{name}_sorted"] = func.array_agg(aggregate_order_by(value, value)).filter(
            value.is_not(None)
        )
    groups = (
        sa_select(
            func.grouping(j.grp).label("total"),
            j.grp,
            func.count().label("due"),
            *(func.count().filter(j.kind == name).label(name) for name in _KINDS),
            *(expression.label(name) for name, expression in durations.items()),
        )
        .group_by(func.grouping_sets(tuple_(j.grp), tuple_()))
        .subquery("groups")
    )
    g = groups.c
    columns: list[Any] = [g.total == 1, g.grp, g.due, *(g[name] for name in _KINDS)]
    for name in ("lateness", "wait"):
        columns.append(g[f"{name}_n"])
        for fraction in (P50, P90):
            columns += _around(g[f"{name}_sorted"], g[f"{name}_n"], fraction)
    return sa_select(*columns)


def counted_query(
    window: Window, group_by: GroupBy, owed_by: str
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement that counts the report in PostgreSQL, and its parameters."""
    params = {
        "judged": window.judged_at,
        "start": window.start,
        "end": window.end,
        "owed_by": owed_by,
    }
    return _aggregate(group_by), params


def _counted_rows(
    connection: Connection, window: Window, group_by: GroupBy, owed_by: str
) -> tuple[list[ReportRow], ReportRow]:
    """The groups' rows, sorted, and the total's, counted by PostgreSQL."""
    items: dict[str | None, ReportRow] = {}
    total = Tally().row(None)
    for row in connection.execute(*counted_query(window, group_by, owed_by)):
        is_total, group, *counts = row[: 3 + len(_KINDS)]
        figures = row[3 + len(_KINDS) :]
        percentiles: dict[str, int | None] = {}
        for index, name in enumerate(("lateness", "wait")):
            n, p50_low, p50_high, p90_low, p90_high = figures[index * 5 : index * 5 + 5]
            for label, fraction, low, high in (
                ("p50", P50, p50_low, p50_high),
                ("p90", P90, p90_low, p90_high),
            ):
                percentiles[f"{name}_{label}_seconds"] = (
                    seconds_around(low, high, n, fraction) if n else None
                )
        report_row = _row(None if is_total else group, counts, percentiles)
        if is_total:
            total = report_row
        else:
            items[group] = report_row
    return [items[group] for group in sorted(items, key=_sort_key)], total


# ---------------------------------------------------------------- the figures


@dataclass
class Tally:
    """One group's counts, and its lateness and wait figures in microseconds."""

    due: int = 0
    kept: int = 0
    late: int = 0
    open_late: int = 0
    cancelled: int = 0
    lateness: "array[int]" = field(default_factory=lambda: array("q"))
    waits: "array[int]" = field(default_factory=lambda: array("q"))

    def add(self, other: "Tally") -> None:
        self.due += other.due
        self.kept += other.kept
        self.late += other.late
        self.open_late += other.open_late
        self.cancelled += other.cancelled
        self.lateness.extend(other.lateness)
        self.waits.extend(other.waits)

    def row(self, group: str | None) -> ReportRow:
        counts = (self.due, self.kept, self.late, self.open_late, self.cancelled)
        percentiles = _percentiles("lateness", self.lateness) | _percentiles("wait", self.waits)
        return _row(group, counts, percentiles)


def _row(group: str | None, counts: Sequence[int], percentiles: dict[str, int | None]) -> ReportRow:
    """A group's row from its counts (due, kept, late, open late, cancelled) and its
    percentiles in whole seconds."""
    due, kept, late, open_late, cancelled = counts
    judged = kept + late + open_late
    return ReportRow(
        group=group,
        due=due,
        kept=kept,
        late=late,
        open_late=open_late,
        cancelled=cancelled,
        on_time_rate=round(kept / judged, 4) if judged else None,
        **percentiles,
    )


def _percentiles(name: str, micros: "array[int]") -> dict[str, int | None]:
    ordered = sorted(micros)  # once for both
    return {
        f"{name}_p50_seconds": percentile_seconds(ordered, P50, ordered=True),
        f"{name}_p90_seconds": percentile_seconds(ordered, P90, ordered=True),
    }


StepRow = tuple[str | None, str, int, int | None, int]


def tally(rows: Iterable[StepRow], judged: int) -> dict[str | None, Tally]:
    """Each step row counted into its group's tally, judged at ``judged`` (microseconds).

    A row: the step's group, its status when judged, and its due, completion and
    agreement instants in microseconds.
    """
    tallies: dict[str | None, Tally] = {}
    done, cancelled = CommitmentStatus.done.value, CommitmentStatus.cancelled.value
    # The hot loop of the report: one pass, no call per step but the appends.
    for group, status, due, completed, agreed in rows:
        t = tallies.get(group)
        if t is None:
            t = tallies[group] = Tally()
        t.due += 1
        if status == done and completed is not None:
            if completed <= due:
                t.kept += 1
            else:
                t.late += 1
                t.lateness.append(completed - due)
            t.waits.append(completed - agreed)
        elif status == cancelled:
            t.cancelled += 1
        elif due < judged:
            t.open_late += 1
            t.lateness.append(judged - due)
            t.waits.append(judged - agreed)
    return tallies


def _sort_key(group: str | None) -> tuple[bool, str]:
    return group is None, group or ""


def tallied_rows(tallies: dict[str | None, Tally]) -> tuple[list[ReportRow], ReportRow]:
    """The groups' rows, sorted, and the total's."""
    total = Tally()
    items = []
    for group in sorted(tallies, key=_sort_key):
        total.add(tallies[group])
        items.append(tallies[group].row(group))
    return items, total.row(None)


def _epoch_micros(instant: datetime) -> int:
    delta = instant - datetime.fromtimestamp(0, instant.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds


@contextmanager
def _report_connection(session: Session) -> Iterator[Connection]:
    """The connection the report reads on: on SQLite the session's, whose rows are
    streamed in chunks, so that the memory held is the figures, never the rows; on
    PostgreSQL one transaction with the report's settings (``plan_for_all_rows``).

    The API's reads on PostgreSQL run in autocommit mode (db.read_session), where SET
    LOCAL lasts one statement: the report then reads on a connection of its own, in one
    read-only transaction.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield connection
        return
    if not _autocommit(connection):
        plan_for_all_rows(connection)
        yield connection
        return
    with get_engine().connect() as own, own.begin():
        own.exec_driver_sql("SET TRANSACTION READ ONLY")
        plan_for_all_rows(own)
        yield own


def plan_for_all_rows(connection: Connection) -> None:
    """The report's settings, for this transaction only."""
    # The JIT compiler, which the query's cost estimate sets off, spent 0.46 s compiling
    # to save less on a month of a million steps.
    connection.exec_driver_sql("SET LOCAL jit = off")
    # A month's steps are sorted by group in memory; a year's spill about 28 MB (128MB,
    # which kept them in memory, gained nothing measurable on a loaded machine).
    connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")


def _autocommit(connection: Connection) -> bool:
    return bool(getattr(connection.connection.dbapi_connection, "autocommit", False))


def responsiveness(
    session: Session,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    group_by: GroupBy,
    owed_by: str,
) -> ResponsivenessReport:
    """The responsiveness report of the steps due in ``[start, end)`` (defaults: the 30
    days before now), judged at min(end, now), grouped as asked."""
    window = report_window(start, end, now)
    dialect = session.get_bind().dialect.name
    with _report_connection(session) as connection:
        if dialect == "postgresql":
            items, total = _counted_rows(connection, window, group_by, owed_by)
        else:
            params = {
                "judged": window.judged_at,
                "start": window.start,
                "end": window.end,
                "owed_by": owed_by,
            }
            result = connection.execution_options(yield_per=CHUNK).execute(
                _statement(group_by, dialect), params
            )
            rows = (row for chunk in result.partitions() for row in chunk)
            tallies = tally(rows, _epoch_micros(window.judged_at))
            items, total = tallied_rows(tallies)
    return ResponsivenessReport(
        from_=window.start,
        to=window.end,
        judged_at=window.judged_at,
        group_by=group_by,
        owed_by=owed_by,
        items=items,
        total=total,
    )
