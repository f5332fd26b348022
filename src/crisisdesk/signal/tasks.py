"""Work the workers run for signal: synthetic checks and vendor polls (the probe lane), alert upkeep."""

from __future__ import annotations

from crisisdesk.kit.runtime import Runtime

# Jobs that wait on the network: they run in a lane of their own, many at a time, so a slow
# check never holds up an escalation timer.
CHECK_RUN = "signal.check"
VENDOR_POLL = "signal.vendor"
PROBE_KINDS = frozenset({CHECK_RUN, VENDOR_POLL})


def register(runtime: Runtime) -> None:
    """Register signal's job handlers on this process's runner."""
