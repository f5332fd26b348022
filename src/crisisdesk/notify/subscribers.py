"""Subscribers: self sign-up with double opt-in, managing and leaving, admin changes, quarantine.

Every function runs in the caller's transaction and never commits. A confirmation is a
``delivery`` row (:func:`crisisdesk.notify.ledger.enqueue`) that the workers send like any other
message; nothing here talks to the network except the DNS check of webhook URLs.

Signing up never reveals whether an address was already subscribed: an existing address gets
its scope widened (an anonymous visitor cannot narrow someone else's subscription) and, for
email and SMS, a fresh message that leads its owner to the manage page.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crisisdesk.catalog.models import Component
from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident
from crisisdesk.kit import jobs
from crisisdesk.kit.db import dialect_insert
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import addresses, ledger
from crisisdesk.notify.models import (
    SUBSCRIBER_CHANNELS,
    Channel,
    Delivery,
    Purpose,
    Subscriber,
    SubscriberComponent,
    SubscriberState,
    SubscriptionScope,
)

PURGE = "notify.purge"
PURGE_EVERY = timedelta(hours=1)
# Confirmation messages one subscriber can be sent per sign-up window: re-submitting the form
# must not turn the page into a way to flood someone's inbox or phone.
MAX_CONFIRMATIONS = 5
CODE_TRIES = 5
# Channels whose address must prove it is reachable before anything is sent to it.
OPT_IN_CHANNELS = (Channel.email, Channel.sms)


@dataclass
class SubscribeResult:
    """What a sign-up did, for the page that answers it."""

    subscriber: Subscriber
    created: bool
    # The webhook signing secret, present only when the subscriber was created just now.
    secret: str | None = None


def parse_channel(value: str, *, field: str = "channel") -> Channel:
    """A channel a subscriber can use (email, sms, webhook, slack, teams)."""
    try:
        channel = Channel(value.strip().lower())
    except ValueError:
        channel = None
    if channel not in SUBSCRIBER_CHANNELS:
        names = ", ".join(c.value for c in SUBSCRIBER_CHANNELS)
        raise InvalidInput(f"choose a channel: {names}", field=field)
    return channel


def new_token() -> str:
    """An unguessable manage token (the capability in a subscriber's links)."""
    return secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and the base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def manage_url(settings: Settings, subscriber: Subscriber) -> str:
    """The subscriber's manage page."""
    return f"{settings.base_url.rstrip('/')}/subscriptions/{subscriber.token}"


def confirm_url(settings: Settings, subscriber: Subscriber) -> str:
    """The double opt-in link of a confirmation email."""
    return f"{manage_url(settings, subscriber)}/confirm"


def unsubscribe_url(settings: Settings, subscriber: Subscriber) -> str:
    """The unsubscribe page (and RFC 8058 one-click target)."""
    return f"{manage_url(settings, subscriber)}/unsubscribe"


async def check_components(session: AsyncSession, ids: Sequence[str], *, field: str = "components") -> list[str]:
    """The component ids, each an existing component (not a group); duplicates dropped."""
    wanted = list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))
    if not wanted:
        return []
    for component_id in wanted:
        if not _queryable(component_id):
            raise InvalidInput(f"no component with id {component_id!r}", field=field)
    found = {c.id: c for c in await session.scalars(select(Component).where(Component.id.in_(wanted)))}
    for component_id in wanted:
        component = found.get(component_id)
        if component is None:
            raise InvalidInput(f"no component with id {component_id!r}", field=field)
        if component.is_group:
            raise InvalidInput(f"{component.name!r} is a group; choose its components", field=field)
    return wanted


async def check_open_incident(session: AsyncSession, incident_id: str, *, field: str = "incident") -> Incident:
    """The incident (or maintenance) to follow; it must exist and not be over."""
    incident = await session.get(Incident, incident_id.strip()) if _queryable(incident_id) else None
    if incident is None:
        raise InvalidInput(f"no incident with id {incident_id!r}", field=field)
    if not incident.is_open:
        raise InvalidInput("this incident is over; subscribe to all updates or to components instead", field=field)
    return incident


async def _check_rate(session: AsyncSession, settings: Settings, client_ip: str, now: datetime) -> None:
    # Counted from the rows themselves so the limit holds across web processes and restarts.
    since = now - timedelta(hours=settings.signup_window_hours)
    made = await session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.created_ip == client_ip, Subscriber.created_at >= since)
    )
    if (made or 0) >= settings.signup_limit:
        hours = f"{settings.signup_window_hours:g}"
        raise TooManyRequests(
            f"too many sign-ups from your network address; try again within {hours} hours", field="address"
        )


async def _get(session: AsyncSession, **where: str) -> Subscriber | None:
    query = select(Subscriber).options(selectinload(Subscriber.components))
    for name, value in where.items():
        query = query.where(getattr(Subscriber, name) == value)
    result: Subscriber | None = await session.scalar(query.execution_options(populate_existing=True))
    return result


# Every token, id and address is NUL-free; PostgreSQL refuses a NUL in a query (and the app
# would answer 503 "database unreachable"), so a NUL is "not found" before any query.
def _queryable(value: str | None) -> bool:
    return bool(value) and "\x00" not in (value or "")


async def get_by_token(session: AsyncSession, token: str) -> Subscriber:
    """The subscriber a manage, confirm or unsubscribe link points at."""
    subscriber = await _get(session, token=token) if _queryable(token) else None
    if subscriber is None:
        raise NotFound("this subscription link is unknown; it may have been unsubscribed already", field="token")
    return subscriber


async def get_subscriber(session: AsyncSession, subscriber_id: str) -> Subscriber:
    """One subscriber by id, with its components."""
    subscriber = await _get(session, id=subscriber_id) if _queryable(subscriber_id) else None
    if subscriber is None:
        raise NotFound(f"no subscriber with id {subscriber_id!r}", field="subscriber_id")
    return subscriber


def component_ids(subscriber: Subscriber) -> list[str]:
    """The ids of the components a subscriber follows."""
    return [link.component_id for link in subscriber.components]


def _set_scope(
    subscriber: Subscriber, scope: SubscriptionScope, components: list[str], incident_id: str | None
) -> None:
    subscriber.scope = scope
    subscriber.incident_id = incident_id if scope == SubscriptionScope.incident else None
    wanted = components if scope == SubscriptionScope.components else []
    subscriber.components[:] = [
        link for link in subscriber.components if link.component_id in wanted
    ]  # keeps the links already there
    have = {link.component_id for link in subscriber.components}
    subscriber.components.extend(SubscriberComponent(component_id=c) for c in wanted if c not in have)


def scope_of(components: list[str], incident_id: str | None) -> SubscriptionScope:
    """The scope a sign-up asks for: one incident, chosen components, or everything."""
    if incident_id:
        return SubscriptionScope.incident
    return SubscriptionScope.components if components else SubscriptionScope.all


def _widen(subscriber: Subscriber, components: list[str], incident_id: str | None) -> None:
    """Grow an existing subscription to cover the new request too, never shrink it."""
    scope = scope_of(components, incident_id)
    current = SubscriptionScope(subscriber.scope)
    if current == SubscriptionScope.all:
        return
    if scope == current == SubscriptionScope.components:
        _set_scope(subscriber, scope, list(dict.fromkeys([*component_ids(subscriber), *components])), None)
    elif scope == current == SubscriptionScope.incident and subscriber.incident_id == incident_id:
        return
    else:
        # One subscription cannot follow an incident and components (or two incidents) at
        # once; everything is the only scope that covers both.
        _set_scope(subscriber, SubscriptionScope.all, [], None)


async def _check_request(
    session: AsyncSession,
    settings: Settings,
    *,
    channel: str,
    address: str,
    components: Sequence[str] | None,
    incident_id: str | None,
    incident_field: str = "incident",
) -> tuple[Channel, str, list[str], str | None]:
    """The channel, normalised address, component ids and incident id of a sign-up or an admin's add."""
    kind = parse_channel(channel)
    if not address or not address.strip():
        raise InvalidInput("enter an address to send updates to", field="address")
    normalized = await addresses.check_address(kind, address, allow_private=settings.allow_private_webhooks)
    wanted = await check_components(session, components or [])
    incident = incident_id.strip() if incident_id else None
    if incident:
        if wanted:
            raise InvalidInput("follow one incident or chosen components, not both", field="components")
        await check_open_incident(session, incident, field=incident_field)
    return kind, normalized, wanted, incident


async def subscribe(
    session: AsyncSession,
    settings: Settings,
    *,
    channel: str,
    address: str,
    components: Sequence[str] | None = None,
    incident_id: str | None = None,
    client_ip: str | None = None,
    source: str = "self",
) -> SubscribeResult:
    """Sign an address up (or widen its existing subscription) and send what confirms it."""
    now = utcnow()
    kind, normalized, wanted, incident = await _check_request(
        session, settings, channel=channel, address=address, components=components, incident_id=incident_id
    )
    if source == "self" and client_ip:
        await _check_rate(session, settings, client_ip, now)
    existing = await _get(session, channel=kind.value, address=normalized)
    if existing is not None:
        if existing.state == SubscriberState.pending:
            _set_scope(existing, scope_of(wanted, incident), wanted, incident)
        else:
            _widen(existing, wanted, incident)
        if kind in OPT_IN_CHANNELS:
            await send_confirmation(session, settings, existing, now=now)
        return SubscribeResult(existing, created=False)
    opt_in = kind in OPT_IN_CHANNELS
    subscriber = Subscriber(
        channel=kind,
        address=normalized,
        state=SubscriberState.pending if opt_in else SubscriberState.active,
        token=new_token(),
        secret=new_webhook_secret() if kind == Channel.webhook else None,
        source=source,
        created_ip=client_ip,
        created_at=now,
        confirmed_at=None if opt_in else now,
        components=[],
    )
    _set_scope(subscriber, scope_of(wanted, incident), wanted, incident)
    session.add(subscriber)
    try:
        await session.flush()
    except IntegrityError:
        # The same address was signed up by another request between the lookup and this insert;
        # the unique index kept one. Sent again, the form takes the "already there" path.
        raise Conflict("this address was signed up at the same moment; send the form again", field="address") from None
    if opt_in:
        await send_confirmation(session, settings, subscriber, now=now)
    return SubscribeResult(subscriber, created=True, secret=subscriber.secret)


async def send_confirmation(
    session: AsyncSession, settings: Settings, subscriber: Subscriber, *, now: datetime | None = None
) -> Delivery | None:
    """Record the message that confirms (pending) or leads to the manage page (active); capped per window."""
    now = now or utcnow()
    since = now - timedelta(hours=settings.signup_window_hours)
    sent_total, sent_recent = (
        await session.execute(
            select(func.count(), func.count().filter(Delivery.created_at >= since)).where(
                Delivery.subscriber_id == subscriber.id, Delivery.purpose == Purpose.confirm
            )
        )
    ).one()
    if sent_recent >= MAX_CONFIRMATIONS:
        return None
    page = settings.page_name
    if subscriber.channel == Channel.sms:
        code = f"{secrets.randbelow(1_000_000):06d}"
        subscriber.confirm_code = f"{code}:0"
        payload = {"subject": "", "text": f"{page} status: your code is {code}. Reply STOP to opt out.", "html": None}
    elif subscriber.state == SubscriberState.pending:
        link = confirm_url(settings, subscriber)
        text = (
            f"Someone (hopefully you) asked to receive {page} status updates at this address.\n\n"
            f"Confirm the subscription: {link}\n\n"
            "If it was not you, ignore this message: nothing will be sent without confirmation."
        )
        html = (
            f"<p>Someone (hopefully you) asked to receive {escape(page)} status updates at this address.</p>"
            f'<p><a href="{escape(link)}">Confirm the subscription</a></p>'
            "<p>If it was not you, ignore this message: nothing will be sent without confirmation.</p>"
        )
        payload = {"subject": f"Confirm your subscription to {page} status", "text": text, "html": html}
    else:
        link = manage_url(settings, subscriber)
        text = (
            f"This address already receives {page} status updates.\n\nChange what you follow or unsubscribe: {link}\n"
        )
        html = (
            f"<p>This address already receives {escape(page)} status updates.</p>"
            f'<p><a href="{escape(link)}">Change what you follow or unsubscribe</a></p>'
        )
        payload = {"subject": f"Your {page} status subscription", "text": text, "html": html}
    return await ledger.enqueue(
        session,
        subject=f"confirm:{subscriber.id}:{sent_total + 1}",
        purpose=Purpose.confirm,
        channel=Channel(subscriber.channel),
        recipient=subscriber.id,
        address=subscriber.address,
        payload=payload,
        subscriber_id=subscriber.id,
    )


def escape(value: str) -> str:
    """HTML-escape text placed in a message's HTML part."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _activate(subscriber: Subscriber, now: datetime) -> None:
    if subscriber.state == SubscriberState.pending:
        subscriber.state = SubscriberState.active
        subscriber.confirmed_at = now


async def confirm(session: AsyncSession, token: str) -> Subscriber:
    """Confirm an email subscription from its double opt-in link (again: no harm)."""
    subscriber = await get_by_token(session, token)
    _activate(subscriber, utcnow())
    return subscriber


async def confirm_sms(session: AsyncSession, token: str, code: str) -> Subscriber:
    """Check the code sent by SMS; after a few wrong tries the code is void and a new one is needed."""
    subscriber = await get_by_token(session, token)
    stored, _, tries_text = (subscriber.confirm_code or "").partition(":")
    tries = int(tries_text or 0)
    typed = "".join(ch for ch in code if ch.isdecimal())
    if not stored or tries >= CODE_TRIES:
        subscriber.confirm_code = None
        raise InvalidInput("this code has expired; sign up again to get a new one", field="code")
    if not typed or not secrets.compare_digest(typed, stored):
        tries += 1
        subscriber.confirm_code = f"{stored}:{tries}" if tries < CODE_TRIES else None
        left = CODE_TRIES - tries
        hint = f"{left} tries left" if left else "sign up again to get a new code"
        raise InvalidInput(f"that code is not right; {hint}", field="code")
    subscriber.confirm_code = None
    _activate(subscriber, utcnow())
    return subscriber


async def update_subscription(session: AsyncSession, token: str, *, components: Sequence[str] | None) -> Subscriber:
    """Follow everything (``components=None``) or only these components."""
    subscriber = await get_by_token(session, token)
    if components is None:
        _set_scope(subscriber, SubscriptionScope.all, [], None)
        return subscriber
    wanted = await check_components(session, components)
    if not wanted:
        raise InvalidInput("choose at least one component, or all updates", field="components")
    _set_scope(subscriber, SubscriptionScope.components, wanted, None)
    return subscriber


async def unsubscribe(session: AsyncSession, token: str) -> Subscriber:
    """Delete the subscriber; its past deliveries keep the address they went to."""
    subscriber = await get_by_token(session, token)
    await session.delete(subscriber)
    await session.flush()
    return subscriber


async def add(
    session: AsyncSession,
    settings: Settings,
    *,
    channel: str,
    address: str,
    components: Sequence[str] | None = None,
    incident_id: str | None = None,
) -> SubscribeResult:
    """An admin adds a subscriber, active at once (no confirmation); an address already there is refused."""
    kind, normalized, wanted, incident = await _check_request(
        session,
        settings,
        channel=channel,
        address=address,
        components=components,
        incident_id=incident_id,
        incident_field="incident_id",
    )
    if await _get(session, channel=kind.value, address=normalized) is not None:
        raise Conflict(f"{normalized} is already subscribed by {kind.value}", field="address")
    now = utcnow()
    subscriber = Subscriber(
        channel=kind,
        address=normalized,
        state=SubscriberState.active,
        token=new_token(),
        secret=new_webhook_secret() if kind == Channel.webhook else None,
        source="admin",
        created_at=now,
        confirmed_at=now,
        components=[],
    )
    _set_scope(subscriber, scope_of(wanted, incident), wanted, incident)
    session.add(subscriber)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"{normalized} is already subscribed by {kind.value}", field="address") from None
    return SubscribeResult(subscriber, created=True, secret=subscriber.secret)


async def remove(session: AsyncSession, subscriber_id: str) -> Subscriber:
    """Delete a subscriber (admin)."""
    subscriber = await get_subscriber(session, subscriber_id)
    await session.delete(subscriber)
    await session.flush()
    return subscriber


async def reactivate(session: AsyncSession, subscriber_id: str) -> Subscriber:
    """Take a quarantined subscriber back into the fan-out (admin, once the address works again)."""
    subscriber = await get_subscriber(session, subscriber_id)
    if subscriber.state != SubscriberState.quarantined:
        raise Conflict(f"the subscriber is {subscriber.state}, not quarantined", field="subscriber_id")
    subscriber.state = SubscriberState.active
    subscriber.quarantined_at = subscriber.purge_at = None
    subscriber.last_error = None
    return subscriber


async def counts_by_channel(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Subscribers per channel and state: ``{"email": {"active": 10, "pending": 2, ...}, ...}``."""
    counts = {c.value: {s.value: 0 for s in SubscriberState} for c in SUBSCRIBER_CHANNELS}
    rows = await session.execute(
        select(Subscriber.channel, Subscriber.state, func.count()).group_by(Subscriber.channel, Subscriber.state)
    )
    for channel, state, n in rows:
        counts.setdefault(str(channel), {s.value: 0 for s in SubscriberState})[str(state)] = int(n)
    return counts


@dataclass
class SubscriberPage:
    items: list[Subscriber]
    total: int
    limit: int
    offset: int


async def list_subscribers(
    session: AsyncSession,
    *,
    search: str | None = None,
    channel: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
    search_secrets: bool = False,
) -> SubscriberPage:
    """Subscribers newest first, filtered by part of the address, channel and state.

    Unless ``search_secrets`` (admins), the search leaves out Slack, Teams and webhook URLs:
    matching on them would let someone guess a URL's secret part one character at a time.
    """
    query = select(Subscriber)
    # No address holds a NUL, and PostgreSQL refuses one in a query: it is dropped from the search.
    search = (search or "").replace("\x00", "")
    if search.strip():
        pattern = "%" + search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(func.lower(Subscriber.address).like(pattern, escape="\\"))
        if not search_secrets:
            query = query.where(Subscriber.channel.in_([Channel.email.value, Channel.sms.value]))
    if channel:
        query = query.where(Subscriber.channel == parse_channel(channel).value)
    if state:
        try:
            query = query.where(Subscriber.state == SubscriberState(state).value)
        except ValueError:
            names = ", ".join(s.value for s in SubscriberState)
            raise InvalidInput(f"state must be one of {names}", field="state") from None
    limit = max(1, min(limit, 500))
    offset = max(0, offset)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = await session.scalars(
        query.options(selectinload(Subscriber.components))
        .order_by(Subscriber.created_at.desc(), Subscriber.id)
        .limit(limit)
        .offset(offset)
    )
    return SubscriberPage(list(items), int(total), limit, offset)


async def count_subscribers(session: AsyncSession) -> int:
    """How many subscribers there are, in every state."""
    return int(await session.scalar(select(func.count()).select_from(Subscriber)) or 0)


# ---------------------------------------------------------------------------- quarantine purge


def purge_key(due: datetime) -> str:
    return f"{PURGE}:{due.strftime('%Y-%m-%dT%H')}"


def next_purge_at(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) + PURGE_EVERY


async def purge_quarantined(session: AsyncSession, now: datetime) -> int:
    """Delete quarantined subscribers whose ``purge_at`` has passed; returns how many."""
    result = await session.execute(
        delete(Subscriber)
        .where(Subscriber.state == SubscriberState.quarantined, Subscriber.purge_at <= now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def ensure_purge_job(session: AsyncSession, now: datetime | None = None) -> None:
    """Make sure the hourly purge is scheduled; safe from any number of processes at once."""
    due = next_purge_at(now or utcnow())
    key = purge_key(due)
    # Another process may schedule the same hour at the same moment: the unique key keeps one.
    await session.execute(
        dialect_insert(session)(jobs.Job)
        .values(kind=PURGE, key=key, due_at=due, payload={}, attempts=0, created_at=utcnow())
        .on_conflict_do_nothing()
    )


async def run_purge(session: AsyncSession, payload: dict[str, object]) -> None:
    """The ``notify.purge`` job: purge, drop old purge jobs, and schedule the next hour's run."""
    now = utcnow()
    await purge_quarantined(session, now)
    # Each run leaves a finished row (the key names its hour); keep a day of them for inspection.
    await session.execute(
        delete(jobs.Job).where(jobs.Job.kind == PURGE, jobs.Job.finished_at < now - timedelta(days=1))
    )
    await ensure_purge_job(session, now)
