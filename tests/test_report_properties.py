"""The report equals a slow reference computed from the raw version rows, for random
histories: reassignments before and after the due time, deadlines moved, completions
(some backdated), cancellations and reopenings."""

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from app import db
from app.commitments import service
from app.commitments.schemas import Candidate, CommitmentPatch, InterviewCreate, Job, NextStepIn
from app.errors import AppError
from app.main import create_app
from app.models import OwnerRole, Scope
from app.reports import service as reports
from app.reports.percentiles import percentile_cont, percentile_seconds, whole_seconds
from app.reports.schemas import GroupBy
from app.schemas import Owner
from app.versions import etag
from tests.conftest import DATABASE_EXAMPLES, empty_tables, make_key

HOUR = timedelta(hours=1)
ACTOR = "key:property"
OWNERS = [("ann", "recruiter"), ("ben", "hr"), ("cy", "hiring_manager"), ("dee", "candidate")]
INTERVIEWS = [
    ("api", "job-a", "Onsite"),
    ("api", "job-b", "Phone screen"),
    ("acme-ats", None, None),
]


@dataclass(frozen=True)
class Op:
    after_hours: int
    kind: str  # reassign, move, complete, cancel, reopen
    owner: int = 0
    due_hours: int = 0
    backdate_hours: int = 0


@dataclass(frozen=True)
class StepPlan:
    interview: int
    agreed_hours: int
    due_hours: int
    owner: int
    ops: tuple[Op, ...]


ops = st.builds(
    Op,
    after_hours=st.integers(0, 120),
    kind=st.sampled_from(["reassign", "reassign", "move", "complete", "cancel", "reopen"]),
    owner=st.integers(0, len(OWNERS) - 1),
    due_hours=st.integers(-24, 300),
    backdate_hours=st.integers(0, 72),
)
any_steps = st.builds(
    StepPlan,
    interview=st.integers(0, len(INTERVIEWS) - 1),
    agreed_hours=st.integers(0, 400),
    due_hours=st.integers(-24, 300),
    owner=st.integers(0, len(OWNERS) - 1),
    ops=st.lists(ops, max_size=5).map(tuple),
)
# Steps finished after their due time: completed a day to five days after agreeing to a
# due time at most a day later (some backdated to before it), then perhaps reassigned,
# moved or reopened.
late_steps = st.builds(
    StepPlan,
    interview=st.integers(0, len(INTERVIEWS) - 1),
    agreed_hours=st.integers(0, 400),
    due_hours=st.integers(-24, 24),
    owner=st.integers(0, len(OWNERS) - 1),
    ops=st.tuples(
        st.builds(
            Op,
            after_hours=st.integers(25, 120),
            kind=st.just("complete"),
            backdate_hours=st.integers(0, 30),
        ),
    ).flatmap(lambda done: st.lists(ops, max_size=2).map(lambda more: (*done, *more))),
)
# Steps still open past their due time: never completed nor cancelled.
open_late_steps = st.builds(
    StepPlan,
    interview=st.integers(0, len(INTERVIEWS) - 1),
    agreed_hours=st.integers(0, 400),
    due_hours=st.integers(-24, 120),
    owner=st.integers(0, len(OWNERS) - 1),
    ops=st.lists(
        st.builds(
            Op,
            after_hours=st.integers(0, 120),
            kind=st.sampled_from(["reassign", "move"]),
            owner=st.integers(0, len(OWNERS) - 1),
            due_hours=st.integers(-24, 120),
        ),
        max_size=3,
    ).map(tuple),
)
steps = st.one_of(any_steps, late_steps, open_late_steps)


@dataclass(frozen=True)
class Scenario:
    plans: tuple[StepPlan, ...]
    window: tuple[int, int]  # start and length, in hours from the base
    now_hours: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Histories and a report window; most windows are drawn around the steps' due times,
    since a window drawn anywhere holds no step (and so no late one) most of the time."""
    plans = tuple(draw(st.lists(steps, min_size=1, max_size=6)))
    if draw(st.integers(0, 3)):
        dues = [p.agreed_hours + p.due_hours for p in plans]
        start = min(dues) - draw(st.integers(0, 48))
        window = (start, max(dues) - start + draw(st.integers(1, 48)))
    else:
        window = (draw(st.integers(0, 500)), draw(st.integers(1, 600)))
    return Scenario(plans, window, draw(st.integers(200, 900)))


def _owner(index: int) -> Owner:
    owner_id, role = OWNERS[index]
    return Owner(id=owner_id, role=OwnerRole(role))


def _try(action: Any) -> None:
    """Run one use case in its own session; one the service refuses (a step that is not
    open, a completion dated before the last status change) changes nothing."""
    with db.new_session(write=True) as session:
        try:
            action(session)
        except AppError:
            session.rollback()


def build_history(base: datetime, plans: list[StepPlan]) -> None:
    interview_ids = []
    with db.new_session(write=True) as session:
        for n, (source, job, stage) in enumerate(INTERVIEWS):
            body = InterviewCreate(
                source=source,
                candidate=Candidate(external_id=f"cand-{n}"),
                job=Job(external_id=job),
                stage=stage,
                status="completed",
            )
            interview_ids.append(service.create_interview(session, body, ACTOR, base).id)
            session.commit()
    for plan in plans:
        agreed = base + plan.agreed_hours * HOUR
        step = NextStepIn(
            action="Call the candidate back",
            owner=_owner(plan.owner),
            due_at=agreed + plan.due_hours * HOUR,
            agreed_at=agreed,
        )
        with db.new_session(write=True) as session:
            commitment = service.create_commitment(
                session, interview_ids[plan.interview], step, ACTOR, agreed
            )
            session.commit()
        cid, clock = commitment.id, agreed
        for op in plan.ops:
            clock += op.after_hours * HOUR
            _try(_operation(cid, op, clock, agreed))


def _operation(cid: uuid.UUID, op: Op, clock: datetime, agreed: datetime) -> Any:
    def run(session: Any) -> None:
        current = service.get_commitment(session, cid)
        tag = etag(current)
        if op.kind == "reassign":
            patch = CommitmentPatch(owner=_owner(op.owner), reason="Handed over")
            service.update_commitment(session, cid, patch, tag, ACTOR, clock)
        elif op.kind == "move":
            patch = CommitmentPatch(due_at=agreed + op.due_hours * HOUR)
            service.update_commitment(session, cid, patch, tag, ACTOR, clock)
        elif op.kind == "complete":
            done_at = clock - op.backdate_hours * HOUR
            service.complete_commitment(session, cid, "Done", done_at, ACTOR, clock)
        elif op.kind == "cancel":
            service.cancel_commitment(session, cid, "No longer needed", ACTOR, clock)
        else:
            service.reopen_commitment(session, cid, "Not done after all", ACTOR, clock)

    return run


# ---------------------------------------------------------------- the slow reference


def _valid(versions: list[dict[str, Any]], at: datetime) -> dict[str, Any] | None:
    for v in versions:
        if v["valid_from"] <= at and (v["valid_to"] is None or v["valid_to"] > at):
            return v
    return None


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def _percentile(values: list[int], p: Fraction) -> int | None:
    """percentile_cont spelled out as PostgreSQL's documentation does, rounded half up."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    f, c = math.floor(k), math.ceil(k)
    value = Fraction(ordered[f]) if f == c else ordered[f] * (c - k) + ordered[c] * (k - f)
    return math.floor(value / 1_000_000 + Fraction(1, 2))


INSTANTS = {"valid_from", "valid_to", "due_at", "promised_by", "completed_at", "cancelled_at"}


def _aware(value: Any) -> Any:
    """An instant column's raw value as an aware datetime."""
    if isinstance(value, str):  # SQLite's text
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def reference(
    start: datetime, end: datetime, now: datetime, group_by: str, owed_by: str
) -> dict[str, Any]:
    judged = min(end, now)
    with db.get_engine().connect() as conn:
        versions = [
            {k: _aware(v) if k in INSTANTS else v for k, v in row._mapping.items()}
            for row in conn.execute(text("SELECT * FROM commitment_version"))
        ]
        commitments = {
            str(r.id): _aware(r.agreed_at)
            for r in conn.execute(text("SELECT id, agreed_at FROM commitment"))
        }
        interviews = {
            str(r.id): {"job": r.job_external_id, "stage": r.stage, "source": r.source}
            for r in conn.execute(text("SELECT id, job_external_id, stage, source FROM interview"))
        }
    by_commitment: dict[str, list[dict[str, Any]]] = {}
    for v in versions:
        by_commitment.setdefault(str(v["commitment_id"]), []).append(v)
    groups: dict[str | None, dict[str, Any]] = {}
    for cid, history in by_commitment.items():
        at_judging = _valid(history, judged)
        if at_judging is None:
            continue
        due = at_judging["due_at"]
        if not start <= due < end:
            continue
        agreed = commitments[cid]
        held = _valid(history, max(min(due, judged), agreed))
        assert held is not None
        if held["owed_by"] != owed_by:
            continue
        interview = interviews[str(at_judging["interview_id"])]
        key = {"owner": held["owner_id"], "owner_role": held["owner_role"]}.get(group_by)
        if group_by in interview:
            key = interview[group_by]
        g = groups.setdefault(key, {"steps": []})
        g["steps"].append((at_judging, due, agreed))

    def row(group: str | None, members: list[tuple[dict[str, Any], datetime, datetime]]) -> Any:
        counts = dict.fromkeys(("kept", "late", "open_late", "cancelled"), 0)
        lateness: list[int] = []
        waits: list[int] = []
        for state, due, agreed in members:
            if state["status"] == "done":
                finished = state["completed_at"]
                counts["kept" if finished <= due else "late"] += 1
                if finished > due:
                    lateness.append(_micros(finished - due))
                waits.append(_micros(finished - agreed))
            elif state["status"] == "cancelled":
                counts["cancelled"] += 1
            elif due < judged:
                counts["open_late"] += 1
                lateness.append(_micros(judged - due))
                waits.append(_micros(judged - agreed))
        rated = counts["kept"] + counts["late"] + counts["open_late"]
        return {
            "group": group,
            "due": len(members),
            **counts,
            "on_time_rate": round(counts["kept"] / rated, 4) if rated else None,
            "lateness_p50_seconds": _percentile(lateness, Fraction(1, 2)),
            "lateness_p90_seconds": _percentile(lateness, Fraction(9, 10)),
            "wait_p50_seconds": _percentile(waits, Fraction(1, 2)),
            "wait_p90_seconds": _percentile(waits, Fraction(9, 10)),
        }

    names = sorted(groups, key=lambda name: (name is None, name or ""))
    return {
        "items": [row(name, groups[name]["steps"]) for name in names],
        "total": row(None, [s for name in names for s in groups[name]["steps"]]),
    }


@hypothesis.settings(
    DATABASE_EXAMPLES,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    scenario=scenarios(),
    group_by=st.sampled_from(list(GroupBy)),
    owed_by=st.sampled_from(["company", "company", "candidate"]),
)
# The edges, every run: a step completed at its due time exactly (kept), and an open step
# due at the judging instant exactly (not yet late).
@hypothesis.example(
    scenario=Scenario((StepPlan(0, 10, 24, 0, (Op(24, "complete"),)),), (0, 100), 200),
    group_by=GroupBy.owner,
    owed_by="company",
)
@hypothesis.example(
    scenario=Scenario((StepPlan(1, 10, 24, 1, ()),), (0, 100), 34),
    group_by=GroupBy.owner,
    owed_by="company",
)
def test_report_equals_the_slow_reference_for_random_histories(
    database_url: str, scenario: Scenario, group_by: GroupBy, owed_by: str
) -> None:
    plans, window, now_hours = list(scenario.plans), scenario.window, scenario.now_hours
    empty_tables(database_url)
    base = (
        datetime.now(UTC).replace(microsecond=0)
        - timedelta(days=60)
        + timedelta(microseconds=123_457)
    )
    build_history(base, plans)
    start = base + window[0] * HOUR
    end = start + window[1] * HOUR
    now = base + now_hours * HOUR  # may fall inside the window: the report then judges at now
    with db.new_session() as session:
        answer = reports.responsiveness(session, start, end, now, group_by, owed_by)
    expected = reference(start, end, now, group_by.value, owed_by)
    total = expected["total"]
    hypothesis.event("steps in the report", str(min(total["due"], 3)))
    hypothesis.event("late steps", str(min(total["late"] + total["open_late"], 2)))
    body = answer.model_dump(mode="json")
    assert {"items": body["items"], "total": body["total"]} == expected
    assert answer.judged_at == min(end, now)


def test_report_reads_the_api_in_the_same_way_as_the_service(
    database_url: str,
) -> None:
    """The HTTP answer is the service's report, judged at the moment of the request."""
    base = datetime.now(UTC) - timedelta(days=20)
    build_history(
        base,
        [
            StepPlan(0, 0, 24, 0, (Op(12, "reassign", owner=1), Op(24, "complete"))),
            StepPlan(1, 5, 48, 2, (Op(72, "reassign", owner=0),)),
            StepPlan(2, 8, 10, 1, (Op(2, "cancel"), Op(3, "reopen"))),
        ],
    )
    reader = {"Authorization": f"Bearer {make_key(Scope.read, name='reader')}"}
    end = datetime.now(UTC) - timedelta(days=1)
    with TestClient(create_app()) as client:
        response = client.get(
            "/v1/reports/responsiveness",
            params={"to": end.isoformat(), "group_by": "owner"},
            headers=reader,
        )
    assert response.status_code == 200, response.text
    expected = reference(end - timedelta(days=30), end, end, "owner", "company")
    body = response.json()
    assert {"items": body["items"], "total": body["total"]} == expected


@pytest.fixture(scope="module")
def postgres_engine(postgresql_database: str) -> Any:
    engine = create_engine(postgresql_database)
    yield engine
    engine.dispose()


@hypothesis.settings(DATABASE_EXAMPLES, deadline=None)
@hypothesis.given(
    values=st.lists(st.integers(0, 10**13), min_size=1, max_size=40),
    fraction=st.sampled_from([Fraction(1, 2), Fraction(9, 10), Fraction(0), Fraction(1)]),
)
def test_percentiles_agree_with_postgresql_percentile_cont(
    postgres_engine: Any, values: list[int], fraction: Fraction
) -> None:
    with postgres_engine.connect() as conn:
        theirs = conn.execute(
            text(
                "SELECT percentile_cont(CAST(:p AS float8)) WITHIN GROUP (ORDER BY x) "
                "FROM unnest(CAST(:xs AS bigint[])) AS x"
            ),
            {"p": float(fraction), "xs": values},
        ).scalar_one()
    ours = percentile_cont(sorted(values), fraction)
    assert math.isclose(float(ours), theirs, rel_tol=1e-12, abs_tol=1e-3)


@hypothesis.given(
    values=st.lists(
        st.one_of(st.integers(0, 10**13), st.integers(0, 20).map(lambda n: n * 500_000)),
        min_size=1,
        max_size=40,
    ),
    fraction=st.sampled_from([Fraction(1, 2), Fraction(9, 10), Fraction(0), Fraction(1)]),
)
def test_percentiles_in_whole_seconds_round_the_exact_value(
    values: list[int], fraction: Fraction
) -> None:
    """The integer arithmetic the report uses equals the exact value rounded halves up,
    half seconds included."""
    ordered = sorted(values)
    exact = whole_seconds(percentile_cont(ordered, fraction))
    assert percentile_seconds(ordered, fraction, ordered=True) == exact
