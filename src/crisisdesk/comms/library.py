"""The seeded template library: common B2B SaaS crises, each phase, every channel.

Each entry is written once as a few sentences; :func:`entries` turns it into the per-channel
variants (Markdown for the page, email subject + HTML + text, one-segment GSM-7 SMS, Slack
mrkdwn, Teams Markdown, a post within 280 characters). A test renders every one on every
channel with sample values and expects no warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.service import Actor
from crisisdesk.comms import service
from crisisdesk.comms.models import MessageTemplate

COMPONENTS = {"name": "components", "type": "components", "label": "Affected components", "required": True}
START = {"name": "start_time", "type": "datetime", "label": "Started at", "required": True}
NEXT = {"name": "next_update_at", "type": "datetime", "label": "Next update by", "required": True}
WORKAROUND = {"name": "workaround", "type": "text", "label": "Workaround", "required": False}
ETA = {"name": "eta", "type": "eta", "label": "Expected recovery", "required": False}
INCIDENT_URL = {"name": "incident_url", "type": "url", "label": "Incident link", "required": True}
PAGE_URL = {"name": "status_page_url", "type": "url", "label": "Status page link", "required": True}
PROVIDER = {"name": "provider", "type": "text", "label": "Identity provider", "required": True}

AFFECTED = "{{ components|join(', ') }}"
NEXT_LINE = "We will post the next update by {{ next_update_at|time }}."
WORKAROUND_MD = "{% if workaround %}\n\n**Workaround:** {{ workaround }}{% endif %}"
WORKAROUND_TEXT = "{% if workaround %}\n\nWorkaround: {{ workaround }}{% endif %}"
WORKAROUND_HTML = "{% if workaround %}<p><strong>Workaround:</strong> {{ workaround }}</p>{% endif %}"
ETA_MD = "{% if eta %} We expect recovery by {{ eta|time }}.{% endif %}"


@dataclass(frozen=True)
class Entry:
    scenario: str
    phase: str
    title: str  # the incident name it suggests
    lead: str  # the first sentence(s): what is happening (Jinja, plain text)
    detail: str  # what we are doing (Jinja, plain text)
    sms: str  # one GSM-7 segment with sample values
    social: str  # within 280 characters with sample values
    variables: tuple[dict[str, Any], ...]
    promise: bool = True  # whether the update promises the next one
    workaround: bool = False
    eta: bool = False


def _variants(entry: Entry) -> dict[str, Any]:
    promise_md = f" {NEXT_LINE}" if entry.promise else ""
    workaround_md = WORKAROUND_MD if entry.workaround else ""
    workaround_text = WORKAROUND_TEXT if entry.workaround else ""
    workaround_html = WORKAROUND_HTML if entry.workaround else ""
    eta = ETA_MD if entry.eta else ""
    phase = entry.phase.replace("_", " ").capitalize()
    body = f"{entry.lead} {entry.detail}{eta}{workaround_md}\n\n{promise_md.strip()}".rstrip()
    text = (
        f"{entry.lead} {entry.detail}{eta}{workaround_text}\n\n{promise_md.strip()}\n\n"
        "Follow this incident: {{ incident_url }}\nStatus page: {{ status_page_url }}"
    )
    html = (
        f"<h2>{phase}: {entry.title}</h2><p>{entry.lead} {entry.detail}{eta}</p>{workaround_html}"
        + (f"<p>{NEXT_LINE}</p>" if entry.promise else "")
        + '<p><a href="{{ incident_url }}">Follow this incident</a> · '
        + '<a href="{{ status_page_url }}">Status page</a></p>'
    )
    slack = (
        f"*{phase}: {entry.title}*\n{entry.lead} {entry.detail}{eta}{workaround_text}"
        + (f"\n_{NEXT_LINE}_" if entry.promise else "")
        + "\n<{{ incident_url }}|Follow this incident>"
    )
    teams = (
        f"**{phase}: {entry.title}**\n\n{entry.lead} {entry.detail}{eta}{workaround_md}"
        + (f"\n\n*{NEXT_LINE}*" if entry.promise else "")
        + "\n\n[Follow this incident]({{ incident_url }})"
    )
    return {
        "scenario": entry.scenario,
        "phase": entry.phase,
        "title": entry.title,
        "variables": list(entry.variables),
        "body": body,
        "email_subject": f"[{phase}] {entry.title}",
        "email_html": html,
        "email_text": text,
        "sms": entry.sms,
        "slack": slack,
        "teams": teams,
        "social": entry.social,
    }


IDP = "Identity provider outage"
PERF = "Degraded performance"
EXPORT = "Data export delay"
SECURITY = "Security incident"
MAINTENANCE = "Scheduled maintenance"

_BASE = (COMPONENTS, START, INCIDENT_URL, PAGE_URL)

ENTRIES: tuple[Entry, ...] = (
    Entry(
        IDP,
        "investigating",
        "Sign-in failures for {{ provider }} SSO users",
        "Since {{ start_time|time }}, customers who sign in with {{ provider }} single sign-on cannot sign in. "
        f"Affected: {AFFECTED}.",
        "Sessions that are already signed in keep working. We are investigating with {{ provider }}.",
        "sign-in with {{ provider }} SSO is failing since {{ start_time|time }}. "
        "Next update by {{ next_update_at|time }}.",
        "We are investigating sign-in failures for {{ provider }} SSO users since {{ start_time|time }}. "
        "Signed-in sessions keep working. Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT, PROVIDER, WORKAROUND),
        workaround=True,
    ),
    Entry(
        IDP,
        "identified",
        "Sign-in failures for {{ provider }} SSO users",
        "{{ provider }} has confirmed an outage that stops single sign-on to {{ components|join(', ') }}.",
        "Sessions that are already signed in keep working. We are in contact with {{ provider }} and "
        "preparing a way for workspace admins to let their users sign in meanwhile.",
        "{{ provider }} confirmed an SSO outage. Signed-in sessions work. Next update by {{ next_update_at|time }}.",
        "{{ provider }} has confirmed the outage behind today's SSO sign-in failures. Signed-in sessions keep "
        "working. Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT, PROVIDER, WORKAROUND),
        workaround=True,
    ),
    Entry(
        IDP,
        "monitoring",
        "Sign-in failures for {{ provider }} SSO users",
        "{{ provider }} has fixed the outage and single sign-on is succeeding again.",
        "We are watching sign-in error rates before we call this resolved.",
        "{{ provider }} SSO sign-ins are working again. We are monitoring. Next update by {{ next_update_at|time }}.",
        "{{ provider }} SSO sign-ins are working again. We are monitoring before we call this resolved. "
        "Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT, PROVIDER),
    ),
    Entry(
        IDP,
        "resolved",
        "Sign-in failures for {{ provider }} SSO users",
        "Sign-in with {{ provider }} single sign-on has been working normally since the fix.",
        "This incident is resolved. We will publish a review of what happened and what we are changing.",
        "{{ provider }} SSO sign-in is working normally. This incident is resolved.",
        "Resolved: sign-in with {{ provider }} SSO is working normally. A review will follow. {{ incident_url }}",
        (*_BASE, PROVIDER),
        promise=False,
    ),
    Entry(
        PERF,
        "investigating",
        f"Slow responses in {AFFECTED}",
        f"Since {{{{ start_time|time }}}}, {AFFECTED} respond more slowly than usual and some requests time out.",
        "We are investigating the cause.",
        "slow responses since {{ start_time|time }}; some requests time out. Next update by {{ next_update_at|time }}.",
        f"We are investigating slow responses in {AFFECTED} since {{{{ start_time|time }}}}. "
        "Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT, WORKAROUND),
        workaround=True,
    ),
    Entry(
        PERF,
        "identified",
        f"Slow responses in {AFFECTED}",
        f"We have found the cause of the slow responses in {AFFECTED}.",
        "A fix is being prepared.",
        "we found the cause of the slow responses; a fix is on the way. Next update by {{ next_update_at|time }}.",
        f"We found the cause of the slow responses in {AFFECTED} and are preparing a fix. "
        "Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT, ETA),
        eta=True,
    ),
    Entry(
        PERF,
        "monitoring",
        f"Slow responses in {AFFECTED}",
        f"A fix is in place and response times in {AFFECTED} are back to normal.",
        "We are monitoring.",
        "response times are back to normal. We are monitoring. Next update by {{ next_update_at|time }}.",
        f"A fix is in place and response times in {AFFECTED} are back to normal. We are monitoring. "
        "{{ incident_url }}",
        (*_BASE, NEXT),
    ),
    Entry(
        PERF,
        "resolved",
        f"Slow responses in {AFFECTED}",
        f"Response times in {AFFECTED} have been normal since the fix.",
        "This incident is resolved.",
        "response times have been normal since the fix. This incident is resolved.",
        f"Resolved: response times in {AFFECTED} are normal again. Thank you for your patience. {{{{ incident_url }}}}",
        _BASE,
        promise=False,
    ),
    Entry(
        EXPORT,
        "investigating",
        "Data exports delayed",
        "Since {{ start_time|time }}, scheduled and on-demand exports are taking longer than usual to complete.",
        "No data is lost; delayed exports will complete. We are investigating.",
        "data exports are delayed since {{ start_time|time }}. No data is lost. "
        "Next update by {{ next_update_at|time }}.",
        "Data exports are delayed since {{ start_time|time }}. No data is lost and delayed exports will complete. "
        "Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT),
    ),
    Entry(
        EXPORT,
        "identified",
        "Data exports delayed",
        "We have found why exports are delayed: the export queue fell behind.",
        "We have added capacity and the queue is draining.",
        "the export backlog is draining. No data is lost. Next update by {{ next_update_at|time }}.",
        "We found why exports are delayed and added capacity; the backlog is draining. "
        "Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT, ETA),
        eta=True,
    ),
    Entry(
        EXPORT,
        "monitoring",
        "Data exports delayed",
        "The export backlog has cleared and new exports complete on time.",
        "We are monitoring.",
        "the export backlog has cleared. We are monitoring. Next update by {{ next_update_at|time }}.",
        "The export backlog has cleared and new exports complete on time. We are monitoring. {{ incident_url }}",
        (*_BASE, NEXT),
    ),
    Entry(
        EXPORT,
        "resolved",
        "Data exports delayed",
        "Every delayed export has completed and new exports run on schedule.",
        "This incident is resolved.",
        "all delayed exports have completed. This incident is resolved.",
        "Resolved: every delayed export has completed and exports run on schedule. {{ incident_url }}",
        _BASE,
        promise=False,
    ),
    Entry(
        SECURITY,
        "investigating",
        "Security investigation",
        "We are investigating a potential security issue affecting {{ components|join(', ') }}.",
        "We will share what we learn as soon as we can do so safely. No action is needed from you at this time.",
        "we are investigating a potential security issue. No action needed now. "
        "Next update by {{ next_update_at|time }}.",
        "We are investigating a potential security issue. No action is needed from you at this time. "
        "Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT),
    ),
    Entry(
        SECURITY,
        "identified",
        "Security investigation",
        "We have identified the security issue and contained it.",
        "Affected customers will hear from us directly.",
        "the security issue is contained. Affected customers will hear from us. "
        "Next update by {{ next_update_at|time }}.",
        "We identified and contained the security issue. Affected customers will hear from us directly. "
        "Next update by {{ next_update_at|time }}. {{ incident_url }}",
        (*_BASE, NEXT, WORKAROUND),
        workaround=True,
    ),
    Entry(
        SECURITY,
        "monitoring",
        "Security investigation",
        "The fix is in place.",
        "We are monitoring closely and continuing our investigation.",
        "the security fix is in place. We are monitoring. Next update by {{ next_update_at|time }}.",
        "The security fix is in place. We are monitoring closely. Next update by {{ next_update_at|time }}. "
        "{{ incident_url }}",
        (*_BASE, NEXT),
    ),
    Entry(
        SECURITY,
        "resolved",
        "Security investigation",
        "This security incident is resolved.",
        "We will publish a report of what happened and what we are changing.",
        "the security incident is resolved. A report will follow.",
        "Resolved: the security incident is closed. A report will follow. {{ incident_url }}",
        _BASE,
        promise=False,
    ),
    Entry(
        MAINTENANCE,
        "scheduled",
        f"Scheduled maintenance: {AFFECTED}",
        f"We will carry out maintenance on {AFFECTED} starting {{{{ start_time|datetime }}}}.",
        "{% if eta %}We expect it to finish by {{ eta|time }}. {% endif %}Services may be briefly unavailable.",
        "maintenance starts {{ start_time|datetime }}. Services may be briefly unavailable.",
        f"Scheduled maintenance on {AFFECTED} starts {{{{ start_time|datetime }}}}. "
        "Services may be briefly unavailable. {{ incident_url }}",
        (*_BASE, ETA),
        promise=False,
    ),
    Entry(
        MAINTENANCE,
        "in_progress",
        f"Scheduled maintenance: {AFFECTED}",
        f"Scheduled maintenance on {AFFECTED} is in progress.",
        "{% if eta %}We expect it to finish by {{ eta|time }}. {% endif %}",
        "scheduled maintenance is in progress.",
        f"Scheduled maintenance on {AFFECTED} is in progress. {{{{ incident_url }}}}",
        (*_BASE, ETA),
        promise=False,
    ),
    Entry(
        MAINTENANCE,
        "completed",
        f"Scheduled maintenance: {AFFECTED}",
        f"Scheduled maintenance on {AFFECTED} has been completed.",
        "Thank you for your patience.",
        "scheduled maintenance has been completed.",
        f"Scheduled maintenance on {AFFECTED} is complete. Thank you for your patience. {{{{ incident_url }}}}",
        _BASE,
        promise=False,
    ),
)


def entries() -> list[dict[str, Any]]:
    """The library as template fields, ready for :func:`crisisdesk.comms.service.create_template`."""
    return [_variants(entry) for entry in ENTRIES]


async def seed_library(session: AsyncSession, admin: Actor) -> int:
    """Add each library template the workspace lacks, approved by ``admin``; returns how many were added."""
    have = {(s, p) for s, p in (await session.execute(select(MessageTemplate.scenario, MessageTemplate.phase))).all()}
    added = 0
    for fields in entries():
        if (fields["scenario"], fields["phase"]) in have:
            continue
        template = await service.create_template(session, admin, **fields)
        await service.approve_template(session, admin, template)
        added += 1
    return added
