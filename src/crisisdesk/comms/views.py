"""Console pages: the template library and editor, writing an update from a template, drafts.

Panels on the incident, declare and dashboard pages come from here too, through the provider
lists of :mod:`crisisdesk.incident.views` (the incident package must not import comms).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth import service as auth
from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.catalog.views import board
from crisisdesk.comms import drafts, promises, service
from crisisdesk.comms.models import DraftState, MessageTemplate
from crisisdesk.comms.templates import KNOWN_VARIABLES, VARIABLE_TYPES, VARIANTS, Rendered, Variable
from crisisdesk.incident import policy as policies
from crisisdesk.incident import service as incidents
from crisisdesk.incident import views as incident_views
from crisisdesk.incident.models import Incident, IncidentRole, Kind
from crisisdesk.kit.console import (
    Failure,
    as_list,
    discard,
    failure_of,
    form_values,
    parse_utc_input,
    render,
    see_other,
    text,
    utc_input,
)
from crisisdesk.kit.errors import DomainError
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.kit.time import utcnow

router = APIRouter(include_in_schema=False)

BLANK_VARIABLE_ROWS = 3
_DATETIME_LOCAL = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


def _status_of(failure: Failure | None) -> int:
    return 200 if failure is None else int(failure.values.get("_status", 422))


def _failure(exc: DomainError, form: str, values: dict[str, Any]) -> Failure:
    failure = failure_of(exc, form, values)
    if failure.field and failure.field.startswith("values."):
        failure.field = "var:" + failure.field.split(".", 1)[1]
    elif failure.field and failure.field.startswith("variables."):
        failure.field = "variables"
    return failure


# ---- panels on the incident pages -------------------------------------------------------------


async def incident_panel(session: AsyncSession, actor: Actor, incident: Incident) -> dict[str, Any]:
    """Drafts, the promise history, the templates to write from, and whether free text needs approval."""
    users = {u.id: u for u in await auth.list_users(session)}
    history = await promises.history(session, incident.id)
    incident_drafts = await drafts.list_drafts(session, incident.id)
    return {
        "comms_templates": await service.list_templates(session, approved_only=True),
        "comms_drafts": incident_drafts,
        "comms_pending": sum(1 for d in incident_drafts if d.state == DraftState.pending),
        "comms_history": history,
        "comms_needs_approval": actor.can(Scope.write) and await drafts.needs_approval(session, actor, incident),
        "comms_may_approve": actor.can(Scope.write) and await incidents.may_approve(session, actor, incident),
        "comms_users": users,
    }


async def declare_panel(session: AsyncSession, actor: Actor) -> dict[str, Any]:
    return {"comms_templates": await service.list_templates(session, approved_only=True)}


async def dashboard_panel(session: AsyncSession, actor: Actor) -> dict[str, Any]:
    return {"comms_pending": await drafts.pending_count(session)}


incident_views.incident_panels.append(incident_panel)
incident_views.declare_panels.append(declare_panel)
incident_views.dashboard_panels.append(dashboard_panel)


# ---- the library ------------------------------------------------------------------------------


@router.get("/console/templates", response_class=HTMLResponse)
async def library_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Every template by scenario and phase, approved or waiting."""
    templates = await service.list_templates(session, include_archived=bool(request.query_params.get("archived")))
    scenarios: dict[str, list[MessageTemplate]] = {}
    for template in templates:
        scenarios.setdefault(template.scenario, []).append(template)
    return render(request, "comms/library.html", actor=actor, scenarios=scenarios)


def _template_fields(values: dict[str, Any]) -> dict[str, Any]:
    variables = []
    for index in range(50):
        name = text(values, f"var_name_{index}").strip()
        if f"var_name_{index}" not in values:
            break
        if not name:
            continue
        variables.append(
            {
                "name": name,
                "type": text(values, f"var_type_{index}") or KNOWN_VARIABLES.get(name, "text"),
                "label": text(values, f"var_label_{index}").strip() or None,
                "required": bool(values.get(f"var_required_{index}")),
            }
        )
    fields: dict[str, Any] = {v: text(values, v) for v in VARIANTS}
    fields["variables"] = variables
    return fields


async def _editor(
    request: Request,
    actor: Actor,
    template: MessageTemplate | None,
    *,
    fields: dict[str, Any] | None = None,
    failure: Failure | None = None,
    preview: Rendered | None = None,
) -> HTMLResponse:
    settings = runtime_of(request).settings
    if fields is None and template is not None:
        fields = {v: getattr(template, v) for v in VARIANTS} | {
            "variables": template.variables,
            "scenario": template.scenario,
            "phase": template.phase,
        }
    fields = fields or {"variables": [], "scenario": "", "phase": "investigating"}
    if preview is None and failure is None and template is not None:
        try:
            preview = service.preview(settings, template)
        except DomainError:
            preview = None
    rows = list(fields.get("variables") or []) + [{} for _ in range(BLANK_VARIABLE_ROWS)]
    return render(
        request,
        "comms/template_form.html",
        actor=actor,
        template=template,
        fields=fields,
        variable_rows=rows,
        variable_types=VARIABLE_TYPES,
        known_variables=KNOWN_VARIABLES,
        variants=VARIANTS,
        phases=service.PHASES,
        preview=preview,
        failure=failure,
        status_code=_status_of(failure),
    )


@router.get("/console/templates/new", response_class=HTMLResponse)
async def new_template(request: Request, actor: ConsoleWriter, session: Tx) -> HTMLResponse:
    """An empty template form."""
    return await _editor(request, actor, None)


@router.post("/console/templates", response_class=HTMLResponse)
async def create_template(request: Request, actor: ConsoleWriter, session: Tx) -> Response:
    """Save a new template (it waits for an admin's approval)."""
    values = await form_values(request)
    fields = _template_fields(values)
    fields_with_labels = fields | {"scenario": text(values, "scenario"), "phase": text(values, "phase")}
    try:
        if text(values, "action") == "preview":
            preview = service.preview(runtime_of(request).settings, fields)
            return await _editor(request, actor, None, fields=fields_with_labels, preview=preview)
        template = await service.create_template(session, actor, **fields_with_labels)
    except DomainError as exc:
        await discard(session)
        failure = _failure(exc, "template", values)
        return await _editor(request, actor, None, fields=fields_with_labels, failure=failure)
    return see_other(f"/console/templates/{template.id}")


@router.get("/console/templates/{template_id}", response_class=HTMLResponse)
async def template_page(request: Request, template_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """A template's variants with a preview on every channel."""
    return await _editor(request, actor, await service.get_template(session, template_id))


@router.post("/console/templates/{template_id}", response_class=HTMLResponse)
async def save_template(request: Request, template_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Save changes (or preview them); a responder's change to an approved template needs approval again."""
    template = await service.get_template(session, template_id)
    values = await form_values(request)
    fields = _template_fields(values) | {"scenario": text(values, "scenario"), "phase": text(values, "phase")}
    try:
        if text(values, "action") == "preview":
            preview = service.preview(runtime_of(request).settings, fields)
            return await _editor(request, actor, template, fields=fields, preview=preview)
        await service.update_template(session, actor, template, **fields)
    except DomainError as exc:
        await discard(session)
        template = await service.get_template(session, template_id)
        return await _editor(request, actor, template, fields=fields, failure=_failure(exc, "template", values))
    return see_other(f"/console/templates/{template_id}")


async def _template_action(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    template_id: str,
    action: Callable[[AsyncSession, Actor, MessageTemplate], Awaitable[MessageTemplate]],
    done: str,
) -> Response:
    template = await service.get_template(session, template_id)
    try:
        await action(session, actor, template)
    except DomainError as exc:
        await discard(session)
        template = await service.get_template(session, template_id)
        return await _editor(request, actor, template, failure=_failure(exc, "template", {}))
    return see_other(done)


@router.post("/console/templates/{template_id}/approve", response_class=HTMLResponse)
async def approve_template(request: Request, template_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """An admin approves the template's words."""
    return await _template_action(
        request, actor, session, template_id, service.approve_template, f"/console/templates/{template_id}"
    )


@router.post("/console/templates/{template_id}/archive", response_class=HTMLResponse)
async def archive_template(request: Request, template_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Take the template out of the library."""
    return await _template_action(request, actor, session, template_id, service.archive_template, "/console/templates")


# ---- writing from a template ------------------------------------------------------------------


def _form_values_for(variables: list[Variable], values: dict[str, Any]) -> dict[str, Any]:
    """The typed values a compose form carries (datetime-local inputs are UTC)."""
    result: dict[str, Any] = {}
    for var in variables:
        key = f"var:{var.name}"
        if var.type == "components":
            result[var.name] = as_list(values.get(key))
        elif var.type == "datetime":
            result[var.name] = parse_utc_input(text(values, key), field=f"values.{var.name}")
        elif var.type == "eta" and _DATETIME_LOCAL.match(text(values, key).strip()):
            result[var.name] = parse_utc_input(text(values, key), field=f"values.{var.name}")
        else:
            result[var.name] = text(values, key)
    return result


def _inputs_from(variables: list[Variable], prefill: dict[str, Any]) -> dict[str, Any]:
    """Prefilled values as form input values."""
    inputs: dict[str, Any] = {}
    for var in variables:
        value = prefill.get(var.name)
        if isinstance(value, datetime):
            inputs[f"var:{var.name}"] = utc_input(value)
        elif isinstance(value, list):
            inputs[f"var:{var.name}"] = value
        elif value is not None:
            inputs[f"var:{var.name}"] = str(value)
    return inputs


async def _compose_page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    incident: Incident | None,
    *,
    template_id: str | None,
    inputs: dict[str, Any] | None = None,
    failure: Failure | None = None,
    preview: Rendered | None = None,
) -> HTMLResponse:
    settings = runtime_of(request).settings
    library = await service.list_templates(session, approved_only=True)
    template = None
    if template_id:
        template = await service.get_template(session, template_id)
    elif library:
        phase = incident.status if incident else "investigating"
        template = next((t for t in library if t.phase == phase), library[0])
    variables = service.variables_of(template) if template else []
    if inputs is None:
        prefill: dict[str, Any] = {}
        if incident is not None:
            prefill = await service.incident_values(session, settings, incident)
        else:
            prefill = {"start_time": utcnow().replace(second=0, microsecond=0)}
        inputs = _inputs_from(variables, prefill)
        if template is not None:
            inputs.setdefault("status", template.phase if template.phase in incident_views.UPDATE_STATUSES else "")
    if preview is None and template is not None:
        try:
            typed = _form_values_for(variables, inputs)
            preview = service.preview(settings, template, {k: v for k, v in typed.items() if v not in (None, "", [])})
        except DomainError:
            preview = service.preview(settings, template)
    components = await catalog.list_components(session)
    policy_list = await policies.list_policies(session)
    return render(
        request,
        "comms/compose.html",
        actor=actor,
        incident=incident,
        library=library,
        template=template,
        variables=variables,
        inputs=inputs,
        preview=preview,
        failure=failure,
        values=inputs,
        status_code=_status_of(failure),
        board=board(components),
        component_names=[c.name for c in components if not c.is_group],
        statuses=list(ComponentStatus),
        update_statuses=incident_views.UPDATE_STATUSES,
        policies=policy_list,
        users=[u for u in await auth.list_users(session) if u.is_active],
        roles=list(IncidentRole),
        variants=VARIANTS,
    )


@router.get("/console/incidents/{incident_id}/compose", response_class=HTMLResponse)
async def compose_page(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> HTMLResponse:
    """Write from template: choose one, fill its variables (prefilled from the incident), preview, publish."""
    incident = await incidents.get_incident(session, incident_id, kind=Kind.incident)
    return await _compose_page(
        request, actor, session, incident, template_id=request.query_params.get("template_id") or None
    )


@router.post("/console/incidents/{incident_id}/compose", response_class=HTMLResponse)
async def compose(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Preview, or publish the update in the approved template's words."""
    incident = await incidents.get_incident(session, incident_id, kind=Kind.incident)
    values = await form_values(request)
    template_id = text(values, "template_id")
    settings = runtime_of(request).settings
    try:
        template = await service.get_template(session, template_id)
        typed = _form_values_for(service.variables_of(template), values)
        if text(values, "action") == "preview":
            preview = service.preview(settings, template, {k: v for k, v in typed.items() if v not in (None, "", [])})
            return await _compose_page(
                request, actor, session, incident, template_id=template_id, inputs=values, preview=preview
            )
        await service.publish_from_template(
            session,
            actor,
            settings,
            incident,
            template_id=template_id,
            values=typed,
            status=text(values, "status") or None,
            components=incident_views.component_choices(values),
            next_update_at=parse_utc_input(text(values, "next_update_at"), field="next_update_at"),
        )
    except DomainError as exc:
        await discard(session)
        incident = await incidents.get_incident(session, incident_id, kind=Kind.incident)
        return await _compose_page(
            request,
            actor,
            session,
            incident,
            template_id=template_id or None,
            inputs=values,
            failure=_failure(exc, "compose", values),
        )
    return see_other(f"/console/incidents/{incident_id}")


@router.get("/console/incidents/new/template", response_class=HTMLResponse)
async def declare_from_template_page(request: Request, actor: ConsoleWriter, session: Tx) -> HTMLResponse:
    """Declare from a template: severity, components, roles, the template's variables, a preview."""
    return await _compose_page(
        request, actor, session, None, template_id=request.query_params.get("template_id") or None
    )


@router.post("/console/incidents/new/template", response_class=HTMLResponse)
async def declare_from_template(request: Request, actor: ConsoleWriter, session: Tx) -> Response:
    """Preview, or declare the incident with the template's words."""
    values = await form_values(request)
    template_id = text(values, "template_id")
    settings = runtime_of(request).settings
    try:
        template = await service.get_template(session, template_id)
        typed = _form_values_for(service.variables_of(template), values)
        if text(values, "action") == "preview":
            preview = service.preview(settings, template, {k: v for k, v in typed.items() if v not in (None, "", [])})
            return await _compose_page(
                request, actor, session, None, template_id=template_id, inputs=values, preview=preview
            )
        roles = {
            key.split(":", 1)[1]: text(values, key) for key in values if key.startswith("role:") and text(values, key)
        }
        declared = await service.declare_from_template(
            session,
            actor,
            settings,
            template_id=template_id,
            severity=text(values, "severity"),
            values=typed,
            name=text(values, "name") or None,
            components=incident_views.component_choices(values),
            roles=roles,
            next_update_at=parse_utc_input(text(values, "next_update_at"), field="next_update_at"),
        )
    except DomainError as exc:
        await discard(session)
        return await _compose_page(
            request,
            actor,
            session,
            None,
            template_id=template_id or None,
            inputs=values,
            failure=_failure(exc, "compose", values),
        )
    return see_other(f"/console/incidents/{declared.incident.id}")


# ---- drafts -----------------------------------------------------------------------------------


async def _rerender_incident(
    request: Request, actor: Actor, session: AsyncSession, incident_id: str, failure: Failure
) -> Response:
    return await incident_views._incident_page(request, actor, session, incident_id, failure=failure)


@router.post("/console/incidents/{incident_id}/drafts", response_class=HTMLResponse)
async def submit_draft(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """The update form of a responder whose free text needs approval: the update waits as a draft."""
    values = await form_values(request)
    incident = await incidents.get_incident(session, incident_id, kind=Kind.incident)
    try:
        await drafts.submit_draft(
            session,
            actor,
            incident,
            status=text(values, "status"),
            body=text(values, "body"),
            components=incident_views.component_choices(values),
            next_update_at=parse_utc_input(text(values, "next_update_at"), field="next_update_at"),
        )
    except DomainError as exc:
        await discard(session)
        return await _rerender_incident(request, actor, session, incident_id, failure_of(exc, "update", values))
    return see_other(f"/console/incidents/{incident_id}#drafts")


async def _decide(request: Request, actor: Actor, session: AsyncSession, draft_id: str, decision: str) -> Response:
    values = await form_values(request)
    draft = await drafts.get_draft(session, draft_id)
    incident_id = draft.incident_id
    try:
        if decision == "approve":
            await drafts.approve(session, actor, draft)
        elif decision == "reject":
            await drafts.reject(session, actor, draft, reason=text(values, "reason"))
        else:
            await drafts.withdraw(session, actor, draft)
    except DomainError as exc:
        await discard(session)
        failure = failure_of(exc, f"draft-{draft_id}", values)
        return await _rerender_incident(request, actor, session, incident_id, failure)
    return see_other(f"/console/incidents/{incident_id}#drafts")


@router.post("/console/drafts/{draft_id}/approve", response_class=HTMLResponse)
async def approve_draft(request: Request, draft_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """The Communications Lead or an admin publishes the draft."""
    return await _decide(request, actor, session, draft_id, "approve")


@router.post("/console/drafts/{draft_id}/reject", response_class=HTMLResponse)
async def reject_draft(request: Request, draft_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """The Communications Lead or an admin turns the draft down, with a reason."""
    return await _decide(request, actor, session, draft_id, "reject")


@router.post("/console/drafts/{draft_id}/withdraw", response_class=HTMLResponse)
async def withdraw_draft(request: Request, draft_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """The author takes the draft back."""
    return await _decide(request, actor, session, draft_id, "withdraw")
