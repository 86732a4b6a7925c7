"""The daily digest as the owner's inbox sees it: at `digest.at` in the zone of their
calendar, on its open days, overdue steps first (most late first), then due today, then due
in the next two open days; one per owner and local date, also with two processes racing on
PostgreSQL; and sent now over the API."""

import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app import db
from app.main import create_app
from app.models import DigestRun, Scope, utcnow
from app.outbound.digest import write_due_digests
from tests.conftest import empty_tables, make_key, reset_caches, use_database
from tests.email_helpers import SmtpSink, smtp, text_and_html
from tests.factories import Headers, complete, create_commitment, create_interview, iso
from tests.outbound_helpers import messages, run_pass
from tests.test_email import harriet_in_new_york, put_owner
from tests.test_outbound_processes import _serve_env, running_together
from tests.test_reliability import Server

__all__ = ["smtp"]  # the fixture

SECOND = timedelta(seconds=1)


def ny(text: str) -> datetime:
    """A New York wall time in December 2026 (UTC-5) as an aware UTC instant."""
    return datetime.fromisoformat(f"2026-12-{text}:00-05:00")


def _step(client: TestClient, headers: Headers, action: str, due: datetime, **fields: str) -> str:
    interview = create_interview(
        client, headers, candidate_id=f"cand-{action}", candidate_name=f"Candidate {action}"
    )
    step = create_commitment(client, headers, interview["id"], due_at=due, action=action, **fields)
    return str(step["id"])


@pytest.fixture
def harriet(client: TestClient, admin_headers: Headers, smtp: SmtpSink) -> str:
    """hr-1 in New York (weekdays 9 to 5), digest at 08:00, with steps due around Wednesday
    16 December 2026."""
    harriet_in_new_york(client, admin_headers, digest={"enabled": True, "at": "08:00"})
    _step(client, admin_headers, "B one hour late", ny("16T07:00"))
    _step(client, admin_headers, "A two days late", ny("14T08:00"))
    _step(client, admin_headers, "C due today", ny("16T15:00"))
    _step(client, admin_headers, "D due Friday", ny("18T10:00"))
    _step(client, admin_headers, "E due next week", ny("21T10:00"))
    _step(client, admin_headers, "F owed by the candidate", ny("16T12:00"), role="candidate")
    _step(client, admin_headers, "G someone else's", ny("16T12:00"), owner_id="hr-2")
    done = _step(client, admin_headers, "H done", ny("16T12:00"))
    complete(client, admin_headers, done)
    return "hr-1"


def _sent(at: datetime) -> None:
    for _ in range(5):
        if not run_pass(at).sent:
            return


def test_the_digest_comes_at_its_local_time_and_lists_steps_in_order(
    harriet: str, smtp: SmtpSink
) -> None:
    assert write_due_digests(ny("16T07:59")) == 0
    assert write_due_digests(ny("16T08:00")) == 1
    assert write_due_digests(ny("16T11:00")) == 0  # one a day
    _sent(ny("16T08:00") + SECOND)

    [mail] = smtp.inbox
    assert mail["Subject"] == "Your promises for Wednesday, 16 December 2026"
    assert mail["To"] == "Harriet HR <harriet@acme.test>"
    text, html = text_and_html(mail)
    for part in (text, html):
        order = [part.find(s) for s in ("Overdue", "A two", "B one", "Due today", "C due", "D due")]
        assert -1 not in order
        assert order == sorted(order)
        for absent in ("E due", "F owed", "G some", "H done"):
            assert absent not in part
    assert "Monday 14 December 2026, 08:00 New York time (2 days late)" in text
    assert len(set(re.findall(r"https://nextstep\.example\.com/a/[\w-]{43}", text))) == 4
    assert re.search(r"<https://nextstep\.example\.com/u/[\w-]{43}>", str(mail["List-Unsubscribe"]))


def test_no_digest_on_a_closed_day_and_one_again_the_next_open_day(
    harriet: str, smtp: SmtpSink
) -> None:
    assert write_due_digests(ny("19T09:00")) == 0  # a Saturday
    assert write_due_digests(ny("21T08:30")) == 1  # Monday
    _sent(ny("21T08:30") + SECOND)
    [mail] = smtp.inbox
    assert mail["Subject"] == "Your promises for Monday, 21 December 2026"
    assert "E due next week" in text_and_html(mail)[0]


def test_a_day_with_nothing_to_list_sends_nothing_and_counts_as_done(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(client, admin_headers, "hr-1", email="harriet@acme.test", digest={"enabled": True})
    at = datetime.fromisoformat("2026-12-16T07:30:00+00:00")
    assert write_due_digests(at) == 0
    _step(client, admin_headers, "Late", at - timedelta(hours=1))
    assert write_due_digests(at + timedelta(hours=1)) == 0  # the day was done
    with db.new_session() as session:
        [run] = session.exec(select(DigestRun)).all()
    assert (run.owner_id, str(run.on_date), run.message_id) == ("hr-1", "2026-12-16", None)
    assert messages() == []


def test_a_digest_sent_now_does_not_count_as_the_days(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    # At midnight UTC: due whenever the test runs.
    digest = {"enabled": True, "at": "00:00"}
    put_owner(client, admin_headers, "hr-1", email="harriet@acme.test", digest=digest)
    empty = client.post("/v1/owners/hr-1/digest", headers=admin_headers)
    assert (empty.status_code, empty.json()) == (202, {"message_id": None})

    _step(client, admin_headers, "Call back", utcnow() - timedelta(hours=3))
    response = client.post("/v1/owners/hr-1/digest", headers=admin_headers)
    assert response.status_code == 202
    message_id = response.json()["message_id"]
    assert write_due_digests(utcnow()) == 1
    _sent(utcnow() + SECOND)
    # Both are sent in one batch, in either order.
    by_id = {mail["Message-ID"]: mail for mail in smtp.inbox}
    first = by_id.pop(f"<{message_id}@nextstep.example.com>")
    [scheduled] = by_id.values()
    assert "Call back" in text_and_html(first)[0]
    assert "3 hours late" in text_and_html(first)[0]
    assert first["Subject"] == scheduled["Subject"]
    types = Counter(m.type for m in messages())
    assert types == {"owner.digest": 2}


# --- two processes racing over one morning ---------------------------------------------


@pytest.fixture
def postgres_url(postgresql_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    use_database(monkeypatch, postgresql_database)
    empty_tables(postgresql_database)
    yield postgresql_database
    reset_caches()


@pytest.mark.process
@pytest.mark.postgresql
def test_two_processes_racing_over_one_mornings_digests_send_one_each(
    postgres_url: str, tmp_path: Path
) -> None:
    owners = [f"hr-{n:02d}" for n in range(30)]
    headers = {"Authorization": f"Bearer {make_key(Scope.admin)}"}
    due = iso(utcnow() - timedelta(hours=1))
    with SmtpSink() as sink:
        with TestClient(create_app()) as client:
            for owner in owners:
                # Enabled once both processes are up.
                put_owner(client, headers, owner, email=f"{owner}@acme.test")
                interview = create_interview(client, headers, candidate_id=f"cand-{owner}")
                step = {"action": "Call back", "owner": {"id": owner, "role": "hr"}, "due_at": due}
                response = client.post(
                    f"/v1/interviews/{interview['id']}/commitments", json=step, headers=headers
                )
                assert response.status_code == 201, response.text
        env = _serve_env(postgres_url, NEXTSTEP_SMTP_URL=sink.url())
        first, second = Server(env, tmp_path / "a.log"), Server(env, tmp_path / "b.log")
        with running_together(first, second):
            with TestClient(create_app()) as client:
                for owner in owners:  # digest at 00:00 UTC: due at once, every day
                    body = {"digest": {"enabled": True, "at": "00:00"}}
                    etag = client.get(f"/v1/owners/{owner}", headers=headers).headers["etag"]
                    patched = client.patch(
                        f"/v1/owners/{owner}", json=body, headers={**headers, "If-Match": etag}
                    )
                    assert patched.status_code == 200, patched.text
            deadline = time.monotonic() + 30
            while len(sink.inbox) < len(owners) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)  # a second digest, if any, would come now
        received = Counter(tuple(r.rcpt_tos) for r in sink.received if r.accepted)
    assert received == {(f"{owner}@acme.test",): 1 for owner in owners}
    with db.new_session() as session:
        assert len(session.exec(select(DigestRun)).all()) == len(owners)
