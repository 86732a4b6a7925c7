"""One policy step per interview, while two replicas on one PostgreSQL receive concurrent
copies of the completion (under two delivery ids) and of a later step."""

import logging
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.models import utcnow
from tests.signing import event_body
from tests.test_reliability import (
    DAY,
    HTTP_TIMEOUT,
    Server,
    create_admin_key,
    database_engine,
    deliver_copies_concurrently,
    fresh_postgres_database,
    running,
    service_env,
)

log = logging.getLogger(__name__)

HOURS = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
POLICY = {
    "name": "First interview",
    "match": {"stage": "First interview"},
    "due_rule": {"business_days": 3},
    "default_step": {
        "action": "Tell the candidate the decision",
        "owner": {"id": "hm-1", "role": "hiring_manager"},
        "rule": {"business_days": 3, "at": "17:00"},
    },
}


@pytest.mark.process
@pytest.mark.postgresql
def test_two_replicas_make_one_policy_step_per_interview(tmp_path: Path) -> None:
    interviews, copies = 6, 4
    with fresh_postgres_database() as url:
        env = service_env(url, NEXTSTEP_DB_POOL_SIZE="5")
        replicas = [Server(env, tmp_path / f"replica-{n}.log") for n in range(2)]
        ended = utcnow() - 5 * DAY
        started = time.monotonic()
        with running(*replicas):
            key = create_admin_key(env)
            headers = {"Authorization": f"Bearer {key}"}
            calendar = {"name": "NY", "time_zone": "America/New_York", "hours": HOURS}
            for path, payload in (("calendars", calendar), ("deadline-policies", POLICY)):
                response = httpx.post(
                    f"{replicas[0].url}/v1/{path}", json=payload, headers=headers, timeout=10
                )
                assert response.status_code == 201, response.text
            completions = []
            for n in range(interviews):
                body = event_body(
                    "interview.completed",
                    ended,
                    {
                        "external_id": f"pol-{n}",
                        "candidate": {"external_id": f"cand-{n}"},
                        "stage": "First interview",
                        "ends_at": ended.isoformat(),
                    },
                )
                # The same completion under two delivery ids (an ATS that sent it twice).
                completions += [(f"done-a-{n}", body), (f"done-b-{n}", body)]
            deliver_copies_concurrently(replicas, completions, copies)
            steps = [
                (
                    f"agreed-{n}",
                    event_body(
                        "next_step.agreed",
                        ended + DAY,
                        {
                            "interview_external_id": f"pol-{n}",
                            "next_step": {
                                "external_id": f"step-{n}",
                                "action": "Second interview on Friday",
                                "owner": {"id": "rec-1", "role": "recruiter"},
                            },
                        },
                    ),
                )
                for n in range(interviews)
            ]
            deliver_copies_concurrently(replicas, steps, copies)
            listed = httpx.get(
                f"{replicas[1].url}/v1/commitments?limit=500", headers=headers, timeout=HTTP_TIMEOUT
            ).json()["items"]
        by_source: dict[str, list[dict[str, object]]] = {}
        for item in listed:
            by_source.setdefault(str(item["source"]), []).append(item)
        policy_steps = by_source["policy"]
        assert len(policy_steps) == interviews
        assert len({s["interview_id"] for s in policy_steps}) == interviews
        assert {s["status"] for s in policy_steps} == {"done"}
        assert {s["outcome"] for s in policy_steps} == {
            "Next step agreed: Second interview on Friday"
        }
        assert len(by_source["acme-ats"]) == interviews
        with database_engine(url) as engine, engine.connect() as conn:
            agreed = conn.execute(
                text(
                    "SELECT count(*) FROM timeline_entry WHERE kind = 'agreed' "
                    "AND actor LIKE 'policy:%'"
                )
            ).scalar_one()
            closed = conn.execute(
                text(
                    "SELECT count(*) FROM timeline_entry WHERE kind = 'completed' "
                    "AND actor LIKE 'policy:%'"
                )
            ).scalar_one()
        assert (agreed, closed) == (interviews, interviews)
    log.info(
        "policy race: %d interviews, completion twice x %d copies and a later step x %d copies "
        "across 2 replicas: one policy step each, closed once; %.1f s",
        interviews,
        copies,
        copies,
        time.monotonic() - started,
    )
