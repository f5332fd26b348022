"""Work the workers run for signal: synthetic checks and vendor polls (the probe lane), alert upkeep."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.kit.runtime import Runtime
from crisisdesk.signal import checks, vendors

# Jobs that wait on the network: they run in a lane of their own, many at a time, so a slow
# check never holds up an escalation timer.
CHECK_RUN = checks.CHECK_RUN  # "signal.check"
VENDOR_POLL = vendors.VENDOR_POLL  # "signal.vendor"
PROBE_KINDS = frozenset({CHECK_RUN, VENDOR_POLL})


def register(runtime: Runtime) -> None:
    """Register signal's job handlers on this process's runner."""
    settings = runtime.settings

    async def run_check(session: AsyncSession, payload: dict[str, Any]) -> None:
        await checks.run_check(session, payload, settings)

    async def poll_vendor(session: AsyncSession, payload: dict[str, Any]) -> None:
        await vendors.poll_vendor(session, payload, settings)

    runtime.runner.register(CHECK_RUN, run_check)
    runtime.runner.register(VENDOR_POLL, poll_vendor)
