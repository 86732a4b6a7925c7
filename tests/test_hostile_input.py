"""Input from outside that once got a 500, slipped through, or was taken silently: each is
answered plainly now, and leaves nothing half done."""

import base64
import csv
import gzip
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from app.jsonbody import MAX_DEPTH
from tests.conftest import WEBHOOK_SECRETS
from tests.factories import (
    Headers,
    assert_problem,
    create_interview,
    create_step,
    days,
    get_csv,
    interview_body,
    iso,
    now,
    overdue,
    step_body,
)
from tests.signing import ashby_headers, event_body, greenhouse_headers, standard_headers
from tests.test_events import completed, post

SECRET = WEBHOOK_SECRETS["acme-ats"][0]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def deliveries(client: TestClient, headers: Headers, **params: str) -> list[dict[str, Any]]:
    response = client.get("/v1/deliveries", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


# --- a body nested too deep ------------------------------------------------------------------


def test_signed_event_nested_too_deep_is_422_and_stored_rejected(
    client: TestClient, admin_headers: Headers
) -> None:
    body = (
        '{"type": "interview.completed", "occurred_at": "2026-11-20T15:00:00Z", "data": '
        + nested(10_000)
        + "}"
    ).encode()
    problem = assert_problem(post(client, body), 422)
    assert f"deeper than {MAX_DEPTH} levels" in problem["detail"]
    (stored,) = deliveries(client, admin_headers)
    assert stored["result"] == "rejected"
    assert f"deeper than {MAX_DEPTH} levels" in stored["error"]


def test_unsigned_lever_body_nested_too_deep_is_422_and_not_stored(
    client: TestClient, admin_headers: Headers
) -> None:
    body = ('{"token": "t", "data": ' + nested(10_000) + "}").encode()
    response = client.post(
        "/v1/webhooks/lever", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)
    assert deliveries(client, admin_headers) == []


@pytest.mark.parametrize("vendor", ["greenhouse", "ashby"])
def test_signed_vendor_body_nested_too_deep_is_422_and_stored_rejected(
    client: TestClient, admin_headers: Headers, vendor: str
) -> None:
    body = ('{"action": "x", "payload": ' + nested(10_000) + "}").encode()
    secret = WEBHOOK_SECRETS[vendor][0]
    headers = (
        greenhouse_headers(body, secret) if vendor == "greenhouse" else ashby_headers(body, secret)
    )
    assert_problem(client.post(f"/v1/webhooks/{vendor}", content=body, headers=headers), 422)
    (stored,) = deliveries(client, admin_headers)
    assert stored["result"] == "rejected"


@pytest.mark.one_database("the body is refused before it is parsed")
def test_rest_body_nested_too_deep_is_422(client: TestClient, write_headers: Headers) -> None:
    body = '{"candidate": ' + nested(MAX_DEPTH + 1) + "}"
    response = client.post(
        "/v1/interviews",
        content=body,
        headers={**write_headers, "content-type": "application/json"},
    )
    problem = assert_problem(response, 422)
    assert f"deeper than {MAX_DEPTH} levels" in problem["detail"]


def test_brackets_inside_text_do_not_count_as_nesting(
    client: TestClient, write_headers: Headers
) -> None:
    action = nested(200)[:400]  # text, not structure
    step = create_step(client, write_headers, due_at=now() + days(1), action=action)
    assert step["action"] == action


# --- a crafted cursor ------------------------------------------------------------------------


def crafted(after: list[str], params: dict[str, Any]) -> str:
    raw = json.dumps({"a": after, "p": params}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


FAR = "9999-12-31T23:59:59-12:00"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/commitments",
        "/v1/commitments/overdue",
        "/v1/interviews",
        "/v1/interviews/missing-next-step",
        "/v1/deliveries",
    ],
)
def test_cursor_with_an_instant_beyond_utc_is_422(
    client: TestClient, admin_headers: Headers, path: str
) -> None:
    cursor = crafted([FAR, "00000000-0000-0000-0000-000000000000"], {})
    assert_problem(client.get(path, params={"cursor": cursor}, headers=admin_headers), 422)


def test_cursor_with_parameters_of_the_wrong_kind_is_422(
    client: TestClient, admin_headers: Headers
) -> None:
    for params in ({"source": ["a"]}, {"result": "lost"}, {"received_after": FAR}):
        cursor = crafted([iso(now()), "00000000-0000-0000-0000-000000000000"], params)
        response = client.get("/v1/deliveries", params={"cursor": cursor}, headers=admin_headers)
        assert_problem(response, 422)


# --- an event from the future ----------------------------------------------------------------


def test_event_from_the_future_is_refused_and_the_lists_agree(
    client: TestClient, admin_headers: Headers
) -> None:
    ended = now() + days(3 * 365)
    body = json.loads(completed(ended))
    body["data"]["next_steps"][0]["due_at"] = iso(now() - days(1))
    problem = assert_problem(post(client, json.dumps(body).encode()), 422)
    assert "cannot come from the future" in problem["detail"]
    (stored,) = deliveries(client, admin_headers)
    assert stored["result"] == "rejected"
    assert "later than the moment the event was received" in stored["error"]
    listed = client.get("/v1/commitments", params={"overdue": "true"}, headers=admin_headers)
    assert listed.json()["items"] == overdue(client, admin_headers) == []


def test_event_within_the_clock_tolerance_is_applied(client: TestClient) -> None:
    assert post(client, completed(now() + timedelta(minutes=2))).json()["status"] == "applied"


# --- CSV formula injection -------------------------------------------------------------------


FORMULAS = {
    "action": '=HYPERLINK("http://evil.example","click")',
    "owner_id": "=x",
    "owner_name": "+Name",
    "candidate_name": "@SUM(1+1)",
}


def formula_step(client: TestClient, headers: Headers) -> None:
    interview = create_interview(
        client, headers, candidate_name=FORMULAS["candidate_name"], status="completed"
    )
    step = step_body(
        due_at=now() - days(1),
        action=FORMULAS["action"],
        owner_id=FORMULAS["owner_id"],
        owner_name=FORMULAS["owner_name"],
        agreed_at=now() - days(2),
    )
    created = client.post(
        f"/v1/interviews/{interview['id']}/commitments", json=step, headers=headers
    )
    assert created.status_code == 201, created.text


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(
    client: TestClient, write_headers: Headers
) -> None:
    formula_step(client, write_headers)
    _header, (row,) = get_csv(client, write_headers, "/v1/commitments/overdue")
    assert row["action"] == "'" + FORMULAS["action"]
    assert row["owner_id"] == "'=x"
    assert row["owner_name"] == "'+Name"
    assert row["candidate_name"] == "'@SUM(1+1)"
    assert int(row["overdue_seconds"]) > 0  # numbers stay numbers
    _header, (listed,) = get_csv(client, write_headers, "/v1/commitments")
    assert listed["action"] == "'" + FORMULAS["action"]
    _header, (interview,) = get_csv(client, write_headers, "/v1/interviews")
    assert interview["candidate_name"] == "'@SUM(1+1)"
    # JSON is unchanged.
    (item,) = overdue(client, write_headers)
    assert item["action"] == FORMULAS["action"]
    assert item["candidate"]["name"] == FORMULAS["candidate_name"]


def test_cli_csv_neutralises_formulas_too(client: TestClient, write_headers: Headers) -> None:
    formula_step(client, write_headers)
    printed = CliRunner().invoke(cli, ["overdue", "--format", "csv"])
    assert printed.exit_code == 0, printed.output
    (row,) = csv.DictReader(io.StringIO(printed.output))
    assert row["action"] == "'" + FORMULAS["action"]
    assert row["candidate_name"] == "'@SUM(1+1)"


# --- deliveries as CSV -----------------------------------------------------------------------


def test_deliveries_answer_csv_with_every_row(client: TestClient, admin_headers: Headers) -> None:
    for n in range(3):
        post(client, completed(now() - days(1), interview=f"int-{n}", step=f"step-{n}"))
    header, rows = get_csv(client, admin_headers, "/v1/deliveries", limit=1)
    assert header[0] == "id"
    assert {"result", "source", "received_at", "body"} <= set(header)
    assert [r["result"] for r in rows] == ["applied"] * 3
    assert [r["id"] for r in rows] == [d["id"] for d in deliveries(client, admin_headers)]


# --- a signed body that is not UTF-8 ---------------------------------------------------------


def test_signed_body_that_is_not_utf8_is_422_and_stored_rejected(
    client: TestClient, admin_headers: Headers
) -> None:
    data = {"interview_external_id": "int-1", "direction": "inbound", "channel": "call"}
    text = event_body("candidate.contacted", now(), {**data, "note": "NOTE"}).decode()
    body = text.replace("NOTE", "Müller").encode("latin-1")  # ü is the one byte 0xFC
    headers = standard_headers(body, SECRET)
    response = client.post("/v1/events/acme-ats", content=body, headers=headers)
    problem = assert_problem(response, 422)
    assert "utf-8" in problem["detail"].lower()
    (stored,) = deliveries(client, admin_headers)
    assert stored["result"] == "rejected"


# --- a step id reused under another interview ------------------------------------------------


def test_event_moving_a_step_to_another_interview_is_rejected(
    client: TestClient, admin_headers: Headers
) -> None:
    ended = now() - days(1)
    assert (
        post(client, completed(ended, interview="A", step="shared")).json()["status"] == "applied"
    )
    assert post(client, completed(ended, interview="B", step="own")).json()["status"] == "applied"
    before = client.get("/v1/commitments", headers=admin_headers).json()["items"]
    moved = event_body(
        "next_step.agreed",
        ended + timedelta(hours=1),
        {
            "interview_external_id": "B",
            "next_step": {
                "external_id": "shared",
                "action": "Something else",
                "owner": {"id": "rec-2", "role": "recruiter"},
                "due_at": iso(ended + days(5)),
            },
        },
    )
    problem = assert_problem(post(client, moved), 422)
    assert "belongs to interview 'A'" in problem["detail"]
    assert client.get("/v1/commitments", headers=admin_headers).json()["items"] == before
    assert [d["result"] for d in deliveries(client, admin_headers)][-1] == "rejected"


def test_rest_step_with_an_id_of_another_interview_is_409(
    client: TestClient, write_headers: Headers
) -> None:
    due = now() + days(2)
    first = create_interview(
        client,
        write_headers,
        source="acme-ats",
        external_id="A",
        next_steps=[step_body(due_at=due, external_id="shared")],
    )
    second = create_interview(client, write_headers, source="acme-ats", external_id="B")
    response = client.post(
        f"/v1/interviews/{second['id']}/commitments",
        json=step_body(due_at=due, external_id="shared"),
        headers=write_headers,
    )
    problem = assert_problem(response, 409)
    assert first["id"] in problem["detail"]
    assert "'A'" in problem["detail"]


# --- timeline ties ---------------------------------------------------------------------------


def test_timeline_lists_the_interview_before_its_steps_in_the_order_agreed(
    client: TestClient, write_headers: Headers
) -> None:
    for n in range(8):  # random ids used to order these by chance
        actions = [f"Step {n}-{k}" for k in range(4)]
        interview = create_interview(
            client,
            write_headers,
            candidate_id=f"cand-{n}",
            next_steps=[step_body(due_at=now() + days(1), action=a) for a in actions],
        )
        entries = client.get(
            f"/v1/interviews/{interview['id']}/timeline", headers=write_headers
        ).json()["items"]
        assert [e["kind"] for e in entries] == ["interview_recorded"] + ["agreed"] * 4
        assert [e["changes"]["action"]["after"] for e in entries[1:]] == actions


# --- also seen -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["limit=1&limit=2", "candidate_id=c0&candidate_id=c1", "status=open&status=done"],
)
@pytest.mark.one_database("the query is refused before any query runs")
def test_a_query_parameter_given_twice_is_422(
    client: TestClient, read_headers: Headers, query: str
) -> None:
    path = "/v1/interviews" if "status=open" not in query else "/v1/commitments"
    response = client.get(f"{path}?{query}", headers=read_headers)
    name = query.split("=")[0]
    problem = assert_problem(response, 422, field=f"query.{name}")
    assert "more than once" in problem["detail"]


@pytest.mark.one_database("the key is checked before any query")
def test_a_query_parameter_given_twice_without_a_key_is_401(client: TestClient) -> None:
    response = client.get("/v1/interviews?limit=1&limit=2")
    assert_problem(response, 401)


@pytest.mark.one_database("the body is refused before it is read")
def test_a_compressed_body_is_415_and_writes_nothing(
    client: TestClient, write_headers: Headers, admin_headers: Headers
) -> None:
    body = gzip.compress(json.dumps(interview_body()).encode())
    response = client.post(
        "/v1/interviews",
        content=body,
        headers={
            **write_headers,
            "content-type": "application/json",
            "content-encoding": "gzip",
        },
    )
    assert_problem(response, 415)
    assert response.headers["accept-encoding"] == "identity"
    event = gzip.compress(completed(now()))
    headers = {**standard_headers(event, SECRET), "content-encoding": "gzip"}
    assert_problem(client.post("/v1/events/acme-ats", content=event, headers=headers), 415)
    assert client.get("/v1/interviews", headers=admin_headers).json()["items"] == []
    assert deliveries(client, admin_headers) == []


def test_event_ending_before_it_starts_is_422_as_over_rest(
    client: TestClient, admin_headers: Headers
) -> None:
    start = now() - days(1)
    body = event_body(
        "interview.scheduled",
        now(),
        {
            "external_id": "int-x",
            "candidate": {"external_id": "c"},
            "starts_at": iso(start),
            "ends_at": iso(start - timedelta(hours=1)),
        },
    )
    problem = assert_problem(post(client, body), 422)
    assert "ends_at is earlier than starts_at" in problem["detail"]
    assert client.get("/v1/interviews", headers=admin_headers).json()["items"] == []
