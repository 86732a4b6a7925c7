"""Security properties: scopes on every route, hashed keys, no secret in logs or answers,
no stack trace in error bodies, and request bodies over 1 MiB refused before being read."""

import asyncio
import base64
import io
import json
import logging
import re
import time
import typing
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import text
from sqlmodel import select
from starlette.types import Message

from app import db
from app.auth import AdminKey, ReadKey, WriteKey, hash_key, revoke_key
from app.commitments import queries
from app.errors import NotFound
from app.main import create_app
from app.models import ApiKey, Scope, utcnow
from app.observability import JsonFormatter
from app.routing import JsonRoute
from tests.conftest import WEBHOOK_SECRETS, make_key
from tests.factories import days, iso, now, step_body
from tests.signing import (
    ashby_headers,
    event_body,
    greenhouse_headers,
    lever_sign,
    standard_headers,
)

PROBLEM = "application/problem+json"
KEY_SCOPES = (Scope.admin, Scope.write, Scope.read)
MIB = 1024 * 1024
# Endpoints that authenticate by signature, not by key.
SIGNED = {
    "/v1/events/{source}",
    "/v1/webhooks/greenhouse",
    "/v1/webhooks/lever",
    "/v1/webhooks/ashby",
}
SCOPE_OF_DEPENDENCY = {
    typing.get_args(alias)[1].dependency: scope
    for alias, scope in ((ReadKey, Scope.read), (WriteKey, Scope.write), (AdminKey, Scope.admin))
}
# The key that lacks the route's scope: one with no scope, a reader, a writer.
LACKING = {Scope.read: (), Scope.write: (Scope.read,), Scope.admin: (Scope.write,)}


def _v1_routes() -> list[APIRoute]:
    """Every /v1 route of the app, those of included routers too."""
    routes = (context.original_route for context in iter_route_contexts(create_app().routes))
    return [r for r in routes if isinstance(r, APIRoute) and r.path.startswith("/v1/")]


def _required_scope(route: APIRoute) -> Scope | None:
    scopes = {
        SCOPE_OF_DEPENDENCY[dependency.call]
        for dependency in route.dependant.dependencies
        if dependency.call in SCOPE_OF_DEPENDENCY
    }
    assert len(scopes) <= 1, route.path
    return next(iter(scopes), None)


def _url(route: APIRoute) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        param = next(p for p in route.dependant.path_params if p.name == name)
        return str(uuid.uuid4()) if param.field_info.annotation is uuid.UUID else "acme-ats"

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, route.path)


KEYED_ROUTES = [
    pytest.param(route, method, id=f"{method} {route.path}")
    for route in _v1_routes()
    if route.path not in SIGNED
    for method in sorted((route.methods or set()) - {"HEAD"})
]


def test_only_the_signed_endpoints_take_no_key() -> None:
    unkeyed = {route.path for route in _v1_routes() if _required_scope(route) is None}
    assert unkeyed == SIGNED


def test_every_keyed_operation_declares_401_and_403() -> None:
    paths = create_app().openapi()["paths"]
    for route in _v1_routes():
        if route.path in SIGNED:
            continue
        template = re.sub(r":\w+\}", "}", route.path)
        for method in route.methods or ():
            operation = paths[template][method.lower()]
            assert {"401", "403"} <= set(operation["responses"]), (method, template)
            assert operation["security"] == [{"HTTPBearer": []}], (method, template)


@pytest.mark.parametrize(("route", "method"), KEYED_ROUTES)
@pytest.mark.one_database("the key and scope are checked before any query")
def test_every_route_refuses_a_missing_key_and_a_missing_scope(
    client: TestClient, route: APIRoute, method: str
) -> None:
    scope = _required_scope(route)
    assert scope is not None
    # What the contract says: reads need read, changes need write, deliveries need admin;
    # part two's management endpoints need admin to write, and computing a due time is a read.
    admin_writes = (
        "/v1/calendars",
        "/v1/owners/",
        "/v1/feeds/",
        "/v1/deadline-policies",
        "/v1/endpoints",
        "/v1/reminder-rules",
        "/v1/messages",
    )
    expected = (
        Scope.admin
        if route.path.startswith("/v1/deliveries")
        else Scope.read
        if method == "GET" or route.path.endswith("/compute")
        else Scope.admin
        if route.path.startswith(admin_writes)
        else Scope.write
    )
    assert scope == expected, (method, route.path)
    url = _url(route)

    revoked = make_key(Scope.admin, name="revoked")
    with db.new_session(write=True) as session:
        key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(revoked))).one()
        revoke_key(session, key.id, utcnow())
    for headers in (
        {},
        {"Authorization": "Bearer nsk_unknown"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": f"Bearer {revoked}"},
    ):
        response = client.request(method, url, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == PROBLEM

    lacking = make_key(*LACKING[scope], name="lacking")
    response = client.request(method, url, headers={"Authorization": f"Bearer {lacking}"})
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == PROBLEM
    assert scope.value in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/commitments?limit=100000",
        "/v1/commitments/overdue?as_of=yesterday",
        "/v1/commitments/overdue/summary?group_by=nobody",
        "/v1/interviews?cursor=garbage&limit=0",
        "/v1/interviews/not-a-uuid",
        "/v1/commitments/overdue?min_overdue=soon",
    ],
)
@pytest.mark.one_database("the key is checked before any query")
def test_a_bad_key_is_refused_before_bad_parameters_are_reported(
    client: TestClient, path: str
) -> None:
    revoked = make_key(Scope.read, name="revoked")
    with db.new_session(write=True) as session:
        key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(revoked))).one()
        revoke_key(session, key.id, utcnow())
    for token in ("nsk_unknown", revoked):
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == PROBLEM
    reader = make_key(Scope.read, name="reader")
    response = client.get(path, headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 422, (path, response.text)
    assert response.headers["content-type"] == PROBLEM


def _app_with_a_route_that_forgets_read() -> FastAPI:
    """The app, plus a read route that takes ``ReadKey`` but never calls ``read()``."""
    app = create_app()
    forgetful = APIRouter(prefix="/v1", route_class=JsonRoute)

    @forgetful.get("/forgetful/{thing_id}")
    async def forgets_read(
        _access: ReadKey, thing_id: uuid.UUID, limit: int = 10
    ) -> dict[str, str]:
        return {"secret": f"{thing_id} {limit}"}

    @forgetful.get("/failing")
    async def fails_before_read(_access: ReadKey) -> dict[str, str]:
        raise NotFound("This must not be told to a caller without a key.")

    app.include_router(forgetful)
    return app


@pytest.mark.one_database("the key is checked before any query")
def test_a_read_route_that_forgets_read_still_refuses_a_bad_key(database_url: str) -> None:
    revoked = make_key(Scope.read, name="revoked")
    with db.new_session(write=True) as session:
        key = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(revoked))).one()
        revoke_key(session, key.id, utcnow())
    lacking = make_key(name="no scope")
    reader = make_key(Scope.read, name="reader")
    url = f"/v1/forgetful/{uuid.uuid4()}"
    with TestClient(_app_with_a_route_that_forgets_read()) as client:
        for path in (url, f"{url}?limit=many", "/v1/forgetful/not-a-uuid", "/v1/failing"):
            for headers in ({}, {"Authorization": "Bearer nsk_unknown"}, _bearer(revoked)):
                response = client.get(path, headers=headers)
                assert response.status_code == 401, (path, headers, response.text)
                assert "secret" not in response.text
            response = client.get(path, headers=_bearer(lacking))
            assert response.status_code == 403, (path, response.text)
        assert client.get(url, headers=_bearer(reader)).status_code == 200
        assert client.get(f"{url}?limit=many", headers=_bearer(reader)).status_code == 422
        assert client.get("/v1/failing", headers=_bearer(reader)).status_code == 404


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_keys_are_stored_only_as_hashes(client: TestClient) -> None:
    tokens = [make_key(*scopes, name=f"k{i}") for i, scopes in enumerate(LACKING.values())]
    tokens.append(make_key(Scope.admin, name="admin"))
    # The keys work, so the table holds what authenticates them.
    response = client.get("/v1/commitments", headers={"Authorization": f"Bearer {tokens[-1]}"})
    assert response.status_code == 200
    with db.new_session() as session:
        table = session.connection().execute(text("SELECT * FROM api_key"))
        rows = [dict(row._mapping) for row in table]
    assert len(rows) == len(tokens)
    stored = json.dumps(rows, default=str)
    for token in tokens:
        assert token not in stored
        assert token[12:] not in stored  # the 12-character prefix is shown by `keys list`
        assert token[12:20] not in stored
    assert {row["key_hash"] for row in rows} == {hash_key(token) for token in tokens}


# Secrets in logs and answers --------------------------------------------------------------


class Recorder:
    """Every answer of a scenario, kept for inspection."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.responses: list[Response] = []

    def __call__(self, method: str, url: str, **kwargs: Any) -> Response:
        response: Response = self.client.request(method, url, **kwargs)
        self.responses.append(response)
        return response


def _service_records(record: logging.LogRecord) -> bool:
    # httpx2 logs the test client's own requests, URLs included: the client's log, not ours.
    # (The prefixes match httpx and httpcore too.)
    return not record.name.startswith(("httpx", "httpcore"))


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The JSON log stream, as the service writes it, at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_service_records)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _secret_forms(secret: str) -> set[str]:
    forms = {secret}
    if secret.startswith("whsec_"):
        forms.add(secret.removeprefix("whsec_"))
        forms.add(base64.b64decode(secret.removeprefix("whsec_")).decode("latin-1"))
    return forms


def _scenario(call: Recorder, admin: str, writer: str, reader: str) -> tuple[set[str], set[str]]:
    """A working day of the service, errors included; returns the keys and signatures sent."""
    sent_signatures: set[str] = set()
    adm = {"Authorization": f"Bearer {admin}"}
    wr = {"Authorization": f"Bearer {writer}"}
    rd = {"Authorization": f"Bearer {reader}"}
    wrong = "nsk_" + "A" * 43

    interview = call(
        "POST",
        "/v1/interviews",
        json={
            "source": "acme-ats",
            "external_id": "int-1",
            "candidate": {"external_id": "cand-1", "name": "Casey", "email": "casey@example.com"},
            "job": {"external_id": "job-1", "title": "Analyst"},
            "status": "completed",
            "ends_at": iso(now()),
            "next_steps": [step_body(due_at=now())],
        },
        headers={**wr, "Idempotency-Key": "create-1"},
    ).json()
    interview_id = interview["id"]
    call("GET", f"/v1/interviews/{interview_id}", headers=rd)
    call("GET", f"/v1/interviews/{interview_id}/timeline", headers=rd)
    call(
        "POST",
        f"/v1/interviews/{interview_id}/contacts",
        json={"direction": "inbound", "channel": "email", "note": "Any news?"},
        headers=wr,
    )
    step = call(
        "POST",
        f"/v1/interviews/{interview_id}/commitments",
        json=step_body(due_at=now() - days(1), promised_by=now() - days(2)),
        headers=wr,
    ).json()
    url = f"/v1/commitments/{step['id']}"
    tag = call("GET", url, headers=rd).headers["etag"]
    call("PATCH", url, json={"action": "Call back"}, headers=wr)  # 428
    call("PATCH", url, json={"action": "Call back"}, headers={**wr, "If-Match": '"stale"'})
    call("PATCH", url, json={"action": "Call back", "reason": "x"}, headers={**wr, "If-Match": tag})
    call("POST", f"{url}/complete", json={"outcome": "Offer made"}, headers=wr)
    call("POST", f"{url}/cancel", json={"reason": "again"}, headers=wr)  # 409
    call("POST", f"{url}/reopen", json={"reason": "wrong step"}, headers=wr)
    call("GET", "/v1/commitments/overdue", headers=rd)
    call("GET", "/v1/commitments/overdue/summary", headers=rd)
    call("GET", "/v1/commitments", headers={**rd, "Accept": "text/csv"})
    call("GET", "/v1/interviews/missing-next-step", headers=rd)

    # Errors of every kind.
    call("GET", "/v1/commitments", headers={"Authorization": f"Bearer {wrong}"})
    call("GET", "/v1/commitments", headers={"Authorization": wrong})
    call("POST", "/v1/interviews", json={"candidate": {}}, headers=wr)
    call("POST", "/v1/interviews", content=b"{not json", headers=wr)
    call("POST", "/v1/interviews", content=b"\xff\xfe", headers=wr)
    call("POST", "/v1/interviews", json={"candidate": {"external_id": "c"}}, headers=rd)
    call("GET", "/v1/deliveries", headers=wr)
    call("GET", "/v1/nowhere", headers=rd)
    call("DELETE", "/v1/interviews", headers=rd)
    call("GET", f"/v1/interviews/{uuid.uuid4()}", headers=rd)
    call("GET", "/v1/commitments", params={"cursor": admin}, headers=rd)

    # Signed deliveries with the real secrets, then the same with bad signatures.
    for secret in WEBHOOK_SECRETS["acme-ats"]:
        body = event_body(
            "candidate.contacted",
            now(),
            {"interview_external_id": "int-1", "direction": "outbound", "channel": "email"},
        )
        headers = standard_headers(body, secret)
        sent_signatures |= {headers["webhook-signature"], headers["webhook-signature"][3:]}
        call("POST", "/v1/events/acme-ats", content=body, headers=headers)
        call("POST", "/v1/events/acme-ats", content=body + b" ", headers=headers)
        stale = standard_headers(body, secret, timestamp=int(time.time()) - 3600)
        sent_signatures.add(stale["webhook-signature"][3:])
        call("POST", "/v1/events/acme-ats", content=body, headers=stale)
    greenhouse = json.dumps({"action": "ping", "payload": {}}).encode()
    headers = greenhouse_headers(greenhouse, WEBHOOK_SECRETS["greenhouse"][0], "evt-1")
    sent_signatures.add(headers["Signature"].split(" ")[1])
    call("POST", "/v1/webhooks/greenhouse", content=greenhouse, headers=headers)
    call("POST", "/v1/webhooks/greenhouse", content=greenhouse + b" ", headers=headers)
    ashby = json.dumps({"action": "ping", "data": {}}).encode()
    headers = ashby_headers(ashby, WEBHOOK_SECRETS["ashby"][0])
    sent_signatures.add(headers["Ashby-Signature"].split("=")[1])
    call("POST", "/v1/webhooks/ashby", content=ashby, headers=headers)
    call("POST", "/v1/webhooks/ashby", content=b"{}", headers=headers)
    lever = lever_sign({"event": "candidateHired", "data": {}}, WEBHOOK_SECRETS["lever"][0])
    sent_signatures.add(json.loads(lever)["signature"])
    call("POST", "/v1/webhooks/lever", content=lever, headers={"content-type": "application/json"})
    tampered = lever.replace(b'"token": "', b'"token": "x')
    call("POST", "/v1/webhooks/lever", content=tampered)
    call("POST", "/v1/events/nobody", content=b"{}", headers=standard_headers(b"{}", "whsec_eA=="))
    deliveries = call("GET", "/v1/deliveries", headers=adm).json()["items"]
    for delivery in deliveries:
        call("POST", f"/v1/deliveries/{delivery['id']}/replay", headers=adm)
    call("GET", "/metrics")
    return {admin, writer, reader, wrong}, sent_signatures


@pytest.mark.one_database("what the logs and answers carry, not how rows are stored")
def test_no_secret_reaches_a_log_line_or_an_answer(
    client: TestClient, caplog: pytest.LogCaptureFixture, json_log: io.StringIO
) -> None:
    caplog.set_level(logging.DEBUG)
    admin, writer, reader = (make_key(s, name=s.value) for s in KEY_SCOPES)
    call = Recorder(client)
    keys, signatures = _scenario(call, admin, writer, reader)

    codes = {response.status_code for response in call.responses}
    assert {200, 201, 202, 401, 403, 404, 405, 409, 412, 422, 428} <= codes
    secrets = keys | signatures
    for values in WEBHOOK_SECRETS.values():
        for secret in values:
            secrets |= _secret_forms(secret)
    logs = [json_log.getvalue()] + [
        f"{record.getMessage()} {record.exc_text or ''} {record.__dict__}"
        for record in caplog.records
        if _service_records(record)
    ]
    assert len(json_log.getvalue().splitlines()) >= len(call.responses)
    answers = [f"{r.headers} {r.text}" for r in call.responses]
    for secret in secrets:
        for line in logs:
            assert secret not in line, f"a secret is logged: {line[:300]}"
        for answer in answers:
            assert secret not in answer, f"a secret is answered: {answer[:300]}"


@pytest.mark.one_database("the error handler, before and after any query")
def test_error_bodies_never_carry_a_stack_trace(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, writer, reader = (make_key(s, name=s.value) for s in KEY_SCOPES)
    call = Recorder(client)
    _scenario(call, admin, writer, reader)

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom in /work/main/app/secret_module.py line 12")

    monkeypatch.setattr(queries, "interview_detail", explode)
    call("GET", f"/v1/interviews/{uuid.uuid4()}", headers={"Authorization": f"Bearer {reader}"})
    assert call.responses[-1].status_code == 500

    errors = [r for r in call.responses if r.status_code >= 400]
    assert len(errors) > 20
    for response in errors:
        assert response.headers["content-type"] == PROBLEM, response.text
        problem = response.json()
        assert {"type", "title", "status", "detail", "instance"} <= set(problem)
        for marker in ("Traceback", 'File "', ".py", "/work/", "site-packages", "boom"):
            assert marker not in response.text, response.text


# Request bodies over the limit ----------------------------------------------------------


def _drive(
    path: str, headers: list[tuple[bytes, bytes]], chunks: int, chunk: int = 64 * 1024
) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """Sends ``chunks`` body messages to the app; returns status, headers, body, bytes taken."""
    app = create_app()
    taken = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal taken
        if taken >= chunks * chunk:
            return {"type": "http.disconnect"}
        taken += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": taken < chunks * chunk}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, taken


@pytest.mark.parametrize("path", ["/v1/interviews", "/v1/events/acme-ats"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.one_database("refused before the body is read")
def test_bodies_over_one_mebibyte_are_refused_before_being_read_whole(
    database_url: str, path: str, declared: bool
) -> None:
    token = make_key(Scope.admin, name="admin").encode()
    headers = [(b"authorization", b"Bearer " + token)]
    if declared:
        headers.append((b"content-length", str(2 * MIB).encode()))
    status, answer_headers, body, taken = _drive(path, headers, chunks=32)  # 2 MiB
    assert status == 413
    assert answer_headers[b"content-type"] == PROBLEM.encode()
    problem = json.loads(body)
    assert problem["status"] == 413
    assert problem["type"] == "https://nextstep.dev/problems/payload-too-large"
    assert problem["instance"] == path
    # Refused on its declared length before reading anything, or as soon as it passed 1 MiB.
    assert taken == 0 if declared else MIB < taken <= MIB + 64 * 1024


@pytest.mark.one_database("refused before the body is read")
def test_chunked_body_over_the_limit_is_413_through_http(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(32):
            yield b"x" * (64 * 1024)

    response = client.post("/v1/interviews", content=chunks(), headers=admin_headers)
    assert "content-length" not in response.request.headers
    sized = client.post("/v1/interviews", content=b"x" * (2 * MIB), headers=admin_headers)
    assert sized.request.headers["content-length"] == "2097152"
    # The same problem whether the limit is found on the declared length or while reading.
    for answer in (response, sized):
        assert answer.status_code == 413
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json()["type"] == "https://nextstep.dev/problems/payload-too-large"
