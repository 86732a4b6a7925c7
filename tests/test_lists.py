"""Lists: keyset pages that neither repeat nor skip, limits, cursors, and CSV."""

import base64
import json
from datetime import datetime, timedelta
from typing import Any

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
    patch_commitment,
    step_body,
)


def _steps(
    client: TestClient, headers: Headers, due_at: datetime, count: int, **fields: Any
) -> list[Json]:
    """``count`` steps due at the same instant, agreed two weeks ago under one interview."""
    steps = [
        step_body(due_at=due_at, agreed_at=now() - days(14), action=f"Step {n}", **fields)
        for n in range(count)
    ]
    interview = create_interview(client, headers, next_steps=steps)
    return list(interview["commitments"])


def _flat(pages: list[list[Json]]) -> list[str]:
    return [item["id"] for page in pages for item in page]


def test_commitment_pages_neither_repeat_nor_skip_when_due_at_ties(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    tied = _steps(client, write_headers, t - days(1), 9)
    others = _steps(client, write_headers, t - days(2), 2) + _steps(
        client, write_headers, t + days(1), 2
    )
    expected = {s["id"] for s in tied + others}
    for sort in ("due_at", "-due_at"):
        pages = all_pages(client, write_headers, "/v1/commitments", limit=4, sort=sort)
        ids = _flat(pages)
        assert len(ids) == len(set(ids)) == len(expected)
        assert set(ids) == expected
        assert [len(p) for p in pages] == [4, 4, 4, 1]
        single = client.get(
            "/v1/commitments", params={"limit": 500, "sort": sort}, headers=write_headers
        )
        assert ids == [c["id"] for c in single.json()["items"]]


def _page(client: TestClient, headers: Headers, path: str, params: dict[str, Any]) -> Json:
    response = client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_pages_hold_while_rows_are_inserted_between_fetches(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    due = t - days(1)
    original = {s["id"] for s in _steps(client, write_headers, due, 10)}
    for path in ("/v1/commitments", "/v1/commitments/overdue"):
        seen: list[str] = []
        body = _page(client, write_headers, path, {"limit": 3})
        seen += [i["id"] for i in body["items"]]
        while body["next_cursor"]:
            # Same due time (ids fall on both sides of the cursor), and earlier ones.
            _steps(client, write_headers, due, 2)
            _steps(client, write_headers, due - days(1), 1)
            body = _page(client, write_headers, path, {"cursor": body["next_cursor"], "limit": 3})
            seen += [i["id"] for i in body["items"]]
        assert len(seen) == len(set(seen)), path
        assert original <= set(seen), path


def test_interview_pages_hold_while_interviews_are_added(
    client: TestClient, write_headers: Headers
) -> None:
    original = [
        create_interview(client, write_headers, candidate_id=f"c{n}")["id"] for n in range(5)
    ]
    seen: list[str] = []
    body = _page(client, write_headers, "/v1/interviews", {"limit": 2})
    seen += [i["id"] for i in body["items"]]
    added = []
    while body["next_cursor"]:
        added.append(create_interview(client, write_headers, candidate_id="late")["id"])
        body = _page(
            client, write_headers, "/v1/interviews", {"cursor": body["next_cursor"], "limit": 2}
        )
        seen += [i["id"] for i in body["items"]]
    assert seen == original + added  # oldest recorded first, each once


def test_limit_defaults_to_50_and_stops_at_500(client: TestClient, write_headers: Headers) -> None:
    t = now()
    _steps(client, write_headers, t - days(1), 50)
    create_step(client, write_headers, due_at=t - days(1), agreed_at=t - days(2))
    first = _page(client, write_headers, "/v1/commitments", {})
    assert len(first["items"]) == 50
    assert first["next_cursor"] is not None
    rest = _page(client, write_headers, "/v1/commitments", {"cursor": first["next_cursor"]})
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    everything = _page(client, write_headers, "/v1/commitments", {"limit": 500})
    assert len(everything["items"]) == 51
    assert everything["next_cursor"] is None
    assert len(overdue(client, write_headers, limit=500)) == 51
    interview_id = first["items"][0]["interview_id"]
    for path in (
        "/v1/commitments",
        "/v1/commitments/overdue",
        "/v1/interviews",
        "/v1/interviews/missing-next-step",
        f"/v1/interviews/{interview_id}/timeline",
    ):
        _page(client, write_headers, path, {"limit": 500})
        response = client.get(path, params={"limit": 501}, headers=write_headers)
        assert_problem(response, 422, field="limit")
    for bad in (0, "many"):
        response = client.get("/v1/commitments", params={"limit": bad}, headers=write_headers)
        assert_problem(response, 422, field="limit")


def test_cursor_carries_the_filters_and_as_of(client: TestClient, write_headers: Headers) -> None:
    t = now()
    at_t = t - days(1)
    mine = _steps(client, write_headers, t - days(2), 5)
    _steps(client, write_headers, t - days(3), 3, owner={"id": "rec-1", "role": "recruiter"})
    first = _page(
        client,
        write_headers,
        "/v1/commitments/overdue",
        {"as_of": iso(at_t), "owner_id": "hr-1", "limit": 2},
    )
    # Everything changes after T: the answer as of T must not.
    for step in mine:
        complete(client, write_headers, step["id"])
    later = _page(
        client,
        write_headers,
        "/v1/commitments/overdue",
        {"cursor": first["next_cursor"], "limit": 10},
    )
    listed = [i["id"] for i in first["items"] + later["items"]]
    assert sorted(listed) == sorted(s["id"] for s in mine)
    assert {i["owner"]["id"] for i in later["items"]} == {"hr-1"}
    assert {i["status"] for i in later["items"]} == {"open"}
    assert {i["overdue_by"] for i in later["items"]} == {"P1D"}

    done_first = _page(
        client, write_headers, "/v1/commitments", {"status": "done", "sort": "-due_at", "limit": 2}
    )
    done_rest = all_pages(
        client, write_headers, "/v1/commitments", cursor=done_first["next_cursor"], limit=2
    )
    done = [i for page in [done_first["items"], *done_rest] for i in page]
    assert sorted(i["id"] for i in done) == sorted(s["id"] for s in mine)
    assert {i["status"] for i in done} == {"done"}


def _tampered(cursor: str, change: Any) -> str:
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    change(data)
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_bad_cursor_is_422(client: TestClient, write_headers: Headers) -> None:
    _steps(client, write_headers, now() - days(1), 3)
    real = _page(client, write_headers, "/v1/commitments", {"limit": 1})["next_cursor"]
    interviews = _page(client, write_headers, "/v1/interviews", {"limit": 1})
    other = _page(client, write_headers, "/v1/commitments/overdue", {"limit": 1})["next_cursor"]
    timeline = _page(
        client,
        write_headers,
        f"/v1/interviews/{interviews['items'][0]['id']}/timeline",
        {"limit": 1},
    )["next_cursor"]
    bad = [
        "not-a-cursor",
        "e30",  # {}
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        _tampered(real, lambda d: d.update(a=["yesterday", "not-a-uuid"])),
        _tampered(real, lambda d: d.update(a=["2026-11-20T15:00:00", d["a"][1]])),
        _tampered(real, lambda d: d.update(a=d["a"][:1])),
        _tampered(real, lambda d: d["p"].update(status="late")),
        _tampered(real, lambda d: d["p"].update(unknown="x")),
        other,
        timeline,
    ]
    for cursor in bad:
        response = client.get("/v1/commitments", params={"cursor": cursor}, headers=write_headers)
        assert_problem(response, 422, field="cursor")
    response = client.get("/v1/commitments/overdue", params={"cursor": real}, headers=write_headers)
    assert_problem(response, 422, field="cursor")
    response = client.get(
        "/v1/commitments/overdue",
        params={"cursor": _tampered(other, lambda d: d.update(a=["x", "y"]))},
        headers=write_headers,
    )
    assert_problem(response, 422, field="cursor")


def test_commitment_csv_has_every_matching_row_with_id_first(
    client: TestClient, write_headers: Headers
) -> None:
    t = now()
    hr = _steps(client, write_headers, t - days(1), 40) + _steps(
        client, write_headers, t + days(1), 20
    )
    _steps(client, write_headers, t - days(2), 2, owner={"id": "rec-1", "role": "recruiter"})
    header, rows = get_csv(client, write_headers, "/v1/commitments", owner_id="hr-1")
    assert header[0] == "id"
    assert {"owner_id", "owner_role", "due_at", "status", "overdue_by"} <= set(header)
    assert sorted(r["id"] for r in rows) == sorted(s["id"] for s in hr)
    as_json = _page(client, write_headers, "/v1/commitments", {"owner_id": "hr-1", "limit": 500})[
        "items"
    ]
    assert [r["id"] for r in rows] == [c["id"] for c in as_json]
    assert rows[0]["due_at"] == as_json[0]["due_at"]
    assert rows[0]["owner_id"] == "hr-1"

    header, late = get_csv(client, write_headers, "/v1/commitments/overdue", owner_role="hr")
    assert header[0] == "id"
    assert {"candidate_external_id", "job_external_id", "waiting_since"} <= set(header)
    assert sorted(r["id"] for r in late) == sorted(s["id"] for s in hr[:40])
    assert all(r["overdue_by"].startswith("P") for r in late)


def test_overdue_csv_keeps_as_of(client: TestClient, write_headers: Headers) -> None:
    t = now()
    step = create_step(client, write_headers, due_at=t - days(2), agreed_at=t - days(3))
    patch_commitment(
        client, write_headers, step["id"], {"owner": {"id": "rec-1", "role": "recruiter"}}
    )
    complete(client, write_headers, step["id"])
    _header, rows = get_csv(client, write_headers, "/v1/commitments/overdue", as_of=t - days(1))
    assert [(r["id"], r["owner_id"], r["status"]) for r in rows] == [(step["id"], "hr-1", "open")]
    assert get_csv(client, write_headers, "/v1/commitments/overdue")[1] == []


def test_interview_csvs_have_every_matching_row(client: TestClient, write_headers: Headers) -> None:
    ends = now() - days(3)
    bare = [
        create_interview(client, write_headers, candidate_id=f"c{n}", ends_at=ends)["id"]
        for n in range(3)
    ]
    with_step = create_interview(
        client,
        write_headers,
        candidate_id="c-step",
        job_id="j-2",
        ends_at=ends,
        next_steps=[step_body(due_at=ends + days(1), agreed_at=ends)],
    )
    header, rows = get_csv(client, write_headers, "/v1/interviews")
    assert header[0] == "id"
    assert {"candidate_external_id", "job_title", "waiting_since", "interviewers"} <= set(header)
    assert [r["id"] for r in rows] == [*bare, with_step["id"]]
    _header, rows = get_csv(client, write_headers, "/v1/interviews", job_id="j-2")
    assert [r["id"] for r in rows] == [with_step["id"]]
    assert rows[0]["waiting_since"] == iso(ends)
    header, rows = get_csv(client, write_headers, "/v1/interviews/missing-next-step")
    assert header[0] == "id"
    assert sorted(r["id"] for r in rows) == sorted(bare)  # same end: in id order
    cutoff = ends - timedelta(hours=1)
    assert (
        get_csv(client, write_headers, "/v1/interviews/missing-next-step", ended_before=cutoff)[1]
        == []
    )


def test_timeline_csv_keeps_every_entry_and_its_changes(
    client: TestClient, write_headers: Headers
) -> None:
    step = create_step(client, write_headers, due_at=now() + days(1))
    patch_commitment(
        client,
        write_headers,
        step["id"],
        {"owner": {"id": "rec-1", "role": "recruiter"}, "reason": "HR is away"},
    )
    add_contact(client, write_headers, step["interview_id"], "inbound", at=now())
    path = f"/v1/interviews/{step['interview_id']}/timeline"
    as_json = _page(client, write_headers, path, {})["items"]
    header, rows = get_csv(client, write_headers, path, limit=1)
    assert header[0] == "id"
    assert [r["id"] for r in rows] == [e["id"] for e in as_json]
    assert [r["kind"] for r in rows] == [e["kind"] for e in as_json]
    reassigned = next(r for r in rows if r["kind"] == "reassigned")
    assert reassigned["reason"] == "HR is away"
    assert json.loads(reassigned["changes"])["owner_id"] == {"before": "hr-1", "after": "rec-1"}
    missing = "00000000-0000-4000-8000-000000000000"
    response = client.get(
        f"/v1/interviews/{missing}/timeline", headers={**write_headers, "Accept": "text/csv"}
    )
    assert_problem(response, 404)


def test_list_pages_are_what_their_response_models_write(
    client: TestClient, write_headers: Headers
) -> None:
    """The list routes serialise plain rows themselves: the bytes must be the model's own."""
    from app.commitments.schemas import CommitmentOut, InterviewOut, OverdueItem
    from app.schemas import Page

    ends = now() - days(5)
    interview = create_interview(
        client,
        write_headers,
        candidate_name="Zoë Ünicode",
        ends_at=ends,
        starts_at=ends - timedelta(hours=1),
        interviewers=[{"name": "Ida"}, {"external_id": "iv-2", "email": "iv2@example.com"}],
        next_steps=[
            step_body(due_at=ends + days(1), agreed_at=ends, promised_by=ends + days(2)),
            step_body(due_at=ends + days(9), agreed_at=ends, owed_by="candidate"),
        ],
    )
    add_contact(client, write_headers, interview["id"], "inbound", at=ends + days(2))
    add_contact(client, write_headers, interview["id"], "outbound", at=ends + days(3))
    add_contact(client, write_headers, interview["id"], "inbound", at=ends + days(4))
    owed_by_candidate = next(c for c in interview["commitments"] if c["owed_by"] == "candidate")
    complete(client, write_headers, owed_by_candidate["id"])
    create_interview(client, write_headers, candidate_id="no-end", status="scheduled")
    create_interview(client, write_headers, candidate_id="no-step", job_id=None, ends_at=ends)
    pages: list[tuple[str, dict[str, Any], Any]] = [
        ("/v1/commitments/overdue", {}, Page[OverdueItem]),
        ("/v1/commitments/overdue", {"broken_promise": "true"}, Page[OverdueItem]),
        ("/v1/commitments", {"limit": 1}, Page[CommitmentOut]),
        ("/v1/commitments", {}, Page[CommitmentOut]),
        ("/v1/interviews", {}, Page[InterviewOut]),
        ("/v1/interviews/missing-next-step", {"ended_before": iso(now())}, Page[InterviewOut]),
    ]
    for path, params, model in pages:
        response = client.get(path, params=params, headers=write_headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["items"], path
        assert model.model_validate_json(response.content).model_dump_json() == response.text


def test_timeline_pages_show_what_the_whole_timeline_shows(
    client: TestClient, write_headers: Headers
) -> None:
    """A page replays only its own subjects, up to its end: the same changes as one page."""
    step = create_step(client, write_headers, due_at=now() + days(1))
    other = create_step(client, write_headers, due_at=now() + days(2))
    interview_id = step["interview_id"]
    second = client.post(
        f"/v1/interviews/{interview_id}/commitments",
        json=step_body(due_at=now() + days(3)),
        headers=write_headers,
    )
    assert second.status_code == 201, second.text
    patch_commitment(
        client, write_headers, step["id"], {"owner": {"id": "rec-1", "role": "recruiter"}}
    )
    add_contact(client, write_headers, interview_id, "inbound", at=now())
    patch_commitment(client, write_headers, second.json()["id"], {"due_at": iso(now() + days(4))})
    complete(client, write_headers, step["id"], outcome="Called")
    complete(client, write_headers, other["id"], outcome="Other interview")
    path = f"/v1/interviews/{interview_id}/timeline"
    whole = _page(client, write_headers, path, {"limit": 500})["items"]
    assert len(whole) == 7
    for limit in (1, 2, 3):
        paged = _flat(all_pages(client, write_headers, path, limit=limit))
        assert paged == [e["id"] for e in whole]
        entries = [e for page in all_pages(client, write_headers, path, limit=limit) for e in page]
        assert entries == whole


def test_commitment_list_shows_the_steps_as_they_stood_at_as_of(
    client: TestClient, write_headers: Headers
) -> None:
    """as_of means on /v1/commitments what it means on the overdue list."""
    step = create_step(client, write_headers, due_at=now() + days(1))
    at_t = now()
    patch_commitment(
        client, write_headers, step["id"], {"owner": {"id": "rec-1", "role": "recruiter"}}
    )
    complete(client, write_headers, step["id"], outcome="Called")
    later = create_step(client, write_headers, due_at=now() + days(1))

    then = _page(client, write_headers, "/v1/commitments", {"as_of": iso(at_t)})["items"]
    assert [i["id"] for i in then] == [step["id"]]  # the later step was not agreed yet
    assert then[0]["status"] == "open"
    assert then[0]["owner"]["id"] == "hr-1"
    for filters, listed in (
        ({"owner_id": "hr-1"}, [step["id"]]),
        ({"owner_id": "rec-1"}, []),
        ({"status": "open"}, [step["id"]]),
        ({"status": "done"}, []),
    ):
        items = _page(client, write_headers, "/v1/commitments", {"as_of": iso(at_t), **filters})
        assert [i["id"] for i in items["items"]] == listed, filters

    current = _page(client, write_headers, "/v1/commitments", {})["items"]
    assert {i["id"]: i["status"] for i in current} == {step["id"]: "done", later["id"]: "open"}
    # Now is the default, and each item is what GET /v1/commitments/{id} shows.
    for item in current:
        single = client.get(f"/v1/commitments/{item['id']}", headers=write_headers).json()
        assert item == single
