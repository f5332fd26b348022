"""Work the workers run for comms: the promise's timers ("comms.promise", "comms.remind", "comms.overdue")."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.comms import promises
from crisisdesk.config import Settings
from crisisdesk.kit.jobs import Handler, JobRunner


def handlers(settings: Settings) -> dict[str, Handler]:
    """The job handlers, bound to this process's settings (reminder lead, repeat, Slack URL)."""

    async def on_promise(session: AsyncSession, payload: dict[str, Any]) -> None:
        await promises.run_promise(session, payload, settings=settings)

    async def on_remind(session: AsyncSession, payload: dict[str, Any]) -> None:
        await promises.run_remind(session, payload, settings=settings)

    async def on_overdue(session: AsyncSession, payload: dict[str, Any]) -> None:
        await promises.run_overdue(session, payload, settings=settings)

    return {promises.PROMISE: on_promise, promises.REMIND: on_remind, promises.OVERDUE: on_overdue}


def register(runner: JobRunner, settings: Settings) -> None:
    for kind, handler in handlers(settings).items():
        runner.register(kind, handler)
