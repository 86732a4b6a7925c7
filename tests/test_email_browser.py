"""A reminder e-mail's HTML part as a mail client would show it: rendered in Chromium with
JavaScript off, nothing fetched from anywhere, readable at a phone's width; and the
screenshot in docs/ (written when NEXTSTEP_WRITE_EXAMPLES=1)."""

import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Route

from tests.email_helpers import SmtpSink, smtp, text_and_html
from tests.factories import Headers, create_commitment, create_interview
from tests.test_email import email_rule, harriet_in_new_york, send_all
from tests.test_status_page_browser import DOCS, browser

__all__ = ["browser", "smtp"]  # the fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.one_database("the browser reads HTML tested on both databases elsewhere"),
]


def test_a_reminder_email_reads_well_in_a_browser(
    browser: Browser, client: TestClient, admin_headers: Headers, smtp: SmtpSink
) -> None:
    harriet_in_new_york(client, admin_headers)
    email_rule(client, admin_headers, [{"offset": "PT0S", "type": "next_step.overdue"}])
    due = datetime.fromisoformat("2026-12-04T22:00:00+00:00")
    interview = create_interview(
        client, admin_headers, candidate_name="Casey Candidate", job_title="Data Analyst"
    )
    create_commitment(
        client,
        admin_headers,
        interview["id"],
        due_at=due,
        action="Call Casey with the decision after the second interview",
    )
    # The browser's driver holds this thread's event loop: the worker runs in another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(send_all, datetime.fromisoformat("2026-12-05T15:00:00+00:00")).result()
    [mail] = smtp.inbox
    _text, html = text_and_html(mail)

    for width in (375, 700):
        context = browser.new_context(
            java_script_enabled=False, viewport={"width": width, "height": 800}
        )
        requested: list[str] = []

        def refuse(route: Route, seen: list[str] = requested) -> None:
            seen.append(route.request.url)
            route.abort()

        context.route("**/*", refuse)
        page = context.new_page()
        page.set_content(html)
        body = page.locator("body").inner_text()
        assert "Call Casey with the decision after the second interview" in body
        assert "Friday 4 December 2026, 17:00 New York time" in body
        assert "Answer: done, more time, hand over" in body
        assert requested == []  # no image, font or stylesheet fetched
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        shot = page.screenshot(full_page=True)
        assert shot.startswith(b"\x89PNG")
        if width == 700 and os.environ.get("NEXTSTEP_WRITE_EXAMPLES") == "1":
            DOCS.mkdir(exist_ok=True)
            (DOCS / "email-reminder.png").write_bytes(shot)
        context.close()
