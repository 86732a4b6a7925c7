"""The pages an owner opens from an e-mail: a step's action page (/a/<token>), with its three
forms, and the one-click unsubscribe page (/u/<token>). HTML only, the status page's
headers, no JavaScript; not part of the API document."""

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.action_links import service, unsubscribe
from app.action_links.forms import Op, Refusal
from app.db import SessionDep, WriteSessionDep
from app.models import utcnow
from app.status_page.router import PAGE_HEADERS, not_found_page, page_templates

pages = APIRouter(include_in_schema=False)

_templates = page_templates(Path(__file__).parent / "templates")
# The three forms send a handful of fields: more than this is not a browser's form.
_MOST_FIELDS = 20


async def _form_fields(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as text fields, the first of each name. The
    body is within the app's size limit (BodySizeLimitMiddleware); anything that is not a
    form reads as no fields, which the page answers with 422."""
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=_MOST_FIELDS)
    except ValueError:
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


FormFields = Annotated[dict[str, str], Depends(_form_fields)]


def _html(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    body = _templates.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def _action_html(
    page: service.ActionPage,
    token: str,
    status_code: int = 200,
    *,
    done: Op | None = None,
    refusal: Refusal | None = None,
) -> HTMLResponse:
    return _html("action.html", status_code, page=page, token=token, done=done, refusal=refusal)


@pages.get("/a/{token}", response_class=HTMLResponse)
def action_page(session: SessionDep, token: str, done: str | None = None) -> HTMLResponse:
    """The step, and the forms that answer it; after an answer (``done``), its confirmation.
    Never changes anything."""
    page = service.action_page(session, token, utcnow())
    if page is None:
        return not_found_page()
    confirmed = Op(done) if done is not None and done in Op.__members__ else None
    return _action_html(page, token, done=confirmed)


@pages.post("/a/{token}", response_class=HTMLResponse)
def answer(session: WriteSessionDep, token: str, fields: FormFields) -> Response:
    """One form's answer: applied, then back to the page (303), which confirms it."""
    result = service.answer(session, token, fields, utcnow())
    if result is None:
        return not_found_page()
    if isinstance(result, service.Applied):
        url = f"/a/{token}?done={result.op.value}"
        return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)
    if isinstance(result, service.MovedOn):
        return _action_html(result.page, token, 409)
    return _action_html(result.page, token, 422, refusal=result.refusal)


@pages.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(session: SessionDep, token: str) -> HTMLResponse:
    """What the link turns off, and the button that does it. Never changes anything."""
    found = unsubscribe.subscription(session, token)
    if found is None:
        return not_found_page()
    return _html("unsubscribe.html", subscription=found, token=token, done=False)


@pages.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe_now(session: WriteSessionDep, token: str) -> HTMLResponse:
    """The button, or a mail client's one-click POST (RFC 8058: no cookie, no form token;
    whatever the body, the link alone says what to turn off). Again: the same page."""
    found = unsubscribe.unsubscribe(session, token, utcnow())
    if found is None:
        return not_found_page()
    return _html("unsubscribe.html", subscription=found, token=token, done=True)
