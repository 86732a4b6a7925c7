"""Fuzzing: schemathesis over the whole OpenAPI document, hypothesis over signature checks.

The counts follow the hypothesis profile (tests/conftest.py): `make test` (ci) sends 10
fuzzed cases per operation besides every example and coverage case, and runs 10 stateful
scenarios; `make fuzz` (fuzz) 500 of each. Nothing is built at import: the app and its
schema come from a fixture, when a test here runs. The behaviour under test is the HTTP
contract, the same on either database: these tests run on one (marked one_database), and
`make fuzz` runs them on both.
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeAlias

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis.core.failures import Failure
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case as GenericCase
from schemathesis.generation.stateful.state_machine import APIStateMachine
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.schemas import APIOperation, BaseSchema
from sqlalchemy import func
from sqlmodel import select

from app import db
from app.auth import KEY_PREFIX, hash_key
from app.main import create_app
from app.models import ApiKey, Delivery, Scope, utcnow
from app.owners.schemas import OWNER_ID_PATTERN
from tests.conftest import WEBHOOK_SECRETS, empty_tables
from tests.signing import (
    ashby_headers,
    event_body,
    greenhouse_headers,
    lever_sign,
    standard_headers,
)

# A sixteenth of the profile's count: each case is a request with its database work.
EXAMPLES = max(2, hypothesis.settings().max_examples // 16)
# The admin key the fuzzer sends is fixed for the session; each test stores its hash.
ADMIN_TOKEN = KEY_PREFIX + secrets.token_urlsafe(32)


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"HTTPBearer": {"bearer": ADMIN_TOKEN}}},
            "generation": {"mode": "all", "max-examples": EXAMPLES},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True},
            },
            # Every built-in check (max_response_time needs a limit and measures the machine).
            "checks": {"enabled": True},
            "operations": [
                {
                    "include-operation-id": "updateCommitment",
                    "checks": {
                        # A stale If-Match is answered 412 and a missing one 428 (RFC 6585): the
                        # schema cannot say which ETag is current, only that one is required.
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "403", "404", "409", "412"]
                        },
                        "missing_required_header": {
                            "expected-statuses": ["400", "401", "403", "422", "428"]
                        },
                    },
                },
                *(
                    {
                        # The same for calendars, policies and owners: a generated If-Match is
                        # stale (412); a missing one is 428 where PATCH requires it.
                        "include-operation-id": operation_id,
                        "checks": {
                            "positive_data_acceptance": {
                                "expected-statuses": ["2xx", "401", "403", "404", "409", "412"]
                            },
                            "missing_required_header": {
                                "expected-statuses": ["400", "401", "403", "422", "428"]
                            },
                        },
                    }
                    for operation_id in (
                        "updateCalendar",
                        "deleteCalendar",
                        "updateDeadlinePolicy",
                        "deleteDeadlinePolicy",
                        "updateEndpoint",
                        "deleteEndpoint",
                        "updateReminderRule",
                        "deleteReminderRule",
                        "putOwner",
                        "updateOwner",
                        "deleteOwner",
                    )
                ),
            ],
        }
    )


Case: TypeAlias = "GenericCase[APIOperation[Any, Any, Any, Any]]"

# Rules that JSON Schema cannot state, because they relate two fields or a field and the
# clock. A 422 citing one of them for schema-valid input is the API working as documented.
CROSS_FIELD_RULES = (
    "ends_at is earlier than starts_at",
    "cannot take effect before the commitment",  # was agreed, or its status last changed
    "is in the future",
    "is not in the future",  # a status link's expires_at
    "more than 180 days ahead",
    "is out of range once converted to UTC",
    # A PATCH must change something: one object of optional fields, so that generated clients
    # get one typed class, with "at least one" left to the server (and its description).
    "nothing to change",
    # E-mail: what would e-mail needs a server configured (the fuzzed app has none), and a
    # test e-mail or a digest needs an owner with an address.
    "NEXTSTEP_SMTP_URL is not set",
    "has no e-mail address",
    # Calendars and rules: what the engine's parsers refuse beyond the schema's patterns and
    # bounds (an interval that ends before it starts, a day that does not exist, a zone that
    # is no IANA name, a rule with two kinds or an `at` of the other kind).
    "its start must come before its end",
    "is not a time of day: HH:MM runs from",  # 24:00 ends an interval, never starts one
    "] overlap",
    "is not an IANA time zone name",
    "no public holidays known for",
    "is not a date as YYYY-MM-DD",
    "a rule has exactly one of",
    "rule takes only",
    ": at is",
    "a policy needs a due_rule, a default_step or both",
    # Rules that depend on what is stored: the calendars and the policies.
    "No calendar with id",
    "no deadline policy applies",
    "has no open time to count this rule on",
    # The report's window: `from` before `to`, at most five years, either defaulting to the
    # clock (`to` now, `from` 30 days before `to`).
    "must be earlier than to",
    "(five years) before to",
    "leaves no room for the default 30-day window",
    # Endpoints: where a URL's host is a link-local or unspecified address, or its IPv6
    # brackets hold no address; reminder rules: an escalation names who it goes to, and
    # only an escalation does; an offset is at most a year.
    "is a link-local address",
    "is an unspecified address",
    "is not a valid URL",
    "needs `to`",
    "only next_step.escalated takes `to`",
    "must be at most a year before or after the due time",
)


def map_case(context: schemathesis.HookContext, case: Case) -> Case:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    # A cursor is an opaque token the server issued: no schema can generate a valid one
    # (tests/test_lists.py covers cursors); malformed ones are still sent by negative cases.
    if case.query and "cursor" in case.query:
        del case.query["cursor"]
    # The contract refuses an Idempotency-Key reused with another body (422); generated
    # cases reuse values such as "0" across bodies, so each valid case gets a fresh key.
    for name in list(case.headers or {}):
        if name.lower() == "idempotency-key":
            case.headers[name] = f"{str(case.headers[name])[:250]}-{uuid.uuid4().hex}"
    return case


def filter_failure(
    context: schemathesis.HookContext,
    failure: Failure,
    case: Case,
    response: schemathesis.Response,
) -> bool:
    if isinstance(failure, RejectedPositiveData) and response.status_code == 422:
        # An inferred link that reads a list (timeline items' nullable delivery_id for
        # replayDelivery) can pick a null and send "None" as the id: not generated data.
        if None in (case.path_parameters or {}).values():
            return False
        # A step's owner id may be any text; the directory's ids are narrower. A link from a
        # step to `/v1/owners/{owner_id}/…` can carry one the directory refuses (422).
        owner_id = (case.path_parameters or {}).get("owner_id")
        if isinstance(owner_id, str) and not re.fullmatch(OWNER_ID_PATTERN, owner_id):
            return False
        # Case aside: a PATCH's detail says "A policy needs ...", the rule "a policy needs ...".
        detail = str(response.json().get("detail", "")).lower()
        return not any(rule.lower() in detail for rule in CROSS_FIELD_RULES)
    return True


# The operations in four groups of about 16, by tag: each group is a test item of its own, so
# that parallel workers share the fuzzing instead of one worker running all of it.
TAG_GROUPS = {
    "outbound": ["outbound"],
    "commitments": ["commitments"],
    "deadlines-reports-status": ["deadlines", "reports", "status links"],
    "owners-events-operations": ["owners", "calendar feeds", "email", "events", "operations"],
}


@pytest.fixture(scope="session")
def whole_api_schema() -> BaseSchema:
    """The OpenAPI document of the app, as schemathesis reads it, with the hooks above."""
    loaded: BaseSchema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(), config=_config()
    )
    loaded.hook(map_case)
    loaded.hook(filter_failure)
    return loaded


@pytest.fixture(scope="session", params=sorted(TAG_GROUPS))
def api_schema(request: pytest.FixtureRequest, whole_api_schema: BaseSchema) -> BaseSchema:
    """One group of operations of the document."""
    return whole_api_schema.include(tag=TAG_GROUPS[request.param])


def test_the_tag_groups_cover_every_operation(whole_api_schema: BaseSchema) -> None:
    grouped = {tag for tags in TAG_GROUPS.values() for tag in tags}
    for result in whole_api_schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        assert set(operation.tags or []) & grouped, operation.label


schema = schemathesis.pytest.from_fixture("api_schema")


def _store_admin_key() -> None:
    with db.new_session(write=True) as session:
        session.add(
            ApiKey(
                name="fuzz",
                prefix=ADMIN_TOKEN[:12],
                key_hash=hash_key(ADMIN_TOKEN),
                scopes=[Scope.admin.value],
                created_at=utcnow(),
            )
        )
        session.commit()


@pytest.fixture
def fuzz_admin_key(database_url: str) -> None:
    _store_admin_key()


@pytest.fixture
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy loader reads and writes ``Node._nodeid``, which pytest 9.2
    no longer has; a plain attribute of that name is all it needs (to label operations)."""
    request.node._nodeid = request.node.nodeid


# Examples share the test's database: state builds up as it would in a running service.
@pytest.mark.one_database("the HTTP contract; `make fuzz` runs it on both databases")
@pytest.mark.usefixtures("fuzz_admin_key", "node_id_for_schemathesis")
@schema.parametrize()
@hypothesis.settings(
    # Loaded from a fixture, the schema's generation settings give way to the test's: the count
    # is stated here too, or the profile's (160 under `ci`) would apply to every operation.
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.filter_too_much,
    ],
)
def test_every_operation_conforms_to_the_openapi_document(case: Case) -> None:
    case.call_and_validate()


def test_links_chain_create_get_patch_complete(whole_api_schema: BaseSchema) -> None:
    operations = {
        operation["operationId"]: operation
        for path in whole_api_schema.raw_schema["paths"].values()
        for operation in path.values()
    }

    def links(operation_id: str, status: str) -> dict[str, dict[str, dict[str, str]]]:
        links: dict[str, dict[str, dict[str, str]]] = operations[operation_id]["responses"][status][
            "links"
        ]
        return links

    created = links("createInterview", "201")
    assert {"getInterview", "getInterviewTimeline", "createCommitment", "addContact"} <= set(
        created
    )
    assert created["createCommitment"]["parameters"] == {"interview_id": "$response.body#/id"}
    step = links("createCommitment", "201")
    assert {"getCommitment", "updateCommitment", "completeCommitment", "cancelCommitment"} <= set(
        step
    )
    assert step["updateCommitment"]["parameters"] == {
        "commitment_id": "$response.body#/id",
        "header.If-Match": "$response.header.ETag",
    }


@pytest.mark.one_database("the HTTP contract; `make fuzz` runs it on both databases")
def test_stateful_sequences_conform_to_the_openapi_document(
    database_url: str, whole_api_schema: BaseSchema
) -> None:
    def setup(_machine: object) -> None:
        # Each scenario starts from an empty database, so that the steps hypothesis chooses
        # (which depend on earlier answers) are the same whenever a scenario is drawn again.
        empty_tables(database_url)
        _store_admin_key()

    machine: type[APIStateMachine] = type(
        "FreshDatabaseScenarios", (whole_api_schema.as_state_machine(),), {"setup": setup}
    )
    machine.run(
        settings=hypothesis.settings(
            max_examples=EXAMPLES,
            # Long enough to go create interview -> agree a step -> GET -> PATCH -> complete
            # among the many other links schemathesis infers.
            stateful_step_count=40,
            # Generation only, as schemathesis runs it.
            phases=[hypothesis.Phase.generate],
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


# Signature checks --------------------------------------------------------------------------
#
# Every request below is refused: its signature is missing, garbled, duplicated, made with
# the wrong secret, too old or too new, or no longer covers the (tampered) body.

CANONICAL = "/v1/events/acme-ats"
SIGNED_PATHS = (
    CANONICAL,
    "/v1/webhooks/greenhouse",
    "/v1/webhooks/lever",
    "/v1/webhooks/ashby",
)
TOLERANCE = timedelta(minutes=5)
LEVER_MAX_AGE = timedelta(hours=72)
HEX = "0123456789abcdef"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

Headers = list[tuple[str, bytes]]

# Header text as it can reach the server: latin-1, no control characters.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
random_bytes = st.binary(max_size=300)
wrong_secret = st.sampled_from(
    ["whsec_" + base64.b64encode(b"not-the-secret").decode(), "not-the-secret"]
)


@dataclass
class Attempt:
    """A request to send, and what the mutation did (shown when the test fails)."""

    path: str
    body: bytes
    headers: Headers
    mutations: list[str] = field(default_factory=list)


def _encode(headers: dict[str, str]) -> Headers:
    return [(name, value.encode("latin-1")) for name, value in headers.items()]


def _replace(headers: Headers, name: str, value: bytes) -> Headers:
    return [(n, value if n.lower() == name else v) for n, v in headers]


def _drop(headers: Headers, name: str) -> Headers:
    return [(n, v) for n, v in headers if n.lower() != name]


def _value(headers: Headers, name: str) -> str:
    return next(v for n, v in headers if n.lower() == name).decode("latin-1")


def _flip(draw: st.DrawFn, text: str, alphabet: str, positions: int) -> str:
    """``text`` with one of its first ``positions`` characters replaced by a different one.

    Hex digests are compared case-insensitively, base64 is not: ``alphabet`` says which.
    """
    index = draw(st.integers(0, positions - 1))
    original = text[index] if alphabet == B64 else text[index].lower()
    replacement = draw(st.sampled_from([c for c in alphabet if c != original]))
    return text[:index] + replacement + text[index + 1 :]


def _tamper(draw: st.DrawFn, body: bytes) -> bytes:
    choice = draw(st.sampled_from(["append", "flip", "truncate", "replace"]))
    if choice == "append":
        return body + draw(st.binary(min_size=1, max_size=20))
    if choice == "flip":
        index = draw(st.integers(0, len(body) - 1))
        return body[:index] + bytes([body[index] ^ draw(st.integers(1, 255))]) + body[index + 1 :]
    if choice == "truncate":
        return body[: draw(st.integers(0, len(body) - 1))]
    return draw(random_bytes.filter(lambda b: b != body))


def _duplicate(draw: st.DrawFn, headers: Headers, name: str) -> Headers:
    copy = draw(st.sampled_from(["same", "other"]))
    value = (
        next(v for n, v in headers if n.lower() == name)
        if copy == "same"
        else draw(header_text).encode("latin-1")
    )
    extra = (name, value)
    return [*headers, extra] if draw(st.booleans()) else [extra, *headers]


def _canonical_event() -> bytes:
    return event_body(
        "interview.scheduled",
        utcnow(),
        {"external_id": f"int-{uuid.uuid4().hex[:8]}", "candidate": {"external_id": "cand-1"}},
    )


@st.composite
def canonical_attempts(draw: st.DrawFn) -> Attempt:
    body = _canonical_event()
    secret = draw(st.sampled_from(WEBHOOK_SECRETS["acme-ats"]))
    headers = _encode(standard_headers(body, secret))
    signed = ("webhook-id", "webhook-timestamp", "webhook-signature")
    kind = draw(
        st.sampled_from(
            [
                "missing",
                "garbled",
                "flipped",
                "version",
                "duplicated",
                "tampered",
                "shifted",
                "respelled-timestamp",
                "wrong-secret",
                "random",
            ]
        )
    )
    attempt = Attempt(CANONICAL, body, headers, [kind])
    if kind == "missing":
        for name in draw(st.sets(st.sampled_from(signed), min_size=1)):
            attempt.headers = _drop(attempt.headers, name)
    elif kind == "garbled":
        name = draw(st.sampled_from(["webhook-timestamp", "webhook-signature"]))
        value = draw(header_text.filter(lambda v: v != _value(headers, name)))
        attempt.headers = _replace(headers, name, value.encode("latin-1"))
    elif kind == "flipped":
        signature = _value(headers, "webhook-signature")
        version, _, encoded = signature.partition(",")
        # The last base64 characters may carry padding bits only: flip one of the first 40.
        flipped = _flip(draw, encoded, B64, 40)
        attempt.headers = _replace(headers, "webhook-signature", f"{version},{flipped}".encode())
    elif kind == "version":
        signature = _value(headers, "webhook-signature")
        version = draw(st.sampled_from(["v2", "V1", "v1a", "", "v1 "]))
        new = f"{version},{signature.partition(',')[2]}".encode()
        attempt.headers = _replace(headers, "webhook-signature", new)
    elif kind == "duplicated":
        attempt.headers = _duplicate(draw, headers, draw(st.sampled_from(signed)))
    elif kind == "tampered":
        attempt.body = _tamper(draw, body)
    elif kind == "shifted":
        seconds = draw(st.integers(int(TOLERANCE.total_seconds()) + 2, 10**9))
        stamp = int(time.time()) + draw(st.sampled_from([-1, 1])) * seconds
        attempt.headers = _encode(standard_headers(body, secret, timestamp=max(stamp, 0)))
    elif kind == "respelled-timestamp":
        sent = _value(headers, "webhook-timestamp")
        spelled = draw(st.sampled_from([f" {sent}", f"+{sent}", f"{sent}.0", f"0{sent}"]))
        attempt.headers = _replace(headers, "webhook-timestamp", spelled.encode())
    elif kind == "wrong-secret":
        attempt.headers = _encode(standard_headers(body, draw(wrong_secret)))
    else:
        attempt.body = draw(random_bytes)
        attempt.headers = [(name, draw(header_text).encode("latin-1")) for name in signed]
    return attempt


def _hex_signed(
    draw: st.DrawFn,
    path: str,
    header: str,
    prefix: str,
    secret: str,
    extra: tuple[str, ...] = (),
) -> Attempt:
    body = json.dumps({"action": "candidate_stage_change", "payload": {"id": 1}}).encode()

    def signed(message: bytes, key: str = secret) -> str:
        return prefix + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()

    headers: Headers = [(header, signed(body).encode()), ("content-type", b"application/json")]
    kind = draw(
        st.sampled_from(
            [
                "missing",
                "garbled",
                "flipped",
                "truncated",
                "scheme",
                "non-ascii",
                "duplicated",
                "tampered",
                "wrong-secret",
                "random",
            ]
        )
    )
    attempt = Attempt(path, body, headers, [kind])
    name = header.lower()
    digest = signed(body)[len(prefix) :]
    if kind == "missing":
        attempt.headers = _drop(headers, name)
    elif kind == "garbled":
        value = draw(header_text.filter(lambda v: v.strip().lower() != signed(body)))
        attempt.headers = _replace(headers, name, value.encode("latin-1"))
    elif kind == "flipped":
        attempt.headers = _replace(headers, name, (prefix + _flip(draw, digest, HEX, 64)).encode())
    elif kind == "truncated":
        cut = digest[: draw(st.integers(0, 63))]
        attempt.headers = _replace(headers, name, (prefix + cut).encode())
    elif kind == "scheme":
        scheme = draw(st.sampled_from(["sha1 ", "sha512=", "sha256:", "md5 ", ""]))
        attempt.headers = _replace(headers, name, (scheme + digest).encode())
    elif kind == "non-ascii":
        value = prefix + digest[:-1] + draw(st.sampled_from(["é", "ÿ", "\xa0"]))
        attempt.headers = _replace(headers, name, value.encode("latin-1"))
    elif kind == "duplicated":
        twice = draw(st.sampled_from((header, *extra)))
        if twice == header:
            attempt.headers = _duplicate(draw, headers, name)
        else:  # e.g. Greenhouse-Event-ID, which names the delivery
            attempt.headers = [*headers, (twice, b"evt-1"), (twice, draw(header_text).encode())]
    elif kind == "tampered":
        attempt.body = _tamper(draw, body)
    elif kind == "wrong-secret":
        key = draw(wrong_secret)
        attempt.headers = _replace(headers, name, signed(body, key).encode())
    else:
        attempt.body = draw(random_bytes)
        attempt.headers = [(header, draw(header_text).encode("latin-1"))]
    return attempt


@st.composite
def greenhouse_attempts(draw: st.DrawFn) -> Attempt:
    secret = WEBHOOK_SECRETS["greenhouse"][0]
    extra = ("Greenhouse-Event-ID",)
    return _hex_signed(draw, "/v1/webhooks/greenhouse", "Signature", "sha256 ", secret, extra)


@st.composite
def ashby_attempts(draw: st.DrawFn) -> Attempt:
    secret = WEBHOOK_SECRETS["ashby"][0]
    return _hex_signed(draw, "/v1/webhooks/ashby", "Ashby-Signature", "sha256=", secret)


@st.composite
def lever_attempts(draw: st.DrawFn) -> Attempt:
    secret = WEBHOOK_SECRETS["lever"][0]
    payload = {"event": "candidateStageChange", "data": {"candidateId": "c-1"}}
    now_ms = int(time.time() * 1000)
    token = uuid.uuid4().hex
    signed = json.loads(lever_sign(payload, secret, triggered_at_ms=now_ms, token=token))
    kind = draw(
        st.sampled_from(
            [
                "missing",
                "garbled",
                "flipped",
                "non-ascii",
                "token",
                "triggered",
                "too-old",
                "too-new",
                "types",
                "wrong-secret",
                "not-an-object",
                "random",
            ]
        )
    )
    headers: Headers = [("content-type", b"application/json")]
    body = dict(signed)
    if kind == "missing":
        for name in draw(
            st.sets(st.sampled_from(["token", "triggeredAt", "signature"]), min_size=1)
        ):
            del body[name]
    elif kind == "garbled":
        body["signature"] = draw(st.text(max_size=80).filter(lambda v: v != signed["signature"]))
    elif kind == "flipped":
        body["signature"] = _flip(draw, signed["signature"], HEX, 64)
    elif kind == "non-ascii":
        body["signature"] = signed["signature"][:-1] + draw(st.sampled_from(["é", "ǿ", "😀"]))
    elif kind == "token":
        body["token"] = draw(st.text(min_size=1, max_size=40).filter(lambda t: t != token))
    elif kind == "triggered":
        body["triggeredAt"] = now_ms + draw(st.integers(1, 10**6))
    elif kind in ("too-old", "too-new"):
        margin = draw(st.integers(60_000, 10**10))
        if kind == "too-old":
            moment = now_ms - int(LEVER_MAX_AGE.total_seconds() * 1000) - margin
        else:
            moment = now_ms + int(TOLERANCE.total_seconds() * 1000) + margin
        body = json.loads(lever_sign(payload, secret, triggered_at_ms=max(moment, 1), token=token))
    elif kind == "types":
        name = draw(st.sampled_from(["token", "triggeredAt", "signature"]))
        body[name] = draw(
            st.one_of(
                st.none(),
                st.booleans(),
                st.floats(allow_nan=False),
                st.just(""),
                st.just(str(body[name])) if name == "triggeredAt" else st.just(123),
                st.lists(st.integers(), max_size=2),
            )
        )
    elif kind == "wrong-secret":
        body = json.loads(lever_sign(payload, draw(wrong_secret), triggered_at_ms=now_ms))
    elif kind == "not-an-object":
        raw = json.dumps(draw(st.sampled_from([[signed], signed["signature"], 1, None])))
        return Attempt("/v1/webhooks/lever", raw.encode(), headers, [kind])
    else:
        return Attempt("/v1/webhooks/lever", draw(random_bytes), headers, [kind])
    return Attempt("/v1/webhooks/lever", json.dumps(body).encode(), headers, [kind])


def _stored_deliveries() -> int:
    with db.new_session() as session:
        return session.exec(select(func.count()).select_from(Delivery)).one()


def _assert_refused(client: TestClient, attempt: Attempt, allowed: set[int]) -> None:
    headers = [(name.encode("latin-1"), value) for name, value in attempt.headers]
    response = client.post(attempt.path, content=attempt.body, headers=headers)
    assert response.status_code in allowed, (attempt, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert _stored_deliveries() == 0, attempt


# Each example is one refused request: ten times the schema's count.
SIGNATURE_SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES * 10,
    deadline=None,
    database=None,
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,
        hypothesis.HealthCheck.too_slow,
    ],
)
ATTEMPTS: dict[str, Callable[[], st.SearchStrategy[Attempt]]] = {
    "canonical": canonical_attempts,
    "greenhouse": greenhouse_attempts,
    "lever": lever_attempts,
    "ashby": ashby_attempts,
}


@pytest.mark.one_database("signatures are checked before anything is stored")
@pytest.mark.parametrize("sender", sorted(ATTEMPTS))
def test_bad_signatures_are_refused_and_never_stored(client: TestClient, sender: str) -> None:
    @SIGNATURE_SETTINGS
    @hypothesis.given(attempt=ATTEMPTS[sender]())
    def refused(attempt: Attempt) -> None:
        _assert_refused(client, attempt, {400, 401})

    refused()


@pytest.mark.one_database("signatures are checked before anything is stored")
@SIGNATURE_SETTINGS
@hypothesis.given(
    path=st.sampled_from(SIGNED_PATHS),
    body=random_bytes,
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "webhook-id",
                    "webhook-timestamp",
                    "webhook-signature",
                    "signature",
                    "ashby-signature",
                    "greenhouse-event-id",
                    "content-type",
                    "x-anything",
                ]
            ),
            header_text.map(lambda v: v.encode("latin-1")),
        ),
        max_size=6,
    ),
)
def test_random_requests_to_signed_endpoints_are_refused(
    client: TestClient, path: str, body: bytes, headers: Headers
) -> None:
    _assert_refused(client, Attempt(path, body, headers, ["random"]), {400, 401})


@pytest.mark.one_database("signatures are checked before anything is stored")
@SIGNATURE_SETTINGS
@hypothesis.given(
    source=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"),
        min_size=1,
        max_size=40,
    ).filter(lambda s: s not in WEBHOOK_SECRETS and s not in (".", "..")),
    attempt=canonical_attempts(),
)
def test_an_unknown_source_is_404_whatever_the_signature(
    client: TestClient, source: str, attempt: Attempt
) -> None:
    attempt.path = f"/v1/events/{source}"
    _assert_refused(client, attempt, {404})


# What the fuzzing found, kept as plain regressions --------------------------------------


def test_nul_characters_are_refused_not_a_server_error(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    """PostgreSQL text cannot hold NUL: every way in answers 422 (it used to be a 500)."""
    body = {"candidate": {"external_id": "cand\u0000"}, "stage": "first\u0000"}
    created = client.post("/v1/interviews", json=body, headers=admin_headers)
    assert created.status_code == 422
    assert {tuple(e["loc"]) for e in created.json()["errors"]} == {
        ("body", "candidate", "external_id"),
        ("body", "stage"),
    }
    listed = client.get("/v1/interviews", params={"job_id": "a\u0000"}, headers=admin_headers)
    assert listed.status_code == 422

    event = event_body("weird\u0000type", utcnow(), {})
    signed = standard_headers(event, WEBHOOK_SECRETS["acme-ats"][0])
    assert client.post(CANONICAL, content=event, headers=signed).status_code == 422
    payload = json.dumps({"action": "hire_candidate\u0000", "payload": {}}).encode()
    for path, headers in (
        ("/v1/webhooks/greenhouse", greenhouse_headers(payload, WEBHOOK_SECRETS["greenhouse"][0])),
        ("/v1/webhooks/ashby", ashby_headers(payload, WEBHOOK_SECRETS["ashby"][0])),
    ):
        assert client.post(path, content=payload, headers=headers).status_code == 422
    lever = lever_sign({"event": "candidateHired\u0000", "data": {}}, WEBHOOK_SECRETS["lever"][0])
    assert client.post("/v1/webhooks/lever", content=lever).status_code == 422
    # Signed but invalid: stored as rejected, for inspection and replay after a fix.
    with db.new_session() as session:
        results = session.exec(select(Delivery.result)).all()
    assert set(results) == {"rejected"}
    assert len(results) == 4


def test_instants_are_rfc_3339_text_only(client: TestClient, admin_headers: dict[str, str]) -> None:
    """Unix numbers and other spellings pydantic would take are not what the schema says."""
    for as_of in ("0.5", "1700000000", "2026-11-20T15:00Z", "2026-11-20"):
        response = client.get(
            "/v1/commitments/overdue/summary", params={"as_of": as_of}, headers=admin_headers
        )
        assert response.status_code == 422, as_of
    for min_overdue in ("86400", "10:00", "P1DT"):
        response = client.get(
            "/v1/commitments/overdue", params={"min_overdue": min_overdue}, headers=admin_headers
        )
        assert response.status_code == 422, min_overdue
    ok = client.get(
        "/v1/commitments/overdue",
        params={"as_of": "2026-11-20T15:00:00+01:00", "min_overdue": "PT36H"},
        headers=admin_headers,
    )
    assert ok.status_code == 200


def test_method_not_allowed_lists_the_methods_of_the_resource(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    cases = {
        ("OPTIONS", "/v1/interviews"): "GET, HEAD, POST",
        ("PATCH", "/v1/commitments/overdue"): "GET, HEAD",
        ("PUT", f"/v1/commitments/{uuid.uuid4()}"): "GET, HEAD, PATCH",
    }
    for (method, path), allow in cases.items():
        response = client.request(method, path, headers=admin_headers)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allow
        assert response.headers["content-type"] == "application/problem+json"


def test_a_body_that_is_not_utf8_is_422(client: TestClient, admin_headers: dict[str, str]) -> None:
    headers = {**admin_headers, "content-type": "application/json"}
    response = client.post("/v1/interviews", content=b"\xff\xfe{", headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"loc": ["body"], "msg": "JSON decode error"}]
