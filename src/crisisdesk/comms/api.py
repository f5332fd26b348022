"""REST API: the template library, previews, publishing from a template, drafts and promises."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, status

from crisisdesk.auth.deps import ApiAdmin, ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.comms import drafts, promises, service
from crisisdesk.comms.models import MessageTemplate, UpdateDraft
from crisisdesk.comms.schemas import (
    ChannelRendering,
    DeclareFromTemplate,
    DraftCreate,
    DraftRead,
    DraftReject,
    FromTemplateCreate,
    PreviewRead,
    PreviewRequest,
    PromiseRead,
    TemplateCreate,
    TemplatePatch,
    TemplateRead,
)
from crisisdesk.comms.templates import Rendered
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentUpdate, Kind, UpdatePromise
from crisisdesk.incident.schemas import IncidentRead, UpdateRead
from crisisdesk.kit.runtime import runtime_of

router = APIRouter(tags=["communications"])


def _preview(rendered: Rendered) -> PreviewRead:
    return PreviewRead(
        channels=[
            ChannelRendering(
                variant=p.variant,
                label=p.label,
                text=p.text,
                length=p.length,
                limit=p.limit,
                sms=p.sms,
                warnings=p.warnings,
            )
            for p in rendered.variants.values()
        ],
        warnings=rendered.warnings,
    )


@router.get("/templates", summary="List templates", response_model=list[TemplateRead], responses=errors(401, 403))
async def list_templates(
    session: Tx,
    actor: ApiReader,
    approved: bool = Query(default=False, description="Only approved templates."),
    archived: bool = Query(default=False, description="Include archived templates."),
) -> list[MessageTemplate]:
    """The library, by scenario and phase."""
    return await service.list_templates(session, approved_only=approved, include_archived=archived)


@router.post(
    "/templates",
    summary="Create a template",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplateRead,
    responses=errors(401, 403, 409, 422),
)
async def create_template(data: TemplateCreate, session: Tx, actor: ApiWriter) -> MessageTemplate:
    """Draft a template; every variant is checked (syntax, declared variables, a trial render). An admin approves it."""
    fields = data.model_dump()
    fields["variables"] = [v.model_dump(exclude_none=True) for v in data.variables]
    return await service.create_template(session, actor, **fields)


@router.get(
    "/templates/{template_id}", summary="Get a template", response_model=TemplateRead, responses=errors(401, 403, 404)
)
async def get_template(template_id: str, session: Tx, actor: ApiReader) -> MessageTemplate:
    """One template with every variant."""
    return await service.get_template(session, template_id)


@router.patch(
    "/templates/{template_id}",
    summary="Change a template",
    response_model=TemplateRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def update_template(template_id: str, data: TemplatePatch, session: Tx, actor: ApiWriter) -> MessageTemplate:
    """Change a template; a non-admin's change to an approved template sends it back for approval."""
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    if data.variables is not None:
        changes["variables"] = [v.model_dump(exclude_none=True) for v in data.variables]
    return await service.update_template(session, actor, await service.get_template(session, template_id), **changes)


@router.post(
    "/templates/{template_id}/approve",
    summary="Approve a template",
    response_model=TemplateRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def approve_template(template_id: str, session: Tx, actor: ApiAdmin) -> MessageTemplate:
    """Admins approve the words; updates from an approved template need no further approval."""
    return await service.approve_template(session, actor, await service.get_template(session, template_id))


@router.post(
    "/templates/{template_id}/archive",
    summary="Archive a template",
    response_model=TemplateRead,
    responses=errors(401, 403, 404),
)
async def archive_template(template_id: str, session: Tx, actor: ApiWriter) -> MessageTemplate:
    """Take a template out of the library (an approved one: admins only)."""
    return await service.archive_template(session, actor, await service.get_template(session, template_id))


@router.post(
    "/templates/{template_id}/preview",
    summary="Preview a template on every channel",
    response_model=PreviewRead,
    responses=errors(401, 403, 404, 422),
)
async def preview_template(
    template_id: str, data: PreviewRequest, request: Request, session: Tx, actor: ApiReader
) -> PreviewRead:
    """Render every variant with these values (samples fill the rest); SMS segments and length overruns flagged."""
    template = await service.get_template(session, template_id)
    return _preview(service.preview(runtime_of(request).settings, template, data.values))


async def _incident(session: Tx, incident_id: str) -> Incident:
    return await incidents.get_incident(session, incident_id, kind=Kind.incident)


async def _update(session: Tx, incident_id: str, update_id: str) -> IncidentUpdate:
    incident = await _incident(session, incident_id)
    return next(u for u in incident.updates if u.id == update_id)


@router.post(
    "/incidents/from-template",
    summary="Declare an incident from a template",
    status_code=status.HTTP_201_CREATED,
    response_model=IncidentRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def declare_from_template(data: DeclareFromTemplate, request: Request, session: Tx, actor: ApiWriter) -> Incident:
    """Declare with the first update (and the name, unless given) in an approved template's words."""
    declared = await service.declare_from_template(
        session,
        actor,
        runtime_of(request).settings,
        template_id=data.template_id,
        severity=data.severity,
        values=data.values,
        name=data.name,
        components=data.components,
        roles={role.value: user_id for role, user_id in data.roles.items()},
        next_update_at=data.next_update_at,
        deliver_notifications=data.deliver_notifications,
    )
    return await _incident(session, declared.incident.id)


@router.post(
    "/incidents/{incident_id}/updates/from-template",
    summary="Post an update from a template",
    status_code=status.HTTP_201_CREATED,
    response_model=UpdateRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def publish_from_template(
    incident_id: str, data: FromTemplateCreate, request: Request, session: Tx, actor: ApiWriter
) -> IncidentUpdate:
    """Publish an approved template's words on every channel; any responder may."""
    published = await service.publish_from_template(
        session,
        actor,
        runtime_of(request).settings,
        await _incident(session, incident_id),
        template_id=data.template_id,
        values=data.values,
        status=data.status,
        components=data.components,
        next_update_at=data.next_update_at,
        deliver_notifications=data.deliver_notifications,
    )
    return await _update(session, incident_id, published.update.id)


@router.get(
    "/incidents/{incident_id}/drafts",
    summary="List an incident's drafts",
    response_model=list[DraftRead],
    responses=errors(401, 403, 404),
)
async def list_drafts(
    incident_id: str,
    session: Tx,
    actor: ApiReader,
    pending: bool = Query(default=False, description="Only drafts waiting for a decision."),
) -> list[UpdateDraft]:
    """Drafts of free-text updates, newest first."""
    await _incident(session, incident_id)
    return await drafts.list_drafts(session, incident_id, pending_only=pending)


@router.post(
    "/incidents/{incident_id}/drafts",
    summary="Submit an update for approval",
    status_code=status.HTTP_201_CREATED,
    response_model=DraftRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def submit_draft(incident_id: str, data: DraftCreate, session: Tx, actor: ApiWriter) -> UpdateDraft:
    """Hold a free-text public update until the Communications Lead or an admin approves it."""
    return await drafts.submit_draft(
        session,
        actor,
        await _incident(session, incident_id),
        status=data.status,
        body=data.body,
        components=data.components,
        next_update_at=data.next_update_at,
        deliver_notifications=data.deliver_notifications,
    )


@router.post(
    "/drafts/{draft_id}/approve",
    summary="Approve and publish a draft",
    response_model=UpdateRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def approve_draft(draft_id: str, session: Tx, actor: ApiWriter) -> IncidentUpdate:
    """The Communications Lead or an admin publishes the draft."""
    draft = await drafts.get_draft(session, draft_id)
    row = await drafts.approve(session, actor, draft)
    return await _update(session, draft.incident_id, row.id)


@router.post(
    "/drafts/{draft_id}/reject",
    summary="Reject a draft",
    response_model=DraftRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def reject_draft(draft_id: str, data: DraftReject, session: Tx, actor: ApiWriter) -> UpdateDraft:
    """The Communications Lead or an admin turns the draft down, with a reason."""
    return await drafts.reject(session, actor, await drafts.get_draft(session, draft_id), reason=data.reason)


@router.post(
    "/drafts/{draft_id}/withdraw",
    summary="Withdraw a draft",
    response_model=DraftRead,
    responses=errors(401, 403, 404, 409),
)
async def withdraw_draft(draft_id: str, session: Tx, actor: ApiWriter) -> UpdateDraft:
    """The author takes the draft back."""
    return await drafts.withdraw(session, actor, await drafts.get_draft(session, draft_id))


@router.get(
    "/incidents/{incident_id}/promises",
    summary="An incident's next-update promises",
    response_model=list[PromiseRead],
    responses=errors(401, 403, 404),
)
async def list_promises(incident_id: str, session: Tx, actor: ApiReader) -> list[UpdatePromise]:
    """Every promise, oldest first, with how late it was kept."""
    await _incident(session, incident_id)
    return (await promises.history(session, incident_id)).promises
