"""Grouping and routing rules: matchers, the group an alert joins, the route its group takes.

A matcher maps a key to an exact value (``{"team": "identity"}``) or to a regular expression
that must match the whole value (``{"alertname": {"regex": "Login.*"}}``; the shorthand
``"=~Login.*"`` means the same). A key is a label name or one of the alert's fields
``summary``, ``source``, ``severity``, ``integration`` (the integration's id) and ``component``
(one of the alert's component ids); a label of that name wins over the field. Every matcher of
a rule must hold; a rule without matchers matches every alert of its integrations.

Rules are read once and kept in this process for :data:`CACHE_SECONDS`, compiled; an edit made
through this process's ORM takes effect at once (a flush that touches a rule forgets them), one
made by another process within that time.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from crisisdesk.kit.errors import InvalidInput
from crisisdesk.signal.models import GroupingRule, RoutingRule, RuleAction

if TYPE_CHECKING:
    from crisisdesk.signal.ingest import AlertIn

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
FIELDS = frozenset({"summary", "source", "severity", "integration", "component"})
MAX_PATTERN = 500


@dataclass(frozen=True, slots=True)
class Matcher:
    key: str
    exact: str | None = None
    pattern: re.Pattern[str] | None = None

    def holds(self, alert: AlertIn, integration_id: str) -> bool:
        if self.key == "component" and self.key not in alert.labels:
            return any(self._test(c) for c in alert.component_ids)
        return self._test(value_of(alert, self.key, integration_id))

    def _test(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.pattern is not None:
            return self.pattern.fullmatch(value) is not None
        return value == self.exact


def value_of(alert: AlertIn, key: str, integration_id: str) -> str | None:
    """The value a matcher or a grouping ``by`` reads: a label, else the alert's field."""
    label = alert.labels.get(key)
    if label is not None:
        return str(label)
    if key == "summary":
        return alert.summary
    if key == "source":
        return alert.source
    if key == "severity":
        return str(alert.severity)
    if key == "integration":
        return integration_id
    if key == "component":
        return ",".join(sorted(alert.component_ids)) or None
    return None


def compile_matchers(matchers: Mapping[str, Any], *, field: str = "matchers") -> tuple[Matcher, ...]:
    """Check and compile a rule's matchers; a bad one is refused naming its key."""
    if not isinstance(matchers, Mapping):
        raise InvalidInput("matchers must be an object of key: value or key: {regex: ...}", field=field)
    compiled = []
    for key, spec in matchers.items():
        where = f"{field}.{key}"
        if not isinstance(key, str) or not key.strip() or len(key) > 200:
            raise InvalidInput("a matcher key must be a label name or a field, 1 to 200 characters", field=where)
        pattern: str | None = None
        if isinstance(spec, Mapping):
            if set(spec) != {"regex"} or not isinstance(spec["regex"], str):
                raise InvalidInput('write a regular expression as {"regex": "..."}', field=where)
            pattern = spec["regex"]
        elif isinstance(spec, str) and spec.startswith("=~"):
            pattern = spec[2:]
        elif isinstance(spec, str | int | float | bool) and spec is not None:
            compiled.append(Matcher(key, exact=spec if isinstance(spec, str) else orjson.dumps(spec).decode()))
            continue
        else:
            raise InvalidInput("a matcher is an exact value or {regex: ...}", field=where)
        if len(pattern) > MAX_PATTERN:
            raise InvalidInput(f"the regular expression is longer than {MAX_PATTERN} characters", field=where)
        try:
            compiled.append(Matcher(key, pattern=re.compile(pattern)))
        except re.error as exc:
            raise InvalidInput(f"not a valid regular expression: {exc}", field=where) from None
    return tuple(compiled)


def check_by(by: Iterable[Any], *, field: str = "by") -> list[str]:
    """Check a grouping rule's ``by`` list (label names or fields)."""
    if isinstance(by, str | bytes) or not all(isinstance(k, str) and k.strip() and len(k) <= 200 for k in by):
        raise InvalidInput("by must be a list of label names or fields (summary, source, ...)", field=field)
    return [k.strip() for k in by]


@dataclass(frozen=True, slots=True)
class Grouping:
    id: str
    integration_id: str | None
    matchers: tuple[Matcher, ...]
    by: tuple[str, ...]
    window_seconds: float


@dataclass(frozen=True, slots=True)
class Route:
    id: str
    name: str
    integration_id: str | None
    matchers: tuple[Matcher, ...]
    component_ids: tuple[str, ...]
    component_status: str
    severity: str | None
    escalation_policy_id: str | None
    action: RuleAction


@dataclass(frozen=True, slots=True)
class RuleSet:
    grouping: tuple[Grouping, ...]
    routing: tuple[Route, ...]


def _holds(matchers: tuple[Matcher, ...], alert: AlertIn, integration_id: str) -> bool:
    return all(m.holds(alert, integration_id) for m in matchers)


# The default grouping, when no rule matches: the source's own grouping when it has one
# (Alertmanager's and Grafana's groupKey), else the alert alone (its dedup key).
DEFAULT_WINDOW_SECONDS = 60 * 60.0


def group_for(rules: RuleSet, alert: AlertIn, integration_id: str) -> tuple[str | None, str, float]:
    """(grouping rule id, group key, window in seconds) for a new alert."""
    for rule in rules.grouping:
        if rule.integration_id not in (None, integration_id) or not _holds(rule.matchers, alert, integration_id):
            continue
        values = [value_of(alert, key, integration_id) for key in rule.by]
        return rule.id, _digest(["rule", rule.id, *values]), rule.window_seconds
    if alert.group_hint:
        return None, _digest(["source", integration_id, alert.group_hint]), DEFAULT_WINDOW_SECONDS
    return None, _digest(["alert", integration_id, alert.dedup_key]), DEFAULT_WINDOW_SECONDS


def route_for(rules: RuleSet, alert: AlertIn, integration_id: str) -> Route | None:
    """The first enabled routing rule (by position) whose matchers all hold."""
    for rule in rules.routing:
        if rule.integration_id in (None, integration_id) and _holds(rule.matchers, alert, integration_id):
            return rule
    return None


def _digest(parts: list[str | None]) -> str:
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


# (engine, expiry, rules): one engine per process; tests open one per database.
_cache: tuple[object, float, RuleSet] | None = None


def invalidate() -> None:
    """Forget the compiled rules: the next alert reads them again."""
    global _cache
    _cache = None


async def load(session: AsyncSession) -> RuleSet:
    """The compiled rules, read at most every :data:`CACHE_SECONDS`."""
    global _cache
    now = time.monotonic()
    engine = session.bind
    if _cache is not None and _cache[0] is engine and _cache[1] > now:
        return _cache[2]
    grouping = []
    for g in await session.scalars(select(GroupingRule).order_by(GroupingRule.position, GroupingRule.id)):
        try:
            matchers, by = compile_matchers(g.matchers or {}), check_by(g.by or [])
        except InvalidInput as exc:
            log.warning("grouping rule %s is skipped: %s", g.id, exc.message)
            continue
        grouping.append(Grouping(g.id, g.integration_id, matchers, tuple(by), max(g.window_minutes, 0) * 60.0))
    routing = []
    query = select(RoutingRule).where(RoutingRule.enabled.is_(True)).order_by(RoutingRule.position, RoutingRule.id)
    for r in await session.scalars(query):
        try:
            matchers = compile_matchers(r.matchers or {})
        except InvalidInput as exc:
            log.warning("routing rule %s is skipped: %s", r.id, exc.message)
            continue
        routing.append(
            Route(
                r.id,
                r.name,
                r.integration_id,
                matchers,
                tuple(r.component_ids or ()),
                r.component_status,
                r.severity,
                r.escalation_policy_id,
                RuleAction(r.action),
            )
        )
    rules = RuleSet(tuple(grouping), tuple(routing))
    _cache = (engine, now + CACHE_SECONDS, rules)
    return rules


@event.listens_for(Session, "after_flush")
def _forget_on_edit(session: Session, _context: object) -> None:
    for obj in chain(session.new, session.dirty, session.deleted):
        if isinstance(obj, GroupingRule | RoutingRule):
            invalidate()
            return
