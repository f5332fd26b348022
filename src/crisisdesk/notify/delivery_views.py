"""Console: delivery counts for each update of an incident, and the drill-down per update and channel."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from crisisdesk.auth.deps import ConsoleReader, Tx
from crisisdesk.incident.models import Incident
from crisisdesk.kit.console import render
from crisisdesk.kit.errors import InvalidInput, NotFound
from crisisdesk.notify import deliveries as reading
from crisisdesk.notify.addresses import shown_address
from crisisdesk.notify.schemas import MAX_OFFSET

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50


def page_number(value: str | None, *, default: int | None = None) -> int:
    """A page number from a query string: 1 up to what an offset can reach; anything else names ``page``."""
    text = (value or "").strip()
    if not text and default is not None:
        return default
    if not text.isdecimal() or len(text) > 9 or not 1 <= int(text) <= MAX_OFFSET // PAGE_SIZE:
        raise InvalidInput(f"page must be a whole number from 1 to {MAX_OFFSET // PAGE_SIZE}", field="page")
    return int(text)


@router.get("/console/incidents/{incident_id}/deliveries", response_class=HTMLResponse)
async def incident_panel(request: Request, incident_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """The incident page's delivery panel (a fragment it loads and refreshes live)."""
    updates = await reading.incident_deliveries(session, incident_id)
    return render(request, "console/_deliveries.html", actor=actor, updates=updates, buckets=reading.BUCKETS)


@router.get("/console/updates/{update_id}/deliveries", response_class=HTMLResponse)
async def update_page(
    request: Request,
    update_id: str,
    actor: ConsoleReader,
    session: Tx,
    channel: str = "",
    state: str = "",
    page: str = "1",
) -> HTMLResponse:
    """Every recipient of one update (by channel and state): address, state and each attempt."""
    found = await reading.update_deliveries(session, update_id)
    incident = await session.get(Incident, found.update.incident_id)
    if incident is None:
        raise NotFound("no such incident", field="incident_id")
    number = page_number(page)
    total, rows = await reading.list_deliveries(
        session, update_id, channel=channel, state=state, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
    )
    return render(
        request,
        "console/deliveries.html",
        actor=actor,
        incident=incident,
        found=found,
        buckets=reading.BUCKETS,
        channel=channel,
        state=state,
        states=reading.STATE_FILTERS,
        total=total,
        rows=rows,
        page=number,
        pages=max(1, -(-total // PAGE_SIZE)),
        shown_address=shown_address,
        bucket_of=reading.bucket_of,
    )
