"""Synthetic checks: HTTP(S), TCP and DNS probes run as recurring jobs, with results and stats.

Each enabled check has one job (kind ``CHECK_RUN``, key ``check:<id>``). A run reads the check,
ends that read, probes the network, and only then writes: the result, the check's state, and
its own next run at now + interval. A worker therefore holds no connection (and on SQLite no
lock) while it waits on a slow target, and many checks run at once in the probe lane.

Rules a user can rely on:

- HTTP checks send a GET and never follow a redirect: a 3xx answer is what is judged. To watch
  a URL that redirects, set ``expected_status`` to its 301/302. Without ``expected_status`` any
  2xx passes. At most the first 1 MiB of the body is read for the keyword.
- A run slower than ``latency_threshold_ms`` fails (any kind), as does one over its timeout.
- ``failures_to_alert`` consecutive failures raise one alert (dedup key ``check:<id>``); the
  first success after it resolves the alert. Disabling or deleting a failing check resolves it.
- Results older than 7 days are deleted by the check's own run (one indexed range delete).
- Stats cover the last 24 hours: uptime is counted in SQL over every result; the latency
  percentiles (nearest rank) are computed in Python over the newest 20,000 results that have a
  latency, i.e. those that got an answer (a timeout or refused connection has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.resolver
from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog import service as catalog
from crisisdesk.config import Settings
from crisisdesk.kit import jobs
from crisisdesk.kit.errors import InvalidInput, NotFound
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow
from crisisdesk.signal.ingest import AlertIn, builtin_integration, ingest
from crisisdesk.signal.models import AlertSeverity, Check, CheckKind, CheckResult, CheckState, SourceKind

CHECK_RUN = "signal.check"  # a job kind of the probe lane (signal.tasks.PROBE_KINDS)
RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT")
MAX_INTERVAL = 86_400
MAX_TIMEOUT = 60.0  # under the job lease (2 minutes), so a slow probe is never run twice
MAX_BODY = 1 << 20
KEEP_RESULTS = timedelta(days=7)
STATS_WINDOW = timedelta(hours=24)
STATS_MAX_ROWS = 20_000
USER_AGENT = "crisisdesk-check/1"
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def job_key(check_id: str) -> str:
    return f"check:{check_id}"


# --- Validation ----------------------------------------------------------------------------


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host.rstrip(".")
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def split_host_port(value: str, *, field: str = "target") -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port); refused with a message naming ``field``."""
    value = value.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})", value) or re.fullmatch(r"([^:\[\]\s]+):(\d{1,5})", value)
    if not match:
        raise InvalidInput(f"{value!r} is not host:port (use [address]:port for IPv6)", field=field)
    host, port = match.group(1), int(match.group(2))
    if not 1 <= port <= 65535:
        raise InvalidInput(f"port {port} is outside 1-65535", field=field)
    if not _host_ok(host):
        raise InvalidInput(f"{host!r} is not a host name or IP address", field=field)
    return host, port


def _validate_target(kind: CheckKind, target: str) -> str:
    target = target.strip()
    if not target:
        raise InvalidInput("the target is required", field="target")
    if len(target) > 2048:
        raise InvalidInput("the target is longer than 2,048 characters", field="target")
    if any(c.isspace() or ord(c) < 32 for c in target):
        raise InvalidInput("the target holds spaces or control characters", field="target")
    if kind is CheckKind.http:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https"):
            raise InvalidInput("an HTTP check needs an http:// or https:// URL", field="target")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise InvalidInput("the URL's port is not a number in 1-65535", field="target") from None
        if not host or not _host_ok(host) or port == 0:
            raise InvalidInput("the URL has no valid host", field="target")
    elif kind is CheckKind.tcp:
        split_host_port(target)
    else:
        if not _host_ok(target) or _is_ip(target):
            raise InvalidInput(f"{target!r} is not a host name to resolve", field="target")
    return target


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _validate(values: dict[str, Any]) -> dict[str, Any]:
    """Every field of a check, checked together; returns them normalised."""
    out = dict(values)
    name = str(values.get("name") or "").strip()
    if not name or len(name) > 200:
        raise InvalidInput("the name must be 1-200 characters", field="name")
    if "\x00" in name:
        raise InvalidInput("the name holds a NUL character", field="name")
    out["name"] = name
    try:
        kind = CheckKind(str(values.get("kind")))
    except ValueError:
        raise InvalidInput("the kind must be http, tcp or dns", field="kind") from None
    out["kind"] = kind
    out["target"] = _validate_target(kind, str(values.get("target") or ""))
    record_type = values.get("record_type") or None
    if kind is CheckKind.dns:
        record_type = str(record_type or "A").upper()
        if record_type not in RECORD_TYPES:
            raise InvalidInput(f"the record type must be one of {', '.join(RECORD_TYPES)}", field="record_type")
    elif record_type is not None:
        raise InvalidInput("a record type applies to DNS checks only", field="record_type")
    out["record_type"] = record_type
    interval = values.get("interval_seconds")
    if not isinstance(interval, int) or isinstance(interval, bool) or not 1 <= interval <= MAX_INTERVAL:
        raise InvalidInput(f"the interval must be 1-{MAX_INTERVAL} seconds", field="interval_seconds")
    timeout = values.get("timeout_seconds")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not math.isfinite(timeout):
        raise InvalidInput("the timeout must be a number of seconds", field="timeout_seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise InvalidInput(f"the timeout must be over 0 and at most {MAX_TIMEOUT:g} seconds", field="timeout_seconds")
    if timeout >= interval:
        raise InvalidInput("the timeout must be shorter than the interval", field="timeout_seconds")
    out["timeout_seconds"] = float(timeout)
    expected = values.get("expected_status")
    if expected is not None:
        if kind is not CheckKind.http:
            raise InvalidInput("an expected status applies to HTTP checks only", field="expected_status")
        if not isinstance(expected, int) or isinstance(expected, bool) or not 100 <= expected <= 599:
            raise InvalidInput("the expected status must be an HTTP status, 100-599", field="expected_status")
    keyword = values.get("keyword") or None
    if keyword is not None:
        keyword = str(keyword)
        if kind is CheckKind.tcp:
            raise InvalidInput("a keyword applies to HTTP (body) and DNS (answer) checks only", field="keyword")
        if len(keyword) > 500 or "\x00" in keyword:
            raise InvalidInput("the keyword must be at most 500 characters", field="keyword")
    out["keyword"] = keyword
    threshold = values.get("latency_threshold_ms")
    if threshold is not None and (
        not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= MAX_TIMEOUT * 1000
    ):
        raise InvalidInput(
            f"the latency threshold must be 1-{int(MAX_TIMEOUT * 1000)} ms", field="latency_threshold_ms"
        )
    failures = values.get("failures_to_alert")
    if not isinstance(failures, int) or isinstance(failures, bool) or not 1 <= failures <= 20:
        raise InvalidInput("failures before an alert must be 1-20", field="failures_to_alert")
    if not isinstance(values.get("enabled"), bool):
        raise InvalidInput("enabled must be true or false", field="enabled")
    return out


FIELDS = (
    "name",
    "kind",
    "target",
    "record_type",
    "interval_seconds",
    "timeout_seconds",
    "expected_status",
    "keyword",
    "latency_threshold_ms",
    "failures_to_alert",
    "component_id",
    "enabled",
)
DEFAULTS: dict[str, Any] = {
    "record_type": None,
    "interval_seconds": 60,
    "timeout_seconds": 10.0,
    "expected_status": None,
    "keyword": None,
    "latency_threshold_ms": None,
    "failures_to_alert": 3,
    "component_id": None,
    "enabled": True,
}


# --- Service -------------------------------------------------------------------------------


async def get_check(session: AsyncSession, check_id: str) -> Check:
    """One check, or NotFound naming ``check_id``."""
    check = await session.get(Check, check_id) if "\x00" not in check_id else None
    if check is None:
        raise NotFound(f"no check with id {check_id!r}", field="check_id")
    return check


async def list_checks(session: AsyncSession) -> list[Check]:
    """Every check, by name."""
    return list(await session.scalars(select(Check).order_by(Check.name, Check.id)))


async def _component(session: AsyncSession, component_id: str | None) -> str | None:
    if not component_id:
        return None
    if "\x00" in component_id:
        raise InvalidInput("no such component", field="component_id")
    component = await catalog.get_component(session, component_id, field="component_id")
    return component.id


async def create_check(session: AsyncSession, **values: Any) -> Check:
    """Add a check; an enabled one runs at once and then every interval."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    fields = _validate({**DEFAULTS, **values})
    fields["component_id"] = await _component(session, fields.get("component_id"))
    check = Check(id=new_id(), **fields)
    session.add(check)
    await session.flush()
    if check.enabled:
        await jobs.schedule(session, CHECK_RUN, utcnow(), key=job_key(check.id), payload={"check_id": check.id})
    return check


async def update_check(session: AsyncSession, check: Check, settings: Settings, **changes: Any) -> Check:
    """Change a check; what it probes changing starts it afresh (state unknown, a run now)."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    current = {name: getattr(check, name) for name in FIELDS}
    fields = _validate({**current, **changes})
    if "component_id" in changes:
        fields["component_id"] = await _component(session, fields.get("component_id"))
    probe_fields = ("kind", "target", "record_type", "expected_status", "keyword", "latency_threshold_ms")
    reset = any(fields[f] != current[f] for f in probe_fields) or (fields["enabled"] and not current["enabled"])
    if check.state == CheckState.down and (not fields["enabled"] or reset):
        await _alert(session, check, settings, resolve=True, why="the check was changed or disabled")
    for name, value in fields.items():
        setattr(check, name, value)
    if reset or not check.enabled:
        check.state, check.consecutive_failures, check.last_error = CheckState.unknown, 0, None
    if check.enabled:
        await jobs.schedule(session, CHECK_RUN, utcnow(), key=job_key(check.id), payload={"check_id": check.id})
    else:
        await jobs.cancel(session, job_key(check.id))
    return check


async def delete_check(session: AsyncSession, check: Check, settings: Settings) -> None:
    """Remove a check, its results and its job; a failing check's alert is resolved."""
    if check.state == CheckState.down:
        await _alert(session, check, settings, resolve=True, why="the check was deleted")
    await jobs.cancel(session, job_key(check.id))
    await session.execute(delete(CheckResult).where(CheckResult.check_id == check.id))
    await session.delete(check)
    await session.flush()


async def recent_results(session: AsyncSession, check_id: str, *, limit: int = 50) -> list[CheckResult]:
    """A check's newest results first."""
    rows = await session.scalars(
        select(CheckResult).where(CheckResult.check_id == check_id).order_by(CheckResult.at.desc()).limit(limit)
    )
    return list(rows)


@dataclass(frozen=True)
class CheckStats:
    """The last 24 hours of one check."""

    runs: int
    ok: int
    uptime_percent: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of values sorted ascending."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def stats(session: AsyncSession, check_ids: list[str]) -> dict[str, CheckStats]:
    """Uptime and latency percentiles over the last 24 hours for each check."""
    if not check_ids:
        return {}
    since = utcnow() - STATS_WINDOW
    counts = {
        row.check_id: (int(row.runs), int(row.ok or 0))
        for row in await session.execute(
            select(
                CheckResult.check_id,
                func.count().label("runs"),
                func.sum(case((CheckResult.ok.is_(True), 1), else_=0)).label("ok"),
            )
            .where(CheckResult.check_id.in_(check_ids), CheckResult.at >= since)
            .group_by(CheckResult.check_id)
        )
    }
    out: dict[str, CheckStats] = {}
    for check_id in check_ids:
        latencies = sorted(
            float(v)
            for v in await session.scalars(
                select(CheckResult.latency_ms)
                .where(CheckResult.check_id == check_id, CheckResult.at >= since, CheckResult.latency_ms.is_not(None))
                .order_by(CheckResult.at.desc())
                .limit(STATS_MAX_ROWS)
            )
            if v is not None
        )
        runs, ok = counts.get(check_id, (0, 0))
        out[check_id] = CheckStats(
            runs=runs,
            ok=ok,
            uptime_percent=round(100 * ok / runs, 3) if runs else None,
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
        )
    return out


# --- Probes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What one run needs, copied from the check before the read ends."""

    kind: CheckKind
    target: str
    record_type: str | None
    timeout: float
    expected_status: int | None
    keyword: str | None
    latency_threshold_ms: int | None

    @classmethod
    def of(cls, check: Check) -> Probe:
        return cls(
            CheckKind(check.kind),
            check.target,
            check.record_type,
            float(check.timeout_seconds),
            check.expected_status,
            check.keyword,
            check.latency_threshold_ms,
        )


@dataclass(frozen=True)
class Outcome:
    ok: bool
    latency_ms: float | None
    detail: str


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


async def probe_http(spec: Probe) -> Outcome:
    """GET the URL (no redirects followed) and judge status, keyword and latency."""
    start = time.perf_counter()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=spec.timeout)) as http,
            http.get(spec.target, allow_redirects=False, headers={"user-agent": USER_AGENT}) as response,
        ):
            body = await response.content.read(MAX_BODY)
            latency = _elapsed_ms(start)
            status, charset = response.status, response.charset or "utf-8"
    except TimeoutError:
        return Outcome(False, None, f"no answer within {spec.timeout:g} s")
    except aiohttp.ClientConnectorError as exc:
        return Outcome(False, None, f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or 'refused'})")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Outcome(False, None, f"request failed: {type(exc).__name__}")
    if spec.expected_status is not None and status != spec.expected_status:
        return Outcome(False, latency, f"HTTP {status}, expected {spec.expected_status}")
    if spec.expected_status is None and not 200 <= status < 300:
        return Outcome(False, latency, f"HTTP {status}, expected 2xx")
    if spec.keyword is not None:
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
        if spec.keyword not in text:
            return Outcome(False, latency, f"HTTP {status} without the keyword {spec.keyword!r}")
    return _judge_latency(spec, latency, f"HTTP {status}")


async def probe_tcp(spec: Probe) -> Outcome:
    """Open a TCP connection to host:port and close it."""
    host, port = split_host_port(spec.target)
    start = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), spec.timeout)
    except TimeoutError:
        return Outcome(False, None, f"no connection within {spec.timeout:g} s")
    except OSError as exc:
        return Outcome(False, None, f"cannot connect to {spec.target} ({exc.strerror or type(exc).__name__})")
    latency = _elapsed_ms(start)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return _judge_latency(spec, latency, "connected")


def resolver_for(settings: Settings, timeout: float) -> dns.asyncresolver.Resolver:
    """A resolver asking ``check_dns_resolver`` when set, else the system's resolvers."""
    server = settings.check_dns_resolver.strip()
    if server:
        resolver = dns.asyncresolver.Resolver(configure=False)
        if _is_ip(server.strip("[]")):
            resolver.nameservers = [server.strip("[]")]
        else:
            host, port = split_host_port(server, field="check_dns_resolver")
            resolver.nameservers, resolver.port = [host], port
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.timeout = resolver.lifetime = timeout
    return resolver


def _answer_text(rdata: Any) -> str:
    text = str(rdata.to_text())
    if text.startswith('"'):
        text = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text))
    return text.rstrip(".")


async def probe_dns(spec: Probe, settings: Settings) -> Outcome:
    """Resolve the name's record; with a keyword, one answer must contain it (case-insensitive)."""
    rtype = spec.record_type or "A"
    start = time.perf_counter()
    try:
        resolver = resolver_for(settings, spec.timeout)
        answer = await resolver.resolve(spec.target, rtype, search=False)
    except dns.resolver.NXDOMAIN:
        return Outcome(False, _elapsed_ms(start), f"{spec.target} does not exist (NXDOMAIN)")
    except dns.resolver.NoAnswer:
        return Outcome(False, _elapsed_ms(start), f"{spec.target} has no {rtype} record")
    except dns.exception.Timeout:
        return Outcome(False, None, f"no DNS answer within {spec.timeout:g} s")
    except dns.resolver.NoNameservers:
        return Outcome(False, None, "no DNS server answered usefully (SERVFAIL or refused)")
    except (dns.exception.DNSException, OSError) as exc:
        return Outcome(False, None, f"DNS lookup failed: {type(exc).__name__}")
    latency = _elapsed_ms(start)
    answers = [_answer_text(r) for r in answer]
    shown = ", ".join(answers[:5])
    if spec.keyword is not None:
        wanted = spec.keyword.strip().rstrip(".").lower()
        if not any(wanted in a.lower() for a in answers):
            return Outcome(False, latency, f"{rtype} {shown or 'empty'}, expected {spec.keyword!r}")
    return _judge_latency(spec, latency, f"{rtype} {shown}")


def _judge_latency(spec: Probe, latency: float, what: str) -> Outcome:
    if spec.latency_threshold_ms is not None and latency > spec.latency_threshold_ms:
        return Outcome(False, latency, f"{what} in {latency:.0f} ms, slower than {spec.latency_threshold_ms} ms")
    return Outcome(True, latency, f"{what} in {latency:.0f} ms")


async def probe(spec: Probe, settings: Settings) -> Outcome:
    """Run one probe of any kind."""
    if spec.kind is CheckKind.http:
        return await probe_http(spec)
    if spec.kind is CheckKind.tcp:
        return await probe_tcp(spec)
    return await probe_dns(spec, settings)


# --- The job -------------------------------------------------------------------------------


async def run_check(session: AsyncSession, payload: dict[str, Any], settings: Settings) -> None:
    """The CHECK_RUN handler: probe, record, move the state, alert, run again after the interval."""
    check_id = str(payload.get("check_id", ""))
    check = await session.get(Check, check_id)
    if check is None or not check.enabled:
        return
    spec = Probe.of(check)
    # End the read before the network: no connection (nor SQLite lock) is held while probing.
    await session.rollback()
    outcome = await probe(spec, settings)
    session.expunge_all()
    check = await session.get(Check, check_id)
    if check is None or not check.enabled or Probe.of(check) != spec:
        return  # deleted, disabled or changed meanwhile: the edit scheduled what comes next
    now = utcnow()
    session.add(
        CheckResult(check_id=check.id, at=now, ok=outcome.ok, latency_ms=outcome.latency_ms, detail=outcome.detail)
    )
    check.last_run_at = now
    if outcome.ok:
        was_down = check.state == CheckState.down
        check.state, check.consecutive_failures, check.last_error = CheckState.up, 0, None
        if was_down:
            await _alert(session, check, settings, resolve=True, why=outcome.detail)
    else:
        check.consecutive_failures += 1
        check.last_error = outcome.detail
        if check.consecutive_failures >= check.failures_to_alert and check.state != CheckState.down:
            check.state = CheckState.down
            await _alert(session, check, settings, resolve=False, why=outcome.detail)
    await session.execute(
        delete(CheckResult).where(CheckResult.check_id == check.id, CheckResult.at < now - KEEP_RESULTS)
    )
    await jobs.schedule(
        session, CHECK_RUN, now + timedelta(seconds=check.interval_seconds), key=job_key(check.id), payload=payload
    )


async def _alert(session: AsyncSession, check: Check, settings: Settings, *, resolve: bool, why: str) -> None:
    """Trigger or resolve the check's alert through the built-in check integration."""
    integration = await builtin_integration(session, SourceKind.check)
    alert = AlertIn(
        dedup_key=job_key(check.id),
        action="resolve" if resolve else "trigger",
        summary=f"{check.name} recovered: {why}" if resolve else f"{check.name} failing: {why}",
        severity=AlertSeverity.error,
        source=check.target[:255],
        details={
            "check_id": check.id,
            "kind": str(check.kind),
            "target": check.target,
            "consecutive_failures": check.consecutive_failures,
            "result": why,
        },
        link=f"{settings.base_url.rstrip('/')}/console/checks/{check.id}",
        component_ids=[check.component_id] if check.component_id else [],
    )
    await ingest(session, integration, [alert])
