"""Engine, declarative base, and the one-transaction-per-unit-of-work session scope.

Services never commit. The owner of a unit of work (a request, a job, a CLI command) opens
``session_scope``; it commits at the end and then runs the after-commit hooks for the topics
the services recorded with :func:`crisisdesk.kit.events.record`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, MetaData, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from crisisdesk.kit.time import as_utc

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Bounds for numbers a request sends to a query: past them SQLite cannot bind the value (a 500)
# and PostgreSQL refuses it without naming the field. No page is a billion rows deep, and integer
# ids are 32-bit on PostgreSQL.
MAX_OFFSET = 1_000_000_000
MAX_INT_ID = 2**31 - 1


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every engine (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


AfterCommitHook = Callable[[set[str]], Awaitable[None]]


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.after_commit: list[AfterCommitHook] = []

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commit on success, roll back on error, then run the hooks."""
        async with self.sessionmaker() as session:
            try:
                yield session
                topics: set[str] = set(session.info.get("topics", ()))
                if topics and not self.is_sqlite:
                    await session.execute(text("NOTIFY crisisdesk_change"))
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
        if topics:
            for hook in self.after_commit:
                await hook(topics)

    async def dispose(self) -> None:
        await self.engine.dispose()


def dialect_insert(session: AsyncSession) -> Any:
    """The dialect's ``insert`` (it knows ``on_conflict_do_nothing``) for this session's engine.

    The fan-out and the import lean on it to write each row once. Prefer it to catching
    IntegrityError in a SAVEPOINT: on SQLite a SAVEPOINT opens a deferred
    transaction whose first read pins a snapshot, and the write after it fails at once with
    "database is locked" if another connection committed in between.
    """
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
