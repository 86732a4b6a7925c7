"""Floor apps: the least any implementation of the overdue page and of event ingestion must do.

Served the way `nextstep serve` serves the real app (uvicorn, one worker, same options) on
raw psycopg or sqlite3 connections, with no SQLAlchemy at request time, no middleware and
no validation. `bench/floor.py` puts them between the bare apps and the real server: their
ratio to a bare app is the highest any implementation can reach on this machine.

- `GET /floor/overdue`: a sync route like the real reads (the same thread-pool hop), one
  connection per worker thread. Looks the Bearer key up by its SHA-256 in `api_key` (401
  if absent or revoked), runs the real endpoint's two statements for `limit=100` without
  filters (compiled once from `app.commitments.queries`) at the current instant: the page
  of current versions, and the look-up of versions closed after it (none in the
  benchmark's data). Answers the first 100 rows as they come from the driver,
  `{"items": [...], "next_cursor": null}`.
- `POST /v1/events/{source}`: verifies the Standard Webhooks signature against the
  source's secrets (401 if none matches), parses the body, and stores the template rows
  (what the service writes for one `interview.completed` event with one next step) with
  fresh ids, this event's keys and its body; deliveries that arrive meanwhile share a
  transaction, one executemany per table, as in app/events/batching.py. Answers 202 with
  the delivery id once committed.

Environment:

- NEXTSTEP_DATABASE_URL: `sqlite:///PATH` or `postgresql+psycopg://...`, as for the real app.
- NEXTSTEP_WEBHOOK_SECRETS: `{"source": ["whsec_..."]}`, as for the real app.
- NEXTSTEP_FLOOR_TEMPLATES: a JSON file `{"table": [{"column": value, ...}, ...]}` with the
  rows to insert per event, values as the driver takes them (only the POST route reads it).

    .venv/bin/python bench/floor_apps.py --port PORT [--host HOST]
"""

import argparse
import asyncio
import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic_core import to_json
from sqlalchemy.engine import make_url
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.commitments import overdue as overdue_reads
from app.commitments.schemas import OverdueQuery

TEMPLATES_VARIABLE = "NEXTSTEP_FLOOR_TEMPLATES"
# The tables an event writes, in an order that satisfies their foreign keys.
TABLES = ("delivery", "interview", "commitment", "commitment_version", "timeline_entry")
PAGE = 100
MAX_BATCH = 64  # as app/events/batching.py

DATABASE_URL = os.environ.get("NEXTSTEP_DATABASE_URL", "sqlite:///./var/nextstep.db")
POSTGRES = DATABASE_URL.startswith("postgres")
SECRETS: dict[str, list[str]] = json.loads(os.environ.get("NEXTSTEP_WEBHOOK_SECRETS", "{}"))
MARK = "%s" if POSTGRES else "?"
KEY_SQL = f"SELECT id FROM api_key WHERE key_hash = {MARK} AND revoked_at IS NULL"

Connection = psycopg.Connection[Any] | sqlite3.Connection
# An event's rows: per table of TABLES, the rows in the column order of its INSERT.
Rows = list[list[tuple[Any, ...]]]

_local = threading.local()


def _connect() -> Connection:
    url = make_url(DATABASE_URL)
    if POSTGRES:
        # In UTC like the app's sessions (app/db.py); every statement prepared at once.
        return psycopg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
            prepare_threshold=0,
            options="-c TimeZone=UTC",
        )
    conn = sqlite3.connect(url.database or "", isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def connection() -> Connection:
    """This thread's connection, opened on first use; the pool's threads live on."""
    conn: Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = _connect()
    return conn


# ---------------------------------------------------------------- the overdue page


@dataclass(frozen=True)
class OverduePage:
    sql: str
    values: dict[str, Any]  # every parameter but as_of, the same for every request
    bind_as_of: Callable[[datetime], Any]  # an aware instant as this database stores it
    order: tuple[str, ...] | None  # the parameters' order where they are positional (SQLite)

    def parameters(self, as_of: datetime) -> dict[str, Any] | tuple[Any, ...]:
        values = {**self.values, "as_of": self.bind_as_of(as_of)}
        return values if self.order is None else tuple(values[name] for name in self.order)


@cache
def overdue_page(branch: overdue_reads.Branch) -> OverduePage:
    """The real endpoint's statement for `?limit=100`, compiled once for this database: the
    page of current versions, or the query for the versions closed after the instant."""
    driver = "postgresql+psycopg" if POSTGRES else "sqlite+pysqlite"
    dialect = make_url(DATABASE_URL).set(drivername=driver).get_dialect()()
    shape, params = overdue_reads._overdue_filters(OverdueQuery(limit=PAGE), datetime.now(UTC))
    statement = (
        overdue_reads._overdue_statement(shape, False, "current")
        if branch == "current"
        else overdue_reads._closed_overdue_statement(shape, False)
    )
    compiled = statement.compile(dialect=dialect)
    # One row more than the page, as the app reads to tell whether there is a next page.
    values = dict(compiled.construct_params({**params, "limit": PAGE + 1}))
    # UTCDateTime's own conversion: aware on PostgreSQL, naive UTC text on SQLite.
    process = compiled.binds["as_of"].type.dialect_impl(dialect).bind_processor(dialect)
    order = tuple(compiled.positiontup) if compiled.positiontup else None
    return OverduePage(str(compiled), values, process or (lambda value: value), order)


# ---------------------------------------------------------------- ingestion


@dataclass(frozen=True)
class Templates:
    rows: dict[str, list[dict[str, Any]]]
    columns: dict[str, tuple[str, ...]]
    inserts: tuple[str, ...]  # per table of TABLES


@cache
def templates() -> Templates:
    rows: dict[str, list[dict[str, Any]]] = json.loads(
        Path(os.environ[TEMPLATES_VARIABLE]).read_text()
    )
    columns = {table: tuple(rows[table][0]) for table in TABLES}
    inserts = tuple(
        f"INSERT INTO {table} ({', '.join(columns[table])}) "
        f"VALUES ({', '.join([MARK] * len(columns[table]))})"
        for table in TABLES
    )
    return Templates(rows, columns, inserts)


def new_id() -> str:
    """A fresh id as the app stores it: 32 hex digits on SQLite."""
    ident = uuid.uuid4()
    return str(ident) if POSTGRES else ident.hex


def event_rows(event: dict[str, Any], delivery_key: str, body: bytes) -> tuple[str, Rows]:
    """The delivery id, and the template rows with fresh ids, this event's keys and body."""
    data = event["data"]
    delivery, interview, commitment = new_id(), new_id(), new_id()
    fresh: dict[str, dict[str, Any]] = {
        "delivery": {"id": delivery, "delivery_key": delivery_key, "body": body},
        "interview": {"id": interview, "external_id": data["external_id"]},
        "commitment": {
            "id": commitment,
            "interview_id": interview,
            "external_id": data["next_steps"][0]["external_id"],
        },
        "commitment_version": {"commitment_id": commitment, "interview_id": interview},
        "timeline_entry": {"interview_id": interview, "delivery_id": delivery},
    }
    plan = templates()
    rows: Rows = []
    for table in TABLES:
        table_rows = []
        for template in plan.rows[table]:
            row = {**template, **fresh[table]}
            if table == "timeline_entry":
                row.update(id=new_id(), tiebreak=delivery_key)
                if template["commitment_id"] is not None:
                    row["commitment_id"] = commitment
            table_rows.append(tuple(row[name] for name in plan.columns[table]))
        rows.append(table_rows)
    return str(uuid.UUID(delivery)), rows


def insert(batch: list[Rows]) -> None:
    """The events' rows in one transaction, one executemany per table; all or nothing."""
    conn = connection()
    statements = [
        (sql, [row for rows in batch for row in rows[n]])
        for n, sql in enumerate(templates().inserts)
    ]
    if isinstance(conn, sqlite3.Connection):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                conn.executemany(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return
    with conn.transaction(), conn.cursor() as cursor:
        for sql, params in statements:
            cursor.executemany(sql, params)


class GroupCommit:
    """Stores what is submitted in batches of up to MAX_BATCH events, one batch at a time."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Rows, asyncio.Future[None]]] = []
        self.drainer: asyncio.Task[None] | None = None

    async def store(self, rows: Rows) -> None:
        """Returns once ``rows`` are committed; raises what storing their batch raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((rows, future))
        if self.drainer is None:
            self.drainer = asyncio.create_task(self.drain())
        await future

    async def drain(self) -> None:
        batch: list[tuple[Rows, asyncio.Future[None]]] = []
        try:
            while self.waiting:
                for _ in range(3):  # let the requests that arrived meanwhile join the batch
                    await asyncio.sleep(0)
                batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
                try:
                    await to_thread.run_sync(insert, [rows for rows, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
                batch = []
        except BaseException:
            for _, future in batch + self.waiting:
                future.cancel()
            self.waiting = []
            raise
        finally:
            self.drainer = None


group_commit = GroupCommit()

app = FastAPI()


@app.get("/floor/overdue")
def overdue(request: Request) -> Response:
    conn = connection()
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    digest = hashlib.sha256(token.encode()).hexdigest()
    if conn.execute(KEY_SQL, (digest,)).fetchone() is None:
        return JSONResponse({"detail": "unknown API key"}, status_code=401)
    as_of = datetime.now(UTC)
    page, closed = overdue_page("current"), overdue_page("closed")
    cursor = conn.execute(page.sql, page.parameters(as_of))
    names = [column[0] for column in cursor.description or ()]
    rows = cursor.fetchall()
    # Closed after now: none in the benchmark's data, so nothing to merge.
    if conn.execute(closed.sql, closed.parameters(as_of)).fetchone() is not None:
        return JSONResponse({"detail": "versions closed in the future"}, status_code=500)
    items = [dict(zip(names, row, strict=True)) for row in rows[:PAGE]]
    return Response(to_json({"items": items, "next_cursor": None}), media_type="application/json")


@app.post("/v1/events/{source}", status_code=202)
async def receive_event(source: str, request: Request) -> Response:
    body = await request.body()
    headers = dict(request.headers)
    for secret in SECRETS.get(source, []):
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except WebhookVerificationError:
            continue
        delivery_id, rows = event_rows(json.loads(body), headers["webhook-id"], body)
        await group_commit.store(rows)
        return JSONResponse({"delivery_id": delivery_id, "status": "applied"}, 202)
    return JSONResponse({"detail": "no signature matches"}, status_code=401)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "floor_apps:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
