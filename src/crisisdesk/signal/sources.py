"""Payload parsers: Alertmanager (webhook v4), Grafana alerting (v1), PagerDuty Events v2, generic JSON.

Each turns a decoded JSON body into :class:`~crisisdesk.signal.ingest.AlertIn` values, checking
the shape by hand (no model per alert: this is the hot path) and naming the path of anything
wrong, e.g. ``alerts[3].labels``.

Generic JSON is read through the integration's ``mapping``; every value is a dotted path into
the body (``data.id``; a leading ``$.`` is allowed; ``items.0.id`` indexes a list):

=================  ==========================================================================
``alerts``         path to a list of alerts (a batch); the other paths are then read inside each
                   item. Without it the body is one alert.
``dedup_key``      the alert's key (required); repeats with the same key join the open alert
``summary``        a one-line description (default: the key)
``severity``       critical, error, warning or info (also critical/high/page, warn, low, ok …)
``status``         the value that says whether the alert fires or is resolved (``action`` is
                   accepted as another name for it); "acknowledged" or "ack" acknowledges
``resolved_values`` the values of ``status`` meaning resolved (default: resolved, ok, recovered,
                   closed, inactive, false; compared case-insensitively)
``source``         where the alert comes from (a host, a service)
``link``           an http(s) URL about the alert
``labels``         path to an object of labels (values become strings), used by the rules
``annotations``    path to an object kept with the alert
``details``        path to an object kept with the alert (default: the whole alert, up to 16 KB)
``component``      a value stored as the ``component`` label (rules can match it)
``timestamp``      when the alert started (ISO 8601)
=================  ==========================================================================
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from crisisdesk.kit.time import as_utc
from crisisdesk.signal.ingest import MAX_KEY, MAX_SOURCE, MAX_SUMMARY, AlertIn
from crisisdesk.signal.models import AlertSeverity

Loc = tuple[str | int, ...]
MAX_ALERTS = 10_000


class PayloadError(Exception):
    """The body does not have the shape its source sends; ``loc`` is the path to the problem."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message

    @property
    def path(self) -> str:
        text = ""
        for part in self.loc:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text or "body"


_SEVERITY = {
    "critical": AlertSeverity.critical,
    "crit": AlertSeverity.critical,
    "page": AlertSeverity.critical,
    "fatal": AlertSeverity.critical,
    "emergency": AlertSeverity.critical,
    "disaster": AlertSeverity.critical,
    "p1": AlertSeverity.critical,
    "error": AlertSeverity.error,
    "err": AlertSeverity.error,
    "high": AlertSeverity.error,
    "major": AlertSeverity.error,
    "p2": AlertSeverity.error,
    "warning": AlertSeverity.warning,
    "warn": AlertSeverity.warning,
    "minor": AlertSeverity.warning,
    "medium": AlertSeverity.warning,
    "average": AlertSeverity.warning,
    "p3": AlertSeverity.warning,
    "info": AlertSeverity.info,
    "information": AlertSeverity.info,
    "low": AlertSeverity.info,
    "none": AlertSeverity.info,
    "ok": AlertSeverity.info,
    "p4": AlertSeverity.info,
    "p5": AlertSeverity.info,
}


def severity_of(value: object, default: AlertSeverity = AlertSeverity.error) -> AlertSeverity:
    """A source's severity word mapped onto the four Events v2 severities."""
    if isinstance(value, str):
        return _SEVERITY.get(value.strip().lower(), default)
    return default


def parse_time(value: object, loc: Loc) -> datetime | None:
    """An RFC 3339 time; Alertmanager's zero time (0001-01-01) and empty mean none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(loc, "must be an ISO 8601 time such as 2026-01-31T10:00:00Z")
    if value.startswith("0001-01-01"):
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise PayloadError(loc, f"{value[:40]!r} is not an ISO 8601 time such as 2026-01-31T10:00:00Z") from None


def _object(value: object, loc: Loc, *, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(loc, "must be a JSON object")
    return value


def _labels(value: object, loc: Loc) -> dict[str, str]:
    labels = _object(value, loc)
    for key, item in labels.items():
        if not isinstance(item, str):
            raise PayloadError((*loc, key), "a label value must be a string")
    return labels


def _text(value: object, loc: Loc, *, limit: int | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(loc, "must be a string")
    if "\x00" in value:
        raise PayloadError(loc, "must not contain a NUL character")
    if limit is not None and len(value) > limit:
        raise PayloadError(loc, f"is {len(value)} characters; at most {limit} are allowed")
    return value


def _printable(value: str) -> str:
    """Text for a text column: a NUL (which PostgreSQL cannot store) becomes U+FFFD, so one odd
    alert does not cost its whole batch."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _key(value: str, loc: Loc) -> str:
    if not value or "\x00" in value:
        raise PayloadError(loc, "must be a non-empty string without NUL characters")
    if len(value) > MAX_KEY:
        raise PayloadError(loc, f"is {len(value)} characters; at most {MAX_KEY} are allowed")
    return value


def _fingerprint(labels: Mapping[str, str]) -> str:
    return hashlib.sha256(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _prometheus(data: object, version: str, grafana: bool) -> list[AlertIn]:
    """The Alertmanager webhook body (Grafana's has the same shape and a few more fields)."""
    body = _object(data, ())
    sent = body.get("version")
    if sent is not None and sent != version:
        raise PayloadError(("version",), f"must be {version!r} for this integration (got {str(sent)[:20]!r})")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError(("alerts",), "must be a list of alerts")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(("alerts",), f"holds {len(alerts)} alerts; at most {MAX_ALERTS} are accepted at once")
    group_key = body.get("groupKey")
    hint = group_key if isinstance(group_key, str) and group_key else None
    parsed = []
    for i, item in enumerate(alerts):
        loc: Loc = ("alerts", i)
        alert = _object(item, loc)
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError((*loc, "status"), "must be 'firing' or 'resolved'")
        labels = _labels(alert.get("labels"), (*loc, "labels"))
        annotations = _object(alert.get("annotations"), (*loc, "annotations"), required=False)
        fingerprint = alert.get("fingerprint")
        if fingerprint is None or fingerprint == "":
            fingerprint = _fingerprint(labels)
        elif not isinstance(fingerprint, str):
            raise PayloadError((*loc, "fingerprint"), "must be a string")
        else:
            _key(fingerprint, (*loc, "fingerprint"))
        summary = annotations.get("summary") or annotations.get("description") or labels.get("alertname")
        if not isinstance(summary, str) or not summary:
            summary = fingerprint
        link = alert.get("generatorURL")
        details: dict[str, Any] = {}
        if grafana:
            for name in ("values", "valueString", "dashboardURL", "panelURL", "silenceURL", "imageURL"):
                if alert.get(name):
                    details[name] = alert[name]
            link = alert.get("panelURL") or alert.get("dashboardURL") or link
        parsed.append(
            AlertIn(
                dedup_key=fingerprint,
                action="trigger" if status == "firing" else "resolve",
                summary=_printable(summary[:MAX_SUMMARY]),
                severity=severity_of(labels.get("severity")),
                source=_printable(labels.get("instance") or labels.get("job") or "") or None,
                labels=labels,
                annotations=annotations,
                details=details,
                link=_printable(link) if isinstance(link, str) and link else None,
                starts_at=parse_time(alert.get("startsAt"), (*loc, "startsAt")),
                ends_at=parse_time(alert.get("endsAt"), (*loc, "endsAt")),
                group_hint=hint,
            )
        )
    return parsed


def parse_alertmanager(data: object) -> list[AlertIn]:
    """A Prometheus Alertmanager ``webhook_config`` body (version "4")."""
    return _prometheus(data, "4", grafana=False)


def parse_grafana(data: object) -> list[AlertIn]:
    """A Grafana alerting webhook body (version "1")."""
    return _prometheus(data, "1", grafana=True)


# --- generic JSON -------------------------------------------------------------------------

MAPPING_PATHS = (
    "alerts",
    "dedup_key",
    "summary",
    "severity",
    "status",
    "action",
    "source",
    "link",
    "labels",
    "annotations",
    "details",
    "component",
    "timestamp",
)
MAPPING_LISTS = ("resolved_values",)
RESOLVED = ("resolved", "ok", "recovered", "closed", "inactive", "false")
ACKNOWLEDGED = ("acknowledged", "ack")


def _split(path: str) -> tuple[str, ...]:
    path = path.strip()
    if path.startswith("$."):
        path = path[2:]
    elif path == "$":
        return ()
    return tuple(p for p in path.split("."))


def _get(data: object, path: tuple[str, ...]) -> object:
    for step in path:
        if isinstance(data, dict):
            data = data.get(step)
        elif isinstance(data, list) and step.isdecimal() and int(step) < len(data):
            data = data[int(step)]
        else:
            return None
    return data


def _scalar(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def parse_generic(data: object, mapping: Mapping[str, Any]) -> list[AlertIn]:
    """Any JSON body, read through the integration's mapping (see the module's table)."""
    paths = {key: _split(mapping[key]) for key in MAPPING_PATHS if isinstance(mapping.get(key), str)}
    if "dedup_key" not in paths:
        raise PayloadError((), "this integration's mapping does not say where the alert's key is (dedup_key)")
    resolved = {v.lower() for v in mapping.get("resolved_values") or RESOLVED}
    acknowledged = set(ACKNOWLEDGED)
    status_path = paths.get("status", paths.get("action"))
    if "alerts" in paths:
        items = _get(data, paths["alerts"])
        base: Loc = paths["alerts"]
        if not isinstance(items, list):
            raise PayloadError(base, "must be a list of alerts (the mapping's 'alerts' path)")
        if len(items) > MAX_ALERTS:
            raise PayloadError(base, f"holds {len(items)} alerts; at most {MAX_ALERTS} are accepted at once")
        located: list[tuple[Loc, object]] = [((*base, i), item) for i, item in enumerate(items)]
    else:
        located = [((), data)]
    parsed = []
    for loc, item in located:
        key = _scalar(_get(item, paths["dedup_key"]))
        if key is None or key == "":
            raise PayloadError((*loc, *paths["dedup_key"]), "is missing: the mapping reads the alert's key here")
        key = _key(key, (*loc, *paths["dedup_key"]))
        status = _scalar(_get(item, status_path)) if status_path else None
        word = (status or "").strip().lower()
        action = "resolve" if word in resolved else "acknowledge" if word in acknowledged else "trigger"
        summary = _scalar(_get(item, paths["summary"])) if "summary" in paths else None
        labels: dict[str, str] = {}
        if "labels" in paths:
            raw = _get(item, paths["labels"])
            if raw is not None:
                for name, value in _object(raw, (*loc, *paths["labels"])).items():
                    text = _scalar(value)
                    if text is not None:
                        labels[str(name)] = text
        if "component" in paths:
            component = _scalar(_get(item, paths["component"]))
            if component:
                labels["component"] = component
        source = _scalar(_get(item, paths["source"])) if "source" in paths else None
        link = _scalar(_get(item, paths["link"])) if "link" in paths else None
        annotations = (
            _object(_get(item, paths["annotations"]), (*loc, *paths["annotations"]), required=False)
            if "annotations" in paths
            else {}
        )
        if "details" in paths:
            details = _object(_get(item, paths["details"]), (*loc, *paths["details"]), required=False)
        else:
            details = item if isinstance(item, dict) and len(orjson.dumps(item)) <= 16_384 else {}
        starts_at = (
            parse_time(_get(item, paths["timestamp"]), (*loc, *paths["timestamp"])) if "timestamp" in paths else None
        )
        parsed.append(
            AlertIn(
                dedup_key=key,
                action=action,  # type: ignore[arg-type]
                summary=_printable((summary or key)[:MAX_SUMMARY]),
                severity=severity_of(_get(item, paths["severity"])) if "severity" in paths else AlertSeverity.error,
                source=_printable(source[:MAX_SOURCE]) if source else None,
                labels=labels,
                annotations=annotations,
                details=details,
                link=_printable(link) if link and link.startswith(("http://", "https://")) else None,
                starts_at=starts_at,
            )
        )
    return parsed


# --- PagerDuty Events API v2 ----------------------------------------------------------------

EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
EVENT_SEVERITIES = ("critical", "error", "warning", "info")


def parse_events_v2(data: object) -> tuple[str | None, AlertIn | None, list[str]]:
    """(routing key, the alert, errors) of one Events v2 event; errors in PagerDuty's wording.

    A blank ``dedup_key`` on a trigger gets a generated one; acknowledge and resolve need one.
    """
    if not isinstance(data, dict):
        return None, None, ["Event object must be a JSON object"]
    errors: list[str] = []
    routing_key = data.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key.strip():
        errors.append("'routing_key' is missing or blank")
        routing_key = None
    elif len(routing_key) > 64 or "\x00" in routing_key:
        errors.append("'routing_key' is not a valid routing key")
        routing_key = None
    action = data.get("event_action")
    if action not in EVENT_ACTIONS:
        errors.append("'event_action' must be one of trigger, acknowledge, resolve")
    dedup_key = data.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
        dedup_key = None
    elif isinstance(dedup_key, str):
        if len(dedup_key) > MAX_KEY:
            errors.append(f"'dedup_key' must be at most {MAX_KEY} characters")
        elif "\x00" in dedup_key:
            errors.append("'dedup_key' must not contain a NUL character")
        if not dedup_key.strip():
            dedup_key = None
    if action in ("acknowledge", "resolve") and dedup_key is None:
        errors.append(f"'dedup_key' is required for {action} events")
    payload = data.get("payload")
    summary = source = None
    severity = AlertSeverity.error
    starts_at = None
    labels: dict[str, str] = {}
    details: dict[str, Any] = {}
    if action == "trigger" or payload is not None:
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or not an object")
            payload = {}
        summary = payload.get("summary")
        if action == "trigger" and (not isinstance(summary, str) or not summary.strip()):
            errors.append("'payload.summary' is missing or blank")
        elif summary is not None and not isinstance(summary, str):
            errors.append("'payload.summary' must be a string")
        elif isinstance(summary, str) and len(summary) > MAX_SUMMARY:
            errors.append(f"'payload.summary' must be at most {MAX_SUMMARY} characters")
        elif isinstance(summary, str) and "\x00" in summary:
            errors.append("'payload.summary' must not contain a NUL character")
        source = payload.get("source")
        if action == "trigger" and (not isinstance(source, str) or not source.strip()):
            errors.append("'payload.source' is missing or blank")
        elif source is not None and not isinstance(source, str):
            errors.append("'payload.source' must be a string")
        elif isinstance(source, str) and len(source) > MAX_SOURCE:
            errors.append(f"'payload.source' must be at most {MAX_SOURCE} characters")
        elif isinstance(source, str) and "\x00" in source:
            errors.append("'payload.source' must not contain a NUL character")
        raw_severity = payload.get("severity")
        if action == "trigger" or raw_severity is not None:
            if raw_severity not in EVENT_SEVERITIES:
                errors.append("'payload.severity' must be one of critical, error, warning, info")
            else:
                severity = AlertSeverity(raw_severity)
        timestamp = payload.get("timestamp")
        if timestamp is not None:
            try:
                starts_at = parse_time(timestamp, ("payload", "timestamp"))
            except PayloadError:
                errors.append("'payload.timestamp' must be an ISO 8601 time such as 2026-01-31T10:00:00Z")
        for name in ("component", "group", "class"):
            value = payload.get(name)
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > MAX_SOURCE:
                errors.append(f"'payload.{name}' must be a string of at most {MAX_SOURCE} characters")
            else:
                labels[name] = value
        custom = payload.get("custom_details")
        if custom is not None:
            details = custom if isinstance(custom, dict) else {"custom_details": custom}
    annotations: dict[str, Any] = {}
    link = None
    for name in ("links", "images"):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            errors.append(f"'{name}' must be a list of objects")
            continue
        if not all(isinstance(v.get("href", v.get("src")), str) for v in value):
            errors.append(f"'{name}' entries need an href" + (" or src" if name == "images" else ""))
            continue
        annotations[name] = value
        if name == "links" and value:
            link = value[0].get("href")
    for name in ("client", "client_url"):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 2048:
            errors.append(f"'{name}' must be a string of at most 2048 characters")
        else:
            annotations[name] = value
    if errors:
        return routing_key, None, errors
    key = dedup_key or secrets.token_hex(16)
    link = link or annotations.get("client_url")
    alert = AlertIn(
        dedup_key=key,
        action=action,  # type: ignore[arg-type]
        summary=summary or "",
        severity=severity,
        source=source,
        labels=labels,
        annotations=annotations,
        details=details,
        link=_printable(link) if link else None,
        starts_at=starts_at,
    )
    return routing_key, alert, []
