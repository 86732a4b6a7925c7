"""openapi/openapi.json is what the app serves."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
from hypothesis import strategies as st

from app.events.schemas import KNOWN_TYPES
from app.fields import iso_duration
from app.main import openapi_document

SNAPSHOT = Path(__file__).parent.parent / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_app() -> None:
    assert SNAPSHOT.read_text() == openapi_document(), "run `make openapi` and commit the result"


def test_every_operation_has_a_stable_id_and_declares_errors() -> None:
    document = json.loads(openapi_document())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("operationId"), f"{method} {path} has no operationId"
            if path.startswith("/v1/"):
                codes = set(operation["responses"])
                assert {"401", "422"} <= codes or path.startswith("/v1/events"), (method, path)


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(openapi_document())
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _properties(document: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = document["components"]["schemas"][name]["properties"]
    return properties


def _formats(schema: dict[str, Any]) -> set[str]:
    members = schema.get("anyOf", [schema])
    return {member["format"] for member in members if "format" in member}


def test_every_instant_and_duration_of_an_answer_states_its_format() -> None:
    document = _document()
    instants = 0
    for name in ("CommitmentOut", "InterviewDetail", "OverdueItem", "TimelineEntryOut"):
        for field, schema in _properties(document, name).items():
            if field.endswith(("_at", "_since", "_by")) and field != "owed_by":
                expected = "duration" if field == "overdue_by" else "date-time"
                assert _formats(schema) == {expected}, (name, field)
                instants += 1
    assert instants >= 20


def test_the_patch_body_is_one_object_of_optional_fields() -> None:
    schema = _document()["components"]["schemas"]["CommitmentPatch"]
    assert schema["type"] == "object"
    assert not {"anyOf", "oneOf", "allOf", "required"} & set(schema)
    assert set(schema["properties"]) == {
        "action",
        "owner",
        "owed_by",
        "channel",
        "due_at",
        "promised_by",
        "candidate_note",
        "reason",
    }
    assert schema["properties"]["owner"] == {"$ref": "#/components/schemas/Owner"}
    assert "at least one" in schema["description"]


def test_optional_parameters_are_not_nullable_and_csv_is_a_response_type() -> None:
    csv_lists = 0
    for method, path, operation in _operations(_document()):
        for parameter in operation.get("parameters", []):
            assert parameter["name"].lower() != "accept", (method, path)
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), (
                method,
                path,
                parameter["name"],
            )
        answer = json.dumps(operation["responses"].get("200", {}))
        # Every list but the admin's deliveries streams CSV.
        if "schemas/Page_" in answer and path != "/v1/deliveries":
            assert "text/csv" in operation["responses"]["200"]["content"], path
            csv_lists += 1
    # Six lists of main, calendars and deadline policies, endpoints, reminder rules, messages,
    # owners.
    assert csv_lists == 13


def test_events_declare_their_signature_headers_and_typed_bodies() -> None:
    document = _document()
    operation = document["paths"]["/v1/events/{source}"]["post"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    event = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert event["discriminator"]["propertyName"] == "type"
    assert set(event["discriminator"]["mapping"]) == KNOWN_TYPES
    assert "ignored" in event["description"]
    for path, header in (
        ("/v1/webhooks/greenhouse", "Signature"),
        ("/v1/webhooks/ashby", "Ashby-Signature"),
    ):
        parameters = document["paths"][path]["post"]["parameters"]
        assert {p["name"]: p["required"] for p in parameters}[header] is True


def test_every_operation_says_who_may_call_it_and_the_document_says_where() -> None:
    document = _document()
    assert document["servers"][0]["url"]
    assert document["info"]["license"]["name"]
    for method, path, operation in _operations(document):
        assert "security" in operation, (method, path)
        assert operation["tags"], (method, path)
        public = not path.startswith("/v1/") or path.startswith(("/v1/events", "/v1/webhooks"))
        assert (operation["security"] == []) == public, (method, path)
        assert any(code.startswith("4") for code in operation["responses"]), (method, path)


@hypothesis.given(seconds=st.integers(min_value=0, max_value=10**11))
def test_every_duration_answered_is_what_format_duration_allows(seconds: int) -> None:
    validator = jsonschema_rs.validator_for(
        {"type": "string", "format": "duration"}, validate_formats=True
    )
    text = iso_duration(timedelta(seconds=seconds))
    assert validator.is_valid(text), text


def test_every_tag_an_operation_uses_is_declared_with_a_description() -> None:
    document = _document()
    declared = {tag["name"]: tag.get("description") for tag in document.get("tags", [])}
    used = {tag for _m, _p, operation in _operations(document) for tag in operation["tags"]}
    assert used <= set(declared), used - set(declared)
    assert all(declared.values()), declared
    assert document["info"]["contact"]["name"]
