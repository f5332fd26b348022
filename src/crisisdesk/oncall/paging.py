"""Pages: start one from an escalation policy, notify each level by the users' rules, escalate, acknowledge.

``start_page`` copies the policy into ``Page.policy`` (name, levels, repeats), so later edits
do not change a running escalation, and notifies level 0 at once. Each level's escalation is the
job ``oncall.escalate`` (key ``page:<id>:escalate``) due after the level's timeout; its handler
moves a still-triggered, high-urgency page to the next level (or back to the first while cycles
remain, else records that the policy is exhausted). A user is notified by their notification
rules for the page's urgency: a rule without delay enqueues a delivery now; a delayed one is the
job ``oncall.notify`` (key ``page:<id>:notify:<level>:<cycle>:<rule>``) that enqueues then if
nobody has acknowledged. A user without rules gets an email. Acknowledging or resolving a page
cancels its escalation and its delayed notifications.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import User
from crisisdesk.auth.service import Actor
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident
from crisisdesk.kit import events, jobs
from crisisdesk.kit.errors import InvalidInput, NotFound
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.time import iso, utcnow
from crisisdesk.notify import ledger
from crisisdesk.notify.channels import slack
from crisisdesk.notify.messages import BASE_URL_MARK
from crisisdesk.notify.models import Channel, Purpose
from crisisdesk.oncall import schedules
from crisisdesk.oncall.models import (
    ContactKind,
    ContactMethod,
    EscalationPolicy,
    NotificationRule,
    OnCallSchedule,
    Page,
    PageEvent,
    PageStatus,
    Urgency,
)

ESCALATE = "oncall.escalate"
NOTIFY = "oncall.notify"
MAX_TITLE = 1024
PAGES_TOPIC = "pages"
CHANNEL_OF_KIND = {
    ContactKind.email: Channel.email,
    ContactKind.sms: Channel.sms,
    ContactKind.slack_dm: Channel.slack_dm,
    ContactKind.push: Channel.webhook,
}


def escalate_key(page_id: str) -> str:
    return f"page:{page_id}:escalate"


def notify_key(page_id: str, level: int, cycle: int, rule_id: int) -> str:
    return f"page:{page_id}:notify:{level}:{cycle}:{rule_id}"


def ack_path(page: Page) -> str:
    return f"/pages/ack/{page.ack_token}"


def page_topic(page_id: str) -> str:
    return f"page:{page_id}"


# ---------------------------------------------------------------------------------- policy


def freeze(policy: EscalationPolicy) -> dict[str, Any]:
    """The policy as a page keeps it: later edits to the policy do not reach a running page."""
    levels = [
        {
            "timeout_minutes": int(level.get("timeout_minutes") or 0),
            "targets": [{"type": str(t.get("type")), "id": str(t.get("id"))} for t in level.get("targets") or []],
        }
        for level in policy.levels or []
    ]
    return {"id": policy.id, "name": policy.name, "levels": levels, "repeats": int(policy.repeats or 0)}


def levels_of(page: Page) -> list[dict[str, Any]]:
    levels: list[dict[str, Any]] = (page.policy or {}).get("levels") or []
    return levels


def _timeout(page: Page, level: int) -> timedelta:
    levels = levels_of(page)
    minutes = int(levels[level].get("timeout_minutes") or 0) if level < len(levels) else 0
    return timedelta(minutes=max(1, minutes))


async def on_call_user(
    session: AsyncSession, schedule_id: str, *, at: datetime | None = None
) -> tuple[User | None, str]:
    """Who is on call on a schedule now (or at ``at``), and the schedule's name; nobody if it is gone."""
    row = await session.get(OnCallSchedule, schedule_id)
    if row is None:
        return None, schedule_id
    try:
        return await schedules.on_call(session, schedule_id, at), row.name
    except NotFound:
        return None, row.name


@dataclass(frozen=True)
class Reached:
    """A user a level reaches, and how (directly, or as the one on call on a schedule)."""

    user: User
    via: str  # "user" or "schedule <name>"


async def reached_by(
    session: AsyncSession, levels: list[dict[str, Any]], level: int, *, at: datetime | None = None
) -> list[Reached]:
    """The active users level ``level`` reaches now, in target order, each once."""
    if level >= len(levels):
        return []
    found: dict[str, Reached] = {}
    for target in levels[level].get("targets") or []:
        kind, target_id = target.get("type"), str(target.get("id"))
        user: User | None = None
        via = "user"
        if kind == "user":
            user = await session.get(User, target_id)
        elif kind == "schedule":
            user, name = await on_call_user(session, target_id, at=at)
            via = f"on call for {name}"
        if user is not None and user.is_active and user.id not in found:
            found[user.id] = Reached(user, via)
    return list(found.values())


# ---------------------------------------------------------------------------------- events


async def _event(
    session: AsyncSession, page: Page, kind: str, summary: str, *, user_id: str | None = None, **data: Any
) -> PageEvent:
    event = PageEvent(page_id=page.id, kind=kind, summary=summary, user_id=user_id, data=data, at=utcnow())
    session.add(event)
    events.record(session, PAGES_TOPIC, page_topic(page.id))
    return event


async def _timeline(session: AsyncSession, page: Page, kind: str, summary: str, **data: Any) -> None:
    if page.incident_id is None:
        return
    incident = await session.get(Incident, page.incident_id)
    if incident is not None:
        await incidents.timeline(session, incident, None, kind, summary, page_id=page.id, **data)


# ------------------------------------------------------------------------------- messages


def _texts(page: Page, level: int) -> dict[str, Any]:
    """What every channel of this page says; the ack link is completed with the base URL when sent."""
    ack_url = f"{BASE_URL_MARK}{ack_path(page)}"
    policy = (page.policy or {}).get("name", "")
    urgency = "HIGH" if page.urgency == Urgency.high else "low"
    subject = f"[PAGE {urgency}] {page.title}"
    lines = [
        f"You are being paged: {page.title}",
        "",
        f"Urgency: {page.urgency}",
        f"Escalation policy: {policy} (level {level + 1})",
    ]
    if page.incident_id:
        lines.append(f"Incident: {BASE_URL_MARK}/console/incidents/{page.incident_id}")
    lines += ["", f"Acknowledge: {ack_url}", "", "Acknowledging stops the escalation to the next level."]
    return {"subject": subject, "text": "\n".join(lines), "ack_url": ack_url}


def _payload(page: Page, method: ContactMethod | None, level: int) -> dict[str, Any]:
    texts = _texts(page, level)
    kind = ContactKind(method.kind) if method is not None else ContactKind.email
    base: dict[str, Any] = {"subject": texts["subject"], "text": texts["text"], "html": None}
    if kind == ContactKind.sms:
        base["text"] = f"PAGE: {page.title}"
        base["tail"] = f" Ack: {texts['ack_url']}"
    elif kind == ContactKind.slack_dm:
        title = f"Page ({page.urgency} urgency): {page.title}"
        body = slack.payload(
            title=title,
            text=slack.escape(f"Escalation policy: {(page.policy or {}).get('name', '')}, level {level + 1}"),
            context=[f"Page {page.id}"],
            link=texts["ack_url"],
            link_label="Acknowledge",
        )
        base["blocks"] = body["blocks"]
        base["text"] = body["text"]
    elif kind == ContactKind.push:
        base["body"] = {
            "type": "page",
            "page": {
                "id": page.id,
                "title": page.title,
                "urgency": str(page.urgency),
                "status": str(page.status),
                "level": level,
                "started_at": iso(page.started_at),
                "ack_url": texts["ack_url"],
                "incident_id": page.incident_id,
                "incident_url": f"{BASE_URL_MARK}/console/incidents/{page.incident_id}" if page.incident_id else None,
            },
        }
        base["secret"] = method.secret if method is not None else None
    return base


async def _send(
    session: AsyncSession, page: Page, user: User, method: ContactMethod | None, *, level: int, cycle: int, via: str
) -> None:
    """Enqueue one notification of ``page`` to ``user`` on ``method`` (email to the login address without one)."""
    channel = CHANNEL_OF_KIND[ContactKind(method.kind)] if method is not None else Channel.email
    address = method.address if method is not None else user.email
    recipient = method.id if method is not None else f"user:{user.id}"
    await ledger.enqueue(
        session,
        subject=f"page:{page.id}:{level}:{cycle}",
        purpose=Purpose.page,
        channel=channel,
        recipient=recipient,
        address=address,
        payload=_payload(page, method, level),
        incident_id=page.incident_id,
    )
    how = method.kind if method is not None else "email"
    policy = (page.policy or {}).get("name", "")
    await _event(
        session,
        page,
        "notified",
        f"Paged {policy}: {user.name} via {how}",
        user_id=user.id,
        level=level,
        cycle=cycle,
        channel=str(channel),
        contact_method_id=method.id if method is not None else None,
        reached=via,
    )
    await _timeline(
        session, page, "page_notified", f"Paged {policy}: {user.name} via {how}", user_id=user.id, level=level
    )


async def notify_user(session: AsyncSession, page: Page, reached: Reached, *, level: int, cycle: int) -> None:
    """Notify one user by their rules for the page's urgency: now, or by a delayed job."""
    user = reached.user
    rules = list(
        await session.scalars(
            select(NotificationRule)
            .where(NotificationRule.user_id == user.id, NotificationRule.urgency == str(page.urgency))
            .order_by(NotificationRule.delay_minutes, NotificationRule.id)
        )
    )
    if not rules:
        await _send(session, page, user, None, level=level, cycle=cycle, via=reached.via)
        return
    now = utcnow()
    for rule in rules:
        method = await session.get(ContactMethod, rule.contact_method_id)
        if method is None:
            continue
        if rule.delay_minutes <= 0:
            await _send(session, page, user, method, level=level, cycle=cycle, via=reached.via)
        else:
            await jobs.schedule(
                session,
                NOTIFY,
                now + timedelta(minutes=rule.delay_minutes),
                key=notify_key(page.id, level, cycle, rule.id),
                payload={
                    "page_id": page.id,
                    "user_id": user.id,
                    "contact_method_id": method.id,
                    "level": level,
                    "cycle": cycle,
                    "via": reached.via,
                },
            )


async def notify_level(session: AsyncSession, page: Page, *, level: int, cycle: int) -> list[Reached]:
    """Notify everyone level ``level`` of the page's frozen policy reaches now."""
    reached = await reached_by(session, levels_of(page), level)
    for target in reached:
        await notify_user(session, page, target, level=level, cycle=cycle)
    if not reached:
        await _event(session, page, "unreached", f"Level {level + 1} reaches nobody now", level=level, cycle=cycle)
    return reached


async def _schedule_escalation(session: AsyncSession, page: Page) -> None:
    if page.urgency != Urgency.high or not levels_of(page):
        page.next_escalation_at = None
        return
    due = utcnow() + _timeout(page, page.level)
    page.next_escalation_at = due
    await jobs.schedule(
        session,
        ESCALATE,
        due,
        key=escalate_key(page.id),
        payload={"page_id": page.id, "level": page.level, "cycle": page.cycle},
    )


async def _cancel_timers(session: AsyncSession, page: Page) -> None:
    await jobs.cancel(session, escalate_key(page.id))
    await session.execute(
        delete(Job).where(Job.key.like(f"page:{page.id}:notify:%"), Job.finished_at.is_(None), Job.kind == NOTIFY)
    )
    page.next_escalation_at = None


# --------------------------------------------------------------------------------- service


def check_title(title: str) -> str:
    title = " ".join((title or "").split())
    if "\x00" in title:
        raise InvalidInput("title must not contain a NUL character", field="title")
    if not title or len(title) > MAX_TITLE:
        raise InvalidInput(f"title must be 1 to {MAX_TITLE} characters", field="title")
    return title


def parse_urgency(value: Urgency | str, *, field: str = "urgency") -> Urgency:
    try:
        return Urgency(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not an urgency; use high or low", field=field) from None


async def start_page(
    session: AsyncSession,
    *,
    escalation_policy_id: str,
    title: str,
    urgency: Urgency = Urgency.high,
    incident_id: str | None = None,
    alert_group_id: str | None = None,
    role: str | None = None,
    actor: Actor | None = None,
) -> Page:
    """Start a page on a policy (frozen onto the page), notify its first level now, and set the escalation."""
    title = check_title(title)
    urgency = parse_urgency(urgency)
    policy = await session.get(EscalationPolicy, escalation_policy_id) if escalation_policy_id else None
    if policy is None:
        raise NotFound(f"no escalation policy with id {escalation_policy_id!r}", field="escalation_policy_id")
    return await _begin(
        session,
        frozen=freeze(policy),
        escalation_policy_id=policy.id,
        title=title,
        urgency=urgency,
        incident_id=incident_id,
        alert_group_id=alert_group_id,
        role=role,
        actor=actor,
    )


async def page_user(
    session: AsyncSession,
    *,
    user_id: str,
    title: str,
    urgency: Urgency = Urgency.high,
    incident_id: str | None = None,
    reason: str = "directly",
    timeout_minutes: int = 5,
    repeats: int = 1,
    actor: Actor | None = None,
) -> Page:
    """Page one user directly, by their notification rules, as a one-level policy of their own.

    At high urgency an unacknowledged page notifies them again after ``timeout_minutes``,
    ``repeats`` more times; no one else is reached. ``reason`` names the policy the page shows.
    """
    title = check_title(title)
    urgency = parse_urgency(urgency)
    user = await session.get(User, user_id) if user_id else None
    if user is None or not user.is_active:
        raise NotFound(f"no active user with id {user_id!r}", field="user_id")
    frozen = {
        "id": None,
        "name": f"{user.name} ({reason})",
        "levels": [{"timeout_minutes": timeout_minutes, "targets": [{"type": "user", "id": user.id}]}],
        "repeats": repeats,
    }
    return await _begin(
        session,
        frozen=frozen,
        escalation_policy_id=None,
        title=title,
        urgency=urgency,
        incident_id=incident_id,
        alert_group_id=None,
        role=None,
        actor=actor,
    )


async def _begin(
    session: AsyncSession,
    *,
    frozen: dict[str, Any],
    escalation_policy_id: str | None,
    title: str,
    urgency: Urgency,
    incident_id: str | None,
    alert_group_id: str | None,
    role: str | None,
    actor: Actor | None,
) -> Page:
    if incident_id is not None and await session.get(Incident, incident_id) is None:
        raise NotFound(f"no incident with id {incident_id!r}", field="incident_id")
    now = utcnow()
    page = Page(
        title=title,
        urgency=urgency,
        status=PageStatus.triggered,
        escalation_policy_id=escalation_policy_id,
        policy=frozen,
        level=0,
        cycle=0,
        incident_id=incident_id,
        alert_group_id=alert_group_id,
        role=role,
        ack_token=secrets.token_urlsafe(32),
        started_at=now,
    )
    session.add(page)
    await session.flush()
    who = f" by {actor.name}" if actor is not None else ""
    name = frozen["name"]
    await _event(
        session,
        page,
        "triggered",
        f"Page started{who} on {name} ({urgency} urgency)",
        user_id=actor.user_id if actor else None,
    )
    await _timeline(session, page, "page_started", f"Paging {name}: {title}", policy=name)
    await notify_level(session, page, level=0, cycle=0)
    await _schedule_escalation(session, page)
    return page


async def get_page(session: AsyncSession, page_id: str) -> Page:
    page = await session.get(Page, page_id) if page_id and "\x00" not in page_id else None
    if page is None:
        raise NotFound(f"no page with id {page_id!r}", field="page_id")
    return page


async def page_by_token(session: AsyncSession, token: str) -> Page:
    page = None
    if token and "\x00" not in token and len(token) <= 64:
        page = await session.scalar(select(Page).where(Page.ack_token == token))
    if page is None:
        raise NotFound("this acknowledge link is not known", field="token")
    return page


async def acknowledge(session: AsyncSession, page: Page, *, user_id: str | None, via: str) -> Page:
    """Acknowledge a triggered page: no more escalation, no delayed notifications. Idempotent."""
    if page.status != PageStatus.triggered:
        return page
    user = await session.get(User, user_id) if user_id else None
    page.status = PageStatus.acknowledged
    page.acknowledged_at = utcnow()
    page.acknowledged_by_id = user.id if user else None
    await _cancel_timers(session, page)
    name = user.name if user else "Someone"
    await _event(
        session, page, "acknowledged", f"{name} acknowledged via {via}", user_id=page.acknowledged_by_id, via=via
    )
    await _timeline(session, page, "page_acknowledged", f"{name} acknowledged the page “{page.title}”", via=via)
    return page


async def resolve(session: AsyncSession, page: Page, *, user_id: str | None, via: str) -> Page:
    """Resolve an open page (acknowledged or not); its timers stop. Idempotent."""
    if page.status == PageStatus.resolved:
        return page
    user = await session.get(User, user_id) if user_id else None
    page.status = PageStatus.resolved
    page.resolved_at = utcnow()
    await _cancel_timers(session, page)
    name = user.name if user else "Automation"
    await _event(
        session, page, "resolved", f"{name} resolved the page via {via}", user_id=user.id if user else None, via=via
    )
    await _timeline(session, page, "page_resolved", f"Page “{page.title}” resolved", via=via)
    return page


async def acknowledge_group(session: AsyncSession, alert_group_id: str, *, via: str) -> int:
    """Acknowledge every triggered page of an alert group; returns how many."""
    pages = list(
        await session.scalars(
            select(Page).where(Page.alert_group_id == alert_group_id, Page.status == PageStatus.triggered)
        )
    )
    for page in pages:
        await acknowledge(session, page, user_id=None, via=via)
    return len(pages)


async def resolve_pages(
    session: AsyncSession, *, alert_group_id: str | None = None, incident_id: str | None = None, via: str
) -> int:
    """Resolve the open pages of an alert group or an incident; returns how many."""
    if alert_group_id is None and incident_id is None:
        raise InvalidInput("name an alert group or an incident whose pages to resolve", field="alert_group_id")
    query = select(Page).where(Page.status != PageStatus.resolved)
    if alert_group_id is not None:
        query = query.where(Page.alert_group_id == alert_group_id)
    if incident_id is not None:
        query = query.where(Page.incident_id == incident_id)
    pages = list(await session.scalars(query))
    for page in pages:
        await resolve(session, page, user_id=None, via=via)
    return len(pages)


async def list_pages(
    session: AsyncSession, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[Page]:
    """Pages newest first, optionally of one status."""
    query = select(Page).order_by(Page.started_at.desc(), Page.id.desc()).limit(limit).offset(offset)
    if status is not None:
        try:
            parsed = PageStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in PageStatus)
            raise InvalidInput(f"{status!r} is not a page status; use one of: {allowed}", field="status") from None
        query = query.where(Page.status == parsed)
    return list(await session.scalars(query))


async def events_of(session: AsyncSession, page_id: str) -> list[PageEvent]:
    return list(
        await session.scalars(
            select(PageEvent).where(PageEvent.page_id == page_id).order_by(PageEvent.at, PageEvent.id)
        )
    )


# ----------------------------------------------------------------------------------- tasks


async def run_escalate(session: AsyncSession, payload: dict[str, Any]) -> None:
    """The level's timeout passed without acknowledgement: notify the next level, or repeat, or give up."""
    page = await session.get(Page, str(payload.get("page_id")))
    if page is None or page.status != PageStatus.triggered or page.urgency != Urgency.high:
        return
    if int(payload.get("level", page.level)) != page.level or int(payload.get("cycle", page.cycle)) != page.cycle:
        return  # a timer of a step already taken
    levels = levels_of(page)
    repeats = int((page.policy or {}).get("repeats") or 0)
    level, cycle = page.level + 1, page.cycle
    if level >= len(levels):
        if cycle >= repeats:
            page.next_escalation_at = None
            summary = f"Nobody acknowledged after {len(levels)} level(s), {cycle + 1} time(s): the policy is exhausted"
            await _event(session, page, "exhausted", summary, level=page.level, cycle=cycle)
            await _timeline(session, page, "page_exhausted", f"Page “{page.title}”: {summary}")
            return
        level, cycle = 0, cycle + 1
    page.level, page.cycle = level, cycle
    summary = f"Escalated to level {level + 1}" + (f" (repeat {cycle})" if cycle else "")
    await _event(session, page, "escalated", summary, level=level, cycle=cycle)
    await _timeline(
        session, page, "page_escalated", f"Page “{page.title}”: {summary.lower()}", level=level, cycle=cycle
    )
    await notify_level(session, page, level=level, cycle=cycle)
    await _schedule_escalation(session, page)


async def run_notify(session: AsyncSession, payload: dict[str, Any]) -> None:
    """A delayed notification rule's time came: notify if the page is still unacknowledged."""
    page = await session.get(Page, str(payload.get("page_id")))
    if page is None or page.status != PageStatus.triggered:
        return
    user = await session.get(User, str(payload.get("user_id")))
    method = await session.get(ContactMethod, str(payload.get("contact_method_id")))
    if user is None or not user.is_active or method is None:
        return
    await _send(
        session,
        page,
        user,
        method,
        level=int(payload.get("level", 0)),
        cycle=int(payload.get("cycle", 0)),
        via=str(payload.get("via", "")),
    )
