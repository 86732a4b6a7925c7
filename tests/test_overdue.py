"""What is overdue, for whom, by how much: now, at an earlier instant, summed up, on the CLI."""

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from tests.factories import (
    Headers,
    Json,
    add_contact,
    all_pages,
    assert_problem,
    complete,
    create_interview,
    create_step,
    days,
    get_csv,
    iso,
    now,
    overdue,
    parse,
    patch_commitment,
    step_body,
)


def _ids(items: list[Json]) -> list[object]:
    return [i["id"] for i in items]


def test_overdue_lists_late_open_steps_most_overdue_first(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    ends = t - days(4)
    interview = create_interview(
        client,
        write_headers,
        candidate_id="cand-9",
        candidate_name="Casey",
        job_id="job-analyst",
        ends_at=ends,
        next_steps=[step_body(due_at=t - days(1), agreed_at=ends)],
    )
    later = interview["commitments"][0]
    latest = create_step(
        client, write_headers, due_at=t - timedelta(days=2, hours=3), agreed_at=t - days(3)
    )
    add_contact(client, write_headers, interview["id"], "inbound", at=ends + days(1))

    items = overdue(client, write_headers)
    assert _ids(items) == [latest["id"], later["id"]]
    first, second = items
    assert first["overdue_by"].startswith("P2DT3H")
    assert first["is_overdue"] is True
    assert second["candidate"] == {"external_id": "cand-9", "name": "Casey", "email": None}
    assert second["job"] == {"external_id": "job-analyst", "title": "Analyst"}
    assert second["waiting_since"] == iso(ends)
    assert second["unanswered_contacts"] == 1
    assert 86400 <= second["overdue_seconds"] < 86400 + 60
    assert second["owner"] == {"id": "hr-1", "name": "Harriet HR", "role": "hr"}


def test_overdue_excludes_done_cancelled_and_not_yet_due(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    late = create_step(client, write_headers, due_at=t - days(1))
    done = create_step(client, write_headers, due_at=t - days(1))
    complete(client, write_headers, done["id"])
    cancelled = create_step(client, write_headers, due_at=t - days(1))
    client.post(
        f"/v1/commitments/{cancelled['id']}/cancel",
        json={"reason": "Withdrew"},
        headers=write_headers,
    )
    create_step(client, write_headers, due_at=t + days(1))
    assert _ids(overdue(client, write_headers)) == [late["id"]]


def test_candidate_owed_steps_are_listed_only_when_asked(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    ours = create_step(client, write_headers, due_at=t - days(2))
    theirs = create_step(
        client, write_headers, due_at=t - days(1), owner_id="cand-1", role="candidate"
    )
    assert theirs["owed_by"] == "candidate"
    assert _ids(overdue(client, write_headers)) == [ours["id"]]
    assert _ids(overdue(client, write_headers, owed_by="candidate")) == [theirs["id"]]
    candidate_view = overdue(client, write_headers, owed_by="candidate")[0]
    assert candidate_view["waiting_since"] is None  # nobody at the company owes them anything


def test_overdue_filters_by_owner_and_role(client: TestClient, write_headers: Headers) -> None:
    t = now()
    hr = create_step(client, write_headers, due_at=t - days(2))
    recruiter = create_step(
        client, write_headers, due_at=t - days(1), owner_id="rec-1", role="recruiter"
    )
    assert _ids(overdue(client, write_headers, owner_id="rec-1")) == [recruiter["id"]]
    assert _ids(overdue(client, write_headers, owner_role="hr")) == [hr["id"]]
    assert overdue(client, write_headers, owner_id="nobody") == []


def test_min_overdue_keeps_steps_late_by_at_least_that_much(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    very = create_step(client, write_headers, due_at=t - days(3))
    barely = create_step(client, write_headers, due_at=t - timedelta(hours=2))
    assert _ids(overdue(client, write_headers)) == [very["id"], barely["id"]]
    assert _ids(overdue(client, write_headers, min_overdue="P1D")) == [very["id"]]
    assert _ids(overdue(client, write_headers, min_overdue="PT1H")) == [very["id"], barely["id"]]
    assert overdue(client, write_headers, min_overdue="P4D") == []
    assert overdue(client, write_headers, min_overdue="P999999999D") == []
    assert overdue(client, write_headers, min_overdue="P1D", as_of="0001-01-01T00:00:00Z") == []


def test_broken_promise_lists_steps_whose_promised_date_passed(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    broken = create_step(
        client, write_headers, due_at=t + days(2), promised_by=t - days(1), agreed_at=t - days(3)
    )
    create_step(client, write_headers, due_at=t - days(1))  # late, but no promise made
    kept = create_step(client, write_headers, due_at=t - days(1), promised_by=t + days(1))
    items = overdue(client, write_headers, broken_promise="true")
    assert _ids(items) == [broken["id"]]
    assert items[0]["promised_by"] == broken["promised_by"]
    assert kept["id"] not in _ids(items)


def test_bad_overdue_parameters_are_422_naming_them(
    client: TestClient, read_headers: Headers
) -> None:
    cases = [
        ({"as_of": "2026-11-20T15:00:00"}, "as_of"),
        ({"as_of": "last week"}, "as_of"),
        ({"as_of": "0001-01-01T00:00:00+01:00"}, "as_of"),
        ({"min_overdue": "a day"}, "min_overdue"),
        ({"min_overdue": "-P1D"}, "min_overdue"),
        ({"owner_role": "boss"}, "owner_role"),
        ({"owed_by": "everyone"}, "owed_by"),
        ({"broken_promise": "perhaps"}, "broken_promise"),
    ]
    for params, field in cases:
        response = client.get("/v1/commitments/overdue", params=params, headers=read_headers)
        assert_problem(response, 422, field=field)
        summary = client.get("/v1/commitments/overdue/summary", params=params, headers=read_headers)
        assert_problem(summary, 422, field=field)
    response = client.get(
        "/v1/commitments/overdue/summary", params={"group_by": "colour"}, headers=read_headers
    )
    assert_problem(response, 422, field="group_by")


def _late_then_changed(client: TestClient, headers: Headers) -> tuple[Json, str]:
    """A step agreed 3 days ago, due 2 days ago; T is 1 day ago, when it was a day late."""
    t = now()
    step = create_step(client, headers, due_at=t - days(2), agreed_at=t - days(3))
    return step, iso(t - days(1))


def test_as_of_lists_a_step_completed_after_that_instant(
    client: TestClient, write_headers: Headers
) -> None:
    step, at_t = _late_then_changed(client, write_headers)
    complete(client, write_headers, step["id"], outcome="Called")
    assert overdue(client, write_headers) == []
    [then] = overdue(client, write_headers, as_of=at_t)
    assert then["id"] == step["id"]
    assert then["status"] == "open"
    assert then["completed_at"] is None
    assert then["outcome"] is None
    assert then["version"] == 1
    assert then["overdue_by"] == "P1D"
    assert then["overdue_seconds"] == 86400


def test_as_of_ignores_a_deadline_moved_after_it(
    client: TestClient, write_headers: Headers
) -> None:
    step, at_t = _late_then_changed(client, write_headers)
    patch_commitment(
        client, write_headers, step["id"], {"due_at": iso(now() + days(5)), "reason": "Leave"}
    )
    assert overdue(client, write_headers) == []
    [then] = overdue(client, write_headers, as_of=at_t)
    assert then["due_at"] == step["due_at"]


def test_as_of_applies_a_deadline_moved_before_it(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    step = create_step(client, write_headers, due_at=t + days(3))
    patch_commitment(client, write_headers, step["id"], {"due_at": iso(t + days(1))})
    [then] = overdue(client, write_headers, as_of=t + days(2))
    assert then["due_at"] == iso(t + days(1))
    assert then["overdue_by"] == "P1D"


def test_as_of_ignores_an_owner_change_after_it(client: TestClient, write_headers: Headers) -> None:
    step, at_t = _late_then_changed(client, write_headers)
    patch_commitment(
        client, write_headers, step["id"], {"owner": {"id": "rec-1", "role": "recruiter"}}
    )
    [then] = overdue(client, write_headers, as_of=at_t)
    assert then["owner"] == {"id": "hr-1", "name": "Harriet HR", "role": "hr"}
    assert overdue(client, write_headers, as_of=at_t, owner_id="rec-1") == []
    assert overdue(client, write_headers, as_of=at_t, owner_role="hr") == [then]
    [current] = overdue(client, write_headers, owner_id="rec-1")
    assert current["owner"]["role"] == "recruiter"


def test_as_of_does_not_list_a_step_agreed_after_it(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    step = create_step(client, write_headers, due_at=t - timedelta(hours=2))
    assert overdue(client, write_headers, as_of=t - timedelta(hours=1)) == []
    assert _ids(overdue(client, write_headers)) == [step["id"]]


def test_as_of_computes_the_waiting_clock_at_that_instant(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    ends = t - days(4)
    interview = create_interview(
        client,
        write_headers,
        ends_at=ends,
        next_steps=[step_body(due_at=ends + days(1), agreed_at=ends)],
    )
    add_contact(client, write_headers, interview["id"], "inbound", at=ends + days(2))
    add_contact(client, write_headers, interview["id"], "inbound", at=ends + days(3.5))
    add_contact(client, write_headers, interview["id"], "outbound", at=t - timedelta(hours=1))
    [then] = overdue(client, write_headers, as_of=ends + days(3))
    assert then["waiting_since"] == iso(ends)
    assert then["unanswered_contacts"] == 1
    [current] = overdue(client, write_headers)
    assert current["waiting_since"] == iso(t - timedelta(hours=1))
    assert current["unanswered_contacts"] == 0


def test_as_of_pages_mix_steps_still_open_and_steps_closed_since(
    client: TestClient, write_headers: Headers
) -> None:
    # Seven steps late at T, one day apart; after T, every other one is completed or moved,
    # so that at T some are current versions and some are versions closed since.
    t = now() - days(1)
    steps = [
        create_step(client, write_headers, due_at=t - days(9 - n), agreed_at=t - days(10))
        for n in range(7)
    ]
    for n, step in enumerate(steps):
        if n % 3 == 1:
            complete(client, write_headers, step["id"], outcome="Called")
        elif n % 3 == 2:
            moved = {"due_at": iso(now() + days(5)), "reason": "Leave"}
            patch_commitment(client, write_headers, step["id"], moved)
    pages = all_pages(client, write_headers, "/v1/commitments/overdue", as_of=iso(t), limit=2)
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    listed = [item for page in pages for item in page]
    assert _ids(listed) == [s["id"] for s in steps]
    assert {item["status"] for item in listed} == {"open"}
    assert [item["due_at"] for item in listed] == [s["due_at"] for s in steps]
    assert _ids(overdue(client, write_headers)) == [steps[0]["id"], steps[3]["id"], steps[6]["id"]]
    summary = client.get(
        "/v1/commitments/overdue/summary", params={"as_of": iso(t)}, headers=write_headers
    ).json()["items"]
    assert [(g["group"], g["count"]) for g in summary] == [("hr-1", 7)]
    assert summary[0]["oldest_due_at"] == steps[0]["due_at"]


def test_summary_groups_overdue_steps(client: TestClient, write_headers: Headers) -> None:
    t = now()
    before = t - days(6)
    hr_old = create_step(client, write_headers, due_at=t - days(3), job_id="j-1", agreed_at=before)
    hr_new = create_step(client, write_headers, due_at=t - days(1), job_id="j-2", agreed_at=before)
    rec = create_step(
        client,
        write_headers,
        due_at=t - days(2),
        owner_id="rec-1",
        role="recruiter",
        job_id="j-1",
        agreed_at=before,
    )
    theirs = create_step(
        client, write_headers, due_at=t - days(5), owner_id="c", role="candidate", agreed_at=before
    )
    create_step(client, write_headers, due_at=t + days(1), agreed_at=before)

    def summary(**params: str) -> list[Json]:
        response = client.get(
            "/v1/commitments/overdue/summary",
            params={"as_of": iso(t), **params},
            headers=write_headers,
        )
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def late(*steps: Json) -> int:
        return round(sum((t - parse(str(s["due_at"]))).total_seconds() for s in steps))

    def check(items: list[Json], expected: list[tuple[str, list[Json]]]) -> None:
        assert [(i["group"], i["count"]) for i in items] == [(g, len(s)) for g, s in expected]
        for item, (_group, steps) in zip(items, expected, strict=True):
            assert item["oldest_due_at"] == min(str(s["due_at"]) for s in steps)
            assert abs(int(str(item["overdue_seconds_total"])) - late(*steps)) <= 1

    check(summary(), [("hr-1", [hr_old, hr_new]), ("rec-1", [rec])])
    check(summary(group_by="owner_role"), [("hr", [hr_old, hr_new]), ("recruiter", [rec])])
    india = t.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    check(summary(as_of=india), [("hr-1", [hr_old, hr_new]), ("rec-1", [rec])])
    check(summary(group_by="job"), [("j-1", [hr_old, rec]), ("j-2", [hr_new])])
    check(summary(min_overdue="P1DT12H"), [("hr-1", [hr_old]), ("rec-1", [rec])])
    check(summary(owed_by="candidate", group_by="owner_role"), [("candidate", [theirs])])


@pytest.mark.one_database(
    "the CLI prints the service's list, whose SQL the other tests here run on both databases"
)
@pytest.mark.process
def test_cli_prints_the_same_overdue_items_as_the_api(
    client: TestClient, write_headers: Headers, database_url: str
) -> None:
    t = now()
    create_step(
        client, write_headers, due_at=t - days(2), action="Call Casey", agreed_at=t - days(3)
    )
    create_step(
        client,
        write_headers,
        due_at=t - days(1),
        action="Email Dana",
        owner_id="rec-1",
        role="recruiter",
        agreed_at=t - days(3),
    )
    create_step(client, write_headers, due_at=t + days(1), action="Not yet")
    as_of = iso(t)
    api_items = overdue(client, write_headers, as_of=as_of)
    assert len(api_items) == 2
    env = {**os.environ, "NEXTSTEP_DATABASE_URL": database_url}
    # The three formats run side by side: each is a cold start of the command.
    runs = {
        output: subprocess.Popen(
            [sys.executable, "-m", "app", "overdue", "--as-of", as_of, "--format", output],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for output in ("json", "csv", "table")
    }
    printed: dict[str, str] = {}
    for output, run in runs.items():
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 0, stderr
        printed[output] = stdout

    assert json.loads(printed["json"]) == api_items
    _header, api_rows = get_csv(client, write_headers, "/v1/commitments/overdue", as_of=as_of)
    assert list(csv.DictReader(io.StringIO(printed["csv"]))) == api_rows
    table = printed["table"]
    assert table.index("Call Casey") < table.index("Email Dana")
    assert "Not yet" not in table
    assert "2 overdue" in table
