"""Which component depends on which: trouble on a component reaches every component that depends on
it, transitively (customer impact follows these links).

A dependency joins two components (never groups); a component never depends on itself, and a
new dependency that would close a cycle is refused with the path it would close.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog.models import Component, ComponentDependency
from crisisdesk.catalog.service import get_component
from crisisdesk.kit.errors import InvalidInput, NotFound

MAX_DEPENDENCIES = 200


async def _component(session: AsyncSession, component_id: str, *, field: str) -> Component:
    if not isinstance(component_id, str) or not component_id or len(component_id) > 24:
        raise (NotFound if field == "component_id" else InvalidInput)(
            f"no component with id {str(component_id)[:40]!r}", field=field
        )
    try:
        component = await get_component(session, component_id, field=field)
    except NotFound as exc:
        if field == "component_id":
            raise
        raise InvalidInput(exc.message, field=field) from None
    if component.is_group:
        raise InvalidInput(f"{component.name!r} is a group; dependencies join components, not groups", field=field)
    return component


async def depends_on(session: AsyncSession, component_id: str) -> list[Component]:
    """The components this one depends on directly, by name."""
    return list(
        await session.scalars(
            select(Component)
            .join(ComponentDependency, ComponentDependency.depends_on_id == Component.id)
            .where(ComponentDependency.component_id == component_id)
            .order_by(Component.name, Component.id)
        )
    )


async def dependents(session: AsyncSession, component_id: str) -> list[Component]:
    """The components that depend on this one directly, by name."""
    return list(
        await session.scalars(
            select(Component)
            .join(ComponentDependency, ComponentDependency.component_id == Component.id)
            .where(ComponentDependency.depends_on_id == component_id)
            .order_by(Component.name, Component.id)
        )
    )


async def edges(session: AsyncSession) -> dict[str, list[str]]:
    """Every component's direct dependencies: ``{component_id: [depends_on_id, ...]}``."""
    found: dict[str, list[str]] = {}
    rows = await session.execute(
        select(ComponentDependency.component_id, ComponentDependency.depends_on_id).order_by(
            ComponentDependency.component_id, ComponentDependency.depends_on_id
        )
    )
    for component_id, depends_on_id in rows:
        found.setdefault(component_id, []).append(depends_on_id)
    return found


async def _path(session: AsyncSession, start: str, goal: str) -> list[str] | None:
    """The chain of dependencies from ``start`` down to ``goal``, if there is one (a recursive CTE)."""
    reach = (
        select(ComponentDependency.component_id, ComponentDependency.depends_on_id)
        .where(ComponentDependency.component_id == start)
        .cte("reach", recursive=True)
    )
    reach = reach.union(
        select(ComponentDependency.component_id, ComponentDependency.depends_on_id).join(
            reach, ComponentDependency.component_id == reach.c.depends_on_id
        )
    )
    found = (await session.execute(select(reach.c.component_id, reach.c.depends_on_id))).all()
    parent: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    links: dict[str, list[str]] = {}
    for a, b in found:
        links.setdefault(a, []).append(b)
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(links.get(node, [])):
                if nxt in seen:
                    continue
                seen.add(nxt)
                parent[nxt] = node
                following.append(nxt)
        frontier = following
    if goal not in seen:
        return None
    path = [goal]
    while path[-1] != start:
        path.append(parent[path[-1]])
    return path[::-1]


async def add_dependency(session: AsyncSession, actor: Actor, *, component_id: str, depends_on_id: str) -> bool:
    """Record that ``component_id`` depends on ``depends_on_id`` (admins only); False if it already did."""
    actor.require(Scope.admin)
    component = await _component(session, component_id, field="component_id")
    target = await _component(session, depends_on_id, field="depends_on")
    return await _add(session, component, target)


async def _add(session: AsyncSession, component: Component, target: Component) -> bool:
    if target.id == component.id:
        raise InvalidInput(f"{component.name!r} cannot depend on itself", field="depends_on")
    if await session.get(ComponentDependency, (component.id, target.id)) is not None:
        return False
    path = await _path(session, target.id, component.id)
    if path is not None:
        names = dict((await session.execute(select(Component.id, Component.name).where(Component.id.in_(path)))).all())
        chain = " → ".join(names.get(step, step) for step in path)
        raise InvalidInput(
            f"{component.name!r} cannot depend on {target.name!r}: that would close a cycle ({chain} → {target.name})",
            field="depends_on",
        )
    session.add(ComponentDependency(component_id=component.id, depends_on_id=target.id))
    await session.flush()
    return True


async def remove_dependency(session: AsyncSession, actor: Actor, *, component_id: str, depends_on_id: str) -> bool:
    """Forget that ``component_id`` depends on ``depends_on_id`` (admins only); False if it did not."""
    actor.require(Scope.admin)
    await _component(session, component_id, field="component_id")
    result = await session.execute(
        delete(ComponentDependency).where(
            ComponentDependency.component_id == component_id, ComponentDependency.depends_on_id == depends_on_id
        )
    )
    await session.flush()
    return bool(getattr(result, "rowcount", 0))


async def set_dependencies(
    session: AsyncSession, actor: Actor, *, component_id: str, depends_on_ids: Sequence[str]
) -> list[Component]:
    """Replace the component's direct dependencies with exactly these (admins only)."""
    actor.require(Scope.admin)
    component = await _component(session, component_id, field="component_id")
    wanted = list(dict.fromkeys(depends_on_ids))
    if len(wanted) > MAX_DEPENDENCIES:
        raise InvalidInput(f"a component may depend on at most {MAX_DEPENDENCIES} others", field="depends_on")
    targets = [await _component(session, ref, field="depends_on") for ref in wanted]
    await session.execute(
        delete(ComponentDependency).where(
            ComponentDependency.component_id == component.id, ComponentDependency.depends_on_id.not_in(wanted)
        )
    )
    for target in targets:
        await _add(session, component, target)
    return await depends_on(session, component.id)
