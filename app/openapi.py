"""The OpenAPI document: what FastAPI generates, made precise for generated clients.

`nextstep openapi` (``make openapi``) prints it to openapi/openapi.json, which a test holds
to the app.
"""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import TypeAdapter

from app.errors import PROBLEM_JSON

REF_TEMPLATE = "#/components/schemas/{model}"
_NULL = {"type": "null"}


def component_schemas(named: Mapping[str, Any]) -> dict[str, Any]:
    """Component schemas for types that no route parses (bodies verified raw), by name."""
    schemas: dict[str, Any] = {}
    for name, annotation in named.items():
        schema = TypeAdapter(annotation).json_schema(ref_template=REF_TEMPLATE)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    for schema in schemas.values():
        # As FastAPI writes the models it shares with these: no `default: null`.
        for field in schema.get("properties", {}).values():
            if field.get("default", ...) is None:
                del field["default"]
    return schemas


def _not_nullable(parameter: dict[str, Any]) -> None:
    """An optional parameter is left out, never null: HTTP has no null to send."""
    schema = parameter.get("schema", {})
    members = schema.get("anyOf")
    if parameter.get("required") or not members or _NULL not in members:
        return
    rest = [member for member in members if member != _NULL]
    del schema["anyOf"]
    if schema.get("default", ...) is None:
        del schema["default"]
    if len(rest) == 1:
        schema.update(rest[0])
    else:
        schema["anyOf"] = rest


def refine(document: dict[str, Any], extra_schemas: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with ``extra_schemas`` in its components, optional parameters not
    nullable, and an empty ``security`` on the operations that need no API key."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in extra_schemas.items():
        if schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are named {name}")
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                _not_nullable(parameter)
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                # A route's `model` adds application/json; errors are only problem+json.
                if status[0] in "45" and PROBLEM_JSON in content:
                    content.pop("application/json", None)
            # Public and signature-checked operations: no bearer key.
            operation.setdefault("security", [])
    return document


def install(app: FastAPI, extra_schemas: Mapping[str, Any]) -> None:
    """Serve the refined document at /openapi.json (and to /docs)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = refine(generate(), extra_schemas)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point
