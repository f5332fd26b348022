"""API shapes for synthetic checks and vendor watch."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.signal.models import CheckKind, CheckState, VendorKind


class CheckStatsRead(BaseModel):
    """A check's last 24 hours."""

    model_config = ConfigDict(from_attributes=True)

    runs: int = Field(description="Runs in the last 24 hours.")
    ok: int = Field(description="Of which passed.")
    uptime_percent: float | None = Field(description="ok / runs × 100; null without runs.")
    p50_ms: float | None = Field(description="Median latency (ms) of the runs that got an answer (nearest rank).")
    p95_ms: float | None = Field(description="95th percentile latency (ms).")
    p99_ms: float | None = Field(description="99th percentile latency (ms).")


class CheckRead(BaseModel):
    """A synthetic check with its state and its last 24 hours."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Check id.")
    name: str = Field(description="What it watches, e.g. 'Sign-in page'.")
    kind: CheckKind = Field(description="http, tcp or dns.")
    target: str = Field(description="http: a URL; tcp: host:port; dns: the name to resolve.")
    record_type: str | None = Field(description="dns: A, AAAA, CNAME, MX or TXT.")
    interval_seconds: int = Field(description="Seconds between runs.")
    timeout_seconds: float = Field(description="A run with no answer within this fails.")
    expected_status: int | None = Field(description="http: the status that passes; null: any 2xx.")
    keyword: str | None = Field(description="http: text the body must hold; dns: text one answer must hold.")
    latency_threshold_ms: int | None = Field(description="A run slower than this fails.")
    failures_to_alert: int = Field(description="Consecutive failures that raise an alert.")
    component_id: str | None = Field(description="Our component the alert names.")
    enabled: bool = Field(description="Whether it runs.")
    state: CheckState = Field(description="unknown, up, or down (alerting).")
    consecutive_failures: int = Field(description="Failures in a row so far.")
    last_run_at: datetime | None = Field(description="When it last ran.")
    last_error: str | None = Field(description="Why the last failing run failed.")
    created_at: datetime = Field(description="When it was added.")
    stats: CheckStatsRead = Field(description="Uptime and latency percentiles over the last 24 hours.")


class CheckCreate(BaseModel):
    """A new synthetic check; it runs at once when enabled."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What it watches (1-200 characters).")
    kind: str = Field(description="http, tcp or dns.")
    target: str = Field(description="http: an http(s) URL; tcp: host:port ([v6]:port); dns: a host name.")
    record_type: str | None = Field(default=None, description="dns only: A (default), AAAA, CNAME, MX or TXT.")
    interval_seconds: int = Field(default=60, description="Seconds between runs, 1-86400.")
    timeout_seconds: float = Field(default=10, description="Seconds, over 0, at most 60 and under the interval.")
    expected_status: int | None = Field(
        default=None, description="http only: the status that passes (redirects are never followed); null: any 2xx."
    )
    keyword: str | None = Field(
        default=None, description="http: text the body must contain; dns: text one answer must contain."
    )
    latency_threshold_ms: int | None = Field(default=None, description="A run slower than this fails (1-60000 ms).")
    failures_to_alert: int = Field(default=3, description="Consecutive failures that raise an alert, 1-20.")
    component_id: str | None = Field(default=None, description="Our component the alert names.")
    enabled: bool = Field(default=True, description="Whether it runs.")


class CheckPatch(BaseModel):
    """Change a check: only the fields sent change (null clears an optional one)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="New name.")
    kind: str | None = Field(default=None, description="http, tcp or dns.")
    target: str | None = Field(default=None, description="New target.")
    record_type: str | None = Field(default=None, description="dns: A, AAAA, CNAME, MX or TXT.")
    interval_seconds: int | None = Field(default=None, description="Seconds between runs, 1-86400.")
    timeout_seconds: float | None = Field(default=None, description="Seconds, under the interval, at most 60.")
    expected_status: int | None = Field(default=None, description="http: the status that passes; null: any 2xx.")
    keyword: str | None = Field(default=None, description="Text the body (http) or an answer (dns) must hold.")
    latency_threshold_ms: int | None = Field(default=None, description="A run slower than this fails.")
    failures_to_alert: int | None = Field(default=None, description="Consecutive failures that raise an alert.")
    component_id: str | None = Field(default=None, description="Our component the alert names.")
    enabled: bool | None = Field(default=None, description="Run it or not; disabling resolves its alert.")


class CheckResultRead(BaseModel):
    """One run of a check."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime = Field(description="When it ran.")
    ok: bool = Field(description="Whether it passed.")
    latency_ms: float | None = Field(description="How long the answer took; null when none came.")
    detail: str = Field(description="What was seen, e.g. 'HTTP 503, expected 2xx'.")


class VendorComponentRead(BaseModel):
    """A component of a vendor's page and which of our components depend on it."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Vendor component id (use it to map dependencies).")
    external_id: str = Field(description="Its id on the vendor's page ('feed' for a feed).")
    name: str = Field(description="Its name on the vendor's page.")
    status: str = Field(description="operational, degraded_performance, partial_outage, major_outage, ...")
    message: str | None = Field(description="The vendor's own words about it (latest unresolved update).")
    updated_at: datetime = Field(description="When it last changed.")
    component_ids: list[str] = Field(description="Our components that depend on it.")


class VendorRead(BaseModel):
    """A watched vendor status page."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Vendor id.")
    name: str = Field(description="The vendor, e.g. 'Identity provider'.")
    kind: VendorKind = Field(description="statuspage (a summary.json URL) or feed (RSS/Atom).")
    url: str = Field(description="What is polled.")
    interval_seconds: int = Field(description="Seconds between polls.")
    enabled: bool = Field(description="Whether it is polled.")
    indicator: str = Field(description="The vendor's overall indicator: none, minor, major or critical.")
    description: str | None = Field(description="The vendor's overall status text.")
    last_polled_at: datetime | None = Field(description="When it was last polled.")
    last_changed_at: datetime | None = Field(description="When what it says last changed.")
    last_error: str | None = Field(description="Why the last poll failed (polling goes on); null when it worked.")
    created_at: datetime = Field(description="When it was added.")
    components: list[VendorComponentRead] = Field(description="Its components, by name.")


class VendorCreate(BaseModel):
    """Watch a vendor's status page; it is polled at once when enabled."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The vendor (1-200 characters).")
    kind: str = Field(description="statuspage (a Statuspage v2 summary.json URL) or feed (RSS/Atom).")
    url: str = Field(description="The summary.json or feed URL (http or https).")
    interval_seconds: int = Field(default=120, description="Seconds between polls, 30-86400.")
    enabled: bool = Field(default=True, description="Whether it is polled.")


class VendorPatch(BaseModel):
    """Change a vendor: only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="New name.")
    kind: str | None = Field(default=None, description="statuspage or feed.")
    url: str | None = Field(default=None, description="New URL; the next poll reads it whole.")
    interval_seconds: int | None = Field(default=None, description="Seconds between polls, 30-86400.")
    enabled: bool | None = Field(default=None, description="Poll it or not.")


class DependentsPut(BaseModel):
    """Exactly which of our components depend on a vendor component."""

    model_config = ConfigDict(extra="forbid")

    component_ids: list[str] = Field(description="Our component ids (an empty list removes every dependency).")
