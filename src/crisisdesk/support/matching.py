"""Which incident a support ticket is about: every candidate incident ranked, with a confidence.

A :class:`Matcher` is fitted once on the incidents tickets may be about (open ones, and those
resolved within ``CRISISDESK_MATCH_WINDOW_HOURS``) and ranks each ticket against them; nothing is
downloaded or learned at run time. A confidence is the sum of four parts, times a fifth, each
reported under its name in :attr:`Match.reasons`:

- ``text``: how much the ticket's words are the incident's: TF-IDF cosine similarity, fitted on
  the incidents' titles, affected component names and public updates. Customers rarely use the
  responders' words ("can't get in", "403 after the Okta redirect" for "sign-in failures"), so a
  small built-in table of product areas (:data:`AREAS`, a few languages) gives both sides the same
  token whenever either names sign-in, email, invoices … in one of the usual ways. Quoted replies
  and signatures are cut first, and the ticket's words that no incident uses still count in its
  length, so a long ticket that says "invoice" once is not taken for the billing incident.
- ``symptoms``: whether the ticket reports something broken ("error", "fails", "still", "not
  working") or asks how to do something: scaled by the text part, so a how-to question about
  single sign-on loses most of its likeness to the SSO outage, and a report with nothing in
  common with an incident gains nothing.
- ``components``: the ticket's account uses one of the incident's affected components
  (dependencies included): a bonus; uses none of them: a penalty; unknown account: nothing.
- ``margin``: how far the best incident's text part is ahead of the second best (0 for the others).
- ``window`` multiplies the sum: 1 from the incident's start (less :data:`LEAD`) to its resolution
  (plus :data:`TAIL`), falling towards :data:`WINDOW_FLOOR` outside, so a ticket written before an
  incident began, or hours after it ended, is not linked on its words alone.

The weights were chosen on one half of the labelled tickets in ``tests/data/tickets/`` and
checked on the other half (docs/benchmarks.md, "Ticket matching"). Ranking is deterministic:
candidates are fitted in incident-id order and ties rank by id.
"""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog.models import Component, ComponentDependency
from crisisdesk.customer import impact
from crisisdesk.incident.models import Incident, IncidentUpdate, Kind, Visibility
from crisisdesk.kit.time import as_utc

# ------------------------------------------------------------------------------ the interface


@dataclass(frozen=True)
class Candidate:
    """An incident a ticket may be about, and the words it is known by."""

    incident_id: str
    title: str
    text: str  # its public updates, oldest first
    component_names: list[str]
    component_ids: frozenset[str]  # affected, directly or through a dependency
    started_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class TicketText:
    """What matching reads of a ticket."""

    subject: str
    body: str
    component_ids: frozenset[str]  # the components its account uses; empty when the account is unknown
    created_at: datetime


@dataclass(frozen=True)
class Match:
    """One candidate for a ticket: ``confidence`` in [0, 1] and the parts it is made of.

    ``reasons`` holds ``text``, ``symptoms``, ``components`` and ``margin`` (the confidence is
    their sum, kept within [0, 1]) and ``window``, the factor that sum is multiplied by.
    """

    incident_id: str
    confidence: float
    reasons: dict[str, float]


# ------------------------------------------------------------------------------ weights

# Chosen on the tuning half of the labelled tickets; the results around these values are flat,
# so none of them is balanced on a knife's edge.
W_TEXT = 0.6
W_SYMPTOMS = 0.6
W_COMPONENTS = 0.1
W_MARGIN = 0.15
TEXT_SATURATION = 0.3  # a cosine similarity at or above this counts as full agreement
UNSEEN_WEIGHT = 0.5  # how much a ticket's word that no incident uses weighs in its length
LEAD = timedelta(minutes=30)  # customers notice before responders do; started_at may be late
TAIL = timedelta(hours=1)  # reports of a fixed incident keep arriving for a while
WINDOW_FLOOR = 0.2  # the window factor long before or after the incident
WINDOW_HALF_LIFE = timedelta(hours=1)  # how fast the factor falls towards the floor
MAX_CHARS = 20_000  # of a ticket's body read; a pasted log adds time, not meaning

# ------------------------------------------------------------------------------ words

# Product areas as customers and responders name them (a little German, French, Spanish and Dutch
# too). Both sides get the area's token for every mention, so "can't get in" meets "sign-in
# failures". Searched in lower-cased text, each alternative from the start of a word.
AREAS: dict[str, str] = {
    "signin": r"log ?in\b(?! the\b)|logins?\b|logon|logging in|sign(?:ing|ed)? ?in\b|sign-in|sso\b|"
    r"single sign|saml|okta\b|onelogin|azure ad|entra\b|identity provider|idp\b|authenti|locked out|"
    r"can'?t get in|anmeld|einlogg|connexion|se connecter|iniciar sesi|inloggen|inlog\b|access denied",
    "email": r"e-?mails?\b|mails?\b|inbox|invit(?:e|ation)|digest|newsletter|correo|courriel",
    "billing": r"billing|invoic|receipt|payment|credit card|checkout|subscription|"
    r"plan\b|seats?\b|licen[cs]es?\b|rechnung|facture|factura|facturation",
    "upload": r"upload|attach|files?\b|drag and drop|hochlad|t[ée]l[ée]vers|subida|datei",
    "search": r"search|find\b|suche|recherche|b[úu]squeda|zoek|index",
    "dashboard": r"dashboard|charts?\b|graphs?\b|widgets?\b|reports?\b|analytics|kpi\b|"
    r"panels?\b|tableau de bord|graphique|bericht|diagramm|informe|gr[áa]fico|paneles",
    "webhook": r"webhook|callback|events?\b|hooks?\b|[ée]v[ée]nement|"
    r"(?:our|your) (?:endpoint|receiver|url)",
    "api": r"api\b|rest\b|sdk\b|5\d\d\b|bad gateway|service unavailable|gateway error|v\d/",
    "mobile": r"push\b|mobile|iphone|android|ios\b|ipad|app notifications|handy",
    "slow": r"slow|tim(?:e|ed|es|ing) ?out|spinn|loading|langsam|lent\b|lentos?\b|tardan",
    "delay": r"delay|late\b|later\b|verz[öo]ger|retard|vertraag|queued|backlog|stuck",
}
AREA_PREFIX = "zzarea"
# Every alternative starts a word: one \b before them all lets the engine skip most positions.
_AREAS = [(f"{AREA_PREFIX}{name}", re.compile(rf"\b(?:{pattern})")) for name, pattern in AREAS.items()]

# A report that something is broken, and a question or a request.
_SYMPTOM = re.compile(
    r"\b(?:"
    r"error|fail|broken|down\b|not (?:working|loading|arriving|receiv|showing|rendering|sent)|"
    r"doesn'?t (?:work|load|come|show|arrive)|don'?t (?:get|receive|show)|can'?t\b|cannot\b|unable|"
    r"no (?:results|data|mail|emails?)\b|nothing\b|stopped|stuck|[45]\d\d\b|tim(?:e|ed|es|ing) ?out|"
    r"spinn|slow|delay|late\b|missing|locked out|never (?:arriv|finish|come|got|received)|"
    r"still\b|since (?:this morning|today|about|\d)|outage|incident|empty|blank|"
    r"fehler|funktioniert nicht|keine\b|erreur|impossible|ne .{0,20}\bplus\b|error(?:es)?\b|"
    r"no (?:funciona|llegan|puede|muestra)|fout|storing|lukt niet|geen\b|werkt niet|niet\b"
    r")"
)
_QUESTION = re.compile(
    r"\bhow (?:do|can|to|much|are)\b|\bis (?:it|there) (?:possible|a way|a limit)|\bcan (?:we|i|you) "
    r"(?:add|change|set|get|use|invite|restrict|put|share|restore|make|be)|\bwould (?:love|be great|like)|"
    r"\bfeature request|\bis there (?:a|an|any) (?!outage|incident|problem|issue|known|eta|delay|workaround)|"
    r"\bdo you (?:have|offer|support|provide|integrate|send)|\bwhere do i|\bwhich\b|"
    r"\bplease (?:add|update|send|stop)|\bquote\b|\bdiscount|\bpricing|\bwe'?d like to|\bplans? for\b|"
    r"\bdevis\b|\bes posible"
)

# Words that say nothing about which incident: every ticket's greetings and sign-offs, every
# status update's phrases, the commonest words of a few languages.
_STOP = frozenset(ENGLISH_STOP_WORDS) | frozenset(
    """
    hi hello hey dear team support thanks thank regards best kind cheers sincerely please pls help
    urgent urgently asap advise sent app apps application platform system account company
    investigating identified monitoring resolved incident issue issues problem update updates
    affected affecting users customers cause working normally rolling fix fixed continue ongoing
    aware known looking today morning minutes hour hours utc ago right just now know
    der die das und ist nicht wir ich sie mit von seit bei bitte hallo danke gruß grüße viele freundlichen
    le la les des une est nous vous pas pour depuis merci bonjour cordialement
    el los las una que en por desde hola gracias saludos
    het een van niet wij onze graag groet hoi
    """.split()
)
_TOKEN = re.compile(r"(?u)\b\w\w+\b")

# Where the customer's own words end: a quoted earlier message, or a signature.
_QUOTED = re.compile(
    r"^\s*(?:on .{0,120}wrote:?|am .{0,120}schrieb.*|le .{0,120}a écrit.*|el .{0,120}escribió.*|"
    r"op .{0,120}schreef.*|-{2,}\s*original message\s*-{2,}|from: .*)\s*$",
    re.IGNORECASE,
)
_FORWARDED = re.compile(r"^\s*-{2,}\s*forwarded message\s*-{2,}\s*$", re.IGNORECASE)
_HEADER = re.compile(r"^\s*(?:from|sent|to|cc|date|subject):", re.IGNORECASE)
_SIGN_OFF = re.compile(
    r"^\s*(?:--\s*|(?:best|kind|warm)?\s*regards\b.*|thanks?(?: you)?[,!.]?(?:\s+\w+)?|thx\b.*|cheers\b.*|"
    r"best(?:,|\s+\w+)?|sincerely\b.*|sent from my \w+.*|sent from outlook.*|"
    r"mit freundlichen grüßen.*|viele grüße.*|(?:freundliche )?grüße\b.*|gruß\b.*|cordialement.*|"
    r"saludos\b.*|met vriendelijke groet.*|groet(?:en)?\b.*)\s*$",
    re.IGNORECASE,
)


def ticket_words(subject: str, body: str) -> str:
    """The customer's own words: the subject (twice: it is their summary) and the body without
    quoted replies and signature; a forwarded message is kept, without its headers."""
    kept: list[str] = []
    forwarded = False
    for line in body[:MAX_CHARS].splitlines():
        if _FORWARDED.match(line):
            forwarded = True
            continue
        if forwarded and _HEADER.match(line):
            continue
        if _QUOTED.match(line) or (kept and _SIGN_OFF.match(line)):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return f"{subject}\n{subject}\n" + "\n".join(kept)


def incident_words(candidate: Candidate) -> str:
    """An incident's words: the title (twice, like a ticket's subject), component names, updates."""
    names = "\n".join(candidate.component_names)
    return f"{candidate.title}\n{candidate.title}\n{names}\n{candidate.text}"


def tokens(text: str) -> list[str]:
    """The words that are not stop words, then a product area's token for each mention of it."""
    lowered = text.lower()
    found = [token for token in _TOKEN.findall(lowered) if token not in _STOP]
    found.extend(area for area, pattern in _AREAS for _ in pattern.finditer(lowered))
    return found


def symptom_score(text: str) -> float:
    """1 for a report that something is broken, 0 for a question or request; between for both or neither."""
    lowered = text.lower()
    broken = len(_SYMPTOM.findall(lowered))
    asking = len(_QUESTION.findall(lowered))
    return min(1.0, max(0.0, 0.5 + 0.25 * broken - 0.35 * asking))


def window_factor(created_at: datetime, started_at: datetime, resolved_at: datetime | None) -> float:
    """1 within the incident's time (with a lead and a tail), falling towards the floor outside it."""
    if created_at < started_at - LEAD:
        outside = started_at - LEAD - created_at
    elif resolved_at is not None and created_at > resolved_at + TAIL:
        outside = created_at - resolved_at - TAIL
    else:
        return 1.0
    return WINDOW_FLOOR + (1 - WINDOW_FLOOR) * math.pow(0.5, outside / WINDOW_HALF_LIFE)


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _as_is(found: list[str]) -> list[str]:
    return found


def _component_overlap(ticket: frozenset[str], incident: frozenset[str]) -> float:
    if not ticket or not incident:
        return 0.0
    return 1.0 if ticket & incident else -1.0


# ------------------------------------------------------------------------------ the matcher


class Matcher:
    """Ranks tickets against a fixed set of candidate incidents."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates: tuple[Candidate, ...] = tuple(sorted(candidates, key=lambda c: c.incident_id))
        found = [tokens(incident_words(c)) for c in self.candidates]
        # The words are already split (areas added); the vectorizer counts and weighs them.
        self.vectorizer = TfidfVectorizer(analyzer=_as_is, sublinear_tf=True, norm=None)
        self._vocabulary: dict[str, int] = {}
        self._idf = np.zeros(0)
        self._terms = np.zeros((0, len(self.candidates)))  # term × incident, each incident of length 1
        try:
            docs = normalize(self.vectorizer.fit_transform(found))
        except ValueError:  # no candidates, or not one word among them
            pass
        else:
            self._vocabulary = dict(self.vectorizer.vocabulary_)
            self._idf = np.asarray(self.vectorizer.idf_, dtype=float)
            self._terms = docs.T.toarray()
        # A word no incident uses weighs in the ticket's length as a term of no document would
        # (the largest IDF), scaled down a little: it is often a name or a greeting.
        self._unseen_idf = (math.log(len(found) + 1) + 1) * UNSEEN_WEIGHT

    def rank(self, ticket: TicketText) -> list[Match]:
        """Every candidate, best first (then by incident id), with its confidence and reasons."""
        if not self.candidates:
            return []
        words = ticket_words(ticket.subject, ticket.body)
        similarity = self.similarities(tokens(words))
        text = [min(1.0, float(value) / TEXT_SATURATION) for value in similarity]
        symptoms = 2 * symptom_score(words) - 1
        created_at = as_utc(ticket.created_at)
        order = sorted(range(len(self.candidates)), key=lambda i: (-text[i], self.candidates[i].incident_id))
        best = order[0]
        lead = text[best] - (text[order[1]] if len(order) > 1 else 0.0)
        matches = []
        for index, candidate in enumerate(self.candidates):
            parts = {
                "text": W_TEXT * text[index],
                "symptoms": W_SYMPTOMS * symptoms * text[index],
                "components": W_COMPONENTS * _component_overlap(ticket.component_ids, candidate.component_ids),
                "margin": W_MARGIN * lead if index == best else 0.0,
            }
            window = window_factor(created_at, as_utc(candidate.started_at), _utc(candidate.resolved_at))
            confidence = min(1.0, max(0.0, sum(parts.values()))) * window
            reasons = {name: round(value, 4) + 0.0 for name, value in parts.items()}  # + 0.0: no "-0.0"
            reasons["window"] = round(window, 4)
            matches.append(Match(candidate.incident_id, round(confidence, 4), reasons))
        matches.sort(key=lambda m: (-m.confidence, m.incident_id))
        return matches

    def weights(self, found: Sequence[str]) -> tuple[dict[int, float], float]:
        """The ticket's TF-IDF weights by term index (what the fitted vectorizer's transform gives,
        without its per-call input checks, which cost more than the rest of a ranking), and the
        squared weight of the words no incident uses."""
        known: dict[int, float] = {}
        unseen = 0.0
        for token, count in Counter(found).items():
            index = self._vocabulary.get(token)
            tf = 1 + math.log(count)
            if index is None:
                unseen += (tf * self._unseen_idf) ** 2
            else:
                known[index] = tf * float(self._idf[index])
        return known, unseen

    def similarities(self, found: Sequence[str]) -> list[float]:
        """Cosine similarity of a ticket's tokens to each candidate's, in candidate order."""
        known, unseen = self.weights(found)
        length = math.sqrt(sum(w * w for w in known.values()) + unseen)
        if not known or not length:
            return [0.0] * len(self.candidates)
        indexes = list(known)
        values = np.fromiter(known.values(), dtype=float, count=len(indexes))
        return [float(v) for v in (values @ self._terms[indexes]) / length]


# ------------------------------------------------------------------------------ from the database


def _in_window(now: datetime, window_hours: float) -> ColumnElement[bool]:
    return and_(
        Incident.kind == Kind.incident,
        Incident.created_at <= now,
        or_(Incident.resolved_at.is_(None), Incident.resolved_at >= now - timedelta(hours=window_hours)),
    )


async def load_candidates(session: AsyncSession, *, now: datetime, window_hours: float) -> list[Candidate]:
    """Incidents open at ``now`` or resolved within ``window_hours`` before it, as matching reads them.

    Their text is the public updates posted by ``now``: written for customers, in words nearer
    theirs than the responders' internal notes, which also name customers and would pull every
    ticket from a customer named in a note towards that incident. Components include those
    affected through a dependency.
    """
    incidents = list(await session.scalars(select(Incident).where(_in_window(now, window_hours)).order_by(Incident.id)))
    if not incidents:
        return []
    texts: dict[str, list[str]] = {incident.id: [] for incident in incidents}
    rows = await session.execute(
        select(IncidentUpdate.incident_id, IncidentUpdate.body)
        .where(
            IncidentUpdate.incident_id.in_(list(texts)),
            IncidentUpdate.visibility == Visibility.public,
            IncidentUpdate.created_at <= now,
        )
        .order_by(IncidentUpdate.incident_id, IncidentUpdate.created_at, IncidentUpdate.id)
    )
    for incident_id, body in rows:
        texts[incident_id].append(body)
    found = []
    for incident in incidents:
        components = await impact.affected_components(session, incident.id)
        resolved_at = as_utc(incident.resolved_at) if incident.resolved_at is not None else None
        found.append(
            Candidate(
                incident_id=incident.id,
                title=incident.name,
                text="\n\n".join(texts[incident.id]),
                component_names=[c.name for c in components],
                component_ids=frozenset(c.component_id for c in components),
                started_at=as_utc(incident.started_at),
                resolved_at=resolved_at if resolved_at is not None and resolved_at <= now else None,
            )
        )
    return found


# Fitted matchers by what they were fitted on: a few, for a process that serves several databases.
_FITTED: OrderedDict[tuple[object, ...], Matcher] = OrderedDict()
_FITTED_MAX = 8


async def _fingerprint(session: AsyncSession, *, now: datetime, window_hours: float) -> tuple[object, ...]:
    """What the candidates are made of: each incident's last change and update count, and the catalog's."""
    public_updates = (
        select(func.count(IncidentUpdate.id))
        .where(
            IncidentUpdate.incident_id == Incident.id,
            IncidentUpdate.visibility == Visibility.public,
            IncidentUpdate.created_at <= now,
        )
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            Incident.id,
            Incident.updated_at,
            Incident.resolved_at,
            public_updates,
            # A renamed component or a changed dependency changes the candidates too.
            select(func.count()).select_from(ComponentDependency).scalar_subquery(),
            select(func.max(ComponentDependency.created_at)).scalar_subquery(),
            select(func.max(Component.updated_at)).scalar_subquery(),
        )
        .where(_in_window(now, window_hours))
        .order_by(Incident.id)
    )
    bind = session.get_bind()
    return (
        str(bind.engine.url),
        *(
            (incident_id, updated_at, resolved_at is not None and as_utc(resolved_at) <= now, *catalog)
            for incident_id, updated_at, resolved_at, *catalog in rows
        ),
    )


async def matcher_for(session: AsyncSession, *, now: datetime, window_hours: float) -> Matcher:
    """A matcher fitted on the candidates at ``now``; fitted again only when one of them changed."""
    key = await _fingerprint(session, now=now, window_hours=window_hours)
    matcher = _FITTED.get(key)
    if matcher is not None:
        _FITTED.move_to_end(key)
        return matcher
    matcher = Matcher(await load_candidates(session, now=now, window_hours=window_hours))
    _FITTED[key] = matcher
    while len(_FITTED) > _FITTED_MAX:
        _FITTED.popitem(last=False)
    return matcher
