"""Benchmark of the notification fan-out against bare clients sending the same messages.

    .venv/bin/python bench/fanout.py [--quick] [--postgres URL] [--workers N]

One run, one machine. An aiosmtpd sink and an HTTP receiver (bench/sendtools.py) run in their
own processes and count what arrives (per message id, so repeats show). First the baselines: a
bare aiosmtplib client sends the same kind of message with connection reuse at 50 connections,
and aiohttp and httpx POST the same kind of signed webhook body at concurrency 50, with no ledger
at all. Then a fresh database (a temporary SQLite file, or a new PostgreSQL database created next
to the one ``--postgres`` names and dropped afterwards) is migrated, 100,000 email and 10,000
webhook subscribers are imported in bulk (10,000 + 1,000 with ``--quick``), ``crisisdesk worker``
processes are started, and one update is published through the real incident service. The run is
timed from the update's commit until the peers have received every message; each worker's peak
resident memory is read from /proc.

It prints a table, writes bench/results/fanout-<time>.json, and prints the figures as one JSON
object on its last line. Every server listens on loopback only (the webhook receiver on several
127.0.0.x addresses, so that the fan-out sees many endpoints, as it would in production) and
every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadtools import stop_group, workspace
from sendtools import HOST, bare_http, bare_smtp, reset, stats, webhook_hosts

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_WALL_S = 120.0
TARGET_RATIO = 0.6
TARGET_RSS_MIB = 300.0


@dataclass
class Profile:
    emails: int
    webhooks: int
    bare_smtp: int  # messages each bare client sends (bounded by time as well)
    bare_http: int
    bare_seconds: float  # stop a bare client after this long
    fanout_timeout: float  # give up waiting for the last delivery after this long


FULL = Profile(emails=100_000, webhooks=10_000, bare_smtp=20_000, bare_http=20_000, bare_seconds=30, fanout_timeout=900)
QUICK = Profile(emails=10_000, webhooks=1_000, bare_smtp=5_000, bare_http=5_000, bare_seconds=8, fanout_timeout=90)


# ---------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Context:
    profile: Profile
    url: str
    tmp: Path
    port_base: int
    workers: int
    asyncio_loop: bool = False  # the workers on asyncio's default loop rather than uvloop
    procs: list[Proc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def smtp_port(self) -> int:
        return self.port_base

    @property
    def smtp_stats_port(self) -> int:
        return self.port_base + 1

    @property
    def http_port(self) -> int:
        return self.port_base + 2


def start(ctx: Context, name: str, command: list[str], env: dict[str, str] | None = None) -> Proc:
    log = ctx.tmp / f"{name}.log"
    with log.open("wb") as out:
        # Its own session, so stopping it reaches whatever it started and nothing else.
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    started = Proc(name, proc, log)
    ctx.procs.append(started)
    return started


def stop(ctx: Context, proc: Proc) -> None:
    stop_group(proc.proc)
    if proc in ctx.procs:
        ctx.procs.remove(proc)


def log_tail(proc: Proc, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(proc.log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        # As the peers bind: connections of an earlier run in TIME_WAIT do not make it busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak) of one process, from /proc."""
    found = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(line.split()[1])
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat): with our processes' own
    CPU time it shows how much other work ran on the machine during a measurement."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def peer_cpu(ctx: Context) -> dict[str, float]:
    from loadtools import cpu_seconds

    return {p.name: cpu_seconds(p.proc.pid) for p in ctx.procs if p.name in ("smtp-sink", "http-receiver")}


async def start_peers(ctx: Context) -> None:
    tools = str(Path(__file__).resolve().parent / "sendtools.py")
    smtp = [sys.executable, tools, "smtp", "--port", str(ctx.smtp_port), "--stats-port", str(ctx.smtp_stats_port)]
    http = [sys.executable, tools, "http", "--port", str(ctx.http_port)]
    peers = [start(ctx, "smtp-sink", smtp), start(ctx, "http-receiver", http)]
    deadline = time.monotonic() + 30
    for peer, port in zip(peers, (ctx.smtp_stats_port, ctx.http_port), strict=True):
        while True:
            if peer.proc.poll() is not None:
                raise RuntimeError(f"{peer.name} exited:\n{log_tail(peer)}")
            with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                await stats(port)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{peer.name} did not start:\n{log_tail(peer)}")
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------- the same messages, sent bare
async def baselines(ctx: Context) -> dict[str, dict[str, Any]]:
    """Each bare client alone, then what its peer counted (the receiving side is the truth)."""
    profile = ctx.profile
    runs = {
        "smtp_aiosmtplib": (bare_smtp(ctx.smtp_port, profile.bare_smtp, profile.bare_seconds), ctx.smtp_stats_port),
        "webhook_aiohttp": (
            bare_http("aiohttp", ctx.http_port, profile.bare_http, profile.bare_seconds),
            ctx.http_port,
        ),
        "webhook_httpx": (bare_http("httpx", ctx.http_port, profile.bare_http, profile.bare_seconds), ctx.http_port),
    }
    results = {}
    for name, (run_bare, stats_port) in runs.items():
        await reset(stats_port)
        peers_before, client_before, machine_before = peer_cpu(ctx), time.process_time(), machine_busy_seconds()
        result = await run_bare
        peers_after = peer_cpu(ctx)
        result["client_cpu_s"] = round(time.process_time() - client_before, 2)
        result["peer_cpu_s"] = {k: round(peers_after[k] - v, 2) for k, v in peers_before.items()}
        result["machine_busy_s"] = round(machine_busy_seconds() - machine_before, 2)
        tally = await stats(stats_port)
        result["received"] = tally["unique"]
        result["per_s"] = round(tally["unique"] / result["seconds"], 1) if result["seconds"] else 0.0
        result["seconds"] = round(result["seconds"], 2)
        result["bytes_per_message"] = round(tally["bytes"] / max(1, tally["total"]))
        results[name] = result
        await reset(stats_port)
    return results


# ---------------------------------------------------------------- the fan-out through crisisdesk


def bench_settings(url: str) -> Any:
    from crisisdesk.config import Settings

    return Settings(demo=True, database_url=url, run_workers=False, allow_private_webhooks=True)


async def prepare(ctx: Context) -> dict[str, Any]:
    """Migrate, add an admin and a component, import the subscribers in bulk as an admin would."""
    from crisisdesk.auth import service as auth
    from crisisdesk.auth.models import Role
    from crisisdesk.catalog import service as catalog
    from crisisdesk.kit import migrate
    from crisisdesk.kit.db import Database
    from crisisdesk.notify.importing import import_rows

    started = time.perf_counter()
    await asyncio.to_thread(migrate.upgrade, ctx.url)  # Alembic runs its own event loop
    settings = bench_settings(ctx.url)
    db = Database(ctx.url)
    hosts = webhook_hosts()
    rows: list[list[str]] = [["channel", "address"]]
    rows += [["email", f"reader{n}@example.com"] for n in range(ctx.profile.emails)]
    rows += [
        ["webhook", f"http://{hosts[n % len(hosts)]}:{ctx.http_port}/hooks/{n}"] for n in range(ctx.profile.webhooks)
    ]
    try:
        async with db.session() as session:
            await auth.create_user(
                session, email="admin@example.com", name="Ada Admin", role=Role.admin, password="bench-password-1"
            )
            await catalog.create_component(session, name="Public API")
        imported_at = time.perf_counter()
        async with db.session() as session:
            report = await import_rows(session, settings, rows, confirmed=True)
        import_s = time.perf_counter() - imported_at
    finally:
        await db.dispose()
    if report.imported != ctx.profile.emails + ctx.profile.webhooks:
        raise RuntimeError(f"import refused rows: {report.error_count} errors, first {report.errors[:3]}")
    return {
        "subscribers_imported": report.imported,
        "import_s": round(import_s, 2),
        "import_rows_per_s": round(report.imported / import_s),
        "prepare_s": round(time.perf_counter() - started, 2),
    }


async def publish(ctx: Context) -> tuple[str, float]:
    """Declare an incident through the real service (its first update notifies); returns (update id, commit time)."""
    from crisisdesk.auth import service as auth
    from crisisdesk.incident import service as incidents
    from crisisdesk.kit.db import Database

    db = Database(ctx.url)
    try:
        async with db.session() as session:
            admin = (await auth.list_users(session))[0]
            # No component status change: that would send webhook subscribers a second message
            # (the component update), and this run measures one update.
            declared = await incidents.declare(
                session,
                auth.actor_for(admin),
                name="Elevated error rates on the Public API",
                severity="SEV2",
                body="Some requests to the Public API fail with 503. We are investigating.",
                deliver_notifications=True,
            )
            update_id = declared.first_update.id
        committed = time.time()
    finally:
        await db.dispose()
    return update_id, committed


async def ledger(ctx: Context, update_id: str) -> dict[str, Any]:
    """Deliveries of the update by channel and state, and attempts per channel, from the database."""
    from sqlalchemy import func, select

    from crisisdesk.kit.db import Database
    from crisisdesk.notify.models import Delivery, DeliveryAttempt

    db = Database(ctx.url)
    try:
        async with db.session() as session:
            states = (
                await session.execute(
                    select(Delivery.channel, Delivery.state, func.count())
                    .where(Delivery.update_id == update_id)
                    .group_by(Delivery.channel, Delivery.state)
                )
            ).all()
            attempts = (
                await session.execute(
                    select(Delivery.channel, func.count())
                    .join(DeliveryAttempt, DeliveryAttempt.delivery_id == Delivery.id)
                    .where(Delivery.update_id == update_id)
                    .group_by(Delivery.channel)
                )
            ).all()
    finally:
        await db.dispose()
    result: dict[str, Any] = {}
    for channel, state, count in states:
        result.setdefault(str(channel), {})[str(state)] = count
    for channel, count in attempts:
        result.setdefault(str(channel), {})["attempts"] = count
    return result


def worker_env(ctx: Context) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISISDESK_")}
    return env | {
        "CRISISDESK_DEMO": "true",
        "CRISISDESK_DATABASE_URL": ctx.url,
        "CRISISDESK_BASE_URL": "http://status.example.com",
        "CRISISDESK_SMTP_HOST": HOST,
        "CRISISDESK_SMTP_PORT": str(ctx.smtp_port),
        "CRISISDESK_ALLOW_PRIVATE_WEBHOOKS": "true",
    }


# ``crisisdesk worker`` runs on uvloop; this runs it on asyncio's default loop, to compare.
ASYNCIO_WORKER = "import crisisdesk.cli as cli; cli._use_uvloop = lambda: None; cli.app(['worker'])"


async def start_workers(ctx: Context, profile_to: Path | None) -> list[Proc]:
    workers = []
    for i in range(ctx.workers):
        command = [str(BIN / "crisisdesk"), "worker"]
        if ctx.asyncio_loop:
            command = [sys.executable, "-c", ASYNCIO_WORKER]
        if profile_to is not None and i == 0:
            spy = shutil.which("py-spy") or "py-spy"
            command = [spy, "record", "--rate", "100", "--format", "raw", "-o", str(profile_to), "--", *command]
        workers.append(start(ctx, f"worker-{i + 1}", command, worker_env(ctx)))
    deadline = time.monotonic() + 60
    for worker in workers:
        while b"worker running" not in worker.log.read_bytes():
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{worker.name} did not start:\n{log_tail(worker)}")
            await asyncio.sleep(0.1)
    return workers


def worker_pids(worker: Proc) -> list[int]:
    """The worker's own pid, or under py-spy the crisisdesk process it started."""
    from loadtools import process_tree

    found = []
    for pid in process_tree(worker.proc.pid):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            if b"py-spy" not in command[0] and (b"crisisdesk" in command[-1] or command[-1] == b"worker"):
                found.append(pid)
    return found


async def fanout(ctx: Context, profile_to: Path | None) -> dict[str, Any]:
    """Publish one update with the workers running; watch the peers until every message arrived."""
    from loadtools import cpu_seconds

    expected = {"email": ctx.profile.emails, "webhook": ctx.profile.webhooks}
    ports = {"email": ctx.smtp_stats_port, "webhook": ctx.http_port}
    for port in ports.values():
        await reset(port)
    workers = await start_workers(ctx, profile_to)
    pids = {w.name: worker_pids(w) for w in workers}
    cpu_before = sum(cpu_seconds(w.proc.pid) for w in workers)
    peers_before, machine_before = peer_cpu(ctx), machine_busy_seconds()
    update_id, published = await publish(ctx)
    peak: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    tallies: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + ctx.profile.fanout_timeout
    while time.monotonic() < deadline:
        tallies = {channel: await stats(port) for channel, port in ports.items()}
        for name, worker_pid_list in pids.items():
            for pid in worker_pid_list:
                peak[name] = max(peak.get(name, 0), memory_kib(pid).get("VmHWM", 0))
        samples.append({"t": round(time.time() - published, 1), **{c: t["unique"] for c, t in tallies.items()}})
        if all(tallies[c]["unique"] >= n for c, n in expected.items()):
            break
        if all(w.proc.poll() is not None for w in workers):
            raise RuntimeError(f"every worker exited:\n{log_tail(workers[0])}")
        await asyncio.sleep(0.5)
    cpu_s = sum(cpu_seconds(w.proc.pid) for w in workers) - cpu_before
    peers_after, machine_s = peer_cpu(ctx), machine_busy_seconds() - machine_before
    peers_s = {k: round(peers_after[k] - v, 1) for k, v in peers_before.items()}
    await asyncio.sleep(1.0)  # anything still in flight lands, so duplicates are counted
    tallies = {channel: await stats(port) for channel, port in ports.items()}
    for worker in workers:
        if profile_to is not None and worker is workers[0]:
            # py-spy writes its profile when the process it records exits, not when signalled.
            for pid in pids[worker.name]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=60)
        stop(ctx, worker)
    channels = {}
    for channel, tally in tallies.items():
        last = tally["last_at"] or published
        first = tally["first_at"]
        wall = max(1e-6, last - published)
        channels[channel] = {
            "expected": expected[channel],
            "received": tally["unique"],
            "duplicates": tally["duplicates"],
            "first_after_s": None if tally["first_at"] is None else round(tally["first_at"] - published, 2),
            "last_after_s": round(wall, 2),
            "per_s": round(tally["unique"] / wall, 1),
            # The channel's own window, first to last arrival: with a lane per channel, what it
            # sends at while the others send too.
            "own_window_s": None if first is None else round(last - first, 2),
            "per_s_own_window": None if first is None else round(tally["unique"] / max(1e-6, last - first), 1),
            "bytes_per_message": round(tally["bytes"] / max(1, tally["total"])),
        }
    done = all(c["received"] >= c["expected"] for c in channels.values())
    return {
        "update_id": update_id,
        "complete": done,
        "wall_s": round(max(c["last_after_s"] for c in channels.values()), 2) if done else None,
        "channels": channels,
        "workers": len(workers),
        "worker_peak_rss_mib": {name: round(kib / 1024, 1) for name, kib in peak.items()},
        "worker_cpu_s": round(cpu_s, 1),
        "worker_cpu_ms_per_delivery": round(1000 * cpu_s / max(1, sum(expected.values())), 3),
        "peer_cpu_s": peers_s,
        # Busy CPU of the whole machine meanwhile; minus the worker's and the peers', other work.
        "machine_busy_s": round(machine_s, 1),
        "other_cpu_s": round(machine_s - cpu_s - sum(peers_s.values()), 1),
        "ledger": await ledger(ctx, update_id),
        "progress": samples[:: max(1, len(samples) // 60)],
    }


# ---------------------------------------------------------------- the run


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **{name: version(name) for name in ("aiosmtplib", "aiosmtpd", "aiohttp", "httpx", "sqlalchemy")},
    }


def targets(bare: dict[str, dict[str, Any]], run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    fastest = {
        "email": bare["smtp_aiosmtplib"]["per_s"],
        "webhook": max(bare["webhook_aiohttp"]["per_s"], bare["webhook_httpx"]["per_s"]),
    }
    result: dict[str, dict[str, Any]] = {
        "wall_s": {
            "target": f"< {TARGET_WALL_S:g}",
            "value": run["wall_s"],
            "met": run["wall_s"] is not None and run["wall_s"] < TARGET_WALL_S,
        }
    }
    for channel, reference in fastest.items():
        figures = run["channels"][channel]
        # Each channel is its own lane in the worker: its rate over its own first-to-last window.
        own = figures["per_s_own_window"]
        ratio = round(own / reference, 3) if reference and own else None
        result[f"{channel}_ratio_to_bare"] = {
            "target": f">= {TARGET_RATIO}",
            "value": ratio,
            "bare_per_s": reference,
            "per_s_own_window": own,
            "met": ratio is not None and ratio >= TARGET_RATIO and run["complete"],
        }
        # And from the publish to its last arrival, as the recipients see it.
        overall = round(figures["per_s"] / reference, 3) if reference else None
        result[f"{channel}_ratio_to_bare_from_publish"] = {
            "target": "(for comparison)",
            "value": overall,
            "met": overall is not None and overall >= TARGET_RATIO and run["complete"],
        }
    # The whole fan-out against the bare clients sending the same mix one after the other.
    bare_s = sum(run["channels"][c]["expected"] / rate for c, rate in fastest.items() if rate)
    mix = round(bare_s / run["wall_s"], 3) if run["wall_s"] else None
    result["same_mix_ratio_to_bare"] = {
        "target": f">= {TARGET_RATIO}",
        "value": mix,
        "bare_s": round(bare_s, 1),
        "met": mix is not None and mix >= TARGET_RATIO,
    }
    peak = max(run["worker_peak_rss_mib"].values(), default=0.0)
    result["worker_peak_rss_mib"] = {"target": f"< {TARGET_RSS_MIB:g}", "value": peak, "met": peak < TARGET_RSS_MIB}
    return result


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    bare = Table(title="Bare clients, no ledger (receiving peer's count)")
    for column in ("client", "concurrency", "received", "seconds", "per s", "bytes/msg", "client CPU s", "peer CPU s"):
        bare.add_column(column, justify="left" if column == "client" else "right")
    for name, run in result["bare"].items():
        bare.add_row(
            name,
            str(run["concurrency"]),
            f"{run['received']:,}",
            f"{run['seconds']:.2f}",
            f"{run['per_s']:,.0f}",
            str(run["bytes_per_message"]),
            str(run["client_cpu_s"]),
            str(sum(run["peer_cpu_s"].values())),
        )
    console.print(bare)
    fan = result.get("fanout")
    if fan:
        table = Table(
            title=f"Fan-out, {result['database']}, {fan['workers']} × crisisdesk worker, "
            f"publish at t=0 (wall {fan['wall_s']} s)"
        )
        for column in ("channel", "expected", "received", "dupl.", "first s", "last s", "per s", "own per s", "ledger"):
            table.add_column(column, justify="left" if column in ("channel", "ledger") else "right")
        for channel, run in fan["channels"].items():
            table.add_row(
                channel,
                f"{run['expected']:,}",
                f"{run['received']:,}",
                str(run["duplicates"]),
                str(run["first_after_s"]),
                str(run["last_after_s"]),
                f"{run['per_s']:,.0f}",
                f"{run['per_s_own_window'] or 0:,.0f}",
                ", ".join(f"{k} {v:,}" for k, v in fan["ledger"].get(channel, {}).items()),
            )
        console.print(table)
        console.print(
            f"worker peak RSS {fan['worker_peak_rss_mib']} MiB; worker CPU {fan['worker_cpu_s']} s "
            f"({fan['worker_cpu_ms_per_delivery']} ms per delivery); peers' CPU {fan['peer_cpu_s']} s; "
            f"other work on the machine {fan['other_cpu_s']} CPU s; import {result['prepare']['import_s']} s "
            f"({result['prepare']['import_rows_per_s']:,} rows/s)"
        )
        for name, target in result["targets"].items():
            mark = "[green]met[/green]" if target["met"] else "[red]MISSED[/red]"
            console.print(f"  {name}: {target['value']} (target {target['target']}) {mark}")
    console.print(f"CPU idle just before the run: {result['cpu_idle_before_pct']}% (other work skews the figures)")
    for note in result["notes"]:
        console.print(f"  note: {note}")


async def run(ctx: Context, *, baselines_only: bool, profile_to: Path | None) -> dict[str, Any]:
    from loadtools import idle_percent

    for port in (ctx.smtp_port, ctx.smtp_stats_port, ctx.http_port):
        if not port_free(port):
            raise RuntimeError(f"port {port} is in use; choose another --port-base")
    result: dict[str, Any] = {
        "benchmark": "fanout",
        "quick": ctx.profile is QUICK,
        "database": "postgresql" if ctx.url.startswith("postgresql") else "sqlite",
        "subscribers": {"email": ctx.profile.emails, "webhook": ctx.profile.webhooks},
        "worker_loop": "asyncio" if ctx.asyncio_loop else "uvloop",
        "cpu_idle_before_pct": idle_percent(),
        "machine": machine(),
    }
    await start_peers(ctx)
    result["bare"] = await baselines(ctx)
    if not baselines_only:
        result["prepare"] = await prepare(ctx)
        result["fanout"] = await fanout(ctx, profile_to)
        result["targets"] = targets(result["bare"], result["fanout"])
    result["notes"] = ctx.notes
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10,000 + 1,000 subscribers, under a minute")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on a new database on this PostgreSQL server (postgresql+asyncpg://user@host/db; "
        "the database is created next to db and dropped at the end)",
    )
    parser.add_argument("--workers", type=int, default=1, help="crisisdesk worker processes (default 1)")
    parser.add_argument(
        "--asyncio-loop", action="store_true", help="run the workers on asyncio's default loop, not uvloop (to compare)"
    )
    parser.add_argument("--baselines-only", action="store_true", help="measure the bare clients only")
    parser.add_argument("--py-spy", type=Path, metavar="FILE", help="py-spy profile of worker 1 (raw stacks)")
    parser.add_argument("--port-base", type=int, default=18500, help="first of the three loopback ports used")
    parser.add_argument("--output", type=Path, help="default bench/results/fanout-<time>.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    args = parser.parse_args()
    from statuspage import create_postgres_database, drop_postgres_database, raise_open_files

    raise_open_files()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    output = args.output or ROOT / "bench" / "results" / f"fanout-{stamp}.json"
    with workspace(args.keep, prefix="crisisdesk-fanout-") as tmp:
        pg_name = None
        if args.postgres:
            url, pg_name = asyncio.run(create_postgres_database(args.postgres))
        else:
            url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        profile = QUICK if args.quick else FULL
        ctx = Context(profile, url, tmp, args.port_base, args.workers, asyncio_loop=args.asyncio_loop)
        try:
            result = asyncio.run(run(ctx, baselines_only=args.baselines_only, profile_to=args.py_spy))
        finally:
            for proc in list(ctx.procs):
                stop(ctx, proc)
            if pg_name is not None:
                asyncio.run(drop_postgres_database(args.postgres, pg_name))
        if args.keep:
            result["workspace"] = str(tmp)
    print_table(result)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
