"""REST API: components and their status."""

from __future__ import annotations

from fastapi import APIRouter, status

from crisisdesk.auth.deps import ApiAdmin, ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.catalog import dependencies, service
from crisisdesk.catalog.models import Component
from crisisdesk.catalog.schemas import (
    ComponentCreate,
    ComponentPatch,
    ComponentRead,
    ComponentRef,
    DependenciesPut,
    DependenciesRead,
)

router = APIRouter(tags=["components"])


@router.get("/components", summary="List components", response_model=list[ComponentRead], responses=errors(401, 403))
async def list_components(session: Tx, actor: ApiReader) -> list[Component]:
    """Every component and group, in page order."""
    return await service.list_components(session)


@router.get(
    "/components/{component_id}",
    summary="Get a component",
    response_model=ComponentRead,
    responses=errors(401, 403, 404),
)
async def get_component(component_id: str, session: Tx, actor: ApiReader) -> Component:
    """One component or group."""
    return await service.get_component(session, component_id)


@router.post(
    "/components",
    summary="Add a component or group",
    status_code=status.HTTP_201_CREATED,
    response_model=ComponentRead,
    responses=errors(401, 403, 404, 422),
)
async def create_component(data: ComponentCreate, session: Tx, actor: ApiAdmin) -> Component:
    """Add a component (or a group) to the page (admins only)."""
    return await service.create_component(session, **data.model_dump())


@router.patch(
    "/components/{component_id}",
    summary="Set a component's status",
    response_model=ComponentRead,
    responses=errors(401, 403, 404, 422),
)
async def patch_component(component_id: str, data: ComponentPatch, session: Tx, actor: ApiWriter) -> Component:
    """Set the status directly, e.g. to mark degraded performance without an incident."""
    component = await service.get_component(session, component_id)
    await service.set_status(session, component, data.status)
    return component


async def _dependencies(session: Tx, component_id: str) -> DependenciesRead:
    return DependenciesRead(
        component_id=component_id,
        depends_on=[ComponentRef.model_validate(c) for c in await dependencies.depends_on(session, component_id)],
        dependents=[ComponentRef.model_validate(c) for c in await dependencies.dependents(session, component_id)],
    )


@router.get(
    "/components/{component_id}/dependencies",
    summary="Get a component's dependencies",
    response_model=DependenciesRead,
    responses=errors(401, 403, 404),
)
async def get_dependencies(component_id: str, session: Tx, actor: ApiReader) -> DependenciesRead:
    """The components it depends on and those that depend on it; an incident on a component affects
    every component that depends on it, transitively."""
    await service.get_component(session, component_id)
    return await _dependencies(session, component_id)


@router.put(
    "/components/{component_id}/dependencies",
    summary="Set a component's dependencies",
    response_model=DependenciesRead,
    responses=errors(401, 403, 404, 422),
)
async def put_dependencies(component_id: str, data: DependenciesPut, session: Tx, actor: ApiAdmin) -> DependenciesRead:
    """Replace the list of components it depends on (admins only). A component cannot depend on
    itself, on a group, or on a component that already depends on it (a cycle); each is a 422."""
    await dependencies.set_dependencies(session, actor, component_id=component_id, depends_on_ids=data.depends_on)
    return await _dependencies(session, component_id)
