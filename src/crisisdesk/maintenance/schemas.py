"""API shapes for scheduled maintenance windows."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crisisdesk.incident.models import MaintenanceStatus
from crisisdesk.incident.schemas import IncidentComponentRead, UpdateRead


class MaintenanceRead(BaseModel):
    """A maintenance window with its components and updates (newest first)."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Maintenance id.")
    number: int = Field(description="Human number (shared with incidents).")
    name: str = Field(description="The title.")
    status: MaintenanceStatus = Field(description="scheduled, in_progress, verifying or completed.")
    created_at: datetime = Field(description="When it was announced (ISO 8601 with offset).")
    updated_at: datetime = Field(description="When it last changed.")
    scheduled_for: datetime | None = Field(description="When the window starts.")
    scheduled_until: datetime | None = Field(description="When the window ends.")
    started_at: datetime = Field(description="When it started (or is planned to).")
    resolved_at: datetime | None = Field(description="When it completed.")
    cancelled_at: datetime | None = Field(description="When it was called off, if it was.")
    auto_transition: bool = Field(description="Whether it starts and completes by itself at its times.")
    components: list[IncidentComponentRead] = Field(description="The components under maintenance.")
    updates: list[UpdateRead] = Field(description="Its updates, newest first.")


class MaintenanceCreate(BaseModel):
    """Announce a maintenance window."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=300, description="The title, e.g. 'Database upgrade'.")
    body: str = Field(min_length=1, description="What will happen and what customers will notice (Markdown).")
    scheduled_for: AwareDatetime = Field(description="Start (ISO 8601 with offset).")
    scheduled_until: AwareDatetime = Field(description="End (ISO 8601 with offset), after the start, within 14 days.")
    components: list[str] = Field(default_factory=list, description="Ids of the components under maintenance.")
    auto_transition: bool = Field(default=True, description="Start and complete by itself at its times.")


class MaintenancePatch(BaseModel):
    """Change a maintenance; once started only the name and end time can change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=300, description="New title.")
    scheduled_for: AwareDatetime | None = Field(default=None, description="New start (before it starts only).")
    scheduled_until: AwareDatetime | None = Field(default=None, description="New end.")
    components: list[str] | None = Field(default=None, description="New set of component ids (before it starts).")
    body: str | None = Field(default=None, min_length=1, description="An update to post with the change.")


class MaintenanceCancel(BaseModel):
    """Call the maintenance off."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000, description="Optional reason, appended to the notice.")
