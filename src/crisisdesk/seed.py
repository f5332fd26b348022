"""The demo workspace: a believable B2B SaaS with history, people and a maintenance.

Past incidents are written with their original timestamps (the services stamp "now"), in the
same shape the services produce; present-day objects go through the services.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth import service as auth
from crisisdesk.auth.models import Role, User
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import Component, ComponentStatus, ComponentStatusChange
from crisisdesk.comms import library
from crisisdesk.config import Settings
from crisisdesk.customer import demo as customers
from crisisdesk.incident import policy
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import (
    Impact,
    Incident,
    IncidentComponent,
    IncidentUpdate,
    Kind,
    RoleAssignment,
    TimelineEvent,
    UpdateComponentChange,
)
from crisisdesk.kit.db import Database
from crisisdesk.kit.render import markdown_to_html
from crisisdesk.kit.time import utcnow
from crisisdesk.maintenance import service as maintenance
from crisisdesk.notify import subscribers
from crisisdesk.notify.models import Subscriber, SubscriberComponent, SubscriberState, SubscriptionScope
from crisisdesk.oncall import people
from crisisdesk.oncall import policies as escalation
from crisisdesk.oncall import schedules as oncall
from crisisdesk.oncall.policies import PagingEntry
from crisisdesk.oncall.schedules import LayerInput

ADMIN_EMAIL = "admin@example.com"
DEMO_PASSWORD = "crisisdesk-demo"  # noqa: S105  # demo mode only; config refuses demo defaults elsewhere

PEOPLE = [
    ("Ada Okafor", ADMIN_EMAIL, Role.admin),
    ("Priya Patel", "priya@example.com", Role.responder),
    ("Marcus Chen", "marcus@example.com", Role.responder),
    ("Sofia García", "sofia@example.com", Role.responder),
    ("Liam O'Brien", "liam@example.com", Role.responder),
    ("Noah Williams", "noah@example.com", Role.responder),
    ("Yuki Tanaka", "yuki@example.com", Role.viewer),
]

CATALOG: list[tuple[str | None, list[tuple[str, str, str | None]]]] = [
    (
        "Core platform",
        [
            ("Sign-in (SSO)", "Single sign-on with Microsoft Entra ID, Okta and Google Workspace.", None),
            ("Web app", "The browser application at app.acme.example.", None),
            ("Public API", "REST and GraphQL APIs for integrations.", None),
            ("Webhooks", "Outgoing event notifications to customer endpoints.", None),
        ],
    ),
    (
        "Messaging & data",
        [
            ("Email delivery", "Notification and digest emails.", None),
            ("Data export", "Scheduled and on-demand CSV / Parquet exports.", None),
            ("Reporting", "Dashboards and scheduled reports.", None),
            ("Search", "Full-text search across workspaces.", None),
        ],
    ),
    (
        "Hosting regions",
        [
            ("EU (Frankfurt)", "Workspaces hosted in eu-central-1.", "eu-central"),
            ("US East (Virginia)", "Workspaces hosted in us-east-1.", "us-east"),
        ],
    ),
    (
        None,
        [
            ("Mobile apps", "iOS and Android apps.", None),
            ("Billing & invoicing", "Subscriptions, invoices and payment methods.", None),
        ],
    ),
]


@dataclass
class PastIncident:
    days_ago: float
    name: str
    severity: str
    components: dict[str, str]
    updates: list[tuple[int, str, str]]  # minutes after start, status, body
    postmortem: str | None = None


HISTORY = [
    PastIncident(
        21.3,
        "Sign-in failures for Microsoft Entra ID (Azure AD) SSO users",
        "SEV1",
        {"Sign-in (SSO)": "major_outage", "Web app": "partial_outage", "Mobile apps": "partial_outage"},
        [
            (
                6,
                "investigating",
                "Customers who sign in with **Microsoft Entra ID** (Azure AD) cannot sign in. "
                "Password and Google sign-in work. We are investigating.",
            ),
            (
                34,
                "identified",
                "Microsoft has confirmed an outage of Entra ID token issuance in Europe and North "
                "America. Sessions that are already signed in keep working.\n\n**Workaround:** admins can enable "
                "password sign-in for their workspace under *Settings → Security*.",
            ),
            (
                95,
                "monitoring",
                "Microsoft has rolled back the faulty change and sign-ins are succeeding again. "
                "We are monitoring error rates.",
            ),
            (
                140,
                "resolved",
                "Sign-in with Microsoft Entra ID has been working normally for 45 minutes. "
                "We will publish a review of our response within 5 business days.",
            ),
        ],
        "## Summary\n\nFor 2 hours 14 minutes customers using Microsoft Entra ID single sign-on could not sign "
        "in, because of an outage at the identity provider.\n\n## What we are changing\n\n- Detect identity "
        "provider failures from their status feed, not from customer tickets.\n- Offer a pre-approved "
        "emergency sign-in path that workspace admins can enable in one click.",
    ),
    PastIncident(
        47.6,
        "Elevated API error rates in US East",
        "SEV2",
        {
            "Public API": "partial_outage",
            "US East (Virginia)": "degraded_performance",
            "Webhooks": "degraded_performance",
        },
        [
            (4, "investigating", "About 8% of Public API requests served from US East fail with 503 errors."),
            (22, "identified", "A database connection pool was exhausted after a deploy. We are rolling it back."),
            (41, "monitoring", "The rollback is complete; error rates are back to normal."),
            (70, "resolved", "This incident has been resolved. Delayed webhooks have been delivered."),
        ],
    ),
    PastIncident(
        63.2,
        "Delayed data exports",
        "SEV3",
        {"Data export": "degraded_performance"},
        [
            (10, "investigating", "Scheduled exports are running up to 2 hours late."),
            (55, "identified", "A backlog formed after a storage node failed over. We have added capacity."),
            (190, "resolved", "All delayed exports have completed."),
        ],
    ),
    PastIncident(
        80.4,
        "Email notifications delayed",
        "SEV3",
        {"Email delivery": "degraded_performance"},
        [
            (7, "investigating", "Notification emails are arriving 20–30 minutes late."),
            (48, "monitoring", "Our email provider has cleared its queue; delays are shrinking."),
            (85, "resolved", "Email delivery is back to normal."),
        ],
    ),
]


async def _history_incident(
    session: AsyncSession, past: PastIncident, components: dict[str, Component], users: list[User], now: datetime
) -> None:
    start = now - timedelta(days=past.days_ago)
    policy_row = await policy.get_policy(session, policy.parse_severity(past.severity))
    end = start + timedelta(minutes=past.updates[-1][0])
    incident = Incident(
        number=await incidents.next_number(session),
        kind=Kind.incident,
        name=past.name,
        status="resolved",
        impact=Impact(policy_row.impact),
        severity=past.severity,
        created_at=start + timedelta(minutes=past.updates[0][0]),
        updated_at=end,
        started_at=start,
        resolved_at=end,
        last_public_update_at=end,
        created_by_id=users[1].id,
    )
    session.add(incident)
    await session.flush()
    session.add(
        TimelineEvent(
            incident_id=incident.id,
            at=incident.created_at,
            kind="declared",
            actor_id=users[1].id,
            summary=f"{users[1].name} declared {past.severity} “{past.name}”",
            data={},
        )
    )
    for offset, role in enumerate(policy_row.required_roles):
        holder = users[1 + offset % (len(users) - 2)]
        session.add(
            RoleAssignment(
                incident_id=incident.id,
                role=role,
                user_id=holder.id,
                assigned_by_id=users[1].id,
                assigned_at=incident.created_at,
                ended_at=None,
            )
        )
    for name in past.components:
        session.add(
            IncidentComponent(
                incident_id=incident.id,
                component_id=components[name].id,
                status="operational",
                added_at=incident.created_at,
            )
        )
    for minutes, status, body in past.updates:
        at = start + timedelta(minutes=minutes)
        update = IncidentUpdate(
            incident_id=incident.id,
            status=status,
            body=body,
            body_html=markdown_to_html(body),
            created_at=at,
            updated_at=at,
            display_at=at,
            author_id=users[3].id,
            next_update_at=None if status == "resolved" else at + timedelta(minutes=policy_row.cadence_minutes),
        )
        session.add(update)
        await session.flush()
        first, last = minutes == past.updates[0][0], status == "resolved"
        for name, bad in past.components.items():
            if first or last:
                old, new = ("operational", bad) if first else (bad, "operational")
                session.add(
                    UpdateComponentChange(
                        update_id=update.id, component_id=components[name].id, old_status=old, new_status=new
                    )
                )
                session.add(
                    ComponentStatusChange(
                        component_id=components[name].id, old_status=old, new_status=new, at=at, cause_id=incident.id
                    )
                )
        session.add(
            TimelineEvent(
                incident_id=incident.id,
                at=at,
                kind="update_posted",
                actor_id=users[3].id,
                summary=f"Public update ({status}): {body[:200]}",
                data={"status": status},
            )
        )
    if past.postmortem:
        incident.postmortem_body = past.postmortem
        incident.postmortem_html = markdown_to_html(past.postmortem)
        incident.postmortem_updated_at = incident.postmortem_published_at = end + timedelta(days=3)
        incident.status = "postmortem"


async def _blips(session: AsyncSession, components: dict[str, Component], now: datetime) -> None:
    """Short, realistic degradations so every uptime bar has some texture."""
    rng = random.Random(2026)
    busy = [now - timedelta(days=p.days_ago) for p in HISTORY] + [(now - timedelta(days=30))]
    for component in components.values():
        for _ in range(rng.randint(0, 3)):
            start = now - timedelta(days=rng.uniform(2, 89), minutes=rng.randint(0, 600))
            if any(abs(start - other) < timedelta(days=1) for other in busy):
                continue  # keep blips clear of the recorded incidents and maintenance
            status = rng.choice(["degraded_performance", "degraded_performance", "partial_outage"])
            end = start + timedelta(minutes=rng.randint(8, 75))
            session.add(
                ComponentStatusChange(component_id=component.id, old_status="operational", new_status=status, at=start)
            )
            session.add(
                ComponentStatusChange(component_id=component.id, old_status=status, new_status="operational", at=end)
            )


async def _subscribers(session: AsyncSession, components: dict[str, Component], now: datetime) -> None:
    """A few subscribers in every state, so the console's subscribers page has something to show."""
    rows = [
        ("email", "it-ops@northwind.example", SubscriberState.active, ["Sign-in (SSO)", "Web app"]),
        ("email", "status@contoso.example", SubscriberState.active, []),
        ("email", "helpdesk@fabrikam.example", SubscriberState.active, ["Public API"]),
        ("email", "new.reader@tailspin.example", SubscriberState.pending, []),
        ("sms", "+14155550142", SubscriberState.active, []),
        ("webhook", "https://hooks.adatum.example/status", SubscriberState.quarantined, []),
    ]
    for n, (channel, address, state, followed) in enumerate(rows):
        since = now - timedelta(days=60 - n * 7)
        subscriber = Subscriber(
            channel=channel,
            address=address,
            state=state,
            scope=SubscriptionScope.components if followed else SubscriptionScope.all,
            token=subscribers.new_token(),
            secret=subscribers.new_webhook_secret() if channel == "webhook" else None,
            source="import" if n < 3 else "self",
            created_at=since,
            confirmed_at=None if state == SubscriberState.pending else since,
            components=[SubscriberComponent(component_id=components[name].id) for name in followed],
        )
        if state == SubscriberState.quarantined:
            subscriber.quarantined_at = now - timedelta(days=2)
            subscriber.purge_at = subscriber.quarantined_at + timedelta(days=30)
            subscriber.last_error = "HTTP 410: the receiver answered Gone"
        session.add(subscriber)
    await session.flush()


async def _oncall(session: AsyncSession, admin: Actor, users: list[User], now: datetime) -> None:
    """Everyone's email as a contact method, two rotations with an escalation policy each, and severity paging."""
    for user in users:
        await people.add_contact_method(session, admin, user.id, kind="email", address=user.email, label="Work email")
    by_email = {u.email: u.id for u in users}
    berlin = (now - timedelta(days=28)).astimezone(ZoneInfo("Europe/Berlin")).date()
    monday = berlin - timedelta(days=berlin.weekday())
    new_york = (now - timedelta(days=28)).astimezone(ZoneInfo("America/New_York")).date()
    commanders = await oncall.create_schedule(
        session,
        admin,
        name="Incident commanders",
        description="Runs the response for SEV1 and SEV2 incidents; hands off on Monday mornings.",
        time_zone="Europe/Berlin",
        layers=[
            LayerInput(
                name="Weekly",
                users=[by_email[e] for e in ("priya@example.com", "marcus@example.com", "sofia@example.com")],
                start=datetime.combine(monday, time(9, 0)),
                time_zone="Europe/Berlin",
                rotation="weekly",
            )
        ],
    )
    support = await oncall.create_schedule(
        session,
        admin,
        name="Support leads",
        description="Leads the support team's answer to customers during an incident.",
        time_zone="America/New_York",
        layers=[
            LayerInput(
                name="Daily",
                users=[by_email[e] for e in ("liam@example.com", "noah@example.com", "sofia@example.com")],
                start=datetime.combine(new_york, time(8, 0)),
                time_zone="America/New_York",
                rotation="daily",
            )
        ],
    )
    ic_policy = await escalation.create_policy(
        session,
        admin,
        name="Incident commander",
        description="The on-call incident commander, then the head of operations.",
        levels=[
            {"timeout_minutes": 5, "targets": [{"type": "schedule", "id": commanders.id}]},
            {"timeout_minutes": 10, "targets": [{"type": "user", "id": users[0].id}]},
        ],
        repeats=1,
    )
    support_policy = await escalation.create_policy(
        session,
        admin,
        name="Support lead",
        description="The on-call support lead, then the incident commander.",
        levels=[
            {"timeout_minutes": 5, "targets": [{"type": "schedule", "id": support.id}]},
            {"timeout_minutes": 10, "targets": [{"type": "schedule", "id": commanders.id}]},
        ],
    )
    await escalation.set_severity_paging(
        session,
        admin,
        [
            PagingEntry("SEV1", ic_policy.id, "incident_commander"),
            PagingEntry("SEV1", support_policy.id, "support_lead"),
            PagingEntry("SEV2", ic_policy.id, "incident_commander"),
        ],
    )


async def seed_demo(db: Database, settings: Settings) -> dict[str, object]:
    """Create the demo workspace unless users exist already; returns what to print."""
    async with db.session() as session:
        existing = await session.scalar(select(func.count()).select_from(User))
    if existing:
        return {"seeded": False, "admin_email": ADMIN_EMAIL, "admin_password": DEMO_PASSWORD}
    now = utcnow()
    created = now - timedelta(days=120)
    async with db.session() as session:
        await policy.ensure_defaults(session)
        users = [
            await auth.create_user(session, email=email, name=name, role=role, password=DEMO_PASSWORD)
            for name, email, role in PEOPLE
        ]
        regions = {
            code: await catalog.create_region(session, code=code, name=name)
            for code, name in (("eu-central", "EU (Frankfurt)"), ("us-east", "US East (Virginia)"))
        }
        components: dict[str, Component] = {}
        for group_name, members in CATALOG:
            group = None
            if group_name:
                group = await catalog.create_component(session, name=group_name, is_group=True, created_at=created)
            for name, description, region in members:
                components[name] = await catalog.create_component(
                    session,
                    name=name,
                    description=description,
                    group_id=group.id if group else None,
                    region_id=regions[region].id if region else None,
                    created_at=created,
                )
        await _blips(session, components, now)
        for past in HISTORY:
            await _history_incident(session, past, components, users, now)
        admin = auth.actor_for(users[0])
        await library.seed_library(session, admin)
        await _subscribers(session, components, now)
        await _oncall(session, admin, users, now)
        seeded = await customers.seed_customers(session, admin, components)
        start = (now + timedelta(days=3)).replace(hour=22, minute=0, second=0, microsecond=0)
        await maintenance.schedule(
            session,
            admin,
            name="Database upgrade for EU workspaces",
            body="We will upgrade the primary database cluster for EU workspaces. The web app and API may be "
            "read-only for up to 10 minutes during the window.",
            scheduled_for=start,
            scheduled_until=start + timedelta(hours=2),
            components=[components["EU (Frankfurt)"].id, components["Web app"].id],
        )
        past_start = (now - timedelta(days=30)).replace(hour=21, minute=0, second=0, microsecond=0)
        past_maintenance = Incident(
            number=await incidents.next_number(session),
            kind=Kind.maintenance,
            name="Search index migration",
            status="completed",
            impact=Impact.maintenance,
            created_at=past_start - timedelta(days=5),
            updated_at=past_start + timedelta(hours=1),
            started_at=past_start,
            resolved_at=past_start + timedelta(hours=1),
            scheduled_for=past_start,
            scheduled_until=past_start + timedelta(hours=1),
            last_public_update_at=past_start + timedelta(hours=1),
            created_by_id=users[0].id,
        )
        session.add(past_maintenance)
        await session.flush()
        session.add(
            IncidentComponent(
                incident_id=past_maintenance.id,
                component_id=components["Search"].id,
                status=ComponentStatus.under_maintenance,
            )
        )
        for at, status, body in (
            (past_maintenance.created_at, "scheduled", "We will migrate the search index to a new cluster."),
            (past_start, "in_progress", "Scheduled maintenance is now in progress."),
            (past_start + timedelta(hours=1), "completed", "The scheduled maintenance has been completed."),
        ):
            session.add(
                IncidentUpdate(
                    incident_id=past_maintenance.id,
                    status=status,
                    body=body,
                    body_html=markdown_to_html(body),
                    created_at=at,
                    updated_at=at,
                    display_at=at,
                )
            )
        for at, old, new in (
            (past_start, "operational", "under_maintenance"),
            (past_start + timedelta(hours=1), "under_maintenance", "operational"),
        ):
            session.add(
                ComponentStatusChange(
                    component_id=components["Search"].id,
                    old_status=old,
                    new_status=new,
                    at=at,
                    cause_id=past_maintenance.id,
                )
            )
    return {
        "seeded": True,
        "admin_email": ADMIN_EMAIL,
        "admin_password": DEMO_PASSWORD,
        "components": len(components),
        "users": len(users),
        "accounts": seeded.accounts,
    }
