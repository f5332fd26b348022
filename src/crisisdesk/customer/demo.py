"""The demo's customers: about 500 believable accounts, component dependencies and impact rules.

Everything comes from one seeded random generator, so every demo has the same customers.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.service import Actor
from crisisdesk.catalog import dependencies
from crisisdesk.catalog.models import Component
from crisisdesk.customer import accounts, rules

ACCOUNT_COUNT = 500
SEED = 5005

_FIRST = (
    "Northwind Contoso Fabrikam Tailspin Adatum Litware Proseware Wingtip Alpine Yonder Coho Lucerne Trey "
    "Woodgrove Relecloud Southridge Bellows Lamna Olympic Pinnacle Quantum Redwood Summit Tidewater Umbra Vertex "
    "Willow Zephyr Aurora Beacon Cobalt Driftwood Evergreen Falcon Granite Harbor Ironwood Juniper Keystone "
    "Lighthouse Meridian Nimbus Orchard Polaris Quarry Riverbend Sequoia Tamarack Upland Vantage Bramble Cascade "
    "Dovetail Ember Foxglove Glacier Halcyon Indigo Kestrel Lumen"
).split()
_SECTOR = (
    "Logistics",
    "Health",
    "Labs",
    "Systems",
    "Foods",
    "Capital",
    "Media",
    "Energy",
    "Robotics",
    "Insurance",
    "Retail",
    "Analytics",
    "Learning",
    "Travel",
    "Biotech",
    "Manufacturing",
    "Partners",
    "Telecom",
    "Outfitters",
    "Security",
)
_SUFFIX = ("Inc.", "GmbH", "Ltd", "AG", "SA", "BV", "LLC", "plc", "Oy", "AB")
_GIVEN = (
    "Anna James Maria Wei Fatima Lukas Emma Noah Aisha Mateo Chloe Hiroshi Olga Samuel Ines Kwame Lena David "
    "Sara Tomás Nina Omar Julia Raj Elif Jonas Mei Carlos Ingrid Daniel"
).split()
_FAMILY = (
    "Schmidt Nguyen Johnson Rossi Kowalski Okafor Dubois Tanaka Andersson Haddad Silva Müller Brown Costa Novak "
    "Larsen Ivanova Murphy Kaur Fischer Moreau Santos Yilmaz Weber Kim Lopez Jensen Bauer Ali Walsh"
).split()
_ROLES = ("admin", "it", "billing", "security", "executive sponsor")
CSMS = ("sofia@example.com", "liam@example.com", "noah@example.com")

# (tier, share of accounts, median ARR, spread (log-normal sigma), floor, ceiling, features used min/max);
# every account also uses its hosting region's component, five components at most.
_TIERS = (
    ("Enterprise", 0.08, 260_000, 0.55, 110_000, 1_600_000, (3, 4)),
    ("Business", 0.30, 38_000, 0.45, 12_000, 110_000, (1, 3)),
    ("Starter", 0.62, 3_600, 0.6, 480, 11_000, (1, 2)),
)
# Feature components and how likely an account of each tier uses one (besides its hosting region).
_FEATURES = {
    "Web app": (1.0, 0.98, 0.95),
    "Sign-in (SSO)": (0.95, 0.55, 0.12),
    "Public API": (0.8, 0.5, 0.2),
    "Webhooks": (0.55, 0.3, 0.08),
    "Email delivery": (0.5, 0.45, 0.35),
    "Data export": (0.6, 0.3, 0.05),
    "Reporting": (0.7, 0.45, 0.15),
    "Search": (0.4, 0.3, 0.2),
    "Mobile apps": (0.45, 0.35, 0.25),
    "Billing & invoicing": (0.2, 0.15, 0.1),
}
HOSTING = {"eu-central": "EU (Frankfurt)", "us-east": "US East (Virginia)"}

# component → what it depends on: trouble on the second reaches the first.
# Sign-in is not a dependency of the web app: only the accounts that use SSO feel an SSO outage.
DEPENDENCIES = {
    "Mobile apps": ["Public API"],
    "Webhooks": ["Public API"],
    "Reporting": ["Search"],
    "Data export": ["Reporting"],
    "Billing & invoicing": ["Email delivery"],
}

# Three rules, tried in this order (REFERENCE: "any Enterprise account on a major outage, or more
# than 10% of ARR, suggests SEV1").
RULES = (
    {
        "name": "Any Enterprise account on a major outage",
        "severity": "SEV1",
        "tiers": ["Enterprise"],
        "min_status": "major_outage",
    },
    {"name": "More than 10% of ARR", "severity": "SEV1", "arr_percent": 10.0},
    {"name": "More than 2% of ARR", "severity": "SEV2", "arr_percent": 2.0},
)

_SLA = {
    "Enterprise": accounts.Sla(
        uptime_target=99.95,
        credit_bands=[
            {"below": 99.95, "credit_percent": 10},
            {"below": 99.0, "credit_percent": 25},
            {"below": 95.0, "credit_percent": 100},
        ],
        cap_percent=100,
        claim_window_days=15,
        downtime_rule="A minute in which more than 5% of the customer's requests fail; scheduled "
        "maintenance announced 72 hours ahead is excluded. Measured per UTC calendar month.",
    ),
    "Business": accounts.Sla(
        uptime_target=99.9,
        credit_bands=[
            {"below": 99.9, "credit_percent": 10},
            {"below": 99.0, "credit_percent": 25},
            {"below": 95.0, "credit_percent": 50},
        ],
        cap_percent=50,
        claim_window_days=15,
        downtime_rule="A minute in which more than 5% of the customer's requests fail; scheduled "
        "maintenance is excluded. Measured per UTC calendar month.",
    ),
}


@dataclass(frozen=True)
class Seeded:
    accounts: int
    dependencies: int
    rules: int


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _names(rng: random.Random, count: int) -> list[str]:
    pairs = [(a, b) for a in _FIRST for b in _SECTOR]
    rng.shuffle(pairs)
    return [f"{a} {b} {rng.choice(_SUFFIX)}" for a, b in pairs[:count]]


def _arr(rng: random.Random, median: int, sigma: float, floor: int, ceiling: int) -> int:
    value = min(ceiling, max(floor, rng.lognormvariate(0, sigma) * median))
    step = 1_000 if value >= 20_000 else 100  # contracts are round figures
    return int(round(value / step) * step) * 100


def make_accounts(component_ids: Mapping[str, str], *, count: int = ACCOUNT_COUNT) -> list[accounts.AccountData]:
    """The demo's accounts, the same every time."""
    rng = random.Random(SEED)
    result: list[accounts.AccountData] = []
    for n, name in enumerate(_names(rng, count)):
        roll = rng.random()
        column = 0 if roll < _TIERS[0][1] else 1 if roll < _TIERS[0][1] + _TIERS[1][1] else 2
        tier, _, median, sigma, floor, ceiling, (low, high) = _TIERS[column]
        region_roll = rng.random()
        both = 0.35 if column == 0 else 0.05
        if region_roll < both:
            regions = ["eu-central", "us-east"]
        else:
            regions = ["eu-central"] if rng.random() < 0.5 else ["us-east"]
        hosting = [HOSTING[r] for r in regions]
        chosen = [f for f, odds in _FEATURES.items() if rng.random() < odds[column]]
        rest = [f for f in chosen if f != "Web app"]
        rng.shuffle(rest)
        features = (["Web app"] if "Web app" in chosen else []) + rest
        uses = hosting + (features or ["Web app"])[: min(rng.randint(low, high), 5 - len(hosting))]
        domain = f"{_slug(name.rsplit(' ', 1)[0])}.example"
        people: list[accounts.Contact] = []
        for role in rng.sample(_ROLES, rng.randint(1, 3 if column < 2 else 2)):
            given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
            address = f"{_slug(given)}.{_slug(family)}@{domain}"
            if all(p.email != address for p in people):
                people.append(accounts.Contact(f"{given} {family}", address, role))
        result.append(
            accounts.AccountData(
                external_id=f"CUST-{10001 + n}",
                name=name,
                tier=tier,
                arr_cents=_arr(rng, median, sigma, floor, ceiling),
                regions=regions,
                component_ids=[component_ids[c] for c in uses],
                contacts=people,
                csm_owner=rng.choice(CSMS) if column == 0 or (column == 1 and rng.random() < 0.6) else None,
                helpdesk_org_id=str(360_000_100 + n * 13),
                sla=_SLA.get(tier),
            )
        )
    return result


async def seed_customers(
    session: AsyncSession, admin: Actor, components: Mapping[str, Component], *, count: int = ACCOUNT_COUNT
) -> Seeded:
    """Accounts through the accounts service, dependencies between the demo's components, impact rules."""
    links = 0
    for name, targets in DEPENDENCIES.items():
        if name not in components:
            continue
        for target in targets:
            if target in components:
                await dependencies.add_dependency(
                    session, admin, component_id=components[name].id, depends_on_id=components[target].id
                )
                links += 1
    for values in RULES:
        await rules.create_rule(session, admin, **values)
    batch = make_accounts({name: c.id for name, c in components.items()}, count=count)
    for start in range(0, len(batch), 500):
        await accounts.upsert_many(session, batch[start : start + 500])
    return Seeded(accounts=len(batch), dependencies=links, rules=len(RULES))
