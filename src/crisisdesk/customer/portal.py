"""Private status pages: who may sign in, their sessions, and what one account's page shows.

A customer's user signs in with a magic link mailed to an address at one of the account's
allow-listed domains (:class:`~crisisdesk.customer.models.AccountDomain`), or through a reverse
proxy that vouches for them in a header (single sign-on). Links and sessions are random tokens of
which only the SHA-256 is stored; a link works once, for ``portal_link_minutes``. A session lasts
``portal_session_hours`` and only while its address's domain is still allowed for its account,
so removing a domain signs its people out.

Everything a page shows is read for one account id, the session's: no function here takes an
account from the visitor's input.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crisisdesk.auth.security import digest
from crisisdesk.catalog.models import Component
from crisisdesk.config import Settings
from crisisdesk.customer import impact, notes
from crisisdesk.customer.impact import AffectedComponent
from crisisdesk.customer.models import Account, AccountComponent, AccountDomain, AccountNote, PortalLogin, PortalSession
from crisisdesk.incident import guidance
from crisisdesk.incident.models import EtaEstimate, Incident, Workaround
from crisisdesk.kit.errors import DomainError, Forbidden, InvalidInput, NotFound, TooManyRequests
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import addresses, ledger, subscribers
from crisisdesk.notify.models import (
    Channel,
    Purpose,
    Subscriber,
    SubscriberComponent,
    SubscriberState,
    SubscriptionScope,
)

log = logging.getLogger(__name__)

# Links one address (and one account) can be sent per hour: asking again and again must not turn
# the sign-in form into a way to flood someone's inbox.
LINKS_PER_ADDRESS = 5
LINKS_PER_ACCOUNT = 50
LINK_WINDOW = timedelta(hours=1)
# Resolved incidents stay on the page this long: a month covers an SLA period.
RECENT_DAYS = 30
NOTES_SHOWN = 50
MAX_TOKEN = 100


class LinkGone(DomainError):
    """A sign-in link that was used already or has expired."""

    status_code = 410


@dataclass(frozen=True)
class Visitor:
    """A signed-in customer: the account whose page they see, and the session that proves it."""

    account_id: str
    account_name: str
    email: str
    via: str  # "link" or "sso"
    token_hash: str
    expires_at: datetime


# ------------------------------------------------------------------------------- addresses


def email_domain(address: str) -> str:
    """The domain of a checked address, as :class:`AccountDomain` stores it (ASCII, lower-case)."""
    domain = address.rsplit("@", 1)[-1].lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return domain
    return domain


def check_email(value: str, *, field: str = "email") -> str:
    """A valid email address, lower-cased, or :class:`InvalidInput` naming ``field``."""
    return addresses.normalize_email(value, field=field)


async def account_for_email(session: AsyncSession, address: str) -> Account | None:
    """The account whose allow-listed domain is the address's, if any."""
    return await session.scalar(
        select(Account)
        .join(AccountDomain, AccountDomain.account_id == Account.id)
        .where(AccountDomain.domain == email_domain(address))
    )


def _queryable(token: str | None) -> bool:
    # PostgreSQL refuses a NUL in a query; no token holds one, or is this long.
    return bool(token) and len(token or "") <= MAX_TOKEN and "\x00" not in (token or "")


# ------------------------------------------------------------------------------- magic links


def link_url(settings: Settings, token: str) -> str:
    """The sign-in link mailed to the visitor."""
    return f"{settings.base_url.rstrip('/')}/private/login/{token}"


def _escape(value: str) -> str:
    return subscribers.escape(value)


async def request_link(session: AsyncSession, settings: Settings, *, email: str) -> PortalLogin | None:
    """Mail a sign-in link when the address's domain is allowed for an account; None when not sent.

    Whoever asks gets the same answer whether or not a link went out, so the caller must not
    show the difference: the form would otherwise tell which domains are customers.
    """
    address = check_email(email)
    account = await account_for_email(session, address)
    if account is None:
        return None
    now = utcnow()
    since = now - LINK_WINDOW
    to_address, to_account = (
        await session.execute(
            select(
                func.count().filter(PortalLogin.email == address),
                func.count(),
            ).where(PortalLogin.account_id == account.id, PortalLogin.created_at >= since)
        )
    ).one()
    if to_address >= LINKS_PER_ADDRESS or to_account >= LINKS_PER_ACCOUNT:
        log.info("sign-in link not sent: the hourly limit for %s (or its account) is reached", address)
        return None
    # Spent links of this account are of no use to anyone; dropped here so they do not pile up,
    # but only once they are out of the hour the limit counts, or the count would forget them.
    await session.execute(
        delete(PortalLogin).where(
            PortalLogin.account_id == account.id, PortalLogin.expires_at < now, PortalLogin.created_at < since
        )
    )
    token = secrets.token_urlsafe(32)
    login = PortalLogin(
        token_hash=digest(token),
        account_id=account.id,
        email=address,
        created_at=now,
        expires_at=now + timedelta(minutes=settings.portal_link_minutes),
        used_at=None,
    )
    session.add(login)
    await session.flush()
    page, minutes, link = settings.page_name, settings.portal_link_minutes, link_url(settings, token)
    text = (
        f"Someone (hopefully you) asked to sign in to the {page} status page of {account.name}.\n\n"
        f"Sign in: {link}\n\n"
        f"The link works once, within {minutes} minutes. If it was not you, ignore this message."
    )
    html = (
        f"<p>Someone (hopefully you) asked to sign in to the {_escape(page)} status page of "
        f"{_escape(account.name)}.</p>"
        f'<p><a href="{_escape(link)}">Sign in</a></p>'
        f"<p>The link works once, within {minutes} minutes. If it was not you, ignore this message.</p>"
    )
    # The subject names the link by its digest: the token itself is only in the message.
    await ledger.enqueue(
        session,
        subject=f"portal:{login.token_hash[:40]}",
        purpose=Purpose.portal,
        channel=Channel.email,
        recipient=address,
        address=address,
        payload={"subject": f"Sign in to {page} status", "text": text, "html": html},
    )
    return login


async def pending_link(session: AsyncSession, token: str) -> PortalLogin:
    """The link behind a token, while it still works; 404 unknown, 410 used or expired."""
    login = await session.get(PortalLogin, digest(token)) if _queryable(token) else None
    if login is None:
        raise NotFound("this sign-in link is unknown; ask for a new one", field="token")
    if login.used_at is not None:
        raise LinkGone("this sign-in link was used already; ask for a new one", field="token")
    if login.expires_at <= utcnow():
        raise LinkGone("this sign-in link has expired; ask for a new one", field="token")
    return login


async def consume_link(session: AsyncSession, settings: Settings, token: str) -> tuple[Visitor, str]:
    """Use a link (once) and open a session; returns the visitor and the session's cookie value."""
    login = await pending_link(session, token)
    now = utcnow()
    # One conditional UPDATE: of two requests racing with the same link, only one opens a session.
    used = await session.execute(
        update(PortalLogin)
        .where(PortalLogin.token_hash == login.token_hash, PortalLogin.used_at.is_(None), PortalLogin.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(used, "rowcount", 0) != 1:
        raise LinkGone("this sign-in link was used already; ask for a new one", field="token")
    account = await _allowed_account(session, login.account_id, login.email)
    if account is None:
        raise Forbidden(f"{email_domain(login.email)} is no longer allowed on this private page", field="token")
    return await _open_session(session, settings, account, login.email, via="link")


async def _allowed_account(session: AsyncSession, account_id: str, address: str) -> Account | None:
    """The account, while the address's domain is still allowed for it."""
    return await session.scalar(
        select(Account)
        .join(AccountDomain, AccountDomain.account_id == Account.id)
        .where(Account.id == account_id, AccountDomain.domain == email_domain(address))
    )


async def _open_session(
    session: AsyncSession, settings: Settings, account: Account, address: str, *, via: str
) -> tuple[Visitor, str]:
    now = utcnow()
    await session.execute(
        delete(PortalSession).where(PortalSession.account_id == account.id, PortalSession.expires_at < now)
    )
    token = secrets.token_urlsafe(32)
    row = PortalSession(
        token_hash=digest(token),
        account_id=account.id,
        email=address,
        via=via,
        created_at=now,
        expires_at=now + timedelta(hours=settings.portal_session_hours),
    )
    session.add(row)
    await session.flush()
    return _visitor(row, account), token


def _visitor(row: PortalSession, account: Account) -> Visitor:
    return Visitor(account.id, account.name, row.email, row.via, row.token_hash, row.expires_at)


async def visitor_of(session: AsyncSession, token: str | None) -> Visitor | None:
    """The visitor a session cookie signs in; None when it is unknown, expired or its domain was removed."""
    if not _queryable(token):
        return None
    row = await session.get(PortalSession, digest(token or ""))
    if row is None or row.expires_at <= utcnow():
        return None
    account = await _allowed_account(session, row.account_id, row.email)
    return None if account is None else _visitor(row, account)


async def end_session(session: AsyncSession, visitor: Visitor) -> None:
    """Sign out: the session's row is deleted, so its cookie is worth nothing any more."""
    await session.execute(delete(PortalSession).where(PortalSession.token_hash == visitor.token_hash))


def csrf_token(settings: Settings, visitor: Visitor) -> str:
    """The token the page's forms carry: bound to the session, so another site cannot forge it."""
    message = f"portal-csrf|{visitor.token_hash}".encode()
    return hmac.new(settings.secret_key.encode(), message, hashlib.sha256).hexdigest()[:32]


def check_csrf(settings: Settings, visitor: Visitor, sent: str) -> None:
    if not sent or not hmac.compare_digest(sent, csrf_token(settings, visitor)):
        raise Forbidden("this form has expired; reload the page and try again", field="csrf_token")


# ------------------------------------------------------------------------------- single sign-on


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    found = []
    for entry in entries:
        try:
            found.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            log.warning("CRISISDESK_PORTAL_SSO_TRUSTED_PROXIES: %r is not an address or network; ignored", entry)
    return tuple(found)


def trusted_peer(settings: Settings, host: str | None) -> bool:
    """Whether the connection comes from a proxy whose SSO header is believed."""
    if not host:
        return False
    try:
        peer = ipaddress.ip_address(host)
    except ValueError:
        return False
    # A dual-stack listener sees IPv4 proxies as ::ffff:a.b.c.d.
    candidates = (
        [peer] if not isinstance(peer, ipaddress.IPv6Address) or not peer.ipv4_mapped else [peer, peer.ipv4_mapped]
    )
    networks = _networks(tuple(settings.portal_sso_trusted_proxies))
    return any(address in network for address in candidates for network in networks)


def sso_address(value: str) -> str:
    """The address in a trusted proxy's header, normalised; 403 when it is not an address."""
    try:
        return check_email(value)
    except InvalidInput:
        raise Forbidden("the single sign-on header does not hold an email address", field="email") from None


async def sign_in_sso(session: AsyncSession, settings: Settings, *, email: str) -> tuple[Visitor, str]:
    """Open a session for the address a trusted proxy vouches for; 403 when its domain is not allowed."""
    address = sso_address(email)
    account = await account_for_email(session, address)
    if account is None:
        raise Forbidden(
            f"{email_domain(address)} is not allowed on any private status page; ask your account manager",
            field="email",
        )
    return await _open_session(session, settings, account, address, via="sso")


# ------------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class IncidentView:
    """An incident affecting the account, with what it does to the account's components."""

    incident: Incident  # public updates are read through statuspage.public.public_updates
    components: list[AffectedComponent]
    workaround: Workaround | None  # published only
    eta: EtaEstimate | None  # published only
    notes: list[AccountNote]


@dataclass(frozen=True)
class AccountPage:
    """Everything one account's private page shows besides the public page."""

    account_id: str
    name: str
    components: list[Component]
    incidents: list[IncidentView]
    notes: list[AccountNote]  # the ones not shown under a listed incident
    incident_names: dict[str, str]  # the incidents the notes are about
    subscriptions: list[Subscriber]


async def account_components(session: AsyncSession, account_id: str) -> list[Component]:
    """The components the account uses, in page order."""
    statement = (
        select(Component)
        .join(AccountComponent, AccountComponent.component_id == Component.id)
        .where(AccountComponent.account_id == account_id)
        .order_by(Component.position, Component.name)
    )
    return list((await session.scalars(statement)).all())


async def _incident_views(
    session: AsyncSession, account_id: str, note_rows: Sequence[AccountNote], now: datetime
) -> list[IncidentView]:
    ids = await impact.incidents_affecting(session, account_id, resolved_since=now - timedelta(days=RECENT_DAYS))
    if not ids:
        return []
    loaded = {
        i.id: i
        for i in await session.scalars(
            select(Incident).where(Incident.id.in_(ids)).options(selectinload(Incident.updates))
        )
    }
    views = []
    for incident_id in ids:
        incident = loaded.get(incident_id)
        if incident is None:
            continue
        found = await impact.account_impact(session, incident_id, account_id)
        current = await guidance.current(session, incident_id)
        workaround = current.workaround if current.workaround is not None and current.workaround.published else None
        eta = current.eta if current.eta is not None and current.eta.published and current.eta.eta_at else None
        views.append(
            IncidentView(
                incident=incident,
                components=found.components if found is not None else [],
                workaround=workaround if workaround is not None and workaround.body.strip() else None,
                eta=eta,
                notes=[n for n in note_rows if n.incident_id == incident_id],
            )
        )
    return views


async def account_page(session: AsyncSession, visitor: Visitor, *, now: datetime | None = None) -> AccountPage:
    """The signed-in visitor's account: components, incidents affecting it, notes, subscriptions."""
    now = now or utcnow()
    note_rows = list(await notes.list_notes(session, visitor.account_id, limit=NOTES_SHOWN))
    incidents = await _incident_views(session, visitor.account_id, note_rows, now)
    listed = {view.incident.id for view in incidents}
    other_notes = [n for n in note_rows if n.incident_id not in listed]
    about = {n.incident_id for n in other_notes if n.incident_id}
    names = {}
    if about:
        names = dict((await session.execute(select(Incident.id, Incident.name).where(Incident.id.in_(about)))).all())
    return AccountPage(
        account_id=visitor.account_id,
        name=visitor.account_name,
        components=await account_components(session, visitor.account_id),
        incidents=incidents,
        notes=other_notes,
        incident_names=names,
        subscriptions=await account_subscriptions(session, visitor.account_id),
    )


async def note_for(session: AsyncSession, visitor: Visitor, note_id: str) -> tuple[AccountNote, str | None]:
    """One note of the visitor's account, with the name of its incident; 404 for any other."""
    # isdigit() alone takes "²" for a digit, which int() refuses.
    if not (note_id.isascii() and note_id.isdigit()) or len(note_id) > 9:
        raise NotFound("no such note for this account", field="note_id")
    note = await notes.get(session, visitor.account_id, int(note_id))
    name = (
        await session.scalar(select(Incident.name).where(Incident.id == note.incident_id)) if note.incident_id else None
    )
    return note, name


# ------------------------------------------------------------------------------- subscriptions


async def account_subscriptions(session: AsyncSession, account_id: str) -> list[Subscriber]:
    """The subscriptions made on this account's page, oldest first."""
    statement = (
        select(Subscriber)
        .where(Subscriber.account_id == account_id)
        .options(selectinload(Subscriber.components))
        .order_by(Subscriber.created_at, Subscriber.id)
    )
    return list((await session.scalars(statement)).all())


@dataclass(frozen=True)
class Subscribed:
    """What a subscription from the private page did."""

    address: str
    # True: the visitor's own address, active at once. False: a message went to the address (a
    # confirmation, or a note that it receives updates already).
    direct: bool


async def subscribe(
    session: AsyncSession, settings: Settings, visitor: Visitor, *, address: str, scope: str
) -> Subscribed:
    """Subscribe an email address to this account's incidents (``scope`` "components") or to everything.

    The visitor's own address is active at once: the magic link (or the SSO proxy) has just shown
    that it is theirs. Any other address gets the public sign-up's double opt-in, so a customer
    cannot subscribe a stranger; an address subscribed elsewhere is never taken over unconfirmed.
    """
    normalized = check_email(address, field="address")
    if scope not in ("components", "all"):
        raise InvalidInput("choose our components or all updates", field="scope")
    components = [c.id for c in await account_components(session, visitor.account_id)] if scope == "components" else []
    now = utcnow()
    since = now - timedelta(hours=settings.signup_window_hours)
    made = await session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.account_id == visitor.account_id, Subscriber.created_at >= since)
    )
    if (made or 0) >= settings.signup_limit:
        raise TooManyRequests(
            f"this page has added {made} subscriptions within {settings.signup_window_hours:g} hours; try later",
            field="address",
        )
    if normalized != visitor.email:
        result = await subscribers.subscribe(
            session, settings, channel=Channel.email.value, address=normalized, components=components, source="portal"
        )
        if result.created:
            result.subscriber.account_id = visitor.account_id
        return Subscribed(normalized, direct=False)
    existing = await session.scalar(
        select(Subscriber).where(Subscriber.channel == Channel.email, Subscriber.address == normalized)
    )
    if existing is None:
        subscriber = Subscriber(
            channel=Channel.email,
            address=normalized,
            state=SubscriberState.active,
            scope=SubscriptionScope.components if components else SubscriptionScope.all,
            account_id=visitor.account_id,
            token=subscribers.new_token(),
            source="portal",
            created_at=now,
            confirmed_at=now,
            components=[SubscriberComponent(component_id=c) for c in components],
        )
        session.add(subscriber)
        await session.flush()
        return Subscribed(normalized, direct=True)
    if existing.account_id not in (None, visitor.account_id):
        # Subscribed from another account's page: it stays there, and its owner hears of it.
        await subscribers.send_confirmation(session, settings, existing, now=now)
        return Subscribed(normalized, direct=False)
    existing.account_id = visitor.account_id
    if existing.state != SubscriberState.active:
        existing.state = SubscriberState.active
        existing.confirmed_at = existing.confirmed_at or now
        existing.quarantined_at = existing.purge_at = None
        existing.last_error = None
    # Written before update_subscription reloads the row.
    await session.flush()
    await subscribers.update_subscription(session, existing.token, components=components or None)
    return Subscribed(normalized, direct=True)


async def unsubscribe(session: AsyncSession, visitor: Visitor, subscriber_id: str) -> Subscriber:
    """End one of this account's subscriptions; another account's is as unknown as a missing one."""
    subscriber = (
        await session.scalar(
            select(Subscriber).where(Subscriber.id == subscriber_id, Subscriber.account_id == visitor.account_id)
        )
        if _queryable(subscriber_id)
        else None
    )
    if subscriber is None:
        raise NotFound("no such subscription on this page", field="subscriber_id")
    await session.delete(subscriber)
    await session.flush()
    return subscriber
