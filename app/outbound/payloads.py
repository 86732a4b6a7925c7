"""What a message says: the Standard Webhooks body for a webhook endpoint, one line of text
for a Slack endpoint. Pure functions of what they are given; nothing here reads the clock.
"""

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.commitments.clock import Clock
from app.commitments.schemas import CandidateOut, CommitmentOut, JobOut
from app.fields import Instant
from app.models import Interview
from app.models.outbound import Endpoint, EndpointKind, EventType


class InterviewSummary(BaseModel):
    """The interview as a message shows it beside the step."""

    id: Any
    source: str
    external_id: str | None
    candidate: CandidateOut
    job: JobOut
    stage: str | None
    waiting_since: Instant | None
    unanswered_contacts: int


def interview_summary(interview: Interview, clock: Clock) -> dict[str, Any]:
    summary = InterviewSummary(
        id=str(interview.id),
        source=interview.source,
        external_id=interview.external_id,
        candidate=CandidateOut(
            external_id=interview.candidate_external_id,
            name=interview.candidate_name,
            email=interview.candidate_email,
        ),
        job=JobOut(external_id=interview.job_external_id, title=interview.job_title),
        stage=interview.stage,
        waiting_since=clock[0],
        unanswered_contacts=clock[1],
    )
    return summary.model_dump(mode="json")


def step_data(
    commitment: CommitmentOut,
    interview: dict[str, Any],
    *,
    rule_id: Any = None,
    escalate_to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``data`` of a message about a step, as the step stood when it was written."""
    data: dict[str, Any] = {
        "commitment": commitment.model_dump(mode="json"),
        "interview": interview,
    }
    if rule_id is not None:
        data["rule_id"] = str(rule_id)
    if escalate_to is not None:
        data["escalate_to"] = escalate_to
    return data


def test_data(endpoint: Endpoint) -> dict[str, Any]:
    """The ``data`` of an ``endpoint.test`` message."""
    return {"endpoint_id": str(endpoint.id), "message": "A test message from nextstep."}


def _z(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def webhook_body(type_: EventType, data: dict[str, Any], now: datetime) -> str:
    """The Standard Webhooks body: sent byte for byte the same on every attempt."""
    body = {"type": type_.value, "timestamp": _z(now), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


_HEADLINES = {
    EventType.due_soon: "Due soon",
    EventType.overdue: "Overdue",
    EventType.escalated: "Escalated",
    EventType.agreed: "Next step agreed",
    EventType.updated: "Next step changed",
    EventType.completed: "Next step done",
    EventType.cancelled: "Next step cancelled",
}


def _lateness(step: dict[str, Any]) -> str:
    if step["status"] != "open":
        return str(step["status"])
    if step.get("is_overdue"):
        return f"{_readable(step['overdue_seconds'])} late (due {step['due_at']})"
    return f"due {step['due_at']}"


def _readable(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else ""]
    text = " ".join(p for p in parts if p)
    return text or f"{minutes} min"


def slack_text(type_: EventType, data: dict[str, Any]) -> str:
    """One readable line: what, owner, how late, candidate, waiting since."""
    if type_ is EventType.endpoint_test:
        return "nextstep: test message. This channel receives nextstep reminders."
    step, interview = data["commitment"], data["interview"]
    owner = step["owner"]
    who = f"{owner.get('name') or owner['id']} ({owner['role']})"
    candidate = interview["candidate"]
    headline = _HEADLINES[type_]
    if type_ is EventType.escalated and data.get("escalate_to"):
        to = data["escalate_to"]
        headline = f"Escalated to {to.get('name') or to['id']} ({to['role']})"
    text = (
        f"{headline}: {step['action']} — owner {who}, {_lateness(step)}, "
        f"candidate {candidate.get('name') or candidate['external_id']}"
    )
    if interview.get("job", {}).get("title"):
        text += f" for {interview['job']['title']}"
    if interview.get("waiting_since"):
        text += f", waiting since {interview['waiting_since']}"
    return text + "."


def body_for(endpoint: Endpoint, type_: EventType, data: dict[str, Any], now: datetime) -> str:
    """The exact text a message to ``endpoint`` carries."""
    if endpoint.kind == EndpointKind.slack:
        text: str = json.dumps({"text": slack_text(type_, data)}, ensure_ascii=False)
        return text
    return webhook_body(type_, data, now)
