"""What the ledger announces about steps, and to whom: the publisher installed at start-up.

Every change to a step goes through the ledger, which hands it here in the same transaction.
The outbox (``app.outbound.publishing``) is the publisher: it writes the change's messages
and reminders beside it, so that a change that commits cannot lose them and one that rolls
back takes them along. The outbound package depends on this one, not the other way round:
it installs itself (``install_publisher``) where the process starts (``create_app``, the
command line). A write with no publisher installed fails instead of losing its messages.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple, Protocol

from sqlmodel import Session

from app.models import Commitment


class StepState(NamedTuple):
    """What a step's messages and reminders depend on, before and after a change."""

    status: str
    due_at: datetime
    owner_id: str
    owner_role: str
    owed_by: str
    version: int


def step_state(commitment: Commitment) -> StepState:
    return StepState(
        commitment.status,
        commitment.due_at,
        commitment.owner_id,
        commitment.owner_role,
        commitment.owed_by,
        commitment.version,
    )


class StepPublisher(Protocol):
    def step_changed(
        self, session: Session, commitment: Commitment, before: StepState | None, now: datetime
    ) -> None:
        """A step was agreed (``before`` None) or changed; called after its rebuild."""

    def steps_inserted(
        self, session: Session, commitment_ids: Sequence[uuid.UUID], now: datetime
    ) -> None:
        """New steps were written as plain rows, all at once (the bulk ingestion path)."""


class NoPublisher(RuntimeError):
    """A step changed in a process where nothing was installed to publish it."""


_installed: list[StepPublisher] = []


def install_publisher(publisher: StepPublisher) -> None:
    """Make ``publisher`` the one every change of a step is handed to (replacing any other)."""
    _installed[:] = [publisher]


def publisher() -> StepPublisher:
    if not _installed:
        raise NoPublisher(
            "no publisher of step changes is installed: call app.outbound.install() at start-up"
        )
    return _installed[0]


def steps_inserted(session: Session, commitment_ids: Sequence[uuid.UUID], now: datetime) -> None:
    """Announce new steps that were written as plain rows, without the ledger's rebuild."""
    publisher().steps_inserted(session, commitment_ids, now)
