"""Outbound metrics: attempt latency (counted where attempts are made), and messages by
type and status and the age of the oldest pending message (read from the database when
scraped, so that every replica reports the same, whichever process sent what)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import col, select

from app.db import new_session
from app.models.outbound import Message, MessageStatus
from app.outbound.sending import Outcome


@dataclass(frozen=True)
class AttemptMetrics:
    """Attempts a worker made: latency and outcome, on its app's registry (or a registry of
    its own for `nextstep worker`)."""

    latency: Histogram
    attempts: Counter

    @classmethod
    def on(cls, registry: CollectorRegistry) -> "AttemptMetrics":
        return cls(
            Histogram(
                "nextstep_outbound_attempt_duration_seconds",
                "Time from sending a message to its endpoint's answer (or to giving up on one).",
                ["kind"],
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=registry,
            ),
            Counter(
                "nextstep_outbound_attempts_total",
                "Attempts at sending a message, by the kind of endpoint (or email) and what "
                "came of them.",
                ["kind", "outcome"],
                registry=registry,
            ),
        )

    def observe(self, outcome: Outcome) -> None:
        kind = outcome.outgoing.kind
        self.latency.labels(kind).observe(outcome.duration_ms / 1000)
        if outcome.succeeded:
            result = "succeeded"
        elif outcome.response_status is None:
            result = "no_answer"
        else:
            protocol = "smtp" if kind == "email" else "http"
            result = f"{protocol}_{outcome.response_status // 100}xx"
        self.attempts.labels(kind, result).inc()


def message_counts() -> tuple[list[tuple[str, str, int]], datetime | None]:
    """Messages by type and status, and when the oldest still pending was created."""
    with new_session() as session:
        counts = session.exec(
            select(Message.type, Message.status, func.count()).group_by(
                col(Message.type), col(Message.status)
            )
        ).all()
        oldest = session.exec(
            select(func.min(Message.created_at)).where(col(Message.status) == MessageStatus.pending)
        ).one()
    return [(t, s, n) for t, s, n in counts], oldest


class MessageGauges(Collector):
    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            counts, oldest = message_counts()
        except Exception:  # a scrape must not fail because the database is down
            return
        by_status = GaugeMetricFamily(
            "nextstep_outbound_messages",
            "Outbound messages by type and status.",
            labels=["type", "status"],
        )
        for type_, status, n in counts:
            by_status.add_metric([type_, status], n)
        yield by_status
        age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        yield GaugeMetricFamily(
            "nextstep_outbound_pending_oldest_age_seconds",
            "Seconds since the oldest message still pending was created (0: none pending).",
            value=age,
        )
