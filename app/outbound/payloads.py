"""What a message says: the data of a message about a step, which each endpoint's channel
(``channels/``) renders its own way. Pure functions of what they are given; nothing here
reads the clock.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.commitments.clock import Clock
from app.commitments.queries import INTERVIEW_OUT_FIELDS
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


# The interview's columns a summary shows: InterviewOut's, up to its stage.
INTERVIEW_FIELDS = INTERVIEW_OUT_FIELDS[: INTERVIEW_OUT_FIELDS.index("stage") + 1]


def interview_summary(interview: Interview, clock: Clock) -> dict[str, Any]:
    return interview_summary_of({n: getattr(interview, n) for n in INTERVIEW_FIELDS}, clock)


def interview_summary_of(fields: Mapping[str, Any], clock: Clock) -> dict[str, Any]:
    """``interview_summary`` from the interview's ``INTERVIEW_FIELDS`` read by name (a row
    read without loading the interview as a model)."""
    summary = InterviewSummary(
        id=str(fields["id"]),
        source=fields["source"],
        external_id=fields["external_id"],
        candidate=CandidateOut(
            external_id=fields["candidate_external_id"],
            name=fields["candidate_name"],
            email=fields["candidate_email"],
        ),
        job=JobOut(external_id=fields["job_external_id"], title=fields["job_title"]),
        stage=fields["stage"],
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


def body_for(kind: str, type_: EventType, data: dict[str, Any], now: datetime) -> str:
    """The exact text a message to an endpoint of ``kind`` carries, as its channel says it."""
    return channel_of(kind).body(type_, data, now)
