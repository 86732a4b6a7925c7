"""One Settings object, read from NEXTSTEP_* environment variables."""

import re
from email.headerregistry import Address
from email.utils import parseaddr
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEXTSTEP_", extra="ignore")

    database_url: str = "sqlite:///./var/nextstep.db"
    webhook_secrets: dict[str, list[str]] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    log_level: LogLevel = "INFO"
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    # Standard Webhooks itself refuses more than five minutes of skew.
    webhook_tolerance_seconds: Annotated[int, Field(ge=1, le=300)] = 300
    lever_max_age_hours: Annotated[float, Field(gt=0)] = 72.0
    db_pool_size: Annotated[int, Field(ge=1)] = 10
    # While the database is away a request can wait for a pool slot and then for a connect
    # attempt: together well under 5 s, so that callers get their 503 quickly.
    db_connect_timeout_seconds: Annotated[float, Field(gt=0)] = 2.0
    db_pool_timeout_seconds: Annotated[float, Field(gt=0)] = 2.0
    retry_after_seconds: Annotated[int, Field(ge=1)] = 5
    # How often each process applies pending deliveries whose subject exists (0: never).
    pending_sweep_seconds: Annotated[float, Field(ge=0)] = 30.0
    # The base of every link the service prints (app/links.py); None: this server's own.
    public_url: str | None = None
    # How long an action link in an e-mail answers (app/owners/links.py).
    action_link_days: Annotated[int, Field(ge=1, le=90)] = 14
    # E-mail to owners: smtp://[user:password@]host:port (STARTTLS when the server offers
    # it) or smtps://… (implicit TLS). None: nothing is e-mailed (app/outbound/mailer.py).
    smtp_url: str | None = None
    # A PEM file of the certificate authorities the SMTP server's certificate may come from, in
    # addition to the system's (a company's private CA). None: the system's alone.
    smtp_ca_file: str | None = None
    mail_from: str = "nextstep <nextstep@localhost>"
    # The outbound worker: in every `nextstep serve` process unless turned off here, and
    # alone as `nextstep worker`.
    worker: bool = True
    worker_poll_seconds: Annotated[float, Field(gt=0)] = 1.0
    # How long an attempt may be in flight before another process may send the message
    # again: longer than the 10 s an attempt may take.
    worker_lease_seconds: Annotated[float, Field(ge=15)] = 30.0
    # Reminders fired and messages claimed at once; messages in flight at the same time, and
    # at most to one endpoint (so that one that answers slowly holds only its own share).
    worker_batch: Annotated[int, Field(ge=1, le=2000)] = 200
    worker_concurrency: Annotated[int, Field(ge=1, le=1000)] = 256
    worker_endpoint_concurrency: Annotated[int, Field(ge=1, le=1000)] = 64
    # The scheduling priority (nice) of the worker `nextstep serve` runs beside its servers:
    # above 0, the API's requests come first when both want a core.
    worker_niceness: Annotated[int, Field(ge=0, le=19)] = 10
    # Seconds before each retry after a failed attempt; after the last, the message fails.
    outbound_retry_schedule: Annotated[tuple[float, ...], NoDecode] = (
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # psycopg 3 is the only PostgreSQL driver installed.
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("must be an http:// or https:// URL without query or fragment")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname or port is None:
            raise ValueError("must be smtp://[user:password@]host:port or smtps://…")
        return value

    @field_validator("mail_from")
    @classmethod
    def _one_address(cls, value: str) -> str:
        try:
            address = Address(addr_spec=parseaddr(value)[1])
        except (ValueError, IndexError):
            address = None
        if address is None or not address.domain or "\r" in value or "\n" in value:
            raise ValueError('must be one address, like "nextstep <nextstep@example.com>"')
        return value

    @field_validator("outbound_retry_schedule", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("outbound_retry_schedule")
    @classmethod
    def _positive_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay < 0 for delay in value):
            raise ValueError("delays are seconds, none negative")
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets_not_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for source, secrets in value.items():
            if not source or not all(secrets):
                raise ValueError(f"source {source!r} has an empty name or secret")
        return value


class SettingsError(RuntimeError):
    """A setting could not be read; the message names the variable."""


def load_settings() -> Settings:
    try:
        return Settings()
    except PydanticSettingsError as exc:
        # Raised for a value that is not even JSON; it names the field in its text.
        match = re.search(r'field "(\w+)"', str(exc))
        field = match.group(1).upper() if match else "?"
        raise SettingsError(f"NEXTSTEP_{field}: not valid JSON") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise SettingsError(f"NEXTSTEP_{field.upper()}: {first['msg']}") from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
