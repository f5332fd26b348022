"""The delivery worker: claim due deliveries, send them through the channels, record the outcome.

It streams rather than working batch by batch, and each channel is its own lane: a lane claims
only its channel's rows, has up to ``delivery_concurrency`` sends in flight and claims more as
they finish, so 10,000 webhooks do not queue behind 100,000 emails, and a slow SMTP server does
not hold up Slack. Results of every lane are written every ~0.2 s (or every ``delivery_batch``
results) in one transaction. One endpoint (a webhook host, the SMTP server)
cannot slow the others: each has its own concurrency limit, a cap on how many of its
deliveries this worker holds (the excess goes back at once for another worker or later), and a
circuit breaker that puts its deliveries back while it is failing, without counting an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.config import Settings
from crisisdesk.kit import events, metrics
from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import worker_name
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import ledger
from crisisdesk.notify.channels.base import ChannelAdapter, Message, SendResult
from crisisdesk.notify.ledger import Deferral, Outcome
from crisisdesk.notify.models import AttemptOutcome, Channel, Delivery

log = logging.getLogger(__name__)

# A worker holds at most this many deliveries of one endpoint per send slot of that endpoint
# while it does not know how fast the endpoint answers (or when it is slow): with a receiver that
# hangs until the timeout, the last one still starts well within its lease.
HOLD_PER_SLOT = 2
# For an endpoint that answers quickly, hold what it can take in this many seconds.
HOLD_SECONDS = 10.0
# How often an incident's console page is told that its delivery counts changed.
TOPIC_INTERVAL = 1.0
# A claim filtered by channel that finds nothing may have stepped over a large backlog of the
# other channels. Past CHEAP_CLAIM seconds the lane's wait doubles, up to IDLE_MAX s, so an idle
# lane stays a small share of the database's work; a cheap empty claim keeps the short wait.
CHEAP_CLAIM = 0.02
IDLE_MAX = 1.0
# The lane of channels without an adapter (a misconfiguration: it only fails their rows) steps
# over every other channel's backlog, so it looks this seldom.
REST_IDLE = 10.0
# On stop, how long the claim and flush loops may take to finish the database call they are in.
STOP_GRACE = 10.0
# Deliveries per endpoint this worker remembers as waiting to retry, to bring them forward
# when the endpoint answers again.
WAITING_CAP = 100_000


def loggable(endpoint: str) -> str:
    """An endpoint fit for a log line: a URL (Slack and Teams webhook URLs are secrets) by its host."""
    if "://" in endpoint:
        return urlsplit(endpoint).netloc
    return endpoint


class Builder(Protocol):
    """Renders claimed deliveries into messages; a delivery it cannot render is left out."""

    async def build(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> dict[int, Message]: ...


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0  # time.monotonic()


@dataclass(eq=False)
class _Lane:
    """A claim stream with its own in-flight budget: one channel, or (``channels`` None) every
    channel without a lane of its own, which has no adapter and so fails at once."""

    name: str
    channels: tuple[str, ...] | None
    exclude: tuple[str, ...]
    slots: asyncio.Semaphore
    held: int = 0
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    empty_wait: float = 0.0  # seconds to wait after a claim that found nothing


@dataclass
class _Item:
    delivery: Delivery
    message: Message
    adapter: ChannelAdapter
    endpoint: str
    lane: _Lane
    started: bool = False


@dataclass
class WorkerStats:
    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    flushes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class DeliveryWorker:
    """One process's sender. ``run_forever`` streams; ``run_once`` handles one claim (tests)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        adapters: Mapping[Channel, ChannelAdapter],
        builder: Builder,
        *,
        name: str | None = None,
        idle: float = 0.25,
        flush_interval: float = 0.2,
    ) -> None:
        self.db = db
        self.settings = settings
        self.adapters = dict(adapters)
        self.builder = builder
        self.name = name or f"{worker_name()}:deliver"
        self.idle = idle
        self.flush_interval = flush_interval
        self.concurrency = settings.delivery_concurrency
        self.batch = settings.delivery_batch
        self.endpoint_limit = settings.endpoint_concurrency
        # Past this, a send is guarded by the worker itself (a channel that ignores its timeout).
        self.send_timeout = max(settings.webhook_timeout_seconds, settings.smtp_timeout) + 5
        self.stats = WorkerStats()
        own = tuple(sorted(channel.value for channel in self.adapters))
        self._lanes = [_Lane(c, (c,), (), asyncio.Semaphore(self.concurrency)) for c in own]
        self._rest = _Lane("other", None, own, asyncio.Semaphore(self.concurrency))
        self._lanes.append(self._rest)
        self._lane_of = {lane.name: lane for lane in self._lanes if lane.channels is not None}
        self._endpoint_slots: dict[str, asyncio.Semaphore] = {}
        self._held: Counter[str] = Counter()
        self._waiting: dict[str, set[int]] = {}  # endpoint -> deliveries it made wait
        self._recovered: set[str] = set()  # endpoints that answered again after failing
        self._durations: dict[str, float] = {}  # moving average per endpoint, seconds
        self._sending_since: dict[str, dict[int, float]] = {}  # endpoint -> delivery id -> monotonic start
        self._breakers: dict[str, _Breaker] = {}
        self._outcomes: list[Outcome] = []
        self._deferrals: list[Deferral] = []
        self._tasks: dict[asyncio.Task[None], _Item] = {}
        self._flush_now = asyncio.Event()
        self._stop = asyncio.Event()
        self._topics_at: dict[str, float] = {}
        self._topics_due: set[str] = set()

    # --------------------------------------------------------------------------- running

    async def run_once(self) -> int:
        """Claim one batch, send it all, write the results; returns how many rows were claimed."""
        claimed = await self._claim(self.batch)
        await self._accept(claimed)
        if self._tasks:
            await asyncio.gather(*self._tasks)
        await self.flush(force_topics=True)
        return len(claimed)

    async def run_forever(self) -> None:
        """Send until cancelled; on cancel, put back what has not started and record what has."""
        self._stop.clear()
        flusher = asyncio.create_task(self._flush_loop(), name="delivery-flush")
        loops = [asyncio.create_task(self._run_lane(lane), name=f"delivery-{lane.name}") for lane in self._lanes]
        loops.append(flusher)
        try:
            # asyncio.wait, not gather: a cancel of this task must not reach the loops midway.
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a loop ended by an error: raise it, the caller restarts the worker
        finally:
            # The loops stop by themselves between database calls: a task cancelled in the middle
            # of one leaves its SQLite connection closing forever (aiosqlite), hanging shutdown.
            self._stop.set()
            for lane in self._lanes:
                lane.freed.set()
            self._flush_now.set()
            _, late = await asyncio.wait(loops, timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._shutdown()

    async def _run_lane(self, lane: _Lane) -> None:
        """Claim this lane's rows as its sends finish, until the worker stops."""
        while not self._stop.is_set():
            room = min(self.batch, 2 * self.concurrency - lane.held)
            if lane.held >= self.concurrency or room <= 0:
                await self._wait_freed(lane)
                continue
            began = time.monotonic()
            try:
                claimed = await self._claim(room, lane)
            except Exception:
                metrics.WORKER_ERRORS.labels(stage="delivery_claim").inc()
                log.exception("claiming %s deliveries failed; retrying", lane.name)
                await self._pause(2)
                continue
            took = time.monotonic() - began
            if claimed:
                deferred = await self._accept(claimed)
                # Most of a claim put back means the endpoints at hand are saturated: wait for
                # a send to finish rather than claim (and put back) the next rows at once.
                if len(claimed) >= room and deferred * 2 <= len(claimed):
                    continue
                await self._wait_freed(lane)
                continue
            costly = took > CHEAP_CLAIM
            lane.empty_wait = min(IDLE_MAX, max(self.idle, 2 * lane.empty_wait)) if costly else self.idle
            await self._pause(REST_IDLE if lane is self._rest else lane.empty_wait)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but not past the worker's stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    async def _wait_freed(self, lane: _Lane) -> None:
        lane.freed.clear()
        # asyncio.timeout: Python 3.11's wait_for can lose a cancellation that meets a set event.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.idle):
                await lane.freed.wait()

    async def close(self) -> None:
        """Close every channel's connections."""
        for adapter in self.adapters.values():
            try:
                await adapter.close()
            except Exception:
                # Stopping anyway: the connections die with the process. Counted so it is seen.
                metrics.WORKER_ERRORS.labels(stage="channel_close").inc()
                log.exception("closing the %s channel failed", adapter.channel)

    async def _shutdown(self, grace: float = 5.0) -> None:
        waiting = [task for task, item in self._tasks.items() if not item.started and not task.done()]
        for task in waiting:
            item = self._tasks[task]
            task.cancel()
            self._defer(item.delivery, 0.0, "stopped", "put back unsent: the worker stopped")
        started = [task for task, item in self._tasks.items() if item.started]
        if started:
            # Sends under way may finish; the rest stay leased and are sent again after the lease.
            _, late = await asyncio.wait(started, timeout=grace)
            for task in late:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.flush(force_topics=True)
        except Exception:
            metrics.WORKER_ERRORS.labels(stage="delivery_flush").inc()
            log.exception("writing the last delivery results failed; their leases will run out and they resend")

    # --------------------------------------------------------------------------- claiming

    async def _claim(self, limit: int, lane: _Lane | None = None) -> list[Delivery]:
        """Claim due rows: of one lane, or (``run_once``) of every channel."""
        claimed = await ledger.claim(
            self.db,
            worker=self.name,
            limit=limit,
            lease_seconds=self.settings.delivery_lease_seconds,
            channels=lane.channels if lane else None,
            exclude=lane.exclude if lane else (),
        )
        self.stats.claimed += len(claimed)
        return claimed

    async def _accept(self, deliveries: Sequence[Delivery]) -> int:
        """Render claimed rows and start their sends, or put them back / fail them at once.

        Returns how many were put back unsent.
        """
        deferred = 0
        if not deliveries:
            return deferred
        try:
            async with self.db.sessionmaker() as session:
                messages = await self.builder.build(session, deliveries)
        except Exception as exc:
            metrics.WORKER_ERRORS.labels(stage="delivery_render").inc()
            log.exception("rendering %s deliveries failed", len(deliveries))
            now = utcnow()
            for delivery in deliveries:
                # The type only: an exception's text may quote a secret URL, and summaries are shown.
                self._finish(
                    delivery, SendResult.retry("render", f"rendering failed ({type(exc).__name__})"), now, 0.0, "-"
                )
            return deferred
        now = utcnow()
        for delivery in deliveries:
            adapter = self.adapters.get(Channel(delivery.channel))
            message = messages.get(delivery.id)
            if adapter is None:
                result = SendResult.failed("config", f"the {delivery.channel} channel is not configured")
                self._finish(delivery, result, now, 0.0, "-")
                continue
            if message is None:
                self._finish(delivery, SendResult.failed(None, "nothing to send"), now, 0.0, "-")
                continue
            endpoint = adapter.endpoint(message)
            wait = self._breaker_wait(endpoint)
            if wait > 0:
                self._defer(
                    delivery, wait, "circuit open", self._open_reason(endpoint, wait), replace=True, endpoint=endpoint
                )
                deferred += 1
                continue
            if self._held[endpoint] >= self._hold_cap(endpoint, adapter):
                self._defer(
                    delivery,
                    self._backlog_wait(endpoint, adapter),
                    "endpoint busy",
                    f"waiting: this worker already holds enough for {loggable(endpoint)}",
                )
                deferred += 1
                continue
            lane = self._lane_of.get(str(delivery.channel), self._rest)
            item = _Item(delivery, message, adapter, endpoint, lane)
            self._held[endpoint] += 1
            lane.held += 1
            task = asyncio.create_task(self._send(item))
            self._tasks[task] = item
            task.add_done_callback(self._done)
        return deferred

    def _done(self, task: asyncio.Task[None]) -> None:
        item = self._tasks.pop(task, None)
        if item is None:
            return
        self._held[item.endpoint] -= 1
        item.lane.held -= 1
        if self._held[item.endpoint] <= 0:
            del self._held[item.endpoint]
            self._endpoint_slots.pop(item.endpoint, None)
            self._sending_since.pop(item.endpoint, None)
        else:
            self._sending_since.get(item.endpoint, {}).pop(item.delivery.id, None)
        item.lane.freed.set()

    # ---------------------------------------------------------------------------- sending

    async def _send(self, item: _Item) -> None:
        slots = self._endpoint_slots.get(item.endpoint)
        if slots is None:
            slots = self._endpoint_slots[item.endpoint] = asyncio.Semaphore(self._limit(item.adapter))
        async with slots, item.lane.slots:
            wait = self._breaker_wait(item.endpoint)
            if wait > 0:
                reason = self._open_reason(item.endpoint, wait)
                self._defer(item.delivery, wait, "circuit open", reason, replace=True, endpoint=item.endpoint)
                return
            lease_left = (item.delivery.lease_until or utcnow()) - utcnow()
            if lease_left < timedelta(seconds=self.send_timeout):
                # Too late to finish under this lease: another worker could take the row meanwhile.
                self._defer(item.delivery, 0.0, "lease short", "put back unsent: too little of its lease was left")
                return
            item.started = True
            started_at = utcnow()
            clock = time.monotonic()
            self._sending_since.setdefault(item.endpoint, {})[item.delivery.id] = clock
            try:
                # asyncio.timeout rather than wait_for, which (before Python 3.12) runs the send
                # in one more task: a task per delivery is already enough overhead.
                async with asyncio.timeout(self.send_timeout):
                    result = await item.adapter.send(item.message)
            except TimeoutError:
                result = SendResult.retry("timeout", f"no answer within {self.send_timeout:g} s")
            except Exception as exc:
                log.exception("the %s channel raised while sending delivery %s", item.adapter.channel, item.delivery.id)
                # The traceback is in the log; the summary viewers see names the type only, since
                # an exception's text may quote the secret URL of a Slack or Teams webhook.
                result = SendResult.retry("error", f"the channel raised {type(exc).__name__}")
            duration = time.monotonic() - clock
        self._observe(item.endpoint, result, duration)
        self._finish(item.delivery, result, started_at, duration, item.endpoint)

    def _finish(self, delivery: Delivery, result: SendResult, at: datetime, duration: float, endpoint: str) -> None:
        channel = str(delivery.channel)
        metrics.DELIVERIES.labels(channel=channel, outcome=result.outcome.value).inc()
        metrics.DELIVERY_SECONDS.labels(channel=channel).observe(duration)
        self.stats.sent += 1
        self.stats.outcomes[result.outcome.value] += 1
        if result.outcome != AttemptOutcome.delivered:
            log.warning(
                "delivery %s (%s, %s, attempt %s) via %s: %s %s %s%s",
                delivery.id,
                channel,
                delivery.subject,
                delivery.attempts,
                loggable(endpoint),
                result.outcome.value,
                result.code or "",
                result.summary,
                " (address unreachable)" if result.unreachable else "",
            )
        self._outcomes.append(Outcome(delivery, result, at, duration))
        if endpoint != "-":
            if result.outcome == AttemptOutcome.retry:
                self._remember_waiting(endpoint, delivery.id)
            elif endpoint in self._waiting:
                self._waiting[endpoint].discard(delivery.id)
        if len(self._outcomes) >= self.batch:
            self._flush_now.set()

    def _defer(
        self,
        delivery: Delivery,
        seconds: float,
        kind: str,
        reason: str,
        *,
        replace: bool = False,
        endpoint: str | None = None,
    ) -> None:
        """Put a claimed delivery back unsent; ``reason`` shows as its last error (``replace``: over a real one too).

        With ``endpoint`` (its circuit is open) it is brought forward when the endpoint answers again.
        """
        metrics.DELIVERIES_DEFERRED.labels(reason=kind).inc()
        self.stats.deferred += 1
        self._deferrals.append(Deferral(delivery, utcnow() + timedelta(seconds=seconds), reason, replace))
        if endpoint is not None:
            self._remember_waiting(endpoint, delivery.id)

    def _remember_waiting(self, endpoint: str, delivery_id: int) -> None:
        waiting = self._waiting.setdefault(endpoint, set())
        if len(waiting) < WAITING_CAP:
            waiting.add(delivery_id)

    def _open_reason(self, endpoint: str, wait: float) -> str:
        failures = self._breakers[endpoint].failures if endpoint in self._breakers else 0
        return f"waiting {wait:.0f} s: {loggable(endpoint)} failed {failures} times in a row (circuit open), not tried"

    # ------------------------------------------------------------------ endpoints and breaker

    def _breaker_wait(self, endpoint: str) -> float:
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            return 0.0
        return max(0.0, breaker.open_until - time.monotonic())

    def _limit(self, adapter: ChannelAdapter) -> int:
        """Sends in flight to one endpoint: the SMTP pool for email, else the endpoint setting."""
        return self.settings.smtp_connections if adapter.channel == Channel.email else self.endpoint_limit

    def _duration(self, endpoint: str) -> float | None:
        """How long a send to this endpoint takes: the moving average, or longer if one is hanging."""
        average = self._durations.get(endpoint)
        sending = self._sending_since.get(endpoint)
        if sending:
            oldest = time.monotonic() - min(sending.values())
            average = oldest if average is None else max(average, oldest)
        return average

    def _hold_cap(self, endpoint: str, adapter: ChannelAdapter) -> int:
        """How many deliveries of one endpoint this worker holds: what it can send in HOLD_SECONDS."""
        duration = self._duration(endpoint)
        per_slot = HOLD_PER_SLOT
        if duration is not None and duration > 0:
            per_slot = max(HOLD_PER_SLOT, min(10_000, int(HOLD_SECONDS / duration)))
        return self._limit(adapter) * per_slot

    def _backlog_wait(self, endpoint: str, adapter: ChannelAdapter) -> float:
        """Roughly when this worker will have room for the endpoint again (with jitter)."""
        estimate = (self._duration(endpoint) or 0.05) * self._held[endpoint] / self._limit(adapter)
        return min(60.0, max(0.25, estimate)) * random.uniform(1.0, 1.5)

    def _observe(self, endpoint: str, result: SendResult, duration: float) -> None:
        previous = self._durations.get(endpoint)
        self._durations[endpoint] = duration if previous is None else 0.8 * previous + 0.2 * duration
        failing = result.outcome == AttemptOutcome.retry or (
            result.outcome == AttemptOutcome.failed and not result.unreachable
        )
        if not failing:
            # A bad address says nothing about the endpoint; a success closes the breaker, and
            # what waits on backoff for this endpoint may go now.
            if result.outcome == AttemptOutcome.delivered:
                breaker = self._breakers.pop(endpoint, None)
                if breaker is not None and breaker.failures > 0 and self._waiting.get(endpoint):
                    self._recovered.add(endpoint)
                    self._flush_now.set()
            return
        breaker = self._breakers.setdefault(endpoint, _Breaker())
        breaker.failures += 1
        if breaker.failures >= self.settings.breaker_failures and breaker.open_until <= time.monotonic():
            breaker.open_until = time.monotonic() + self.settings.breaker_cooldown_seconds
            metrics.BREAKER_OPENED.inc()
            log.warning(
                "circuit open for %s after %s failures in a row; its deliveries wait %g s",
                loggable(endpoint),
                breaker.failures,
                self.settings.breaker_cooldown_seconds,
            )

    # --------------------------------------------------------------------------- flushing

    async def _flush_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._flush_now.wait()
            self._flush_now.clear()
            try:
                await self.flush()
            except Exception:
                metrics.WORKER_ERRORS.labels(stage="delivery_flush").inc()
                log.exception("writing delivery results failed; keeping them to write again")
                await self._pause(1)

    async def flush(self, *, force_topics: bool = False) -> None:
        """Write the results gathered so far in one transaction (kept for the next try on error)."""
        outcomes, self._outcomes = self._outcomes, []
        deferrals, self._deferrals = self._deferrals, []
        recovered = {endpoint: self._waiting.pop(endpoint, set()) for endpoint in self._recovered}
        self._recovered = set()
        if not outcomes and not deferrals and not self._topics_due and not recovered:
            return
        try:
            async with self.db.session() as session:
                touched = await ledger.record(
                    session, worker=self.name, settings=self.settings, outcomes=outcomes, deferrals=deferrals
                )
                # After the results: a row this flush sets to retrying is brought forward too.
                moved = await ledger.bring_forward(session, sorted(set().union(*recovered.values())))
                topics = self._topics(touched, force=force_topics)
                if topics:
                    events.record(session, *topics)
        except BaseException:
            self._outcomes[:0] = outcomes
            self._deferrals[:0] = deferrals
            for endpoint, ids in recovered.items():
                self._waiting.setdefault(endpoint, set()).update(ids)
            self._recovered.update(recovered)
            raise
        if moved:
            log.info(
                "%s answers again: %s deliveries waiting for it are due now", ", ".join(map(loggable, recovered)), moved
            )
        self.stats.flushes += 1

    def _topics(self, incidents: set[str], *, force: bool) -> list[str]:
        """Incident topics to record now: at most one per incident per TOPIC_INTERVAL."""
        self._topics_due.update(f"incident:{i}" for i in incidents)
        now = time.monotonic()
        ready = [t for t in self._topics_due if force or now - self._topics_at.get(t, 0.0) >= TOPIC_INTERVAL]
        for topic in ready:
            self._topics_at[topic] = now
            self._topics_due.discard(topic)
        return sorted(ready)
