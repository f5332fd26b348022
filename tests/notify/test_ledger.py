"""The ledger and the delivery worker: claims and leases, recording, backoff, give-up, quarantine,
the circuit breaker and per-endpoint limits, against a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.events import Change
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import ledger
from crisisdesk.notify.channels.base import ChannelAdapter, Message, SendResult
from crisisdesk.notify.deliver import DeliveryWorker
from crisisdesk.notify.ledger import Outcome
from crisisdesk.notify.models import (
    AttemptOutcome,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Subscriber,
    SubscriberState,
)
from tests.fixtures.notify import make_delivery, make_subscriber
from tests.fixtures.peers import HttpReceiver
from tests.fixtures.ports import worker_port

LEASE = 60.0


class PostAdapter(ChannelAdapter):
    """A minimal webhook channel for these tests: POST the body, read the status like a real one."""

    channel = Channel.webhook

    def __init__(self, http: aiohttp.ClientSession, timeout: float = 5.0) -> None:
        self.http = http
        self.timeout = timeout

    def endpoint(self, message: Message) -> str:
        # Per path, so one receiver can play several hosts.
        return urlsplit(message.address).path

    async def send(self, message: Message) -> SendResult:
        try:
            async with self.http.post(
                message.address,
                data=message.body or b"{}",
                headers={"webhook-id": message.message_id},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                code = f"HTTP {response.status}"
                if response.status < 300:
                    return SendResult.delivered(code)
                if response.status == 410:
                    return SendResult.failed(code, "gone", unreachable=True)
                if response.status in (429,) or response.status >= 500:
                    after = response.headers.get("retry-after")
                    return SendResult.retry(code, "try later", retry_after=float(after) if after else None)
                return SendResult.failed(code, "refused")
        except TimeoutError:
            return SendResult.retry("timeout", f"no answer within {self.timeout} s")


class EchoBuilder:
    """Renders every delivery whose address does not say it cannot be rendered."""

    async def build(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> dict[int, Message]:
        return {
            d.id: Message(d.id, d.message_id, Channel(d.channel), d.address, body=b'{"ok": true}')
            for d in deliveries
            if "unrenderable" not in d.address
        }


@contextlib.asynccontextmanager
async def delivery_worker(
    db: Database, settings: Settings, *, timeout: float = 5.0, **overrides: object
) -> AsyncIterator[DeliveryWorker]:
    settings = settings.model_copy(update={"delivery_lease_seconds": LEASE, **overrides})
    async with aiohttp.ClientSession() as http:
        worker = DeliveryWorker(db, settings, {Channel.webhook: PostAdapter(http, timeout)}, EchoBuilder())
        yield worker
        await worker.close()


async def _add(db: Database, count: int, address: str, **kw: object) -> list[int]:
    async with db.session() as session:
        return [(await make_delivery(session, address=address, **kw)).id for _ in range(count)]  # type: ignore[arg-type]


async def _rows(db: Database, ids: Sequence[int] | None = None) -> dict[int, Delivery]:
    async with db.sessionmaker() as session:
        query = select(Delivery)
        if ids is not None:
            query = query.where(Delivery.id.in_(ids))
        return {d.id: d for d in await session.scalars(query)}


async def _attempts(db: Database, delivery_id: int) -> list[DeliveryAttempt]:
    async with db.sessionmaker() as session:
        return list(
            await session.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id).order_by(DeliveryAttempt.id)
            )
        )


# ------------------------------------------------------------------------------- claiming


async def test_claim_takes_due_rows_under_a_lease_and_an_expired_lease_is_claimed_again(db: Database) -> None:
    due = await _add(db, 3, "https://a.example/")
    later = await _add(db, 1, "https://a.example/", due_at=utcnow() + timedelta(hours=1))
    first = await ledger.claim(db, worker="w1", limit=10, lease_seconds=LEASE)
    assert sorted(d.id for d in first) == due, "only due rows are claimed"
    rows = await _rows(db, due)
    assert all(r.state == DeliveryState.sending and r.claimed_by == "w1" and r.attempts == 1 for r in rows.values())
    assert all(r.lease_until and r.lease_until > utcnow() + timedelta(seconds=LEASE - 5) for r in rows.values())
    assert await ledger.claim(db, worker="w2", limit=10, lease_seconds=LEASE) == [], "held rows are not shared"
    assert (await _rows(db, later))[later[0]].state == DeliveryState.pending

    # w1 died: once the lease has run out, another worker takes the rows (a second attempt).
    after_lease = utcnow() + timedelta(seconds=LEASE + 1)
    second = await ledger.claim(db, worker="w2", limit=10, lease_seconds=LEASE, now=after_lease)
    assert sorted(d.id for d in second) == due
    rows = await _rows(db, due)
    assert all(r.claimed_by == "w2" and r.attempts == 2 for r in rows.values())


async def test_concurrent_claimers_get_disjoint_rows(db: Database) -> None:
    ids = await _add(db, 120, "https://a.example/")
    claims = await asyncio.gather(*(ledger.claim(db, worker=f"w{i}", limit=25, lease_seconds=LEASE) for i in range(6)))
    taken = [d.id for claim in claims for d in claim]
    assert len(taken) == len(set(taken)), "no delivery is held by two workers"
    assert sorted(taken) == ids, "120 rows, six claimers of 25: every row claimed exactly once"
    rows = await _rows(db, ids)
    for i, claim in enumerate(claims):
        assert all(rows[d.id].claimed_by == f"w{i}" for d in claim)


async def test_concurrent_claimers_in_separate_engines_get_disjoint_rows(settings: Settings) -> None:
    """As separate worker processes do: their own engines and connections."""
    engines = [Database(settings.database_url) for _ in range(4)]
    try:
        ids = await _add(engines[0], 200, "https://a.example/")
        taken: list[int] = []
        for _ in range(5):
            claims = await asyncio.gather(
                *(ledger.claim(e, worker=f"p{i}", limit=15, lease_seconds=LEASE) for i, e in enumerate(engines))
            )
            taken.extend(d.id for claim in claims for d in claim)
        assert len(taken) == len(set(taken)) == 200
        assert sorted(taken) == ids
    finally:
        for engine in engines:
            await engine.dispose()


# ------------------------------------------------------------------------------ recording


async def _claim_one(db: Database, address: str = "https://a.example/", **kw: object) -> Delivery:
    (delivery_id,) = await _add(db, 1, address, **kw)
    (claimed,) = await ledger.claim(db, worker="w1", limit=1, lease_seconds=LEASE)
    assert claimed.id == delivery_id
    return claimed


async def _record(db: Database, settings: Settings, delivery: Delivery, result: SendResult, worker: str = "w1") -> None:
    async with db.session() as session:
        await ledger.record(
            session, worker=worker, settings=settings, outcomes=[Outcome(delivery, result, utcnow(), 0.012)]
        )


async def test_recording_delivered_retry_and_failed(db: Database, settings: Settings) -> None:
    ok = await _claim_one(db)
    await _record(db, settings, ok, SendResult.delivered("HTTP 204", "no content"))
    row = (await _rows(db, [ok.id]))[ok.id]
    assert row.state == DeliveryState.delivered and row.delivered_at is not None and row.lease_until is None
    (attempt,) = await _attempts(db, ok.id)
    assert (attempt.outcome, attempt.code, attempt.summary, attempt.worker) == (
        AttemptOutcome.delivered,
        "HTTP 204",
        "no content",
        "w1",
    )
    assert attempt.duration_ms == 12

    flaky = await _claim_one(db)
    before = utcnow()
    await _record(db, settings, flaky, SendResult.retry("HTTP 503", "busy"))
    row = (await _rows(db, [flaky.id]))[flaky.id]
    # First attempt: 5 s × 2^1 × uniform(0.5, 1.5) = 5..15 s.
    assert row.state == DeliveryState.retrying and row.last_error == "HTTP 503: busy"
    assert before + timedelta(seconds=4.9) <= row.due_at <= utcnow() + timedelta(seconds=15.1)

    slow_down = await _claim_one(db)
    await _record(db, settings, slow_down, SendResult.retry("HTTP 429", "slow down", retry_after=600))
    row = (await _rows(db, [slow_down.id]))[slow_down.id]
    assert row.due_at >= before + timedelta(seconds=599), "Retry-After is honoured"

    refused = await _claim_one(db)
    await _record(db, settings, refused, SendResult.failed("HTTP 400", "bad payload"))
    row = (await _rows(db, [refused.id]))[refused.id]
    assert row.state == DeliveryState.failed and row.failed_at is not None and row.last_error == "HTTP 400: bad payload"


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    for attempts, low, high in [(1, 5, 15), (3, 20, 60), (6, 160, 480), (20, 1800, 5400)]:
        delays = [ledger.backoff(attempts) for _ in range(200)]
        assert all(low <= d <= high for d in delays), (attempts, min(delays), max(delays))
        assert max(delays) - min(delays) > (high - low) / 4, "jittered, not fixed"


async def test_a_delivery_past_the_give_up_time_fails_visibly(db: Database, settings: Settings) -> None:
    settings = settings.model_copy(update={"delivery_give_up_hours": 2})
    old = await _claim_one(db, created_at=utcnow() - timedelta(hours=2, minutes=1))
    await _record(db, settings, old, SendResult.retry("HTTP 500", "server error"))
    row = (await _rows(db, [old.id]))[old.id]
    assert row.state == DeliveryState.failed and row.failed_at is not None
    assert row.last_error == "gave up after 1 attempts over 2 h; last: HTTP 500: server error"
    young = await _claim_one(db, created_at=utcnow() - timedelta(hours=1))
    await _record(db, settings, young, SendResult.retry("HTTP 500", "server error"))
    assert (await _rows(db, [young.id]))[young.id].state == DeliveryState.retrying


async def test_an_unreachable_address_quarantines_its_subscriber(db: Database, settings: Settings) -> None:
    async with db.session() as session:
        subscriber = await make_subscriber(session, channel=Channel.webhook)
    delivery = await _claim_one(db, subscriber_id=subscriber.id)
    await _record(db, settings, delivery, SendResult.failed("HTTP 410", "gone", unreachable=True))
    async with db.sessionmaker() as session:
        stored = await session.get(Subscriber, subscriber.id)
    assert stored is not None
    assert stored.state == SubscriberState.quarantined and stored.quarantined_at is not None
    assert stored.purge_at is not None
    assert stored.purge_at - stored.quarantined_at == timedelta(days=settings.quarantine_purge_days)
    assert stored.last_error == "HTTP 410: gone"
    assert (await _rows(db, [delivery.id]))[delivery.id].state == DeliveryState.failed


async def test_only_rows_the_worker_still_holds_are_changed(db: Database, settings: Settings) -> None:
    stale = await _claim_one(db)
    # w1's lease ran out and w2 took the row; w1's late answer is kept as an attempt only.
    (taken,) = await ledger.claim(
        db, worker="w2", limit=1, lease_seconds=LEASE, now=utcnow() + timedelta(seconds=LEASE + 1)
    )
    await _record(db, settings, stale, SendResult.failed("HTTP 400", "late"), worker="w1")
    row = (await _rows(db, [stale.id]))[stale.id]
    assert row.state == DeliveryState.sending and row.claimed_by == "w2"
    assert [a.worker for a in await _attempts(db, stale.id)] == ["w1"]
    await _record(db, settings, taken, SendResult.delivered("HTTP 200"), worker="w2")
    assert (await _rows(db, [stale.id]))[stale.id].state == DeliveryState.delivered


# --------------------------------------------------------------------------------- worker


async def test_the_worker_sends_and_records_every_delivery(db: Database, settings: Settings) -> None:
    async with HttpReceiver(worker_port(18110)) as receiver:
        ids = await _add(db, 25, receiver.url("/hook"), incident_id=None)
        gone = await _add(db, 1, receiver.url("/gone"))
        unrenderable = await _add(db, 1, receiver.url("/unrenderable"))
        receiver.behave("/gone", status=410)
        # 13 sends in flight to one endpoint, twice that held while its speed is unknown.
        async with delivery_worker(db, settings, endpoint_concurrency=13) as worker:
            assert await worker.run_once() == 27
        rows = await _rows(db)
        assert all(rows[i].state == DeliveryState.delivered for i in ids)
        assert len(receiver.received("/hook")) == 25
        assert set(receiver.ok_ids) == {rows[i].message_id for i in ids}, "each carries its stable message id"
        assert rows[gone[0]].state == DeliveryState.failed
        assert rows[unrenderable[0]].state == DeliveryState.failed
        assert rows[unrenderable[0]].last_error == "nothing to send"
        assert not receiver.received("/unrenderable")


async def test_a_channel_without_an_adapter_fails_its_deliveries_visibly(db: Database, settings: Settings) -> None:
    (sms,) = await _add(db, 1, "+14155550100", channel=Channel.sms)
    async with delivery_worker(db, settings) as worker:
        await worker.run_once()
    row = (await _rows(db, [sms]))[sms]
    assert row.state == DeliveryState.failed
    assert row.last_error == "config: the sms channel is not configured"


async def test_the_breaker_opens_for_a_failing_endpoint_without_counting_attempts(
    db: Database, settings: Settings
) -> None:
    async with HttpReceiver(worker_port(18111)) as receiver:
        receiver.behave("/down", status=500)
        first = await _add(db, 3, receiver.url("/down"))
        async with delivery_worker(
            db, settings, breaker_failures=3, breaker_cooldown_seconds=120, endpoint_concurrency=3
        ) as worker:
            await worker.run_once()
            rows = await _rows(db, first)
            assert all(r.state == DeliveryState.retrying and r.attempts == 1 for r in rows.values())
            # Three failures in a row opened the breaker: more for that endpoint wait, others go.
            down = await _add(db, 5, receiver.url("/down"))
            fine = await _add(db, 5, receiver.url("/fine"))
            before = utcnow()
            await worker.run_once()
        rows = await _rows(db)
        assert all(rows[i].state == DeliveryState.delivered for i in fine), "the healthy endpoint is not held back"
        assert receiver.per_path["/down"] == 3, "no send to an endpoint whose breaker is open"
        for i in down:
            assert rows[i].state == DeliveryState.retrying and rows[i].attempts == 0
            assert rows[i].due_at >= before + timedelta(seconds=110), "back when the breaker closes"
            assert rows[i].last_error is not None and "failed 3 times in a row (circuit open)" in rows[i].last_error
            assert await _attempts(db, i) == [], "a deferral is not an attempt"


def test_settings_refuse_a_lease_shorter_than_the_longest_send() -> None:
    """A 40 s lease with a 35 s SMTP timeout: rows would be put back unsent forever; refused."""
    with pytest.raises(ValidationError) as refused:
        Settings(demo=True, delivery_lease_seconds=40, smtp_timeout=35, webhook_timeout_seconds=5)
    message = str(refused.value)
    assert "CRISISDESK_DELIVERY_LEASE_SECONDS (40) must be at least 45" in message
    assert "CRISISDESK_SMTP_TIMEOUT 35" in message
    # The webhook timeout counts the same way; exactly the minimum is fine.
    with pytest.raises(ValidationError):
        Settings(demo=True, delivery_lease_seconds=20, smtp_timeout=5, webhook_timeout_seconds=15)
    assert Settings(demo=True, delivery_lease_seconds=25, smtp_timeout=5, webhook_timeout_seconds=15)
    assert Settings(demo=True).delivery_lease_seconds >= 40, "the defaults pass"


async def test_an_endpoint_answering_again_brings_its_waiting_deliveries_forward(
    db: Database, settings: Settings
) -> None:
    """Three sends to /flap fail (500) and wait out a backoff of 5 s or more; once /flap answers
    a new delivery, those three are due at once. A row waiting for another endpoint stays put."""
    async with HttpReceiver(worker_port(18115)) as receiver:
        receiver.behave("/flap", status=500)
        receiver.behave("/other", status=500)
        waiting = await _add(db, 3, receiver.url("/flap"))
        (other,) = await _add(db, 1, receiver.url("/other"))
        async with delivery_worker(db, settings, breaker_failures=10) as worker:
            await worker.run_once()
            rows = await _rows(db, [*waiting, other])
            later = utcnow() + timedelta(seconds=2)
            assert all(r.state == DeliveryState.retrying and r.due_at > later for r in rows.values())
            receiver.behave("/flap", status=200)
            (fresh,) = await _add(db, 1, receiver.url("/flap"))
            before = utcnow()
            await worker.run_once()
            rows = await _rows(db, [*waiting, other, fresh])
            assert rows[fresh].state == DeliveryState.delivered
            for i in waiting:
                assert rows[i].state == DeliveryState.retrying and rows[i].due_at <= utcnow(), "due now"
                assert rows[i].due_at >= before - timedelta(seconds=1)
            assert rows[other].due_at > later, "another endpoint's row keeps its backoff"
            await worker.run_once()
        rows = await _rows(db, waiting)
        assert all(r.state == DeliveryState.delivered and r.attempts == 2 for r in rows.values())
        assert receiver.per_path["/flap"] == 3 + 1 + 3


async def test_a_worker_holds_only_a_few_deliveries_of_one_endpoint(db: Database, settings: Settings) -> None:
    async with HttpReceiver(worker_port(18112)) as receiver:
        busy = await _add(db, 10, receiver.url("/busy"))
        async with delivery_worker(db, settings, endpoint_concurrency=2) as worker:
            await worker.run_once()
        rows = await _rows(db, busy)
        sent = [r for r in rows.values() if r.state == DeliveryState.delivered]
        back = [r for r in rows.values() if r.state == DeliveryState.retrying]
        assert len(sent) == 4, "two sends in flight per endpoint, twice that held"
        assert len(back) == 6 and all(r.attempts == 0 for r in back)
        assert all(r.last_error == "waiting: this worker already holds enough for /busy" for r in back)
        assert receiver.per_path["/busy"] == 4


async def _drain(db: Database, worker: DeliveryWorker, ids: Sequence[int], timeout: float) -> float:
    """Run the worker until these deliveries are delivered; returns how long it took."""
    task = asyncio.create_task(worker.run_forever())
    began = time.monotonic()
    try:
        while time.monotonic() - began < timeout:
            rows = await _rows(db, ids)
            if all(r.state == DeliveryState.delivered for r in rows.values()):
                return time.monotonic() - began
            await asyncio.sleep(0.05)
        raise AssertionError("deliveries not delivered in time")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_hanging_receiver_does_not_slow_the_others(db: Database, settings: Settings) -> None:
    """200 deliveries to a fast endpoint beside 20 to one that hangs past the channel's timeout.

    The property, not a wall-clock figure (the machine may be busy): every fast delivery is
    done before the first hanging send has even timed out, and the hanging ones never took
    more than their endpoint's share of the worker.
    """
    timeout = 15.0
    async with HttpReceiver(worker_port(18113)) as receiver:
        receiver.behave("/hang", hang_seconds=timeout + 10)
        hanging = await _add(db, 20, receiver.url("/hang"))
        fast = await _add(db, 200, receiver.url("/fast"))
        async with delivery_worker(
            db, settings, timeout=timeout, endpoint_concurrency=4, delivery_concurrency=20, delivery_batch=50
        ) as worker:
            began = time.monotonic()
            task = asyncio.create_task(worker.run_forever())
            # A fast send that meets a dropped keep-alive connection is retried at once, not after
            # a backoff of seconds: this test is about the hanging endpoint.
            patch = pytest.MonkeyPatch()
            patch.setattr(ledger, "backoff", lambda attempts, retry_after=None: 0.05)
            try:
                while time.monotonic() - began < timeout - 1:
                    rows = await _rows(db, fast)
                    if all(r.state == DeliveryState.delivered for r in rows.values()):
                        break
                    await asyncio.sleep(0.05)
                took = time.monotonic() - began
                rows = await _rows(db, [*fast, *hanging])
                attempts_on_hanging = [a for i in hanging for a in await _attempts(db, i)]
            finally:
                patch.undo()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        print(f"\n200 fast deliveries took {took:.2f} s beside a receiver that hangs {timeout + 10:g} s")
        assert all(rows[i].state == DeliveryState.delivered for i in fast), (
            f"the fast endpoint was not done within {timeout - 1:g} s, before any hanging send timed out: "
            f"{worker.stats}, {Counter((r.state, r.last_error) for r in rows.values())}"
        )
        assert attempts_on_hanging == [], "no hanging send had finished: the fast ones did not wait for them"
        assert receiver.per_path["/fast"] == 200
        assert receiver.per_path.get("/hang", 0) <= 4, "at most the endpoint's limit of sends to the hanging one"


async def test_streaming_worker_delivers_everything_and_tells_the_console(db: Database, settings: Settings) -> None:
    from tests.fixtures.auth import make_actor
    from tests.fixtures.incident import make_incident

    _, admin = await make_actor(db)
    async with db.session() as session:
        incident = await make_incident(session, admin)
    async with HttpReceiver(worker_port(18114)) as receiver:
        receiver.behave("/flaky", status=200, fail_ratio=0.3, seed=7)
        ids = await _add(db, 300, receiver.url("/flaky"), incident_id=incident.id)
        # A 30% failure rate opens the breaker now and then (5 failures in a row); a short
        # cooldown keeps this test about streaming and retries rather than waiting it out.
        async with delivery_worker(
            db, settings, delivery_concurrency=30, delivery_batch=40, breaker_cooldown_seconds=0.5
        ) as worker:
            # Retries come back quickly in this test.
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ledger, "backoff", lambda attempts, retry_after=None: 0.05)
                took = await _drain(db, worker, ids, timeout=90)
        print(f"\n300 deliveries, 30% failing once or more, done in {took:.1f} s")
        assert len(receiver.ok_ids) == 300
        assert sum(receiver.ok_ids.values()) == 300, "no duplicates from a single worker"
        assert worker.stats.outcomes["retry"] > 0
    async with db.sessionmaker() as session:
        topics = set(await session.scalars(select(Change.topic)))
    assert f"incident:{incident.id}" in topics
