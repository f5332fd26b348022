"""How a process learns of changes committed by any process.

Every unit of work that records a topic writes a ``change`` row. The watcher reads new rows:
woken by PostgreSQL's LISTEN/NOTIFY when it can, and by polling otherwise (SQLite, or as a
safety net). Listeners receive the set of topics that changed. If the database cannot be
reached, ``healthy`` turns false and the error is kept for the console to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import func, select

from crisisdesk.kit.db import Database
from crisisdesk.kit.events import Change
from crisisdesk.kit.time import utcnow

log = logging.getLogger(__name__)
CHANNEL = "crisisdesk_change"

Listener = Callable[[set[str]], Awaitable[None]]


class ChangeWatcher:
    def __init__(self, db: Database, *, interval: float) -> None:
        self.db = db
        self.interval = interval
        self.last_id = 0
        self.listeners: list[Listener] = []
        self.healthy = True
        self.error: str | None = None
        self.error_since: datetime | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._queues: set[asyncio.Queue[set[str]]] = set()

    async def start(self) -> None:
        try:
            await self._init_last_id()
        except Exception as exc:  # start anyway: the public page serves from memory meanwhile
            self._mark_down(exc)
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="change-watcher"))
        if not self.db.is_sqlite:
            self._tasks.append(asyncio.create_task(self._listen_loop(), name="change-listener"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def subscribe(self) -> asyncio.Queue[set[str]]:
        """A queue of changed topics, for one Server-Sent Events stream."""
        queue: asyncio.Queue[set[str]] = asyncio.Queue(maxsize=100)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[set[str]]) -> None:
        self._queues.discard(queue)

    async def _init_last_id(self) -> None:
        async with self.db.sessionmaker() as session:
            self.last_id = await session.scalar(select(func.coalesce(func.max(Change.id), 0))) or 0

    async def check(self) -> set[str]:
        """Read changes newer than the last seen; dispatch and return their topics."""
        async with self.db.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(Change.id, Change.topic).where(Change.id > self.last_id).order_by(Change.id).limit(5000)
                )
            ).all()
        if not rows:
            return set()
        self.last_id = rows[-1].id
        topics = {row.topic for row in rows}
        for listener in self.listeners:
            await listener(topics)
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(topics)
        return topics

    def _mark_down(self, exc: Exception) -> None:
        """Remember that the database cannot be reached; the console and /healthz show it."""
        if self.healthy:
            log.error("cannot read changes from the database: %s", exc)
            self.error_since = utcnow()
        self.healthy = False
        self.error = f"{type(exc).__name__}: {exc}"[:500]

    async def _poll_loop(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that arrives
        # as the wake-up does, and stop() would then wait for this loop forever.
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.check()
            except Exception as exc:  # the database is unreachable: report it and keep trying
                self._mark_down(exc)
            else:
                if not self.healthy:
                    log.warning("the database is reachable again")
                self.healthy, self.error, self.error_since = True, None, None

    async def _listen_loop(self) -> None:
        import asyncpg  # PostgreSQL only

        dsn = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                connection = await asyncpg.connect(dsn)
                try:
                    await connection.add_listener(CHANNEL, lambda *_: self._wake.set())
                    self._wake.set()  # catch up on what happened while not listening
                    closed = asyncio.Event()
                    connection.add_termination_listener(lambda _c, done=closed: done.set())
                    while not closed.is_set():
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(10):
                                await closed.wait()
                        if not closed.is_set():  # a silent network failure shows up here
                            async with asyncio.timeout(5):
                                await connection.fetchval("SELECT 1")
                    raise ConnectionError("the LISTEN connection was closed")
                finally:
                    await connection.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); polling every %.2fs until it is back", exc, self.interval)
                await asyncio.sleep(2)
