"""The engine, the session dependency and the database's own settings."""

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import lru_cache, partial
from operator import itemgetter
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import sqlalchemy
from fastapi import Depends
from sqlalchemy import event, tuple_
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel, select

from app.config import get_settings
from app.errors import NotFound
from app.pagination import keyset

log = logging.getLogger("nextstep.db")


def _prepare_sqlite_path(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit mode off in the driver, so SQLAlchemy's BEGIN is the only one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before the 2xx that acknowledges it, even if the machine
    # loses power. Deliveries share commits (events/batching.py), which keeps this cheap.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A writing transaction takes the lock up front: one that reads first and
    # writes later fails at once when another writer got in between, instead of
    # waiting for busy_timeout. Readers never block anyone in WAL mode.
    write = conn.get_execution_options().get("nextstep_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def build_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """An engine with the settings this service needs on SQLite or PostgreSQL."""
    settings = get_settings()
    if url.startswith("sqlite"):
        _prepare_sqlite_path(url)
        # Looked up when called, so that tracing (app/tracing.py) can wrap it.
        engine = sqlalchemy.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, pool_size=20
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sqlalchemy.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=10,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": max(1, int(settings.db_connect_timeout_seconds)),
            # A query stuck behind a lock or a dead server must not hold a worker forever.
            # In UTC, psycopg returns instants with the zone UTCDateTime hands out as is.
            "options": "-c statement_timeout=15000 -c lock_timeout=10000 -c TimeZone=UTC",
            # A server that vanishes without closing the connection (a partition) is
            # noticed within seconds instead of after the kernel's TCP timeout.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10000,
        },
    )


@lru_cache
def get_engine() -> Engine:
    return build_engine(get_settings().database_url)


def dispose_engine() -> None:
    """Close the engine's pooled connections, if there is an engine: an app that never used
    the database makes none (nor, on SQLite, its folder) on the way out."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()


@lru_cache
def get_write_engine() -> Engine:
    return get_engine().execution_options(nextstep_write=True)


@lru_cache
def get_read_engine() -> Engine:
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        return engine
    # On PostgreSQL each statement of a READ COMMITTED transaction sees its own snapshot
    # anyway: outside one, a read saves the round trips of BEGIN and COMMIT.
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def new_session(*, write: bool = False) -> Session:
    """A session for reading, or (``write=True``) for a use case that writes."""
    # Objects stay readable after the commit that ends each use case.
    return Session(get_write_engine() if write else get_engine(), expire_on_commit=False)


def read_session() -> Session:
    """A session that only reads: on PostgreSQL, each statement commits on its own."""
    return Session(get_read_engine(), expire_on_commit=False)


def _yield_then_close(session: Session) -> Iterator[Session]:
    try:
        yield session
    finally:
        try:
            session.close()
        except DBAPIError as exc:
            # The connection died after the answer was chosen, maybe already sent. What
            # the use case committed stays committed, and the server drops a transaction
            # whose connection is gone. Raising here would only reset the client's socket.
            if not exc.connection_invalidated:
                raise
            log.warning("database connection lost while closing a session")


def get_session() -> Iterator[Session]:
    # Opens and closes only: each service function commits its own work.
    yield from _yield_then_close(new_session())


def get_write_session() -> Iterator[Session]:
    yield from _yield_then_close(new_session(write=True))


SessionDep = Annotated[Session, Depends(get_session)]
WriteSessionDep = Annotated[Session, Depends(get_write_session)]


class VersionedRow(Protocol):
    """A row whose version counts its changes (calendars, policies, endpoints, rules)."""

    version: int
    updated_at: datetime


V = TypeVar("V", bound=VersionedRow)


def save_changes(
    session: Session,
    row: V,
    values: dict[str, Any],
    now: datetime,
    then: Callable[[], None] | None = None,
) -> V:
    """Apply the values that differ from the row's, move its version on and commit; nothing
    differs, nothing is written. ``then`` runs after the flush, before the commit."""
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    if not changed:
        session.rollback()
        return row
    for name, value in changed.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = now
    session.add(row)
    if then is not None:
        session.flush()
        then()
    session.commit()
    return row


M = TypeVar("M", bound=SQLModel)
C = TypeVar("C")


def transaction_cache(session: Session, key: str, make: Callable[[], C]) -> C:
    """What this transaction has read and keeps (``make()`` at its first use): a batch of
    deliveries shares one transaction and reads policies, endpoints and rules once
    (measured in bench/ingest_policy.py). A new transaction starts with a new one."""
    transaction = session.get_transaction()
    held = session.info.get(key)
    if not isinstance(held, tuple) or held[0] is not transaction:
        held = session.info[key] = (transaction, make())
    kept: C = held[1]
    return kept


def insert_rows(
    session: Session, table: sqlalchemy.Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` in this transaction: what
    ``connection.execute(insert(table), rows)`` writes, each value bound by its column's
    own type, without SQLAlchemy's handling of each row's parameters, which cost about as
    much as the rest of the insert. SQLite: one executemany. PostgreSQL: COPY, which cost
    less CPU than psycopg's pipelined executemany for 8 rows as for 15,000 (a third of it
    for thousands; bench/RESULTS.md, 2026-12-08)."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    names = tuple(rows[0])
    bound = _bound_rows(dialect, table, names, rows)
    quote = dialect.identifier_preparer.quote
    into = f"{quote(table.name)} ({', '.join(quote(name) for name in names)})"
    if dialect.name == "postgresql":
        _copy(connection, f"COPY {into} FROM STDIN", bound)
        return
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    connection.exec_driver_sql(
        f"INSERT INTO {into} VALUES ({', '.join([mark] * len(names))})", bound
    )


def _copy(connection: sqlalchemy.Connection, statement: str, rows: list[Sequence[Any]]) -> None:
    """COPY ``rows`` on the connection's psycopg cursor; the driver's errors raised as
    SQLAlchemy raises them for a statement (IntegrityError, a lost connection invalidated)."""
    dbapi = connection.connection
    cursor = dbapi.cursor()
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except connection.dialect.loaded_dbapi.Error as exc:
        lost = connection.dialect.is_disconnect(exc, dbapi, cursor)
        if lost:
            connection.invalidate(exc)
        raise sqlalchemy.exc.DBAPIError.instance(
            statement,
            None,
            exc,
            connection.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from exc
    finally:
        cursor.close()


def _bound_rows(
    dialect: sqlalchemy.Dialect,
    table: sqlalchemy.Table,
    names: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
) -> list[Sequence[Any]]:
    """The rows' values in the order of ``names``, as the columns' types bind them."""
    # itemgetter of one name gives the value, not a tuple of it.
    get: Callable[[Mapping[str, Any]], Sequence[Any]] = (
        partial(_one_value, names[0]) if len(names) == 1 else itemgetter(*names)
    )
    processed = []
    for index, name in enumerate(names):
        processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            # Values that repeat in the first rows repeat further on: bound once each.
            sample = [id(row[name]) for row in rows[:8]]
            repeats = len(set(sample)) < len(sample)
            processed.append((index, _bind_once(processor) if repeats else processor))
    if not processed:
        return [tuple(get(row)) for row in rows]
    bound: list[Sequence[Any]] = []
    for row in rows:
        values = list(get(row))
        for index, process in processed:
            values[index] = process(values[index])
        bound.append(tuple(values))  # SQLAlchemy takes an executemany's rows as tuples
    return bound


def _one_value(name: str, row: Mapping[str, Any]) -> tuple[Any]:
    return (row[name],)


def _bind_once(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process``, run once per value object: rows made together share their rule, step,
    instants and JSON objects, and dumping the same dict thousands of times was a tenth of
    the insert. By identity, as values need not be hashable; the rows keep them alive."""
    bound: dict[int, Any] = {}

    def once(value: Any) -> Any:
        key = id(value)
        if key not in bound:
            bound[key] = process(value)
        return bound[key]

    return once


def get_or_not_found(
    session: Session, model: type[M], key: Any, noun: str, *, lock: bool = False
) -> M:
    """The row of ``model`` with id ``key`` (locked for this transaction, with ``lock``), or
    NotFound: "No <noun> with id <key>."."""
    # Locked, the row is read again whatever the session holds: its changes are serialised.
    row = session.get(model, key, with_for_update=True) if lock else session.get(model, key)
    if row is None:
        raise NotFound(f"No {noun} with id {key}.")
    return row


def _mark_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def keyset_page(
    session: Session,
    model: type[M],
    keys: Sequence[Any],
    parsers: Sequence[Callable[[str], Any]],
    after: list[str] | None,
    limit: int,
    where: Sequence[Any] = (),
) -> tuple[list[M], list[str] | None]:
    """A page of ``model`` (the rows ``where`` admits) in ``keys`` order after the mark a
    cursor carried, and the mark to go on from (None on the last page): one more row is
    read to see whether more follow."""
    statement = select(model).where(*where) if where else select(model)
    mark = keyset(after, *parsers)
    if mark is not None:
        statement = statement.where(tuple_(*keys) > tuple_(*mark))
    rows = list(session.exec(statement.order_by(*keys).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, [_mark_text(getattr(rows[-1], key.key)) for key in keys]
