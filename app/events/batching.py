"""Group commit for inbound deliveries: those that arrive while a transaction is being
written are stored together in the next one.

A request is answered only after the transaction holding its delivery has committed, so
a 2xx still means "stored". Sharing the transaction is what lets one worker keep up with
many concurrent senders: the thread hop, BEGIN, COMMIT (and its fsync) and the look-ups
are paid once per batch, and the common delivery, a new interview with its next steps,
is written with one INSERT per table for the whole batch (see ingest.ingest_batch).
Under light load a batch holds one delivery and nothing waits.
"""

import asyncio
import logging
import weakref
from collections.abc import Sequence

from anyio import to_thread
from sqlalchemy.exc import DBAPIError

from app import tracing
from app.db import new_session
from app.events.inbound import Inbound, Receipt
from app.events.ingest import ingest_batch
from app.models import utcnow

log = logging.getLogger("nextstep.events")

# Enough to share the fixed costs; small enough that one transaction stays short.
MAX_BATCH = 64


_Waiting = tuple[Inbound, "asyncio.Future[Receipt]"]


def _store_batch(inbounds: Sequence[Inbound]) -> list[Receipt | Exception]:
    session = new_session(write=True)
    try:
        # Not under the context of the request that started the draining task: its trace
        # may have ended long ago.
        with tracing.batch_span([inbound.trace for inbound in inbounds]):
            return ingest_batch(session, inbounds, utcnow())
    finally:
        try:
            session.close()
        except DBAPIError:
            # The answers are decided (and committed, for the receipts); a connection
            # that dies now changes none of them.
            log.warning("database connection lost while closing a session")


class _Batcher:
    """Stores what is submitted on one event loop, one batch at a time, on both databases.

    Two batches in flight on PostgreSQL, to overlap one batch's round trips with the next
    one's work, measured worse (1,300-1,330 events/s against 1,610-1,670 with one,
    bench/ingest.py): the threads fought over the GIL and the batches came out smaller.
    """

    def __init__(self) -> None:
        self._waiting: list[_Waiting] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, inbound: Inbound) -> Receipt:
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._waiting.append((inbound, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                # A few turns of the loop first, to take in the requests that have arrived
                # meanwhile: under load, larger batches and fewer fights over the GIL.
                for _ in range(3):
                    await asyncio.sleep(0)
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    answers = await to_thread.run_sync(_store_batch, [i for i, _ in batch])
                except Exception as exc:
                    answers = [exc for _ in batch]
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # its request was cancelled
                        continue
                    if isinstance(answer, Exception):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
                batch = []
        except BaseException:
            for _, future in batch + self._waiting:
                future.cancel()
            self._waiting = []
            raise
        finally:
            self._drainer = None


_batchers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher]" = (
    weakref.WeakKeyDictionary()
)


async def store(inbound: Inbound) -> Receipt:
    """Store and apply one delivery with those that arrive meanwhile, and return its receipt
    once committed; raises what ``ingest.ingest`` would raise for it alone."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = _Batcher()
    return await batcher.submit(inbound)
