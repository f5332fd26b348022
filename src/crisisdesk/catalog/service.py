"""Components and groups, and every change of a component's status."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog.models import SEVERITY_ORDER, Component, ComponentStatus, ComponentStatusChange, Region
from crisisdesk.kit import events, jobs
from crisisdesk.kit.errors import InvalidInput, NotFound
from crisisdesk.kit.time import utcnow

COMPONENT_FANOUT_JOB = "notify.component"  # notify registers the handler


def parse_status(value: str, *, field: str = "status") -> ComponentStatus:
    try:
        return ComponentStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in ComponentStatus)
        raise InvalidInput(f"{value!r} is not a component status; use one of: {allowed}", field=field) from None


def worst(statuses: list[ComponentStatus]) -> ComponentStatus:
    """The worst of several statuses (operational when there are none)."""
    for status in SEVERITY_ORDER:
        if status in statuses:
            return status
    return ComponentStatus.operational


async def list_components(session: AsyncSession) -> list[Component]:
    """Every component and group, in page order."""
    return list(await session.scalars(select(Component).order_by(Component.position, Component.name)))


async def get_component(session: AsyncSession, component_id: str, *, field: str = "component_id") -> Component:
    component = await session.get(Component, component_id)
    if component is None:
        raise NotFound(f"no component with id {component_id!r}", field=field)
    return component


async def create_component(
    session: AsyncSession,
    *,
    name: str,
    description: str | None = None,
    group_id: str | None = None,
    is_group: bool = False,
    region_id: str | None = None,
    position: int | None = None,
    showcase: bool = True,
    only_show_if_degraded: bool = False,
    created_at: datetime | None = None,
) -> Component:
    """Add a component or a group; groups hold components only (two levels at most)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1 to 200 characters", field="name")
    if group_id is not None:
        group = await get_component(session, group_id, field="group_id")
        if not group.is_group:
            raise InvalidInput(f"{group.name!r} is not a group", field="group_id")
        if is_group:
            raise InvalidInput("a group cannot sit inside another group", field="group_id")
    if position is None:
        position = int(await session.scalar(select(func.coalesce(func.max(Component.position), 0))) or 0) + 1
    now = created_at or utcnow()
    component = Component(
        name=name,
        description=description,
        group_id=group_id,
        is_group=is_group,
        region_id=region_id,
        position=position,
        showcase=showcase,
        only_show_if_degraded=only_show_if_degraded,
        created_at=now,
        updated_at=now,
        start_date=now.date(),
        status=ComponentStatus.operational,
    )
    session.add(component)
    await session.flush()
    if not is_group:
        session.add(
            ComponentStatusChange(
                component_id=component.id, old_status=None, new_status=ComponentStatus.operational, at=now
            )
        )
    events.record(session, events.PUBLIC, "components")
    return component


async def set_status(
    session: AsyncSession,
    component: Component,
    status: ComponentStatus,
    *,
    cause_id: str | None = None,
    at: datetime | None = None,
) -> ComponentStatus | None:
    """Set a component's status and keep its history; returns the old status if it changed."""
    if component.is_group:
        raise InvalidInput(f"{component.name!r} is a group; set the status of its components", field="components")
    if component.status == status:
        return None
    old = ComponentStatus(component.status)
    now = at or utcnow()
    component.status = status
    component.updated_at = now
    change = ComponentStatusChange(
        component_id=component.id, old_status=old, new_status=status, at=now, cause_id=cause_id
    )
    session.add(change)
    await session.flush()
    # Webhook subscribers hear of every component change (the Statuspage ``component_update``).
    await jobs.schedule(
        session, COMPONENT_FANOUT_JOB, now, key=f"fanout:component:{change.id}", payload={"change_id": change.id}
    )
    events.record(session, events.PUBLIC, "components")
    return old


async def create_region(session: AsyncSession, *, code: str, name: str) -> Region:
    region = Region(code=code, name=name)
    session.add(region)
    await session.flush()
    return region


async def list_regions(session: AsyncSession) -> list[Region]:
    return list(await session.scalars(select(Region).order_by(Region.name)))
