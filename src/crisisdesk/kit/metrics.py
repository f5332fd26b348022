"""Prometheus metrics for operators."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WORKER_ERRORS = Counter("crisisdesk_worker_errors_total", "Worker passes that failed", ["stage"])
SNAPSHOTS_PUBLISHED = Counter("crisisdesk_snapshots_published_total", "Public snapshots stored")
PUBLISH_FAILURES = Counter("crisisdesk_publish_failures_total", "Renders that failed after a commit")
SNAPSHOT_VERSION = Gauge("crisisdesk_snapshot_version", "Snapshot version this process serves")
DATABASE_UP = Gauge("crisisdesk_database_up", "1 if this process can reach the database")
DELIVERIES = Counter(
    "crisisdesk_deliveries_total", "Sends of notifications, by channel and outcome", ["channel", "outcome"]
)
DELIVERY_SECONDS = Histogram(
    "crisisdesk_delivery_seconds",
    "Time one send took",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERIES_DEFERRED = Counter(
    "crisisdesk_deliveries_deferred_total", "Claimed deliveries put back unsent, by reason", ["reason"]
)
BREAKER_OPENED = Counter("crisisdesk_delivery_breaker_opened_total", "Endpoints whose circuit breaker opened")
TICKET_REPLIES = Counter(
    "crisisdesk_ticket_replies_total",
    "Replies to support tickets, by way out (helpdesk, email) and outcome (sent, retry, failed, not_rendered)",
    ["via", "outcome"],
)
HELPDESK_WEBHOOKS_REFUSED = Counter(
    "crisisdesk_helpdesk_webhooks_refused_total", "Helpdesk webhook deliveries refused, by reason", ["reason"]
)
INBOUND_MAIL = Counter(
    "crisisdesk_inbound_mail_total", "Support email messages, by the SMTP answer given to DATA", ["code"]
)
