"""API shapes for templates, previews, publishing from a template, and drafts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.incident.models import IncidentRole, Severity

UpdateStatus = Literal["investigating", "identified", "monitoring", "resolved"]
VALUES_HELP = (
    "Variable name → value: components a list of names, start_time / next_update_at ISO 8601 times, eta a time "
    "or text, URLs http(s), everything else text. Omitted ones are taken from the incident where it knows them "
    "(workaround, eta and eta_at from its current workaround and ETA)."
)
COMPONENTS_HELP = 'Component id → the status this update sets, e.g. {"cmp_123": "major_outage"}.'


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariableSpec(BaseModel):
    """A variable a template may use."""

    name: str = Field(
        description="components, start_time, workaround, next_update_at, eta, eta_at, incident_url, status_page_url, "
        "incident_name; for proactive outreach account (account.name, account.tier …), affected_components, "
        "impact_start; or a custom name (lower-case letters, digits, _)."
    )
    type: Literal["components", "datetime", "text", "url", "eta", "account"] | None = Field(
        default=None, description="Fixed for the known names; custom variables are text."
    )
    label: str | None = Field(default=None, max_length=120, description="What the form asks for.")
    required: bool = Field(default=False, description="Whether publishing needs a value.")


class _Variants(BaseModel):
    email_subject: str = Field(default="", description="Email subject (one line, at most 200 characters).")
    email_html: str = Field(default="", description="Email HTML (values are escaped).")
    email_text: str = Field(default="", description="Email plain text.")
    sms: str = Field(default="", description="SMS text (one segment is 160 GSM-7 or 70 UCS-2 characters).")
    slack: str = Field(default="", description="Slack message (mrkdwn).")
    teams: str = Field(default="", description="Microsoft Teams message (Markdown).")
    social: str = Field(default="", description="Mastodon / X post (at most 280 characters; links count 23).")


class TemplateCreate(_Input, _Variants):
    """A new template for one scenario and phase; Jinja2 with the declared variables only."""

    scenario: str = Field(min_length=1, max_length=120, description="e.g. 'Identity provider outage'.")
    phase: str = Field(
        description="investigating, identified, monitoring, resolved; maintenance: scheduled, in_progress, completed."
    )
    title: str = Field(min_length=1, description="The incident name it suggests (Jinja2).")
    body: str = Field(min_length=1, description="The status page update (Markdown, Jinja2).")
    variables: list[VariableSpec] = Field(default_factory=list, description="What the template may use.")


class TemplatePatch(_Input):
    """Change a template; omitted fields stay. A non-admin's change to an approved template clears the approval."""

    scenario: str | None = Field(default=None, min_length=1, max_length=120, description="The scenario.")
    phase: str | None = Field(default=None, description="The phase.")
    title: str | None = Field(default=None, description="The incident name it suggests.")
    body: str | None = Field(default=None, description="The status page update (Markdown).")
    variables: list[VariableSpec] | None = Field(default=None, description="What the template may use.")
    email_subject: str | None = Field(default=None, description="Email subject.")
    email_html: str | None = Field(default=None, description="Email HTML.")
    email_text: str | None = Field(default=None, description="Email plain text.")
    sms: str | None = Field(default=None, description="SMS text.")
    slack: str | None = Field(default=None, description="Slack message.")
    teams: str | None = Field(default=None, description="Teams message.")
    social: str | None = Field(default=None, description="Social post.")


class TemplateRead(_Variants):
    """A template in the library."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Template id.")
    scenario: str = Field(description="The crisis scenario.")
    phase: str = Field(description="The phase it is written for.")
    title: str = Field(description="The incident name it suggests.")
    body: str = Field(description="The status page update.")
    variables: list[dict[str, Any]] = Field(description="Declared variables: name, type, label, required.")
    approved_at: datetime | None = Field(description="When an admin approved it; empty while it waits.")
    approved_by_id: str | None = Field(description="Who approved it.")
    created_at: datetime = Field(description="When it was created.")
    updated_at: datetime = Field(description="When it last changed.")
    archived_at: datetime | None = Field(description="When it was archived.")


class PreviewRequest(_Input):
    """Values to render a template with; samples fill what is missing."""

    values: dict[str, Any] = Field(default_factory=dict, description=VALUES_HELP)


class ChannelRendering(BaseModel):
    """One channel's rendering and its measurements."""

    variant: str = Field(description="title, body, email_subject, email_html, email_text, sms, slack, teams, social.")
    label: str = Field(description="A name for people.")
    text: str = Field(description="The rendered text.")
    length: int = Field(description="Characters (social: links count 23; SMS: see sms).")
    limit: int | None = Field(description="The channel's limit, where it has one.")
    sms: dict[str, Any] | None = Field(description="SMS only: encoding (GSM-7/UCS-2), units, segments, per_segment.")
    warnings: list[str] = Field(description="Overruns found.")


class PreviewRead(BaseModel):
    """Every channel's rendering, side by side."""

    channels: list[ChannelRendering] = Field(description="One per variant.")
    warnings: list[str] = Field(description="Every overrun, across channels.")


class FromTemplateCreate(_Input):
    """Post an update in an approved template's words; no further approval is needed."""

    template_id: str = Field(description="An approved template.")
    values: dict[str, Any] = Field(default_factory=dict, description=VALUES_HELP)
    status: UpdateStatus | None = Field(
        default=None, description="The incident status after it; the template's phase if omitted."
    )
    components: dict[str, ComponentStatus] = Field(default_factory=dict, description=COMPONENTS_HELP)
    next_update_at: AwareDatetime | None = Field(
        default=None, description="The next promised update; cadence if omitted."
    )
    deliver_notifications: bool = Field(default=True, description="Notify subscribers.")


class DeclareFromTemplate(_Input):
    """Declare an incident whose first update and name come from an approved template."""

    template_id: str = Field(description="An approved template.")
    severity: Severity = Field(description="SEV1 to SEV4.")
    values: dict[str, Any] = Field(default_factory=dict, description=VALUES_HELP)
    name: str | None = Field(
        default=None, max_length=300, description="The title; rendered from the template if omitted."
    )
    components: dict[str, ComponentStatus] = Field(default_factory=dict, description=COMPONENTS_HELP)
    roles: dict[IncidentRole, str] = Field(default_factory=dict, description="Role → user id to assign at once.")
    next_update_at: AwareDatetime | None = Field(default=None, description="The next promised update.")
    deliver_notifications: bool = Field(default=True, description="Notify subscribers of the first update.")


class DraftCreate(_Input):
    """A free-text public update for the Communications Lead or an admin to approve."""

    status: UpdateStatus = Field(description="The incident status it sets when published.")
    body: str = Field(min_length=1, description="The message (Markdown).")
    components: dict[str, ComponentStatus] = Field(default_factory=dict, description=COMPONENTS_HELP)
    next_update_at: AwareDatetime | None = Field(default=None, description="The next promised update.")
    deliver_notifications: bool = Field(default=True, description="Notify subscribers when it is published.")


class DraftReject(_Input):
    """Why the draft is turned down."""

    reason: str = Field(description="Required; goes on the timeline.")


class DraftRead(BaseModel):
    """A draft update and what became of it."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Draft id.")
    incident_id: str = Field(description="The incident.")
    state: str = Field(description="pending, published, rejected or withdrawn.")
    status: str = Field(description="The incident status it sets.")
    body: str = Field(description="The message.")
    components: dict[str, Any] = Field(description="Component id → status it sets.")
    next_update_at: datetime | None = Field(description="The promise it makes.")
    author_id: str | None = Field(description="Who wrote it.")
    created_at: datetime = Field(description="When it was submitted.")
    decided_by_id: str | None = Field(description="Who approved, rejected or withdrew it.")
    decided_at: datetime | None = Field(description="When.")
    reason: str | None = Field(description="Why it was rejected.")
    update_id: str | None = Field(description="The update it became, once published.")


class PromiseRead(BaseModel):
    """A next-update promise and whether it was kept."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Promise id.")
    update_id: str = Field(description="The update that made it.")
    due_at: datetime = Field(description="When the next update was promised.")
    kept_at: datetime | None = Field(description="When the next public update came.")
    overdue_seconds: int | None = Field(description="How late it was kept (0 on time).")
    reminded_at: datetime | None = Field(description="When responders were reminded.")
    alarmed_at: datetime | None = Field(description="When the overdue alarm last went off.")
