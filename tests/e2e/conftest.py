"""Browser tests: a real server process and the system's Chromium driven by Playwright.

Skipped, with the reason, where no Chromium is installed (set CRISISDESK_TEST_CHROMIUM to its
path if it is not /usr/bin/chromium). Screenshots go to test-output/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fixtures.server import LiveServer
from tests.fixtures.server import live_server as start_live_server

CHROMIUM = os.environ.get("CRISISDESK_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"

pytestmark = pytest.mark.e2e


def chromium_or_skip() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """`crisisdesk serve` on a seeded SQLite database, as a user runs it."""
    chromium_or_skip()
    with start_live_server(tmp_path) as server:
        yield server


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
