"""The change watcher stops when told, whatever wakes it at that moment."""

from __future__ import annotations

import asyncio

from crisisdesk.kit.db import Database
from crisisdesk.kit.watch import ChangeWatcher


async def test_stop_ends_the_poll_loop_when_a_wake_up_arrives_with_the_cancellation(db: Database) -> None:
    """A NOTIFY (or the listener's catch-up) can wake the poll loop just as the app stops it.

    With ``asyncio.wait_for`` on Python 3.11 the loop took the wake-up, dropped the cancellation
    and polled on, and the app's shutdown waited for it forever.
    """
    watcher = ChangeWatcher(db, interval=30)
    await watcher.start()
    tasks = list(watcher._tasks)
    try:
        for _ in range(3):  # the poll loop is waiting for its wake-up
            await asyncio.sleep(0)
        watcher._wake.set()
        limit = asyncio.timeout(5)
        async with limit:  # stop() cancels before the loop runs again, as a shutdown can
            await watcher.stop()
        assert not limit.expired(), "stop() waited for a loop that had dropped its cancellation"
        assert all(task.done() for task in tasks)
    finally:
        for task in tasks:
            task.cancel()
