"""Streams list results as CSV: a header row, then every matching row, page by page."""

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

CSV_MEDIA_TYPE = "text/csv"
CSV_PAGE = 500
# A list operation's CSV answer, for its OpenAPI `responses`.
CSV_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page of items; with `Accept: text/csv`, every matching row as CSV "
        "(a header row, then one row per item, id first; no pagination).",
        "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}


def wants_csv(accept: str | None) -> bool:
    return accept is not None and CSV_MEDIA_TYPE in accept.lower()


@cache  # asked for every field of every row of a stream
def _nested(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The model a field holds, when it holds exactly one (its columns are spread out)."""
    info = model.model_fields.get(name)
    annotation = info.annotation if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _columns(model: type[BaseModel], prefix: str = "") -> list[str]:
    names: list[str] = []
    for name in model.model_fields:
        nested = _nested(model, name)
        if nested is not None:
            names.extend(_columns(nested, f"{prefix}{name}_"))
        else:
            names.append(prefix + name)
    return names


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV
# injection"); names and actions come from outside (an ATS), so such text is written
# with a leading apostrophe. Numbers are not text and stay as they are.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _flatten(
    data: dict[str, Any], prefix: str = "", model: type[BaseModel] | None = None
) -> dict[str, Any]:
    """One CSV row: nested models spread into columns, other lists and mappings as JSON.

    Without ``model`` every mapping is taken for a nested model.
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        nested = _nested(model, key) if model is not None else None
        if isinstance(value, dict) and (model is None or nested is not None):
            flat.update(_flatten(value, f"{prefix}{key}_", nested))
        elif isinstance(value, list | dict):
            flat[prefix + key] = _cell(json.dumps(value, separators=(",", ":")))
        else:
            flat[prefix + key] = "" if value is None else _cell(value)
    return flat


def csv_columns(model: type[BaseModel]) -> list[str]:
    """The columns of ``model``'s rows: ``id`` first, nested models spread out."""
    columns = _columns(model)
    columns.remove("id")
    columns.insert(0, "id")
    return columns


def write_rows(writer: "csv.DictWriter[str]", model: type[BaseModel], items: Iterable[Any]) -> None:
    """Each item (a model, or a dict shaped like one) as one row; the same cells either way."""
    for item in items:
        writer.writerow(_flatten(to_jsonable_python(item), model=model))


def csv_response(
    model: type[BaseModel],
    fetch_page: Callable[[str | None], tuple[list[Any], str | None]],
    filename: str,
) -> StreamingResponse:
    """Every row that ``fetch_page`` yields across all its pages, as one CSV stream.

    ``fetch_page(cursor)`` must open its own session: the stream outlives the request's.
    """
    columns = csv_columns(model)

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        cursor: str | None = None
        while True:
            items, cursor = fetch_page(cursor)
            write_rows(writer, model, items)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if cursor is None:
                return

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )
