"""Prints the OpenAPI document the app serves (`make openapi` writes it to openapi/)."""

import json

from app.main import create_app


def render() -> str:
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")  # noqa: T201
