"""How the tests should empty a PostgreSQL database between two tests.

Three ways, each timed over the state a typical test leaves behind (an API key, a few
interviews with steps and their versions, a delivery: rows in a handful of the tables):
1. ``TRUNCATE`` of every table, ``RESTART IDENTITY CASCADE`` (what the tests did);
2. one query asks which tables hold rows, then ``DELETE`` from those only, children first;
3. a fresh database cloned from a migrated template (``CREATE DATABASE ... TEMPLATE``).

Usage: `.venv/bin/python bench/reset.py [--rounds N]` with NEXTSTEP_TEST_POSTGRES_URL
set; the databases it makes are dropped at the end.
"""

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import db
from app.migrate import upgrade
from tests.conftest import WEBHOOK_SECRETS, empty_tables, reset_caches
from tests.factories import interview_body, now, step_body


def _fill() -> None:
    """What a typical API test leaves: a key, three interviews with a step each, a delivery."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.models import Scope
    from tests.conftest import make_key

    headers = {"Authorization": f"Bearer {make_key(Scope.admin)}"}
    with TestClient(create_app()) as client:
        for n in range(3):
            body = interview_body(
                candidate_id=f"c-{n}", next_steps=[step_body(due_at=now())], external_id=None
            )
            assert client.post("/v1/interviews", json=body, headers=headers).status_code == 201


def _truncate(engine: Engine) -> None:
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


def _timed(rounds: int, fill: Callable[[], None], reset: Callable[[], None]) -> list[float]:
    spent = []
    for _ in range(rounds):
        fill()
        started = time.perf_counter()
        reset()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    rounds = parser.parse_args().rounds
    admin_url = os.environ["NEXTSTEP_TEST_POSTGRES_URL"]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    names = [f"nextstep_reset_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    template, clone = names
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{template}"'))
        url = make_url(admin_url).set(database=template).render_as_string(hide_password=False)
        upgrade(url)
        os.environ["NEXTSTEP_DATABASE_URL"] = url
        os.environ["NEXTSTEP_WEBHOOK_SECRETS"] = json.dumps(WEBHOOK_SECRETS)
        os.environ["NEXTSTEP_WORKER"] = "false"
        reset_caches()
        results: dict[str, list[float]] = {}
        results["TRUNCATE all 17 tables"] = _timed(
            rounds, _fill, lambda: _truncate(db.get_engine())
        )
        results["DELETE from the tables that hold rows"] = _timed(
            rounds, _fill, lambda: empty_tables(url)
        )
        reset_caches()

        def from_template() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{clone}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{clone}" TEMPLATE "{template}"'))

        # The template must have no connection while it is copied: only the clone is timed.
        results["CREATE DATABASE ... TEMPLATE"] = _timed(rounds, lambda: None, from_template)
        for name, spent in results.items():
            print(
                f"{name:40} median {statistics.median(spent):7.1f} ms   "
                f"p90 {sorted(spent)[int(len(spent) * 0.9)]:7.1f} ms   ({rounds} rounds)"
            )
    finally:
        db.get_engine().dispose()
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
