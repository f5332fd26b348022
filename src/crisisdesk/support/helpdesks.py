"""Connected helpdesks (Zendesk, Freshdesk, Intercom): add, change, rotate, delete, and their setup.

A helpdesk has two secrets. The token in its webhook URL (``/support/hooks/{token}``) only routes
a request to it; the signing secret authenticates every request (Zendesk's webhook signing
secret, Intercom's app client secret, or for Freshdesk, which cannot sign, a secret crisisdesk
makes and Freshdesk sends back in a header). The API token lets crisisdesk reply through the
helpdesk's own API. Every signed-in user reads the list; only admins see the URL, and nobody sees
the secrets again after they are set (the signing secret is shown once when crisisdesk makes it).
Every function writes rows and never commits.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.notify.addresses import check_webhook_url
from crisisdesk.support.models import Helpdesk, HelpdeskKind, Ticket

MAX_NAME = 200
MAX_SECRET = 200
MIN_SECRET = 16
MAX_API_USER = 320
MAX_API_TOKEN = 400
TOKEN_BYTES = 24  # secrets.token_urlsafe(24): 32 characters
SECRET_BYTES = 32
# Where each vendor's API lives when the admin gives no address (only Intercom has one address).
DEFAULT_API_URLS = {HelpdeskKind.intercom: "https://api.intercom.io"}
API_URL_EXAMPLES = {
    HelpdeskKind.zendesk: "https://acme.zendesk.com",
    HelpdeskKind.freshdesk: "https://acme.freshdesk.com",
    HelpdeskKind.intercom: "https://api.intercom.io",
}
KIND_LABELS = {HelpdeskKind.zendesk: "Zendesk", HelpdeskKind.freshdesk: "Freshdesk", HelpdeskKind.intercom: "Intercom"}


def new_token() -> str:
    """A fresh secret for a helpdesk's webhook URL (32 URL-safe characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_secret() -> str:
    """A fresh signing secret (43 URL-safe characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def parse_kind(value: str) -> HelpdeskKind:
    """zendesk, freshdesk or intercom."""
    try:
        return HelpdeskKind(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(k.value for k in HelpdeskKind)
        raise InvalidInput(
            f"{value!r} is not a helpdesk crisisdesk connects to; use one of: {allowed}", field="kind"
        ) from None


def _printable(value: str, *, field: str, what: str) -> None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput(f"the {what} must not contain control characters", field=field)


def check_name(name: str | None) -> str:
    """A trimmed name of 1 to 200 characters."""
    cleaned = (name or "").strip()
    if not cleaned:
        raise InvalidInput("the name must not be empty", field="name")
    if len(cleaned) > MAX_NAME:
        raise InvalidInput(f"the name must be at most {MAX_NAME} characters", field="name")
    _printable(cleaned, field="name", what="name")
    return cleaned


def check_secret(value: str) -> str:
    """A signing secret as the vendor shows it: 16 to 200 characters, no spaces."""
    secret = (value or "").strip()
    if len(secret) < MIN_SECRET:
        raise InvalidInput(
            f"the signing secret must be at least {MIN_SECRET} characters; paste it as the helpdesk shows it, "
            "or leave it empty to have crisisdesk make one",
            field="signing_secret",
        )
    if len(secret) > MAX_SECRET:
        raise InvalidInput(f"the signing secret must be at most {MAX_SECRET} characters", field="signing_secret")
    if any(ch.isspace() or ord(ch) < 32 for ch in secret):
        raise InvalidInput("the signing secret must not contain spaces or control characters", field="signing_secret")
    return secret


def check_api_user(kind: HelpdeskKind, value: str | None) -> str | None:
    """Zendesk: the agent's email the API token belongs to; Intercom: the admin id replies are written as."""
    cleaned = (value or "").strip()
    if not cleaned:
        return None
    if len(cleaned) > MAX_API_USER:
        raise InvalidInput(f"the API user must be at most {MAX_API_USER} characters", field="api_user")
    _printable(cleaned, field="api_user", what="API user")
    if kind == HelpdeskKind.zendesk:
        try:
            return validate_email(cleaned, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise InvalidInput(
                f"for Zendesk the API user is the email of the agent who owns the API token: {exc}", field="api_user"
            ) from None
    if kind == HelpdeskKind.intercom and not (cleaned.isascii() and cleaned.isdigit()):
        raise InvalidInput(
            "for Intercom the API user is the id of the admin replies are written as (digits, e.g. 814860)",
            field="api_user",
        )
    return cleaned


def check_api_token(value: str | None) -> str | None:
    cleaned = (value or "").strip()
    if not cleaned:
        return None
    if len(cleaned) > MAX_API_TOKEN:
        raise InvalidInput(f"the API token must be at most {MAX_API_TOKEN} characters", field="api_token")
    if any(ch.isspace() or ord(ch) < 32 for ch in cleaned):
        raise InvalidInput("the API token must not contain spaces or control characters", field="api_token")
    return cleaned


async def check_api_base_url(kind: HelpdeskKind, value: str | None, *, allow_private: bool) -> str:
    """The helpdesk's API address, checked like a webhook URL (https, public unless allowed), no trailing '/'."""
    raw = (value or "").strip()
    if not raw:
        default = DEFAULT_API_URLS.get(kind)
        if default is None:
            raise InvalidInput(
                f"enter your {KIND_LABELS[kind]} address, e.g. {API_URL_EXAMPLES[kind]}", field="api_base_url"
            )
        return default  # the vendor's own public address: nothing to check (nor to resolve offline)
    url = await check_webhook_url(raw, allow_private=allow_private, field="api_base_url")
    parts = urlsplit(url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput(
            "the API address is the scheme, host and an optional path prefix only: no query, fragment or login",
            field="api_base_url",
        )
    return url.rstrip("/")


def secret_hint(secret: str) -> str:
    """The last four characters, so an admin can tell which secret is set without seeing it."""
    return "…" + secret[-4:] if len(secret) >= MIN_SECRET else "…"


# --- reading ----------------------------------------------------------------------------------


async def list_helpdesks(session: AsyncSession) -> list[Helpdesk]:
    """Every connected helpdesk, by name."""
    return list(await session.scalars(select(Helpdesk).order_by(Helpdesk.name, Helpdesk.id)))


async def get_helpdesk(session: AsyncSession, helpdesk_id: str, *, field: str = "helpdesk_id") -> Helpdesk:
    """One helpdesk, or 404."""
    if "\x00" in helpdesk_id or len(helpdesk_id) > 64:
        raise NotFound("no helpdesk with that id", field=field)
    helpdesk = await session.get(Helpdesk, helpdesk_id)
    if helpdesk is None:
        raise NotFound(f"no helpdesk with id {helpdesk_id!r}", field=field)
    return helpdesk


async def by_token(session: AsyncSession, token: str) -> Helpdesk | None:
    """The helpdesk whose webhook URL carries this token (enabled or not)."""
    if not token or len(token) > 64 or "\x00" in token:
        return None
    helpdesk: Helpdesk | None = await session.scalar(select(Helpdesk).where(Helpdesk.token == token))
    return helpdesk


async def ticket_counts(session: AsyncSession) -> dict[str, int]:
    """Helpdesk id → how many tickets came from it."""
    rows = await session.execute(
        select(Ticket.helpdesk_id, func.count()).where(Ticket.helpdesk_id.is_not(None)).group_by(Ticket.helpdesk_id)
    )
    return {str(helpdesk_id): int(count) for helpdesk_id, count in rows.all()}


# --- writing ----------------------------------------------------------------------------------


async def create_helpdesk(
    session: AsyncSession,
    actor: Actor,
    *,
    kind: str,
    name: str,
    api_base_url: str | None = None,
    signing_secret: str | None = None,
    api_user: str | None = None,
    api_token: str | None = None,
    enabled: bool = True,
    allow_private: bool = False,
) -> Helpdesk:
    """Connect a helpdesk (admins only); without a signing secret crisisdesk makes one."""
    actor.require(Scope.admin)
    parsed = parse_kind(kind)
    helpdesk = Helpdesk(
        kind=parsed,
        name=check_name(name),
        token=new_token(),
        signing_secret=check_secret(signing_secret) if signing_secret and signing_secret.strip() else new_secret(),
        api_base_url=await check_api_base_url(parsed, api_base_url, allow_private=allow_private),
        api_user=check_api_user(parsed, api_user),
        api_token=check_api_token(api_token),
        enabled=bool(enabled),
    )
    session.add(helpdesk)
    await session.flush()
    return helpdesk


async def update_helpdesk(
    session: AsyncSession,
    actor: Actor,
    helpdesk: Helpdesk,
    *,
    name: str | None = None,
    api_base_url: str | None = None,
    signing_secret: str | None = None,
    api_user: str | None = None,
    api_token: str | None = None,
    enabled: bool | None = None,
    allow_private: bool = False,
) -> Helpdesk:
    """Change what is given (admins only). An empty API user or token clears it; None keeps it."""
    actor.require(Scope.admin)
    kind = HelpdeskKind(helpdesk.kind)
    if name is not None:
        helpdesk.name = check_name(name)
    if api_base_url is not None:
        helpdesk.api_base_url = await check_api_base_url(kind, api_base_url, allow_private=allow_private)
    if signing_secret is not None:
        helpdesk.signing_secret = check_secret(signing_secret)
    if api_user is not None:
        helpdesk.api_user = check_api_user(kind, api_user)
    if api_token is not None:
        helpdesk.api_token = check_api_token(api_token)
    if enabled is not None:
        helpdesk.enabled = bool(enabled)
    await session.flush()
    return helpdesk


async def rotate_token(session: AsyncSession, actor: Actor, helpdesk: Helpdesk) -> Helpdesk:
    """A new webhook URL: the old one answers 404 at once (admins only)."""
    actor.require(Scope.admin)
    helpdesk.token = new_token()
    await session.flush()
    return helpdesk


async def rotate_secret(session: AsyncSession, actor: Actor, helpdesk: Helpdesk) -> str:
    """A new signing secret made by crisisdesk (for Freshdesk's header); returns it, to be shown once."""
    actor.require(Scope.admin)
    helpdesk.signing_secret = new_secret()
    await session.flush()
    return helpdesk.signing_secret


async def delete_helpdesk(session: AsyncSession, actor: Actor, helpdesk: Helpdesk) -> None:
    """Disconnect a helpdesk that no ticket came from (admins only); otherwise disable it."""
    actor.require(Scope.admin)
    count = await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.helpdesk_id == helpdesk.id))
    if count:
        raise Conflict(
            f"{count} ticket(s) came from this helpdesk and are answered through it; disable it instead",
            field="helpdesk_id",
        )
    await session.delete(helpdesk)
    await session.flush()


# --- setup ------------------------------------------------------------------------------------


def webhook_url(base_url: str, helpdesk: Helpdesk) -> str:
    """Where the helpdesk posts (the token is part of it)."""
    return f"{base_url.rstrip('/')}/support/hooks/{helpdesk.token}"


ZENDESK_TRIGGER_BODY = """{
  "ticket": {
    "id": "{{ticket.id}}",
    "subject": "{{ticket.title}}",
    "description": "{{ticket.description}}",
    "created_at": "{{ticket.created_at_with_timestamp}}",
    "requester": {"email": "{{ticket.requester.email}}", "name": "{{ticket.requester.name}}"},
    "organization": {"external_id": "{{ticket.organization.external_id}}"}
  }
}"""

FRESHDESK_RULE_BODY = """{
  "ticket": {
    "id": "{{ticket.id}}",
    "subject": "{{ticket.subject}}",
    "description": "{{ticket.description}}",
    "requester": {"email": "{{ticket.contact.email}}", "name": "{{ticket.contact.name}}"},
    "company": {"name": "{{ticket.company.name}}"}
  }
}"""


def setup_text(base_url: str, helpdesk: Helpdesk, *, secret: str | None = None) -> str:
    """What to configure on the helpdesk's side, to copy and paste.

    ``secret`` is the signing secret when it may be shown (right after crisisdesk made it);
    otherwise the text names it without its value.
    """
    url = webhook_url(base_url, helpdesk)
    shown = secret or "<the signing secret shown when it was made; rotate it to see a new one>"
    if helpdesk.kind == HelpdeskKind.zendesk:
        return (
            "Zendesk Admin Center → Apps and integrations → Webhooks → Create webhook\n"
            "  Connect with: Trigger or automation\n"
            f"  Endpoint URL: {url}\n"
            "  Request method: POST    Request format: JSON    Authentication: None\n"
            "  Then open the webhook, reveal its Signing secret and paste it into crisisdesk\n"
            "  (PATCH signing_secret, or this page's Settings).\n\n"
            "Objects and rules → Business rules → Triggers → Add trigger\n"
            "  Conditions: Ticket Is Created\n"
            "  Actions: Notify active webhook → the webhook above, with this JSON body:\n\n"
            f"{ZENDESK_TRIGGER_BODY}\n\n"
            "Or subscribe the webhook to the event 'Ticket created' (zen:event-type:ticket.created);\n"
            "its tickets are matched to accounts by the Zendesk organization id (the account's\n"
            "helpdesk organisation id), since that event carries no requester email.\n\n"
            "Replies: API user = the agent's email, API token = Admin Center → Apps and integrations →\n"
            "Zendesk API → Add API token; API address = https://<subdomain>.zendesk.com\n"
        )
    if helpdesk.kind == HelpdeskKind.freshdesk:
        return (
            "Freshdesk Admin → Workflows → Automations → Ticket creation → New rule\n"
            "  Conditions: (what you want, e.g. Source is any)\n"
            "  Action: Trigger webhook\n"
            "    Request type: POST\n"
            f"    URL: {url}\n"
            "    Custom headers: (Freshdesk cannot sign requests; it sends this secret instead)\n"
            f"      Authorization: Bearer {shown}\n"
            "    (or tick 'Requires authentication', user 'crisisdesk', password = the secret)\n"
            "    Encoding: JSON    Content: Advanced, with this body:\n\n"
            f"{FRESHDESK_RULE_BODY}\n\n"
            "Accounts are matched by the requester's email (contact or domain), or by the company\n"
            "name set as the account's helpdesk organisation id.\n\n"
            "Replies: API token = Profile settings → View API key; API address = https://<domain>.freshdesk.com\n"
        )
    return (
        "Intercom Developer Hub → Your app → Configure → Webhooks\n"
        f"  Endpoint URL: {url}\n"
        "  (Intercom checks it with a HEAD request; crisisdesk answers it.)\n"
        "  Topics: conversation.user.created and conversation.user.replied\n"
        "  Intercom signs each notification with the app's Client secret (Basic information →\n"
        "  App credentials): paste it into crisisdesk as the signing secret.\n"
        "  'Send a test request' sends a ping, which crisisdesk answers.\n\n"
        "Replies: API token = the app's Access token (Authentication page); API user = the id of\n"
        "the admin replies are written as; API address = https://api.intercom.io (or your region's)\n"
    )
