"""The responsiveness report: how the promises due in a window were kept, per owner."""

import csv
import io
import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import db
from app.commitments import service
from app.commitments.schemas import CommitmentPatch
from app.models import OwnerRole
from app.schemas import Owner
from app.versions import etag
from tests.factories import (
    Headers,
    Json,
    assert_problem,
    complete,
    create_interview,
    create_step,
    days,
    iso,
    now,
    patch_commitment,
)

REPORT = "/v1/reports/responsiveness"
DAY = 86_400
SVG = "{http://www.w3.org/2000/svg}"


def report(client: TestClient, headers: Headers, **params: Any) -> Json:
    query = {k: iso(v) if isinstance(v, datetime) else v for k, v in params.items()}
    response = client.get(REPORT, params=query, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return dict(response.json())


def by_group(body: Json) -> dict[str, Json]:
    """The items by group name (the steps without a job or stage under "")."""
    return {item["group"] or "": item for item in body["items"]}


def step(
    client: TestClient,
    headers: Headers,
    *,
    agreed: datetime,
    due: datetime,
    owner: str = "alice",
    role: str = "recruiter",
    done: datetime | None = None,
    **fields: Any,
) -> Json:
    created = create_step(
        client, headers, due_at=due, agreed_at=agreed, owner_id=owner, role=role, **fields
    )
    if done is not None:
        complete(client, headers, created["id"], completed_at=done)
    return created


def reassign(commitment_id: str, owner: str, at: datetime, role: str = "recruiter") -> None:
    """PATCH the owner as it would have been sent at ``at`` (the service takes the clock)."""
    patch = CommitmentPatch(owner=Owner(id=owner, role=OwnerRole(role)))
    move(commitment_id, patch, at)


def move(commitment_id: str, patch: CommitmentPatch, at: datetime) -> None:
    with db.new_session(write=True) as session:
        current = service.get_commitment(session, _uuid(commitment_id))
        service.update_commitment(session, current.id, patch, etag(current), "key:test", at)


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def test_report_counts_kept_late_open_late_per_owner_with_rates_and_percentiles(
    client: TestClient, write_headers: Headers
) -> None:
    t = now().replace(microsecond=0)
    step(client, write_headers, agreed=t - days(8), due=t - days(5), done=t - days(6))
    step(client, write_headers, agreed=t - days(8), due=t - days(4), done=t - days(2))
    step(client, write_headers, agreed=t - days(9), due=t - days(3), done=t - days(1))
    step(client, write_headers, agreed=t - days(7), due=t - days(3), owner="bob")
    step(client, write_headers, agreed=t - days(30), due=t - days(20))  # before the window
    step(client, write_headers, agreed=t - days(8), due=t - days(2), owner="cand", role="candidate")

    body = report(client, write_headers, **{"from": t - days(10), "to": t})

    assert body["from"] == iso(t - days(10))
    assert body["to"] == iso(t)
    assert body["judged_at"] == iso(t)
    assert (body["group_by"], body["owed_by"]) == ("owner", "company")
    assert [i["group"] for i in body["items"]] == ["alice", "bob"]
    alice, bob = body["items"]
    assert alice == {
        "group": "alice",
        "due": 3,
        "kept": 1,
        "late": 2,
        "open_late": 0,
        "cancelled": 0,
        "on_time_rate": 0.3333,
        # late by 2 and 2 days; waits 2, 6 and 8 days
        "lateness_p50_seconds": 2 * DAY,
        "lateness_p90_seconds": 2 * DAY,
        "wait_p50_seconds": 6 * DAY,
        "wait_p90_seconds": round(7.6 * DAY),
    }
    assert bob["open_late"] == 1
    assert bob["on_time_rate"] == 0.0
    assert bob["lateness_p50_seconds"] == 3 * DAY
    assert bob["wait_p90_seconds"] == 7 * DAY
    total = body["total"]
    assert total["group"] is None
    assert (total["due"], total["kept"], total["late"], total["open_late"]) == (4, 1, 2, 1)
    assert total["on_time_rate"] == 0.25
    # lateness 2, 2, 3 days: p90 = 2 + 0.8 * 1 day
    assert total["lateness_p90_seconds"] == round(2.8 * DAY)

    theirs = report(client, write_headers, owed_by="candidate", **{"from": t - days(10), "to": t})
    assert [(i["group"], i["open_late"]) for i in theirs["items"]] == [("cand", 1)]


def test_report_blames_the_owner_who_held_the_step_when_it_fell_due(
    client: TestClient, write_headers: Headers
) -> None:
    t = now().replace(microsecond=0)
    before = step(client, write_headers, agreed=t - days(9), due=t - days(4))
    reassign(before["id"], "bob", t - days(6))  # bob held it when it fell due
    finished = step(client, write_headers, agreed=t - days(9), due=t - days(4))
    reassign(finished["id"], "carol", t - days(5))
    complete(client, write_headers, finished["id"], completed_at=t - days(3))
    handed_back = step(client, write_headers, agreed=t - days(9), due=t - days(4))
    reassign(handed_back["id"], "dave", t - days(2))  # after the due time: alice is blamed

    body = report(client, write_headers, **{"from": t - days(10), "to": t})
    groups = by_group(body)
    assert sorted(groups) == ["alice", "bob", "carol"]
    assert groups["bob"]["open_late"] == 1
    assert groups["carol"]["late"] == 1
    assert groups["alice"]["open_late"] == 1
    # Before the reassignment to dave took effect, the report said the same.
    earlier = by_group(report(client, write_headers, **{"from": t - days(10), "to": t - days(3)}))
    assert sorted(earlier) == ["alice", "bob", "carol"]


def test_report_judges_each_step_as_it_stood_at_the_end_of_the_window(
    client: TestClient, write_headers: Headers
) -> None:
    t = now().replace(microsecond=0)
    judged = t - days(1)
    finished_later = step(client, write_headers, agreed=t - days(6), due=t - days(3))
    complete(client, write_headers, finished_later["id"], completed_at=t - days(0.5))
    moved_later = step(client, write_headers, agreed=t - days(6), due=t - days(2), owner="bob")
    patch_commitment(client, write_headers, moved_later["id"], {"due_at": iso(t + days(5))})
    moved_in = step(client, write_headers, agreed=t - days(30), due=t - days(25), owner="carol")
    move(moved_in["id"], CommitmentPatch(due_at=t - days(4)), t - days(26))
    not_yet_agreed = step(client, write_headers, agreed=t - days(0.5), due=t - days(2), owner="eve")
    cancelled_later = step(client, write_headers, agreed=t - days(6), due=t - days(3), owner="dan")
    client.post(
        f"/v1/commitments/{cancelled_later['id']}/cancel",
        json={"reason": "Role closed"},
        headers=write_headers,
    ).raise_for_status()

    body = report(client, write_headers, **{"from": t - days(10), "to": judged})
    groups = by_group(body)
    assert body["judged_at"] == iso(judged)
    # Completed after the judging instant: open and late when judged, by two days.
    assert groups["alice"]["open_late"] == 1
    assert groups["alice"]["lateness_p50_seconds"] == 2 * DAY
    # Its deadline moved out of the window after the judging instant: still counted.
    assert groups["bob"]["open_late"] == 1
    # Moved into the window before it: counted at its new due time, late by 3 days.
    assert groups["carol"]["lateness_p50_seconds"] == 3 * DAY
    # Cancelled after the judging instant: open and late then.
    assert groups["dan"]["open_late"] == 1
    assert groups["dan"]["cancelled"] == 0
    assert "eve" not in groups
    assert not_yet_agreed["owner"]["id"] == "eve"

    today = by_group(report(client, write_headers, **{"from": t - days(10)}))
    assert today["alice"]["late"] == 1
    assert "bob" not in today
    assert today["dan"]["cancelled"] == 1
    assert today["dan"]["on_time_rate"] is None
    # Agreed after its due time: in the report once agreed, against its first owner.
    assert today["eve"]["open_late"] == 1


def test_report_defaults_to_the_last_30_days_and_counts_steps_not_yet_due_as_due_only(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    step(client, write_headers, agreed=t - days(40), due=t - days(29))
    step(client, write_headers, agreed=t - days(40), due=t - days(31), owner="bob")
    step(client, write_headers, agreed=t - days(1), due=t + days(2), owner="carol")

    body = report(client, write_headers)
    assert [i["group"] for i in body["items"]] == ["alice"]
    assert body["to"] == body["judged_at"]

    ahead = by_group(report(client, write_headers, to=t + days(3)))
    assert ahead["carol"]["due"] == 1
    assert ahead["carol"]["open_late"] + ahead["carol"]["kept"] == 0
    assert ahead["carol"]["on_time_rate"] is None


def test_report_groups_by_role_job_stage_and_source_sorted_by_name(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    step(client, write_headers, agreed=t - days(5), due=t - days(2), role="hr", job_id="job-b")
    step(client, write_headers, agreed=t - days(5), due=t - days(2), owner="bob", job_id="job-a")
    interview = create_interview(
        client, write_headers, job_id=None, job_title=None, stage=None, source="acme-ats"
    )
    response = client.post(
        f"/v1/interviews/{interview['id']}/commitments",
        json={
            "action": "Send feedback",
            "owner": {"id": "carol", "role": "hiring_manager"},
            "due_at": iso(t - days(1)),
            "agreed_at": iso(t - days(3)),
        },
        headers=write_headers,
    )
    assert response.status_code == 201, response.text

    def groups(group_by: str) -> list[tuple[str | None, int]]:
        body = report(client, write_headers, group_by=group_by)
        assert body["group_by"] == group_by
        assert body["total"]["due"] == 3
        return [(i["group"], i["due"]) for i in body["items"]]

    assert groups("owner_role") == [("hiring_manager", 1), ("hr", 1), ("recruiter", 1)]
    assert groups("job") == [("job-a", 1), ("job-b", 1), (None, 1)]
    assert groups("stage") == [("First interview", 2), (None, 1)]
    assert groups("source") == [("acme-ats", 1), ("api", 2)]


def test_report_of_an_empty_window_has_no_groups_and_a_zero_total(
    client: TestClient, read_headers: Headers
) -> None:
    body = report(client, read_headers)
    assert body["items"] == []
    assert body["total"] == {
        "group": None,
        "due": 0,
        "kept": 0,
        "late": 0,
        "open_late": 0,
        "cancelled": 0,
        "on_time_rate": None,
        "lateness_p50_seconds": None,
        "lateness_p90_seconds": None,
        "wait_p50_seconds": None,
        "wait_p90_seconds": None,
    }


def test_report_as_csv_has_the_json_columns_a_total_row_and_no_formulas(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    step(client, write_headers, agreed=t - days(5), due=t - days(2), owner="=HYPERLINK(1)")
    step(client, write_headers, agreed=t - days(5), due=t - days(2), done=t - days(3))
    json_body = report(client, write_headers)

    response = client.get(REPORT, headers={**write_headers, "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(response.text))
    rows = list(reader)
    assert reader.fieldnames == list(json_body["total"])
    assert [r["group"] for r in rows] == ["'=HYPERLINK(1)", "alice", ""]
    assert rows[1]["kept"] == "1"
    assert rows[1]["on_time_rate"] == "1.0"
    assert rows[0]["on_time_rate"] == "0.0"
    assert rows[0]["wait_p50_seconds"] != ""
    assert rows[2]["due"] == "2"
    assert rows[2]["on_time_rate"] == "0.5"
    assert rows[1]["lateness_p50_seconds"] == ""


@pytest.mark.one_database("the chart drawn from the figures; the figures are tested on both")
def test_report_as_svg_is_a_standalone_readable_chart(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    step(client, write_headers, agreed=t - days(5), due=t - days(2), owner="<b>&'\"\x01")
    step(client, write_headers, agreed=t - days(5), due=t - days(2), done=t - days(3))
    start = t - days(7)

    response = client.get(
        REPORT, params={"from": iso(start)}, headers={**write_headers, "Accept": "image/svg+xml"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    text = response.text
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert "viewBox" in root.attrib
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert start.strftime("%Y-%m-%d") in (title.text or "")
    for forbidden in ("<script", "href", "url(", "@import", "<image", "<foreignObject"):
        assert forbidden not in text
    assert all(
        family.strip() in ("system-ui", "sans-serif")
        for family in (root.get("font-family") or "").split(",")
    )
    shown = ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]
    assert "<b>&'\"\ufffd" in shown
    assert "alice" in shown
    assert "Total" in shown
    assert "100%" in shown
    assert "0%" in shown
    assert "50%" in shown
    assert any("1 kept, 0 late" in s for s in shown)


def test_report_refuses_bad_windows_and_parameters_with_problems(
    client: TestClient, read_headers: Headers
) -> None:
    t = now()
    cases: list[tuple[dict[str, str], str]] = [
        ({"from": iso(t), "to": iso(t)}, "from"),
        ({"from": iso(t), "to": iso(t - days(1))}, "from"),
        ({"from": iso(t + days(1))}, "from"),
        ({"from": iso(t - days(5 * 365 + 3)), "to": iso(t)}, "from"),
        ({"group_by": "candidate"}, "group_by"),
        ({"owed_by": "nobody"}, "owed_by"),
        ({"from": "2026-11-01T00:00:00"}, "from"),
        ({"to": "2026-11-01"}, "to"),
        ({"to": "0001-01-01T00:00:00Z"}, "to"),
        ({"since": iso(t)}, "since"),
    ]
    for params, field in cases:
        response = client.get(REPORT, params=params, headers=read_headers)
        assert_problem(response, 422, field=f"query.{field}")
    assert (
        client.get(
            REPORT, params={"from": iso(t - days(1826)), "to": iso(t)}, headers=read_headers
        ).status_code
        == 200
    )


def test_report_needs_an_api_key(client: TestClient) -> None:
    response = client.get(REPORT, params={"group_by": "nonsense"})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.one_database(
    "the CLI prints the service's report, whose SQL the other tests here run on both databases"
)
@pytest.mark.process
def test_report_command_prints_what_the_api_answers(
    client: TestClient, write_headers: Headers, database_url: str
) -> None:
    t = now().replace(microsecond=0)
    step(client, write_headers, agreed=t - days(5), due=t - days(2))
    step(client, write_headers, agreed=t - days(5), due=t - days(2), owner="bob", done=t - days(3))
    window = {"from": iso(t - days(10)), "to": iso(t)}
    api = report(client, write_headers, group_by="owner", **window)
    api_csv = client.get(
        REPORT, params=window, headers={**write_headers, "Accept": "text/csv"}
    ).text.replace("\r\n", "\n")

    env = {**os.environ, "NEXTSTEP_DATABASE_URL": database_url}
    printed: dict[str, str] = {}
    for output in ("json", "csv", "table"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "report",
                "--from",
                window["from"],
                "--to",
                window["to"],
                "--group-by",
                "owner",
                "--format",
                output,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        printed[output] = done.stdout
    assert json.loads(printed["json"]) == api
    assert printed["csv"].replace("\r\n", "\n") == api_csv
    lines = printed["table"].splitlines()
    assert lines[2].split()[:2] == ["alice", "1"]
    assert lines[3].split()[:2] == ["bob", "1"]
    assert lines[-1].split()[:3] == ["TOTAL", "2", "1"]

    bad = subprocess.run(
        [sys.executable, "-m", "app", "report", "--from", window["to"], "--to", window["from"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "from must be earlier than to" in bad.stderr


EXAMPLE_CHART = Path(__file__).resolve().parents[1] / "docs" / "responsiveness.svg"
EXAMPLE_START = datetime(2026, 10, 1, tzinfo=UTC)
EXAMPLE_END = datetime(2026, 11, 1, tzinfo=UTC)


def record_example_month(client: TestClient, headers: Headers) -> None:
    """October 2026 at a small team: four owners, kept, late, open and cancelled steps,
    and a step handed over after it fell due. Every instant is fixed, so the report of
    that month is always the same."""
    day = EXAMPLE_START

    def at(n: float) -> datetime:
        return day + days(n)

    plan: list[tuple[str, str, float, float, float | None]] = [
        # owner, role, agreed, due, done (days into October)
        ("avery", "recruiter", 0, 2, 1.5),
        ("avery", "recruiter", 3, 5, 4),
        ("avery", "recruiter", 6, 8, 7.9),
        ("avery", "recruiter", 10, 12, 14),
        ("avery", "recruiter", 20, 23, 22),
        ("blake", "hr", 1, 4, 9),
        ("blake", "hr", 8, 10, 16),
        ("blake", "hr", 15, 18, None),
        ("blake", "hr", 22, 25, 24),
        ("casey", "hiring_manager", 2, 9, 8),
        ("casey", "hiring_manager", 12, 19, None),
        ("casey", "hiring_manager", 16, 26, 30),
        ("drew", "coordinator", 5, 6, 6),
        ("drew", "coordinator", 9, 11, 10.5),
        ("drew", "coordinator", 18, 20, 19),
        ("drew", "coordinator", 24, 27, 26.5),
    ]
    for n, (owner, role, agreed, due, done) in enumerate(plan):
        step(
            client,
            headers,
            agreed=at(agreed),
            due=at(due),
            done=at(done) if done is not None else None,
            owner=owner,
            role=role,
            candidate_id=f"cand-{n}",
        )
    handed_over = step(client, headers, agreed=at(12), due=at(15), owner="drew", role="coordinator")
    reassign(handed_over["id"], "casey", at(17), role="hiring_manager")  # drew is blamed
    withdrawn = step(client, headers, agreed=at(13), due=at(21), owner="blake", role="hr")
    with db.new_session(write=True) as session:
        service.cancel_commitment(
            session, _uuid(withdrawn["id"]), "Candidate withdrew", "key:test", at(14)
        )


def test_the_readme_example_chart_is_what_the_service_draws(
    client: TestClient, write_headers: Headers
) -> None:
    """docs/responsiveness.svg; NEXTSTEP_WRITE_EXAMPLES=1 writes it again."""
    record_example_month(client, write_headers)
    params = {"from": iso(EXAMPLE_START), "to": iso(EXAMPLE_END)}
    response = client.get(
        REPORT, params=params, headers={**write_headers, "Accept": "image/svg+xml"}
    )
    assert response.status_code == 200
    if os.environ.get("NEXTSTEP_WRITE_EXAMPLES") == "1":
        EXAMPLE_CHART.write_text(response.text)
    assert response.text == EXAMPLE_CHART.read_text()
    body = report(client, write_headers, **params)
    drew = by_group(body)["drew"]
    assert (drew["due"], drew["kept"], drew["open_late"]) == (5, 4, 1)
