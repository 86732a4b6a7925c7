"""openapi/openapi.json is what the app serves."""

from pathlib import Path

from app.openapi import render

SNAPSHOT = Path(__file__).parent.parent / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_app() -> None:
    assert SNAPSHOT.read_text() == render(), "run `make openapi` and commit the result"


def test_every_operation_has_a_stable_id_and_declares_errors() -> None:
    import json

    document = json.loads(render())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("operationId"), f"{method} {path} has no operationId"
            if path.startswith("/v1/"):
                codes = set(operation["responses"])
                assert {"401", "422"} <= codes or path.startswith("/v1/events"), (method, path)
