"""Benchmark of the public status page against nginx serving the same page as static files.

    .venv/bin/python bench/statuspage.py [--quick] [--postgres URL]

One run: a fresh database (a temporary SQLite file, or a new PostgreSQL database created next to
the one URL names and dropped afterwards) is migrated and seeded; crisisdesk is started the way
README.md recommends for production (two worker processes on loopback) and the same site is
exported as static files for nginx (two worker processes: the same cores). wrk measures the
public page and /api/v2/summary.json on both servers at 100 and 1,000 connections. Then two
single-worker server processes are started on their own ports and, while wrk loads both,
updates are posted through the API; each one is timed from the API response until both
processes serve the new text. Resident memory of the server's process tree is read after the
seed and after the load.

It prints a table, writes bench/results/statuspage.json, and prints the figures as one JSON
object on its last line. Needs wrk and nginx (Debian: ``apt-get install wrk nginx-light``).
Every server listens on 127.0.0.1 only and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadtools import (
    HOST,
    WrkResult,
    idle_percent,
    median_run,
    parse_wrk,
    percentile,
    rss_mib,
    run_wrk,
    stop_group,
    workspace,
    wrk_command,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAGE = "/"
JSON_PATH = "/api/v2/summary.json"
FALLBACK_JSON_PATH = "/api/v2/status.json"
TARGET_RATIO = 0.4
TARGET_P99_MS = 100.0
TARGET_PUBLISH_P99_MS = 1000.0
INCIDENT_NAME = "Elevated error rates on the Public API"


@dataclass
class Profile:
    duration: int  # seconds of each measured wrk run
    rounds: int  # each cell is measured this often, alternating the servers; the median is kept
    warmup: int
    updates: int
    visible_timeout: float  # give up on one update after this many seconds


FULL = Profile(duration=5, rounds=3, warmup=3, updates=20, visible_timeout=5.0)
QUICK = Profile(duration=2, rounds=1, warmup=0, updates=5, visible_timeout=3.0)


@dataclass
class Server:
    """A process group started by this script, with its log file."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Seeded:
    incident_id: str
    api_key: str
    user_id: str


@dataclass
class Context:
    profile: Profile
    url: str
    tmp: Path
    port_base: int
    servers: list[Server] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- processes


def raise_open_files(wanted: int = 65536) -> int:
    """wrk at 1,000 connections and the servers need more descriptors than the usual 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cli_serves() -> bool:
    """Whether the ``crisisdesk serve`` command exists (the way README recommends to run)."""
    cli = BIN / "crisisdesk"
    if not cli.exists():
        return False
    try:
        done = subprocess.run([str(cli), "serve", "--help"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and b"--workers" in done.stdout


def server_command(port: int, workers: int, use_cli: bool) -> list[str]:
    if use_cli:
        return [str(BIN / "crisisdesk"), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    return [
        str(BIN / "granian"),
        "--interface",
        "rsgi",
        "--factory",
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--no-ws",
        "--log-level",
        "warning",
        "--host",
        HOST,
        "--port",
        str(port),
        "crisisdesk.server:create_rsgi_app",
    ]


def start(ctx: Context, name: str, port: int, command: list[str], env: dict[str, str] | None = None) -> Server:
    log = ctx.tmp / f"{name}.log"
    with log.open("wb") as out:
        # Its own session, so stopping it reaches every worker it forked and nothing else.
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    server = Server(name, port, proc, log)
    ctx.servers.append(server)
    return server


def stop(ctx: Context, server: Server) -> None:
    stop_group(server.proc)
    if server in ctx.servers:
        ctx.servers.remove(server)


def log_tail(server: Server, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(server.log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def wait_ready(server: Server, path: str = PAGE, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{log_tail(server)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{HOST}:{server.port}{path}", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} was not ready within {timeout:.0f}s:\n{log_tail(server)}")


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------- database, seed, export


async def create_postgres_database(url: str) -> tuple[str, str]:
    """A new database on the server ``url`` names; returns (its URL, its name)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"cd_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(base.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base.set(database=name).render_as_string(hide_password=False), name


async def drop_postgres_database(url: str, name: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def bench_settings(url: str) -> Any:
    from crisisdesk.config import Settings

    return Settings(demo=True, database_url=url, run_workers=False)


async def seed(url: str, notes: list[str]) -> Seeded:
    """Seed the demo workspace (or a small one), declare an open incident, make an API key."""
    from crisisdesk.auth import service as auth
    from crisisdesk.auth.models import Role, Scope
    from crisisdesk.catalog import service as catalog
    from crisisdesk.incident import service as incidents
    from crisisdesk.kit.db import Database
    from crisisdesk.statuspage.publish import publish

    settings = bench_settings(url)
    db = Database(url)
    try:
        try:
            from crisisdesk.seed import seed_demo
        except ImportError:
            notes.append("crisisdesk.seed is not there yet: seeded a small catalogue instead of the demo workspace")
            await seed_small(db)
        else:
            await seed_demo(db, settings)
        async with db.session() as session:
            users = [u for u in await auth.list_users(session) if u.is_active and Role(u.role) != Role.viewer]
            user = users[0]
            who = auth.actor_for(user)
            _, secret = await auth.create_api_key(session, who, name="bench", scopes=[Scope.read, Scope.write])
            leaves = [c for c in await catalog.list_components(session) if not c.is_group]
            declared = await incidents.declare(
                session,
                who,
                name=INCIDENT_NAME,
                severity="SEV2",
                body="Some requests to the Public API fail with 503. We are investigating.",
                components={leaves[0].id: "partial_outage"},
            )
            incident_id, user_id = declared.incident.id, user.id
        await publish(db, settings)
    finally:
        await db.dispose()
    return Seeded(incident_id, secret, user_id)


async def seed_small(db: Any) -> None:
    from crisisdesk.auth import service as auth
    from crisisdesk.auth.models import Role
    from crisisdesk.catalog import service as catalog

    async with db.session() as session:
        await auth.create_user(
            session,
            email="responder@example.com",
            name="Robin Responder",
            role=Role.responder,
            password="bench-password-1",
        )
        for group_name, names in {
            "Sign-in": ["Single sign-on (SSO)", "Password sign-in"],
            "Product": ["Web app", "Public API", "Webhooks", "Email delivery", "Data export", "Reporting"],
        }.items():
            group = await catalog.create_component(session, name=group_name, is_group=True)
            for name in names:
                await catalog.create_component(session, name=name, group_id=group.id)


async def export_site(ctx: Context, site: Path, server: Server, paths: list[str]) -> str:
    """The same site as files; by the static export if it exists, else the server's bytes."""
    try:
        from crisisdesk.statuspage.export import export_static
    except ImportError:
        export_static = None
    if export_static is not None:
        from crisisdesk.kit.db import Database

        db = Database(ctx.url)
        try:
            await export_static(db, bench_settings(ctx.url), site)
        finally:
            await db.dispose()
        return "crisisdesk.statuspage.export.export_static"
    ctx.notes.append("the static export is not there yet: nginx serves the bytes fetched from crisisdesk")
    site.mkdir()
    async with httpx.AsyncClient(headers={"accept-encoding": "identity"}) as client:
        for path in paths:
            response = await client.get(f"http://{HOST}:{server.port}{path}")
            response.raise_for_status()
            target = site / (path.lstrip("/") or "index.html")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(response.content)
    return "bytes fetched from the crisisdesk server"


async def same_bytes(ports: dict[str, int], paths: list[str]) -> dict[str, dict[str, Any]]:
    """For each path, whether crisisdesk and nginx send identical bodies, and the body's size."""
    result = {}
    async with httpx.AsyncClient(headers={"accept-encoding": "identity"}) as client:
        for path in paths:
            digests, size = set(), 0
            for port in ports.values():
                response = await client.get(f"http://{HOST}:{port}{path}")
                digests.add((response.status_code, hashlib.sha256(response.content).hexdigest()))
                size = len(response.content)
            result[path] = {"identical": len(digests) == 1, "bytes": size}
    return result


NGINX_CONF = """\
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 4096; }}
http {{
    types {{
        text/html html; application/json json; text/css css; application/javascript js;
        image/svg+xml svg; application/rss+xml rss; application/atom+xml atom; text/calendar ics;
        application/xml xml;
    }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    gzip_static on;
    tcp_nopush on;
    open_file_cache max=1000 inactive=60s;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen {host}:{port};
        root {site};
        location / {{
            add_header Cache-Control "public, max-age=30, stale-while-revalidate=60";
            try_files $uri $uri/index.html =404;
        }}
    }}
}}
"""


def start_nginx(ctx: Context, site: Path, port: int) -> Server:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = ctx.tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=ctx.tmp, site=site, host=HOST, port=port))
    # nginx's workers run as an unprivileged user when started as root: they must read the site.
    for path in [ctx.tmp, *site.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return start(ctx, "nginx", port, [nginx, "-p", str(ctx.tmp), "-c", str(conf), "-g", "daemon off;"])


def measure(profile: Profile, ports: dict[str, int], pids: dict[str, int], paths: list[str]) -> list[WrkResult]:
    """Every cell on every server; the servers alternate so a noisy moment hits both alike.

    Each path is fetched as wrk does by default (no Accept-Encoding, so the full body), and the
    page also as a browser does (gzip): the two differ a lot in size.
    """
    for name, port in ports.items():
        if profile.warmup:
            run_wrk(name, port, PAGE, 100, profile.warmup)
    variants = [(path, False) for path in paths] + [(PAGE, True)]
    cells: dict[tuple[str, str, bool, int], list[WrkResult]] = {}
    for _ in range(profile.rounds):
        for path, gzip in variants:
            for connections in (100, 1000):
                for name, port in ports.items():
                    result = run_wrk(name, port, path, connections, profile.duration, gzip=gzip, pid=pids[name])
                    cells.setdefault((name, path, gzip, connections), []).append(result)
    return [median_run(rounds) for rounds in cells.values()]


# ---------------------------------------------------------------- publish-to-visible


async def api_accepts_updates(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{HOST}:{port}/api/openapi.json")
    if response.status_code != 200:
        return False
    return any(
        re.fullmatch(r"/api/v1/incidents/\{[^}]+\}/updates", path) and "post" in ops
        for path, ops in response.json().get("paths", {}).items()
    )


async def wait_visible(
    probe: httpx.AsyncClient, ports: list[int], token: str, started: float, timeout: float
) -> float | None:
    """Seconds from ``started`` until every port serves a page containing ``token``."""
    pending = set(ports)
    deadline = started + timeout
    while pending and time.perf_counter() < deadline:
        responses = await asyncio.gather(
            *(probe.get(f"http://{HOST}:{p}{PAGE}") for p in pending), return_exceptions=True
        )
        for port, response in zip(list(pending), responses, strict=True):
            if isinstance(response, httpx.Response) and token in response.text:
                pending.discard(port)
        if pending:
            await asyncio.sleep(0.005)
    return None if pending else time.perf_counter() - started


async def publish_to_visible(ctx: Context, seeded: Seeded, ports: list[int]) -> dict[str, Any]:
    """Post updates while wrk loads both processes; time each until both serve it."""
    from crisisdesk.auth.models import User
    from crisisdesk.auth.service import actor_for
    from crisisdesk.incident import service as incidents
    from crisisdesk.kit.db import Database
    from crisisdesk.statuspage.publish import publish

    profile = ctx.profile
    via_api = await api_accepts_updates(ports[0])
    method = "api" if via_api else "service"
    if not via_api:
        ctx.notes.append(
            "POST /api/v1/incidents/{id}/updates is not there yet: updates were posted through "
            "crisisdesk.incident.service and published in this process; timed from the commit"
        )
    load_seconds = int(profile.updates * (profile.visible_timeout + 1) + 10)
    loads = [
        subprocess.Popen(
            wrk_command(port, PAGE, 50, load_seconds, threads=1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for port in ports
    ]
    samples: list[float | None] = []
    db = Database(ctx.url)
    settings = bench_settings(ctx.url)
    try:
        await asyncio.sleep(0.5)  # the load is running before the first update
        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(timeout=5, limits=limits) as probe, httpx.AsyncClient(timeout=10) as api:
            for index in range(profile.updates):
                token = f"bench{index:02d}x{secrets.token_hex(4)}"
                body = f"Update {index + 1}: a fix is rolling out region by region (ref {token})."
                status = ("identified", "monitoring")[index % 2]
                if via_api:
                    response = await api.post(
                        f"http://{HOST}:{ports[0]}/api/v1/incidents/{seeded.incident_id}/updates",
                        json={"status": status, "body": body},
                        headers={"authorization": f"Bearer {seeded.api_key}"},
                    )
                    started = time.perf_counter()
                    if response.status_code >= 300:
                        raise RuntimeError(f"posting an update failed: {response.status_code} {response.text}")
                else:
                    async with db.session() as session:
                        user = await session.get(User, seeded.user_id)
                        assert user is not None
                        incident = await incidents.get_incident(session, seeded.incident_id)
                        await incidents.post_update(session, actor_for(user), incident, status=status, body=body)
                    started = time.perf_counter()
                    await publish(db, settings)
                seconds = await wait_visible(probe, ports, token, started, profile.visible_timeout)
                samples.append(seconds)
                await asyncio.sleep(0.2)
    finally:
        await db.dispose()
        load_results = []
        for port, proc in zip(ports, loads, strict=True):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # wrk stops and prints what it measured
            try:
                out, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate(timeout=5)
            with contextlib.suppress(RuntimeError, KeyError):
                load_results.append(asdict(parse_wrk(out, f"crisisdesk :{port}", PAGE, 50)))
    seen = [s * 1000 for s in samples if s is not None]
    return {
        "method": method,
        "processes": len(ports),
        "updates": len(samples),
        "visible": len(seen),
        "not_visible_within_s": profile.visible_timeout,
        "p50_ms": round(percentile(seen, 50), 1) if seen else None,
        "p99_ms": round(percentile(seen, 99), 1) if seen else None,
        "max_ms": round(max(seen), 1) if seen else None,
        "samples_ms": [None if s is None else round(s * 1000, 1) for s in samples],
        "load": load_results,
    }


# ---------------------------------------------------------------- the run


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )

    def version(command: list[str]) -> str:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        return "unknown"

    from importlib.metadata import version as package_version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "granian": package_version("granian"),
        "nginx": version(["nginx", "-v"]),
        "wrk": version(["wrk", "--version"]),
    }


def targets(runs: list[WrkResult], publishing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ours = [r for r in runs if r.server == "crisisdesk"]
    ratios = [r.ratio_to_nginx for r in ours if r.connections == 100 and r.ratio_to_nginx is not None]
    p99 = max(r.latency_p99_ms for r in ours if r.connections == 1000)
    errors = sum(r.total_errors for r in ours) + sum(load["total_errors"] for load in publishing["load"])
    unaccepted = max(r.unaccepted for r in ours)
    publish_p99 = publishing["p99_ms"] if publishing["visible"] == publishing["updates"] else None
    return {
        "requests_per_s_ratio_at_100": {
            "target": f">= {TARGET_RATIO}",
            "value": min(ratios),
            "met": min(ratios) >= TARGET_RATIO,
        },
        "p99_ms_at_1000": {"target": f"< {TARGET_P99_MS:g}", "value": p99, "met": p99 < TARGET_P99_MS},
        "errors": {"target": "0", "value": errors, "met": errors == 0},
        "unaccepted_connections": {"target": "0", "value": unaccepted, "met": unaccepted == 0},
        "publish_to_visible_p99_ms": {
            "target": f"< {TARGET_PUBLISH_P99_MS:g}",
            "value": publish_p99,
            "met": publish_p99 is not None and publish_p99 < TARGET_PUBLISH_P99_MS,
        },
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    table = Table(
        title=f"Public status page, {result['database']}, wrk -t2 -d{result['duration_s']}s "
        f"× {result['rounds']} (median), loopback"
    )
    columns = (
        "server",
        "path",
        "gzip",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "unacc.",
        "× nginx",
        "CPU µs/req",
    )
    for column in columns:
        left = column in ("server", "path")
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    for run in result["runs"]:
        ratio = run["ratio_to_nginx"]
        table.add_row(
            run["server"],
            run["path"],
            "gzip" if run["gzip"] else "",
            str(run["connections"]),
            f"{run['requests_per_s']:,.0f}",
            f"{run['latency_p50_ms']:.2f}",
            f"{run['latency_p99_ms']:.2f}",
            str(run["total_errors"]),
            str(run["unaccepted"]),
            "" if ratio is None else f"{ratio:.2f}",
            "" if run["cpu_us_per_request"] is None else f"{run['cpu_us_per_request']:.1f}",
        )
    console.print(table)
    pub = result["publish_to_visible"]
    console.print(
        f"publish-to-visible ({pub['method']}, {pub['processes']} processes under load, "
        f"{pub['visible']}/{pub['updates']} visible): p50 {pub['p50_ms']} ms, p99 {pub['p99_ms']} ms, "
        f"max {pub['max_ms']} ms"
    )
    console.print(f"CPU idle just before the run: {result['cpu_idle_before_pct']}% (other work skews the figures)")
    mem = result["memory"]
    console.print(
        f"resident memory of the server ({mem['processes']} processes): after seed "
        f"{mem['after_seed_mib']} MiB, after load {mem['after_load_mib']} MiB"
    )
    for name, target in result["targets"].items():
        mark = "[green]met[/green]" if target["met"] else "[red]MISSED[/red]"
        console.print(f"  {name}: {target['value']} (target {target['target']}) {mark}")
    for note in result["notes"]:
        console.print(f"  note: {note}")


async def run(ctx: Context, use_cli: bool) -> dict[str, Any]:
    profile, base = ctx.profile, ctx.port_base
    idle_before = idle_percent()
    for port in range(base, base + 4):
        if not port_free(port):
            raise RuntimeError(f"port {port} is in use; choose another --port-base")
    from crisisdesk.kit import migrate

    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()

    await asyncio.to_thread(migrate.upgrade, ctx.url)  # Alembic runs its own event loop
    seeded = await seed(ctx.url, ctx.notes)
    phase("migrate_and_seed")
    env = {**os.environ, "CRISISDESK_DEMO": "true", "CRISISDESK_DATABASE_URL": ctx.url}
    command = server_command(base, 2, use_cli)
    if not use_cli:
        ctx.notes.append("`crisisdesk serve` is not there yet: ran granian directly with the same options")
    ours = start(ctx, "crisisdesk", base, command, env)
    wait_ready(ours)
    await asyncio.sleep(1.0)  # both workers have loaded the snapshot
    after_seed = rss_mib(ours.proc.pid)
    phase("start_server")

    json_path = JSON_PATH
    async with httpx.AsyncClient() as client:
        if (await client.get(f"http://{HOST}:{base}{JSON_PATH}")).status_code != 200:
            json_path = FALLBACK_JSON_PATH
            ctx.notes.append(f"{JSON_PATH} is not published yet: measured {FALLBACK_JSON_PATH} instead")
    paths = [PAGE, json_path]

    site = ctx.tmp / "site"
    exported_by = await export_site(ctx, site, ours, paths)
    nginx = start_nginx(ctx, site, base + 1)
    wait_ready(nginx)
    identical = await same_bytes({"crisisdesk": base, "nginx": base + 1}, paths)
    phase("export_and_start_nginx")

    runs = measure(
        profile, {"crisisdesk": base, "nginx": base + 1}, {"crisisdesk": ours.proc.pid, "nginx": nginx.proc.pid}, paths
    )
    reference = {(r.path, r.gzip, r.connections): r.requests_per_s for r in runs if r.server == "nginx"}
    for r in runs:
        if r.server == "crisisdesk" and reference.get((r.path, r.gzip, r.connections)):
            r.ratio_to_nginx = round(r.requests_per_s / reference[(r.path, r.gzip, r.connections)], 3)
    after_load = rss_mib(ours.proc.pid)
    stop(ctx, ours)
    stop(ctx, nginx)
    phase("load")

    single = [
        start(ctx, f"crisisdesk-{i}", base + 2 + i, server_command(base + 2 + i, 1, use_cli), env) for i in range(2)
    ]
    for server in single:
        wait_ready(server)
    phase("start_single_worker_servers")
    publishing = await publish_to_visible(ctx, seeded, [s.port for s in single])
    for server in single:
        stop(ctx, server)
    phase("publish_to_visible")

    result: dict[str, Any] = {
        "benchmark": "statuspage",
        "quick": profile is QUICK,
        "database": "postgresql" if ctx.url.startswith("postgresql") else "sqlite",
        "duration_s": profile.duration,
        "rounds": profile.rounds,
        "cpu_idle_before_pct": idle_before,
        "machine": machine(),
        "server_command": " ".join([Path(command[0]).name, *command[1:]]),
        "reference": "nginx serving the exported static files of the same snapshot "
        "(worker_processes 2, sendfile, gzip_static for the exported .gz files, open_file_cache, access_log off)",
        "static_export": exported_by,
        "same_bytes": identical,
        "runs": [asdict(r) for r in runs],
        "publish_to_visible": publishing,
        "memory": {"after_seed_mib": after_seed[0], "after_load_mib": after_load[0], "processes": after_load[1]},
        "notes": ctx.notes,
        "phases_s": phases,
    }
    result["targets"] = targets(runs, publishing)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on a new database on this PostgreSQL server (postgresql+asyncpg://user@host/db; "
        "the database is created next to db and dropped at the end)",
    )
    parser.add_argument("--port-base", type=int, default=8410, help="first of the four loopback ports used")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "statuspage.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, site, config)")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} is missing: apt-get install -y wrk nginx-light", file=sys.stderr)
            return 2
    raise_open_files()
    use_cli = cli_serves()
    with workspace(args.keep, prefix="crisisdesk-bench-") as tmp:
        pg_name = None
        if args.postgres:
            url, pg_name = asyncio.run(create_postgres_database(args.postgres))
        else:
            url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        ctx = Context(profile=QUICK if args.quick else FULL, url=url, tmp=tmp, port_base=args.port_base)
        try:
            result = asyncio.run(run(ctx, use_cli))
        finally:
            for server in list(ctx.servers):
                stop(ctx, server)
            if pg_name is not None:
                asyncio.run(drop_postgres_database(args.postgres, pg_name))
        if args.keep:
            result["workspace"] = str(tmp)
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
