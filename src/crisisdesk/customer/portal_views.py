"""Private status pages: sign-in by magic link or SSO header, the account's page, its subscriptions.

The pages wear the public page's look (the status page's templates) and hold the public page's
own content, taken from the snapshot this process serves, plus what concerns the signed-in
account only. They are rendered per request for one account, so they are never cached by
anyone but the visitor's browser (``Cache-Control: private, no-store``).

Signing in is two steps on purpose: the mailed link opens a page with a button, and only the
button's POST uses the link, because mail scanners fetch every link they see.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import Tx
from crisisdesk.auth.security import digest
from crisisdesk.config import Settings
from crisisdesk.customer import portal
from crisisdesk.customer.portal import Visitor
from crisisdesk.kit.console import discard, form_values, see_other, text
from crisisdesk.kit.errors import DomainError, Forbidden, NotFound
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.notify.views import check_form, form_token
from crisisdesk.statuspage import personal
from crisisdesk.statuspage.public import COMPONENT_LABELS
from crisisdesk.statuspage.store import SiteStore

router = APIRouter(include_in_schema=False)

COOKIE = "crisisdesk_portal"
COOKIE_PATH = "/private"
# What the page's own content sits in, in the snapshot's front page.
_MAIN = re.compile(rb'<main id="main"[^>]*>(.*)</main>', re.S)
# One account's page: kept by no shared cache, and its links (a sign-in token) sent on to nobody.
_PAGE_HEADERS = {"cache-control": "private, no-store", "referrer-policy": "no-referrer", "x-robots-tag": "noindex"}
NOTICES = {
    "subscribed": "The address now receives updates.",
    "confirm": "We sent a message to the address: the subscription starts once its owner confirms it.",
    "unsubscribed": "The subscription has ended.",
}


def _page(
    request: Request,
    name: str,
    *,
    status_code: int = 200,
    cookie: str | None = None,
    visitor: Visitor | None = None,
    **context: Any,
) -> HTMLResponse:
    settings = runtime_of(request).settings
    response = personal.render(
        request,
        name,
        active="private",
        headers=_PAGE_HEADERS,
        status_code=status_code,
        visitor=visitor,
        csrf_token=portal.csrf_token(settings, visitor) if visitor else "",
        **context,
    )
    if cookie is not None:
        _set_cookie(response, settings, cookie)
    return response


def _set_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path=COOKIE_PATH,
        max_age=settings.portal_session_hours * 3600,
    )


def _message(request: Request, exc: DomainError, *, title: str, visitor: Visitor | None = None) -> HTMLResponse:
    return _page(
        request, "portal/message.html", status_code=exc.status_code, visitor=visitor, title=title, message=exc.message
    )


async def _sent_csrf(request: Request) -> str:
    # form_values() leaves the console's CSRF field out; the portal's forms carry theirs under the same name.
    return str((await request.form()).get("csrf_token") or "")


def _sso_email(request: Request, settings: Settings) -> str | None:
    """The address in the SSO header, when one is configured and the peer is a trusted proxy."""
    if not settings.portal_sso_header:
        return None
    value = request.headers.get(settings.portal_sso_header)
    if value is None or not portal.trusted_peer(settings, request.client.host if request.client else None):
        return None
    return value


async def _identify(request: Request, session: AsyncSession) -> tuple[Visitor | None, str | None]:
    """The signed-in visitor and, when a session was opened just now (SSO), its new cookie value.

    A trusted proxy's header speaks for the visitor on every request: a cookie for someone else
    (the proxy signed a different person in) gives way to it.
    """
    settings = runtime_of(request).settings
    visitor = await portal.visitor_of(session, request.cookies.get(COOKIE))
    vouched = _sso_email(request, settings)
    if vouched is None:
        return visitor, None
    if visitor is not None and visitor.email == portal.sso_address(vouched):
        return visitor, None
    return await portal.sign_in_sso(session, settings, email=vouched)


def _signin(
    request: Request,
    *,
    status_code: int = 200,
    email: str = "",
    error: str | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    settings = runtime_of(request).settings
    response = _page(
        request,
        "portal/signin.html",
        status_code=status_code,
        email=email,
        error=error,
        notice=notice,
        minutes=settings.portal_link_minutes,
        form_token=form_token(settings, "portal-login"),
    )
    if status_code == 401:
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


async def _signed_in(request: Request, session: AsyncSession) -> tuple[Visitor, str | None] | Response:
    """The visitor (and a new session's cookie), or the answer for someone who is not signed in.

    A GET goes to the sign-in page; a form sent without a session (an expired one, a forged
    cookie) is answered 401 with the sign-in form.
    """
    try:
        visitor, cookie = await _identify(request, session)
    except Forbidden as exc:
        return _message(request, exc, title="Not allowed")
    if visitor is None:
        if request.method == "GET":
            return see_other("/private")
        return _signin(request, status_code=401, notice="Sign in first: your session has ended.")
    return visitor, cookie


# ------------------------------------------------------------------------------- signing in


@router.get("/private", response_class=HTMLResponse)
async def signin_page(request: Request, session: Tx) -> Response:
    """The sign-in form (an email address); a signed-in visitor goes on to their page."""
    if request.query_params.get("signed_out"):
        # Not even the SSO header signs in again at once, or signing out would be impossible to see.
        return _signin(request, notice="You are signed out.")
    try:
        visitor, cookie = await _identify(request, session)
    except Forbidden as exc:
        return _message(request, exc, title="Not allowed")
    if visitor is None:
        return _signin(request)
    response = see_other("/private/status")
    if cookie is not None:
        _set_cookie(response, runtime_of(request).settings, cookie)
    return response


@router.post("/private/login", response_class=HTMLResponse)
async def request_link(request: Request, session: Tx) -> Response:
    """Mail a sign-in link; the answer is the same whether or not the address may sign in."""
    settings = runtime_of(request).settings
    values = await form_values(request)
    email = text(values, "email")
    try:
        check_form(request, settings, "portal-login", text(values, "form_token"))
        await portal.request_link(session, settings, email=email)
    except DomainError as exc:
        await discard(session)
        return _signin(request, status_code=exc.status_code, email=email, error=exc.message)
    return _page(request, "portal/sent.html", email=portal.check_email(email), minutes=settings.portal_link_minutes)


@router.get("/private/login/{token}", response_class=HTMLResponse)
async def link_page(request: Request, token: str, session: Tx) -> Response:
    """What the mailed link opens: a button that signs in (a GET never uses the link)."""
    settings = runtime_of(request).settings
    try:
        login = await portal.pending_link(session, token)
    except DomainError as exc:
        return _message(request, exc, title="This link does not work")
    return _page(
        request,
        "portal/confirm.html",
        email=login.email,
        token=token,
        form_token=form_token(settings, f"portal-link|{digest(token)[:16]}"),
    )


@router.post("/private/login/{token}", response_class=HTMLResponse)
async def use_link(request: Request, token: str, session: Tx) -> Response:
    """Use the link once: open a session (a cookie for /private) and show the account's page."""
    settings = runtime_of(request).settings
    values = await form_values(request)
    try:
        check_form(request, settings, f"portal-link|{digest(token)[:16]}", text(values, "form_token"))
        _, cookie = await portal.consume_link(session, settings, token)
    except DomainError as exc:
        return _message(request, exc, title="This link does not work")
    response = see_other("/private/status")
    _set_cookie(response, settings, cookie)
    return response


@router.post("/private/logout", response_class=HTMLResponse)
async def sign_out(request: Request, session: Tx) -> Response:
    """End the session; its cookie is cleared and worth nothing any more."""
    found = await _signed_in(request, session)
    if isinstance(found, Response):
        return found
    visitor, _ = found
    try:
        portal.check_csrf(runtime_of(request).settings, visitor, await _sent_csrf(request))
    except DomainError as exc:
        return _message(request, exc, title="Not signed out", visitor=visitor)
    await portal.end_session(session, visitor)
    response = see_other("/private?signed_out=1")
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


# ------------------------------------------------------------------------------- the page


def public_main(store: SiteStore) -> Markup | None:
    """The public front page's own content, as the snapshot this process serves has it."""
    entry = store.files.get("/")
    found = _MAIN.search(entry.body) if entry is not None else None
    return Markup(found.group(1).decode()) if found else None  # noqa: S704 - our own rendered snapshot


async def _status_page(
    request: Request,
    session: AsyncSession,
    visitor: Visitor,
    *,
    cookie: str | None = None,
    status_code: int = 200,
    error: DomainError | None = None,
    values: dict[str, Any] | None = None,
) -> HTMLResponse:
    page = await portal.account_page(session, visitor)
    store: SiteStore = request.app.state.site
    return _page(
        request,
        "portal/status.html",
        status_code=status_code,
        cookie=cookie,
        visitor=visitor,
        account=page,
        public=public_main(store),
        component_labels=COMPONENT_LABELS,
        recent_days=portal.RECENT_DAYS,
        notice=NOTICES.get(request.query_params.get("notice", "")),
        error=error,
        values=values or {"scope": "components" if page.components else "all", "address": visitor.email},
    )


@router.get("/private/status", response_class=HTMLResponse)
async def status_page(request: Request, session: Tx) -> Response:
    """The account's page: its components, incidents, notes and subscriptions, then the public page."""
    found = await _signed_in(request, session)
    if isinstance(found, Response):
        return found
    visitor, cookie = found
    return await _status_page(request, session, visitor, cookie=cookie)


@router.get("/private/notes/{note_id}", response_class=HTMLResponse)
async def note_page(request: Request, note_id: str, session: Tx) -> Response:
    """One note written for the account."""
    found = await _signed_in(request, session)
    if isinstance(found, Response):
        return found
    visitor, cookie = found
    try:
        note, incident_name = await portal.note_for(session, visitor, note_id)
    except NotFound as exc:
        return _message(request, exc, title="Note not found", visitor=visitor)
    return _page(request, "portal/note.html", cookie=cookie, visitor=visitor, note=note, incident_name=incident_name)


@router.post("/private/subscriptions", response_class=HTMLResponse)
async def subscribe(request: Request, session: Tx) -> Response:
    """Subscribe an address: the visitor's own at once, any other after it confirms."""
    found = await _signed_in(request, session)
    if isinstance(found, Response):
        return found
    visitor, cookie = found
    settings = runtime_of(request).settings
    values = await form_values(request)
    try:
        portal.check_csrf(settings, visitor, await _sent_csrf(request))
        done = await portal.subscribe(
            session, settings, visitor, address=text(values, "address"), scope=text(values, "scope") or "all"
        )
    except DomainError as exc:
        await discard(session)
        return await _status_page(
            request, session, visitor, cookie=cookie, status_code=exc.status_code, error=exc, values=values
        )
    response = see_other(f"/private/status?notice={'subscribed' if done.direct else 'confirm'}#subscriptions")
    if cookie is not None:
        _set_cookie(response, settings, cookie)
    return response


@router.post("/private/subscriptions/{subscriber_id}/delete", response_class=HTMLResponse)
async def unsubscribe(request: Request, subscriber_id: str, session: Tx) -> Response:
    """End one of the account's subscriptions."""
    found = await _signed_in(request, session)
    if isinstance(found, Response):
        return found
    visitor, cookie = found
    settings = runtime_of(request).settings
    try:
        portal.check_csrf(settings, visitor, await _sent_csrf(request))
        await portal.unsubscribe(session, visitor, subscriber_id)
    except DomainError as exc:
        title = "Subscription not found" if isinstance(exc, NotFound) else "Not unsubscribed"
        return _message(request, exc, title=title, visitor=visitor)
    response = see_other("/private/status?notice=unsubscribed#subscriptions")
    if cookie is not None:
        _set_cookie(response, settings, cookie)
    return response
