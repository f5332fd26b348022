"""Prometheus metrics for operators."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

WORKER_ERRORS = Counter("crisisdesk_worker_errors_total", "Worker passes that failed", ["stage"])
SNAPSHOTS_PUBLISHED = Counter("crisisdesk_snapshots_published_total", "Public snapshots stored")
PUBLISH_FAILURES = Counter("crisisdesk_publish_failures_total", "Renders that failed after a commit")
SNAPSHOT_VERSION = Gauge("crisisdesk_snapshot_version", "Snapshot version this process serves")
DATABASE_UP = Gauge("crisisdesk_database_up", "1 if this process can reach the database")
