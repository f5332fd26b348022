"""Console: the outreach card on the incident page (pick, preview, send) and the CSM tasks page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.service import Actor
from crisisdesk.comms import service as comms
from crisisdesk.customer import affected, csm_tasks, outreach
from crisisdesk.incident import service as incidents
from crisisdesk.incident import views as incident_views
from crisisdesk.incident.models import Incident, Kind
from crisisdesk.kit.console import as_list, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.db import MAX_INT_ID
from crisisdesk.kit.errors import DomainError
from crisisdesk.kit.runtime import runtime_of

router = APIRouter(include_in_schema=False)
TASKS_PAGE = 100


async def known_tiers(session: AsyncSession) -> list[str]:
    """The tiers accounts have, for the outreach card's choices (read on every incident page: an
    index walk, one probe per tier, where SELECT DISTINCT would read every account)."""
    return sorted((t for t in await affected.tiers_in_use(session) if t), key=str.lower)


async def outreach_panel(session: AsyncSession, actor: Actor, incident: Incident) -> dict[str, Any]:
    """Approved templates to send, the tiers to choose from, and the outreaches so far."""
    return {
        "outreach_templates": await comms.list_templates(session, approved_only=True),
        "outreach_tiers": await known_tiers(session),
        "outreach_list": await outreach.list_for_incident(session, incident.id),
        "outreach_may_send": await outreach.may_send(session, actor, incident),
        "outreach_defaults": {"top_tiers": ", ".join(outreach.DEFAULT_TOP_TIERS)},
    }


incident_views.incident_panels.append(outreach_panel)


def _names(values: dict[str, Any], key: str) -> list[str]:
    """A comma-separated text field (or repeated checkboxes) as names."""
    found: list[str] = []
    for item in as_list(values.get(key)):
        found.extend(part.strip() for part in item.split(",") if part.strip())
    return found


@router.post("/console/incidents/{incident_id}/outreach", response_class=HTMLResponse)
async def send_outreach(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Preview (counts and one rendered message) or send the outreach chosen on the incident page."""
    values = await form_values(request)
    incident = await incidents.get_incident(session, incident_id, kind=Kind.incident)
    preview = text(values, "action") != "send"
    try:
        plan = await outreach.send(
            session,
            actor,
            runtime_of(request).settings,
            incident_id=incident.id,
            template_id=text(values, "template_id"),
            tiers=_names(values, "tiers"),
            contact_roles=_names(values, "contact_roles"),
            top_tiers=_names(values, "top_tiers"),
            dry_run=preview,
        )
    except DomainError as exc:
        if exc.field == "incident_id":
            raise
        await discard(session)
        failure = failure_of(exc, "outreach", values)
        return await incident_views._incident_page(request, actor, session, incident_id, failure=failure)
    if not preview:
        return see_other(f"/console/incidents/{incident_id}#outreach")
    template = await comms.get_template(session, text(values, "template_id"))
    return render(
        request,
        "customer/outreach_preview.html",
        actor=actor,
        incident=incident,
        template=template,
        plan=plan,
        may_send=await outreach.may_send(session, actor, incident),
        form={
            "template_id": template.id,
            "tiers": ", ".join(plan.tiers),
            "contact_roles": ", ".join(plan.contact_roles),
            "top_tiers": ", ".join(plan.top_tiers),
        },
    )


@router.get("/console/csm-tasks", response_class=HTMLResponse)
async def tasks_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Follow-ups for customer success managers, filtered by assignee and status (open by default)."""
    assignee = (request.query_params.get("assignee") or "").strip() or None
    raw_status = request.query_params.get("status", "open")
    failure = None
    try:
        status = csm_tasks.parse_status(raw_status)
    except DomainError as exc:
        failure, status, raw_status = failure_of(exc, "tasks", dict(request.query_params)), None, ""
    tasks = list(await csm_tasks.list_tasks(session, assignee=assignee, status=status, limit=TASKS_PAGE))
    total = await csm_tasks.count(session, assignee=assignee, status=status)
    accounts, found = await csm_tasks.names(session, tasks)
    return render(
        request,
        "customer/csm_tasks.html",
        actor=actor,
        tasks=tasks,
        total=total,
        accounts=accounts,
        incidents=found,
        assignee=assignee or "",
        status=raw_status,
        failure=failure,
        status_code=422 if failure else 200,
    )


@router.post("/console/csm-tasks/{task_id}/done", response_class=HTMLResponse)
async def complete_task(
    request: Request, actor: ConsoleWriter, session: Tx, task_id: int = Path(ge=1, le=MAX_INT_ID)
) -> Response:
    """Mark a task done and go back to the list it was on."""
    values = await form_values(request)
    back = {k: text(values, k) for k in ("assignee", "status") if text(values, k)}
    try:
        await csm_tasks.complete(session, actor, task_id)
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        await discard(session)  # done already (by someone else): the list shows it so
    return see_other("/console/csm-tasks" + (f"?{urlencode(back)}" if back else ""))
