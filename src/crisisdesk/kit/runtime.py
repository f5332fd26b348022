"""What one process holds: settings, database, change watcher, job runner."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import JobRunner
from crisisdesk.kit.watch import ChangeWatcher


@dataclass
class Runtime:
    settings: Settings
    db: Database
    watcher: ChangeWatcher
    runner: JobRunner
    extras: dict[str, object] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        db = Database(settings.database_url)
        interval = settings.poll_interval if db.is_sqlite else max(settings.poll_interval, 1.0)
        return cls(settings, db, ChangeWatcher(db, interval=interval), JobRunner(db))


def runtime_of(connection: HTTPConnection) -> Runtime:
    runtime: Runtime = connection.app.state.runtime
    return runtime
