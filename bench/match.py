"""Benchmark of ticket matching: tickets/s of Matcher.rank on one core, fit time, and accuracy.

    .venv/bin/python bench/match.py [--quick] [--output PATH]

One process pinned to one CPU (BLAS threads limited to one). Accuracy: every ticket of the
labelled set in tests/data/tickets/ is ranked against the incidents crisisdesk held when it
arrived, at the default CRISISDESK_MATCH_THRESHOLD and at a range of thresholds; the tuning half,
the held-out half and the whole set are reported apart, and (without --quick) the same with one
signal taken out at a time. Throughput: the labelled tickets, over and over, ranked by one fitted
Matcher (each rank() call weighs that ticket's words with the fitted TF-IDF vectorizer); the
reference is a plain scikit-learn TfidfVectorizer fitted on the same incidents, transforming the
same tickets one at a time. Fit time: Matcher() on the same candidates, and matcher_for() on a fresh SQLite database
holding those incidents, with its cache empty (a fit) and full (one query).

It prints a table, writes bench/results/match.json, and prints the figures as one JSON object on
its last line.
"""

from __future__ import annotations

import os

# Before numpy is imported: one core means one BLAS thread too.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sklearn  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from tests.fixtures import labelled_tickets as labelled  # noqa: E402

from crisisdesk.config import Settings  # noqa: E402
from crisisdesk.support import matching  # noqa: E402
from crisisdesk.support.matching import Candidate, Matcher  # noqa: E402

DEFAULTS = Settings(demo=True)
THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
THROUGHPUT_AT = 240  # minutes after the set's base: 9 incidents open or recently resolved
TARGET_TICKETS_PER_S = 200


def pin_to_one_cpu() -> int | None:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None


def load_average() -> float | None:
    """The 1-minute load average: on a shared machine the speed figures move with it."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------ accuracy


def accuracy(world: labelled.World, *, internal: bool = False) -> dict[str, Any]:
    tune, held_out = labelled.halves(world.tickets)
    halves = {"tune": tune, "held_out": held_out, "whole": list(world.tickets)}
    outcomes = {
        name: labelled.rank_all(world, tickets, window_hours=DEFAULTS.match_window_hours, internal=internal)
        for name, tickets in halves.items()
    }
    figures: dict[str, Any] = {
        name: labelled.score(found, DEFAULTS.match_threshold).as_dict() for name, found in outcomes.items()
    }
    figures["curve"] = [
        {"threshold": threshold, **labelled.score(outcomes["whole"], threshold).as_dict()} for threshold in THRESHOLDS
    ]
    whole = labelled.score(outcomes["whole"], DEFAULTS.match_threshold)
    figures["wrongly_linked"] = whole.wrong
    figures["missed"] = whole.missed
    return figures


@contextmanager
def patched(**values: Any) -> Iterator[None]:
    saved = {name: getattr(matching, name) for name in values}
    for name, value in values.items():
        setattr(matching, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(matching, name, value)


ABLATIONS: dict[str, dict[str, Any]] = {
    "without product areas": {"_AREAS": []},
    "without symptoms": {"W_SYMPTOMS": 0.0},
    "without components": {"W_COMPONENTS": 0.0},
    "without margin": {"W_MARGIN": 0.0},
    "without the time window": {"WINDOW_FLOOR": 1.0},
}


def ablations(world: labelled.World) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, values in ABLATIONS.items():
        with patched(**values):
            outcomes = labelled.rank_all(world, world.tickets, window_hours=DEFAULTS.match_window_hours)
        found[name] = labelled.score(outcomes, DEFAULTS.match_threshold).as_dict()
    found["with internal notes"] = accuracy(world, internal=True)["whole"]
    return found


# ------------------------------------------------------------------------------ speed


def rate(call: Callable[[Any], object], items: list[Any], seconds: float) -> dict[str, float]:
    """Calls per second over ``items``, cycled for about ``seconds``, and per-call percentiles."""
    for item in items[:20]:
        call(item)  # warm up
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    index = 0
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        item = items[index % len(items)]
        index += 1
        t0 = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    times.sort()
    return {
        "calls": len(times),
        "per_s": round(len(times) / elapsed, 1),
        "p50_us": round(times[len(times) // 2] * 1e6, 1),
        "p99_us": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6, 1),
    }


def copies(candidates: list[Candidate], times: int) -> list[Candidate]:
    return [replace(c, incident_id=f"{c.incident_id}-{n}") for n in range(times) for c in candidates]


def throughput(world: labelled.World, seconds: float) -> dict[str, Any]:
    candidates = labelled.candidates_at(world, THROUGHPUT_AT, window_hours=DEFAULTS.match_window_hours)
    tickets = [labelled.ticket_text(world, t) for t in world.tickets]
    raws = [f"{t.subject}\n{t.body}" for t in tickets]
    texts = [matching.incident_words(c) for c in candidates]
    found: dict[str, Any] = {"candidates": len(candidates), "tickets": len(tickets)}

    matcher = Matcher(candidates)
    found["rank"] = rate(matcher.rank, tickets, seconds)
    plain = TfidfVectorizer().fit(texts)
    found["reference_transform"] = rate(lambda raw: plain.transform([raw]), raws, seconds)
    found["rank_vs_reference"] = round(found["rank"]["per_s"] / found["reference_transform"]["per_s"], 3)
    # What rank() would cost per ticket more if it called the fitted vectorizer's transform.
    split = [matching.tokens(matching.ticket_words(t.subject, t.body)) for t in tickets]
    found["matcher_vectorizer_transform"] = rate(
        lambda words: matcher.vectorizer.transform([words]), split, seconds / 2
    )
    many = copies(candidates, 5)
    found["rank_with_many"] = {"candidates": len(many), **rate(Matcher(many).rank, tickets, seconds / 2)}

    fits: list[float] = []
    for _ in range(30):
        t0 = time.perf_counter()
        Matcher(candidates)
        fits.append(time.perf_counter() - t0)
    found["fit_ms"] = round(statistics.median(fits) * 1e3, 2)
    fits_many: list[float] = []
    for _ in range(10):
        t0 = time.perf_counter()
        Matcher(many)
        fits_many.append(time.perf_counter() - t0)
    found["fit_many_ms"] = round(statistics.median(fits_many) * 1e3, 2)
    return found


async def matcher_for_times(world: labelled.World, tmp: Path) -> dict[str, Any]:
    """matcher_for on SQLite holding the incidents open at THROUGHPUT_AT: a fit, then cache hits."""
    from crisisdesk.auth import service as auth
    from crisisdesk.auth.models import Role
    from crisisdesk.catalog import dependencies
    from crisisdesk.catalog import service as catalog
    from crisisdesk.incident import service as incidents
    from crisisdesk.kit import migrate
    from crisisdesk.kit.db import Database
    from crisisdesk.kit.time import utcnow

    url = f"sqlite+aiosqlite:///{tmp / 'match.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    try:
        async with db.session() as session:
            user = await auth.create_user(
                session, email="bench@example.com", name="Bench", role=Role.admin, password=None
            )
            admin = auth.actor_for(user)
            ids = {}
            for key, name in world.components.items():
                ids[key] = (await catalog.create_component(session, name=name)).id
            for key, targets in world.depends_on.items():
                for target in targets:
                    await dependencies.add_dependency(session, admin, component_id=ids[key], depends_on_id=ids[target])
            held = {c.incident_id for c in labelled.candidates_at(world, THROUGHPUT_AT, window_hours=24)}
            for spec in world.incidents:
                if spec.key not in held:
                    continue
                updates = [u for u in spec.updates if u.at <= THROUGHPUT_AT]
                declared = await incidents.declare(
                    session,
                    admin,
                    name=spec.title,
                    severity="SEV2",
                    body=updates[0].body,
                    # Only the components listed on it; the rest it reaches through their dependencies.
                    components={
                        ids[c]: "partial_outage"
                        for c in spec.components
                        if not set(world.depends_on[c]) & set(spec.components)
                    },
                    deliver_notifications=False,
                )
                incident = declared.incident
                for item in updates[1:]:
                    if item.internal:
                        await incidents.add_note(session, admin, incident, body=item.body)
                    else:
                        await incidents.post_update(
                            session, admin, incident, status="identified", body=item.body, deliver_notifications=False
                        )
                if spec.resolved is not None and spec.resolved <= THROUGHPUT_AT:
                    await incidents.post_update(
                        session, admin, incident, status="resolved", body="Resolved.", deliver_notifications=False
                    )
        now = utcnow()
        misses: list[float] = []
        for _ in range(5):
            matching._FITTED.clear()
            async with db.sessionmaker() as session:
                t0 = time.perf_counter()
                fitted = await matching.matcher_for(session, now=now, window_hours=DEFAULTS.match_window_hours)
                misses.append(time.perf_counter() - t0)
        hits: list[float] = []
        async with db.sessionmaker() as session:
            for _ in range(100):
                t0 = time.perf_counter()
                again = await matching.matcher_for(session, now=now, window_hours=DEFAULTS.match_window_hours)
                hits.append(time.perf_counter() - t0)
                assert again is fitted
        return {
            "candidates": len(fitted.candidates),
            "miss_ms": round(statistics.median(misses) * 1e3, 2),
            "hit_ms": round(statistics.median(hits) * 1e3, 3),
        }
    finally:
        await db.dispose()


# ------------------------------------------------------------------------------ report


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, shutil.get_terminal_size().columns))
    acc = result["accuracy"]
    table = Table(title=f"Ticket matching: labelled set at threshold {result['threshold']} ({result['profile']})")
    for column in ("part", "tickets", "belong", "linked", "correct", "precision", "recall", "best right"):
        table.add_column(column, justify="left" if column == "part" else "right")
    rows = [(name, acc[key]) for name, key in (("tune", "tune"), ("held-out", "held_out"), ("whole", "whole"))]
    rows += list(result.get("ablations", {}).items())
    for name, figures in rows:
        table.add_row(
            name,
            str(figures["tickets"]),
            str(figures["belong"]),
            str(figures["linked"]),
            str(figures["correct"]),
            f"{figures['precision']:.3f}",
            f"{figures['recall']:.3f}",
            f"{figures['top1']:.3f}",
        )
    console.print(table)
    curve = Table(title="Whole set by threshold")
    for column in ("threshold", "linked", "precision", "recall"):
        curve.add_column(column, justify="right")
    for point in acc["curve"]:
        curve.add_row(
            str(point["threshold"]), str(point["linked"]), f"{point['precision']:.3f}", f"{point['recall']:.3f}"
        )
    console.print(curve)

    speed = result["throughput"]
    table = Table(title=f"Speed on one core (CPU {result['machine']['pinned_cpu']}), {speed['candidates']} candidates")
    for column in ("what", "per s", "p50 µs", "p99 µs"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for name, key in (
        ("Matcher.rank", "rank"),
        (f"Matcher.rank, {speed['rank_with_many']['candidates']} candidates", "rank_with_many"),
        ("reference: TfidfVectorizer().transform, raw ticket", "reference_transform"),
        ("the Matcher's vectorizer.transform, ticket tokens", "matcher_vectorizer_transform"),
    ):
        figures = speed[key]
        table.add_row(name, f"{figures['per_s']:,.0f}", f"{figures['p50_us']:,.0f}", f"{figures['p99_us']:,.0f}")
    console.print(table)
    fit = result["matcher_for"]
    console.print(
        f"rank / reference transform {speed['rank_vs_reference']:.2f}; "
        f"fit {speed['fit_ms']} ms ({speed['candidates']} incidents), "
        f"{speed['fit_many_ms']} ms ({speed['rank_with_many']['candidates']}); matcher_for on SQLite "
        f"({fit['candidates']} incidents): {fit['miss_ms']} ms with a fit, {fit['hit_ms']} ms cached"
    )
    for name, target in result["targets"].items():
        console.print(
            f"{name}: {target['measured']} (target {target['target']}): {'met' if target['met'] else 'MISSED'}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s per speed measurement, no ablations; under a minute")
    parser.add_argument("--output", type=Path, help="default bench/results/match.json")
    args = parser.parse_args()
    output = args.output or ROOT / "bench" / "results" / "match.json"
    seconds = 3.0 if args.quick else 10.0
    started = time.monotonic()
    cpu = pin_to_one_cpu()
    world = labelled.load()
    result: dict[str, Any] = {
        "profile": "quick" if args.quick else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "pinned_cpu": cpu,
            "python": platform.python_version(),
            "scikit_learn": sklearn.__version__,
            "load_average_before": load_average(),
        },
        "threshold": DEFAULTS.match_threshold,
        "window_hours": DEFAULTS.match_window_hours,
        "labelled": {
            "tickets": len(world.tickets),
            "belong": sum(1 for t in world.tickets if t.expected is not None),
            "incidents": len(world.incidents),
        },
    }
    result["accuracy"] = accuracy(world)
    if not args.quick:
        result["ablations"] = ablations(world)
    result["throughput"] = throughput(world, seconds)
    with tempfile.TemporaryDirectory(prefix="crisisdesk-match-") as tmp:
        result["matcher_for"] = asyncio.run(matcher_for_times(world, Path(tmp)))
    whole = result["accuracy"]["whole"]
    result["targets"] = {
        "tickets/s of rank() on one core": {
            "measured": result["throughput"]["rank"]["per_s"],
            "target": f">= {TARGET_TICKETS_PER_S}",
            "met": result["throughput"]["rank"]["per_s"] >= TARGET_TICKETS_PER_S,
        },
        "precision (whole set)": {"measured": whole["precision"], "target": ">= 0.9", "met": whole["precision"] >= 0.9},
        "recall (whole set)": {"measured": whole["recall"], "target": ">= 0.8", "met": whole["recall"] >= 0.8},
    }
    result["machine"]["load_average_after"] = load_average()
    result["wall_s"] = round(time.monotonic() - started, 1)
    print_table(result)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
