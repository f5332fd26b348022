"""Replies to tickets: a :class:`TicketReply` row, then the way out that fits the ticket.

A helpdesk ticket is answered through the helpdesk's API by the job ``support.reply`` (retried
with backoff, marked failed with its last error after :data:`MAX_ATTEMPTS`). A ticket that came
by email or through the API with a requester address is answered by email through the delivery
ledger (purpose ``ticket``), threaded under the original message when its Message-ID is known.
Either way the words are rendered from an approved macro when the reply is queued, and stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident
from crisisdesk.incident.service import incident_topic
from crisisdesk.kit import events, jobs
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import ledger
from crisisdesk.notify.models import Channel, Delivery, DeliveryState, Purpose
from crisisdesk.support import adapters, macros
from crisisdesk.support.models import Helpdesk, Macro, ReplyState, Ticket, TicketReply, TicketSource

log = logging.getLogger(__name__)

REPLY_JOB = "support.reply"
MAX_ATTEMPTS = 8
VIA_HELPDESK = "helpdesk"
VIA_EMAIL = "email"


def reply_key(reply_id: int) -> str:
    return f"reply:{reply_id}"


def backoff(attempts: int) -> timedelta:
    """30 s after the first failure, doubling, at most an hour (eight attempts span about two hours)."""
    return timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


def message_ref(external_id: str | None) -> str | None:
    """An email's Message-ID as In-Reply-To and References want it: ``<id@host>``."""
    value = " ".join((external_id or "").split())
    if not value or "@" not in value:
        return None
    return value if value.startswith("<") and value.endswith(">") else f"<{value.strip('<>')}>"


def reply_subject(ticket: Ticket, macro_subject: str, incident: Incident) -> str:
    """The email's subject: "Re:" the ticket's, so mail clients keep one conversation."""
    original = " ".join(ticket.subject.split())
    if original:
        return original if original[:3].lower() == "re:" else f"Re: {original}"
    return macro_subject or incident.name


async def queue_reply(
    session: AsyncSession,
    settings: Settings,
    ticket: Ticket,
    incident: Incident,
    macro: Macro,
    *,
    solve: bool,
    values: Mapping[str, Any] | None = None,
) -> TicketReply | None:
    """Answer the ticket with this approved macro; None when there is no way to reach the requester.

    ``values`` are the incident's macro variables when the caller renders for many tickets.
    """
    if macro.approved_at is None:
        raise ValueError("only an approved macro is sent")
    if ticket.helpdesk_id is not None and ticket.external_id:
        via = VIA_HELPDESK
    elif ticket.requester_email:
        via = VIA_EMAIL
    else:
        return None
    facts = values if values is not None else await macros.incident_values(session, incident)
    subject, body = macros.render_with(macro, facts, ticket=ticket, time_zone=settings.page_time_zone)
    reply = TicketReply(
        ticket_id=ticket.id,
        incident_id=incident.id,
        macro_id=macro.id,
        kind=str(macro.kind),
        body=body,
        solve=solve,
        via=via,
        state=ReplyState.pending,
        attempts=0,
        created_at=utcnow(),
    )
    session.add(reply)
    await session.flush()
    if via == VIA_HELPDESK:
        await jobs.schedule(session, REPLY_JOB, utcnow(), key=reply_key(reply.id), payload={"reply_id": reply.id})
        return reply
    headers: dict[str, str] = {}
    original = message_ref(ticket.external_id) if ticket.source == TicketSource.email else None
    if original is not None:
        headers = {"In-Reply-To": original, "References": original}
    delivery = await ledger.enqueue(
        session,
        subject=f"ticket-reply:{reply.id}",
        purpose=Purpose.ticket,
        channel=Channel.email,
        recipient=f"ticket:{ticket.id}",
        address=str(ticket.requester_email),
        payload={"subject": reply_subject(ticket, subject, incident), "text": body, "headers": headers},
        incident_id=incident.id,
    )
    reply.delivery_id = delivery.id
    return reply


async def cancel_pending(session: AsyncSession, *, ticket_id: str, incident_id: str) -> int:
    """Stop the replies not sent yet for this ticket on this incident (it was unlinked); returns how many."""
    rows = list(
        await session.scalars(
            select(TicketReply).where(
                TicketReply.ticket_id == ticket_id,
                TicketReply.incident_id == incident_id,
                TicketReply.state == ReplyState.pending,
            )
        )
    )
    now = utcnow()
    reason = "not sent: the ticket was unlinked from the incident first"
    for reply in rows:
        if reply.delivery_id is not None:
            result = await session.execute(
                update(Delivery)
                .where(
                    Delivery.id == reply.delivery_id,
                    Delivery.state.in_([DeliveryState.pending, DeliveryState.retrying]),
                )
                .values(state=DeliveryState.failed, failed_at=now, last_error=reason)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                continue  # a worker holds it or sent it already
        else:
            await jobs.cancel(session, reply_key(reply.id))
        reply.state, reply.last_error = ReplyState.failed, reason
    return len(rows)


async def reply_states(session: AsyncSession, replies: list[TicketReply]) -> dict[int, tuple[str, str | None]]:
    """Each reply's state and last error; an email reply's come from its delivery in the ledger."""
    ids = [r.delivery_id for r in replies if r.delivery_id is not None]
    found: dict[int, tuple[str, str | None]] = {}
    if ids:
        rows = await session.execute(
            select(Delivery.id, Delivery.state, Delivery.last_error).where(Delivery.id.in_(ids))
        )
        found = {row.id: (str(row.state), row.last_error) for row in rows}
    states: dict[int, tuple[str, str | None]] = {}
    for reply in replies:
        if reply.delivery_id is not None and reply.delivery_id in found and reply.state == ReplyState.pending:
            state, error = found[reply.delivery_id]
            shown = {DeliveryState.delivered: ReplyState.sent, DeliveryState.failed: ReplyState.failed}.get(
                DeliveryState(state), ReplyState.pending
            )
            states[reply.id] = (str(shown), error)
        else:
            states[reply.id] = (str(reply.state), reply.last_error)
    return states


def _touch(session: AsyncSession, reply: TicketReply) -> None:
    if reply.incident_id is not None:
        events.record(session, incident_topic(reply.incident_id))


async def run_reply(
    session: AsyncSession, payload: dict[str, Any], *, settings: Settings, client: httpx.AsyncClient
) -> None:
    """Send one helpdesk reply; a failure is retried with backoff, then recorded as failed."""
    reply = await session.get(TicketReply, int(payload["reply_id"]))
    if reply is None or reply.state != ReplyState.pending:
        return
    ticket = await session.get(Ticket, reply.ticket_id)
    if ticket is None:
        return
    if reply.incident_id is not None and ticket.incident_id != reply.incident_id:
        reply.state, reply.last_error = ReplyState.failed, "not sent: the ticket was unlinked from the incident first"
        _touch(session, reply)
        return
    helpdesk = await session.get(Helpdesk, ticket.helpdesk_id) if ticket.helpdesk_id else None
    if helpdesk is None or not helpdesk.enabled:
        reply.state, reply.last_error = ReplyState.failed, "not sent: the ticket's helpdesk was removed or disabled"
        _touch(session, reply)
        return
    reply.attempts += 1
    try:
        await adapters.send_reply(
            helpdesk,
            external_id=str(ticket.external_id),
            body=reply.body,
            solve=reply.solve,
            tags=list(ticket.tags),
            client=client,
            timeout=settings.helpdesk_timeout_seconds,
        )
    except Exception as exc:
        reply.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        retryable = bool(getattr(exc, "retryable", True))
        if retryable and reply.attempts < MAX_ATTEMPTS:
            wait = backoff(reply.attempts)
            asked = getattr(exc, "retry_after", None)
            if isinstance(asked, int | float) and asked > wait.total_seconds():
                wait = timedelta(seconds=min(float(asked), 86_400.0))
            due = utcnow() + wait
            log.warning(
                "reply %s to %s ticket %s failed (attempt %s), retrying at %s: %s",
                reply.id,
                helpdesk.kind,
                ticket.external_id,
                reply.attempts,
                due.isoformat(timespec="seconds"),
                reply.last_error,
            )
            await jobs.schedule(session, REPLY_JOB, due, key=reply_key(reply.id), payload={"reply_id": reply.id})
        else:
            log.error(
                "reply %s to %s ticket %s failed for good after %s attempts: %s",
                reply.id,
                helpdesk.kind,
                ticket.external_id,
                reply.attempts,
                reply.last_error,
            )
            reply.state = ReplyState.failed
        _touch(session, reply)
        return
    reply.state, reply.sent_at, reply.last_error = ReplyState.sent, utcnow(), None
    _touch(session, reply)


def register(runtime: Runtime) -> None:
    """Register the reply job's handler, closed over this process's settings."""
    settings = runtime.settings

    async def on_reply(session: AsyncSession, payload: dict[str, Any]) -> None:
        # A client per reply: replies are few and slow next to a helpdesk's rate limits, and a
        # pool held by a job handler would outlive the worker without anyone closing it.
        async with adapters.http_client(settings) as client:
            await run_reply(session, payload, settings=settings, client=client)

    runtime.runner.register(REPLY_JOB, on_reply)
