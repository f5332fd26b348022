"""Escalation policies and the severity paging config.

A policy is an ordered list of levels; each level notifies its targets (users, and whoever is on
call on schedules), and when nobody acknowledges within ``timeout_minutes`` the next level is
notified. After the last level the policy starts again from the first, ``repeats`` more times.

The severity paging config says, for each severity, which policies a declared incident pages
and which incident role (if any) each one fills.

Anyone with ``read`` sees both; only an admin changes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope, User
from crisisdesk.auth.service import Actor
from crisisdesk.incident.models import IncidentRole, Severity
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall.models import EscalationPolicy, OnCallSchedule, SeverityPaging

MAX_NAME = 200
MAX_DESCRIPTION = 5_000
MAX_LEVELS = 20
MAX_TARGETS = 20
MAX_REPEATS = 9
MAX_TIMEOUT_MINUTES = 1440
TARGET_TYPES = ("user", "schedule")


@dataclass(frozen=True)
class PagingEntry:
    """One line of the severity paging config: on `severity`, page `policy_id`, filling `role`."""

    severity: str
    policy_id: str
    role: str | None = None


def _clean_name(name: str) -> str:
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise InvalidInput("a name is required", field="name")
    if "\x00" in name or len(name) > MAX_NAME:
        raise InvalidInput(f"the name must be at most {MAX_NAME} characters, without NUL", field="name")
    return name


def _clean_description(description: str) -> str:
    description = (description or "").strip()
    if "\x00" in description or len(description) > MAX_DESCRIPTION:
        message = f"the description must be at most {MAX_DESCRIPTION} characters, without NUL"
        raise InvalidInput(message, field="description")
    return description


def _whole(value: object, low: int, high: int, *, field: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{what} must be a whole number from {low} to {high}", field=field)
    return value


async def check_levels(session: AsyncSession, levels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The levels as stored, each target checked to exist; errors name ``levels.2.targets`` and so on."""
    if not isinstance(levels, Sequence) or isinstance(levels, str) or not levels:
        raise InvalidInput("a policy needs at least one level", field="levels")
    if len(levels) > MAX_LEVELS:
        raise InvalidInput(f"a policy may have at most {MAX_LEVELS} levels", field="levels")
    result: list[dict[str, Any]] = []
    for i, level in enumerate(levels):
        prefix = f"levels.{i}"
        if not isinstance(level, Mapping):
            raise InvalidInput("a level has timeout_minutes and targets", field=prefix)
        timeout = _whole(
            level.get("timeout_minutes"),
            1,
            MAX_TIMEOUT_MINUTES,
            field=f"{prefix}.timeout_minutes",
            what="the timeout in minutes",
        )
        targets = level.get("targets")
        if not isinstance(targets, Sequence) or isinstance(targets, str) or not targets:
            raise InvalidInput("a level needs at least one user or schedule to notify", field=f"{prefix}.targets")
        if len(targets) > MAX_TARGETS:
            raise InvalidInput(f"a level may have at most {MAX_TARGETS} targets", field=f"{prefix}.targets")
        checked: list[dict[str, str]] = []
        for j, target in enumerate(targets):
            where = f"{prefix}.targets.{j}"
            if not isinstance(target, Mapping):
                raise InvalidInput('a target is {"type": "user" or "schedule", "id": …}', field=where)
            kind, target_id = target.get("type"), target.get("id")
            if kind not in TARGET_TYPES:
                raise InvalidInput("a target's type must be user or schedule", field=f"{where}.type")
            if not isinstance(target_id, str) or not target_id or "\x00" in target_id or len(target_id) > 64:
                raise InvalidInput(f"no {kind} with that id", field=f"{where}.id")
            if kind == "user":
                user = await session.get(User, target_id)
                if user is None:
                    raise InvalidInput(f"no user with id {target_id!r}", field=f"{where}.id")
                if not user.is_active:
                    raise InvalidInput(f"{user.name} is deactivated and cannot be paged", field=f"{where}.id")
            elif await session.get(OnCallSchedule, target_id) is None:
                raise InvalidInput(f"no schedule with id {target_id!r}", field=f"{where}.id")
            entry = {"type": str(kind), "id": target_id}
            if entry in checked:
                raise InvalidInput(f"this {kind} is already a target of the level", field=f"{where}.id")
            checked.append(entry)
        result.append({"timeout_minutes": timeout, "targets": checked})
    return result


async def get_policy(session: AsyncSession, policy_id: str) -> EscalationPolicy:
    """The escalation policy with id `policy_id`, or NotFound."""
    if not isinstance(policy_id, str) or "\x00" in policy_id or len(policy_id) > 64:
        raise NotFound("no escalation policy with that id", field="policy_id")
    policy = await session.get(EscalationPolicy, policy_id)
    if policy is None:
        raise NotFound(f"no escalation policy with id {policy_id!r}", field="policy_id")
    return policy


async def list_policies(session: AsyncSession) -> list[EscalationPolicy]:
    """Every escalation policy, by name."""
    return list((await session.scalars(select(EscalationPolicy).order_by(EscalationPolicy.name))).all())


async def _check_unique_name(session: AsyncSession, name: str, *, exclude: str | None = None) -> None:
    for other in await list_policies(session):
        if other.id != exclude and other.name.casefold() == name.casefold():
            raise Conflict(f"an escalation policy called {other.name!r} already exists", field="name")


async def create_policy(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    levels: Sequence[Mapping[str, Any]],
    description: str = "",
    repeats: int = 0,
) -> EscalationPolicy:
    """Add an escalation policy (admin)."""
    actor.require(Scope.admin)
    name = _clean_name(name)
    description = _clean_description(description)
    repeats = _whole(repeats, 0, MAX_REPEATS, field="repeats", what="repeats")
    stored = await check_levels(session, levels)
    await _check_unique_name(session, name)
    now = utcnow()
    policy = EscalationPolicy(
        name=name, description=description, levels=stored, repeats=repeats, created_at=now, updated_at=now
    )
    session.add(policy)
    await session.flush()
    return policy


async def update_policy(
    session: AsyncSession,
    actor: Actor,
    policy_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    levels: Sequence[Mapping[str, Any]] | None = None,
    repeats: int | None = None,
) -> EscalationPolicy:
    """Change an escalation policy (admin); pages already started keep the levels they froze."""
    actor.require(Scope.admin)
    policy = await get_policy(session, policy_id)
    new_name = _clean_name(name) if name is not None else None
    new_description = _clean_description(description) if description is not None else None
    new_repeats = _whole(repeats, 0, MAX_REPEATS, field="repeats", what="repeats") if repeats is not None else None
    stored = await check_levels(session, levels) if levels is not None else None
    if new_name is not None:
        await _check_unique_name(session, new_name, exclude=policy.id)
        policy.name = new_name
    if new_description is not None:
        policy.description = new_description
    if new_repeats is not None:
        policy.repeats = new_repeats
    if stored is not None:
        policy.levels = stored
    policy.updated_at = utcnow()
    await session.flush()
    return policy


async def delete_policy(session: AsyncSession, actor: Actor, policy_id: str) -> None:
    """Remove an escalation policy and its lines in the severity paging config (admin)."""
    actor.require(Scope.admin)
    policy = await get_policy(session, policy_id)
    name = policy.name
    await session.execute(delete(SeverityPaging).where(SeverityPaging.escalation_policy_id == policy.id))
    await session.delete(policy)
    try:
        await session.flush()
    except IntegrityError:
        # The alert routing rules that page it hold it (a RESTRICT foreign key); the request's
        # transaction is rolled back with this refusal.
        raise Conflict(
            f"alert routing rules page “{name}”: point them at another policy first",
            field="escalation_policy_id",
        ) from None


async def policies_targeting_schedule(session: AsyncSession, schedule_id: str) -> list[EscalationPolicy]:
    """The policies with a level that notifies whoever is on call on `schedule_id`."""
    return [
        policy
        for policy in await list_policies(session)
        if any(
            t.get("type") == "schedule" and t.get("id") == schedule_id for lv in policy.levels for t in lv["targets"]
        )
    ]


# ---------------------------------------------------------------- severity paging


async def severity_paging(session: AsyncSession) -> list[SeverityPaging]:
    """The severity paging config, by severity."""
    rows = (await session.scalars(select(SeverityPaging).order_by(SeverityPaging.severity, SeverityPaging.id))).all()
    return list(rows)


async def paging_for(session: AsyncSession, severity: str) -> list[tuple[EscalationPolicy, str | None]]:
    """The policies to page when an incident of `severity` is declared, each with the role it fills."""
    query = (
        select(EscalationPolicy, SeverityPaging.role)
        .join(SeverityPaging, SeverityPaging.escalation_policy_id == EscalationPolicy.id)
        .where(SeverityPaging.severity == severity)
        .order_by(SeverityPaging.id)
    )
    return [(policy, role) for policy, role in (await session.execute(query)).all()]


async def set_severity_paging(
    session: AsyncSession, actor: Actor, entries: Sequence[PagingEntry]
) -> list[SeverityPaging]:
    """Replace the whole severity paging config (admin); errors name ``entries.3.role`` and so on."""
    actor.require(Scope.admin)
    seen: set[tuple[str, str]] = set()
    roles: set[tuple[str, str]] = set()
    rows: list[SeverityPaging] = []
    for i, entry in enumerate(entries):
        prefix = f"entries.{i}"
        if entry.severity not in {s.value for s in Severity}:
            allowed = ", ".join(s.value for s in Severity)
            raise InvalidInput(
                f"{entry.severity!r} is not a severity; use one of: {allowed}", field=f"{prefix}.severity"
            )
        if not isinstance(entry.policy_id, str) or "\x00" in entry.policy_id or len(entry.policy_id) > 64:
            raise InvalidInput("no escalation policy with that id", field=f"{prefix}.policy_id")
        if await session.get(EscalationPolicy, entry.policy_id) is None:
            raise InvalidInput(f"no escalation policy with id {entry.policy_id!r}", field=f"{prefix}.policy_id")
        if (entry.severity, entry.policy_id) in seen:
            raise InvalidInput(f"this policy is already paged on {entry.severity}", field=f"{prefix}.policy_id")
        seen.add((entry.severity, entry.policy_id))
        role = entry.role or None
        if role is not None:
            if role not in {r.value for r in IncidentRole}:
                allowed = ", ".join(r.value for r in IncidentRole)
                raise InvalidInput(f"{role!r} is not an incident role; use one of: {allowed}", field=f"{prefix}.role")
            if (entry.severity, role) in roles:
                raise InvalidInput(f"another policy already fills {role} on {entry.severity}", field=f"{prefix}.role")
            roles.add((entry.severity, role))
        rows.append(SeverityPaging(severity=entry.severity, escalation_policy_id=entry.policy_id, role=role))
    await session.execute(delete(SeverityPaging))
    session.add_all(rows)
    await session.flush()
    return await severity_paging(session)
