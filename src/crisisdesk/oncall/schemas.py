"""API shapes for contact methods, notification rules, schedules, escalation policies and severity paging."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.oncall.models import ContactKind, Urgency


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---------------------------------------------------------------- people


class ContactMethodCreate(_Input):
    """A way to reach a person when they are paged."""

    kind: str = Field(
        description="email, sms (E.164, e.g. +14155550123), slack_dm (a member id like U0123ABCD) or push."
    )
    address: str = Field(description="The email address, phone number, Slack member id or push webhook https URL.")
    label: str = Field(default="", description="A name for it, e.g. 'Work phone'.")


class ContactMethodRead(_Read):
    """A contact method; a push webhook's secret is shown only when it is created."""

    id: str = Field(description="Contact method id.")
    user_id: str = Field(description="Whose it is.")
    kind: ContactKind = Field(description="email, sms, slack_dm or push.")
    label: str = Field(description="Its name.")
    address: str = Field(description="The address as stored (normalised).")
    created_at: datetime = Field(description="When it was added.")


class ContactMethodCreated(ContactMethodRead):
    """A new contact method; for push, the signing secret, shown this once."""

    secret: str | None = Field(
        description="Standard Webhooks secret (whsec_…) that signs pushes; null for other kinds."
    )


class NotificationRuleCreate(_Input):
    """Notify one of your contact methods some minutes into a page."""

    urgency: str = Field(default="high", description="high or low: the page urgency this rule applies to.")
    contact_method_id: str = Field(description="One of the same person's contact methods.")
    delay_minutes: int = Field(default=0, description="Minutes after the page reaches the person, 0 to 60.")


class NotificationRuleRead(_Read):
    """A notification rule."""

    id: int = Field(description="Rule id.")
    user_id: str = Field(description="Whose rule it is.")
    urgency: Urgency = Field(description="high or low.")
    contact_method_id: str = Field(description="The contact method notified.")
    delay_minutes: int = Field(description="Minutes after the page reaches the person.")


# ---------------------------------------------------------------- schedules


class LayerPut(_Input):
    """One rotation of a schedule."""

    name: str = Field(default="", description="The layer's name; 'Layer N' when empty.")
    users: list[str] = Field(description="User ids, in the order they take turns.")
    start: datetime = Field(
        description="The first hand-off: a local date-time in time_zone (e.g. 2026-03-02T09:00); "
        "its wall time is the hand-off time. An offset, when given, is kept."
    )
    time_zone: str = Field(description="IANA zone of the hand-off, e.g. Europe/Berlin.")
    rotation: str = Field(description="daily, weekly or custom.")
    length_hours: int | None = Field(default=None, description="Shift length in hours; custom rotations only.")


class LayerRead(_Read):
    """A stored rotation."""

    name: str = Field(description="The layer's name.")
    position: int = Field(description="0 is the lowest; a higher layer wins where both have someone.")
    users: list[str] = Field(description="User ids, in the order they take turns.")
    start: datetime = Field(description="The first hand-off (UTC).")
    start_local: str = Field(description="The first hand-off as a wall time in time_zone.")
    time_zone: str = Field(description="IANA zone of the hand-off.")
    rotation: str = Field(description="daily, weekly or custom.")
    length_hours: int | None = Field(description="Shift length in hours for custom rotations.")


class ScheduleCreate(_Input):
    """A new on-call schedule."""

    name: str = Field(description="Unique name, e.g. 'Incident commanders'.")
    description: str = Field(default="", description="What the schedule is for.")
    time_zone: str = Field(default="Etc/UTC", description="The IANA zone the console shows its shifts in.")
    layers: list[LayerPut] = Field(default_factory=list, description="Rotations, lowest first.")


class SchedulePatch(_Input):
    """Changes to a schedule; layers, when given, replace every layer."""

    name: str | None = Field(default=None, description="New name.")
    description: str | None = Field(default=None, description="New description.")
    time_zone: str | None = Field(default=None, description="New display zone.")
    layers: list[LayerPut] | None = Field(default=None, description="The new layers, lowest first.")


class ScheduleRead(BaseModel):
    """An on-call schedule with its layers."""

    id: str = Field(description="Schedule id.")
    name: str = Field(description="Its name.")
    description: str = Field(description="What it is for.")
    time_zone: str = Field(description="The zone shifts are shown in.")
    layers: list[LayerRead] = Field(description="Rotations, lowest first.")
    created_at: datetime = Field(description="When it was created.")


class OverrideCreate(_Input):
    """Put someone on call over a stretch of time, above every layer."""

    user_id: str = Field(description="Who covers.")
    start: datetime = Field(description="From (ISO 8601 with offset).")
    end: datetime = Field(description="Until (with offset); after start, at most 31 days later.")


class OverrideRead(_Read):
    """An override."""

    id: int = Field(description="Override id.")
    schedule_id: str = Field(description="The schedule.")
    user_id: str = Field(description="Who covers.")
    start: datetime = Field(description="From.")
    end: datetime = Field(description="Until.")
    created_at: datetime = Field(description="When it was added; of overlapping overrides the latest wins.")


class PersonRead(BaseModel):
    """A person on call."""

    id: str = Field(description="User id.")
    name: str = Field(description="Their name.")
    email: str = Field(description="Their login email.")


class OnCallRead(BaseModel):
    """Who is on call on a schedule at an instant."""

    schedule_id: str = Field(description="The schedule.")
    at: datetime = Field(description="The instant asked about.")
    user: PersonRead | None = Field(description="Who is on call; null when nobody is.")
    until: datetime | None = Field(description="When their stretch ends (null: beyond 90 days or nobody on call).")


class ShiftRead(BaseModel):
    """A stretch of the resolved timeline."""

    user_id: str = Field(description="Who is on call.")
    user_name: str | None = Field(description="Their name; null if the user is deactivated (they will not be paged).")
    start: datetime = Field(description="From (UTC).")
    end: datetime = Field(description="Until (UTC).")


# ---------------------------------------------------------------- escalation policies


class TargetPut(_Input):
    """Whom a level notifies."""

    type: str = Field(description="user, or schedule (whoever is on call on it).")
    id: str = Field(description="The user or schedule id.")


class LevelPut(_Input):
    """One escalation level."""

    timeout_minutes: int = Field(description="Minutes to wait for an acknowledgement before the next level, 1 to 1440.")
    targets: list[TargetPut] = Field(description="Users and schedules notified at this level.")


class TargetRead(BaseModel):
    """Whom a level notifies."""

    type: str = Field(description="user or schedule.")
    id: str = Field(description="The user or schedule id.")


class LevelRead(BaseModel):
    """One escalation level."""

    timeout_minutes: int = Field(description="Minutes before the next level.")
    targets: list[TargetRead] = Field(description="Users and schedules notified.")


class PolicyCreate(_Input):
    """A new escalation policy."""

    name: str = Field(description="Unique name.")
    description: str = Field(default="", description="What it is for.")
    levels: list[LevelPut] = Field(description="Levels, in the order they are notified.")
    repeats: int = Field(default=0, description="How many more times to run through the levels, 0 to 9.")


class PolicyPatch(_Input):
    """Changes to an escalation policy; pages already running keep the levels they started with."""

    name: str | None = Field(default=None, description="New name.")
    description: str | None = Field(default=None, description="New description.")
    levels: list[LevelPut] | None = Field(default=None, description="New levels (replace all).")
    repeats: int | None = Field(default=None, description="New repeats, 0 to 9.")


class PolicyRead(_Read):
    """An escalation policy."""

    id: str = Field(description="Policy id.")
    name: str = Field(description="Its name.")
    description: str = Field(description="What it is for.")
    levels: list[LevelRead] = Field(description="Levels in order.")
    repeats: int = Field(description="Extra runs through the levels.")
    created_at: datetime = Field(description="When it was created.")
    updated_at: datetime = Field(description="When it was last changed.")


class SeverityPagingEntry(_Input):
    """On declaring an incident of this severity, page this policy and fill this role."""

    severity: str = Field(description="SEV1 to SEV4.")
    policy_id: str = Field(description="The escalation policy paged.")
    role: str | None = Field(default=None, description="The incident role whoever acknowledges first fills, if any.")


class SeverityPagingPut(_Input):
    """The whole severity paging config (replaces the current one)."""

    entries: list[SeverityPagingEntry] = Field(description="One line per severity and policy.")


class SeverityPagingRead(BaseModel):
    """The severity paging config."""

    entries: list[SeverityPagingEntry] = Field(description="One line per severity and policy.")
