"""Firing alone: ``count`` due reminders (bench/outbound.py's seed: one endpoint, one rule,
one open step each) fired by ``worker.fire_due`` in batches of ``--batch``, nothing sent.
Prints the seconds and reminders per second, on PostgreSQL.

    .venv/bin/python bench/firing.py --reminders 10000
"""

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest
import outbound

from app import db
from app.config import get_settings
from app.outbound import outbox, worker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEXTSTEP_TEST_POSTGRES_URL") or ingest.DEFAULT_POSTGRES_URL,
    )
    args = parser.parse_args()
    with ingest.postgresql_database(args.postgres_url) as url:
        fire_at = datetime.now(UTC) - timedelta(seconds=1)
        secret = outbound.new_secret()
        outbound.seed(url, outbound.Receiver(secret), secret, args.reminders, fire_at)
        os.environ["NEXTSTEP_DATABASE_URL"] = url
        get_settings.cache_clear()
        db.get_engine.cache_clear()
        db.get_write_engine.cache_clear()
        outbox.install()
        start = time.perf_counter()
        fired = 0
        while n := worker.fire_due(datetime.now(UTC), args.batch):
            fired += n
        seconds = time.perf_counter() - start
        print(f"firing: {fired} reminders in {seconds:.2f} s: {fired / seconds:.0f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
