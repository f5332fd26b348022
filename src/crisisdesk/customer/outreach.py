"""Proactive outreach: an approved template, sent to the contacts of exactly the affected accounts.

Each account's message is rendered with its own impact (the components it uses that the
incident affects, since when), and goes out as one ``delivery`` row per contact address
(purpose ``outreach``, channel email) in the transaction that records the outreach, so the
delivery workers send it like any other message and nothing is lost. The affected accounts' ids
are read once, in one statement (:func:`crisisdesk.customer.affected.snapshot`), so an import
committed during the send neither skips an account nor writes to one twice; the accounts are
then loaded, rendered and written with executemany a page at a time, so ten thousand accounts
never sit in memory at once. Each top-tier account gets
one open task for its customer success manager per incident (a second outreach reuses it).

A second send of the same template on the same incident within :data:`REPEAT_WINDOW` is
refused (409): it is almost always a double click, and the customers would get the same mail
twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.comms import service as comms
from crisisdesk.comms.models import MessageTemplate
from crisisdesk.comms.templates import SUBJECT_LIMIT, coerce_values, one_line, parse_variables
from crisisdesk.config import Settings
from crisisdesk.customer import accounts, affected
from crisisdesk.customer.impact import AccountImpact
from crisisdesk.customer.models import AccountContact, CsmTask, Outreach, OutreachAccount, TaskStatus
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentRole, Kind
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.time import iso, utcnow
from crisisdesk.notify.models import Channel, Delivery, DeliveryState, Purpose

PAGE = 500  # accounts read, rendered and written per round
REPEAT_WINDOW = timedelta(minutes=1)
TASK_DUE = timedelta(hours=4)  # a top-tier account hears from its CSM within hours, not days
DEFAULT_TOP_TIERS = ("Enterprise",)
MAX_LABELS = 50
SENDING_ROLES = (IncidentRole.incident_commander, IncidentRole.communications_lead)
_TASKS = cast(Table, CsmTask.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)
_RECORDS = cast(Table, OutreachAccount.__table__)


@dataclass(frozen=True)
class Sample:
    """One account's message, as the preview shows it."""

    account_id: str
    account_name: str
    to: list[str]
    subject: str
    text: str
    html: str | None


@dataclass
class Plan:
    """What an outreach does (or did): counts, and one rendered message to look at."""

    account_count: int = 0
    delivery_count: int = 0
    task_count: int = 0
    accounts_without_contacts: int = 0
    sample: Sample | None = None
    outreach: Outreach | None = None
    tiers: list[str] = field(default_factory=list)
    contact_roles: list[str] = field(default_factory=list)
    top_tiers: list[str] = field(default_factory=list)


def subject_prefix(outreach_id: str) -> str:
    return f"outreach:{outreach_id}:"


def delivery_subject(outreach_id: str, account_id: str) -> str:
    """The ledger subject of one account's messages in one outreach."""
    return f"{subject_prefix(outreach_id)}{account_id}"


def labels(values: Sequence[str] | None, field_name: str) -> list[str]:
    """Tier or role names: trimmed, distinct, at most 100 characters, no control characters."""
    found: list[str] = []
    for raw in values or []:
        value = str(raw).strip()
        if not value:
            continue
        if len(value) > 100 or any(ord(ch) < 32 for ch in value):
            raise InvalidInput(
                f"{value[:40]!r} is not a name (at most 100 characters, no control ones)", field=field_name
            )
        if value.lower() not in {f.lower() for f in found}:
            found.append(value)
    if len(found) > MAX_LABELS:
        raise InvalidInput(f"at most {MAX_LABELS} names", field=field_name)
    return found


async def may_send(session: AsyncSession, actor: Actor, incident: Incident) -> bool:
    """Admins, and the incident's Incident Commander or Communications Lead, write to customers."""
    if not actor.can(Scope.write):
        return False
    if actor.can(Scope.admin):
        return True
    for role in SENDING_ROLES:
        if await incidents.holds_role(session, incident, actor.user_id, role):
            return True
    return False


async def approved_template(session: AsyncSession, template_id: str) -> MessageTemplate:
    """The template, if an admin approved it and it is not archived (409 naming template_id otherwise)."""
    template = await comms.get_template(session, template_id)
    if template.archived_at is not None:
        raise Conflict("this template is archived; choose another", field="template_id")
    if template.approved_at is None:
        raise Conflict(
            "this template is waiting for an admin's approval: only approved words go to customers",
            field="template_id",
        )
    return template


def impact_snapshot(account: AccountImpact) -> dict[str, Any]:
    """What the outreach told the account about its impact, kept as it was then."""
    return {
        "tier": account.tier,
        "arr_cents": account.arr_cents,
        "regions": list(account.regions),
        "components": [
            {
                "id": c.component_id,
                "name": c.name,
                "status": c.status,
                "via_id": c.via_id,
                "region_code": c.region_code,
                "since": iso(c.since),
            }
            for c in account.components
        ],
        "window_start": iso(account.window_start),
        "window_end": iso(account.window_end),
    }


def account_values(account: AccountImpact) -> dict[str, Any]:
    """The per-account template variables."""
    return {
        "account": {
            "name": account.name,
            "tier": account.tier or "",
            "external_id": account.external_id,
            "regions": ", ".join(account.regions),
            "csm_owner": account.csm_owner or "",
        },
        "affected_components": [c.name for c in account.components],
        "impact_start": account.window_start,
    }


class _Messages:
    """The template's email variants compiled once, rendered per account with its own values."""

    def __init__(self, settings: Settings, template: MessageTemplate, incident_values: Mapping[str, Any]) -> None:
        renderer = comms.renderer_for(settings)
        self.variables = parse_variables(template.variables)
        self.declared = {v.name for v in self.variables}
        self.base = {k: v for k, v in incident_values.items() if k in self.declared}
        # A template without email variants still reads well: the title as subject, the body as text.
        self.subject: Callable[[Mapping[str, Any]], str]
        if template.email_subject:
            self.subject = renderer.compile("email_subject", template.email_subject)
        else:
            self.subject = renderer.compile("title", template.title)
        if template.email_text:
            self.text = renderer.compile("email_text", template.email_text)
        else:
            self.text = renderer.compile("body", template.body)
        self.html = renderer.compile("email_html", template.email_html)

    def render(self, account: AccountImpact) -> tuple[str, str, str | None]:
        values = {**self.base, **{k: v for k, v in account_values(account).items() if k in self.declared}}
        typed = coerce_values(self.variables, values)
        subject = one_line(self.subject(typed))
        if not subject:
            raise InvalidInput(f"the email subject renders empty for {account.name!r}", field="email_subject")
        if len(subject) > SUBJECT_LIMIT:
            raise InvalidInput(
                f"the email subject renders to {len(subject)} characters for {account.name!r}; at most {SUBJECT_LIMIT}",
                field="email_subject",
            )
        html = self.html(typed)
        return subject, self.text(typed).strip(), html or None


async def stored_tiers(session: AsyncSession, tiers: Sequence[str]) -> list[str]:
    """The tiers as accounts spell them (a request may say "enterprise" for "Enterprise")."""
    if not tiers:
        return []
    wanted = {t.lower() for t in tiers}
    return sorted(t for t in await affected.tiers_in_use(session) if t.lower() in wanted)


async def _pages(session: AsyncSession, incident_id: str, tiers: Sequence[str]) -> AsyncIterator[list[AccountImpact]]:
    """The affected accounts (of the chosen tiers) a page at a time, largest ARR first."""
    found = await affected.snapshot(session, incident_id, tiers=await stored_tiers(session, tiers) if tiers else None)
    for start in range(0, len(found.account_ids), PAGE):
        page = await affected.page(session, found, found.account_ids[start : start + PAGE])
        if page:
            yield page


class _Contact(NamedTuple):
    id: int
    account_id: str
    email: str


async def _contacts(
    session: AsyncSession, account_ids: Sequence[str], roles: Sequence[str]
) -> dict[str, list[_Contact]]:
    statement = select(AccountContact.id, AccountContact.account_id, AccountContact.email).where(
        AccountContact.account_id.in_(list(account_ids))
    )
    if roles:
        statement = statement.where(func.lower(AccountContact.role).in_(sorted({r.lower() for r in roles})))
    found: dict[str, list[_Contact]] = {}
    for row in await session.execute(statement.order_by(AccountContact.account_id, AccountContact.position)):
        found.setdefault(row.account_id, []).append(_Contact(row.id, row.account_id, row.email))
    return found


async def _open_tasks(session: AsyncSession, incident_id: str, account_ids: Sequence[str]) -> dict[str, int]:
    rows = await session.execute(
        select(CsmTask.account_id, func.min(CsmTask.id))
        .where(
            CsmTask.incident_id == incident_id,
            CsmTask.status == TaskStatus.open,
            CsmTask.account_id.in_(list(account_ids)),
        )
        .group_by(CsmTask.account_id)
    )
    return {account_id: int(task_id) for account_id, task_id in rows.all()}


def _is_top(account: AccountImpact, top: set[str]) -> bool:
    return account.tier is not None and account.tier.lower() in top


def _task_title(incident: Incident, account: AccountImpact) -> str:
    return f"Call {account.name} about INC-{incident.number}: {incident.name}"[:300]


def _task_body(incident: Incident, account: AccountImpact, template: MessageTemplate) -> str:
    names = ", ".join(c.name for c in account.components)
    return (
        f"{account.name} ({account.tier}) is affected by INC-{incident.number} “{incident.name}” since "
        f"{account.window_start:%Y-%m-%d %H:%M} UTC through {names}. Its contacts were sent the "
        f"“{template.scenario}” ({template.phase}) message; call them to follow up."
    )


async def send(
    session: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    incident_id: str,
    template_id: str,
    tiers: Sequence[str] | None = None,
    contact_roles: Sequence[str] | None = None,
    top_tiers: Sequence[str] | None = DEFAULT_TOP_TIERS,
    dry_run: bool = False,
) -> Plan:
    """Send an approved template to the contacts of the incident's affected accounts (or, with
    ``dry_run``, count what it would send and render one sample without writing anything).

    ``tiers`` limits it to accounts of those tiers and ``contact_roles`` to contacts with those
    roles (case-insensitive; all when empty). Accounts of ``top_tiers`` get a CSM task.
    """
    actor.require(Scope.write)
    incident = await incidents.get_incident(session, incident_id, kind=Kind.incident)
    if not dry_run:
        if not await may_send(session, actor, incident):
            raise Forbidden(
                "only an admin, or this incident's Incident Commander or Communications Lead, writes to customers"
            )
        # Written first: the incident's row lock (the write lock on SQLite) makes a concurrent
        # double click wait here, then see this outreach and be refused.
        await session.execute(update(Incident).where(Incident.id == incident.id).values(updated_at=utcnow()))
    plan = Plan(
        tiers=labels(tiers, "tiers"),
        contact_roles=labels(contact_roles, "contact_roles"),
        top_tiers=labels(top_tiers, "top_tiers"),
    )
    template = await approved_template(session, template_id)
    now = utcnow()
    if not dry_run:
        recent = await session.scalar(
            select(Outreach.id).where(
                Outreach.incident_id == incident.id,
                Outreach.template_id == template.id,
                Outreach.created_at >= now - REPEAT_WINDOW,
            )
        )
        if recent is not None:
            raise Conflict(
                "this template went to this incident's accounts less than a minute ago; "
                "wait a minute if you really mean to send it again",
                field="template_id",
            )
    messages = _Messages(settings, template, await comms.incident_values(session, settings, incident))
    top = {t.lower() for t in plan.top_tiers}
    outreach: Outreach | None = None
    if not dry_run:
        outreach = Outreach(incident_id=incident.id, template_id=template.id, actor_id=actor.user_id, created_at=now)
        session.add(outreach)
        await session.flush()
    async for page in _pages(session, incident.id, plan.tiers):
        contacts = await _contacts(session, [a.account_id for a in page], plan.contact_roles)
        tasks = await _open_tasks(session, incident.id, [a.account_id for a in page if _is_top(a, top)])
        deliveries: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        new_tasks: list[tuple[AccountImpact, dict[str, Any]]] = []
        for account in page:
            to = contacts.get(account.account_id, [])
            subject, text, html = messages.render(account)
            plan.account_count += 1
            plan.delivery_count += len(to)
            if not to:
                plan.accounts_without_contacts += 1
            elif plan.sample is None:
                plan.sample = Sample(account.account_id, account.name, [c.email for c in to], subject, text, html)
            if _is_top(account, top) and account.account_id not in tasks:
                plan.task_count += 1
                new_tasks.append(
                    (
                        account,
                        {
                            "account_id": account.account_id,
                            "incident_id": incident.id,
                            "assignee": account.csm_owner,
                            "title": _task_title(incident, account),
                            "body": _task_body(incident, account, template),
                            "status": TaskStatus.open.value,
                            "due_at": now + TASK_DUE,
                            "created_at": now,
                        },
                    )
                )
            if outreach is None:
                continue
            if not outreach.subject:
                outreach.subject = subject
            payload = {"subject": subject, "text": text, "html": html}
            for contact in to:
                deliveries.append(
                    {
                        "subject": delivery_subject(outreach.id, account.account_id),
                        "purpose": Purpose.outreach.value,
                        "channel": Channel.email.value,
                        "recipient": f"contact:{contact.id}",
                        "address": contact.email,
                        "incident_id": incident.id,
                        "payload": payload,
                        "state": DeliveryState.pending.value,
                        "due_at": now,
                        "created_at": now,
                    }
                )
            records.append(
                {
                    "outreach_id": outreach.id,
                    "account_id": account.account_id,
                    "impact": impact_snapshot(account),
                    "contacts": [c.email for c in to],
                    "delivery_count": len(to),
                    "task_id": tasks.get(account.account_id),
                }
            )
        if outreach is None:
            continue
        # Core inserts (executemany): no ORM object per row, so a page costs a few statements.
        if new_tasks:
            ids = await session.scalars(
                insert(_TASKS).returning(_TASKS.c.id, sort_by_parameter_order=True),
                [row for _, row in new_tasks],
            )
            created = dict(zip((a.account_id for a, _ in new_tasks), ids, strict=True))
            for record in records:
                if record["task_id"] is None and record["account_id"] in created:
                    record["task_id"] = created[record["account_id"]]
        if deliveries:
            await session.execute(insert(_DELIVERIES), deliveries)
        if records:
            await session.execute(insert(_RECORDS), records)
    if outreach is None:
        return plan
    outreach.account_count = plan.account_count
    outreach.delivery_count = plan.delivery_count
    outreach.task_count = plan.task_count
    plan.outreach = outreach
    restricted = []
    if plan.tiers:
        restricted.append(f"tiers {', '.join(plan.tiers)}")
    if plan.contact_roles:
        restricted.append(f"contacts {', '.join(plan.contact_roles)}")
    await incidents.timeline(
        session,
        incident,
        actor,
        "outreach_sent",
        f"Outreach “{template.scenario}” ({template.phase}) to {plan.account_count} affected accounts, "
        f"{plan.delivery_count} emails, {plan.task_count} CSM tasks"
        + (f" ({'; '.join(restricted)})" if restricted else ""),
        outreach_id=outreach.id,
        template_id=template.id,
        tiers=plan.tiers,
        contact_roles=plan.contact_roles,
        top_tiers=plan.top_tiers,
        account_count=plan.account_count,
        delivery_count=plan.delivery_count,
        task_count=plan.task_count,
    )
    return plan


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class OutreachView:
    """An outreach with its deliveries counted by state."""

    outreach: Outreach
    template_name: str | None
    states: dict[str, int]


async def delivery_states(session: AsyncSession, outreach_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Each outreach's deliveries by state (pending, sending, retrying, delivered, failed)."""
    found: dict[str, dict[str, int]] = {i: {} for i in outreach_ids}
    for outreach_id in outreach_ids:
        rows = await session.execute(
            select(Delivery.state, func.count())
            .where(Delivery.subject.startswith(subject_prefix(outreach_id), autoescape=True))
            .group_by(Delivery.state)
        )
        found[outreach_id] = {str(state): int(n) for state, n in rows.all()}
    return found


async def list_for_incident(session: AsyncSession, incident_id: str) -> list[OutreachView]:
    """The incident's outreaches, newest first."""
    await incidents.get_incident(session, incident_id, kind=Kind.incident)
    rows = list(
        await session.scalars(
            select(Outreach)
            .where(Outreach.incident_id == incident_id)
            .order_by(Outreach.created_at.desc(), Outreach.id.desc())
        )
    )
    names = {
        t.id: f"{t.scenario} ({t.phase})"
        for t in await session.scalars(
            select(MessageTemplate).where(MessageTemplate.id.in_([r.template_id for r in rows if r.template_id]))
        )
    }
    states = await delivery_states(session, [r.id for r in rows])
    return [OutreachView(r, names.get(r.template_id or ""), states[r.id]) for r in rows]


@dataclass(frozen=True)
class AccountOutreach:
    """What one outreach told one account."""

    record: OutreachAccount
    outreach: Outreach
    incident_number: int
    incident_name: str


async def list_for_account(
    session: AsyncSession, account_id: str, *, limit: int = 50, offset: int = 0
) -> list[AccountOutreach]:
    """Everything outreach sent to the account, newest first."""
    await accounts.get(session, account_id)
    rows = await session.execute(
        select(OutreachAccount, Outreach, Incident.number, Incident.name)
        .join(Outreach, Outreach.id == OutreachAccount.outreach_id)
        .join(Incident, Incident.id == Outreach.incident_id)
        .where(OutreachAccount.account_id == account_id)
        .order_by(Outreach.created_at.desc(), Outreach.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [AccountOutreach(record, outreach, number, name) for record, outreach, number, name in rows.all()]


async def get_outreach(session: AsyncSession, outreach_id: str) -> Outreach:
    outreach = await session.get(Outreach, outreach_id) if "\x00" not in outreach_id else None
    if outreach is None:
        raise NotFound(f"no outreach with id {outreach_id!r}", field="outreach_id")
    return outreach
