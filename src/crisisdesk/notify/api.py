"""REST API: subscribers (read for viewers and up; add and remove for admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from crisisdesk.auth.deps import ApiAdmin, ApiReader, Tx
from crisisdesk.auth.models import Scope
from crisisdesk.auth.schemas import errors
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.notify import subscribers
from crisisdesk.notify.addresses import shown_address
from crisisdesk.notify.models import Subscriber
from crisisdesk.notify.schemas import (
    MAX_OFFSET,
    SubscriberCounts,
    SubscriberCreate,
    SubscriberCreated,
    SubscriberList,
    SubscriberRead,
)

router = APIRouter(tags=["subscribers"])


def _read(subscriber: Subscriber, *, full_address: bool = False) -> SubscriberRead:
    # Slack and Teams URLs (and a webhook's query) are credentials: listings shorten them.
    address = subscriber.address if full_address else shown_address(subscriber.channel, subscriber.address)
    return SubscriberRead.model_validate(
        {
            **{name: getattr(subscriber, name) for name in SubscriberRead.model_fields if name != "components"},
            "address": address,
            "components": subscribers.component_ids(subscriber),
        }
    )


@router.get("/subscribers", summary="List subscribers", response_model=SubscriberList, responses=errors(401, 403, 422))
async def list_subscribers(
    session: Tx,
    actor: ApiReader,
    q: Annotated[
        str | None,
        Query(description="Part of the address (Slack, Teams and webhook URLs: admins only).", max_length=200),
    ] = None,
    channel: Annotated[str | None, Query(description="email, sms, webhook, slack or teams.")] = None,
    state: Annotated[str | None, Query(description="pending, active or quarantined.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many to skip.")] = 0,
) -> SubscriberList:
    """Subscribers newest first, filtered by address, channel and state."""
    page = await subscribers.list_subscribers(
        session,
        search=q,
        channel=channel,
        state=state,
        limit=limit,
        offset=offset,
        search_secrets=actor.can(Scope.admin),
    )
    return SubscriberList(items=[_read(s) for s in page.items], total=page.total, limit=page.limit, offset=page.offset)


@router.get(
    "/subscribers/counts", summary="Count subscribers", response_model=SubscriberCounts, responses=errors(401, 403)
)
async def count_subscribers(session: Tx, actor: ApiReader) -> SubscriberCounts:
    """How many subscribers each channel has, per state."""
    counts = await subscribers.counts_by_channel(session)
    return SubscriberCounts(channels=counts, total=sum(sum(c.values()) for c in counts.values()))


@router.post(
    "/subscribers",
    summary="Add a subscriber",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriberCreated,
    responses=errors(401, 403, 409, 422),
)
async def add_subscriber(data: SubscriberCreate, request: Request, session: Tx, actor: ApiAdmin) -> SubscriberCreated:
    """Add a subscriber, active at once without confirmation (admins); a webhook's secret is returned once."""
    result = await subscribers.add(
        session,
        runtime_of(request).settings,
        channel=data.channel,
        address=data.address,
        components=data.components,
        incident_id=data.incident_id,
    )
    return SubscriberCreated(**_read(result.subscriber, full_address=True).model_dump(), secret=result.secret)


@router.delete(
    "/subscribers/{subscriber_id}",
    summary="Remove a subscriber",
    response_model=SubscriberRead,
    responses=errors(401, 403, 404),
)
async def remove_subscriber(subscriber_id: str, session: Tx, actor: ApiAdmin) -> SubscriberRead:
    """Delete a subscriber (admins) and answer with what was removed; past deliveries keep their address."""
    return _read(await subscribers.remove(session, subscriber_id))
