"""Work the workers run for on-call: escalation steps, delayed notifications, mobilising on declare."""

from __future__ import annotations

from crisisdesk.kit.runtime import Runtime
from crisisdesk.oncall import mobilise, paging


def register(runtime: Runtime) -> None:
    """Register on-call's job handlers on this process's runner."""
    runtime.runner.register(paging.ESCALATE, paging.run_escalate)
    runtime.runner.register(paging.NOTIFY, paging.run_notify)
    runtime.runner.register(mobilise.MOBILISE, mobilise.run_mobilise)
