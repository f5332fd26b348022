"""The command line against a real SQLite database: set-up, users, keys, incidents, export, serve."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from crisisdesk.auth.models import ApiKey
from crisisdesk.catalog import service as catalog
from crisisdesk.cli import app
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from crisisdesk.statuspage.models import Snapshot
from tests.fixtures.ports import worker_ports

runner = CliRunner()
PORTS = worker_ports(18600, 18700)


@pytest.fixture
def cli_env(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Environment for the CLI: demo mode and a migrated SQLite file of its own."""
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    env = {
        "CRISISDESK_DEMO": "true",
        "CRISISDESK_DATABASE_URL": f"sqlite+aiosqlite:///{path}",
        "CRISISDESK_BASE_URL": "http://status.test",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    yield env


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"crisisdesk {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return result.output


async def _query(env: dict[str, str], fn):  # type: ignore[no-untyped-def]
    db = Database(env["CRISISDESK_DATABASE_URL"])
    try:
        async with db.session() as session:
            return await fn(session)
    finally:
        await db.dispose()


def query(env: dict[str, str], fn):  # type: ignore[no-untyped-def]
    return asyncio.run(_query(env, fn))


def test_db_upgrade_migrates_a_new_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fresh.db"
    monkeypatch.setenv("CRISISDESK_DEMO", "true")
    monkeypatch.setenv("CRISISDESK_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    assert "up to date" in invoke("db", "upgrade")
    assert "up to date" in invoke("db", "upgrade")  # running again is harmless
    assert query({"CRISISDESK_DATABASE_URL": f"sqlite+aiosqlite:///{path}"}, catalog.list_components) == []


def test_settings_errors_are_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRISISDESK_DEMO", raising=False)
    monkeypatch.setenv("CRISISDESK_SECRET_KEY", "demo-secret-change-me")
    result = runner.invoke(app, ["component", "list"])
    assert result.exit_code == 2
    assert "CRISISDESK_SECRET_KEY" in result.output and "Traceback" not in result.output


def test_user_and_apikey_create_print_a_working_key(cli_env: dict[str, str]) -> None:
    output = invoke("user", "create", "Boss@Example.com", "--name", "Boss", "--role", "admin")
    assert "boss@example.com" in output and "Password:" in output  # generated when not at a terminal
    invoke("user", "create", "ops@example.com", "--name", "Ops", "--password", "long enough password")
    output = invoke(
        "apikey", "create", "--user", "ops@example.com", "--name", "bot", "--scope", "read", "--scope", "write"
    )
    secret = next(line.strip() for line in output.splitlines() if line.strip().startswith("cdk_"))

    async def check(session):  # type: ignore[no-untyped-def]
        keys = list(await session.scalars(__import__("sqlalchemy").select(ApiKey)))
        assert [k.scopes for k in keys] == [["read", "write"]]
        assert secret not in repr([(k.key_hash, k.prefix) for k in keys])

    query(cli_env, check)

    from crisisdesk.app import create_app, serve_app
    from crisisdesk.config import Settings

    async def call_api() -> int:
        application = create_app(Settings())
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=serve_app(application))
            async with httpx.AsyncClient(transport=transport, base_url="http://status.test") as client:
                me = await client.get("/api/v1/me", headers={"authorization": f"Bearer {secret}"})
                assert me.json()["email"] == "ops@example.com"
                return me.status_code

    assert asyncio.run(call_api()) == 200


def test_user_create_refuses_duplicates_and_bad_roles(cli_env: dict[str, str]) -> None:
    invoke("user", "create", "a@example.com", "--password", "long enough password")
    again = runner.invoke(app, ["user", "create", "a@example.com", "--password", "long enough password"])
    assert again.exit_code == 1 and "already exists" in again.output and "Traceback" not in again.output
    bad = runner.invoke(app, ["user", "create", "b@example.com", "--role", "emperor"])
    assert bad.exit_code == 2


def test_declare_update_resolve_and_component_set(cli_env: dict[str, str]) -> None:
    invoke("user", "create", "admin@example.com", "--role", "admin", "--password", "long enough password")
    invoke("component", "create", "Web app")
    invoke("component", "create", "Sign-in (SSO)")
    listed = invoke("component", "list")
    assert "Web app" in listed and "operational" in listed

    output = invoke(
        "declare",
        "--title",
        "Sign-in failures",
        "--severity",
        "SEV1",
        "--message",
        "Investigating.",
        "--component",
        "sign-in (sso)=major_outage",
        "-c",
        "Web app=degraded_performance",
    )
    assert "INC-1" in output and "SEV1" in output

    async def state(session):  # type: ignore[no-untyped-def]
        incident = await incidents.find_incident(session, "INC-1")
        components = {c.name: c.status for c in await catalog.list_components(session)}
        snapshots = len(list(await session.scalars(__import__("sqlalchemy").select(Snapshot.id))))
        return incident.status, len(incident.updates), components, snapshots

    status, updates, components, snapshots = query(cli_env, state)
    assert (status, updates) == ("investigating", 1)
    assert components == {"Web app": "degraded_performance", "Sign-in (SSO)": "major_outage"}
    assert snapshots >= 1, "the CLI write did not publish a snapshot"

    invoke("update", "INC-1", "--status", "identified", "--message", "Found it.", "-c", "Web app=operational")
    invoke("component", "set", "Web app", "partial_outage")
    assert query(cli_env, state)[2]["Web app"] == "partial_outage"
    invoke("resolve", "1", "--message", "Fixed.")
    status, updates, components, _ = query(cli_env, state)
    assert (status, updates) == ("resolved", 3)
    assert set(components.values()) == {"operational"}

    twice = runner.invoke(app, ["resolve", "INC-1", "--message", "Again."])
    assert twice.exit_code == 1 and "already resolved" in twice.output


def test_cli_errors_are_clear(cli_env: dict[str, str]) -> None:
    no_admin = runner.invoke(app, ["declare", "--title", "x", "--message", "y"])
    assert no_admin.exit_code == 1 and "no admin" in no_admin.output
    invoke("user", "create", "admin@example.com", "--role", "admin", "--password", "long enough password")
    for args, expected in [
        (["declare", "--title", "x", "--message", "y", "-c", "Nowhere=major_outage"], "no component named"),
        (["declare", "--title", "x", "--message", "y", "--severity", "SEV9"], "not a severity"),
        (["update", "INC-42", "--status", "identified", "--message", "x"], "no incident"),
        (["declare", "--title", "x", "--message", "y", "--as", "ghost@example.com"], "no user"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert expected in result.output and "Traceback" not in result.output
    invoke("component", "create", "Web app")
    bad = runner.invoke(app, ["component", "set", "Web app", "exploded"])
    assert bad.exit_code == 1 and "not a component status" in bad.output
    assert query(cli_env, lambda s: incidents.list_incidents(s)) == []


@pytest.mark.skipif(
    importlib.util.find_spec("crisisdesk.statuspage.export") is None, reason="the static export module is not installed"
)
def test_export_static_writes_the_site(cli_env: dict[str, str], tmp_path: Path) -> None:
    invoke("user", "create", "admin@example.com", "--role", "admin", "--password", "long enough password")
    invoke("component", "create", "Web app")
    invoke("declare", "--title", "Exported outage", "--message", "Investigating.", "-c", "Web app=major_outage")
    target = tmp_path / "site"
    invoke("export-static", str(target))
    assert "Exported outage" in (target / "index.html").read_text()


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@pytest.mark.slow
def test_serve_runs_granian_and_serves_the_page(cli_env: dict[str, str]) -> None:
    port = _free_port()
    process = _start(["serve", "--port", str(port)], cli_env)
    try:
        page = _wait_for(f"http://127.0.0.1:{port}/", process, 30)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        status = httpx.get(f"http://127.0.0.1:{port}/api/v2/status.json", timeout=5)
        assert status.status_code == 200 and "page" in status.json()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["database"] is True
    finally:
        _, output = _stop(process)
    assert f"http://127.0.0.1:{port}/" in output


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    executable = Path(sys.executable).with_name("crisisdesk")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "crisisdesk.cli"]
    return subprocess.Popen(
        [*command, *args], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output


def _wait_for(url: str, process: subprocess.Popen[str], seconds: float = 60) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            assert process.poll() is None, f"server exited: {process.stdout.read() if process.stdout else ''}"
            assert time.monotonic() < deadline, f"{url} did not answer within {seconds} s"
            time.sleep(0.2)


@pytest.mark.slow
def test_worker_stops_cleanly_on_sigterm(cli_env: dict[str, str]) -> None:
    process = _start(["worker"], cli_env)
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while True:  # signal handlers are in place once it says it is running
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready and "worker running" in process.stdout.readline():
            break
        assert process.poll() is None, "the worker exited on its own"
        assert time.monotonic() < deadline, "the worker did not start within 30 s"
    time.sleep(0.5)
    code, output = _stop(process)
    assert code == 0, output
    assert "worker stopped" in output and "Traceback" not in output


@pytest.mark.slow
def test_demo_seeds_once_and_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRISISDESK_DATABASE_URL", raising=False)
    env = {"CRISISDESK_DEMO": "true"}
    database = tmp_path / "demo.db"
    outputs = []
    for _ in range(2):
        port = _free_port()
        process = _start(["demo", "--port", str(port), "--db", str(database)], env)
        try:
            page = _wait_for(f"http://127.0.0.1:{port}/", process)
            assert page.status_code == 200
            # The seeded open incident's update reaches the seeded email subscribers, through the
            # ledger and real SMTP, into the demo's local mail catcher.
            outbox = tmp_path / "demo-mail" / "new"
            deadline = time.monotonic() + 30
            while not (outbox.is_dir() and any(outbox.iterdir())):
                assert time.monotonic() < deadline, "no demo email arrived within 30 s"
                time.sleep(0.25)
            first = next(outbox.iterdir()).read_text()
            assert "List-Unsubscribe:" in first and "Message-ID:" in first
        finally:
            _, output = _stop(process)
        outputs.append(output)
        assert "Outgoing email" in output
        assert "admin@example.com" in output and f"http://127.0.0.1:{port}/console" in output
    assert "seeded now" in outputs[0] and "already seeded" in outputs[1]

    async def users(session):  # type: ignore[no-untyped-def]
        from crisisdesk.auth import service as auth

        return [u.email for u in await auth.list_users(session)]

    emails = query({"CRISISDESK_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}, users)
    assert emails.count("admin@example.com") == 1
