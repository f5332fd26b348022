"""REST API: connected helpdesks (Zendesk, Freshdesk, Intercom)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from crisisdesk.auth.deps import ApiAdmin, ApiReader, Tx
from crisisdesk.auth.models import Scope
from crisisdesk.auth.schemas import errors
from crisisdesk.auth.service import Actor
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.support import helpdesks
from crisisdesk.support.helpdesk_schemas import HelpdeskCreate, HelpdeskCreated, HelpdeskPatch, HelpdeskRead
from crisisdesk.support.models import Helpdesk

router = APIRouter(tags=["helpdesks"])


def _read(request: Request, actor: Actor, helpdesk: Helpdesk, tickets: int) -> HelpdeskRead:
    admin = actor.can(Scope.admin)
    return HelpdeskRead(
        id=helpdesk.id,
        kind=helpdesk.kind,
        name=helpdesk.name,
        webhook_url=helpdesks.webhook_url(runtime_of(request).settings.base_url, helpdesk) if admin else None,
        api_base_url=helpdesk.api_base_url,
        api_user=helpdesk.api_user,
        has_api_token=bool(helpdesk.api_token),
        signing_secret_hint=helpdesks.secret_hint(helpdesk.signing_secret) if admin else None,
        enabled=helpdesk.enabled,
        created_at=helpdesk.created_at,
        last_received_at=helpdesk.last_received_at,
        tickets=tickets,
    )


async def _one(request: Request, session: Tx, actor: Actor, helpdesk: Helpdesk) -> HelpdeskRead:
    counts = await helpdesks.ticket_counts(session)
    return _read(request, actor, helpdesk, counts.get(helpdesk.id, 0))


def _created(request: Request, actor: Actor, helpdesk: Helpdesk, tickets: int, secret: str) -> HelpdeskCreated:
    return HelpdeskCreated(**_read(request, actor, helpdesk, tickets).model_dump(), signing_secret=secret)


@router.get("/helpdesks", summary="List helpdesks", response_model=list[HelpdeskRead], responses=errors(401, 403))
async def list_helpdesks(request: Request, session: Tx, actor: ApiReader) -> list[HelpdeskRead]:
    """Every connected helpdesk with its ticket count; webhook URLs for admins only, secrets for nobody."""
    counts = await helpdesks.ticket_counts(session)
    return [_read(request, actor, h, counts.get(h.id, 0)) for h in await helpdesks.list_helpdesks(session)]


@router.post(
    "/helpdesks",
    summary="Connect a helpdesk",
    status_code=status.HTTP_201_CREATED,
    response_model=HelpdeskCreated,
    responses=errors(401, 403, 422),
)
async def create_helpdesk(data: HelpdeskCreate, request: Request, session: Tx, actor: ApiAdmin) -> HelpdeskCreated:
    """Connect a helpdesk (admins only). The answer carries its webhook URL and, this once, its signing secret."""
    helpdesk = await helpdesks.create_helpdesk(
        session,
        actor,
        kind=data.kind,
        name=data.name,
        api_base_url=data.api_base_url,
        signing_secret=data.signing_secret,
        api_user=data.api_user,
        api_token=data.api_token,
        enabled=data.enabled,
        allow_private=runtime_of(request).settings.allow_private_webhooks,
    )
    return _created(request, actor, helpdesk, 0, helpdesk.signing_secret)


@router.get(
    "/helpdesks/{helpdesk_id}",
    summary="Get a helpdesk",
    response_model=HelpdeskRead,
    responses=errors(401, 403, 404),
)
async def get_helpdesk(helpdesk_id: str, request: Request, session: Tx, actor: ApiReader) -> HelpdeskRead:
    """One helpdesk; its webhook URL for admins only."""
    return await _one(request, session, actor, await helpdesks.get_helpdesk(session, helpdesk_id))


@router.patch(
    "/helpdesks/{helpdesk_id}",
    summary="Change a helpdesk",
    response_model=HelpdeskRead,
    responses=errors(401, 403, 404, 422),
)
async def update_helpdesk(
    helpdesk_id: str, data: HelpdeskPatch, request: Request, session: Tx, actor: ApiAdmin
) -> HelpdeskRead:
    """Change its name, API address, credentials, signing secret or whether it is enabled (admins only)."""
    helpdesk = await helpdesks.get_helpdesk(session, helpdesk_id)
    await helpdesks.update_helpdesk(
        session,
        actor,
        helpdesk,
        name=data.name,
        api_base_url=data.api_base_url,
        signing_secret=data.signing_secret,
        api_user=data.api_user,
        api_token=data.api_token,
        enabled=data.enabled,
        allow_private=runtime_of(request).settings.allow_private_webhooks,
    )
    return await _one(request, session, actor, helpdesk)


@router.post(
    "/helpdesks/{helpdesk_id}/rotate",
    summary="Rotate a helpdesk's webhook URL",
    response_model=HelpdeskRead,
    responses=errors(401, 403, 404),
)
async def rotate_token(helpdesk_id: str, request: Request, session: Tx, actor: ApiAdmin) -> HelpdeskRead:
    """A new webhook URL: the old one stops working at once (admins only)."""
    helpdesk = await helpdesks.get_helpdesk(session, helpdesk_id)
    await helpdesks.rotate_token(session, actor, helpdesk)
    return await _one(request, session, actor, helpdesk)


@router.post(
    "/helpdesks/{helpdesk_id}/rotate-secret",
    summary="Make a new signing secret",
    response_model=HelpdeskCreated,
    responses=errors(401, 403, 404),
)
async def rotate_secret(helpdesk_id: str, request: Request, session: Tx, actor: ApiAdmin) -> HelpdeskCreated:
    """crisisdesk makes a new signing secret and shows it this once; requests signed with the old one are
    refused at once. For Freshdesk; Zendesk and Intercom make their own secrets, set them with PATCH."""
    helpdesk = await helpdesks.get_helpdesk(session, helpdesk_id)
    secret = await helpdesks.rotate_secret(session, actor, helpdesk)
    counts = await helpdesks.ticket_counts(session)
    return _created(request, actor, helpdesk, counts.get(helpdesk.id, 0), secret)


@router.delete(
    "/helpdesks/{helpdesk_id}",
    summary="Disconnect a helpdesk",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={204: {"description": "Disconnected.", "content": {}}, **errors(401, 403, 404, 409)},
)
async def delete_helpdesk(helpdesk_id: str, session: Tx, actor: ApiAdmin) -> Response:
    """Disconnect a helpdesk no ticket came from (admins only); one with tickets can be disabled instead."""
    await helpdesks.delete_helpdesk(session, actor, await helpdesks.get_helpdesk(session, helpdesk_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
