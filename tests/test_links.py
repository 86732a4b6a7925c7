"""Links the service prints point where this server answers, or at NEXTSTEP_PUBLIC_URL."""

import os

import httpx
import pytest
from fastapi.testclient import TestClient

from app import config
from app.links import public_base, public_link
from app.models import Scope
from tests.conftest import make_key
from tests.factories import Headers, create_interview
from tests.test_readme import serving


def _status_link(client: TestClient | httpx.Client, headers: Headers, interview_id: str) -> str:
    response = client.post(f"/v1/interviews/{interview_id}/status-links", headers=headers)
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url


def test_without_a_public_url_a_link_uses_the_requests_own_base(
    client: TestClient, write_headers: Headers
) -> None:
    interview = create_interview(client, write_headers)
    url = _status_link(client, write_headers, interview["id"])
    assert url.startswith("http://testserver/s/")
    assert client.get(url).status_code == 200


def test_a_set_public_url_is_the_base_of_every_link(
    client: TestClient, write_headers: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTSTEP_PUBLIC_URL", "https://status.example.com/nextstep/")
    config.get_settings.cache_clear()
    try:
        interview = create_interview(client, write_headers)
        url = _status_link(client, write_headers, interview["id"])
        assert url.startswith("https://status.example.com/nextstep/s/")
        assert public_link("/x") == "https://status.example.com/nextstep/x"
    finally:
        monkeypatch.delenv("NEXTSTEP_PUBLIC_URL")
        config.get_settings.cache_clear()


@pytest.mark.process
def test_a_server_on_another_port_links_to_itself(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXTSTEP_PUBLIC_URL", raising=False)
    assert "NEXTSTEP_PUBLIC_URL" not in os.environ
    headers = {"Authorization": f"Bearer {make_key(Scope.write)}"}
    with serving(database_url) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert not base.endswith(":8000")
        created = http.post(
            "/v1/interviews", json={"candidate": {"external_id": "c-1"}}, headers=headers
        )
        assert created.status_code == 201, created.text
        url = _status_link(http, headers, created.json()["id"])
        assert url.startswith(f"{base}/s/")
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8311"),
        ("0.0.0.0", "http://127.0.0.1:8311"),
        ("::", "http://[::1]:8311"),
        ("::1", "http://[::1]:8311"),
        ("nextstep.internal", "http://nextstep.internal:8311"),
    ],
)
def test_outside_a_request_links_use_the_address_served_on(
    monkeypatch: pytest.MonkeyPatch, host: str, expected: str
) -> None:
    monkeypatch.delenv("NEXTSTEP_PUBLIC_URL", raising=False)
    monkeypatch.setenv("NEXTSTEP_HOST", host)
    monkeypatch.setenv("NEXTSTEP_PORT", "8311")
    config.get_settings.cache_clear()
    try:
        assert public_base() == expected
        assert public_base("http://testserver/") == "http://testserver"
    finally:
        monkeypatch.undo()
        config.get_settings.cache_clear()
