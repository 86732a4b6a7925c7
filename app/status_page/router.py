"""HTTP for status links (the /v1 API) and for the candidate's page (/s/<token>, HTML)."""

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlmodel import Session

from app.auth import ReadKey, WriteKey, read
from app.csvstream import CSV_CONTENT
from app.db import SessionDep, WriteSessionDep
from app.http import AcceptHeader, Fetch, listing
from app.links import public_link
from app.models import StatusLink, utcnow
from app.routing import JsonRoute
from app.schemas import ListQuery, Page, problems
from app.status_page import service
from app.status_page.schemas import Nudge, StatusLinkCreated, StatusLinkIn, StatusLinkOut

router = APIRouter(prefix="/v1", tags=["status links"], route_class=JsonRoute)
pages = APIRouter(include_in_schema=False)

_HERE = Path(__file__).parent


def page_templates(*more: Path) -> Environment:
    """The templates of the pages served by token, auto-escaped; ``more`` folders first, then
    this one's (its base.html and 404 page), so that other pages look alike."""
    return Environment(
        loader=FileSystemLoader([*more, _HERE / "templates"]),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_templates = page_templates()
_STYLESHEET = (_HERE / "static" / "status.css").read_bytes()

# Everything the page needs comes from this origin: one stylesheet and its own form.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_COMMON_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
}
PAGE_HEADERS = {
    **_COMMON_HEADERS,
    "Cache-Control": "no-store",
    "Content-Security-Policy": PAGE_CSP,
}
STYLESHEET_HEADERS = {
    **_COMMON_HEADERS,
    "Cache-Control": "public, max-age=3600",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
NUDGED = {"1": Nudge.recorded, "again": Nudge.already}


def _link_out(link: StatusLink) -> StatusLinkOut:
    return StatusLinkOut.model_validate(link, from_attributes=True)


@router.post(
    "/interviews/{interview_id}/status-links",
    operation_id="createStatusLink",
    status_code=201,
    responses=problems(401, 403, 404, 422),
)
def create_status_link(
    session: WriteSessionDep,
    caller: WriteKey,
    interview_id: uuid.UUID,
    request: Request,
    response: Response,
    body: StatusLinkIn | None = None,
) -> StatusLinkCreated:
    """A private page for the candidate. Its URL is in this answer only: send it now.

    No Idempotency-Key: a stored answer would keep the URL, which is kept nowhere else.
    """
    expires_at = body.expires_at if body is not None else None
    link, token = service.create_link(session, interview_id, expires_at, caller.actor, utcnow())
    response.headers["Cache-Control"] = "no-store"
    url = public_link(f"/s/{token}", str(request.base_url))
    return StatusLinkCreated(**_link_out(link).model_dump(), url=url)


def _links_of(interview_id: uuid.UUID) -> Fetch:
    def fetch(
        session: Session, limit: int, after: list[str] | None
    ) -> tuple[list[StatusLinkOut], list[str] | None]:
        links, mark = service.list_links(session, interview_id, limit, after)
        return [_link_out(link) for link in links], mark

    return fetch


@router.get(
    "/interviews/{interview_id}/status-links",
    operation_id="listStatusLinks",
    response_model=Page[StatusLinkOut],
    responses={**CSV_CONTENT, **problems(401, 403, 404, 422)},
)
async def list_status_links(
    access: ReadKey,
    interview_id: uuid.UUID,
    query: Annotated[ListQuery, Query()],
    accept: AcceptHeader = None,
) -> Response:
    """The interview's status links, oldest first, without their URLs."""
    fetch = _links_of(interview_id)
    answer = listing(query.limit, query.cursor, accept, StatusLinkOut, "status-links", fetch)
    return await read(access, answer)


@router.delete(
    "/status-links/{link_id}",
    operation_id="revokeStatusLink",
    status_code=204,
    response_class=Response,
    responses=problems(401, 403, 404, 422),
)
def revoke_status_link(session: WriteSessionDep, caller: WriteKey, link_id: uuid.UUID) -> Response:
    """Revoke a link: its page answers 404 from now on."""
    service.revoke_link(session, link_id, utcnow())
    return Response(status_code=204)


def _html(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    body = _templates.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def not_found_page() -> HTMLResponse:
    """The one answer for a token that is unknown, expired or revoked: the same bytes."""
    return _html("not_found.html", 404)


@pages.get("/s/{token}", response_class=HTMLResponse)
def status_page(session: SessionDep, token: str, nudged: str | None = None) -> HTMLResponse:
    """The candidate's page: what happens next, by when, and how long they have waited."""
    page = service.status_page(session, token, utcnow())
    if page is None:
        return not_found_page()
    return _html("status.html", page=page, token=token, nudged=NUDGED.get(nudged or ""))


@pages.post("/s/{token}/nudge", response_class=HTMLResponse)
def nudge(session: WriteSessionDep, token: str) -> Response:
    """The candidate's nudge: recorded once a day, then back to the page, which confirms it."""
    result = service.nudge(session, token, utcnow())
    if result is None:
        return not_found_page()
    flag = "1" if result is Nudge.recorded else "again"
    return RedirectResponse(f"/s/{token}?nudged={flag}", status_code=303, headers=PAGE_HEADERS)


@pages.get("/s/{token}/nudge")
def nudge_page(token: str) -> Response:
    """A nudge's address opened (a bookmark, a reload): the page itself, where the button is."""
    return RedirectResponse(f"/s/{token}", status_code=303, headers=PAGE_HEADERS)


@pages.get("/static/status.css")
def stylesheet() -> Response:
    return Response(_STYLESHEET, media_type="text/css; charset=utf-8", headers=STYLESHEET_HEADERS)
