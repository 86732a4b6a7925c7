"""What a message says: the data of a message about a step, which each endpoint's channel
(``channels/``) renders its own way. Pure functions of what they are given; nothing here
reads the clock.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.commitments.clock import Clock
from app.commitments.schemas import CandidateOut, CommitmentOut, JobOut
from app.fields import Instant
from app.models import Interview
from app.models.outbound import Endpoint, EventType
from app.outbound.channels import channel_of


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


# The interview's columns a message shows.
_SHOWN = (
    "id",
    "source",
    "external_id",
    "candidate_external_id",
    "candidate_name",
    "candidate_email",
    "job_external_id",
    "job_title",
    "stage",
)


def interview_summary(interview: Interview, clock: Clock) -> dict[str, Any]:
    return interview_summary_of({name: getattr(interview, name) for name in _SHOWN}, clock)


def interview_summary_of(interview: Mapping[str, Any], clock: Clock) -> dict[str, Any]:
    """The interview as a message shows it, from its columns by name (a model's dump or a
    plain row)."""
    summary = InterviewSummary(
        id=str(interview["id"]),
        source=interview["source"],
        external_id=interview["external_id"],
        candidate=CandidateOut(
            external_id=interview["candidate_external_id"],
            name=interview["candidate_name"],
            email=interview["candidate_email"],
        ),
        job=JobOut(external_id=interview["job_external_id"], title=interview["job_title"]),
        stage=interview["stage"],
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


def body_for(endpoint: Endpoint, type_: EventType, data: dict[str, Any], now: datetime) -> str:
    """The exact text a message to ``endpoint`` carries, as its channel says it."""
    return channel_of(endpoint.kind).body(type_, data, now)
