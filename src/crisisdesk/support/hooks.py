"""Tickets from helpdesk webhooks: ``POST /support/hooks/{token}`` in each vendor's format.

The token in the URL finds the helpdesk (an unknown or disabled one is 404); the signature
proves the request came from it, and nothing is read or stored before it is checked:

- Zendesk signs ``timestamp + body`` with HMAC-SHA256 (``X-Zendesk-Webhook-Signature``, base64;
  ``X-Zendesk-Webhook-Signature-Timestamp``); a timestamp more than five minutes away from now
  is refused, so a captured request cannot be replayed later.
- Freshdesk cannot sign, so it sends the helpdesk's secret back: ``Authorization: Bearer
  <secret>`` as a custom header, or Basic authentication with the secret as the password.
- Intercom signs the body with HMAC-SHA1 under the app's client secret (``X-Hub-Signature:
  sha1=<hex>``).

A bad or missing signature is 401 naming the header. The body is then read by hand: a Zendesk
trigger's JSON (the body the admin writes, see :data:`helpdesks.ZENDESK_TRIGGER_BODY`) or a
Zendesk ``ticket.created`` event; a Freshdesk rule's JSON (advanced, or the simple
``freshdesk_webhook`` shape); an Intercom ``conversation.user.created`` or ``.replied``
notification, and its ``ping``. A malformed body is 400 naming the field. Each ticket goes to
:func:`crisisdesk.support.tickets.receive`; a redelivery of the same ticket id answers
``duplicate`` and stores nothing new. Other events are answered ``ignored`` (200), so the
helpdesk does not retry them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import Headers

from crisisdesk.kit import metrics
from crisisdesk.kit.errors import InvalidInput
from crisisdesk.kit.runtime import Runtime, runtime_of
from crisisdesk.kit.time import utc_time, utcnow
from crisisdesk.support import helpdesks, tickets
from crisisdesk.support.checks import check_email
from crisisdesk.support.models import Helpdesk, HelpdeskKind, TicketSource
from crisisdesk.support.plaintext import html_to_text, looks_like_html

log = logging.getLogger(__name__)

router = APIRouter(tags=["helpdesk webhooks"])

JSON = "application/json"
MAX_SKEW = timedelta(minutes=5)
MAX_SUBJECT = 1000
MAX_ID = 200
DERIVED_SUBJECT = 120
ZENDESK_SIGNATURE = "x-zendesk-webhook-signature"
ZENDESK_TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
INTERCOM_SIGNATURE = "x-hub-signature"
ZENDESK_TICKET_CREATED = "zen:event-type:ticket.created"
INTERCOM_TICKET_TOPICS = frozenset({"conversation.user.created", "conversation.user.replied"})


class HookReceived(BaseModel):
    """What one helpdesk delivery did."""

    status: str = Field(
        description="ok (a new ticket), duplicate (this ticket id arrived before; nothing new stored), "
        "ignored (an event that is not a new ticket) or pong (Intercom's ping)."
    )
    ticket_id: str | None = Field(default=None, description="The crisisdesk ticket, for ok and duplicate.")
    number: int | None = Field(default=None, description="Its ticket number.")
    detail: str | None = Field(default=None, description="Why an event was ignored.")


class HookErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. ['header', 'x-hub-signature'].")
    msg: str = Field(description="What is wrong.")
    type: str = Field(description="not_found, invalid_signature, invalid_json or invalid_payload.")


class HookError(BaseModel):
    detail: list[HookErrorDetail] = Field(description="The problems found.")


@dataclass(slots=True)
class Answer:
    status: int
    body: dict[str, Any]

    def response(self) -> Response:
        return Response(orjson.dumps(self.body), status_code=self.status, media_type=JSON)


def _problem(status: int, loc: tuple[str | int, ...], msg: str, kind: str) -> Answer:
    """A refused delivery, counted by reason so a helpdesk sending to a wrong URL or secret shows."""
    metrics.HELPDESK_WEBHOOKS_REFUSED.labels(reason=kind).inc()
    return Answer(status, {"detail": [{"loc": list(loc), "msg": msg, "type": kind}]})


HOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": HookError,
        "description": "The body is not JSON or not in the vendor's format; loc names the field.",
    },
    401: {"model": HookError, "description": "The signature (or Freshdesk's secret) is missing, wrong or stale."},
    404: {"model": HookError, "description": "No enabled helpdesk has this token."},
    413: {"model": HookError, "description": "The body is larger than CRISISDESK_MAX_BODY_BYTES."},
}


@router.post(
    "/support/hooks/{token}",
    summary="Receive a ticket (Zendesk, Freshdesk or Intercom webhook)",
    response_model=HookReceived,
    responses=HOOK_RESPONSES,
)
async def receive_hook(token: str, request: Request) -> Response:
    """A new ticket from the helpdesk whose secret token is in the URL, signed as that vendor signs.

    Zendesk: a trigger's JSON body or the ``ticket.created`` event; Freshdesk: an automation
    rule's JSON with the secret in ``Authorization``; Intercom: ``conversation.user.created`` or
    ``.replied`` (and ``ping``). A redelivered ticket id is answered ``duplicate``.
    """
    return (await answer_hook(runtime_of(request), token, request.headers, request.body)).response()


@router.head("/support/hooks/{token}", include_in_schema=False)
async def check_hook(token: str, request: Request) -> Response:
    """Intercom checks an endpoint with HEAD before saving it: 200 for an enabled helpdesk's URL."""
    async with runtime_of(request).db.sessionmaker() as session:
        helpdesk = await helpdesks.by_token(session, token)
    return Response(status_code=200 if helpdesk is not None and helpdesk.enabled else 404)


async def answer_hook(
    runtime: Runtime, token: str, headers: Headers | Mapping[str, str], read_body: Callable[[], Awaitable[bytes]]
) -> Answer:
    """Check, parse and store one delivery; the body is read only once the token names a helpdesk."""
    async with runtime.db.sessionmaker() as session:
        helpdesk = await helpdesks.by_token(session, token)
    if helpdesk is None or not helpdesk.enabled:
        return _problem(404, (), "no enabled helpdesk has this token", "not_found")
    lowered = {k.lower(): v for k, v in headers.items()}
    body = await read_body()
    refused = verify(helpdesk, lowered, body, now=utcnow())
    if refused is not None:
        log.warning("refused a %s webhook for helpdesk %s: %s", helpdesk.kind, helpdesk.id, refused.message)
        return _problem(401, ("header", refused.header), refused.message, "invalid_signature")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _problem(400, ("body",), f"the body is not valid JSON: {exc}", "invalid_json")
    try:
        event = parse(HelpdeskKind(helpdesk.kind), data)
    except PayloadError as exc:
        return _problem(400, ("body", *exc.loc), f"{exc.path}: {exc.message}", "invalid_payload")
    if isinstance(event, Skip):
        return Answer(200, {"status": event.status, "detail": event.reason})
    return await _store(runtime, helpdesk, event)


async def _store(runtime: Runtime, helpdesk: Helpdesk, event: TicketEvent) -> Answer:
    async def received(session: AsyncSession) -> None:
        await session.execute(update(Helpdesk).where(Helpdesk.id == helpdesk.id).values(last_received_at=utcnow()))

    stored = await tickets.store(
        runtime.db,
        runtime.settings,
        source=TicketSource(helpdesk.kind),
        helpdesk_id=helpdesk.id,
        external_id=event.external_id,
        also=received,
        subject=event.subject,
        body=event.body,
        requester_email=event.requester_email,
        requester_name=event.requester_name,
        org_id=event.org_id,
        account_external_id=event.account_external_id,
        created_at=event.created_at,
    )
    status = "ok" if stored.new else "duplicate"
    return Answer(200, {"status": status, "ticket_id": stored.ticket.id, "number": stored.ticket.number})


# --- signatures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    header: str
    message: str


def _equal(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "replace"))


def _timestamp(value: str) -> datetime | None:
    """ISO 8601 or Unix seconds, in UTC; None for anything else, or outside the years 1970 to 9000."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.fromtimestamp(float(value), UTC)
        except (ValueError, OverflowError, OSError):
            return None
    return utc_time(parsed)


def sign_zendesk(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's signature: base64 of HMAC-SHA256 over the timestamp followed by the body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _sign_zendesk_reversed(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign_intercom(secret: str, body: bytes) -> str:
    """Intercom's signature: ``sha1=`` and the hex HMAC-SHA1 of the body."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify(helpdesk: Helpdesk, headers: Mapping[str, str], body: bytes, *, now: datetime) -> Refusal | None:
    """Why this request is not from the helpdesk, or None when its signature holds (headers lower-cased)."""
    secret = helpdesk.signing_secret
    if helpdesk.kind == HelpdeskKind.zendesk:
        signature, stamp = headers.get(ZENDESK_SIGNATURE), headers.get(ZENDESK_TIMESTAMP)
        if not signature:
            return Refusal(ZENDESK_SIGNATURE, "missing: turn on signing for this Zendesk webhook")
        if not stamp:
            return Refusal(ZENDESK_TIMESTAMP, "missing: Zendesk sends it with every signed request")
        at = _timestamp(stamp)
        if at is None:
            return Refusal(ZENDESK_TIMESTAMP, f"{stamp[:40]!r} is not a time between the years 1970 and 9000")
        if abs(now - at) > MAX_SKEW:
            return Refusal(
                ZENDESK_TIMESTAMP,
                f"signed at {at.isoformat()}, more than {int(MAX_SKEW.total_seconds() // 60)} minutes from now: "
                "refused so a captured request cannot be replayed (check the clocks)",
            )
        # Zendesk's guide signs timestamp + body; its event-connector guide's worked example signs
        # body + timestamp. Either proves the secret, and a fresh timestamp is required either way.
        if not (
            _equal(sign_zendesk(secret, stamp, body), signature)
            or _equal(_sign_zendesk_reversed(secret, stamp, body), signature)
        ):
            return Refusal(ZENDESK_SIGNATURE, "does not match: paste this webhook's signing secret into crisisdesk")
        return None
    if helpdesk.kind == HelpdeskKind.freshdesk:
        given = _freshdesk_secret(headers.get("authorization", ""))
        if given is None:
            return Refusal("authorization", "missing: add the custom header 'Authorization: Bearer <signing secret>'")
        if not _equal(secret, given):
            return Refusal("authorization", "is not this helpdesk's signing secret")
        return None
    signature = headers.get(INTERCOM_SIGNATURE)
    if not signature:
        return Refusal(INTERCOM_SIGNATURE, "missing: Intercom signs every notification with the app's client secret")
    if not _equal(sign_intercom(secret, body), signature.lower()):
        return Refusal(INTERCOM_SIGNATURE, "does not match: paste the app's client secret into crisisdesk")
    return None


def _freshdesk_secret(authorization: str) -> str | None:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


# --- payloads ---------------------------------------------------------------------------------


class PayloadError(Exception):
    """A field of the body is missing or of the wrong kind; ``loc`` is its path."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message

    @property
    def path(self) -> str:
        return ".".join(str(part) for part in self.loc) or "body"


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """A new ticket as the helpdesk describes it."""

    external_id: str
    subject: str
    body: str
    requester_email: str | None = None
    requester_name: str | None = None
    org_id: str | None = None
    account_external_id: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """A valid delivery that makes no ticket."""

    status: str  # "ignored" or "pong"
    reason: str = field(default="")


def parse(kind: HelpdeskKind, data: Any) -> TicketEvent | Skip:
    """The ticket (or the reason there is none) in a delivery of this vendor's format."""
    root = _object(data, ())
    if kind == HelpdeskKind.zendesk:
        return _zendesk(root)
    if kind == HelpdeskKind.freshdesk:
        return _freshdesk(root)
    return _intercom(root)


def _object(value: Any, loc: tuple[str | int, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(loc, "must be a JSON object")
    return value


def _optional_object(data: Mapping[str, Any], key: str, loc: tuple[str | int, ...]) -> Mapping[str, Any]:
    value = data.get(key)
    return {} if value is None else _object(value, (*loc, key))


def _text(data: Mapping[str, Any], key: str, loc: tuple[str | int, ...]) -> str | None:
    """A string (numbers are written out, since helpdesks send ids either way); blank is None."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PayloadError((*loc, key), "must be a string")
    cleaned = str(value).replace("\x00", "\ufffd").strip()
    return cleaned or None


def _ticket_id(data: Mapping[str, Any], key: str, loc: tuple[str | int, ...]) -> str:
    value = _text(data, key, loc)
    if value is None:
        raise PayloadError((*loc, key), "the ticket's id is required")
    if len(value) > MAX_ID:
        raise PayloadError((*loc, key), f"must be at most {MAX_ID} characters")
    return value


def _email(value: str | None, loc: tuple[str | int, ...]) -> str | None:
    try:
        return check_email(value)
    except InvalidInput as exc:
        raise PayloadError(loc, exc.message) from None


def _when(value: Any) -> datetime | None:
    """A creation time in ISO 8601 or Unix seconds; anything else (an odd placeholder format) is ignored."""
    if isinstance(value, bool) or value is None:
        return None
    at = _timestamp(str(value)) if isinstance(value, (str, int, float)) else None
    if at is None:
        return None
    return min(at, utcnow())


def _body(value: str | None) -> str:
    if not value:
        return ""
    return html_to_text(value) if looks_like_html(value) else value


def _event(
    *,
    external_id: str,
    subject: str | None,
    body: str | None,
    subject_loc: tuple[str | int, ...],
    **rest: Any,
) -> TicketEvent:
    text = _body(body)
    title = (subject or "").strip()
    if not title and not text:
        raise PayloadError(subject_loc, "a ticket needs a subject or a description")
    if not title:
        first = text.strip().splitlines()[0]
        title = first if len(first) <= DERIVED_SUBJECT else first[: DERIVED_SUBJECT - 1] + "…"
    return TicketEvent(external_id=external_id, subject=title[:MAX_SUBJECT], body=text, **rest)


def _zendesk(root: Mapping[str, Any]) -> TicketEvent | Skip:
    kind = root.get("type")
    if isinstance(kind, str) and kind.startswith("zen:event-type:"):
        if kind != ZENDESK_TICKET_CREATED:
            return Skip("ignored", f"{kind} is not a new ticket")
        loc: tuple[str | int, ...] = ("detail",)
        detail = _object(root.get("detail"), loc)
        return _event(
            external_id=_ticket_id(detail, "id", loc),
            subject=_text(detail, "subject", loc),
            body=_text(detail, "description", loc),
            subject_loc=(*loc, "subject"),
            org_id=_text(detail, "organization_id", loc),
            created_at=_when(detail.get("created_at") or root.get("time")),
        )
    loc = ("ticket",)
    if "ticket" not in root:
        raise PayloadError(loc, "required: send the trigger's JSON body with a 'ticket' object (see the setup)")
    ticket = _object(root["ticket"], loc)
    requester = _optional_object(ticket, "requester", loc)
    organization = _optional_object(ticket, "organization", loc)
    return _event(
        external_id=_ticket_id(ticket, "id", loc),
        subject=_text(ticket, "subject", loc) or _text(ticket, "title", loc),
        body=_text(ticket, "description", loc),
        subject_loc=(*loc, "subject"),
        requester_email=_email(_text(requester, "email", (*loc, "requester")), (*loc, "requester", "email")),
        requester_name=_text(requester, "name", (*loc, "requester")),
        org_id=_text(organization, "id", (*loc, "organization")),
        account_external_id=_text(organization, "external_id", (*loc, "organization"))
        or _text(ticket, "account_external_id", loc),
        created_at=_when(ticket.get("created_at")),
    )


def _freshdesk(root: Mapping[str, Any]) -> TicketEvent:
    if "freshdesk_webhook" in root:
        loc: tuple[str | int, ...] = ("freshdesk_webhook",)
        simple = _object(root["freshdesk_webhook"], loc)
        email = _text(simple, "ticket_contact_email", loc) or _text(simple, "ticket_requester_email", loc)
        return _event(
            external_id=_ticket_id(simple, "ticket_id", loc),
            subject=_text(simple, "ticket_subject", loc),
            body=_text(simple, "ticket_description", loc),
            subject_loc=(*loc, "ticket_subject"),
            requester_email=_email(email, (*loc, "ticket_contact_email")),
            requester_name=_text(simple, "ticket_contact_name", loc) or _text(simple, "ticket_requester_name", loc),
            org_id=_text(simple, "ticket_company_id", loc) or _text(simple, "ticket_company_name", loc),
            created_at=_when(simple.get("ticket_created_at")),
        )
    loc = ("ticket",)
    if "ticket" not in root:
        raise PayloadError(loc, "required: send the rule's JSON body with a 'ticket' object (see the setup)")
    ticket = _object(root["ticket"], loc)
    requester = _optional_object(ticket, "requester", loc)
    company = _optional_object(ticket, "company", loc)
    return _event(
        external_id=_ticket_id(ticket, "id", loc),
        subject=_text(ticket, "subject", loc),
        body=_text(ticket, "description", loc),
        subject_loc=(*loc, "subject"),
        requester_email=_email(_text(requester, "email", (*loc, "requester")), (*loc, "requester", "email")),
        requester_name=_text(requester, "name", (*loc, "requester")),
        org_id=_text(company, "id", (*loc, "company")) or _text(company, "name", (*loc, "company")),
        account_external_id=_text(ticket, "account_external_id", loc),
        created_at=_when(ticket.get("created_at")),
    )


def _intercom(root: Mapping[str, Any]) -> TicketEvent | Skip:
    topic = root.get("topic")
    if not isinstance(topic, str) or not topic:
        raise PayloadError(("topic",), "required: an Intercom notification names its topic")
    if topic == "ping":
        return Skip("pong", "Intercom's test notification")
    if topic not in INTERCOM_TICKET_TOPICS:
        return Skip("ignored", f"the topic {topic} is not a customer's conversation")
    data = _object(root.get("data"), ("data",))
    loc: tuple[str | int, ...] = ("data", "item")
    item = _object(data.get("item"), loc)
    source = _optional_object(item, "source", loc)
    author = _optional_object(source, "author", (*loc, "source"))
    author_loc = (*loc, "source", "author")
    return _event(
        external_id=_ticket_id(item, "id", loc),
        subject=html_to_text(_text(source, "subject", (*loc, "source")) or ""),
        body=_text(source, "body", (*loc, "source")),
        subject_loc=(*loc, "source", "body"),
        requester_email=_email(_text(author, "email", author_loc), (*author_loc, "email")),
        requester_name=_text(author, "name", author_loc),
        created_at=_when(item.get("created_at")),
    )
