"""Reads over :mod:`crisisdesk.customer.impact` that outreach and the console need and that
impact does not offer publicly (yet): the tiers in use, and a consistent set of affected accounts.

Outreach writes to every affected account, a page at a time, inside one long transaction. Paged
with OFFSET, each page is a new statement that (on PostgreSQL, under READ COMMITTED) sees every
import committed meanwhile: one account more above the cursor and an account is read twice (the
outreach then fails on its unique record), one fewer and an account is never written to. So the
affected accounts' ids are read once, in one statement, in the order outreach sends (largest ARR
first, then by name), and each page is loaded by id from that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.customer import impact
from crisisdesk.customer.impact import AccountImpact, AffectedComponent
from crisisdesk.customer.models import Account
from crisisdesk.incident import service as incidents


async def tiers_in_use(session: AsyncSession) -> list[str]:
    """Every tier an account has, from a walk of the tier index: no scan of the accounts."""
    return await impact._tiers_in_use(session)


@dataclass(frozen=True)
class Snapshot:
    """The accounts an incident affected when one statement looked, and what affected them."""

    incident_id: str
    components: list[AffectedComponent]
    window_end: datetime | None
    account_ids: list[str]  # largest ARR first, then by name and id


async def snapshot(session: AsyncSession, incident_id: str, *, tiers: Sequence[str] | None = None) -> Snapshot:
    """The affected accounts' ids (of these tiers, as stored; all when None), read in one statement."""
    incident = await incidents.incident_row(session, incident_id)
    components = await impact._components_of(session, incident_id)
    ids: list[str] = []
    if components and (tiers is None or tiers):
        statement = impact._accounts_statement(session, components).with_only_columns(Account.id)
        if tiers is not None:
            statement = statement.where(Account.tier.in_(list(tiers)))
        ids = list(await session.scalars(statement))
    return Snapshot(incident.id, components, impact.window_end_of(incident), ids)


async def page(session: AsyncSession, found: Snapshot, account_ids: Sequence[str]) -> list[AccountImpact]:
    """These accounts of the snapshot with their impact, in the snapshot's order.

    An account deleted since, or no longer using an affected component, is left out.
    """
    if not account_ids:
        return []
    statement = select(*impact._ACCOUNT_COLUMNS).where(
        Account.id.in_(list(account_ids)), impact._affected(session, found.components)
    )
    rows = {row.id: row for row in await session.execute(statement)}
    ordered = [rows[account_id] for account_id in account_ids if account_id in rows]
    return await impact._impacts(session, found.components, ordered, found.window_end)
