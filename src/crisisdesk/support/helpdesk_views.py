"""Console pages for connected helpdesks: the list, connecting one, and its setup to copy.

Every signed-in user sees which helpdesks are connected and when they last sent a ticket; admins
see the webhook URL and the setup for the vendor, and change, rotate or disconnect. A signing
secret crisisdesk makes is shown on the page that made it, and never again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, Tx
from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.kit.console import Failure, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.errors import DomainError
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.support import helpdesks
from crisisdesk.support.models import HelpdeskKind

router = APIRouter(include_in_schema=False)


def _status_of(failure: Failure | None, default: int = 200) -> int:
    return default if failure is None else int(failure.values.get("_status", 422))


def _without_secrets(values: dict[str, Any]) -> dict[str, Any]:
    """A refused form comes back without the secrets typed into it."""
    return {k: v for k, v in values.items() if k not in ("signing_secret", "api_token")}


async def _list_page(
    request: Request, actor: Actor, session: AsyncSession, *, failure: Failure | None = None
) -> HTMLResponse:
    return render(
        request,
        "support/helpdesks.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        helpdesks=await helpdesks.list_helpdesks(session),
        counts=await helpdesks.ticket_counts(session),
        kinds=list(HelpdeskKind),
        labels=helpdesks.KIND_LABELS,
        examples=helpdesks.API_URL_EXAMPLES,
    )


@router.get("/console/helpdesks", response_class=HTMLResponse)
async def helpdesks_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Every connected helpdesk with its ticket count and last delivery; admins connect new ones."""
    return await _list_page(request, actor, session)


@router.post("/console/helpdesks", response_class=HTMLResponse)
async def create_helpdesk(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Connect a helpdesk and show its setup, with the signing secret this once."""
    values = await form_values(request)
    settings = runtime_of(request).settings
    try:
        helpdesk = await helpdesks.create_helpdesk(
            session,
            actor,
            kind=text(values, "kind"),
            name=text(values, "name"),
            api_base_url=text(values, "api_base_url"),
            signing_secret=text(values, "signing_secret") or None,
            api_user=text(values, "api_user"),
            api_token=text(values, "api_token"),
            allow_private=settings.allow_private_webhooks,
        )
    except DomainError as exc:
        await discard(session)
        failure = failure_of(exc, "helpdesk", _without_secrets(values))
        return await _list_page(request, actor, session, failure=failure)
    # A secret pasted from the vendor is the admin's already; one crisisdesk made is shown now.
    made = not text(values, "signing_secret").strip()
    return await _detail_page(request, actor, session, helpdesk.id, secret=helpdesk.signing_secret if made else None)


async def _detail_page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    helpdesk_id: str,
    *,
    failure: Failure | None = None,
    secret: str | None = None,
) -> HTMLResponse:
    helpdesk = await helpdesks.get_helpdesk(session, helpdesk_id)
    base_url = runtime_of(request).settings.base_url
    admin = actor.can(Scope.admin)
    return render(
        request,
        "support/helpdesk.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure, 201 if secret else 200),
        helpdesk=helpdesk,
        label=helpdesks.KIND_LABELS[HelpdeskKind(helpdesk.kind)],
        tickets=(await helpdesks.ticket_counts(session)).get(helpdesk.id, 0),
        url=helpdesks.webhook_url(base_url, helpdesk) if admin else None,
        setup=helpdesks.setup_text(base_url, helpdesk, secret=secret) if admin else None,
        hint=helpdesks.secret_hint(helpdesk.signing_secret) if admin else None,
        secret=secret,
    )


@router.get("/console/helpdesks/{helpdesk_id}", response_class=HTMLResponse)
async def helpdesk_page(request: Request, helpdesk_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One helpdesk: its webhook URL and what to configure on the vendor's side (admins)."""
    return await _detail_page(request, actor, session, helpdesk_id)


async def _on_helpdesk(
    request: Request, actor: Actor, session: AsyncSession, helpdesk_id: str, form: str, action: Any
) -> Response:
    helpdesk = await helpdesks.get_helpdesk(session, helpdesk_id)
    values = await form_values(request)
    try:
        done = await action(helpdesk, values)
    except DomainError as exc:
        await discard(session)
        failure = failure_of(exc, form, _without_secrets(values))
        return await _detail_page(request, actor, session, helpdesk_id, failure=failure)
    if isinstance(done, Response):
        return done
    return see_other(done or f"/console/helpdesks/{helpdesk_id}")


@router.post("/console/helpdesks/{helpdesk_id}", response_class=HTMLResponse)
async def update_helpdesk(request: Request, helpdesk_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Change the name, API address, credentials or signing secret; empty secret fields keep what is set."""
    settings = runtime_of(request).settings

    async def action(helpdesk: Any, values: dict[str, Any]) -> None:
        await helpdesks.update_helpdesk(
            session,
            actor,
            helpdesk,
            name=text(values, "name"),
            api_base_url=text(values, "api_base_url"),
            signing_secret=text(values, "signing_secret").strip() or None,
            api_user=text(values, "api_user"),
            api_token="" if values.get("clear_api_token") else (text(values, "api_token").strip() or None),
            enabled=bool(values.get("enabled")),
            allow_private=settings.allow_private_webhooks,
        )

    return await _on_helpdesk(request, actor, session, helpdesk_id, "helpdesk", action)


@router.post("/console/helpdesks/{helpdesk_id}/rotate", response_class=HTMLResponse)
async def rotate_token(request: Request, helpdesk_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """A new webhook URL; the old one stops working."""

    async def action(helpdesk: Any, values: dict[str, Any]) -> None:
        await helpdesks.rotate_token(session, actor, helpdesk)

    return await _on_helpdesk(request, actor, session, helpdesk_id, "rotate", action)


@router.post("/console/helpdesks/{helpdesk_id}/rotate-secret", response_class=HTMLResponse)
async def rotate_secret(request: Request, helpdesk_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """A new signing secret made by crisisdesk, shown on the page this once."""

    async def action(helpdesk: Any, values: dict[str, Any]) -> Response:
        secret = await helpdesks.rotate_secret(session, actor, helpdesk)
        page = await _detail_page(request, actor, session, helpdesk_id, secret=secret)
        page.status_code = 200
        return page

    return await _on_helpdesk(request, actor, session, helpdesk_id, "secret", action)


@router.post("/console/helpdesks/{helpdesk_id}/delete", response_class=HTMLResponse)
async def delete_helpdesk(request: Request, helpdesk_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Disconnect a helpdesk no ticket came from."""

    async def action(helpdesk: Any, values: dict[str, Any]) -> str:
        await helpdesks.delete_helpdesk(session, actor, helpdesk)
        return "/console/helpdesks"

    return await _on_helpdesk(request, actor, session, helpdesk_id, "delete", action)
