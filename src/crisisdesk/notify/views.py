"""Subscriber pages: public sign-up, confirmation, manage and unsubscribe; the console's list.

The public pages are rendered per request from the database (they are small and not part of
the snapshot) in the status page's look. They have no session, so their forms carry a signed,
time-limited form token instead of a CSRF token; the manage and unsubscribe links are
capabilities themselves (an unguessable token in the URL).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, CsrfFailed, Tx
from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.views import board
from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident
from crisisdesk.kit.console import Failure, as_list, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.errors import DomainError, InvalidInput, NotFound
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.notify import importing, subscribers
from crisisdesk.notify.addresses import shown_address
from crisisdesk.notify.models import SUBSCRIBER_CHANNELS, Channel, Subscriber, SubscriberState
from crisisdesk.statuspage import personal

router = APIRouter(include_in_schema=False)

FORM_TOKEN_HOURS = 24
CHANNEL_LABELS = {
    Channel.email: "Email",
    Channel.sms: "Text message (SMS)",
    Channel.webhook: "Webhook",
    Channel.slack: "Slack",
    Channel.teams: "Microsoft Teams",
}
PAGE_SIZE = 50


# ---------------------------------------------------------------------------- form tokens


def _sign(settings: Settings, message: str) -> str:
    return hmac.new(settings.secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()[:32]


def form_token(settings: Settings, purpose: str, *, now: float | None = None) -> str:
    """A token proving the form came from this site's page, for ``purpose``, at most a day ago."""
    issued = int(now if now is not None else time.time())
    return f"{issued}.{_sign(settings, f'form|{purpose}|{issued}')}"


def check_form(request: Request, settings: Settings, purpose: str, token: str) -> None:
    """Refuse a public form that did not come from this site's page (cross-site or replayed)."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        allowed = {urlsplit(settings.base_url).netloc, request.url.netloc}
        if urlsplit(origin).netloc not in allowed:
            raise CsrfFailed("this form was sent from another site", field="form_token")
    issued_text, _, signature = token.partition(".")
    # isascii(): isdigit() also takes "²", which int() refuses.
    fresh = (
        issued_text.isascii()
        and issued_text.isdigit()
        and len(issued_text) <= 12
        and 0 <= time.time() - int(issued_text) <= FORM_TOKEN_HOURS * 3600
    )
    expected = _sign(settings, f"form|{purpose}|{issued_text}")
    if not fresh or not hmac.compare_digest(signature, expected):
        raise CsrfFailed("this form has expired; it was reloaded, please send it again", field="form_token")


def sms_ref(settings: Settings, subscriber: Subscriber) -> str:
    """An opaque reference to a subscriber's code page; it does not reveal the manage token."""
    return f"{subscriber.id}.{_sign(settings, f'sms|{subscriber.id}')[:20]}"


async def _by_sms_ref(session: AsyncSession, settings: Settings, ref: str) -> Subscriber:
    subscriber_id, _, signature = ref.partition(".")
    if not hmac.compare_digest(signature, _sign(settings, f"sms|{subscriber_id}")[:20]):
        raise NotFound("this confirmation page is unknown", field="token")
    try:
        return await subscribers.get_subscriber(session, subscriber_id)
    except NotFound:
        raise NotFound("this confirmation page is unknown", field="token") from None


# ---------------------------------------------------------------------------- public pages


# Personal pages (tokens in links, secrets shown once): never cached, never sent on as a referrer.
_PAGE_HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer"}


def _page(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    return personal.render(
        request,
        name,
        active="subscribe",
        headers=_PAGE_HEADERS,
        status_code=status_code,
        labels=CHANNEL_LABELS,
        **context,
    )


def _missing(request: Request, exc: NotFound) -> HTMLResponse:
    return _page(request, "status/subscription_missing.html", status_code=404, message=exc.message)


async def _subscribe_form(
    request: Request,
    session: AsyncSession,
    *,
    values: dict[str, Any],
    failure: Failure | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    settings = runtime_of(request).settings
    incident: Incident | None = None
    incident_id = text(values, "incident")
    if incident_id:
        try:
            incident = await subscribers.check_open_incident(session, incident_id)
        except InvalidInput as exc:
            if failure is None:
                notice, values = exc.message, {k: v for k, v in values.items() if k != "incident"}
    return _page(
        request,
        "status/subscribe.html",
        status_code=200 if failure is None else int(failure.values.get("_status", 422)),
        values=values,
        failure=failure,
        notice=notice,
        incident=incident,
        board=board(await catalog.list_components(session)),
        channels=SUBSCRIBER_CHANNELS,
        form_token=form_token(settings, "subscribe"),
    )


@router.get("/subscribe", response_class=HTMLResponse)
async def subscribe_page(request: Request, session: Tx) -> HTMLResponse:
    """The sign-up form: a channel, an address, and everything, chosen components or one incident."""
    values = {
        "channel": request.query_params.get("channel", "email"),
        "incident": request.query_params.get("incident", ""),
        "scope": "all",
    }
    return await _subscribe_form(request, session, values=values)


def _chosen_components(values: dict[str, Any]) -> list[str]:
    if text(values, "incident") or text(values, "scope") != "components":
        return []
    chosen = as_list(values.get("components"))
    if not chosen:
        raise InvalidInput("choose at least one component, or all updates", field="components")
    return chosen


def _client_ip(request: Request) -> str | None:
    """The visitor's address: behind N trusted proxies, the Nth X-Forwarded-For entry from the right."""
    hops = runtime_of(request).settings.proxy_hops
    if hops:
        # Entries further left were written by the client itself and cannot be trusted.
        forwarded = [p.strip() for p in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if p.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops][:64]
    return request.client.host if request.client else None


@router.post("/subscribe", response_class=HTMLResponse)
async def subscribe(request: Request, session: Tx) -> Response:
    """Sign up; the answer is the same whether or not the address was subscribed already."""
    settings = runtime_of(request).settings
    values = await form_values(request)
    values["components"] = as_list(values.get("components"))
    try:
        check_form(request, settings, "subscribe", text(values, "form_token"))
        result = await subscribers.subscribe(
            session,
            settings,
            channel=text(values, "channel"),
            address=text(values, "address"),
            components=_chosen_components(values),
            incident_id=text(values, "incident") or None,
            client_ip=_client_ip(request),
        )
    except DomainError as exc:
        await discard(session)
        return await _subscribe_form(request, session, values=values, failure=failure_of(exc, "subscribe", values))
    subscriber = result.subscriber
    if subscriber.channel == Channel.sms:
        return see_other(f"/subscribe/sms/{sms_ref(settings, subscriber)}")
    # Only the creator of a webhook subscription gets its manage link: re-submitting someone
    # else's URL must not hand over the means to change or end their subscription.
    opt_in = subscriber.channel in subscribers.OPT_IN_CHANNELS
    manage = subscribers.manage_url(settings, subscriber) if result.created and not opt_in else None
    return _page(
        request,
        "status/subscribe_done.html",
        channel=Channel(subscriber.channel),
        address=subscriber.address,
        secret=result.secret,
        created=result.created,
        manage=manage,
    )


async def _code_page(
    request: Request, subscriber: Subscriber, ref: str, *, failure: Failure | None = None
) -> HTMLResponse:
    settings = runtime_of(request).settings
    return _page(
        request,
        "status/subscribe_sms.html",
        status_code=200 if failure is None else int(failure.values.get("_status", 422)),
        number=subscriber.address,
        ref=ref,
        failure=failure,
        form_token=form_token(settings, f"sms|{ref}"),
    )


@router.get("/subscribe/sms/{ref}", response_class=HTMLResponse)
async def sms_code_page(request: Request, ref: str, session: Tx) -> HTMLResponse:
    """Where the code sent by SMS is typed in."""
    try:
        subscriber = await _by_sms_ref(session, runtime_of(request).settings, ref)
    except NotFound as exc:
        return _missing(request, exc)
    return await _code_page(request, subscriber, ref)


@router.post("/subscribe/sms/{ref}", response_class=HTMLResponse)
async def sms_code(request: Request, ref: str, session: Tx) -> Response:
    """Check the code; the right one confirms the number and opens its manage page."""
    settings = runtime_of(request).settings
    values = await form_values(request)
    try:
        subscriber = await _by_sms_ref(session, settings, ref)
    except NotFound as exc:
        return _missing(request, exc)
    try:
        check_form(request, settings, f"sms|{ref}", text(values, "form_token"))
        await subscribers.confirm_sms(session, subscriber.token, text(values, "code"))
    except DomainError as exc:
        # No rollback: a wrong code's try must be counted (the transaction commits it).
        return await _code_page(request, subscriber, ref, failure=failure_of(exc, "code", values))
    return see_other(f"/subscriptions/{subscriber.token}?confirmed=1")


@router.get("/subscriptions/{token}/confirm", response_class=HTMLResponse)
async def confirm(request: Request, token: str, session: Tx) -> HTMLResponse:
    """The double opt-in link of a confirmation email."""
    try:
        subscriber = await subscribers.confirm(session, token)
    except NotFound as exc:
        return _missing(request, exc)
    return _page(
        request,
        "status/subscription_confirmed.html",
        subscriber=subscriber,
        manage=subscribers.manage_url(runtime_of(request).settings, subscriber),
    )


async def _manage_page(
    request: Request,
    session: AsyncSession,
    subscriber: Subscriber,
    *,
    failure: Failure | None = None,
    message: str | None = None,
) -> HTMLResponse:
    settings = runtime_of(request).settings
    incident = await session.get(Incident, subscriber.incident_id) if subscriber.incident_id else None
    if failure is not None:
        values = failure.values
    else:
        values = {"scope": str(subscriber.scope), "components": subscribers.component_ids(subscriber)}
    return _page(
        request,
        "status/subscription.html",
        status_code=200 if failure is None else int(failure.values.get("_status", 422)),
        subscriber=subscriber,
        incident=incident,
        values=values,
        failure=failure,
        message=message,
        board=board(await catalog.list_components(session)),
        form_token=form_token(settings, f"manage|{subscriber.token}"),
    )


@router.get("/subscriptions/{token}", response_class=HTMLResponse)
async def manage_page(request: Request, token: str, session: Tx) -> HTMLResponse:
    """Manage a subscription: what it follows, and a way out."""
    try:
        subscriber = await subscribers.get_by_token(session, token)
    except NotFound as exc:
        return _missing(request, exc)
    message = None
    if request.query_params.get("confirmed"):
        message = "Your subscription is confirmed."
    elif request.query_params.get("saved"):
        message = "Your choices are saved."
    return await _manage_page(request, session, subscriber, message=message)


@router.post("/subscriptions/{token}", response_class=HTMLResponse)
async def manage(request: Request, token: str, session: Tx) -> Response:
    """Save what the subscription follows: everything, or chosen components."""
    settings = runtime_of(request).settings
    values = await form_values(request)
    values["components"] = as_list(values.get("components"))
    try:
        subscriber = await subscribers.get_by_token(session, token)
    except NotFound as exc:
        return _missing(request, exc)
    try:
        check_form(request, settings, f"manage|{token}", text(values, "form_token"))
        everything = text(values, "scope") != "components"
        await subscribers.update_subscription(session, token, components=None if everything else values["components"])
    except DomainError as exc:
        await discard(session)
        subscriber = await subscribers.get_by_token(session, token)
        return await _manage_page(request, session, subscriber, failure=failure_of(exc, "manage", values))
    return see_other(f"/subscriptions/{token}?saved=1")


@router.get("/subscriptions/{token}/unsubscribe", response_class=HTMLResponse)
async def unsubscribe_page(request: Request, token: str, session: Tx) -> HTMLResponse:
    """Ask before unsubscribing: mail scanners follow links, so a GET never unsubscribes."""
    try:
        subscriber = await subscribers.get_by_token(session, token)
    except NotFound as exc:
        return _missing(request, exc)
    return _page(request, "status/subscription_unsubscribe.html", subscriber=subscriber, done=False)


@router.post("/subscriptions/{token}/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(request: Request, token: str, session: Tx) -> HTMLResponse:
    """Unsubscribe: the page's button, or a mail client's RFC 8058 one-click POST (no login, no form token)."""
    try:
        subscriber = await subscribers.unsubscribe(session, token)
    except NotFound as exc:
        return _missing(request, exc)
    return _page(request, "status/subscription_unsubscribe.html", subscriber=subscriber, done=True)


# ---------------------------------------------------------------------------- console


def _int(value: str | None, default: int) -> int:
    # Nine digits at most: longer ones overflow the database's offset, or int() itself past 4,300.
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 9 else default


async def _console_page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    *,
    failure: Failure | None = None,
    added: subscribers.SubscribeResult | None = None,
    report: importing.ImportReport | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    query = request.query_params
    search, channel, state = query.get("q", ""), query.get("channel", ""), query.get("state", "")
    page_number = max(1, _int(query.get("page"), 1))
    try:
        listing = await subscribers.list_subscribers(
            session,
            search=search,
            channel=channel or None,
            state=state or None,
            limit=PAGE_SIZE,
            offset=(page_number - 1) * PAGE_SIZE,
            search_secrets=actor.can(Scope.admin),
        )
    except InvalidInput:
        listing = await subscribers.list_subscribers(
            session, search=search, limit=PAGE_SIZE, search_secrets=actor.can(Scope.admin)
        )
        channel = state = ""
    quarantined = await subscribers.list_subscribers(session, state=SubscriberState.quarantined, limit=100)
    components = await catalog.list_components(session)
    if failure is not None:
        status_code = int(failure.values.get("_status", 422))
    return render(
        request,
        "console/subscribers.html",
        actor=actor,
        section="subscribers",
        counts=await subscribers.counts_by_channel(session),
        listing=listing,
        quarantined=quarantined.items,
        filters={"q": search, "channel": channel, "state": state},
        page_number=page_number,
        pages=max(1, -(-listing.total // PAGE_SIZE)),
        board=board(components),
        names={c.id: c.name for c in components},
        channels=SUBSCRIBER_CHANNELS,
        labels=CHANNEL_LABELS,
        shown_address=shown_address,
        states=list(SubscriberState),
        failure=failure,
        added=added,
        report=report,
        status_code=status_code,
    )


@router.get("/console/subscribers", response_class=HTMLResponse)
async def console_subscribers(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Counts per channel and state, quarantined subscribers, and a searchable list."""
    return await _console_page(request, actor, session)


@router.post("/console/subscribers", response_class=HTMLResponse)
async def console_add(request: Request, actor: ConsoleAdmin, session: Tx) -> HTMLResponse:
    """Add one subscriber, active at once (admins)."""
    settings = runtime_of(request).settings
    values = await form_values(request)
    values["components"] = as_list(values.get("components"))
    try:
        result = await subscribers.add(
            session,
            settings,
            channel=text(values, "channel"),
            address=text(values, "address"),
            components=values["components"],
        )
    except DomainError as exc:
        await discard(session)
        return await _console_page(request, actor, session, failure=failure_of(exc, "add", values))
    return await _console_page(request, actor, session, added=result, status_code=201)


@router.post("/console/subscribers/import", response_class=HTMLResponse)
async def console_import(request: Request, actor: ConsoleAdmin, session: Tx) -> HTMLResponse:
    """Import a CSV upload (admins); the report lists refused lines by number."""
    settings = runtime_of(request).settings
    form = await request.form()
    upload = form.get("file")
    values = {"pending": str(form.get("pending") or "")}
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInput("choose a CSV file to import", field="file")
        try:
            raw = await upload.read()
        finally:
            await form.close()  # the upload's spooled temporary file
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("the file is not UTF-8 text", field="file") from None
        report = await importing.import_rows(
            session, settings, csv.reader(io.StringIO(content, newline="")), confirmed=not values["pending"]
        )
    except (DomainError, csv.Error) as exc:
        await discard(session)
        error = exc if isinstance(exc, DomainError) else InvalidInput(f"the file is not valid CSV: {exc}", field="file")
        return await _console_page(request, actor, session, failure=failure_of(error, "import", values))
    return await _console_page(request, actor, session, report=report)


@router.post("/console/subscribers/{subscriber_id}/remove", response_class=HTMLResponse)
async def console_remove(request: Request, subscriber_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Delete a subscriber (admins)."""
    await subscribers.remove(session, subscriber_id)
    return see_other(_back(request))


@router.post("/console/subscribers/{subscriber_id}/reactivate", response_class=HTMLResponse)
async def console_reactivate(request: Request, subscriber_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Take a quarantined subscriber back into the fan-out (admins)."""
    await subscribers.reactivate(session, subscriber_id)
    return see_other(_back(request))


def _back(request: Request) -> str:
    """Back to the list the button was on (same filters), never to another site."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.path == "/console/subscribers" and referer.netloc in ("", request.url.netloc):
        return f"/console/subscribers?{referer.query}" if referer.query else "/console/subscribers"
    return "/console/subscribers"
