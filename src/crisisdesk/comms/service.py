"""The template library and publishing from it: one approved text, rendered for every channel.

An update written from an approved template needs no further approval (the words were approved
with the template); its per-channel renderings are stored as ``UpdateMessage`` rows in the same
transaction, so every channel sends exactly the approved words.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.comms.models import MessageTemplate
from crisisdesk.comms.templates import (
    REQUIRED_VARIANTS,
    SOCIAL_LIMIT,
    SUBJECT_LIMIT,
    VARIANTS,
    Rendered,
    Renderer,
    Variable,
    coerce_values,
    page_datetime,
    parse_variables,
    refuse_nul,
    render_all,
    sample_values,
)
from crisisdesk.config import Settings
from crisisdesk.incident import guidance
from crisisdesk.incident import policy as policies
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import (
    Incident,
    IncidentStatus,
    IncidentUpdate,
    Kind,
    Severity,
    TimelineEvent,
)
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.render import markdown_to_html
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import UpdateMessage
from crisisdesk.statuspage.public import shortlink

INCIDENT_PHASES = ("investigating", "identified", "monitoring", "resolved")
MAINTENANCE_PHASES = ("scheduled", "in_progress", "completed")
PHASES = INCIDENT_PHASES + MAINTENANCE_PHASES
MAX_SCENARIO = 120
# Channels that receive a rendering of their own; the rest render the update's body.
MESSAGE_CHANNELS = ("email", "sms", "slack", "teams", "social")


@functools.lru_cache(maxsize=8)
def renderer(time_zone: str = "Etc/UTC") -> Renderer:
    """One sandbox per time zone (compiling the environment is not free)."""
    return Renderer(time_zone)


def renderer_for(settings: Settings) -> Renderer:
    """The sandbox for the page's time zone."""
    return renderer(settings.page_time_zone)


def variables_of(template: MessageTemplate) -> list[Variable]:
    """A template's declared variables, checked."""
    return parse_variables(template.variables)


def sources_of(template: MessageTemplate) -> dict[str, str]:
    """Every variant's source ("" where the template has none)."""
    return {variant: getattr(template, variant) or "" for variant in VARIANTS}


def validate(fields: Mapping[str, Any]) -> list[Variable]:
    """Check every variant: syntax (with the line), declared names only, a trial render with samples."""
    variables = parse_variables(fields.get("variables"))
    check = renderer()
    declared = {v.name for v in variables}
    for variant in REQUIRED_VARIANTS:
        if not str(fields.get(variant) or "").strip():
            raise InvalidInput(f"{VARIANTS[variant]} must not be empty", field=variant)
    for variant in VARIANTS:
        check.check_source(variant, str(fields.get(variant) or ""), declared)
    render_all(check, {v: str(fields.get(v) or "") for v in VARIANTS}, sample_values(variables))
    return variables


def _check_labels(scenario: str, phase: str) -> tuple[str, str]:
    scenario = scenario.strip()
    if not scenario or len(scenario) > MAX_SCENARIO:
        raise InvalidInput(f"scenario must be 1 to {MAX_SCENARIO} characters", field="scenario")
    refuse_nul(scenario, label="scenario", field="scenario")
    phase = phase.strip()
    if phase not in PHASES:
        shown = phase if len(phase) <= 40 else phase[:40] + "…"
        raise InvalidInput(f"{shown!r} is not a phase; use one of: {', '.join(PHASES)}", field="phase")
    return scenario, phase


async def _check_unique(session: AsyncSession, scenario: str, phase: str, *, other_than: str | None = None) -> None:
    query = select(MessageTemplate.id).where(MessageTemplate.scenario == scenario, MessageTemplate.phase == phase)
    if other_than is not None:
        query = query.where(MessageTemplate.id != other_than)
    if await session.scalar(query):
        raise Conflict(f"the library already has a {phase!r} template for {scenario!r}", field="phase")


async def create_template(
    session: AsyncSession,
    actor: Actor,
    *,
    scenario: str,
    phase: str,
    title: str,
    body: str,
    variables: Sequence[Mapping[str, Any]] | None = None,
    email_subject: str = "",
    email_html: str = "",
    email_text: str = "",
    sms: str = "",
    slack: str = "",
    teams: str = "",
    social: str = "",
) -> MessageTemplate:
    """Draft a template (any writer); it is used for publishing once an admin approves it."""
    actor.require(Scope.write)
    scenario, phase = _check_labels(scenario, phase)
    fields: dict[str, Any] = {
        "title": title,
        "body": body,
        "variables": list(variables or []),
        "email_subject": email_subject,
        "email_html": email_html,
        "email_text": email_text,
        "sms": sms,
        "slack": slack,
        "teams": teams,
        "social": social,
    }
    parsed = validate(fields)
    await _check_unique(session, scenario, phase)
    now = utcnow()
    template = MessageTemplate(
        scenario=scenario,
        phase=phase,
        **{**fields, "variables": [v.as_dict() for v in parsed]},
        created_by_id=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(template)
    await session.flush()
    return template


async def update_template(
    session: AsyncSession, actor: Actor, template: MessageTemplate, **changes: Any
) -> MessageTemplate:
    """Change a template; when someone other than an admin edits an approved one, it needs approval again."""
    actor.require(Scope.write)
    if template.archived_at is not None:
        raise Conflict("this template is archived", field="template_id")
    allowed = {"scenario", "phase", "variables", *VARIANTS}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"{sorted(unknown)[0]!r} cannot be changed", field=sorted(unknown)[0])
    changes = {k: v for k, v in changes.items() if v is not None}
    scenario, phase = _check_labels(
        str(changes.get("scenario", template.scenario)), str(changes.get("phase", template.phase))
    )
    merged: dict[str, Any] = {v: changes.get(v, getattr(template, v)) for v in VARIANTS}
    merged["variables"] = changes.get("variables", template.variables)
    parsed = validate(merged)
    await _check_unique(session, scenario, phase, other_than=template.id)
    before = {v: getattr(template, v) for v in VARIANTS} | {
        "variables": template.variables,
        "scenario": template.scenario,
        "phase": template.phase,
    }
    template.scenario, template.phase = scenario, phase
    for variant in VARIANTS:
        setattr(template, variant, merged[variant] or "")
    template.variables = [v.as_dict() for v in parsed]
    after = {v: getattr(template, v) for v in VARIANTS} | {
        "variables": template.variables,
        "scenario": template.scenario,
        "phase": template.phase,
    }
    if before != after:
        template.updated_at = utcnow()
        if template.approved_at is not None and not actor.can(Scope.admin):
            template.approved_at = None
            template.approved_by_id = None
    return template


async def approve_template(session: AsyncSession, actor: Actor, template: MessageTemplate) -> MessageTemplate:
    """An admin approves the words: updates from this template publish without further approval."""
    actor.require(Scope.admin)
    if template.archived_at is not None:
        raise Conflict("an archived template cannot be approved", field="template_id")
    validate({v: getattr(template, v) for v in VARIANTS} | {"variables": template.variables})
    template.approved_at = utcnow()
    template.approved_by_id = actor.user_id
    return template


async def archive_template(session: AsyncSession, actor: Actor, template: MessageTemplate) -> MessageTemplate:
    """Take a template out of the library; an approved one only by an admin."""
    actor.require(Scope.write)
    if template.approved_at is not None and not actor.can(Scope.admin):
        raise Forbidden("only an admin archives an approved template", field="template_id")
    if template.archived_at is None:
        template.archived_at = utcnow()
    return template


async def get_template(session: AsyncSession, template_id: str, *, field: str = "template_id") -> MessageTemplate:
    """One template by id (404 naming ``field``)."""
    # A NUL is in no id, and PostgreSQL refuses one in a query (the app answered 503).
    template = await session.get(MessageTemplate, template_id) if "\x00" not in template_id else None
    if template is None:
        raise NotFound(f"no template with id {template_id!r}", field=field)
    return template


async def list_templates(
    session: AsyncSession, *, approved_only: bool = False, include_archived: bool = False
) -> list[MessageTemplate]:
    """The library, by scenario and then phase in the order an incident passes through them."""
    query = select(MessageTemplate)
    if not include_archived:
        query = query.where(MessageTemplate.archived_at.is_(None))
    if approved_only:
        query = query.where(MessageTemplate.approved_at.is_not(None))
    rows = list(await session.scalars(query))
    order = {p: i for i, p in enumerate(PHASES)}
    rows.sort(key=lambda t: (t.scenario.lower(), order.get(t.phase, 99), t.created_at))
    return rows


def preview(
    settings: Settings, template: MessageTemplate | Mapping[str, Any], values: Mapping[str, Any] | None = None
) -> Rendered:
    """Every channel's rendering for these values (samples fill what is missing), with overruns flagged."""
    if isinstance(template, MessageTemplate):
        fields: Mapping[str, Any] = {v: getattr(template, v) for v in VARIANTS} | {"variables": template.variables}
    else:
        fields = template
    variables = parse_variables(fields.get("variables"))
    _refuse_unknown(fields, values or {})
    given = {k: v for k, v in (values or {}).items() if v not in (None, "", [])}
    samples = sample_values(variables)
    filled = coerce_values(variables, {v.name: given.get(v.name, samples[v.name]) for v in variables})
    return render_all(renderer_for(settings), {v: str(fields.get(v) or "") for v in VARIANTS}, filled)


async def incident_values(
    session: AsyncSession, settings: Settings, incident: Incident, *, next_update_at: datetime | None = None
) -> dict[str, Any]:
    """What the incident already knows: components, start, links, the promise, and its current workaround
    and ETA once published (to prefill a form). Template words reach customers, so an internal workaround
    or ETA stays out until someone publishes it."""
    names = {c.id: c.name for c in await catalog.list_components(session)}
    promise = next_update_at or incident.next_update_at
    if promise is None or promise <= utcnow():
        policy = await policies.get_policy(session, Severity(incident.severity or Severity.SEV3))
        promise = utcnow() + timedelta(minutes=policy.cadence_minutes)
    now = await guidance.current(session, incident.id)
    eta_at = now.eta.eta_at if now.eta is not None and now.eta.published else None
    return {
        "workaround": now.workaround.body if now.workaround is not None and now.workaround.published else "",
        "eta": eta_at,
        "eta_at": page_datetime(eta_at, settings.page_time_zone) if eta_at is not None else "",
        "components": [names[c.component_id] for c in incident.components if c.component_id in names],
        "start_time": incident.started_at,
        "next_update_at": promise,
        "incident_url": shortlink(settings.base_url, incident),
        "status_page_url": settings.base_url.rstrip("/") + "/",
        "incident_name": incident.name,
    }


def _approved(template: MessageTemplate) -> MessageTemplate:
    if template.archived_at is not None:
        raise Conflict("this template is archived; choose another", field="template_id")
    if template.approved_at is None:
        raise Conflict(
            "this template is waiting for an admin's approval; choose an approved one or write free text",
            field="template_id",
        )
    return template


def _render_for_publishing(settings: Settings, template: MessageTemplate, values: Mapping[str, Any]) -> Rendered:
    variables = variables_of(template)
    declared = {v.name for v in variables}
    typed = coerce_values(variables, {k: v for k, v in values.items() if k in declared})
    rendered = render_all(renderer_for(settings), sources_of(template), typed)
    subject = rendered.variants["email_subject"]
    if subject.length > SUBJECT_LIMIT:
        raise InvalidInput(
            f"the email subject renders to {subject.length} characters; at most {SUBJECT_LIMIT}", field="email_subject"
        )
    social = rendered.variants["social"]
    if social.length > SOCIAL_LIMIT:
        raise InvalidInput(
            f"the social post renders to {social.length} characters; at most {SOCIAL_LIMIT}", field="social"
        )
    return rendered


def _merge_values(prefill: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    given = {k: v for k, v in values.items() if v not in (None, "", [])}
    return {**prefill, **given}


def _refuse_unknown(template: MessageTemplate | Mapping[str, Any], values: Mapping[str, Any]) -> None:
    # A misspelt name would otherwise vanish: the update goes out without the value it was given.
    variables = (
        variables_of(template) if isinstance(template, MessageTemplate) else parse_variables(template.get("variables"))
    )
    declared = {v.name for v in variables}
    for name in values:
        if name not in declared:
            raise InvalidInput(
                f"{name!r} is not a variable of this template; it has: {', '.join(sorted(declared)) or 'none'}",
                field=f"values.{name}",
            )


async def write_messages(session: AsyncSession, update: IncidentUpdate, rendered: Rendered) -> list[UpdateMessage]:
    """Store each channel's approved words for the update (channels without a variant use the body)."""
    text = rendered.text
    rows = []
    if text("email_subject") or text("email_text") or text("email_html"):
        rows.append(
            UpdateMessage(
                update_id=update.id,
                channel="email",
                subject=text("email_subject") or None,
                text=text("email_text") or update.body,
                html=text("email_html") or None,
            )
        )
    for channel in ("sms", "slack", "teams", "social"):
        if text(channel).strip():
            rows.append(UpdateMessage(update_id=update.id, channel=channel, text=text(channel).strip()))
    session.add_all(rows)
    await session.flush()
    return rows


async def _promise_for(
    session: AsyncSession, incident: Incident, status: IncidentStatus, next_update_at: datetime | None
) -> datetime | None:
    if status is IncidentStatus.resolved:
        return None
    if next_update_at is not None:
        return next_update_at
    policy = await policies.get_policy(session, Severity(incident.severity or Severity.SEV3))
    return utcnow() + timedelta(minutes=policy.cadence_minutes)


@dataclass
class Published:
    update: IncidentUpdate
    rendered: Rendered


async def publish_from_template(
    session: AsyncSession,
    actor: Actor,
    settings: Settings,
    incident: Incident,
    *,
    template_id: str,
    values: Mapping[str, Any],
    status: str | None = None,
    components: Mapping[str, ComponentStatus | str] | None = None,
    next_update_at: datetime | None = None,
    deliver_notifications: bool = True,
) -> Published:
    """Post an update in an approved template's words, with every channel's rendering stored."""
    actor.require(Scope.write)
    if incident.kind != Kind.incident:
        raise InvalidInput("use the maintenance actions for a scheduled maintenance", field="incident_id")
    template = _approved(await get_template(session, template_id))
    _refuse_unknown(template, values)
    chosen = incidents.parse_status(
        status or (template.phase if template.phase in INCIDENT_PHASES else incident.status)
    )
    next_update_at = incidents.check_next_update(next_update_at, utcnow())
    if chosen is IncidentStatus.resolved and next_update_at is not None:
        raise InvalidInput("a resolved incident promises no next update", field="next_update_at")
    given_promise = values.get("next_update_at")
    if next_update_at is None and given_promise and chosen is not IncidentStatus.resolved:
        # A promise typed into the template's variable is the update's promise too.
        typed = coerce_values(
            [Variable("next_update_at", "datetime", "Next update", False)], {"next_update_at": given_promise}
        )["next_update_at"]
        next_update_at = incidents.check_next_update(typed, utcnow())
    promise = await _promise_for(session, incident, chosen, next_update_at)
    prefill = await incident_values(session, settings, incident, next_update_at=promise)
    merged = _merge_values(prefill, values)
    if promise is not None:
        merged["next_update_at"] = promise
    rendered = _render_for_publishing(settings, template, merged)
    row = await incidents.post_update(
        session,
        actor,
        incident,
        status=chosen,
        body=rendered.text("body"),
        components=components,
        next_update_at=promise,
        deliver_notifications=deliver_notifications,
        template_id=template.id,
    )
    await write_messages(session, row, rendered)
    return Published(row, rendered)


async def declare_from_template(
    session: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    template_id: str,
    severity: Severity | str,
    values: Mapping[str, Any],
    components: Mapping[str, ComponentStatus | str] | None = None,
    roles: Mapping[str, str] | None = None,
    next_update_at: datetime | None = None,
    started_at: datetime | None = None,
    name: str | None = None,
    deliver_notifications: bool = True,
) -> incidents.Declared:
    """Declare an incident whose first update (and, unless given, name) come from an approved template."""
    actor.require(Scope.write)
    template = _approved(await get_template(session, template_id))
    _refuse_unknown(template, values)
    status = template.phase if template.phase in ("investigating", "identified", "monitoring") else "investigating"
    now = utcnow()
    next_update_at = incidents.check_next_update(next_update_at, now)
    parsed_severity = policies.parse_severity(str(severity))
    if next_update_at is None:
        policy = await policies.get_policy(session, parsed_severity)
        next_update_at = now + timedelta(minutes=policy.cadence_minutes)
    names = {c.id: c.name for c in await catalog.list_components(session)}
    prefill: dict[str, Any] = {
        "components": [names[c] for c in (components or {}) if c in names],
        "start_time": started_at or now,
        "next_update_at": next_update_at,
        # The incident's own link exists only once it does; the first render points at the page.
        "incident_url": settings.base_url.rstrip("/") + "/",
        "status_page_url": settings.base_url.rstrip("/") + "/",
        "incident_name": (name or "").strip() or template.scenario,
    }
    merged = _merge_values(prefill, values)
    merged["next_update_at"] = next_update_at
    first = _render_for_publishing(settings, template, merged)
    title = (name or "").strip() or first.text("title")
    declared = await incidents.declare(
        session,
        actor,
        name=title,
        severity=parsed_severity,
        body=first.text("body"),
        status=status,
        components=components,
        next_update_at=next_update_at,
        started_at=started_at,
        roles=roles,
        deliver_notifications=deliver_notifications,
        template_id=template.id,
    )
    incident = declared.incident
    if not values.get("incident_url"):
        merged["incident_url"] = shortlink(settings.base_url, incident)
    merged["incident_name"] = values.get("incident_name") or incident.name
    rendered = _render_for_publishing(settings, template, merged)
    update = declared.first_update
    if rendered.text("body") != update.body:
        update.body = incidents.check_body(rendered.text("body"))
        update.body_html = markdown_to_html(update.body)
        event = await session.scalar(
            select(TimelineEvent).where(TimelineEvent.incident_id == incident.id, TimelineEvent.kind == "update_posted")
        )
        if event is not None:
            event.summary = f"Public update ({status}): {update.body[:200]}"
    await write_messages(session, update, rendered)
    return declared
