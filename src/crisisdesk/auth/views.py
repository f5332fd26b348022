"""Console pages for signing in and out, live updates, users and API keys."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from crisisdesk.auth import service
from crisisdesk.auth.deps import SESSION_COOKIE, ConsoleAdmin, ConsoleReader, Tx
from crisisdesk.auth.models import Role, Scope
from crisisdesk.kit.console import Failure, as_list, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.errors import DomainError, Forbidden, InvalidInput
from crisisdesk.kit.runtime import runtime_of

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "crisisdesk_csrf"
PING_SECONDS = 15.0


def _local_path(target: str | None) -> str:
    """Only same-site paths are followed after signing in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/console"
    return target


def _login_page(
    request: Request, token: str, *, next_path: str, email: str = "", error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    response = render(
        request,
        "login.html",
        actor=None,
        status_code=status_code,
        csrf_token=token,
        next_path=next_path,
        email=email,
        error=error,
    )
    settings = runtime_of(request).settings
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/login",
        max_age=3600,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    """The sign-in form; its CSRF token is a double-submit cookie since no session exists yet."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    return _login_page(request, token, next_path=_local_path(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, session: Tx) -> Response:
    """Check the password; on success open a session and go to the console."""
    values = await form_values(request)
    form = await request.form()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = str(form.get("csrf_token") or "")
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise Forbidden("the sign-in form expired; reload the page and try again")
    next_path = _local_path(text(values, "next"))
    email = text(values, "email")
    user = await service.authenticate(session, email=email, password=text(values, "password"))
    if user is None:
        return _login_page(
            request,
            cookie,
            next_path=next_path,
            email=email,
            status_code=400,
            error="The email or password is wrong, or the account is disabled.",
        )
    settings = runtime_of(request).settings
    token = await service.start_session(session, user, hours=settings.session_hours)
    response = see_other(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
        max_age=settings.session_hours * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, actor: ConsoleReader, session: Tx) -> Response:
    """End the session (the form's CSRF token is checked) and clear the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await service.end_session(session, token)
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/console/events")
async def events(request: Request, actor: ConsoleReader) -> StreamingResponse:
    """Server-Sent Events: one ``change`` event per set of changed topics, a ping every 15 s."""
    watcher = runtime_of(request).watcher
    queue = watcher.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 3000\n\n"
            while not await request.is_disconnected():
                try:
                    async with asyncio.timeout(PING_SECONDS):
                        topics = await queue.get()
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                yield b"event: change\ndata: " + orjson.dumps(sorted(topics)) + b"\n\n"
        finally:
            watcher.unsubscribe(queue)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def _users_page(
    request: Request, actor: service.Actor, session: Tx, *, failure: Failure | None = None, created: str | None = None
) -> HTMLResponse:
    users = await service.list_users(session)
    return render(
        request,
        "console/users.html",
        actor=actor,
        users=users,
        roles=list(Role),
        failure=failure,
        created=created,
        status_code=failure_status(failure),
    )


def failure_status(failure: Failure | None, default: int = 200) -> int:
    """The status of a page re-rendered for a refused form."""
    if failure is None:
        return default
    return int(failure.values.get("_status", 422))


@router.get("/console/users", response_class=HTMLResponse)
async def users_page(request: Request, actor: ConsoleAdmin, session: Tx) -> HTMLResponse:
    """Everyone who can sign in, and a form to add a user (admins only)."""
    return await _users_page(request, actor, session)


@router.post("/console/users", response_class=HTMLResponse)
async def create_user(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Add a user with a role and an initial password."""
    values = await form_values(request)
    try:
        try:
            role = Role(text(values, "role"))
        except ValueError:
            raise InvalidInput("choose a role: admin, responder or viewer", field="role") from None
        password = text(values, "password")
        if not password:
            raise InvalidInput("set an initial password of at least 8 characters", field="password")
        user = await service.create_user(
            session, email=text(values, "email"), name=text(values, "name"), role=role, password=password
        )
    except DomainError as exc:
        await discard(session)
        values.pop("password", None)
        return await _users_page(request, actor, session, failure=failure_of(exc, "user", values))
    return await _users_page(request, actor, session, created=f"{user.name} ({user.email}) can now sign in.")


async def _keys_page(
    request: Request, actor: service.Actor, session: Tx, *, failure: Failure | None = None, secret: str | None = None
) -> HTMLResponse:
    keys = await service.list_api_keys(session, actor)
    users = {u.id: u for u in await service.list_users(session)}
    scopes = [s for s in Scope if actor.can(s)]
    status_code = failure_status(failure, 201 if secret else 200)
    return render(
        request,
        "console/api_keys.html",
        actor=actor,
        keys=keys,
        users=users,
        scopes=scopes,
        failure=failure,
        secret=secret,
        status_code=status_code,
    )


@router.get("/console/api-keys", response_class=HTMLResponse)
async def api_keys_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Your API keys (every key for admins) and a form to create one."""
    return await _keys_page(request, actor, session)


@router.post("/console/api-keys", response_class=HTMLResponse)
async def create_api_key(request: Request, actor: ConsoleReader, session: Tx) -> Response:
    """Create a key; its secret is shown on this one page and never again."""
    values = await form_values(request)
    try:
        name = text(values, "name").strip()
        if not name or len(name) > 200:
            raise InvalidInput("give the key a name of 1 to 200 characters", field="name")
        scopes = []
        for raw in as_list(values.get("scopes")):
            try:
                scopes.append(Scope(raw))
            except ValueError:
                raise InvalidInput(f"{raw!r} is not a scope; use read, write or admin", field="scopes") from None
        _, secret = await service.create_api_key(session, actor, name=name, scopes=scopes)
    except DomainError as exc:
        await discard(session)
        return await _keys_page(request, actor, session, failure=failure_of(exc, "key", values))
    return await _keys_page(request, actor, session, secret=secret)


@router.post("/console/api-keys/{key_id}/revoke")
async def revoke_api_key(request: Request, key_id: str, actor: ConsoleReader, session: Tx) -> Response:
    """Revoke a key: yours, or anyone's for an admin."""
    await service.revoke_api_key(session, actor, key_id)
    return see_other("/console/api-keys")
