"""Calendars over HTTP: golden due times, every bad input a 422 with its loc, ETags, the default."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import PROBLEM, Headers, Json

WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
NEW_YORK: Json = {
    "name": "New York office",
    "time_zone": "America/New_York",
    "hours": WEEKDAYS_9_TO_5,
    "holidays": {"country": "US", "subdivision": None},
    "closed_dates": ["2026-11-27"],
}
BERLIN: Json = {"name": "Berlin", "time_zone": "Europe/Berlin", "hours": WEEKDAYS_9_TO_5}


def create_calendar(client: TestClient, headers: Headers, **overrides: Any) -> Json:
    response = client.post("/v1/calendars", json={**NEW_YORK, **overrides}, headers=headers)
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def _compute(
    client: TestClient, headers: Headers, calendar_id: str, start: str, rule: Json
) -> Json:
    response = client.post(
        f"/v1/calendars/{calendar_id}/compute",
        json={"start": start, "rule": rule},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


@pytest.mark.parametrize(
    ("rule", "due_at"),
    [
        ({"business_days": 3}, "2026-11-25T22:00:00Z"),
        ({"business_days": 4}, "2026-11-30T22:00:00Z"),
        ({"calendar_days": 3, "at": "same_time"}, "2026-11-23T15:00:00Z"),
        ({"business_hours": 8}, "2026-11-23T15:00:00Z"),
    ],
)
def test_compute_gives_the_golden_due_times(
    client: TestClient, admin_headers: Headers, read_headers: Headers, rule: Json, due_at: str
) -> None:
    calendar = create_calendar(client, admin_headers)
    answer = _compute(client, read_headers, calendar["id"], "2026-11-20T15:00:00Z", rule)
    assert answer["due_at"] == due_at
    assert answer["calendar"] == {
        "id": calendar["id"],
        "version": 1,
        "time_zone": "America/New_York",
    }


def test_compute_lists_the_holiday_and_the_closure_it_skipped(
    client: TestClient, admin_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers)
    answer = _compute(
        client, admin_headers, calendar["id"], "2026-11-20T15:00:00Z", {"business_days": 4}
    )
    assert answer["rule"] == {"business_days": 4, "at": "end_of_day"}
    assert answer["skipped"] == [
        {"date": "2026-11-26", "why": "holiday: Thanksgiving Day"},
        {"date": "2026-11-27", "why": "closed"},
    ]


def test_business_hours_cross_the_dst_change_in_berlin(
    client: TestClient, admin_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers, **BERLIN)
    answer = _compute(
        client, admin_headers, calendar["id"], "2026-03-27T16:00:00+01:00", {"business_hours": 8}
    )
    assert answer["due_at"] == "2026-03-30T14:00:00Z"


BAD_CALENDARS = [
    ({"time_zone": "EST5EDT-ish"}, ["body", "time_zone"]),
    ({"time_zone": "localtime"}, ["body", "time_zone"]),
    ({"hours": {"mon": [["09:00", "13:00"], ["12:00", "17:00"]]}}, ["body", "hours", "mon"]),
    ({"hours": {"mon": [["09:00", "09:00"]]}}, ["body", "hours", "mon"]),
    ({"hours": {"mon": [["17:00", "09:00"]]}}, ["body", "hours", "mon"]),
    ({"hours": {"mon": [["25:00", "26:00"]]}}, ["body", "hours", "mon", 0, 0]),
    ({"hours": {"mon": [["09:00"]]}}, ["body", "hours", "mon", 0]),
    ({"hours": {"someday": [["09:00", "17:00"]]}}, ["body", "hours", "someday"]),
    ({"holidays": {"country": "XX"}}, ["body", "holidays"]),
    ({"closed_dates": ["2026-02-30"]}, ["body", "closed_dates", 0]),
    ({"closed_dates": ["27/11/2026"]}, ["body", "closed_dates", 0]),
]


@pytest.mark.parametrize(("change", "loc"), BAD_CALENDARS)
@pytest.mark.one_database("the request is validated before any query")
def test_a_bad_calendar_is_a_422_naming_the_field(
    client: TestClient, admin_headers: Headers, change: Json, loc: list[Any]
) -> None:
    response = client.post("/v1/calendars", json={**NEW_YORK, **change}, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert loc in [error["loc"] for error in response.json()["errors"]]


def test_a_calendar_needs_name_zone_and_hours(client: TestClient, admin_headers: Headers) -> None:
    response = client.post("/v1/calendars", json={}, headers=admin_headers)
    assert response.status_code == 422
    locs = [error["loc"] for error in response.json()["errors"]]
    assert ["body", "name"] in locs
    assert ["body", "time_zone"] in locs
    assert ["body", "hours"] in locs


BAD_RULES = [
    ({"business_days": 0}, ["body", "rule", "business_days"]),
    ({"business_days": 61}, ["body", "rule", "business_days"]),
    ({"business_hours": 721}, ["body", "rule", "business_hours"]),
    ({"calendar_days": 366}, ["body", "rule", "calendar_days"]),
    ({"business_days": "3"}, ["body", "rule", "business_days"]),
    ({"business_days": 3, "business_hours": 8}, ["body", "rule"]),
    ({}, ["body", "rule"]),
    ({"business_days": 3, "at": "25:00"}, ["body", "rule", "at"]),
    ({"business_hours": 3, "at": "17:00"}, ["body", "rule"]),
    ({"calendar_days": 3, "at": "end_of_day"}, ["body", "rule"]),
    ({"weeks": 1}, ["body", "rule", "weeks"]),
]


@pytest.mark.parametrize(("rule", "loc"), BAD_RULES)
@pytest.mark.one_database("the request is validated before any query")
def test_a_bad_rule_is_a_422_naming_the_field(
    client: TestClient, admin_headers: Headers, rule: Json, loc: list[Any]
) -> None:
    calendar = create_calendar(client, admin_headers)
    response = client.post(
        f"/v1/calendars/{calendar['id']}/compute",
        json={"start": "2026-11-20T15:00:00Z", "rule": rule},
        headers=admin_headers,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert loc in [error["loc"] for error in response.json()["errors"]]


@pytest.mark.one_database("the request is validated before any query")
def test_compute_refuses_a_start_without_offset(client: TestClient, admin_headers: Headers) -> None:
    calendar = create_calendar(client, admin_headers)
    response = client.post(
        f"/v1/calendars/{calendar['id']}/compute",
        json={"start": "2026-11-20T15:00:00", "rule": {"business_days": 1}},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert ["body", "start"] in [error["loc"] for error in response.json()["errors"]]


def test_compute_on_a_calendar_without_hours_is_a_422(
    client: TestClient, admin_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers, hours={})
    response = client.post(
        f"/v1/calendars/{calendar['id']}/compute",
        json={"start": "2026-11-20T15:00:00Z", "rule": {"business_days": 1}},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    # calendar_days ignore hours and closures
    answer = _compute(
        client, admin_headers, calendar["id"], "2026-11-20T15:00:00Z", {"calendar_days": 1}
    )
    assert answer["due_at"] == "2026-11-21T15:00:00Z"


def test_compute_on_an_unknown_calendar_is_a_404(client: TestClient, read_headers: Headers) -> None:
    response = client.post(
        "/v1/calendars/00000000-0000-0000-0000-000000000000/compute",
        json={"start": "2026-11-20T15:00:00Z", "rule": {"business_days": 1}},
        headers=read_headers,
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_a_calendar_answers_every_day_and_its_etag(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers)
    response = client.get(f"/v1/calendars/{calendar['id']}", headers=read_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["hours"]["sat"] == []
    assert body["hours"]["mon"] == [["09:00", "17:00"]]
    assert body["is_default"] is True
    assert body["version"] == 1
    assert response.headers["etag"] == f'"{calendar["id"].replace("-", "")}-1"'


def test_patch_needs_if_match_and_refuses_a_stale_one(
    client: TestClient, admin_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers)
    url = f"/v1/calendars/{calendar['id']}"
    assert client.patch(url, json={"name": "NYC"}, headers=admin_headers).status_code == 428
    etag = client.get(url, headers=admin_headers).headers["etag"]
    changed = client.patch(url, json={"name": "NYC"}, headers={**admin_headers, "If-Match": etag})
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    assert changed.headers["etag"] != etag
    stale = client.patch(url, json={"name": "NY"}, headers={**admin_headers, "If-Match": etag})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == PROBLEM


def test_patch_validates_like_create(client: TestClient, admin_headers: Headers) -> None:
    calendar = create_calendar(client, admin_headers)
    url = f"/v1/calendars/{calendar['id']}"
    headers = {**admin_headers, "If-Match": "*"}
    response = client.patch(url, json={"time_zone": "Mars/Olympus"}, headers=headers)
    assert response.status_code == 422
    assert ["body", "time_zone"] in [e["loc"] for e in response.json()["errors"]]
    response = client.patch(url, json={"hours": None}, headers=headers)
    assert response.status_code == 422


def test_first_calendar_is_the_default_and_the_last_set_default_wins(
    client: TestClient, admin_headers: Headers
) -> None:
    first = create_calendar(client, admin_headers, name="first")
    second = create_calendar(client, admin_headers, name="second")
    assert (first["is_default"], second["is_default"]) == (True, False)
    third = create_calendar(client, admin_headers, name="third", is_default=True)
    assert third["is_default"] is True
    defaults = [
        c["name"]
        for c in client.get("/v1/calendars", headers=admin_headers).json()["items"]
        if c["is_default"]
    ]
    assert defaults == ["third"]
    url = f"/v1/calendars/{first['id']}"
    made = client.patch(url, json={"is_default": True}, headers={**admin_headers, "If-Match": "*"})
    assert made.json()["is_default"] is True
    items = client.get("/v1/calendars", headers=admin_headers).json()["items"]
    assert [c["name"] for c in items if c["is_default"]] == ["first"]
    # The default cannot be switched off: another one is made default instead.
    refused = client.patch(
        url, json={"is_default": False}, headers={**admin_headers, "If-Match": "*"}
    )
    assert refused.status_code == 409


def test_the_default_is_deletable_only_when_it_is_the_last(
    client: TestClient, admin_headers: Headers
) -> None:
    first = create_calendar(client, admin_headers, name="first")
    second = create_calendar(client, admin_headers, name="second")
    response = client.delete(
        f"/v1/calendars/{first['id']}", headers={**admin_headers, "If-Match": "*"}
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert (
        client.delete(
            f"/v1/calendars/{second['id']}", headers={**admin_headers, "If-Match": "*"}
        ).status_code
        == 204
    )
    assert (
        client.delete(
            f"/v1/calendars/{first['id']}", headers={**admin_headers, "If-Match": "*"}
        ).status_code
        == 204
    )
    assert client.get("/v1/calendars", headers=admin_headers).json()["items"] == []


def test_a_calendar_in_use_cannot_be_deleted(client: TestClient, admin_headers: Headers) -> None:
    create_calendar(client, admin_headers, name="default")
    team = create_calendar(client, admin_headers, name="team")
    url = "/v1/owners/hr-1/calendar"
    assert client.put(url, json={"calendar_id": team["id"]}, headers=admin_headers).json() == {
        "owner_id": "hr-1",
        "calendar_id": team["id"],
    }
    assert (
        client.delete(
            f"/v1/calendars/{team['id']}", headers={**admin_headers, "If-Match": "*"}
        ).status_code
        == 409
    )
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 204
    policy = client.post(
        "/v1/deadline-policies",
        json={"name": "p", "calendar_id": team["id"], "due_rule": {"business_days": 2}},
        headers=admin_headers,
    ).json()
    assert (
        client.delete(
            f"/v1/calendars/{team['id']}", headers={**admin_headers, "If-Match": "*"}
        ).status_code
        == 409
    )
    client.delete(
        f"/v1/deadline-policies/{policy['id']}", headers={**admin_headers, "If-Match": "*"}
    )
    assert (
        client.delete(
            f"/v1/calendars/{team['id']}", headers={**admin_headers, "If-Match": "*"}
        ).status_code
        == 204
    )


def test_the_last_calendar_stays_while_a_policy_counts_on_it(
    client: TestClient, admin_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers)
    policy = client.post(
        "/v1/deadline-policies",
        json={"name": "p", "due_rule": {"business_days": 2}},
        headers=admin_headers,
    ).json()
    url = f"/v1/calendars/{calendar['id']}"
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 409
    client.delete(
        f"/v1/deadline-policies/{policy['id']}", headers={**admin_headers, "If-Match": "*"}
    )
    assert client.delete(url, headers={**admin_headers, "If-Match": "*"}).status_code == 204


def test_delete_with_a_stale_if_match_is_a_412(client: TestClient, admin_headers: Headers) -> None:
    calendar = create_calendar(client, admin_headers)
    response = client.delete(
        f"/v1/calendars/{calendar['id']}", headers={**admin_headers, "If-Match": '"nope"'}
    )
    assert response.status_code == 412


def test_owner_calendar_refuses_an_unknown_calendar(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    response = client.put(
        "/v1/owners/hr-1/calendar",
        json={"calendar_id": "00000000-0000-0000-0000-000000000000"},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert ["body", "calendar_id"] in [e["loc"] for e in response.json()["errors"]]
    assert client.get("/v1/owners/hr-1/calendar", headers=read_headers).status_code == 404


@pytest.mark.one_database("the key and scope are checked before any query")
def test_writing_calendars_needs_admin(
    client: TestClient, write_headers: Headers, read_headers: Headers
) -> None:
    assert client.post("/v1/calendars", json=NEW_YORK, headers=write_headers).status_code == 403
    assert client.get("/v1/calendars", headers=read_headers).status_code == 200
    assert client.get("/v1/calendars").status_code == 401


def test_calendars_list_as_csv_and_in_pages(client: TestClient, admin_headers: Headers) -> None:
    for name in ("a", "b", "c"):
        create_calendar(client, admin_headers, name=name)
    page = client.get("/v1/calendars?limit=2", headers=admin_headers).json()
    assert [c["name"] for c in page["items"]] == ["a", "b"]
    rest = client.get(f"/v1/calendars?cursor={page['next_cursor']}", headers=admin_headers).json()
    assert [c["name"] for c in rest["items"]] == ["c"]
    assert rest["next_cursor"] is None
    csv = client.get("/v1/calendars", headers={**admin_headers, "Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("id,name,time_zone,hours")
    assert len(lines) == 4


def test_cli_computes_a_due_time_and_lists_policies(
    client: TestClient, admin_headers: Headers
) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    calendar = create_calendar(client, admin_headers)
    printed = CliRunner().invoke(
        cli,
        [
            "calendars",
            "compute",
            "--calendar",
            calendar["id"],
            "--start",
            "2026-11-20T15:00:00Z",
            "--rule",
            '{"business_days": 4}',
        ],
    )
    assert printed.exit_code == 0, printed.output
    assert "due at   2026-11-30T22:00:00Z" in printed.output
    assert "2026-11-26  holiday: Thanksgiving Day" in printed.output
    assert "2026-11-27  closed" in printed.output
    bad = CliRunner().invoke(
        cli,
        [
            "calendars",
            "compute",
            "--calendar",
            calendar["id"],
            "--start",
            "2026-11-20T15:00:00",
            "--rule",
            '{"business_days": 99}',
        ],
    )
    assert bad.exit_code != 0
    client.post(
        "/v1/deadline-policies",
        json={"name": "First interview", "due_rule": {"business_days": 3}},
        headers=admin_headers,
    )
    listed = CliRunner().invoke(cli, ["policies", "list"])
    assert listed.exit_code == 0, listed.output
    assert "First interview" in listed.output
    assert '{"business_days": 3, "at": "end_of_day"}' in listed.output
