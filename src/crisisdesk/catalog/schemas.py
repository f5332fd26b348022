"""API shapes for components and groups."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.catalog.models import ComponentStatus


class ComponentRead(BaseModel):
    """A component, or a group of components when is_group is true."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Component id.")
    name: str = Field(description="Name shown on the status page.")
    description: str | None = Field(description="Optional text shown with the component.")
    status: ComponentStatus = Field(description="Current status (a group's own value is not shown publicly).")
    position: int = Field(description="Order on the page, smallest first.")
    showcase: bool = Field(description="Whether the component appears on the public page.")
    only_show_if_degraded: bool = Field(description="Shown publicly only while not operational.")
    is_group: bool = Field(description="True for a group; groups hold components, two levels at most.")
    group_id: str | None = Field(description="The group this component belongs to, if any.")
    region_id: str | None = Field(description="The region the component runs in, if any.")
    start_date: date | None = Field(description="First day of the component's history.")
    created_at: datetime = Field(description="When the component was added (ISO 8601 with offset).")
    updated_at: datetime = Field(description="When the component last changed.")


class ComponentCreate(BaseModel):
    """A new component or group (admins only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Name shown on the status page.")
    description: str | None = Field(default=None, max_length=2000, description="Optional text shown with it.")
    group_id: str | None = Field(default=None, description="Put the component in this group.")
    is_group: bool = Field(default=False, description="Create a group instead of a component.")
    position: int | None = Field(default=None, ge=0, le=1_000_000, description="Order on the page; last when omitted.")
    showcase: bool = Field(default=True, description="Show the component on the public page.")
    only_show_if_degraded: bool = Field(default=False, description="Show it publicly only while degraded.")


class ComponentPatch(BaseModel):
    """A change of a component's status, outside any incident."""

    model_config = ConfigDict(extra="forbid")

    status: ComponentStatus = Field(description="The new status.")


class ComponentRef(BaseModel):
    """A component named in a dependency."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Component id.")
    name: str = Field(description="Component name.")


class DependenciesRead(BaseModel):
    """What a component depends on, and what depends on it (directly)."""

    component_id: str = Field(description="The component.")
    depends_on: list[ComponentRef] = Field(
        description="Components it depends on: an incident on one of them affects this one too (transitively)."
    )
    dependents: list[ComponentRef] = Field(description="Components that depend on this one.")


class DependenciesPut(BaseModel):
    """The full list of components a component depends on (replaces the current list)."""

    model_config = ConfigDict(extra="forbid")

    depends_on: list[str] = Field(
        max_length=200, description="Ids of the components it depends on; an empty list removes every dependency."
    )
