"""The periodic sweep that applies any pending delivery whose subject exists.

Creating a subject releases what waits for it in the same transaction, so the sweep
normally finds nothing; it runs in every `nextstep serve` process so that no race, on
any number of replicas, can leave an acknowledged delivery waiting for good.
"""

import asyncio
import logging

from anyio import to_thread

from app.db import new_session
from app.events.deliveries import apply_ready_pending
from app.models import utcnow

log = logging.getLogger("nextstep.events")


def sweep_once() -> int:
    """One pass; returns how many deliveries it applied."""
    with new_session(write=True) as session:
        return apply_ready_pending(session, utcnow())


async def sweep_forever(interval_seconds: float) -> None:
    """A pass every ``interval_seconds`` until cancelled; a failed pass is logged and retried."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await to_thread.run_sync(sweep_once)
        except Exception:
            log.exception("sweeping pending deliveries failed; next pass in %s s", interval_seconds)
