"""The owner's action page in a real browser (Debian's chromium driven by Playwright) against a
real `nextstep serve`: each form filled and sent with JavaScript off at 320 and 1280 px, the
422 page keeping what was typed, the confirmation; axe-core (JavaScript on for the audit
only) finds no serious or critical violation on any of them; screenshots for docs/.

`make browser` installs chromium and axe-core; without them these tests are skipped, and
under CI=true they fail.
"""

# The status page's browser and server fixtures, imported: the tests take them as arguments.
# ruff: noqa: F811

import json
import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Page

from app import db
from app.models import Scope, UnsubscribeTopic
from app.owners.links import issue_action_link, issue_unsubscribe_link
from tests.conftest import make_key
from tests.factories import days, iso, now
from tests.test_calendars import NEW_YORK
from tests.test_status_page_browser import (  # noqa: F401 (fixtures)
    AXE,
    DOCS,
    ROOT,
    Site,
    _missing,
    _no_javascript,
    browser,
    site,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.process,
    pytest.mark.one_database("the browser reads HTML tested on both databases elsewhere"),
]
WIDTHS = (320, 1280)
ZONE = ZoneInfo(NEW_YORK["time_zone"])


def _admin(site: Site) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(Scope.admin, name='browser-admin')}"}


def _owners(site: Site) -> None:
    """Rita, who works by a New York calendar, and Rick, to hand steps over to."""
    headers = _admin(site)
    calendar = httpx.post(f"{site.base}/v1/calendars", json=NEW_YORK, headers=headers, timeout=10)
    assert calendar.status_code == 201, calendar.text
    for owner_id, body in (
        ("rec-1", {"name": "Rita Recruiter", "calendar_id": calendar.json()["id"]}),
        ("rec-2", {"name": "Rick Recruiter"}),
    ):
        response = httpx.put(
            f"{site.base}/v1/owners/{owner_id}", json=body, headers=headers, timeout=10
        )
        assert response.status_code in (200, 201), response.text


def _action_page(site: Site, candidate: str) -> str:
    """A step of Rita's, a day late, the candidate having chased once; its action page's URL."""
    ended = now() - days(3)
    interview = site.post(
        "/v1/interviews",
        {
            "candidate": {"external_id": f"cand-{candidate}", "name": "Casey Candidate"},
            "job": {"external_id": "job-analyst", "title": "Analyst"},
            "stage": "Second interview",
            "status": "completed",
            "ends_at": iso(ended),
        },
    )
    step = site.post(
        f"/v1/interviews/{interview['id']}/commitments",
        {
            "action": "Tell the candidate the decision",
            "owner": {"id": "rec-1", "name": "Rita Recruiter", "role": "recruiter"},
            "channel": "call",
            "agreed_at": iso(ended),
            "due_at": iso(now() - days(1)),
        },
    )
    site.post(
        f"/v1/interviews/{interview['id']}/contacts", {"direction": "inbound", "channel": "email"}
    )
    with db.new_session(write=True) as session:
        url = issue_action_link(session, uuid.UUID(step["id"]), "rec-1", now(), timedelta(days=14))
        session.commit()
    return site.base + urlsplit(url).path


def _local(moment: datetime) -> str:
    return f"{moment.astimezone(ZONE):%Y-%m-%dT%H:%M}"


def _later() -> str:
    return _local((now() + days(5)).replace(hour=15, minute=0))


def _done(page: Page) -> None:
    page.fill("#complete-outcome", "Offer made by phone")


def _more_time(page: Page) -> None:
    page.fill("#redate-due_at", _later())
    page.fill("#redate-reason", "The panel meets on Friday")


def _hand_over(page: Page) -> None:
    page.select_option("#reassign-owner_id", "rec-2")
    page.fill("#reassign-reason", "On leave next week")


FORMS: dict[str, Callable[[Page], None]] = {
    "complete": _done,
    "redate": _more_time,
    "reassign": _hand_over,
}
BUTTONS = {"complete": "Done", "redate": "Needs more time", "reassign": "Hand over"}
CONFIRMED = {
    "complete": "the step is marked done",
    "redate": "the new deadline is saved",
    "reassign": "the step is handed over",
}


def test_the_owner_answers_each_form_without_javascript(browser: Browser, site: Site) -> None:
    _owners(site)
    for width in WIDTHS:
        for op, fill in FORMS.items():
            url = _action_page(site, f"{op}-{width}")
            context, requested, leaked = _no_javascript(browser, site, width)
            page = context.new_page()
            response = page.goto(url)
            assert response is not None
            assert response.status == 200
            assert page.locator("h1").inner_text() == "Tell the candidate the decision"
            main = page.locator("main").inner_text()
            assert "1 day late" in main
            assert "New York time" in main
            if op == "complete" and os.environ.get("NEXTSTEP_WRITE_EXAMPLES") == "1":
                DOCS.mkdir(exist_ok=True)
                (DOCS / f"action-page-{width}.png").write_bytes(page.screenshot(full_page=True))
            fill(page)
            page.get_by_role("button", name=BUTTONS[op], exact=True).click()
            page.wait_for_url(f"**?done={op}")
            assert CONFIRMED[op] in page.get_by_role("status").inner_text()
            assert leaked == []
            assert any(r.endswith("/static/status.css") for r in requested), requested
            context.close()


def test_a_wrong_field_comes_back_named_with_what_was_typed(browser: Browser, site: Site) -> None:
    _owners(site)
    url = _action_page(site, "typo")
    context, _requested, leaked = _no_javascript(browser, site, 320)
    page = context.new_page()
    page.goto(url)
    later = _later()
    page.fill("#redate-due_at", later)
    page.fill("#redate-reason", "   ")  # the browser takes blanks for "required"; we do not
    with page.expect_response(url) as answer:
        page.get_by_role("button", name="Needs more time").click()
    assert answer.value.status == 422
    alert = page.get_by_role("alert").inner_text()
    assert "Nothing was changed" in alert
    assert "Reason (reason) is required" in alert
    assert page.input_value("#redate-due_at") == later
    assert page.get_attribute("#redate-reason", "aria-invalid") == "true"
    assert leaked == []
    context.close()


def _audit(page: Page) -> tuple[list[dict[str, Any]], int]:
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => JSON.stringify(await axe.run())")
    scroll_width: int = page.evaluate("() => document.documentElement.scrollWidth")
    violations: list[dict[str, Any]] = json.loads(result)["violations"]
    return [v for v in violations if v["impact"] in ("serious", "critical")], scroll_width


def _refused(page: Page) -> None:
    page.fill("#reassign-reason", "Busy")
    page.get_by_role("button", name="Hand over").click()  # no one chosen: the browser stops it
    page.select_option("#reassign-owner_id", "rec-2")
    page.fill("#reassign-reason", " ")
    page.get_by_role("button", name="Hand over").click()
    page.get_by_role("alert").wait_for()


def _confirmed(page: Page) -> None:
    page.fill("#complete-outcome", "Offer made")
    page.get_by_role("button", name="Done", exact=True).click()
    page.wait_for_url("**?done=complete")


def test_axe_finds_no_serious_or_critical_violation(browser: Browser, site: Site) -> None:
    if not AXE.exists():
        _missing(str(AXE.relative_to(ROOT)))
    _owners(site)
    with db.new_session(write=True) as session:
        unsubscribe = issue_unsubscribe_link(session, "rec-1", UnsubscribeTopic.digest, now())
        session.commit()
    unsubscribe = site.base + urlsplit(unsubscribe).path
    for width in WIDTHS:
        journeys: dict[str, tuple[str, Callable[[Page], None] | None]] = {
            "action page": (_action_page(site, f"axe-{width}"), None),
            "422 page": (_action_page(site, f"axe-422-{width}"), _refused),
            "confirmation": (_action_page(site, f"axe-done-{width}"), _confirmed),
            "unsubscribe page": (unsubscribe, None),
        }
        for name, (url, journey) in journeys.items():
            # JavaScript on for the audit only: the pages have none (and the CSP lets none run).
            context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
            page = context.new_page()
            page.goto(url)
            if journey is not None:
                journey(page)
            serious, scroll_width = _audit(page)
            context.close()
            assert serious == [], (name, width, json.dumps(serious, indent=1)[:3000])
            # Readable at 320 px: nothing wider than the screen.
            assert scroll_width <= width, (name, width, scroll_width)
