"""Browser tests: a real server process and the system's Chromium driven by Playwright.

Skipped, with the reason, where no Chromium is installed (set CRISISDESK_TEST_CHROMIUM to its
path if it is not /usr/bin/chromium). Screenshots go to test-output/.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from crisisdesk.config import Settings
from crisisdesk.kit import migrate
from crisisdesk.kit.db import Database
from crisisdesk.seed import seed_demo

CHROMIUM = os.environ.get("CRISISDESK_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"

pytestmark = pytest.mark.e2e


def chromium_or_skip() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    database_url: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """`crisisdesk serve` on a seeded SQLite database, as a user runs it."""
    chromium_or_skip()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    migrate.upgrade(database_url)

    async def seed() -> None:
        db = Database(database_url)
        await seed_demo(db, Settings(demo=True, database_url=database_url))
        await db.dispose()

    asyncio.run(seed())
    port = free_port()
    env = os.environ | {
        "CRISISDESK_DEMO": "true",
        "CRISISDESK_DATABASE_URL": database_url,
        "CRISISDESK_BASE_URL": f"http://127.0.0.1:{port}",
    }
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "crisisdesk"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/api/v2/status.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + (tmp_path / "server.log").read_text())
            time.sleep(0.2)
        yield LiveServer(url, database_url, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    path = chromium_or_skip()
    OUTPUT.mkdir(exist_ok=True)
    async with async_playwright() as p:
        instance = await p.chromium.launch(
            executable_path=path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        try:
            yield instance
        finally:
            await instance.close()
