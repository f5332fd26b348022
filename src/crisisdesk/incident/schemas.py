"""API shapes for incidents, their updates, roles, timeline and severity policy."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field

from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.incident.models import Impact, IncidentRole, Severity, Visibility

OpenStatus = Literal["investigating", "identified", "monitoring"]
UpdateStatus = Literal["investigating", "identified", "monitoring", "resolved"]

COMPONENTS_HELP = 'Component id → the status this update sets, e.g. {"cmp_123": "major_outage"}.'
NEXT_UPDATE_HELP = (
    "When the next update is promised (ISO 8601 with offset, within 7 days); defaults from the severity's cadence."
)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AffectedComponentRead(BaseModel):
    """A component status change made by one update."""

    model_config = ConfigDict(from_attributes=True)

    component_id: str = Field(description="The component.")
    old_status: ComponentStatus = Field(description="Its status before the update.")
    new_status: ComponentStatus = Field(description="Its status after the update.")


class UpdateRead(BaseModel):
    """A public update or an internal note on an incident or maintenance."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Update id.")
    status: str = Field(description="The incident (or maintenance) status this update set.")
    body: str = Field(description="The message as written (Markdown).")
    body_html: str = Field(description="The message rendered to sanitised HTML.")
    visibility: Visibility = Field(description="public, or internal for notes that never reach the public.")
    created_at: datetime = Field(description="When it was posted (ISO 8601 with offset).")
    display_at: datetime = Field(description="The time shown with it on the page.")
    next_update_at: datetime | None = Field(description="The next update this one promised.")
    deliver_notifications: bool = Field(description="Whether subscribers are notified of it.")
    author_id: str | None = Field(description="Who posted it; empty when the system did.")
    affected_components: list[AffectedComponentRead] = Field(
        validation_alias=AliasChoices("affected", "affected_components"),
        description="The component status changes it made.",
    )


class IncidentComponentRead(BaseModel):
    """A component the incident affects and the status it last set on it."""

    model_config = ConfigDict(from_attributes=True)

    component_id: str = Field(description="The component.")
    status: ComponentStatus = Field(description="The status this incident last set.")
    added_at: datetime = Field(description="When the incident first affected it.")


class RoleAssignmentRead(BaseModel):
    """Who held a role and when; the holder now is the row without ended_at."""

    model_config = ConfigDict(from_attributes=True)

    role: IncidentRole = Field(description="The incident role.")
    user_id: str = Field(description="Who held it.")
    assigned_by_id: str | None = Field(description="Who handed it out.")
    assigned_at: datetime = Field(description="Since when.")
    ended_at: datetime | None = Field(description="Until when; empty for the current holder.")


class IncidentRead(BaseModel):
    """An incident with its components, roles and updates (newest first)."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Incident id.")
    number: int = Field(description="Human number, shown as INC-<number>.")
    name: str = Field(description="The title.")
    status: str = Field(description="investigating, identified, monitoring, resolved or postmortem.")
    severity: Severity | None = Field(description="SEV1 (critical) to SEV4 (low).")
    impact: Impact = Field(description="The Statuspage impact derived from the severity.")
    created_at: datetime = Field(description="When it was declared.")
    updated_at: datetime = Field(description="When it last changed.")
    started_at: datetime = Field(description="When the problem began.")
    identified_at: datetime | None = Field(description="When the cause was identified.")
    monitoring_at: datetime | None = Field(description="When a fix was being monitored.")
    resolved_at: datetime | None = Field(description="When it was resolved.")
    last_public_update_at: datetime | None = Field(description="When the last public update went out.")
    next_update_at: datetime | None = Field(description="When the next public update is promised.")
    postmortem_body: str | None = Field(description="The postmortem (Markdown), draft or published.")
    postmortem_published_at: datetime | None = Field(description="When the postmortem was published.")
    components: list[IncidentComponentRead] = Field(description="Affected components.")
    roles: list[RoleAssignmentRead] = Field(description="Role assignments, with history.")
    updates: list[UpdateRead] = Field(description="Public updates and internal notes, newest first.")


class IncidentCreate(_Input):
    """Declare an incident with its first public update."""

    name: str = Field(min_length=1, max_length=300, description="The title, e.g. 'Sign-in failures for SSO users'.")
    severity: Severity = Field(description="SEV1 (critical) to SEV4 (low); sets impact, cadence and required roles.")
    body: str = Field(min_length=1, description="The first public update (Markdown).")
    status: OpenStatus = Field(default="investigating", description="The starting status.")
    components: dict[str, ComponentStatus] = Field(default_factory=dict, description=COMPONENTS_HELP)
    next_update_at: AwareDatetime | None = Field(default=None, description=NEXT_UPDATE_HELP)
    started_at: AwareDatetime | None = Field(default=None, description="When the problem began; now if omitted.")
    roles: dict[IncidentRole, str] = Field(default_factory=dict, description="Role → user id to assign at once.")
    deliver_notifications: bool = Field(default=True, description="Notify subscribers of the first update.")


class UpdateCreate(_Input):
    """A further public update; it may change the status and component statuses."""

    status: UpdateStatus = Field(description="The incident status after this update.")
    body: str = Field(min_length=1, description="The message (Markdown).")
    components: dict[str, ComponentStatus] = Field(default_factory=dict, description=COMPONENTS_HELP)
    next_update_at: AwareDatetime | None = Field(default=None, description=NEXT_UPDATE_HELP)
    deliver_notifications: bool = Field(default=True, description="Notify subscribers of this update.")


class NoteCreate(_Input):
    """An internal note: on the timeline, never public."""

    body: str = Field(min_length=1, description="The note (Markdown).")


class RoleAssign(_Input):
    """Give a role to a user (handing it over from the holder), or free it with null."""

    user_id: str | None = Field(description="The new holder; null frees the role.")


class SeverityChange(_Input):
    """Raise or lower the severity."""

    severity: Severity = Field(description="The new severity.")
    reason: str = Field(min_length=1, max_length=2000, description="Why; recorded on the timeline.")


class ResolveCreate(_Input):
    """Resolve the incident with a final public update; components go back to operational."""

    body: str = Field(min_length=1, description="The resolving message (Markdown).")
    components: dict[str, ComponentStatus] = Field(
        default_factory=dict, description="Statuses to set explicitly instead of restoring (rarely needed)."
    )
    deliver_notifications: bool = Field(default=True, description="Notify subscribers.")


class PostmortemPut(_Input):
    """Write the postmortem; publishing shows it on the status page."""

    body: str = Field(min_length=1, description="The postmortem (Markdown).")
    publish: bool = Field(default=False, description="Publish it now (sets the status to postmortem).")


class TimelineEventRead(BaseModel):
    """An immutable record of something that happened on an incident."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Event id (increasing).")
    at: datetime = Field(description="When it happened.")
    kind: str = Field(description="What happened, e.g. declared, update_posted, role_assigned.")
    actor_id: str | None = Field(description="Who did it; empty for the system.")
    summary: str = Field(description="One line a person can read.")
    data: dict[str, Any] = Field(description="Details of the event.")


class SeverityPolicyRead(BaseModel):
    """What a severity level means for the response."""

    model_config = ConfigDict(from_attributes=True)

    severity: Severity = Field(description="SEV1 to SEV4.")
    label: str = Field(description="Short name, e.g. Critical.")
    description: str = Field(description="When to use this severity.")
    impact: Impact = Field(description="Statuspage impact of incidents at this severity.")
    cadence_minutes: int = Field(description="Default minutes until the next promised update.")
    required_roles: list[IncidentRole] = Field(description="Roles that must be filled.")
    postmortem_required: bool = Field(description="Whether a postmortem is expected.")
    free_text_approval: bool = Field(
        description="Whether a free-text public update needs the Communications Lead's or an admin's approval "
        "(updates from approved templates never do)."
    )


class SeverityPolicyPatch(_Input):
    """Change a severity's policy (admins only); omitted fields stay as they are."""

    cadence_minutes: int | None = Field(default=None, ge=1, le=1440, description="Minutes between updates.")
    required_roles: list[IncidentRole] | None = Field(default=None, description="Roles that must be filled.")
    postmortem_required: bool | None = Field(default=None, description="Whether a postmortem is expected.")
    description: str | None = Field(default=None, max_length=2000, description="When to use this severity.")
    free_text_approval: bool | None = Field(
        default=None,
        description="Whether a free-text public update needs approval by the Communications Lead or an admin.",
    )


class WorkaroundRead(BaseModel):
    """One version of the incident's workaround; an empty body is a withdrawal."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Version id (increasing).")
    body: str = Field(description="The workaround (Markdown); empty when this version withdrew it.")
    body_html: str = Field(description="The workaround rendered to sanitised HTML.")
    published: bool = Field(description="Whether it shows on the public status page while it is current.")
    author_id: str | None = Field(description="Who wrote it.")
    created_at: datetime = Field(description="When it was written.")


class EtaRead(BaseModel):
    """One estimate of when the incident will be fixed; no eta_at is a withdrawal."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Version id (increasing).")
    eta_at: datetime | None = Field(description="When the fix is expected; empty when this version withdrew it.")
    note: str = Field(description="Why the estimate was set or moved.")
    published: bool = Field(description="Whether it shows on the public status page while it is current.")
    author_id: str | None = Field(description="Who set it.")
    created_at: datetime = Field(description="When it was set.")


class GuidanceRead(BaseModel):
    """The incident's current workaround and ETA, and every earlier version (newest first)."""

    workaround: WorkaroundRead | None = Field(description="The current workaround; empty if none or withdrawn.")
    eta: EtaRead | None = Field(description="The current ETA; empty if none or withdrawn.")
    workarounds: list[WorkaroundRead] = Field(description="Every workaround version, newest first.")
    etas: list[EtaRead] = Field(description="Every ETA version, newest first.")


class WorkaroundPut(_Input):
    """Set, change, publish or withdraw the workaround (an empty body withdraws it)."""

    body: str = Field(description="What customers can do meanwhile (Markdown, at most 2000 characters); '' withdraws.")
    published: bool = Field(
        default=False,
        description="Show it on the public status page. On a severity whose policy asks for approval of free "
        "text, only the Communications Lead or an admin publishes.",
    )


class EtaPut(_Input):
    """Set, move, publish or withdraw the ETA (eta_at null withdraws it)."""

    eta_at: AwareDatetime | None = Field(
        description="When the fix is expected (ISO 8601 with offset); not before the incident started; null withdraws."
    )
    note: str = Field(default="", description="Why it was set or moved (at most 2000 characters).")
    published: bool = Field(
        default=False, description="Show it on the public status page (the same approval rule as the workaround)."
    )
