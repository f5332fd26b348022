"""Impact rules: the severity an incident's customer impact suggests, and why.

Rules are tried by position; the first enabled rule that holds gives the suggestion. A rule
looks at the affected accounts of its ``tiers`` (all tiers when empty) on components at
``min_status`` or worse (any status when unset), and holds when there are at least
``account_count`` of them (one when unset) and, when ``arr_percent`` is set, their ARR is at
least that share of the ARR of every account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog.models import SEVERITY_ORDER, ComponentStatus
from crisisdesk.catalog.service import parse_status
from crisisdesk.customer.models import ImpactRule
from crisisdesk.incident.policy import parse_severity
from crisisdesk.kit.errors import InvalidInput, NotFound

_UNSET: Any = object()
_STATUS_PHRASE = {
    ComponentStatus.major_outage: "a major outage",
    ComponentStatus.partial_outage: "a partial outage",
    ComponentStatus.degraded_performance: "degraded performance",
    ComponentStatus.under_maintenance: "maintenance",
    ComponentStatus.operational: "no outage",
}


@dataclass(frozen=True)
class Facts:
    """What one rule sees: the affected accounts in its scope, and the components that put them there."""

    account_count: int
    arr_cents: int
    total_arr_cents: int
    names: list[str]  # the largest accounts in scope, at most three
    component_names: list[str]
    statuses: list[str]


# ------------------------------------------------------------------------------ checks


def check_name(value: str) -> str:
    name = (value or "").strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("the name must be 1 to 200 characters", field="name")
    if any(ord(ch) < 32 for ch in name):
        raise InvalidInput("the name must not contain control characters", field="name")
    return name


def check_tiers(values: Sequence[str]) -> list[str]:
    found: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            raise InvalidInput("each tier must be text", field="tiers")
        tier = raw.strip()
        if not tier:
            continue
        if len(tier) > 100 or any(ord(ch) < 32 for ch in tier):
            raise InvalidInput(f"{tier[:40]!r} is not a tier name (at most 100 characters)", field="tiers")
        if tier.lower() not in {t.lower() for t in found}:
            found.append(tier)
    return found


def check_min_status(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return parse_status(value, field="min_status").value


def check_arr_percent(value: float | None) -> float | None:
    if value is None:
        return None
    if value != value or not 0 < value <= 100:
        raise InvalidInput("the share of ARR must be a number above 0 and at most 100", field="arr_percent")
    return float(value)


def check_account_count(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000_000:
        raise InvalidInput("the number of accounts must be a whole number of at least 1", field="account_count")
    return value


def check_position(position: int) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= 1_000_000:
        raise InvalidInput("the position must be a whole number from 0 to 1000000", field="position")
    return position


def _check_conditions(rule: ImpactRule) -> None:
    if not (rule.tiers or rule.min_status or rule.arr_percent is not None or rule.account_count is not None):
        raise InvalidInput(
            "a rule needs at least one condition: tiers, min_status, arr_percent or account_count", field="tiers"
        )


# ------------------------------------------------------------------------------ storage


async def list_rules(session: AsyncSession) -> list[ImpactRule]:
    """Every rule in the order they are tried."""
    return list(await session.scalars(select(ImpactRule).order_by(ImpactRule.position, ImpactRule.created_at)))


async def enabled_rules(session: AsyncSession) -> list[ImpactRule]:
    return [r for r in await list_rules(session) if r.enabled]


async def get_rule(session: AsyncSession, rule_id: str) -> ImpactRule:
    rule = await session.get(ImpactRule, rule_id) if len(rule_id) <= 24 else None
    if rule is None:
        raise NotFound(f"no impact rule with id {rule_id!r}", field="rule_id")
    return rule


async def _make_room(session: AsyncSession, position: int, rule_id: str | None) -> int:
    """Rules at ``position`` and after move one down, so a rule put there is tried before them."""
    statement = update(ImpactRule).where(ImpactRule.position >= position).values(position=ImpactRule.position + 1)
    if rule_id is not None:
        statement = statement.where(ImpactRule.id != rule_id)
    await session.execute(statement)
    return position


async def _next_position(session: AsyncSession) -> int:
    highest = await session.scalar(select(func.max(ImpactRule.position)))
    return 0 if highest is None else int(highest) + 1


async def create_rule(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    severity: str,
    tiers: Sequence[str] = (),
    min_status: str | None = None,
    arr_percent: float | None = None,
    account_count: int | None = None,
    enabled: bool = True,
    position: int | None = None,
) -> ImpactRule:
    """Add a rule; without a position it is tried last (admins only)."""
    actor.require(Scope.admin)
    rule = ImpactRule(
        name=check_name(name),
        severity=parse_severity(severity).value,
        tiers=check_tiers(tiers),
        min_status=check_min_status(min_status),
        arr_percent=check_arr_percent(arr_percent),
        account_count=check_account_count(account_count),
        enabled=enabled,
    )
    _check_conditions(rule)
    rule.position = (
        await _make_room(session, check_position(position), None)
        if position is not None
        else await _next_position(session)
    )
    session.add(rule)
    await session.flush()
    return rule


async def update_rule(
    session: AsyncSession,
    actor: Actor,
    rule: ImpactRule,
    *,
    name: str | None = None,
    severity: str | None = None,
    tiers: Sequence[str] | None = None,
    min_status: str | None = _UNSET,
    arr_percent: float | None = _UNSET,
    account_count: int | None = _UNSET,
    enabled: bool | None = None,
    position: int | None = None,
) -> ImpactRule:
    """Change a rule; omitted fields stay (admins only)."""
    actor.require(Scope.admin)
    if name is not None:
        rule.name = check_name(name)
    if severity is not None:
        rule.severity = parse_severity(severity).value
    if tiers is not None:
        rule.tiers = check_tiers(tiers)
    if min_status is not _UNSET:
        rule.min_status = check_min_status(min_status)
    if arr_percent is not _UNSET:
        rule.arr_percent = check_arr_percent(arr_percent)
    if account_count is not _UNSET:
        rule.account_count = check_account_count(account_count)
    if enabled is not None:
        rule.enabled = enabled
    _check_conditions(rule)
    if position is not None:
        rule.position = await _make_room(session, check_position(position), rule.id)
    await session.flush()
    return rule


async def move_rule(session: AsyncSession, actor: Actor, rule: ImpactRule, *, up: bool) -> ImpactRule:
    """Swap the rule with the one tried just before it (``up``) or just after it (admins only)."""
    actor.require(Scope.admin)
    ordered = await list_rules(session)
    for i, r in enumerate(ordered):
        r.position = i  # renumbered, so equal positions never make a swap a no-op
    at = next(i for i, r in enumerate(ordered) if r.id == rule.id)
    other = at - 1 if up else at + 1
    if 0 <= other < len(ordered):
        ordered[at].position, ordered[other].position = other, at
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, actor: Actor, rule: ImpactRule) -> None:
    """Delete a rule (admins only)."""
    actor.require(Scope.admin)
    await session.delete(rule)
    await session.flush()


# ------------------------------------------------------------------------------ evaluation


def share(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def format_percent(value: float) -> str:
    text = f"{value:.1f}"
    if text == "0.0" and value > 0:
        text = f"{value:.2g}"
    return text.removesuffix(".0") if text.endswith(".0") else text


def _listed(names: Sequence[str], *, total: int, more: str = "…") -> str:
    if total > len(names):
        return ", ".join([*names, more])
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _status_phrase(rule: ImpactRule, statuses: Sequence[str]) -> str:
    seen = {ComponentStatus(s) for s in statuses if s in ComponentStatus.__members__}
    if len(seen) == 1:
        return _STATUS_PHRASE[seen.pop()]
    worst = min(seen, key=SEVERITY_ORDER.index) if seen else ComponentStatus(rule.min_status or "major_outage")
    floor = ComponentStatus(rule.min_status) if rule.min_status else worst
    return f"{_STATUS_PHRASE[floor]} or worse"


def _components_phrase(names: Sequence[str]) -> str:
    if len(names) > 3:
        return ", ".join(names[:2]) + f" and {len(names) - 2} more"
    return _listed(list(names), total=len(names))


def _accounts_phrase(rule: ImpactRule, facts: Facts) -> str:
    noun = "account" if facts.account_count == 1 else "accounts"
    tiers = " or ".join(rule.tiers)
    text = f"{facts.account_count} {tiers + ' ' if tiers else ''}{noun}"
    if facts.names:
        text += f" ({_listed(facts.names, total=facts.account_count)})"
    if rule.min_status:
        text += f" on {_status_phrase(rule, facts.statuses)} of {_components_phrase(facts.component_names)}"
    else:
        text += " affected"
    if rule.account_count is not None and rule.account_count > 1:
        text += f" (≥ {rule.account_count})"
    return text


def holds(rule: ImpactRule, facts: Facts) -> str | None:
    """The reason the rule holds, as a sentence naming the facts; None when it does not hold."""
    if facts.account_count < (rule.account_count or 1):
        return None
    percent = share(facts.arr_cents, facts.total_arr_cents)
    if rule.arr_percent is not None and percent < rule.arr_percent:
        return None
    parts = []
    if rule.tiers or rule.min_status or rule.account_count is not None:
        parts.append(_accounts_phrase(rule, facts))
    if rule.arr_percent is not None:
        if rule.tiers or rule.min_status:
            parts.append(f"they hold {format_percent(percent)}% of ARR (≥ {rule.arr_percent:g}%)")
        else:
            parts.append(f"{format_percent(percent)}% of ARR affected (≥ {rule.arr_percent:g}%)")
    return "; ".join(parts)
