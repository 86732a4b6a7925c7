"""Slack endpoints (incoming webhooks): one readable line of text, not signed."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.models.outbound import EndpointKind, EventType

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


class _Slack:
    kind = EndpointKind.slack.value
    signed = False

    def body(self, type_: EventType, data: dict[str, Any], now: datetime) -> str:
        text: str = json.dumps({"text": slack_text(type_, data)}, ensure_ascii=False)
        return text

    def headers(
        self, message_id: str, body: str, secrets: Sequence[str], at: datetime
    ) -> dict[str, str]:
        return {}


SLACK = _Slack()
