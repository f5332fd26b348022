"""The public page's live channel: Server-Sent Events announcing each new snapshot version.

The stream reads only the in-memory store, so it keeps running (with pings) when the database
is unreachable, and it costs nothing per connection beyond one waiting task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from crisisdesk.statuspage.store import SiteStore

router = APIRouter()
PING_SECONDS = 15.0
RETRY_MS = 5000


def snapshot_event(version: int) -> str:
    return f"event: snapshot\ndata: {version}\n\n"


async def snapshot_events(store: SiteStore, request: Request, *, ping: float | None = None) -> AsyncIterator[str]:
    """The current version at once, then each newer one; a comment line when idle."""
    ping = ping or PING_SECONDS
    version = store.version
    yield f"retry: {RETRY_MS}\n" + snapshot_event(version)
    while not await request.is_disconnected():
        newer = await store.wait_newer(version, timeout=ping)
        if newer > version:
            version = newer
            yield snapshot_event(version)
        else:
            yield ": ping\n\n"


@router.get("/status/live", include_in_schema=False)
async def live(request: Request) -> StreamingResponse:
    """Server-Sent Events: ``event: snapshot`` with the version whenever the public site changes."""
    store: SiteStore = request.app.state.site
    return StreamingResponse(
        snapshot_events(store, request),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
