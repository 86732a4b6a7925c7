"""A real SMTP server in the test process (aiosmtpd), whose replies a test can script: a 4xx
or 5xx to the next DATA, or the connection dropped. Every DATA it is sent is kept, accepted
or not, so that a test can compare the bytes of each attempt."""

import asyncio
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from app import config
from tests.test_reliability import free_port

DROP = "drop"  # a scripted answer: close the connection without a reply


@dataclass(frozen=True)
class Received:
    """One DATA the server was sent, and what it answered."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    answer: str
    tls: bool = False  # the session was over TLS (implicit or after STARTTLS)
    login: str | None = None  # the user it logged in as

    @property
    def accepted(self) -> bool:
        return self.answer.startswith("2")

    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


def _login(session: Session) -> str | None:
    """The user a session logged in as (aiosmtpd keeps the LoginPassword it was given)."""
    login = getattr(session.auth_data, "login", None) if session.authenticated else None
    return login.decode() if isinstance(login, bytes) else None


class SmtpSink:
    """The handler of the aiosmtpd server: records, and answers as scripted."""

    def __init__(self, **server: Any) -> None:
        """``server``: aiosmtpd's options (``tls_context`` to offer STARTTLS, ``ssl_context``
        for implicit TLS, ``authenticator``…)."""
        self.received: list[Received] = []
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self.port = free_port()
        self.implicit_tls = "ssl_context" in server
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **server)

    def answer(self, *answers: str) -> None:
        """Answer the next DATAs so ("451 try later", "550 no such user", DROP), in order."""
        with self._lock:
            self._script.extend(answers)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        with self._lock:
            answer = self._script.popleft() if self._script else "250 OK queued"
            data = envelope.original_content or envelope.content or b""
            assert isinstance(data, bytes)
            self.received.append(
                Received(
                    str(envelope.mail_from),
                    tuple(envelope.rcpt_tos),
                    data,
                    answer,
                    tls=server.transport is not None
                    and server.transport.get_extra_info("ssl_object") is not None,
                    login=_login(session),
                )
            )
        if answer == DROP:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "421 closing"  # never reaches the client: the connection is gone
        return answer

    @property
    def inbox(self) -> list[EmailMessage]:
        """The e-mails accepted, parsed, in the order they came."""
        with self._lock:
            return [r.message() for r in self.received if r.accepted]

    def url(self, login: str = "") -> str:
        """``login``: ``user:password@`` (quoted as a URL's)."""
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{login}127.0.0.1:{self.port}"

    def __enter__(self) -> "SmtpSink":
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def smtp(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    """A running SMTP server, and the settings that send to it."""
    with SmtpSink() as sink:
        monkeypatch.setenv("NEXTSTEP_SMTP_URL", sink.url())
        monkeypatch.setenv("NEXTSTEP_MAIL_FROM", "nextstep <nextstep@example.com>")
        monkeypatch.setenv("NEXTSTEP_PUBLIC_URL", "https://nextstep.example.com")
        config.get_settings.cache_clear()
        yield sink
    config.get_settings.cache_clear()


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    """The text/plain and text/html parts of a multipart/alternative e-mail."""
    assert message.get_content_type() == "multipart/alternative"
    parts: list[Any] = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    return parts[0].get_content(), parts[1].get_content()
