"""Request dependencies: the transaction and the acting user, for the API and the console."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth import service
from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.kit.errors import DomainError
from crisisdesk.kit.runtime import runtime_of

SESSION_COOKIE = "crisisdesk_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class NotAuthenticated(DomainError):
    status_code = 401


class LoginRequired(Exception):
    """A console page needs a signed-in user: answered with a redirect to the login page."""


class CsrfFailed(DomainError):
    status_code = 403


async def _transaction(request: Request) -> AsyncIterator[AsyncSession]:
    async with runtime_of(request).db.session() as session:
        yield session


# Function scope: the transaction commits when the endpoint returns, before the response goes out.
Tx = Annotated[AsyncSession, Depends(_transaction, scope="function")]


async def _api_actor(request: Request, session: Tx) -> Actor:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        actor = await service.actor_from_api_key(session, authorization[7:].strip())
        if actor is None:
            raise NotAuthenticated("the API key is unknown or revoked")
        return actor
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        actor = await service.actor_from_session(session, token)
        if actor is not None:
            if request.method not in SAFE_METHODS:
                check_csrf(actor, request.headers.get(CSRF_HEADER))
            return actor
    raise NotAuthenticated("send an API key as 'Authorization: Bearer <key>'")


async def _console_actor(request: Request, session: Tx) -> Actor:
    token = request.cookies.get(SESSION_COOKIE)
    actor = await service.actor_from_session(session, token) if token else None
    if actor is None:
        raise LoginRequired()
    if request.method not in SAFE_METHODS:
        form = await request.form()
        check_csrf(actor, str(form.get("csrf_token") or request.headers.get(CSRF_HEADER) or ""))
    return actor


def check_csrf(actor: Actor, token: str | None) -> None:
    if not token or not actor.csrf_token or not hmac.compare_digest(token, actor.csrf_token):
        raise CsrfFailed("the form's CSRF token is missing or stale; reload the page and try again")


def _scoped(base: Callable[..., Coroutine[Any, Any, Actor]], scope: Scope) -> Callable[..., Coroutine[Any, Any, Actor]]:
    async def dependency(actor: Actor) -> Actor:
        actor.require(scope)
        return actor

    # Set after definition: with postponed annotations FastAPI could not resolve the local ``base``.
    dependency.__annotations__["actor"] = Annotated[Actor, Depends(base)]
    return dependency


ApiReader = Annotated[Actor, Depends(_scoped(_api_actor, Scope.read))]
ApiWriter = Annotated[Actor, Depends(_scoped(_api_actor, Scope.write))]
ApiAdmin = Annotated[Actor, Depends(_scoped(_api_actor, Scope.admin))]
ConsoleReader = Annotated[Actor, Depends(_scoped(_console_actor, Scope.read))]
ConsoleWriter = Annotated[Actor, Depends(_scoped(_console_actor, Scope.write))]
ConsoleAdmin = Annotated[Actor, Depends(_scoped(_console_actor, Scope.admin))]
