"""A client generated from openapi/openapi.json drives the canonical scenario.

What a team using openapi-python-client gets: typed models, datetimes as datetimes, a typed
PATCH body and typed canonical events, against the app on both databases.
"""

import csv
import importlib
import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import get_args

import httpx
import pytest
from fastapi.testclient import TestClient

from app.models import Scope
from tests.conftest import WEBHOOK_SECRETS, make_key
from tests.signing import standard_headers

DOCUMENT = Path(__file__).parent.parent / "openapi" / "openapi.json"
PACKAGE = "nextstep_generated_client"
ACTION = "Call C to schedule second interview with the hiring manager"
# The generated client speaks HTTP to the app; the answers are the app's, tested on both
# databases elsewhere.
pytestmark = [pytest.mark.process, pytest.mark.one_database("a client generated from the document")]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The package openapi-python-client writes from the committed document, imported."""
    root = tmp_path_factory.mktemp("client")
    config = root / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter on PATH needed
    subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(DOCUMENT),
            "--output-path",
            str(root / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(package: ModuleType, name: str) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_the_patch_body_and_the_events_are_typed(generated: ModuleType) -> None:
    models = _module(generated, "models")
    hints = models.CommitmentPatch.__annotations__
    assert hints == {
        "action": "str | Unset",
        "candidate_note": "None | str | Unset",
        "channel": "Channel | None | Unset",
        "due_at": "datetime.datetime | Unset",
        "owed_by": "OwedBy | Unset",
        "owner": "Owner | Unset",
        "promised_by": "datetime.datetime | None | Unset",
        "reason": "None | str | Unset",
    }
    receive = _module(generated, "api.events.receive_event").sync_detailed
    body = {member.__name__ for member in get_args(receive.__annotations__["body"])}
    assert body == {
        "InterviewScheduledEvent",
        "InterviewCompletedEvent",
        "InterviewCancelledEvent",
        "NextStepAgreedEvent",
        "NextStepUpdatedEvent",
        "NextStepCompletedEvent",
        "NextStepCancelledEvent",
        "CandidateContactedEvent",
    }
    kind = models.TimelineEntryKind
    assert {k.value for k in kind} >= {"agreed", "reassigned", "contact", "completed"}


def test_canonical_scenario_through_the_generated_client(
    generated: ModuleType, client: TestClient
) -> None:
    models = _module(generated, "models")
    api = "api.commitments."
    token = make_key(Scope.write, name="writer")
    client.headers["Authorization"] = f"Bearer {token}"
    authed = generated.AuthenticatedClient(base_url="http://testserver", token=token)
    authed.set_httpx_client(client)
    day0 = datetime.now(UTC) - timedelta(days=4)

    # 1. The interview, completed, with its next step; Idempotency-Key makes a retry safe.
    body = models.InterviewCreate(
        source="acme-ats",
        external_id="int-c-1",
        candidate=models.Candidate(external_id="cand-c", name="C", email="c@example.com"),
        job=models.Job(external_id="job-analyst", title="Analyst"),
        stage="First interview",
        status=models.InterviewStatus.COMPLETED,
        starts_at=day0 - timedelta(hours=1),
        ends_at=day0,
        next_steps=[
            models.NextStepIn(
                external_id="ns-1",
                action=ACTION,
                owner=models.Owner(id="hr-1", name="Harriet HR", role=models.OwnerRole.HR),
                channel=models.Channel.CALL,
                agreed_at=day0,
                due_at=day0 + timedelta(days=3),
            )
        ],
    )
    create = _module(generated, api + "create_interview").sync_detailed
    created = create(client=authed, body=body, idempotency_key="scenario-1")
    assert created.status_code == 201
    again = create(client=authed, body=body, idempotency_key="scenario-1")
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    interview = created.parsed
    assert isinstance(interview, models.InterviewDetail)
    assert again.parsed.id == interview.id
    assert interview.ends_at == day0
    assert isinstance(interview.created_at, datetime)
    assert interview.created_at.tzinfo is not None
    [step] = interview.commitments
    assert step.owed_by == models.OwedBy.COMPANY
    assert isinstance(step.due_at, datetime)
    assert step.due_at == day0 + timedelta(days=3)

    # 2. Two days later C calls, then emails.
    add_contact = _module(generated, api + "add_contact").sync
    for at, channel in ((2, models.Channel.CALL), (2.1, models.Channel.EMAIL)):
        contact = add_contact(
            interview.id,
            client=authed,
            body=models.ContactIn(
                direction=models.ContactDirection.INBOUND,
                channel=channel,
                at=day0 + timedelta(days=at),
            ),
        )
        assert isinstance(contact, models.ContactOut)
        assert contact.at == day0 + timedelta(days=at)

    # 3. Reassigned with If-Match and a typed body.
    got = _module(generated, api + "get_commitment").sync_detailed(step.id, client=authed)
    assert got.status_code == 200
    patched = _module(generated, api + "update_commitment").sync_detailed(
        step.id,
        client=authed,
        if_match=got.headers["etag"],
        body=models.CommitmentPatch(
            owner=models.Owner(id="rec-1", name="Rita Recruiter", role=models.OwnerRole.RECRUITER),
            reason="HR is swamped this week; the recruiter will call",
        ),
    )
    assert patched.status_code == 200
    assert patched.parsed.owner.id == "rec-1"
    assert patched.headers["etag"] != got.headers["etag"]
    stale = _module(generated, api + "update_commitment").sync_detailed(
        step.id,
        client=authed,
        if_match=got.headers["etag"],
        body=models.CommitmentPatch(action="Too late"),
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, models.Problem)

    # 4. Day 4: what is overdue, and what was at an instant.
    list_overdue = _module(generated, api + "list_overdue_commitments")
    page = list_overdue.sync(client=authed)
    [item] = page.items
    assert item.id == step.id
    assert item.owner.role == models.OwnerRole.RECRUITER
    assert item.overdue_by.startswith("P1D")
    assert 86400 <= item.overdue_seconds < 86400 + 60
    assert item.waiting_since == day0
    assert item.unanswered_contacts == 2
    day4 = datetime.now(UTC)
    [then] = list_overdue.sync(client=authed, as_of=day4).items
    assert then.id == step.id

    # 5. The same as CSV: the generator keeps the first media type of the 200 (JSON), so the
    # generated request is sent with Accept: text/csv and the answer read as text.
    request = list_overdue._get_kwargs(as_of=day4)
    request["headers"] = {"Accept": "text/csv"}
    answer: httpx.Response = authed.get_httpx_client().request(**request)
    assert answer.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(answer.text)))
    assert row["id"] == str(step.id)
    assert row["owner_id"] == "rec-1"

    # 6. Done.
    completed = _module(generated, api + "complete_commitment").sync(
        step.id,
        client=authed,
        body=models.CompleteIn(outcome="Second interview booked for Friday"),
    )
    assert completed.status == models.CommitmentStatus.DONE
    assert isinstance(completed.completed_at, datetime)
    assert list_overdue.sync(client=authed).items == []

    # 7. A canonical event, signed over the bytes the generated client sends.
    event = models.NextStepAgreedEvent(
        type_="next_step.agreed",
        occurred_at=datetime.now(UTC),
        data=models.StepAgreedData(
            interview_external_id="int-c-1",
            next_step=models.NextStepIn(
                external_id="ns-2",
                action="Second interview on Friday",
                owner=models.Owner(id="hm-1", role=models.OwnerRole.HIRING_MANAGER),
                due_at=datetime.now(UTC) + timedelta(days=3),
            ),
        ),
    )
    raw = httpx.Request("POST", "http://testserver", json=event.to_dict()).content
    signed = standard_headers(raw, WEBHOOK_SECRETS["acme-ats"][0], f"msg_{uuid.uuid4().hex}")
    receive = _module(generated, "api.events.receive_event").sync_detailed
    delivered = receive(
        "acme-ats",
        client=authed,
        body=event,
        webhook_id=signed["webhook-id"],
        webhook_timestamp=signed["webhook-timestamp"],
        webhook_signature=signed["webhook-signature"],
    )
    assert delivered.status_code == 202, delivered.content
    assert delivered.parsed.status == models.AcceptedStatus.APPLIED

    # The interview, with its ETag, and the timeline in the order it happened.
    detail = _module(generated, api + "get_interview").sync_detailed(interview.id, client=authed)
    assert detail.headers["etag"].startswith('"')
    assert [c.status for c in detail.parsed.commitments] == [
        models.CommitmentStatus.DONE,
        models.CommitmentStatus.OPEN,
    ]
    timeline = _module(generated, api + "get_interview_timeline").sync(interview.id, client=authed)
    kinds = [entry.kind for entry in timeline.items]
    assert kinds == [
        models.TimelineEntryKind.AGREED,
        models.TimelineEntryKind.CONTACT,
        models.TimelineEntryKind.CONTACT,
        models.TimelineEntryKind.INTERVIEW_RECORDED,
        models.TimelineEntryKind.REASSIGNED,
        models.TimelineEntryKind.COMPLETED,
        models.TimelineEntryKind.AGREED,
    ]
    assert all(isinstance(entry.effective_at, datetime) for entry in timeline.items)
    assert timeline.next_cursor is None
