"""Action links and unsubscribe links from the e-mails: the step's page, its three answers made
as the REST calls make them, 303 and the confirmation, 422 pages that keep what was typed,
409 once the step moved on, 404 for dead links, one-click unsubscribe, headers and logs."""

import io
import logging
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from markupsafe import escape
from sqlalchemy import text

from app import db
from app.action_links import service
from app.logsafe import loggable_path
from app.models import Commitment, UnsubscribeTopic, utcnow
from app.observability import JsonFormatter
from tests.factories import (
    Headers,
    Json,
    action_link,
    add_contact,
    assert_problem,
    complete,
    create_commitment,
    create_interview,
    days,
    iso,
    now,
    parse,
    patch_commitment,
    unsubscribe_link,
)
from tests.outbound_helpers import CHANGE_TYPES, REMINDER_TYPES, make_endpoint, make_rule
from tests.outbound_helpers import messages as outbox_messages
from tests.outbound_helpers import reminders as scheduled_reminders
from tests.test_calendars import create_calendar
from tests.test_owners_api import put_owner
from tests.test_status_page import PAGE_HEADERS, visible_text

OWNER = "rec-1"
TAKER = "rec-2"
NEW_YORK = ZoneInfo("America/New_York")
FORM = {"content-type": "application/x-www-form-urlencoded"}
LATER_REMINDERS = [
    {"offset": "-PT24H", "type": "next_step.due_soon"},
    {"offset": "PT0S", "type": "next_step.overdue"},
]


@pytest.fixture
def owners(client: TestClient, admin_headers: Headers) -> Json:
    """Two owners in the directory; the first works by a New York calendar."""
    calendar = create_calendar(client, admin_headers)
    first = put_owner(
        client,
        admin_headers,
        OWNER,
        name="Rita Recruiter",
        email="rita@acme.test",
        calendar_id=calendar["id"],
    )
    assert first.status_code == 201, first.text
    second = put_owner(client, admin_headers, TAKER, name="Rick Recruiter")
    assert second.status_code == 201, second.text
    return dict(first.json())


def new_step(
    client: TestClient,
    headers: Headers,
    *,
    due_at: datetime | None = None,
    candidate_id: str = "cand-1",
    **fields: Any,
) -> Json:
    interview = create_interview(
        client, headers, candidate_id=candidate_id, candidate_name="Casey Candidate"
    )
    fields.setdefault("owner_id", OWNER)
    fields.setdefault("owner_name", "Rita Recruiter")
    fields.setdefault("role", "recruiter")
    return create_commitment(
        client, headers, interview["id"], due_at=due_at or now() + days(3), **fields
    )


def timeline(client: TestClient, headers: Headers, step: Json) -> list[Json]:
    response = client.get(f"/v1/interviews/{step['interview_id']}/timeline", headers=headers)
    assert response.status_code == 200, response.text
    return [e for e in response.json()["items"] if e["commitment_id"] == step["id"]]


def commitment(client: TestClient, headers: Headers, step: Json) -> Json:
    response = client.get(f"/v1/commitments/{step['id']}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def stored(client: TestClient, headers: Headers, step: Json) -> tuple[list[Json], Json]:
    """The step's timeline and its stored fields (without those computed at request time)."""
    computed = {"is_overdue", "overdue_by", "overdue_seconds"}
    row = commitment(client, headers, step)
    return timeline(client, headers, step), {k: v for k, v in row.items() if k not in computed}


def post(client: TestClient, path: str, **fields: str) -> Response:
    return client.post(path, data=fields, headers=FORM, follow_redirects=False)


def assert_page(response: Response, status: int = 200) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    for name, value in PAGE_HEADERS.items():
        assert response.headers[name] == value
    assert "<script" not in response.text
    return visible_text(response.text)


def forms_of(page: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="op" value="([a-z]+)">', page)


def effect(client: TestClient, headers: Headers, step: Json) -> dict[str, Any]:
    """What a change left behind, but who made it: the timeline entry, the outbox's messages
    and the step's reminders."""
    last = timeline(client, headers, step)[-1]
    # The instant of a completion is the clock's: which fields it changed is what compares.
    changes = {
        name: change if name != "completed_at" else sorted(change)
        for name, change in last["changes"].items()
    }
    return {
        "kind": last["kind"],
        "changes": changes,
        "reason": last["reason"],
        "messages": [m.type for m in outbox_messages(step["id"])],
        "reminders": [(r.step, r.state, r.reason) for r in scheduled_reminders(step["id"])],
    }


# The page -----------------------------------------------------------------------------------------


def test_the_page_shows_the_step_in_the_owners_zone_and_a_get_changes_nothing(
    client: TestClient, admin_headers: Headers, owners: Json
) -> None:
    due = datetime.now(UTC).replace(microsecond=0) - days(2) - timedelta(hours=1)
    step = new_step(client, admin_headers, due_at=due)
    add_contact(client, admin_headers, step["interview_id"], "inbound")
    path = action_link(step["id"], OWNER)
    before = stored(client, admin_headers, step)

    for _ in range(2):
        page = assert_page(client.get(path))
    assert "Call the candidate to schedule the second interview" in page
    assert "Casey Candidate" in page
    assert "Analyst" in page
    local = due.astimezone(NEW_YORK)
    assert f"{local:%H:%M} New York time" in page
    assert "2 days late" in page
    assert "Unanswered contacts 1" in page
    assert "has been waiting for" in page
    assert forms_of(client.get(path).text) == ["complete", "redate", "reassign"]
    for button in ("Done", "Needs more time", "Hand over"):
        assert f'<button type="submit">{button}</button>' in client.get(path).text
    # The hand-over list offers the directory's other owners, not the link's own.
    assert '<option value="rec-2">Rick Recruiter (rec-2)</option>' in client.get(path).text
    assert '<option value="rec-1"' not in client.get(path).text
    assert stored(client, admin_headers, step) == before
    assert client.head(path).status_code in (200, 405)
    assert stored(client, admin_headers, step) == before


# The three answers, as the REST calls -------------------------------------------------------------


def twins(client: TestClient, headers: Headers) -> tuple[Json, Json, str]:
    """Two alike steps of the link's owner, one to answer by its link (whose path comes third),
    the other by the REST call."""
    due = now() + days(3)
    by_link = new_step(client, headers, due_at=due, candidate_id="cand-link")
    by_rest = new_step(client, headers, due_at=due, candidate_id="cand-rest")
    return by_link, by_rest, action_link(by_link["id"], OWNER)


def answered(client: TestClient, path: str, op: str, **fields: str) -> str:
    """Send one form; it is applied and the browser is sent back to the page (303), with the
    page's headers. Where it is sent."""
    response = post(client, path, op=op, **fields)
    assert response.status_code == 303, response.text
    for name, value in PAGE_HEADERS.items():
        assert response.headers[name] == value
    location = str(response.headers["location"])
    assert location == f"{path}?done={op}"
    return location


@pytest.fixture
def outbox(owners: Json) -> None:
    """Endpoints that take every change and every reminder, and a rule with two reminders."""
    make_endpoint("https://hooks.example.test/changes", CHANGE_TYPES)
    make_endpoint("https://hooks.example.test/reminders", REMINDER_TYPES)
    make_rule(LATER_REMINDERS, quiet_hours=False)


@pytest.mark.usefixtures("outbox")
def test_done_completes_the_step_as_the_rest_call_does(
    client: TestClient, admin_headers: Headers
) -> None:
    by_link, by_rest, path = twins(client, admin_headers)

    location = answered(client, path, "complete", outcome="Called; second interview on Monday")
    complete(client, admin_headers, by_rest["id"], outcome="Called; second interview on Monday")

    assert effect(client, admin_headers, by_link) == effect(client, admin_headers, by_rest)
    entry = timeline(client, admin_headers, by_link)[-1]
    assert entry["kind"] == "completed"
    assert entry["actor"] == f"link:{OWNER}"
    assert "next_step.completed" in effect(client, admin_headers, by_link)["messages"]
    reminders = effect(client, admin_headers, by_link)["reminders"]
    assert {state for _step, state, _why in reminders} == {"skipped"}
    done = commitment(client, admin_headers, by_link)
    assert done["status"] == "done"
    assert done["outcome"] == "Called; second interview on Monday"

    page = assert_page(client.get(location))
    assert "Thank you: the step is marked done." in page
    today = parse(done["completed_at"]).astimezone(NEW_YORK)
    assert f"Completed on {today:%A} {today.day} {today:%B %Y}." in page
    assert forms_of(client.get(path).text) == []


def test_an_escalation_lets_its_reader_answer_for_the_steps_owner(
    client: TestClient, admin_headers: Headers, owners: Json
) -> None:
    step = new_step(client, admin_headers)
    # The escalation went to TAKER: the link is theirs, the step still OWNER's.
    path = action_link(step["id"], TAKER, held_by=OWNER)
    page = client.get(path).text
    assert forms_of(page) == ["complete", "redate", "reassign"]
    assert f'<option value="{OWNER}"' not in page  # who holds it is no one to hand it to

    location = answered(client, path, "complete", outcome="Called on Rita's behalf")

    entry = timeline(client, admin_headers, step)[-1]
    assert (entry["kind"], entry["actor"]) == ("completed", f"link:{TAKER}")
    assert "Thank you: the step is marked done." in assert_page(client.get(location))
    # A link of the step's owner's, sent before, now finds it done.
    assert forms_of(client.get(action_link(step["id"], OWNER)).text) == []


def test_an_escalation_link_stops_once_the_step_leaves_its_owner(
    client: TestClient, admin_headers: Headers, owners: Json
) -> None:
    step = new_step(client, admin_headers)
    path = action_link(step["id"], TAKER, held_by=OWNER)
    owner = {"id": TAKER, "role": "recruiter"}
    patch_commitment(client, admin_headers, step["id"], {"owner": owner, "reason": "Rick's now"})

    page = assert_page(client.get(path))
    assert "Handed over to" in page
    assert forms_of(client.get(path).text) == []
    refused = post(client, path, op="complete")
    assert refused.status_code == 409


@pytest.mark.usefixtures("outbox")
def test_needs_more_time_moves_the_deadline_in_the_owners_zone(
    client: TestClient, admin_headers: Headers
) -> None:
    by_link, by_rest, path = twins(client, admin_headers)
    wall = (
        (now() + days(10)).astimezone(NEW_YORK).replace(hour=15, minute=30, second=0, microsecond=0)
    )

    fields = {"due_at": f"{wall:%Y-%m-%dT%H:%M}", "reason": "Waiting on the panel"}
    location = answered(client, path, "redate", **fields)
    patch_commitment(
        client,
        admin_headers,
        by_rest["id"],
        {"due_at": iso(wall), "reason": "Waiting on the panel"},
    )

    moved = commitment(client, admin_headers, by_link)
    assert parse(moved["due_at"]) == wall
    assert moved["version"] == 2
    assert effect(client, admin_headers, by_link) == effect(client, admin_headers, by_rest)
    entry = timeline(client, admin_headers, by_link)[-1]
    assert (entry["kind"], entry["actor"], entry["reason"]) == (
        "deadline_moved",
        f"link:{OWNER}",
        "Waiting on the panel",
    )
    assert "next_step.updated" in effect(client, admin_headers, by_link)["messages"]
    # The reminders follow the new deadline: the old ones skipped, new ones scheduled for it.
    fires = {
        (r.state, r.fire_at) for r in scheduled_reminders(by_link["id"]) if r.state == "scheduled"
    }
    assert fires == {("scheduled", wall - days(1)), ("scheduled", wall)}

    page = assert_page(client.get(location))
    assert "Thank you: the new deadline is saved" in page
    assert "15:30 New York time" in page
    assert forms_of(client.get(path).text) == ["complete", "redate", "reassign"]
    # The same answer again (a second click) changes nothing more.
    answered(client, path, "redate", **fields)
    assert commitment(client, admin_headers, by_link)["version"] == 2


@pytest.mark.usefixtures("outbox")
def test_hand_over_gives_the_step_to_a_directory_owner(
    client: TestClient, admin_headers: Headers
) -> None:
    by_link, by_rest, path = twins(client, admin_headers)

    location = answered(client, path, "reassign", owner_id=TAKER, reason="On leave next week")
    taker = {"id": TAKER, "name": "Rick Recruiter", "role": "recruiter"}
    patch_commitment(
        client,
        admin_headers,
        by_rest["id"],
        {"owner": taker, "owed_by": "company", "reason": "On leave next week"},
    )

    handed = commitment(client, admin_headers, by_link)
    assert handed["owner"] == taker
    assert handed["owed_by"] == "company"
    assert effect(client, admin_headers, by_link) == effect(client, admin_headers, by_rest)
    assert timeline(client, admin_headers, by_link)[-1]["actor"] == f"link:{OWNER}"

    page = assert_page(client.get(location))
    assert "Thank you: the step is handed over." in page
    assert "Handed over to Rick Recruiter." in page
    assert forms_of(client.get(path).text) == []
    # The new owner's own link answers it.
    assert forms_of(client.get(action_link(by_link["id"], TAKER)).text) == [
        "complete",
        "redate",
        "reassign",
    ]


# Wrong fields -------------------------------------------------------------------------------------


def _past() -> str:
    return f"{(now() - timedelta(hours=2)).astimezone(NEW_YORK):%Y-%m-%dT%H:%M}"


def _future() -> str:
    return f"{(now() + days(3)).astimezone(NEW_YORK):%Y-%m-%dT%H:%M}"


@pytest.mark.parametrize(
    ("fields", "field", "said"),
    [
        ({"op": "redate", "due_at": "", "reason": "Panel"}, "due_at", "is required"),
        ({"op": "redate", "due_at": "next week", "reason": "Panel"}, "due_at", "YYYY-MM-DDTHH:MM"),
        ({"op": "redate", "due_at": "2026-02-30T10:00", "reason": "Panel"}, "due_at", "exists"),
        ({"op": "redate", "due_at": "PAST", "reason": "Panel"}, "due_at", "later than now"),
        ({"op": "redate", "due_at": "FUTURE", "reason": "   "}, "reason", "is required"),
        ({"op": "reassign", "owner_id": OWNER, "reason": "Busy"}, "owner_id", "already holds it"),
        ({"op": "reassign", "owner_id": "nobody", "reason": "Busy"}, "owner_id", "directory"),
        ({"op": "reassign", "owner_id": "", "reason": "Busy"}, "owner_id", "is required"),
        ({"op": "complete", "outcome": "x" * 5001}, "outcome", "at most 5000"),
        ({"op": "archive"}, "op", "complete, redate or reassign"),
        ({}, "op", "complete, redate or reassign"),
    ],
)
@pytest.mark.usefixtures("owners")
def test_a_wrong_field_answers_422_naming_it_and_keeps_what_was_typed(
    client: TestClient, admin_headers: Headers, fields: dict[str, str], field: str, said: str
) -> None:
    step = new_step(client, admin_headers)
    path = action_link(step["id"], OWNER)
    typed = {
        name: {"PAST": _past(), "FUTURE": _future()}.get(value, value)
        for name, value in fields.items()
    }
    before = stored(client, admin_headers, step)

    response = post(client, path, **typed)

    page = assert_page(response, 422)
    assert "Nothing was changed: please check the form" in page
    assert f"({field})" in page
    assert said in page
    assert 'aria-invalid="true"' in response.text or field == "op"
    for name, value in typed.items():
        if name == "op" or not value.strip():
            continue
        if name == "owner_id" and value in (OWNER, "nobody"):
            continue  # not offered in the list: nothing to select again
        assert str(escape(value)) in response.text, name
    assert stored(client, admin_headers, step) == before


@pytest.mark.usefixtures("owners")
def test_a_hand_over_refused_selects_the_owner_that_was_chosen(
    client: TestClient, admin_headers: Headers
) -> None:
    path = action_link(new_step(client, admin_headers)["id"], OWNER)
    response = post(client, path, op="reassign", owner_id=TAKER, reason=" ")
    assert_page(response, 422)
    assert '<option value="rec-2" selected>' in response.text


@pytest.mark.usefixtures("owners")
def test_a_directory_too_long_to_list_takes_the_new_owners_id(
    client: TestClient, admin_headers: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "OWNERS_LISTED", 0)
    step = new_step(client, admin_headers)
    path = action_link(step["id"], OWNER)
    page = client.get(path).text
    assert '<select id="reassign-owner_id"' not in page
    assert '<input type="text" id="reassign-owner_id" name="owner_id"' in page
    refused = post(client, path, op="reassign", owner_id="rec-9", reason="Busy")
    assert "not in the owner directory" in assert_page(refused, 422)
    assert 'value="rec-9"' in refused.text
    answered(client, path, "reassign", owner_id=TAKER, reason="Busy")
    assert commitment(client, admin_headers, step)["owner"]["id"] == TAKER


@pytest.mark.usefixtures("owners")
def test_a_wall_time_the_clocks_skip_is_refused(client: TestClient, admin_headers: Headers) -> None:
    path = action_link(new_step(client, admin_headers)["id"], OWNER)
    # 02:30 on the second Sunday of March does not happen in New York.
    year = now().year + 1
    march = datetime(year, 3, 8)
    sunday = march + timedelta(days=(6 - march.weekday()) % 7)
    response = post(
        client, path, op="redate", due_at=f"{sunday:%Y-%m-%d}T02:30", reason="Panel moved"
    )
    assert "does not exist in that time zone" in assert_page(response, 422)


# A step that moved on -----------------------------------------------------------------------------


@pytest.mark.usefixtures("owners")
def test_a_step_that_moved_on_says_what_happened_and_takes_no_answer(
    client: TestClient, admin_headers: Headers
) -> None:
    completed = new_step(client, admin_headers, candidate_id="cand-done")
    handed = new_step(client, admin_headers, candidate_id="cand-handed")
    cancelled = new_step(client, admin_headers, candidate_id="cand-cancelled")
    links = {
        name: action_link(s["id"], OWNER)
        for name, s in (("completed", completed), ("handed", handed), ("cancelled", cancelled))
    }
    complete(client, admin_headers, completed["id"])
    patch_commitment(
        client,
        admin_headers,
        handed["id"],
        {"owner": {"id": "coord-9", "name": "Cora Coordinator", "role": "coordinator"}},
    )
    response = client.post(
        f"/v1/commitments/{cancelled['id']}/cancel",
        json={"reason": "Withdrew"},
        headers=admin_headers,
    )
    assert response.status_code == 200
    said = {
        "completed": "Completed on ",
        "handed": "Handed over to Cora Coordinator.",
        "cancelled": "Cancelled on ",
    }
    for name, path in links.items():
        page = assert_page(client.get(path))
        assert said[name] in page
        assert forms_of(client.get(path).text) == []
        step = {"completed": completed, "handed": handed, "cancelled": cancelled}[name]
        before = stored(client, admin_headers, step)
        for fields in (
            {"op": "complete"},
            {"op": "redate", "due_at": _future(), "reason": "More time"},
            {"op": "reassign", "owner_id": TAKER, "reason": "Busy"},
        ):
            refused = post(client, path, **fields)
            assert said[name] in assert_page(refused, 409)
            assert forms_of(refused.text) == []
        assert stored(client, admin_headers, step) == before


@pytest.mark.usefixtures("owners")
def test_two_answers_at_once_apply_once(client: TestClient, admin_headers: Headers) -> None:
    """A double click: the step is locked by the first answer, and the second one, waiting
    for it, finds the step done. On PostgreSQL both really wait on one lock (held here until
    both are waiting); SQLite takes one writer at a time."""
    step = new_step(client, admin_headers)
    token = action_link(step["id"], OWNER).removeprefix("/a/")
    results: list[object] = []
    on_postgresql = db.get_engine().dialect.name == "postgresql"

    def answer() -> None:
        with db.new_session(write=True) as session:
            results.append(service.answer(session, token, {"op": "complete"}, utcnow()))

    holder = db.new_session(write=True)
    if on_postgresql:
        holder.get(Commitment, uuid.UUID(step["id"]), with_for_update=True)
    threads = [threading.Thread(target=answer) for _ in range(2)]
    for thread in threads:
        thread.start()
    if on_postgresql:
        _until_waiting_on_locks(2)
    holder.rollback()
    holder.close()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(type(r).__name__ for r in results) == ["Applied", "MovedOn"]
    kinds = [e["kind"] for e in timeline(client, admin_headers, step)]
    assert kinds == ["agreed", "completed"]


def _until_waiting_on_locks(count: int) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    with db.new_session() as session:
        for _ in range(6000):
            if session.execute(query).scalar_one() >= count:
                return
            session.rollback()
            threading.Event().wait(0.01)
    pytest.fail(f"fewer than {count} answers came to wait on the step's lock")


# Links that do not open ---------------------------------------------------------------------------


@pytest.mark.usefixtures("owners")
def test_unknown_expired_or_orphaned_links_show_the_status_pages_404(
    client: TestClient, admin_headers: Headers
) -> None:
    not_found = client.get("/s/" + "N" * 43)
    assert not_found.status_code == 404
    step = new_step(client, admin_headers)
    expired = action_link(step["id"], OWNER, issued_at=now() - days(15))
    gone = action_link(step["id"], TAKER)
    response = client.get(f"/v1/owners/{TAKER}", headers=admin_headers)
    deleted = client.delete(
        f"/v1/owners/{TAKER}", headers={**admin_headers, "If-Match": response.headers["etag"]}
    )
    assert deleted.status_code == 204

    for path in ("/a/" + "A" * 43, "/a/", expired, gone):
        for response in (client.get(path), post(client, path, op="complete")):
            if path == "/a/":
                assert response.status_code in (404, 405)
                continue
            assert_page(response, 404)
            assert response.content == not_found.content
    assert commitment(client, admin_headers, step)["status"] == "open"


def test_a_form_past_the_size_limit_is_refused(
    client: TestClient, admin_headers: Headers, owners: Json
) -> None:
    path = action_link(new_step(client, admin_headers)["id"], OWNER)
    response = post(client, path, op="complete", outcome="x" * 2_000_000)
    assert_problem(response, 413)


# Unsubscribe --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "setting", "what"),
    [
        (UnsubscribeTopic.reminders, ("email_reminders",), "reminder e-mails"),
        (UnsubscribeTopic.digest, ("digest", "enabled"), "the daily digest e-mail"),
    ],
)
@pytest.mark.usefixtures("owners")
def test_one_click_unsubscribe_turns_the_topic_off_once(
    client: TestClient,
    admin_headers: Headers,
    topic: UnsubscribeTopic,
    setting: tuple[str, ...],
    what: str,
) -> None:
    patched = client.patch(
        f"/v1/owners/{OWNER}",
        json={"digest": {"enabled": True}},
        headers={**admin_headers, "If-Match": "*"},
    )
    assert patched.status_code == 200, patched.text

    def owner() -> Json:
        return dict(client.get(f"/v1/owners/{OWNER}", headers=admin_headers).json())

    def value(row: Json) -> Any:
        for key in setting:
            row = row[key]
        return row

    path = unsubscribe_link(OWNER, topic)
    before = owner()
    assert value(before) is True
    page = assert_page(client.get(path))
    assert f"Unsubscribe from {what}" in page
    assert '<button type="submit">Unsubscribe</button>' in client.get(path).text
    assert owner() == before

    # What a mail client sends (RFC 8058): no cookie, no form token.
    response = client.post(path, content=b"List-Unsubscribe=One-Click", headers=FORM)
    assert f"You are unsubscribed: you will no longer receive {what}." in assert_page(response)
    after = owner()
    assert value(after) is False
    assert after["version"] == before["version"] + 1
    assert parse(after["updated_at"]) > parse(before["updated_at"])
    # Again (the button, a second client): the same page, nothing more written.
    assert "You are unsubscribed" in assert_page(client.post(path))
    assert owner() == after
    assert "already unsubscribed" in assert_page(client.get(path))


def test_an_unknown_unsubscribe_link_is_404(client: TestClient) -> None:
    for response in (client.get("/u/" + "U" * 43), client.post("/u/" + "U" * 43)):
        assert_page(response, 404)


# Hostile input, tokens in logs --------------------------------------------------------------------


@pytest.mark.usefixtures("owners")
def test_html_in_the_step_or_in_what_was_typed_is_shown_as_text(
    client: TestClient, admin_headers: Headers
) -> None:
    hostile = '<img src=x onerror="alert(1)"></textarea><script>alert(2)</script>'
    step = new_step(client, admin_headers, action=f"Call back {hostile}")
    path = action_link(step["id"], OWNER)
    page = client.get(path)
    assert_page(page)
    assert "<img" not in page.text
    assert str(escape(f"Call back {hostile}")) in page.text

    refused = post(client, path, op="redate", due_at=_future(), reason=hostile + "\x00")
    assert_page(refused, 422)
    assert "<img" not in refused.text
    assert "</textarea><script>" not in refused.text


@pytest.mark.usefixtures("owners")
def test_tokens_of_action_and_unsubscribe_links_never_reach_the_logs(
    client: TestClient, admin_headers: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    assert loggable_path("/a/abc") == "/a/[redacted]"
    assert loggable_path("/u/abc") == "/u/[redacted]"
    assert loggable_path("/api/a/b") == "/api/a/b"
    step = new_step(client, admin_headers)
    action = action_link(step["id"], OWNER)
    unsubscribe = unsubscribe_link(OWNER, UnsubscribeTopic.reminders)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG, logger="nextstep")
    caplog.clear()
    try:
        client.get(action)
        post(client, action, op="redate", due_at="", reason="")
        post(client, action, op="complete")
        client.get(unsubscribe)
        client.post(unsubscribe)
    finally:
        logging.getLogger().removeHandler(handler)
    access = [getattr(r, "path", None) for r in caplog.records if r.name == "nextstep.access"]
    assert access == ["/a/[redacted]"] * 3 + ["/u/[redacted]"] * 2
    lines = [line for line in stream.getvalue().splitlines() if '"logger": "httpx' not in line]
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    for line in lines + [f"{r.getMessage()} {r.__dict__}" for r in records]:
        for path in (action, unsubscribe):
            assert path.split("/")[-1] not in line
