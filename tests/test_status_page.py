"""Status links and the candidate's status page: tokens, expiry, privacy, headers, nudges."""

import hashlib
import io
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import text
from sqlmodel import select

from app import db
from app.models import Interview, StatusLink
from app.observability import JsonFormatter
from app.status_page.router import PAGE_CSP
from app.status_page.service import page_time_zone
from app.status_page.wording import (
    step_sentence,
    written_date,
    written_instant,
    written_length,
    zone_name,
)
from tests.factories import (
    Headers,
    Json,
    add_contact,
    assert_problem,
    complete,
    create_commitment,
    create_interview,
    days,
    iso,
    now,
    parse,
    step_body,
)
from tests.test_calendars import create_calendar
from tests.test_policies_api import create_policy

PAGE_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-robots-tag": "noindex",
    "x-content-type-options": "nosniff",
    "content-security-policy": PAGE_CSP,
}


def create_link(client: TestClient, headers: Headers, interview_id: str, **body: object) -> Json:
    response = client.post(
        f"/v1/interviews/{interview_id}/status-links", json=body or None, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def page_path(link: Json) -> str:
    url = str(link["url"])
    # Without NEXTSTEP_PUBLIC_URL, the request's own base: the TestClient's.
    match = re.fullmatch(r"http://testserver(/s/[A-Za-z0-9_-]+)", url)
    assert match, url
    return match.group(1)


def token_of(link: Json) -> str:
    return page_path(link).removeprefix("/s/")


def visible_text(html: str) -> str:
    spaced = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()
    return re.sub(r" ([.,])", r"\1", spaced)


def set_link(link_id: str, **values: object) -> None:
    with db.new_session(write=True) as session:
        link = session.exec(select(StatusLink).where(StatusLink.id == uuid.UUID(link_id))).one()
        for name, value in values.items():
            setattr(link, name, value)
        session.add(link)
        session.commit()


# Links -------------------------------------------------------------------------------------


def test_a_link_is_shown_once_and_stored_only_as_a_hash(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    link = create_link(client, write_headers, interview["id"])
    token = token_of(link)
    # secrets.token_urlsafe(32): 256 random bits.
    assert len(token) == 43
    assert set(link) == {
        "id",
        "interview_id",
        "url",
        "expires_at",
        "created_at",
        "revoked_at",
        "last_nudged_at",
    }
    created = parse(link["created_at"])
    assert parse(link["expires_at"]) - created == timedelta(days=30)
    with db.new_session() as session:
        rows = [
            dict(r._mapping)
            for r in session.connection().execute(text("SELECT * FROM status_link"))
        ]
    stored = json.dumps(rows, default=str)
    assert token not in stored
    assert token[:20] not in stored
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    listed = client.get(f"/v1/interviews/{interview['id']}/status-links", headers=write_headers)
    assert listed.status_code == 200
    assert token not in listed.text
    assert "url" not in listed.json()["items"][0]
    assert listed.json()["items"][0]["id"] == link["id"]
    csv = client.get(
        f"/v1/interviews/{interview['id']}/status-links",
        headers={**write_headers, "Accept": "text/csv"},
    )
    assert (
        csv.text.splitlines()[0]
        == "id,interview_id,expires_at,created_at,revoked_at,last_nudged_at"
    )
    assert token not in csv.text


def test_expiry_must_be_in_the_future_and_at_most_180_days_ahead(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    url = f"/v1/interviews/{interview['id']}/status-links"
    for expires_at in (now() - timedelta(seconds=1), now() + days(180) + timedelta(minutes=1)):
        response = client.post(url, json={"expires_at": iso(expires_at)}, headers=write_headers)
        assert_problem(response, 422, field="expires_at")
    response = client.post(url, json={"expires_at": "2026-12-01T10:00:00"}, headers=write_headers)
    assert_problem(response, 422, field="expires_at")
    chosen = now() + days(179)
    link = create_link(client, write_headers, interview["id"], expires_at=iso(chosen))
    assert abs(parse(link["expires_at"]) - chosen) < timedelta(seconds=1)


def test_links_of_an_unknown_interview_or_link_are_404(
    client: TestClient, write_headers: Headers
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(
        client.post(f"/v1/interviews/{unknown}/status-links", headers=write_headers), 404
    )
    assert_problem(client.get(f"/v1/interviews/{unknown}/status-links", headers=write_headers), 404)
    assert_problem(client.delete(f"/v1/status-links/{unknown}", headers=write_headers), 404)


def test_the_list_pages_with_a_cursor(client: TestClient, write_headers: Headers) -> None:
    interview = create_interview(client, write_headers)
    ids = [create_link(client, write_headers, interview["id"])["id"] for _ in range(3)]
    url = f"/v1/interviews/{interview['id']}/status-links"
    first = client.get(url, params={"limit": 2}, headers=write_headers).json()
    second = client.get(
        url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=write_headers
    ).json()
    assert [i["id"] for i in first["items"] + second["items"]] == ids
    assert second["next_cursor"] is None


# The page ----------------------------------------------------------------------------------


def test_unknown_expired_and_revoked_tokens_get_the_same_404_page(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    expired = create_link(client, write_headers, interview["id"])
    revoked = create_link(client, write_headers, interview["id"])
    assert client.get(page_path(expired)).status_code == 200
    set_link(expired["id"], expires_at=now() - timedelta(seconds=1))
    response = client.delete(f"/v1/status-links/{revoked['id']}", headers=write_headers)
    assert response.status_code == 204
    assert response.content == b""
    # Revoking again changes nothing.
    assert (
        client.delete(f"/v1/status-links/{revoked['id']}", headers=write_headers).status_code == 204
    )
    listed = client.get(f"/v1/interviews/{interview['id']}/status-links", headers=write_headers)
    assert [i["revoked_at"] is not None for i in listed.json()["items"]] == [False, True]

    answers: list[Response] = [
        client.get(page_path(expired)),
        client.get(page_path(revoked)),
        client.get("/s/" + "A" * 43),
        client.get("/s/not-even-a-token"),
    ]
    for answer in answers:
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        for name, value in PAGE_HEADERS.items():
            assert answer.headers[name] == value
    assert len({answer.content for answer in answers}) == 1
    assert "<h1>" in answers[0].text
    # A nudge through a dead link records nothing and gets the same page.
    for link in (expired, revoked):
        nudged = client.post(page_path(link) + "/nudge", follow_redirects=False)
        assert nudged.status_code == 404
        assert nudged.content == answers[0].content


@pytest.mark.one_database("the response headers, the same whatever the rows")
def test_the_page_is_html_with_the_headers_api_md_lists(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    link = create_link(client, write_headers, interview["id"])
    response = client.get(page_path(link))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    for name, value in PAGE_HEADERS.items():
        assert response.headers[name] == value
    html = response.text
    assert html.startswith('<!doctype html>\n<html lang="en">')
    assert html.count("<h1>") == 1
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "<script" not in html
    assert " style=" not in html
    # Nothing from elsewhere: every URL in the page is a path on this server.
    for url in re.findall(r'(?:href|src|action)="([^"]*)"', html):
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
    stylesheet = client.get("/static/status.css")
    assert stylesheet.status_code == 200
    assert stylesheet.headers["content-type"] == "text/css; charset=utf-8"
    assert stylesheet.headers["x-content-type-options"] == "nosniff"
    assert stylesheet.headers["referrer-policy"] == "no-referrer"
    assert "url(" not in stylesheet.text
    assert "@import" not in stylesheet.text


SECRETS = {
    "action": "ACTION-SECRET-7f3a Call the candidate about the salary band",
    "outcome": "OUTCOME-SECRET-91c2 Candidate was weak on SQL",
    "reason": "REASON-SECRET-5d8e Hiring manager on holiday",
    "reject": "REJECT-SECRET-0b4d Rejected: not a culture fit",
    "owner_id": "owner-secret-id-3344",
    "owner_name": "Olivia Ownersecret",
    "candidate_email": "casey.private@example.com",
    "interviewer": "Ivan Interviewersecret",
    "interviewer_email": "ivan.secret@example.com",
    "other": "OTHER-INTERVIEW-SECRET-6e1f",
}


def test_the_page_shows_only_what_the_candidate_may_see(
    client: TestClient, write_headers: Headers
) -> None:
    ended = now() - days(4)
    interview = create_interview(
        client,
        write_headers,
        candidate_id="cand-private",
        ends_at=ended,
        stage="Second interview",
        interviewers=[{"name": SECRETS["interviewer"], "email": SECRETS["interviewer_email"]}],
        candidate={
            "external_id": "cand-private",
            "name": "Casey",
            "email": SECRETS["candidate_email"],
        },
    )
    iid = interview["id"]
    owner = {"owner_id": SECRETS["owner_id"], "owner_name": SECRETS["owner_name"]}
    # Open, company-owed, late against what the candidate was told (promised_by).
    late = create_commitment(
        client,
        write_headers,
        iid,
        action=SECRETS["action"],
        role="recruiter",
        channel="call",
        due_at=now() + days(2),
        promised_by=now() - days(1),
        **owner,
    )
    # Open with a note for the candidate: the note, not the action, is shown.
    create_commitment(
        client,
        write_headers,
        iid,
        action=SECRETS["action"] + " (2)",
        role="hiring_manager",
        channel="email",
        due_at=now() + days(3),
        candidate_note="You will get the case study by e-mail.",
        **owner,
    )
    # Open, without a channel, its deadline moved with a reason.
    moved = create_commitment(
        client,
        write_headers,
        iid,
        action="Decide",
        role="hiring_manager",
        due_at=now() + days(5),
        **owner,
    )
    tag = client.get(f"/v1/commitments/{moved['id']}", headers=write_headers).headers["etag"]
    response = client.patch(
        f"/v1/commitments/{moved['id']}",
        json={"due_at": iso(now() + days(6)), "reason": SECRETS["reason"]},
        headers={**write_headers, "If-Match": tag},
    )
    assert response.status_code == 200
    # Done, with an outcome: only its date is shown.
    done = create_commitment(
        client,
        write_headers,
        iid,
        action=SECRETS["action"] + " (3)",
        due_at=now() + days(1),
        agreed_at=now() - days(3),
        **owner,
    )
    completed_at = now() - days(2)
    complete(
        client, write_headers, done["id"], outcome=SECRETS["outcome"], completed_at=completed_at
    )
    # Cancelled because of a rejection: it simply disappears.
    rejected = create_commitment(
        client,
        write_headers,
        iid,
        action=SECRETS["action"] + " (4)",
        due_at=now() - days(1),
        **owner,
    )
    response = client.post(
        f"/v1/commitments/{rejected['id']}/cancel",
        json={"reason": SECRETS["reject"]},
        headers=write_headers,
    )
    assert response.status_code == 200
    # Owed by the candidate: not something we promised.
    create_commitment(
        client,
        write_headers,
        iid,
        action="Send the case study",
        role="candidate",
        owner_id="cand-private",
        candidate_note="CANDIDATE-OWED-7c1e Please send us the case study.",
    )
    # Another interview of the same candidate.
    other = create_interview(
        client, write_headers, candidate_id="cand-private", stage=SECRETS["other"]
    )
    create_commitment(
        client, write_headers, other["id"], action=SECRETS["other"], due_at=now() - days(1)
    )
    add_contact(client, write_headers, iid, "inbound", at=now() - days(1), note="NOTE-SECRET")

    link = create_link(client, write_headers, iid)
    response = client.get(page_path(link))
    assert response.status_code == 200
    html = response.text
    lowered = html.lower()
    for name, secret in SECRETS.items():
        for fragment in {secret, secret.split(" ")[0]}:
            assert fragment.lower() not in lowered, (name, fragment)
    for word in (
        "NOTE-SECRET",
        "CANDIDATE-OWED",
        "reject",
        "cancel",
        "Harriet",
        "hr-1",
        "@",
        late["id"],
        iid,
    ):
        assert word.lower() not in lowered, word

    body = visible_text(html)
    assert "Your interview: Second interview" in body
    zone = ZoneInfo("UTC")
    told = written_instant(parse(late["promised_by"]), zone)
    assert f"Your recruiter will call you. We said: by {told}. This is late." in body
    assert "We are sorry." in body
    assert body.count("This is late.") == 1
    assert "You will get the case study by e-mail." in body
    assert "The hiring manager will get back to you." in body
    assert f"A step was completed on {written_date(completed_at, zone)}." in body
    assert f"You have been waiting for 4 days, since {written_instant(ended, zone)}." in body
    assert "You have reached out to us once since then." in body
    # The three open steps the company owes, no more.
    assert body.count("We said: by") == 3
    # The steps are listed by the date the candidate was told.
    assert body.index("Your recruiter") < body.index("case study") < body.index("get back to you")


def test_a_step_the_candidate_owes_is_not_on_the_page(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers, candidate_id="cand-owes", stage="Onsite")
    create_commitment(
        client,
        write_headers,
        interview["id"],
        action="Send the signed form",
        role="candidate",
        owner_id="cand-owes",
        candidate_note="Please send us the signed form.",
    )
    body = visible_text(
        client.get(page_path(create_link(client, write_headers, interview["id"]))).text
    )
    assert "There is nothing we owe you right now." in body
    assert "signed form" not in body
    assert "We said" not in body


def test_an_interview_with_nothing_owed_says_so(client: TestClient, write_headers: Headers) -> None:
    interview = create_interview(client, write_headers, stage=None)
    body = visible_text(
        client.get(page_path(create_link(client, write_headers, interview["id"]))).text
    )
    assert "There is nothing we owe you right now." in body
    assert "You are not waiting for anything from us right now." in body
    assert "Your interview:" not in body


# Nudges ------------------------------------------------------------------------------------


def test_a_nudge_is_an_inbound_web_contact_once_a_day(
    client: TestClient, write_headers: Headers
) -> None:
    ended = now() - days(2)
    interview = create_interview(client, write_headers, ends_at=ended)
    create_commitment(client, write_headers, interview["id"], due_at=now() + days(1))
    link = create_link(client, write_headers, interview["id"])
    path = page_path(link)
    assert "Nudge us" in client.get(path).text
    # Opening the nudge's address records nothing: it leads to the page.
    opened = client.get(path + "/nudge", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == path

    first = client.post(path + "/nudge", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == f"{path}?nudged=1"
    assert first.headers["cache-control"] == "no-store"
    assert first.headers["referrer-policy"] == "no-referrer"
    confirmed = visible_text(client.get(first.headers["location"]).text)
    assert "Thank you: we have received your nudge" in confirmed
    assert "Nudge us" not in confirmed

    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["unanswered_contacts"] == 1
    assert detail["waiting_since"] == iso(ended)
    timeline = client.get(
        f"/v1/interviews/{interview['id']}/timeline", headers=write_headers
    ).json()["items"]
    (contact,) = [e for e in timeline if e["kind"] == "contact"]
    assert contact["changes"]["direction"]["after"] == "inbound"
    assert contact["changes"]["channel"]["after"] == "web"
    assert contact["actor"] == f"status-link:{link['id']}"

    second = client.post(path + "/nudge", follow_redirects=False)
    assert second.status_code == 303
    assert second.headers["location"] == f"{path}?nudged=again"
    again = visible_text(client.get(second.headers["location"]).text)
    assert "You had already nudged us today: the first nudge was received at" in again
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["unanswered_contacts"] == 1

    # The next (UTC) day the candidate may nudge again.
    set_link(link["id"], last_nudged_at=now() - days(1))
    assert "Nudge us" in client.get(path).text
    third = client.post(path + "/nudge", follow_redirects=False)
    assert third.headers["location"] == f"{path}?nudged=1"
    detail = client.get(f"/v1/interviews/{interview['id']}", headers=write_headers).json()
    assert detail["unanswered_contacts"] == 2
    listed = client.get(f"/v1/interviews/{interview['id']}/status-links", headers=write_headers)
    assert listed.json()["items"][0]["last_nudged_at"] is not None


def test_contacts_take_the_web_channel(client: TestClient, write_headers: Headers) -> None:
    interview = create_interview(client, write_headers)
    contact = add_contact(client, write_headers, interview["id"], "inbound", channel="web")
    assert contact["channel"] == "web"
    # A step is never promised "by web".
    response = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json={
            "action": "x",
            "owner": {"id": "o", "role": "hr"},
            "due_at": iso(now() + days(1)),
            "channel": "web",
        },
        headers=write_headers,
    )
    assert_problem(response, 422, field="channel")


# Logs --------------------------------------------------------------------------------------


@pytest.mark.one_database("what the access log carries")
def test_tokens_never_reach_the_access_log(
    client: TestClient, write_headers: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    interview = create_interview(client, write_headers)
    link = create_link(client, write_headers, interview["id"])
    token = token_of(link)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG, logger="nextstep")
    caplog.clear()
    try:
        client.get(page_path(link))
        client.post(page_path(link) + "/nudge", follow_redirects=False)
        client.get(f"{page_path(link)}/elsewhere")
        client.get("/s/" + "B" * 43)
    finally:
        logging.getLogger().removeHandler(handler)
    access = [r for r in caplog.records if r.name == "nextstep.access"]
    paths = [getattr(r, "path", None) for r in access]
    assert paths == [
        "/s/[redacted]",
        "/s/[redacted]/nudge",
        "/s/[redacted]/elsewhere",
        "/s/[redacted]",
    ]
    service_lines = [
        line for line in stream.getvalue().splitlines() if '"logger": "httpx' not in line
    ]
    assert service_lines
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    # The test client's own log (httpx) shows the URLs it requested: the client's, not ours.
    for line in service_lines + [f"{r.getMessage()} {r.__dict__}" for r in records]:
        assert token not in line
        assert "B" * 43 not in line


# Wording -----------------------------------------------------------------------------------


def test_dates_are_written_out_in_the_named_zone() -> None:
    moment = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    new_york = ZoneInfo("America/New_York")
    assert written_instant(moment, new_york) == "Wednesday 25 November 2026, 17:00 New York time"
    assert written_instant(moment, ZoneInfo("UTC")) == "Wednesday 25 November 2026, 22:00 UTC"
    assert zone_name(ZoneInfo("America/Argentina/Buenos_Aires")) == "Buenos Aires time"
    assert zone_name(ZoneInfo("Etc/UTC")) == "UTC"
    assert written_date(moment, ZoneInfo("Asia/Tokyo")) == "Thursday 26 November 2026"


def test_steps_are_worded_from_role_and_channel() -> None:
    assert step_sentence("recruiter", "call") == "Your recruiter will call you."
    assert step_sentence("hiring_manager", "email") == "The hiring manager will email you."
    assert step_sentence("hr", None) == "Our HR team will get back to you."
    assert written_length(timedelta(days=2, hours=23)) == "2 days"
    assert written_length(timedelta(hours=1, minutes=59)) == "1 hour"
    assert written_length(timedelta(minutes=59)) == "less than an hour"


def test_the_page_writes_in_utc_without_calendars(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    with db.new_session() as session:
        row = session.get(Interview, uuid.UUID(interview["id"]))
        assert row is not None
        assert page_time_zone(session, row) == ZoneInfo("UTC")


def test_the_page_writes_in_the_default_calendars_zone(
    client: TestClient, admin_headers: Headers
) -> None:
    create_calendar(client, admin_headers, name="Berlin office", time_zone="Europe/Berlin")
    due = datetime(2026, 12, 24, 16, 0, tzinfo=UTC)
    interview = create_interview(client, admin_headers, next_steps=[step_body(due_at=due)])
    link = create_link(client, admin_headers, interview["id"])
    text = visible_text(client.get(page_path(link)).text)
    assert "Thursday 24 December 2026, 17:00 Berlin time" in text


def test_the_page_writes_in_the_zone_of_the_policy_calendar(
    client: TestClient, admin_headers: Headers
) -> None:
    # The canonical scenario: a second interview completed with no next step on Friday
    # 20 November 2026 at 15:00 UTC; the policy counts 3 business days on the New York
    # calendar (Thanksgiving and the closure after it do not matter yet).
    create_calendar(client, admin_headers, name="Berlin office", time_zone="Europe/Berlin")
    new_york = create_calendar(client, admin_headers, name="New York office")
    create_policy(client, admin_headers, calendar_id=new_york["id"], match={})
    ended = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    interview = create_interview(client, admin_headers, ends_at=ended, next_steps=[])
    (step,) = interview["commitments"]
    assert step["source"] == "policy"
    assert step["due_at"] == "2026-11-25T22:00:00Z"
    link = create_link(client, admin_headers, interview["id"])
    text = visible_text(client.get(page_path(link)).text)
    assert "Wednesday 25 November 2026, 17:00 New York time" in text
    assert "This is late." in text
