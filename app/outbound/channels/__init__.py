"""Channels: each kind of endpoint says a message its own way and signs it its own way,
behind one interface (``Channel``) that the outbox and the sender call. A channel is one
module here; adding one (e-mail, say) adds its module and its line in ``CHANNELS``, and
edits no other channel.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from app.models.outbound import EventType
from app.outbound.channels import email, slack, webhook


class Channel(Protocol):
    @property
    def kind(self) -> str:
        """The endpoint kind it serves (``EndpointKind``), or ``email``."""

    @property
    def signed(self) -> bool:
        """Whether its endpoints get a signing secret (shown once, rotatable)."""

    def body(self, type_: EventType, data: dict[str, Any], now: datetime) -> str:
        """The exact text a message carries: the same on every attempt."""

    def headers(
        self, message_id: str, body: str, secrets: Sequence[str], at: datetime
    ) -> dict[str, str]:
        """The headers of one attempt at ``at``, besides the content type and user agent."""


CHANNELS: dict[str, Channel] = {
    channel.kind: channel for channel in (webhook.WEBHOOK, slack.SLACK, email.EMAIL)
}


def channel_of(kind: str) -> Channel:
    return CHANNELS[kind]
