"""Accounts, the components they use, their contacts and their SLA contract.

ARR is kept in integer cents (``arr_cents``); the CSV and the API speak in currency units.

Customer impact reads each link's copy of its account's tier, ARR and regions, and the ARR of
every account from ``account_total``, so that it never scans ``account``. A flush keeps both
right (``_keep_copies`` below), in the same transaction as the account writes; anything that
writes accounts in bare SQL (the benchmark's bulk load) must fill them itself.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    event,
    inspect,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship
from sqlalchemy.orm.attributes import set_committed_value

from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow

# A link's copy of its account's regions stays short enough for an index entry (PostgreSQL
# refuses one past about 2,700 bytes); a longer list (in bytes) is not copied.
REGION_CODES_MAX = 1000
TOTAL_ID = 1


class Account(Base):
    __tablename__ = "account"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    # active_history: a flush needs the value replaced, for the links' copies and the total.
    tier: Mapped[str | None] = mapped_column(String(100), index=True, active_history=True)
    arr_cents: Mapped[int] = mapped_column(BigInteger, default=0, active_history=True)
    regions: Mapped[list[str]] = mapped_column(JSON, default=list, active_history=True)
    csm_owner: Mapped[str | None] = mapped_column(String(320))
    helpdesk_org_id: Mapped[str | None] = mapped_column(String(200), index=True)  # a ticket finds its account
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    components: Mapped[list[AccountComponent]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AccountComponent.component_id"
    )
    contacts: Mapped[list[AccountContact]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AccountContact.position"
    )
    sla: Mapped[SlaContract | None] = relationship(cascade="all, delete-orphan", lazy="selectin")
    domains: Mapped[list[AccountDomain]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AccountDomain.domain"
    )


class AccountComponent(Base):
    """An account uses a component; with copies of the account's tier, ARR and regions.

    The index holds every column impact reads: an outage's count and ARR by tier, and its
    largest accounts (in ARR order within a tier), come from the component's index entries alone.
    """

    __tablename__ = "account_component"
    __table_args__ = (
        Index("ix_account_component_impact", "component_id", "tier", "arr_cents", "account_id", "region_codes"),
    )

    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    component_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("component.id", ondelete="CASCADE"), primary_key=True
    )
    tier: Mapped[str | None] = mapped_column(String(100))
    arr_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # The account's region codes as "|eu-west|us-east|", "" when it lists none; None when they
    # cannot be copied (see region_codes) and impact reads the account's own list.
    region_codes: Mapped[str | None] = mapped_column(String(REGION_CODES_MAX))


class AccountTotal(Base):
    """One row (id 1): the ARR of every account, kept as accounts are written."""

    __tablename__ = "account_total"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    arr_cents: Mapped[int] = mapped_column(BigInteger, default=0)


class AccountContact(Base):
    __tablename__ = "account_contact"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(300))
    email: Mapped[str] = mapped_column(String(320), index=True)  # a ticket or a sign-in finds its account
    role: Mapped[str | None] = mapped_column(String(100))


class SlaContract(Base):
    __tablename__ = "sla_contract"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), unique=True)
    uptime_target: Mapped[float] = mapped_column(Numeric(7, 4, asdecimal=False))
    downtime_rule: Mapped[str | None] = mapped_column(Text)
    # [{"below": 99.9, "credit_percent": 10}, ...], highest threshold first.
    credit_bands: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    cap_percent: Mapped[float | None] = mapped_column(Numeric(7, 4, asdecimal=False))
    claim_window_days: Mapped[int | None]


class AccountDomain(Base):
    """An email domain whose people may sign in to the account's private page by magic link."""

    __tablename__ = "account_domain"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)  # lower-case, no "@"
    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PortalLogin(Base):
    """A magic link sent to an allow-listed address; only its SHA-256 is kept, and it works once."""

    __tablename__ = "portal_login"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PortalSession(Base):
    """A signed-in customer on the account's private page (by magic link or a trusted SSO header)."""

    __tablename__ = "portal_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    via: Mapped[str] = mapped_column(String(10))  # "link" or "sso"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AccountNote(Base):
    """A note written for one account, shown on its private page (and only there)."""

    __tablename__ = "account_note"
    __table_args__ = (Index("ix_account_note_account_at", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"))
    incident_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImpactRule(Base):
    """A severity suggestion from impact; the first enabled rule (by position) that holds wins.

    A rule holds when every condition it sets holds: an affected account in one of ``tiers`` on a
    component at ``min_status`` or worse, affected ARR at least ``arr_percent`` of the total, at
    least ``account_count`` affected accounts.
    """

    __tablename__ = "impact_rule"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    severity: Mapped[str] = mapped_column(String(8))
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    min_status: Mapped[str | None] = mapped_column(String(30))
    arr_percent: Mapped[float | None] = mapped_column(Numeric(7, 4, asdecimal=False))
    account_count: Mapped[int | None]
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Outreach(Base):
    """One proactive send of an approved template to the contacts of an incident's affected accounts."""

    __tablename__ = "outreach"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("message_template.id", ondelete="SET NULL"))
    actor_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(Text, default="")
    account_count: Mapped[int] = mapped_column(default=0)
    delivery_count: Mapped[int] = mapped_column(default=0)
    task_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutreachAccount(Base):
    """What one outreach did for one account: the impact it told, the messages, the CSM task."""

    __tablename__ = "outreach_account"
    __table_args__ = (Index("ix_outreach_account_account", "account_id", "outreach_id"),)

    outreach_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("outreach.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    impact: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    contacts: Mapped[list[str]] = mapped_column(JSON, default=list)  # the addresses written to
    delivery_count: Mapped[int] = mapped_column(default=0)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("csm_task.id", ondelete="SET NULL"))


class TaskStatus(StrEnum):
    open = "open"
    done = "done"


class CsmTask(Base):
    """A follow-up for an account's customer success manager, e.g. to call a top-tier account."""

    __tablename__ = "csm_task"
    __table_args__ = (Index("ix_csm_task_assignee_status", "assignee", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    assignee: Mapped[str | None] = mapped_column(String(320))  # the account's csm_owner
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TaskStatus] = mapped_column(String(10), default=TaskStatus.open)
    due_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]


# ------------------------------------------------------------------------------ the copies


def region_codes(regions: list[str] | None) -> str | None:
    """An account's regions as its links keep them: ``"|eu-west|us-east|"``, ``""`` for none.

    None when they cannot be kept (a code holding "|", or too long a list).
    """
    codes = [str(code) for code in regions or ()]
    if not codes:
        return ""
    if any("|" in code for code in codes):
        return None
    joined = "|" + "|".join(codes) + "|"
    return joined if len(joined.encode()) <= REGION_CODES_MAX else None


def _was(state: Any, key: str) -> Any:
    """The attribute's value before this flush (``active_history`` keeps the replaced one)."""
    history = state.attrs[key].history
    return history.deleted[0] if history.deleted else getattr(state.obj(), key)


def _copies(account: Account) -> dict[str, Any]:
    return {
        "tier": account.tier,
        "arr_cents": account.arr_cents or 0,
        "region_codes": region_codes(account.regions),
    }


def _rewrite_links(session: Session, rows: list[dict[str, Any]]) -> None:
    """One UPDATE per account for the links already stored (a statement per link costs twice the import)."""
    table = AccountComponent.metadata.tables[AccountComponent.__tablename__]
    statement = (
        update(table)
        .where(table.c.account_id == bindparam("owner"))
        .values(tier=bindparam("tier"), arr_cents=bindparam("arr_cents"), region_codes=bindparam("region_codes"))
    )
    session.connection().execute(statement, rows)


def _move_total(session: Session, delta: int) -> None:
    """Add to the total ARR: an upsert, so concurrent writers queue on the row's lock and add in turn."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(AccountTotal).values(id=TOTAL_ID, arr_cents=delta)
    statement = statement.on_conflict_do_update(
        index_elements=[AccountTotal.id], set_={"arr_cents": AccountTotal.arr_cents + statement.excluded.arr_cents}
    )
    session.connection().execute(statement)


@event.listens_for(Session, "before_flush")
def _keep_copies(session: Session, _context: Any, _instances: Any) -> None:
    """Copy each written account's tier, ARR and regions onto its links, and move the total."""
    delta = 0
    stored: list[dict[str, Any]] = []
    copied: set[int] = set()
    for obj in (*session.new, *session.dirty):
        if not isinstance(obj, Account):
            continue
        state = inspect(obj)
        changed = state.pending or any(state.attrs[k].history.has_changes() for k in ("tier", "arr_cents", "regions"))
        if not changed and not state.attrs["components"].history.has_changes():
            continue
        values = _copies(obj)
        if state.pending:
            delta += values["arr_cents"]
        elif changed:
            delta += values["arr_cents"] - (_was(state, "arr_cents") or 0)
            stored.append({"owner": obj.id, **values})
        for link in obj.components if "components" in state.dict else ():
            copied.add(id(link))
            if inspect(link).pending:
                for key, value in values.items():
                    setattr(link, key, value)
            elif changed:  # the UPDATE below writes it; the object only learns the values
                for key, value in values.items():
                    set_committed_value(link, key, value)
    for obj in session.new:
        # A link added on its own, not through its account's list.
        if isinstance(obj, AccountComponent) and id(obj) not in copied and obj.account_id is not None:
            account = session.get(Account, obj.account_id)
            if account is not None:
                for key, value in _copies(account).items():
                    setattr(obj, key, value)
    for obj in session.deleted:
        if isinstance(obj, Account):
            delta -= _was(inspect(obj), "arr_cents") or 0
    # The total first, before the flush writes any account row: every writer locks it first.
    if delta:
        _move_total(session, delta)
    if stored:
        _rewrite_links(session, stored)
