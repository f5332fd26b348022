"""Test harness: a migrated database per test on SQLite, and on PostgreSQL when configured.

Set CRISISDESK_TEST_POSTGRES_URL (for example postgresql+asyncpg://postgres@127.0.0.1/test) to
run every database test on PostgreSQL as well.

`make test` runs the suite in parallel (pytest-xdist, ``-n auto --dist loadgroup``). Each worker
has a PostgreSQL database of its own (tests/fixtures/databases.py) and a band of fixed loopback
ports of its own (tests/fixtures/ports.py). Tests that start server, worker, Alertmanager or
browser processes (markers ``slow`` and ``e2e``) form one xdist group, so they run one after
another on a single worker: their timing assertions then never compete with another such test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from crisisdesk.app import create_app, serve_app
from crisisdesk.config import Settings
from crisisdesk.kit import migrate
from crisisdesk.kit.db import Database
from crisisdesk.models import metadata
from tests.fixtures.databases import POSTGRES_URL, reset_schema

PROCESSES_GROUP = "processes"
TERMINAL_ENVIRON = "crisisdesk_terminal_environ"
E2E = Path(__file__).parent / "e2e"
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not POSTGRES_URL, reason="set CRISISDESK_TEST_POSTGRES_URL to run on PostgreSQL"),
    ),
]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Pass each xdist worker the terminal variables this run has.

    The readline module pytest loads sets COLUMNS=80 and LINES=24 in the environment that child
    processes inherit, so the workers would start with them where a serial run has neither, and
    a rich Console made at import would keep a width of 80 whatever a test sets.
    """
    node.workerinput[TERMINAL_ENVIRON] = {name: os.environ.get(name) for name in ("COLUMNS", "LINES")}


def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    for name, value in workerinput[TERMINAL_ENVIRON].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if POSTGRES_URL:
        # Whatever reads the variable itself (a test, a child process) lands on this worker's database too.
        os.environ["CRISISDESK_TEST_POSTGRES_URL"] = POSTGRES_URL


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups in the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)  # a conftest's pytestmark does not reach the tests
        if item.get_closest_marker("slow") or item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group(PROCESSES_GROUP))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for every test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    assert POSTGRES_URL
    asyncio.run(reset_schema(POSTGRES_URL))
    migrate.upgrade(POSTGRES_URL)
    return POSTGRES_URL


async def _truncate_postgres(url: str) -> None:
    engine = create_async_engine(url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "crisisdesk.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_migrated")
        asyncio.run(_truncate_postgres(url))
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        demo=True,
        database_url=database_url,
        run_workers=False,
        poll_interval=0.05,
        base_url="http://status.test",
        page_name="Acme Cloud",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def db(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Database]:
    """The app's database when the test uses the app (its after-commit hooks publish), else a bare one."""
    if "app" in request.fixturenames or "client" in request.fixturenames:
        yield request.getfixturevalue("app").state.runtime.db
        return
    database = Database(settings.database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=serve_app(app))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://status.test") as c:
        yield c
