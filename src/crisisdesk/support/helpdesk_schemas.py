"""API shapes for connected helpdesks."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.support.models import HelpdeskKind

API_BASE_URL_HELP = (
    "The helpdesk's API address: https://<subdomain>.zendesk.com, https://<domain>.freshdesk.com, or "
    "https://api.intercom.io (the default for Intercom). Checked like a webhook URL: https, public addresses only."
)
SIGNING_HELP = (
    "How crisisdesk knows a webhook came from this helpdesk: Zendesk's webhook signing secret, Intercom's app "
    "client secret, or for Freshdesk any secret (crisisdesk makes one when omitted) that Freshdesk sends back in "
    "'Authorization: Bearer <secret>'. 16 to 200 characters. Never shown again after it is set."
)
API_USER_HELP = "Zendesk: the agent's email the API token belongs to. Intercom: the admin id replies are written as."
API_KEY_HELP = "The API token crisisdesk replies with (Zendesk API token, Freshdesk API key, Intercom access token)."


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HelpdeskCreate(_Input):
    """Connect a helpdesk; crisisdesk makes its webhook URL."""

    kind: str = Field(description="zendesk, freshdesk or intercom.")
    name: str = Field(description="What it is, e.g. 'Zendesk (acme)'.")
    api_base_url: str | None = Field(default=None, description=API_BASE_URL_HELP)
    signing_secret: str | None = Field(default=None, description=SIGNING_HELP)
    api_user: str | None = Field(default=None, description=API_USER_HELP)
    api_token: str | None = Field(default=None, description=API_KEY_HELP)
    enabled: bool = Field(default=True, description="Whether its webhooks are accepted.")


class HelpdeskPatch(_Input):
    """Change a helpdesk; omitted fields stay, an empty api_user or api_token clears it. The kind cannot change."""

    name: str | None = Field(default=None, description="The new name.")
    api_base_url: str | None = Field(default=None, description=API_BASE_URL_HELP)
    signing_secret: str | None = Field(default=None, description=SIGNING_HELP)
    api_user: str | None = Field(default=None, description=API_USER_HELP)
    api_token: str | None = Field(default=None, description=API_KEY_HELP)
    enabled: bool | None = Field(default=None, description="Whether its webhooks are accepted.")


class HelpdeskRead(BaseModel):
    """A connected helpdesk. Its secrets are never shown; its webhook URL to admins only."""

    id: str = Field(description="Helpdesk id.")
    kind: HelpdeskKind = Field(description="zendesk, freshdesk or intercom.")
    name: str = Field(description="Its name.")
    webhook_url: str | None = Field(description="Where the helpdesk posts new tickets (admins only; secret).")
    api_base_url: str = Field(description="Where crisisdesk sends replies.")
    api_user: str | None = Field(description=API_USER_HELP)
    has_api_token: bool = Field(description="Whether an API token is set, so replies can go through the helpdesk.")
    signing_secret_hint: str | None = Field(
        description="The signing secret's last four characters, to compare with the helpdesk's (admins only)."
    )
    enabled: bool = Field(description="Whether its webhooks are accepted.")
    created_at: datetime = Field(description="When it was connected.")
    last_received_at: datetime | None = Field(description="When it last sent a ticket.")
    tickets: int = Field(description="Tickets that came from it.")


class HelpdeskCreated(HelpdeskRead):
    """A helpdesk just connected, or its secret just made: the one time the signing secret is shown."""

    signing_secret: str = Field(description="The signing secret, shown this once. " + SIGNING_HELP)
