"""REST API: what became of an update's messages, per channel and per recipient."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from crisisdesk.auth.deps import ApiReader, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.notify import deliveries as reading
from crisisdesk.notify.addresses import shown_address
from crisisdesk.notify.models import Delivery
from crisisdesk.notify.schemas import MAX_OFFSET

router = APIRouter(tags=["deliveries"])


class DeliveryCounts(BaseModel):
    delivered: int = Field(description="Sent and accepted by the provider or receiver.")
    pending: int = Field(description="Waiting to be sent, or being sent right now.")
    retrying: int = Field(description="Failed for now; tried again later with backoff.")
    failed: int = Field(description="Failed for good, or given up after the configured time.")
    total: int = Field(description="All deliveries counted here.")


class UpdateDeliveryCounts(BaseModel):
    update_id: str = Field(description="The update.")
    incident_id: str = Field(description="The incident or maintenance the update belongs to.")
    channels: dict[str, DeliveryCounts] = Field(description="Counts per channel (email, sms, webhook, …).")
    total: DeliveryCounts = Field(description="Counts over every channel.")


class AttemptRead(BaseModel):
    at: datetime = Field(description="When the send started (UTC).")
    duration_ms: int = Field(description="How long it took.")
    outcome: str = Field(description="delivered, retry or failed.")
    code: str | None = Field(description="The provider's answer in brief: an SMTP code, 'HTTP 500', 'timeout'.")
    summary: str = Field(description="The provider's answer, shortened.")
    worker: str | None = Field(description="The worker that sent it.")


class DeliveryRead(BaseModel):
    id: int = Field(description="The delivery's id.")
    channel: str = Field(description="email, sms, webhook, slack, teams, mastodon or x.")
    recipient: str = Field(description="The subscriber id, or 'account' for the installation's social accounts.")
    subscriber_id: str | None = Field(description="The subscriber, while it exists.")
    address: str = Field(description="Where it went; Slack and Teams webhook URLs are shortened (they are secrets).")
    state: str = Field(description="pending, sending, retrying, delivered or failed.")
    attempts: int = Field(description="Sends tried so far.")
    message_id: str = Field(description="Stable across retries (email Message-ID, webhook-id).")
    created_at: datetime = Field(description="When the fan-out wrote it.")
    due_at: datetime = Field(description="When it is (or was) due next.")
    delivered_at: datetime | None = Field(description="When it was delivered.")
    failed_at: datetime | None = Field(description="When it failed for good.")
    last_error: str | None = Field(description="The last failure, if any.")
    attempt_rows: list[AttemptRead] = Field(description="Every attempt, oldest first.")


class DeliveryPage(BaseModel):
    total: int = Field(description="Deliveries matching the filters.")
    limit: int = Field(description="Page size.")
    offset: int = Field(description="Rows skipped.")
    items: list[DeliveryRead] = Field(description="This page, by delivery id.")


def delivery_read(delivery: Delivery) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        channel=delivery.channel,
        recipient=delivery.recipient,
        subscriber_id=delivery.subscriber_id,
        address=shown_address(delivery.channel, delivery.address),
        state=delivery.state,
        attempts=delivery.attempts,
        message_id=delivery.message_id,
        created_at=delivery.created_at,
        due_at=delivery.due_at,
        delivered_at=delivery.delivered_at,
        failed_at=delivery.failed_at,
        last_error=delivery.last_error,
        attempt_rows=[AttemptRead.model_validate(a, from_attributes=True) for a in delivery.attempt_rows],
    )


@router.get(
    "/updates/{update_id}/deliveries",
    summary="Delivery counts of an update",
    response_model=UpdateDeliveryCounts,
    responses=errors(401, 403, 404),
)
async def update_delivery_counts(update_id: str, session: Tx, actor: ApiReader) -> UpdateDeliveryCounts:
    """Per channel: delivered, pending (waiting or being sent), retrying and failed."""
    found = await reading.update_deliveries(session, update_id)
    return UpdateDeliveryCounts(
        update_id=found.update.id,
        incident_id=found.update.incident_id,
        channels={c.channel: DeliveryCounts(**c.as_dict()) for c in found.channels},
        total=DeliveryCounts(**found.total.as_dict()),
    )


@router.get(
    "/updates/{update_id}/deliveries/list",
    summary="Deliveries of an update, with every attempt",
    response_model=DeliveryPage,
    responses=errors(401, 403, 404, 422),
)
async def update_delivery_list(
    update_id: str,
    session: Tx,
    actor: ApiReader,
    channel: Annotated[str | None, Query(description="Only this channel.")] = None,
    state: Annotated[
        str | None, Query(description="Only this state: delivered, pending (incl. sending), sending, retrying, failed.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")] = 0,
) -> DeliveryPage:
    """Each recipient's delivery: address, state, attempts, and what the provider answered each time."""
    await reading.update_deliveries(session, update_id)
    total, rows = await reading.list_deliveries(
        session, update_id, channel=channel, state=state, limit=limit, offset=offset
    )
    return DeliveryPage(total=total, limit=limit, offset=offset, items=[delivery_read(d) for d in rows])
