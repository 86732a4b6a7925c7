"""The owner directory over HTTP: create and replace, ETags, validation with its loc, lists
and CSV, scopes, and the calendar setting shared with /v1/owners/{id}/calendar."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Headers, Json, all_pages, assert_problem, get_csv
from tests.test_calendars import create_calendar


def put_owner(client: TestClient, headers: Headers, owner_id: str, **body: Any) -> Any:
    return client.put(f"/v1/owners/{owner_id}", json=body, headers=headers)


def test_put_creates_an_owner_with_defaults_then_replaces_it(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    created = put_owner(
        client, admin_headers, "greenhouse:4080", name="Rita Recruiter", email="rita@acme.test"
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/owners/greenhouse:4080"
    body = created.json()
    assert body["id"] == "greenhouse:4080"
    assert body["name"] == "Rita Recruiter"
    assert body["email"] == "rita@acme.test"
    assert body["calendar_id"] is None
    assert body["email_reminders"] is True
    assert body["digest"] == {"enabled": False, "at": "07:00"}
    assert body["learned_from"] == "api"
    assert body["version"] == 1
    assert body["created_at"].endswith("Z")

    replaced = put_owner(client, admin_headers, "greenhouse:4080", name="Rita R.")
    assert replaced.status_code == 200, replaced.text
    again = replaced.json()
    # A field left out takes its default: the e-mail is gone.
    assert (again["name"], again["email"], again["version"]) == ("Rita R.", None, 2)
    assert again["created_at"] == body["created_at"]
    got = client.get("/v1/owners/greenhouse:4080", headers=read_headers)
    assert got.status_code == 200
    assert got.json() == again
    assert got.headers["etag"] == replaced.headers["etag"] != created.headers["etag"]


def test_patch_needs_if_match_and_refuses_a_stale_one(
    client: TestClient, admin_headers: Headers
) -> None:
    created = put_owner(client, admin_headers, "hr-team", name="HR")
    tag = created.headers["etag"]
    url = "/v1/owners/hr-team"
    body = {"digest": {"enabled": True}, "email": "hr@acme.test"}
    assert_problem(client.patch(url, json=body, headers=admin_headers), 428)
    changed = client.patch(url, json=body, headers={**admin_headers, "If-Match": tag})
    assert changed.status_code == 200, changed.text
    owner = changed.json()
    assert owner["digest"] == {"enabled": True, "at": "07:00"}
    assert (owner["name"], owner["email"], owner["version"]) == ("HR", "hr@acme.test", 2)
    stale = client.patch(url, json={"name": "x"}, headers={**admin_headers, "If-Match": tag})
    assert_problem(stale, 412)
    assert client.get(url, headers=admin_headers).json()["name"] == "HR"
    missing = "/v1/owners/nobody"
    assert_problem(client.patch(missing, json=body, headers=admin_headers), 404)


def test_put_with_a_stale_if_match_changes_nothing(
    client: TestClient, admin_headers: Headers
) -> None:
    put_owner(client, admin_headers, "hr-team", name="HR")
    stale = client.put(
        "/v1/owners/hr-team", json={"name": "x"}, headers={**admin_headers, "If-Match": '"old"'}
    )
    assert_problem(stale, 412)
    # If-Match on an owner that does not exist yet fails too (RFC 9110, 13.1.1).
    fresh = client.put(
        "/v1/owners/new-one", json={}, headers={**admin_headers, "If-Match": '"any"'}
    )
    assert_problem(fresh, 412)
    assert client.get("/v1/owners/hr-team", headers=admin_headers).json()["version"] == 1
    assert client.get("/v1/owners/new-one", headers=admin_headers).status_code == 404


def test_delete_removes_the_owner_and_its_calendar_setting(
    client: TestClient, admin_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers)
    put_owner(client, admin_headers, "hr-team", calendar_id=calendar["id"])
    assert client.delete("/v1/owners/hr-team", headers=admin_headers).status_code == 204
    assert_problem(client.get("/v1/owners/hr-team", headers=admin_headers), 404)
    assert_problem(client.get("/v1/owners/hr-team/calendar", headers=admin_headers), 404)
    assert_problem(client.delete("/v1/owners/hr-team", headers=admin_headers), 404)
    # Nobody works by the calendar any more: it can go.
    other = create_calendar(client, admin_headers, name="other", is_default=True)
    assert other["is_default"]
    assert (
        client.delete(
            f"/v1/calendars/{calendar['id']}", headers={**admin_headers, "If-Match": "*"}
        ).status_code
        == 204
    )


@pytest.mark.parametrize(
    ("email", "why"),
    [
        ("Rita <rita@acme.test>", "display name"),
        ("rita@acme.test\r\nBcc: x@evil.test", "line break"),
        ("rita@acme.test\n", "line break"),
        ("rita", "addr-spec"),
        ("rita@@acme.test", "addr-spec"),
        ("rita..r@acme.test", "addr-spec"),
        ("rita@acme.test.", "addr-spec"),
        ("rité@acme.test", "addr-spec"),
        ("rita @acme.test", "addr-spec"),
        ("", "addr-spec"),
    ],
)
def test_an_address_that_is_not_an_addr_spec_is_a_422_naming_the_field(
    client: TestClient, admin_headers: Headers, email: str, why: str
) -> None:
    response = put_owner(client, admin_headers, "hr-team", email=email)
    body = assert_problem(response, 422, field="body.email")
    assert any(why in e["msg"] for e in body["errors"]), body
    patch = client.patch(
        "/v1/owners/hr-team", json={"email": email}, headers={**admin_headers, "If-Match": "*"}
    )
    assert patch.status_code in (404, 422)
    assert client.get("/v1/owners/hr-team", headers=admin_headers).status_code == 404


@pytest.mark.parametrize(
    "email",
    [
        "rita@acme.test",
        "rita.r+owners@mail.acme.test",
        '"rita r"@acme.test',
        "r@[192.0.2.1]",
        '"<rita>"@acme.test',
    ],
)
def test_addr_specs_are_taken_as_sent(
    client: TestClient, admin_headers: Headers, email: str
) -> None:
    response = put_owner(client, admin_headers, "hr-team", email=email)
    assert response.status_code == 201, response.text
    assert response.json()["email"] == email


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"digest": {"enabled": True, "at": "7:00"}}, "body.digest.at"),
        ({"digest": {"at": "24:00"}}, "body.digest.at"),
        ({"email_reminders": "yes"}, "body.email_reminders"),
        ({"name": "   "}, "body.name"),
        ({"calendar_id": "00000000-0000-0000-0000-000000000000"}, "body.calendar_id"),
        ({"learned_from": "greenhouse"}, "body.learned_from"),
        ({"digest": None}, "body.digest"),
    ],
)
def test_bad_fields_are_422_with_their_loc(
    client: TestClient, admin_headers: Headers, body: Json, field: str
) -> None:
    assert_problem(put_owner(client, admin_headers, "hr-team", **body), 422, field=field)
    assert client.get("/v1/owners/hr-team", headers=admin_headers).status_code == 404


@pytest.mark.parametrize(
    "owner_id", ["has space", "-lead", "x" * 201, "émile", "a,b", "%2E%2E", "a%00b"]
)
def test_an_owner_id_outside_the_allowed_characters_is_a_422(
    client: TestClient, admin_headers: Headers, owner_id: str
) -> None:
    response = client.put(f"/v1/owners/{owner_id}", json={}, headers=admin_headers)
    assert_problem(response, 422, field="path.owner_id")


def test_an_owner_id_cannot_hold_a_slash(client: TestClient, admin_headers: Headers) -> None:
    # An escaped slash is a slash by the time routes are matched: no owner route matches.
    response = client.put("/v1/owners/a%2Fb", json={}, headers=admin_headers)
    assert_problem(response, 404)
    assert client.get("/v1/owners", headers=admin_headers).json()["items"] == []


def test_owner_ids_with_colons_and_at_signs_work_in_every_route(
    client: TestClient, admin_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers)
    for owner_id in ("greenhouse:4080", "lever:8a3b-11", "rita@acme.test", "team_a.b~c+d"):
        assert put_owner(client, admin_headers, owner_id).status_code == 201
        url = f"/v1/owners/{owner_id}"
        assert client.get(url, headers=admin_headers).json()["id"] == owner_id
        set_calendar = client.put(
            f"{url}/calendar", json={"calendar_id": calendar["id"]}, headers=admin_headers
        )
        assert set_calendar.json() == {"owner_id": owner_id, "calendar_id": calendar["id"]}


def test_the_calendar_route_and_calendar_id_are_one_setting(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers)
    other = create_calendar(client, admin_headers, name="other")
    # Set through the calendar route: an owner not in the directory yet is added.
    url = "/v1/owners/hr-1/calendar"
    assert (
        client.put(url, json={"calendar_id": calendar["id"]}, headers=admin_headers).status_code
        == 200
    )
    owner = client.get("/v1/owners/hr-1", headers=read_headers).json()
    assert (owner["calendar_id"], owner["learned_from"], owner["version"]) == (
        calendar["id"],
        "api",
        1,
    )
    # Set through the owner: the calendar route says the same.
    tag = client.get("/v1/owners/hr-1", headers=read_headers).headers["etag"]
    client.patch(
        "/v1/owners/hr-1",
        json={"calendar_id": other["id"]},
        headers={**admin_headers, "If-Match": tag},
    )
    assert client.get(url, headers=read_headers).json()["calendar_id"] == other["id"]
    assert (
        client.delete(
            f"/v1/calendars/{other['id']}", headers={**admin_headers, "If-Match": "*"}
        ).status_code
        == 409
    )
    # Removed through the calendar route: the owner stays, without a calendar.
    assert client.delete(url, headers=admin_headers).status_code == 204
    owner = client.get("/v1/owners/hr-1", headers=read_headers).json()
    assert (owner["calendar_id"], owner["version"]) == (None, 3)
    assert (
        client.delete(
            f"/v1/calendars/{other['id']}", headers={**admin_headers, "If-Match": "*"}
        ).status_code
        == 204
    )


def test_list_pages_by_id_with_filters_carried_by_the_cursor(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    calendar = create_calendar(client, admin_headers)
    ids = ["hr-team", "greenhouse:2", "greenhouse:10", "a_b", "Zed", "hrs"]
    for n, owner_id in enumerate(ids):
        put_owner(
            client,
            admin_headers,
            owner_id,
            email=f"Person{n}@Acme.test",
            calendar_id=calendar["id"] if n % 2 == 0 else None,
        )
    pages = all_pages(client, read_headers, "/v1/owners", limit=2)
    assert [len(p) for p in pages] == [2, 2, 2]
    # Byte order on both databases.
    assert [o["id"] for p in pages for o in p] == sorted(ids)
    with_calendar = all_pages(
        client, read_headers, "/v1/owners", limit=1, calendar_id=calendar["id"]
    )
    assert sorted(o["id"] for p in with_calendar for o in p) == sorted(ids[0::2])
    by_email = client.get("/v1/owners", params={"email": "person1@acme.TEST"}, headers=read_headers)
    assert [o["id"] for o in by_email.json()["items"]] == ["greenhouse:2"]
    api = client.get("/v1/owners", params={"learned_from": "greenhouse"}, headers=read_headers)
    assert api.json() == {"items": [], "next_cursor": None}
    assert_problem(
        client.get("/v1/owners", params={"limit": 501}, headers=read_headers), 422, field="limit"
    )
    assert_problem(
        client.get("/v1/owners", params={"cursor": "nonsense"}, headers=read_headers),
        422,
        field="cursor",
    )


def test_csv_lists_every_owner_with_its_digest_spread_out(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    put_owner(client, admin_headers, "hr-team", name="=HYPERLINK()", digest={"enabled": True})
    put_owner(client, admin_headers, "greenhouse:1", email="a@acme.test")
    header, rows = get_csv(client, read_headers, "/v1/owners")
    assert header[0] == "id"
    assert {"digest_enabled", "digest_at", "learned_from", "email_reminders"} <= set(header)
    assert [r["id"] for r in rows] == ["greenhouse:1", "hr-team"]
    assert rows[1]["name"] == "'=HYPERLINK()"
    assert (rows[1]["digest_enabled"], rows[1]["digest_at"]) == ("True", "07:00")
    assert rows[0]["email"] == "a@acme.test"
    _header, filtered = get_csv(client, read_headers, "/v1/owners", email="A@acme.test")
    assert [r["id"] for r in filtered] == ["greenhouse:1"]


def test_reading_needs_read_and_writing_needs_admin(
    client: TestClient, admin_headers: Headers, write_headers: Headers, read_headers: Headers
) -> None:
    assert_problem(put_owner(client, write_headers, "hr-team"), 403)
    assert_problem(client.get("/v1/owners"), 401)
    assert put_owner(client, admin_headers, "hr-team").status_code == 201
    assert client.get("/v1/owners/hr-team", headers=read_headers).status_code == 200
    tag = client.get("/v1/owners/hr-team", headers=read_headers).headers["etag"]
    headers = {**write_headers, "If-Match": tag}
    assert_problem(client.patch("/v1/owners/hr-team", json={}, headers=headers), 403)
    assert_problem(client.delete("/v1/owners/hr-team", headers=write_headers), 403)


def test_cli_sets_and_lists_owners(
    client: TestClient, admin_headers: Headers, read_headers: Headers
) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    runner = CliRunner()
    created = runner.invoke(
        cli,
        ["owners", "set", "greenhouse:4080", "--email", "rita@acme.test", "--name", "Rita R"],
    )
    assert created.exit_code == 0, created.output
    # Only the fields given change.
    changed = runner.invoke(
        cli, ["owners", "set", "greenhouse:4080", "--digest", "--digest-at", "08:30"]
    )
    assert changed.exit_code == 0, changed.output
    owner = client.get("/v1/owners/greenhouse:4080", headers=read_headers).json()
    assert (owner["name"], owner["email"], owner["digest"], owner["version"]) == (
        "Rita R",
        "rita@acme.test",
        {"enabled": True, "at": "08:30"},
        2,
    )
    bad = runner.invoke(cli, ["owners", "set", "hr-team", "--email", "Rita <rita@acme.test>"])
    assert bad.exit_code == 2
    assert "--email" in bad.output
    assert "display name" in bad.output
    assert runner.invoke(cli, ["owners", "set", "has space"]).exit_code == 2
    assert client.get("/v1/owners", headers=read_headers).json()["items"][0]["id"] == (
        "greenhouse:4080"
    )
    listed = runner.invoke(cli, ["owners", "list"])
    assert listed.exit_code == 0, listed.output
    assert "greenhouse:4080" in listed.output
    assert "rita@acme.test" in listed.output
    assert "1 owners" in listed.output
    as_csv = runner.invoke(cli, ["owners", "list", "--format", "csv"])
    assert as_csv.output.splitlines()[0].startswith("id,name,email,calendar_id")
