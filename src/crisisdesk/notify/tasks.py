"""Work the workers run for notify: the fan-out jobs, and the delivery worker's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.kit.runtime import Runtime
from crisisdesk.notify import addresses, fanout
from crisisdesk.notify.deliver import DeliveryWorker

log = logging.getLogger(__name__)


def register(runtime: Runtime) -> None:
    """Register the fan-out job handlers, closed over this process's settings."""
    settings = runtime.settings

    async def update_fanout(session: AsyncSession, payload: dict[str, Any]) -> None:
        await fanout.run_fanout(session, settings, payload)

    async def component_fanout(session: AsyncSession, payload: dict[str, Any]) -> None:
        await fanout.run_component(session, settings, payload)

    runtime.runner.register(fanout.FANOUT_JOB, update_fanout)
    runtime.runner.register(fanout.COMPONENT_JOB, component_fanout)


def http_session(runtime: Runtime) -> aiohttp.ClientSession:
    """The one HTTP client pool of a worker, shared by every HTTP channel."""
    settings = runtime.settings
    # Its resolver refuses hosts that resolve to private addresses (DNS rebinding) unless allowed.
    return addresses.http_session(
        allow_private=settings.allow_private_webhooks,
        limit=settings.delivery_concurrency,
        timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds),
    )


@asynccontextmanager
async def delivery_worker(runtime: Runtime) -> AsyncIterator[DeliveryWorker]:
    """A delivery worker with every configured channel; closes channels and the HTTP pool after."""
    from crisisdesk.notify.channels.registry import build_adapters
    from crisisdesk.notify.messages import MessageBuilder

    http = http_session(runtime)
    try:
        adapters = build_adapters(runtime.settings, http)
        worker = DeliveryWorker(runtime.db, runtime.settings, adapters, MessageBuilder(runtime.settings))
        try:
            yield worker
        finally:
            await worker.close()
    finally:
        await http.close()


async def deliver_forever(runtime: Runtime) -> None:
    """Run the delivery worker until cancelled."""
    async with delivery_worker(runtime) as worker:
        log.info("delivery worker %s running: channels %s", worker.name, ", ".join(sorted(worker.adapters)))
        await worker.run_forever()
