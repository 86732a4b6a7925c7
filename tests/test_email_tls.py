"""E-mail over TLS, as an operator sets it up: a real SMTP server (aiosmtpd) with a certificate
from a certificate authority of the tests' own, trusted through ``NEXTSTEP_SMTP_CA_FILE``.
STARTTLS when offered, implicit TLS (``smtps://``), a login (only ever over TLS), and what an
attempt records when the login or the certificate is wrong: tried again later, nothing sent
in clear, the password never shown."""

import logging
import ssl
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from fastapi.testclient import TestClient

from app import config
from app.models import utcnow
from tests.email_helpers import SmtpSink
from tests.factories import Headers
from tests.outbound_helpers import attempts, message, run_pass
from tests.test_email import put_owner

SECOND = timedelta(seconds=1)
USER = "nextstep-mailer"
PASSWORD = "s3cret-pa55"  # the test server's; looked for wherever it must not be


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "company-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_tls(ca: trustme.CA, host: str = "127.0.0.1") -> ssl.SSLContext:
    """The server side's TLS context, with a certificate ``ca`` issued for ``host``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(context)
    return context


class Logins:
    """An aiosmtpd authenticator that knows one user and notes every login tried."""

    def __init__(self) -> None:
        self.tried: list[tuple[str, bool]] = []  # (user, over TLS)

    def __call__(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.tried.append((auth_data.login.decode(), session.ssl is not None))
        known = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=known, handled=False, auth_data=auth_data)


@pytest.fixture
def serve(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``serve(sink, url=None, ca_file=None)``: start ``sink`` and point the settings at it."""
    started: list[SmtpSink] = []

    def start(sink: SmtpSink, url: str | None = None, ca_file: str | None = None) -> SmtpSink:
        sink.__enter__()
        started.append(sink)
        use(url or sink.url(), ca_file)
        return sink

    def use(url: str, ca_file: str | None) -> None:
        monkeypatch.setenv("NEXTSTEP_SMTP_URL", url)
        if ca_file is None:
            monkeypatch.delenv("NEXTSTEP_SMTP_CA_FILE", raising=False)
        else:
            monkeypatch.setenv("NEXTSTEP_SMTP_CA_FILE", ca_file)
        monkeypatch.setenv("NEXTSTEP_MAIL_FROM", "nextstep <nextstep@example.com>")
        monkeypatch.setenv("NEXTSTEP_PUBLIC_URL", "https://nextstep.example.com")
        config.get_settings.cache_clear()

    start.use = use  # type: ignore[attr-defined]
    yield start
    for sink in started:
        sink.__exit__()
    config.get_settings.cache_clear()


def test_email(client: TestClient, headers: Headers) -> tuple[str, datetime]:
    put_owner(client, headers, "hr-1", name="Harriet HR", email="harriet@acme.test")
    response = client.post("/v1/owners/hr-1/test-email", headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["message_id"]), utcnow() + SECOND


test_email.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_smtp_upgrades_with_starttls_when_the_server_offers_it(
    client: TestClient, admin_headers: Headers, serve: Any, ca: trustme.CA, ca_file: str
) -> None:
    sink = serve(SmtpSink(tls_context=server_tls(ca), require_starttls=True), ca_file=ca_file)
    assert sink.url().startswith("smtp://")

    message_id, t0 = test_email(client, admin_headers)
    run_pass(t0)

    assert message(message_id).status == "succeeded"
    [received] = sink.received
    assert received.tls
    assert received.message()["Message-ID"] == f"<{message_id}@nextstep.example.com>"


def test_smtps_speaks_tls_from_the_start(
    client: TestClient, admin_headers: Headers, serve: Any, ca: trustme.CA, ca_file: str
) -> None:
    sink = serve(SmtpSink(ssl_context=server_tls(ca)), ca_file=ca_file)
    assert sink.url().startswith("smtps://")

    message_id, t0 = test_email(client, admin_headers)
    run_pass(t0)

    assert message(message_id).status == "succeeded"
    [received] = sink.received
    assert received.tls
    assert [a.response_status for a in attempts(message_id)] == [250]


def test_a_login_goes_over_tls_and_the_message_is_sent_as_that_user(
    client: TestClient, admin_headers: Headers, serve: Any, ca: trustme.CA, ca_file: str
) -> None:
    logins = Logins()
    sink = SmtpSink(tls_context=server_tls(ca), authenticator=logins, auth_required=True)
    serve(sink, url=sink.url(f"{USER}:{PASSWORD}@"), ca_file=ca_file)

    message_id, t0 = test_email(client, admin_headers)
    run_pass(t0)

    assert message(message_id).status == "succeeded"
    assert logins.tried == [(USER, True)]
    [received] = sink.received
    assert (received.tls, received.login) == (True, USER)


def test_a_refused_login_is_retried_once_the_setting_is_fixed_and_hides_the_password(
    client: TestClient,
    admin_headers: Headers,
    serve: Any,
    ca: trustme.CA,
    ca_file: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logins = Logins()
    sink = SmtpSink(tls_context=server_tls(ca), authenticator=logins, auth_required=True)
    serve(sink, url=sink.url(f"{USER}:wrong-{PASSWORD}@"), ca_file=ca_file)
    message_id, t0 = test_email(client, admin_headers)

    run_pass(t0)
    refused = message(message_id)
    # The setting is wrong, not the message: it waits for the operator instead of failing.
    assert (refused.status, refused.attempts) == ("pending", 1)
    [attempt] = attempts(message_id)
    assert attempt.response_status == 535
    assert attempt.error is not None
    assert attempt.error.startswith("login refused: ")
    assert sink.received == []

    serve.use(sink.url(f"{USER}:{PASSWORD}@"), ca_file)
    run_pass(t0 + timedelta(minutes=5))
    assert message(message_id).status == "succeeded"
    assert [a.response_status for a in attempts(message_id)] == [535, 250]
    assert {over_tls for _, over_tls in logins.tried} == {True}

    shown = client.get(f"/v1/messages/{message_id}", headers=admin_headers).text
    shown += client.get(f"/v1/messages/{message_id}/attempts", headers=admin_headers).text
    shown += client.get("/metrics", headers=admin_headers).text
    for secret in (PASSWORD, f"wrong-{PASSWORD}"):
        assert secret not in shown
        assert secret not in caplog.text


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_a_password_is_never_sent_to_a_server_without_starttls(
    client: TestClient, admin_headers: Headers, serve: Any
) -> None:
    logins = Logins()
    # A server that would take a login in clear text (real ones refuse it).
    sink = SmtpSink(authenticator=logins, auth_required=True, auth_require_tls=False)
    serve(sink, url=sink.url(f"{USER}:{PASSWORD}@"))
    message_id, t0 = test_email(client, admin_headers)

    run_pass(t0)

    assert logins.tried == []
    assert sink.received == []
    [attempt] = attempts(message_id)
    assert attempt.error is not None
    assert "STARTTLS" in attempt.error
    assert message(message_id).status == "pending"


@pytest.mark.parametrize("problem", ["untrusted authority", "another host's certificate"])
def test_a_certificate_that_is_not_trusted_fails_the_attempt_and_sends_nothing_in_clear(
    client: TestClient,
    admin_headers: Headers,
    serve: Any,
    ca: trustme.CA,
    ca_file: str,
    problem: str,
) -> None:
    if problem == "untrusted authority":
        tls, trusted = server_tls(trustme.CA()), ca_file
    else:
        tls, trusted = server_tls(ca, host="mail.example.test"), ca_file
    sink = serve(SmtpSink(tls_context=tls), ca_file=trusted)
    message_id, t0 = test_email(client, admin_headers)

    run_pass(t0)

    assert sink.received == []
    [attempt] = attempts(message_id)
    assert attempt.response_status is None
    assert attempt.error is not None
    assert attempt.error.startswith("TLS with the SMTP server failed: ")
    assert "certificate verify failed" in attempt.error.lower()
    failed = message(message_id)
    assert (failed.status, failed.next_attempt_at is not None) == ("pending", True)

    # Sent once the server has a certificate the service trusts.
    fixed = serve(SmtpSink(tls_context=server_tls(ca)), ca_file=ca_file)
    run_pass(t0 + timedelta(minutes=5))
    assert message(message_id).status == "succeeded"
    [received] = fixed.received
    assert received.tls


def test_an_smtp_url_that_is_wrong_is_refused_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEXTSTEP_SMTP_URL", f"smtp://{USER}:{PASSWORD}@mail.example.test")
    with pytest.raises(config.SettingsError) as refused:
        config.load_settings()
    assert "NEXTSTEP_SMTP_URL" in str(refused.value)
    assert PASSWORD not in str(refused.value)
