"""The fast path of a batch: new interviews with new next steps, one INSERT per table.

Most deliveries record an interview not seen before, with the steps agreed at its end.
Those of a batch that nothing else in the batch or in the database concerns are written
together, with exactly the rows the applier would write one by one (bench/ingest.py
measures the difference; tests/test_ingest_batch.py proves the rows equal).
"""

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlmodel import Session, SQLModel

from app import tracing
from app.commitments.changes import steps_inserted
from app.commitments.ledger import (
    Origin,
    entry_values,
    new_commitment_rows,
    new_interview_row,
)
from app.commitments.policy_steps import POLICY_SOURCE, default_step, default_step_origin
from app.db import insert_rows
from app.deadlines.policies import InterviewFacts
from app.deadlines.policy_due import NO_PROVENANCE
from app.events.commands import AgreeStep, Mapped, UpsertInterview
from app.events.inbound import Inbound, Mapping, Receipt, delivery_values
from app.events.pending import interview_subject, lock_subjects, step_subject
from app.models import DeliveryResult, InterviewStatus, TimelineKind
from app.owners.learning import learn_owners, owner_id, people_named


def _new_interview_commands(mapped: Mapped) -> tuple[UpsertInterview, list[AgreeStep]] | None:
    """An interview that names its candidate, and next steps of it, each step named once."""
    if not mapped.commands:
        return None
    first, *rest = mapped.commands
    if not isinstance(first, UpsertInterview) or not first.fields.get("candidate_external_id"):
        return None
    steps = [
        c for c in rest if isinstance(c, AgreeStep) and c.interview_external_id == first.external_id
    ]
    if len(steps) != len(rest) or len({s.step_external_id for s in steps}) != len(steps):
        return None
    if any(s.values.get("due_at") is None for s in steps):
        return None  # a deadline policy computes it: one by one
    return first, steps


@dataclass(frozen=True)
class _NewInterview:
    inbound: Inbound
    mapped: Mapped
    interview: UpsertInterview
    steps: list[AgreeStep]

    @property
    def completes_without_step(self) -> bool:
        completed = self.interview.fields.get("status") == InterviewStatus.completed
        return completed and not self.steps

    @property
    def subjects(self) -> list[str]:
        source = self.inbound.source
        return [
            interview_subject(source, self.interview.external_id),
            *(step_subject(source, s.step_external_id) for s in self.steps),
        ]


def new_interviews(
    session: Session, inbounds: Sequence[Inbound], mappings: Sequence[Mapping]
) -> dict[int, _NewInterview]:
    """The deliveries of a batch that record an interview not stored yet, with next steps not
    stored yet, under a delivery key not seen yet, sharing no key or subject with another
    delivery of the batch, and with no pending delivery waiting for their subjects (those
    go one by one, which releases the waiting). Whatever else the batch holds is applied
    after them.
    """
    found: dict[int, _NewInterview] = {}
    for index, (inbound, (mapped, _error)) in enumerate(zip(inbounds, mappings, strict=True)):
        if mapped is None:
            continue
        commands = _new_interview_commands(mapped)
        if commands is not None:
            found[index] = _NewInterview(inbound, mapped, *commands)
    if not found:
        return {}
    seen = Counter(f"delivery:{i.source}:{i.delivery_key}" for i in inbounds)
    seen.update(subject for new in found.values() for subject in new.subjects)
    found = {
        index: new
        for index, new in found.items()
        if seen[f"delivery:{new.inbound.source}:{new.inbound.delivery_key}"] == 1
        and all(seen[subject] == 1 for subject in new.subjects)
    }
    # Locked before looking, as applier.release_pending does: from here on no delivery can start
    # waiting for one of these subjects before this transaction ends.
    lock_subjects(session, *(subject for new in found.values() for subject in new.subjects))
    stored = _stored(session, found.values())
    return {
        index: new
        for index, new in found.items()
        if f"delivery:{new.inbound.source}:{new.inbound.delivery_key}" not in stored
        and not any(subject in stored for subject in new.subjects)
    }


# Which of a batch's keys and subjects exist: exact index look-ups on both databases,
# whatever the table statistics say (with "source = ? AND key IN (...)" PostgreSQL may
# filter every row of the source when the table was never analysed). 'pending' is inline
# so that the partial index on pending subjects serves.
_STORED = """
    SELECT w.kind, w.source, w.name FROM wanted AS w JOIN delivery AS d
        ON w.kind = 'delivery' AND d.source = w.source AND d.delivery_key = w.name
    UNION ALL
    SELECT w.kind, w.source, w.name FROM wanted AS w JOIN interview AS i
        ON w.kind = 'interview' AND i.source = w.source AND i.external_id = w.name
    UNION ALL
    SELECT w.kind, w.source, w.name FROM wanted AS w JOIN commitment AS c
        ON w.kind = 'step' AND c.source = w.source AND c.external_id = w.name
    UNION ALL
    SELECT w.kind, w.source, w.name FROM wanted AS w JOIN delivery AS p
        ON w.kind = 'waited' AND p.result = 'pending' AND p.subject = w.name
"""


def _stored(session: Session, found: Iterable[_NewInterview]) -> set[str]:
    """Which of these deliveries and subjects are stored, or (for subjects) waited for by a
    pending delivery, in one query; named as in ``_new_interviews``."""
    wanted: list[tuple[str, str, str]] = []
    for new in found:
        source = new.inbound.source
        wanted += [("delivery", source, new.inbound.delivery_key)]
        wanted += [("interview", source, new.interview.external_id)]
        wanted += [("step", source, step.step_external_id) for step in new.steps]
        wanted += [("waited", "", subject) for subject in new.subjects]
    if not wanted:
        return set()
    # Sent as is: the statement differs with the batch's size, and SQLAlchemy's handling
    # of a text with hundreds of parameters costs more than the query.
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    rows = ", ".join(f"({mark}, {mark}, {mark})" for _ in wanted)
    result = connection.exec_driver_sql(
        f"WITH wanted(kind, source, name) AS (VALUES {rows})" + _STORED,
        tuple(value for row in wanted for value in row),
    )
    return {
        name if kind == "waited" else f"{kind}:{source}:{name}" for kind, source, name in result
    }


def store_new_interviews(
    session: Session, inbounds: Sequence[Inbound], new: dict[int, _NewInterview], now: datetime
) -> dict[int, Receipt]:
    """Write the new interviews, their steps and deliveries, with one INSERT per table.

    The rows are the ones the applier writes through ``ledger.new_interview`` and
    ``ledger.agree``: for a subject that did not exist, its history is exactly the entry
    in hand, replayed here by the same functions.
    """
    if not new:
        return {}
    rows: dict[str, list[dict[str, Any]]] = {
        table: [] for table in ("delivery", "interview", "commitment", "timeline_entry")
    }
    rows["commitment_version"] = []
    receipts: dict[int, Receipt] = {}
    spans = tracing.BatchSpans()
    try:
        _rows_of_batch(session, rows, receipts, spans, new, now)
        # In key order, so that two transactions inserting the same keys cannot deadlock:
        # the second waits for the first, then fails on the unique key and goes one by one.
        for table in ("delivery", "interview", "commitment"):
            key = "delivery_key" if table == "delivery" else "external_id"
            rows[table].sort(key=lambda row: (row["source"], row[key]))
        for table, table_rows in rows.items():
            insert_rows(session, SQLModel.metadata.tables[table], table_rows)
        with spans.publishing():
            steps_inserted(session, [row["id"] for row in rows["commitment"]], now)
    finally:
        spans.end()
    return receipts


def _rows_of_batch(
    session: Session,
    rows: dict[str, list[dict[str, Any]]],
    receipts: dict[int, Receipt],
    spans: tracing.BatchSpans,
    new: dict[int, _NewInterview],
    now: datetime,
) -> None:
    for index, item in new.items():
        inbound, delivery_id = item.inbound, uuid.uuid4()
        # Each delivery's apply, under its own request, lasts until the batch is written.
        span = spans.start(
            "nextstep.delivery.apply",
            partial(_apply_attributes, inbound, delivery_id),
            inbound.trace,
        )
        first_step = len(rows["commitment"])
        rows["delivery"].append(
            {
                **delivery_values(inbound, (item.mapped, None)),
                "id": delivery_id,
                "result": DeliveryResult.applied.value,
                "subject": None,
                "applied_at": now,
                "duplicates": 0,
            }
        )
        _new_interview_rows(session, rows, item, delivery_id, now)
        spans.steps_of(span, rows["commitment"][first_step:])
        receipts[index] = Receipt(delivery_id, DeliveryResult.applied.value)
    _learn_owners(session, [new[index] for index in sorted(new)], now)


def _apply_attributes(inbound: Inbound, delivery_id: uuid.UUID) -> dict[str, str]:
    return {
        "nextstep.delivery.id": str(delivery_id),
        "nextstep.delivery.source": inbound.source,
        "nextstep.delivery.key": inbound.delivery_key,
        "nextstep.delivery.result": DeliveryResult.applied.value,
    }


def _learn_owners(session: Session, items: Sequence[_NewInterview], now: datetime) -> None:
    """The owners the batch's interviews name, as the applier learns them one by one: in
    id order across the batch, so that two batches cannot deadlock on them."""
    named = sorted(
        (
            (
                (owner_id(item.inbound.source, person.external_id), item.interview.occurred_at),
                item.inbound,
                person,
            )
            for item in items
            for person in people_named(item.interview.fields)
        ),
        key=lambda named: (*named[0], named[1].delivery_key),
    )
    for (_key, occurred_at), inbound, person in named:
        learn_owners(session, inbound.source, [person], occurred_at, inbound.delivery_key, now)


def _new_interview_rows(
    session: Session,
    rows: dict[str, list[dict[str, Any]]],
    item: _NewInterview,
    delivery_id: uuid.UUID,
    now: datetime,
) -> None:
    source, upsert = item.inbound.source, item.interview
    origin = Origin(
        effective_at=upsert.occurred_at,
        actor=f"source:{source}",
        now=now,
        tiebreak=item.inbound.delivery_key,
        delivery_id=delivery_id,
    )
    interview_id = uuid.uuid4()
    entry = entry_values(
        origin, TimelineKind.interview_recorded, interview_id, changes=upsert.fields
    )
    rows["timeline_entry"].append(entry)
    rows["interview"].append(
        new_interview_row(interview_id, source, upsert.external_id, entry, now)
    )
    for step in item.steps:
        commitment_id = uuid.uuid4()
        entry = entry_values(
            origin.at(step.occurred_at),
            TimelineKind.agreed,
            interview_id,
            commitment_id,
            step.values,
        )
        rows["timeline_entry"].append(entry)
        row, versions = new_commitment_rows(
            entry, source, step.step_external_id, NO_PROVENANCE, now
        )
        rows["commitment"].append(row)
        rows["commitment_version"] += versions
    if item.completes_without_step:
        _policy_step_rows(session, rows, item, interview_id, delivery_id, now)


def _policy_step_rows(
    session: Session,
    rows: dict[str, list[dict[str, Any]]],
    item: _NewInterview,
    interview_id: uuid.UUID,
    delivery_id: uuid.UUID,
    now: datetime,
) -> None:
    """The default step a deadline policy gives a new interview completed without a step:
    the rows that ``policy_steps.settle_policy_step`` writes one by one."""
    upsert = item.interview
    facts = InterviewFacts(
        source=item.inbound.source,
        stage=upsert.fields.get("stage"),
        job_id=upsert.fields.get("job_external_id"),
    )
    # Its completion: ends_at, else when it was marked completed (this event).
    completed_at = upsert.fields.get("ends_at") or upsert.occurred_at
    # The one event that records the interview completes it: whom it names is whom the
    # source had named at the completion.
    found = default_step(
        session, facts, completed_at, lambda: upsert.fields.get("default_owners") or {}
    )
    if found is None:
        return
    policy, values, computed = found
    origin = default_step_origin(policy.id, interview_id, completed_at, now, delivery_id)
    entry = entry_values(origin, TimelineKind.agreed, interview_id, uuid.uuid4(), values)
    rows["timeline_entry"].append(entry)
    row, versions = new_commitment_rows(
        entry, POLICY_SOURCE, str(interview_id), computed.columns(), now
    )
    rows["commitment"].append(row)
    rows["commitment_version"] += versions
