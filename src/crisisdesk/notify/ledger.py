"""The delivery ledger: what must be sent is a row, written in the transaction that causes it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import Channel, Delivery, Purpose


async def enqueue(
    session: AsyncSession,
    *,
    subject: str,
    purpose: Purpose,
    channel: Channel,
    recipient: str,
    address: str,
    payload: dict[str, Any] | None = None,
    incident_id: str | None = None,
    update_id: str | None = None,
    subscriber_id: str | None = None,
) -> Delivery:
    """Record one message to send; the same (subject, channel, recipient) is recorded once.

    ``payload`` carries the text of messages that are not updates: ``{"subject", "text",
    "html"}`` (confirmations, reminders).
    """
    existing = await session.scalar(
        select(Delivery).where(
            Delivery.subject == subject, Delivery.channel == channel, Delivery.recipient == recipient
        )
    )
    if existing is not None:
        return existing
    delivery = Delivery(
        subject=subject,
        purpose=purpose,
        channel=channel,
        recipient=recipient,
        address=address,
        payload=payload,
        incident_id=incident_id,
        update_id=update_id,
        subscriber_id=subscriber_id,
        due_at=utcnow(),
    )
    session.add(delivery)
    await session.flush()
    return delivery
