"""The receiving endpoints: each source's format, Events v2 semantics and answers, every refusal."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crisisdesk.kit.db import Database
from crisisdesk.kit.ids import new_id
from crisisdesk.signal import hooks
from crisisdesk.signal import rules as rulebook
from crisisdesk.signal.models import Alert, AlertGroup, Integration, SourceKind
from tests.fixtures.api import count_rows


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    rulebook.invalidate()
    hooks.forget_integrations()


async def _integration(db: Database, kind: SourceKind, **kw: Any) -> Integration:
    async with db.session() as s:
        integration = Integration(name=f"{kind} source", kind=kind, token=new_id(32), **kw)
        s.add(integration)
    return integration


async def _alerts(db: Database) -> list[Alert]:
    async with db.sessionmaker() as s:
        return list(await s.scalars(select(Alert).order_by(Alert.id)))


def alertmanager_body(status: str = "firing", *fingerprints: str, group: str = "login") -> dict[str, Any]:
    """A webhook_config body as Alertmanager 0.25 sends it (our values, its shape)."""
    alerts = [
        {
            "status": status,
            "labels": {"alertname": "LoginErrors", "severity": "critical", "instance": f"idp-{i}", "team": "identity"},
            "annotations": {"summary": f"Login errors above 5% on idp-{i}", "runbook": "https://runbooks.test/login"},
            "startsAt": "2026-11-20T09:58:30.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-20T10:20:00Z",
            "generatorURL": "http://prometheus.test/graph?g0.expr=login_errors",
            "fingerprint": fp,
        }
        for i, fp in enumerate(fingerprints or ("a1b2c3d4e5f60718",))
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "crisisdesk",
        "groupLabels": {"alertname": "LoginErrors"},
        "commonLabels": {"alertname": "LoginErrors", "team": "identity"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "alerts": alerts,
    }


def grafana_body(state: str = "firing") -> dict[str, Any]:
    return {
        "receiver": "crisisdesk",
        "status": state,
        "orgId": 1,
        "alerts": [
            {
                "status": state,
                "labels": {"alertname": "High latency", "grafana_folder": "Edge", "severity": "warning"},
                "annotations": {"summary": "p99 latency above 800 ms on the edge"},
                "startsAt": "2026-11-20T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://grafana.test/alerting/grafana/abc/view",
                "fingerprint": "57c6d9296de2ad39",
                "silenceURL": "http://grafana.test/alerting/silence/new",
                "dashboardURL": "http://grafana.test/d/edge",
                "panelURL": "http://grafana.test/d/edge?viewPanel=4",
                "values": {"B": 912.5, "C": 1},
            }
        ],
        "groupLabels": {"alertname": "High latency"},
        "commonLabels": {"alertname": "High latency"},
        "commonAnnotations": {},
        "externalURL": "http://grafana.test/",
        "version": "1",
        "groupKey": '{}:{alertname="High latency"}',
        "truncatedAlerts": 0,
        "orgId_": 1,
        "title": "[FIRING:1] High latency (Edge)",
        "state": "alerting",
        "message": "**Firing**\n\nValue: B=912.5",
    }


def event(routing_key: str, action: str = "trigger", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action}
    if action == "trigger":
        body["payload"] = {
            "summary": "DB replica lag above 30 s",
            "source": "db-replica-2.eu",
            "severity": "critical",
            "timestamp": "2026-11-20T10:00:00.000+01:00",
            "component": "postgres",
            "group": "prod-datapipe",
            "class": "replication",
            "custom_details": {"lag_seconds": 41},
        }
        body["links"] = [{"href": "https://grafana.test/d/db", "text": "Dashboard"}]
        body["client"] = "Monitoring"
    body.update(fields)
    return body


# --- Alertmanager and Grafana ------------------------------------------------------------------


async def test_alertmanager_firing_repeat_then_resolved(client: httpx.AsyncClient, db: Database) -> None:
    source = await _integration(db, SourceKind.alertmanager)
    url = f"/hooks/{source.token}"
    first = await client.post(url, json=alertmanager_body("firing", "fp1", "fp2"))
    assert first.status_code == 200, first.text
    assert first.json() | {} == {
        "status": "ok",
        "accepted": 2,
        "created": 2,
        "repeated": 0,
        "acknowledged": 0,
        "resolved": 0,
        "ignored": 0,
    }
    again = await client.post(url, json=alertmanager_body("firing", "fp1", "fp2"))
    assert again.json()["repeated"] == 2 and again.json()["created"] == 0
    alerts = await _alerts(db)
    assert [(a.dedup_key, a.received, a.status) for a in alerts] == [("fp1", 2, "firing"), ("fp2", 2, "firing")]
    one = alerts[0]
    assert one.summary == "Login errors above 5% on idp-0" and one.severity == "critical" and one.source == "idp-0"
    assert one.labels["team"] == "identity" and one.link == "http://prometheus.test/graph?g0.expr=login_errors"
    assert one.starts_at.isoformat().startswith("2026-11-20T09:58:30.123456") and one.ends_at is None
    async with db.sessionmaker() as s:
        [group] = list(await s.scalars(select(AlertGroup)))
    assert (group.alert_count, group.open_count) == (2, 2), "one Alertmanager group is one alert group"

    done = await client.post(url, json=alertmanager_body("resolved", "fp1", "fp2"))
    assert done.json()["resolved"] == 2
    alerts = await _alerts(db)
    assert {a.status for a in alerts} == {"resolved"} and all(a.open_key is None for a in alerts)
    assert alerts[0].ends_at is not None and alerts[0].ends_at.isoformat().startswith("2026-11-20T10:20:00")
    async with db.sessionmaker() as s:
        [group] = list(await s.scalars(select(AlertGroup)))
    assert group.status == "resolved" and group.open_count == 0


async def test_grafana_alerting_webhook(client: httpx.AsyncClient, db: Database) -> None:
    source = await _integration(db, SourceKind.grafana)
    response = await client.post(f"/hooks/{source.token}", json=grafana_body())
    assert response.status_code == 200, response.text
    [alert] = await _alerts(db)
    assert (alert.dedup_key, alert.summary, alert.severity) == (
        "57c6d9296de2ad39",
        "p99 latency above 800 ms on the edge",
        "warning",
    )
    assert alert.link == "http://grafana.test/d/edge?viewPanel=4" and alert.details["values"] == {"B": 912.5, "C": 1}
    wrong = await client.post(f"/hooks/{source.token}", json=alertmanager_body())
    assert wrong.status_code == 400 and wrong.json()["detail"][0]["loc"] == ["body", "version"]


async def test_generic_json_through_the_mapping(client: httpx.AsyncClient, db: Database) -> None:
    mapping = {
        "alerts": "events",
        "dedup_key": "$.data.id",
        "summary": "data.title",
        "severity": "data.priority",
        "status": "data.state",
        "source": "host",
        "link": "data.url",
        "labels": "tags",
        "component": "data.service",
        "timestamp": "data.at",
        "resolved_values": ["recovered"],
    }
    source = await _integration(db, SourceKind.generic, mapping=mapping)
    body = {
        "events": [
            {
                "data": {
                    "id": "agg-7-cycle-3",
                    "title": "Queue backlog",
                    "priority": "P2",
                    "state": "triggered",
                    "url": "https://dd.test/e/7",
                    "service": "billing-api",
                    "at": "2026-11-20T10:00:00Z",
                },
                "host": "worker-3",
                "tags": {"team": "billing", "shard": 4},
            },
            {"data": {"id": "agg-8", "title": "Disk 91%", "state": "triggered"}, "host": "db-1"},
        ]
    }
    response = await client.post(f"/hooks/{source.token}", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2
    first, _second = await _alerts(db)
    assert (first.dedup_key, first.summary, first.severity, first.source, first.link) == (
        "agg-7-cycle-3",
        "Queue backlog",
        "error",
        "worker-3",
        "https://dd.test/e/7",
    )
    assert first.labels == {"team": "billing", "shard": "4", "component": "billing-api"}
    assert first.starts_at.isoformat().startswith("2026-11-20T10:00:00")
    resolved = await client.post(
        f"/hooks/{source.token}", json={"events": [{"data": {"id": "agg-8", "state": "recovered"}}]}
    )
    assert resolved.json()["resolved"] == 1
    missing = await client.post(f"/hooks/{source.token}", json={"events": [{"data": {"title": "no id"}}]})
    assert missing.status_code == 400
    assert missing.json()["detail"][0]["loc"] == ["body", "events", 0, "data", "id"]


async def test_webhook_refusals_name_the_field_and_store_nothing(client: httpx.AsyncClient, db: Database) -> None:
    source = await _integration(db, SourceKind.alertmanager)
    url = f"/hooks/{source.token}"
    good = alertmanager_body("firing", "ok1")["alerts"][0]
    cases: list[tuple[str, bytes | dict[str, Any], list[str | int]]] = [
        ("not JSON", b"{not json", ["body"]),
        ("a list, not an object", b"[1, 2]", ["body"]),
        ("no alerts", {"version": "4"}, ["body", "alerts"]),
        ("alerts not a list", {"version": "4", "alerts": {}}, ["body", "alerts"]),
        ("an alert not an object", {"version": "4", "alerts": [good, 3]}, ["body", "alerts", 1]),
        (
            "a bad status",
            {"version": "4", "alerts": [good, {**good, "status": "burning"}]},
            ["body", "alerts", 1, "status"],
        ),
        ("labels missing", {"version": "4", "alerts": [{**good, "labels": None}]}, ["body", "alerts", 0, "labels"]),
        (
            "a label not a string",
            {"version": "4", "alerts": [{**good, "labels": {"n": 1}}]},
            ["body", "alerts", 0, "labels", "n"],
        ),
        (
            "a bad time",
            {"version": "4", "alerts": [{**good, "startsAt": "yesterday"}]},
            ["body", "alerts", 0, "startsAt"],
        ),
        (
            "a long fingerprint",
            {"version": "4", "alerts": [{**good, "fingerprint": "f" * 256}]},
            ["body", "alerts", 0, "fingerprint"],
        ),
        ("the wrong version", {"version": "3", "alerts": [good]}, ["body", "version"]),
    ]
    for what, body, loc in cases:
        if isinstance(body, bytes):
            response = await client.post(url, content=body, headers={"content-type": "application/json"})
        else:
            response = await client.post(url, json=body)
        assert response.status_code == 400, f"{what}: {response.status_code} {response.text}"
        assert response.json()["detail"][0]["loc"] == loc, f"{what}: {response.text}"
    assert await count_rows(db, Alert) == 0 and await count_rows(db, AlertGroup) == 0


async def test_unknown_disabled_or_wrong_kind_tokens_are_404(client: httpx.AsyncClient, db: Database) -> None:
    disabled = await _integration(db, SourceKind.alertmanager, enabled=False)
    events = await _integration(db, SourceKind.events_v2)
    for token in ("nope", disabled.token, events.token, "x" * 65):
        response = await client.post(f"/hooks/{token}", json=alertmanager_body())
        assert response.status_code == 404, token
    assert await count_rows(db, Alert) == 0
    live = await _integration(db, SourceKind.alertmanager)
    assert (await client.post(f"/hooks/{live.token}", json=alertmanager_body())).status_code == 200
    async with db.session() as s:
        stored = await s.get(Integration, live.id)
        assert stored is not None
        stored.enabled = False
    after = await client.post(f"/hooks/{live.token}", json=alertmanager_body())
    assert after.status_code == 404, "disabling takes effect at once, not when the cache expires"


async def test_an_oversized_body_is_413(client: httpx.AsyncClient, db: Database, app: Any) -> None:
    source = await _integration(db, SourceKind.alertmanager)
    limit = app.state.runtime.settings.max_body_bytes
    big = alertmanager_body("firing", *(f"fp{i:06d}" for i in range(limit // 300 + 10)))
    response = await client.post(f"/hooks/{source.token}", json=big)
    assert response.status_code == 413, response.status_code

    async def chunks() -> Any:  # no content-length: the limit applies while reading
        for _ in range(limit // 10_000 + 2):
            yield b" " * 10_000

    streamed = await client.post(f"/hooks/{source.token}", content=chunks())
    assert streamed.status_code == 413
    v2 = await client.post("/v2/enqueue", content=chunks())
    assert v2.status_code == 413
    assert await count_rows(db, Alert) == 0


# --- Events v2 ---------------------------------------------------------------------------------


async def test_events_v2_trigger_acknowledge_resolve_and_retrigger(client: httpx.AsyncClient, db: Database) -> None:
    source = await _integration(db, SourceKind.events_v2)
    key = source.token
    first = await client.post("/v2/enqueue", json=event(key, dedup_key="srv01/HTTP"))
    assert first.status_code == 202
    assert first.json() == {"status": "success", "message": "Event processed", "dedup_key": "srv01/HTTP"}
    await client.post("/v2/enqueue", json=event(key, dedup_key="srv01/HTTP"))
    [alert] = await _alerts(db)
    assert (alert.received, alert.severity, alert.source, alert.summary) == (
        2,
        "critical",
        "db-replica-2.eu",
        "DB replica lag above 30 s",
    )
    assert alert.labels == {"component": "postgres", "group": "prod-datapipe", "class": "replication"}
    assert alert.details == {"lag_seconds": 41} and alert.link == "https://grafana.test/d/db"
    assert alert.starts_at.isoformat().startswith("2026-11-20T09:00:00")

    ack = await client.post("/v2/enqueue", json=event(key, "acknowledge", dedup_key="srv01/HTTP"))
    assert ack.status_code == 202
    [alert] = await _alerts(db)
    assert alert.status == "acknowledged"

    resolved = await client.post("/v2/enqueue", json=event(key, "resolve", dedup_key="srv01/HTTP"))
    assert resolved.status_code == 202
    again = await client.post("/v2/enqueue", json=event(key, dedup_key="srv01/HTTP"))
    assert again.status_code == 202
    old, new = await _alerts(db)
    assert (old.status, new.status, new.received) == ("resolved", "firing", 1)

    unknown = await client.post("/v2/enqueue", json=event(key, "resolve", dedup_key="never-seen"))
    assert unknown.status_code == 202 and len(await _alerts(db)) == 2


async def test_events_v2_blank_dedup_key_is_generated(client: httpx.AsyncClient, db: Database) -> None:
    source = await _integration(db, SourceKind.events_v2)
    one = await client.post("/v2/enqueue", json=event(source.token, dedup_key=""))
    two = await client.post("/v2/enqueue", json=event(source.token))
    keys = [one.json()["dedup_key"], two.json()["dedup_key"]]
    assert one.status_code == two.status_code == 202 and all(keys) and keys[0] != keys[1]
    assert sorted(a.dedup_key for a in await _alerts(db)) == sorted(keys)


async def test_events_v2_invalid_events_get_errors_naming_the_field(client: httpx.AsyncClient, db: Database) -> None:
    source = await _integration(db, SourceKind.events_v2)
    key = source.token
    base = event(key)
    cases: list[tuple[str, Any, str]] = [
        ("not JSON", b"{", "not valid JSON"),
        ("not an object", b"[]", "JSON object"),
        ("no routing key", {**base, "routing_key": ""}, "'routing_key'"),
        ("unknown action", {**base, "event_action": "escalate"}, "'event_action'"),
        ("dedup_key too long", {**base, "dedup_key": "k" * 256}, "'dedup_key'"),
        ("dedup_key not a string", {**base, "dedup_key": 42}, "'dedup_key'"),
        ("resolve without a key", event(key, "resolve"), "'dedup_key'"),
        ("no payload", {k: v for k, v in base.items() if k != "payload"}, "'payload'"),
        ("no summary", {**base, "payload": {**base["payload"], "summary": " "}}, "'payload.summary'"),
        ("summary too long", {**base, "payload": {**base["payload"], "summary": "s" * 1025}}, "'payload.summary'"),
        ("no source", {**base, "payload": {**base["payload"], "source": None}}, "'payload.source'"),
        (
            "severity in capitals",
            {**base, "payload": {**base["payload"], "severity": "Critical"}},
            "'payload.severity'",
        ),
        ("bad timestamp", {**base, "payload": {**base["payload"], "timestamp": "10 o'clock"}}, "'payload.timestamp'"),
        ("links not a list", {**base, "links": "https://x.test"}, "'links'"),
    ]
    for what, body, named in cases:
        if isinstance(body, bytes):
            response = await client.post("/v2/enqueue", content=body, headers={"content-type": "application/json"})
        else:
            response = await client.post("/v2/enqueue", json=body)
        assert response.status_code == 400, f"{what}: {response.status_code} {response.text}"
        answer = response.json()
        assert answer["status"] == "invalid event" and answer["message"] == "Event object is invalid", what
        assert any(named in e for e in answer["errors"]), f"{what}: {answer['errors']}"
    assert await count_rows(db, Alert) == 0


async def test_events_v2_unknown_or_foreign_routing_key_is_401(client: httpx.AsyncClient, db: Database) -> None:
    webhook = await _integration(db, SourceKind.alertmanager)
    disabled = await _integration(db, SourceKind.events_v2, enabled=False)
    for key in ("R0UT1NGKEYTHATD0ESN0TEX1ST000000", webhook.token, disabled.token):
        response = await client.post("/v2/enqueue", json=event(key))
        assert response.status_code == 401, key
        assert response.json()["errors"] and response.json()["status"] == "unrecognized routing key"
    assert await count_rows(db, Alert) == 0


# --- rate limits -------------------------------------------------------------------------------


async def test_a_flood_on_one_integration_does_not_slow_another(client: httpx.AsyncClient, db: Database) -> None:
    flooded = await _integration(db, SourceKind.events_v2, rate_limit_per_minute=20)
    calm = await _integration(db, SourceKind.alertmanager, rate_limit_per_minute=600)

    async def flood() -> list[httpx.Response]:
        return await asyncio.gather(
            *(client.post("/v2/enqueue", json=event(flooded.token, dedup_key=f"k{i % 5}")) for i in range(150))
        )

    async def steady() -> list[float]:
        took = []
        for i in range(20):
            started = time.monotonic()
            response = await client.post(f"/hooks/{calm.token}", json=alertmanager_body("firing", f"fp{i}"))
            took.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
        return took

    flood_answers, steady_times = await asyncio.gather(flood(), steady())
    codes = [r.status_code for r in flood_answers]
    assert codes.count(202) == 20 and codes.count(429) == 130, codes
    limited = next(r for r in flood_answers if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1 and limited.json()["status"] == "throttle event"
    assert max(steady_times) < 2.0, steady_times
    hooks_limited = await _integration(db, SourceKind.alertmanager, rate_limit_per_minute=1)
    assert (await client.post(f"/hooks/{hooks_limited.token}", json=alertmanager_body())).status_code == 200
    over = await client.post(f"/hooks/{hooks_limited.token}", json=alertmanager_body())
    assert over.status_code == 429 and over.headers["retry-after"] == "60"


async def test_concurrent_events_share_transactions_and_each_is_stored(client: httpx.AsyncClient, db: Database) -> None:
    """60 events at once (20 keys, each sent three times): every one answered 202 after its commit."""
    source = await _integration(db, SourceKind.events_v2, rate_limit_per_minute=0)
    answers = await asyncio.gather(
        *(client.post("/v2/enqueue", json=event(source.token, dedup_key=f"key-{i % 20}")) for i in range(60))
    )
    assert [r.status_code for r in answers] == [202] * 60
    alerts = await _alerts(db)
    assert len(alerts) == 20 and {a.received for a in alerts} == {3}
    async with db.sessionmaker() as s:
        counts = list(await s.scalars(select(AlertGroup.alert_count)))
    assert counts == [1] * 20, "each Events v2 key is its own group when no rule groups them"


async def test_made_up_tokens_never_push_a_real_integration_out_of_the_cache_or_reset_its_limit(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hooks, "MAX_UNKNOWN", 5)
    real = await _integration(db, SourceKind.alertmanager, rate_limit_per_minute=1)
    assert (await client.post(f"/hooks/{real.token}", json=alertmanager_body())).status_code == 200
    # Tried: twelve made-up tokens, more than the cache of unknown tokens holds.
    for i in range(12):
        assert (await client.post(f"/hooks/made-up-{i}", json=alertmanager_body())).status_code == 404
    assert real.token in hooks._by_token and len(hooks._unknown) <= 5
    # Editing another integration drops the cached ones but not the flooded one's spent limit.
    await _integration(db, SourceKind.grafana)
    assert (await client.post(f"/hooks/{real.token}", json=alertmanager_body())).status_code == 429


async def test_a_nul_character_costs_neither_the_batch_nor_a_500(client: httpx.AsyncClient, db: Database) -> None:
    webhook = await _integration(db, SourceKind.alertmanager)
    body = alertmanager_body("firing", "fp-good", "fp-odd")
    # Tried: a NUL in one alert's summary, instance label and generator URL (PostgreSQL refuses
    # NUL in text); the other alert of the batch must not be lost with it.
    odd = body["alerts"][1]
    odd["annotations"]["summary"] = "disk\x00full"
    odd["labels"]["instance"] = "db\x001"
    odd["generatorURL"] = "http://prometheus.example/\x00"
    response = await client.post(f"/hooks/{webhook.token}", json=body)
    assert response.status_code == 200, response.text
    stored = {a.dedup_key: a for a in await _alerts(db)}
    assert set(stored) == {"fp-good", "fp-odd"}
    assert stored["fp-odd"].summary == "disk\ufffdfull" and stored["fp-odd"].source == "db\ufffd1"
    events = await _integration(db, SourceKind.events_v2)
    for field in ("summary", "source"):
        bad = event(events.token)
        bad["payload"][field] = "x\x00y"
        refused = await client.post("/v2/enqueue", json=bad)
        assert refused.status_code == 400, refused.text
        assert f"'payload.{field}' must not contain a NUL character" in refused.json()["errors"]


async def test_concurrent_webhooks_share_one_batch_and_each_gets_its_own_counts(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Eight Alertmanager deliveries at once, each of the same three alerts: shared transactions,
    one alert stored per fingerprint, and every answer counts its own three."""
    source = await _integration(db, SourceKind.alertmanager, rate_limit_per_minute=0)
    body = alertmanager_body("firing", "fp-a", "fp-b", "fp-c")
    answers = await asyncio.gather(*(client.post(f"/hooks/{source.token}", json=body) for _ in range(8)))
    counts = [r.json() for r in answers]
    assert all(r.status_code == 200 for r in answers)
    assert all(c["accepted"] == 3 and c["created"] + c["repeated"] == 3 for c in counts), counts
    assert sum(c["created"] for c in counts) == 3 and sum(c["repeated"] for c in counts) == 21
    alerts = await _alerts(db)
    assert len(alerts) == 3 and sum(a.received for a in alerts) == 24
    resolved = await client.post(f"/hooks/{source.token}", json=alertmanager_body("resolved", "fp-a", "fp-zz"))
    assert resolved.json() | {"status": "ok"} == {
        "status": "ok",
        "accepted": 2,
        "created": 0,
        "repeated": 0,
        "acknowledged": 0,
        "resolved": 1,
        "ignored": 1,
    }
