"""API keys: creation, listing, revocation, and the scope-checking dependencies.

A route authenticates by taking one of the three aliases as a parameter, and nothing else:

- ``caller: WriteKey`` / ``caller: AdminKey``: the key is checked (401, then 403) before the
  route runs and before its parameters are reported invalid (401 before 422).
- ``access: ReadKey``, answered with ``return await read(access, lambda session: ...)``: the
  key is checked in the worker thread and the session that then read the answer (one hop).
  Should the route not call ``read`` (or fail, or have invalid parameters), the dependency
  checks the key on the way out, before anything is sent: a bad key is a 401 whatever the
  route did. tests/test_security.py holds every /v1 route to one of the three.
"""

import hashlib
import hmac
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from app.db import get_or_not_found, new_session, read_session
from app.errors import Forbidden, Unauthorized
from app.models import ApiKey, Scope, utcnow
from app.routing import refuse_repeated_parameters

KEY_PREFIX = "nsk_"
# Writing last_used_at on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)

_IMPLIED: dict[Scope, set[Scope]] = {
    Scope.read: {Scope.read},
    Scope.write: {Scope.read, Scope.write},
    Scope.admin: {Scope.read, Scope.write, Scope.admin},
}


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def effective_scopes(granted: list[str]) -> set[Scope]:
    scopes: set[Scope] = set()
    for name in granted:
        scopes |= _IMPLIED[Scope(name)]
    return scopes


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's id and name, for the timeline and idempotency."""

    key_id: uuid.UUID
    name: str
    scopes: frozenset[Scope]

    @property
    def actor(self) -> str:
        return f"key:{self.name}"


def create_key(
    session: Session, name: str, scopes: list[Scope], now: datetime
) -> tuple[ApiKey, str]:
    """Create a key and return it with its token, which is never stored and never shown again."""
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        prefix=token[:12],
        key_hash=hash_key(token),
        scopes=sorted({s.value for s in scopes}),
        created_at=now,
    )
    session.add(key)
    session.commit()
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all())


def revoke_key(session: Session, key_id: uuid.UUID, now: datetime) -> ApiKey:
    key = get_or_not_found(session, ApiKey, key_id, "API key")
    if key.revoked_at is None:
        key.revoked_at = now
        session.add(key)
        session.commit()
    return key


# Built once: every request with a key runs it.
_KEY_BY_HASH = sa_select(
    col(ApiKey.id),
    col(ApiKey.name),
    col(ApiKey.key_hash),
    col(ApiKey.scopes),
    col(ApiKey.revoked_at),
    col(ApiKey.last_used_at),
).where(col(ApiKey.key_hash) == bindparam("key_hash"))


def authenticate(token: str, now: datetime, session: Session | None = None) -> Caller | None:
    """The caller a token belongs to, or None for an unknown or revoked token.

    Looked up in ``session`` when one is given, else in a session of its own. Never cached:
    a revoked key is refused from the next request on.
    """
    digest = hash_key(token)
    with nullcontext(session) if session is not None else read_session() as reader:
        key = reader.connection().execute(_KEY_BY_HASH, {"key_hash": digest}).first()
    if key is None or not hmac.compare_digest(key.key_hash, digest) or key.revoked_at:
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        with new_session(write=True) as write:
            write.exec(update(ApiKey).where(col(ApiKey.id) == key.id).values(last_used_at=now))
            write.commit()
    return Caller(key_id=key.id, name=key.name, scopes=frozenset(effective_scopes(key.scopes)))


_bearer = HTTPBearer(auto_error=False, description="An API key from `nextstep keys create`.")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.", headers=_CHALLENGE)
    return credentials.credentials


def _authorize(request: Request, token: str, scope: Scope, session: Session | None) -> Caller:
    caller = authenticate(token, utcnow(), session)
    if caller is None:
        raise Unauthorized("The API key is unknown or revoked.", headers=_CHALLENGE)
    if scope not in caller.scopes:
        raise Forbidden(f"This API key lacks the '{scope.value}' scope.")
    request.state.caller = caller
    return caller


def _require(scope: Scope) -> Callable[..., Caller]:
    def dependency(request: Request, credentials: Credentials) -> Caller:
        caller = _authorize(request, _bearer_token(credentials), scope, None)
        refuse_repeated_parameters(request)
        return caller

    return dependency


class ReadAccess:
    """A read's key, checked in the thread and the session that then answer the request, so
    that a read costs one worker-thread hop, not four (``read``).

    The dependency that makes it (``ReadKey``) also makes sure it is checked before anything
    leaves: a route whose answer failed, whose parameters failed validation, or that never
    called ``read``, has its key checked on the way out, and a bad key answers 401 (403)
    in place of whatever the route made. No route taking ``ReadKey`` answers unauthenticated.
    """

    def __init__(self, request: Request, token: str) -> None:
        self.request = request
        self.token = token
        self.checked = False

    def check(self, session: Session | None = None) -> Caller:
        self.checked = True  # tried: a refusal is final, not checked again on the way out
        return _authorize(self.request, self.token, Scope.read, session)

    async def settle(self) -> None:
        """Check the key now, in a worker thread, unless ``read`` already has."""
        if not self.checked:
            await run_in_threadpool(self.check)


async def _read_access(request: Request, credentials: Credentials) -> AsyncIterator[ReadAccess]:
    access = ReadAccess(request, _bearer_token(credentials))
    try:
        refuse_repeated_parameters(request)
        yield access
    except Exception:
        # A bad key is a 401 (403) whatever else is wrong with the request: invalid
        # parameters (a 422), an unknown id (a 404).
        await access.settle()
        raise
    await access.settle()


T = TypeVar("T")


async def read(access: ReadAccess, answer: Callable[[Session], T]) -> T:
    """``answer(session)`` for a caller with the read scope, in one worker thread: the key
    is checked in the session the answer then reads with. It ends with COMMIT, for a read
    the same as a ROLLBACK, after which psycopg would forget its prepared statements.
    """

    def run() -> T:
        with read_session() as session:
            access.check(session)
            result = answer(session)
            session.commit()
            return result

    return await run_in_threadpool(run)


# "function" scope: the check on the way out runs before the answer is sent, not after.
ReadKey = Annotated[ReadAccess, Depends(_read_access, scope="function")]
WriteKey = Annotated[Caller, Depends(_require(Scope.write))]
AdminKey = Annotated[Caller, Depends(_require(Scope.admin))]
