"""Interviews and commitments for the benchmarks, bulk-loaded exactly as the service writes them.

Going through the API would take hours for a million commitments, so the rows are
built here and loaded with PostgreSQL COPY or one SQLite transaction. What makes
them trustworthy is ``check_against_service``: it records a few interviews through
the real service functions, renders the same interviews here with the ids the
service chose, bulk-loads them into a second database and compares every stored
value of the four tables. Any drift between this file and the service (a new
column, another JSON shape, another time format) stops the benchmark.

What one interview writes, as ``POST /v1/interviews`` with ``next_steps`` does at
instant T (and ``POST /v1/commitments/{id}/complete`` at instant C for done steps):
an ``interview`` row and its ``interview_recorded`` timeline entry; per step a
``commitment`` row, an ``agreed`` timeline entry and one open ``commitment_version``
(valid from T); a done step adds a ``completed`` entry, closes the open version at C
and adds a done version from C.

Instants are kept naive in UTC in this module (cheaper to format); SQLite stores
them as that text, PostgreSQL gets them with ``+00``.
"""

import gc
import queue
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar

import psycopg
from sqlmodel import Session, SQLModel, select

from app.commitments import service
from app.commitments.schemas import InterviewCreate
from app.db import build_engine
from app.models import Commitment, TimelineEntry, TimelineKind
from app.outbound import outbox

ACTOR = "key:bench-seed"
SOURCE = "api"
STEPS_PER_INTERVIEW = 2

INTERVIEW_COLUMNS = (
    "id",
    "source",
    "external_id",
    "candidate_external_id",
    "candidate_name",
    "candidate_email",
    "job_external_id",
    "job_title",
    "stage",
    "status",
    "interviewers",
    "default_owners",
    "starts_at",
    "ends_at",
    "completed_at",
    "version",
    "created_at",
    "updated_at",
)
# What a step says, and its state: the same columns, in the same order, in both tables.
STEP_COLUMNS = ("action", "owner_id", "owner_name", "owner_role", "owed_by", "channel")
STATE_COLUMNS = ("status", "outcome", "reason", "completed_at", "cancelled_at", "version")
COMMITMENT_COLUMNS = (
    "id",
    "interview_id",
    "source",
    "external_id",
    *STEP_COLUMNS,
    "agreed_at",
    "due_at",
    "promised_by",
    *STATE_COLUMNS,
    "created_at",
    "updated_at",
)
# The surrogate ``id`` is left to the database, as with the ORM.
VERSION_COLUMNS = (
    "commitment_id",
    "interview_id",
    "valid_from",
    "valid_to",
    *STEP_COLUMNS,
    "due_at",
    "promised_by",
    *STATE_COLUMNS,
    "agreed_at",
    "owner_since",
)
ENTRY_COLUMNS = (
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
TABLES: dict[str, tuple[str, ...]] = {
    "interview": INTERVIEW_COLUMNS,
    "commitment": COMMITMENT_COLUMNS,
    "commitment_version": VERSION_COLUMNS,
    "timeline_entry": ENTRY_COLUMNS,
}
GENERATED_COLUMNS = {"commitment_version": {"id"}}

T = TypeVar("T")
Value = str | int | None
Row = tuple[Value, ...]


# ---------------------------------------------------------------- what gets written


@dataclass(slots=True)
class Step:
    """A next step as agreed at the end of an interview; ``done_at`` set if it was completed."""

    action: str
    owner_id: str
    owner_name: str | None
    owner_role: str
    channel: str | None
    due_at: datetime
    promised_by: datetime | None
    done_at: datetime | None = None
    outcome: str | None = None


@dataclass(slots=True)
class InterviewSpec:
    """An interview recorded (completed) at ``at``, with the steps agreed at that instant."""

    at: datetime
    candidate_external_id: str
    candidate_name: str | None
    candidate_email: str | None
    job_external_id: str | None
    job_title: str | None
    stage: str | None
    interviewers: tuple[tuple[str, str, str], ...]
    starts_at: datetime | None
    ends_at: datetime | None
    steps: tuple[Step, ...]


@dataclass(slots=True)
class Ids:
    """The ids the service would have drawn, as 32-digit hex."""

    interview: str
    recorded_entry: str
    recorded_tiebreak: str
    commitments: tuple[str, ...]
    agreed_entries: tuple[str, ...]
    completed_entries: tuple[str | None, ...]


@dataclass
class Rows:
    interview: list[Row] = field(default_factory=list)
    commitment: list[Row] = field(default_factory=list)
    commitment_version: list[Row] = field(default_factory=list)
    timeline_entry: list[Row] = field(default_factory=list)

    def of(self, table: str) -> list[Row]:
        rows: list[Row] = getattr(self, table)
        return rows

    def __len__(self) -> int:
        return sum(len(self.of(t)) for t in TABLES)


def sqlite_instant(value: datetime) -> str:
    # SQLAlchemy's SQLite DateTime text: always six digits of microseconds.
    return value.isoformat(" ", "microseconds")


def postgres_instant(value: datetime) -> str:
    return value.isoformat(" ", "microseconds") + "+00"


def _json_instant(value: datetime | None) -> str:
    # What encode_values writes for an aware UTC datetime, as JSON text.
    return "null" if value is None else f'"{value.isoformat()}+00:00"'


def _j(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


# The JSON columns are spelled out by hand: json.dumps costs a third of the seeding
# time. These f-strings produce its exact text (", " and ": " separators, ASCII
# escapes), which check_against_service proves against the service's own rows.


def _interviewers_json(interviewers: Sequence[tuple[str, str, str]]) -> str:
    return (
        "["
        + ", ".join(
            f'{{"external_id": {_j(e)}, "name": {_j(n)}, "email": {_j(m)}}}'
            for e, n, m in interviewers
        )
        + "]"
    )


def _dashed(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


# A step's values for ``STATE_COLUMNS``.
State = tuple[str, str | None, None, str | None, None, int]
OPEN: State = ("open", None, None, None, None, 1)


def _commitment_row(
    cid: str,
    interview: str,
    fields: tuple[Any, ...],
    at: str,
    due_at: str,
    promised_by: str | None,
    state: State,
    updated_at: str,
) -> Row:
    """A commitment in ``COMMITMENT_COLUMNS`` order, agreed at ``at``."""
    return (cid, interview, None, None, *fields, at, due_at, promised_by, *state, at, updated_at)


def _version_row(
    cid: str,
    interview: str,
    valid_from: str,
    valid_to: str | None,
    fields: tuple[Any, ...],
    due_at: str,
    promised_by: str | None,
    state: State,
    agreed_at: str,
) -> Row:
    """A commitment version in ``VERSION_COLUMNS`` order, of a step agreed at ``agreed_at``
    (and never reassigned: its owner has held it since then)."""
    row = (cid, interview, valid_from, valid_to, *fields, due_at, promised_by, *state)
    return (*row, agreed_at, agreed_at)


def render(spec: InterviewSpec, ids: Ids, instant: Callable[[datetime], str], out: Rows) -> None:
    """Append the rows the service writes for ``spec`` to ``out``."""
    at = instant(spec.at)
    starts_at = instant(spec.starts_at) if spec.starts_at else None
    ends_at = instant(spec.ends_at) if spec.ends_at else None
    interviewers = _interviewers_json(spec.interviewers)
    out.interview.append(
        (
            ids.interview,
            SOURCE,
            None,
            spec.candidate_external_id,
            spec.candidate_name,
            spec.candidate_email,
            spec.job_external_id,
            spec.job_title,
            spec.stage,
            "completed",
            interviewers,
            "{}",
            starts_at,
            ends_at,
            at,
            1,
            at,
            at,
        )
    )
    recorded = (
        f'{{"candidate_external_id": {_j(spec.candidate_external_id)}, '
        f'"candidate_name": {_j(spec.candidate_name)}, '
        f'"candidate_email": {_j(spec.candidate_email)}, '
        f'"job_external_id": {_j(spec.job_external_id)}, "job_title": {_j(spec.job_title)}, '
        f'"stage": {_j(spec.stage)}, "status": "completed", "interviewers": {interviewers}, '
        f'"starts_at": {_json_instant(spec.starts_at)}, "ends_at": {_json_instant(spec.ends_at)}}}'
    )
    out.timeline_entry.append(
        (
            ids.recorded_entry,
            ids.interview,
            None,
            TimelineKind.interview_recorded.value,
            at,
            ids.recorded_tiebreak,
            at,
            ACTOR,
            None,
            recorded,
            None,
        )
    )
    for step, cid, agreed_id, completed_id in zip(
        spec.steps, ids.commitments, ids.agreed_entries, ids.completed_entries, strict=True
    ):
        owed_by = "candidate" if step.owner_role == "candidate" else "company"
        due_at = instant(step.due_at)
        promised_by = instant(step.promised_by) if step.promised_by else None
        fields = (
            step.action,
            step.owner_id,
            step.owner_name,
            step.owner_role,
            owed_by,
            step.channel,
        )
        agreed = (
            f'{{"action": {_j(step.action)}, "owner_id": {_j(step.owner_id)}, '
            f'"owner_name": {_j(step.owner_name)}, "owner_role": {_j(step.owner_role)}, '
            f'"owed_by": null, "channel": {_j(step.channel)}, '
            f'"due_at": {_json_instant(step.due_at)}, '
            f'"promised_by": {_json_instant(step.promised_by)}, "candidate_note": null}}'
        )
        out.timeline_entry.append(
            (
                agreed_id,
                ids.interview,
                cid,
                TimelineKind.agreed.value,
                at,
                _dashed(agreed_id),
                at,
                ACTOR,
                None,
                agreed,
                None,
            )
        )
        if step.done_at is None:
            out.commitment.append(
                _commitment_row(cid, ids.interview, fields, at, due_at, promised_by, OPEN, at)
            )
            out.commitment_version.append(
                _version_row(cid, ids.interview, at, None, fields, due_at, promised_by, OPEN, at)
            )
            continue
        if completed_id is None:
            raise ValueError("a done step needs the id of its completed entry")
        done = instant(step.done_at)
        completed = ("done", step.outcome, None, done, None, 2)
        out.commitment.append(
            _commitment_row(cid, ids.interview, fields, at, due_at, promised_by, completed, done)
        )
        out.commitment_version += [
            _version_row(cid, ids.interview, at, done, fields, due_at, promised_by, OPEN, at),
            _version_row(
                cid, ids.interview, done, None, fields, due_at, promised_by, completed, at
            ),
        ]
        out.timeline_entry.append(
            (
                completed_id,
                ids.interview,
                cid,
                TimelineKind.completed.value,
                done,
                _dashed(completed_id),
                done,
                ACTOR,
                None,
                f'{{"outcome": {_j(step.outcome)}}}',
                None,
            )
        )


# ---------------------------------------------------------------- a realistic mix


@dataclass(frozen=True)
class Mix:
    """How many steps of each kind; ``*_candidate`` ones are owed by the candidate."""

    overdue: int
    overdue_candidate: int
    open_future: int
    open_future_candidate: int
    done: int
    done_candidate: int

    @classmethod
    def standard(cls, total: int) -> "Mix":
        """5 % overdue, 20 % open and due later, the rest done; 3 % of each owed by candidates."""
        overdue, open_future = round(total * 0.05), round(total * 0.20)
        done = total - overdue - open_future

        def split(n: int) -> tuple[int, int]:
            candidate = round(n * 0.03)
            return n - candidate, candidate

        return cls(*split(overdue), *split(open_future), *split(done))

    @property
    def total(self) -> int:
        return (
            self.overdue
            + self.overdue_candidate
            + self.open_future
            + self.open_future_candidate
            + self.done
            + self.done_candidate
        )


@dataclass
class Expected:
    """What the API must answer once the seed is loaded."""

    commitments: int = 0
    interviews: int = 0
    rows: int = 0
    # (due_at, commitment id) of every company-owed overdue step: the overdue list, in order.
    overdue: list[tuple[datetime, str]] = field(default_factory=list)
    overdue_candidate: int = 0

    def first_page(self, limit: int) -> list[str]:
        return [str(uuid.UUID(cid)) for _, cid in sorted(self.overdue)[:limit]]


OWNER_ROLES = ("recruiter",) * 10 + ("coordinator",) * 4 + ("hiring_manager",) * 4 + ("hr",) * 2
ACTIONS = (
    "Send written feedback to the candidate",
    "Schedule the onsite loop",
    "Call back with the hiring decision",
    "Share the offer details",
    "Send the take-home exercise",
    "Envoyer le retour écrit au candidat",
    "Confirm references were contacted",
    "Book the debrief with the panel",
)
CANDIDATE_ACTIONS = (
    "Send two references",
    "Return the take-home exercise",
    "Confirm availability for the onsite",
)
OUTCOMES = ("Sent", "Scheduled", "Candidate informed", "Offer shared", None)
CHANNELS = ("email", "call", "ats_message", "video", None)
STAGES = ("Phone screen", "Technical interview", "Onsite", "Hiring manager", "Final")
OWNER_COUNT = 200
JOB_COUNT = 500
INTERVIEWER_COUNT = 300
MINUTE = 60_000_000  # in microseconds
HOUR = 60 * MINUTE
DAY = 24 * HOUR


class _Random(random.Random):
    def uuid_hex(self) -> str:
        """A version-4 UUID as 32 hex digits, drawn from this seeded generator."""
        value = self.getrandbits(128)
        value = (value & ~(0xF << 76)) | (0x4 << 76)
        value = (value & ~(0x3 << 62)) | (0x2 << 62)
        return f"{value:032x}"

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low))

    def pick(self, items: Sequence[T]) -> T:
        # random.choice costs three times as much, and a million steps draw six each.
        return items[int(self.random() * len(items))]


def _category_order(mix: Mix, rnd: random.Random) -> list[int]:
    # 0 overdue, 1 open (due later), 2 done; +3 when owed by the candidate.
    order = (
        [0] * mix.overdue
        + [3] * mix.overdue_candidate
        + [1] * mix.open_future
        + [4] * mix.open_future_candidate
        + [2] * mix.done
        + [5] * mix.done_candidate
    )
    rnd.shuffle(order)
    return order


def generate(
    mix: Mix, now: datetime, seed: int, expected: Expected
) -> Iterator[tuple[InterviewSpec, Ids]]:
    """Interviews over the year before ``now``, two steps each, in the proportions of ``mix``.

    Overdue steps fell due between a minute after agreement and ten minutes before
    ``now`` (at most 14 days after agreement), so they stay overdue while the
    benchmark runs; open ones fall due 1 to 30 days after ``now``.
    """
    rnd = _Random(seed)
    now_naive = now.astimezone(UTC).replace(tzinfo=None)
    epoch = datetime(1970, 1, 1)
    now_us = (now_naive - epoch) // timedelta(microseconds=1)
    owners = [
        (f"owner-{n:03d}", f"Owner {n:03d}", OWNER_ROLES[n % len(OWNER_ROLES)])
        for n in range(OWNER_COUNT)
    ]
    order = _category_order(mix, rnd)

    def instant(us: int) -> datetime:
        return epoch + timedelta(microseconds=us)

    for first in range(0, len(order), STEPS_PER_INTERVIEW):
        number = first // STEPS_PER_INTERVIEW
        at_us = now_us - rnd.between(HOUR, 365 * DAY)
        candidate = f"cand-{number:07d}"
        steps: list[Step] = []
        for category in order[first : first + STEPS_PER_INTERVIEW]:
            kind, owed_by_candidate = category % 3, category >= 3
            if owed_by_candidate:
                owner_id, owner_name, role = candidate, None, "candidate"
                action = rnd.pick(CANDIDATE_ACTIONS)
            else:
                owner_id, owner_name, role = rnd.pick(owners)
                action = rnd.pick(ACTIONS)
            done_us: int | None = None
            if kind == 0:
                due_us = rnd.between(at_us + MINUTE, min(at_us + 14 * DAY, now_us - 10 * MINUTE))
            elif kind == 1:
                due_us = now_us + rnd.between(DAY, 30 * DAY)
            else:
                due_us = at_us + rnd.between(DAY, 14 * DAY)
                done_us = rnd.between(at_us + MINUTE, min(at_us + 14 * DAY, now_us - MINUTE))
            promised_us = due_us + rnd.between(0, 3 * DAY) if rnd.random() < 0.3 else None
            steps.append(
                Step(
                    action=action,
                    owner_id=owner_id,
                    owner_name=owner_name,
                    owner_role=role,
                    channel=rnd.pick(CHANNELS),
                    due_at=instant(due_us),
                    promised_by=instant(promised_us) if promised_us is not None else None,
                    done_at=instant(done_us) if done_us is not None else None,
                    outcome=rnd.pick(OUTCOMES) if done_us else None,
                )
            )
        ends_us = at_us - rnd.between(5 * MINUTE, 2 * HOUR)
        job = rnd.between(0, JOB_COUNT)
        panel = sorted({rnd.between(0, INTERVIEWER_COUNT) for _ in range(rnd.between(1, 3))})
        spec = InterviewSpec(
            at=instant(at_us),
            candidate_external_id=candidate,
            candidate_name=f"Candidate {number}",
            candidate_email=f"{candidate}@example.com",
            job_external_id=f"job-{job:04d}",
            job_title=f"Engineer {job}",
            stage=rnd.pick(STAGES),
            interviewers=tuple(
                (f"iv-{p:03d}", f"Interviewer {p}", f"iv-{p:03d}@example.com") for p in panel
            ),
            starts_at=instant(ends_us - HOUR),
            ends_at=instant(ends_us),
            steps=tuple(steps),
        )
        commitment_ids = tuple(rnd.uuid_hex() for _ in steps)
        ids = Ids(
            interview=rnd.uuid_hex(),
            recorded_entry=rnd.uuid_hex(),
            recorded_tiebreak=_dashed(rnd.uuid_hex()),
            commitments=commitment_ids,
            agreed_entries=tuple(rnd.uuid_hex() for _ in steps),
            completed_entries=tuple(rnd.uuid_hex() if s.done_at else None for s in steps),
        )
        for step, cid in zip(steps, commitment_ids, strict=True):
            if step.done_at is None and step.due_at < now_naive:
                if step.owner_role == "candidate":
                    expected.overdue_candidate += 1
                else:
                    expected.overdue.append((step.due_at, cid))
        expected.commitments += len(steps)
        expected.interviews += 1
        yield spec, ids


def batches(
    items: Iterable[tuple[InterviewSpec, Ids]],
    instant: Callable[[datetime], str],
    expected: Expected,
    size: int = 5000,
) -> Iterator[Rows]:
    """The rendered rows, ``size`` interviews at a time."""
    rows = Rows()
    count = 0
    for spec, ids in items:
        render(spec, ids, instant, rows)
        count += 1
        if count == size:
            expected.rows += len(rows)
            yield rows
            rows, count = Rows(), 0
    if count:
        expected.rows += len(rows)
        yield rows


# ---------------------------------------------------------------- bulk loading


def _insert_sql(table: str, placeholder: str) -> str:
    columns = TABLES[table]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join([placeholder] * len(columns))})"
    )


def _left_null(table: str) -> set[str]:
    """Columns the seed may leave out: nullable, with no default (what the seed's steps,
    agreed with explicit due times and no candidate note, hold as NULL anyway)."""
    return {
        column.name
        for column in SQLModel.metadata.tables[table].columns
        if column.nullable and column.default is None and column.server_default is None
    }


def _check_columns(actual: dict[str, list[str]]) -> None:
    for table, columns in TABLES.items():
        generated = GENERATED_COLUMNS.get(table, set())
        missing = set(actual[table]) - set(columns) - generated - _left_null(table)
        unknown = set(columns) - set(actual[table])
        if missing or unknown:
            raise RuntimeError(
                f"the schema of {table} changed (not written here: {sorted(missing)}, "
                f"gone: {sorted(unknown)}); update bench/seed_commitments.py"
            )


@contextmanager
def _no_gc() -> Iterator[None]:
    # Millions of long-lived tuples make the cyclic collector run over and over for nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Laps:
    """Records how long each phase of a load took, when asked to."""

    def __init__(self, phases: dict[str, float] | None) -> None:
        self.phases = phases
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        if self.phases is not None:
            self.phases[name] = now - self.last
        self.last = now


_DONE = object()


def _prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a thread ``depth`` ahead, so that building rows overlaps loading them.

    The database works while the thread builds the next chunk (the driver releases
    the GIL while it waits); an error in the thread is raised here.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:
            slots.put(exc)

    thread = threading.Thread(target=produce, name="seed-rows", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=10)


def load_sqlite(path: str, chunks: Iterable[Rows], phases: dict[str, float] | None = None) -> None:
    """One transaction; indexes dropped during the load and rebuilt from their own DDL."""
    lap = _Laps(phases)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _check_columns({t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in TABLES})
        indexes = [
            (name, sql)
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                f"AND tbl_name IN ({', '.join('?' * len(TABLES))})",
                tuple(TABLES),
            )
        ]
        with _no_gc():
            conn.execute("BEGIN")
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            for chunk in _prefetch(chunks):
                for table in TABLES:
                    conn.executemany(_insert_sql(table, "?"), chunk.of(table))
            lap("build rows + insert")
            for _, sql in indexes:
                conn.execute(sql)
            conn.execute("COMMIT")
            lap("indexes")
        conn.execute("ANALYZE")
        lap("analyze")
    finally:
        conn.close()


# Stand-ins for the COPY text separators and NULL while the real characters get escaped.
_FIELD, _LINE, _NULL = "\x1f", "\x1e", "\x1d"


def _copy_text(rows: list[Row]) -> str:
    """``rows`` in COPY's text format, escaped in a few passes over the whole block."""
    text = _LINE.join(
        [
            _FIELD.join([v if type(v) is str else _NULL if v is None else str(v) for v in row])
            for row in rows
        ]
    )
    if rows and (
        text.count(_FIELD) != len(rows) * (len(rows[0]) - 1)
        or text.count(_LINE) != len(rows) - 1
        or text.count(_NULL) != sum(row.count(None) for row in rows)
    ):
        raise ValueError("a value holds one of the characters \\x1d-\\x1f")
    text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    text = text.replace("\r", "\\r")
    return text.replace(_FIELD, "\t").replace(_LINE, "\n").replace(_NULL, "\\N") + "\n"


def _copy_blocks(chunks: Iterable[Rows]) -> Iterator[list[str]]:
    for chunk in chunks:
        yield [_copy_text(chunk.of(table)) for table in TABLES]


def load_postgres(
    conninfo: str, chunks: Iterable[Rows], phases: dict[str, float] | None = None
) -> None:
    """COPY into the (empty) tables in one transaction; keys and indexes rebuilt afterwards.

    Dropping them during the load and restoring them from their own definitions is
    the usual bulk-load path (building an index by sorting beats millions of random
    inserts into it); the final schema is the one the migrations built, and the
    foreign keys are validated when they are added back. The tables are truncated in
    the same transaction so that COPY can write the rows frozen: the database then
    looks like a settled one (hint bits and visibility map set), and autovacuum has
    nothing to do in the middle of the measurements.
    """
    names = list(TABLES)
    lap = _Laps(phases)
    with psycopg.connect(conninfo, autocommit=False) as conn:
        _check_columns(
            {
                t: [
                    r[0]
                    for r in conn.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND table_name = %s",
                        (t,),
                    )
                ]
                for t in names
            }
        )
        foreign_keys = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint "
            "WHERE contype = 'f' AND (conrelid::regclass::text = ANY(%s) "
            "OR confrelid::regclass::text = ANY(%s))",
            (names, names),
        ).fetchall()
        keys = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint "
            "WHERE contype IN ('p', 'u') AND conrelid::regclass::text = ANY(%s)",
            (names,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid::regclass::text = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            (names,),
        ).fetchall()
        for table in names:
            if conn.execute(f"SELECT EXISTS (SELECT FROM {table})").fetchone() != (False,):
                raise RuntimeError(f"{table} is not empty: the bulk load only fills new databases")
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for table, name, _ in foreign_keys + keys:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute(f"TRUNCATE {', '.join(names)}")
        lap("prepare")
        with _no_gc(), conn.cursor() as cursor:
            for blocks in _prefetch(_copy_blocks(chunks)):
                for table, block in zip(names, blocks, strict=True):
                    with cursor.copy(
                        f"COPY {table} ({', '.join(TABLES[table])}) FROM STDIN (FREEZE)"
                    ) as copy:
                        copy.write(block)
        lap("build rows + COPY")
        for table, name, definition in keys:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        lap("primary keys")
        for _, definition in indexes:
            conn.execute(definition)
        lap("indexes")
        for table, name, definition in foreign_keys:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        conn.commit()
        lap("foreign keys")
        for table in names:
            conn.execute(f"ANALYZE {table}")
        conn.commit()
        lap("analyze")


# ---------------------------------------------------------------- proof of equality


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _record_through_service(url: str, specs: Sequence[InterviewSpec]) -> list[Ids]:
    """Record ``specs`` with the service functions the API calls; return the ids they drew."""
    outbox.install()  # as the app does at start-up
    engine = build_engine(url)
    found: list[Ids] = []
    try:
        for spec in specs:
            at = _utc(spec.at)
            body = InterviewCreate.model_validate(
                {
                    "candidate": {
                        "external_id": spec.candidate_external_id,
                        "name": spec.candidate_name,
                        "email": spec.candidate_email,
                    },
                    "job": {"external_id": spec.job_external_id, "title": spec.job_title},
                    "stage": spec.stage,
                    "status": "completed",
                    "interviewers": [
                        {"external_id": e, "name": n, "email": m} for e, n, m in spec.interviewers
                    ],
                    "starts_at": _aware(spec.starts_at),
                    "ends_at": _aware(spec.ends_at),
                    "next_steps": [
                        {
                            "action": s.action,
                            "owner": {"id": s.owner_id, "name": s.owner_name, "role": s.owner_role},
                            "channel": s.channel,
                            "due_at": _aware(s.due_at),
                            "promised_by": _aware(s.promised_by),
                        }
                        for s in spec.steps
                    ],
                }
            )
            with Session(engine, expire_on_commit=False) as session:
                interview = service.create_interview(session, body, ACTOR, at)
                session.commit()
                entries = session.exec(
                    select(TimelineEntry).where(TimelineEntry.interview_id == interview.id)
                ).all()
                commitments = session.exec(
                    select(Commitment).where(Commitment.interview_id == interview.id)
                ).all()
            by_step = {(c.action, c.owner_id, c.due_at): c.id for c in commitments}
            commitment_ids = [by_step[(s.action, s.owner_id, _utc(s.due_at))] for s in spec.steps]
            for step, cid in zip(spec.steps, commitment_ids, strict=True):
                if step.done_at is not None:
                    with Session(engine, expire_on_commit=False) as session:
                        done = _utc(step.done_at)
                        service.complete_commitment(session, cid, step.outcome, done, ACTOR, done)
            with Session(engine) as session:
                entries = session.exec(
                    select(TimelineEntry).where(TimelineEntry.interview_id == interview.id)
                ).all()
            kinds = {(e.commitment_id, e.kind): e for e in entries}
            recorded = kinds[(None, TimelineKind.interview_recorded)]
            completed = [kinds.get((cid, TimelineKind.completed)) for cid in commitment_ids]
            found.append(
                Ids(
                    interview=interview.id.hex,
                    recorded_entry=recorded.id.hex,
                    recorded_tiebreak=recorded.tiebreak,
                    commitments=tuple(c.hex for c in commitment_ids),
                    agreed_entries=tuple(
                        kinds[(cid, TimelineKind.agreed)].id.hex for cid in commitment_ids
                    ),
                    completed_entries=tuple(e.id.hex if e else None for e in completed),
                )
            )
    finally:
        engine.dispose()
    return found


def _dump_sqlite(path: str) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        dump: dict[str, Any] = {}
        for table in TABLES:
            columns = [
                r[1]
                for r in conn.execute(f"PRAGMA table_info({table})")
                if r[1] not in GENERATED_COLUMNS.get(table, set())
            ]
            rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
            dump[table] = (columns, sorted(rows, key=repr))
        # Each statement's lines sorted, without their separators and the spaces around
        # them: a table rebuilt by a batch migration lists its constraints in an order that
        # varies from one run to the next, and only its last line ends without ", ".
        dump["schema"] = sorted(
            (kind, name, sorted(line.strip() for line in (sql or "").replace(",", "").split("\n")))
            for kind, name, sql in conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'"
            )
        )
        return dump
    finally:
        conn.close()


def _dump_postgres(conninfo: str) -> dict[str, Any]:
    with psycopg.connect(conninfo) as conn:
        dump: dict[str, Any] = {}
        for table in TABLES:
            columns = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                    "'public' AND table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
                if r[0] not in GENERATED_COLUMNS.get(table, set())
            ]
            # Each row as PostgreSQL prints it: json columns keep their exact text.
            rows = conn.execute(f"SELECT ROW({', '.join(columns)})::text FROM {table}").fetchall()
            dump[table] = (columns, sorted(r[0] for r in rows))
        dump["indexes"] = sorted(
            conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'").fetchall()
        )
        dump["constraints"] = sorted(
            conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
            ).fetchall()
        )
        return dump


def check_specs(now: datetime) -> list[InterviewSpec]:
    """A hand-written interview covering the edge cases, plus a few generated ones."""
    at = now.astimezone(UTC).replace(tzinfo=None) - timedelta(days=3, microseconds=123457)
    edge = InterviewSpec(
        at=at,
        candidate_external_id="cand-check",
        candidate_name="Zoë O'Brien",
        candidate_email="zoe@example.com",
        job_external_id=None,
        job_title=None,
        stage=None,
        interviewers=(),
        starts_at=None,
        ends_at=None,
        steps=(
            Step(
                action='Send "feedback"\\ tab\tand back',
                owner_id="owner-007",
                owner_name="Owner 007",
                owner_role="recruiter",
                channel="email",
                due_at=at.replace(microsecond=0) + timedelta(days=1),
                promised_by=at + timedelta(days=2),
                done_at=at + timedelta(hours=5),
                outcome="Sent, and acknowledged",
            ),
            Step(
                action="Renvoyer les références",
                owner_id="cand-check",
                owner_name=None,
                owner_role="candidate",
                channel=None,
                due_at=at + timedelta(days=1),
                promised_by=None,
            ),
        ),
    )
    generated = [spec for spec, _ in generate(Mix(2, 1, 2, 1, 3, 1), now, 7, Expected())]
    return [edge, *generated]


def check_against_service(
    now: datetime, load: Callable[[str, Iterable[Rows]], None], via_service: str, bulk: str
) -> int:
    """Record interviews through the service in ``via_service``, bulk-load them into ``bulk``.

    Both databases must be freshly migrated; ``load`` takes the bulk database's
    address (a file path or a PostgreSQL conninfo). Raises unless every stored
    value of the four tables is identical. Returns the number of rows compared.
    """
    specs = check_specs(now)
    sqlite = via_service.startswith("sqlite")
    ids = _record_through_service(via_service, specs)
    rows = Rows()
    for spec, spec_ids in zip(specs, ids, strict=True):
        render(spec, spec_ids, sqlite_instant if sqlite else postgres_instant, rows)
    target = bulk.removeprefix("sqlite:///") if sqlite else _conninfo(bulk)
    load(target, [rows])
    if sqlite:
        expected = _dump_sqlite(via_service.removeprefix("sqlite:///"))
        actual = _dump_sqlite(target)
    else:
        expected, actual = _dump_postgres(_conninfo(via_service)), _dump_postgres(target)
    for part in expected:
        if expected[part] != actual[part]:
            raise RuntimeError(
                f"bulk rows differ from the service's in {part}:\n"
                f"service: {expected[part]}\nbulk:    {actual[part]}"
            )
    return len(rows)


def _conninfo(url: str) -> str:
    """A libpq address from a SQLAlchemy URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
