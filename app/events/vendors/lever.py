"""Lever webhook deliveries mapped to commands.

A delivery is ``{"triggeredAt": <epoch ms>, "event": ..., "data": {...}, "signature": ...,
"token": ...}`` (Lever's developer documentation, section Webhooks). The signature and
token are the caller's business; here ``triggeredAt`` is the instant of every command.

External ids:

- candidate: ``data.candidateId`` when present, else ``data.opportunityId``. An
  opportunity is one application, so the candidate id (when Lever sends it) keeps one
  person's interviews together across applications. Beware that the two are different
  ids in Lever's own example: a delivery that carries only ``opportunityId`` lands on a
  different candidate key than one that carries both.
- interview: ``data.interviewId``, as Lever sends it.
- stage: ``data.toStageId``. Lever sends stage ids, never stage names.

Interview events are read for ``interviewId`` and the candidate ids; ``date`` (epoch ms)
and ``duration`` (minutes), the names of Lever's interview object, give the time when the
delivery carries them. Nothing in them says an interview took place, so every created or
updated Lever interview is recorded as ``scheduled``, and it is for someone in nextstep to
complete it.
"""

from datetime import datetime, timedelta
from typing import Any

from app.events.commands import (
    CancelInterview,
    CloseCandidate,
    Command,
    Mapped,
    MappingError,
    SetCandidateStage,
    UpsertInterview,
)
from app.events.vendors import _payload as p


def map_event(payload: dict[str, Any], received_at: datetime) -> Mapped:
    """Map one Lever delivery; ``MappingError`` if it is not a valid one."""
    p.aware_utc(received_at)
    body = p.root(payload, "body")
    triggered_ms = p.opt_int(body, "triggeredAt", "body")
    if triggered_ms is None:
        raise MappingError("body.triggeredAt: missing")
    occurred_at = p.epoch_millis(triggered_ms, "body.triggeredAt")
    event = p.req_str(body, "event", "body")
    data = p.req_dict(body, "data", "body")

    commands: list[Command]
    if event in ("interviewCreated", "interviewUpdated"):
        commands = [_upsert_interview(data, occurred_at, created=event == "interviewCreated")]
    elif event == "interviewDeleted":
        commands = [
            CancelInterview(
                external_id=p.req_id(data, "interviewId", "body.data"),
                reason="deleted in Lever",
                occurred_at=occurred_at,
            )
        ]
    elif event == "candidateStageChange":
        commands = [
            SetCandidateStage(
                candidate_external_id=_candidate_id(data),
                stage=p.req_str(data, "toStageId", "body.data"),
                occurred_at=occurred_at,
            )
        ]
    elif event == "candidateHired":
        commands = [
            CloseCandidate(
                candidate_external_id=_candidate_id(data), reason="hired", occurred_at=occurred_at
            )
        ]
    elif event == "candidateArchiveChange":
        commands = _archive_change(data, occurred_at)
    else:
        commands = []
    return Mapped(event_type=event, occurred_at=occurred_at, commands=commands)


def _candidate_id(data: dict[str, Any]) -> str:
    candidate_id = p.opt_id(data, "candidateId", "body.data") or p.opt_id(
        data, "opportunityId", "body.data"
    )
    if candidate_id is None:
        raise MappingError("body.data: missing both candidateId and opportunityId")
    return candidate_id


def _upsert_interview(
    data: dict[str, Any], occurred_at: datetime, *, created: bool
) -> UpsertInterview:
    fields: dict[str, Any] = {"candidate_external_id": _candidate_id(data)}
    if created:
        # Lever never says an interview took place: an update must not undo a completion
        # recorded here, so only the creation states "scheduled".
        fields["status"] = "scheduled"
    # Lever's interview object gives its start as epoch ms and its length in minutes.
    starts_at = p.opt_epoch_millis(data, "date", "body.data")
    if starts_at is not None:
        fields["starts_at"] = starts_at
        minutes = p.opt_int(data, "duration", "body.data")
        if minutes is not None:
            try:
                fields["ends_at"] = starts_at + timedelta(minutes=minutes)
            except OverflowError:
                raise MappingError(f"body.data.duration: out of range: {minutes}") from None
    return UpsertInterview(
        external_id=p.req_id(data, "interviewId", "body.data"),
        fields=fields,
        occurred_at=occurred_at,
    )


def _archive_change(data: dict[str, Any], occurred_at: datetime) -> list[Command]:
    archived = p.opt_dict(data, "toArchived", "body.data")
    if archived is None:
        # Unarchived: nothing to close, and the steps cancelled at archiving stay cancelled.
        return []
    reason_id = p.opt_id(archived, "reason", "body.data.toArchived")
    reason = f"archived: {reason_id}" if reason_id else "archived"
    return [
        CloseCandidate(
            candidate_external_id=_candidate_id(data), reason=reason, occurred_at=occurred_at
        )
    ]
