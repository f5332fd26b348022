"""Each incident's macros: the acknowledgement and the resolution its tickets are answered with.

A macro is a Jinja2 template run in the comms sandbox (bounded steps and sizes, ``StrictUndefined``,
no globals), with the incident's facts and the ticket's requester as variables. Saving one checks
its syntax, that it uses only the known variables, and a trial render. Only an approved macro is
ever sent; changing an approved macro withdraws the approval, and the approver may name the
version they read so an edit made meanwhile is not approved unseen.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog.models import Component
from crisisdesk.comms.templates import Renderer, render_bounded
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentComponent, IncidentUpdate, Kind, Visibility
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow
from crisisdesk.support.checks import check_time
from crisisdesk.support.models import Macro, MacroKind, Ticket

MAX_SUBJECT = 300
MAX_BODY = 10_000
MAX_OUTPUT = 20_000
LABELS = {MacroKind.acknowledge: "Acknowledge macro", MacroKind.resolution: "Resolution macro"}
# What a macro may use, with what each holds (shown next to the editor).
VARIABLES: dict[str, str] = {
    "incident": "incident.name, incident.number, incident.reference (INC-12), incident.status",
    "components": "names of the incident's affected components (a list: {{ components | join(', ') }})",
    "latest_update": "the text of the latest public update",
    "workaround": "the current published workaround, or empty",
    "eta": "the current published ETA (a time: {{ eta | datetime }}), or none",
    "eta_note": "the note given with the ETA",
    "ticket": "ticket.number, ticket.subject, ticket.requester_name",
    "requester_name": "the requester's name, or empty",
}
# Shown where a macro is read without a ticket (the agent brief, the editor's preview).
PLACEHOLDER_TICKET = {"number": "[ticket number]", "subject": "[ticket subject]", "requester_name": "[requester name]"}


@functools.lru_cache(maxsize=8)
def _env(time_zone: str) -> SandboxedEnvironment:
    # The comms sandbox with its time filters (time, datetime, date) in the page's time zone.
    return Renderer(time_zone).text_env


def parse_kind(value: str, *, field: str = "kind") -> MacroKind:
    try:
        return MacroKind(value)
    except ValueError:
        allowed = ", ".join(k.value for k in MacroKind)
        raise InvalidInput(f"{value[:40]!r} is not a macro kind; use one of: {allowed}", field=field) from None


# ------------------------------------------------------------------------------ rendering


def _render(env: SandboxedEnvironment, source: str, values: Mapping[str, Any], *, field: str, label: str) -> str:
    """One template with these values; any failure is a 422 naming the field."""
    if not source:
        return ""
    try:
        output = render_bounded(env.from_string(source), values, limit=MAX_OUTPUT)
    except SecurityError as exc:
        raise InvalidInput(f"the {label}: not allowed in a template ({exc})", field=field) from None
    except TemplateSyntaxError as exc:
        raise InvalidInput(f"the {label}: syntax error on line {exc.lineno}: {exc.message}", field=field) from None
    except TemplateError as exc:
        raise InvalidInput(f"the {label} cannot be rendered: {exc}", field=field) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError, AssertionError) as exc:
        raise InvalidInput(f"the {label} cannot be rendered: {exc}", field=field) from None
    except RecursionError:
        raise InvalidInput(f"the {label} calls itself without end", field=field) from None
    if output is None:
        raise InvalidInput(f"the {label} renders to more than {MAX_OUTPUT} characters", field=field)
    return output


def _check_source(env: SandboxedEnvironment, source: str, *, field: str, label: str) -> None:
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise InvalidInput(f"the {label}: syntax error on line {exc.lineno}: {exc.message}", field=field) from None
    unknown = sorted(meta.find_undeclared_variables(tree) - set(VARIABLES))
    if unknown:
        raise InvalidInput(
            f"the {label} uses {unknown[0]!r}, which is not a macro variable; use: {', '.join(VARIABLES)}",
            field=field,
        )


def ticket_values(ticket: Ticket | None) -> dict[str, Any]:
    if ticket is None:
        return {"ticket": dict(PLACEHOLDER_TICKET), "requester_name": PLACEHOLDER_TICKET["requester_name"]}
    name = ticket.requester_name or ""
    return {
        "ticket": {"number": ticket.number, "subject": ticket.subject, "requester_name": name},
        "requester_name": name,
    }


def sample_values(*, sparse: bool = False) -> dict[str, Any]:
    """Typed stand-ins for the trial render when a macro is saved.

    ``sparse``: what many real tickets have: no requester name, no workaround and no ETA yet.
    """
    if sparse:
        return {
            **sample_values(),
            "workaround": "",
            "eta": None,
            "eta_note": "",
            "ticket": {**PLACEHOLDER_TICKET, "requester_name": ""},
            "requester_name": "",
        }
    return {
        "incident": {
            "name": "Sign-in failures for SSO users",
            "number": 12,
            "reference": "INC-12",
            "status": "identified",
        },
        "components": ["Sign-in (SSO)", "Web app"],
        "latest_update": "We have identified the cause and are rolling out a fix.",
        "workaround": "Sign in with a password instead.",
        "eta": datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=2),
        "eta_note": "The fix is being deployed region by region.",
        **ticket_values(None),
    }


async def incident_values(session: AsyncSession, incident: Incident) -> dict[str, Any]:
    """The incident's facts a macro may use: read once, rendered for many tickets."""
    from crisisdesk.incident import guidance

    names = list(
        await session.scalars(
            select(Component.name)
            .join(IncidentComponent, IncidentComponent.component_id == Component.id)
            .where(IncidentComponent.incident_id == incident.id)
            .order_by(Component.position, Component.name)
        )
    )
    latest = await session.scalar(
        select(IncidentUpdate.body)
        .where(IncidentUpdate.incident_id == incident.id, IncidentUpdate.visibility == Visibility.public)
        .order_by(IncidentUpdate.created_at.desc(), IncidentUpdate.id.desc())
        .limit(1)
    )
    current = await guidance.current(session, incident.id)
    # A macro goes to customers: it tells only what has been published.
    workaround = current.workaround if current.workaround is not None and current.workaround.published else None
    eta = current.eta if current.eta is not None and current.eta.published else None
    return {
        "incident": {
            "name": incident.name,
            "number": incident.number,
            "reference": f"INC-{incident.number}",
            "status": str(incident.status),
        },
        "components": names,
        "latest_update": latest or "",
        "workaround": workaround.body if workaround is not None else "",
        "eta": eta.eta_at if eta is not None else None,
        "eta_note": eta.note if eta is not None else "",
    }


def render_with(
    macro: Macro, values: Mapping[str, Any], *, ticket: Ticket | None = None, time_zone: str = "Etc/UTC"
) -> tuple[str, str]:
    """The macro's subject (one line) and body for the incident ``values`` and this ticket."""
    env = _env(time_zone)
    context = {**values, **ticket_values(ticket)}
    label = LABELS.get(MacroKind(macro.kind), "macro").lower()
    subject = _render(env, macro.subject, context, field="subject", label=f"{label}'s subject")
    body = _render(env, macro.body, context, field="body", label=label)
    return " ".join(subject.split()), body.strip()


async def render_macro(
    session: AsyncSession, macro: Macro, *, ticket: Ticket | None = None, time_zone: str = "Etc/UTC"
) -> tuple[str, str]:
    """The macro rendered for a ticket (or with placeholders for the requester when None): subject, body."""
    incident = await session.get(Incident, macro.incident_id)
    if incident is None:
        raise NotFound("the macro's incident is gone", field="incident_id")
    return render_with(macro, await incident_values(session, incident), ticket=ticket, time_zone=time_zone)


# ------------------------------------------------------------------------------ storing


async def load_incident(session: AsyncSession, incident_id: str) -> Incident:
    """An incident (not a maintenance) by id, or a 404 naming ``incident_id``."""
    if not incident_id or "\x00" in incident_id or len(incident_id) > 64:
        raise NotFound("no incident with that id", field="incident_id")
    incident = await session.get(Incident, incident_id)
    if incident is None or incident.kind != Kind.incident:
        raise NotFound(f"no incident with id {incident_id!r}", field="incident_id")
    return incident


async def get_macro(session: AsyncSession, incident_id: str, kind: MacroKind) -> Macro | None:
    return await session.scalar(select(Macro).where(Macro.incident_id == incident_id, Macro.kind == kind))


async def macros_of(session: AsyncSession, incident_id: str) -> dict[MacroKind, Macro]:
    """The incident's macros by kind (approved or not)."""
    rows = await session.scalars(select(Macro).where(Macro.incident_id == incident_id))
    return {MacroKind(m.kind): m for m in rows}


async def approved(session: AsyncSession, incident_id: str, kind: MacroKind) -> Macro | None:
    """The incident's macro of this kind if it is approved, else None."""
    return await session.scalar(
        select(Macro).where(Macro.incident_id == incident_id, Macro.kind == kind, Macro.approved_at.is_not(None))
    )


async def approved_macros(session: AsyncSession, incident_id: str) -> list[Macro]:
    """The incident's approved macros (acknowledge first)."""
    rows = await session.scalars(select(Macro).where(Macro.incident_id == incident_id, Macro.approved_at.is_not(None)))
    order = list(MacroKind)
    return sorted(rows, key=lambda m: order.index(MacroKind(m.kind)))


def check(subject: str, body: str, *, kind: MacroKind, time_zone: str = "Etc/UTC") -> tuple[str, str]:
    """The macro's cleaned subject and body, checked: syntax, known variables, a trial render."""
    label = LABELS[kind].lower()
    subject = " ".join((subject or "").split())
    body = (body or "").strip()
    for value, field, limit in ((subject, "subject", MAX_SUBJECT), (body, "body", MAX_BODY)):
        if "\x00" in value:
            raise InvalidInput(f"the {label} contains a NUL character (\\0)", field=field)
        if len(value) > limit:
            raise InvalidInput(f"the {label}'s {field} is {len(value)} characters; at most {limit}", field=field)
    if not body:
        raise InvalidInput(f"the {label} must not be empty", field="body")
    env = _env(time_zone)
    _check_source(env, subject, field="subject", label=f"{label}'s subject")
    _check_source(env, body, field="body", label=label)
    sample = sample_values()
    _render(env, subject, sample, field="subject", label=f"{label}'s subject")
    _render(env, body, sample, field="body", label=label)
    # A macro that only works with a requester name or an ETA would fail on the tickets that come
    # without them, when nobody is watching: refuse it now, while its author is.
    sparse = sample_values(sparse=True)
    for value, field, what in ((subject, "subject", f"{label}'s subject"), (body, "body", label)):
        try:
            _render(env, value, sparse, field=field, label=what)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{exc.message} (for a ticket without a requester name, and with no workaround or ETA published; "
                "use e.g. {{ requester_name or 'there' }})",
                field=field,
            ) from None
    return subject, body


async def put_macro(
    session: AsyncSession,
    actor: Actor,
    *,
    incident_id: str,
    kind: MacroKind,
    subject: str,
    body: str,
    time_zone: str = "Etc/UTC",
) -> Macro:
    """Write the incident's macro of this kind; a change to an approved macro needs approval again."""
    actor.require(Scope.write)
    incident = await load_incident(session, incident_id)
    kind = MacroKind(kind)
    subject, body = check(subject, body, kind=kind, time_zone=time_zone)
    macro = await get_macro(session, incident.id, kind)
    now = utcnow()
    if macro is not None and macro.subject == subject and macro.body == body:
        return macro
    was_approved = macro is not None and macro.approved_at is not None
    if macro is None:
        macro = Macro(incident_id=incident.id, kind=kind, created_by_id=actor.user_id, created_at=now)
        session.add(macro)
    macro.subject, macro.body, macro.updated_at = subject, body, now
    macro.approved_at, macro.approved_by_id = None, None
    await session.flush()
    label = LABELS[kind]
    await incidents.timeline(
        session,
        incident,
        actor,
        "macro_saved",
        f"{actor.name} changed the approved {label.lower()}; it waits for approval again"
        if was_approved
        else f"{actor.name} wrote the {label.lower()}; it waits for approval",
        macro_id=macro.id,
        macro_kind=kind,
    )
    return macro


async def approve(
    session: AsyncSession, actor: Actor, *, incident_id: str, kind: MacroKind, seen: datetime | None = None
) -> Macro:
    """The Communications Lead or an admin approves the macro; only approved macros are sent.

    ``seen`` is the ``updated_at`` of the version the approver read: if the macro changed since, 409.
    """
    actor.require(Scope.write)
    incident = await load_incident(session, incident_id)
    kind = MacroKind(kind)
    label = LABELS[kind]
    if not await incidents.may_approve(session, actor, incident):
        raise Forbidden(f"only the Communications Lead of this incident or an admin may approve the {label.lower()}")
    macro = await get_macro(session, incident.id, kind)
    if macro is None:
        raise NotFound(f"this incident has no {label.lower()} yet: write it first", field="kind")
    changed = Conflict(
        f"the {label.lower()} changed since you read it: read it again, then approve", field="updated_at"
    )
    if seen is not None and check_time(seen, field="updated_at") != macro.updated_at:
        raise changed
    if macro.approved_at is not None:
        return macro
    now = utcnow()
    # Checked in the UPDATE too: an edit committed after this transaction read the macro is not approved unseen.
    statement = update(Macro).where(
        Macro.id == macro.id, Macro.approved_at.is_(None), Macro.updated_at == macro.updated_at
    )
    result = await session.execute(
        statement.values(approved_at=now, approved_by_id=actor.user_id).execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise changed
    await session.refresh(macro)
    await incidents.timeline(
        session,
        incident,
        actor,
        "macro_approved",
        f"{actor.name} approved the {label.lower()}",
        macro_id=macro.id,
        macro_kind=kind,
    )
    return macro
