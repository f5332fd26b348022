"""How to reach a person when they are paged: contact methods and personal notification rules.

A contact method is an email address, a phone number for SMS (E.164), a Slack member id for a
direct message, or a push webhook (an https URL, signed with a ``whsec_`` secret shown once).
A notification rule says "at this urgency, notify this method after this many minutes".

A user manages their own (with the ``write`` permission); an admin manages anyone's. When a user
adds their first email address and has no rules yet, they get a rule to email it at once for each
urgency, so a new person is never paged into silence.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope, User
from crisisdesk.auth.service import Actor
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.addresses import check_webhook_url, normalize_email, normalize_phone
from crisisdesk.notify.subscribers import new_webhook_secret
from crisisdesk.oncall.models import ContactKind, ContactMethod, NotificationRule, Urgency

MAX_LABEL = 100
MAX_DELAY_MINUTES = 60
MAX_METHODS = 20
MAX_RULES = 30
# Slack member ids: U… for users, W… for Enterprise Grid users.
SLACK_MEMBER_ID = re.compile(r"[UW][A-Z0-9]{6,20}")


async def get_user(session: AsyncSession, user_id: str) -> User:
    """The user with id `user_id`, or NotFound."""
    if not isinstance(user_id, str) or "\x00" in user_id or len(user_id) > 64:
        raise NotFound("no user with that id", field="user_id")
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id!r}", field="user_id")
    return user


def check_may_manage(actor: Actor, user_id: str) -> None:
    """A user manages their own contact methods and rules; an admin manages anyone's."""
    if actor.user_id == user_id:
        actor.require(Scope.write)
    elif not actor.can(Scope.admin):
        raise Forbidden("only an admin may change another person's contact methods and notification rules")


def check_may_read(actor: Actor, user_id: str) -> None:
    """A user sees their own contact methods and rules; an admin sees anyone's."""
    if actor.user_id != user_id and not actor.can(Scope.admin):
        raise Forbidden("only an admin may see another person's contact methods and notification rules")


def parse_kind(value: str) -> ContactKind:
    try:
        return ContactKind(value)
    except ValueError:
        allowed = ", ".join(k.value for k in ContactKind)
        raise InvalidInput(f"{value!r} is not a contact method; use one of: {allowed}", field="kind") from None


def parse_urgency(value: str) -> Urgency:
    try:
        return Urgency(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not an urgency; use high or low", field="urgency") from None


async def normalize_address(kind: ContactKind, address: str, *, allow_private: bool) -> str:
    """The address checked and written the one way it is stored."""
    if "\x00" in (address or ""):
        raise InvalidInput("the address must not contain a NUL character", field="address")
    if kind is ContactKind.email:
        return normalize_email(address)
    if kind is ContactKind.sms:
        return normalize_phone(address)
    if kind is ContactKind.slack_dm:
        member = (address or "").strip()
        if not SLACK_MEMBER_ID.fullmatch(member):
            message = f"{member!r} is not a Slack member id; copy it from the person's Slack profile, e.g. U0123ABCD"
            raise InvalidInput(message, field="address")
        return member
    url = await check_webhook_url(address, allow_private=allow_private)
    if not allow_private and not url.lower().startswith("https://"):
        raise InvalidInput("a push webhook must use https://", field="address")
    return url


async def contact_methods(session: AsyncSession, user_id: str) -> list[ContactMethod]:
    """The user's contact methods, oldest first."""
    query = select(ContactMethod).where(ContactMethod.user_id == user_id)
    return list((await session.scalars(query.order_by(ContactMethod.created_at, ContactMethod.id))).all())


async def notification_rules(session: AsyncSession, user_id: str) -> list[NotificationRule]:
    """The user's rules: high urgency first, then by delay."""
    query = select(NotificationRule).where(NotificationRule.user_id == user_id)
    rules = list((await session.scalars(query.order_by(NotificationRule.delay_minutes, NotificationRule.id))).all())
    return sorted(rules, key=lambda r: (r.urgency != Urgency.high, r.delay_minutes, r.id))


async def add_contact_method(
    session: AsyncSession,
    actor: Actor,
    user_id: str,
    *,
    kind: str,
    address: str,
    label: str = "",
    allow_private: bool = False,
) -> tuple[ContactMethod, str | None]:
    """Add a contact method; returns it with the push webhook's secret (shown this once), else None."""
    check_may_manage(actor, user_id)
    user = await get_user(session, user_id)
    method_kind = parse_kind(kind)
    label = (label or "").strip()
    if "\x00" in label or len(label) > MAX_LABEL:
        raise InvalidInput(f"the label must be at most {MAX_LABEL} characters, without NUL", field="label")
    normalized = await normalize_address(method_kind, address, allow_private=allow_private)
    existing = await contact_methods(session, user.id)
    if len(existing) >= MAX_METHODS:
        raise InvalidInput(f"a person may have at most {MAX_METHODS} contact methods", field="kind")
    if any(m.kind == method_kind and m.address == normalized for m in existing):
        raise Conflict(f"{user.name} already has this {method_kind.value} contact method", field="address")
    secret = new_webhook_secret() if method_kind is ContactKind.push else None
    method = ContactMethod(
        user_id=user.id, kind=method_kind, label=label, address=normalized, secret=secret, created_at=utcnow()
    )
    session.add(method)
    await session.flush()
    if method_kind is ContactKind.email and not await notification_rules(session, user.id):
        for urgency in (Urgency.high, Urgency.low):
            session.add(
                NotificationRule(user_id=user.id, urgency=urgency, contact_method_id=method.id, delay_minutes=0)
            )
        await session.flush()
    return method, secret


async def _method_of(session: AsyncSession, user_id: str, method_id: str, *, field: str) -> ContactMethod:
    if not isinstance(method_id, str) or "\x00" in method_id or len(method_id) > 64:
        raise NotFound("no contact method with that id", field=field)
    method = await session.get(ContactMethod, method_id)
    if method is None or method.user_id != user_id:
        raise NotFound(f"no contact method {method_id!r} for this person", field=field)
    return method


async def get_contact_method(session: AsyncSession, user_id: str, method_id: str) -> ContactMethod:
    """One of the user's contact methods, or NotFound."""
    return await _method_of(session, user_id, method_id, field="contact_method_id")


async def get_rule(session: AsyncSession, user_id: str, rule_id: int) -> NotificationRule:
    """One of the user's notification rules, or NotFound."""
    # An id past a 64-bit integer names no row; the database would refuse to compare it.
    rule = await session.get(NotificationRule, rule_id) if 0 < rule_id < 2**63 else None
    if rule is None or rule.user_id != user_id:
        raise NotFound(f"no notification rule {rule_id} for this person", field="rule_id")
    return rule


async def delete_contact_method(session: AsyncSession, actor: Actor, user_id: str, method_id: str) -> None:
    """Remove a contact method and the rules that use it."""
    check_may_manage(actor, user_id)
    method = await _method_of(session, user_id, method_id, field="contact_method_id")
    await session.execute(delete(NotificationRule).where(NotificationRule.contact_method_id == method.id))
    await session.delete(method)
    await session.flush()


async def add_rule(
    session: AsyncSession,
    actor: Actor,
    user_id: str,
    *,
    urgency: str,
    contact_method_id: str,
    delay_minutes: int,
) -> NotificationRule:
    """Notify `contact_method_id` (one of the same user's) `delay_minutes` (0..60) into a page of `urgency`."""
    check_may_manage(actor, user_id)
    await get_user(session, user_id)
    level = parse_urgency(urgency)
    if isinstance(delay_minutes, bool) or not isinstance(delay_minutes, int) or not 0 <= delay_minutes <= 60:
        raise InvalidInput(
            f"the delay must be a whole number of minutes from 0 to {MAX_DELAY_MINUTES}", field="delay_minutes"
        )
    method = await _method_of(session, user_id, contact_method_id, field="contact_method_id")
    rules = await notification_rules(session, user_id)
    if len(rules) >= MAX_RULES:
        raise InvalidInput(f"a person may have at most {MAX_RULES} notification rules", field="urgency")
    for rule in rules:
        if rule.urgency == level and rule.contact_method_id == method.id and rule.delay_minutes == delay_minutes:
            raise Conflict("this rule already exists", field="delay_minutes")
    rule = NotificationRule(user_id=user_id, urgency=level, contact_method_id=method.id, delay_minutes=delay_minutes)
    session.add(rule)
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, actor: Actor, user_id: str, rule_id: int) -> None:
    """Remove one of a user's notification rules."""
    check_may_manage(actor, user_id)
    rule = await get_rule(session, user_id, rule_id)
    await session.delete(rule)
    await session.flush()
