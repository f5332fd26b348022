"""Subscribers and the delivery ledger.

A :class:`Delivery` is one message to one recipient on one channel for one subject (an
update, a component change, a confirmation, a reminder); it is unique in the database, so a
fan-out that runs twice cannot send twice. Each try is a :class:`DeliveryAttempt`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow


class Channel(StrEnum):
    email = "email"
    sms = "sms"
    webhook = "webhook"
    slack = "slack"
    slack_dm = "slack_dm"  # a direct message to a responder through the Slack bot token (pages)
    teams = "teams"
    mastodon = "mastodon"
    x = "x"


# Channels a visitor or an admin can subscribe an address to; the social accounts are the
# installation's own (configured in the settings) and receive every public update.
SUBSCRIBER_CHANNELS = (Channel.email, Channel.sms, Channel.webhook, Channel.slack, Channel.teams)
SOCIAL_CHANNELS = (Channel.mastodon, Channel.x)


class SubscriberState(StrEnum):
    pending = "pending"  # waiting for the double opt-in confirmation
    active = "active"
    quarantined = "quarantined"  # unreachable; purged at ``purge_at``


class SubscriptionScope(StrEnum):
    all = "all"
    components = "components"
    incident = "incident"


class Subscriber(Base):
    __tablename__ = "subscriber"
    __table_args__ = (
        UniqueConstraint("channel", "address", name="uq_subscriber_channel_address"),
        Index("ix_subscriber_state_id", "state", "id"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    channel: Mapped[Channel] = mapped_column(String(20))
    # An email address (lower-cased), an E.164 phone number, or an https URL.
    address: Mapped[str] = mapped_column(String(2048))
    state: Mapped[SubscriberState] = mapped_column(String(20), default=SubscriberState.pending)
    scope: Mapped[SubscriptionScope] = mapped_column(String(20), default=SubscriptionScope.all)
    incident_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"))
    # Set for a subscription made on an account's private page; that page lists only these.
    account_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("account.id", ondelete="CASCADE"), index=True)
    # Standard Webhooks signing secret ("whsec_…") for webhook subscribers.
    secret: Mapped[str | None] = mapped_column(String(100))
    # The tokenised manage / unsubscribe link; also the double opt-in link for email.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # One-time code for SMS confirmation.
    confirm_code: Mapped[str | None] = mapped_column(String(12))
    source: Mapped[str] = mapped_column(String(20), default="self")
    created_ip: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    quarantined_at: Mapped[datetime | None]
    purge_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    components: Mapped[list[SubscriberComponent]] = relationship(lazy="raise", cascade="all, delete-orphan")


class SubscriberComponent(Base):
    __tablename__ = "subscriber_component"

    subscriber_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("subscriber.id", ondelete="CASCADE"), primary_key=True
    )
    component_id: Mapped[str] = mapped_column(
        ForeignKey("component.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Purpose(StrEnum):
    update = "update"  # a public incident or maintenance update
    component = "component"  # a component status change (webhook subscribers)
    confirm = "confirm"  # double opt-in confirmation
    reminder = "reminder"  # a next-update reminder or overdue alarm to responders
    page = "page"  # an on-call page to a responder's contact method
    outreach = "outreach"  # proactive outreach to an affected account's contacts
    ticket = "ticket"  # a reply to a support ticket that came in by email
    portal = "portal"  # a private status page's sign-in link


class DeliveryState(StrEnum):
    pending = "pending"
    sending = "sending"  # claimed by a worker under a lease
    retrying = "retrying"
    delivered = "delivered"
    failed = "failed"


OPEN_DELIVERY_STATES = (DeliveryState.pending, DeliveryState.sending, DeliveryState.retrying)


class Delivery(Base):
    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("subject", "channel", "recipient", name="uq_delivery_subject_channel_recipient"),
        Index("ix_delivery_state_due", "state", "due_at"),
        # Each channel's lane claims its own rows: a range scan, not a walk past other channels'.
        Index("ix_delivery_channel_state_due", "channel", "state", "due_at"),
        Index("ix_delivery_update_channel_state", "update_id", "channel", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # What the message is about: "update:<id>", "component:<change id>", "confirm:<subscriber>:<n>",
    # "reminder:<incident>:<due>". With channel and recipient it is the delivery's identity.
    subject: Mapped[str] = mapped_column(String(120))
    purpose: Mapped[Purpose] = mapped_column(String(20))
    update_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("incident_update.id", ondelete="CASCADE"))
    incident_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[Channel] = mapped_column(String(20))
    # A subscriber id, a user id (reminders), or the channel's own account ("account").
    recipient: Mapped[str] = mapped_column(String(40))
    subscriber_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("subscriber.id", ondelete="SET NULL"), index=True
    )
    # Where it went, as it was at the fan-out: the ledger answers "who was told, where".
    address: Mapped[str] = mapped_column(String(2048))
    state: Mapped[DeliveryState] = mapped_column(String(12), default=DeliveryState.pending)
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    # The worker gives up at created_at + CRISISDESK_DELIVERY_GIVE_UP_HOURS.
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Text for confirmations and reminders; updates are rendered from their record.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    attempt_rows: Mapped[list[DeliveryAttempt]] = relationship(lazy="raise", order_by="DeliveryAttempt.id")

    @property
    def message_id(self) -> str:
        """Stable across retries and re-sends (email Message-ID, ``webhook-id``) so receivers can de-duplicate."""
        return message_id(self.subject, self.channel, self.recipient)


def message_id(subject: str, channel: str, recipient: str) -> str:
    digest = hashlib.sha256(f"{subject}|{channel}|{recipient}".encode()).hexdigest()[:26]
    return f"msg_{digest}"


class AttemptOutcome(StrEnum):
    delivered = "delivered"
    retry = "retry"  # a temporary failure; tried again later
    failed = "failed"  # permanent, or given up


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int] = mapped_column(default=0)
    outcome: Mapped[AttemptOutcome] = mapped_column(String(12))
    # The provider's answer in brief: an SMTP reply code, an HTTP status, "timeout".
    code: Mapped[str | None] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(120))


class UpdateMessage(Base):
    """A channel's text for an update, rendered from a template when the update was written.

    Updates written as free text have none; the channel then renders the update's body.
    """

    __tablename__ = "update_message"

    update_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("incident_update.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)  # email, sms, slack, teams, social
    subject: Mapped[str | None] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
