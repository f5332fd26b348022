"""The background worker: runs due jobs, sends notifications, keeps the public snapshot current.

It runs inside ``crisisdesk serve`` by default, or alone as ``crisisdesk worker`` (set
CRISISDESK_RUN_WORKERS=false on the web processes then). Jobs are claimed with a lease, so any
number of workers can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from crisisdesk.comms import tasks as comms_tasks
from crisisdesk.kit import metrics
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.time import utcnow
from crisisdesk.maintenance import service as maintenance
from crisisdesk.notify import subscribers
from crisisdesk.notify import tasks as notify_tasks
from crisisdesk.oncall import heartbeat
from crisisdesk.oncall import tasks as oncall_tasks
from crisisdesk.signal import tasks as signal_tasks
from crisisdesk.statuspage import publish as publishing
from crisisdesk.statuspage.store import SiteStore
from crisisdesk.support import inbound
from crisisdesk.support import tasks as support_tasks

log = logging.getLogger(__name__)
BEAT_SECONDS = 5.0


def register_tasks(runtime: Runtime) -> None:
    runtime.runner.register(maintenance.START, maintenance.run_start)
    runtime.runner.register(maintenance.COMPLETE, maintenance.run_complete)
    notify_tasks.register(runtime)
    runtime.runner.register(subscribers.PURGE, subscribers.run_purge)
    comms_tasks.register(runtime.runner, runtime.settings)
    signal_tasks.register(runtime)
    oncall_tasks.register(runtime)
    support_tasks.register(runtime)


async def tick(runtime: Runtime, store: SiteStore | None, state: dict[str, object]) -> int:
    """One pass: run due jobs, re-render a missed or day-old snapshot. Returns jobs run."""
    if not state.get("purge_scheduled"):
        # The hourly purge reschedules itself; this makes sure a first one exists.
        async with runtime.db.session() as session:
            await subscribers.ensure_purge_job(session)
        state["purge_scheduled"] = True
    # A beat every few seconds is plenty against the heartbeat's staleness limit, and spares the
    # single SQLite writer a write every pass.
    clock = time.monotonic()
    beaten = state.get("beaten")
    if not isinstance(beaten, float) or clock - beaten >= BEAT_SECONDS:
        await heartbeat.beat(runtime.db)
        state["beaten"] = clock
    ran = await runtime.runner.run_due(exclude=signal_tasks.PROBE_KINDS)
    today = utcnow().date()
    if state.get("day") != today or await publishing.stale(runtime.db):
        await publishing.publish(runtime.db, runtime.settings, store)
        state["day"] = today
    return ran


async def work_forever(runtime: Runtime, store: SiteStore | None, *, idle: float = 0.5) -> None:
    """Run due jobs, the probe lane (checks, vendor polls), the delivery worker and, when its port is set,
    the support email receiver side by side."""
    lanes = [
        asyncio.create_task(_deliver_forever(runtime), name="deliveries"),
        asyncio.create_task(_probes_forever(runtime, idle=idle), name="probes"),
    ]
    if runtime.settings.inbound_smtp_port is not None:
        # Support email arrives at every worker; the port is shared between processes.
        lanes.append(asyncio.create_task(inbound.receive_forever(runtime.db, runtime.settings), name="support-mail"))
    try:
        await _jobs_forever(runtime, store, idle=idle)
    finally:
        for lane in lanes:
            lane.cancel()
        for lane in lanes:
            with contextlib.suppress(asyncio.CancelledError):
                await lane


async def _probes_forever(runtime: Runtime, *, idle: float) -> None:
    """Checks and vendor polls, many at a time, apart from the timers of the main lane."""
    while True:
        try:
            slots = runtime.settings.probe_concurrency
            ran = await runtime.runner.run_due(kinds=signal_tasks.PROBE_KINDS, concurrency=slots, limit=slots)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.WORKER_ERRORS.labels(stage="probes").inc()
            log.exception("probe pass failed; retrying")
            await asyncio.sleep(2)
            continue
        if not ran:
            await asyncio.sleep(idle)


async def _deliver_forever(runtime: Runtime) -> None:
    while True:
        try:
            await notify_tasks.deliver_forever(runtime)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Rows stay leased and are claimed again; the worker restarts with fresh connections.
            metrics.WORKER_ERRORS.labels(stage="deliveries").inc()
            log.exception("the delivery worker stopped; restarting it")
            await asyncio.sleep(5)


async def _jobs_forever(runtime: Runtime, store: SiteStore | None, *, idle: float) -> None:
    state: dict[str, object] = {}
    failing = False
    while True:
        try:
            ran = await tick(runtime, store, state)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Logged with its traceback; the loop retries, and the console shows the database state.
            metrics.WORKER_ERRORS.labels(stage="tick").inc()
            if not failing:
                log.exception("worker pass failed; retrying")
            failing = True
            await asyncio.sleep(2)
            continue
        failing = False
        if not ran:
            await asyncio.sleep(idle)
