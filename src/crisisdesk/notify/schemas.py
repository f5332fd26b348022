"""API shapes for subscribers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.notify.models import Channel, SubscriberState, SubscriptionScope

# Past this an offset or page overflows the database's integer (it answered 500); no listing is that long.
MAX_OFFSET = 1_000_000_000


class SubscriberCreate(BaseModel):
    """A subscriber added by an admin: active at once, no confirmation."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description="email, sms, webhook, slack or teams.", examples=["email"])
    address: str = Field(
        max_length=2048,
        description="An email address, a phone number in E.164 form (+14155550123), or an https URL.",
        examples=["ops@example.com"],
    )
    components: list[str] = Field(
        default_factory=list, description="Component ids to follow; empty follows everything."
    )
    incident_id: str | None = Field(default=None, description="Follow only this open incident.")


class SubscriberRead(BaseModel):
    """A subscriber; its manage token and signing secret are never listed."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Subscriber id.")
    channel: Channel = Field(description="email, sms, webhook, slack or teams.")
    address: str = Field(
        description="Where messages go (lower-case email, E.164 number, or URL); in listings Slack and Teams "
        "URLs show only their host and a webhook URL drops its query, since they carry credentials."
    )
    state: SubscriberState = Field(description="pending (awaiting confirmation), active or quarantined.")
    scope: SubscriptionScope = Field(description="all, components or incident.")
    components: list[str] = Field(description="Component ids followed when scope is components.")
    incident_id: str | None = Field(description="The incident followed when scope is incident.")
    source: str = Field(description="self (sign-up page), admin, or import.")
    created_at: datetime = Field(description="When the subscriber was added.")
    confirmed_at: datetime | None = Field(description="When the address was confirmed (or added active).")
    quarantined_at: datetime | None = Field(description="When messages to the address started failing for good.")
    purge_at: datetime | None = Field(description="When a quarantined subscriber is deleted.")
    last_error: str | None = Field(description="The last permanent failure, for quarantined subscribers.")


class SubscriberCreated(SubscriberRead):
    """The new subscriber, with the webhook signing secret shown this once."""

    secret: str | None = Field(description="Standard Webhooks signing secret (whsec_…) of a webhook subscriber.")


class SubscriberList(BaseModel):
    """One page of subscribers."""

    items: list[SubscriberRead] = Field(description="Subscribers, newest first.")
    total: int = Field(description="How many match the filters in all.")
    limit: int = Field(description="Page size.")
    offset: int = Field(description="How many were skipped.")


class SubscriberCounts(BaseModel):
    """Subscribers per channel and state."""

    channels: dict[str, dict[str, int]] = Field(
        description='Per channel, per state: {"email": {"pending": 2, "active": 10, "quarantined": 0}, ...}.'
    )
    total: int = Field(description="All subscribers.")
