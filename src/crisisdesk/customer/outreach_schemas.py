"""API shapes for proactive outreach and CSM tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.customer.models import TaskStatus


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutreachCreate(_Input):
    """Send an approved template to the contacts of the incident's affected accounts (or preview it)."""

    template_id: str = Field(min_length=1, max_length=64, description="An approved, unarchived message template.")
    tiers: list[str] = Field(default_factory=list, description="Only accounts of these tiers (case-insensitive).")
    contact_roles: list[str] = Field(
        default_factory=list, description="Only contacts with these roles (case-insensitive); all contacts if empty."
    )
    top_tiers: list[str] = Field(
        default_factory=lambda: ["Enterprise"],
        description="Accounts of these tiers get a task for their CSM (csm_owner) to call them.",
    )
    dry_run: bool = Field(
        default=False, description="Count what would be sent and render one sample, without sending or storing."
    )


class SampleRead(BaseModel):
    """One affected account's message, rendered with its own impact."""

    account_id: str = Field(description="The account.")
    account_name: str = Field(description="Its name.")
    to: list[str] = Field(description="The contact addresses it goes to.")
    subject: str = Field(description="The email subject.")
    text: str = Field(description="The plain-text email.")
    html: str | None = Field(description="The HTML email, if the template has one.")


class OutreachRead(BaseModel):
    """One outreach: what was sent, to how many, and how the deliveries stand."""

    id: str = Field(description="Outreach id.")
    incident_id: str = Field(description="The incident.")
    template_id: str | None = Field(description="The template sent (empty if it was deleted since).")
    template_name: str | None = Field(description="The template's scenario and phase.")
    actor_id: str | None = Field(description="Who sent it.")
    subject: str = Field(description="The email subject as rendered for the first account.")
    account_count: int = Field(description="Affected accounts it covered.")
    delivery_count: int = Field(description="Emails queued (one per contact address).")
    task_count: int = Field(description="CSM tasks it opened.")
    created_at: datetime = Field(description="When it was sent.")
    deliveries: dict[str, int] = Field(
        description="Its emails by delivery state: pending, sending, retrying, delivered, failed."
    )


class OutreachResultRead(BaseModel):
    """The outcome of an outreach request: the counts, a sample, and the stored outreach unless a dry run."""

    dry_run: bool = Field(description="True when nothing was sent or stored.")
    account_count: int = Field(description="Affected accounts covered.")
    delivery_count: int = Field(description="Emails (one per contact address).")
    task_count: int = Field(description="CSM tasks opened (a top-tier account with an open task gets no second one).")
    accounts_without_contacts: int = Field(description="Affected accounts with no contact to write to.")
    sample: SampleRead | None = Field(description="The first account's message; empty when no contact is reached.")
    outreach: OutreachRead | None = Field(description="The stored outreach; empty for a dry run.")


class AccountOutreachRead(BaseModel):
    """What one outreach told one account."""

    outreach_id: str = Field(description="The outreach.")
    incident_id: str = Field(description="The incident it was about.")
    incident_number: int = Field(description="The incident's number (INC-<number>).")
    incident_name: str = Field(description="The incident's title.")
    template_id: str | None = Field(description="The template sent.")
    subject: str = Field(description="The outreach's subject (as rendered for its first account).")
    sent_at: datetime = Field(description="When it was sent.")
    impact: dict[str, Any] = Field(
        description="The impact it told: tier, ARR in cents, regions, components (id, name, status, via_id, "
        "region_code, since), window_start, window_end."
    )
    contacts: list[str] = Field(description="The addresses written to.")
    delivery_count: int = Field(description="Emails queued for this account.")
    task_id: int | None = Field(description="The CSM task for this account, if it is top tier.")


class CsmTaskRead(BaseModel):
    """A follow-up for an account's customer success manager."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Task id.")
    account_id: str = Field(description="The account.")
    account_name: str | None = Field(default=None, description="The account's name.")
    incident_id: str | None = Field(description="The incident it follows up.")
    incident_number: int | None = Field(default=None, description="The incident's number (INC-<number>).")
    assignee: str | None = Field(description="The account's CSM owner; empty when the account has none.")
    title: str = Field(description="What to do.")
    body: str = Field(description="The context: impact and what the account was sent.")
    status: TaskStatus = Field(description="open or done.")
    due_at: datetime | None = Field(description="When it should be done.")
    created_at: datetime = Field(description="When it was opened.")
    done_at: datetime | None = Field(description="When it was marked done.")


class CsmTaskPageRead(BaseModel):
    """A page of CSM tasks and how many match in all."""

    total: int = Field(description="Tasks matching the filters.")
    items: list[CsmTaskRead] = Field(description="This page: open ones by due time first, then done ones.")
