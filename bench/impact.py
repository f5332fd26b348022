"""Benchmark of customer impact: ``summarize()`` of one component outage over a million accounts.

    .venv/bin/python bench/impact.py [--quick] [--postgres URL] [--runs N]

One run: a fresh database (a temporary SQLite file, or a new PostgreSQL database created next to
the one URL names and dropped afterwards) is migrated; 50 components (the last ten in a region),
an admin and the demo's three impact rules go in through the services. Then 1,000,000 accounts
and 10,000,000 account-component links (100,000 and 1,000,000 with ``--quick``) are bulk-loaded
in SQL (``INSERT … SELECT`` over a generated series; the link index is built after the load, as
a restore would), each account using 10 distinct components, so one component is used by about
a fifth of the accounts. Tiers, ARR and regions come from a hash of the row number, so both
databases hold the same data; each link gets its account's copies (tier, ARR, region codes) and
``account_total`` the sum of every ARR, as the account service would have kept them.

Two incidents are declared through the incident service: a major outage of one global
component, and a partial outage of one regional component (whose accounts are filtered by
their regions). ``customer.impact.summarize()`` is timed on each, warm: after two untimed
runs, the median and p95 of ``--runs`` runs. The first page of ``affected_accounts()`` (50
accounts, with their components) is timed as well.

It prints a table, writes bench/results/impact.json, and prints the figures as one JSON object on
its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadtools import idle_percent, percentile, workspace

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = 50
REGIONAL = 10  # the last ten components run in a region (alternately eu-west and us-east)
PER_ACCOUNT = 10
STRIDES = (1, 3, 7, 9, 11, 13, 17, 19, 21, 23)  # coprime with 50: ten distinct components per account
TARGET_MS = {"postgresql": 300.0, "sqlite": 1000.0}


@dataclass
class Profile:
    accounts: int
    runs: int


FULL = Profile(accounts=1_000_000, runs=11)
QUICK = Profile(accounts=100_000, runs=7)


# ---------------------------------------------------------------- the data, in SQL


def _hash(expr: str, multiplier: int) -> str:
    """A deterministic spread of a row number (the same on both databases: 64-bit integer arithmetic)."""
    return f"(({expr} * {multiplier}) % 4294967296)"


def _series(dialect: str, first: int, count: int) -> str:
    """The row numbers first … first+count-1 as a derived table with one column, i."""
    last = first + count - 1
    if dialect == "sqlite":
        return (
            f"(WITH RECURSIVE n(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM n WHERE i < {last}) SELECT i FROM n)"
        )
    return f"(SELECT generate_series({first}, {last})::bigint AS i)"


def _pad(dialect: str) -> str:
    return "printf('%07d', i)" if dialect == "sqlite" else "lpad(i::text, 7, '0')"


def _tier_roll() -> str:
    return f"({_hash('i', 2654435761)} % 100)"


def _tier(roll: str) -> str:
    return f"CASE WHEN {roll} < 2 THEN 'Enterprise' WHEN {roll} < 20 THEN 'Business' ELSE 'Starter' END"


def _arr(roll: str) -> str:
    arr_roll = f"({_hash('i', 40503)} % 1000)"
    return f"""CASE WHEN {roll} < 2 THEN 10000000 + {arr_roll} * 100000
                    WHEN {roll} < 20 THEN 1000000 + {arr_roll} * 10000
                    ELSE 50000 + {arr_roll} * 1000 END"""


def _regions(eu: str, us: str, both: str) -> str:
    roll = f"({_hash('i', 2246822519)} % 10)"
    return f"CASE WHEN {roll} < 5 THEN {eu} WHEN {roll} < 9 THEN {us} ELSE {both} END"


def account_select(dialect: str, first: int, count: int, now: str) -> str:
    """SELECT producing the ``account`` rows first … first+count-1."""
    pad = _pad(dialect)
    series = _series(dialect, first, count)
    roll = _tier_roll()
    regions = _regions("'[\"eu-west\"]'", "'[\"us-east\"]'", '\'["eu-west", "us-east"]\'')
    if dialect == "postgresql":
        regions = f"({regions})::json"
    return f"""
        SELECT 'a' || {pad}, 'EXT-' || {pad}, 'Account ' || {pad}, {_tier(roll)}, {_arr(roll)}, {regions},
               CASE WHEN {roll} < 2 THEN 'csm' || (i % 40) || '@example.com' END,
               {now}, {now}
        FROM {series} AS s
        ORDER BY i
    """


def link_select(dialect: str, first: int, count: int) -> str:
    """SELECT producing ten distinct components for each of these accounts, in primary-key order,
    each link with its account's tier, ARR and region codes (as the account service copies them)."""
    pad = _pad(dialect)
    series = _series(dialect, first, count)
    strides = " ".join(f"WHEN {n} THEN {s}" for n, s in enumerate(STRIDES))
    offset = f"({_hash('i', 2654435761)} % {COMPONENTS})"
    stride = f"(CASE ({_hash('i', 97)} % {len(STRIDES)}) {strides} END)"
    roll = _tier_roll()
    codes = _regions("'|eu-west|'", "'|us-east|'", "'|eu-west|us-east|'")
    return f"""
        SELECT 'a' || {pad}, bc.id, {_tier(roll)}, {_arr(roll)}, {codes}
        FROM {series} AS s
        CROSS JOIN (SELECT 0 AS k{"".join(f" UNION ALL SELECT {k}" for k in range(1, PER_ACCOUNT))}) AS k
        JOIN bench_component AS bc ON bc.idx = ({offset} + k.k * {stride}) % {COMPONENTS}
        ORDER BY 1, 2
    """


LINK_COLUMNS = "(account_id, component_id, tier, arr_cents, region_codes)"
LINK_INDEX = (
    "CREATE INDEX ix_account_component_impact "
    "ON account_component (component_id, tier, arr_cents, account_id, region_codes)"
)
TOTAL = "UPDATE account_total SET arr_cents = (SELECT coalesce(sum(arr_cents), 0) FROM account) WHERE id = 1"


def load_sqlite(path: Path, count: int, component_ids: list[str]) -> dict[str, float]:
    import sqlite3

    times: dict[str, float] = {}
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while loading
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("CREATE TEMP TABLE bench_component (idx INTEGER PRIMARY KEY, id TEXT NOT NULL)")
        conn.executemany("INSERT INTO bench_component VALUES (?, ?)", list(enumerate(component_ids)))
        # Built after the load, as a restore would: sorting once beats 10 M random index inserts.
        conn.execute("DROP INDEX ix_account_component_impact")
        conn.execute("DROP INDEX ix_account_tier")
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO account (id, external_id, name, tier, arr_cents, regions, csm_owner, created_at, updated_at) "
            + account_select("sqlite", 0, count, "datetime('now')")
        )
        conn.execute("COMMIT")
        times["accounts_s"] = time.perf_counter() - started
        started = time.perf_counter()
        step = 100_000  # accounts per transaction: each batch sorts its own million links
        for first in range(0, count, step):
            conn.execute("BEGIN")
            conn.execute(
                f"INSERT INTO account_component {LINK_COLUMNS} "
                + link_select("sqlite", first, min(step, count - first))
            )
            conn.execute("COMMIT")
        times["links_s"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(LINK_INDEX)
        conn.execute("CREATE INDEX ix_account_tier ON account (tier)")
        times["indexes_s"] = time.perf_counter() - started
        conn.execute(TOTAL)
        started = time.perf_counter()
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        times["analyze_s"] = time.perf_counter() - started
    finally:
        conn.close()
    return times


async def load_postgres(url: str, count: int, component_ids: list[str]) -> dict[str, float]:
    import asyncpg
    from sqlalchemy.engine import make_url

    times: dict[str, float] = {}
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute("CREATE UNLOGGED TABLE bench_component (idx integer PRIMARY KEY, id text NOT NULL)")
        await conn.executemany("INSERT INTO bench_component VALUES ($1, $2)", list(enumerate(component_ids)))
        await conn.execute("DROP INDEX ix_account_component_impact")
        await conn.execute("DROP INDEX ix_account_tier")
        # Every link is to a row loaded here: skip the per-row foreign-key triggers, as pg_restore does.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute("SET work_mem = '256MB'")
        started = time.perf_counter()
        await conn.execute(
            "INSERT INTO account (id, external_id, name, tier, arr_cents, regions, csm_owner, created_at, updated_at) "
            + account_select("postgresql", 0, count, "now()")
        )
        times["accounts_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(f"INSERT INTO account_component {LINK_COLUMNS} " + link_select("postgresql", 0, count))
        times["links_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(LINK_INDEX)
        await conn.execute("CREATE INDEX ix_account_tier ON account (tier)")
        times["indexes_s"] = time.perf_counter() - started
        await conn.execute(TOTAL)
        started = time.perf_counter()
        await conn.execute("DROP TABLE bench_component")
        # VACUUM sets the visibility map, so index-only scans skip the heap, as on a settled database.
        await conn.execute("VACUUM ANALYZE account")
        await conn.execute("VACUUM ANALYZE account_component")
        times["analyze_s"] = time.perf_counter() - started
    finally:
        await conn.close()
    return times


# ---------------------------------------------------------------- the run


@dataclass
class World:
    component_ids: list[str]
    global_incident: str
    regional_incident: str


async def prepare(url: str) -> tuple[Any, list[str]]:
    """Migrate; an admin, two regions, 50 components, the demo's impact rules."""
    from crisisdesk.auth import service as auth
    from crisisdesk.auth.models import Role
    from crisisdesk.catalog import service as catalog
    from crisisdesk.customer import demo, rules
    from crisisdesk.incident import policy
    from crisisdesk.kit import migrate
    from crisisdesk.kit.db import Database

    await asyncio.to_thread(migrate.upgrade, url)  # Alembic runs its own event loop
    db = Database(url)
    ids: list[str] = []
    async with db.session() as session:
        await policy.ensure_defaults(session)
        user = await auth.create_user(
            session, email="admin@example.com", name="Ada Admin", role=Role.admin, password="bench-password-1"
        )
        admin = auth.actor_for(user)
        regions = [
            await catalog.create_region(session, code=code, name=name)
            for code, name in (("eu-west", "Europe (West)"), ("us-east", "US East"))
        ]
        for n in range(COMPONENTS):
            regional = n >= COMPONENTS - REGIONAL
            component = await catalog.create_component(
                session,
                name=f"Component {n:02d}",
                region_id=regions[n % 2].id if regional else None,
            )
            ids.append(component.id)
        for values in demo.RULES:
            await rules.create_rule(session, admin, **values)
    await db.dispose()
    return admin, ids


async def declare(url: str, admin: Any, ids: list[str]) -> World:
    from crisisdesk.incident import service as incidents
    from crisisdesk.kit.db import Database

    db = Database(url)
    async with db.session() as session:
        whole = await incidents.declare(
            session,
            admin,
            name="Errors on component 07",
            severity="SEV3",
            body="Investigating.",
            components={ids[7]: "major_outage"},
            deliver_notifications=False,
        )
        # An even component: in eu-west.
        regional = await incidents.declare(
            session,
            admin,
            name="Slow component 40 in eu-west",
            severity="SEV3",
            body="Investigating.",
            components={ids[COMPONENTS - REGIONAL]: "partial_outage"},
            deliver_notifications=False,
        )
    await db.dispose()
    return World(ids, whole.incident.id, regional.incident.id)


async def time_calls(url: str, world: World, runs: int) -> dict[str, Any]:
    from crisisdesk.customer import impact
    from crisisdesk.kit.db import Database

    db = Database(url)
    result: dict[str, Any] = {}
    try:
        for name, incident_id in (("global", world.global_incident), ("regional", world.regional_incident)):
            samples: list[float] = []
            page: list[float] = []
            summary = None
            for n in range(runs + 2):
                async with db.sessionmaker() as session:
                    started = time.perf_counter()
                    summary = await impact.summarize(session, incident_id)
                    elapsed = (time.perf_counter() - started) * 1000
                    started = time.perf_counter()
                    await impact.affected_accounts(session, incident_id, limit=50)
                    page_ms = (time.perf_counter() - started) * 1000
                if n >= 2:  # the first two warm the caches
                    samples.append(elapsed)
                    page.append(page_ms)
            assert summary is not None
            result[name] = {
                "affected_accounts": summary.account_count,
                "affected_arr_percent": round(summary.arr_percent, 2),
                "suggestion": summary.suggestion.severity if summary.suggestion else None,
                "summarize_ms_median": round(statistics.median(samples), 1),
                "summarize_ms_p95": round(percentile(samples, 95), 1),
                "summarize_ms_min": round(min(samples), 1),
                "first_page_ms_median": round(statistics.median(page), 1),
                "runs": runs,
            }
    finally:
        await db.dispose()
    return result


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
        "python": platform.python_version(),
        "sqlalchemy": version("sqlalchemy"),
    }


async def run(url: str, profile: Profile, *, quick: bool) -> dict[str, Any]:
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    result: dict[str, Any] = {
        "benchmark": "impact",
        "quick": quick,
        "database": dialect,
        "accounts": profile.accounts,
        "links": profile.accounts * PER_ACCOUNT,
        "components": COMPONENTS,
        "cpu_idle_before_pct": idle_percent(),
        "machine": machine(),
    }
    admin, ids = await prepare(url)
    started = time.perf_counter()
    if dialect == "sqlite":
        load = await asyncio.to_thread(load_sqlite, Path(url.split("///", 1)[1]), profile.accounts, ids)
    else:
        load = await load_postgres(url, profile.accounts, ids)
    load["total_s"] = time.perf_counter() - started
    result["load"] = {k: round(v, 1) for k, v in load.items()}
    world = await declare(url, admin, ids)
    result["scenarios"] = await time_calls(url, world, profile.runs)
    target = TARGET_MS[dialect]
    median = result["scenarios"]["global"]["summarize_ms_median"]
    result["target"] = {
        "summarize_ms": f"< {target:g}",
        "value": median,
        "met": median < target,
        "at_full_scale": profile.accounts >= FULL.accounts,
    }
    if dialect == "sqlite":
        result["database_mib"] = round(Path(url.split("///", 1)[1]).stat().st_size / 2**20)
    return result


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    table = Table(
        title=f"summarize(), {result['database']}, {result['accounts']:,} accounts, {result['links']:,} links "
        f"(load {result['load']['total_s']} s)"
    )
    for column in ("outage", "affected", "% ARR", "suggests", "median ms", "p95 ms", "min ms", "first page ms"):
        table.add_column(column, justify="left" if column == "outage" else "right")
    for name, s in result["scenarios"].items():
        table.add_row(
            "one global component" if name == "global" else "one regional component",
            f"{s['affected_accounts']:,}",
            f"{s['affected_arr_percent']}",
            str(s["suggestion"]),
            f"{s['summarize_ms_median']}",
            f"{s['summarize_ms_p95']}",
            f"{s['summarize_ms_min']}",
            f"{s['first_page_ms_median']}",
        )
    console.print(table)
    target = result["target"]
    mark = "[green]met[/green]" if target["met"] else "[red]MISSED[/red]"
    scale = "" if target["at_full_scale"] else " (quick scale; the target is for 1,000,000 accounts)"
    console.print(f"  summarize median {target['value']} ms (target {target['summarize_ms']} ms) {mark}{scale}")
    console.print(f"CPU idle just before the run: {result['cpu_idle_before_pct']}% (other work skews the figures)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 accounts and 1,000,000 links, under a minute")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on a new database on this PostgreSQL server (postgresql+asyncpg://user@host/db; "
        "the database is created next to db and dropped at the end)",
    )
    parser.add_argument("--runs", type=int, help="timed runs of each call (default 11, --quick 7)")
    parser.add_argument("--accounts", type=int, help="accounts to load (default 1,000,000, --quick 100,000)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "impact.json")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the database (the SQLite file's directory, or the PostgreSQL database)",
    )
    args = parser.parse_args()
    from statuspage import create_postgres_database, drop_postgres_database

    profile = QUICK if args.quick else FULL
    if args.runs or args.accounts:
        profile = Profile(accounts=args.accounts or profile.accounts, runs=args.runs or profile.runs)
    with workspace(args.keep and not args.postgres, prefix="crisisdesk-impact-") as tmp:
        pg_name = None
        if args.postgres:
            url, pg_name = asyncio.run(create_postgres_database(args.postgres))
        else:
            url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        try:
            result = asyncio.run(run(url, profile, quick=args.quick))
        finally:
            if pg_name is not None and not args.keep:
                asyncio.run(drop_postgres_database(args.postgres, pg_name))
        if args.keep:
            result["workspace"] = url if pg_name else str(tmp)
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
