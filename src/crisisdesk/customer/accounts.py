"""Accounts: checked values, create, change, upsert by external id, list, delete.

The checks here are shared by the API and the CSV import: each raises
:class:`~crisisdesk.kit.errors.InvalidInput` naming the field it refuses.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog.models import Component
from crisisdesk.customer.models import Account, AccountComponent, AccountContact, AccountDomain, SlaContract
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow

MAX_ARR_CENTS = 10**17  # a hundred million million in currency units; more is a typo
_REGION = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}\Z")
_FORBIDDEN_IN_CONTACT = set("<>;()")
_DOMAIN = re.compile(r"(?=.{4,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# Anyone can open an address at these: allow-listing one would let strangers into the account's page.
PUBLIC_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
        "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "gmx.com",
        "gmx.de", "gmx.net", "web.de", "mail.com", "mail.ru", "yandex.ru", "yandex.com", "qq.com", "163.com",
        "zoho.com", "fastmail.com", "hey.com", "tutanota.com",
    }
)  # fmt: skip


@dataclass
class Contact:
    name: str
    email: str
    role: str | None = None


@dataclass
class Sla:
    uptime_target: float
    credit_bands: list[dict[str, float]] = field(default_factory=list)
    cap_percent: float | None = None
    claim_window_days: int | None = None
    downtime_rule: str | None = None


@dataclass
class AccountData:
    """An account's values, already checked."""

    external_id: str
    name: str
    tier: str | None = None
    arr_cents: int = 0
    regions: list[str] = field(default_factory=list)
    component_ids: list[str] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    csm_owner: str | None = None
    helpdesk_org_id: str | None = None
    sla: Sla | None = None
    # Email domains allowed on the account's private page; None keeps the stored ones (a CSV
    # without the column).
    domains: list[str] | None = None


# ------------------------------------------------------------------------------ checks


def text(value: str | None, field_name: str, *, required: bool = False, max_length: int = 200) -> str | None:
    cleaned = (value or "").strip()
    if not cleaned:
        if required:
            raise InvalidInput("must not be empty", field=field_name)
        return None
    if len(cleaned) > max_length:
        raise InvalidInput(f"must be at most {max_length} characters", field=field_name)
    if any(ord(ch) < 32 for ch in cleaned):
        raise InvalidInput("must not contain control characters", field=field_name)
    return cleaned


def arr_cents(value: str | int | float | Decimal) -> int:
    """ARR in currency units (at most two decimals) as integer cents."""
    try:
        amount = Decimal(str(value).strip().replace(",", "")) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise InvalidInput("must be a non-negative number", field="arr") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput("must be a non-negative number", field="arr")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise InvalidInput("must have at most two decimals", field="arr")
    if cents > MAX_ARR_CENTS:
        raise InvalidInput("is too large", field="arr")
    return int(cents)


def format_arr(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def regions(values: Sequence[str]) -> list[str]:
    found: list[str] = []
    for raw in values:
        code = raw.strip().lower()
        if not code:
            continue
        if not _REGION.match(code):
            raise InvalidInput(
                f"{raw!r} is not a region code (letters, digits, '.', '_', '-'; at most 40)", field="regions"
            )
        if code not in found:
            found.append(code)
    return found


def email(value: str, field_name: str) -> str:
    candidate = value.strip()
    try:
        return validate_email(candidate, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInput(f"{candidate!r} is not a valid email address: {exc}", field=field_name) from None


def contact(name: str, address: str, role: str | None) -> Contact:
    checked_name = text(name, "contacts", required=True, max_length=300) or ""
    checked_role = text(role, "contacts", max_length=100)
    for part in (checked_name, checked_role or ""):
        if _FORBIDDEN_IN_CONTACT & set(part):
            raise InvalidInput("a contact's name and role must not contain < > ; ( )", field="contacts")
    return Contact(checked_name, email(address, "contacts"), checked_role)


def contacts(values: Sequence[Contact]) -> list[Contact]:
    seen: set[str] = set()
    for c in values:
        if c.email in seen:
            raise InvalidInput(f"{c.email} is listed twice", field="contacts")
        seen.add(c.email)
    return list(values)


def domain(value: str) -> str:
    """An email domain as stored: lower-case ASCII (IDNA), no "@", not a public mail provider."""
    raw = value.strip()
    name = raw.lower().removeprefix("@").rstrip(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidInput(f"{raw!r} is not a domain name", field="domains") from None
    if not _DOMAIN.match(name):
        raise InvalidInput(f"{raw!r} is not a domain name like example.com", field="domains")
    if name in PUBLIC_MAIL_DOMAINS:
        raise InvalidInput(f"{name} is a public mail provider: anyone can have an address there", field="domains")
    return name


def domains(values: Sequence[str]) -> list[str]:
    """Checked domains, in the order given, each once."""
    return list(dict.fromkeys(domain(v) for v in values if v.strip()))


def percent(value: float, field_name: str, *, above_zero: bool = False) -> float:
    if value != value or value < 0 or value > 100 or (above_zero and value == 0):
        bound = "above 0" if above_zero else "at least 0"
        raise InvalidInput(f"must be a number {bound} and at most 100", field=field_name)
    return float(value)


def credit_bands(bands: Sequence[tuple[float, float]]) -> list[dict[str, float]]:
    """Bands ``(below, credit_percent)``, sorted from the highest threshold; thresholds unique."""
    checked = [
        (percent(below, "credit_bands", above_zero=True), percent(credit, "credit_bands", above_zero=True))
        for below, credit in bands
    ]
    checked.sort(key=lambda band: -band[0])
    for (a, credit_a), (b, credit_b) in itertools.pairwise(checked):
        if a == b:
            raise InvalidInput(f"the threshold {a:g} appears twice", field="credit_bands")
        if credit_b < credit_a:
            raise InvalidInput("a lower uptime must not earn a smaller credit", field="credit_bands")
    return [{"below": below, "credit_percent": credit} for below, credit in checked]


def claim_window(value: int) -> int:
    if value < 0 or value > 3650:
        raise InvalidInput("must be a whole number of days from 0 to 3650", field="claim_window_days")
    return value


def format_number(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------------------ storage


def _apply(account: Account, data: AccountData) -> None:
    account.external_id = data.external_id
    account.name = data.name
    account.tier = data.tier
    account.arr_cents = data.arr_cents
    account.regions = list(data.regions)
    account.csm_owner = data.csm_owner
    account.helpdesk_org_id = data.helpdesk_org_id
    account.updated_at = utcnow()
    wanted = list(dict.fromkeys(data.component_ids))
    kept = [link for link in account.components if link.component_id in wanted]
    have = {link.component_id for link in kept}
    account.components = kept + [AccountComponent(component_id=c) for c in wanted if c not in have]
    # Contacts are matched by email and changed in place: a replaced list never inserts an address
    # before the old row holding it is gone.
    existing = {c.email: c for c in account.contacts}
    contacts_now: list[AccountContact] = []
    for i, c in enumerate(data.contacts):
        row = existing.get(c.email) or AccountContact(email=c.email)
        row.position, row.name, row.role = i, c.name, c.role
        contacts_now.append(row)
    account.contacts = contacts_now
    if data.domains is not None:
        kept_domains = [row for row in account.domains if row.domain in data.domains]
        held = {row.domain for row in kept_domains}
        account.domains = kept_domains + [AccountDomain(domain=d) for d in data.domains if d not in held]
    if data.sla is None:
        account.sla = None
    else:
        sla = account.sla or SlaContract()
        sla.uptime_target = data.sla.uptime_target
        sla.credit_bands = list(data.sla.credit_bands)
        sla.cap_percent = data.sla.cap_percent
        sla.claim_window_days = data.sla.claim_window_days
        sla.downtime_rule = data.sla.downtime_rule
        account.sla = sla


async def check_components(session: AsyncSession, ids: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    rows = (await session.execute(select(Component.id, Component.is_group).where(Component.id.in_(wanted)))).all()
    known = {row.id for row in rows if not row.is_group}
    for ref in wanted:
        if ref not in known:
            raise InvalidInput(f"no component {ref!r}", field="components")
    return wanted


async def domain_owners(session: AsyncSession, names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """For each of these domains held by an account: ``domain -> (account id, external id)``."""
    owners: dict[str, tuple[str, str]] = {}
    wanted = list(dict.fromkeys(names))
    for start in range(0, len(wanted), 500):
        rows = await session.execute(
            select(AccountDomain.domain, Account.id, Account.external_id)
            .join(Account, Account.id == AccountDomain.account_id)
            .where(AccountDomain.domain.in_(wanted[start : start + 500]))
        )
        owners.update({name: (account_id, external_id) for name, account_id, external_id in rows.all()})
    return owners


async def check_domains(session: AsyncSession, names: Sequence[str], *, account_id: str | None) -> list[str]:
    """The domains, refused (409) when another account holds one: a domain opens one account's page."""
    for name, (owner_id, external_id) in (await domain_owners(session, names)).items():
        if owner_id != account_id:
            raise Conflict(f"{name} is allowed for the account {external_id!r}; remove it there first", field="domains")
    return list(names)


async def by_external_id(session: AsyncSession, external_id: str) -> Account | None:
    return await session.scalar(select(Account).where(Account.external_id == external_id))


async def create(session: AsyncSession, data: AccountData) -> Account:
    if await by_external_id(session, data.external_id) is not None:
        raise Conflict(f"an account with external id {data.external_id!r} exists", field="external_id")
    account = Account(components=[], contacts=[], sla=None, domains=[])
    _apply(account, data)
    session.add(account)
    await session.flush()
    return account


async def replace(session: AsyncSession, account: Account, data: AccountData) -> Account:
    if data.external_id != account.external_id:
        other = await by_external_id(session, data.external_id)
        if other is not None and other.id != account.id:
            raise Conflict(f"an account with external id {data.external_id!r} exists", field="external_id")
    _apply(account, data)
    await session.flush()
    return account


async def upsert_many(session: AsyncSession, batch: Sequence[AccountData]) -> int:
    """Create each account or replace the one with the same external id; returns how many were created.

    The batch's existing accounts are loaded with one query, and written with one flush.
    """
    existing = {
        a.external_id: a
        for a in (
            await session.scalars(select(Account).where(Account.external_id.in_([d.external_id for d in batch])))
        ).all()
    }
    created = 0
    for data in batch:
        account = existing.get(data.external_id)
        if account is None:
            account = Account(components=[], contacts=[], sla=None, domains=[])
            session.add(account)
            existing[data.external_id] = account
            created += 1
        elif data.sla is not None and data.sla.downtime_rule is None and account.sla is not None:
            # The CSV carries no downtime rule: an import keeps the one set through the API.
            data.sla.downtime_rule = account.sla.downtime_rule
        _apply(account, data)
    await session.flush()
    return created


def data_of(account: Account) -> AccountData:
    sla = account.sla
    return AccountData(
        external_id=account.external_id,
        name=account.name,
        tier=account.tier,
        arr_cents=account.arr_cents,
        regions=list(account.regions),
        component_ids=[link.component_id for link in account.components],
        contacts=[Contact(c.name, c.email, c.role) for c in account.contacts],
        csm_owner=account.csm_owner,
        helpdesk_org_id=account.helpdesk_org_id,
        domains=[row.domain for row in account.domains],
        sla=None
        if sla is None
        else Sla(
            uptime_target=sla.uptime_target,
            credit_bands=[dict(b) for b in sla.credit_bands],
            cap_percent=sla.cap_percent,
            claim_window_days=sla.claim_window_days,
            downtime_rule=sla.downtime_rule,
        ),
    )


async def get(session: AsyncSession, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound("no such account", field="account_id")
    return account


async def delete(session: AsyncSession, account_id: str) -> None:
    await session.delete(await get(session, account_id))
    await session.flush()


def _filtered(statement: Any, tier: str | None, component_id: str | None) -> Any:
    if tier is not None:
        statement = statement.where(Account.tier == tier)
    if component_id is not None:
        statement = statement.where(
            Account.id.in_(select(AccountComponent.account_id).where(AccountComponent.component_id == component_id))
        )
    return statement


async def list_accounts(
    session: AsyncSession, *, tier: str | None = None, component_id: str | None = None, limit: int = 50, offset: int = 0
) -> Sequence[Account]:
    statement = _filtered(select(Account), tier, component_id).order_by(Account.name, Account.id)
    return (await session.scalars(statement.limit(limit).offset(offset))).all()


async def count(session: AsyncSession, *, tier: str | None = None, component_id: str | None = None) -> int:
    return int(await session.scalar(_filtered(select(func.count(Account.id)), tier, component_id)) or 0)
