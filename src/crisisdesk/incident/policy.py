"""Severity policy: what SEV1–SEV4 mean for cadence, roles and the postmortem."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.incident.models import Impact, IncidentRole, Severity, SeverityPolicy
from crisisdesk.kit.errors import InvalidInput

DEFAULTS: dict[Severity, dict[str, object]] = {
    Severity.SEV1: {
        "label": "Critical",
        "description": "All or most customers cannot use a core service.",
        "impact": Impact.critical,
        "cadence_minutes": 15,
        "required_roles": [
            IncidentRole.incident_commander,
            IncidentRole.communications_lead,
            IncidentRole.technical_lead,
            IncidentRole.support_lead,
        ],
        "postmortem_required": True,
        "free_text_approval": True,
    },
    Severity.SEV2: {
        "label": "Major",
        "description": "A subset of customers or a major feature is affected.",
        "impact": Impact.major,
        "cadence_minutes": 30,
        "required_roles": [IncidentRole.incident_commander, IncidentRole.communications_lead],
        "postmortem_required": True,
        "free_text_approval": True,
    },
    Severity.SEV3: {
        "label": "Minor",
        "description": "Degraded performance or a minor feature unavailable.",
        "impact": Impact.minor,
        "cadence_minutes": 60,
        "required_roles": [IncidentRole.incident_commander],
        "postmortem_required": False,
    },
    Severity.SEV4: {
        "label": "Low",
        "description": "Little or no customer impact; tracked for follow-up.",
        "impact": Impact.none,
        "cadence_minutes": 120,
        "required_roles": [],
        "postmortem_required": False,
    },
}


def parse_severity(value: str, *, field: str = "severity") -> Severity:
    try:
        return Severity(value.upper())
    except (ValueError, AttributeError):
        raise InvalidInput(f"{value!r} is not a severity; use SEV1, SEV2, SEV3 or SEV4", field=field) from None


async def ensure_defaults(session: AsyncSession) -> None:
    """Create the default policy for any severity that has none."""
    have = set(await session.scalars(select(SeverityPolicy.severity)))
    for severity, values in DEFAULTS.items():
        if severity not in have:
            session.add(SeverityPolicy(severity=severity, **values))
    await session.flush()


async def list_policies(session: AsyncSession) -> list[SeverityPolicy]:
    await ensure_defaults(session)
    return list(await session.scalars(select(SeverityPolicy).order_by(SeverityPolicy.severity)))


async def get_policy(session: AsyncSession, severity: Severity) -> SeverityPolicy:
    policy = await session.get(SeverityPolicy, severity)
    if policy is None:
        await ensure_defaults(session)
        policy = await session.get(SeverityPolicy, severity)
    assert policy is not None
    return policy


async def update_policy(
    session: AsyncSession,
    actor: Actor,
    severity: Severity,
    *,
    cadence_minutes: int | None = None,
    required_roles: list[str] | None = None,
    postmortem_required: bool | None = None,
    description: str | None = None,
    free_text_approval: bool | None = None,
) -> SeverityPolicy:
    """Change a severity's policy (admins only); running incidents keep their promises."""
    actor.require(Scope.admin)
    policy = await get_policy(session, severity)
    if cadence_minutes is not None:
        if not 1 <= cadence_minutes <= 24 * 60:
            raise InvalidInput("cadence_minutes must be between 1 and 1440", field="cadence_minutes")
        policy.cadence_minutes = cadence_minutes
    if required_roles is not None:
        roles = []
        for role in required_roles:
            try:
                roles.append(IncidentRole(role).value)
            except ValueError:
                allowed = ", ".join(r.value for r in IncidentRole)
                raise InvalidInput(f"{role!r} is not a role; use one of: {allowed}", field="required_roles") from None
        policy.required_roles = roles
    if postmortem_required is not None:
        policy.postmortem_required = postmortem_required
    if description is not None:
        policy.description = description
    if free_text_approval is not None:
        policy.free_text_approval = free_text_approval
    return policy
