"""The status page in a real browser: Debian's chromium driven by Playwright, against a real
`nextstep serve`. Without JavaScript: what the candidate sees, the nudge and its confirmation,
no request leaving the server, screenshots for the README. With JavaScript, for the audit
only: axe-core finds no serious or critical violation.

`make browser` installs chromium (as root) and axe-core; without them these tests are
skipped, and under CI=true they fail.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Route, sync_playwright

from app.models import Scope
from tests.conftest import IN_CI, make_key
from tests.factories import days, iso, now

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("NEXTSTEP_CHROMIUM", "/usr/bin/chromium"))
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
DOCS = ROOT / "docs"
# What a browser renders of one server's HTML: the page's data is tested on both databases
# in test_status_page.py.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.process,
    pytest.mark.one_database("the browser reads HTML tested on both databases elsewhere"),
]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(what: str) -> None:
    message = f"{what} is missing: run `make browser`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        _missing(str(CHROMIUM))
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Site:
    base: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def get(self, path: str) -> dict[str, Any]:
        response = httpx.get(f"{self.base}{path}", headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    """`nextstep serve` on a free port, its public URL its own address."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "NEXTSTEP_DATABASE_URL": database_url,
        "NEXTSTEP_PUBLIC_URL": base,
        "NEXTSTEP_PENDING_SWEEP_SECONDS": "0",
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail((tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.1)
        yield Site(base, make_key(Scope.write, name="browser-tests"))
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def _scenario(site: Site) -> str:
    """The canonical scenario's candidate after the second interview: one step late, one
    promised for later, one done. Returns the page's URL."""
    ended = now() - days(4)
    interview = site.post(
        "/v1/interviews",
        {
            "candidate": {"external_id": "cand-c", "name": "C", "email": "c@example.com"},
            "job": {"external_id": "job-analyst", "title": "Analyst"},
            "stage": "Second interview",
            "status": "completed",
            "ends_at": iso(ended),
            "interviewers": [{"name": "Ivan Interviewer", "email": "ivan@example.com"}],
        },
    )
    iid = interview["id"]
    steps = [
        {
            "action": "Tell the candidate the decision",
            "owner": {"id": "hm-1", "name": "Hana Manager", "role": "hiring_manager"},
            "channel": "email",
            "agreed_at": iso(ended),
            "due_at": iso(now() + days(1)),
            "promised_by": iso(now() - days(1)),
        },
        {
            "action": "Send the offer letter draft",
            "owner": {"id": "rec-7", "name": "Rae", "role": "recruiter"},
            "channel": "call",
            "agreed_at": iso(ended),
            "due_at": iso(now() + days(3)),
            "candidate_note": "Your recruiter will call you to talk about the next round.",
        },
    ]
    for step in steps:
        site.post(f"/v1/interviews/{iid}/commitments", step)
    done = site.post(
        f"/v1/interviews/{iid}/commitments",
        {
            "action": "Book the second interview",
            "owner": {"id": "co-1", "role": "coordinator"},
            "agreed_at": iso(ended - days(7)),
            "due_at": iso(ended - days(5)),
        },
    )
    response = httpx.post(
        f"{site.base}/v1/commitments/{done['id']}/complete",
        json={"outcome": "Booked", "completed_at": iso(ended - days(6))},
        headers=site.headers,
    )
    assert response.status_code == 200, response.text
    link = site.post(f"/v1/interviews/{iid}/status-links")
    url: str = link["url"]
    assert url.startswith(f"{site.base}/s/")
    return url


def _no_javascript(
    browser: Browser, site: Site, width: int
) -> tuple[BrowserContext, list[str], list[str]]:
    """A page without JavaScript whose every request is recorded; any request to another
    host is aborted and recorded as leaked."""
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": width, "height": 900}
    )
    requested: list[str] = []
    leaked: list[str] = []
    origin = urlsplit(site.base).netloc

    def guard(route: Route) -> None:
        url = route.request.url
        requested.append(url)
        if urlsplit(url).netloc != origin:
            leaked.append(url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    return context, requested, leaked


def test_the_candidate_sees_the_page_without_javascript(browser: Browser, site: Site) -> None:
    url = _scenario(site)
    for width in (375, 1280):
        context, requested, leaked = _no_javascript(browser, site, width)
        page = context.new_page()
        response = page.goto(url)
        assert response is not None
        assert response.status == 200
        assert page.locator("h1").count() == 1
        assert page.locator("h1").inner_text() == "What happens next"
        assert page.locator("html").get_attribute("lang") == "en"
        body = page.locator("main").inner_text()
        assert "Your interview: Second interview" in body
        assert "The hiring manager will email you." in body
        assert "This is late." in body
        assert "We are sorry." in body
        assert "Your recruiter will call you to talk about the next round." in body
        assert "You have been waiting for 4 days" in body
        assert "A step was completed on" in body
        for hidden in ("Tell the candidate", "Hana", "Rae", "Ivan", "@", "Booked", "Analyst"):
            assert hidden not in page.content(), hidden
        # The stylesheet applied: the late step has its colour.
        assert page.locator(".step.late").count() == 1
        assert page.locator("button", has_text="Nudge us").is_visible()
        assert leaked == []
        assert any(r.endswith("/static/status.css") for r in requested), requested
        # Taken on every run; written over the README's copies only when asked, since the
        # dates on the page change each day (NEXTSTEP_WRITE_EXAMPLES=1).
        shot = page.screenshot(full_page=True)
        assert shot.startswith(b"\x89PNG")
        if os.environ.get("NEXTSTEP_WRITE_EXAMPLES") == "1":
            DOCS.mkdir(exist_ok=True)
            (DOCS / f"status-page-{width}.png").write_bytes(shot)
        context.close()


def test_the_nudge_button_confirms_without_javascript(browser: Browser, site: Site) -> None:
    url = _scenario(site)
    context, requested, leaked = _no_javascript(browser, site, 375)
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Nudge us").click()
    page.wait_for_url("**?nudged=1")
    notice = page.get_by_role("status")
    assert "we have received your nudge" in notice.inner_text()
    assert page.get_by_role("button", name="Nudge us").count() == 0
    assert "We received your nudge today at" in page.locator("main").inner_text()
    assert leaked == []
    assert any(r.endswith("/nudge") for r in requested)
    [interview] = site.get("/v1/interviews")["items"]
    assert interview["unanswered_contacts"] == 1
    context.close()


def _axe(browser: Browser, url: str, width: int) -> tuple[list[dict[str, Any]], int]:
    """axe-core's serious and critical violations on ``url``, and the page's scroll width.

    JavaScript is on here only to run the audit; the page itself has none.
    """
    context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
    page = context.new_page()
    page.goto(url)
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => JSON.stringify(await axe.run())")
    scroll_width: int = page.evaluate("() => document.documentElement.scrollWidth")
    context.close()
    violations: list[dict[str, Any]] = json.loads(result)["violations"]
    return [v for v in violations if v["impact"] in ("serious", "critical")], scroll_width


def test_axe_finds_no_serious_or_critical_violation(browser: Browser, site: Site) -> None:
    if not AXE.exists():
        _missing(str(AXE.relative_to(ROOT)))
    url = _scenario(site)
    nudged = httpx.post(f"{url}/nudge", timeout=10)
    assert nudged.status_code == 303
    for address in (url, f"{url}?nudged=1", f"{site.base}/s/{'x' * 43}"):
        for width in (320, 1280):
            serious, scroll_width = _axe(browser, address, width)
            assert serious == [], json.dumps(serious, indent=1)[:3000]
            # Readable at 320 px: nothing wider than the screen.
            assert scroll_width <= width, (address, width, scroll_width)
