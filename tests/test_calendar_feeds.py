"""Calendar feeds over HTTP: links made, listed without tokens and revoked; the feed read
by the icalendar parser as a subscribed calendar would; UIDs that stay, SEQUENCEs that
rise, steps that leave the owner cancelled for 30 days then gone; ETag and 304; tokens
kept out of the logs."""

import io
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import icalendar
import pytest
from fastapi.testclient import TestClient

import app.calendar_feeds.router as feed_router
from app.observability import JsonFormatter
from tests.factories import (
    Headers,
    Json,
    assert_problem,
    complete,
    create_step,
    days,
    get_csv,
    now,
    patch_commitment,
)

OWNER = "greenhouse:4080"


def put_owner(client: TestClient, headers: Headers, owner_id: str = OWNER, **body: Any) -> None:
    response = client.put(f"/v1/owners/{owner_id}", json=body, headers=headers)
    assert response.status_code in (200, 201), response.text


def create_feed(client: TestClient, headers: Headers, owner_id: str = OWNER) -> Json:
    response = client.post(f"/v1/owners/{owner_id}/feeds", headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


def feed_path(feed: Json) -> str:
    url = str(feed["url"])
    return url[url.index("/ics/") :]


def step(client: TestClient, headers: Headers, **fields: Any) -> Json:
    fields.setdefault("due_at", now() + days(2))
    fields.setdefault("owner_id", OWNER)
    fields.setdefault("owner_name", "Rita Recruiter")
    fields.setdefault("role", "recruiter")
    return create_step(client, headers, **fields)


def read_feed(client: TestClient, feed: Json, **headers: str) -> icalendar.Component:
    response = client.get(feed_path(feed), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    return icalendar.Calendar.from_ical(response.content)


def events(calendar: icalendar.Component) -> dict[str, icalendar.Component]:
    return {str(e["UID"]): e for e in calendar.walk("VEVENT")}


def sequence(event: icalendar.Component) -> int:
    return int(event.decoded("SEQUENCE"))


def uid(commitment: Json) -> str:
    return f"{commitment['id']}@nextstep"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Sets the instant the feed is read at."""

    def set_to(moment: datetime) -> None:
        monkeypatch.setattr(feed_router, "utcnow", lambda: moment)

    return set_to


def test_a_feed_holds_one_event_per_open_company_owed_step_of_its_owner(
    client: TestClient, admin_headers: Headers, write_headers: Headers
) -> None:
    put_owner(client, admin_headers, name="Rita Recruiter")
    feed = create_feed(client, admin_headers)
    assert set(feed) == {"id", "owner_id", "url", "created_at"}
    assert feed["owner_id"] == OWNER
    assert feed["url"].startswith("http://testserver/ics/")
    assert feed["url"].endswith(".ics")
    due = (now() + days(2)).replace(microsecond=0)
    mine = step(client, write_headers, due_at=due, action="Send the offer letter", channel="email")
    late = step(client, write_headers, due_at=now() - days(1), action="Call back")
    step(client, write_headers, owner_id="someone-else")
    step(client, write_headers, owed_by="candidate", action="Send references")

    response = client.get(feed_path(feed))
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.content.count(b"\r\n") == response.content.count(b"\n")
    calendar = icalendar.Calendar.from_ical(response.content)
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"]) == "-//nextstep//calendar feed//EN"
    assert str(calendar["CALSCALE"]) == "GREGORIAN"
    assert str(calendar["METHOD"]) == "PUBLISH"
    assert str(calendar["X-WR-CALNAME"]) == "Rita Recruiter"
    assert b"\r\nREFRESH-INTERVAL;VALUE=DURATION:PT15M\r\n" in response.content
    assert b"\r\nX-PUBLISHED-TTL:PT15M\r\n" in response.content
    assert calendar.walk("VTODO") == []
    assert calendar.walk("VALARM") == []

    found = events(calendar)
    assert set(found) == {uid(mine), uid(late)}
    event = found[uid(mine)]
    assert event.decoded("DTSTART") == due
    assert b"DTSTART:" + due.strftime("%Y%m%dT%H%M%SZ").encode() in response.content
    assert event.decoded("DURATION") == days(0) + (days(1) / 96)
    assert sequence(event) == mine["version"] == 1
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["SUMMARY"]) == "Due: Send the offer letter — Casey Candidate"
    description = str(event["DESCRIPTION"])
    assert "Candidate: Casey Candidate" in description
    assert "Job: Analyst" in description
    assert "Channel: email" in description
    assert "Waiting since: " in description
    assert str(found[uid(late)]["SUMMARY"]) == "Overdue: Call back — Casey Candidate"


def test_the_calendar_is_named_by_the_owner_id_when_the_owner_has_no_name(
    client: TestClient, admin_headers: Headers
) -> None:
    put_owner(client, admin_headers, "hr-team")
    calendar = read_feed(client, create_feed(client, admin_headers, "hr-team"))
    assert str(calendar["X-WR-CALNAME"]) == "hr-team"
    assert calendar.walk("VEVENT") == []


def test_a_changed_step_keeps_its_uid_with_a_higher_sequence(
    client: TestClient, admin_headers: Headers, write_headers: Headers
) -> None:
    put_owner(client, admin_headers)
    feed = create_feed(client, admin_headers)
    mine = step(client, write_headers)
    before = events(read_feed(client, feed))[uid(mine)]
    later = (now() + days(5)).replace(microsecond=0)
    changed = patch_commitment(client, write_headers, mine["id"], {"due_at": later.isoformat()})
    after = events(read_feed(client, feed))
    assert list(after) == [uid(mine)]
    assert sequence(after[uid(mine)]) == changed["version"] > sequence(before)
    assert after[uid(mine)].decoded("DTSTART") == later
    assert after[uid(mine)].decoded("DTSTAMP") >= before.decoded("DTSTAMP")


@pytest.mark.parametrize("how", ["completed", "cancelled", "handed over"])
def test_a_step_that_leaves_the_owner_is_cancelled_for_30_days_then_gone(
    client: TestClient,
    admin_headers: Headers,
    write_headers: Headers,
    clock: Callable[[datetime], None],
    how: str,
) -> None:
    put_owner(client, admin_headers)
    put_owner(client, admin_headers, "greenhouse:77")
    feed = create_feed(client, admin_headers)
    theirs = create_feed(client, admin_headers, "greenhouse:77")
    mine = step(client, write_headers)
    if how == "completed":
        left = complete(client, write_headers, mine["id"], outcome="Sent")
    elif how == "cancelled":
        response = client.post(
            f"/v1/commitments/{mine['id']}/cancel",
            json={"reason": "Candidate withdrew"},
            headers=write_headers,
        )
        assert response.status_code == 200, response.text
        left = response.json()
    else:
        left = patch_commitment(
            client, write_headers, mine["id"], {"owner": {"id": "greenhouse:77", "role": "hr"}}
        )
    moment = now()
    event = events(read_feed(client, feed))[uid(mine)]
    assert str(event["STATUS"]) == "CANCELLED"
    assert sequence(event) == left["version"] > mine["version"]
    if how == "handed over":
        # The new holder's feed shows it open, under the same UID.
        new = events(read_feed(client, theirs))[uid(mine)]
        assert str(new["STATUS"]) == "CONFIRMED"
        assert sequence(new) == left["version"]

    clock(moment + days(29))
    assert uid(mine) in events(read_feed(client, feed))
    clock(moment + days(31))
    assert events(read_feed(client, feed)) == {}


def test_a_step_handed_back_is_open_again_in_the_first_owners_feed(
    client: TestClient, admin_headers: Headers, write_headers: Headers
) -> None:
    put_owner(client, admin_headers)
    feed = create_feed(client, admin_headers)
    mine = step(client, write_headers)
    away = {"owner": {"id": "greenhouse:77", "role": "hr"}}
    patch_commitment(client, write_headers, mine["id"], away)
    back = {"owner": {"id": OWNER, "role": "recruiter"}}
    returned = patch_commitment(client, write_headers, mine["id"], back)
    event = events(read_feed(client, feed))[uid(mine)]
    assert str(event["STATUS"]) == "CONFIRMED"
    assert sequence(event) == returned["version"] == 3


def test_a_step_past_due_is_overdue_at_the_time_of_the_request(
    client: TestClient,
    admin_headers: Headers,
    write_headers: Headers,
    clock: Callable[[datetime], None],
) -> None:
    put_owner(client, admin_headers)
    feed = create_feed(client, admin_headers)
    mine = step(client, write_headers, due_at=now() + days(1), action="Call back")
    assert str(events(read_feed(client, feed))[uid(mine)]["SUMMARY"]).startswith("Due: ")
    clock(now() + days(2))
    assert str(events(read_feed(client, feed))[uid(mine)]["SUMMARY"]).startswith("Overdue: ")


def test_etag_is_strong_and_if_none_match_answers_304_until_a_step_changes(
    client: TestClient, admin_headers: Headers, write_headers: Headers
) -> None:
    put_owner(client, admin_headers)
    feed = create_feed(client, admin_headers)
    mine = step(client, write_headers)
    first = client.get(feed_path(feed))
    tag = first.headers["etag"]
    assert tag.startswith('"')
    assert tag.endswith('"')
    again = client.get(feed_path(feed))
    assert again.headers["etag"] == tag
    assert again.content == first.content
    cached = client.get(feed_path(feed), headers={"If-None-Match": tag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == tag
    assert cached.headers["cache-control"] == "private, no-cache"
    other = client.get(feed_path(feed), headers={"If-None-Match": '"other", W/' + tag})
    assert other.status_code == 304
    patch_commitment(client, write_headers, mine["id"], {"action": "Call back today"})
    changed = client.get(feed_path(feed), headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag


def test_revoked_feeds_unknown_tokens_and_deleted_owners_answer_404(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    put_owner(client, admin_headers)
    revoked = create_feed(client, admin_headers)
    kept = create_feed(client, admin_headers)
    assert revoked["url"] != kept["url"]
    assert client.delete(f"/v1/feeds/{revoked['id']}", headers=admin_headers).status_code == 204
    assert_problem(client.get(feed_path(revoked)), 404)
    assert_problem(client.delete(f"/v1/feeds/{revoked['id']}", headers=admin_headers), 404)
    assert client.get(feed_path(kept)).status_code == 200
    assert_problem(client.get("/ics/" + "A" * 43 + ".ics"), 404)
    assert_problem(client.get("/ics/short.ics"), 404)
    listed = client.get(f"/v1/owners/{OWNER}/feeds", headers=read_headers).json()["items"]
    assert [f["id"] for f in listed] == [kept["id"]]

    assert client.delete(f"/v1/owners/{OWNER}", headers=admin_headers).status_code == 204
    assert_problem(client.get(feed_path(kept)), 404)
    # The same id again is a new owner: the old feed does not come back.
    put_owner(client, admin_headers)
    assert_problem(client.get(feed_path(kept)), 404)
    assert client.get(f"/v1/owners/{OWNER}/feeds", headers=read_headers).json()["items"] == []


def test_feeds_are_made_and_revoked_by_admins_and_listed_without_tokens(
    client: TestClient,
    admin_headers: Headers,
    write_headers: Headers,
    read_headers: Headers,
) -> None:
    put_owner(client, admin_headers)
    assert_problem(client.post(f"/v1/owners/{OWNER}/feeds", headers=write_headers), 403)
    assert_problem(client.post(f"/v1/owners/{OWNER}/feeds"), 401)
    assert_problem(client.post("/v1/owners/nobody/feeds", headers=admin_headers), 404)
    assert_problem(client.get("/v1/owners/nobody/feeds", headers=read_headers), 404)
    made = [create_feed(client, admin_headers) for _ in range(3)]
    listed = client.get(f"/v1/owners/{OWNER}/feeds", headers=read_headers)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [f["id"] for f in items] == [f["id"] for f in made]
    assert all(set(f) == {"id", "owner_id", "created_at"} for f in items)
    token = made[0]["url"].rsplit("/", 1)[1].removesuffix(".ics")
    assert token not in listed.text
    paged = client.get(f"/v1/owners/{OWNER}/feeds?limit=2", headers=read_headers).json()
    rest = client.get(
        f"/v1/owners/{OWNER}/feeds?limit=2&cursor={paged['next_cursor']}", headers=read_headers
    ).json()
    assert [f["id"] for f in paged["items"] + rest["items"]] == [f["id"] for f in made]
    assert rest["next_cursor"] is None
    header, rows = get_csv(client, read_headers, f"/v1/owners/{OWNER}/feeds")
    assert header == ["id", "owner_id", "created_at"]
    assert [r["id"] for r in rows] == [f["id"] for f in made]
    assert_problem(client.delete(f"/v1/feeds/{made[0]['id']}", headers=write_headers), 403)


def test_a_long_action_in_any_script_is_folded_and_read_back_whole(
    client: TestClient, admin_headers: Headers, write_headers: Headers
) -> None:
    put_owner(client, admin_headers)
    feed = create_feed(client, admin_headers)
    action = "Rappeler; à 9h, puis écrire — 候補者に電話する 😀, " * 6
    mine = step(client, write_headers, action=action.strip())
    response = client.get(feed_path(feed))
    for line in response.content.split(b"\r\n"):
        assert len(line) <= 75
        line.decode()
    event = events(icalendar.Calendar.from_ical(response.content))[uid(mine)]
    assert str(event["SUMMARY"]) == f"Due: {action.strip()} — Casey Candidate"


def test_feed_tokens_never_reach_the_logs(
    client: TestClient, admin_headers: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    put_owner(client, admin_headers)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    caplog.set_level(logging.DEBUG, logger="nextstep")
    try:
        feed = create_feed(client, admin_headers)
        token = feed["url"].rsplit("/", 1)[1].removesuffix(".ics")
        caplog.clear()
        client.get(feed_path(feed))
        client.get("/ics/" + "B" * 43 + ".ics")
    finally:
        logging.getLogger().removeHandler(handler)
    access = [r for r in caplog.records if r.name == "nextstep.access"]
    assert [getattr(r, "path", None) for r in access] == ["/ics/[redacted]", "/ics/[redacted]"]
    lines = [line for line in stream.getvalue().splitlines() if '"logger": "httpx' not in line]
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    for line in lines + [f"{r.getMessage()} {r.__dict__}" for r in records]:
        assert token not in line
        assert "B" * 43 not in line


def test_cli_prints_a_new_feed_url_once(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    from typer.testing import CliRunner

    from app.cli import cli
    from app.errors import NotFound

    put_owner(client, admin_headers, name="Rita Recruiter")
    printed = CliRunner().invoke(cli, ["owners", "feed", OWNER])
    assert printed.exit_code == 0, printed.output
    url = printed.output.splitlines()[-1]
    assert url.startswith("http://127.0.0.1:8000/ics/")  # where `nextstep serve` listens
    calendar = read_feed(client, {"url": url})
    assert str(calendar["X-WR-CALNAME"]) == "Rita Recruiter"
    listed = client.get(f"/v1/owners/{OWNER}/feeds", headers=read_headers).json()["items"]
    assert len(listed) == 1
    assert url not in str(listed)
    unknown = CliRunner().invoke(cli, ["owners", "feed", "nobody"])
    assert isinstance(unknown.exception, NotFound)


ROOT = Path(__file__).resolve().parents[1]
ICAL_JS = ROOT / "node_modules" / "ical.js"


def test_mozillas_ical_js_reads_the_same_events(
    client: TestClient, admin_headers: Headers, write_headers: Headers
) -> None:
    node = shutil.which("node")
    if node is None or not ICAL_JS.exists():
        message = "node or ical.js is missing: run `npm ci`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    put_owner(client, admin_headers, name="Rita; Recruiter, Ltd")
    feed = create_feed(client, admin_headers)
    due = (now() + days(2)).replace(microsecond=0)
    action = "Rappeler; à 9h, puis écrire\\ — 候補者に電話する 😀, " * 5
    mine = step(client, write_headers, due_at=due, action=action.strip(), channel="call")
    gone = step(client, write_headers, action="Send the offer")
    done = complete(client, write_headers, gone["id"])
    body = client.get(feed_path(feed)).content
    parsed = subprocess.run(
        [node, str(ROOT / "tests" / "js" / "parse_ics.mjs")],
        input=body,
        capture_output=True,
        timeout=60,
        check=True,
    )
    read = json.loads(parsed.stdout)
    assert read["calname"] == "Rita; Recruiter, Ltd"
    assert read["method"] == "PUBLISH"
    by_uid = {e["uid"]: e for e in read["events"]}
    assert set(by_uid) == {uid(mine), uid(gone)}
    event = by_uid[uid(mine)]
    assert event["summary"] == f"Due: {action.strip()} — Casey Candidate"
    assert event["status"] == "CONFIRMED"
    assert event["sequence"] == 1
    assert event["start"] == due.isoformat().replace("+00:00", ".000Z")
    assert event["start_zone"] == "UTC"
    assert event["duration"] == "PT15M"
    assert "Channel: call" in event["description"]
    assert by_uid[uid(gone)]["status"] == "CANCELLED"
    assert by_uid[uid(gone)]["sequence"] == done["version"]
