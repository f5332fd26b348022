"""Console pages for components: the status board, status changes outside incidents, dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, ConsoleWriter, Tx
from crisisdesk.catalog import dependencies, service
from crisisdesk.catalog.models import Component, ComponentStatus
from crisisdesk.kit.console import Failure, as_list, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.errors import DomainError, InvalidInput

router = APIRouter(include_in_schema=False)


@dataclass
class Section:
    """A group of the board (``group`` is None for components outside any group)."""

    group: Component | None
    components: list[Component] = field(default_factory=list)

    @property
    def status(self) -> ComponentStatus:
        return service.worst([ComponentStatus(c.status) for c in self.components])


def board(components: list[Component]) -> list[Section]:
    """Components arranged as the status page shows them: groups with their members, in order."""
    sections: dict[str | None, Section] = {}
    for component in components:
        if component.is_group:
            sections.setdefault(component.id, Section(component)).group = component
    loose = Section(None)
    for component in components:
        if component.is_group:
            continue
        if component.group_id and component.group_id in sections:
            sections[component.group_id].components.append(component)
        else:
            loose.components.append(component)
    ordered = [s for s in sections.values() if s.components]
    return ([loose] if loose.components else []) + ordered


async def _page(request: Request, actor: object, session: Tx, *, failure: Failure | None = None) -> HTMLResponse:
    components = await service.list_components(session)
    status_code = 200 if failure is None else int(failure.values.get("_status", 422))
    depends = await dependencies.edges(session)
    needed_by: dict[str, list[str]] = {}
    for dependent, targets in depends.items():
        for target in targets:
            needed_by.setdefault(target, []).append(dependent)
    names = {c.id: c.name for c in components}
    return render(
        request,
        "console/components.html",
        actor=actor,
        board=board(components),
        statuses=list(ComponentStatus),
        depends=depends,
        needed_by={k: sorted(v, key=lambda i: (names.get(i) or i).lower()) for k, v in needed_by.items()},
        names=names,
        choices=sorted((c for c in components if not c.is_group), key=lambda c: c.name.lower()),
        failure=failure,
        status_code=status_code,
    )


@router.get("/console/components", response_class=HTMLResponse)
async def components_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """The component status board."""
    return await _page(request, actor, session)


@router.post("/console/components/{component_id}/status", response_class=HTMLResponse)
async def set_component_status(request: Request, component_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Set one component's status outside any incident (e.g. a known degradation)."""
    values = await form_values(request)
    form = f"component-{component_id}"
    try:
        component = await service.get_component(session, component_id)
        if component.is_group:
            form = "board"  # a group has no row of its own on the board
        raw = text(values, "status")
        if not raw:
            raise InvalidInput("choose a status", field="status")
        await service.set_status(session, component, service.parse_status(raw))
    except DomainError as exc:
        if exc.field == "component_id":
            raise
        await discard(session)
        return await _page(request, actor, session, failure=failure_of(exc, form, values))
    return see_other(f"/console/components#component-{component_id}")


@router.post("/console/components/{component_id}/dependencies", response_class=HTMLResponse)
async def set_dependencies(request: Request, component_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Replace the components this one depends on (admins only)."""
    values = await form_values(request)
    try:
        await dependencies.set_dependencies(
            session, actor, component_id=component_id, depends_on_ids=as_list(values.get("depends_on"))
        )
    except DomainError as exc:
        if exc.field == "component_id":
            raise
        await discard(session)
        return await _page(request, actor, session, failure=failure_of(exc, f"dependencies-{component_id}", values))
    return see_other(f"/console/components#component-{component_id}")
