"""Work the workers run for on-call: escalation steps, delayed notifications, mobilising on declare."""

from __future__ import annotations

from crisisdesk.kit.runtime import Runtime


def register(runtime: Runtime) -> None:
    """Register on-call's job handlers on this process's runner."""
