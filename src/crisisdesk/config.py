"""Settings, read from the environment (prefix ``CRISISDESK_``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_SECRET = "demo-secret-change-me"  # noqa: S105 - refused outside demo mode
# A delivery lease must outlast the longest send by this much: the worker's own 5 s guard past
# the timeout, and time to wait for a free slot and to record the result.
LEASE_MARGIN_SECONDS = 10.0


class Settings(BaseSettings):
    """Every setting crisisdesk reads; README.md documents each one."""

    model_config = SettingsConfigDict(env_prefix="CRISISDESK_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./crisisdesk.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    secret_key: str = Field(default=DEMO_SECRET, description="Signs tokens; must be changed outside demo mode.")
    demo: bool = Field(default=False, description="Demo mode allows the default secret key.")
    base_url: str = Field(default="http://127.0.0.1:8000", description="Public URL of this installation.")
    page_name: str = Field(default="Acme Cloud", description="Name shown on the status page.")
    page_time_zone: str = Field(default="Etc/UTC", description="Time zone of the status page.")
    secure_cookies: bool = Field(default=False, description="Mark session cookies Secure (set true behind HTTPS).")
    session_hours: int = Field(default=12, ge=1, description="Console session lifetime.")
    public_max_age: int = Field(default=30, ge=0, description="Cache-Control max-age of public paths.")
    public_swr: int = Field(default=60, ge=0, description="Cache-Control stale-while-revalidate of public paths.")
    poll_interval: float = Field(
        default=0.25,
        gt=0,
        description="Seconds between checks for changes made by other processes.",
    )
    run_workers: bool = Field(default=True, description="Run the background workers inside the web process.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body accepted.")

    # Email (SMTP through aiosmtplib).
    smtp_host: str = Field(default="localhost", description="SMTP server host.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP server port.")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        default="none", description="none, starttls (upgrade after connecting) or tls (implicit TLS, port 465)."
    )
    smtp_username: str | None = Field(default=None, description="SMTP login, if the server needs one.")
    smtp_password: str | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(default="Acme Cloud Status <status@example.com>", description="Sender of every email.")
    smtp_timeout: float = Field(default=30, gt=0, description="Seconds before an SMTP exchange times out.")
    smtp_connections: int = Field(default=20, ge=1, le=500, description="SMTP connections kept open per worker.")
    # SMS through the Twilio REST API (or anything that speaks it).
    twilio_base_url: str = Field(default="https://api.twilio.com", description="Twilio API base URL.")
    twilio_account_sid: str | None = Field(default=None, description="Twilio account SID; SMS is off without it.")
    twilio_auth_token: str | None = Field(default=None, description="Twilio auth token.")
    twilio_from: str | None = Field(default=None, description="Sending number (E.164) or messaging service SID.")
    sms_events: list[str] = Field(
        default=["create", "resolve", "maintenance_start"],
        description="Which updates go out by SMS: create, update, resolve, maintenance_scheduled, "
        "maintenance_start, maintenance_complete.",
    )
    # The installation's own social accounts: every public update is posted there.
    mastodon_base_url: str | None = Field(
        default=None, description="Mastodon instance URL, e.g. https://mastodon.social."
    )
    mastodon_token: str | None = Field(default=None, description="Mastodon access token (write:statuses).")
    x_base_url: str = Field(default="https://api.x.com", description="X API base URL.")
    x_token: str | None = Field(
        default=None, description="X OAuth 2.0 user access token (tweet.write); off without it."
    )
    # Where next-update reminders for responders go on Slack (an incoming webhook URL).
    responder_slack_webhook_url: str | None = Field(default=None, description="Slack incoming webhook for reminders.")
    allow_private_webhooks: bool = Field(
        default=False,
        description="Allow webhook URLs on loopback and private addresses (tests, air-gapped installs).",
    )
    # The delivery ledger and its workers.
    fanout_batch: int = Field(default=2000, ge=1, description="Deliveries a fan-out job writes per batch.")
    delivery_batch: int = Field(default=500, ge=1, description="Deliveries a worker claims at a time.")
    delivery_concurrency: int = Field(default=200, ge=1, description="Sends in flight per worker.")
    delivery_lease_seconds: float = Field(
        default=120, gt=0, description="How long a claimed delivery is held before another worker may take it."
    )
    delivery_give_up_hours: float = Field(default=24, gt=0, description="Retry a delivery for this long, then fail.")
    endpoint_concurrency: int = Field(default=8, ge=1, description="Sends in flight to one webhook host per worker.")
    breaker_failures: int = Field(default=5, ge=1, description="Consecutive failures that open a host's breaker.")
    breaker_cooldown_seconds: float = Field(default=30, gt=0, description="How long an open breaker waits.")
    webhook_timeout_seconds: float = Field(default=30, gt=0, description="Seconds a webhook receiver has to answer.")
    # Subscribers.
    signup_limit: int = Field(default=10, ge=1, description="Self-signups allowed per client address per window.")
    signup_window_hours: float = Field(default=4, gt=0, description="The self-signup rate-limit window.")
    quarantine_purge_days: float = Field(default=30, gt=0, description="Quarantined subscribers are purged after this.")
    proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Proxies in front of crisisdesk that append the client to X-Forwarded-For (1 behind one load "
        "balancer); the sign-up rate limit counts by that address. 0 uses the connection's address.",
    )
    # The next-update promise.
    reminder_lead_minutes: float = Field(default=5, gt=0, description="Remind responders this long before it is due.")
    overdue_repeat_minutes: float = Field(default=10, gt=0, description="Repeat the overdue alarm this often.")
    # Detect and mobilise.
    probe_concurrency: int = Field(
        default=20, ge=1, le=500, description="Synthetic checks and vendor polls a worker runs at once."
    )
    check_dns_resolver: str = Field(
        default="",
        description="The DNS server DNS checks ask, as host or host:port (an internal resolver); empty: the "
        "system's resolvers from /etc/resolv.conf.",
    )
    slack_bot_token: str | None = Field(
        default=None, description="Slack bot token (xoxb-…, chat:write) for paging responders by direct message."
    )
    slack_api_url: str = Field(default="https://slack.com/api", description="Slack Web API base URL.")
    heartbeat_stale_seconds: float = Field(
        default=60,
        ge=15,
        description="The heartbeat answers 503 when no worker has beaten for this long (workers beat every 5 s).",
    )

    # Private per-customer pages.
    portal_link_minutes: int = Field(default=15, ge=1, le=1440, description="How long a magic sign-in link works.")
    portal_session_hours: int = Field(default=168, ge=1, description="How long a private-page session lasts.")
    portal_sso_header: str | None = Field(
        default=None,
        description="Header carrying the signed-in email set by a trusted reverse proxy (e.g. X-Forwarded-Email); "
        "off when unset.",
    )
    portal_sso_trusted_proxies: list[str] = Field(
        default=["127.0.0.1", "::1"],
        description="Peer addresses (or CIDR networks) whose SSO header is believed; from anyone else it is ignored.",
    )
    # Support tickets.
    match_threshold: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="A new ticket whose best incident scores at least this is linked and answered at once; "
        "below it the agent gets a suggestion.",
    )
    match_window_hours: float = Field(
        default=6,
        gt=0,
        description="Tickets are matched to open incidents and to those resolved within this many hours.",
    )
    inbound_smtp_host: str = Field(default="127.0.0.1", description="Address the built-in SMTP receiver listens on.")
    inbound_smtp_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the built-in SMTP receiver for support email; off when unset.",
    )
    helpdesk_timeout_seconds: float = Field(default=15, gt=0, description="Timeout of a call to a helpdesk's API.")
    support_email: str | None = Field(
        default=None,
        description="The support inbox (e.g. Acme Support <support@acme.com>): the Reply-To of email answers to "
        "tickets, so a customer's answer comes back to it and onto the ticket.",
    )

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if not self.demo and self.secret_key == DEMO_SECRET:
            raise ValueError(
                "CRISISDESK_SECRET_KEY must be set to a long random value outside demo mode "
                "(or set CRISISDESK_DEMO=true)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_a_lease_shorter_than_a_send(self) -> Settings:
        # A worker starts a send only while its row's lease outlasts the longest send (the
        # timeout plus its own 5 s guard); with a shorter lease every row would be put back
        # unsent, over and over, without an error anywhere.
        longest = max(self.smtp_timeout, self.webhook_timeout_seconds)
        shortest = longest + LEASE_MARGIN_SECONDS
        if self.delivery_lease_seconds < shortest:
            raise ValueError(
                f"CRISISDESK_DELIVERY_LEASE_SECONDS ({self.delivery_lease_seconds:g}) must be at least "
                f"{shortest:g}: the longest send (CRISISDESK_SMTP_TIMEOUT {self.smtp_timeout:g}, "
                f"CRISISDESK_WEBHOOK_TIMEOUT_SECONDS {self.webhook_timeout_seconds:g}) plus "
                f"{LEASE_MARGIN_SECONDS:g} s, or the workers could never send within a lease"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
