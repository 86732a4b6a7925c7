"""E-mail to owners as their inbox sees it: a real SMTP server (aiosmtpd) in the test
process, the worker on an injected clock. Test e-mails, reminder e-mails from rules with
email_owner (escalations to the `to` person), what the e-mail holds (headers, both parts,
times in the owner's zone, links), retries on 4xx and lost connections, 5xx failing at once,
the same bytes on every attempt, header injection, and the 422s without an SMTP server."""

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app import config, db
from app.cli import cli
from app.models import ActionLink, utcnow
from app.owners.links import active_action_link
from tests.email_helpers import DROP, SmtpSink, smtp, text_and_html
from tests.factories import (
    Headers,
    Json,
    add_contact,
    assert_problem,
    create_commitment,
    create_interview,
)
from tests.outbound_helpers import attempts, message, run_pass

__all__ = ["smtp"]  # the fixture

SECOND = timedelta(seconds=1)
WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
ACTION_LINK = re.compile(r"https://nextstep\.example\.com/a/([A-Za-z0-9_-]{43})")
UNSUBSCRIBE = re.compile(r"<https://nextstep\.example\.com/u/([A-Za-z0-9_-]{43})>")


def new_york_calendar(client: TestClient, headers: Headers) -> str:
    body = {"name": "New York", "time_zone": "America/New_York", "hours": WEEKDAYS_9_TO_5}
    response = client.post("/v1/calendars", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def put_owner(client: TestClient, headers: Headers, owner_id: str, **body: Any) -> Json:
    response = client.put(f"/v1/owners/{owner_id}", json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def harriet_in_new_york(client: TestClient, headers: Headers, **body: Any) -> Json:
    """hr-1, Harriet HR, with an e-mail address and a New York calendar (weekdays 9 to 5)."""
    calendar_id = new_york_calendar(client, headers)
    return put_owner(
        client,
        headers,
        "hr-1",
        name="Harriet HR",
        email="harriet@acme.test",
        calendar_id=calendar_id,
        **body,
    )


def email_rule(client: TestClient, headers: Headers, steps: list[Json]) -> Json:
    body = {"name": "e-mail the owner", "steps": steps, "quiet_hours": False, "email_owner": True}
    response = client.post("/v1/reminder-rules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def send_all(at: datetime) -> int:
    """Worker passes at ``at`` until one sends nothing; how many attempts were made."""
    sent = 0
    for _ in range(20):
        done = run_pass(at)
        sent += done.sent
        if not done.sent and not done.fired:
            return sent
    raise AssertionError("the worker did not settle")


def test_a_test_email_reaches_the_owner_with_its_headers_and_both_parts(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(client, admin_headers, "hr-1", name="Harriet HR", email="harriet@acme.test")

    response = client.post("/v1/owners/hr-1/test-email", headers=admin_headers)
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    assert send_all(utcnow() + SECOND) == 1

    [mail] = smtp.inbox
    [received] = smtp.received
    assert received.rcpt_tos == ("harriet@acme.test",)
    assert received.mail_from == "nextstep@example.com"
    assert mail["From"] == "nextstep <nextstep@example.com>"
    assert mail["To"] == "Harriet HR <harriet@acme.test>"
    assert mail["Subject"] == "nextstep: test e-mail"
    assert mail["Message-ID"] == f"<{message_id}@nextstep.example.com>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert UNSUBSCRIBE.fullmatch(str(mail["List-Unsubscribe"]))
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = text_and_html(mail)
    assert "Hello Harriet HR," in text
    assert "test e-mail" in text
    assert "Hello Harriet HR," in html
    assert "<html" in html

    listed = client.get("/v1/messages", params={"channel": "email"}, headers=admin_headers)
    [item] = listed.json()["items"]
    assert (item["id"], item["channel"], item["recipient"], item["endpoint_id"]) == (
        message_id,
        "email",
        "hr-1",
        None,
    )
    assert (item["type"], item["status"], item["attempts"]) == ("email.test", "succeeded", 1)
    by_owner = client.get("/v1/messages", params={"recipient": "hr-9"}, headers=admin_headers)
    assert by_owner.json()["items"] == []


def test_a_message_detail_never_shows_the_tokens_of_its_links(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(client, admin_headers, "hr-1", email="harriet@acme.test")
    message_id = client.post("/v1/owners/hr-1/test-email", headers=admin_headers).json()[
        "message_id"
    ]
    send_all(utcnow() + SECOND)
    [mail] = smtp.inbox
    token = UNSUBSCRIBE.fullmatch(str(mail["List-Unsubscribe"]))
    assert token is not None

    detail = client.get(f"/v1/messages/{message_id}", headers=admin_headers)
    assert detail.status_code == 200
    body = detail.text
    assert token.group(1) not in body
    payload = detail.json()["payload"]
    assert payload["headers"]["Subject"] == "nextstep: test e-mail"
    assert payload["headers"]["List-Unsubscribe"] == (
        "<https://nextstep.example.com/u/[token hidden]>"
    )
    assert "[token hidden]" in payload["text"]
    assert [a["response_status"] for a in detail.json()["attempt_log"]] == [250]


def test_a_rule_with_email_owner_emails_the_steps_owner_in_their_zone(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    harriet_in_new_york(client, admin_headers)
    email_rule(client, admin_headers, [{"offset": "PT0S", "type": "next_step.overdue"}])
    # Friday 4 December 2026, 17:00 in New York (22:00 UTC).
    due = datetime.fromisoformat("2026-12-04T22:00:00+00:00")
    interview = create_interview(client, admin_headers, candidate_name="Casey Candidate")
    step = create_commitment(
        client, admin_headers, interview["id"], due_at=due, action="Call Casey back"
    )

    assert send_all(due + 3 * SECOND) == 1
    [mail] = smtp.inbox
    assert mail["Subject"] == "Overdue: Call Casey back — Casey Candidate"
    text, html = text_and_html(mail)
    for part in (text, html):
        assert "Call Casey back" in part
        assert "Friday 4 December 2026, 17:00 New York time" in part
    links = set(ACTION_LINK.findall(text))
    assert len(links) == 1
    assert links == set(ACTION_LINK.findall(html))
    with db.new_session() as session:
        link = active_action_link(session, links.pop(), utcnow())
        assert isinstance(link, ActionLink)
        assert (str(link.commitment_id), link.owner_id) == (step["id"], "hr-1")

    [item] = client.get("/v1/messages", params={"channel": "email"}, headers=admin_headers).json()[
        "items"
    ]
    assert (item["type"], item["commitment_id"], item["recipient"]) == (
        "next_step.overdue",
        step["id"],
        "hr-1",
    )


def test_an_escalation_emails_the_to_person_and_names_the_steps_owner(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(client, admin_headers, "hr-1", name="Harriet HR", email="harriet@acme.test")
    put_owner(client, admin_headers, "boss-1", name="Bea Boss", email="bea@acme.test")
    to = {"id": "boss-1", "name": "Bea Boss", "role": "hiring_manager"}
    email_rule(client, admin_headers, [{"offset": "P1D", "type": "next_step.escalated", "to": to}])
    due = utcnow() + timedelta(days=2)
    ended = utcnow() - timedelta(days=1)
    interview = create_interview(
        client, admin_headers, candidate_name="Casey Candidate", ends_at=ended
    )
    add_contact(client, admin_headers, interview["id"], "inbound", at=ended + timedelta(hours=2))
    create_commitment(client, admin_headers, interview["id"], due_at=due, action="Send offer")

    send_all(due + timedelta(days=1) + SECOND)
    [mail] = smtp.inbox
    assert mail["To"] == "Bea Boss <bea@acme.test>"
    assert mail["Subject"] == "Escalated to you: Send offer — Casey Candidate"
    text, html = text_and_html(mail)
    for part in (text, html):
        assert "Owner: Harriet HR" in part
        assert "1 day late" in part
        assert "The candidate has waited 4 days, 1 unanswered contact." in part


def test_no_email_for_an_owner_without_address_or_with_reminders_off(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(client, admin_headers, "hr-1", email="harriet@acme.test", email_reminders=False)
    put_owner(client, admin_headers, "hr-2")
    email_rule(client, admin_headers, [{"offset": "PT0S", "type": "next_step.overdue"}])
    due = utcnow() + timedelta(days=1)
    for owner in ("hr-1", "hr-2", "not-in-directory"):
        interview = create_interview(client, admin_headers, candidate_id=f"cand-{owner}")
        create_commitment(client, admin_headers, interview["id"], due_at=due, owner_id=owner)

    send_all(due + SECOND)
    assert smtp.received == []


def _failing_test_email(
    client: TestClient, headers: Headers, smtp: SmtpSink, *answers: str
) -> tuple[str, datetime]:
    put_owner(client, headers, "hr-1", email="harriet@acme.test")
    smtp.answer(*answers)
    message_id = client.post("/v1/owners/hr-1/test-email", headers=headers).json()["message_id"]
    return str(message_id), utcnow() + SECOND


def test_a_4xx_reply_is_retried_with_the_same_bytes_and_message_id(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    message_id, t0 = _failing_test_email(client, admin_headers, smtp, "451 4.3.0 try later")

    assert run_pass(t0).sent == 1
    first = message(message_id)
    assert (first.status, first.attempts) == ("pending", 1)
    assert run_pass(t0 + 5 * SECOND).sent == 1
    assert message(message_id).status == "succeeded"
    log = [(a.n, a.response_status, a.error) for a in attempts(message_id)]
    assert log == [(1, 451, "4.3.0 try later"), (2, 250, None)]
    tried, accepted = smtp.received
    assert (tried.accepted, accepted.accepted) == (False, True)
    assert tried.data == accepted.data
    assert accepted.message()["Message-ID"] == f"<{message_id}@nextstep.example.com>"


def test_a_lost_connection_is_retried(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    message_id, t0 = _failing_test_email(client, admin_headers, smtp, DROP)

    run_pass(t0)
    [dropped] = attempts(message_id)
    assert dropped.response_status is None
    assert dropped.error is not None
    assert "no reply from the SMTP server" in dropped.error
    assert message(message_id).status == "pending"
    run_pass(t0 + 5 * SECOND)
    assert message(message_id).status == "succeeded"
    assert len(smtp.inbox) == 1
    assert smtp.received[0].data == smtp.received[1].data


def test_a_5xx_reply_fails_the_message_at_once(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    message_id, t0 = _failing_test_email(client, admin_headers, smtp, "550 5.1.1 no such user")

    run_pass(t0)
    failed = message(message_id)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", 1, None)
    assert [(a.response_status, a.error) for a in attempts(message_id)] == [
        (550, "5.1.1 no such user")
    ]
    assert run_pass(t0 + timedelta(days=2)).sent == 0


def test_resending_an_email_sends_the_same_bytes_again(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    message_id, t0 = _failing_test_email(client, admin_headers, smtp)
    run_pass(t0)
    response = client.post(f"/v1/messages/{message_id}/resend", headers=admin_headers)
    assert response.status_code == 202, response.text
    run_pass(utcnow() + SECOND)
    first, again = smtp.received
    assert first.data == again.data
    assert [a.response_status for a in attempts(message_id)] == [250, 250]


def test_metrics_count_email_attempts_by_channel(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    from prometheus_client import CollectorRegistry

    from app.outbound.metrics import AttemptMetrics

    registry = CollectorRegistry()
    metrics = AttemptMetrics.on(registry)
    _message_id, t0 = _failing_test_email(client, admin_headers, smtp, "451 later")
    run_pass(t0, metrics=metrics)
    run_pass(t0 + 5 * SECOND, metrics=metrics)

    def count(outcome: str) -> float | None:
        labels = {"kind": "email", "outcome": outcome}
        return registry.get_sample_value("nextstep_outbound_attempts_total", labels)

    assert (count("smtp_4xx"), count("succeeded")) == (1.0, 1.0)


def test_a_name_or_action_with_cr_lf_injects_no_header(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(
        client,
        admin_headers,
        "hr-1",
        name="Harriet\r\nBcc: eve@evil.test",
        email="harriet@acme.test",
    )
    email_rule(client, admin_headers, [{"offset": "PT0S", "type": "next_step.overdue"}])
    due = utcnow() + timedelta(days=1)
    interview = create_interview(client, admin_headers, candidate_name="Casey\nX-Injected: yes")
    action = "Call back\r\nBcc: eve@evil.test\r\n\r\n<b>fake body</b>"
    create_commitment(client, admin_headers, interview["id"], due_at=due, action=action)

    send_all(due + SECOND)
    [received] = smtp.received
    assert received.rcpt_tos == ("harriet@acme.test",)
    mail = received.message()
    assert mail["Bcc"] is None
    assert mail["X-Injected"] is None
    assert mail["Subject"] == (
        "Overdue: Call back Bcc: eve@evil.test <b>fake body</b> — Casey X-Injected: yes"
    )
    assert "\n" not in str(mail["Subject"])
    assert "\n" not in str(mail["To"])
    _text, html = text_and_html(mail)
    assert "<b>fake body</b>" not in html
    assert "&lt;b&gt;fake body&lt;/b&gt;" in html


# --- without an SMTP server -------------------------------------------------------------


def test_what_would_email_answers_422_naming_the_setting_without_an_smtp_url(
    client: TestClient, admin_headers: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXTSTEP_SMTP_URL", raising=False)
    config.get_settings.cache_clear()
    put_owner(client, admin_headers, "hr-1", email="harriet@acme.test")

    for path in ("/v1/owners/hr-1/test-email", "/v1/owners/hr-1/digest"):
        problem = assert_problem(client.post(path, headers=admin_headers), 422)
        assert "NEXTSTEP_SMTP_URL" in problem["detail"]
    rule = {"name": "r", "steps": [{"offset": "PT0S", "type": "next_step.overdue"}]}
    response = client.post(
        "/v1/reminder-rules", json={**rule, "email_owner": True}, headers=admin_headers
    )
    problem = assert_problem(response, 422, field="email_owner")
    assert "NEXTSTEP_SMTP_URL" in problem["detail"]
    created = client.post("/v1/reminder-rules", json=rule, headers=admin_headers)
    assert created.status_code == 201
    assert created.json()["email_owner"] is False
    patched = client.patch(
        f"/v1/reminder-rules/{created.json()['id']}",
        json={"email_owner": True},
        headers={**admin_headers, "If-Match": created.headers["etag"]},
    )
    assert_problem(patched, 422, field="email_owner")


def test_test_email_and_digest_need_an_owner_with_an_address(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(client, admin_headers, "hr-2", name="No Address")
    for kind in ("test-email", "digest"):
        assert_problem(client.post(f"/v1/owners/nobody/{kind}", headers=admin_headers), 404)
        problem = assert_problem(client.post(f"/v1/owners/hr-2/{kind}", headers=admin_headers), 422)
        assert "no e-mail address" in problem["detail"]
    assert smtp.received == []


def test_a_message_filter_travels_in_the_cursor(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(client, admin_headers, "hr-1", email="harriet@acme.test")
    sent = {
        client.post("/v1/owners/hr-1/test-email", headers=admin_headers).json()["message_id"]
        for _ in range(3)
    }
    seen: list[str] = []
    params: dict[str, Any] = {"channel": "email", "limit": 2}
    while True:
        page = client.get("/v1/messages", params=params, headers=admin_headers).json()
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        params = {"cursor": page["next_cursor"], "limit": 2}
    assert set(seen) == sent
    assert len(seen) == 3
    csv = client.get(
        "/v1/messages", params={"channel": "email"}, headers={**admin_headers, "Accept": "text/csv"}
    )
    header, *rows = csv.text.strip().splitlines()
    assert "channel" in header
    assert "recipient" in header
    assert len(rows) == 3


def test_the_command_line_lists_emails_by_channel_and_recipient(
    client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    put_owner(client, admin_headers, "hr-1", email="harriet@acme.test")
    message_id = client.post("/v1/owners/hr-1/test-email", headers=admin_headers).json()[
        "message_id"
    ]
    runner = CliRunner()
    table = runner.invoke(cli, ["messages", "list", "--channel", "email", "--recipient", "hr-1"])
    assert table.exit_code == 0, table.output
    assert message_id in table.output
    assert "email.test" in table.output
    assert "e-mail hr-1" in table.output
    none = runner.invoke(cli, ["messages", "list", "--channel", "webhook"])
    assert message_id not in none.output
