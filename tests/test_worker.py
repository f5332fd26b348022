"""The worker's lanes: the probe lane holds claims only on the probes it is running."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from crisisdesk.kit import jobs
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.time import utcnow
from crisisdesk.signal import tasks as signal_tasks
from crisisdesk.worker import _probes_forever


async def test_the_probe_lane_claims_no_more_probes_than_it_runs_at_once(app: Any) -> None:
    # A claimed probe waiting for a slot could outlive its lease and be run again by another
    # worker, so with two slots and six due probes only two are claimed at a time.
    runtime: Runtime = app.state.runtime
    runtime.settings = runtime.settings.model_copy(update={"probe_concurrency": 2})
    release = asyncio.Event()
    running = 0

    async def slow_probe(session: object, payload: dict[str, Any]) -> None:
        nonlocal running
        running += 1
        await release.wait()

    runtime.runner.register(signal_tasks.CHECK_RUN, slow_probe)
    async with runtime.db.session() as session:
        for n in range(6):
            await jobs.schedule(session, signal_tasks.CHECK_RUN, utcnow() - timedelta(seconds=1), key=f"probe:{n}")
    lane = asyncio.create_task(_probes_forever(runtime, idle=0.01))
    try:
        deadline = time.monotonic() + 5
        while running < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert running == 2
        async with runtime.db.sessionmaker() as session:
            claimed = await session.scalar(
                select(func.count()).select_from(Job).where(Job.claimed_by.is_not(None), Job.finished_at.is_(None))
            )
        assert claimed == 2
    finally:
        release.set()
        lane.cancel()
        await asyncio.gather(lane, return_exceptions=True)
