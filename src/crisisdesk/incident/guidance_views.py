"""Console: the "Workaround and ETA" card on the incident page, and its forms."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import ConsoleWriter, Tx
from crisisdesk.auth.service import Actor
from crisisdesk.incident import guidance
from crisisdesk.incident import views as incident_views
from crisisdesk.incident.models import Incident
from crisisdesk.kit.console import parse_utc_input, text
from crisisdesk.kit.errors import InvalidInput

router = APIRouter(include_in_schema=False)


async def guidance_panel(session: AsyncSession, actor: Actor, incident: Incident) -> dict[str, Any]:
    """The current workaround and ETA, their history, and whether this user may publish them."""
    now = await guidance.current(session, incident.id)
    workarounds, etas = await guidance.history(session, incident.id)
    return {
        "guidance_now": now,
        "guidance_workarounds": workarounds,
        "guidance_etas": etas,
        "guidance_may_publish": await guidance.may_publish(session, actor, incident),
    }


incident_views.incident_panels.append(guidance_panel)


@router.post("/console/incidents/{incident_id}/workaround", response_class=HTMLResponse)
async def set_workaround(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Save the workaround (published or internal), or withdraw it."""

    async def action(incident: Incident, values: dict[str, Any]) -> None:
        withdraw = text(values, "action") == "withdraw"
        await guidance.set_workaround(
            session,
            actor,
            incident_id=incident.id,
            body="" if withdraw else text(values, "body"),
            published=not withdraw and bool(values.get("published")),
        )

    return await incident_views.act(request, actor, session, incident_id, "workaround", action, anchor="guidance")


@router.post("/console/incidents/{incident_id}/eta", response_class=HTMLResponse)
async def set_eta(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Set or move the ETA (typed in UTC) with a note, or withdraw it."""

    async def action(incident: Incident, values: dict[str, Any]) -> None:
        withdraw = text(values, "action") == "withdraw"
        eta_at = None if withdraw else parse_utc_input(text(values, "eta_at"), field="eta_at")
        if not withdraw and eta_at is None:
            raise InvalidInput("pick the time the fix is expected (UTC), or withdraw the ETA", field="eta_at")
        await guidance.set_eta(
            session,
            actor,
            incident_id=incident.id,
            eta_at=eta_at,
            note=text(values, "note"),
            published=not withdraw and bool(values.get("published")),
        )

    return await incident_views.act(request, actor, session, incident_id, "eta", action, anchor="guidance")
