"""Sending one stored e-mail over SMTP (``NEXTSTEP_SMTP_URL``), with ``aiosmtplib``.

``smtp://host:port`` upgrades with STARTTLS when the server offers it; ``smtps://`` speaks
TLS from the start; a user and password in the URL log in, and then STARTTLS is required:
a password is never sent in clear. The server's certificate must be valid for its host name
and come from an authority the system trusts (or ``NEXTSTEP_SMTP_CA_FILE``); a failed TLS
handshake is an attempt that failed, tried again later, never a fallback to clear text.

A 2xx reply after DATA is success; a 4xx reply, a lost connection, a failed TLS handshake or
no answer within the timeout is tried again on the retry schedule; a 5xx reply (a refused
sender or recipient included) fails the message at once, except a refused login (535): that
is this service's setting, not the message, and once an operator fixes it the messages
waiting go out. The reply code and text go to the attempt log; the URL (and so the
password) never does.

Connections are reused while a worker's batch is being sent (at most one per concurrent
send) and closed when the last send of the batch ends: no connection outlives its batch,
so none is left idle on a loop that a test or a worker has stopped.
"""

import asyncio
import ssl
import weakref
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiosmtplib

from app.config import get_settings
from app.outbound.channels.email import envelope

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    """What the server said to one attempt: its code (None: no reply) and text."""

    code: int | None
    text: str | None
    login_refused: bool = False

    @property
    def succeeded(self) -> bool:
        return self.code is not None and 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        """A 5xx: sending again would get the same answer (but for a refused login: sending
        again after the setting is fixed would not)."""
        return self.code is not None and self.code >= 500 and not self.login_refused


def _client(url: str, ca_file: str | None) -> aiosmtplib.SMTP:
    parts = urlsplit(url)
    implicit_tls = parts.scheme == "smtps"
    login = bool(parts.username)
    return aiosmtplib.SMTP(
        hostname=parts.hostname,
        port=parts.port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=implicit_tls,
        # None: when the server offers it; required before a login (no password in clear)
        start_tls=False if implicit_tls else (True if login else None),
        validate_certs=True,
        cert_bundle=ca_file,
        timeout=TIMEOUT_SECONDS,
    )


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` (aiosmtplib wraps it when connecting), if any."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return cause
        cause = cause.__cause__
    return None


class Mailer:
    """The SMTP connections of one event loop to one server, reused within a batch."""

    def __init__(self, url: str, ca_file: str | None = None) -> None:
        self.url = url
        self.ca_file = ca_file
        self._idle: list[aiosmtplib.SMTP] = []
        self._busy = 0

    async def _connection(self) -> aiosmtplib.SMTP:
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp
        smtp = _client(self.url, self.ca_file)
        await smtp.connect()
        return smtp

    async def send(self, sender: str, recipients: list[str], body: bytes) -> Reply:
        """One attempt at one e-mail; never raises for what the server or network does."""
        self._busy += 1
        smtp: aiosmtplib.SMTP | None = None
        try:
            smtp = await self._connection()
            await smtp.mail(sender)
            for recipient in recipients:
                await smtp.rcpt(recipient)
            answer = await smtp.data(body)
            self._idle.append(smtp)
            smtp = None
            return Reply(answer.code, answer.message[:500] or None)
        except aiosmtplib.SMTPAuthenticationError as exc:
            return Reply(exc.code, f"login refused: {exc.message}"[:500], login_refused=True)
        except aiosmtplib.SMTPRecipientRefused as exc:
            return Reply(exc.code, f"{exc.recipient}: {exc.message}"[:500])
        except aiosmtplib.SMTPResponseException as exc:
            return Reply(exc.code, exc.message[:500])
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            tls = _tls_failure(exc)
            if tls is not None:
                return Reply(None, f"TLS with the SMTP server failed: {tls}"[:500])
            text = str(exc) or type(exc).__name__
            return Reply(None, f"no reply from the SMTP server: {text}"[:500])
        finally:
            self._busy -= 1
            if smtp is not None:  # after an error the session's state is unknown: drop it
                smtp.close()
            if self._busy == 0:
                await self._close_idle()

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await smtp.quit()
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                smtp.close()


_MAILERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Mailer]" = (
    weakref.WeakKeyDictionary()
)


def mailer_for(url: str, ca_file: str | None = None) -> Mailer:
    """The running loop's mailer to ``url`` (a new one when a setting changed)."""
    loop = asyncio.get_running_loop()
    mailer = _MAILERS.get(loop)
    if mailer is None or (mailer.url, mailer.ca_file) != (url, ca_file):
        mailer = _MAILERS[loop] = Mailer(url, ca_file)
    return mailer


async def mail_once(body: str) -> Reply:
    """One attempt at a stored e-mail, to its From and To addresses, through the server of
    ``NEXTSTEP_SMTP_URL`` (unset since it was written: no reply, tried again later)."""
    settings = get_settings()
    url = settings.smtp_url
    if url is None:
        return Reply(None, "NEXTSTEP_SMTP_URL is not set: nothing is e-mailed")
    sender, recipients = envelope(body)
    return await mailer_for(url, settings.smtp_ca_file).send(
        sender, recipients, body.encode("ascii")
    )
