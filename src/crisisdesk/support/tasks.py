"""Replies to tickets: a :class:`TicketReply` row, then the way out that fits the ticket.

A helpdesk ticket is answered through the helpdesk's API by the job ``support.reply`` (retried
with backoff, marked failed with its last error after :data:`MAX_ATTEMPTS`), in two steps: the
post the customer sees, then the tags and solved status; once the post succeeded only the second
step is ever tried again. A ticket that came by email or through the API with a requester
address is answered by email through the delivery ledger (purpose ``ticket``), threaded under the
original message when its Message-ID is known, and under the ticket's own thread id
(``<ticket.ID@host>``), which the customer's answer carries back in its References. Either way
the words are rendered from an approved macro when the reply is queued, and stored; a macro that
cannot be rendered for a ticket leaves a failed reply saying why, never a lost ticket.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident
from crisisdesk.incident.service import incident_topic
from crisisdesk.kit import events, jobs, metrics
from crisisdesk.kit.errors import DomainError
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import ledger
from crisisdesk.notify.models import Channel, Delivery, DeliveryState, Purpose, message_id
from crisisdesk.support import adapters, macros
from crisisdesk.support.models import Helpdesk, Macro, ReplyState, Ticket, TicketReply, TicketSource

log = logging.getLogger(__name__)

REPLY_JOB = "support.reply"
MAX_ATTEMPTS = 8
VIA_HELPDESK = "helpdesk"
VIA_EMAIL = "email"
FINISH = "finish"  # the job's second step: tags and solved status, after the post
_THREAD_REF = re.compile(r"<?ticket\.([a-z0-9]{1,64})@[^<>\s]+>?")


def reply_key(reply_id: int) -> str:
    return f"reply:{reply_id}"


def _delivery_subject(reply_id: int) -> str:
    return f"ticket-reply:{reply_id}"


def _delivery_recipient(ticket_id: str) -> str:
    return f"ticket:{ticket_id}"


def reply_message_id(reply_id: int, ticket_id: str) -> str:
    """The local part of an email reply's Message-ID (``<msg_…@host>``), as the ledger writes it."""
    return message_id(_delivery_subject(reply_id), Channel.email, _delivery_recipient(ticket_id))


def backoff(attempts: int) -> timedelta:
    """30 s after the first failure, doubling, at most an hour (eight attempts span about two hours)."""
    return timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


def message_ref(external_id: str | None) -> str | None:
    """An email's Message-ID as In-Reply-To and References want it: ``<id@host>``."""
    value = " ".join((external_id or "").split())
    if not value or "@" not in value:
        return None
    return value if value.startswith("<") and value.endswith(">") else f"<{value.strip('<>')}>"


def thread_ref(ticket_id: str, settings: Settings) -> str:
    """The ticket's own thread id, in the References of every email answer to it.

    A customer's answer lists it in its own References (RFC 5322 §3.6.4), so the answer finds
    its ticket whether the ticket came by email or through the API.
    """
    return f"<ticket.{ticket_id}@{urlsplit(settings.base_url).hostname or 'crisisdesk.invalid'}>"


def ticket_id_in(ref: str) -> str | None:
    """The ticket id in a thread id written by :func:`thread_ref`, if ``ref`` is one."""
    found = _THREAD_REF.fullmatch(ref.strip())
    return found.group(1) if found else None


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
    try:
        subject, body = macros.render_with(macro, facts, ticket=ticket, time_zone=settings.page_time_zone)
    except DomainError as exc:
        return await _not_rendered(session, ticket, incident, macro, via=via, solve=solve, error=exc.message)
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
    delivery = await ledger.enqueue(
        session,
        subject=_delivery_subject(reply.id),
        purpose=Purpose.ticket,
        channel=Channel.email,
        recipient=_delivery_recipient(ticket.id),
        address=str(ticket.requester_email),
        payload={
            "subject": reply_subject(ticket, subject, incident),
            "text": body,
            "headers": email_headers(ticket, settings),
        },
        incident_id=incident.id,
    )
    reply.delivery_id = delivery.id
    return reply


def email_headers(ticket: Ticket, settings: Settings) -> dict[str, str]:
    """Threading under the customer's message and the ticket's thread id; Reply-To the support inbox."""
    thread = thread_ref(ticket.id, settings)
    original = message_ref(ticket.external_id) if ticket.source == TicketSource.email else None
    headers = {"References": thread}
    if original is not None:
        headers = {"In-Reply-To": original, "References": f"{thread} {original}"}
    if settings.support_email:
        headers["Reply-To"] = settings.support_email
    return headers


async def _not_rendered(
    session: AsyncSession, ticket: Ticket, incident: Incident, macro: Macro, *, via: str, solve: bool, error: str
) -> TicketReply:
    """A reply its macro could not be written for: failed at once, with the reason on the ticket's page."""
    log.warning(
        "the %s macro of INC-%s cannot be rendered for ticket #%s (%s), so it is not answered: %s",
        macro.kind,
        incident.number,
        ticket.number,
        ticket.id,
        error,
    )
    metrics.TICKET_REPLIES.labels(via=via, outcome="not_rendered").inc()
    reply = TicketReply(
        ticket_id=ticket.id,
        incident_id=incident.id,
        macro_id=macro.id,
        kind=str(macro.kind),
        body="",
        solve=solve,
        via=via,
        state=ReplyState.failed,
        attempts=0,
        last_error=f"not sent: {error}"[:2000],
        created_at=utcnow(),
    )
    session.add(reply)
    await session.flush()
    _touch(session, reply)
    return reply


async def cancel_pending(session: AsyncSession, *, ticket_id: str, incident_id: str) -> int:
    """Stop the replies not sent yet for this ticket on this incident (it was unlinked); returns how many."""
    rows = list(
        await session.scalars(
            select(TicketReply).where(
                TicketReply.ticket_id == ticket_id,
                TicketReply.incident_id == incident_id,
                TicketReply.state == ReplyState.pending,
                # Posted to the helpdesk already: what is left (tags, status) cannot unsay it.
                TicketReply.sent_at.is_(None),
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
    """Send one helpdesk reply; each step is retried with backoff, then recorded as failed.

    The post is what the customer sees: once it succeeded (``sent_at``), the tags and status
    follow as the same job run again, so the post is committed before them and a failure after
    it never posts the reply a second time.
    """
    reply = await session.get(TicketReply, int(payload["reply_id"]))
    if reply is None or reply.state != ReplyState.pending:
        return
    ticket = await session.get(Ticket, reply.ticket_id)
    if ticket is None:
        return
    posted = reply.sent_at is not None
    if not posted and reply.incident_id is not None and ticket.incident_id != reply.incident_id:
        reply.state, reply.last_error = ReplyState.failed, "not sent: the ticket was unlinked from the incident first"
        _touch(session, reply)
        return
    helpdesk = await session.get(Helpdesk, ticket.helpdesk_id) if ticket.helpdesk_id else None
    if helpdesk is None or not helpdesk.enabled:
        reason = "the ticket's helpdesk was removed or disabled"
        reply.state = ReplyState.failed
        reply.last_error = f"posted, but not tagged or solved: {reason}" if posted else f"not sent: {reason}"
        _touch(session, reply)
        return
    tags = list(ticket.tags)
    external_id = str(ticket.external_id)
    timeout = settings.helpdesk_timeout_seconds
    reply.attempts += 1
    if not posted:
        try:
            await adapters.post_reply(
                helpdesk,
                external_id=external_id,
                body=reply.body,
                solve=reply.solve,
                tags=tags,
                client=client,
                timeout=timeout,
            )
        except Exception as exc:
            await _retry_or_fail(session, reply, ticket, helpdesk, exc, tries=reply.attempts, posted=False)
            return
        reply.sent_at = utcnow()
        if adapters.has_follow_up(helpdesk, solve=reply.solve, tags=tags):
            await jobs.schedule(
                session, REPLY_JOB, utcnow(), key=reply_key(reply.id), payload={"reply_id": reply.id, "step": FINISH}
            )
            _touch(session, reply)
            return
    else:
        tries = int(payload.get("tries") or 0) + 1
        try:
            await adapters.finish_reply(
                helpdesk, external_id=external_id, solve=reply.solve, tags=tags, client=client, timeout=timeout
            )
        except Exception as exc:
            await _retry_or_fail(session, reply, ticket, helpdesk, exc, tries=tries, posted=True)
            return
    reply.state, reply.last_error = ReplyState.sent, None
    metrics.TICKET_REPLIES.labels(via=VIA_HELPDESK, outcome="sent").inc()
    _touch(session, reply)


async def _retry_or_fail(
    session: AsyncSession,
    reply: TicketReply,
    ticket: Ticket,
    helpdesk: Helpdesk,
    exc: Exception,
    *,
    tries: int,
    posted: bool,
) -> None:
    """A step failed: try it again later if that can help and tries are left, else mark the reply failed."""
    error = f"{type(exc).__name__}: {exc}"
    if posted:
        error = f"the reply was posted, but tagging or solving the ticket failed: {error}"
    reply.last_error = error[:2000]
    step = "follow-up" if posted else "reply"
    retryable = bool(getattr(exc, "retryable", True))
    if retryable and tries < MAX_ATTEMPTS:
        wait = backoff(tries)
        asked = getattr(exc, "retry_after", None)
        if isinstance(asked, int | float) and asked > wait.total_seconds():
            wait = timedelta(seconds=min(float(asked), 86_400.0))
        due = utcnow() + wait
        log.warning(
            "%s %s to %s ticket %s failed (attempt %s), retrying at %s: %s",
            step,
            reply.id,
            helpdesk.kind,
            ticket.external_id,
            tries,
            due.isoformat(timespec="seconds"),
            reply.last_error,
        )
        payload: dict[str, Any] = {"reply_id": reply.id}
        if posted:
            payload |= {"step": FINISH, "tries": tries}
        await jobs.schedule(session, REPLY_JOB, due, key=reply_key(reply.id), payload=payload)
        metrics.TICKET_REPLIES.labels(via=VIA_HELPDESK, outcome="retry").inc()
    else:
        log.error(
            "%s %s to %s ticket %s failed for good after %s attempts: %s",
            step,
            reply.id,
            helpdesk.kind,
            ticket.external_id,
            tries,
            reply.last_error,
        )
        reply.state = ReplyState.failed
        metrics.TICKET_REPLIES.labels(via=VIA_HELPDESK, outcome="failed").inc()
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
